/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * A worker's queue of sightings to the control thread: single producer,
 * single consumer, fixed size, no lock and no system call.
 *
 * The newest waiting slot absorbs identical sightings: count[i] is how many
 * messages slot[i] stands for while it waits, and 0 once the consumer took
 * it.  The producer adds by compare-and-swap from a non-zero count; the
 * consumer takes by exchanging in 0; so an addition lands before the take
 * or fails and becomes a slot of its own, and no message is counted twice
 * or lost.  A flood of identical sightings then waits in one slot however
 * long the consumer is kept off the CPU (as on a core it shares with a
 * polling worker).  Only a full ring of distinct ones drops (counted).
 *
 * Threads: sightring_push from one producer thread (the ring's worker),
 * sightring_pop from one consumer thread, sightring_dropped from any.
 * Zero-filled memory is an empty ring.
 */
#ifndef TES_GATEWAY_STATE_SIGHTRING_H
#define TES_GATEWAY_STATE_SIGHTRING_H

#include <stdbool.h>
#include <stdint.h>

#include "contract/ctlproto.h"

/* Distinct sightings a worker may have waiting. */
#define SIGHTRING_SIZE 1024u

struct sightring {
	_Alignas(64) uint32_t head; /* written by the producer */
	_Alignas(64) uint32_t tail; /* written by the consumer */
	uint64_t dropped;           /* written by the producer */
	uint64_t untrusted;         /* written by the producer: counted, not queued */
	uint64_t capped;            /* written by the producer: counted, not queued */
	uint64_t limited;           /* written by the producer: over a tenant's budget */
	uint32_t count[SIGHTRING_SIZE];
	struct ctl_sighting slot[SIGHTRING_SIZE];
};

/* Queue s (or add it to the newest waiting slot with its key); false when
 * the ring is full of others (counted in dropped).  Never blocks. */
bool sightring_push(struct sightring *r, const struct ctl_sighting *s);

/* Only the folding part of sightring_push: true when s was added to the
 * newest waiting slot (same key); false when it would take a slot. */
bool sightring_fold(struct sightring *r, const struct ctl_sighting *s);

/* Take the oldest; out->count is how many messages it stands for (>= 1). */
bool sightring_pop(struct sightring *r, struct ctl_sighting *out);

uint64_t sightring_dropped(const struct sightring *r);

/* A sighting the producer chose not to queue (ctlclient_sighting): counted
 * on the ring so the count costs the worker no shared cache line. */
static inline void sightring_count_untrusted(struct sightring *r)
{
	__atomic_store_n(&r->untrusted, r->untrusted + 1, __ATOMIC_RELAXED);
}

static inline uint64_t sightring_untrusted(const struct sightring *r)
{
	return __atomic_load_n(&r->untrusted, __ATOMIC_RELAXED);
}

static inline void sightring_count_capped(struct sightring *r)
{
	__atomic_store_n(&r->capped, r->capped + 1, __ATOMIC_RELAXED);
}

static inline uint64_t sightring_capped(const struct sightring *r)
{
	return __atomic_load_n(&r->capped, __ATOMIC_RELAXED);
}

static inline void sightring_count_limited(struct sightring *r)
{
	__atomic_store_n(&r->limited, r->limited + 1, __ATOMIC_RELAXED);
}

static inline uint64_t sightring_limited(const struct sightring *r)
{
	return __atomic_load_n(&r->limited, __ATOMIC_RELAXED);
}

#endif
