/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The control plane's state room (controlplane/state/): a sighting applied
 * durable first, then in memory, then notified; a store that fails leaves
 * nothing behind; the lookups; forgetting, resets, tenants and caps, each
 * with the notification (and event log fields) its sinks act on.  The store
 * is the fake of cp_fakes.c, whose journal holds store calls and notes in
 * the order they happened.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "controlplane/log.h"
#include "cp_fakes.h"

#define T0 INT64_C(1704067200) /* 2024-01-01 */
#define DAY 86400
#define OLD "15.1.2507.35"  /* 2016 CU23, out of date */
#define GOOD "15.1.2507.61" /* 2016 CU23, compliant */

struct fx {
	struct fake_journal j;
	struct fake_store fs;
	struct cp_clock clock;
	struct cp_state st;
	struct fake_sub sub;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	f->clock.test = true;
	f->clock.test_now = T0;
	f->sub.j = &f->j;
	fake_store_init(&f->fs, &f->j);
	fake_state(&f->st, &f->fs, &f->clock, &f->sub);
	fake_tenant(&f->st, 1, "Bear");
	f->j.n = 0;
	memset(f->sub.count, 0, sizeof(f->sub.count));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	cp_state_free(&f->st);
	fake_store_free(&f->fs);
	free(f);
	return 0;
}

static int apply(struct fx *f, uint32_t tenant, const char *fqdn, const char *build,
		 const char *source, enum tes_change *ch, char *err, size_t errlen)
{
	struct ctl_sighting s = fake_sighting(tenant, fqdn, build, source);

	return cp_state_apply_sighting(&f->st, &s, ch, err, errlen);
}

static const struct cp_server *server(struct fx *f, uint32_t tenant, const char *fqdn)
{
	return cp_server_at(&f->st.tab, cp_server_find(&f->st.tab, tenant, fqdn));
}

static void test_first_detection_durable_then_memory_then_note(void **state)
{
	struct fx *f = *state;
	enum tes_change ch;
	char msg[256] = "";
	int put, note;
	const struct store_server *row;

	assert_int_equal(apply(f, 1, "EX1.bear.local", OLD, "198.51.100.7", &ch, msg, sizeof(msg)),
			 0);
	assert_int_equal(ch, TES_CHANGE_FIRST);
	put = fake_journal_find(&f->j, "put_server 1 EX1.bear.local", 0);
	note = fake_journal_find(&f->j, "note server EX1.bear.local first_detection", 0);
	assert_true(put >= 0);
	assert_true(note > put);
	/* at the store call memory did not have it yet; at the note it did */
	assert_false(f->fs.in_memory_at_put);
	assert_true(f->sub.server_in_memory);
	row = fake_store_server(&f->fs, 1, "ex1.bear.local");
	assert_non_null(row);
	assert_int_equal(row->s.first_detected, T0);
	assert_int_equal(row->stage_logged, 1);
	assert_int_equal(row->status_logged, TES_STATUS_REPORTING);
	assert_non_null(server(f, 1, "ex1.BEAR.local"));
	assert_string_equal(f->sub.last_fields, "{\"detected_at\":1704067200}");
	assert_int_equal(f->st.counts.first, 1);
	assert_int_equal(f->st.counts.sightings_by_class[CP_SIGHT_VULNERABLE], 1);
	assert_int_equal(f->sub.count[CP_NOTE_SERVER], 1);
}

static void test_store_failure_leaves_nothing(void **state)
{
	struct fx *f = *state;
	enum tes_change ch;
	char msg[256] = "";

	f->fs.fail = "put_server";
	assert_int_equal(apply(f, 1, "EX1.bear.local", OLD, NULL, &ch, msg, sizeof(msg)), -1);
	assert_string_equal(msg, "tescontrol could not store the change; send it again");
	assert_null(server(f, 1, "EX1.bear.local"));
	assert_int_equal(f->sub.count[CP_NOTE_SERVER], 0);
	assert_int_equal(f->st.counts.store_errors, 1);
	assert_int_equal(f->st.counts.sightings_refused, 1);
	assert_int_equal(f->st.counts.first, 0);
	/* sent again, it is a first detection like any */
	assert_int_equal(apply(f, 1, "EX1.bear.local", OLD, NULL, &ch, msg, sizeof(msg)), 0);
	assert_int_equal(ch, TES_CHANGE_FIRST);
	assert_non_null(fake_store_server(&f->fs, 1, "EX1.bear.local"));
}

