/* SPDX-License-Identifier: BSD-3-Clause */
#include "gateway/state/refring.h"

#include <stdlib.h>
#include <string.h>

static bool same(const struct refusal *a, uint32_t tenant_id, const char *fqdn, bool throttle)
{
	return a->tenant_id == tenant_id && a->throttle == throttle &&
	       strncmp(a->fqdn, fqdn, TES_FQDN_MAX - 1) == 0;
}

bool refring_push(struct refring *r, uint32_t tenant_id, const char *fqdn, bool throttle)
{
	uint32_t head = r->head;
	size_t n;

	if (head != 0) {
		uint32_t i = (head - 1) % REFRING_SIZE;
		uint32_t c = __atomic_load_n(&r->count[i], __ATOMIC_RELAXED);

		/* slot[i] is this thread's own last write; the consumer only
		 * reads it, and takes it by exchanging 0 into its count */
		if (c != 0 && same(&r->slot[i], tenant_id, fqdn, throttle)) {
			while (c != 0 && c < UINT32_MAX) {
				if (__atomic_compare_exchange_n(&r->count[i], &c, c + 1, true,
								__ATOMIC_RELAXED, __ATOMIC_RELAXED))
					return true;
			}
		}
	}
	uint32_t tail = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
	if (head - tail >= REFRING_SIZE) {
		__atomic_store_n(&r->dropped, r->dropped + 1, __ATOMIC_RELAXED);
		return false;
	}
	struct refusal *s = &r->slot[head % REFRING_SIZE];
	s->tenant_id = tenant_id;
	s->throttle = throttle;
	n = strnlen(fqdn, TES_FQDN_MAX - 1); /* per message: no printf */
	memcpy(s->fqdn, fqdn, n);
	s->fqdn[n] = '\0';
	__atomic_store_n(&r->count[head % REFRING_SIZE], 1, __ATOMIC_RELAXED);
	__atomic_store_n(&r->head, head + 1, __ATOMIC_RELEASE);
	return true;
}

bool refring_pop(struct refring *r, struct refusal *out, uint32_t *n)
{
	uint32_t tail = r->tail;
	uint32_t head = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);

	if (tail == head)
		return false;
	*out = r->slot[tail % REFRING_SIZE];
	/* from here on the producer cannot add to this slot */
	*n = __atomic_exchange_n(&r->count[tail % REFRING_SIZE], 0, __ATOMIC_ACQ_REL);
	__atomic_store_n(&r->tail, tail + 1, __ATOMIC_RELEASE);
	return true;
}

uint64_t refring_dropped(const struct refring *r)
{
	return __atomic_load_n(&r->dropped, __ATOMIC_RELAXED);
}

/* ---- the control thread's table ---- */

static int cmp(uint32_t ta, const char *fa, uint32_t tb, const char *fb)
{
	if (ta != tb)
		return ta < tb ? -1 : 1;
	return strcmp(fa, fb);
}

void refagg_add(struct refagg *a, const struct refusal *r, uint32_t n)
{
	size_t lo = 0, hi = a->n;
	struct ctl_server_count *e;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = cmp(a->v[mid].tenant_id, a->v[mid].fqdn, r->tenant_id, r->fqdn);

		if (c == 0) {
			lo = mid;
			goto found;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (a->n >= REFAGG_MAX) {
		a->dropped += n;
		return;
	}
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;
		struct ctl_server_count *v = realloc(a->v, cap * sizeof(*v));

		if (!v) {
			a->dropped += n;
			return;
		}
		a->v = v;
		a->cap = cap;
	}
	memmove(&a->v[lo + 1], &a->v[lo], (a->n - lo) * sizeof(*a->v));
	a->n++;
	memset(&a->v[lo], 0, sizeof(a->v[lo]));
	a->v[lo].tenant_id = r->tenant_id;
	memcpy(a->v[lo].fqdn, r->fqdn, sizeof(r->fqdn));
found:
	e = &a->v[lo];
	if (r->throttle)
		e->throttled += n;
	else
		e->refused += n;
}

size_t refagg_take(struct refagg *a, struct ctl_server_count *out, size_t max)
{
	size_t k = a->n < max ? a->n : max;

	if (!k) /* a->v is NULL until the first refusal */
		return 0;
	memcpy(out, a->v, k * sizeof(*out));
	memmove(a->v, a->v + k, (a->n - k) * sizeof(*a->v));
	a->n -= k;
	return k;
}

void refagg_free(struct refagg *a)
{
	free(a->v);
	memset(a, 0, sizeof(*a));
}
