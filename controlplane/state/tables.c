/* SPDX-License-Identifier: BSD-3-Clause */
#include "controlplane/state/tables.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "base/siphash.h"

void cp_fqdn_key(const char *fqdn, char *buf)
{
	size_t i;

	for (i = 0; fqdn[i] && i < TES_FQDN_MAX - 1; i++)
		buf[i] = (char)tolower((unsigned char)fqdn[i]);
	buf[i] = '\0';
}

static uint64_t hash_of(const struct cp_tables *st, uint32_t tenant_id, const char *fqdn)
{
	uint8_t buf[4 + TES_FQDN_MAX];
	size_t n;

	buf[0] = (uint8_t)tenant_id;
	buf[1] = (uint8_t)(tenant_id >> 8);
	buf[2] = (uint8_t)(tenant_id >> 16);
	buf[3] = (uint8_t)(tenant_id >> 24);
	cp_fqdn_key(fqdn, (char *)buf + 4);
	n = 4 + strlen((char *)buf + 4);
	const struct siphash_key key = { st->seed[0], st->seed[1] };
	return siphash24(&key, buf, n);
}

/* ---- set-up ---- */

int cp_tables_init(struct cp_tables *st)
{
	memset(st, 0, sizeof(*st));
	if (getrandom(st->seed, sizeof(st->seed), 0) != sizeof(st->seed)) {
		/* No entropy (an old kernel): a guessable seed still works,
		 * only without the flooding protection. */
		st->seed[0] = (uint64_t)time(NULL);
		st->seed[1] = (uint64_t)(uintptr_t)st;
	}
	st->nbuckets = 1024;
	st->buckets = malloc(st->nbuckets * sizeof(*st->buckets));
	st->nprefix_buckets = 256;
	st->prefix_buckets = malloc(st->nprefix_buckets * sizeof(*st->prefix_buckets));
	if (!st->buckets || !st->prefix_buckets)
		return -1;
	memset(st->buckets, 0xff, st->nbuckets * sizeof(*st->buckets));
	memset(st->prefix_buckets, 0xff, st->nprefix_buckets * sizeof(*st->prefix_buckets));
	st->lru_head = st->lru_tail = CP_NO_SLOT;
	st->prefix_v4 = 24;
	st->prefix_v6 = 48;
	return 0;
}

void cp_tables_free(struct cp_tables *st)
{
	free(st->srv);
	free(st->freelist);
	free(st->buckets);
	free(st->tenants);
	free(st->heap);
	free(st->dirty);
	free(st->prefixes);
	free(st->prefix_free);
	free(st->prefix_buckets);
	free(st->tcounts);
	free(st->pending_del);
	memset(st, 0, sizeof(*st));
}

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
	size_t ncap;
	void *np;

	if (need <= *cap)
		return true;
	ncap = *cap ? *cap * 2 : 64;
	while (ncap < need)
		ncap *= 2;
	np = realloc(*p, ncap * elem);
	if (!np)
		return false;
	*p = np;
	*cap = ncap;
	return true;
}

/* ---- tenants: a sorted array (there are few, and they change rarely) ---- */

