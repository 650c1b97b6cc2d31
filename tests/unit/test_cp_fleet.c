/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The fleet's merge (controlplane/state/fleet.c, cp_fleet_apply and
 * cp_fleet_merge_seen): what a sighting does to the record the shared
 * store holds, whatever order the appliances' sightings arrive in.  The
 * earliest first detection wins; a resolution is not undone by an older
 * sighting and a newer one starts a new clock with the resolution as its
 * floor; the earliest resolution wins; a catalog's re-classification
 * leaves the seen times alone; seen times are the latest and sources the
 * most recently seen four.  Every case is checked in both orders where the
 * order is what it is about.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "controlplane/state/state.h"

#define OLD "15.1.2507.35"  /* 2016 CU23, out of date */
#define GOOD "15.1.2507.61" /* 2016 CU23, compliant */

static struct tes_policy pol;

static int setup(void **state)
{
	(void)state;
	tes_policy_default(&pol);
	return 0;
}

static struct store_event ev(const char *build, bool vulnerable, int64_t when, const char *src)
{
	struct store_event e;

	memset(&e, 0, sizeof(e));
	e.tenant_id = 1;
	snprintf(e.fqdn, sizeof(e.fqdn), "ex1.contoso.local");
	assert_true(ex_build_from_str(build, &e.build));
	e.family = EX_FAMILY_2016;
	e.cls = vulnerable ? TES_BUILD_VULNERABLE : TES_BUILD_COMPLIANT;
	e.when = when;
	if (src)
		assert_true(tes_addr_parse(src, &e.source));
	return e;
}

/* The record after applying events in order, from nothing. */
static struct store_server run(const struct store_event *es, size_t n, const struct tes_tenant *t)
{
	struct store_server cur, out;
	bool have = false;

	memset(&cur, 0, sizeof(cur));
	for (size_t i = 0; i < n; i++) {
		cp_fleet_apply(have ? &cur : NULL, &es[i], t, &pol, &out);
		cur = out;
		have = true;
	}
	return cur;
}

static void test_first_detection_earliest_wins(void **state)
{
	struct store_event a = ev(OLD, true, 1000, "198.18.0.1");
	struct store_event b = ev(OLD, true, 400, "198.18.0.2");
	struct store_event ab[2] = { a, b }, ba[2] = { b, a };
	struct store_server x = run(ab, 2, NULL), y = run(ba, 2, NULL), out;

	(void)state;
	assert_int_equal(x.s.first_detected, 400);
	assert_int_equal(y.s.first_detected, 400);
	assert_false(x.s.resolved);
	/* seen times are the latest, whichever came first */
	assert_int_equal(x.s.last_seen, 1000);
	assert_int_equal(y.s.last_seen, 1000);
	assert_int_equal(x.s.nsources, 2);
	/* a later sighting of the same clock writes nothing now */
	assert_false(cp_fleet_apply(&x, &a, NULL, &pol, &out));
	assert_int_equal(out.s.first_detected, 400);
	/* the same second from two appliances: one date, nothing to write */
	assert_false(cp_fleet_apply(&x, &b, NULL, &pol, &out));
	/* an earlier one moves it, and says so */
	b.when = 300;
	assert_true(cp_fleet_apply(&x, &b, NULL, &pol, &out));
	assert_int_equal(out.s.first_detected, 300);
}

static void test_pause_base_follows_the_date(void **state)
{
	struct tes_tenant t;
	struct store_event a = ev(OLD, true, 20 * 86400, NULL);
	struct store_event b = ev(OLD, true, 5 * 86400, NULL);
	struct store_server cur, out;

	(void)state;
	memset(&t, 0, sizeof(t));
	t.id = 1;
	/* paused from day 10 to day 15 */
	t.pause.start = 10 * 86400;
	t.pause.end = 15 * 86400;
	cp_fleet_apply(NULL, &a, &t, &pol, &cur);
	assert_int_equal(cur.s.pause_base, 5 * 86400);
	assert_true(cp_fleet_apply(&cur, &b, &t, &pol, &out));
	assert_int_equal(out.s.first_detected, 5 * 86400);
	assert_int_equal(out.s.pause_base, 0);
}

static void test_resolution_not_undone_by_older(void **state)
{
	struct store_event det = ev(OLD, true, 100, NULL);
	struct store_event res = ev(GOOD, false, 200, NULL);
	struct store_event late = ev(OLD, true, 150, NULL); /* seen before the resolution */
	struct store_event newer = ev(OLD, true, 250, NULL);
	struct store_event seq1[3] = { det, res, late }, seq2[3] = { det, late, res };
	struct store_server x = run(seq1, 3, NULL), y = run(seq2, 3, NULL), out;

	(void)state;
	assert_true(x.s.resolved);
	assert_int_equal(x.s.resolved_at, 200);
	assert_int_equal(x.s.first_detected, 100);
	assert_true(y.s.resolved);
	assert_int_equal(y.s.resolved_at, 200);
	/* the latest build stays the compliant one: the late one is older */
	assert_int_equal(x.s.last_seen, 200);
	/* after the resolution: a new clock, with the resolution as its floor */
	assert_true(cp_fleet_apply(&x, &newer, NULL, &pol, &out));
	assert_false(out.s.resolved);
	assert_int_equal(out.s.first_detected, 250);
	assert_int_equal(out.floor, 200);
	/* an older sighting of the episode before cannot move it back */
	x = out;
	assert_false(cp_fleet_apply(&x, &late, NULL, &pol, &out));
	assert_int_equal(out.s.first_detected, 250);
	/* one between the resolution and the new clock does */
	late.when = 230;
	assert_true(cp_fleet_apply(&x, &late, NULL, &pol, &out));
	assert_int_equal(out.s.first_detected, 230);
	assert_int_equal(out.floor, 200);
}

