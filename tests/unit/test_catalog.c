/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The build catalog: the shipped data files classified at every boundary of
 * the shipped policy, and one in-memory input per kind of loader error.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "enforce/catalog.h"

/* Fixed times, never today's: the rules carry dates.  2026-08-01, before
 * the 2016/2019 rules end; 2026-12-06, after; both UTC midnight. */
#define T_AUG INT64_C(1785542400)
#define T_DEC INT64_C(1796515200)
#define T_SEP1 INT64_C(1788220800) /* 2026-09-01: the 2016/2019 rules end */
#define DAY INT64_C(86400)

/* Table rows in the reference's per-family sections of exchange-builds.md,
 * and the three whose build repeats another row's (a Feb19SU that is the CU
 * itself), which the CSV keeps once. */
#define REFERENCE_ROWS 415
#define REFERENCE_REPEATED_BUILDS 3

/* ---- shipped data ---- */

static int load_shipped(void **state)
{
	const char *src = getenv("TES_SRCDIR");
	char builds[4096], policy[4096];
	struct catalog_error err;
	struct catalog *c;

	if (src == NULL) {
		fprintf(stderr, "TES_SRCDIR is not set (run through meson test)\n");
		return -1;
	}
	snprintf(builds, sizeof(builds), "%s/data/exchange-builds.csv", src);
	snprintf(policy, sizeof(policy), "%s/data/compliance.conf", src);
	c = catalog_load(builds, policy, &err);
	if (c == NULL) {
		fprintf(stderr, "%s:%u: %s\n", err.file, err.line, err.msg);
		return -1;
	}
	*state = c;
	return 0;
}

static int free_shipped(void **state)
{
	catalog_free(*state);
	return 0;
}

static void classify_at(const struct catalog *c, const char *build, int64_t t,
			struct catalog_class *out)
{
	struct ex_build b;

	if (!ex_build_from_str(build, &b))
		fail_msg("test build '%s' does not parse", build);
	catalog_classify(c, &b, t, out);
}

/* Where the time does not matter (nothing dated is involved), or the rules
 * of August 2026 are meant. */
static void classify(const struct catalog *c, const char *build, struct catalog_class *out)
{
	classify_at(c, build, T_AUG, out);
}

static void assert_build_str(const struct catalog_entry *e, const char *want)
{
	char buf[64];

	assert_non_null(e);
	ex_build_format(&e->build, buf, sizeof(buf));
	assert_string_equal(buf, want);
}

static void test_row_count(void **state)
{
	const struct catalog *c = *state;
	const char *v = catalog_version(c);
	char want[16];

	assert_int_equal(catalog_size(c), REFERENCE_ROWS - REFERENCE_REPEATED_BUILDS);
	for (size_t i = 1; i < catalog_size(c); i++)
		assert_true(ex_build_cmp(&catalog_entry_at(c, i - 1)->build,
					 &catalog_entry_at(c, i)->build) < 0);
	assert_null(catalog_entry_at(c, catalog_size(c)));
	assert_build_str(catalog_entry_at(c, 0), "8.0.685.25");
	assert_build_str(catalog_entry_at(c, catalog_size(c) - 1), "15.2.2562.46");

	snprintf(want, sizeof(want), "%d:", REFERENCE_ROWS - REFERENCE_REPEATED_BUILDS);
	assert_int_equal(strncmp(v, want, strlen(want)), 0);
	assert_int_equal(strlen(v), strlen(want) + 16);
	assert_int_equal(strspn(v + strlen(want), "0123456789abcdef"), 16);
}

/* Every known build is its own nearest build, of its own branch. */
static void test_every_row_classifies_to_itself(void **state)
{
	const struct catalog *c = *state;
	struct catalog_class cls;

	for (size_t i = 0; i < catalog_size(c); i++) {
		const struct catalog_entry *e = catalog_entry_at(c, i);

		catalog_classify(c, &e->build, T_DEC, &cls);
		assert_int_equal(cls.family, e->family);
		assert_ptr_equal(cls.nearest, e);
		assert_true(cls.exact);
		assert_string_equal(cls.branch, e->branch);
	}
}

struct expect {
	const char *build;
	enum ex_family family;
	const char *branch;
	const char *nearest; /* NULL: none */
	bool compliant;
};

static void check_t(const struct catalog *c, const struct expect *x, int64_t t)
{
	struct catalog_class cls;
	struct ex_build b;

	classify_at(c, x->build, t, &cls);
	if (cls.family != x->family || strcmp(cls.branch, x->branch) != 0 ||
	    cls.compliant != x->compliant || (cls.nearest == NULL) != (x->nearest == NULL))
		fail_msg("%s: got %s '%s' nearest %s compliant %d", x->build,
			 ex_family_name(cls.family), cls.branch, cls.nearest ? "set" : "none",
			 cls.compliant);
	if (x->nearest != NULL) {
		assert_build_str(cls.nearest, x->nearest);
		assert_true(ex_build_from_str(x->build, &b));
		assert_int_equal(cls.exact, ex_build_cmp(&b, &cls.nearest->build) == 0);
	} else {
		assert_false(cls.exact);
	}
}

static void check(const struct catalog *c, const struct expect *x)
{
	check_t(c, x, T_AUG);
}

static void check_all(const struct catalog *c, const struct expect *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		check(c, &x[i]);
}

static void check_at(const struct catalog *c, const struct expect *x, size_t n, int64_t t)
{
	for (size_t i = 0; i < n; i++) {
		struct catalog_class cls;

		classify_at(c, x[i].build, t, &cls);
		if (cls.compliant != x[i].compliant)
			fail_msg("%s at %lld: compliant %d", x[i].build, (long long)t,
				 cls.compliant);
		check_t(c, &x[i], t);
	}
}

/* August 2026: 2016 and 2019 still have their Oct25SU floors; SE's floor is
 * the newest release at least 60 days old, May26HU (2026-05-07; Jun26SU of
 * 2026-06-09 reaches 60 days on 2026-08-08). */
