/* SPDX-License-Identifier: BSD-3-Clause */
/* Sighting coalescing (gateway/state/sightcoal.h): what goes to tescontrol, when,
 * and that no message is lost from the counts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/state/sightcoal.h"

#define WIN 1000

struct sink {
	unsigned n;
	uint64_t total; /* sum of counts */
	struct ctl_sighting last;
};

static void emit(void *arg, const struct ctl_sighting *s)
{
	struct sink *k = arg;
	k->n++;
	k->total += s->count ? s->count : 1;
	k->last = *s;
}

static struct ctl_sighting sg(const char *fqdn, uint8_t src_last, int64_t time)
{
	struct ctl_sighting s;
	const uint8_t a[4] = { 198, 18, 0, src_last };

	memset(&s, 0, sizeof(s));
	s.tenant_id = 7;
	snprintf(s.fqdn, sizeof(s.fqdn), "%s", fqdn);
	s.build = (struct ex_build){ { 15, 1, 2507, 6 } };
	s.family = EX_FAMILY_2016;
	s.cls = TES_BUILD_VULNERABLE;
	tes_addr_v4(&s.source, a);
	s.time = time;
	return s;
}

static void first_goes_out_rest_held_until_window_ends(void **state)
{
	(void)state;
	struct sightcoal *c = sightcoal_create(64, WIN);
	struct sink k = { 0 };
	assert_non_null(c);

	struct ctl_sighting s = sg("ex1.bear.local", 1, 100);
	assert_true(sightcoal_offer(c, &s, 0));
	assert_int_equal(s.count, 0); /* one message: no count on the wire */
	for (int i = 1; i <= 5; i++) {
		s = sg("ex1.bear.local", 1, 100 + i);
		assert_false(sightcoal_offer(c, &s, 10 * i));
	}
	/* nothing is due inside the window */
	assert_int_equal(sightcoal_flush(c, WIN - 1, false, emit, &k), 0);
	/* at its end: one sighting for the five, with the latest time */
	assert_int_equal(sightcoal_flush(c, WIN, false, emit, &k), 1);
	assert_int_equal(k.last.count, 5);
	assert_int_equal(k.last.time, 105);
	assert_string_equal(k.last.fqdn, "ex1.bear.local");
	/* the flush opened a new window: the next one is held again */
	s = sg("ex1.bear.local", 1, 200);
	assert_false(sightcoal_offer(c, &s, WIN + 1));
	/* and once that window is over, an offer carries what was held */
	s = sg("ex1.bear.local", 1, 150); /* older than the held one */
	assert_true(sightcoal_offer(c, &s, 2 * WIN));
	assert_int_equal(s.count, 2);
	assert_int_equal(s.time, 200);

	struct sightcoal_stats st;
	sightcoal_stats(c, &st);
	assert_int_equal(st.offered, 8);
	assert_int_equal(st.held, 6);
	sightcoal_free(c);
}

static void any_difference_in_the_key_goes_out_at_once(void **state)
{
	(void)state;
	struct sightcoal *c = sightcoal_create(64, WIN);
	struct ctl_sighting base = sg("ex1.bear.local", 1, 100), s;

	s = base;
	assert_true(sightcoal_offer(c, &s, 0));
	s = sg("ex1.bear.local", 2, 100); /* a new source */
	assert_true(sightcoal_offer(c, &s, 1));
	s = sg("ex2.bear.local", 1, 100); /* another server */
	assert_true(sightcoal_offer(c, &s, 2));
	s = base;
	s.build.v[3] = 7; /* a new build */
	assert_true(sightcoal_offer(c, &s, 3));
	s = base;
	s.cls = TES_BUILD_COMPLIANT; /* the catalog changed its mind */
	assert_true(sightcoal_offer(c, &s, 4));
	s = base;
	s.tenant_id = 8;
	assert_true(sightcoal_offer(c, &s, 5));
	s = base;
	s.source.family = TES_ADDR_NONE;
	memset(s.source.a, 0, sizeof(s.source.a));
	assert_true(sightcoal_offer(c, &s, 6));
	/* and the same again is held */
	s = base;
	assert_false(sightcoal_offer(c, &s, 7));
	sightcoal_free(c);
}

