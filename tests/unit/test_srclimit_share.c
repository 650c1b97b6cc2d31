/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dataplane/srclimit.c's fair share: twenty sources that each take all they
 * may cannot fill the table, and a new source always finds a slot while one
 * is free; below half full the per-source limit is exact.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dataplane/srclimit.h"

#define MAX 1000
#define PER 50

static void key_of(unsigned i, uint8_t key[16])
{
	memset(key, 0, 16);
	key[10] = key[11] = 0xff;
	key[12] = 198;
	key[13] = 18;
	key[14] = (uint8_t)(i >> 8);
	key[15] = (uint8_t)i;
}

/* Round-robin, as a botnet of n sources opening connections at once would:
 * each source takes one more while any of them still can.  Returns the
 * total held; held[i] per source. */
static unsigned grab(struct srclimit *s, unsigned n, unsigned *held)
{
	uint8_t key[16];
	unsigned total = 0;
	bool any = true;
	while (any) {
		any = false;
		for (unsigned i = 0; i < n; i++) {
			key_of(i, key);
			if (srclimit_acquire(s, key)) {
				held[i]++;
				total++;
				any = true;
			}
		}
	}
	return total;
}

static void twenty_sources_leave_room(void **state)
{
	(void)state;
	unsigned held[21] = { 0 };
	uint8_t key[16];
	struct srclimit *s = srclimit_new(MAX, PER);
	assert_non_null(s);
	unsigned total = grab(s, 20, held);
	/* d = MAX / (2 * PER) = 10: they settle near MAX * d / (20 + d) free */
	assert_true(total < MAX);
	assert_true(MAX - total >= MAX * 10 / 30 - 20);
	for (unsigned i = 0; i < 20; i++)
		assert_true(held[i] >= 1 && held[i] < PER);
	/* a new source gets in, more than once */
	key_of(20, key);
	assert_true(srclimit_acquire(s, key));
	assert_true(srclimit_acquire(s, key));
	srclimit_free(s);

	/* the flat limit (share off) lets the same twenty fill every slot */
	memset(held, 0, sizeof(held));
	s = srclimit_new(MAX, PER);
	srclimit_set_share(s, false);
	assert_int_equal(grab(s, 20, held), MAX);
	key_of(20, key);
	assert_true(srclimit_acquire(s, key)); /* srclimit knows no global limit... */
	srclimit_free(s);
}

static void exact_below_half(void **state)
{
	(void)state;
	unsigned held[4] = { 0 };
	struct srclimit *s = srclimit_new(MAX, PER);
	/* 4 * 50 = 200 < 500: every source gets exactly PER */
	assert_int_equal(grab(s, 4, held), 4 * PER);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(held[i], PER);
	srclimit_free(s);
}

static void last_slot_goes_to_a_new_source(void **state)
{
	(void)state;
	uint8_t key[16];
	unsigned held = 0;
	struct srclimit *s = srclimit_new(10, 5);
	/* one source per slot up to 9 of 10 */
	for (unsigned i = 0; i < 9; i++) {
		key_of(i, key);
		assert_true(srclimit_acquire(s, key));
	}
	/* one free slot: a source that holds one already may not take it... */
	key_of(0, key);
	assert_false(srclimit_acquire(s, key));
	/* ...a source with none may */
	key_of(100, key);
	assert_true(srclimit_acquire(s, key));
	for (unsigned i = 0; i < 9; i++) {
		key_of(i, key);
		srclimit_release(s, key);
	}
	/* alone, source 100 (holding 1) takes its 5, the per-source limit; at
	 * half full the share (5 * 5 free / 5) is no more */
	key_of(100, key);
	held = 1;
	while (srclimit_acquire(s, key))
		held++;
	assert_int_equal(held, 5);
	key_of(101, key);
	assert_true(srclimit_acquire(s, key));
	srclimit_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(twenty_sources_leave_room),
		cmocka_unit_test(exact_below_half),
		cmocka_unit_test(last_slot_goes_to_a_new_source),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