static void test_policy_boundaries(void **state)
{
	static const struct expect x[] = {
		/* 2016 CU23 from Oct25SU */
		{ "15.1.2507.0", EX_FAMILY_2016, "CU23", NULL, false },
		{ "15.1.2507.59", EX_FAMILY_2016, "CU23", "15.1.2507.59", false },
		{ "15.1.2507.60", EX_FAMILY_2016, "CU23", "15.1.2507.59", false },
		{ "15.1.2507.61", EX_FAMILY_2016, "CU23", "15.1.2507.61", true },
		{ "15.1.2507.62", EX_FAMILY_2016, "CU23", "15.1.2507.61", true },
		{ "15.1.2507.63", EX_FAMILY_2016, "CU23", "15.1.2507.63", true },
		{ "15.1.2507.72", EX_FAMILY_2016, "CU23", "15.1.2507.72", true },
		{ "15.1.2507.999", EX_FAMILY_2016, "CU23", "15.1.2507.72", true },
		/* older 2016 CUs are never compliant, however patched */
		{ "15.1.2375.37", EX_FAMILY_2016, "CU22", "15.1.2375.37", false },
		{ "15.1.2375.999", EX_FAMILY_2016, "CU22", "15.1.2375.37", false },
		{ "15.1.225.42", EX_FAMILY_2016, "RTM", "15.1.225.42", false },
		/* 2019 CU15 from Oct25SU */
		{ "15.2.1748.38", EX_FAMILY_2019, "CU15", "15.2.1748.37", false },
		{ "15.2.1748.39", EX_FAMILY_2019, "CU15", "15.2.1748.39", true },
		{ "15.2.1748.40", EX_FAMILY_2019, "CU15", "15.2.1748.39", true },
		{ "15.2.1748.49", EX_FAMILY_2019, "CU15", "15.2.1748.49", true },
		/* 2019 CU14 from Oct25SU */
		{ "15.2.1544.35", EX_FAMILY_2019, "CU14", "15.2.1544.34", false },
		{ "15.2.1544.36", EX_FAMILY_2019, "CU14", "15.2.1544.36", true },
		{ "15.2.1544.37", EX_FAMILY_2019, "CU14", "15.2.1544.37", true },
		{ "15.2.1544.44", EX_FAMILY_2019, "CU14", "15.2.1544.44", true },
		{ "15.2.1258.39", EX_FAMILY_2019, "CU13", "15.2.1258.39", false },
		{ "15.2.1258.99", EX_FAMILY_2019, "CU13", "15.2.1258.39", false },
		/* SE RTM: current 60d, May26HU at the start of August */
		{ "15.2.2562.0", EX_FAMILY_SE, "RTM", NULL, false },
		{ "15.2.2562.17", EX_FAMILY_SE, "RTM", "15.2.2562.17", false },
		{ "15.2.2562.29", EX_FAMILY_SE, "RTM", "15.2.2562.29", false },
		{ "15.2.2562.40", EX_FAMILY_SE, "RTM", "15.2.2562.37", false },
		{ "15.2.2562.41", EX_FAMILY_SE, "RTM", "15.2.2562.41", true },
		{ "15.2.2562.42", EX_FAMILY_SE, "RTM", "15.2.2562.41", true },
		{ "15.2.2562.46", EX_FAMILY_SE, "RTM", "15.2.2562.46", true },
		/* 15.2.2561: still 2019 by number, but no CU of 2019 lives there */
		{ "15.2.2561.99", EX_FAMILY_2019, "", NULL, false },
		/* families that are never compliant */
		{ "15.0.1497.48", EX_FAMILY_2013, "CU23", "15.0.1497.48", false },
		{ "14.3.513.0", EX_FAMILY_2010, "SP3", "14.3.513.0", false },
		{ "8.3.517.0", EX_FAMILY_2007, "SP3", "8.3.517.0", false },
	};

	check_at(*state, x, sizeof(x) / sizeof(x[0]), T_AUG);
}

/* December 2026 (the today): 2016 and 2019 are never compliant
 * since September; SE only from Aug26SU, the newest release, 60 days old
 * since 2026-10-10. */
static void test_policy_today(void **state)
{
	static const struct expect x[] = {
		{ "15.1.2507.61", EX_FAMILY_2016, "CU23", "15.1.2507.61", false },
		{ "15.1.2507.72", EX_FAMILY_2016, "CU23", "15.1.2507.72", false },
		{ "15.1.2507.999", EX_FAMILY_2016, "CU23", "15.1.2507.72", false },
		{ "15.2.1748.39", EX_FAMILY_2019, "CU15", "15.2.1748.39", false },
		{ "15.2.1748.49", EX_FAMILY_2019, "CU15", "15.2.1748.49", false },
		{ "15.2.1544.44", EX_FAMILY_2019, "CU14", "15.2.1544.44", false },
		{ "15.2.2562.29", EX_FAMILY_SE, "RTM", "15.2.2562.29", false },
		{ "15.2.2562.45", EX_FAMILY_SE, "RTM", "15.2.2562.45", false },
		{ "15.2.2562.46", EX_FAMILY_SE, "RTM", "15.2.2562.46", true },
		{ "15.2.2562.50", EX_FAMILY_SE, "RTM", "15.2.2562.46", true },
	};
	const struct catalog *c = *state;
	struct catalog_class cls;

	check_at(c, x, sizeof(x) / sizeof(x[0]), T_DEC);

	/* The rule that decides, as the operator wrote it: line numbers of
	 * data/compliance.conf. */
	classify_at(c, "15.2.2562.45", T_DEC, &cls);
	assert_int_equal(cls.rule.kind, CATALOG_RULE_CURRENT);
	assert_int_equal(cls.rule.days, 60);
	assert_int_equal(cls.rule.since, CATALOG_TIME_MIN);
	assert_int_equal(cls.rule.until, CATALOG_TIME_MAX);
	assert_build_str(cls.rule.floor, "15.2.2562.46");
	assert_int_equal(cls.rule.line, 41);
	classify_at(c, "15.1.2507.61", T_AUG, &cls);
	assert_int_equal(cls.rule.kind, CATALOG_RULE_FROM);
	assert_int_equal(cls.rule.line, 34);
	assert_int_equal(cls.rule.until, T_SEP1);
	assert_build_str(cls.rule.floor, "15.1.2507.61");
	/* After its end, no rule is in force; the one that ended is named. */
	classify_at(c, "15.1.2507.61", T_DEC, &cls);
	assert_int_equal(cls.rule.kind, CATALOG_RULE_NONE);
	assert_int_equal(cls.rule.line, 34);
	assert_int_equal(cls.rule.until, T_SEP1);
	assert_null(cls.rule.floor);
	classify_at(c, "15.0.1497.48", T_DEC, &cls);
	assert_int_equal(cls.rule.kind, CATALOG_RULE_NEVER);
	assert_int_equal(cls.rule.line, 25);
	classify_at(c, "15.1.2375.37", T_DEC, &cls);
	assert_int_equal(cls.rule.kind, CATALOG_RULE_NONE);
	assert_int_equal(cls.rule.line, 0);
}

/* The second each date takes effect, and the spans catalog check shows. */
static void test_policy_dates(void **state)
{
	const struct catalog *c = *state;
	struct catalog_class cls;
	struct ex_build b;
	int64_t from, until;

	classify_at(c, "15.1.2507.61", T_SEP1 - 1, &cls);
	assert_true(cls.compliant);
	classify_at(c, "15.1.2507.61", T_SEP1, &cls);
	assert_false(cls.compliant);
	classify_at(c, "15.2.1544.36", T_SEP1 - 1, &cls);
	assert_true(cls.compliant);
	classify_at(c, "15.2.1544.36", T_SEP1, &cls);
	assert_false(cls.compliant);

	assert_true(ex_build_from_str("15.1.2507.61", &b));
	catalog_verdict_span(c, &b, T_AUG, &from, &until);
	assert_int_equal(from, CATALOG_TIME_MIN);
	assert_int_equal(until, T_SEP1);
	catalog_verdict_span(c, &b, T_DEC, &from, &until);
	assert_int_equal(from, T_SEP1);
	assert_int_equal(until, CATALOG_TIME_MAX);
	/* below the floor: never compliant at any time */
	assert_true(ex_build_from_str("15.1.2507.60", &b));
	catalog_verdict_span(c, &b, T_AUG, &from, &until);
	assert_int_equal(from, CATALOG_TIME_MIN);
	assert_int_equal(until, CATALOG_TIME_MAX);

	/* SE Jul26SU (2026-07-14): compliant until Aug26SU (2026-08-11) is 60
	 * days old, 2026-10-10T00:00:00Z; and it always was before. */
	int64_t oct10 = INT64_C(1791590400);

	classify_at(c, "15.2.2562.45", oct10 - 1, &cls);
	assert_true(cls.compliant);
	assert_build_str(cls.rule.floor, "15.2.2562.45");
	classify_at(c, "15.2.2562.45", oct10, &cls);
	assert_false(cls.compliant);
	assert_true(ex_build_from_str("15.2.2562.45", &b));
	catalog_verdict_span(c, &b, T_DEC, &from, &until);
	assert_int_equal(from, oct10);
	assert_int_equal(until, CATALOG_TIME_MAX);
	catalog_verdict_span(c, &b, T_AUG, &from, &until);
	assert_int_equal(from, CATALOG_TIME_MIN);
	assert_int_equal(until, oct10);
	/* RTM Oct25SU (2025-10-14): out once Dec25SU (2025-12-09) was 60 days
	 * old, 2026-02-07. */
	assert_true(ex_build_from_str("15.2.2562.29", &b));
	catalog_verdict_span(c, &b, T_DEC, &from, &until);
	assert_int_equal(from, INT64_C(1770422400));
	assert_int_equal(until, CATALOG_TIME_MAX);

	/* Every date after August at which some verdict changes. */
	static const int64_t want[] = {
		INT64_C(1786147200), /* 2026-08-08: Jun26SU + 60 */
		INT64_C(1788220800), /* 2026-09-01: 2016/2019 rules end */
		INT64_C(1789171200), /* 2026-09-12: Jul26SU + 60 */
		INT64_C(1791590400), /* 2026-10-10: Aug26SU + 60 */
		CATALOG_TIME_MAX,
	};
	int64_t t = T_AUG;

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		t = catalog_next_change(c, t);
		assert_int_equal(t, want[i]);
	}
}

