/* SPDX-License-Identifier: BSD-3-Clause */
/* Build numbers: parsing both forms Exchange writes, ordering, families. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "enforce/build.h"

static size_t parse(const char *s, struct ex_build *b)
{
	return ex_build_parse(s, strlen(s), b);
}

static void assert_build(const struct ex_build *b, uint32_t a, uint32_t c, uint32_t d, uint32_t e)
{
	assert_int_equal(b->v[0], a);
	assert_int_equal(b->v[1], c);
	assert_int_equal(b->v[2], d);
	assert_int_equal(b->v[3], e);
}

static void test_parse_short_form(void **state)
{
	struct ex_build b;

	(void)state;
	assert_int_equal(parse("15.2.1748.39", &b), 12);
	assert_build(&b, 15, 2, 1748, 39);
	assert_int_equal(parse("8.0.685.25", &b), 10);
	assert_build(&b, 8, 0, 685, 25);
	assert_int_equal(parse("0.0.0.0", &b), 7);
	assert_build(&b, 0, 0, 0, 0);
}

static void test_parse_zero_padded(void **state)
{
	struct ex_build a, b;

	(void)state;
	assert_int_equal(parse("15.02.1748.039", &a), 14);
	assert_int_equal(parse("15.2.1748.39", &b), 12);
	assert_int_equal(ex_build_cmp(&a, &b), 0);
	assert_int_equal(parse("14.03.0123.003", &a), 14);
	assert_build(&a, 14, 3, 123, 3);
	/* Ten digits is the widest field accepted, padding included. */
	assert_int_equal(parse("15.2.1748.0000000039", &a), 20);
	assert_build(&a, 15, 2, 1748, 39);
	assert_int_equal(parse("15.2.1748.00000000039", &a), 0);
}

static void test_parse_stops_at_delimiter(void **state)
{
	struct ex_build b;

	(void)state;
	/* Header text after the id: the build ends at the delimiter. */
	assert_int_equal(parse("15.1.2507.35; Thu, 6 Jun 2024", &b), 12);
	assert_build(&b, 15, 1, 2507, 35);
	assert_int_equal(parse("15.0.1497.2 via Frontend Transport", &b), 11);
	assert_int_equal(parse("15.2.1748.39)", &b), 12);
	/* The length bounds the parse, not the NUL. */
	assert_int_equal(ex_build_parse("15.2.1748.397", 12, &b), 12);
	assert_build(&b, 15, 2, 1748, 39);
	assert_int_equal(ex_build_parse("15.2.1748.39", 9, &b), 0);
}

static void test_parse_trailing_garbage(void **state)
{
	struct ex_build b = { { 1, 2, 3, 4 } };

	(void)state;
	assert_int_equal(parse("15.2.1748.39x", &b), 0);
	assert_int_equal(parse("15.2.1748.39Z", &b), 0);
	assert_int_equal(parse("15.2.1748.39.7", &b), 0);
	assert_int_equal(parse("15.2.1748.39.", &b), 0);
	/* A failed parse leaves the output alone. */
	assert_build(&b, 1, 2, 3, 4);

	assert_false(ex_build_from_str("15.2.1748.39 ", &b));
	assert_false(ex_build_from_str("15.2.1748.39;", &b));
	assert_false(ex_build_from_str(" 15.2.1748.39", &b));
	assert_false(ex_build_from_str("", &b));
	assert_true(ex_build_from_str("15.02.1748.039", &b));
	assert_build(&b, 15, 2, 1748, 39);
}

static void test_parse_overflow(void **state)
{
	struct ex_build b;

	(void)state;
	assert_int_equal(parse("15.2.1748.2147483647", &b), 20);
	assert_int_equal(b.v[3], 2147483647u);
	assert_int_equal(parse("15.2.1748.2147483648", &b), 0);
	assert_int_equal(parse("4294967296.2.1748.39", &b), 0);
	assert_int_equal(parse("15.2.99999999999.39", &b), 0);
}

static void test_parse_too_few_fields(void **state)
{
	struct ex_build b;

	(void)state;
	assert_int_equal(parse("", &b), 0);
	assert_int_equal(parse("15", &b), 0);
	assert_int_equal(parse("15.2", &b), 0);
	assert_int_equal(parse("15.2.1748", &b), 0);
	assert_int_equal(parse("15.2.1748.", &b), 0);
	assert_int_equal(parse("15.2..39", &b), 0);
	assert_int_equal(parse(".15.2.1748.39", &b), 0);
	assert_int_equal(parse("15.2.1748 39", &b), 0);
	assert_int_equal(parse("-15.2.1748.39", &b), 0);
	assert_int_equal(parse("+15.2.1748.39", &b), 0);
	assert_int_equal(parse("v15.2.1748.39", &b), 0);
}

static void test_cmp_numeric(void **state)
{
	struct ex_build a, b;

	(void)state;
	assert_true(ex_build_from_str("15.2.999.0", &a));
	assert_true(ex_build_from_str("15.2.1000.0", &b));
	assert_true(ex_build_cmp(&a, &b) < 0);
	assert_true(ex_build_cmp(&b, &a) > 0);
	assert_true(ex_build_from_str("15.1.2507.61", &a));
	assert_true(ex_build_from_str("15.1.2507.60", &b));
	assert_true(ex_build_cmp(&a, &b) > 0);
	assert_true(ex_build_from_str("8.3.517.0", &a));
	assert_true(ex_build_from_str("14.0.639.21", &b));
	assert_true(ex_build_cmp(&a, &b) < 0);
	assert_int_equal(ex_build_cmp(&a, &a), 0);
}

