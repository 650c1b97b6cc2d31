/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Reader/writer stress test of gateway/state/enfstate.c.
 *
 * Reader threads look entries up without pause while the main thread, the
 * one writer, replaces, adds and deletes entries of every table, swaps the
 * policy and the catalog, and now and then runs a full resynchronisation,
 * for a bounded time or number of operations.  It checks:
 *   - no torn entry: every value the writer stores carries its key, a
 *     generation and a checksum over the rest, which readers verify;
 *   - no lost entry: "stable" keys are replaced but never deleted (a
 *     resynchronisation puts them again), and readers must always find them,
 *     whatever case they spell a server name in;
 *   - no time travel: a reader never sees an older generation of a stable
 *     server after a newer one;
 *   - at the end, every stable key holds the last value written, and the
 *     table sizes match what the writer did.
 * Run under ThreadSanitizer by tests/concurrency/run-tsan.sh; built with
 * -DENFSTATE_FAULT_NO_GRACE (stress_enfstate_nogp) it must fail.
 *
 * Usage: stress_enfstate [--readers N] [--seconds S] [--max-ops N] [--seed N]
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "gateway/state/enfstate.h"

#define NSTABLE 512     /* servers, and sources, never deleted */
#define NVOLATILE 2048  /* servers, and sources, added and deleted */
#define NTENANTS 8      /* tenant ids 1..8, replaced, never deleted */
#define VOL_TENANT 1000 /* tenant id of the volatile servers */
#define BURST 32        /* reader operations between quiescent states */
#define MAX_READERS 16

static struct enfstate *st;
static int stop_flag;
static unsigned long failures;
static unsigned readers = 3;

/* ---- helpers ---- */

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64*: plenty for picking keys and operations. */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * UINT64_C(2685821657736338717);
}

static uint64_t fnv1a(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t h = UINT64_C(14695981039346656037);

	while (n--) {
		h ^= *b++;
		h *= UINT64_C(1099511628211);
	}
	return h;
}

static uint32_t mix32(uint64_t a, uint64_t b)
{
	uint64_t x = a * UINT64_C(0x9e3779b97f4a7c15) ^ (b + UINT64_C(0x632be59bd9b4e019));

	x ^= x >> 31;
	x *= UINT64_C(0xbf58476d1ce4e5b9);
	return (uint32_t)(x ^ (x >> 29));
}

