/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dpdk_addr takes addresses of both families (issue 18): a list of up to 8
 * IPv4 and IPv6 addresses with prefixes, comma-separated; anything else is
 * refused with the key named.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <setjmp.h>
#include <cmocka.h>

#include "gateway/config.h"

static bool set(struct tes_config *c, const char *v)
{
	char err[256];
	return config_set(c, "dpdk_addr", v, err, sizeof(err)) == 0;
}

static void accepts_both_families(void **state)
{
	(void)state;
	struct tes_config c;
	config_defaults(&c);
	assert_true(set(&c, "198.18.5.2/24"));
	assert_true(set(&c, "2001:db8:5::2/64"));
	assert_true(set(&c, "198.18.5.2/24, 2001:db8:5::2/64"));
	assert_string_equal(c.dpdk.addr, "198.18.5.2/24, 2001:db8:5::2/64");
	assert_true(set(&c, "fd00::1,198.18.5.2,fd00:1::1/48"));
	assert_true(set(&c, ""));
}

static void refuses_the_rest(void **state)
{
	(void)state;
	struct tes_config c;
	config_defaults(&c);
	assert_false(set(&c, "198.18.5.2/33"));
	assert_false(set(&c, "2001:db8::2/129"));
	assert_false(set(&c, "ff02::1/64"));
	assert_false(set(&c, "2001:db8::zz/64"));
	assert_false(set(&c, "198.18.5.2/0"));
	assert_false(set(&c, "fd00::1,fd00::2,fd00::3,fd00::4,fd00::5,fd00::6,fd00::7,fd00::8,"
			     "fd00::9"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(accepts_both_families),
		cmocka_unit_test(refuses_the_rest),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
