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
 * Servers of tenant 0 (mail over no connector, scope "all") form a bounded
 * table: they are also linked into two lists in the order they were last
 * seen, one of all of them and one per source prefix (the prefix of the
 * first source they were seen from), so that the least recently seen one
 * can be evicted in O(1) when a cap is reached.  Servers of every tenant
 * are counted per tenant for the per-tenant cap.
 *
 * Threads: one thread (tescontrol's event loop) owns a struct cp_tables.
 */
#ifndef TES_CONTROLPLANE_STATE_TABLES_H
#define TES_CONTROLPLANE_STATE_TABLES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "controlplane/store/store.h"

#define CP_NO_SLOT UINT32_MAX

struct cp_server {
	struct store_server v;
	int64_t next_change; /* INT64_MAX when nothing is scheduled */
	uint32_t hnext;      /* hash chain: next slot, or CP_NO_SLOT */
	bool live;
	bool dirty;  /* changed in memory, not yet written (last_seen, sources) */
	bool stored; /* the store has a row for it (some are written lazily) */
	/* What the gateways were last sent of last_seen and the sources' seen
	 * times: an update that only moves those is sent once it moved far
	 * enough (state/sighting.c). */
	int64_t pushed_last_seen;
	int64_t pushed_source_seen[TES_SERVER_SOURCES_MAX];
	/* A shared store (state/fleet.c): the last-seen time of the record
	 * the store has, and whether this copy changed in a way the store
	 * must get with the next coalesced write (sources, build, a record
	 * it has never had). */
	int64_t shared_last_seen;
	bool fleet_dirty;
	/* Tenant 0 only: least recently seen order, all and per prefix. */
	uint32_t lru_prev, lru_next;
	uint32_t plru_prev, plru_next;
	uint32_t prefix; /* index in prefixes */
};

/* A source prefix of tenant-0 servers. */
struct cp_prefix {
	struct tes_addr net; /* masked; family NONE for servers without a source */
	uint32_t count;
	uint32_t head, tail; /* most and least recently seen */
	uint32_t hnext;
	bool live;
};

/* Servers per tenant (tenants are few; ids come from the tenant table). */
struct cp_tenant_count {
	uint32_t id;
	uint32_t n;
	bool used;
};

struct cp_heap_entry {
	int64_t due;
	uint32_t slot;
};

struct cp_tables {
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

	/* Tenant 0's bounded table. */
	uint32_t lru_head, lru_tail; /* most and least recently seen */
	uint32_t nuntrusted;
	struct cp_prefix *prefixes;
	uint32_t nprefixes, capprefixes;
	uint32_t *prefix_free;
	uint32_t nprefix_free, capprefix_free;
	uint32_t *prefix_buckets;
	uint32_t nprefix_buckets; /* a power of two */
	uint8_t prefix_v4, prefix_v6;

	struct cp_tenant_count *tcounts;
	uint32_t ntcounts, captcounts; /* open addressing, captcounts a power of two */

	/* Rows to delete at the next flush (servers forgotten or evicted). */
	struct cp_pending_delete *pending_del;
	size_t npending_del, cappending_del;
};

struct cp_pending_delete {
	uint32_t tenant_id;
	char fqdn[TES_FQDN_MAX];
	int64_t rev; /* a shared store: delete only if still at this revision */
};

int cp_tables_init(struct cp_tables *st);
void cp_tables_free(struct cp_tables *st);

/* ---- tenants ---- */
struct tes_tenant *cp_tenant_find(struct cp_tables *st, uint32_t id);
/* Insert or replace (by id).  0 or -1 (no memory). */
int cp_tenant_put(struct cp_tables *st, const struct tes_tenant *t);
void cp_tenant_delete(struct cp_tables *st, uint32_t id);

/* ---- servers ---- */
uint32_t cp_server_find(struct cp_tables *st, uint32_t tenant_id, const char *fqdn);
/* Add a server not present yet; its slot, or CP_NO_SLOT (no memory).  It
 * may move every server: pointers from cp_server_at are stale after it. */
uint32_t cp_server_add(struct cp_tables *st, const struct store_server *v);
void cp_server_delete(struct cp_tables *st, uint32_t slot);
static inline struct cp_server *cp_server_at(struct cp_tables *st, uint32_t slot)
{
	return slot < st->nslots && st->srv[slot].live ? &st->srv[slot] : NULL;
}
void cp_server_mark_dirty(struct cp_tables *st, uint32_t slot);

/* Servers of a tenant on record (tenant 0 included). */
uint32_t cp_tenant_servers(const struct cp_tables *st, uint32_t tenant_id);

/* ---- tenant 0's bounded table ---- */
/* The prefix lengths servers are grouped by (from the policy); takes
 * effect for servers added afterwards. */
void cp_untrusted_prefixes(struct cp_tables *st, unsigned v4, unsigned v6);
/* A tenant-0 server was seen: it becomes the most recently seen. */
void cp_untrusted_touch(struct cp_tables *st, uint32_t slot);
/* The least recently seen tenant-0 server overall, or of the prefix a
 * server first seen from src would join; CP_NO_SLOT if none.  count
 * (optional) gets how many there are. */
uint32_t cp_untrusted_oldest(const struct cp_tables *st, uint32_t *count);
uint32_t cp_untrusted_oldest_in(const struct cp_tables *st, const struct tes_addr *src,
				uint32_t *count);
/* Re-link every tenant-0 server in last-seen order (after loading). */
void cp_untrusted_rebuild(struct cp_tables *st);

/* Queue the store row of (tenant, fqdn) for deletion at the next flush.
 * 0 or -1 (no memory). */
int cp_pending_delete(struct cp_tables *st, uint32_t tenant_id, const char *fqdn);

/* ---- escalation queue ---- */
/* Record the server's next change and queue it (INT64_MAX: none). */
void cp_sched_set(struct cp_tables *st, uint32_t slot, int64_t due);
/* The earliest live due time, or INT64_MAX. */
int64_t cp_sched_peek(struct cp_tables *st);
/* Take the earliest entry due at or before now: its slot, or CP_NO_SLOT. */
uint32_t cp_sched_pop_due(struct cp_tables *st, int64_t now);
/* Forget every entry (before rescheduling all servers). */
void cp_sched_clear(struct cp_tables *st);

/* Lower-case copy for keys (buf holds TES_FQDN_MAX). */
void cp_fqdn_key(const char *fqdn, char *buf);

#endif