static void test_format_short(void **state)
{
	struct ex_build b;
	char buf[64];

	(void)state;
	assert_true(ex_build_from_str("15.02.1748.039", &b));
	assert_int_equal(ex_build_format(&b, buf, sizeof(buf)), 12);
	assert_string_equal(buf, "15.2.1748.39");
	/* Truncation reports the full length, as snprintf does. */
	assert_int_equal(ex_build_format(&b, buf, 5), 12);
	assert_string_equal(buf, "15.2");
	assert_int_equal(ex_build_format(&b, buf, 0), 12);
	/* the extremes of the four fields */
	b = (struct ex_build){ { 0, 0, 0, 0 } };
	assert_int_equal(ex_build_format(&b, buf, sizeof(buf)), 7);
	assert_string_equal(buf, "0.0.0.0");
	b = (struct ex_build){ { UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX } };
	assert_int_equal(ex_build_format(&b, buf, sizeof(buf)), 43);
	assert_string_equal(buf, "4294967295.4294967295.4294967295.4294967295");
	b = (struct ex_build){ { 15, 1, 2507, 35 } };
	assert_int_equal(ex_build_format(&b, buf, 13), 12);
	assert_string_equal(buf, "15.1.2507.35");
	assert_int_equal(ex_build_format(&b, buf, 12), 12);
	assert_string_equal(buf, "15.1.2507.3");
}

static enum ex_family family(const char *s)
{
	struct ex_build b;

	assert_true(ex_build_from_str(s, &b));
	return ex_family_of(&b);
}

static void test_family_boundaries(void **state)
{
	(void)state;
	assert_int_equal(family("7.9.9.9"), EX_FAMILY_NONE);
	assert_int_equal(family("8.0.0.0"), EX_FAMILY_2007);
	assert_int_equal(family("8.3.517.0"), EX_FAMILY_2007);
	assert_int_equal(family("8.99.0.0"), EX_FAMILY_2007);
	assert_int_equal(family("9.0.0.0"), EX_FAMILY_NONE);
	assert_int_equal(family("13.99.0.0"), EX_FAMILY_NONE);
	assert_int_equal(family("14.0.0.0"), EX_FAMILY_2010);
	assert_int_equal(family("14.3.513.0"), EX_FAMILY_2010);
	assert_int_equal(family("15.0.0.0"), EX_FAMILY_2013);
	assert_int_equal(family("15.0.1497.48"), EX_FAMILY_2013);
	assert_int_equal(family("15.1.0.0"), EX_FAMILY_2016);
	assert_int_equal(family("15.1.2507.72"), EX_FAMILY_2016);
	assert_int_equal(family("15.2.0.0"), EX_FAMILY_2019);
	assert_int_equal(family("15.2.2561.999"), EX_FAMILY_2019);
	assert_int_equal(family("15.2.2562.0"), EX_FAMILY_SE);
	assert_int_equal(family("15.2.2562.46"), EX_FAMILY_SE);
	assert_int_equal(family("15.2.99999.0"), EX_FAMILY_SE);
	assert_int_equal(family("15.3.0.0"), EX_FAMILY_NONE);
	assert_int_equal(family("15.19.9999.9"), EX_FAMILY_NONE);
	assert_int_equal(family("15.20.0.0"), EX_FAMILY_ONLINE);
	assert_int_equal(family("15.20.8901.12"), EX_FAMILY_ONLINE);
	assert_int_equal(family("15.21.0.0"), EX_FAMILY_ONLINE);
	assert_int_equal(family("16.0.0.0"), EX_FAMILY_NONE);
}

static void test_family_names_round_trip(void **state)
{
	(void)state;
	for (int f = EX_FAMILY_NONE + 1; f < EX_FAMILY_COUNT; f++)
		assert_int_equal(ex_family_from_name(ex_family_name((enum ex_family)f)), f);
	assert_string_equal(ex_family_name(EX_FAMILY_2007), "2007");
	assert_string_equal(ex_family_name(EX_FAMILY_SE), "SE");
	assert_string_equal(ex_family_name(EX_FAMILY_ONLINE), "Online");
	assert_string_equal(ex_family_name(EX_FAMILY_NONE), "none");
	assert_string_equal(ex_family_name((enum ex_family)99), "none");
	assert_int_equal(ex_family_from_name("se"), EX_FAMILY_SE);
	assert_int_equal(ex_family_from_name("ONLINE"), EX_FAMILY_ONLINE);
	assert_int_equal(ex_family_from_name("none"), EX_FAMILY_NONE);
	assert_int_equal(ex_family_from_name("2020"), EX_FAMILY_NONE);
	assert_int_equal(ex_family_from_name(""), EX_FAMILY_NONE);
	assert_int_equal(ex_family_from_name("2016 "), EX_FAMILY_NONE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_short_form),
		cmocka_unit_test(test_parse_zero_padded),
		cmocka_unit_test(test_parse_stops_at_delimiter),
		cmocka_unit_test(test_parse_trailing_garbage),
		cmocka_unit_test(test_parse_overflow),
		cmocka_unit_test(test_parse_too_few_fields),
		cmocka_unit_test(test_cmp_numeric),
		cmocka_unit_test(test_format_short),
		cmocka_unit_test(test_family_boundaries),
		cmocka_unit_test(test_family_names_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