static size_t tenant_pos(const struct cp_tables *st, uint32_t id)
{
	size_t lo = 0, hi = st->ntenants;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (st->tenants[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct tes_tenant *cp_tenant_find(struct cp_tables *st, uint32_t id)
{
	size_t i = tenant_pos(st, id);

	return i < st->ntenants && st->tenants[i].id == id ? &st->tenants[i] : NULL;
}

int cp_tenant_put(struct cp_tables *st, const struct tes_tenant *t)
{
	size_t i = tenant_pos(st, t->id);

	if (i < st->ntenants && st->tenants[i].id == t->id) {
		st->tenants[i] = *t;
		return 0;
	}
	if (!grow((void **)&st->tenants, &st->captenants, st->ntenants + 1, sizeof(*t)))
		return -1;
	memmove(&st->tenants[i + 1], &st->tenants[i], (st->ntenants - i) * sizeof(*t));
	st->tenants[i] = *t;
	st->ntenants++;
	return 0;
}

void cp_tenant_delete(struct cp_tables *st, uint32_t id)
{
	size_t i = tenant_pos(st, id);

	if (i < st->ntenants && st->tenants[i].id == id) {
		memmove(&st->tenants[i], &st->tenants[i + 1],
			(st->ntenants - i - 1) * sizeof(st->tenants[0]));
		st->ntenants--;
	}
}

/* ---- servers per tenant ---- */

static struct cp_tenant_count *tcount_slot(struct cp_tables *st, uint32_t id, bool add)
{
	uint32_t mask, i;

	if (add && (st->ntcounts + 1) * 2 > st->captcounts) {
		uint32_t ncap = st->captcounts ? st->captcounts * 2 : 16;
		struct cp_tenant_count *n = calloc(ncap, sizeof(*n));

		if (!n)
			return NULL;
		for (uint32_t k = 0; k < st->captcounts; k++) {
			if (!st->tcounts[k].used)
				continue;
			for (i = (st->tcounts[k].id * 2654435761u) & (ncap - 1); n[i].used;
			     i = (i + 1) & (ncap - 1))
				;
			n[i] = st->tcounts[k];
		}
		free(st->tcounts);
		st->tcounts = n;
		st->captcounts = ncap;
	}
	if (!st->captcounts)
		return NULL;
	mask = st->captcounts - 1;
	for (i = (id * 2654435761u) & mask; st->tcounts[i].used; i = (i + 1) & mask) {
		if (st->tcounts[i].id == id)
			return &st->tcounts[i];
	}
	if (!add)
		return NULL;
	st->tcounts[i].used = true;
	st->tcounts[i].id = id;
	st->tcounts[i].n = 0;
	st->ntcounts++;
	return &st->tcounts[i];
}

uint32_t cp_tenant_servers(const struct cp_tables *st, uint32_t tenant_id)
{
	struct cp_tenant_count *c = tcount_slot((struct cp_tables *)st, tenant_id, false);

	return c ? c->n : 0;
}

/* ---- tenant 0: prefixes and least-recently-seen lists ---- */

static struct tes_addr prefix_of(const struct cp_tables *st, const struct tes_addr *src)
{
	struct tes_addr net;
	unsigned bits;

	memset(&net, 0, sizeof(net));
	if (!src || (src->family != TES_ADDR_V4 && src->family != TES_ADDR_V6))
		return net;
	net.family = src->family;
	bits = src->family == TES_ADDR_V4 ? st->prefix_v4 : st->prefix_v6;
	for (unsigned i = 0; i < bits / 8; i++)
		net.a[i] = src->a[i];
	if (bits % 8)
		net.a[bits / 8] = (uint8_t)(src->a[bits / 8] & (0xff << (8 - bits % 8)));
	return net;
}

static uint32_t prefix_bucket(const struct cp_tables *st, const struct tes_addr *net)
{
	const struct siphash_key key = { st->seed[1], st->seed[0] };

	return (uint32_t)(siphash24(&key, net, sizeof(*net)) & (st->nprefix_buckets - 1));
}

static uint32_t prefix_find(const struct cp_tables *st, const struct tes_addr *net)
{
	for (uint32_t i = st->prefix_buckets[prefix_bucket(st, net)]; i != CP_NO_SLOT;
	     i = st->prefixes[i].hnext) {
		if (memcmp(&st->prefixes[i].net, net, sizeof(*net)) == 0)
			return i;
	}
	return CP_NO_SLOT;
}

static uint32_t prefix_get(struct cp_tables *st, const struct tes_addr *net)
{
	uint32_t i = prefix_find(st, net), b;

	if (i != CP_NO_SLOT)
		return i;
	if (st->nprefix_free) {
		i = st->prefix_free[--st->nprefix_free];
	} else {
		size_t cap = st->capprefixes;

		if (!grow((void **)&st->prefixes, &cap, (size_t)st->nprefixes + 1,
			  sizeof(*st->prefixes)))
			return CP_NO_SLOT;
		st->capprefixes = (uint32_t)cap;
		i = st->nprefixes++;
	}
	memset(&st->prefixes[i], 0, sizeof(st->prefixes[i]));
	st->prefixes[i].net = *net;
	st->prefixes[i].head = st->prefixes[i].tail = CP_NO_SLOT;
	st->prefixes[i].live = true;
	b = prefix_bucket(st, net);
	st->prefixes[i].hnext = st->prefix_buckets[b];
	st->prefix_buckets[b] = i;
	return i;
}

static void prefix_put(struct cp_tables *st, uint32_t i)
{
	struct cp_prefix *p = &st->prefixes[i];
	uint32_t *pp;

	if (p->count)
		return;
	for (pp = &st->prefix_buckets[prefix_bucket(st, &p->net)]; *pp != CP_NO_SLOT;
	     pp = &st->prefixes[*pp].hnext) {
		if (*pp == i) {
			*pp = p->hnext;
			break;
		}
	}
	p->live = false;
	{
		size_t cap = st->capprefix_free;

		/* Without memory for the free list the entry is merely never
		 * reused. */
		if (grow((void **)&st->prefix_free, &cap, (size_t)st->nprefix_free + 1,
			 sizeof(uint32_t))) {
			st->capprefix_free = (uint32_t)cap;
			st->prefix_free[st->nprefix_free++] = i;
		}
	}
}

static void lru_unlink(struct cp_tables *st, uint32_t slot)
{
	struct cp_server *c = &st->srv[slot];
	struct cp_prefix *p = &st->prefixes[c->prefix];

	if (c->lru_prev != CP_NO_SLOT)
		st->srv[c->lru_prev].lru_next = c->lru_next;
	else
		st->lru_head = c->lru_next;
	if (c->lru_next != CP_NO_SLOT)
		st->srv[c->lru_next].lru_prev = c->lru_prev;
	else
		st->lru_tail = c->lru_prev;
	if (c->plru_prev != CP_NO_SLOT)
		st->srv[c->plru_prev].plru_next = c->plru_next;
	else
		p->head = c->plru_next;
	if (c->plru_next != CP_NO_SLOT)
		st->srv[c->plru_next].plru_prev = c->plru_prev;
	else
		p->tail = c->plru_prev;
	c->lru_prev = c->lru_next = c->plru_prev = c->plru_next = CP_NO_SLOT;
}

static void lru_push_head(struct cp_tables *st, uint32_t slot)
{
	struct cp_server *c = &st->srv[slot];
	struct cp_prefix *p = &st->prefixes[c->prefix];

	c->lru_prev = CP_NO_SLOT;
	c->lru_next = st->lru_head;
	if (st->lru_head != CP_NO_SLOT)
		st->srv[st->lru_head].lru_prev = slot;
	else
		st->lru_tail = slot;
	st->lru_head = slot;
	c->plru_prev = CP_NO_SLOT;
	c->plru_next = p->head;
	if (p->head != CP_NO_SLOT)
		st->srv[p->head].plru_prev = slot;
	else
		p->tail = slot;
	p->head = slot;
}

/* A new tenant-0 server joins its prefix as the most recently seen; false
 * without memory for a new prefix (then it is not in the lists). */
static bool untrusted_link(struct cp_tables *st, uint32_t slot)
{
	struct cp_server *c = &st->srv[slot];
	struct tes_addr net = prefix_of(st, c->v.s.nsources ? &c->v.s.sources[0] : NULL);
	uint32_t p = prefix_get(st, &net);

	c->prefix = p;
	if (p == CP_NO_SLOT)
		return false;
	st->prefixes[p].count++;
	st->nuntrusted++;
	lru_push_head(st, slot);
	return true;
}

static void untrusted_unlink(struct cp_tables *st, uint32_t slot)
{
	struct cp_server *c = &st->srv[slot];
	uint32_t p = c->prefix;

	if (p == CP_NO_SLOT)
		return;
	lru_unlink(st, slot);
	st->prefixes[p].count--;
	st->nuntrusted--;
	prefix_put(st, p);
	c->prefix = CP_NO_SLOT;
}

void cp_untrusted_prefixes(struct cp_tables *st, unsigned v4, unsigned v6)
{
	st->prefix_v4 = (uint8_t)(v4 <= 32 ? v4 : 32);
	st->prefix_v6 = (uint8_t)(v6 <= 128 ? v6 : 128);
}

void cp_untrusted_touch(struct cp_tables *st, uint32_t slot)
{
	struct cp_server *c = cp_server_at(st, slot);

	if (!c || c->v.s.tenant_id != 0 || c->prefix == CP_NO_SLOT)
		return;
	lru_unlink(st, slot);
	lru_push_head(st, slot);
}

uint32_t cp_untrusted_oldest(const struct cp_tables *st, uint32_t *count)
{
	if (count)
		*count = st->nuntrusted;
	return st->lru_tail;
}

uint32_t cp_untrusted_oldest_in(const struct cp_tables *st, const struct tes_addr *src,
				uint32_t *count)
{
	struct tes_addr net = prefix_of(st, src);
	uint32_t p = prefix_find(st, &net);

	if (count)
		*count = p == CP_NO_SLOT ? 0 : st->prefixes[p].count;
	return p == CP_NO_SLOT ? CP_NO_SLOT : st->prefixes[p].tail;
}

static int cmp_seen(const void *a, const void *b, void *ctx)
{
	const struct cp_tables *st = ctx;
	int64_t x = st->srv[*(const uint32_t *)a].v.s.last_seen;
	int64_t y = st->srv[*(const uint32_t *)b].v.s.last_seen;

	return x < y ? -1 : x > y;
}

void cp_untrusted_rebuild(struct cp_tables *st)
{
	uint32_t *slots = malloc(((size_t)st->nuntrusted + 1) * sizeof(*slots));
	uint32_t n = 0;

	if (!slots)
		return; /* the insertion order stands in for it */
	for (uint32_t i = st->lru_head; i != CP_NO_SLOT && n < st->nuntrusted;
	     i = st->srv[i].lru_next)
		slots[n++] = i;
	qsort_r(slots, n, sizeof(*slots), cmp_seen, st);
	/* oldest first, each pushed to the head: the newest ends up there */
	for (uint32_t i = 0; i < n; i++) {
		lru_unlink(st, slots[i]);
		lru_push_head(st, slots[i]);
	}
	free(slots);
}

int cp_pending_delete(struct cp_tables *st, uint32_t tenant_id, const char *fqdn)
{
	struct cp_pending_delete *d;

	if (!grow((void **)&st->pending_del, &st->cappending_del, st->npending_del + 1,
		  sizeof(*st->pending_del)))
		return -1;
	d = &st->pending_del[st->npending_del++];
	d->tenant_id = tenant_id;
	snprintf(d->fqdn, sizeof(d->fqdn), "%s", fqdn);
	return 0;
}

/* ---- servers ---- */

uint32_t cp_server_find(struct cp_tables *st, uint32_t tenant_id, const char *fqdn)
{
	uint32_t b = (uint32_t)(hash_of(st, tenant_id, fqdn) & (st->nbuckets - 1));

	for (uint32_t i = st->buckets[b]; i != CP_NO_SLOT; i = st->srv[i].hnext) {
		const struct tes_server *s = &st->srv[i].v.s;

		if (s->tenant_id == tenant_id && strcasecmp(s->fqdn, fqdn) == 0)
			return i;
	}
	return CP_NO_SLOT;
}

static void link_slot(struct cp_tables *st, uint32_t slot)
{
	const struct tes_server *s = &st->srv[slot].v.s;
	uint32_t b = (uint32_t)(hash_of(st, s->tenant_id, s->fqdn) & (st->nbuckets - 1));

	st->srv[slot].hnext = st->buckets[b];
	st->buckets[b] = slot;
}

static int rehash(struct cp_tables *st, uint32_t nbuckets)
{
	uint32_t *nb = malloc((size_t)nbuckets * sizeof(*nb));

	if (!nb)
		return -1;
	memset(nb, 0xff, (size_t)nbuckets * sizeof(*nb));
	free(st->buckets);
	st->buckets = nb;
	st->nbuckets = nbuckets;
	for (uint32_t i = 0; i < st->nslots; i++) {
		if (st->srv[i].live)
			link_slot(st, i);
	}
	return 0;
}

uint32_t cp_server_add(struct cp_tables *st, const struct store_server *v)
{
	struct cp_tenant_count *tc = tcount_slot(st, v->s.tenant_id, true);
	uint32_t slot;

	if (!tc)
		return CP_NO_SLOT;

	if (st->nlive + 1 > st->nbuckets && st->nbuckets < (1u << 30))
		rehash(st, st->nbuckets * 2); /* on failure, chains just get longer */
	if (st->nfree) {
		slot = st->freelist[--st->nfree];
	} else {
		size_t cap = st->capslots;

		if (st->nslots == CP_NO_SLOT - 1)
			return CP_NO_SLOT;
		if (!grow((void **)&st->srv, &cap, (size_t)st->nslots + 1, sizeof(*st->srv)))
			return CP_NO_SLOT;
		st->capslots = (uint32_t)cap;
		slot = st->nslots++;
	}
	memset(&st->srv[slot], 0, sizeof(st->srv[slot]));
	st->srv[slot].v = *v;
	st->srv[slot].live = true;
	st->srv[slot].next_change = INT64_MAX;
	st->srv[slot].lru_prev = st->srv[slot].lru_next = CP_NO_SLOT;
	st->srv[slot].plru_prev = st->srv[slot].plru_next = CP_NO_SLOT;
	st->srv[slot].prefix = CP_NO_SLOT;
	link_slot(st, slot);
	st->nlive++;
	tc->n++;
	if (v->s.tenant_id == 0)
		untrusted_link(st, slot);
	return slot;
}

void cp_server_delete(struct cp_tables *st, uint32_t slot)
{
	struct cp_server *c = cp_server_at(st, slot);
	uint32_t b, *pp;

	if (!c)
		return;
	b = (uint32_t)(hash_of(st, c->v.s.tenant_id, c->v.s.fqdn) & (st->nbuckets - 1));
	for (pp = &st->buckets[b]; *pp != CP_NO_SLOT; pp = &st->srv[*pp].hnext) {
		if (*pp == slot) {
			*pp = c->hnext;
			break;
		}
	}
	if (c->v.s.tenant_id == 0)
		untrusted_unlink(st, slot);
	{
		struct cp_tenant_count *tc = tcount_slot(st, c->v.s.tenant_id, false);

		if (tc && tc->n)
			tc->n--;
	}
	c->live = false;
	c->dirty = false;
	c->next_change = INT64_MAX;
	st->nlive--;
	/* Without memory for the free list the slot is merely never reused. */
	if (grow((void **)&st->freelist, &st->capfree, (size_t)st->nfree + 1, sizeof(uint32_t)))
		st->freelist[st->nfree++] = slot;
}

void cp_server_mark_dirty(struct cp_tables *st, uint32_t slot)
{
	struct cp_server *c = cp_server_at(st, slot);

	if (!c || c->dirty)
		return;
	if (!grow((void **)&st->dirty, &st->capdirty, st->ndirty + 1, sizeof(uint32_t)))
		return; /* stays clean in memory: written with its next durable change */
	c->dirty = true;
	st->dirty[st->ndirty++] = slot;
}

/* ---- escalation queue: a binary min-heap with lazy deletion ----
 * An entry is current only while its slot is live and still has that due
 * time; anything else is skipped when it reaches the top. */

static bool current(const struct cp_tables *st, const struct cp_heap_entry *e)
{
	return e->slot < st->nslots && st->srv[e->slot].live &&
	       st->srv[e->slot].next_change == e->due;
}

static void sift_up(struct cp_tables *st, size_t i)
{
	struct cp_heap_entry e = st->heap[i];

	while (i > 0) {
		size_t p = (i - 1) / 2;

		if (st->heap[p].due <= e.due)
			break;
		st->heap[i] = st->heap[p];
		i = p;
	}
	st->heap[i] = e;
}

static void sift_down(struct cp_tables *st, size_t i)
{
	struct cp_heap_entry e = st->heap[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= st->nheap)
			break;
		if (c + 1 < st->nheap && st->heap[c + 1].due < st->heap[c].due)
			c++;
		if (e.due <= st->heap[c].due)
			break;
		st->heap[i] = st->heap[c];
		i = c;
	}
	st->heap[i] = e;
}

static void heap_pop(struct cp_tables *st)
{
	st->heap[0] = st->heap[--st->nheap];
	if (st->nheap)
		sift_down(st, 0);
}

/* Drop stale entries when they outnumber the live ones, so the heap stays
 * proportional to the servers however often they are rescheduled. */
static void compact(struct cp_tables *st)
{
	size_t n = 0;

	for (size_t i = 0; i < st->nheap; i++) {
		if (current(st, &st->heap[i]))
			st->heap[n++] = st->heap[i];
	}
	st->nheap = n;
	for (size_t i = n / 2; i-- > 0;)
		sift_down(st, i);
}

void cp_sched_set(struct cp_tables *st, uint32_t slot, int64_t due)
{
	struct cp_server *c = cp_server_at(st, slot);

	if (!c)
		return;
	c->next_change = due;
	if (due == INT64_MAX)
		return;
	if (st->nheap > 2 * (size_t)st->nlive + 1024)
		compact(st);
	if (!grow((void **)&st->heap, &st->capheap, st->nheap + 1, sizeof(*st->heap))) {
		/* Without memory for the entry the change is still found:
		 * every evaluation recomputes from the model. */
		c->next_change = INT64_MAX;
		return;
	}
	st->heap[st->nheap].due = due;
	st->heap[st->nheap].slot = slot;
	sift_up(st, st->nheap++);
}

int64_t cp_sched_peek(struct cp_tables *st)
{
	while (st->nheap && !current(st, &st->heap[0]))
		heap_pop(st);
	return st->nheap ? st->heap[0].due : INT64_MAX;
}

uint32_t cp_sched_pop_due(struct cp_tables *st, int64_t now)
{
	uint32_t slot;

	if (cp_sched_peek(st) > now)
		return CP_NO_SLOT;
	slot = st->heap[0].slot;
	heap_pop(st);
	st->srv[slot].next_change = INT64_MAX;
	return slot;
}

void cp_sched_clear(struct cp_tables *st)
{
	st->nheap = 0;
	for (uint32_t i = 0; i < st->nslots; i++)
		st->srv[i].next_change = INT64_MAX;
}
