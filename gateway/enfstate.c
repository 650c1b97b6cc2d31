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

#include "gateway/enfstate.h"
#include "enforce/siphash.h"
#include "enforce/text.h"

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

/* A source's value: the server's tenant and FQDN as given, and the flag. */
struct source_val {
	uint32_t tenant_id;
	bool drop;
	uint16_t fqdn_len;
	char fqdn[]; /* fqdn_len octets and a NUL */
};

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
	uint64_t sync_gen; /* writer only */
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

	if (len == 0) {
		errno = EINVAL;
		return -1;
	}
	return tbl_put(st, T_SERVERS, kb, len, s, sizeof(*s));
}

bool enfstate_server_del(struct enfstate *st, uint32_t tenant_id, const char *fqdn)
{
	uint8_t kb[SERVER_KEY_MAX];
	size_t len = server_key(kb, tenant_id, fqdn);

	return len != 0 && tbl_del(st, T_SERVERS, kb, len);
}

int enfstate_source_put(struct enfstate *st, const struct tes_addr *src,
			const struct enfstate_source *v)
{
	uint8_t kb[SOURCE_KEY_MAX];
	size_t len = source_key(kb, src);
	size_t flen = strnlen(v->fqdn, TES_FQDN_MAX);
	/* Built here at its exact length: the FQDN follows the header. */
	alignas(struct source_val) uint8_t buf[sizeof(struct source_val) + TES_FQDN_MAX];
	struct source_val *val = (struct source_val *)buf;

	if (len == 0 || flen == TES_FQDN_MAX) {
		errno = EINVAL;
		return -1;
	}
	memset(val, 0, sizeof(*val));
	val->tenant_id = v->tenant_id;
	val->drop = v->drop;
	val->fqdn_len = (uint16_t)flen;
	memcpy(val->fqdn, v->fqdn, flen);
	val->fqdn[flen] = '\0';
	return tbl_put(st, T_SOURCES, kb, len, val, sizeof(*val) + flen + 1);
}

bool enfstate_source_del(struct enfstate *st, const struct tes_addr *src)
{
	uint8_t kb[SOURCE_KEY_MAX];
	size_t len = source_key(kb, src);

	return len != 0 && tbl_del(st, T_SOURCES, kb, len);
}

int enfstate_tenant_put(struct enfstate *st, const struct tes_tenant *t)
{
	uint8_t kb[4];

	put_le32(kb, t->id);
	return tbl_put(st, T_TENANTS, kb, sizeof(kb), t, sizeof(*t));
}

bool enfstate_tenant_del(struct enfstate *st, uint32_t tenant_id)
{
	uint8_t kb[4];

	put_le32(kb, tenant_id);
	return tbl_del(st, T_TENANTS, kb, sizeof(kb));
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

size_t enfstate_sync_end(struct enfstate *st)
{
	size_t n = 0;
	int i;

	for (i = 0; i < T_COUNT; i++)
		n += tbl_sweep(st, i, st->sync_gen);
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
		out->tenant_id = v->tenant_id;
		out->drop = v->drop;
		memcpy(out->fqdn, v->fqdn, (size_t)v->fqdn_len + 1);
	}
	rcu_read_unlock();
	return v != NULL;
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

bool enfstate_source_drop(struct enfstate *st, const struct tes_addr *src)
{
	const struct source_val *v;
	bool drop;

	rcu_read_lock();
	v = source_in(st, src);
	drop = v != NULL && v->drop;
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

bool enfstate_decide_source(struct enfstate *st, const struct tes_addr *src, int64_t now,
			    bool via_connector, struct tes_verdict *out)
{
	const struct source_val *v;
	const struct tes_server *s = NULL;
	const struct tes_tenant *t = NULL;

	rcu_read_lock();
	v = source_in(st, src);
	if (v != NULL) {
		s = server_in(st, v->tenant_id, v->fqdn);
		t = tenant_in(st, v->tenant_id);
	}
	tes_decide(s, t, policy_in(st), now, src, NULL, via_connector, out);
	rcu_read_unlock();
	return v != NULL;
}

/* ---- anyone ---- */

void enfstate_stats(const struct enfstate *st, struct enfstate_stats *out)
{
	out->servers = count_get(&st->t[T_SERVERS].count);
	out->sources = count_get(&st->t[T_SOURCES].count);
	out->tenants = count_get(&st->t[T_TENANTS].count);
	out->policy_gen = __atomic_load_n(&st->policy_gen, __ATOMIC_RELAXED);
	out->catalog_gen = __atomic_load_n(&st->catalog_gen, __ATOMIC_RELAXED);
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