static __attribute__((format(printf, 1, 2))) void failf(const char *fmt, ...)
{
	unsigned long n = __atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);
	va_list ap;

	if (n > 20)
		return;
	va_start(ap, fmt);
	fprintf(stderr, "stress_enfstate: FAIL: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static bool stopping(void)
{
	return __atomic_load_n(&stop_flag, __ATOMIC_ACQUIRE) != 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- keys ---- */

static uint32_t stable_tenant(unsigned i)
{
	return i % NTENANTS + 1;
}

static void stable_name(unsigned i, char *buf, size_t len)
{
	snprintf(buf, len, "Stable-%u.Tenant%u.example.net", i, stable_tenant(i));
}

static void volatile_name(unsigned i, char *buf, size_t len)
{
	snprintf(buf, len, "vol-%u.example.org", i);
}

/* Stable sources alternate IPv4 and IPv6; volatile ones are IPv4. */
static struct tes_addr stable_addr(unsigned i)
{
	struct tes_addr a;

	if (i % 2 == 0) {
		uint8_t b[4] = { 198, 18, (uint8_t)(i >> 8), (uint8_t)i };

		tes_addr_v4(&a, b);
	} else {
		uint8_t b[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };

		b[14] = (uint8_t)(i >> 8);
		b[15] = (uint8_t)i;
		tes_addr_v6(&a, b);
	}
	return a;
}

/* The sources servers list: the writer's source index keeps their nodes
 * (enfstate_server_put), apart from the sources put directly above. */
static struct tes_addr server_addr(unsigned i)
{
	struct tes_addr a;
	uint8_t b[4] = { 198, 18, 200 + (uint8_t)(i % 50), (uint8_t)(i >> 3) };

	tes_addr_v4(&a, b);
	return a;
}

static struct tes_addr volatile_addr(unsigned i)
{
	struct tes_addr a;
	uint8_t b[4] = { 198, 19, (uint8_t)(i >> 8), (uint8_t)i };

	tes_addr_v4(&a, b);
	return a;
}

/* ---- values ---- */

/* A server value: key fields, then build = (gen low, gen high, index,
 * volatile), a few fields derived from gen, and last_seen = checksum of the
 * struct with last_seen zero (padding zeroed too, so the bytes are fixed). */
static void server_value(struct tes_server *s, uint32_t tenant, const char *fqdn, unsigned idx,
			 bool vol, uint64_t gen)
{
	unsigned k;

	memset(s, 0, sizeof(*s));
	s->tenant_id = tenant;
	snprintf(s->fqdn, sizeof(s->fqdn), "%s", fqdn);
	s->build.v[0] = (uint32_t)gen;
	s->build.v[1] = (uint32_t)(gen >> 32);
	s->build.v[2] = idx;
	s->build.v[3] = vol;
	s->family = (enum ex_family)(gen % 6 + 1);
	s->first_detected = (int64_t)(gen * 3);
	s->resolved = gen % 3 == 0;
	s->pause_base = (int64_t)mix32(gen, idx);
	s->nsources = (uint8_t)(gen % (TES_SERVER_SOURCES_MAX + 1));
	for (k = 0; k < s->nsources; k++)
		s->sources[k] = server_addr((unsigned)(gen + k));
	s->last_seen = 0;
	s->last_seen = (int64_t)(fnv1a(s, sizeof(*s)) >> 1);
}

static uint64_t server_gen(const struct tes_server *s)
{
	return (uint64_t)s->build.v[0] | (uint64_t)s->build.v[1] << 32;
}

static bool server_ok(const struct tes_server *got, uint32_t tenant, const char *fqdn, unsigned idx,
		      bool vol)
{
	struct tes_server c = *got;
	int64_t sum = c.last_seen;

	c.last_seen = 0;
	if ((int64_t)(fnv1a(&c, sizeof(c)) >> 1) != sum)
		return false;
	return c.tenant_id == tenant && strcasecmp(c.fqdn, fqdn) == 0 && c.build.v[2] == idx &&
	       c.build.v[3] == (uint32_t)vol && c.first_detected == (int64_t)(server_gen(&c) * 3);
}

static void source_value(struct enfstate_source *v, unsigned idx, uint64_t gen)
{
	memset(v, 0, sizeof(*v));
	v->drop = gen & 1;
	v->tenant_id = mix32(idx, gen) ^ v->drop;
	snprintf(v->fqdn, sizeof(v->fqdn), "src%u.g%" PRIu64 ".c%08x", idx, gen, mix32(gen, idx));
}

static bool source_ok(const struct enfstate_source *v, unsigned idx)
{
	unsigned i;
	uint64_t gen;
	unsigned check;

	if (sscanf(v->fqdn, "src%u.g%" SCNu64 ".c%08x", &i, &gen, &check) != 3)
		return false;
	return i == idx && check == mix32(gen, idx) && v->drop == (bool)(gen & 1) &&
	       v->tenant_id == (mix32(idx, gen) ^ v->drop);
}

static void tenant_value(struct tes_tenant *t, uint32_t id, uint64_t gen)
{
	memset(t, 0, sizeof(*t));
	t->id = id;
	snprintf(t->name, sizeof(t->name), "t%u-g%" PRIu64, id, gen);
	t->nconnectors = (unsigned)(gen % 3);
	t->pause.start = (int64_t)gen;
	t->pause.end = (int64_t)gen + id;
	t->pause.paused_before = (int64_t)mix32(id, gen);
}

static bool tenant_ok(const struct tes_tenant *t, uint32_t id)
{
	uint32_t i;
	uint64_t gen;

	if (sscanf(t->name, "t%" SCNu32 "-g%" SCNu64, &i, &gen) != 2)
		return false;
	return i == id && t->id == id && t->nconnectors == gen % 3 &&
	       t->pause.start == (int64_t)gen && t->pause.end == (int64_t)gen + id &&
	       t->pause.paused_before == (int64_t)mix32(id, gen);
}

static void policy_value(struct tes_policy *p, uint64_t gen)
{
	tes_policy_default(p);
	snprintf(p->product, sizeof(p->product), "P%" PRIu64, gen);
	p->window_offset_min = (int16_t)(gen % 60);
	p->pause_quota_days = (uint16_t)(gen % 367);
	p->full_block = gen & 1 ? TES_FULL_BLOCK_DROP : TES_FULL_BLOCK_REPLY;
	snprintf(p->block_text, sizeof(p->block_text), "blocked %%d minutes, policy %" PRIu64, gen);
}

static bool policy_ok(const struct tes_policy *p)
{
	uint64_t gen, g2;

	if (sscanf(p->product, "P%" SCNu64, &gen) != 1)
		return false;
	if (sscanf(p->block_text, "blocked %%d minutes, policy %" SCNu64, &g2) != 1)
		return false;
	return g2 == gen && p->window_offset_min == (int16_t)(gen % 60) &&
	       p->pause_quota_days == gen % 367 &&
	       p->full_block == (gen & 1 ? TES_FULL_BLOCK_DROP : TES_FULL_BLOCK_REPLY);
}

/* A catalog whose newest CU23 update is "CU23 SU<su>" at 15.1.2507.<su>. */
/* The rules below carry no dates: any fixed time classifies alike.
 * 2026-12-06T00:00:00Z. */
#define CLASSIFY_AT INT64_C(1796515200)

static struct catalog *catalog_value(unsigned su)
{
	char csv[512], pol[128];
	struct catalog_error err;
	struct catalog *c;

	snprintf(csv, sizeof(csv),
		 "product,branch,update,build,date\n"
		 "2016,CU22,CU22,15.1.2375.7,2021-09-28\n"
		 "2016,CU23,CU23,15.1.2507.6,2022-04-20\n"
		 "2016,CU23,CU23 SU%u,15.1.2507.%u,2025-10-14\n",
		 su, su);
	snprintf(pol, sizeof(pol), "2016 CU23 from 15.1.2507.%u\n", su);
	c = catalog_parse(csv, strlen(csv), "stress.csv", pol, strlen(pol), "stress.conf", &err);
	if (c == NULL) {
		fprintf(stderr, "stress_enfstate: catalog: %s:%u: %s\n", err.file, err.line,
			err.msg);
		exit(2);
	}
	return c;
}

/* ---- readers ---- */

struct reader {
	pthread_t tid;
	unsigned id;
	uint64_t rng;
	uint64_t last_gen[NSTABLE]; /* newest generation seen per stable server */
	unsigned long ops, found_volatile, quiescent, offline;
};

static void mangle_case(char *s, uint64_t r)
{
	for (; *s; s++, r = r >> 1 | r << 63)
		if ((r & 1) && ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
			*s ^= 0x20;
}

static void reader_op(struct reader *r)
{
	uint64_t x = rng_next(&r->rng);
	unsigned op = (unsigned)(x % 100), idx;
	char name[TES_FQDN_MAX];
	struct tes_server s;
	struct enfstate_source v;
	struct tes_tenant t;
	struct tes_addr a;

	x >>= 8;
	if (op < 35) {
		idx = (unsigned)(x % NSTABLE);
		stable_name(idx, name, sizeof(name));
		mangle_case(name, rng_next(&r->rng));
		if (!enfstate_lookup_server(st, stable_tenant(idx), name, &s)) {
			failf("reader %u: stable server %s lost", r->id, name);
			return;
		}
		if (!server_ok(&s, stable_tenant(idx), name, idx, false)) {
			failf("reader %u: stable server %s torn", r->id, name);
			return;
		}
		if (server_gen(&s) < r->last_gen[idx])
			failf("reader %u: server %s went back from generation %" PRIu64
			      " to %" PRIu64,
			      r->id, name, r->last_gen[idx], server_gen(&s));
		r->last_gen[idx] = server_gen(&s);
	} else if (op < 50) {
		idx = (unsigned)(x % NVOLATILE);
		volatile_name(idx, name, sizeof(name));
		if (enfstate_lookup_server(st, VOL_TENANT, name, &s)) {
			r->found_volatile++;
			if (!server_ok(&s, VOL_TENANT, name, idx, true))
				failf("reader %u: volatile server %s torn", r->id, name);
		}
	} else if (op < 65) {
		idx = (unsigned)(x % NSTABLE);
		a = stable_addr(idx);
		if (!enfstate_lookup_source(st, &a, &v))
			failf("reader %u: stable source %u lost", r->id, idx);
		else if (!source_ok(&v, idx))
			failf("reader %u: stable source %u torn: \"%s\"", r->id, idx, v.fqdn);
	} else if (op < 75) {
		idx = (unsigned)(x % NVOLATILE);
		a = volatile_addr(idx);
		if (enfstate_lookup_source(st, &a, &v) && !source_ok(&v, NSTABLE + idx))
			failf("reader %u: volatile source %u torn", r->id, idx);
		(void)enfstate_source_drop(st, &a, 1700000000);
	} else if (op < 83) {
		uint32_t id = (uint32_t)(x % NTENANTS) + 1;

		if (!enfstate_lookup_tenant(st, id, &t))
			failf("reader %u: tenant %u lost", r->id, id);
		else if (!tenant_ok(&t, id))
			failf("reader %u: tenant %u torn: \"%s\"", r->id, id, t.name);
	} else if (op < 88) {
		struct tes_policy p;

		enfstate_policy(st, &p);
		if (!policy_ok(&p))
			failf("reader %u: policy torn: \"%s\"", r->id, p.product);
	} else if (op < 93) {
		struct ex_build b = { { 15, 1, 2507, 1000000 } };
		struct enfstate_class cls;
		unsigned su;

		/* A build above every SU: its nearest is the catalog's SU row. */
		if (!enfstate_classify(st, &b, CLASSIFY_AT, &cls))
			failf("reader %u: catalog missing", r->id);
		else if (!cls.has_nearest || sscanf(cls.nearest.update, "CU23 SU%u", &su) != 1 ||
			 cls.nearest.build.v[3] != su || !cls.compliant ||
			 cls.catalog_version[0] == '\0')
			failf("reader %u: catalog torn: \"%s\"", r->id, cls.nearest.update);
	} else {
		struct tes_detection d = { .cls = TES_BUILD_VULNERABLE, .family = EX_FAMILY_2016 };
		struct tes_verdict verdict;

		idx = (unsigned)(x % NSTABLE);
		stable_name(idx, name, sizeof(name));
		a = stable_addr(idx);
		d.build = (struct ex_build){ { 15, 1, 2507, 5 } };
		enfstate_decide(st, stable_tenant(idx), name, &a, &d,
				1700000000 + (int64_t)x % 9999999, (x >> 40) & 1, &verdict);
		if (verdict.action > TES_DROP || strlen(verdict.text) >= sizeof(verdict.text))
			failf("reader %u: verdict garbage", r->id);
		(void)enfstate_decide_source(st, &a, 0, 1700000000, false, &verdict);
		/* a source the writer's index keeps: the probe claim races
		 * with the writer's rebuild of the node */
		a = server_addr((unsigned)x);
		(void)enfstate_decide_source(st, &a, stable_tenant(idx), 1700000000, false,
					     &verdict);
		if (verdict.action > TES_DROP)
			failf("reader %u: source verdict garbage", r->id);
		(void)enfstate_source_drop(st, &a, 1700000000);
	}
}

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	unsigned i;

	enfstate_thread_register();
	while (!stopping()) {
		for (i = 0; i < BURST; i++)
			reader_op(r);
		r->ops += BURST;
		enfstate_quiescent();
		r->quiescent++;
		/* Now and then block, as a worker does in epoll. */
		if ((r->quiescent & 1023) == 0) {
			enfstate_thread_offline();
			usleep(50);
			enfstate_thread_online();
			r->offline++;
		}
	}
	enfstate_thread_unregister();
	return NULL;
}

/* ---- the writer ---- */

struct writer {
	uint64_t rng;
	uint64_t gen;
	uint64_t stable_gen[NSTABLE];
	uint64_t stable_src_gen[NSTABLE];
	uint64_t tenant_gen[NTENANTS + 1];
	bool vol_server[NVOLATILE], vol_source[NVOLATILE];
	uint64_t vol_server_gen[NVOLATILE], vol_source_gen[NVOLATILE];
	size_t nvol_servers, nvol_sources;
	unsigned long ops, replaces, adds, deletes, policies, catalogs, syncs;
};

static void must(int rc, const char *what)
{
	if (rc < 0) {
		fprintf(stderr, "stress_enfstate: %s: %s\n", what, strerror(errno));
		exit(2);
	}
}

static void put_stable_server(struct writer *w, unsigned idx)
{
	char name[TES_FQDN_MAX];
	struct tes_server s;

	stable_name(idx, name, sizeof(name));
	/* Upper-case the stored name sometimes: the case must not matter. */
	if (w->gen & 4)
		mangle_case(name, w->gen * 0x9e3779b97f4a7c15);
	w->stable_gen[idx] = ++w->gen;
	server_value(&s, stable_tenant(idx), name, idx, false, w->gen);
	must(enfstate_server_put(st, &s), "server_put");
}

static void put_volatile_server(struct writer *w, unsigned idx)
{
	char name[TES_FQDN_MAX];
	struct tes_server s;

	volatile_name(idx, name, sizeof(name));
	w->vol_server_gen[idx] = ++w->gen;
	server_value(&s, VOL_TENANT, name, idx, true, w->gen);
	must(enfstate_server_put(st, &s), "server_put");
}

static void put_stable_source(struct writer *w, unsigned idx)
{
	struct enfstate_source v;
	struct tes_addr a = stable_addr(idx);

	w->stable_src_gen[idx] = ++w->gen;
	source_value(&v, idx, w->gen);
	must(enfstate_source_put(st, &a, &v), "source_put");
}

static void put_volatile_source(struct writer *w, unsigned idx)
{
	struct enfstate_source v;
	struct tes_addr a = volatile_addr(idx);

	w->vol_source_gen[idx] = ++w->gen;
	source_value(&v, NSTABLE + idx, w->gen);
	must(enfstate_source_put(st, &a, &v), "source_put");
}

static void put_tenant(struct writer *w, uint32_t id)
{
	struct tes_tenant t;

	w->tenant_gen[id] = ++w->gen;
	tenant_value(&t, id, w->gen);
	must(enfstate_tenant_put(st, &t), "tenant_put");
}

static void put_policy(struct writer *w)
{
	struct tes_policy p;

	policy_value(&p, ++w->gen);
	must(enfstate_policy_set(st, &p), "policy_set");
	w->policies++;
}

static void put_catalog(struct writer *w)
{
	struct catalog *c = catalog_value((unsigned)(++w->gen % 100000) + 10);

	if (enfstate_catalog_set(st, c) != 0) {
		catalog_free(c);
		must(-1, "catalog_set");
	}
	w->catalogs++;
}

/* What tescontrol's full state sync does: everything put again (new
 * generations), half the volatile entries dropped by omission. */
static void resync(struct writer *w)
{
	size_t expect = 0, got;
	unsigned i;

	enfstate_sync_begin(st);
	for (i = 0; i < NSTABLE; i++) {
		put_stable_server(w, i);
		put_stable_source(w, i);
		if (i % 64 == 0)
			enfstate_quiescent();
	}
	for (i = 1; i <= NTENANTS; i++)
		put_tenant(w, i);
	for (i = 0; i < NVOLATILE; i++) {
		bool keep = rng_next(&w->rng) & 1;

		if (w->vol_server[i] && keep)
			put_volatile_server(w, i);
		else if (w->vol_server[i]) {
			w->vol_server[i] = false;
			w->nvol_servers--;
			expect++;
		}
		if (w->vol_source[i] && keep)
			put_volatile_source(w, i);
		else if (w->vol_source[i]) {
			w->vol_source[i] = false;
			w->nvol_sources--;
			expect++;
		}
	}
	got = enfstate_sync_end(st);
	if (got != expect)
		failf("resync deleted %zu entries, expected %zu", got, expect);
	w->syncs++;
}

static void writer_op(struct writer *w)
{
	uint64_t x = rng_next(&w->rng);
	unsigned op = (unsigned)(x % 1000);
	unsigned idx;

	x >>= 10;
	if (op < 350) {
		put_stable_server(w, (unsigned)(x % NSTABLE));
		w->replaces++;
	} else if (op < 600) {
		char name[TES_FQDN_MAX];

		idx = (unsigned)(x % NVOLATILE);
		if (w->vol_server[idx]) {
			volatile_name(idx, name, sizeof(name));
			if (!enfstate_server_del(st, VOL_TENANT, name))
				failf("writer: volatile server %u was not there to delete", idx);
			w->vol_server[idx] = false;
			w->nvol_servers--;
			w->deletes++;
		} else {
			put_volatile_server(w, idx);
			w->vol_server[idx] = true;
			w->nvol_servers++;
			w->adds++;
		}
	} else if (op < 750) {
		put_stable_source(w, (unsigned)(x % NSTABLE));
		w->replaces++;
	} else if (op < 900) {
		idx = (unsigned)(x % NVOLATILE);
		if (w->vol_source[idx]) {
			struct tes_addr a = volatile_addr(idx);

			if (!enfstate_source_del(st, &a))
				failf("writer: volatile source %u was not there to delete", idx);
			w->vol_source[idx] = false;
			w->nvol_sources--;
			w->deletes++;
		} else {
			put_volatile_source(w, idx);
			w->vol_source[idx] = true;
			w->nvol_sources++;
			w->adds++;
		}
	} else if (op < 960) {
		put_tenant(w, (uint32_t)(x % NTENANTS) + 1);
		w->replaces++;
	} else if (op < 990) {
		put_policy(w);
	} else {
		put_catalog(w);
	}
	w->ops++;
}

/* After the readers stopped: every stable key holds its last value, every
 * volatile key is present exactly when the writer thinks, sizes agree. */
static void final_check(struct writer *w)
{
	char name[TES_FQDN_MAX];
	struct enfstate_stats stats;
	struct enfstate_source v;
	struct tes_server s;
	struct tes_tenant t;
	unsigned i;

	for (i = 0; i < NSTABLE; i++) {
		struct tes_addr a = stable_addr(i);

		stable_name(i, name, sizeof(name));
		if (!enfstate_lookup_server(st, stable_tenant(i), name, &s) ||
		    server_gen(&s) != w->stable_gen[i])
			failf("final: stable server %u does not hold its last value", i);
		if (!enfstate_lookup_source(st, &a, &v) || !source_ok(&v, i) ||
		    strstr(v.fqdn, ".g") == NULL ||
		    strtoull(strstr(v.fqdn, ".g") + 2, NULL, 10) != w->stable_src_gen[i])
			failf("final: stable source %u does not hold its last value", i);
	}
	for (i = 1; i <= NTENANTS; i++) {
		char want[TES_TENANT_NAME_MAX];

		snprintf(want, sizeof(want), "t%u-g%" PRIu64, i, w->tenant_gen[i]);
		if (!enfstate_lookup_tenant(st, i, &t) || strcmp(t.name, want) != 0)
			failf("final: tenant %u does not hold its last value", i);
	}
	for (i = 0; i < NVOLATILE; i++) {
		struct tes_addr a = volatile_addr(i);
		bool found;

		volatile_name(i, name, sizeof(name));
		found = enfstate_lookup_server(st, VOL_TENANT, name, &s);
		if (found != w->vol_server[i] || (found && server_gen(&s) != w->vol_server_gen[i]))
			failf("final: volatile server %u: found=%d, expected %d", i, found,
			      w->vol_server[i]);
		found = enfstate_lookup_source(st, &a, &v);
		if (found != w->vol_source[i])
			failf("final: volatile source %u: found=%d, expected %d", i, found,
			      w->vol_source[i]);
	}
	/* The source index: every server a source node lists is live and
	 * still has that source (nothing dangles after the deletes, replaces
	 * and resyncs), and every live server's source lists it unless the
	 * node overflowed. */
	size_t index_nodes = 0;

	for (unsigned third = 200; third < 250; third++) {
		for (unsigned fourth = 0; fourth < 256; fourth++) {
			uint8_t b[4] = { 198, 18, (uint8_t)third, (uint8_t)fourth };
			struct enfstate_carried c[ENFSTATE_SOURCE_SERVERS];
			struct tes_addr a;
			unsigned n;

			tes_addr_v4(&a, b);
			if (!enfstate_lookup_source(st, &a, &v))
				continue;
			index_nodes++;
			n = enfstate_source_servers(st, &a, c, ENFSTATE_SOURCE_SERVERS);
			for (unsigned k = 0; k < n; k++) {
				bool listed = false;

				if (!enfstate_lookup_server(st, c[k].tenant_id, c[k].fqdn, &s)) {
					failf("final: source 198.18.%u.%u lists %s, not on record",
					      third, fourth, c[k].fqdn);
					continue;
				}
				for (unsigned j = 0; j < s.nsources; j++)
					listed = listed || tes_addr_equal(&s.sources[j], &a);
				if (!listed)
					failf("final: source 198.18.%u.%u lists %s, which no longer"
					      " has it",
					      third, fourth, c[k].fqdn);
			}
		}
	}
	enfstate_stats(st, &stats);
	if (stats.servers != NSTABLE + w->nvol_servers ||
	    stats.sources != NSTABLE + w->nvol_sources + index_nodes || stats.tenants != NTENANTS)
		failf("final: sizes %zu/%zu/%zu, expected %zu/%zu/%u", stats.servers, stats.sources,
		      stats.tenants, NSTABLE + w->nvol_servers,
		      NSTABLE + w->nvol_sources + index_nodes, NTENANTS);
	if (stats.policy_gen != 2 + w->policies || stats.catalog_gen != 1 + w->catalogs)
		failf("final: policy_gen %" PRIu64 " catalog_gen %" PRIu64, stats.policy_gen,
		      stats.catalog_gen);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: stress_enfstate [--readers N (1-%d)] [--seconds S] "
		"[--max-ops N] [--seed N]\n",
		MAX_READERS);
	exit(2);
}

int main(int argc, char **argv)
{
	static struct reader rs[MAX_READERS];
	static struct writer w;
	double seconds = 3, start, elapsed;
	unsigned long max_ops = 20000000, total = 0, vol = 0;
	uint64_t seed = (uint64_t)time(NULL);
	unsigned i;

	for (i = 1; i < (unsigned)argc; i++) {
		if (i + 1 >= (unsigned)argc)
			usage();
		if (strcmp(argv[i], "--readers") == 0)
			readers = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--seconds") == 0)
			seconds = strtod(argv[++i], NULL);
		else if (strcmp(argv[i], "--max-ops") == 0)
			max_ops = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--seed") == 0)
			seed = strtoull(argv[++i], NULL, 10);
		else
			usage();
	}
	if (readers < 1 || readers > MAX_READERS || !(seconds > 0))
		usage();
	printf("stress_enfstate: %u readers, %.1f s or %lu writer operations, seed %" PRIu64 "\n",
	       readers, seconds, max_ops, seed);

	enfstate_thread_register();
	st = enfstate_new(NULL, 0);
	if (st == NULL) {
		perror("enfstate_new");
		return 2;
	}
	w.rng = seed | 1;
	for (i = 0; i < NSTABLE; i++) {
		put_stable_server(&w, i);
		put_stable_source(&w, i);
	}
	for (i = 1; i <= NTENANTS; i++)
		put_tenant(&w, i);
	put_policy(&w);
	put_catalog(&w);
	w.policies = w.catalogs = 0;

	for (i = 0; i < readers; i++) {
		rs[i].id = i;
		rs[i].rng = (seed + i * UINT64_C(0x9e3779b97f4a7c15)) | 1;
		if (pthread_create(&rs[i].tid, NULL, reader_main, &rs[i]) != 0) {
			perror("pthread_create");
			return 2;
		}
	}

	start = now_s();
	while (w.ops < max_ops) {
		for (i = 0; i < 64; i++)
			writer_op(&w);
		enfstate_quiescent();
		if ((w.ops & 0x3fff) < 64) {
			/* Waiting for tescontrol: offline. */
			enfstate_thread_offline();
			usleep(100);
			enfstate_thread_online();
		}
		if ((w.ops & 0x1ffff) < 64)
			resync(&w);
		if (now_s() - start >= seconds)
			break;
	}
	resync(&w);
	elapsed = now_s() - start;

	__atomic_store_n(&stop_flag, 1, __ATOMIC_RELEASE);
	/* Readers need grace periods to end too: stay out of their way. */
	enfstate_thread_offline();
	for (i = 0; i < readers; i++) {
		pthread_join(rs[i].tid, NULL);
		total += rs[i].ops;
		vol += rs[i].found_volatile;
	}
	enfstate_thread_online();
	final_check(&w);
	enfstate_free(st);
	enfstate_thread_unregister();

	printf("stress_enfstate: %.2f s: writer %lu ops (%.0f/s): %lu replaces, %lu adds, "
	       "%lu deletes, %lu policies, %lu catalogs, %lu resyncs\n",
	       elapsed, w.ops, (double)w.ops / elapsed, w.replaces, w.adds, w.deletes, w.policies,
	       w.catalogs, w.syncs);
	printf("stress_enfstate: readers %lu ops (%.0f/s), %lu volatile servers found\n", total,
	       (double)total / elapsed, vol);
	if (failures) {
		printf("stress_enfstate: FAILED: %lu failures\n", failures);
		return 1;
	}
	printf("stress_enfstate: ok\n");
	return 0;
}
