/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Unit tests for gateway/state/enfstate.c: each table's put/replace/delete/lookup,
 * snapshot swaps of policy and catalog (run under ASan for leaks and use
 * after free), resynchronisation, and enfstate_decide against tes_decide on
 * the same values.  SipHash has its own file, test_siphash.c.  Single-threaded: tests/concurrency has the concurrent part.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "gateway/state/enfstate.h"

#define DAY INT64_C(86400)
#define T0 INT64_C(1709251200) /* 2024-03-01T00:00:00Z */

/* ---- fixtures ---- */

static int group_setup(void **state)
{
	(void)state;
	/* cmocka's thread is both reader and writer here. */
	enfstate_thread_register();
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	enfstate_thread_unregister();
	return 0;
}

static struct tes_addr addr(const char *s)
{
	struct tes_addr a;

	if (!tes_addr_parse(s, &a))
		fail_msg("bad address %s", s);
	return a;
}

static struct tes_server server(uint32_t tenant, const char *fqdn, uint32_t build3)
{
	struct tes_server s;

	memset(&s, 0, sizeof(s));
	s.tenant_id = tenant;
	snprintf(s.fqdn, sizeof(s.fqdn), "%s", fqdn);
	s.build = (struct ex_build){ { 15, 1, 2507, build3 } };
	s.family = EX_FAMILY_2016;
	s.first_detected = T0;
	s.last_seen = T0 + build3;
	/* No sources: the table tests count servers alone; the source index
	 * has tests of its own. */
	return s;
}

static struct enfstate *new_state(void)
{
	struct enfstate *st = enfstate_new(NULL, 0);

	assert_non_null(st);
	return st;
}

static void expect_counts(struct enfstate *st, size_t servers, size_t sources, size_t tenants)
{
	struct enfstate_stats s;

	enfstate_stats(st, &s);
	assert_int_equal(s.servers, servers);
	assert_int_equal(s.sources, sources);
	assert_int_equal(s.tenants, tenants);
}

/* ---- servers ---- */

static void test_server_put_lookup_replace_delete(void **state)
{
	struct enfstate *st = new_state();
	struct tes_server s = server(7, "Exch1.Bear.local", 35), got;

	(void)state;
	assert_false(enfstate_lookup_server(st, 7, "exch1.bear.local", &got));
	assert_int_equal(enfstate_server_put(st, &s), 0);
	expect_counts(st, 1, 0, 0);

	memset(&got, 0xa5, sizeof(got));
	assert_true(enfstate_lookup_server(st, 7, "Exch1.Bear.local", &got));
	assert_memory_equal(&got, &s, sizeof(s));
	/* Any ASCII case finds it; the stored name keeps the writer's case. */
	assert_true(enfstate_lookup_server(st, 7, "EXCH1.BEAR.LOCAL", &got));
	assert_string_equal(got.fqdn, "Exch1.Bear.local");
	assert_true(enfstate_lookup_server(st, 7, "exch1.bear.local", &got));
	/* The tenant is part of the key; a near name is another server. */
	assert_false(enfstate_lookup_server(st, 8, "exch1.bear.local", &got));
	assert_false(enfstate_lookup_server(st, 7, "exch1.bear.local.", &got));
	assert_false(enfstate_lookup_server(st, 7, "exch1.bear.loca", &got));

	/* Replace, under another case: the same entry, the new value. */
	struct tes_server s2 = server(7, "EXCH1.bear.LOCAL", 39);

	s2.resolved = true;
	s2.resolved_at = T0 + 10 * DAY;
	assert_int_equal(enfstate_server_put(st, &s2), 1);
	expect_counts(st, 1, 0, 0);
	assert_true(enfstate_lookup_server(st, 7, "exch1.bear.local", &got));
	assert_memory_equal(&got, &s2, sizeof(s2));

	/* Same name, another tenant: a second entry. */
	struct tes_server s3 = server(8, "exch1.bear.local", 1);

	assert_int_equal(enfstate_server_put(st, &s3), 0);
	expect_counts(st, 2, 0, 0);
	assert_true(enfstate_lookup_server(st, 8, "Exch1.Bear.Local", &got));
	assert_int_equal(got.tenant_id, 8);
	assert_int_equal(got.build.v[3], 1);

	assert_true(enfstate_server_del(st, 7, "Exch1.BEAR.local"));
	assert_false(enfstate_server_del(st, 7, "exch1.bear.local"));
	expect_counts(st, 1, 0, 0);
	assert_false(enfstate_lookup_server(st, 7, "exch1.bear.local", &got));
	assert_true(enfstate_lookup_server(st, 8, "exch1.bear.local", &got));
	enfstate_free(st);
}

