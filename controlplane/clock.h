/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tescontrol's notion of now.  In production it is the wall clock.  With
 * --test-clock (accepted only when TES_ALLOW_TEST_CLOCK=1 is in the
 * environment) it is a value that stands still until an admin "clock"
 * command moves it (escalation/clock.c), so a test walks the 90-day
 * timeline in seconds and every step is deterministic.
 *
 * Every room reads the clock; only escalation moves it, and only main
 * creates it.
 *
 * Threads: the event loop's; nothing here is locked.
 */
#ifndef TES_CONTROLPLANE_CLOCK_H
#define TES_CONTROLPLANE_CLOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct cp_clock {
	bool test;        /* --test-clock: now is test_now */
	int64_t test_now; /* seconds since the epoch */
};

static inline int64_t cp_clock_now(const struct cp_clock *c)
{
	struct timespec ts;

	if (c->test)
		return c->test_now;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec;
}

#endif
