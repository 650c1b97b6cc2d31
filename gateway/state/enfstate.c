/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The enforcement state under RCU: see enfstate.h for who may call what.
 *
 * Licensing: tesgate is BSD-3-Clause and liburcu LGPL-2.1, so this file does
 * not define _LGPL_SOURCE (which would inline liburcu's library code into
 * ours).  It defines URCU_INLINE_SMALL_FUNCTIONS, which liburcu's README
 * allows for code under any licence: it inlines only rcu_dereference and the
 * pointer updates, functions of ten lines or less that are part of the ABI.
 * The read lock is empty in QSBR either way, and cds_lfht_lookup is a library
 * call either way; only rcu_quiescent_state stays an out-of-line call here,
 * once per burst.  bench/run-lookup.sh measures both builds: no difference
 * above the noise (docs/benchmarks.md).
 *
 * Memory ordering: every node, snapshot and catalog is written completely
 * before liburcu publishes it (cds_lfht_add_replace and rcu_xchg_pointer
 * order all prior stores before the publishing one) and is never written
 * again; readers reach it only through rcu_dereference inside liburcu or
 * here.  So the only ordering questions are liburcu's, and no field is
 * accessed atomically except the writer's counters.
 */
#define URCU_INLINE_SMALL_FUNCTIONS
#include <urcu-qsbr.h>
#include <urcu/rculfhash.h>

#include <errno.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/state/enfstate.h"
#include "base/siphash.h"
#include "base/text.h"

/* ---- ThreadSanitizer ----
 * liburcu is not instrumented, so TSan sees neither the publication of a
 * node (a release store inside liburcu) nor the grace period that orders a
 * reader's last access before the free.  These annotations state exactly
 * those two edges, and nothing more:
 *   - publication: the writer releases on a node or snapshot just before
 *     liburcu publishes it, a reader acquires on it as soon as liburcu hands
 *     it over (in the match callback, before reading the key);
 *   - grace period: every reader releases on gp_token when it reports a
 *     quiescent state or goes offline; a reclaim callback, which liburcu runs
 *     only after every reader has done so since the object was retired,
 *     acquires on gp_token and on the object before freeing it.
 * A free that skipped the grace period would still be reported: nothing
 * would order the readers' accesses before it.  tests/concurrency checks
 * that (ENFSTATE_FAULT_NO_GRACE below). */
#if defined(__SANITIZE_THREAD__)
#define ENF_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ENF_TSAN 1
#endif
#endif

#ifdef ENF_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define tsan_acquire(p) __tsan_acquire((void *)(p))
#define tsan_release(p) __tsan_release((void *)(p))
static char gp_token;
#else
#define tsan_acquire(p) ((void)(p))
#define tsan_release(p) ((void)(p))
#endif

/* ---- nodes ----
 * One layout for the three tables: the lfht link, then the key right after
 * it, so the match callback finds the key in the cache line the table walk
 * has already loaded; then the value at a 16-byte aligned offset; then a tail
 * that only the writer and the reclaim callback use.  Keys are byte strings
 * compared with memcmp:
 *   server: tenant id (4 octets, little-endian) + the FQDN in ASCII lower case;
 *   source: family (1 octet) + 4 or 16 address octets;
 *   tenant: tenant id (4 octets, little-endian). */

#define SERVER_KEY_MAX (4 + TES_FQDN_MAX - 1)
#define SOURCE_KEY_MAX 17

struct enode {
	struct cds_lfht_node ln;
	uint32_t keylen;
	uint32_t voff; /* value, from the start of the node */
	uint32_t toff; /* tail */
	uint8_t key[];
};

struct enode_tail {
	struct rcu_head rcu;
	struct enode *node;
	uint64_t gen; /* sync generation of the put that made it; writer only */
};

/* A source's value: the servers it carried (at most
 * ENFSTATE_SOURCE_SERVERS), each with when it was last carried and its
 * probe claim, then their FQDNs as given, NUL-terminated, in a pool.  The
 * node is immutable like every other except probe_next, which readers
 * claim with a compare-and-swap and the writer carries over (an atomic
 * load) into the node that replaces it. */
struct source_ent {
	int64_t seen;       /* 0: unknown, counts as recent */
	int64_t probe_next; /* atomic; a probe may be claimed from this time */
	uint32_t tenant_id;
	uint16_t fqdn_off; /* in the pool */
	uint16_t fqdn_len;
};

struct source_val {
	/* A server was dropped from a full list: until then the source counts
	 * as shared by servers not listed, and nothing is refused early. */
	int64_t shared_until;
	uint8_t n;
	bool drop; /* pinned by enfstate_source_put (tests, benchmarks) */
	uint16_t pool_len;
	struct source_ent ent[]; /* n of them, then pool_len octets of names */
};

static inline const char *ent_fqdn(const struct source_val *v, const struct source_ent *e)
{
	return (const char *)&v->ent[v->n] + e->fqdn_off;
}

static void index_update(struct enfstate *st, const struct tes_server *old,
			 const struct tes_server *new);

struct policy_snap {
	struct tes_policy pol;
	struct rcu_head rcu;
};

struct catalog_snap {
	struct catalog *cat;
	struct rcu_head rcu;
};

enum { T_SERVERS, T_SOURCES, T_TENANTS, T_COUNT };

struct table {
	struct cds_lfht *ht;
	size_t count; /* written by the writer only, read relaxed by anyone */
};