static void test_server_names(void **state)
{
	struct enfstate *st = new_state();
	struct tes_server s = server(1, "x", 1), got;
	char name[TES_FQDN_MAX + 8];

	(void)state;
	/* Empty name: rejected, nothing stored. */
	s.fqdn[0] = '\0';
	errno = 0;
	assert_int_equal(enfstate_server_put(st, &s), -1);
	assert_int_equal(errno, EINVAL);
	assert_false(enfstate_lookup_server(st, 1, "", &got));
	assert_false(enfstate_lookup_server(st, 1, NULL, &got));
	assert_false(enfstate_server_del(st, 1, NULL));

	/* 255 octets is the longest name; a lookup with 256 finds nothing. */
	memset(name, 'A', 255);
	name[255] = '\0';
	s = server(1, name, 2);
	assert_int_equal(enfstate_server_put(st, &s), 0);
	for (int i = 0; i < 255; i++)
		name[i] = 'a';
	assert_true(enfstate_lookup_server(st, 1, name, &got));
	assert_int_equal(strlen(got.fqdn), 255);
	assert_int_equal(got.fqdn[0], 'A');
	name[255] = 'a';
	name[256] = '\0';
	assert_false(enfstate_lookup_server(st, 1, name, &got));
	assert_false(enfstate_server_del(st, 1, name));

	/* Only A-Z fold: other octets, 8-bit included, compare exactly. */
	s = server(1, "m\xc3\x84il-_.Example", 3);
	assert_int_equal(enfstate_server_put(st, &s), 0);
	assert_true(enfstate_lookup_server(st, 1, "M\xc3\x84IL-_.example", &got));
	assert_false(enfstate_lookup_server(st, 1, "m\xc3\xa4il-_.example", &got));
	assert_false(enfstate_lookup_server(st, 1, "m\xc3\x84il-_.ex@mple", &got));
	expect_counts(st, 2, 0, 0);
	enfstate_free(st);
}

/* Enough entries to make the tables resize several times, with deletes. */
static void test_many_servers(void **state)
{
	enum { N = 20000 };
	struct enfstate *st = new_state();
	struct tes_server s, got;
	char name[64];
	unsigned i;

	(void)state;
	for (i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "Mail%u.Tenant%u.example", i, i % 13);
		s = server(i % 13, name, i);
		assert_int_equal(enfstate_server_put(st, &s), 0);
	}
	expect_counts(st, N, 0, 0);
	for (i = 0; i < N; i += 2) {
		snprintf(name, sizeof(name), "mail%u.tenant%u.EXAMPLE", i, i % 13);
		assert_true(enfstate_server_del(st, i % 13, name));
	}
	expect_counts(st, N / 2, 0, 0);
	for (i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "MAIL%u.tenant%u.example", i, i % 13);
		bool found = enfstate_lookup_server(st, i % 13, name, &got);

		assert_int_equal(found, i % 2 == 1);
		if (found)
			assert_int_equal(got.build.v[3], i);
		/* Periodic quiescent states let the deferred frees run. */
		if (i % 1024 == 0)
			enfstate_quiescent();
	}
	enfstate_free(st);
}

/* ---- sources ---- */

static void test_sources(void **state)
{
	struct enfstate *st = new_state();
	struct enfstate_source v = { .tenant_id = 7, .drop = false }, got;
	struct tes_addr a4 = addr("198.51.100.25"), a6 = addr("2001:db8:100::25");
	struct tes_addr mapped = addr("::ffff:198.51.100.25");
	struct tes_addr other4 = addr("198.51.100.26"), other6 = addr("2001:db8:100::26");

	(void)state;
	snprintf(v.fqdn, sizeof(v.fqdn), "Exch1.bear.local");
	assert_false(enfstate_lookup_source(st, &a4, &got));
	assert_false(enfstate_source_drop(st, &a4, T0));

	assert_int_equal(enfstate_source_put(st, &a4, &v), 0);
	v.tenant_id = 9;
	v.drop = true;
	snprintf(v.fqdn, sizeof(v.fqdn), "exch6.example");
	assert_int_equal(enfstate_source_put(st, &a6, &v), 0);
	expect_counts(st, 0, 2, 0);

	memset(&got, 0x5a, sizeof(got));
	assert_true(enfstate_lookup_source(st, &a4, &got));
	assert_int_equal(got.tenant_id, 7);
	assert_false(got.drop);
	assert_string_equal(got.fqdn, "Exch1.bear.local");
	assert_false(enfstate_source_drop(st, &a4, T0));
	/* What a dual-stack socket reports for an IPv4 peer is the same key. */
	assert_int_equal(mapped.family, TES_ADDR_V4);
	assert_true(enfstate_lookup_source(st, &mapped, &got));
	assert_int_equal(got.tenant_id, 7);

	assert_true(enfstate_lookup_source(st, &a6, &got));
	assert_int_equal(got.tenant_id, 9);
	assert_true(got.drop);
	assert_string_equal(got.fqdn, "exch6.example");
	assert_true(enfstate_source_drop(st, &a6, T0));
	assert_false(enfstate_lookup_source(st, &other4, &got));
	assert_false(enfstate_lookup_source(st, &other6, &got));

	/* The key is family plus the family's octets: whatever lies past an
	 * IPv4 address's four does not matter, and v4 never matches v6. */
	struct tes_addr dirty = a4, v6of4;

	memset(dirty.a + 4, 0xee, 12);
	assert_true(enfstate_lookup_source(st, &dirty, &got));
	memset(&v6of4, 0, sizeof(v6of4));
	v6of4.family = TES_ADDR_V6;
	memcpy(v6of4.a, a4.a, 4);
	assert_false(enfstate_lookup_source(st, &v6of4, &got));

	/* Replace: the flag flips, "" for no server. */
	struct enfstate_source flip = { .tenant_id = 9, .drop = false };

	assert_int_equal(enfstate_source_put(st, &a6, &flip), 1);
	assert_false(enfstate_source_drop(st, &a6, T0));
	assert_true(enfstate_lookup_source(st, &a6, &got));
	assert_string_equal(got.fqdn, "");
	expect_counts(st, 0, 2, 0);

	struct tes_addr none;

	memset(&none, 0, sizeof(none));
	errno = 0;
	assert_int_equal(enfstate_source_put(st, &none, &v), -1);
	assert_int_equal(errno, EINVAL);
	assert_false(enfstate_lookup_source(st, &none, &got));
	assert_false(enfstate_lookup_source(st, NULL, &got));

	assert_true(enfstate_source_del(st, &mapped));
	assert_false(enfstate_source_del(st, &a4));
	assert_true(enfstate_source_del(st, &a6));
	expect_counts(st, 0, 0, 0);
	enfstate_free(st);
}

