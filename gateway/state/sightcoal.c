/* SPDX-License-Identifier: BSD-3-Clause */
#include "gateway/state/sightcoal.h"

#include <stdlib.h>
#include <string.h>

#include "base/siphash.h"

#define WAYS 4

struct entry {
	bool used;
	uint32_t pending; /* sightings held since sent_ms */
	uint32_t epoch;   /* sent_ms counts only in the coalescer's epoch */
	int64_t sent_ms;  /* when this key last went out */
	uint64_t hash;
	struct ctl_sighting s; /* the key, and the latest time held */
};

struct sightcoal {
	unsigned sets;
	int64_t window_ms;
	struct siphash_key key;
	struct sightcoal_stats st;
	/* Entries holding something, and the earliest time one of their
	 * windows ends: a flush walks the table only when one is due, about
	 * once a window, not on every call. */
	unsigned npending;
	int64_t due_ms;
	/* A reset ends every window by moving to the next epoch: a full state
	 * from tescontrol is one reset per server it carries, so a reset must
	 * not walk the table (it walks only to emit what is held). */
	uint32_t epoch;
	struct entry *e; /* sets * WAYS */
};

struct sightcoal *sightcoal_create(unsigned sets, int64_t window_ms)
{
	struct sightcoal *c;

	if (sets == 0 || window_ms <= 0)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->e = calloc((size_t)sets * WAYS, sizeof(*c->e));
	if (!c->e) {
		free(c);
		return NULL;
	}
	c->sets = sets;
	c->window_ms = window_ms;
	c->due_ms = INT64_MAX;
	/* Names come off the wire: a secret key keeps a sender from aiming
	 * them all at one set (which would only cost coalescing, but still). */
	if (siphash_key_random(&c->key) != 0) {
		uint64_t x = (uint64_t)(uintptr_t)c ^ (uint64_t)window_ms * 0x9e3779b97f4a7c15ull;
		c->key = (struct siphash_key){ x, x };
	}
	return c;
}

void sightcoal_free(struct sightcoal *c)
{
	if (!c)
		return;
	free(c->e);
	free(c);
}

static uint64_t key_hash(const struct sightcoal *c, const struct ctl_sighting *s)
{
	/* tenant, build, family, class, source, then the name */
	uint8_t buf[4 + sizeof(s->build.v) + 3 + sizeof(s->source.a) + TES_FQDN_MAX];
	size_t n = 0, len = strnlen(s->fqdn, TES_FQDN_MAX);

	memcpy(buf, &s->tenant_id, 4);
	n = 4;
	memcpy(buf + n, s->build.v, sizeof(s->build.v));
	n += sizeof(s->build.v);
	buf[n++] = (uint8_t)s->family;
	buf[n++] = (uint8_t)s->cls;
	buf[n++] = s->source.family;
	memcpy(buf + n, s->source.a, sizeof(s->source.a));
	n += sizeof(s->source.a);
	memcpy(buf + n, s->fqdn, len);
	n += len;
	return siphash13(&c->key, buf, n);
}

bool sightcoal_same_key(const struct ctl_sighting *a, const struct ctl_sighting *b)
{
	return a->tenant_id == b->tenant_id && a->family == b->family && a->cls == b->cls &&
	       memcmp(a->build.v, b->build.v, sizeof(a->build.v)) == 0 &&
	       tes_addr_equal(&a->source, &b->source) &&
	       strncmp(a->fqdn, b->fqdn, TES_FQDN_MAX) == 0;
}

static bool window_over(const struct sightcoal *c, const struct entry *e, int64_t now_ms)
{
	return e->epoch != c->epoch || now_ms - e->sent_ms >= c->window_ms;
}

static uint32_t count_of(const struct ctl_sighting *s)
{
	return s->count ? s->count : 1;
}

static uint32_t sat_add(uint32_t a, uint32_t b)
{
	return a > UINT32_MAX - b ? UINT32_MAX : a + b;
}

bool sightcoal_offer(struct sightcoal *c, struct ctl_sighting *s, int64_t now_ms)
{
	uint64_t h = key_hash(c, s);
	struct entry *set = c->e + (h % c->sets) * WAYS, *free_way = NULL;

	c->st.offered++;
	for (unsigned i = 0; i < WAYS; i++) {
		struct entry *e = &set[i];

		if (!e->used) {
			if (!free_way)
				free_way = e;
			continue;
		}
		if (e->hash != h || !sightcoal_same_key(&e->s, s)) {
			/* A key whose window is over and holds nothing can go. */
			if (!free_way && e->pending == 0 && window_over(c, e, now_ms))
				free_way = e;
			continue;
		}
		if (!window_over(c, e, now_ms)) {
			if (e->pending == 0) {
				c->npending++;
				if (e->sent_ms + c->window_ms < c->due_ms)
					c->due_ms = e->sent_ms + c->window_ms;
			}
			e->pending = sat_add(e->pending, count_of(s));
			if (s->time > e->s.time)
				e->s.time = s->time;
			c->st.held++;
			return false;
		}
		/* The window is over: this one goes out, with what was held. */
		if (e->pending) {
			s->count = sat_add(count_of(s), e->pending);
			c->npending--;
		}
		if (e->s.time > s->time)
			s->time = e->s.time;
		e->pending = 0;
		e->sent_ms = now_ms;
		e->epoch = c->epoch;
		e->s.time = s->time;
		return true;
	}
	if (!free_way) {
		c->st.unrecorded++;
		return true;
	}
	free_way->used = true;
	free_way->pending = 0;
	free_way->sent_ms = now_ms;
	free_way->epoch = c->epoch;
	free_way->hash = h;
	free_way->s = *s;
	free_way->s.seq = 0;
	free_way->s.count = 0;
	return true;
}

unsigned sightcoal_flush(struct sightcoal *c, int64_t now_ms, bool all, sightcoal_emit_fn emit,
			 void *arg)
{
	unsigned n = 0;

	if (c->npending == 0 || (!all && now_ms < c->due_ms))
		return 0;
	c->due_ms = INT64_MAX;
	for (size_t i = 0; i < (size_t)c->sets * WAYS; i++) {
		struct entry *e = &c->e[i];

		if (!e->used)
			continue;
		if (e->pending && (all || window_over(c, e, now_ms))) {
			struct ctl_sighting out = e->s;

			out.count = e->pending;
			e->pending = 0;
			c->npending--;
			e->sent_ms = now_ms;
			e->epoch = c->epoch;
			emit(arg, &out);
			n++;
		} else if (e->pending && e->sent_ms + c->window_ms < c->due_ms) {
			c->due_ms = e->sent_ms + c->window_ms;
		}
	}
	return n;
}

unsigned sightcoal_reset(struct sightcoal *c, int64_t now_ms, sightcoal_emit_fn emit, void *arg)
{
	unsigned n = sightcoal_flush(c, now_ms, true, emit, arg);
	c->epoch++;
	return n;
}

void sightcoal_stats(const struct sightcoal *c, struct sightcoal_stats *out)
{
	*out = c->st;
}
