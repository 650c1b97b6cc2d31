/* SPDX-License-Identifier: BSD-3-Clause */
/* The counters registry (gateway/observe/registry.c): groups registered and
 * found, snapshots per instance (one that reads nothing left out), keys of
 * plain rows, lists and dictionaries, sums of words, obs_value and the
 * lines built from it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/observe/registry.h"

struct part_snap {
	uint64_t hits, misses;
	uint64_t by_kind[3];
	uint64_t slots[2][2]; /* summed per row value */
};

/* Instance i holds i + 1 times the base figures; instance 2 reads nothing. */
static bool part_read(const void *arg, unsigned i, void *snap)
{
	const uint64_t *base = arg;
	struct part_snap *s = snap;

	if (i == 2)
		return false;
	s->hits = base[0] * (i + 1);
	s->misses = base[1] * (i + 1);
	for (int k = 0; k < 3; k++)
		s->by_kind[k] = (uint64_t)(k + 1) * (i + 1);
	s->slots[0][0] = 1;
	s->slots[0][1] = 2;
	s->slots[1][0] = 10;
	s->slots[1][1] = 20;
	return true;
}

static unsigned three(const void *arg)
{
	(void)arg;
	return 3;
}

static const char *const kinds[] = { "red", "green", "blue" };
static const char *const halves[] = { "low", "high" };

static const struct obs_row part_rows[] = {
	{ .name = "t_hits_total",
	  .help = "Hits",
	  .key = "hits",
	  .off = offsetof(struct part_snap, hits) },
	{ .key = "misses", .flags = OBS_HIDDEN, .off = offsetof(struct part_snap, misses) },
	{ .name = "t_kind_total",
	  .help = "By kind",
	  .key = "kind_",
	  .off = offsetof(struct part_snap, by_kind),
	  .l2 = "kind",
	  .n = 3,
	  .names = kinds,
	  .stride = sizeof(uint64_t) },
	{ .key = "kinds",
	  .flags = OBS_NEST,
	  .off = offsetof(struct part_snap, by_kind),
	  .n = 3,
	  .names = kinds,
	  .stride = sizeof(uint64_t) },
	{ .key = "slots_",
	  .off = offsetof(struct part_snap, slots),
	  .sum = 2,
	  .n = 2,
	  .names = halves,
	  .stride = 2 * sizeof(uint64_t) },
	{ .name = "t_unkeyed_total", .help = "No key", .off = offsetof(struct part_snap, hits) },
};

static const uint64_t base[2] = { 5, 7 };

static struct obs_group part_group(const char *name, bool instances)
{
	struct obs_group g = {
		.name = name,
		.rows = part_rows,
		.nrows = sizeof(part_rows) / sizeof(part_rows[0]),
		.size = sizeof(struct part_snap),
		.read = part_read,
		.arg = base,
	};

	if (instances) {
		g.inst_label = "worker";
		g.count = three;
	}
	return g;
}

static void test_add_find_and_full(void **state)
{
	struct obs_registry *r = obs_new();
	struct obs_group g = part_group("part", false);
	(void)state;

	assert_non_null(r);
	assert_int_equal(obs_ngroups(r), 0);
	assert_null(obs_group_find(r, "part"));
	assert_int_equal(obs_add(r, &g), 0);
	assert_int_equal(obs_ngroups(r), 1);
	assert_string_equal(obs_group_find(r, "part")->name, "part");
	assert_ptr_equal(obs_group_at(r, 0), obs_group_find(r, "part"));
	assert_null(obs_group_at(r, 1));
	for (int i = 1; i < OBS_MAX_GROUPS; i++)
		assert_int_equal(obs_add(r, &g), 0);
	assert_int_equal(obs_add(r, &g), -1);
	assert_int_equal(obs_ngroups(r), OBS_MAX_GROUPS);
	obs_free(r);
}