struct enfstate {
	struct table t[T_COUNT];
	struct siphash_key hkey;
	struct policy_snap *policy;   /* never NULL */
	struct catalog_snap *catalog; /* NULL: no catalog */
	uint64_t policy_gen, catalog_gen;
	uint64_t sync_gen;   /* writer only */
	size_t index_errors; /* source nodes the writer could not publish */
	/* Some tenant is at its server cap (atomic; the writer rescans the few
	 * tenants after each change), so the common case costs one load. */
	bool any_capped;
	uint64_t probes; /* claimed by readers (atomic; rare) */
};

/* caa_container_of, through void * so that clang's -Wcast-align accepts it:
 * every node and snapshot comes from malloc, so the alignment holds. */
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

static inline size_t align_up(size_t n, size_t a)
{
	return (n + a - 1) & ~(a - 1);
}

static inline const void *node_val(const struct enode *n)
{
	return (const uint8_t *)n + n->voff;
}

static inline struct enode_tail *node_tail(struct enode *n)
{
	return (struct enode_tail *)(void *)((uint8_t *)n + n->toff);
}

static struct enode *node_new(const uint8_t *key, size_t keylen, const void *val, size_t vsize,
			      uint64_t gen)
{
	size_t voff = align_up(offsetof(struct enode, key) + keylen, 16);
	size_t toff = align_up(voff + vsize, alignof(struct enode_tail));
	struct enode *n = malloc(toff + sizeof(struct enode_tail));
	struct enode_tail *tail;

	if (n == NULL)
		return NULL;
	cds_lfht_node_init(&n->ln);
	n->keylen = (uint32_t)keylen;
	n->voff = (uint32_t)voff;
	n->toff = (uint32_t)toff;
	memcpy(n->key, key, keylen);
	memcpy((uint8_t *)n + voff, val, vsize);
	tail = node_tail(n);
	tail->node = n;
	tail->gen = gen;
	return n;
}

/* ---- reclamation ---- */

#ifdef ENFSTATE_FAULT_NO_GRACE
/* Test builds only (tests/concurrency): free retired memory at once, the
 * bug the grace period prevents, to show the stress test and TSan catch it. */
#define retire(head, fn) (fn)(head)
#else
static void retire(struct rcu_head *head, void (*fn)(struct rcu_head *))
{
	tsan_release(head);
	call_rcu(head, fn);
}
#endif

static inline void reclaim_begin(struct rcu_head *head)
{
#ifdef ENF_TSAN
	tsan_acquire(&gp_token);
#endif
	tsan_acquire(head);
}

static void node_reclaim(struct rcu_head *head)
{
	struct enode_tail *tail = container_of(head, struct enode_tail, rcu);

	reclaim_begin(head);
	free(tail->node);
}

static void policy_reclaim(struct rcu_head *head)
{
	reclaim_begin(head);
	free(container_of(head, struct policy_snap, rcu));
}

static void catalog_reclaim(struct rcu_head *head)
{
	struct catalog_snap *snap = container_of(head, struct catalog_snap, rcu);

	reclaim_begin(head);
	catalog_free(snap->cat);
	free(snap);
}

/* ---- keys ---- */

static inline void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* Length of the key, or 0 when fqdn is NULL, empty or longer than 255. */
static size_t server_key(uint8_t kb[SERVER_KEY_MAX], uint32_t tenant_id, const char *fqdn)
{
	size_t i;

	if (fqdn == NULL || fqdn[0] == '\0')
		return 0;
	put_le32(kb, tenant_id);
	for (i = 0; fqdn[i] != '\0'; i++) {
		unsigned char c = (unsigned char)fqdn[i];

		if (i == TES_FQDN_MAX - 1)
			return 0;
		/* ASCII only, whatever the locale: DNS compares octets
		 * case-insensitively only for A-Z (RFC 4343). */
		kb[4 + i] = (unsigned char)(c - 'A') < 26 ? (uint8_t)(c + ('a' - 'A')) : c;
	}
	return 4 + i;
}

static size_t source_key(uint8_t kb[SOURCE_KEY_MAX], const struct tes_addr *a)
{
	if (a == NULL)
		return 0;
	kb[0] = a->family;
	switch (a->family) {
	case TES_ADDR_V4:
		memcpy(kb + 1, a->a, 4);
		return 5;
	case TES_ADDR_V6:
		memcpy(kb + 1, a->a, 16);
		return 17;
	default:
		return 0;
	}
}

static inline unsigned long key_hash(const struct enfstate *st, const uint8_t *key, size_t len)
{
	return (unsigned long)siphash13(&st->hkey, key, len);
}

struct lkey {
	const uint8_t *p;
	size_t len;
};

static int node_match(struct cds_lfht_node *ln, const void *arg)
{
	const struct enode *n = container_of(ln, struct enode, ln);
	const struct lkey *k = arg;

	tsan_acquire(n);
	return n->keylen == k->len && memcmp(n->key, k->p, k->len) == 0;
}

/* ---- tables ---- */

static inline size_t count_get(const size_t *c)
{
	return __atomic_load_n(c, __ATOMIC_RELAXED);
}

static inline void count_add(size_t *c, long d)
{
	__atomic_store_n(c, count_get(c) + (size_t)d, __ATOMIC_RELAXED);
}

/* Inside a read-side section; the node stays valid until the calling thread's
 * next quiescent state. */
