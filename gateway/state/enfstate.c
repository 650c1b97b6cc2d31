/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The enforcement state under RCU: see enfstate.h for who may call what.
 *
 * Licensing: tesgate is BSD-3-Clause and liburcu LGPL-2.1, so this file does
 * not define _LGPL_SOURCE (which would inline liburcu's library code into
 * ours).  It defines URCU_INLINE_SMALL_FUNCTIONS, which liburcu's README
 * allows for code under any licence: it inlines only rcu_dereference and the
 * pointer updates, functions of ten lines or less that are part of the ABI.
 * The read lock is empty in QSBR either way, and the tables are this file's
 * own; only rcu_quiescent_state stays an out-of-line call here, once per
 * burst.  bench/run-lookup.sh measures both builds: no difference
 * above the noise (docs/benchmarks.md).
 *
 * Memory ordering: every node, table, snapshot and catalog is written
 * completely before it is published (a release store of its pointer into a
 * bucket slot or the state, or rcu_xchg_pointer) and is never written again;
 * readers reach it only through an acquire load or rcu_dereference.  The
 * bucket metadata words (tags, overflow flags) are relaxed atomics: they
 * only filter, the key compare decides.  Other atomic fields: the writer's
 * counters and a source's probe claims.
 */
#define URCU_INLINE_SMALL_FUNCTIONS
#include <urcu-qsbr.h>

#include <errno.h>
#include <pthread.h>
#include <sys/mman.h>
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
 * One layout for the three tables: a 16-octet header, the key right after
 * it, so that the key compare reads the node's first cache line; then the
 * value at a 16-byte aligned offset; then a tail that only the writer and
 * the reclaim callback use.  Nodes come from the state's arena (below), 64
 * octets aligned.  Keys are byte strings compared with memcmp:
 *   server: tenant id (4 octets, little-endian) + the FQDN in ASCII lower case;
 *   source: family (1 octet) + 4 or 16 address octets;
 *   tenant: tenant id (4 octets, little-endian). */

#define SERVER_KEY_MAX (4 + TES_FQDN_MAX - 1)
#define SOURCE_KEY_MAX 17

struct enode {
	uint32_t keylen;
	uint32_t voff;   /* value, from the start of the node */
	uint32_t toff;   /* tail */
	uint32_t aclass; /* arena size class; ARENA_BIG: from malloc */
	uint8_t key[];
};

struct arena;

