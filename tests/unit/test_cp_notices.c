/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Notices before enforcement (controlplane/notify/notices.c) over a real
 * SQLite store and state on the test clock: the exact day each notice is
 * made (days_before before the throttle and block dates, a resolution at
 * once), a clock that jumps over a due date, a date before the contacts
 * were set, no duplicate after a restart (the journal is read back), the
 * checks on contacts, the signature and the retry delays.  Deliveries are
 * the integration tests' (tests/integration/test_notices.py): here the
 * sender thread is not started, so every delivery stays pending.
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
#include "controlplane/notify/notices.h"
#include "controlplane/store/sqlite.h"
#include "cp_fakes.h"
#include "cp_world.h"

#define T0 1704067200 /* 2024-01-01T00:00:00Z */
#define DAY 86400

static void test_backoff(void **state)
{
	static const unsigned want[] = { 30, 60, 120, 240, 480, 960, 1920, 3600, 3600 };

	(void)state;
	for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		assert_int_equal(cp_notice_backoff(30, 3600, i + 1), want[i]);
	assert_int_equal(cp_notice_backoff(1, 2, 1), 1);
	assert_int_equal(cp_notice_backoff(1, 2, 2), 2);
	assert_int_equal(cp_notice_backoff(1, 2, 50), 2);
}

static void test_signature(void **state)
{
	char sig[72];

	(void)state;
	/* python3: hmac.new(b"s3cret", b'{"id":"x"}', hashlib.sha256).hexdigest() */
	cp_notice_signature("s3cret", "{\"id\":\"x\"}", sig);
	assert_string_equal(
		sig, "sha256=9f0beccf514841d21c56dba276089c2345c12d5d2deb19b4d22c873371e5e8b6");
}

struct fx {
	struct cp_world w;
	struct cp_notices *nt;
};

static const struct cp_notices_config ncfg = {
	.smtp_relay = "",
	.mail_from = "tescontrol@gw.example",
	.retry_min = 1,
	.retry_max = 2,
	.timeout = 5,
	.expire_days = 14,
	.version = "test",
};

static void open_all(struct fx *f)
{
	cp_world_open(&f->w);
	assert_int_equal(cp_notices_init(&f->nt, &ncfg, &f->w.st, &f->w.loop), 0);
	assert_int_equal(cp_state_subscribe(&f->w.st, cp_notices_on_note, f->nt), 0);
}