/* ---- tenants ---- */

static void test_tenants(void **state)
{
	struct enfstate *st = new_state();
	struct tes_tenant t, got;

	(void)state;
	memset(&t, 0, sizeof(t));
	t.id = 42;
	snprintf(t.name, sizeof(t.name), "contoso");
	assert_int_equal(tes_connector_parse("198.51.100.0/24", NULL, &t.connectors[0]), 0);
	t.nconnectors = 1;
	assert_false(enfstate_lookup_tenant(st, 42, &got));
	assert_int_equal(enfstate_tenant_put(st, &t), 0);
	assert_true(enfstate_lookup_tenant(st, 42, &got));
	assert_memory_equal(&got, &t, sizeof(t));
	assert_false(enfstate_lookup_tenant(st, 43, &got));

	t.pause.start = T0;
	t.pause.end = T0 + 5 * DAY;
	assert_int_equal(enfstate_tenant_put(st, &t), 1);
	assert_true(enfstate_lookup_tenant(st, 42, &got));
	assert_int_equal(got.pause.end, T0 + 5 * DAY);

	t.id = 0; /* id 0 is a key like any other */
	assert_int_equal(enfstate_tenant_put(st, &t), 0);
	expect_counts(st, 0, 0, 2);
	assert_true(enfstate_tenant_del(st, 42));
	assert_false(enfstate_tenant_del(st, 42));
	assert_true(enfstate_lookup_tenant(st, 0, &got));
	expect_counts(st, 0, 0, 1);
	enfstate_free(st);
}

/* ---- snapshots ---- */

static void test_policy_swap(void **state)
{
	struct tes_policy def, p, got;
	struct enfstate_stats stats;
	struct enfstate *st;
	int i;

	(void)state;
	tes_policy_default(&def);
	st = new_state();
	enfstate_policy(st, &got);
	assert_true(tes_policy_equal(&got, &def));
	enfstate_stats(st, &stats);
	assert_int_equal(stats.policy_gen, 1);

	/* Each swap retires the previous snapshot; ASan reports any that is
	 * leaked or read after its free. */
	for (i = 0; i < 50; i++) {
		p = def;
		p.window_offset_min = (int16_t)(i % 60);
		p.full_block = (i & 1) ? TES_FULL_BLOCK_DROP : TES_FULL_BLOCK_REPLY;
		snprintf(p.product, sizeof(p.product), "Product %d", i);
		assert_int_equal(enfstate_policy_set(st, &p), 0);
		enfstate_policy(st, &got);
		assert_true(tes_policy_equal(&got, &p));
		if (i % 10 == 0)
			enfstate_quiescent();
	}
	enfstate_stats(st, &stats);
	assert_int_equal(stats.policy_gen, 51);
	enfstate_free(st);

	/* An initial policy other than the default. */
	p = def;
	p.scope = TES_SCOPE_ALL;
	st = enfstate_new(&p, 16);
	assert_non_null(st);
	enfstate_policy(st, &got);
	assert_true(tes_policy_equal(&got, &p));
	enfstate_free(st);
}

#define HDR "product,branch,update,build,date\n"

/* The rules below carry no dates: any fixed time classifies alike.
 * 2026-12-06T00:00:00Z. */
#define CLASSIFY_AT INT64_C(1796515200)

static struct catalog *make_catalog(unsigned su)
{
	char csv[512], pol[128];
	struct catalog_error err;
	struct catalog *c;

	snprintf(csv, sizeof(csv),
		 HDR "2016,CU22,CU22,15.1.2375.7,2021-09-28\n"
		     "2016,CU23,CU23,15.1.2507.6,2022-04-20\n"
		     "2016,CU23,CU23 SU%u,15.1.2507.%u,2025-10-14\n",
		 su, su);
	snprintf(pol, sizeof(pol), "2016 CU23 from 15.1.2507.%u\n", su);
	c = catalog_parse(csv, strlen(csv), "builds.csv", pol, strlen(pol), "policy.conf", &err);
	if (c == NULL)
		fail_msg("%s:%u: %s", err.file, err.line, err.msg);
	return c;
}

