/* SPDX-License-Identifier: BSD-3-Clause */
#include "dataplane/srclimit.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

struct srcent {
	uint8_t key[16];
	uint32_t count;
};

struct srclimit {
	atomic_flag lock;
	uint32_t per_source;
	uint32_t max_conns;
	uint32_t total; /* counted now, all sources; under lock */
	bool share;
	uint32_t mask;
	uint64_t seed[2];
	struct srcent *e;
};

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static uint32_t slot(const struct srclimit *s, const uint8_t key[16])
{
	uint64_t a, b;
	memcpy(&a, key, 8);
	memcpy(&b, key + 8, 8);
	return (uint32_t)(mix64(a ^ s->seed[0]) ^ mix64(b ^ s->seed[1])) & s->mask;
}

/* Held for a probe of a few slots: spinning is cheaper than any sleep. */
static void lock(struct srclimit *s)
{
	while (atomic_flag_test_and_set_explicit(&s->lock, memory_order_acquire)) {
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#endif
	}
}

static void unlock(struct srclimit *s)
{
	atomic_flag_clear_explicit(&s->lock, memory_order_release);
}

struct srclimit *srclimit_new(uint32_t max_conns, uint32_t per_source)
{
	struct srclimit *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	uint32_t size = 64;
	while (size < 2ull * max_conns && size < (1u << 30))
		size <<= 1;
	s->mask = size - 1;
	s->per_source = per_source;
	s->max_conns = max_conns;
	s->share = true;
	atomic_flag_clear(&s->lock);
	/* A keyed hash: a client cannot pick addresses that share one chain. */
	if (getrandom(s->seed, sizeof(s->seed), GRND_NONBLOCK) != sizeof(s->seed)) {
		s->seed[0] = mix64((uint64_t)time(NULL));
		s->seed[1] = mix64((uint64_t)(uintptr_t)s);
	}
	s->e = calloc(size, sizeof(*s->e));
	if (!s->e) {
		free(s);
		return NULL;
	}
	return s;
}

void srclimit_free(struct srclimit *s)
{
	if (!s)
		return;
	free(s->e);
	free(s);
}

void srclimit_set_share(struct srclimit *s, bool on)
{
	s->share = on;
}

/* What one source may hold now: per_source, or its share of the free slots
 * once half the table is taken.  Under lock. */
static uint32_t limit_now(const struct srclimit *s)
{
	uint32_t half = s->max_conns / 2;
	if (!s->share || s->total < half || s->max_conns == 0)
		return s->per_source;
	uint32_t free = s->total < s->max_conns ? s->max_conns - s->total : 0;
	uint64_t share = (uint64_t)s->per_source * free / (s->max_conns - half);
	if (share < 1)
		share = 1;
	return share < s->per_source ? (uint32_t)share : s->per_source;
}

bool srclimit_acquire(struct srclimit *s, const uint8_t key[16])
{
	bool ok = true;
	lock(s);
	uint32_t i = slot(s, key);
	while (s->e[i].count && memcmp(s->e[i].key, key, 16) != 0)
		i = (i + 1) & s->mask;
	if (s->e[i].count >= limit_now(s)) {
		ok = false;
	} else {
		memcpy(s->e[i].key, key, 16);
		s->e[i].count++;
		s->total++;
	}
	unlock(s);
	return ok;
}

void srclimit_release(struct srclimit *s, const uint8_t key[16])
{
	lock(s);
	uint32_t i = slot(s, key);
	while (s->e[i].count && memcmp(s->e[i].key, key, 16) != 0)
		i = (i + 1) & s->mask;
	if (s->e[i].count == 0) {
		unlock(s);
		return;
	}
	s->total--;
	if (--s->e[i].count > 0) {
		unlock(s);
		return;
	}
	/* Backward-shift deletion keeps every probe chain unbroken. */
	uint32_t j = i;
	for (;;) {
		j = (j + 1) & s->mask;
		if (s->e[j].count == 0)
			break;
		uint32_t h = slot(s, s->e[j].key);
		bool stays = (i <= j) ? (i < h && h <= j) : (i < h || h <= j);
		if (stays)
			continue;
		s->e[i] = s->e[j];
		i = j;
	}
	s->e[i].count = 0;
	unlock(s);
}
