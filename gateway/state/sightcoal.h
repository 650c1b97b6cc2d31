/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Coalescing of sightings on their way to tescontrol.
 *
 * A gateway sees the same server, from the same address and with the same
 * build, on every message it sends: tens of thousands of identical
 * sightings a second on a busy core.  tescontrol learns nothing from the
 * second one in a second but the count and the time, and encoding,
 * decoding and acknowledging each one cost more CPU than the mail.  So the
 * first sighting of a key goes out at once (a first detection, a new
 * source or a new build is never delayed), and identical ones within the
 * window after it are counted and sent as one sighting with "count" when
 * the window ends.  A report is then late by at most one window.
 *
 * The key is everything tescontrol reads from a sighting except its time:
 * tenant, server name (as sent), build, family, class and source address.
 *
 * Memory is fixed at creation: a set-associative table.  A key that finds
 * no free way is simply sent (never dropped), so a flood of distinct names
 * costs what it cost before coalescing, no more.
 *
 * Threads: one thread owns a struct sightcoal (the control thread).
 */
#ifndef TES_GATEWAY_STATE_SIGHTCOAL_H
#define TES_GATEWAY_STATE_SIGHTCOAL_H

#include <stdbool.h>
#include <stdint.h>

#include "contract/ctlproto.h"

struct sightcoal;

/* Whether a and b have the same key (everything but seq, time and count).
 * Pure: any thread. */
bool sightcoal_same_key(const struct ctl_sighting *a, const struct ctl_sighting *b);

/* sets * 4 entries; window_ms > 0.  NULL when out of memory. */
struct sightcoal *sightcoal_create(unsigned sets, int64_t window_ms);
void sightcoal_free(struct sightcoal *c);

/* Offer one sighting seen at now_ms (a monotonic clock).  true: send *s now
 * (its count may have grown by what was held for its key).  false: it was
 * counted and will come out of sightcoal_flush. */
bool sightcoal_offer(struct sightcoal *c, struct ctl_sighting *s, int64_t now_ms);

typedef void (*sightcoal_emit_fn)(void *arg, const struct ctl_sighting *s);

/* Emit, as one sighting per key, what was held for keys whose window has
 * ended (all of them when all).  Returns how many it emitted. */
unsigned sightcoal_flush(struct sightcoal *c, int64_t now_ms, bool all, sightcoal_emit_fn emit,
			 void *arg);

/* Emit everything held and forget every key's window, so the next
 * sighting of each key goes out at once.  For when tescontrol's view
 * changed (a server update, a full state): the gateway reports afresh. */
unsigned sightcoal_reset(struct sightcoal *c, int64_t now_ms, sightcoal_emit_fn emit, void *arg);

struct sightcoal_stats {
	uint64_t offered;    /* sightings offered */
	uint64_t held;       /* of those, counted into a later one */
	uint64_t unrecorded; /* sent without a slot (every way of its set busy) */
};
void sightcoal_stats(const struct sightcoal *c, struct sightcoal_stats *out);

#endif