static void test_catalog_swap(void **state)
{
	struct enfstate *st = new_state();
	struct ex_build b = { { 15, 1, 2507, 40 } };
	struct enfstate_class cls;
	struct enfstate_stats stats;
	char va[48], vb[48];
	struct catalog *a, *c;

	(void)state;
	memset(&cls, 0x33, sizeof(cls));
	assert_false(enfstate_classify(st, &b, CLASSIFY_AT, &cls));
	assert_int_equal(cls.family, EX_FAMILY_NONE);
	assert_false(cls.has_nearest);

	/* SU at .39: 15.1.2507.40 is compliant, nearest is the SU. */
	a = make_catalog(39);
	snprintf(va, sizeof(va), "%s", catalog_version(a));
	assert_int_equal(enfstate_catalog_set(st, a), 0);
	assert_true(enfstate_classify(st, &b, CLASSIFY_AT, &cls));
	assert_string_equal(cls.catalog_version, va);
	assert_int_equal(cls.family, EX_FAMILY_2016);
	assert_true(cls.compliant);
	assert_false(cls.exact);
	assert_string_equal(cls.branch, "CU23");
	assert_true(cls.has_nearest);
	assert_string_equal(cls.nearest.update, "CU23 SU39");

	/* SU at .41: the same build is now behind; a's memory is retired. */
	c = make_catalog(41);
	snprintf(vb, sizeof(vb), "%s", catalog_version(c));
	assert_string_not_equal(va, vb);
	assert_int_equal(enfstate_catalog_set(st, c), 0);
	enfstate_quiescent();
	assert_true(enfstate_classify(st, &b, CLASSIFY_AT, &cls));
	assert_string_equal(cls.catalog_version, vb);
	assert_false(cls.compliant);
	assert_string_equal(cls.nearest.update, "CU23");
	assert_true(cls.nrecommended >= 1);
	assert_string_equal(cls.recommended[0].update, "CU23 SU41");

	/* Unknown family: classified, nothing near. */
	struct ex_build odd = { { 99, 0, 0, 0 } };

	assert_true(enfstate_classify(st, &odd, CLASSIFY_AT, &cls));
	assert_int_equal(cls.family, EX_FAMILY_NONE);
	assert_false(cls.has_nearest);

	/* Back to no catalog, then one left installed for enfstate_free. */
	assert_int_equal(enfstate_catalog_set(st, NULL), 0);
	assert_false(enfstate_classify(st, &b, CLASSIFY_AT, &cls));
	assert_int_equal(enfstate_catalog_set(st, make_catalog(50)), 0);
	assert_int_equal(enfstate_catalog_set(st, make_catalog(51)), 0);
	enfstate_stats(st, &stats);
	assert_int_equal(stats.catalog_gen, 5);
	enfstate_free(st);
}

/* ---- decisions ---- */

struct dfx {
	struct tes_policy pol;
	struct tes_tenant ten;
	struct tes_server srv;
	struct tes_addr in4, out4;
	struct tes_detection vuln, ok;
};

static void dfx_init(struct dfx *f)
{
	memset(f, 0, sizeof(*f));
	tes_policy_default(&f->pol);
	f->ten.id = 7;
	snprintf(f->ten.name, sizeof(f->ten.name), "contoso");
	assert_int_equal(tes_connector_parse("198.51.100.0/24", NULL, &f->ten.connectors[0]), 0);
	f->ten.nconnectors = 1;
	f->in4 = addr("198.51.100.25");
	f->out4 = addr("203.0.113.9");
	f->vuln.cls = TES_BUILD_VULNERABLE;
	f->vuln.family = EX_FAMILY_2016;
	assert_true(ex_build_from_str("15.1.2507.35", &f->vuln.build));
	f->ok.cls = TES_BUILD_COMPLIANT;
	f->ok.family = EX_FAMILY_2016;
	assert_true(ex_build_from_str("15.1.2507.39", &f->ok.build));
	assert_int_equal(tes_server_observe(NULL, 7, "Exch1.Bear.local", &f->ten, &f->pol, &f->vuln,
					    &f->in4, T0, &f->srv),
			 TES_CHANGE_FIRST);
}

/* enfstate_decide against tes_decide on the very values stored, the output
 * buffers pre-filled alike so that even bytes tes_decide leaves alone must
 * agree. */
static void expect_same(struct enfstate *st, const struct tes_server *s, const struct tes_tenant *t,
			const struct tes_policy *p, uint32_t tenant_id, const char *fqdn,
			int64_t now, const struct tes_addr *src, const struct tes_detection *d,
			bool via)
{
	struct tes_verdict want, got;

	memset(&want, 0x6b, sizeof(want));
	memset(&got, 0x6b, sizeof(got));
	tes_decide(s, t, p, now, src, d, via, &want);
	enfstate_decide(st, tenant_id, fqdn, src, d, now, via, &got);
	if (memcmp(&want, &got, sizeof(want)) != 0)
		fail_msg("now=T0+%llds: tes_decide %s/%s \"%s\", enfstate_decide %s/%s \"%s\"",
			 (long long)(now - T0), tes_action_name(want.action),
			 tes_reason_name(want.reason), want.text, tes_action_name(got.action),
			 tes_reason_name(got.reason), got.text);
}

