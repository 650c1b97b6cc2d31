/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * RCU lookup microbenchmark for gateway/enfstate.c.
 *
 * Loads N servers (default 1 M) and as many sources, then measures one
 * reader thread's lookups, first alone (baseline), then while a writer
 * thread on another core applies updates at a fixed rate (default 10 k/s:
 * replaces, deletes and re-adds of the table being read).  For each
 * operation and condition it reports
 *   - throughput: lookups per second on the reader's core, untimed loop;
 *   - latency: p50/p99/p99.9 of single lookups, each bracketed by
 *     lfence+rdtsc / rdtscp+lfence (the timer's own cost, printed, is
 *     included in every figure).
 * Rounds alternate baseline and writer so machine noise hits both alike;
 * the summary gives the median of the rounds and the writer/baseline ratio.
 *
 * Operations: server (enfstate_lookup_server: hash the tenant and the
 * lower-cased FQDN, walk the table, copy the 400-byte tes_server out),
 * source (enfstate_source_drop: the connect-time check), decide
 * (enfstate_decide: server + tenant + policy + tes_decide).
 *
 * Keys are drawn uniformly from all N (every lookup touches cold memory:
 * the worst case) or from a hot set (--hot H: the first H keys, the case of
 * a gateway that sees the same few servers all day).
 *
 * Usage: bench_lookup [--servers N] [--updates N] [--seconds S] [--rounds R]
 *                     [--ops server,source,decide] [--hot H]
 *                     [--reader-cpu C] [--writer-cpu C] [--seed N]
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define HAVE_TSC 1
#endif

#include "gateway/state/enfstate.h"

#define BATCH 256 /* lookups between quiescent states */
#define MAX_ROUNDS 15
#define T_NOW INT64_C(1767225600) /* 2026-01-01T00:00:00Z */

enum op { OP_SERVER, OP_SOURCE, OP_DECIDE, OP_SERVER8, OP_SOURCE8, OP_COUNT };
static const char *const op_names[OP_COUNT] = { "server", "source", "decide", "server8",
						"source8" };

/* server8 and source8: the burst calls on BURST keys at a time (the
 * prefetching path of a poll loop); a latency figure is the burst's time
 * divided by BURST, the cost per lookup when they come in bursts. */
#define BURST 8

static inline unsigned op_step(enum op op)
{
	return op == OP_SERVER8 || op == OP_SOURCE8 ? BURST : 1;
}

static inline bool op_sources(enum op op)
{
	return op == OP_SOURCE || op == OP_SOURCE8;
}

/* One lookup's inputs, read sequentially from a pre-shuffled stream so the
 * benchmark's own bookkeeping stays out of the cache misses it measures. */
struct req {
	uint32_t tenant;
	struct tes_addr src;
	char fqdn[43];
};

static struct {
	unsigned long servers, updates, hot;
	double seconds;
	unsigned rounds;
	int reader_cpu, writer_cpu;
	uint64_t seed;
	bool ops[OP_COUNT];
} opt = {
	.servers = 1000000,
	.updates = 10000,
	.seconds = 2,
	.rounds = 3,
	.reader_cpu = 0,
	.writer_cpu = 1,
	.seed = 42,
	.ops = { true, true, true }, /* the burst ops only when asked for */
};

static struct enfstate *st;
static struct req *stream;
static size_t stream_len;
static double tsc_ghz = 1; /* cycles per ns */
static int reader_done;

/* ---- small tools ---- */

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * UINT64_C(2685821657736338717);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline uint64_t tick_start(void)
{
#ifdef HAVE_TSC
	_mm_lfence();
	uint64_t t = __rdtsc();
	_mm_lfence();
	return t;
#else
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
#endif
}

static inline uint64_t tick_stop(void)
{
#ifdef HAVE_TSC
	unsigned aux;
	uint64_t t = __rdtscp(&aux);

	_mm_lfence();
	return t;
#else
	return tick_start();
#endif
}