/* The whole policy over the whole catalog, restated independently, in
 * August 2026 (SE from May26HU) and in December (SE from Aug26SU only). */
static void test_policy_over_every_row(void **state)
{
	static const struct {
		enum ex_family family;
		const char *branch, *from;
		bool dec;
	} rules[] = {
		{ EX_FAMILY_2016, "CU23", "15.1.2507.61", false },
		{ EX_FAMILY_2019, "CU15", "15.2.1748.39", false },
		{ EX_FAMILY_2019, "CU14", "15.2.1544.36", false },
		{ EX_FAMILY_SE, "RTM", "15.2.2562.41", false },
		{ EX_FAMILY_SE, "RTM", "15.2.2562.46", true },
	};
	const struct catalog *c = *state;

	for (int dec = 0; dec < 2; dec++) {
		unsigned ncompliant = 0;

		for (size_t i = 0; i < catalog_size(c); i++) {
			const struct catalog_entry *e = catalog_entry_at(c, i);
			struct catalog_class cls;
			bool want = false;

			for (size_t r = 0; r < sizeof(rules) / sizeof(rules[0]); r++) {
				struct ex_build from;

				assert_true(ex_build_from_str(rules[r].from, &from));
				if (rules[r].dec == (dec == 1) && e->family == rules[r].family &&
				    strcmp(e->branch, rules[r].branch) == 0)
					want = ex_build_cmp(&e->build, &from) >= 0;
			}
			catalog_classify(c, &e->build, dec ? T_DEC : T_AUG, &cls);
			if (cls.compliant != want)
				fail_msg("%s %s: compliant %d", e->update,
					 ex_family_name(e->family), cls.compliant);
			ncompliant += want;
		}
		/* August: 2016 CU23 6, 2019 CU15 6, 2019 CU14 6, SE 4 (May26HU
		 * on); December: SE Aug26SU alone. */
		assert_int_equal(ncompliant, dec ? 1 : 22);
	}
}

/* The 15 ESU-only rows of the reference, and nothing else. */
static void test_esu_rows(void **state)
{
	const struct catalog *c = *state;
	unsigned n = 0;

	for (size_t i = 0; i < catalog_size(c); i++) {
		const struct catalog_entry *e = catalog_entry_at(c, i);
		bool want = (e->family == EX_FAMILY_2016 || e->family == EX_FAMILY_2019) &&
			    (e->year > 2025 || (e->year == 2025 && e->month > 10) ||
			     (e->year == 2025 && e->month == 10 && e->day > 14));

		assert_int_equal(e->esu, want);
		n += e->esu;
	}
	assert_int_equal(n, 15);
}

static void test_newest_per_family(void **state)
{
	static const struct {
		enum ex_family family;
		const char *newest, *update;
		bool compliant_aug, compliant_dec;
	} want[] = {
		{ EX_FAMILY_2007, "8.3.517.0", "SP3 RU23", false, false },
		{ EX_FAMILY_2010, "14.3.513.0", "SP3 RU32", false, false },
		{ EX_FAMILY_2013, "15.0.1497.48", "CU23 Mar23SU", false, false },
		{ EX_FAMILY_2016, "15.1.2507.72", "CU23 Aug26SU", true, false },
		{ EX_FAMILY_2019, "15.2.1748.49", "CU15 Aug26SU", true, false },
		{ EX_FAMILY_SE, "15.2.2562.46", "RTM Aug26SU", true, true },
	};
	const struct catalog *c = *state;

	for (size_t w = 0; w < sizeof(want) / sizeof(want[0]); w++) {
		const struct catalog_entry *newest = NULL;
		struct catalog_class cls;

		for (size_t i = 0; i < catalog_size(c); i++) {
			if (catalog_entry_at(c, i)->family == want[w].family)
				newest = catalog_entry_at(c, i);
		}
		assert_build_str(newest, want[w].newest);
		assert_string_equal(newest->update, want[w].update);
		catalog_classify(c, &newest->build, T_AUG, &cls);
		assert_ptr_equal(cls.nearest, newest);
		assert_true(cls.exact);
		assert_int_equal(cls.compliant, want[w].compliant_aug);
		catalog_classify(c, &newest->build, T_DEC, &cls);
		assert_int_equal(cls.compliant, want[w].compliant_dec);
	}
}

static void test_between_known_builds(void **state)
{
	static const struct expect x[] = {
		{ "15.1.2375.20", EX_FAMILY_2016, "CU22", "15.1.2375.18", false },
		{ "15.2.1118.22", EX_FAMILY_2019, "CU12", "15.2.1118.21", false },
		{ "15.0.1497.46", EX_FAMILY_2013, "CU23", "15.0.1497.45", false },
		{ "15.0.847.40", EX_FAMILY_2013, "SP1", "15.0.847.32", false },
		{ "8.3.300.0", EX_FAMILY_2007, "SP3", "8.3.298.3", false },
		{ "8.0.700.0", EX_FAMILY_2007, "RTM", "8.0.685.25", false },
		/* below a CU's first build: its CU, nothing nearer */
		{ "15.2.1748.1", EX_FAMILY_2019, "CU15", NULL, false },
		/* 2016's Preview and RTM share 15.1.225: the lower build decides */
		{ "15.1.225.1", EX_FAMILY_2016, "Preview", NULL, false },
		{ "15.1.225.16", EX_FAMILY_2016, "Preview", "15.1.225.16", false },
		{ "15.1.225.30", EX_FAMILY_2016, "Preview", "15.1.225.16", false },
		{ "15.1.225.50", EX_FAMILY_2016, "RTM", "15.1.225.42", false },
		/* no such CU: family known, branch not */
		{ "15.1.3000.1", EX_FAMILY_2016, "", NULL, false },
		{ "15.0.1.0", EX_FAMILY_2013, "", NULL, false },
		{ "14.4.1.0", EX_FAMILY_2010, "", NULL, false },
	};
	const struct catalog *c = *state;
	struct catalog_class cls;

	check_all(c, x, sizeof(x) / sizeof(x[0]));
	classify(c, "15.1.2375.20", &cls);
	assert_string_equal(cls.nearest->update, "CU22 Jan22SU");
}

static void test_zero_padded_builds(void **state)
{
	static const struct expect x[] = {
		{ "15.01.2507.061", EX_FAMILY_2016, "CU23", "15.1.2507.61", true },
		{ "15.01.2507.060", EX_FAMILY_2016, "CU23", "15.1.2507.59", false },
		{ "15.02.1748.039", EX_FAMILY_2019, "CU15", "15.2.1748.39", true },
		{ "15.02.2562.029", EX_FAMILY_SE, "RTM", "15.2.2562.29", false },
		{ "15.02.2562.041", EX_FAMILY_SE, "RTM", "15.2.2562.41", true },
		{ "14.03.0513.000", EX_FAMILY_2010, "SP3", "14.3.513.0", false },
		{ "08.03.0517.000", EX_FAMILY_2007, "SP3", "8.3.517.0", false },
	};

	check_all(*state, x, sizeof(x) / sizeof(x[0]));
}