static void walk_timeline(struct enfstate *st, const struct dfx *f, const struct tes_policy *p)
{
	static const int minutes[] = { 0, 1, 4, 5, 9, 10, 19, 20, 29, 30, 59 };
	const struct tes_detection *dets[] = { NULL, &f->vuln, &f->ok };
	int64_t day;
	unsigned m, d;

	for (day = 0; day <= 120; day++) {
		for (m = 0; m < sizeof(minutes) / sizeof(minutes[0]); m++) {
			int64_t now = T0 + day * DAY + 7 * 3600 + minutes[m] * 60;

			for (d = 0; d < 3; d++) {
				expect_same(st, &f->srv, &f->ten, p, 7, "EXCH1.bear.local", now,
					    &f->in4, dets[d], false);
				expect_same(st, &f->srv, &f->ten, p, 7, "exch1.bear.local", now,
					    &f->out4, dets[d], false);
				expect_same(st, &f->srv, &f->ten, p, 7, "exch1.bear.local", now,
					    &f->out4, dets[d], true);
			}
			/* Unknown server, unknown tenant. */
			expect_same(st, NULL, &f->ten, p, 7, "exch2.bear.local", now, &f->in4,
				    &f->vuln, false);
			expect_same(st, NULL, &f->ten, p, 7, NULL, now, &f->in4, NULL, false);
			expect_same(st, NULL, NULL, p, 8, "exch1.bear.local", now, &f->in4,
				    &f->vuln, true);
		}
	}
}

static void test_decide_matches(void **state)
{
	struct enfstate *st = new_state();
	struct dfx f;
	struct tes_policy drop;

	(void)state;
	dfx_init(&f);
	assert_int_equal(enfstate_server_put(st, &f.srv), 0);
	assert_int_equal(enfstate_tenant_put(st, &f.ten), 0);
	walk_timeline(st, &f, &f.pol);

	/* A policy swap takes effect on the next decision. */
	drop = f.pol;
	drop.full_block = TES_FULL_BLOCK_DROP;
	drop.scope = TES_SCOPE_ALL;
	drop.window_offset_min = 15;
	assert_int_equal(enfstate_policy_set(st, &drop), 0);
	walk_timeline(st, &f, &drop);

	/* A paused tenant. */
	struct tes_tenant paused = f.ten;

	paused.pause.start = T0 + 70 * DAY;
	paused.pause.end = T0 + 80 * DAY;
	paused.pause.year = 2024;
	paused.pause.days_used = 10;
	f.ten = paused;
	assert_int_equal(enfstate_tenant_put(st, &paused), 1);
	walk_timeline(st, &f, &drop);

	/* Fully blocked with drop: DROP, and the verdict's reply agrees. */
	struct tes_verdict v;

	/* (seen lately: a server silent since day 0 would be Stale by now) */
	f.srv.last_seen = T0 + 110 * DAY;
	assert_int_equal(enfstate_server_put(st, &f.srv), 1);
	enfstate_decide(st, 7, "exch1.bear.local", &f.out4, NULL, T0 + 115 * DAY, false, &v);
	assert_int_equal(v.action, TES_DROP);
	enfstate_free(st);
}

static void test_decide_source(void **state)
{
	struct enfstate *st = new_state();
	struct tes_verdict want, got;
	struct dfx f;
	/* Its last message from in4 was read ten minutes ago: no probe is
	 * due for another fifty. */
	int64_t now = T0 + 100 * DAY + 600;

	(void)state;
	dfx_init(&f);
	f.srv.last_seen = f.srv.source_seen[0] = T0 + 100 * DAY;
	assert_int_equal(enfstate_server_put(st, &f.srv), 0);
	assert_int_equal(enfstate_tenant_put(st, &f.ten), 0);
	/* The server put listed it on its source. */
	expect_counts(st, 1, 1, 1);

	memset(&want, 0, sizeof(want));
	memset(&got, 0, sizeof(got));
	tes_decide(&f.srv, &f.ten, &f.pol, now, &f.in4, NULL, false, &want);
	assert_true(enfstate_decide_source(st, &f.in4, 7, now, false, &got));
	assert_int_equal(want.action, TES_BLOCK);
	assert_int_equal(got.action, want.action);
	assert_int_equal(got.code, want.code);
	assert_string_equal(got.text, want.text);
	assert_int_equal(got.stage, 8);
	/* Another tenant's connection from the same address: that tenant's
	 * servers are the ones its headers will be decided on, and it has
	 * none here. */
	assert_true(enfstate_decide_source(st, &f.in4, 8, now, false, &got));
	assert_int_equal(got.action, TES_ACCEPT);
	assert_int_equal(got.reason, TES_REASON_UNKNOWN_SERVER);

	/* Unknown source: false, and the unknown-server ACCEPT. */
	memset(&want, 0, sizeof(want));
	memset(&got, 0, sizeof(got));
	tes_decide(NULL, NULL, &f.pol, now, &f.out4, NULL, false, &want);
	assert_false(enfstate_decide_source(st, &f.out4, 7, now, false, &got));
	assert_int_equal(got.action, TES_ACCEPT);
	assert_int_equal(got.reason, TES_REASON_UNKNOWN_SERVER);

	/* The server is deleted: its source lists nothing and goes. */
	assert_true(enfstate_server_del(st, 7, "exch1.bear.local"));
	expect_counts(st, 0, 0, 1);
	assert_false(enfstate_decide_source(st, &f.in4, 7, now, false, &got));
	assert_int_equal(got.action, TES_ACCEPT);
	enfstate_free(st);
}

/* Two servers behind one address, one compliant: refused at MAIL FROM only
 * while every server the address carried recently is refused alike. */
