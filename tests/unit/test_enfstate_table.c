/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The enforcement state's tables (gateway/state/enfstate.c): growth from a
 * small size hint, churn that leaves overflow flags behind and makes the
 * writer rebuild a table, and the burst lookups, each against what the
 * single calls say or what was put.  The RCU contract itself is
 * test_enfstate's and stress_enfstate's.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "gateway/state/enfstate.h"

#define T0 INT64_C(1709251200) /* 2024-03-01T00:00:00Z */

static int group_setup(void **state)
{
	(void)state;
	enfstate_thread_register();
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	enfstate_thread_unregister();
	return 0;
}

static struct tes_server server(uint32_t tenant, unsigned i)
{
	struct tes_server s;

	memset(&s, 0, sizeof(s));
	s.tenant_id = tenant;
	snprintf(s.fqdn, sizeof(s.fqdn), "Mail%u.Example.net", i);
	s.build = (struct ex_build){ { 15, 1, 2507, i % 1000 } };
	s.family = EX_FAMILY_2016;
	s.first_detected = T0;
	s.last_seen = T0 + i;
	return s;
}

static void name_of(unsigned i, char *buf, size_t len)
{
	snprintf(buf, len, "mail%u.example.NET", i);
}

/* Every key below n is there exactly when present[i], with its value. */
static void expect_servers(struct enfstate *st, const bool *present, unsigned n)
{
	char name[64];
	struct tes_server got;
	size_t count = 0;
	struct enfstate_stats stats;

	for (unsigned i = 0; i < n; i++) {
		name_of(i, name, sizeof(name));
		if (enfstate_lookup_server(st, 3, name, &got) != present[i])
			fail_msg("server %u: found %d, want %d", i, !present[i], present[i]);
		if (present[i]) {
			assert_int_equal(got.last_seen, T0 + i);
			assert_int_equal(got.tenant_id, 3);
			count++;
		}
		/* The same name under another tenant is another key. */
		assert_false(enfstate_lookup_server(st, 4, name, &got));
	}
	enfstate_stats(st, &stats);
	assert_int_equal(stats.servers, count);
}

/* From a hint of 16 to 30 000 entries: the table is rebuilt several times
 * while it grows, and nothing is lost or duplicated. */
static void test_growth(void **state)
{
	enum { N = 30000 };
	struct enfstate *st = enfstate_new(NULL, 16);
	static bool present[N];

	(void)state;
	assert_non_null(st);
	for (unsigned i = 0; i < N; i++) {
		struct tes_server s = server(3, i);

		assert_int_equal(enfstate_server_put(st, &s), 0);
		present[i] = true;
		if (i % 4096 == 0)
			enfstate_quiescent();
	}
	expect_servers(st, present, N);
	/* A replace is a replace, not a second entry. */
	for (unsigned i = 0; i < N; i += 7) {
		struct tes_server s = server(3, i);

		assert_int_equal(enfstate_server_put(st, &s), 1);
	}
	expect_servers(st, present, N);
	enfstate_free(st);
}

/* Deletions leave overflow flags on buckets that once were full; a long
 * churn of deletes and new keys in a table of fixed size must keep finding
 * every key (the writer rebuilds when flags pile up) and must not grow the
 * count. */
static void test_churn(void **state)
{
	enum { N = 40000, LIVE = 3000 };
	struct enfstate *st = enfstate_new(NULL, 1024);
	static bool present[N];
	char name[64];

	(void)state;
	assert_non_null(st);
	memset(present, 0, sizeof(present));
	for (unsigned i = 0; i < N; i++) {
		struct tes_server s = server(3, i);

		assert_int_equal(enfstate_server_put(st, &s), 0);
		present[i] = true;
		if (i >= LIVE) {
			name_of(i - LIVE, name, sizeof(name));
			assert_true(enfstate_server_del(st, 3, name));
			present[i - LIVE] = false;
		}
		if (i % 1024 == 0)
			enfstate_quiescent();
		if (i % 9973 == 0)
			expect_servers(st, present, N);
	}
	expect_servers(st, present, N);
	/* Deleting what is gone finds nothing. */
	name_of(0, name, sizeof(name));
	assert_false(enfstate_server_del(st, 3, name));
	enfstate_free(st);
}

