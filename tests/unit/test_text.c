/* SPDX-License-Identifier: BSD-3-Clause */
/* base/text.h: bounded string building, snprintf's results without it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/text.h"

static void digits(void **state)
{
	(void)state;
	char d[TES_U64_DIGITS];
	const uint64_t v[] = { 0, 9, 10, 4294967295u, 18446744073709551615ull };
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char want[32];
		int n = snprintf(want, sizeof(want), "%llu", (unsigned long long)v[i]);
		assert_int_equal(tes_u64_digits(d, v[i]), n);
		assert_memory_equal(d, want, (size_t)n);
	}
}

static void copy_is_snprintf_s(void **state)
{
	(void)state;
	const char *src[] = { "", "a", "hello", "exactly-8", "a longer string than the buffer" };
	for (size_t size = 1; size <= 12; size++) {
		for (size_t i = 0; i < sizeof(src) / sizeof(src[0]); i++) {
			char got[12], want[12];
			memset(got, 'x', sizeof(got));
			int w = snprintf(want, size, "%s", src[i]);
			size_t n = tes_str_copy(got, size, src[i]);
			assert_string_equal(got, want);
			assert_int_equal(n, (size_t)w < size ? (size_t)w : size - 1);
		}
	}
}

static void append_chains_and_cuts(void **state)
{
	(void)state;
	char b[16];
	size_t n = tes_str_copy(b, sizeof(b), "SIZE ");
	n = tes_str_append_u64(b, sizeof(b), n, 36700160);
	assert_string_equal(b, "SIZE 36700160");
	assert_int_equal(n, 13);
	n = tes_str_append(b, sizeof(b), n, " and more");
	assert_string_equal(b, "SIZE 36700160 a"); /* cut to 15 */
	assert_int_equal(n, 15);
	/* full: nothing more goes in, and it stays terminated */
	n = tes_str_append(b, sizeof(b), n, "x");
	assert_int_equal(n, 15);
	assert_string_equal(b, "SIZE 36700160 a");
	n = tes_str_append_u64(b, sizeof(b), n, 7);
	assert_int_equal(n, 15);
	/* a number cut like any text */
	n = tes_str_copy(b, 6, "ab");
	n = tes_str_append_u64(b, 6, n, 123456);
	assert_string_equal(b, "ab123");
	assert_int_equal(n, 5);
	/* a buffer of one octet holds the terminator alone */
	b[0] = 'x';
	assert_int_equal(tes_str_copy(b, 1, "abc"), 0);
	assert_string_equal(b, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(digits),
		cmocka_unit_test(copy_is_snprintf_s),
		cmocka_unit_test(append_chains_and_cuts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