static void test_refusals(void **state)
{
	struct fx *f = *state;
	enum tes_change ch;
	char msg[256] = "";

	assert_int_equal(apply(f, 9, "EX1.nobody.local", OLD, NULL, &ch, msg, sizeof(msg)), -1);
	assert_string_equal(msg, "unknown tenant 9");
	assert_int_equal(apply(f, 1, "", OLD, NULL, &ch, msg, sizeof(msg)), -1);
	assert_string_equal(msg, "invalid server name");
	assert_int_equal(f->st.counts.sightings_refused, 2);
	assert_int_equal(f->j.n, 0); /* nothing stored, nobody told */
}

static void test_resolution_and_seen(void **state)
{
	struct fx *f = *state;
	enum tes_change ch;
	char msg[256];
	unsigned puts;

	assert_int_equal(apply(f, 1, "EX1.bear.local", OLD, "198.51.100.7", &ch, msg, sizeof(msg)),
			 0);
	/* seen again, same build and source, a minute later: a lazy write,
	 * nothing announced */
	f->clock.test_now += 60;
	puts = f->fs.nservers;
	f->j.n = 0;
	assert_int_equal(apply(f, 1, "EX1.bear.local", OLD, "198.51.100.7", &ch, msg, sizeof(msg)),
			 0);
	assert_int_equal(ch, TES_CHANGE_SEEN);
	assert_int_equal(f->j.n, 0);
	assert_true(server(f, 1, "EX1.bear.local")->dirty);
	assert_int_equal(cp_state_flush(&f->st), 0);
	assert_string_equal(f->j.line[0], "begin");
	assert_string_equal(f->j.line[1], "put_server 1 EX1.bear.local");
	assert_string_equal(f->j.line[2], "commit");
	assert_int_equal(fake_store_server(&f->fs, 1, "EX1.bear.local")->s.last_seen, T0 + 60);
	assert_int_equal(f->fs.nservers, puts);
	/* a new source is announced at once, and written lazily */
	f->j.n = 0;
	assert_int_equal(apply(f, 1, "EX1.bear.local", OLD, "198.51.100.8", &ch, msg, sizeof(msg)),
			 0);
	assert_int_equal(ch, TES_CHANGE_SEEN);
	assert_string_equal(f->j.line[0], "note server EX1.bear.local -");
	assert_int_equal(f->j.n, 1);
	/* the compliant build resolves it, durably */
	f->j.n = 0;
	assert_int_equal(apply(f, 1, "EX1.bear.local", GOOD, "198.51.100.7", &ch, msg, sizeof(msg)),
			 0);
	assert_int_equal(ch, TES_CHANGE_RESOLVED);
	assert_string_equal(f->j.line[0], "put_server 1 EX1.bear.local");
	assert_string_equal(f->j.line[1], "note server EX1.bear.local resolved");
	assert_true(fake_store_server(&f->fs, 1, "EX1.bear.local")->s.resolved);
	assert_int_equal(f->st.counts.resolved, 1);
}