static const struct enode *tbl_lookup(struct enfstate *st, int t, const uint8_t *key, size_t len)
{
	struct lkey k = { key, len };
	struct cds_lfht_iter it;
	struct cds_lfht_node *ln;

	cds_lfht_lookup(st->t[t].ht, key_hash(st, key, len), node_match, &k, &it);
	ln = cds_lfht_iter_get_node(&it);
	return ln ? container_of(ln, struct enode, ln) : NULL;
}

static int tbl_put(struct enfstate *st, int t, const uint8_t *key, size_t len, const void *val,
		   size_t vsize)
{
	struct lkey k = { key, len };
	struct cds_lfht_node *old;
	struct enode *n = node_new(key, len, val, vsize, st->sync_gen);

	if (n == NULL) {
		errno = ENOMEM;
		return -1;
	}
	tsan_release(n);
	rcu_read_lock();
	old = cds_lfht_add_replace(st->t[t].ht, key_hash(st, key, len), node_match, &k, &n->ln);
	rcu_read_unlock();
	if (old != NULL) {
		retire(&node_tail(container_of(old, struct enode, ln))->rcu, node_reclaim);
		return 1;
	}
	count_add(&st->t[t].count, 1);
	return 0;
}

static bool tbl_del(struct enfstate *st, int t, const uint8_t *key, size_t len)
{
	struct lkey k = { key, len };
	struct cds_lfht_iter it;
	struct cds_lfht_node *ln;
	bool deleted = false;

	rcu_read_lock();
	cds_lfht_lookup(st->t[t].ht, key_hash(st, key, len), node_match, &k, &it);
	ln = cds_lfht_iter_get_node(&it);
	/* Only this thread deletes, so the node found is still there. */
	if (ln != NULL && cds_lfht_del(st->t[t].ht, ln) == 0) {
		retire(&node_tail(container_of(ln, struct enode, ln))->rcu, node_reclaim);
		deleted = true;
	}
	rcu_read_unlock();
	if (deleted)
		count_add(&st->t[t].count, -1);
	return deleted;
}

/* Delete every node whose generation is not gen (all of them when gen is
 * UINT64_MAX, which no put uses).  Deleting while iterating is allowed. */
static size_t tbl_sweep(struct enfstate *st, int t, uint64_t gen)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *ln;
	size_t n = 0;

	rcu_read_lock();
	cds_lfht_for_each (st->t[t].ht, &it, ln) {
		struct enode_tail *tail = node_tail(container_of(ln, struct enode, ln));

		if (tail->gen == gen)
			continue;
		if (cds_lfht_del(st->t[t].ht, ln) == 0) {
			retire(&tail->rcu, node_reclaim);
			n++;
		}
	}
	rcu_read_unlock();
	count_add(&st->t[t].count, -(long)n);
	return n;
}

/* ---- lifetime ---- */

static unsigned long pow2_at_least(size_t n)
{
	unsigned long p = 1;

	while (p < n && p < (1UL << 30))
		p <<= 1;
	return p;
}

struct enfstate *enfstate_new(const struct tes_policy *pol, size_t size_hint)
{
	struct enfstate *st = calloc(1, sizeof(*st));
	unsigned long sizes[T_COUNT];
	int i;