static void test_shared_source(void **state)
{
	struct enfstate *st = new_state();
	struct enfstate_carried c[ENFSTATE_SOURCE_SERVERS];
	struct enfstate_source sv;
	struct tes_server ok;
	struct tes_verdict v;
	struct dfx f;
	int64_t now = T0 + 100 * DAY + 600; /* hh:10: stage 8 blocks all hour */

	(void)state;
	dfx_init(&f);
	f.srv.last_seen = f.srv.source_seen[0] = T0 + 100 * DAY;
	assert_int_equal(enfstate_tenant_put(st, &f.ten), 0);
	assert_int_equal(enfstate_server_put(st, &f.srv), 0);
	assert_true(enfstate_decide_source(st, &f.in4, 7, now, false, &v));
	assert_int_equal(v.action, TES_BLOCK);

	/* A compliant server seen from the same address 50 days ago. */
	assert_int_equal(tes_server_observe(NULL, 7, "ex2.bear.local", &f.ten, &f.pol, &f.ok,
					    &f.in4, T0 + 50 * DAY, &ok),
			 TES_CHANGE_TRACKED);
	assert_int_equal(enfstate_server_put(st, &ok), 0);
	assert_int_equal(enfstate_source_servers(st, &f.in4, c, ENFSTATE_SOURCE_SERVERS), 2);
	assert_true(enfstate_lookup_source(st, &f.in4, &sv));
	assert_int_equal(sv.nservers, 2);
	assert_string_equal(sv.fqdn, "Exch1.Bear.local"); /* the most recently carried */
	assert_true(enfstate_decide_source(st, &f.in4, 7, now, false, &v));
	assert_int_equal(v.action, TES_ACCEPT);
	assert_int_equal(v.reason, TES_REASON_SHARED_SOURCE);
	/* Once the compliant one has not come from there for carried_days,
	 * only the blocked one counts again. */
	int64_t gone = T0 + 50 * DAY + (int64_t)f.pol.carried_days * DAY;

	f.srv.last_seen = f.srv.source_seen[0] = gone - 1; /* no probe due */
	assert_int_equal(enfstate_server_put(st, &f.srv), 1);
	assert_true(enfstate_decide_source(st, &f.in4, 7, gone - 1, false, &v));
	assert_int_equal(v.reason, TES_REASON_SHARED_SOURCE);
	assert_true(enfstate_decide_source(st, &f.in4, 7, gone, false, &v));
	assert_int_equal(v.action, TES_BLOCK);

	/* The compliant server moves away: the source lists it no more. */
	ok.sources[0] = f.out4;
	assert_int_equal(enfstate_server_put(st, &ok), 1);
	assert_int_equal(enfstate_source_servers(st, &f.in4, c, ENFSTATE_SOURCE_SERVERS), 1);
	assert_int_equal(enfstate_source_servers(st, &f.out4, c, ENFSTATE_SOURCE_SERVERS), 1);
	assert_string_equal(c[0].fqdn, "ex2.bear.local");
	assert_int_equal(c[0].seen, T0 + 50 * DAY);
	assert_true(enfstate_decide_source(st, &f.in4, 7, gone, false, &v));
	assert_int_equal(v.action, TES_BLOCK);
	expect_counts(st, 2, 2, 1);
	enfstate_free(st);
}

/* More servers than a source lists: the least recently seen goes, and the
 * source counts as shared for as long as it would have counted. */
static void test_source_overflow(void **state)
{
	struct enfstate *st = new_state();
	struct enfstate_carried c[ENFSTATE_SOURCE_SERVERS];
	struct enfstate_source sv;
	struct tes_verdict v;
	struct dfx f;
	int64_t now = T0 + 100 * DAY + 600;

	(void)state;
	dfx_init(&f);
	assert_int_equal(enfstate_tenant_put(st, &f.ten), 0);
	for (unsigned i = 0; i <= ENFSTATE_SOURCE_SERVERS; i++) {
		struct tes_server s = f.srv;

		snprintf(s.fqdn, sizeof(s.fqdn), "ex%u.bear.local", i);
		/* ex0 is the least recently seen */
		s.last_seen = s.source_seen[0] = T0 + 90 * DAY + i;
		assert_int_equal(enfstate_server_put(st, &s), 0);
	}
	assert_int_equal(enfstate_source_servers(st, &f.in4, c, ENFSTATE_SOURCE_SERVERS),
			 ENFSTATE_SOURCE_SERVERS);
	for (unsigned i = 0; i < ENFSTATE_SOURCE_SERVERS; i++)
		assert_string_not_equal(c[i].fqdn, "ex0.bear.local");
	assert_true(enfstate_lookup_source(st, &f.in4, &sv));
	assert_int_equal(sv.shared_until, T0 + 90 * DAY + (int64_t)f.pol.carried_days * DAY);
	/* All of them blocked, but one not listed could be anything. */
	assert_true(enfstate_decide_source(st, &f.in4, 7, now, false, &v));
	assert_int_equal(v.action, TES_ACCEPT);
	assert_int_equal(v.reason, TES_REASON_SHARED_SOURCE);
	assert_true(enfstate_decide_source(st, &f.in4, 7, sv.shared_until + 1, false, &v));
	assert_int_equal(v.action, TES_ACCEPT); /* the others are too old by then */
	enfstate_free(st);
}

/* full_block = drop: the connect-time drop, and the probe it leaves room
 * for; the probe claim at MAIL FROM, once per interval. */
