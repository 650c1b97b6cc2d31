/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Connections per source address, shared by all the workers of a front end
 * (kio's epoll workers, or the DPDK path's poll-mode workers): an exact
 * limit for the price of a short spinlock at accept and at close, never per
 * packet.  No system call and no sleeping lock, so the DPDK workers may use
 * it too.
 *
 * A fair share once the table fills: while fewer than half of max_conns
 * connections are counted, every source may hold per_source; beyond that
 * the limit shrinks in step with the free slots, from per_source at half
 * full down to one at full, so that a source already holding many cannot
 * take the last slots and a new source always finds one while any is free.
 * N sources that each hold all they may then settle at about
 * max_conns * d / (N + d) free slots, d = max_conns / (2 * per_source): with
 * the defaults (1000, 50) twenty sources leave a third of the table free,
 * where a flat limit would let them fill it.  Nothing already counted is
 * taken away: only new connections are refused.
 *
 * A key is 16 octets: an IPv6 address (kio uses the /64 of IPv6 clients)
 * or an IPv4 address mapped into ::ffff:0:0/96.  Open addressing with
 * backward-shift deletion, sized to at least twice the connections it will
 * count, so it cannot fill (a source in it has at least one connection).
 *
 * Threading: srclimit_new and srclimit_free on one thread while no other
 * uses it; srclimit_acquire and srclimit_release from any thread.
 */
#ifndef TES_DATAPLANE_SRCLIMIT_H
#define TES_DATAPLANE_SRCLIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct srclimit;

/* max_conns: the most connections counted at once; per_source: the limit.
 * NULL when out of memory. */
struct srclimit *srclimit_new(uint32_t max_conns, uint32_t per_source);
void srclimit_free(struct srclimit *s);

/* The fair share is on from srclimit_new; off, per_source is the only
 * limit (tests of the table itself).  Before any acquire. */
void srclimit_set_share(struct srclimit *s, bool on);

/* Counts one more connection of key, or false (nothing counted) when key
 * is at its limit (per_source, or the fair share) already. */
bool srclimit_acquire(struct srclimit *s, const uint8_t key[16]);
/* One connection of key ended; it must have been acquired. */
void srclimit_release(struct srclimit *s, const uint8_t key[16]);

#endif