	if (st == NULL)
		return NULL;
	if (siphash_key_random(&st->hkey) != 0) {
		free(st);
		return NULL;
	}
	/* Servers and sources come in similar numbers; tenants are few. */
	sizes[T_SERVERS] = pow2_at_least(size_hint ? size_hint : 1024);
	sizes[T_SOURCES] = sizes[T_SERVERS];
	sizes[T_TENANTS] = 64;
	st->policy = calloc(1, sizeof(*st->policy));
	if (st->policy == NULL)
		goto fail;
	if (pol != NULL)
		st->policy->pol = *pol;
	else
		tes_policy_default(&st->policy->pol);
	st->policy_gen = 1;
	/* Auto-resize with CDS_LFHT_ACCOUNTING, as liburcu intends for large
	 * tables: without accounting the only trigger is an insertion walking
	 * a chain of three, which at a million entries keeps firing at any
	 * load and quadruples the bucket array again and again (measured: 3 GB
	 * for 1 M servers and sources).  With it, a large table grows to one
	 * node per bucket when it reaches eight per bucket, and shrinks when
	 * it falls to an eighth; the hint is meant to keep expected sizes at
	 * no more than one node per bucket from the start. */
	for (i = 0; i < T_COUNT; i++) {
		st->t[i].ht = cds_lfht_new(sizes[i], sizes[i], 0,
					   CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
		if (st->t[i].ht == NULL)
			goto fail;
	}
	return st;
fail:
	for (i = 0; i < T_COUNT; i++)
		if (st->t[i].ht != NULL)
			cds_lfht_destroy(st->t[i].ht, NULL);
	free(st->policy);
	free(st);
	errno = ENOMEM;
	return NULL;
}

void enfstate_free(struct enfstate *st)
{
	int was_online, i;

	if (st == NULL)
		return;
	for (i = 0; i < T_COUNT; i++)
		tbl_sweep(st, i, UINT64_MAX);
	/* cds_lfht_destroy waits for the table's pending resize, whose worker
	 * waits for a grace period: were this thread online (inside a QSBR
	 * read-side section), neither would ever finish. */
	was_online = rcu_read_ongoing();
	if (was_online)
		rcu_thread_offline();
	for (i = 0; i < T_COUNT; i++)
		if (cds_lfht_destroy(st->t[i].ht, NULL) != 0)
			fprintf(stderr, "enfstate: cds_lfht_destroy failed on an emptied table\n");
	if (was_online)
		rcu_thread_online();
	retire(&st->policy->rcu, policy_reclaim);
	if (st->catalog != NULL)
		retire(&st->catalog->rcu, catalog_reclaim);
	free(st);
	/* Every node and snapshot retired above is freed before this returns,
	 * so the process can exit clean under LeakSanitizer.  rcu_barrier goes
	 * offline by itself while it waits. */
	rcu_barrier();
}

/* ---- threads ---- */

void enfstate_thread_register(void)
{
	rcu_register_thread();
}

void enfstate_thread_unregister(void)
{
#ifdef ENF_TSAN
	tsan_release(&gp_token);
#endif
	rcu_unregister_thread();
}

void enfstate_quiescent(void)
{
#ifdef ENF_TSAN
	tsan_release(&gp_token);
#endif
	rcu_quiescent_state();
}

void enfstate_thread_offline(void)
{
#ifdef ENF_TSAN
	tsan_release(&gp_token);
#endif
	rcu_thread_offline();
}

void enfstate_thread_online(void)
{
	rcu_thread_online();
}

/* ---- writer ---- */

int enfstate_server_put(struct enfstate *st, const struct tes_server *s)
{
	uint8_t kb[SERVER_KEY_MAX];
	size_t len = server_key(kb, s->tenant_id, s->fqdn);
	struct tes_server old;
	bool had;
	int rc;

	if (len == 0) {
		errno = EINVAL;
		return -1;
	}
	had = enfstate_lookup_server(st, s->tenant_id, s->fqdn, &old);
	rc = tbl_put(st, T_SERVERS, kb, len, s, sizeof(*s));
	if (rc >= 0)
		index_update(st, had ? &old : NULL, s);
	return rc;
}

bool enfstate_server_del(struct enfstate *st, uint32_t tenant_id, const char *fqdn)
{
	uint8_t kb[SERVER_KEY_MAX];
	size_t len = server_key(kb, tenant_id, fqdn);
	struct tes_server old;

	if (len == 0 || !enfstate_lookup_server(st, tenant_id, fqdn, &old))
		return false;
	if (!tbl_del(st, T_SERVERS, kb, len))
		return false;
	index_update(st, &old, NULL);
	return true;
}

/* ---- the source index ----
 * Built by the writer from the servers it is given: each source of a server
 * lists it, with the time that source last carried it. */

/* A source's entries while the writer rebuilds them. */
struct src_build {
	int64_t shared_until;
	uint64_t gen; /* of the node read; 0: none */
	bool drop;
	unsigned n;
	struct {
		int64_t seen, probe_next;
		uint32_t tenant_id;
		char fqdn[TES_FQDN_MAX];
	} e[ENFSTATE_SOURCE_SERVERS];
};

static bool fqdn_eq(const char *a, const char *b)
{
	for (;; a++, b++) {
		unsigned char x = (unsigned char)*a, y = (unsigned char)*b;

		if ((unsigned char)(x - 'A') < 26)
			x = (unsigned char)(x + ('a' - 'A'));
		if ((unsigned char)(y - 'A') < 26)
			y = (unsigned char)(y + ('a' - 'A'));
		if (x != y)
			return false;
		if (x == '\0')
			return true;
	}
}

static const struct source_val *source_in(struct enfstate *st, const struct tes_addr *src);
static const struct tes_policy *policy_in(struct enfstate *st);
static const struct tes_server *server_in(struct enfstate *st, uint32_t tenant_id,
					  const char *fqdn);

/* Read the current node of src into b (empty when none); in a read-side
 * section of the writer's. */
static void src_load(struct enfstate *st, const struct tes_addr *src, struct src_build *b)
{
	const struct source_val *v;

	memset(b, 0, offsetof(struct src_build, e));
	rcu_read_lock();
	v = source_in(st, src);
	if (v != NULL) {
		/* the node around the value, for its sync generation */
		uint8_t kb[SOURCE_KEY_MAX];
		size_t len = source_key(kb, src);
		const struct enode *node = tbl_lookup(st, T_SOURCES, kb, len);

		b->gen = node ? node_tail((struct enode *)node)->gen : 0;
		b->shared_until = v->shared_until;
		b->drop = v->drop;
		for (unsigned i = 0; i < v->n && i < ENFSTATE_SOURCE_SERVERS; i++) {
			b->e[i].seen = v->ent[i].seen;
			b->e[i].probe_next =
				__atomic_load_n(&v->ent[i].probe_next, __ATOMIC_RELAXED);
			b->e[i].tenant_id = v->ent[i].tenant_id;
			memcpy(b->e[i].fqdn, ent_fqdn(v, &v->ent[i]), v->ent[i].fqdn_len + 1u);
		}
		b->n = v->n;
	}
	rcu_read_unlock();
}

/* Publish b as src's node, or delete the node when nothing is left (unless
 * keep).  As tbl_put, or 0 after a delete. */
static int src_store(struct enfstate *st, const struct tes_addr *src, const struct src_build *b,
		     bool keep)
{
	uint8_t kb[SOURCE_KEY_MAX];
	size_t len = source_key(kb, src), pool = 0, vsize;
	alignas(struct source_val)
		uint8_t buf[sizeof(struct source_val) +
			    ENFSTATE_SOURCE_SERVERS * (sizeof(struct source_ent) + TES_FQDN_MAX)];
	struct source_val *v = (struct source_val *)buf;
	char *names;

	if (len == 0) {
		errno = EINVAL;
		return -1;
	}
	/* An empty node goes even while shared_until runs: an unknown
	 * source is only ever decided more leniently. */
	if (!keep && b->n == 0 && !b->drop) {
		tbl_del(st, T_SOURCES, kb, len);
		return 0;
	}
	memset(v, 0, sizeof(*v));
	v->shared_until = b->shared_until;
	v->drop = b->drop;
	v->n = (uint8_t)b->n;
	names = (char *)&v->ent[b->n];
	for (unsigned i = 0; i < b->n; i++) {
		size_t fl = strnlen(b->e[i].fqdn, TES_FQDN_MAX - 1);

		v->ent[i].seen = b->e[i].seen;
		v->ent[i].probe_next = b->e[i].probe_next;
		v->ent[i].tenant_id = b->e[i].tenant_id;
		v->ent[i].fqdn_off = (uint16_t)pool;
		v->ent[i].fqdn_len = (uint16_t)fl;
		memcpy(names + pool, b->e[i].fqdn, fl);
		names[pool + fl] = '\0';
		pool += fl + 1;
	}
	v->pool_len = (uint16_t)pool;
	vsize = sizeof(*v) + b->n * sizeof(struct source_ent) + pool;
	return tbl_put(st, T_SOURCES, kb, len, v, vsize);
}

static int src_find(const struct src_build *b, uint32_t tenant_id, const char *fqdn)
{
	for (unsigned i = 0; i < b->n; i++) {
		if (b->e[i].tenant_id == tenant_id && fqdn_eq(b->e[i].fqdn, fqdn))
			return (int)i;
	}
	return -1;
}

static void index_upsert(struct enfstate *st, const struct tes_addr *src, uint32_t tenant_id,
			 const char *fqdn, int64_t seen)
{
	struct src_build b;
	int i;

	src_load(st, src, &b);
	i = src_find(&b, tenant_id, fqdn);
	if (i >= 0) {
		/* Nothing to publish, unless a full sync must see it touched. */
		if (b.e[i].seen == seen && b.gen == st->sync_gen)
			return;
		b.e[i].seen = seen;
	} else {
		if (b.n == ENFSTATE_SOURCE_SERVERS) {
			/* Full: the least recently seen goes, and while it would
			 * still count the source is treated as shared by servers
			 * not listed, so nothing is refused early for it. */
			unsigned old = 0;
			int64_t until;

			for (unsigned k = 1; k < b.n; k++) {
				if (b.e[k].seen < b.e[old].seen)
					old = k;
			}
			rcu_read_lock();
			until = b.e[old].seen <= 0
					? INT64_MAX
					: b.e[old].seen + (int64_t)policy_in(st)->carried_days *
								  TES_DAY_SECONDS;
			rcu_read_unlock();
			if (until > b.shared_until)
				b.shared_until = until;
			b.e[old] = b.e[--b.n];
		}
		i = (int)b.n++;
		b.e[i].seen = seen;
		b.e[i].probe_next = 0;
		b.e[i].tenant_id = tenant_id;
		snprintf(b.e[i].fqdn, sizeof(b.e[i].fqdn), "%s", fqdn);
	}
	if (src_store(st, src, &b, false) < 0)
		count_add(&st->index_errors, 1);
}

static void index_remove(struct enfstate *st, const struct tes_addr *src, uint32_t tenant_id,
			 const char *fqdn)
{
	struct src_build b;
	int i;

	src_load(st, src, &b);
	i = src_find(&b, tenant_id, fqdn);
	if (i < 0)
		return;
	b.e[i] = b.e[--b.n];
	if (src_store(st, src, &b, false) < 0)
		count_add(&st->index_errors, 1);
}

static bool has_source(const struct tes_server *s, const struct tes_addr *a)
{
	for (unsigned i = 0; i < s->nsources && i < TES_SERVER_SOURCES_MAX; i++) {
		if (tes_addr_equal(&s->sources[i], a))
			return true;
	}
	return false;
}

/* The sources of old that new no longer has lose it; new's list it with
 * their seen times.  Either may be NULL. */
static void index_update(struct enfstate *st, const struct tes_server *old,
			 const struct tes_server *new)
{
	if (old) {
		for (unsigned i = 0; i < old->nsources && i < TES_SERVER_SOURCES_MAX; i++) {
			if (!new || !has_source(new, &old->sources[i]))
				index_remove(st, &old->sources[i], old->tenant_id, old->fqdn);
		}
	}
	if (new) {
		for (unsigned i = 0; i < new->nsources &&i < TES_SERVER_SOURCES_MAX; i++)
			index_upsert(st, &new->sources[i], new->tenant_id, new->fqdn,
				     new->source_seen[i]);
	}
}

int enfstate_source_put(struct enfstate *st, const struct tes_addr *src,
			const struct enfstate_source *v)
{
	struct src_build b;
	size_t flen = strnlen(v->fqdn, TES_FQDN_MAX);
	uint8_t kb[SOURCE_KEY_MAX];

	if (flen == TES_FQDN_MAX || source_key(kb, src) == 0) {
		errno = EINVAL;
		return -1;
	}
	memset(&b, 0, offsetof(struct src_build, e));
	b.drop = v->drop;
	if (flen) {
		b.n = 1;
		b.e[0].tenant_id = v->tenant_id;
		memcpy(b.e[0].fqdn, v->fqdn, flen + 1);
	}
	return src_store(st, src, &b, true);
}

bool enfstate_source_del(struct enfstate *st, const struct tes_addr *src)
{
	uint8_t kb[SOURCE_KEY_MAX];
	size_t len = source_key(kb, src);

	return len != 0 && tbl_del(st, T_SOURCES, kb, len);
}

/* Writer: whether any tenant is at its cap now. */
static void rescan_capped(struct enfstate *st)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *ln;
	bool any = false;