static void test_probe_and_drop(void **state)
{
	struct enfstate *st = new_state();
	struct enfstate_carried c[2];
	struct tes_policy pol;
	struct tes_verdict v;
	struct enfstate_stats es;
	struct dfx f;
	int64_t seen = T0 + 99 * DAY, now;

	(void)state;
	dfx_init(&f);
	f.pol.full_block = TES_FULL_BLOCK_DROP;
	pol = f.pol;
	assert_int_equal(enfstate_policy_set(st, &pol), 0);
	f.srv.last_seen = f.srv.source_seen[0] = seen;
	assert_int_equal(enfstate_tenant_put(st, &f.ten), 0);
	assert_int_equal(enfstate_server_put(st, &f.srv), 0);

	/* Within the hour after its last message was read: dropped. */
	now = seen + 3599;
	assert_true(enfstate_source_drop(st, &f.in4, now));
	assert_true(enfstate_decide_source(st, &f.in4, 7, now, false, &v));
	assert_int_equal(v.action, TES_DROP);
	assert_false(enfstate_source_drop(st, &f.out4, now));

	/* An hour on, a probe is due: the connection is let in, and the first
	 * MAIL FROM claims it; the next one is refused again. */
	now = seen + 3600;
	assert_false(enfstate_source_drop(st, &f.in4, now));
	assert_true(enfstate_decide_source(st, &f.in4, 7, now, false, &v));
	assert_int_equal(v.action, TES_ACCEPT);
	assert_int_equal(v.reason, TES_REASON_PROBE);
	assert_int_equal(v.stage, 8);
	assert_true(enfstate_decide_source(st, &f.in4, 7, now + 1, false, &v));
	assert_int_equal(v.action, TES_DROP);
	assert_true(enfstate_source_drop(st, &f.in4, now + 1));
	assert_int_equal(enfstate_source_servers(st, &f.in4, c, 2), 1);
	assert_int_equal(c[0].probe_next, now + 3600);
	enfstate_stats(st, &es);
	assert_int_equal(es.probes, 1);

	/* The claim survives the writer replacing the node (a push of the
	 * same server with a newer seen time of another source). */
	f.srv.nsources = 2;
	f.srv.sources[1] = f.out4;
	f.srv.source_seen[1] = now;
	assert_int_equal(enfstate_server_put(st, &f.srv), 1);
	assert_int_equal(enfstate_source_servers(st, &f.in4, c, 2), 1);
	assert_int_equal(c[0].probe_next, now + 3600);
	assert_true(enfstate_source_drop(st, &f.in4, now + 2));

	/* The probe's message was read and tescontrol says so: seen moves,
	 * the next probe is an interval after it. */
	f.srv.source_seen[0] = now + 10;
	assert_int_equal(enfstate_server_put(st, &f.srv), 1);
	assert_true(enfstate_source_drop(st, &f.in4, now + 3609));
	assert_false(enfstate_source_drop(st, &f.in4, now + 3610));

	/* No probe in the policy: a full block stays shut. */
	pol.probe_interval_min = 0;
	assert_int_equal(enfstate_policy_set(st, &pol), 0);
	assert_true(enfstate_source_drop(st, &f.in4, now + 7200));
	assert_true(enfstate_decide_source(st, &f.in4, 7, now + 7200, false, &v));
	assert_int_equal(v.action, TES_DROP);

	/* With reply, the connect-time check never drops. */
	pol = f.pol;
	pol.full_block = TES_FULL_BLOCK_REPLY;
	assert_int_equal(enfstate_policy_set(st, &pol), 0);
	assert_false(enfstate_source_drop(st, &f.in4, now + 2));
	assert_true(enfstate_decide_source(st, &f.in4, 7, now + 2, false, &v));
	assert_int_equal(v.action, TES_BLOCK);
	enfstate_free(st);
}

/* A full sync: a server that does not come back leaves its sources' lists,
 * one that does keeps its source node (and its probe claim). */
static void test_sync_index(void **state)
{
	struct enfstate *st = new_state();
	struct enfstate_carried c[4];
	struct tes_server a, b;
	struct tes_verdict v;
	struct dfx f;
	int64_t now;

	(void)state;
	dfx_init(&f);
	f.srv.last_seen = f.srv.source_seen[0] = T0 + 99 * DAY;
	a = f.srv;
	b = f.srv;
	snprintf(b.fqdn, sizeof(b.fqdn), "b.bear.local");
	assert_int_equal(enfstate_tenant_put(st, &f.ten), 0);
	assert_int_equal(enfstate_server_put(st, &a), 0);
	assert_int_equal(enfstate_server_put(st, &b), 0);
	now = T0 + 99 * DAY + 3600;
	assert_true(enfstate_decide_source(st, &f.in4, 7, now, false, &v));
	assert_int_equal(v.reason, TES_REASON_PROBE);

	enfstate_sync_begin(st);
	assert_int_equal(enfstate_tenant_put(st, &f.ten), 1);
	assert_int_equal(enfstate_server_put(st, &a), 1); /* unchanged */
	assert_int_equal(enfstate_sync_end(st), 1);       /* b */
	expect_counts(st, 1, 1, 1);
	assert_int_equal(enfstate_source_servers(st, &f.in4, c, 4), 1);
	assert_string_equal(c[0].fqdn, "Exch1.Bear.local");
	/* b's or a's claim, whichever was taken, only a's entry is left: a
	 * probe for it is either claimed or due. */
	assert_true(c[0].probe_next == 0 || c[0].probe_next == now + 3600);
	enfstate_free(st);
}

/* ---- resynchronisation and teardown ---- */

