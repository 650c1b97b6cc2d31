/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Which sources the XDP drop list holds (controlplane/notify/xdpsel.c), a
 * pure function of the state: a source fronting only servers blocked all
 * hour is dropped, until a probe is due from it; one server on the source
 * that answers keeps it off; nothing under full_block = reply.  No maps, no
 * privileges: the state is built from sightings on a fake store.
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
#include "controlplane/notify/xdp.h"
#include "cp_fakes.h"

#define T0 INT64_C(1704067200) /* 2024-01-01 */
#define DAY 86400
#define OLD "15.1.2507.35"  /* 2016 CU23, out of date */
#define GOOD "15.1.2507.61" /* compliant */

struct fx {
	struct fake_journal j;
	struct fake_store fs;
	struct cp_clock clock;
	struct cp_state st;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	f->clock.test = true;
	f->clock.test_now = T0;
	fake_store_init(&f->fs, &f->j);
	fake_state(&f->st, &f->fs, &f->clock, NULL);
	fake_tenant(&f->st, 1, "Bear");
	f->st.policy.full_block = TES_FULL_BLOCK_DROP;
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

static void see(struct fx *f, const char *fqdn, const char *build, const char *source, int64_t when)
{
	struct ctl_sighting s = fake_sighting(1, fqdn, build, source);
	enum tes_change ch;
	char msg[256];

	s.time = when;
	if (strcmp(build, GOOD) == 0)
		s.cls = TES_BUILD_COMPLIANT;
	assert_int_equal(cp_state_apply_sighting(&f->st, &s, &ch, msg, sizeof(msg)), 0);
}

/* The selection at now, formatted and sorted: "198.51.100.7,198.51.100.8". */
static void selected(struct fx *f, int64_t now, char *out, size_t len)
{
	struct tes_addr *a;
	char list[16][64];
	long n = cp_xdp_select(&f->st, now, &a);

	assert_true(n >= 0 && n <= 16);
	for (long i = 0; i < n; i++)
		tes_addr_format(&a[i], list[i], sizeof(list[i]));
	free(a);
	qsort(list, (size_t)n, sizeof(list[0]), (int (*)(const void *, const void *))strcmp);
	out[0] = '\0';
	for (long i = 0; i < n; i++)
		snprintf(out + strlen(out), len - strlen(out), "%s%s", i ? "," : "", list[i]);
}

static void test_blocked_all_hour_is_dropped_until_a_probe_is_due(void **state)
{
	struct fx *f = *state;
	int64_t now = T0 + 91 * DAY;
	char got[1024];

	see(f, "EX1.bear.local", OLD, "198.51.100.7", 0);
	see(f, "EX2.bear.local", OLD, "198.51.100.8", 0);
	/* day 30: throttled some minutes, never a drop */
	selected(f, T0 + 31 * DAY, got, sizeof(got));
	assert_string_equal(got, "");
	/* stage 8 (day 90): blocked all hour; seen from there ten minutes ago */
	f->clock.test_now = now;
	see(f, "EX1.bear.local", OLD, "198.51.100.7", now - 600);
	see(f, "EX2.bear.local", OLD, "198.51.100.8", now - 600);
	selected(f, now, got, sizeof(got));
	assert_string_equal(got, "198.51.100.7,198.51.100.8");
	/* an hour after the last message from there a probe is due: let in */
	selected(f, now - 600 + 3600, got, sizeof(got));
	assert_string_equal(got, "");
	/* full_block = reply: the gateway refuses, nothing is dropped */
	f->st.policy.full_block = TES_FULL_BLOCK_REPLY;
	selected(f, now, got, sizeof(got));
	assert_string_equal(got, "");
}

static void test_a_server_that_answers_keeps_the_source(void **state)
{
	struct fx *f = *state;
	int64_t now = T0 + 91 * DAY;
	char got[1024];

	see(f, "EX1.bear.local", OLD, "198.51.100.7", 0);
	f->clock.test_now = now;
	see(f, "EX1.bear.local", OLD, "198.51.100.7", now - 600);
	/* a compliant server shares the address: its mail must get through */
	see(f, "OK.bear.local", GOOD, "198.51.100.7", now - 600);
	selected(f, now, got, sizeof(got));
	assert_string_equal(got, "");
	/* the same blocked server from an address it alone uses: that one is
	 * dropped, the shared one stays off */
	see(f, "EX1.bear.local", OLD, "198.51.100.9", now - 600);
	selected(f, now, got, sizeof(got));
	assert_string_equal(got, "198.51.100.9");
}

static void test_paused_tenant_is_not_dropped(void **state)
{
	struct fx *f = *state;
	int64_t now = T0 + 91 * DAY;
	struct tes_pause p;
	unsigned left;
	char got[1024], err[256];

	see(f, "EX1.bear.local", OLD, "198.51.100.7", 0);
	f->clock.test_now = now;
	see(f, "EX1.bear.local", OLD, "198.51.100.7", now - 600);
	assert_int_equal(tes_pause_add(&cp_tenant_find(&f->st.tab, 1)->pause, &f->st.policy, now, 2,
				       &p, &left),
			 TES_PAUSE_OK);
	assert_int_equal(cp_state_set_pause(&f->st, 1, &p, "pause", NULL, err, sizeof(err)), 0);
	selected(f, now, got, sizeof(got));
	assert_string_equal(got, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			test_blocked_all_hour_is_dropped_until_a_probe_is_due, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_server_that_answers_keeps_the_source, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_paused_tenant_is_not_dropped, setup, teardown),
	};

	cp_log_init(CP_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