	rcu_read_lock();
	cds_lfht_for_each (st->t[T_TENANTS].ht, &it, ln) {
		const struct tes_tenant *t = node_val(container_of(ln, struct enode, ln));

		any = any || t->at_server_cap;
	}
	rcu_read_unlock();
	__atomic_store_n(&st->any_capped, any, __ATOMIC_RELAXED);
}

int enfstate_tenant_put(struct enfstate *st, const struct tes_tenant *t)
{
	uint8_t kb[4];
	int rc;

	put_le32(kb, t->id);
	rc = tbl_put(st, T_TENANTS, kb, sizeof(kb), t, sizeof(*t));
	rescan_capped(st);
	return rc;
}

bool enfstate_tenant_del(struct enfstate *st, uint32_t tenant_id)
{
	uint8_t kb[4];
	bool rc;

	put_le32(kb, tenant_id);
	rc = tbl_del(st, T_TENANTS, kb, sizeof(kb));
	rescan_capped(st);
	return rc;
}

int enfstate_policy_set(struct enfstate *st, const struct tes_policy *pol)
{
	struct policy_snap *snap = malloc(sizeof(*snap)), *old;

	if (snap == NULL) {
		errno = ENOMEM;
		return -1;
	}
	snap->pol = *pol;
	tsan_release(snap);
	old = rcu_xchg_pointer(&st->policy, snap);
	retire(&old->rcu, policy_reclaim);
	__atomic_store_n(&st->policy_gen, st->policy_gen + 1, __ATOMIC_RELAXED);
	return 0;
}

