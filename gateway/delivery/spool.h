/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The spool delivery backend: every accepted message becomes a file a person
 * can read, <spool>/new/<id>.eml, with its envelope beside it in <id>.env.
 *
 * Durability: the content is streamed into <spool>/tmp/<id>.eml, then on a
 * delivery thread fsynced; the envelope is written to tmp/, fsynced and
 * renamed into new/; new/ is fsynced; only then is the .eml renamed into
 * new/ and new/ fsynced again, and only then does the client get 250.  So a
 * visible .eml always has its envelope, and nothing in new/ is partial.  A
 * crash leaves at most files in tmp/, which the next start removes.
 *
 * Delivery threads take every message waiting at once and share the two
 * directory fsyncs among them (group commit).
 *
 * Content reaches the delivery threads in 64 KiB blocks: a message that
 * fits in one costs its worker no system call, and a larger one is written
 * by the delivery threads, block by block at its offset, while the worker
 * reads on.  Blocks waiting to be written are bounded by a byte budget
 * (spool_set_inflight_max): a message that would exceed it fails with 451
 * instead of the gateway growing without bound behind a slow disk.
 *
 * Workers hand over work with one compare-and-swap and never take a lock
 * or make a system call, except that on the kernel path a sleeping
 * delivery thread is woken.  A polling spool (spool_set_polling, for the
 * DPDK path, whose workers make no system calls at all) never wakes
 * anyone: its delivery threads look for work every 50 us instead.
 *
 * Ids: "<unix seconds>.<microseconds>.P<pid>W<worker>C<counter>": unique
 * across workers (worker number), restarts (time, pid) and within a worker
 * (counter); one instance per spool is enforced with a lock file.
 *
 * Threading: spool_open/spool_stop/spool_close on the main thread; the
 * backend functions as delivery.h says.
 */
#ifndef TES_GATEWAY_DELIVERY_SPOOL_H
#define TES_GATEWAY_DELIVERY_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "gateway/delivery/delivery.h"

struct spool;
struct obs_registry;

/* Workers that may open messages at most (ids carry the worker number). */
#define SPOOL_MAX_WORKERS 64

struct spool_stats {
	uint64_t stored;      /* messages made visible in new/ */
	uint64_t failed;      /* answered 451 */
	uint64_t aborted;     /* transactions that ended without a message */
	uint64_t bytes;       /* content octets stored */
	uint64_t over_budget; /* messages failed because the block budget was full */
	uint64_t no_space;    /* refused or failed at the free-space floor (452 4.3.1) */
};

/* Create dir, dir/tmp and dir/new if needed, lock the spool, remove what a
 * crash left in tmp/, and start nthreads delivery threads.  nworkers: how
 * many workers will open messages (ids carry the worker number). */
struct spool *spool_open(const char *dir, unsigned nthreads, unsigned nworkers, char *err,
			 size_t errlen);

#define SPOOL_INFLIGHT_DEFAULT (256ull << 20)

/* Before the workers start.  polling: the delivery threads look for work
 * on their own instead of being woken (see above). */
void spool_set_polling(struct spool *sp, bool polling);
/* Content bytes handed to the delivery threads and not yet written, at
 * most (default SPOOL_INFLIGHT_DEFAULT). */
void spool_set_inflight_max(struct spool *sp, uint64_t bytes);

/* Before the workers start: keep at least floor octets free on the spool's
 * file system (gateway/delivery/diskfloor.h); 0: no floor.  -1 with err when the free
 * space cannot be watched. */
int spool_set_min_free(struct spool *sp, uint64_t floor, char *err, size_t errlen);

/* Started as root, before giving root up: the spool directory, tmp/, new/
 * and the lock file become uid's and gid's, so the spool can still be
 * written afterwards (the messages already in new/ are left as they are).
 * -1 with err on failure. */
int spool_give(struct spool *sp, uid_t uid, gid_t gid, char *err, size_t errlen);

void spool_backend(struct spool *sp, struct delivery_backend *out);

/* Finish every submitted message (each gets its done call), then stop the
 * threads.  Call after the workers have stopped submitting. */
void spool_stop(struct spool *sp);

void spool_close(struct spool *sp);

void spool_stats(const struct spool *sp, struct spool_stats *out);

/* Registers group "spool" (gateway/observe/registry.h): the outcomes and
 * octets on /metrics; every field of struct spool_stats by its name.  0,
 * or -1. */
int spool_export(const struct spool *sp, struct obs_registry *r);

#endif