/* Exchange 2010 stamps transport binary versions that are not RU builds. */
static void test_unknown_2010_transport_builds(void **state)
{
	static const struct expect x[] = {
		{ "14.3.123.3", EX_FAMILY_2010, "SP3", NULL, false },
		{ "14.03.0123.003", EX_FAMILY_2010, "SP3", NULL, false },
		{ "14.3.439.0", EX_FAMILY_2010, "SP3", "14.3.435.0", false },
		{ "14.3.487.0", EX_FAMILY_2010, "SP3", "14.3.468.0", false },
		{ "14.3.498.0", EX_FAMILY_2010, "SP3", "14.3.496.0", false },
		{ "14.3.999.0", EX_FAMILY_2010, "SP3", "14.3.513.0", false },
		{ "14.2.400.0", EX_FAMILY_2010, "SP2", "14.2.390.3", false },
	};
	const struct catalog *c = *state;
	struct catalog_class cls;

	check_all(c, x, sizeof(x) / sizeof(x[0]));
	classify(c, "14.3.439.0", &cls);
	assert_string_equal(cls.nearest->update, "SP3 RU25");
	classify(c, "14.3.487.0", &cls);
	assert_string_equal(cls.nearest->update, "SP3 RU29");
	classify(c, "14.3.498.0", &cls);
	assert_string_equal(cls.nearest->update, "SP3 RU30");
}

static void assert_recommended(const struct catalog_class *cls, const char *const *want, unsigned n)
{
	assert_int_equal(cls->nrecommended, n);
	for (unsigned i = 0; i < n; i++)
		assert_build_str(cls->recommended[i], want[i]);
}

static void test_recommendations(void **state)
{
	/* SE first (its rule has no end), then the branches whose rule ends,
	 * newest family and CU first; public builds only: 2016/2019 get their
	 * Oct25SU, not the ESU-only Aug26SU. */
	static const char *const everywhere[] = { "15.2.2562.46", "15.2.1748.39", "15.2.1544.36",
						  "15.1.2507.61" };
	/* A branch whose rule ends: SE, then its own public newest. */
	static const char *const cu23[] = { "15.2.2562.46", "15.1.2507.61", "15.2.1748.39",
					    "15.2.1544.36" };
	static const char *const cu14[] = { "15.2.2562.46", "15.2.1544.36", "15.2.1748.39",
					    "15.1.2507.61" };
	static const char *const se[] = { "15.2.2562.46" };
	static const char *const elsewhere[] = {
		"15.1.2375.37", "15.2.1258.39", "15.0.1497.48", "14.3.123.3",
		"8.3.517.0",    "15.2.2561.0",  "15.1.3000.1",  "15.1.225.42",
	};
	const struct catalog *c = *state;
	struct catalog_class cls;

	classify_at(c, "15.1.2507.60", T_AUG, &cls);
	assert_recommended(&cls, cu23, 4);
	classify_at(c, "15.1.2507.72", T_AUG, &cls);
	assert_recommended(&cls, cu23, 4);
	classify_at(c, "15.2.1544.4", T_AUG, &cls);
	assert_recommended(&cls, cu14, 4);
	/* A branch whose rule has no end: its own newest, the smallest step. */
	classify_at(c, "15.2.2562.17", T_AUG, &cls);
	assert_recommended(&cls, se, 1);
	assert_string_equal(cls.recommended[0]->update, "RTM Aug26SU");
	for (size_t i = 0; i < sizeof(elsewhere) / sizeof(elsewhere[0]); i++) {
		classify_at(c, elsewhere[i], T_AUG, &cls);
		assert_false(cls.compliant);
		assert_recommended(&cls, everywhere, CATALOG_MAX_RECOMMENDED);
	}

	/* December: SE is the only way. */
	classify_at(c, "15.1.2507.60", T_DEC, &cls);
	assert_recommended(&cls, se, 1);
	classify_at(c, "15.2.2562.17", T_DEC, &cls);
	assert_recommended(&cls, se, 1);
	for (size_t i = 0; i < sizeof(elsewhere) / sizeof(elsewhere[0]); i++) {
		classify_at(c, elsewhere[i], T_DEC, &cls);
		assert_recommended(&cls, se, 1);
	}
	for (unsigned i = 0; i < cls.nrecommended; i++)
		assert_false(cls.recommended[i]->esu);
}

static void test_not_on_premises(void **state)
{
	static const char *const builds[] = { "15.20.8901.12", "15.21.100.0", "16.0.1.0",
					      "15.3.1.0",      "9.0.0.0",     "0.0.0.0" };
	const struct catalog *c = *state;
	struct catalog_class cls;

	for (size_t i = 0; i < sizeof(builds) / sizeof(builds[0]); i++) {
		struct ex_build b;

		assert_true(ex_build_from_str(builds[i], &b));
		classify(c, builds[i], &cls);
		assert_int_equal(cls.family, ex_family_of(&b));
		assert_true(cls.family == EX_FAMILY_NONE || cls.family == EX_FAMILY_ONLINE);
		assert_null(cls.nearest);
		assert_false(cls.exact);
		assert_false(cls.compliant);
		assert_string_equal(cls.branch, "");
		assert_int_equal(cls.nrecommended, 0);
	}
	classify(c, "15.20.8901.12", &cls);
	assert_int_equal(cls.family, EX_FAMILY_ONLINE);
}

/* ---- in-memory inputs ---- */

#define HDR "product,branch,update,build,date\n"

static const char base_csv[] = HDR "2016,CU22,CU22,15.1.2375.7,2021-09-28\n"
				   "2016,CU23,CU23,15.1.2507.6,2022-04-20\n"
				   "2016,CU23,CU23 Oct25SU,15.1.2507.61,2025-10-14\n"
				   "SE,RTM,RTM,15.2.2562.17,2025-07-01\n";
static const char base_policy[] = "2016 CU23 from 15.1.2507.61\nSE RTM from 15.2.2562.17\n";

static struct catalog *parse_mem(const char *csv, const char *policy, struct catalog_error *err)
{
	return catalog_parse(csv, strlen(csv), "builds.csv", policy, strlen(policy), "policy.conf",
			     err);
}

static void expect_error(const char *csv, const char *policy, const char *file, unsigned line,
			 const char *needle)
{
	struct catalog_error err;
	struct catalog *c;

	memset(&err, 0, sizeof(err));
	c = parse_mem(csv, policy, &err);
	if (c != NULL) {
		catalog_free(c);
		fail_msg("accepted; expected %s:%u '%s'", file, line, needle);
	}
	if (strcmp(err.file, file) != 0 || err.line != line || strstr(err.msg, needle) == NULL)
		fail_msg("got %s:%u: %s; expected %s:%u '%s'", err.file, err.line, err.msg, file,
			 line, needle);
}

static void expect_csv_error(const char *csv, unsigned line, const char *needle)
{
	expect_error(csv, base_policy, "builds.csv", line, needle);
}

static void expect_policy_error(const char *policy, unsigned line, const char *needle)
{
	expect_error(base_csv, policy, "policy.conf", line, needle);
}