static void close_all(struct fx *f)
{
	cp_notices_stop(f->nt);
	cp_world_close(&f->w);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	cp_world_init(&f->w, "tes-notices", T0);
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

static void sight(struct fx *f, uint32_t tenant, const char *fqdn, const char *build)
{
	struct ctl_sighting s = fake_sighting(tenant, fqdn, build, "198.51.100.7");
	enum tes_change ch;
	char msg[256];

	s.time = f->w.clock.test_now;
	if (strcmp(build, "15.1.2507.35") != 0)
		s.cls = TES_BUILD_COMPLIANT;
	if (cp_state_apply_sighting(&f->w.st, &s, &ch, msg, sizeof(msg)))
		fail_msg("%s", msg);
	cp_notices_after_round(f->nt);
}

/* The test clock moves as `tesctl clock set` moves it: escalation looks,
 * the clock note goes out, then the round ends. */
static void clock_to(struct fx *f, int64_t t)
{
	struct cp_note n = { .kind = CP_NOTE_CLOCK, .slot = CP_NO_SLOT };

	f->w.clock.test_now = t;
	n.now = t;
	esc_run_due(&f->w.esc, "test clock");
	cp_state_emit(&f->w.st, &n);
	cp_notices_after_round(f->nt);
}

static void contacts(struct fx *f, uint32_t tenant, unsigned days)
{
	struct store_contacts c;
	char err[256];

	memset(&c, 0, sizeof(c));
	c.tenant_id = tenant;
	c.days_before = days;
	snprintf(c.webhook, sizeof(c.webhook), "http://127.0.0.1:9/hook");
	snprintf(c.secret, sizeof(c.secret), "s3cret");
	if (cp_notices_set_contacts(f->nt, &c, err, sizeof(err)))
		fail_msg("%s", err);
	cp_notices_after_round(f->nt);
}

/* "kind server date due" of every notice, oldest first, one per line. */
static void journal(struct fx *f, char *out, size_t len)
{
	json_t *a = cp_notices_list(f->nt, 0, false), *n;
	size_t i, used = 0;

	out[0] = '\0';
	json_array_foreach(a, i, n)
	{
		int w = snprintf(out + used, len - used, "%s %s %.10s %.10s\n",
				 json_string_value(json_object_get(n, "kind")),
				 json_string_value(json_object_get(n, "server")),
				 json_string_value(json_object_get(n, "date")),
				 json_string_value(json_object_get(n, "due")));

		assert_true(w > 0 && (size_t)w < len - used);
		used += (size_t)w;
	}
	json_decref(a);
}

static void expect(struct fx *f, const char *want)
{
	char got[4096];

	journal(f, got, sizeof(got));
	assert_string_equal(got, want);
}

static void test_days(void **state)
{
	struct fx *f = *state;

	fake_tenant(&f->w.st, 1, "Bear");
	contacts(f, 1, 7);
	sight(f, 1, "ex1.bear.local", "15.1.2507.35");
	expect(f, "");
	/* throttling from day 30 (2024-01-31): its notice on day 23 */
	clock_to(f, T0 + 23 * DAY - 1);
	expect(f, "");
	clock_to(f, T0 + 23 * DAY);
	expect(f, "throttle ex1.bear.local 2024-01-31 2024-01-24\n");
	clock_to(f, T0 + 40 * DAY);
	expect(f, "throttle ex1.bear.local 2024-01-31 2024-01-24\n");
	/* blocking from day 60 (2024-03-01, a leap year): notice on day 53 */
	clock_to(f, T0 + 53 * DAY - 1);
	expect(f, "throttle ex1.bear.local 2024-01-31 2024-01-24\n");
	clock_to(f, T0 + 53 * DAY);
	expect(f, "throttle ex1.bear.local 2024-01-31 2024-01-24\n"
		  "block ex1.bear.local 2024-03-01 2024-02-23\n");
	/* every delivery is pending (no sender here), with its target */
	{
		json_t *a = cp_notices_list(f->nt, 1, true);
		json_t *d = json_array_get(json_object_get(json_array_get(a, 0), "deliveries"), 0);

		assert_int_equal(json_array_size(a), 2);
		assert_string_equal(json_string_value(json_object_get(d, "state")), "pending");
		assert_string_equal(json_string_value(json_object_get(d, "target")),
				    "http://127.0.0.1:9/hook");
		json_decref(a);
	}
	/* a restart reads the journal: nothing is made twice */
	close_all(f);
	open_all(f);
	cp_notices_after_round(f->nt);
	clock_to(f, T0 + 54 * DAY);
	expect(f, "throttle ex1.bear.local 2024-01-31 2024-01-24\n"
		  "block ex1.bear.local 2024-03-01 2024-02-23\n");
	/* resolved: told at once, dated when it was seen */
	sight(f, 1, "ex1.bear.local", "15.1.2507.61");
	expect(f, "throttle ex1.bear.local 2024-01-31 2024-01-24\n"
		  "block ex1.bear.local 2024-03-01 2024-02-23\n"
		  "resolved ex1.bear.local 2024-02-24 2024-02-24\n");
	assert_int_equal(cp_notices_counts(f->nt)->made[STORE_NOTICE_RESOLVED], 1);
}

static void test_jump_and_since(void **state)
{
	struct fx *f = *state;

	fake_tenant(&f->w.st, 1, "Bear");
	fake_tenant(&f->w.st, 2, "Fox");
	contacts(f, 1, 7);
	sight(f, 1, "ex1.bear.local", "15.1.2507.35");
	sight(f, 2, "mx.fox.local", "15.1.2507.35");
	/* one jump over the throttle notice's day and the date itself: the
	 * notice is made, late, with the day it fell due */
	clock_to(f, T0 + 35 * DAY);
	expect(f, "throttle ex1.bear.local 2024-01-31 2024-01-24\n");
	/* Fox's contacts come after its throttle date: no notice of that,
	 * but of its block date */
	contacts(f, 2, 7);
	expect(f, "throttle ex1.bear.local 2024-01-31 2024-01-24\n");
	clock_to(f, T0 + 53 * DAY);
	expect(f, "throttle ex1.bear.local 2024-01-31 2024-01-24\n"
		  "block ex1.bear.local 2024-03-01 2024-02-23\n"
		  "block mx.fox.local 2024-03-01 2024-02-23\n");
}

static void test_pause_moves_the_date(void **state)
{
	struct fx *f = *state;
	struct tes_pause p;
	char err[256];

	fake_tenant(&f->w.st, 1, "Bear");
	contacts(f, 1, 7);
	sight(f, 1, "ex1.bear.local", "15.1.2507.35");
	clock_to(f, T0 + 23 * DAY);
	expect(f, "throttle ex1.bear.local 2024-01-31 2024-01-24\n");
	/* ten days' pause from day 23: throttling now from day 40
	 * (2024-02-10), a new date with a notice of its own on day 33 */
	memset(&p, 0, sizeof(p));
	p.start = T0 + 23 * DAY;
	p.end = T0 + 33 * DAY;
	p.year = 2024;
	p.days_used = 10;
	assert_int_equal(cp_state_set_pause(&f->w.st, 1, &p, "pause", NULL, err, sizeof(err)), 0);
	cp_notices_after_round(f->nt);
	expect(f, "throttle ex1.bear.local 2024-01-31 2024-01-24\n");
	clock_to(f, T0 + 33 * DAY);
	expect(f, "throttle ex1.bear.local 2024-01-31 2024-01-24\n"
		  "throttle ex1.bear.local 2024-02-10 2024-02-03\n");
}

static void set_err(struct fx *f, const struct store_contacts *c, const char *want)
{
	char err[256];

	assert_int_equal(cp_notices_set_contacts(f->nt, c, err, sizeof(err)), -1);
	assert_string_equal(err, want);
}

static void test_contacts_checked(void **state)
{
	struct fx *f = *state;
	struct store_contacts c;
	char err[256];
	json_t *j;

	fake_tenant(&f->w.st, 1, "Bear");
	memset(&c, 0, sizeof(c));
	c.tenant_id = 9;
	set_err(f, &c, "no tenant 9");
	c.tenant_id = 1;
	set_err(f, &c, "no webhook and no mail address: nobody to tell");
	snprintf(c.webhook, sizeof(c.webhook), "ftp://x/y");
	set_err(f, &c, "webhook \"ftp://x/y\" is not an http:// or https:// URL");
	snprintf(c.webhook, sizeof(c.webhook), "http://a b/");
	set_err(f, &c, "webhook \"http://a b/\" is not an http:// or https:// URL");
	snprintf(c.webhook, sizeof(c.webhook), "https://hooks.example/t");
	set_err(f, &c,
		"a webhook needs a secret: printable ASCII, 1 to 255 characters (its signatures "
		"are HMAC-SHA256 under it)");
	snprintf(c.secret, sizeof(c.secret), "k");
	c.nmail = 1;
	snprintf(c.mail[0], sizeof(c.mail[0]), "it@bear.example");
	set_err(f, &c,
		"mail addresses given, but notice_smtp_relay is not set in tescontrol's "
		"configuration");
	c.nmail = 0;
	c.days_before = 400;
	set_err(f, &c, "days before: 400 is more than 365");
	c.days_before = 3;
	assert_int_equal(cp_notices_set_contacts(f->nt, &c, err, sizeof(err)), 0);
	j = cp_notices_contacts_json(f->nt, cp_notices_contacts(f->nt, 1));
	/* the secret is never shown */
	{
		char *text = json_dumps(j, 0);

		assert_null(strstr(text, "\"k\""));
		free(text);
	}
	assert_true(json_is_true(json_object_get(j, "signed")));
	assert_int_equal(json_integer_value(json_object_get(j, "since_unix")), T0);
	json_decref(j);
	/* a change keeps since */
	f->w.clock.test_now = T0 + DAY;
	c.days_before = 5;
	assert_int_equal(cp_notices_set_contacts(f->nt, &c, err, sizeof(err)), 0);
	assert_int_equal(cp_notices_contacts(f->nt, 1)->since, T0);
	assert_int_equal(cp_notices_clear_contacts(f->nt, 1, err, sizeof(err)), 0);
	assert_null(cp_notices_contacts(f->nt, 1));
	assert_int_equal(cp_notices_clear_contacts(f->nt, 1, err, sizeof(err)), -1);
	assert_string_equal(err, "tenant 1 has no notice contacts");
}

static void test_body(void **state)
{
	struct fx *f = *state;
	uint32_t slot;
	char *body;
	json_t *o;

	fake_tenant(&f->w.st, 1, "Bear");
	sight(f, 1, "EX1.bear.local", "15.1.2507.35");
	slot = cp_server_find(&f->w.st.tab, 1, "ex1.bear.local");
	body = cp_notice_body(&f->w.st, "0123", STORE_NOTICE_THROTTLE, &f->w.st.tab.srv[slot].v.s,
			      cp_tenant_find(&f->w.st.tab, 1), T0 + 30 * DAY, T0 + 23 * DAY, 7);
	assert_non_null(body);
	o = json_loads(body, 0, NULL);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "id")), "0123");
	assert_string_equal(json_string_value(json_object_get(o, "kind")), "throttle");
	assert_int_equal(json_integer_value(json_object_get(o, "tenant")), 1);
	assert_string_equal(json_string_value(json_object_get(o, "tenant_name")), "Bear");
	assert_string_equal(json_string_value(json_object_get(o, "server")), "EX1.bear.local");
	assert_string_equal(json_string_value(json_object_get(o, "build")), "15.1.2507.35");
	assert_string_equal(json_string_value(json_object_get(o, "family")), "2016");
	assert_string_equal(json_string_value(json_object_get(o, "date")), "2024-01-31T00:00:00Z");
	assert_int_equal(json_integer_value(json_object_get(o, "date_unix")), T0 + 30 * DAY);
	assert_string_equal(json_string_value(json_object_get(o, "due")), "2024-01-24T00:00:00Z");
	assert_int_equal(json_integer_value(json_object_get(o, "days_before")), 7);
	assert_string_equal(json_string_value(json_object_get(o, "status")), "Reporting");
	assert_int_equal(json_integer_value(json_object_get(o, "stage")), 1);
	assert_true(json_array_size(json_object_get(o, "recommended")) > 0);
	assert_string_equal(json_string_value(json_object_get(o, "text")),
			    "Exchange server EX1.bear.local (tenant Bear) runs build 15.1.2507.35, "
			    "which is out of date: its mail will be throttled from 2024-01-31 "
			    "unless it is updated.");
	json_decref(o);
	free(body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backoff),
		cmocka_unit_test(test_signature),
		cmocka_unit_test_setup_teardown(test_days, setup, teardown),
		cmocka_unit_test_setup_teardown(test_jump_and_since, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pause_moves_the_date, setup, teardown),
		cmocka_unit_test_setup_teardown(test_contacts_checked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