static void test_sync(void **state)
{
	struct enfstate *st = new_state();
	struct tes_server a = server(1, "a.example", 1), b = server(1, "b.example", 2);
	struct tes_server c = server(2, "c.example", 3), got;
	struct enfstate_source v = { .tenant_id = 1 };
	struct tes_addr s1 = addr("192.0.2.1"), s2 = addr("2001:db8::2");
	struct tes_tenant t1, t2, tg;

	(void)state;
	memset(&t1, 0, sizeof(t1));
	t1.id = 1;
	t2 = t1;
	t2.id = 2;
	assert_int_equal(enfstate_server_put(st, &a), 0);
	assert_int_equal(enfstate_server_put(st, &b), 0);
	assert_int_equal(enfstate_server_put(st, &c), 0);
	assert_int_equal(enfstate_source_put(st, &s1, &v), 0);
	assert_int_equal(enfstate_source_put(st, &s2, &v), 0);
	assert_int_equal(enfstate_tenant_put(st, &t1), 0);
	assert_int_equal(enfstate_tenant_put(st, &t2), 0);
	expect_counts(st, 3, 2, 2);

	/* The new sync carries b (changed), a new d, s2 and tenant 1. */
	enfstate_sync_begin(st);
	b.build.v[3] = 99;
	assert_int_equal(enfstate_server_put(st, &b), 1);
	struct tes_server d = server(1, "d.example", 4);

	assert_int_equal(enfstate_server_put(st, &d), 0);
	assert_int_equal(enfstate_source_put(st, &s2, &v), 1);
	assert_int_equal(enfstate_tenant_put(st, &t1), 1);
	/* Until sync_end everything is still there. */
	assert_true(enfstate_lookup_server(st, 1, "a.example", &got));
	assert_int_equal(enfstate_sync_end(st), 4); /* a, c, s1, tenant 2 */
	expect_counts(st, 2, 1, 1);
	assert_false(enfstate_lookup_server(st, 1, "a.example", &got));
	assert_true(enfstate_lookup_server(st, 1, "b.example", &got));
	assert_int_equal(got.build.v[3], 99);
	assert_false(enfstate_lookup_server(st, 2, "c.example", &got));
	assert_true(enfstate_lookup_server(st, 1, "d.example", &got));
	assert_false(enfstate_source_drop(st, &s1, T0));
	assert_false(enfstate_lookup_tenant(st, 2, &tg));
	assert_true(enfstate_lookup_tenant(st, 1, &tg));

	/* An empty sync clears everything. */
	enfstate_sync_begin(st);
	assert_int_equal(enfstate_sync_end(st), 4);
	expect_counts(st, 0, 0, 0);
	enfstate_free(st);
}

static void test_free_full(void **state)
{
	struct enfstate *st = enfstate_new(NULL, 100000);
	struct enfstate_source v = { .tenant_id = 1 };
	struct tes_tenant t;
	char name[32];
	unsigned i;

	(void)state;
	assert_non_null(st);
	memset(&t, 0, sizeof(t));
	for (i = 0; i < 1000; i++) {
		struct tes_server s;
		struct tes_addr a;
		uint8_t ip[4] = { 198, 18, (uint8_t)(i >> 8), (uint8_t)i };

		snprintf(name, sizeof(name), "s%u.example", i);
		s = server(i % 5, name, i);
		assert_int_equal(enfstate_server_put(st, &s), 0);
		tes_addr_v4(&a, ip);
		assert_int_equal(enfstate_source_put(st, &a, &v), 0);
		t.id = i % 5;
		enfstate_tenant_put(st, &t);
	}
	assert_int_equal(enfstate_catalog_set(st, make_catalog(39)), 0);
	expect_counts(st, 1000, 1000, 5);
	/* Everything, entries and snapshots, freed with no leak (LSan). */
	enfstate_free(st);
}

/* A large table half emptied, then freed: every node, the bucket arrays and
 * the arena go, and enfstate_free, which waits for the pending frees (a
 * grace period), must not wait on itself while online (once the hazard of
 * liburcu's table shrink; kept for the frees it still waits for). */
static void test_free_after_resize(void **state)
{
	enum { N = 65536 };
	struct enfstate *st = enfstate_new(NULL, N);
	char name[32];
	unsigned i;

	(void)state;
	assert_non_null(st);
	for (i = 0; i < N; i++) {
		struct tes_server s;

		snprintf(name, sizeof(name), "r%u.example", i);
		s = server(1, name, i);
		assert_int_equal(enfstate_server_put(st, &s), 0);
	}
	for (i = 0; i < N / 2; i++) {
		snprintf(name, sizeof(name), "r%u.example", i);
		assert_true(enfstate_server_del(st, 1, name));
	}
	enfstate_free(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_server_put_lookup_replace_delete),
		cmocka_unit_test(test_server_names),
		cmocka_unit_test(test_many_servers),
		cmocka_unit_test(test_sources),
		cmocka_unit_test(test_tenants),
		cmocka_unit_test(test_policy_swap),
		cmocka_unit_test(test_catalog_swap),
		cmocka_unit_test(test_decide_matches),
		cmocka_unit_test(test_decide_source),
		cmocka_unit_test(test_shared_source),
		cmocka_unit_test(test_source_overflow),
		cmocka_unit_test(test_probe_and_drop),
		cmocka_unit_test(test_sync_index),
		cmocka_unit_test(test_sync),
		cmocka_unit_test(test_free_full),
		cmocka_unit_test(test_free_after_resize),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