int enfstate_catalog_set(struct enfstate *st, struct catalog *cat)
{
	struct catalog_snap *snap = NULL, *old;

	if (cat != NULL) {
		snap = malloc(sizeof(*snap));
		if (snap == NULL) {
			errno = ENOMEM;
			return -1;
		}
		snap->cat = cat;
		tsan_release(snap);
	}
	old = rcu_xchg_pointer(&st->catalog, snap);
	if (old != NULL)
		retire(&old->rcu, catalog_reclaim);
	__atomic_store_n(&st->catalog_gen, st->catalog_gen + 1, __ATOMIC_RELAXED);
	return 0;
}

void enfstate_sync_begin(struct enfstate *st)
{
	st->sync_gen++;
}

/* The servers sweep of a sync: each server that goes leaves the lists of
 * its sources too. */
static size_t sweep_servers(struct enfstate *st, uint64_t gen)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *ln;
	size_t n = 0;

	rcu_read_lock();
	cds_lfht_for_each (st->t[T_SERVERS].ht, &it, ln) {
		struct enode *node = container_of(ln, struct enode, ln);
		struct enode_tail *tail = node_tail(node);
		struct tes_server gone;

		if (tail->gen == gen)
			continue;
		gone = *(const struct tes_server *)node_val(node);
		if (cds_lfht_del(st->t[T_SERVERS].ht, ln) == 0) {
			retire(&tail->rcu, node_reclaim);
			n++;
			index_update(st, &gone, NULL);
		}
	}
	rcu_read_unlock();
	count_add(&st->t[T_SERVERS].count, -(long)n);
	return n;
}

size_t enfstate_sync_end(struct enfstate *st)
{
	size_t n = sweep_servers(st, st->sync_gen);

	/* Sources: what no server put or removal touched since sync_begin. */
	n += tbl_sweep(st, T_SOURCES, st->sync_gen);
	n += tbl_sweep(st, T_TENANTS, st->sync_gen);
	rescan_capped(st);
	return n;
}

/* ---- readers ---- */

static inline const struct tes_server *server_in(struct enfstate *st, uint32_t tenant_id,
						 const char *fqdn)
{
	uint8_t kb[SERVER_KEY_MAX];
	size_t len = server_key(kb, tenant_id, fqdn);
	const struct enode *n = len ? tbl_lookup(st, T_SERVERS, kb, len) : NULL;

	return n ? node_val(n) : NULL;
}

static inline const struct tes_tenant *tenant_in(struct enfstate *st, uint32_t tenant_id)
{
	uint8_t kb[4];
	const struct enode *n;

	put_le32(kb, tenant_id);
	n = tbl_lookup(st, T_TENANTS, kb, sizeof(kb));
	return n ? node_val(n) : NULL;
}

static inline const struct source_val *source_in(struct enfstate *st, const struct tes_addr *src)
{
	uint8_t kb[SOURCE_KEY_MAX];
	size_t len = source_key(kb, src);
	const struct enode *n = len ? tbl_lookup(st, T_SOURCES, kb, len) : NULL;

	return n ? node_val(n) : NULL;
}

static inline const struct tes_policy *policy_in(struct enfstate *st)
{
	struct policy_snap *snap = rcu_dereference(st->policy);

	tsan_acquire(snap);
	return &snap->pol;
}

bool enfstate_lookup_server(struct enfstate *st, uint32_t tenant_id, const char *fqdn,
			    struct tes_server *out)
{
	const struct tes_server *s;

	rcu_read_lock();
	s = server_in(st, tenant_id, fqdn);
	if (s != NULL)
		*out = *s;
	rcu_read_unlock();
	return s != NULL;
}