static void test_mem_valid(void **state)
{
	struct catalog_error err;
	struct catalog *c, *c2;
	struct catalog_class cls;

	(void)state;
	c = parse_mem(base_csv, base_policy, &err);
	assert_non_null(c);
	assert_int_equal(catalog_size(c), 4);
	assert_int_equal(strncmp(catalog_version(c), "4:", 2), 0);
	classify(c, "15.1.2507.61", &cls);
	assert_true(cls.compliant);
	classify(c, "15.1.2375.7", &cls);
	assert_false(cls.compliant);
	assert_recommended(&cls, (const char *const[]){ "15.2.2562.17", "15.1.2507.61" }, 2);

	/* The version follows either input. */
	c2 = parse_mem(base_csv, "2016 CU23 from 15.1.2507.61\n", &err);
	assert_non_null(c2);
	assert_string_not_equal(catalog_version(c), catalog_version(c2));
	classify(c2, "15.2.2562.17", &cls);
	assert_false(cls.compliant);
	catalog_free(c2);
	catalog_free(c);

	/* CRLF, comments, blank lines, a comment after a rule, an empty
	 * policy, and an input without a final newline are all fine. */
	c = parse_mem("# builds\r\n\r\n" HDR "  # indented comment\r\n"
		      "2016,CU23,CU23,15.1.2507.6,2022-04\r\n"
		      "2016,CU23,CU23 Oct25SU,15.1.2507.61,2025-10-14",
		      "\t\n# policy\n2016   CU23\tfrom 15.01.2507.061   # Oct25SU\r\n2013 never",
		      &err);
	assert_non_null(c);
	assert_int_equal(catalog_entry_at(c, 0)->day, 0);
	assert_int_equal(catalog_entry_at(c, 0)->month, 4);
	classify(c, "15.1.2507.61", &cls);
	assert_true(cls.compliant);
	catalog_free(c);
	c = parse_mem(base_csv, "", &err);
	assert_non_null(c);
	classify(c, "15.1.2507.61", &cls);
	assert_false(cls.compliant);
	assert_int_equal(cls.nrecommended, 0);
	catalog_free(c);

	/* Inputs given as NULL with length 0 are empty. */
	c = catalog_parse(base_csv, strlen(base_csv), NULL, NULL, 0, NULL, &err);
	assert_non_null(c);
	catalog_free(c);
	assert_null(catalog_parse(NULL, 0, NULL, NULL, 0, NULL, &err));
	assert_string_equal(err.file, "<memory>");
	assert_null(catalog_parse(base_csv, strlen(base_csv), "b", NULL, 3, "p", &err));
	assert_string_equal(err.file, "p");
	assert_int_equal(err.line, 0);
}

static void test_err_columns(void **state)
{
	(void)state;
	expect_csv_error(HDR "2016,CU23,CU23,15.1.2507.6\n", 2, "expected 5 columns, found 4");
	expect_csv_error(HDR "2016,CU23,CU23,15.1.2507.6,2022-04-20\n"
			     "2016,CU23,CU23,x,15.1.2507.61,2025-10-14\n",
			 3, "found 6");
	expect_csv_error(HDR "2016\n", 2, "found 1");
}

static void test_err_unknown_product(void **state)
{
	(void)state;
	expect_csv_error(HDR "2020,CU23,CU23,15.1.2507.6,2022-04-20\n", 2, "unknown product");
	expect_csv_error(HDR "Online,CU1,CU1,15.20.1.0,2022-04-20\n", 2, "unknown product");
	expect_csv_error(HDR "none,CU1,CU1,16.0.1.0,2022-04-20\n", 2, "unknown product");
	expect_csv_error(HDR "Exchange 2016,CU23,CU23,15.1.2507.6,2022-04-20\n", 2,
			 "unknown product");
}

static void test_err_bad_build(void **state)
{
	(void)state;
	expect_csv_error(HDR "2016,CU23,CU23,15.1.2507,2022-04-20\n", 2, "bad build");
	expect_csv_error(HDR "2016,CU23,CU23,15.1.2507.6x,2022-04-20\n", 2, "bad build");
	expect_csv_error(HDR "2016,CU23,CU23, 15.1.2507.6,2022-04-20\n", 2, "bad build");
	expect_csv_error(HDR "2016,CU23,CU23,15.1.2507.2147483648,2022-04-20\n", 2, "bad build");
}

static void test_err_product_mismatch(void **state)
{
	(void)state;
	expect_csv_error(HDR "2019,CU23,CU23,15.1.2507.6,2022-04-20\n", 2,
			 "build 15.1.2507.6 is Exchange 2016, not 2019");
	/* The 2019/SE split inside 15.2. */
	expect_csv_error(HDR "2019,CU16,CU16,15.2.2562.1,2026-01-01\n", 2, "is Exchange SE");
	expect_csv_error(HDR "SE,RTM,RTM,15.2.2561.1,2026-01-01\n", 2, "is Exchange 2019");
	expect_csv_error(HDR "2016,CU1,CU1,15.20.1.0,2026-01-01\n", 2,
			 "15.20.1.0 is not an on-premises Exchange build");
	expect_csv_error(HDR "2016,CU1,CU1,17.1.2106.3,2026-01-01\n", 2,
			 "is not an on-premises Exchange build");
}

static void test_err_bad_date(void **state)
{
	static const char *const dates[] = {
		"2022-02-30", "2022-13-01", "2022-00-10", "2021-02-29", "22-04-20",   "2022-4-20",
		"2022/04/20", "2022-04-",   "2022",       "",           "1900-01-01",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(dates) / sizeof(dates[0]); i++) {
		char csv[256];

		snprintf(csv, sizeof(csv),
			 HDR "2016,CU23,CU23,15.1.2507.6,2022-04-20\n"
			     "2016,CU23,CU23 Oct25SU,15.1.2507.61,%s\n",
			 dates[i]);
		expect_csv_error(csv, 3, "bad date");
	}
	/* Leap days exist in leap years, 2000 included. */
	struct catalog_error err;
	struct catalog *c = parse_mem(HDR "2016,CU23,CU23,15.1.2507.6,2024-02-29\n"
					  "2016,CU23,CU23 Oct25SU,15.1.2507.61,2000-02-29\n",
				      "2016 CU23 from 15.1.2507.61\n", &err);

	assert_non_null(c);
	assert_int_equal(catalog_entry_at(c, 1)->year, 2000);
	assert_int_equal(catalog_entry_at(c, 1)->day, 29);
	catalog_free(c);
}

static void test_err_duplicate_build(void **state)
{
	(void)state;
	expect_csv_error(HDR "2016,CU23,CU23,15.1.2507.6,2022-04-20\n"
			     "2016,CU23,CU23 Oct25SU,15.1.2507.61,2025-10-14\n"
			     "2016,CU23,CU23 again,15.1.2507.6,2022-04-20\n",
			 4, "duplicate build 15.1.2507.6 (already on line 2)");
	/* The zero-padded form is the same build. */
	expect_csv_error(HDR "2016,CU23,CU23 Oct25SU,15.01.2507.061,2025-10-14\n"
			     "2016,CU23,CU23,15.1.2507.6,2022-04-20\n"
			     "2016,CU23,CU23 Oct25SU,15.1.2507.61,2025-10-14\n",
			 4, "already on line 2");
}

static void test_err_missing_header(void **state)
{
	(void)state;
	expect_csv_error("2016,CU23,CU23,15.1.2507.6,2022-04-20\n", 1, "missing header");
	expect_csv_error("# comment\n\nproduct,branch,update,build\n", 3, "missing header");
	expect_csv_error("Product,Branch,Update,Build,Date\n", 1, "missing header");
	expect_csv_error("product,branch,update,build,date \n", 1, "missing header");
	/* Nothing but comments: no line to point at. */
	expect_csv_error("# only a comment\n", 0, "missing header");
	expect_csv_error("", 0, "missing header");
	expect_csv_error(HDR "# no rows\n", 0, "no builds");
}

