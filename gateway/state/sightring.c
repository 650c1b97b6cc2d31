/* SPDX-License-Identifier: BSD-3-Clause */
#include "gateway/state/sightring.h"

#include "gateway/state/sightcoal.h"

bool sightring_fold(struct sightring *r, const struct ctl_sighting *s)
{
	uint32_t head = r->head;
	uint32_t add = s->count ? s->count : 1;

	if (head != 0) {
		uint32_t i = (head - 1) % SIGHTRING_SIZE;
		uint32_t c = __atomic_load_n(&r->count[i], __ATOMIC_RELAXED);

		if (c != 0 && sightcoal_same_key(&r->slot[i], s)) {
			while (c != 0 && c <= UINT32_MAX - add) {
				if (__atomic_compare_exchange_n(&r->count[i], &c, c + add, true,
								__ATOMIC_RELAXED, __ATOMIC_RELAXED))
					return true;
			}
		}
	}
	return false;
}

bool sightring_push(struct sightring *r, const struct ctl_sighting *s)
{
	uint32_t head = r->head;
	uint32_t add = s->count ? s->count : 1;

	if (head != 0) {
		uint32_t i = (head - 1) % SIGHTRING_SIZE;
		uint32_t c = __atomic_load_n(&r->count[i], __ATOMIC_RELAXED);
		/* slot[i] is this thread's own last write; the consumer only
		 * reads it */
		if (c != 0 && sightcoal_same_key(&r->slot[i], s)) {
			while (c != 0 && c <= UINT32_MAX - add) {
				if (__atomic_compare_exchange_n(&r->count[i], &c, c + add, true,
								__ATOMIC_RELAXED, __ATOMIC_RELAXED))
					return true;
			}
		}
	}
	uint32_t tail = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
	if (head - tail >= SIGHTRING_SIZE) {
		__atomic_store_n(&r->dropped, r->dropped + 1, __ATOMIC_RELAXED);
		return false;
	}
	r->slot[head % SIGHTRING_SIZE] = *s;
	__atomic_store_n(&r->count[head % SIGHTRING_SIZE], add, __ATOMIC_RELAXED);
	__atomic_store_n(&r->head, head + 1, __ATOMIC_RELEASE);
	return true;
}

bool sightring_pop(struct sightring *r, struct ctl_sighting *out)
{
	uint32_t tail = r->tail;
	uint32_t head = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);

	if (tail == head)
		return false;
	*out = r->slot[tail % SIGHTRING_SIZE];
	/* from here on the producer cannot add to this slot */
	out->count = __atomic_exchange_n(&r->count[tail % SIGHTRING_SIZE], 0, __ATOMIC_ACQ_REL);
	__atomic_store_n(&r->tail, tail + 1, __ATOMIC_RELEASE);
	return true;
}

uint64_t sightring_dropped(const struct sightring *r)
{
	return __atomic_load_n(&r->dropped, __ATOMIC_RELAXED);
}