static void reset_emits_what_was_held_and_reopens_every_key(void **state)
{
	(void)state;
	struct sightcoal *c = sightcoal_create(64, WIN);
	struct sink k = { 0 };
	struct ctl_sighting s;

	s = sg("ex1.bear.local", 1, 100);
	assert_true(sightcoal_offer(c, &s, 0));
	s = sg("ex1.bear.local", 1, 101);
	assert_false(sightcoal_offer(c, &s, 1));
	s = sg("ex2.bear.local", 1, 100);
	assert_true(sightcoal_offer(c, &s, 2));
	assert_int_equal(sightcoal_reset(c, 3, emit, &k), 1);
	assert_int_equal(k.last.count, 1);
	assert_string_equal(k.last.fqdn, "ex1.bear.local");
	/* tescontrol changed something: the next of each key goes out now */
	s = sg("ex1.bear.local", 1, 102);
	assert_true(sightcoal_offer(c, &s, 4));
	assert_int_equal(s.count, 0);
	s = sg("ex2.bear.local", 1, 102);
	assert_true(sightcoal_offer(c, &s, 5));
	/* and a window runs again from there */
	s = sg("ex2.bear.local", 1, 103);
	assert_false(sightcoal_offer(c, &s, 6));
	sightcoal_free(c);
}

static void a_full_set_sends_instead_of_dropping(void **state)
{
	(void)state;
	/* one set of four ways: the fifth key has no room */
	struct sightcoal *c = sightcoal_create(1, WIN);
	struct sightcoal_stats st;
	char name[32];
	struct ctl_sighting s;

	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "ex%d.bear.local", i);
		s = sg(name, 1, 100);
		assert_true(sightcoal_offer(c, &s, i));
	}
	sightcoal_stats(c, &st);
	assert_int_equal(st.unrecorded, 1);
	/* unrecorded: its next sighting goes out too */
	s = sg("ex4.bear.local", 1, 100);
	assert_true(sightcoal_offer(c, &s, 10));
	/* once a key's window is over and it holds nothing, its way is reused */
	s = sg("ex4.bear.local", 1, 100);
	assert_true(sightcoal_offer(c, &s, WIN + 10));
	s = sg("ex4.bear.local", 1, 100);
	assert_false(sightcoal_offer(c, &s, WIN + 11));
	sightcoal_free(c);
}

/* Whatever the order and timing, the counts sent add up to the messages:
 * 200 000 offers of 40 keys over 200 windows, with flushes and resets. */
static struct sink run_mix(unsigned sets, uint64_t *offered_out)
{
	struct sightcoal *c = sightcoal_create(sets, WIN);
	struct sink k = { 0 };
	uint64_t offered = 0;
	uint32_t x = 12345;
	int64_t now = 0;
	char name[32];

	for (int i = 0; i < 200000; i++) {
		x = x * 1103515245u + 12345u;
		unsigned key = (x >> 16) % 40;
		now += (x >> 8) % 3;
		snprintf(name, sizeof(name), "ex%u.bear.local", key % 20);
		struct ctl_sighting s = sg(name, (uint8_t)(key / 20), now / 100);
		if ((x & 0xff) == 0)
			s.count = 3; /* a sighting that already stands for three */
		offered += s.count ? s.count : 1;
		if (sightcoal_offer(c, &s, now))
			emit(&k, &s);
		if ((x & 0x3ff) == 1)
			sightcoal_flush(c, now, false, emit, &k);
		if ((x & 0xffff) == 2)
			sightcoal_reset(c, now, emit, &k);
	}
	sightcoal_flush(c, now, true, emit, &k);
	/* nothing is left to flush */
	assert_int_equal(sightcoal_flush(c, now + 10 * WIN, true, emit, &k), 0);
	sightcoal_free(c);
	*offered_out = offered;
	return k;
}

static void counts_are_conserved(void **state)
{
	(void)state;
	uint64_t offered;
	/* 64 sets for 40 keys: room for all, so it coalesces */
	struct sink k = run_mix(64, &offered);
	assert_int_equal(k.total, offered);
	assert_true(k.n < offered / 10);
	/* 2 sets (8 ways) for 40 keys: most go out unrecorded, none is lost */
	k = run_mix(2, &offered);
	assert_int_equal(k.total, offered);
}

static void bad_parameters(void **state)
{
	(void)state;
	assert_null(sightcoal_create(0, WIN));
	assert_null(sightcoal_create(1, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(first_goes_out_rest_held_until_window_ends),
		cmocka_unit_test(any_difference_in_the_key_goes_out_at_once),
		cmocka_unit_test(reset_emits_what_was_held_and_reopens_every_key),
		cmocka_unit_test(a_full_set_sends_instead_of_dropping),
		cmocka_unit_test(counts_are_conserved),
		cmocka_unit_test(bad_parameters),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
