/* SPDX-License-Identifier: BSD-3-Clause */
/* tesgate's Prometheus rendering (gateway/observe/metrics.c) from the
 * counters registry, byte for byte: HELP and TYPE once per family even when
 * its series come from several rows, labels in their order (instance, fixed,
 * list), seconds as doubles, histograms, and a group whose instances read
 * nothing left out whole. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "contract/promfmt.h"
#include "gateway/observe/metrics.h"
#include "gateway/observe/registry.h"

struct snap {
	uint64_t conns, refused[2], busy_ns;
	uint64_t lat[3], lat_sum_us;
};

static bool read_fixed(const void *arg, unsigned i, void *out)
{
	const struct snap *src = arg;

	memcpy(out, src, sizeof(*src));
	((struct snap *)out)->conns += i; /* instance i: conns + i */
	return true;
}

static bool read_nothing(const void *arg, unsigned i, void *out)
{
	(void)arg;
	(void)i;
	(void)out;
	return false;
}

static unsigned two(const void *arg)
{
	(void)arg;
	return 2;
}

static const double bounds[2] = { 0.001, 0.5 };
static const struct obs_hist hist = {
	.bounds = bounds,
	.nbounds = 2,
	.sum_off = offsetof(struct snap, lat_sum_us),
	.sum_div = 1e6,
};

static const struct obs_row rows[] = {
	{ .name = "t_conns_total",
	  .help = "Connections \\ \"all\"\nof them",
	  .off = offsetof(struct snap, conns) },
	{ .name = "t_refused_total",
	  .help = "Refused",
	  .off = offsetof(struct snap, refused),
	  .l2 = "reason",
	  .n = 2,
	  .names = (const char *const[]){ "global", "a\"b" },
	  .stride = sizeof(uint64_t) },
	{ .name = "t_refused_total",
	  .off = offsetof(struct snap, conns),
	  .l1 = "at",
	  .v1 = "x",
	  .l2 = "reason",
	  .names = (const char *const[]){ "app" } },
	{ .key = "not_on_metrics", .off = offsetof(struct snap, conns) },
	{ .name = "t_busy_seconds_total",
	  .help = "Busy",
	  .off = offsetof(struct snap, busy_ns),
	  .div = 1e9 },
	{ .name = "t_open",
	  .help = "Open",
	  .type = OBS_GAUGE,
	  .off = offsetof(struct snap, conns) },
};

static const struct obs_row hist_rows[] = {
	{ .name = "t_latency_seconds",
	  .help = "Latency",
	  .type = OBS_HISTOGRAM,
	  .off = offsetof(struct snap, lat),
	  .hist = &hist },
};

static const struct snap fixed = {
	.conns = 7,
	.refused = { 1, 2 },
	.busy_ns = 1500000000,
	.lat = { 1, 2, 3 },
	.lat_sum_us = 250000,
};

static char *render(struct obs_registry *r)
{
	static char text[8192];
	struct prom_buf b;

	memset(&b, 0, sizeof(b));
	gw_metrics_render(r, &b);
	assert_false(b.failed);
	snprintf(text, sizeof(text), "%s", b.p ? b.p : "");
	prom_buf_free(&b);
	return text;
}

static void test_plain_group(void **state)
{
	struct obs_registry *r = obs_new();
	struct obs_group g = {
		.name = "g",
		.rows = rows,
		.nrows = sizeof(rows) / sizeof(rows[0]),
		.size = sizeof(struct snap),
		.read = read_fixed,
		.arg = &fixed,
	};
	(void)state;

	assert_int_equal(obs_add(r, &g), 0);
	assert_string_equal(render(r), "# HELP t_conns_total Connections \\\\ \"all\"\\nof them\n"
				       "# TYPE t_conns_total counter\n"
				       "t_conns_total 7\n"
				       "# HELP t_refused_total Refused\n"
				       "# TYPE t_refused_total counter\n"
				       "t_refused_total{reason=\"global\"} 1\n"
				       "t_refused_total{reason=\"a\\\"b\"} 2\n"
				       "t_refused_total{at=\"x\",reason=\"app\"} 7\n"
				       "# HELP t_busy_seconds_total Busy\n"
				       "# TYPE t_busy_seconds_total counter\n"
				       "t_busy_seconds_total 1.5\n"
				       "# HELP t_open Open\n"
				       "# TYPE t_open gauge\n"
				       "t_open 7\n");
	obs_free(r);
}

static void test_instances_histogram_and_empty_groups(void **state)
{
	struct obs_registry *r = obs_new();
	struct obs_group workers = {
		.name = "w",
		.rows = rows + 1,
		.nrows = 1,
		.size = sizeof(struct snap),
		.read = read_fixed,
		.arg = &fixed,
		.inst_label = "worker",
		.count = two,
	};
	struct obs_group none = workers;
	struct obs_group h = {
		.name = "h",
		.rows = hist_rows,
		.nrows = 1,
		.size = sizeof(struct snap),
		.read = read_fixed,
		.arg = &fixed,
	};
	(void)state;

	none.name = "none";
	none.read = read_nothing;
	assert_int_equal(obs_add(r, &none), 0);
	assert_int_equal(obs_add(r, &workers), 0);
	assert_int_equal(obs_add(r, &h), 0);
	assert_string_equal(render(r), "# HELP t_refused_total Refused\n"
				       "# TYPE t_refused_total counter\n"
				       "t_refused_total{worker=\"0\",reason=\"global\"} 1\n"
				       "t_refused_total{worker=\"0\",reason=\"a\\\"b\"} 2\n"
				       "t_refused_total{worker=\"1\",reason=\"global\"} 1\n"
				       "t_refused_total{worker=\"1\",reason=\"a\\\"b\"} 2\n"
				       "# HELP t_latency_seconds Latency\n"
				       "# TYPE t_latency_seconds histogram\n"
				       "t_latency_seconds_bucket{le=\"0.001\"} 1\n"
				       "t_latency_seconds_bucket{le=\"0.5\"} 3\n"
				       "t_latency_seconds_bucket{le=\"+Inf\"} 6\n"
				       "t_latency_seconds_sum 0.25\n"
				       "t_latency_seconds_count 6\n");
	obs_free(r);
}

static void test_empty_registry(void **state)
{
	struct obs_registry *r = obs_new();
	(void)state;

	assert_string_equal(render(r), "");
	obs_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_group),
		cmocka_unit_test(test_instances_histogram_and_empty_groups),
		cmocka_unit_test(test_empty_registry),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