bool enfstate_lookup_source(struct enfstate *st, const struct tes_addr *src,
			    struct enfstate_source *out)
{
	const struct source_val *v;

	rcu_read_lock();
	v = source_in(st, src);
	if (v != NULL) {
		unsigned best = 0;

		memset(out, 0, offsetof(struct enfstate_source, fqdn) + 1);
		out->drop = v->drop;
		out->nservers = v->n;
		out->shared_until = v->shared_until;
		for (unsigned i = 1; i < v->n; i++) {
			if (v->ent[i].seen >= v->ent[best].seen)
				best = i;
		}
		if (v->n) {
			out->tenant_id = v->ent[best].tenant_id;
			memcpy(out->fqdn, ent_fqdn(v, &v->ent[best]), v->ent[best].fqdn_len + 1u);
		}
	}
	rcu_read_unlock();
	return v != NULL;
}

unsigned enfstate_source_servers(struct enfstate *st, const struct tes_addr *src,
				 struct enfstate_carried *out, unsigned max)
{
	const struct source_val *v;
	unsigned n = 0;

	rcu_read_lock();
	v = source_in(st, src);
	for (unsigned i = 0; v && i < v->n && n < max; i++, n++) {
		out[n].tenant_id = v->ent[i].tenant_id;
		out[n].seen = v->ent[i].seen;
		out[n].probe_next = __atomic_load_n(&v->ent[i].probe_next, __ATOMIC_RELAXED);
		memcpy(out[n].fqdn, ent_fqdn(v, &v->ent[i]), v->ent[i].fqdn_len + 1u);
	}
	rcu_read_unlock();
	return n;
}

bool enfstate_lookup_tenant(struct enfstate *st, uint32_t tenant_id, struct tes_tenant *out)
{
	const struct tes_tenant *t;

	rcu_read_lock();
	t = tenant_in(st, tenant_id);
	if (t != NULL)
		*out = *t;
	rcu_read_unlock();
	return t != NULL;
}

/* The servers a source node lists, of one tenant or (UINT64_MAX) all, as
 * the pure decision takes them; in the caller's read-side section. */
static unsigned carried_in(struct enfstate *st, const struct source_val *v, uint64_t tenant,
			   struct tes_carried *c, unsigned *idx)
{
	unsigned n = 0;

	for (unsigned i = 0; i < v->n && i < ENFSTATE_SOURCE_SERVERS; i++) {
		const struct source_ent *e = &v->ent[i];

		if (tenant != UINT64_MAX && e->tenant_id != tenant)
			continue;
		c[n].s = server_in(st, e->tenant_id, ent_fqdn(v, e));
		c[n].t = tenant_in(st, e->tenant_id);
		c[n].seen = e->seen;
		idx[n++] = i;
	}
	return n;
}

/* When the next probe of entry e may be made. */
static int64_t probe_due(const struct tes_policy *p, const struct source_ent *e)
{
	int64_t a = tes_probe_due_at(p, e->seen);
	int64_t b = __atomic_load_n(&e->probe_next, __ATOMIC_RELAXED);

	return a > b ? a : b;
}

bool enfstate_source_drop(struct enfstate *st, const struct tes_addr *src, int64_t now)
{
	const struct source_val *v;
	const struct tes_policy *p;
	struct tes_carried c[ENFSTATE_SOURCE_SERVERS];
	unsigned idx[ENFSTATE_SOURCE_SERVERS], n;
	struct tes_verdict verdict;
	bool drop = false;

	rcu_read_lock();
	v = source_in(st, src);
	if (v == NULL)
		goto out;
	if (v->drop) {
		drop = true;
		goto out;
	}
	p = policy_in(st);
	/* The usual case costs the one lookup it always did. */
	if (p->full_block != TES_FULL_BLOCK_DROP || now < v->shared_until || v->n == 0)
		goto out;
	n = carried_in(st, v, UINT64_MAX, c, idx);
	tes_decide_carried(c, n, p, now, src, false, &verdict);
	if (verdict.action != TES_DROP)
		goto out;
	/* Leave room for a probe: while one is due for any of its servers the
	 * connection goes on to MAIL FROM, which claims it. */
	for (unsigned i = 0; i < n; i++) {
		if (tes_carried_recent(c[i].seen, p, now) && now >= probe_due(p, &v->ent[idx[i]]))
			goto out;
	}
	drop = true;
out:
	rcu_read_unlock();
	return drop;
}

void enfstate_policy(struct enfstate *st, struct tes_policy *out)
{
	rcu_read_lock();
	*out = *policy_in(st);
	rcu_read_unlock();
}

bool enfstate_classify(struct enfstate *st, const struct ex_build *b, int64_t now,
		       struct enfstate_class *out)
{
	struct catalog_snap *snap;
	struct catalog_class cls;
	unsigned i;

	memset(out, 0, sizeof(*out));
	rcu_read_lock();
	snap = rcu_dereference(st->catalog);
	if (snap == NULL) {
		rcu_read_unlock();
		return false;
	}
	tsan_acquire(snap);
	catalog_classify(snap->cat, b, now, &cls);
	/* per message: copies, not printf */
	tes_str_copy(out->catalog_version, sizeof(out->catalog_version),
		     catalog_version(snap->cat));
	out->family = cls.family;
	out->exact = cls.exact;
	out->compliant = cls.compliant;
	tes_str_copy(out->branch, sizeof(out->branch), cls.branch ? cls.branch : "");
	if (cls.nearest != NULL) {
		out->has_nearest = true;
		out->nearest = *cls.nearest;
	}
	out->nrecommended = cls.nrecommended;
	for (i = 0; i < cls.nrecommended && i < CATALOG_MAX_RECOMMENDED; i++)
		out->recommended[i] = *cls.recommended[i];
	rcu_read_unlock();
	return true;
}