static void calibrate(void)
{
#ifdef HAVE_TSC
	double t0 = now_s(), t1;
	uint64_t c0 = __rdtsc(), c1;

	do
		t1 = now_s();
	while (t1 - t0 < 0.2);
	c1 = __rdtsc();
	tsc_ghz = (double)(c1 - c0) / ((t1 - t0) * 1e9);
#endif
}

static void pin(int cpu)
{
	cpu_set_t set;
	int rc;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	if (rc != 0) {
		fprintf(stderr, "bench_lookup: cannot pin to cpu %d: %s\n", cpu, strerror(rc));
		exit(2);
	}
}

/* Latency histogram in timer ticks, log-linear: exact below 128 ticks, then
 * 64 bins per power of two (under 1.6% error), up to 2^40 ticks. */
#define HIST_SUB 6
#define HIST_BINS ((40 - HIST_SUB + 1) << HIST_SUB)

struct hist {
	uint64_t n;
	uint64_t bin[HIST_BINS];
};

static inline unsigned hist_bin(uint64_t v)
{
	unsigned msb, shift;

	if (v < (2u << HIST_SUB))
		return (unsigned)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	if (msb > 40)
		return HIST_BINS - 1;
	shift = msb - HIST_SUB;
	return (shift + 1) << HIST_SUB | (unsigned)((v >> shift) & ((1u << HIST_SUB) - 1));
}

/* The smallest value that falls in bin b. */
static uint64_t hist_low(unsigned b)
{
	unsigned shift;

	if (b < (2u << HIST_SUB))
		return b;
	shift = (b >> HIST_SUB) - 1;
	return (uint64_t)((b & ((1u << HIST_SUB) - 1)) | (1u << HIST_SUB)) << shift;
}

static inline void hist_add(struct hist *h, uint64_t v)
{
	h->n++;
	h->bin[hist_bin(v)]++;
}

static double hist_pct(const struct hist *h, double p)
{
	uint64_t want = (uint64_t)((double)h->n * p), seen = 0;
	unsigned i;

	if (h->n == 0)
		return -1;
	if (want >= h->n)
		want = h->n - 1;
	for (i = 0; i < HIST_BINS; i++) {
		seen += h->bin[i];
		if (seen > want)
			return (double)hist_low(i) / tsc_ghz;
	}
	return -1;
}

/* ---- keys and values ---- */

static uint32_t tenant_of(unsigned long i)
{
	return (uint32_t)(i % 1000) + 1;
}

static void server_name(unsigned long i, char *buf, size_t len)
{
	snprintf(buf, len, "Mail-%" PRIu32 ".T%" PRIu32 ".example.net", (uint32_t)i, tenant_of(i));
}

/* 198.18.0.0/15 holds the first 131072 sources, 2001:db8::/32 the rest:
 * table keys only, never addresses anything is sent to. */
static struct tes_addr source_addr(unsigned long i)
{
	struct tes_addr a;

	if (i < 131072) {
		uint8_t b[4] = { 198, (uint8_t)(18 + (i >> 16)), (uint8_t)(i >> 8), (uint8_t)i };

		tes_addr_v4(&a, b);
	} else {
		uint8_t b[16] = { 0x20, 0x01, 0x0d, 0xb8 };

		b[12] = (uint8_t)(i >> 24);
		b[13] = (uint8_t)(i >> 16);
		b[14] = (uint8_t)(i >> 8);
		b[15] = (uint8_t)i;
		tes_addr_v6(&a, b);
	}
	return a;
}

static void server_value(unsigned long i, uint64_t version, struct tes_server *s)
{
	memset(s, 0, sizeof(*s));
	s->tenant_id = tenant_of(i);
	server_name(i, s->fqdn, sizeof(s->fqdn));
	s->build = (struct ex_build){ { 15, 1, 2507, (uint32_t)(i % 40) } };
	s->family = EX_FAMILY_2016;
	/* First detections spread over the last 120 days: every stage. */
	s->first_detected = T_NOW - (int64_t)(i % 120) * 86400 - (int64_t)(i % 3600);
	s->last_seen = T_NOW - (int64_t)(version % 86400);
	s->nsources = 1;
	s->sources[0] = source_addr(i);
}