static void test_stale_server_seen_again_resumes(void **state)
{
	struct fx *f = *state;
	enum tes_change ch;
	char msg[256];
	struct cp_server *c;
	int resumed, announced;

	assert_int_equal(apply(f, 1, "EX1.bear.local", OLD, "198.51.100.7", &ch, msg, sizeof(msg)),
			 0);
	/* what escalation would have announced after stale_after */
	c = cp_server_at(&f->st.tab, cp_server_find(&f->st.tab, 1, "EX1.bear.local"));
	c->v.status_logged = TES_STATUS_STALE;
	f->clock.test_now = T0 + 130 * DAY;
	f->j.n = 0;
	assert_int_equal(apply(f, 1, "EX1.bear.local", OLD, "198.51.100.7", &ch, msg, sizeof(msg)),
			 0);
	assert_int_equal(ch, TES_CHANGE_SEEN);
	resumed = fake_journal_find(&f->j, "note resumed EX1.bear.local", 0);
	announced = fake_journal_find(&f->j, "note server EX1.bear.local", 0);
	assert_true(resumed >= 0);
	assert_true(announced > resumed);
}

static void test_lookups(void **state)
{
	struct fx *f = *state;
	enum tes_change ch;
	char msg[256];
	const struct cp_server *c;
	unsigned stage;
	enum tes_status status;

	assert_int_equal(apply(f, 1, "EX1.bear.local", OLD, "198.51.100.7", &ch, msg, sizeof(msg)),
			 0);
	c = server(f, 1, "EX1.bear.local");
	/* the server-to-tenant lookup */
	assert_string_equal(cp_state_server_tenant(&f->st, &c->v.s)->name, "Bear");
	{
		struct tes_server s0 = c->v.s;

		s0.tenant_id = 0;
		assert_null(cp_state_server_tenant(&f->st, &s0));
	}
	cp_state_server_view(&f->st, &c->v.s, T0, &stage, &status);
	assert_int_equal(stage, 1);
	assert_int_equal(status, TES_STATUS_REPORTING);
	cp_state_server_view(&f->st, &c->v.s, T0 + 31 * DAY, &stage, &status);
	assert_int_equal(stage, 2);
	assert_int_equal(status, TES_STATUS_THROTTLING);
	/* the next thing due: stage 2 on day 30 */
	assert_int_equal(cp_state_next_event(&f->st, &c->v.s, T0), T0 + 30 * DAY);
	/* never now or before */
	assert_true(cp_state_next_event(&f->st, &c->v.s, T0 + 5000 * DAY) > T0 + 5000 * DAY);
	assert_int_equal(cp_state_count_servers(&f->st, 1), 1);
	assert_int_equal(cp_state_count_servers(&f->st, 2), 0);
	/* the probe interval (60 min) is below an hour: it sets the granularity */
	assert_int_equal(cp_state_seen_granularity(&f->st), 3600);
	f->st.policy.probe_interval_min = 15;
	assert_int_equal(cp_state_seen_granularity(&f->st), 900);
}

static void test_forget_and_reset(void **state)
{
	struct fx *f = *state;
	enum tes_change ch;
	char msg[256], err[256];
	json_t *who = json_pack("{s:i, s:i, s:i}", "uid", 0, "gid", 0, "pid", 42);

	assert_int_equal(apply(f, 1, "EX1.bear.local", OLD, "198.51.100.7", &ch, msg, sizeof(msg)),
			 0);
	assert_int_equal(apply(f, 1, "EX2.bear.local", OLD, "198.51.100.8", &ch, msg, sizeof(msg)),
			 0);
	f->j.n = 0;
	cp_state_forget(&f->st, cp_server_find(&f->st.tab, 1, "EX1.bear.local"), "forgotten");
	assert_string_equal(f->j.line[0], "note server_gone EX1.bear.local forgotten");
	assert_false(f->sub.server_in_memory); /* gone before anyone hears of it */
	/* the row goes with the next flush */
	assert_non_null(fake_store_server(&f->fs, 1, "EX1.bear.local"));
	assert_int_equal(cp_state_flush(&f->st), 0);
	assert_null(fake_store_server(&f->fs, 1, "EX1.bear.local"));

	f->j.n = 0;
	assert_int_equal(cp_state_reset_server(&f->st,
					       cp_server_find(&f->st.tab, 1, "EX2.bear.local"), who,
					       err, sizeof(err)),
			 0);
	assert_string_equal(f->j.line[0], "delete_server 1 EX2.bear.local");
	assert_string_equal(f->j.line[1], "note server_gone EX2.bear.local reset");
	assert_false(f->sub.server_in_memory);
	assert_non_null(strstr(f->sub.last_fields, "{\"uid\":0,\"gid\":0,\"pid\":42,\"before\":"
						   "{\"fqdn\":\"EX2.bear.local\""));
	assert_non_null(strstr(f->sub.last_fields, "\"after\":null}"));
	assert_int_equal(f->st.counts.resets, 1);

	/* a store that refuses keeps the server */
	assert_int_equal(apply(f, 1, "EX3.bear.local", OLD, NULL, &ch, msg, sizeof(msg)), 0);
	f->fs.fail = "delete_server";
	assert_int_equal(cp_state_reset_server(&f->st,
					       cp_server_find(&f->st.tab, 1, "EX3.bear.local"), who,
					       err, sizeof(err)),
			 -1);
	assert_string_equal(err, "could not store the reset: fake delete_server failure");
	assert_non_null(server(f, 1, "EX3.bear.local"));
	json_decref(who);
}

