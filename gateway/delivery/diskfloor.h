/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * A free-space floor on one file system: the spool's (gateway/delivery/spool.c) and
 * the relay's spill files (gateway/delivery/relay.c), which live on the same one.
 * Below the floor a new message is refused with 452 4.3.1 at MAIL FROM, and
 * a message whose content would cross it is answered 452 4.3.1 at its end;
 * what was already acknowledged was made durable before its 250 and is
 * never touched.  The floor keeps the last space for that: the messages in
 * flight, the envelopes, and whatever else lives on the file system.
 *
 * A thread of its own reads the file system's free space (statvfs, what an
 * unprivileged user may use) every DISKFLOOR_PERIOD_MS; between two reads
 * every octet the backends are about to write is taken off that figure, so
 * a burst cannot run past the floor between reads.  Each read starts over
 * from what the file system says (space freed by an operator is seen within
 * one period; octets taken in the instant of a read may be counted twice or
 * not at all, which the floor absorbs).  Crossing the floor and coming back
 * above it are each logged once.
 *
 * Threading: diskfloor_new and diskfloor_free on the main thread;
 * diskfloor_admit, diskfloor_take and diskfloor_avail on any thread, with no
 * system call and no lock (the DPDK workers call them).  A NULL floor admits
 * everything.
 */
#ifndef TES_GATEWAY_DELIVERY_DISKFLOOR_H
#define TES_GATEWAY_DELIVERY_DISKFLOOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DISKFLOOR_PERIOD_MS 200

struct diskfloor;

/* dirfd: a directory on the file system to watch (duplicated, so the
 * caller's may close); floor: the octets to keep free; label names it in the
 * log.  NULL with err on failure (it cannot be read, no thread). */
struct diskfloor *diskfloor_new(int dirfd, uint64_t floor, const char *label, char *err,
				size_t errlen);
void diskfloor_free(struct diskfloor *df);

/* Would n more octets (a declared SIZE; 0 if none) leave the floor free? */
bool diskfloor_admit(const struct diskfloor *df, uint64_t n);

/* n octets are about to be written: true and taken off the free space, or
 * false (nothing taken) when they would go below the floor. */
bool diskfloor_take(struct diskfloor *df, uint64_t n);

/* Free octets as last read, less what was taken since. */
uint64_t diskfloor_avail(const struct diskfloor *df);

#endif