static void source_value(unsigned long i, uint64_t version, struct enfstate_source *v)
{
	memset(v, 0, sizeof(*v));
	v->tenant_id = tenant_of(i);
	server_name(i, v->fqdn, sizeof(v->fqdn));
	v->drop = (version + i) % 7 == 0;
}

static void load(void)
{
	struct tes_server s;
	struct enfstate_source v;
	struct tes_tenant t;
	unsigned long i;
	double t0 = now_s();

	memset(&t, 0, sizeof(t));
	for (i = 1; i <= 1000; i++) {
		uint8_t net[4] = { 198, 18, 0, 0 };

		t.id = (uint32_t)i;
		snprintf(t.name, sizeof(t.name), "tenant%lu", i);
		t.nconnectors = 1;
		tes_addr_v4(&t.connectors[0].net, net);
		t.connectors[0].prefix_len = 15;
		if (enfstate_tenant_put(st, &t) < 0)
			goto fail;
	}
	for (i = 0; i < opt.servers; i++) {
		struct tes_addr a = source_addr(i);

		server_value(i, 0, &s);
		source_value(i, 0, &v);
		if (enfstate_server_put(st, &s) < 0 || enfstate_source_put(st, &a, &v) < 0)
			goto fail;
		if (i % 4096 == 0)
			enfstate_quiescent();
	}
	printf("loaded %lu servers, %lu sources, 1000 tenants in %.2f s\n", opt.servers,
	       opt.servers, now_s() - t0);
	return;
fail:
	perror("bench_lookup: put");
	exit(2);
}

static void build_stream(void)
{
	uint64_t rng = opt.seed | 1;
	unsigned long keys = opt.hot ? opt.hot : opt.servers;
	size_t i;

	/* Uniform: every key once per pass through the stream.  Hot: a short
	 * stream (256 KiB) sampled from the hot set, so that walking it does
	 * not itself push the hot set out of the caches. */
	stream_len = opt.hot ? 4096 : opt.servers;
	stream = calloc(stream_len, sizeof(*stream));
	if (stream == NULL) {
		perror("bench_lookup: stream");
		exit(2);
	}
	for (i = 0; i < stream_len; i++) {
		unsigned long k = opt.hot ? rng_next(&rng) % keys : i;

		stream[i].tenant = tenant_of(k);
		stream[i].src = source_addr(k);
		server_name(k, stream[i].fqdn, sizeof(stream[i].fqdn));
	}
	if (!opt.hot) {
		/* Fisher-Yates: every key once, in random order. */
		for (i = stream_len - 1; i > 0; i--) {
			size_t j = rng_next(&rng) % (i + 1);
			struct req tmp = stream[i];

			stream[i] = stream[j];
			stream[j] = tmp;
		}
	}
}

/* ---- the reader ---- */

static const struct tes_detection det = {
	.cls = TES_BUILD_VULNERABLE,
	.family = EX_FAMILY_2016,
	.build = { { 15, 1, 2507, 35 } },
};

static inline __attribute__((always_inline)) unsigned do_op(enum op op, const struct req *r)
{
	struct tes_server s;
	struct tes_verdict v;

	switch (op) {
	case OP_SERVER:
		return enfstate_lookup_server(st, r->tenant, r->fqdn, &s);
	case OP_SOURCE:
		return enfstate_source_drop(st, &r->src, T_NOW);
	case OP_SERVER8: {
		uint32_t t[BURST];
		const char *f[BURST];
		struct tes_server s8[BURST];
		bool found[BURST];
		unsigned hits = 0;

		for (unsigned i = 0; i < BURST; i++) {
			t[i] = r[i].tenant;
			f[i] = r[i].fqdn;
		}
		enfstate_lookup_server_burst(st, BURST, t, f, s8, found);
		for (unsigned i = 0; i < BURST; i++)
			hits += found[i];
		return hits;
	}
	case OP_SOURCE8: {
		const struct tes_addr *a[BURST];
		bool drop[BURST];
		unsigned hits = 0;

		for (unsigned i = 0; i < BURST; i++)
			a[i] = &r[i].src;
		enfstate_source_drop_burst(st, BURST, a, T_NOW, drop);
		for (unsigned i = 0; i < BURST; i++)
			hits += drop[i];
		return hits;
	}
	default:
		enfstate_decide(st, r->tenant, r->fqdn, &r->src, &det, T_NOW + 600, false, &v);
		return v.action != TES_ACCEPT;
	}
}

