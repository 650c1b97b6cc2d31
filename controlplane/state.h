/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tescontrol's in-memory copy of the enforcement state: tenants, servers,
 * and the escalation queue (servers ordered by their next stage change).
 * The store (store.h) is the durable copy; this one answers lookups and
 * drives the timers.
 *
 * Servers live in slots with stable indices (a deleted slot is reused), so
 * a full sync to a gateway can walk them with a cursor while updates keep
 * arriving.  Lookups are by (tenant, FQDN compared case-insensitively)
 * through a hash table keyed with a random seed, because the FQDNs come
 * from mail headers that senders write.
 *
 * Threads: one thread (tescontrol's event loop) owns a struct cp_state.
 */
#ifndef TES_CONTROLPLANE_STATE_H
#define TES_CONTROLPLANE_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "controlplane/store.h"

#define CP_NO_SLOT UINT32_MAX

struct cp_server {
	struct store_server v;
	int64_t next_change; /* INT64_MAX when nothing is scheduled */
	uint32_t hnext;      /* hash chain: next slot, or CP_NO_SLOT */
	bool live;
	bool dirty; /* changed in memory, not yet written (last_seen, sources) */
};

struct cp_heap_entry {
	int64_t due;
	uint32_t slot;
};

struct cp_state {
	struct cp_server *srv;
	uint32_t nslots, capslots;
	uint32_t *freelist;
	uint32_t nfree;
	size_t capfree;
	uint32_t nlive;
	uint32_t *buckets;
	uint32_t nbuckets; /* a power of two */
	uint64_t seed[2];

	struct tes_tenant *tenants; /* sorted by id */
	size_t ntenants, captenants;

	struct cp_heap_entry *heap;
	size_t nheap, capheap;

	uint32_t *dirty;
	size_t ndirty, capdirty;
};

int cp_state_init(struct cp_state *st);
void cp_state_free(struct cp_state *st);

/* ---- tenants ---- */
struct tes_tenant *cp_tenant_find(struct cp_state *st, uint32_t id);
/* Insert or replace (by id).  0 or -1 (no memory). */
int cp_tenant_put(struct cp_state *st, const struct tes_tenant *t);
void cp_tenant_delete(struct cp_state *st, uint32_t id);

/* ---- servers ---- */
uint32_t cp_server_find(struct cp_state *st, uint32_t tenant_id, const char *fqdn);
/* Add a server not present yet; its slot, or CP_NO_SLOT (no memory).  It
 * may move every server: pointers from cp_server_at are stale after it. */
uint32_t cp_server_add(struct cp_state *st, const struct store_server *v);
void cp_server_delete(struct cp_state *st, uint32_t slot);
static inline struct cp_server *cp_server_at(struct cp_state *st, uint32_t slot)
{
	return slot < st->nslots && st->srv[slot].live ? &st->srv[slot] : NULL;
}
void cp_server_mark_dirty(struct cp_state *st, uint32_t slot);

/* ---- escalation queue ---- */
/* Record the server's next change and queue it (INT64_MAX: none). */
void cp_sched_set(struct cp_state *st, uint32_t slot, int64_t due);
/* The earliest live due time, or INT64_MAX. */
int64_t cp_sched_peek(struct cp_state *st);
/* Take the earliest entry due at or before now: its slot, or CP_NO_SLOT. */
uint32_t cp_sched_pop_due(struct cp_state *st, int64_t now);
/* Forget every entry (before rescheduling all servers). */
void cp_sched_clear(struct cp_state *st);

/* Lower-case copy for keys (buf holds TES_FQDN_MAX). */
void cp_fqdn_key(const char *fqdn, char *buf);

#endif
