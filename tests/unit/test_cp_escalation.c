/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The control plane's escalation room (controlplane/escalation/): due
 * changes announced when the test clock passes them (each stage once, with
 * the stage it came from), the clock's moves and refusals, ageing to Stale
 * and to forgotten, the reschedule a sighting asks for, and the real-time
 * timer's deadline.  The store is the fake of cp_fakes.c; the sinks are a
 * journalling subscriber.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "controlplane/escalation/escalation.h"
#include "controlplane/log.h"
#include "cp_fakes.h"

#define T0 INT64_C(1704067200) /* 2024-01-01 */
#define DAY 86400
#define OLD "15.1.2507.35" /* 2016 CU23, out of date */

struct fx {
	struct fake_journal j;
	struct fake_store fs;
	struct cp_clock clock;
	struct cp_state st;
	struct fake_sub sub;
	struct cp_loop loop;
	struct cp_esc esc;
};

static int setup_with(void **state, bool test_clock, int64_t now)
{
	struct fx *f = calloc(1, sizeof(*f));

	f->clock.test = test_clock;
	f->clock.test_now = now;
	f->sub.j = &f->j;
	fake_store_init(&f->fs, &f->j);
	fake_state(&f->st, &f->fs, &f->clock, &f->sub);
	assert_int_equal(cp_loop_init(&f->loop), 0);
	assert_int_equal(esc_init(&f->esc, &f->st, &f->clock, &f->loop), 0);
	/* after the sinks, as main.c does */
	assert_int_equal(cp_state_subscribe(&f->st, esc_on_note, &f->esc), 0);
	esc_evaluate_all(&f->esc, "start-up");
	fake_tenant(&f->st, 1, "Bear");
	f->j.n = 0;
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_with(state, true, T0);
}

static int setup_realtime(void **state)
{
	return setup_with(state, false, 0);
}

static int teardown(void **state)
{
	struct fx *f = *state;

	esc_fini(&f->esc);
	cp_loop_fini(&f->loop);
	cp_state_free(&f->st);
	fake_store_free(&f->fs);
	free(f);
	return 0;
}

static uint32_t detect(struct fx *f, const char *fqdn, int64_t when)
{
	struct ctl_sighting s = fake_sighting(1, fqdn, OLD, "198.51.100.7");
	enum tes_change ch;
	char msg[256];

	s.time = when;
	assert_int_equal(cp_state_apply_sighting(&f->st, &s, &ch, msg, sizeof(msg)), 0);
	return cp_server_find(&f->st.tab, 1, fqdn);
}

static unsigned count_lines(const struct fake_journal *j, const char *prefix)
{
	unsigned n = 0;

	for (unsigned i = 0; i < j->n; i++)
		n += strncmp(j->line[i], prefix, strlen(prefix)) == 0;
	return n;
}

static void test_due_stage_changes(void **state)
{
	struct fx *f = *state;
	char msg[256];
	uint32_t slot = detect(f, "EX1.bear.local", 0);
	const struct cp_server *c = cp_server_at(&f->st.tab, slot);

	/* the sighting asked escalation to queue the server's next change */
	assert_int_equal(c->next_change, T0 + 30 * DAY);
	f->j.n = 0;
	/* a day before stage 2: nothing due */
	assert_int_equal(esc_clock_move(&f->esc, true, 29 * DAY, msg, sizeof(msg)), 0);
	assert_string_equal(f->j.line[0], "note clock - -");
	assert_int_equal(count_lines(&f->j, "note server "), 0);
	assert_int_equal(f->esc.counts.escalations_due, 0);
	/* stage 2 falls due: announced once, with where it came from */
	assert_int_equal(esc_clock_move(&f->esc, true, DAY, msg, sizeof(msg)), 0);
	assert_int_equal(count_lines(&f->j, "note server EX1.bear.local stage_change"), 1);
	assert_true(fake_journal_find(&f->j, "note clock", 0) <
		    fake_journal_find(&f->j, "note server", 0));
	assert_string_equal(
		f->sub.last_fields,
		"{\"from_stage\":1,\"from_status\":\"Reporting\",\"reason\":\"test clock "
		"moved\"}");
	assert_int_equal(c->v.stage_logged, 2);
	assert_int_equal(c->v.status_logged, TES_STATUS_THROTTLING);
	assert_int_equal(f->esc.counts.stage_entered[2], 1);
	assert_int_equal(f->esc.counts.status_entered[TES_STATUS_THROTTLING], 1);
	assert_int_equal(f->esc.counts.escalations_due, 1);
	assert_int_equal(c->next_change, T0 + 40 * DAY);
	/* what was announced is written with the next flush, not at once */
	assert_int_equal(fake_store_server(&f->fs, 1, "EX1.bear.local")->stage_logged, 1);
	assert_int_equal(cp_state_flush(&f->st), 0);
	assert_int_equal(fake_store_server(&f->fs, 1, "EX1.bear.local")->stage_logged, 2);
	/* several stages at once: one announcement from 2 to the stage now */
	f->j.n = 0;
	assert_int_equal(esc_clock_move(&f->esc, true, 61 * DAY, msg, sizeof(msg)), 0);
	assert_int_equal(count_lines(&f->j, "note server EX1.bear.local stage_change"), 1);
	assert_non_null(strstr(f->sub.last_fields, "\"from_stage\":2"));
	assert_int_equal(c->v.stage_logged, 8);
	assert_int_equal(c->v.status_logged, TES_STATUS_BLOCKING);
}