static void test_keys(void **state)
{
	char k[OBS_KEY_MAX];
	(void)state;

	obs_row_key(&part_rows[0], 0, k, sizeof(k));
	assert_string_equal(k, "hits");
	obs_row_key(&part_rows[2], 1, k, sizeof(k));
	assert_string_equal(k, "kind_green");
	obs_row_key(&part_rows[3], 2, k, sizeof(k));
	assert_string_equal(k, "kinds/blue");
	obs_row_key(&part_rows[5], 0, k, sizeof(k));
	assert_string_equal(k, "");
	assert_int_equal(obs_row_len(&part_rows[0]), 1);
	assert_int_equal(obs_row_len(&part_rows[2]), 3);
	assert_string_equal(obs_row_label(&part_rows[2], 2), "blue");
	assert_string_equal(obs_row_label(&part_rows[0], 0), "");
}

static void test_snapshot_instances(void **state)
{
	struct obs_group g = part_group("part", true);
	struct obs_snap s;
	(void)state;

	assert_int_equal(obs_snap_take(&g, &s), 0);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.nok, 2);
	assert_true(s.ok[0] && s.ok[1] && !s.ok[2]);
	assert_string_equal(s.names[1], "1");
	assert_int_equal(obs_row_value(&part_rows[0], obs_snap_inst(&s, 1), 0), 10);
	assert_int_equal(obs_row_value(&part_rows[2], obs_snap_inst(&s, 0), 2), 3);
	/* a row of sums: each value adds its two words */
	assert_int_equal(obs_row_value(&part_rows[4], obs_snap_inst(&s, 0), 0), 3);
	assert_int_equal(obs_row_value(&part_rows[4], obs_snap_inst(&s, 0), 1), 30);
	obs_snap_free(&s);
}

static void test_value_sums_instances(void **state)
{
	struct obs_registry *r = obs_new();
	struct obs_group one = part_group("one", false);
	struct obs_group many = part_group("many", true);
	uint64_t v = 99;
	(void)state;

	assert_int_equal(obs_add(r, &one), 0);
	assert_int_equal(obs_add(r, &many), 0);
	assert_true(obs_value(r, "one", "hits", &v));
	assert_int_equal(v, 5);
	/* instances 0 and 1 (5 + 10); instance 2 read nothing */
	assert_true(obs_value(r, "many", "hits", &v));
	assert_int_equal(v, 15);
	assert_true(obs_value(r, "many", "misses", &v)); /* hidden: still found */
	assert_int_equal(v, 21);
	assert_true(obs_value(r, "one", "kind_blue", &v));
	assert_int_equal(v, 3);
	assert_true(obs_value(r, "one", "kinds/green", &v));
	assert_int_equal(v, 2);
	assert_true(obs_value(r, "one", "slots_high", &v));
	assert_int_equal(v, 30);
	assert_false(obs_value(r, "one", "kinds_green", &v));
	assert_int_equal(v, 0);
	v = 99;
	assert_false(obs_value(r, "nobody", "hits", &v));
	assert_int_equal(v, 0);
	obs_free(r);
}

static void test_line(void **state)
{
	static const struct obs_item items[] = {
		{ "h", "many", "hits" },
		{ "m", "one", "misses" },
		{ "gone", "absent", "hits" },
		{ "blue", "one", "kind_blue" },
	};
	struct obs_registry *r = obs_new();
	struct obs_group one = part_group("one", false);
	struct obs_group many = part_group("many", true);
	char line[128];
	(void)state;

	assert_int_equal(obs_add(r, &one), 0);
	assert_int_equal(obs_add(r, &many), 0);
	obs_line(r, "stats", items, 4, line, sizeof(line));
	assert_string_equal(line, "stats h=15 m=7 gone=0 blue=3");
	/* cut, never overrun */
	obs_line(r, "stats", items, 4, line, 12);
	assert_string_equal(line, "stats h=15 ");
	obs_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_find_and_full),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_snapshot_instances),
		cmocka_unit_test(test_value_sums_instances),
		cmocka_unit_test(test_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
