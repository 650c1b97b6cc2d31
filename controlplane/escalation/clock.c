/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The daemon's notion of now.  In production it is the wall clock.  With
 * --test-clock (accepted only when TES_ALLOW_TEST_CLOCK=1 is in the
 * environment) it is a value that stands still until an admin "clock"
 * command moves it, so a test walks the 90-day timeline in seconds and
 * every step is deterministic.
 */
#include "controlplane/cp.h"

#include <stdio.h>
#include <time.h>

int64_t cp_now(const struct cp *cp)
{
	struct timespec ts;

	if (cp->test_clock)
		return cp->test_now;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec;
}

json_t *cp_clock_json(const struct cp *cp)
{
	char iso[40];
	int64_t now = cp_now(cp);

	tes_time_format(now, cp->policy.utc_offset_min, iso, sizeof(iso));
	return json_pack("{s:I, s:s, s:b}", "now", (json_int_t)now, "now_iso", iso, "test_clock",
			 cp->test_clock);
}

int cp_clock_move(struct cp *cp, bool advance, int64_t seconds, char *msg, size_t len)
{
	int64_t old = cp->test_now, target;
	char iso[40];

	if (!cp->test_clock) {
		snprintf(msg, len,
			 "the clock is the system clock; only a tescontrol started with"
			 " --test-clock (and TES_ALLOW_TEST_CLOCK=1) can move it");
		return -1;
	}
	if (advance) {
		if (seconds < 0 || seconds > TES_TIME_MAX - old) {
			snprintf(msg, len, "cannot advance by %lld seconds", (long long)seconds);
			return -1;
		}
		target = old + seconds;
	} else {
		if (seconds < 0 || seconds > TES_TIME_MAX) {
			snprintf(msg, len, "%lld is not a time between 0 and %lld",
				 (long long)seconds, (long long)TES_TIME_MAX);
			return -1;
		}
		target = seconds;
	}
	cp->test_now = target;
	tes_time_format(target, cp->policy.utc_offset_min, iso, sizeof(iso));
	cp_warn("test clock: now %s (%lld, %+lld s)", iso, (long long)target,
		(long long)(target - old));
	/* Gateways that follow the test clock hear of the move before the
	 * stage changes it causes. */
	gw_broadcast(cp, ctl_clock_msg(target, true));
	if (target < old) {
		/* Backwards: queued changes are no longer the next ones. */
		cp_sched_clear(&cp->st);
		esc_evaluate_all(cp, "test clock set back");
	} else {
		esc_run_due(cp, "test clock moved");
	}
	return 0;
}