static void test_clock_refusals_and_set_back(void **state)
{
	struct fx *f = *state;
	char msg[256];
	json_t *j;
	uint32_t slot = detect(f, "EX1.bear.local", 0);

	assert_int_equal(esc_clock_move(&f->esc, true, -1, msg, sizeof(msg)), -1);
	assert_string_equal(msg, "cannot advance by -1 seconds");
	assert_int_equal(esc_clock_move(&f->esc, false, TES_TIME_MAX + 1, msg, sizeof(msg)), -1);
	assert_string_equal(msg, "253402300800 is not a time between 0 and 253402300799");
	assert_int_equal(f->clock.test_now, T0);
	assert_int_equal(esc_clock_move(&f->esc, true, 35 * DAY, msg, sizeof(msg)), 0);
	assert_int_equal(cp_server_at(&f->st.tab, slot)->v.stage_logged, 2);
	/* set back: every server is evaluated at the new now */
	f->j.n = 0;
	assert_int_equal(esc_clock_move(&f->esc, false, T0 + DAY, msg, sizeof(msg)), 0);
	assert_int_equal(cp_server_at(&f->st.tab, slot)->v.stage_logged, 1);
	assert_non_null(strstr(f->sub.last_fields, "\"reason\":\"test clock set back\""));
	j = esc_clock_json(&f->esc);
	assert_int_equal(json_integer_value(json_object_get(j, "now")), T0 + DAY);
	assert_string_equal(json_string_value(json_object_get(j, "now_iso")),
			    "2024-01-02T00:00:00Z");
	assert_true(json_is_true(json_object_get(j, "test_clock")));
	json_decref(j);
}

static void test_ageing(void **state)
{
	struct fx *f = *state;
	char msg[256];
	uint32_t slot = detect(f, "EX1.bear.local", 0);

	/* stale_after 120 days without a sighting */
	assert_int_equal(esc_clock_move(&f->esc, true, 121 * DAY, msg, sizeof(msg)), 0);
	assert_int_equal(cp_server_at(&f->st.tab, slot)->v.status_logged, TES_STATUS_STALE);
	assert_int_equal(f->esc.counts.status_entered[TES_STATUS_STALE], 1);
	/* forget_after 365 days: gone from memory, its row with the flush */
	f->j.n = 0;
	assert_int_equal(esc_clock_move(&f->esc, true, 245 * DAY, msg, sizeof(msg)), 0);
	assert_int_equal(count_lines(&f->j, "note server_gone EX1.bear.local forgotten"), 1);
	assert_null(cp_server_at(&f->st.tab, slot));
	assert_int_equal(f->esc.counts.forgotten, 1);
	assert_int_equal(cp_state_flush(&f->st), 0);
	assert_null(fake_store_server(&f->fs, 1, "EX1.bear.local"));
}

static void test_pause_evaluates_the_tenant(void **state)
{
	struct fx *f = *state;
	char msg[256], err[256];
	struct tes_pause p;
	unsigned left;
	uint32_t slot = detect(f, "EX1.bear.local", 0);
	struct tes_tenant *t = cp_tenant_find(&f->st.tab, 1);

	assert_int_equal(esc_clock_move(&f->esc, true, 35 * DAY, msg, sizeof(msg)), 0);
	assert_int_equal(tes_pause_add(&t->pause, &f->st.policy, f->clock.test_now, 5, &p, &left),
			 TES_PAUSE_OK);
	assert_int_equal(cp_state_set_pause(&f->st, 1, &p, "pause", NULL, err, sizeof(err)), 0);
	f->j.n = 0;
	esc_evaluate_tenant(&f->esc, 1, "pause");
	assert_int_equal(count_lines(&f->j, "note server EX1.bear.local status_change"), 1);
	assert_int_equal(cp_server_at(&f->st.tab, slot)->v.status_logged, TES_STATUS_PAUSED);
	/* every evaluation tells the sinks a verdict may have moved */
	assert_int_equal(count_lines(&f->j, "note evaluated EX1.bear.local"), 1);
}

static void test_realtime_timer_deadline(void **state)
{
	struct fx *f = *state;
	int64_t now = (int64_t)time(NULL);
	uint32_t slot = detect(f, "EX1.bear.local", 0);

	/* the catalog's next rule date may come first (2026-09-01): the timer
	 * is set to the earlier of the two */
	(void)now;
	assert_int_equal(f->esc.armed_due,
			 cp_server_at(&f->st.tab, slot)->next_change < f->esc.catalog_due
				 ? cp_server_at(&f->st.tab, slot)->next_change
				 : f->esc.catalog_due);
	assert_true(f->esc.armed_due > now);
	assert_true(f->esc.counts.timer_armed >= 1);
}

static void test_test_clock_never_arms(void **state)
{
	struct fx *f = *state;

	detect(f, "EX1.bear.local", 0);
	assert_int_equal(f->esc.armed_due, INT64_MAX);
	assert_int_equal(f->esc.counts.timer_armed, 0);
}

static void test_refused_without_test_clock(void **state)
{
	struct fx *f = *state;
	char msg[256];

	assert_int_equal(esc_clock_move(&f->esc, true, 10, msg, sizeof(msg)), -1);
	assert_string_equal(msg, "the clock is the system clock; only a tescontrol started with"
				 " --test-clock (and TES_ALLOW_TEST_CLOCK=1) can move it");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_due_stage_changes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clock_refusals_and_set_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ageing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pause_evaluates_the_tenant, setup, teardown),
		cmocka_unit_test_setup_teardown(test_test_clock_never_arms, setup, teardown),
		cmocka_unit_test_setup_teardown(test_realtime_timer_deadline, setup_realtime,
						teardown),
		cmocka_unit_test_setup_teardown(test_refused_without_test_clock, setup_realtime,
						teardown),
	};

	cp_log_init(CP_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