struct phase {
	enum op op;
	size_t start;
	double lookups_per_s;
	unsigned long hits, lookups;
	struct hist *h;
};

/* op is a constant at each call below, so each pass is its own loop. */
static inline __attribute__((always_inline)) void run_pass(enum op op, struct phase *ph, bool timed)
{
	size_t pos = ph->start;
	unsigned long n = 0, hits = 0;
	double t0 = now_s(), t1;
	unsigned i;

	do {
		for (i = 0; i < BATCH; i += op_step(op)) {
			const struct req *r = &stream[pos];

			pos += op_step(op);
			if (pos + op_step(op) > stream_len)
				pos = 0;
			if (timed) {
				uint64_t c0 = tick_start();

				hits += do_op(op, r);
				hist_add(ph->h, (tick_stop() - c0) / op_step(op));
			} else {
				hits += do_op(op, r);
			}
		}
		n += BATCH;
		enfstate_quiescent();
		t1 = now_s();
	} while (t1 - t0 < opt.seconds);
	ph->start = pos;
	ph->hits += hits;
	if (!timed) {
		ph->lookups = n;
		ph->lookups_per_s = (double)n / (t1 - t0);
	}
}

static void *reader_main(void *arg)
{
	struct phase *ph = arg;

	pin(opt.reader_cpu);
	enfstate_thread_register();
	switch (ph->op) {
	case OP_SERVER:
		run_pass(OP_SERVER, ph, false);
		run_pass(OP_SERVER, ph, true);
		break;
	case OP_SOURCE:
		run_pass(OP_SOURCE, ph, false);
		run_pass(OP_SOURCE, ph, true);
		break;
	case OP_SERVER8:
		run_pass(OP_SERVER8, ph, false);
		run_pass(OP_SERVER8, ph, true);
		break;
	case OP_SOURCE8:
		run_pass(OP_SOURCE8, ph, false);
		run_pass(OP_SOURCE8, ph, true);
		break;
	default:
		run_pass(OP_DECIDE, ph, false);
		run_pass(OP_DECIDE, ph, true);
		break;
	}
	enfstate_thread_unregister();
	__atomic_store_n(&reader_done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* ---- the writer (this thread) ---- */

struct writer {
	uint64_t rng, version;
	unsigned long deleted[64]; /* deleted keys awaiting re-add */
	unsigned ndeleted;
	unsigned long applied;
};

static void update_one(struct writer *w, enum op op)
{
	unsigned long i = rng_next(&w->rng) % opt.servers;
	unsigned kind = (unsigned)(rng_next(&w->rng) % 20);
	struct tes_server s;
	struct enfstate_source v;
	struct tes_addr a;
	char name[TES_FQDN_MAX];

	/* 90% replace, 5% delete, 5% re-add of a deleted key. */
	if (kind == 0 && w->ndeleted < 64) {
		if (op_sources(op)) {
			a = source_addr(i);
			if (!enfstate_source_del(st, &a))
				return;
		} else {
			server_name(i, name, sizeof(name));
			if (!enfstate_server_del(st, tenant_of(i), name))
				return;
		}
		w->deleted[w->ndeleted++] = i;
	} else if (kind == 1 && w->ndeleted > 0) {
		i = w->deleted[--w->ndeleted];
		goto put;
	} else {
		goto put;
	}
	w->applied++;
	return;
put:
	w->version++;
	if (op_sources(op)) {
		a = source_addr(i);
		source_value(i, w->version, &v);
		if (enfstate_source_put(st, &a, &v) < 0)
			abort();
	} else {
		server_value(i, w->version, &s);
		if (enfstate_server_put(st, &s) < 0)
			abort();
	}
	w->applied++;
}

/* Until the reader finishes: every millisecond, the updates due, then a
 * quiescent state, then offline for the sleep, as the control thread does
 * between messages from tescontrol. */
static double write_until_done(struct writer *w, enum op op)
{
	struct timespec next;
	double t0 = now_s(), due = 0;
	unsigned long start = w->applied;

	clock_gettime(CLOCK_MONOTONIC, &next);
	while (!__atomic_load_n(&reader_done, __ATOMIC_ACQUIRE)) {
		due += (double)opt.updates / 1000.0;
		while (due >= 1) {
			update_one(w, op);
			due -= 1;
		}
		enfstate_quiescent();
		next.tv_nsec += 1000000;
		if (next.tv_nsec >= 1000000000) {
			next.tv_nsec -= 1000000000;
			next.tv_sec++;
		}
		enfstate_thread_offline();
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
			;
		enfstate_thread_online();
	}
	/* Put back what is deleted, so every phase starts from N entries. */
	while (w->ndeleted > 0) {
		unsigned long i = w->deleted[--w->ndeleted];
		struct tes_server s;
		struct enfstate_source v;
		struct tes_addr a = source_addr(i);

		server_value(i, w->version, &s);
		source_value(i, w->version, &v);
		if (op_sources(op) ? enfstate_source_put(st, &a, &v) < 0
				   : enfstate_server_put(st, &s) < 0)
			abort();
	}
	return (double)(w->applied - start) / (now_s() - t0);
}

/* ---- phases and report ---- */

struct result {
	double tput, p50, p99, p999, upd;
	double hit;
};

static struct result run_phase(enum op op, bool with_writer, struct writer *w, size_t start)
{
	struct phase ph = { .op = op, .start = start };
	struct result r = { 0 };
	pthread_t tid;

	ph.h = calloc(1, sizeof(*ph.h));
	if (ph.h == NULL) {
		perror("bench_lookup: histogram");
		exit(2);
	}
	__atomic_store_n(&reader_done, 0, __ATOMIC_RELAXED);
	if (pthread_create(&tid, NULL, reader_main, &ph) != 0) {
		perror("bench_lookup: pthread_create");
		exit(2);
	}
	if (with_writer) {
		r.upd = write_until_done(w, op);
	} else {
		/* Offline: a baseline reader must not wait on this thread. */
		enfstate_thread_offline();
		while (!__atomic_load_n(&reader_done, __ATOMIC_ACQUIRE))
			usleep(1000);
		enfstate_thread_online();
	}
	enfstate_thread_offline();
	pthread_join(tid, NULL);
	enfstate_thread_online();
	r.tput = ph.lookups_per_s;
	r.p50 = hist_pct(ph.h, 0.50);
	r.p99 = hist_pct(ph.h, 0.99);
	r.p999 = hist_pct(ph.h, 0.999);
	r.hit = (double)ph.hits / (double)(ph.lookups + ph.h->n);
	free(ph.h);
	return r;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The timer around nothing: its p50 is in every latency below, its p99 is
 * the noise floor of the machine for a 20 ns window. */
static void timer_overhead(double *p50, double *p99)
{
	struct hist *h = calloc(1, sizeof(*h));
	unsigned i;

	if (h == NULL)
		exit(2);
	for (i = 0; i < 2000000; i++) {
		uint64_t c0 = tick_start();

		hist_add(h, tick_stop() - c0);
	}
	*p50 = hist_pct(h, 0.5);
	*p99 = hist_pct(h, 0.99);
	free(h);
}

/* The machine's floor: one dependent load at a random cache line of a
 * buffer as big as the tables, allocated the way they are (malloc, so the
 * same page size), as a pointer chase.  A lookup of a cold key cannot beat
 * it, and needs two or three of them (bucket, node, value). */
static double memory_floor(size_t bytes)
{
	size_t n = bytes / 64, i;
	uint8_t *buf = malloc(bytes);
	uint32_t *perm = malloc(n * sizeof(*perm));
	uint64_t rng = 12345;
	void *p;
	double t0, t1;
	const unsigned long steps = 2000000;

	if (buf == NULL || perm == NULL) {
		free(buf);
		free(perm);
		return -1;
	}
	for (i = 0; i < n; i++)
		perm[i] = (uint32_t)i;
	/* Sattolo: one cycle through every line. */
	for (i = n - 1; i > 0; i--) {
		size_t j = rng_next(&rng) % i;
		uint32_t t = perm[i];

		perm[i] = perm[j];
		perm[j] = t;
	}
	for (i = 0; i < n; i++)
		*(void **)(void *)(buf + (size_t)perm[i] * 64) =
			buf + (size_t)perm[(i + 1) % n] * 64;
	free(perm);
	p = buf;
	t0 = now_s();
	for (i = 0; i < steps; i++)
		p = *(void *volatile *)p;
	t1 = now_s();
	free(buf);
	return p ? (t1 - t0) / (double)steps * 1e9 : -1;
}

struct floor_arg {
	size_t bytes;
	double ns;
};

static void *floor_main(void *arg)
{
	struct floor_arg *f = arg;

	pin(opt.reader_cpu);
	f->ns = memory_floor(f->bytes);
	return NULL;
}

/* On the reader's core, where the lookups run. */
static double memory_floor_on_reader(size_t bytes)
{
	struct floor_arg f = { bytes, -1 };
	pthread_t tid;

	if (pthread_create(&tid, NULL, floor_main, &f) != 0)
		return -1;
	pthread_join(tid, NULL);
	return f.ns;
}

static double rss_mb(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long size, rss = 0;

	if (f == NULL)
		return -1;
	if (fscanf(f, "%lu %lu", &size, &rss) != 2)
		rss = 0;
	fclose(f);
	return (double)rss * (double)sysconf(_SC_PAGESIZE) / 1048576.0;
}

static void usage(void)
{
	fprintf(stderr, "usage: bench_lookup [--servers N] [--updates N] [--seconds S] "
			"[--rounds R] [--ops server,source,decide] [--hot H] [--reader-cpu C] "
			"[--writer-cpu C] [--seed N]\n");
	exit(2);
}

static void parse_ops(const char *s)
{
	char buf[64], *tok, *save = NULL;
	int o;

	memset(opt.ops, 0, sizeof(opt.ops));
	snprintf(buf, sizeof(buf), "%s", s);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		for (o = 0; o < OP_COUNT; o++)
			if (strcmp(tok, op_names[o]) == 0)
				break;
		if (o == OP_COUNT)
			usage();
		opt.ops[o] = true;
	}
}

int main(int argc, char **argv)
{
	struct writer w = { .rng = 0 };
	double tmr50, tmr99;
	int i, o;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (v == NULL)
			usage();
		i++;
		if (strcmp(a, "--servers") == 0)
			opt.servers = strtoul(v, NULL, 10);
		else if (strcmp(a, "--updates") == 0)
			opt.updates = strtoul(v, NULL, 10);
		else if (strcmp(a, "--seconds") == 0)
			opt.seconds = strtod(v, NULL);
		else if (strcmp(a, "--rounds") == 0)
			opt.rounds = (unsigned)strtoul(v, NULL, 10);
		else if (strcmp(a, "--ops") == 0)
			parse_ops(v);
		else if (strcmp(a, "--hot") == 0)
			opt.hot = strtoul(v, NULL, 10);
		else if (strcmp(a, "--reader-cpu") == 0)
			opt.reader_cpu = atoi(v);
		else if (strcmp(a, "--writer-cpu") == 0)
			opt.writer_cpu = atoi(v);
		else if (strcmp(a, "--seed") == 0)
			opt.seed = strtoull(v, NULL, 10);
		else
			usage();
	}
	if (opt.servers < 2 || opt.rounds < 1 || opt.rounds > MAX_ROUNDS || !(opt.seconds > 0) ||
	    opt.hot > opt.servers)
		usage();

	/* Pinned before anything starts liburcu's helper threads, which
	 * inherit this affinity: they share the writer's core, not the
	 * reader's. */
	pin(opt.writer_cpu);
	calibrate();
	enfstate_thread_register();
	st = enfstate_new(NULL, opt.servers);
	if (st == NULL) {
		perror("bench_lookup: enfstate_new");
		return 2;
	}
#ifdef _LGPL_SOURCE
	printf("build: liburcu inlined (_LGPL_SOURCE)\n");
#else
	printf("build: liburcu called (no _LGPL_SOURCE), URCU_INLINE_SMALL_FUNCTIONS\n");
#endif
	timer_overhead(&tmr50, &tmr99);
	printf("servers %lu, keys %s, updates %lu/s, %.1f s per pass, %u rounds, reader cpu %d, "
	       "writer cpu %d, timer %.2f GHz, timer alone p50 %.1f ns (included below) p99 %.1f "
	       "ns\n",
	       opt.servers, opt.hot ? "hot set" : "uniform over all", opt.updates, opt.seconds,
	       opt.rounds, opt.reader_cpu, opt.writer_cpu, tsc_ghz, tmr50, tmr99);
	if (opt.hot)
		printf("hot set: %lu keys\n", opt.hot);
	load();
	build_stream();
	{
		double mb = rss_mb();
		size_t floor_bytes = (size_t)(mb > 64 ? mb : 64) << 20;

		printf("resident %.0f MB; memory floor (random dependent load over %zu MB): "
		       "%.1f ns; over 2 MB: %.1f ns\n",
		       mb, floor_bytes >> 20, memory_floor_on_reader(floor_bytes),
		       memory_floor_on_reader(2 << 20));
	}
	w.rng = opt.seed * 2 + 1;

	printf("\n%-7s %-9s %5s %14s %8s %8s %8s %10s %6s\n", "op", "writer", "round",
	       "lookups/s/core", "p50 ns", "p99 ns", "p99.9 ns", "updates/s", "hit%");
	for (o = 0; o < OP_COUNT; o++) {
		double tp[2][MAX_ROUNDS], p50[2][MAX_ROUNDS], p99[2][MAX_ROUNDS],
			p999[2][MAX_ROUNDS], upd[MAX_ROUNDS];
		size_t start = 0;
		unsigned r;
		int c;

		if (!opt.ops[o])
			continue;
		for (r = 0; r < opt.rounds; r++) {
			for (c = 0; c < 2; c++) {
				struct result res = run_phase(o, c == 1, &w, start);

				start = (start + stream_len / 7) % stream_len;
				tp[c][r] = res.tput;
				p50[c][r] = res.p50;
				p99[c][r] = res.p99;
				p999[c][r] = res.p999;
				if (c == 1)
					upd[r] = res.upd;
				printf("%-7s %-9s %5u %14.0f %8.1f %8.1f %8.1f %10.0f %6.1f\n",
				       op_names[o], c ? "on" : "none", r + 1, res.tput, res.p50,
				       res.p99, res.p999, c ? res.upd : 0.0, res.hit * 100);
				fflush(stdout);
			}
		}
		double mt0 = median(tp[0], opt.rounds), mt1 = median(tp[1], opt.rounds);
		double m50a = median(p50[0], opt.rounds), m50b = median(p50[1], opt.rounds);
		double m99a = median(p99[0], opt.rounds), m99b = median(p99[1], opt.rounds);
		double m999a = median(p999[0], opt.rounds), m999b = median(p999[1], opt.rounds);

		printf("%-7s summary (median of %u rounds): baseline %.2f M/s p50 %.1f p99 %.1f "
		       "p99.9 %.1f ns | with writer (%.0f upd/s) %.2f M/s p50 %.1f p99 %.1f "
		       "p99.9 %.1f ns | ratio writer/baseline: throughput %.3f, p99 %.3f\n",
		       op_names[o], opt.rounds, mt0 / 1e6, m50a, m99a, m999a,
		       median(upd, opt.rounds), mt1 / 1e6, m50b, m99b, m999b, mt1 / mt0,
		       m99b / m99a);
	}

	enfstate_free(st);
	enfstate_thread_unregister();
	free(stream);
	return 0;
}