void enfstate_decide(struct enfstate *st, uint32_t tenant_id, const char *fqdn,
		     const struct tes_addr *src, const struct tes_detection *d, int64_t now,
		     bool via_connector, struct tes_verdict *out)
{
	rcu_read_lock();
	tes_decide(server_in(st, tenant_id, fqdn), tenant_in(st, tenant_id), policy_in(st), now,
		   src, d, via_connector, out);
	rcu_read_unlock();
}

bool enfstate_decide_source(struct enfstate *st, const struct tes_addr *src, uint32_t tenant_id,
			    int64_t now, bool via_connector, struct tes_verdict *out)
{
	const struct source_val *v;
	const struct tes_policy *p;
	struct tes_carried c[ENFSTATE_SOURCE_SERVERS];
	unsigned idx[ENFSTATE_SOURCE_SERVERS], n = 0;

	rcu_read_lock();
	v = source_in(st, src);
	p = policy_in(st);
	if (v != NULL && now < v->shared_until) {
		/* More servers behind it than listed: read every message. */
		memset(out, 0, sizeof(*out));
		out->reason = TES_REASON_SHARED_SOURCE;
		out->until = v->shared_until;
		rcu_read_unlock();
		return true;
	}
	if (v != NULL)
		n = carried_in(st, v, tenant_id, c, idx);
	tes_decide_carried(c, n, p, now, src, via_connector, out);
	if (n && tes_verdict_full_block(out) && p->probe_interval_min) {
		int64_t next = now + (int64_t)p->probe_interval_min * 60;

		/* One transaction per server and source per interval goes on
		 * to its headers; the claim is one compare-and-swap, so two
		 * workers never both take it. */
		for (unsigned i = 0; i < n; i++) {
			struct source_ent *e = (struct source_ent *)&v->ent[idx[i]];
			int64_t claimed = __atomic_load_n(&e->probe_next, __ATOMIC_RELAXED);
			int64_t due = tes_probe_due_at(p, e->seen);

			if (!tes_carried_recent(c[i].seen, p, now) || now < due || now < claimed)
				continue;
			if (__atomic_compare_exchange_n(&e->probe_next, &claimed, next, false,
							__ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
				uint8_t stage = out->stage;

				__atomic_fetch_add(&st->probes, 1, __ATOMIC_RELAXED);
				memset(out, 0, sizeof(*out));
				out->reason = TES_REASON_PROBE;
				out->stage = stage;
				out->until = now;
				break;
			}
		}
	}
	rcu_read_unlock();
	return v != NULL;
}

enum enfstate_sighting enfstate_sighting_kind(struct enfstate *st, uint32_t tenant_id,
					      const char *fqdn)
{
	const struct tes_tenant *t;
	enum enfstate_sighting k = ENFSTATE_SIGHTING_KNOWN;

	rcu_read_lock();
	if (server_in(st, tenant_id, fqdn) == NULL) {
		k = ENFSTATE_SIGHTING_NEW;
		if (__atomic_load_n(&st->any_capped, __ATOMIC_RELAXED)) {
			t = tenant_in(st, tenant_id);
			if (t != NULL && t->at_server_cap)
				k = ENFSTATE_SIGHTING_CAPPED;
		}
	}
	rcu_read_unlock();
	return k;
}

enum tes_scope enfstate_scope(struct enfstate *st)
{
	enum tes_scope s;

	rcu_read_lock();
	s = policy_in(st)->scope;
	rcu_read_unlock();
	return s;
}

size_t enfstate_index_errors(const struct enfstate *st)
{
	return count_get(&st->index_errors);
}

/* ---- anyone ---- */

void enfstate_stats(const struct enfstate *st, struct enfstate_stats *out)
{
	out->servers = count_get(&st->t[T_SERVERS].count);
	out->sources = count_get(&st->t[T_SOURCES].count);
	out->tenants = count_get(&st->t[T_TENANTS].count);
	out->policy_gen = __atomic_load_n(&st->policy_gen, __ATOMIC_RELAXED);
	out->catalog_gen = __atomic_load_n(&st->catalog_gen, __ATOMIC_RELAXED);
	out->probes = __atomic_load_n(&st->probes, __ATOMIC_RELAXED);
}

/* Tenants are few (one per customer behind this gateway), so matching a
 * source against every connector is a short walk done once per
 * connection.  The lowest tenant id wins when ranges overlap, so the answer
 * does not depend on the table's order. */
bool enfstate_tenant_for_source(struct enfstate *st, const struct tes_addr *src,
				const char *cert_name, uint32_t *tenant_id)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *ln;
	bool found = false;
	uint32_t best = 0;

	rcu_read_lock();
	cds_lfht_for_each (st->t[T_TENANTS].ht, &it, ln) {
		const struct enode *n = container_of(ln, struct enode, ln);
		const struct tes_tenant *t = node_val(n);
		if ((!found || t->id < best) &&
		    tes_tenant_match_connector(t, src, cert_name) >= 0) {
			best = t->id;
			found = true;
		}
	}
	rcu_read_unlock();
	*tenant_id = found ? best : 0;
	return found;
}