/* The burst calls answer exactly as the single ones, for keys found, keys
 * not there, and keys that cannot be (no name, a name too long). */
static void test_burst_server(void **state)
{
	struct enfstate *st = enfstate_new(NULL, 64);
	char names[ENFSTATE_BURST_MAX][300];
	const char *fqdn[ENFSTATE_BURST_MAX];
	uint32_t tenant[ENFSTATE_BURST_MAX];
	struct tes_server out[ENFSTATE_BURST_MAX], want;
	bool found[ENFSTATE_BURST_MAX];

	(void)state;
	assert_non_null(st);
	for (unsigned i = 0; i < 100; i += 2) {
		struct tes_server s = server(3, i);

		assert_int_equal(enfstate_server_put(st, &s), 0);
	}
	for (unsigned i = 0; i < ENFSTATE_BURST_MAX; i++) {
		name_of(i * 3, names[i], sizeof(names[i]));
		fqdn[i] = names[i];
		tenant[i] = i == 5 ? 4 : 3;
	}
	fqdn[7] = NULL;
	fqdn[8] = "";
	memset(names[9], 'a', 280);
	names[9][280] = '\0';
	memset(out, 0, sizeof(out));
	enfstate_lookup_server_burst(st, ENFSTATE_BURST_MAX, tenant, fqdn, out, found);
	for (unsigned i = 0; i < ENFSTATE_BURST_MAX; i++) {
		bool one = enfstate_lookup_server(st, tenant[i], fqdn[i], &want);

		if (found[i] != one)
			fail_msg("key %u: burst %d, single %d", i, found[i], one);
		if (one)
			assert_memory_equal(&out[i], &want, sizeof(want));
	}
	/* Keys 0, 6, 12, ... are there (even numbers), except under tenant 4. */
	assert_true(found[0]);
	assert_false(found[1]);
	assert_true(found[2]);
	assert_false(found[5] && tenant[5] == 4);
	assert_false(found[7]);
	assert_false(found[8]);
	assert_false(found[9]);
	enfstate_free(st);
}

static void test_burst_source(void **state)
{
	struct enfstate *st = enfstate_new(NULL, 64);
	struct tes_addr a[ENFSTATE_BURST_MAX];
	const struct tes_addr *pa[ENFSTATE_BURST_MAX];
	bool drop[ENFSTATE_BURST_MAX];

	(void)state;
	assert_non_null(st);
	for (unsigned i = 0; i < ENFSTATE_BURST_MAX; i++) {
		char s[64];

		if (i % 3 == 2)
			snprintf(s, sizeof(s), "2001:db8::%u", i);
		else
			snprintf(s, sizeof(s), "198.18.0.%u", i);
		assert_true(tes_addr_parse(s, &a[i]));
		pa[i] = &a[i];
		if (i % 2 == 0) {
			struct enfstate_source v;

			memset(&v, 0, sizeof(v));
			v.drop = i % 4 == 0;
			assert_true(enfstate_source_put(st, &a[i], &v) >= 0);
		}
	}
	enfstate_source_drop_burst(st, ENFSTATE_BURST_MAX, pa, T0, drop);
	for (unsigned i = 0; i < ENFSTATE_BURST_MAX; i++) {
		assert_int_equal(drop[i], enfstate_source_drop(st, &a[i], T0));
		assert_int_equal(drop[i], i % 4 == 0);
	}
	enfstate_free(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_growth),
		cmocka_unit_test(test_churn),
		cmocka_unit_test(test_burst_server),
		cmocka_unit_test(test_burst_source),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