static void test_tenants(void **state)
{
	struct fx *f = *state;
	struct tes_tenant t;
	enum tes_change ch;
	char msg[256], err[256];
	size_t n = 99;
	int gone, tgone;

	/* a change: stored, kept, notified with before and after */
	t = *cp_tenant_find(&f->st.tab, 1);
	snprintf(t.name, sizeof(t.name), "Bear2");
	f->j.n = 0;
	assert_int_equal(cp_state_put_tenant(&f->st, &t, NULL, err, sizeof(err)), 0);
	assert_string_equal(f->j.line[0], "put_tenant 1");
	assert_string_equal(f->j.line[1], "note tenant 1 tenant_change");
	assert_non_null(strstr(f->sub.last_fields, "\"uid\":null,\"gid\":null,\"pid\":null"));
	assert_string_equal(cp_tenant_find(&f->st.tab, 1)->name, "Bear2");
	/* refused by the store: nothing changes */
	snprintf(t.name, sizeof(t.name), "Bear3");
	f->fs.fail = "put_tenant";
	assert_int_equal(cp_state_put_tenant(&f->st, &t, NULL, err, sizeof(err)), -1);
	assert_string_equal(cp_tenant_find(&f->st.tab, 1)->name, "Bear2");

	/* deleted with its servers, in one transaction; the servers' notes
	 * first, then the tenant's */
	assert_int_equal(apply(f, 1, "EX1.bear.local", OLD, NULL, &ch, msg, sizeof(msg)), 0);
	assert_int_equal(apply(f, 1, "EX2.bear.local", OLD, NULL, &ch, msg, sizeof(msg)), 0);
	f->fs.fail = "commit";
	assert_int_equal(cp_state_delete_tenant(&f->st, 1, NULL, &n, err, sizeof(err)), -1);
	assert_non_null(cp_tenant_find(&f->st.tab, 1));
	assert_int_equal(cp_state_count_servers(&f->st, 1), 2);
	f->j.n = 0;
	assert_int_equal(cp_state_delete_tenant(&f->st, 1, NULL, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 2);
	assert_string_equal(f->j.line[0], "begin");
	gone = fake_journal_find(&f->j, "note server_gone", 0);
	tgone = fake_journal_find(&f->j, "note tenant_gone 1 tenant_delete", 0);
	assert_true(gone > fake_journal_find(&f->j, "commit", 0));
	assert_true(tgone > gone);
	assert_non_null(strstr(f->sub.last_fields, "\"servers_deleted\":2"));
	assert_null(cp_tenant_find(&f->st.tab, 1));
	assert_int_equal(f->fs.nservers, 0);
	assert_int_equal(f->fs.ntenants, 0);
}

static void test_tenant_cap(void **state)
{
	struct fx *f = *state;
	enum tes_change ch;
	char msg[256];

	f->st.policy.servers_per_tenant = 1;
	assert_int_equal(apply(f, 1, "EX1.bear.local", OLD, NULL, &ch, msg, sizeof(msg)), 0);
	/* the tenant reached its cap: the gateways are told */
	assert_true(cp_tenant_find(&f->st.tab, 1)->at_server_cap);
	assert_int_equal(f->sub.count[CP_NOTE_TENANT], 1);
	assert_int_equal(apply(f, 1, "EX2.bear.local", OLD, NULL, &ch, msg, sizeof(msg)), 0);
	assert_int_equal(ch, TES_CHANGE_NONE);
	assert_null(server(f, 1, "EX2.bear.local"));
	assert_int_equal(f->st.counts.not_tracked, 1);
}

static void test_untrusted_bounded(void **state)
{
	struct fx *f = *state;
	enum tes_change ch;
	char msg[256];

	/* scope connectors: mail over no connector is counted, not kept */
	assert_int_equal(apply(f, 0, "u1.example", OLD, "203.0.113.1", &ch, msg, sizeof(msg)), 0);
	assert_int_equal(f->st.counts.untrusted_ignored, 1);
	assert_int_equal(f->st.tab.nlive, 0);
	/* scope all: a bounded table, written lazily, the least recently seen
	 * evicted, without an event log line */
	f->st.policy.scope = TES_SCOPE_ALL;
	f->st.policy.untrusted_servers = 2;
	f->st.policy.untrusted_per_prefix = 1;
	assert_int_equal(apply(f, 0, "u1.example", OLD, "203.0.113.1", &ch, msg, sizeof(msg)), 0);
	assert_int_equal(ch, TES_CHANGE_FIRST);
	assert_int_equal(fake_journal_find(&f->j, "put_server", 0), -1);
	assert_int_equal(apply(f, 0, "u2.example", OLD, "203.0.113.2", &ch, msg, sizeof(msg)), 0);
	assert_null(server(f, 0, "u1.example")); /* same /24: one per prefix */
	assert_int_equal(apply(f, 0, "u3.example", OLD, "203.0.114.3", &ch, msg, sizeof(msg)), 0);
	assert_int_equal(apply(f, 0, "u4.example", OLD, "203.0.115.4", &ch, msg, sizeof(msg)), 0);
	assert_null(server(f, 0, "u2.example")); /* two in all */
	assert_non_null(server(f, 0, "u3.example"));
	assert_non_null(server(f, 0, "u4.example"));
	assert_int_equal(f->st.counts.untrusted_evicted, 2);
	assert_int_equal(fake_journal_find(&f->j, "note server_gone u1.example -", 0) >= 0, 1);
	assert_int_equal(cp_state_flush(&f->st), 0);
	assert_non_null(fake_store_server(&f->fs, 0, "u4.example"));
}

static void test_subscribers_in_order(void **state)
{
	struct fx *f = *state;
	struct fake_sub second = { .j = &f->j };
	enum tes_change ch;
	char msg[256];

	assert_int_equal(cp_state_subscribe(&f->st, fake_sub_on_note, &second), 0);
	f->j.n = 0;
	assert_int_equal(apply(f, 1, "EX1.bear.local", OLD, NULL, &ch, msg, sizeof(msg)), 0);
	assert_int_equal(f->j.n, 3);
	assert_string_equal(f->j.line[1], f->j.line[2]); /* both heard it, in turn */
	while (cp_state_subscribe(&f->st, fake_sub_on_note, &second) == 0)
		;
	assert_int_equal(f->st.nsubs, CP_STATE_SUBSCRIBERS_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_first_detection_durable_then_memory_then_note,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_failure_leaves_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resolution_and_seen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_server_seen_again_resumes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_lookups, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forget_and_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tenants, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tenant_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_untrusted_bounded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_subscribers_in_order, setup, teardown),
	};

	cp_log_init(CP_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
