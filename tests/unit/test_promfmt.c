/* SPDX-License-Identifier: BSD-3-Clause */
/* The Prometheus text format writer (contract/promfmt.c): escaping of
 * HELP text and label values, metric name sanitising, number spelling and
 * histogram buckets (cumulative, le="+Inf" equal to _count). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "contract/promfmt.h"

static void test_family_and_escaping(void **state)
{
	struct prom_buf b = { 0 };

	(void)state;
	prom_family(&b, "tes_x_total", "counter", "a \\ back\nslash \"quoted\"");
	prom_sample(&b, "tes_x_total", "gateway", "gw \"a\"\\\nb", 7);
	prom_sample(&b, "tes_x_total", NULL, NULL, UINT64_MAX);
	assert_false(b.failed);
	/* HELP escapes \ and newline but not "; label values all three. */
	assert_string_equal(b.p, "# HELP tes_x_total a \\\\ back\\nslash \"quoted\"\n"
				 "# TYPE tes_x_total counter\n"
				 "tes_x_total{gateway=\"gw \\\"a\\\"\\\\\\nb\"} 7\n"
				 "tes_x_total 18446744073709551615\n");
	prom_buf_free(&b);
}

static void test_sanitize(void **state)
{
	char out[16];

	(void)state;
	prom_sanitize("messages.refused-x", out, sizeof(out));
	assert_string_equal(out, "messages_refuse"); /* truncated to fit */
	prom_sanitize("ok_Name9", out, sizeof(out));
	assert_string_equal(out, "ok_Name9");
	prom_sanitize("\xc3\xa9t\xc3\xa9", out, sizeof(out));
	assert_string_equal(out, "__t__");
	prom_sanitize("", out, sizeof(out));
	assert_string_equal(out, "");
}

static void test_double(void **state)
{
	struct prom_buf b = { 0 };

	(void)state;
	prom_double(&b, 0.1);
	prom_append(&b, " ", 1);
	prom_double(&b, 0.00025);
	prom_append(&b, " ", 1);
	prom_double(&b, 2.5);
	prom_append(&b, " ", 1);
	prom_double(&b, INFINITY);
	prom_append(&b, " ", 1);
	prom_double(&b, NAN);
	prom_append(&b, " ", 1);
	prom_double(&b, 1.0 / 3.0);
	assert_string_equal(b.p, "0.1 0.00025 2.5 +Inf NaN 0.3333333333333333");
	prom_buf_free(&b);
}

static void test_histogram(void **state)
{
	static const double bounds[] = { 0.001, 0.01, 0.1 };
	struct prom_hist h;
	struct prom_buf b = { 0 };

	(void)state;
	memset(&h, 0, sizeof(h));
	prom_hist_observe(&h, bounds, 3, 0.0005);
	prom_hist_observe(&h, bounds, 3, 0.001); /* on the bound: le is <= */
	prom_hist_observe(&h, bounds, 3, 0.05);
	prom_hist_observe(&h, bounds, 3, 3);
	prom_hist_write(&b, "tes_d_seconds", bounds, 3, &h);
	assert_false(b.failed);
	assert_string_equal(b.p, "tes_d_seconds_bucket{le=\"0.001\"} 2\n"
				 "tes_d_seconds_bucket{le=\"0.01\"} 2\n"
				 "tes_d_seconds_bucket{le=\"0.1\"} 3\n"
				 "tes_d_seconds_bucket{le=\"+Inf\"} 4\n"
				 "tes_d_seconds_sum 3.0515\n"
				 "tes_d_seconds_count 4\n");
	prom_buf_free(&b);
}

static void test_long_printf(void **state)
{
	struct prom_buf b = { 0 };
	char big[3000];

	(void)state;
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	prom_printf(&b, "x%sy", big);
	assert_int_equal(b.len, sizeof(big) + 1);
	assert_int_equal(b.p[0], 'x');
	assert_int_equal(b.p[b.len - 1], 'y');
	assert_int_equal(b.p[b.len], '\0');
	prom_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_family_and_escaping),
		cmocka_unit_test(test_sanitize),
		cmocka_unit_test(test_double),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_long_printf),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