static void test_err_bad_branch_and_update(void **state)
{
	(void)state;
	expect_csv_error(HDR "2016,,CU23,15.1.2507.6,2022-04-20\n", 2, "bad branch");
	expect_csv_error(HDR "2016,CU 23,CU23,15.1.2507.6,2022-04-20\n", 2, "bad branch");
	expect_csv_error(HDR "2016,CU23456789012345,CU23,15.1.2507.6,2022-04-20\n", 2,
			 "bad branch");
	expect_csv_error(HDR "2016,CU23,,15.1.2507.6,2022-04-20\n", 2, "bad update");
	expect_csv_error(HDR "2016,CU23, CU23,15.1.2507.6,2022-04-20\n", 2, "bad update");
	expect_csv_error(HDR
			 "2016,CU23,CU23 with a name that is far too long,15.1.2507.6,2022-04-20\n",
			 2, "bad update");
	expect_csv_error(HDR "2016,CU23,CU23\tSU,15.1.2507.6,2022-04-20\n", 2, "bad update");
}

static void test_err_branch_lines(void **state)
{
	(void)state;
	/* A CU23 row on CU22's line: the row that differs from the first. */
	expect_csv_error(HDR "2016,CU23,CU23,15.1.2507.6,2022-04-20\n"
			     "2016,CU23,CU23 Oct25SU,15.1.2507.61,2025-10-14\n"
			     "2016,CU23,CU23 typo,15.1.2375.99,2025-10-14\n",
			 4,
			 "build 15.1.2375.99 belongs to 15.1.2375.x, but the builds of 2016 CU23 "
			 "are 15.1.2507.x (line 2)");
	/* 2010 service packs are a major.minor line. */
	expect_csv_error(HDR "2010,SP3,SP3 RU1,14.3.146.0,2013-05-29\n"
			     "2010,SP3,SP3 RU32,14.2.513.0,2021-03-02\n",
			 3, "belongs to 14.2.x.x, but the builds of 2010 SP3 are 14.3.x.x");
	/* Branches may share a line only side by side. */
	expect_csv_error(HDR "2016,RTM,RTM,15.1.225.42,2015-10-01\n"
			     "2016,Preview,Preview,15.1.225.16,2015-07-22\n"
			     "2016,RTM,RTM SU,15.1.225.10,2015-10-01\n",
			 2, "builds of 2016 RTM and Preview interleave within 15.1.225.x (line 3)");
}

static void test_err_line_limits(void **state)
{
	char *csv;
	size_t len;

	(void)state;
	/* One octet over the line limit. */
	len = strlen(HDR) + 1025 + 2;
	csv = malloc(len);
	assert_non_null(csv);
	snprintf(csv, len, "%s#%01024d\n", HDR, 0);
	expect_csv_error(csv, 2, "line longer than 1024");
	/* At the limit a comment is still a comment. */
	snprintf(csv, len, "%s#%01023d\n", HDR, 0);
	expect_error(csv, "", "builds.csv", 0, "no builds");
	free(csv);

	/* A NUL would cut the row short as a C string. */
	static const char nul[] = HDR "2016,CU23,CU23,15.1.2507.6,2022-04-20\0junk\n";
	struct catalog_error err;
	assert_null(catalog_parse(nul, sizeof(nul) - 1, "builds.csv", base_policy,
				  strlen(base_policy), "policy.conf", &err));
	assert_int_equal(err.line, 2);
	assert_non_null(strstr(err.msg, "control character 0x00"));
	/* So would a CR inside a line, which message quotes would hide. */
	expect_csv_error(HDR "2016,CU23,CU23,15.1.2507.6\r,2022-04-20\n", 2,
			 "control character 0x0d");
	expect_policy_error("2016 CU23 from\x0b"
			    "15.1.2507.61\n",
			    1, "control character 0x0b");
}

static void test_err_too_many_rows(void **state)
{
	static const char row[] = "2016,CU23,CU23,15.1.2507.6,2022-04-20\n";
	size_t n = 100001, len = strlen(HDR) + n * strlen(row) + 1;
	char *csv = malloc(len), *p;

	(void)state;
	assert_non_null(csv);
	p = csv + sprintf(csv, "%s", HDR);
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "%s", row);
	expect_csv_error(csv, 100002, "more than 100000 builds");
	free(csv);
}

static void test_err_policy_syntax(void **state)
{
	(void)state;
	expect_policy_error("2016 CU23 15.1.2507.61\n", 1, "expected '<family> never'");
	expect_policy_error("# c\n2016 sometimes\n", 2, "expected");
	expect_policy_error("2016 CU23 from 15.1.2507.61 extra\n", 1, "expected");
	expect_policy_error("2016\n", 1, "expected");
	expect_policy_error("2016 CU23 since 15.1.2507.61\n", 1, "expected");
	expect_policy_error("2016 CU23 from nothing\n", 1, "bad build");
}

static void test_err_policy_unknown_family(void **state)
{
	(void)state;
	expect_policy_error("2020 never\n", 1, "unknown family '2020'");
	expect_policy_error("SE RTM from 15.2.2562.17\nOnline never\n", 2, "unknown family");
	expect_policy_error("none never\n", 1, "unknown family");
}

static void test_err_policy_unknown_branch(void **state)
{
	(void)state;
	expect_policy_error("2016 CU99 from 15.1.2507.61\n", 1, "2016 has no branch 'CU99'");
	/* Branch names are exact. */
	expect_policy_error("2016 cu23 from 15.1.2507.61\n", 1, "no branch 'cu23'");
	/* A family with no builds in the catalog has no branches either. */
	expect_policy_error("2019 CU15 from 15.2.1748.39\n", 1, "2019 has no branch");
}

static void test_err_policy_from_not_in_branch(void **state)
{
	(void)state;
	/* Not a known build at all. */
	expect_policy_error("2016 CU23 from 15.1.2507.60\n", 1,
			    "15.1.2507.60 is not a build of 2016 CU23");
	/* A known build, of another branch. */
	expect_policy_error("\n2016 CU23 from 15.1.2375.7\n", 2, "is not a build of 2016 CU23");
}

static void test_err_policy_duplicate(void **state)
{
	(void)state;
	expect_policy_error("2016 CU23 from 15.1.2507.61\n2016 CU23 from 15.1.2507.6\n", 2,
			    "duplicate policy for 2016 CU23 (line 1)");
	expect_policy_error("2013 never\n#\n2013 never\n", 3, "duplicate policy for 2013 (line 1)");
	expect_policy_error("2016 never\n2016 CU23 from 15.1.2507.61\n", 2,
			    "conflicting policy: 2016 is never (line 1)");
	expect_policy_error("2016 CU23 from 15.1.2507.61\n2016 never\n", 2,
			    "conflicting policy: 2016 has a branch rule (line 1)");
}

static void test_err_policy_line_too_long(void **state)
{
	char policy[1100];

	(void)state;
	snprintf(policy, sizeof(policy), "2013 never\n2016 never %01030d\n", 0);
	expect_policy_error(policy, 2, "line longer than 1024");
}

/* ---- dates, channels, current ---- */

#define HDR6 "product,branch,update,build,date,channel\n"

static const char dated_csv[] = HDR6 "2016,CU23,CU23,15.1.2507.6,2022-04-20,public\n"
				     "2016,CU23,CU23 Oct25SU,15.1.2507.61,2025-10-14,public\n"
				     "2016,CU23,CU23 Dec25SU,15.1.2507.63,2025-12-09,esu\n"
				     "SE,RTM,RTM,15.2.2562.17,2025-07-01,public\n"
				     "SE,RTM,RTM Oct25SU,15.2.2562.29,2025-10-14,public\n"
				     "SE,RTM,RTM Dec25SU,15.2.2562.35,2025-12-09,public\n"
				     "SE,RTM,RTM Feb26SU,15.2.2562.37,2026-02,public\n";

static int64_t at(const char *s)
{
	int64_t t;

	if (!catalog_parse_time(s, &t))
		fail_msg("test time '%s' does not parse", s);
	return t;
}