struct enode_tail {
	struct rcu_head rcu;
	struct enode *node;
	struct arena *arena;
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

/* The reply texts of a throttle and a block for every minutes value a
 * stage can give (0..60), expanded once when the policy is published: a
 * verdict then costs a copy, not a template expansion (about 1.2 us per
 * refusal, docs/benchmarks.md).  decide is the policy with both templates
 * empty, which tes_decide expands to "" at no cost; the copy follows. */
#define REPLY_MINUTES_MAX 60

struct policy_snap {
	struct tes_policy pol;
	struct tes_policy decide;
	struct rcu_head rcu;
	uint16_t len[2][REPLY_MINUTES_MAX + 1]; /* [0] throttle, [1] block */
	char text[2][REPLY_MINUTES_MAX + 1][TES_REPLY_TEXT_MAX];
};

struct catalog_snap {
	struct catalog *cat;
	struct rcu_head rcu;
};

/* caa_container_of, through void * so that clang's -Wcast-align accepts it:
 * every node and snapshot comes from malloc or the arena, so the alignment
 * holds. */
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

static inline size_t align_up(size_t n, size_t a)
{
	return (n + a - 1) & ~(a - 1);
}

/* ---- memory on huge pages ----
 * A lookup of a cold key costs its cache misses and the page walks in front
 * of them; with 4 KiB pages a million nodes span 180 000 pages and nearly
 * every lookup also misses the TLB.  Bucket arrays and nodes therefore live
 * in 2 MiB-aligned mappings marked MADV_HUGEPAGE (transparent huge pages in
 * "madvise" mode or above; without THP they are ordinary pages and nothing
 * else changes). */
#define HUGE_SZ ((size_t)2 << 20)

/* len octets, zeroed, 2 MiB aligned; *maplen receives what to munmap and
 * *mapbase where.  NULL on failure. */
static void *huge_alloc(size_t len, void **mapbase, size_t *maplen)
{
	size_t want = align_up(len, HUGE_SZ) + HUGE_SZ;
	uint8_t *p = mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *a;

	if (p == MAP_FAILED)
		return NULL;
	a = (uint8_t *)align_up((uintptr_t)p, HUGE_SZ);
#ifdef MADV_HUGEPAGE
	(void)madvise(a, align_up(len, HUGE_SZ), MADV_HUGEPAGE);
#endif
	*mapbase = p;
	*maplen = want;
	return a;
}

/* The node arena: size classes of 64-octet granules up to 1 KiB carved from
 * 2 MiB chunks, with a free list per class.  The writer allocates; liburcu's
 * call_rcu thread frees (after the grace period), so the lists take a mutex;
 * readers never touch the arena.  Larger nodes (tenants with many
 * connectors) come from malloc.  Under AddressSanitizer and
 * ThreadSanitizer every node comes from malloc, so that the sanitizers
 * still see a node used after its free. */
#define ARENA_GRAIN 64
#define ARENA_CLASSES 16 /* 64 .. 1024 octets */
#define ARENA_BIG UINT32_MAX

#if defined(ENF_TSAN) || defined(__SANITIZE_ADDRESS__)
#define ARENA_MALLOC_ONLY 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ARENA_MALLOC_ONLY 1
#endif
#endif

struct arena_chunk {
	struct arena_chunk *next;
	void *base;
	size_t len;
};

struct arena {
	pthread_mutex_t mu;
	void *free[ARENA_CLASSES];
	uint8_t *cur, *end;
	struct arena_chunk *chunks;
};

static void *arena_alloc(struct arena *ar, size_t size, uint32_t *cls)
{
	size_t c = (size + ARENA_GRAIN - 1) / ARENA_GRAIN - 1;
	void *p;

#ifdef ARENA_MALLOC_ONLY
	c = ARENA_CLASSES;
#endif
	if (c >= ARENA_CLASSES) {
		*cls = ARENA_BIG;
		return aligned_alloc(ARENA_GRAIN, align_up(size, ARENA_GRAIN));
	}
	*cls = (uint32_t)c;
	size = (c + 1) * ARENA_GRAIN;
	pthread_mutex_lock(&ar->mu);
	p = ar->free[c];
	if (p != NULL) {
		ar->free[c] = *(void **)p;
	} else {
		if (ar->cur == NULL || (size_t)(ar->end - ar->cur) < size) {
			struct arena_chunk *ch = malloc(sizeof(*ch));
			uint8_t *a = ch ? huge_alloc(HUGE_SZ, &ch->base, &ch->len) : NULL;

			if (a == NULL) {
				free(ch);
				pthread_mutex_unlock(&ar->mu);
				return NULL;
			}
			/* The tail of the old chunk is left unused: at most
			 * 1 KiB in 2 MiB. */
			ch->next = ar->chunks;
			ar->chunks = ch;
			ar->cur = a;
			ar->end = a + HUGE_SZ;
		}
		p = ar->cur;
		ar->cur += size;
	}
	pthread_mutex_unlock(&ar->mu);
	return p;
}

static void arena_free(struct arena *ar, void *p, uint32_t cls)
{
	if (cls == ARENA_BIG) {
		free(p);
		return;
	}
	pthread_mutex_lock(&ar->mu);
	*(void **)p = ar->free[cls];
	ar->free[cls] = p;
	pthread_mutex_unlock(&ar->mu);
}

/* Every node must have been freed or be unreachable. */
static void arena_destroy(struct arena *ar)
{
	while (ar->chunks != NULL) {
		struct arena_chunk *ch = ar->chunks;

		ar->chunks = ch->next;
		munmap(ch->base, ch->len);
		free(ch);
	}
	pthread_mutex_destroy(&ar->mu);
}

/* ---- the tables ----
 * Open addressing over buckets of one cache line each: 7 slots of node
 * pointers plus a metadata word holding an 8-bit tag of each slot's hash
 * and an overflow flag.  A lookup hashes the key, loads its home bucket
 * (one line), compares the tags of all 7 slots at once and reads only the
 * nodes whose tag matches (one in 256 false matches per occupied slot), so
 * a hit costs the bucket line and the node's first line.  When a bucket is
 * full an insertion goes on to the next one and sets the overflow flag of
 * every full bucket it passed; a lookup goes on past a bucket only while
 * its flag is set.  Tables are sized to at most 4 entries per bucket of 7
 * (at the size hint, about 2), so nearly every lookup stays in its home
 * bucket.
 *
 * Concurrency: one writer, readers under QSBR.  A slot changes only by a
 * single pointer store: insert (tag first, then the pointer with release
 * order), replace (the new node with release order; the old one retired
 * after a grace period), delete (NULL).  A reader thus sees each slot
 * either before or after a change, and the key compare, not the tag,
 * decides a match, so a stale tag costs at most a skipped or an extra
 * compare, never a wrong answer.  An entry never moves while a table is
 * published: when it must grow (or too many overflow flags have built up
 * from deletions), the writer builds a new table beside it, publishes it by
 * pointer and retires the old one after a grace period.  Overflow flags are
 * set before the insertion that needs them and never cleared in a
 * published table. */
#define DT_SLOTS 7
#define DT_OVF ((uint64_t)1 << 56)

struct dbucket {
	uint64_t meta; /* byte i < 7: tag of slot i; bit 56: overflow */
	struct enode *slot[DT_SLOTS];
};

struct dtab {
	size_t mask; /* buckets - 1 */
	size_t used;
	size_t overflowed; /* buckets with the flag set */
	struct dbucket *b;
	void *mapbase;
	size_t maplen; /* 0: b from aligned_alloc */
	struct rcu_head rcu;
};

_Static_assert(sizeof(struct dbucket) == 64, "a bucket is one cache line");

enum { T_SERVERS, T_SOURCES, T_TENANTS, T_COUNT };

struct table {
	struct dtab *tab; /* RCU */
	size_t count;     /* written by the writer only, read relaxed by anyone */
	size_t min_buckets;
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
	struct arena arena;
};

static inline const void *node_val(const struct enode *n)
{
	return (const uint8_t *)n + n->voff;
}

static inline struct enode_tail *node_tail(struct enode *n)
{
	return (struct enode_tail *)(void *)((uint8_t *)n + n->toff);
}

static struct enode *node_new(struct enfstate *st, const uint8_t *key, size_t keylen,
			      const void *val, size_t vsize, uint64_t gen)
{
	size_t voff = align_up(offsetof(struct enode, key) + keylen, 16);
	size_t toff = align_up(voff + vsize, alignof(struct enode_tail));
	uint32_t cls;
	struct enode *n = arena_alloc(&st->arena, toff + sizeof(struct enode_tail), &cls);
	struct enode_tail *tail;

	if (n == NULL)
		return NULL;
	n->keylen = (uint32_t)keylen;
	n->voff = (uint32_t)voff;
	n->toff = (uint32_t)toff;
	n->aclass = cls;
	memcpy(n->key, key, keylen);
	memcpy((uint8_t *)n + voff, val, vsize);
	tail = node_tail(n);
	tail->node = n;
	tail->arena = &st->arena;
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
	arena_free(tail->arena, tail->node, tail->node->aclass);
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

static void dtab_free(struct dtab *d)
{
	if (d->maplen)
		munmap(d->mapbase, d->maplen);
	else
		free(d->b);
	free(d);
}

static void dtab_reclaim(struct rcu_head *head)
{
	reclaim_begin(head);
	dtab_free(container_of(head, struct dtab, rcu));
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

static inline uint64_t key_hash(const struct enfstate *st, const uint8_t *key, size_t len)
{
	return siphash13(&st->hkey, key, len);
}

/* The bucket from the low bits, the tag from the top 8 (independent bits of
 * one SipHash output). */
static inline uint8_t hash_tag(uint64_t h)
{
	return (uint8_t)(h >> 56);
}

static inline bool node_is(const struct enode *n, const uint8_t *key, size_t len)
{
	tsan_acquire(n);
	return n->keylen == len && memcmp(n->key, key, len) == 0;
}

/* Slots of bucket meta m whose tag is tag, one bit (bit 8*i+7) per slot
 * i; may include false matches above a true one, which the key compare
 * rejects. */
static inline uint64_t tag_matches(uint64_t m, uint8_t tag)
{
	const uint64_t lo = 0x0001010101010101ULL, hi = 0x0080808080808080ULL;
	uint64_t x = (m & 0x00ffffffffffffffULL) ^ (lo * tag);

	return (x - lo) & ~x & hi;
}

static inline uint64_t meta_load(const struct dbucket *b)
{
	return __atomic_load_n(&b->meta, __ATOMIC_RELAXED);
}

/* Inside a read-side section (or the writer): the node of key, valid until
 * the calling thread's next quiescent state; *pb and *pi (when not NULL)
 * receive where it is, for the writer. */
static const struct enode *dtab_find(const struct dtab *d, uint64_t h, const uint8_t *key,
				     size_t len, struct dbucket **pb, unsigned *pi)
{
	size_t i = h & d->mask;
	uint8_t tag = hash_tag(h);

	for (size_t probes = 0; probes <= d->mask; probes++) {
		struct dbucket *b = &d->b[i];
		uint64_t m = meta_load(b);

		for (uint64_t hits = tag_matches(m, tag); hits != 0; hits &= hits - 1) {
			unsigned s = (unsigned)__builtin_ctzll(hits) / 8;
			const struct enode *n = __atomic_load_n(&b->slot[s], __ATOMIC_ACQUIRE);

			if (n != NULL && node_is(n, key, len)) {
				if (pb != NULL) {
					*pb = b;
					*pi = s;
				}
				return n;
			}
		}
		if (!(m & DT_OVF))
			break;
		i = (i + 1) & d->mask;
	}
	return NULL;
}

static struct dtab *dtab_new(size_t buckets)
{
	struct dtab *d = calloc(1, sizeof(*d));
	size_t bytes = buckets * sizeof(struct dbucket);

	if (d == NULL)
		return NULL;
	d->mask = buckets - 1;
	if (bytes >= HUGE_SZ) {
		d->b = huge_alloc(bytes, &d->mapbase, &d->maplen);
	} else {
		d->b = aligned_alloc(64, bytes);
		if (d->b != NULL)
			memset(d->b, 0, bytes);
	}
	if (d->b == NULL) {
		free(d);
		return NULL;
	}
	return d;
}

/* Writer: place n (whose key is not in d) in the first free slot from its
 * home bucket on. */
static void dtab_place(struct dtab *d, uint64_t h, struct enode *n)
{
	size_t i = h & d->mask;

	for (;;) {
		struct dbucket *b = &d->b[i];
		uint64_t m = b->meta;

		for (unsigned s = 0; s < DT_SLOTS; s++) {
			if (b->slot[s] != NULL)
				continue;
			m &= ~((uint64_t)0xff << (8 * s));
			m |= (uint64_t)hash_tag(h) << (8 * s);
			__atomic_store_n(&b->meta, m, __ATOMIC_RELAXED);
			__atomic_store_n(&b->slot[s], n, __ATOMIC_RELEASE);
			d->used++;
			return;
		}
		if (!(m & DT_OVF)) {
			d->overflowed++;
			__atomic_store_n(&b->meta, m | DT_OVF, __ATOMIC_RELAXED);
		}
		i = (i + 1) & d->mask;
	}
}

static size_t pow2_at_least(size_t n)
{
	size_t p = 1;

	while (p < n && p < ((size_t)1 << 40))
		p <<= 1;
	return p;
}

/* Writer: make room for one more entry.  A table holds at most 4 entries
 * per bucket; past that, or when an eighth of the buckets carry overflow
 * flags (left by deletions), the entries move to a fresh table of the
 * right size, published whole.  -1 (ENOMEM) leaves the table as it was. */
static int tbl_reserve(struct enfstate *st, int t)
{
	struct dtab *old = st->t[t].tab, *d;
	size_t buckets = old->mask + 1;

	if (old->used + 1 <= 4 * buckets && old->overflowed <= buckets / 8)
		return 0;
	/* Sized for 2 per bucket after the move. */
	buckets = pow2_at_least((old->used + 1) / 2);
	if (buckets < st->t[t].min_buckets)
		buckets = st->t[t].min_buckets;
	d = dtab_new(buckets);
	if (d == NULL) {
		errno = ENOMEM;
		return -1;
	}
	for (size_t i = 0; i <= old->mask; i++) {
		for (unsigned s = 0; s < DT_SLOTS; s++) {
			struct enode *n = old->b[i].slot[s];

			if (n != NULL)
				dtab_place(d, key_hash(st, n->key, n->keylen), n);
		}
	}
	tsan_release(d);
	__atomic_store_n(&st->t[t].tab, d, __ATOMIC_RELEASE);
	retire(&old->rcu, dtab_reclaim);
	return 0;
}

static inline struct dtab *tab_in(struct enfstate *st, int t)
{
	struct dtab *d = __atomic_load_n(&st->t[t].tab, __ATOMIC_ACQUIRE);

	tsan_acquire(d);
	return d;
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
	return dtab_find(tab_in(st, t), key_hash(st, key, len), key, len, NULL, NULL);
}

static int tbl_put(struct enfstate *st, int t, const uint8_t *key, size_t len, const void *val,
		   size_t vsize)
{
	uint64_t h = key_hash(st, key, len);
	struct enode *n, *old;
	struct dbucket *b;
	unsigned s;

	n = node_new(st, key, len, val, vsize, st->sync_gen);
	if (n == NULL) {
		errno = ENOMEM;
		return -1;
	}
	tsan_release(n);
	old = (struct enode *)dtab_find(st->t[t].tab, h, key, len, &b, &s);
	if (old != NULL) {
		__atomic_store_n(&b->slot[s], n, __ATOMIC_RELEASE);
		retire(&node_tail(old)->rcu, node_reclaim);
		return 1;
	}
	if (tbl_reserve(st, t) < 0) {
		arena_free(&st->arena, n, n->aclass);
		return -1;
	}
	dtab_place(st->t[t].tab, h, n);
	count_add(&st->t[t].count, 1);
	return 0;
}

/* Writer: empty slot s of b, whose node n goes after a grace period. */
static void tbl_unlink(struct enfstate *st, int t, struct dbucket *b, unsigned s, struct enode *n)
{
	__atomic_store_n(&b->slot[s], NULL, __ATOMIC_RELAXED);
	st->t[t].tab->used--;
	retire(&node_tail(n)->rcu, node_reclaim);
	count_add(&st->t[t].count, -1);
}

static bool tbl_del(struct enfstate *st, int t, const uint8_t *key, size_t len)
{
	struct dbucket *b;
	unsigned s;
	struct enode *n =
		(struct enode *)dtab_find(st->t[t].tab, key_hash(st, key, len), key, len, &b, &s);

	if (n == NULL)
		return false;
	tbl_unlink(st, t, b, s, n);
	return true;
}

/* Iterate over the entries of table t as published now (a reader in its
 * read-side section, or the writer, which may delete the entry it is at). */
#define tbl_for_each(d, i, s, n)                                                                 \
	for ((i) = 0; (i) <= (d)->mask; (i)++)                                                   \
		for ((s) = 0; (s) < DT_SLOTS; (s)++)                                             \
			if (((n) = __atomic_load_n(&(d)->b[(i)].slot[(s)], __ATOMIC_ACQUIRE)) != \
				    NULL &&                                                      \
			    (tsan_acquire(n), true))

/* Delete every node whose generation is not gen (all of them when gen is
 * UINT64_MAX, which no put uses). */
static size_t tbl_sweep(struct enfstate *st, int t, uint64_t gen)
{
	struct dtab *d = st->t[t].tab;
	struct enode *n;
	size_t i, k = 0;
	unsigned s;

	tbl_for_each(d, i, s, n)
	{
		if (node_tail(n)->gen == gen)
			continue;
		tbl_unlink(st, t, &d->b[i], s, n);
		k++;
	}
	return k;
}

/* ---- policy snapshots ---- */

/* A snapshot of pol (the built-in default when NULL) with its reply texts
 * expanded, not yet published; NULL (ENOMEM). */
static struct policy_snap *policy_snap_new(const struct tes_policy *pol)
{
	struct policy_snap *snap = malloc(sizeof(*snap));

	if (snap == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	if (pol != NULL)
		snap->pol = *pol;
	else
		tes_policy_default(&snap->pol);
	snap->decide = snap->pol;
	snap->decide.throttle_text[0] = '\0';
	snap->decide.block_text[0] = '\0';
	for (unsigned k = 0; k < 2; k++) {
		for (unsigned m = 0; m <= REPLY_MINUTES_MAX; m++) {
			char *t = snap->text[k][m];

			/* The same expansion tes_decide makes, truncation
			 * included. */
			(void)tes_reply_expand(k ? snap->pol.block_text : snap->pol.throttle_text,
					       snap->pol.product, m, t, TES_REPLY_TEXT_MAX);
			snap->len[k][m] = (uint16_t)strlen(t);
		}
	}
	return snap;
}

/* ---- lifetime ---- */

struct enfstate *enfstate_new(const struct tes_policy *pol, size_t size_hint)
{
	struct enfstate *st = calloc(1, sizeof(*st));
	size_t hint = size_hint ? size_hint : 1024;
	int i;

	if (st == NULL)
		return NULL;
	if (siphash_key_random(&st->hkey) != 0) {
		free(st);
		return NULL;
	}
	pthread_mutex_init(&st->arena.mu, NULL);
	/* Servers and sources come in similar numbers, about 2 per bucket at
	 * the hint; tenants are few. */
	st->t[T_SERVERS].min_buckets = pow2_at_least((hint + 1) / 2);
	st->t[T_SOURCES].min_buckets = st->t[T_SERVERS].min_buckets;
	st->t[T_TENANTS].min_buckets = 16;
	st->policy = policy_snap_new(pol);
	if (st->policy == NULL)
		goto fail;
	st->policy_gen = 1;
	for (i = 0; i < T_COUNT; i++) {
		st->t[i].tab = dtab_new(st->t[i].min_buckets);
		if (st->t[i].tab == NULL)
			goto fail;
	}
	return st;
fail:
	for (i = 0; i < T_COUNT; i++)
		if (st->t[i].tab != NULL)
			dtab_free(st->t[i].tab);
	free(st->policy);
	pthread_mutex_destroy(&st->arena.mu);
	free(st);
	errno = ENOMEM;
	return NULL;
}

void enfstate_free(struct enfstate *st)
{
	int i;

	if (st == NULL)
		return;
	for (i = 0; i < T_COUNT; i++) {
		tbl_sweep(st, i, UINT64_MAX);
		retire(&st->t[i].tab->rcu, dtab_reclaim);
	}
	retire(&st->policy->rcu, policy_reclaim);
	if (st->catalog != NULL)
		retire(&st->catalog->rcu, catalog_reclaim);
	/* Every node, table and snapshot retired above is freed before this
	 * returns (the nodes into the arena, which goes after them), so the
	 * process can exit clean under LeakSanitizer.  rcu_barrier goes
	 * offline by itself while it waits. */
	rcu_barrier();
	arena_destroy(&st->arena);
	free(st);
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
	struct dtab *d = st->t[T_TENANTS].tab;
	struct enode *n;
	bool any = false;
	size_t i;
	unsigned s;

	tbl_for_each(d, i, s, n)
	{
		const struct tes_tenant *t = node_val(n);

		any = any || t->at_server_cap;
	}
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
	struct policy_snap *snap = policy_snap_new(pol), *old;

	if (snap == NULL)
		return -1;
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
	struct dtab *d = st->t[T_SERVERS].tab;
	struct enode *node;
	size_t i, n = 0;
	unsigned s;

	/* index_update changes only the sources table, so this one stays as
	 * it is (no rebuild) while it is walked. */
	tbl_for_each(d, i, s, node)
	{
		struct tes_server gone;

		if (node_tail(node)->gen == gen)
			continue;
		gone = *(const struct tes_server *)node_val(node);
		tbl_unlink(st, T_SERVERS, &d->b[i], s, node);
		n++;
		index_update(st, &gone, NULL);
	}
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

static inline const struct policy_snap *snap_in(struct enfstate *st)
{
	struct policy_snap *snap = rcu_dereference(st->policy);

	tsan_acquire(snap);
	return snap;
}

static inline const struct tes_policy *policy_in(struct enfstate *st)
{
	return &snap_in(st)->pol;
}

/* The reply text of a refusal tes_decide made on snap->decide, which has
 * empty templates: copied from those expanded with the snapshot. */
static inline void reply_text(const struct policy_snap *snap, struct tes_verdict *v)
{
	unsigned k = v->action == TES_THROTTLE ? 0 : 1;

	if (v->action == TES_ACCEPT)
		return;
	if (v->minutes <= REPLY_MINUTES_MAX)
		memcpy(v->text, snap->text[k][v->minutes], snap->len[k][v->minutes] + 1u);
	else
		(void)tes_reply_expand(k ? snap->pol.block_text : snap->pol.throttle_text,
				       snap->pol.product, v->minutes, v->text, sizeof(v->text));
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

/* ---- bursts ---- */

struct burst_key {
	uint64_t h;
	size_t len;
	uint8_t kb[SERVER_KEY_MAX];
};

/* Prefetch the home bucket of every key, then, once those are on their
 * way, the first lines of the nodes whose tags match (vsize octets of value
 * after the key), so the lookups that follow find them in cache. */
static void burst_prefetch(struct enfstate *st, int t, struct burst_key *k, unsigned n,
			   size_t vsize)
{
	const struct dtab *d = tab_in(st, t);

	for (unsigned i = 0; i < n; i++)
		__builtin_prefetch(&d->b[k[i].h & d->mask]);
	for (unsigned i = 0; i < n; i++) {
		const struct dbucket *b = &d->b[k[i].h & d->mask];
		uint64_t hits = tag_matches(meta_load(b), hash_tag(k[i].h));

		if (k[i].len == 0 || hits == 0)
			continue;
		{
			const uint8_t *node = (const uint8_t *)__atomic_load_n(
				&b->slot[__builtin_ctzll(hits) / 8], __ATOMIC_ACQUIRE);
			size_t end = align_up(offsetof(struct enode, key) + k[i].len, 16) + vsize;

			if (node == NULL)
				continue;
			for (size_t o = 0; o < end; o += 64)
				__builtin_prefetch(node + o);
		}
	}
}

void enfstate_lookup_server_burst(struct enfstate *st, unsigned n, const uint32_t *tenant_id,
				  const char *const *fqdn, struct tes_server *out, bool *found)
{
	struct burst_key k[ENFSTATE_BURST_MAX];

	if (n > ENFSTATE_BURST_MAX)
		n = ENFSTATE_BURST_MAX;
	rcu_read_lock();
	for (unsigned i = 0; i < n; i++) {
		k[i].len = server_key(k[i].kb, tenant_id[i], fqdn[i]);
		k[i].h = k[i].len ? key_hash(st, k[i].kb, k[i].len) : 0;
	}
	burst_prefetch(st, T_SERVERS, k, n, sizeof(struct tes_server));
	for (unsigned i = 0; i < n; i++) {
		const struct enode *node = k[i].len ? dtab_find(tab_in(st, T_SERVERS), k[i].h,
								k[i].kb, k[i].len, NULL, NULL)
						    : NULL;

		found[i] = node != NULL;
		if (node != NULL)
			out[i] = *(const struct tes_server *)node_val(node);
	}
	rcu_read_unlock();
}

void enfstate_source_drop_burst(struct enfstate *st, unsigned n, const struct tes_addr *const *src,
				int64_t now, bool *drop)
{
	struct burst_key k[ENFSTATE_BURST_MAX];

	if (n > ENFSTATE_BURST_MAX)
		n = ENFSTATE_BURST_MAX;
	rcu_read_lock();
	for (unsigned i = 0; i < n; i++) {
		k[i].len = source_key(k[i].kb, src[i]);
		k[i].h = k[i].len ? key_hash(st, k[i].kb, k[i].len) : 0;
	}
	/* The value's head: shared_until, the count and the first entries. */
	burst_prefetch(st, T_SOURCES, k, n, sizeof(struct source_val) + sizeof(struct source_ent));
	rcu_read_unlock();
	/* Each decides in its own read-side section, as the single call. */
	for (unsigned i = 0; i < n; i++)
		drop[i] = enfstate_source_drop(st, src[i], now);
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
	const struct policy_snap *snap;

	rcu_read_lock();
	snap = snap_in(st);
	tes_decide(server_in(st, tenant_id, fqdn), tenant_in(st, tenant_id), &snap->decide, now,
		   src, d, via_connector, out);
	reply_text(snap, out);
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
	struct dtab *d;
	struct enode *n;
	bool found = false;
	uint32_t best = 0;
	size_t i;
	unsigned s;

	rcu_read_lock();
	d = tab_in(st, T_TENANTS);
	tbl_for_each(d, i, s, n)
	{
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
