/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The test clock's moves (controlplane/clock.h): a test walks the 90-day
 * timeline in seconds, and every step runs what fell due, as the timer
 * would have.
 */
#include "controlplane/escalation/escalation.h"

#include <stdio.h>

#include "controlplane/log.h"

json_t *esc_clock_json(const struct cp_esc *e)
{
	char iso[40];
	int64_t now = cp_clock_now(e->clock);

	tes_time_format(now, e->st->policy.utc_offset_min, iso, sizeof(iso));
	return json_pack("{s:I, s:s, s:b}", "now", (json_int_t)now, "now_iso", iso, "test_clock",
			 e->clock->test);
}

int esc_clock_move(struct cp_esc *e, bool advance, int64_t seconds, char *err, size_t errlen)
{
	int64_t old = e->clock->test_now, target;
	struct cp_note n = { .kind = CP_NOTE_CLOCK, .slot = CP_NO_SLOT };
	char iso[40];

	if (!e->clock->test) {
		snprintf(err, errlen,
			 "the clock is the system clock; only a tescontrol started with"
			 " --test-clock (and TES_ALLOW_TEST_CLOCK=1) can move it");
		return -1;
	}
	if (advance) {
		if (seconds < 0 || seconds > TES_TIME_MAX - old) {
			snprintf(err, errlen, "cannot advance by %lld seconds", (long long)seconds);
			return -1;
		}
		target = old + seconds;
	} else {
		if (seconds < 0 || seconds > TES_TIME_MAX) {
			snprintf(err, errlen, "%lld is not a time between 0 and %lld",
				 (long long)seconds, (long long)TES_TIME_MAX);
			return -1;
		}
		target = seconds;
	}
	e->clock->test_now = target;
	tes_time_format(target, e->st->policy.utc_offset_min, iso, sizeof(iso));
	cp_warn("test clock: now %s (%lld, %+lld s)", iso, (long long)target,
		(long long)(target - old));
	/* Gateways that follow the test clock hear of the move before the
	 * stage changes it causes. */
	n.now = target;
	cp_state_emit(e->st, &n);
	if (target < old) {
		/* Backwards: queued changes are no longer the next ones. */
		cp_sched_clear(&e->st->tab);
		esc_evaluate_all(e, "test clock set back");
	} else {
		esc_run_due(e, "test clock moved");
	}
	return 0;
}