static bool compliant_at(const struct catalog *c, const char *build, const char *when)
{
	struct catalog_class cls;

	classify_at(c, build, at(when), &cls);
	return cls.compliant;
}

static void test_time_forms(void **state)
{
	static const char *const bad[] = {
		"2026-9-1",
		"2026/09/01",
		"01.09.2026",
		"2026-09-01T00:00Z",
		"2026-09-01 00:00:00",
		"2026-09-01T24:00:00Z",
		"2026-02-29",
		"2026-09-01T00:00:00+02:00",
		"1989-12-31",
		"3000-01-01",
		"",
		"next week",
	};
	char buf[32];
	int64_t t;

	(void)state;
	assert_true(catalog_parse_time("2026-09-01", &t));
	assert_int_equal(t, T_SEP1);
	assert_true(catalog_parse_time("2026-09-01T12:30:05Z", &t));
	assert_int_equal(t, T_SEP1 + 12 * 3600 + 30 * 60 + 5);
	assert_true(catalog_parse_time("2024-02-29", &t));
	assert_int_equal(t, INT64_C(1709164800));
	assert_true(catalog_parse_time("1990-01-01", &t));
	assert_int_equal(t, INT64_C(631152000));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (catalog_parse_time(bad[i], &t))
			fail_msg("'%s' accepted as a time", bad[i]);
	}
	catalog_format_time(T_SEP1, buf, sizeof(buf));
	assert_string_equal(buf, "2026-09-01");
	catalog_format_time(T_SEP1 + 1, buf, sizeof(buf));
	assert_string_equal(buf, "2026-09-01T00:00:01Z");
	catalog_format_time(-1, buf, sizeof(buf));
	assert_string_equal(buf, "1969-12-31T23:59:59Z");
	catalog_format_time(CATALOG_TIME_MAX, buf, sizeof(buf));
	assert_string_equal(buf, "");

	/* A month-only release counts from the month's last day. */
	struct catalog_entry e = { .year = 2026, .month = 2, .day = 0 };

	assert_int_equal(catalog_entry_time(&e), at("2026-02-28"));
	e.day = 10;
	assert_int_equal(catalog_entry_time(&e), at("2026-02-10"));
}

static void test_mem_dated_rules(void **state)
{
	struct catalog_error err;
	struct catalog_class cls;
	struct ex_build b;
	int64_t from, until;
	struct catalog *c;

	(void)state;
	/* CU23 from Oct25SU until September, then from the ESU-only Dec25SU
	 * until mid-October (an operator honouring ESU for a while); SE from
	 * RTM until November 2025, then current 30 days. */
	c = parse_mem(dated_csv,
		      "2016 CU23 from 15.1.2507.61 until 2026-09-01\n"
		      "2016 CU23 until 2026-10-14T12:00:00Z from 15.1.2507.63\n",
		      &err);
	assert_null(c); /* the dates come after the rule */
	c = parse_mem(dated_csv,
		      "2016 CU23 from 15.1.2507.61 until 2026-09-01\n"
		      "2016 CU23 from 15.1.2507.63 until 2026-10-14T12:00:00Z since 2026-09-01\n"
		      "SE RTM from 15.2.2562.17 until 2025-11-01\n"
		      "SE RTM current 30d since 2025-11-01\n",
		      &err);
	if (c == NULL)
		fail_msg("%s:%u: %s", err.file, err.line, err.msg);
	assert_true(compliant_at(c, "15.1.2507.61", "2026-08-31T23:59:59Z"));
	assert_false(compliant_at(c, "15.1.2507.61", "2026-09-01"));
	assert_true(compliant_at(c, "15.1.2507.63", "2026-09-01"));
	assert_true(compliant_at(c, "15.1.2507.63", "2026-10-14T11:59:59Z"));
	assert_false(compliant_at(c, "15.1.2507.63", "2026-10-14T12:00:00Z"));
	classify_at(c, "15.1.2507.63", at("2026-09-15"), &cls);
	assert_int_equal(cls.rule.kind, CATALOG_RULE_FROM);
	assert_int_equal(cls.rule.line, 2);
	assert_int_equal(cls.rule.since, T_SEP1);
	assert_int_equal(cls.rule.until, at("2026-10-14T12:00:00Z"));
	/* The rule asks for an ESU-only build: that is what is recommended
	 * on the branch, SE first. */
	assert_recommended(&cls, (const char *const[]){ "15.2.2562.37", "15.1.2507.63" }, 2);
	classify_at(c, "15.1.2507.61", at("2026-08-01"), &cls);
	assert_recommended(&cls, (const char *const[]){ "15.2.2562.37", "15.1.2507.61" }, 2);
	/* .63 complies without a break from Oct25SU's rule into its own. */
	assert_true(ex_build_from_str("15.1.2507.63", &b));
	catalog_verdict_span(c, &b, at("2026-09-15"), &from, &until);
	assert_int_equal(from, CATALOG_TIME_MIN);
	assert_int_equal(until, at("2026-10-14T12:00:00Z"));
	assert_true(ex_build_from_str("15.1.2507.62", &b));
	catalog_verdict_span(c, &b, at("2026-09-15"), &from, &until);
	assert_int_equal(from, T_SEP1);
	assert_int_equal(until, CATALOG_TIME_MAX);

	/* SE: anything from RTM until November 2025; then the newest release
	 * 30 days old: Oct25SU from 2025-11-13, Dec25SU from 2026-01-08,
	 * Feb26SU (month only: from 2026-02-28) from 2026-03-30. */
	assert_true(compliant_at(c, "15.2.2562.17", "2025-10-31T23:59:59Z"));
	assert_true(compliant_at(c, "15.2.2562.17", "2025-11-12T23:59:59Z"));
	assert_false(compliant_at(c, "15.2.2562.17", "2025-11-13"));
	assert_true(compliant_at(c, "15.2.2562.29", "2026-01-07T23:59:59Z"));
	assert_false(compliant_at(c, "15.2.2562.29", "2026-01-08"));
	assert_true(compliant_at(c, "15.2.2562.36", "2026-03-29T23:59:59Z"));
	assert_false(compliant_at(c, "15.2.2562.36", "2026-03-30"));
	classify_at(c, "15.2.2562.36", at("2026-03-30"), &cls);
	assert_int_equal(cls.rule.kind, CATALOG_RULE_CURRENT);
	assert_int_equal(cls.rule.days, 30);
	assert_build_str(cls.rule.floor, "15.2.2562.37");
	assert_recommended(&cls, (const char *const[]){ "15.2.2562.37" }, 1);
	/* before any release is 30 days old under the rule: the floor of
	 * then, Oct25SU from 2025-11-13 */
	classify_at(c, "15.2.2562.17", at("2025-11-05"), &cls);
	assert_true(cls.compliant);
	assert_build_str(cls.rule.floor, "15.2.2562.17");

	static const char *const dates[] = { "2025-11-01", "2025-11-13", "2026-01-08",
					     "2026-03-30", "2026-09-01", "2026-10-14T12:00:00Z" };
	int64_t t = at("2025-01-01");

	for (size_t i = 0; i < sizeof(dates) / sizeof(dates[0]); i++) {
		t = catalog_next_change(c, t);
		assert_int_equal(t, at(dates[i]));
	}
	assert_int_equal(catalog_next_change(c, t), CATALOG_TIME_MAX);
	catalog_free(c);

	/* current with no release old enough yet: every build complies. */
	c = parse_mem(dated_csv, "SE RTM current 365d\n", &err);
	assert_non_null(c);
	classify_at(c, "15.2.2562.0", at("2026-01-01"), &cls);
	assert_true(cls.compliant);
	assert_null(cls.rule.floor);
	assert_false(compliant_at(c, "15.2.2562.0", "2026-07-01"));
	catalog_free(c);
}

