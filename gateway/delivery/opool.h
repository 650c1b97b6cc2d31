/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * A worker's own pool of equal-sized objects that other threads free.
 *
 * The spool's blocks and messages are allocated by a worker and released by
 * a delivery thread.  Through malloc that is a cross-thread free: the
 * delivery thread hands the memory back to the worker's jemalloc arena
 * under the arena's lock, and a DPDK worker that meets that lock held, or
 * whose next allocation finds the arena dirty and wakes jemalloc's
 * background thread, makes a futex system call in its loop
 * (tests/dpdk/test_dpdk_nosyscall.py caught both).  Here the object goes
 * back to the worker it came from instead: other threads push it on the
 * pool's return stack (one compare-and-swap), the worker takes the whole
 * stack at once when its private list runs dry.  No lock, no allocator,
 * once the pool holds the worker's working set.
 *
 * Bounded: a pool keeps at most `keep` idle objects; one returned beyond
 * that is freed by the thread returning it (never the worker, for which
 * opool_put_local keeps it if it can and frees it otherwise).
 *
 * Threading: opool_get and opool_put_local on the owning thread only;
 * opool_put on any thread; opool_init/opool_fini when no other thread uses
 * the pool.
 */
#ifndef TES_GATEWAY_DELIVERY_OPOOL_H
#define TES_GATEWAY_DELIVERY_OPOOL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct opool_node {
	struct opool_node *next;
};

struct opool {
	/* the owner's side */
	struct opool_node *local;
	size_t size;
	unsigned keep;
	uint64_t misses; /* objects the owner had to malloc */
	/* other threads' side, on its own cache line */
	_Alignas(64) struct opool_node *_Atomic back;
	atomic_uint idle; /* objects on either list */
};

/* Objects of size bytes (at least a pointer); prefill of them allocated
 * now so the owner starts with its working set.  Returns 0, or -1 when
 * memory for the prefill is lacking (the pool is then empty, still usable). */
int opool_init(struct opool *p, size_t size, unsigned keep, unsigned prefill);
void opool_fini(struct opool *p);

void *opool_get(struct opool *p);
void opool_put(struct opool *p, void *obj);
void opool_put_local(struct opool *p, void *obj);

#endif