static void test_earliest_resolution_wins(void **state)
{
	struct store_event det = ev(OLD, true, 100, NULL);
	struct store_event r1 = ev(GOOD, false, 300, NULL), r2 = ev(GOOD, false, 200, NULL);
	struct store_event before = ev(GOOD, false, 50, NULL);
	struct store_event s1[3] = { det, r1, r2 }, s2[3] = { det, r2, r1 };
	struct store_server x = run(s1, 3, NULL), y = run(s2, 3, NULL), out;

	(void)state;
	assert_int_equal(x.s.resolved_at, 200);
	assert_int_equal(y.s.resolved_at, 200);
	/* compliant before the clock started resolves nothing */
	x = run(&det, 1, NULL);
	assert_true(cp_fleet_apply(&x, &before, NULL, &pol, &out));
	assert_false(out.s.resolved);
	assert_int_equal(out.floor, 50);
}

static void test_compliant_first(void **state)
{
	struct store_event c = ev(GOOD, false, 100, NULL);
	struct store_event older = ev(OLD, true, 50, NULL), newer = ev(OLD, true, 150, NULL);
	struct store_server x = run(&c, 1, NULL), out;

	(void)state;
	assert_true(tes_server_compliant_only(&x.s));
	/* vulnerable before it was first seen compliant: detected then,
	 * resolved by the compliant sighting */
	assert_true(cp_fleet_apply(&x, &older, NULL, &pol, &out));
	assert_int_equal(out.s.first_detected, 50);
	assert_true(out.s.resolved);
	assert_int_equal(out.s.resolved_at, 100);
	/* vulnerable after: a first detection */
	assert_true(cp_fleet_apply(&x, &newer, NULL, &pol, &out));
	assert_false(out.s.resolved);
	assert_int_equal(out.s.first_detected, 150);
	/* an earlier compliant sighting moves "first seen" */
	c.when = 70;
	assert_true(cp_fleet_apply(&x, &c, NULL, &pol, &out));
	assert_int_equal(out.s.resolved_at, 70);
}

static void test_reclassify(void **state)
{
	struct store_event det = ev(OLD, true, 100, "198.18.0.1");
	struct store_event rc = ev(OLD, false, 500, NULL);
	struct store_server x = run(&det, 1, NULL), out;

	(void)state;
	rc.reclassify = true;
	assert_true(cp_fleet_apply(&x, &rc, NULL, &pol, &out));
	assert_true(out.s.resolved);
	assert_int_equal(out.s.resolved_at, 500);
	assert_int_equal(out.s.last_seen, 100); /* nothing was seen */
	assert_string_equal(out.s.fqdn, "ex1.contoso.local");
	/* an older re-classification does not move a clock */
	rc.cls = TES_BUILD_VULNERABLE;
	rc.when = 50;
	assert_false(cp_fleet_apply(&x, &rc, NULL, &pol, &out));
	assert_int_equal(out.s.first_detected, 100);
	/* nothing to re-classify when the store has no record */
	assert_false(cp_fleet_apply(NULL, &rc, NULL, &pol, &out));
}

static void test_merge_seen(void **state)
{
	struct store_event a = ev(OLD, true, 100, "198.18.0.1");
	struct store_server cur = run(&a, 1, NULL), mine = cur, out;
	const char *more[] = { "198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.5" };

	(void)state;
	assert_false(cp_fleet_merge_seen(&cur, &mine, &out));
	mine.s.last_seen = 900;
	assert_true(ex_build_from_str("15.1.2507.39", &mine.s.build));
	mine.s.nsources = 0;
	for (int i = 0; i < 4; i++) {
		assert_true(tes_addr_parse(more[i], &mine.s.sources[i]));
		mine.s.source_seen[i] = 200 + i;
		mine.s.nsources++;
	}
	assert_true(cp_fleet_merge_seen(&cur, &mine, &out));
	assert_int_equal(out.s.last_seen, 900);
	assert_int_equal(out.s.build.v[2], 2507);
	assert_int_equal(out.s.build.v[3], 39);
	/* five addresses: the least recently seen (198.18.0.1 at 100) went */
	assert_int_equal(out.s.nsources, 4);
	for (int i = 0; i < 4; i++) {
		char a4[32];

		tes_addr_format(&out.s.sources[i], a4, sizeof(a4));
		assert_string_equal(a4, more[i]);
	}
	/* the clock is the store's, whatever the copy says */
	mine.s.first_detected = 1;
	assert_true(cp_fleet_merge_seen(&cur, &mine, &out));
	assert_int_equal(out.s.first_detected, 100);
	/* an older copy changes nothing */
	assert_false(cp_fleet_merge_seen(&out, &cur, &mine));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_first_detection_earliest_wins, setup),
		cmocka_unit_test_setup(test_pause_base_follows_the_date, setup),
		cmocka_unit_test_setup(test_resolution_not_undone_by_older, setup),
		cmocka_unit_test_setup(test_earliest_resolution_wins, setup),
		cmocka_unit_test_setup(test_compliant_first, setup),
		cmocka_unit_test_setup(test_reclassify, setup),
		cmocka_unit_test_setup(test_merge_seen, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
