/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The report page (controlplane/notify/report.c, report_html.c): the HTML
 * escaper byte for byte, the renderer on a snapshot made by hand (hostile
 * names escaped, a tenant's view holding nothing of another tenant, exact
 * cells), and the report over a real SQLite store and state: tokens
 * (hashed, revoked, kept across a restart), refused-message counts from
 * the gateways (only servers on record, kept across a restart), and the
 * stage history the chart is drawn from.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "controlplane/escalation/escalation.h"
#include "controlplane/notify/report.h"
#include "controlplane/notify/report_html.h"
#include "controlplane/store/sqlite.h"
#include "cp_fakes.h"
#include "cp_world.h"

#define T0 1704067200 /* 2024-01-01T00:00:00Z */
#define DAY 86400

static char *escaped(const char *s, size_t n)
{
	struct rpt_buf b = { 0 };

	rpt_escape(&b, s, n);
	assert_false(b.failed);
	return b.p ? b.p : strdup("");
}

static void check_escape(const char *in, size_t n, const char *want)
{
	char *got = escaped(in, n);

	assert_string_equal(got, want);
	free(got);
}

static void test_escape(void **state)
{
	(void)state;
	check_escape("plain ex1.bear.local", 20, "plain ex1.bear.local");
	check_escape("<script>alert('x')</script>", 27,
		     "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;");
	check_escape("a&b \"q\" <i>", 11, "a&amp;b &quot;q&quot; &lt;i&gt;");
	/* tab and newline stay; other controls and DEL become U+FFFD */
	check_escape("a\tb\nc\x01\x1b\x7f", 8, "a\tb\nc\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	/* a NUL in the middle is a control too, not the end */
	check_escape("x\0y", 3, "x\xef\xbf\xbdy");
	/* valid UTF-8 is kept: 2, 3 and 4 octets */
	check_escape("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9,
		     "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
	/* not UTF-8: a lone continuation, an overlong '<', a surrogate, a
	 * truncated sequence, above U+10FFFF, a C1 control */
	check_escape("\x80", 1, "\xef\xbf\xbd");
	check_escape("\xc0\xbc", 2, "\xef\xbf\xbd\xef\xbf\xbd");
	check_escape("\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	check_escape("ab\xe2\x82", 4, "ab\xef\xbf\xbd\xef\xbf\xbd");
	check_escape("\xf4\x90\x80\x80", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	check_escape("\xc2\x85", 2, "\xef\xbf\xbd");
}

/* ---- the renderer on a snapshot made by hand ---- */

static void server(struct rpt_server *v, uint32_t tenant, const char *fqdn, enum tes_status st,
		   unsigned stage, uint64_t throttled, uint64_t refused)
{
	memset(v, 0, sizeof(*v));
	v->tenant_id = tenant;
	snprintf(v->fqdn, sizeof(v->fqdn), "%s", fqdn);
	snprintf(v->build, sizeof(v->build), "15.1.2507.35");
	snprintf(v->family, sizeof(v->family), "2016");
	v->status = st;
	v->stage = stage;
	v->first_detected = T0;
	v->last_seen = T0 + DAY;
	v->has_throttle = true;
	v->throttle_at = T0 + 30 * DAY;
	v->has_block = true;
	v->block_at = T0 + 60 * DAY;
	v->throttled = throttled;
	v->refused = refused;
}

static void hand_snapshot(struct rpt_snapshot *s)
{
	static struct rpt_tenant tenants[2];
	static struct rpt_server servers[3];
	static struct store_history hist[3];

	memset(s, 0, sizeof(*s));
	memset(tenants, 0, sizeof(tenants));
	s->now = T0 + 40 * DAY;
	s->test_clock = true;
	s->version = "0.1.0";
	tes_policy_default(&s->policy);
	snprintf(s->policy_version, sizeof(s->policy_version), "pv1");
	snprintf(s->catalog_version, sizeof(s->catalog_version), "cv1");
	tenants[0].id = 1;
	snprintf(tenants[0].name, sizeof(tenants[0].name), "Bear <script>alert(1)</script>");
	tenants[0].first_server = 0;
	tenants[0].nservers = 2;
	tenants[0].first_hist = 0;
	tenants[0].nhist = 2;
	tenants[1].id = 2;
	snprintf(tenants[1].name, sizeof(tenants[1].name), "Fox & Co");
	tenants[1].first_server = 2;
	tenants[1].nservers = 1;
	tenants[1].first_hist = 2;
	tenants[1].nhist = 1;
	server(&servers[0], 1, "ex1.bear.local", TES_STATUS_THROTTLING, 3, 12, 0);
	server(&servers[1], 1, "\"><img src=x onerror=alert(1)>.bear.local", TES_STATUS_REPORTING,
	       1, 0, 0);
	server(&servers[2], 2, "mx.fox.local", TES_STATUS_BLOCKING, 5, 4, 7);
	memset(hist, 0, sizeof(hist));
	hist[0].tenant_id = 1;
	hist[0].day = T0 / DAY;
	hist[0].n[0] = 2;
	hist[1].tenant_id = 1;
	hist[1].day = T0 / DAY + 30;
	hist[1].n[0] = 1;
	hist[1].n[1] = 1;
	hist[2].tenant_id = 2;
	hist[2].day = T0 / DAY + 10;
	hist[2].n[0] = 1;
	s->tenants = tenants;
	s->ntenants = 2;
	s->servers = servers;
	s->nservers = 3;
	s->hist = hist;
	s->nhist = 3;
}

static unsigned count(const char *hay, const char *needle)
{
	unsigned n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

static void test_render_all(void **state)
{
	struct rpt_snapshot s;
	struct rpt_buf b = { 0 };

	(void)state;
	hand_snapshot(&s);
	rpt_render(&s, NULL, &b);
	assert_false(b.failed);
	/* nothing of a name reaches the page as markup */
	assert_null(strstr(b.p, "<script>"));
	assert_null(strstr(b.p, "<img"));
	assert_non_null(strstr(b.p, "Bear &lt;script&gt;alert(1)&lt;/script&gt;"));
	assert_non_null(strstr(
		b.p, "data-fqdn=\"&quot;&gt;&lt;img src=x onerror=alert(1)&gt;.bear.local\""));
	assert_non_null(strstr(b.p, "Fox &amp; Co"));
	/* exact cells */
	assert_non_null(
		strstr(b.p, "<td class=\"n throttled\">12</td><td class=\"n refused\">0</td>"));
	assert_non_null(
		strstr(b.p, "<td class=\"n throttled\">4</td><td class=\"n refused\">7</td>"));
	assert_non_null(strstr(b.p, "<tr id=\"sum-1\"><th scope=\"row\">Bear &lt;script&gt;alert(1)"
				    "&lt;/script&gt;</th><td class=\"n total\">2</td><td class=\"n "
				    "Reporting\">1</td><td class=\"n Throttling\">1</td>"));
	assert_non_null(strstr(b.p,
			       "<td class=\"throttle-date\"><time datetime=\"2024-01-31T00:00:00Z"
			       "\">2024-01-31</time></td>"));
	assert_non_null(strstr(b.p, "TEST CLOCK"));
	assert_int_equal(count(b.p, "<tr class=\"server\""), 3);
	/* the chart's data: both tenants summed, a step on each sample day */
	assert_non_null(strstr(b.p, "<tr data-day=\"2024-01-01\"><th scope=\"row\">2024-01-01</th>"
				    "<td class=\"n\">2</td><td class=\"n\">0</td>"));
	assert_non_null(strstr(b.p, "<tr data-day=\"2024-01-11\"><th scope=\"row\">2024-01-11</th>"
				    "<td class=\"n\">3</td><td class=\"n\">0</td>"));
	assert_non_null(strstr(b.p, "<tr data-day=\"2024-01-31\"><th scope=\"row\">2024-01-31</th>"
				    "<td class=\"n\">2</td><td class=\"n\">1</td>"));
	assert_int_equal(count(b.p, "<svg"), 1);
	assert_int_equal(count(b.p, "<script"), 0);
	rpt_buf_free(&b);
}

static void test_render_one_tenant(void **state)
{
	struct rpt_snapshot s;
	struct rpt_buf b = { 0 };

	(void)state;
	hand_snapshot(&s);
	rpt_render(&s, &s.tenants[1], &b);
	assert_false(b.failed);
	/* Fox's page: nothing of Bear, not even in the navigation or chart */
	assert_null(strstr(b.p, "Bear"));
	assert_null(strstr(b.p, "bear.local"));
	assert_null(strstr(b.p, "tenant-1"));
	assert_null(strstr(b.p, "sum-1"));
	assert_non_null(strstr(b.p, "<title>Fox &amp; Co: tesgate report</title>"));
	assert_int_equal(count(b.p, "<tr class=\"server\""), 1);
	assert_non_null(strstr(b.p, "data-fqdn=\"mx.fox.local\""));
	/* its own history only: 1 server at stage 1 from its first sample */
	assert_non_null(strstr(b.p, "<tr data-day=\"2024-01-11\"><th scope=\"row\">2024-01-11</th>"
				    "<td class=\"n\">1</td>"));
	assert_null(strstr(b.p, "data-day=\"2024-01-01\""));
	rpt_buf_free(&b);
}

/* ---- the report over a real store and state ---- */

struct fx {
	struct cp_world w;
	struct cp_report *r;
};

static const struct cp_report_config rcfg = {
	.listen = "",
	.tls_cert = "",
	.tls_key = "",
	.history_days = 400,
	.version = "test",
};

static void open_all(struct fx *f)
{
	cp_world_open(&f->w);
	assert_int_equal(cp_report_init(&f->r, &rcfg, &f->w.st, &f->w.loop), 0);
	assert_int_equal(cp_state_subscribe(&f->w.st, cp_report_on_note, f->r), 0);
}

static void close_all(struct fx *f)
{
	cp_report_stop(f->r);
	cp_world_close(&f->w);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	cp_world_init(&f->w, "tes-report", T0);
	open_all(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	close_all(f);
	cp_world_remove(&f->w);
	free(f);
	return 0;
}

static void sight(struct fx *f, uint32_t tenant, const char *fqdn)
{
	struct ctl_sighting s = fake_sighting(tenant, fqdn, "15.1.2507.35", "198.51.100.7");
	enum tes_change ch;
	char msg[256];

	s.time = f->w.clock.test_now;
	if (cp_state_apply_sighting(&f->w.st, &s, &ch, msg, sizeof(msg)))
		fail_msg("%s", msg);
}

static void test_tokens(void **state)
{
	struct fx *f = *state;
	char tok[CP_REPORT_TOKEN_LEN + 1], tok2[CP_REPORT_TOKEN_LEN + 1], err[256];
	struct store_token t, t2, gone;
	json_t *list;

	fake_tenant(&f->w.st, 1, "Bear");
	fake_tenant(&f->w.st, 2, "Fox");
	assert_int_equal(cp_report_token_create(f->r, 9, tok, &t, err, sizeof(err)), -1);
	assert_string_equal(err, "no tenant 9");
	assert_int_equal(cp_report_token_create(f->r, 1, tok, &t, err, sizeof(err)), 0);
	assert_int_equal(cp_report_token_create(f->r, 2, tok2, &t2, err, sizeof(err)), 0);
	assert_int_equal(strlen(tok), 64);
	assert_string_not_equal(tok, tok2);
	assert_int_equal(cp_report_token_tenant(f->r, tok), 1);
	assert_int_equal(cp_report_token_tenant(f->r, tok2), 2);
	/* one digit off, upper case, short, long: no tenant */
	{
		char first = tok[0];

		tok[0] = first == 'a' ? 'b' : 'a';
		assert_int_equal(cp_report_token_tenant(f->r, tok), 0);
		tok[0] = first;
		assert_int_equal(cp_report_token_tenant(f->r, tok), 1);
	}
	{
		char upper[CP_REPORT_TOKEN_LEN + 1];

		for (size_t i = 0; i <= CP_REPORT_TOKEN_LEN; i++)
			upper[i] = (char)(tok[i] >= 'a' && tok[i] <= 'f' ? tok[i] - 32 : tok[i]);
		assert_int_equal(cp_report_token_tenant(f->r, upper), 0);
	}
	assert_int_equal(cp_report_token_tenant(f->r, "abc"), 0);
	assert_int_equal(cp_report_token_tenant(f->r, ""), 0);
	/* the list never shows a token */
	list = cp_report_token_list(f->r, 0);
	assert_int_equal(json_array_size(list), 2);
	assert_null(json_object_get(json_array_get(list, 0), "token"));
	json_decref(list);
	list = cp_report_token_list(f->r, 2);
	assert_int_equal(json_array_size(list), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "id")),
			    t2.id);
	json_decref(list);

	/* kept across a restart, by hash */
	close_all(f);
	open_all(f);
	assert_int_equal(cp_report_token_tenant(f->r, tok2), 2);
	assert_int_equal(cp_report_token_revoke(f->r, t2.id, &gone, err, sizeof(err)), 0);
	assert_int_equal(gone.tenant_id, 2);
	assert_int_equal(cp_report_token_tenant(f->r, tok2), 0);
	assert_int_equal(cp_report_token_revoke(f->r, t2.id, &gone, err, sizeof(err)), -1);
	close_all(f);
	open_all(f);
	assert_int_equal(cp_report_token_tenant(f->r, tok2), 0);
}

static void test_counts(void **state)
{
	struct fx *f = *state;
	struct ctl_server_count c;
	uint64_t th, re;

	fake_tenant(&f->w.st, 1, "Bear");
	sight(f, 1, "EX1.bear.local");
	memset(&c, 0, sizeof(c));
	c.tenant_id = 1;
	snprintf(c.fqdn, sizeof(c.fqdn), "ex1.BEAR.local");
	c.throttled = 3;
	c.refused = 2;
	assert_int_equal(cp_report_add_count(&c, f->r), 0);
	c.throttled = 1;
	c.refused = 0;
	assert_int_equal(cp_report_add_count(&c, f->r), 0);
	/* not on record: not kept */
	snprintf(c.fqdn, sizeof(c.fqdn), "nobody.bear.local");
	c.throttled = 100;
	assert_int_equal(cp_report_add_count(&c, f->r), 0);
	cp_report_counts(f->r, 1, "EX1.bear.local", &th, &re);
	assert_int_equal(th, 4);
	assert_int_equal(re, 2);
	cp_report_counts(f->r, 1, "nobody.bear.local", &th, &re);
	assert_int_equal(th + re, 0);
	/* written at stop, read at start */
	close_all(f);
	open_all(f);
	cp_report_counts(f->r, 1, "ex1.bear.local", &th, &re);
	assert_int_equal(th, 4);
	assert_int_equal(re, 2);
	{
		struct rpt_snapshot *s = cp_report_snapshot(f->r);

		assert_non_null(s);
		assert_int_equal(s->nservers, 1);
		assert_string_equal(s->servers[0].fqdn, "EX1.bear.local");
		assert_int_equal(s->servers[0].throttled, 4);
		assert_int_equal(s->servers[0].refused, 2);
		cp_report_snapshot_free(s);
	}
	/* a server reset forgets its counts, in memory and in the store */
	{
		char err[256];
		uint32_t slot = cp_server_find(&f->w.st.tab, 1, "ex1.bear.local");

		assert_int_equal(cp_state_reset_server(&f->w.st, slot, NULL, err, sizeof(err)), 0);
	}
	cp_report_counts(f->r, 1, "ex1.bear.local", &th, &re);
	assert_int_equal(th + re, 0);
	close_all(f);
	open_all(f);
	cp_report_counts(f->r, 1, "ex1.bear.local", &th, &re);
	assert_int_equal(th + re, 0);
	/* a hostile gateway's huge deltas saturate instead of wrapping */
	sight(f, 1, "ex2.bear.local");
	snprintf(c.fqdn, sizeof(c.fqdn), "ex2.bear.local");
	c.throttled = 1;
	c.refused = UINT64_MAX - 1;
	assert_int_equal(cp_report_add_count(&c, f->r), 0);
	assert_int_equal(cp_report_add_count(&c, f->r), 0);
	cp_report_counts(f->r, 1, "ex2.bear.local", &th, &re);
	assert_int_equal(th, 2);
	assert_true(re == UINT64_MAX);
}

static void test_history(void **state)
{
	struct fx *f = *state;
	struct rpt_snapshot *s;

	fake_tenant(&f->w.st, 1, "Bear");
	fake_tenant(&f->w.st, 2, "Fox");
	sight(f, 1, "ex1.bear.local");
	sight(f, 1, "ex2.bear.local");
	cp_report_after_round(f->r);
	/* day 31: both at stage 2 (throttling from day 30) */
	f->w.clock.test_now = T0 + 31 * DAY;
	esc_evaluate_all(&f->w.esc, "test");
	cp_report_after_round(f->r);
	/* the same day again changes nothing: a sample holds until the next */
	cp_report_after_round(f->r);
	close_all(f);
	open_all(f); /* and it was written */
	s = cp_report_snapshot(f->r);
	assert_non_null(s);
	assert_int_equal(s->ntenants, 2);
	assert_int_equal(s->tenants[0].nhist, 2);
	assert_int_equal(s->hist[0].day, T0 / DAY);
	assert_int_equal(s->hist[0].n[0], 2);
	assert_int_equal(s->hist[0].n[1], 0);
	assert_int_equal(s->hist[1].day, T0 / DAY + 31);
	assert_int_equal(s->hist[1].n[0], 0);
	assert_int_equal(s->hist[1].n[1], 2);
	/* Fox has no servers: one sample of zeros, from the day it was seen */
	assert_int_equal(s->tenants[1].nhist, 1);
	assert_int_equal(s->hist[2].tenant_id, 2);
	for (int k = 0; k < STORE_HISTORY_SERIES; k++)
		assert_int_equal(s->hist[2].n[k], 0);
	cp_report_snapshot_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_render_all),
		cmocka_unit_test(test_render_one_tenant),
		cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
		cmocka_unit_test_setup_teardown(test_counts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_history, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