static void test_channels(void **state)
{
	struct catalog_error err;
	struct catalog *c;

	(void)state;
	c = parse_mem(dated_csv, "", &err);
	assert_non_null(c);
	assert_false(catalog_entry_at(c, 1)->esu); /* 15.1.2507.61 */
	assert_true(catalog_entry_at(c, 2)->esu);  /* 15.1.2507.63 */
	catalog_free(c);
	expect_csv_error(HDR6 "2016,CU23,CU23,15.1.2507.6,2022-04-20,ESU\n", 2,
			 "bad channel 'ESU' (public or esu)");
	expect_csv_error(HDR6 "2016,CU23,CU23,15.1.2507.6,2022-04-20,\n", 2, "bad channel ''");
	expect_csv_error(HDR6 "2016,CU23,CU23,15.1.2507.6,2022-04-20\n", 2,
			 "expected 6 columns, found 5");
	expect_csv_error(HDR "2016,CU23,CU23,15.1.2507.6,2022-04-20,esu\n", 2,
			 "expected 5 columns, found 6");
}

static void test_err_policy_dates(void **state)
{
	(void)state;
	/* Every unknown date form names the file and the line. */
	expect_policy_error("2013 never\n\n2016 CU23 from 15.1.2507.61 until 2026-9-1\n", 3,
			    "unknown date form '2026-9-1' after 'until' (YYYY-MM-DD or "
			    "YYYY-MM-DDTHH:MM:SSZ, UTC)");
	expect_policy_error("2016 CU23 from 15.1.2507.61 since September\n", 1,
			    "unknown date form 'September' after 'since'");
	expect_policy_error("2016 CU23 from 15.1.2507.61 until 2026-09-01T00:00:00+02:00\n", 1,
			    "unknown date form");
	expect_policy_error("2016 CU23 from 15.1.2507.61 until 2026-02-30\n", 1,
			    "unknown date form");
	expect_policy_error("2016 CU23 from 15.1.2507.61 until\n", 1, "'until' needs a date");
	expect_policy_error("2016 CU23 from 15.1.2507.61 before 2026-09-01\n", 1,
			    "expected 'since <date>' or 'until <date>' after the rule, found "
			    "'before'");
	expect_policy_error("2016 CU23 from 15.1.2507.61 until 2026-09-01 until 2026-10-01\n", 1,
			    "'until' given twice");
	expect_policy_error("2016 CU23 from 15.1.2507.61 until 2026-09-01 since 2026-09-01\n", 1,
			    "since 2026-09-01 is not before until 2026-09-01");
	expect_policy_error("2016 never until 2026-09-01\n", 1, "expected '<family> never'");
	expect_policy_error("SE RTM current 60\n", 1, "bad grace '60' for current");
	expect_policy_error("SE RTM current 3651d\n", 1, "bad grace '3651d'");
	expect_policy_error("SE RTM current -1d\n", 1, "bad grace");
	expect_policy_error("SE RTM current\n", 1, "expected");
	/* Two rules of one branch must not overlap in time; touching is fine. */
	expect_policy_error("2016 CU23 from 15.1.2507.61 until 2026-09-01\n"
			    "2016 CU23 from 15.1.2507.6 since 2026-08-31\n",
			    2, "duplicate policy for 2016 CU23 (line 1): their dates overlap");
	expect_policy_error("SE RTM current 60d\nSE RTM from 15.2.2562.17 until 2025-01-01\n", 2,
			    "duplicate policy for SE RTM (line 1)");
	struct catalog_error err;
	struct catalog *c = parse_mem(base_csv,
				      "2016 CU23 from 15.1.2507.61 until 2026-09-01\n"
				      "2016 CU23 from 15.1.2507.6 since 2026-09-01\n",
				      &err);
	assert_non_null(c);
	catalog_free(c);
}

static void test_load_missing_file(void **state)
{
	struct catalog_error err;

	(void)state;
	assert_null(catalog_load("/nonexistent/exchange-builds.csv", "/nonexistent/p", &err));
	assert_string_equal(err.file, "/nonexistent/exchange-builds.csv");
	assert_int_equal(err.line, 0);
	assert_non_null(strstr(err.msg, "cannot open"));
}

static void test_load_too_large(void **state)
{
	char path[] = "/tmp/tes-test-builds-XXXXXX";
	struct catalog_error err;
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (64 << 20) + 1), 0);
	close(fd);
	assert_null(catalog_load(path, "/dev/null", &err));
	unlink(path);
	assert_string_equal(err.file, path);
	assert_int_equal(err.line, 0);
	assert_non_null(strstr(err.msg, "larger than 67108864 octets"));
}

/* Errors in files name the file and its line. */
static void test_load_reports_path(void **state)
{
	const char *src = getenv("TES_SRCDIR");
	char builds[4096];
	char policy[] = "/tmp/tes-test-policy-XXXXXX";
	struct catalog_error err;
	int fd;

	(void)state;
	assert_non_null(src);
	snprintf(builds, sizeof(builds), "%s/data/exchange-builds.csv", src);
	fd = mkstemp(policy);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "2013 never\n2016 CU23 from 15.1.2507.60\n", 39), 39);
	close(fd);
	assert_null(catalog_load(builds, policy, &err));
	unlink(policy);
	assert_string_equal(err.file, policy);
	assert_int_equal(err.line, 2);
	assert_non_null(strstr(err.msg, "not a build of 2016 CU23"));
}

int main(void)
{
	const struct CMUnitTest shipped[] = {
		cmocka_unit_test(test_row_count),
		cmocka_unit_test(test_every_row_classifies_to_itself),
		cmocka_unit_test(test_policy_boundaries),
		cmocka_unit_test(test_policy_today),
		cmocka_unit_test(test_policy_dates),
		cmocka_unit_test(test_policy_over_every_row),
		cmocka_unit_test(test_esu_rows),
		cmocka_unit_test(test_newest_per_family),
		cmocka_unit_test(test_between_known_builds),
		cmocka_unit_test(test_zero_padded_builds),
		cmocka_unit_test(test_unknown_2010_transport_builds),
		cmocka_unit_test(test_recommendations),
		cmocka_unit_test(test_not_on_premises),
	};
	const struct CMUnitTest loader[] = {
		cmocka_unit_test(test_mem_valid),
		cmocka_unit_test(test_err_columns),
		cmocka_unit_test(test_err_unknown_product),
		cmocka_unit_test(test_err_bad_build),
		cmocka_unit_test(test_err_product_mismatch),
		cmocka_unit_test(test_err_bad_date),
		cmocka_unit_test(test_err_duplicate_build),
		cmocka_unit_test(test_err_missing_header),
		cmocka_unit_test(test_err_bad_branch_and_update),
		cmocka_unit_test(test_err_branch_lines),
		cmocka_unit_test(test_err_line_limits),
		cmocka_unit_test(test_err_too_many_rows),
		cmocka_unit_test(test_err_policy_syntax),
		cmocka_unit_test(test_err_policy_unknown_family),
		cmocka_unit_test(test_err_policy_unknown_branch),
		cmocka_unit_test(test_err_policy_from_not_in_branch),
		cmocka_unit_test(test_err_policy_duplicate),
		cmocka_unit_test(test_err_policy_line_too_long),
		cmocka_unit_test(test_time_forms),
		cmocka_unit_test(test_mem_dated_rules),
		cmocka_unit_test(test_channels),
		cmocka_unit_test(test_err_policy_dates),
		cmocka_unit_test(test_load_missing_file),
		cmocka_unit_test(test_load_too_large),
		cmocka_unit_test(test_load_reports_path),
	};
	int failed =
		cmocka_run_group_tests_name("shipped data", shipped, load_shipped, free_shipped);

	failed += cmocka_run_group_tests_name("loader", loader, NULL, NULL);
	return failed;
}
