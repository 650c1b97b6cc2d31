/* SPDX-License-Identifier: BSD-3-Clause */
#include "controlplane/state.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "enforce/siphash.h"

void cp_fqdn_key(const char *fqdn, char *buf)
{
	size_t i;

	for (i = 0; fqdn[i] && i < TES_FQDN_MAX - 1; i++)
		buf[i] = (char)tolower((unsigned char)fqdn[i]);
	buf[i] = '\0';
}

static uint64_t hash_of(const struct cp_state *st, uint32_t tenant_id, const char *fqdn)
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

int cp_state_init(struct cp_state *st)
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
	if (!st->buckets)
		return -1;
	memset(st->buckets, 0xff, st->nbuckets * sizeof(*st->buckets));
	return 0;
}

void cp_state_free(struct cp_state *st)
{
	free(st->srv);
	free(st->freelist);
	free(st->buckets);
	free(st->tenants);
	free(st->heap);
	free(st->dirty);
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

static size_t tenant_pos(const struct cp_state *st, uint32_t id)
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

struct tes_tenant *cp_tenant_find(struct cp_state *st, uint32_t id)
{
	size_t i = tenant_pos(st, id);

	return i < st->ntenants && st->tenants[i].id == id ? &st->tenants[i] : NULL;
}

int cp_tenant_put(struct cp_state *st, const struct tes_tenant *t)
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

void cp_tenant_delete(struct cp_state *st, uint32_t id)
{
	size_t i = tenant_pos(st, id);

	if (i < st->ntenants && st->tenants[i].id == id) {
		memmove(&st->tenants[i], &st->tenants[i + 1],
			(st->ntenants - i - 1) * sizeof(st->tenants[0]));
		st->ntenants--;
	}
}

/* ---- servers ---- */

uint32_t cp_server_find(struct cp_state *st, uint32_t tenant_id, const char *fqdn)
{
	uint32_t b = (uint32_t)(hash_of(st, tenant_id, fqdn) & (st->nbuckets - 1));

	for (uint32_t i = st->buckets[b]; i != CP_NO_SLOT; i = st->srv[i].hnext) {
		const struct tes_server *s = &st->srv[i].v.s;

		if (s->tenant_id == tenant_id && strcasecmp(s->fqdn, fqdn) == 0)
			return i;
	}
	return CP_NO_SLOT;
}

static void link_slot(struct cp_state *st, uint32_t slot)
{
	const struct tes_server *s = &st->srv[slot].v.s;
	uint32_t b = (uint32_t)(hash_of(st, s->tenant_id, s->fqdn) & (st->nbuckets - 1));

	st->srv[slot].hnext = st->buckets[b];
	st->buckets[b] = slot;
}

static int rehash(struct cp_state *st, uint32_t nbuckets)
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

uint32_t cp_server_add(struct cp_state *st, const struct store_server *v)
{
	uint32_t slot;

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
	link_slot(st, slot);
	st->nlive++;
	return slot;
}

void cp_server_delete(struct cp_state *st, uint32_t slot)
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
	c->live = false;
	c->dirty = false;
	c->next_change = INT64_MAX;
	st->nlive--;
	/* Without memory for the free list the slot is merely never reused. */
	if (grow((void **)&st->freelist, &st->capfree, (size_t)st->nfree + 1, sizeof(uint32_t)))
		st->freelist[st->nfree++] = slot;
}

void cp_server_mark_dirty(struct cp_state *st, uint32_t slot)
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

static bool current(const struct cp_state *st, const struct cp_heap_entry *e)
{
	return e->slot < st->nslots && st->srv[e->slot].live &&
	       st->srv[e->slot].next_change == e->due;
}

static void sift_up(struct cp_state *st, size_t i)
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

static void sift_down(struct cp_state *st, size_t i)
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

static void heap_pop(struct cp_state *st)
{
	st->heap[0] = st->heap[--st->nheap];
	if (st->nheap)
		sift_down(st, 0);
}

/* Drop stale entries when they outnumber the live ones, so the heap stays
 * proportional to the servers however often they are rescheduled. */
static void compact(struct cp_state *st)
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

void cp_sched_set(struct cp_state *st, uint32_t slot, int64_t due)
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

int64_t cp_sched_peek(struct cp_state *st)
{
	while (st->nheap && !current(st, &st->heap[0]))
		heap_pop(st);
	return st->nheap ? st->heap[0].due : INT64_MAX;
}

uint32_t cp_sched_pop_due(struct cp_state *st, int64_t now)
{
	uint32_t slot;

	if (cp_sched_peek(st) > now)
		return CP_NO_SLOT;
	slot = st->heap[0].slot;
	heap_pop(st);
	st->srv[slot].next_change = INT64_MAX;
	return slot;
}

void cp_sched_clear(struct cp_state *st)
{
	st->nheap = 0;
	for (uint32_t i = 0; i < st->nslots; i++)
		st->srv[i].next_change = INT64_MAX;
}
