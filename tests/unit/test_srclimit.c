/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dataplane/srclimit.c against a plain array of counts: random acquires
 * and releases over many keys in a small table (long probe chains, many
 * backward-shift deletions), the limit exact for every key throughout.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dataplane/srclimit.h"

#define KEYS 300
#define LIMIT 3

static void key_of(unsigned i, uint8_t key[16])
{
	memset(key, 0, 16);
	key[10] = key[11] = 0xff; /* an IPv4-mapped address, as the DPDK path makes */
	key[12] = 198;
	key[13] = 18;
	key[14] = (uint8_t)(i >> 8);
	key[15] = (uint8_t)i;
}

static void limit_is_exact(void **state)
{
	(void)state;
	/* room for KEYS * LIMIT connections: the table is as full as it gets */
	struct srclimit *s = srclimit_new(KEYS * LIMIT, LIMIT);
	assert_non_null(s);
	srclimit_set_share(s, false); /* the table alone: test_srclimit_share.c has the rest */
	unsigned count[KEYS] = { 0 };
	uint8_t key[16];
	srand(7);
	for (unsigned step = 0; step < 200000; step++) {
		unsigned i = (unsigned)rand() % KEYS;
		key_of(i, key);
		if (rand() % 2) {
			bool ok = srclimit_acquire(s, key);
			assert_int_equal(ok, count[i] < LIMIT);
			if (ok)
				count[i]++;
		} else if (count[i] > 0) {
			srclimit_release(s, key);
			count[i]--;
		}
	}
	/* every key still at its exact count: fill each to the limit */
	for (unsigned i = 0; i < KEYS; i++) {
		key_of(i, key);
		while (count[i] < LIMIT) {
			assert_true(srclimit_acquire(s, key));
			count[i]++;
		}
		assert_false(srclimit_acquire(s, key));
	}
	for (unsigned i = 0; i < KEYS; i++) {
		key_of(i, key);
		while (count[i]--)
			srclimit_release(s, key);
	}
	for (unsigned i = 0; i < KEYS; i++) { /* all gone: each takes LIMIT again */
		key_of(i, key);
		for (unsigned n = 0; n < LIMIT; n++)
			assert_true(srclimit_acquire(s, key));
		assert_false(srclimit_acquire(s, key));
	}
	srclimit_free(s);
}

static void limit_of_one(void **state)
{
	(void)state;
	struct srclimit *s = srclimit_new(4, 1);
	uint8_t a[16], b[16];
	srclimit_set_share(s, false);
	key_of(1, a);
	key_of(2, b);
	assert_true(srclimit_acquire(s, a));
	assert_false(srclimit_acquire(s, a));
	assert_true(srclimit_acquire(s, b));
	srclimit_release(s, a);
	assert_true(srclimit_acquire(s, a));
	srclimit_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(limit_is_exact),
		cmocka_unit_test(limit_of_one),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
