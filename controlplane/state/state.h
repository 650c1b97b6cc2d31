/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The state room: what tescontrol enforces, in memory (tables.h) over the
 * durable copy (store/store.h), with the catalog and policy in force.
 * Every change goes the same way: durable in the store first, then in
 * memory, then a notification (note.h) to whoever subscribed at start-up.
 * State calls only the store and the enforcement model; it never calls the
 * gateways, the XDP sync, the event log or the metrics.  The I/O edges
 * (notify/gateways.c receiving sightings, admin/ receiving commands) and
 * escalation call down into it.
 *
 * Threads: one thread (tescontrol's event loop) owns a struct cp_state;
 * nothing here is reentrant, and a subscriber must not change the state
 * from inside a notification (escalation's evaluation excepted, note.h).
 */
#ifndef TES_CONTROLPLANE_STATE_STATE_H
#define TES_CONTROLPLANE_STATE_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "contract/ctlproto.h"
#include "controlplane/clock.h"
#include "controlplane/state/note.h"
#include "controlplane/state/tables.h"
#include "controlplane/store/store.h"
#include "enforce/catalog.h"
#include "enforce/policy.h"

enum cp_sighting_class { CP_SIGHT_VULNERABLE, CP_SIGHT_COMPLIANT, CP_SIGHT_IGNORED, CP_SIGHT_N };

/* What the state did since start-up (exported by notify/metrics.c). */
struct cp_state_counts {
	uint64_t sightings;
	uint64_t first;
	uint64_t redetected;
	uint64_t resolved;
	uint64_t store_errors;
	uint64_t sightings_by_class[CP_SIGHT_N];
	uint64_t sightings_refused;
	/* Issue 13: bounds on what untrusted input can make us keep. */
	uint64_t untrusted_ignored; /* scope connectors: sightings over no connector */
	uint64_t not_tracked;       /* new servers of a tenant at its cap */
	uint64_t untrusted_evicted; /* tenant-0 servers evicted at a cap */
	uint64_t tracked;           /* compliant servers first seen */
	uint64_t pauses, resumes, resets;
	/* The fleet (a shared store): changes adopted from other appliances,
	 * events put in the journal while cut off. */
	uint64_t fleet_remote;
	uint64_t fleet_journaled;
};

#define CP_STATE_SUBSCRIBERS_MAX 8

struct cp_fleet; /* state/fleet.c: only with a shared store */

struct cp_state {
	struct tes_store *store;
	const struct cp_clock *clock;
	struct cp_tables tab;

	/* What is in force: the parsed values and the texts they came from
	 * (the texts are what gateways receive). */
	struct catalog *catalog;
	struct store_doc builds, compliance;
	struct tes_policy policy;
	struct store_doc policy_doc;

	int64_t started_at; /* tescontrol's clock at start-up */
	struct cp_state_counts counts;
	int64_t cap_logged_at; /* the last "tenant at its cap" warning */

	struct {
		cp_note_fn fn;
		void *ctx;
	} subs[CP_STATE_SUBSCRIBERS_MAX];
	unsigned nsubs;

	/* A shared store (the fleet): NULL otherwise. */
	struct cp_fleet *fleet;
};

/* An empty state over store (not owned) and clock.  0, or -1 (no memory). */
int cp_state_init(struct cp_state *st, struct tes_store *store, const struct cp_clock *clock);
void cp_state_free(struct cp_state *st);

static inline int64_t cp_state_now(const struct cp_state *st)
{
	return cp_clock_now(st->clock);
}

/* ---- notifications (note.h) ---- */
/* Add a subscriber; they are told in the order they were added.  0, or -1
 * when CP_STATE_SUBSCRIBERS_MAX are there already. */
int cp_state_subscribe(struct cp_state *st, cp_note_fn fn, void *ctx);
/* Tell every subscriber.  A SERVER note also records, in the server, the
 * seen times the gateways now have (see seen_moved in sighting.c); a
 * server note without a tenant gets the server's. */
void cp_state_emit(struct cp_state *st, struct cp_note *n);
/* A line for the event log only (CP_NOTE_EVENT); fields consumed. */
void cp_state_event(struct cp_state *st, const char *event, json_t *fields);

/* ---- lookups ---- */
/* The tenant of a server; NULL for tenant 0 (mail over no connector). */
const struct tes_tenant *cp_state_server_tenant(const struct cp_state *st,
						const struct tes_server *s);
/* The stage and status to announce for a server at now. */
void cp_state_server_view(const struct cp_state *st, const struct tes_server *s, int64_t now,
			  unsigned *stage, enum tes_status *status);
/* When escalation next has to look at a server: its next stage or status
 * change, or when it is to be forgotten; always after now. */
int64_t cp_state_next_event(const struct cp_state *st, const struct tes_server *s, int64_t now);
/* Seconds a server's last-seen time or a source's seen time must move
 * before it is announced on its own. */
int64_t cp_state_seen_granularity(const struct cp_state *st);
/* Servers of a tenant on record, counted by walking them. */
size_t cp_state_count_servers(const struct cp_state *st, uint32_t tenant_id);
/* FNV-1a based version string for a text document. */
void cp_doc_version(const char *a, size_t alen, const char *b, size_t blen, char *out, size_t len);

/* ---- start-up ---- */
/* Put the catalog and policy in force: the store's, else the files named
 * (then stored; policy_file "" means the built-in policy).  0 or -1
 * (logged). */
int cp_state_load_documents(struct cp_state *st, const char *catalog_file,
			    const char *compliance_file, const char *policy_file);
/* Load the tenants and servers.  0 or -1 (logged). */
int cp_state_load(struct cp_state *st);

/* ---- sightings (sighting.c) ---- */
/* Apply one sighting.  Returns 0 and the change, or -1 with msg when the
 * sighting was refused (unknown tenant, invalid name, store failure, no
 * memory); a refusal is counted. */
int cp_state_apply_sighting(struct cp_state *st, const struct ctl_sighting *s,
			    enum tes_change *change, char *err, size_t errlen);

/* ---- servers ---- */
/* Forget a server now (ageing, eviction): its row goes at the next flush,
 * subscribers get SERVER_GONE; why names it in the log and the event log. */
void cp_state_forget(struct cp_state *st, uint32_t slot, const char *why);
/* Write the servers whose last-seen time, sources or announced stage
 * changed, and delete the forgotten ones, in one transaction.  0 or -1
 * (logged; kept for the next flush). */
int cp_state_flush(struct cp_state *st);

/* ---- operators' changes (changes.c) ----
 * who: the operator's identity for the event log ({"uid","gid","pid"}),
 * borrowed; NULL writes nulls.  Each fails with err and changes nothing,
 * except where it says otherwise. */
/* Forget a server as if it had never been detected. */
int cp_state_reset_server(struct cp_state *st, uint32_t slot, const json_t *who, char *err,
			  size_t len);
/* Add t, or change the tenant with its id. */
int cp_state_put_tenant(struct cp_state *st, const struct tes_tenant *t, const json_t *who,
			char *err, size_t errlen);
/* Delete a tenant and its servers in one transaction; *servers: how many. */
int cp_state_delete_tenant(struct cp_state *st, uint32_t id, const json_t *who, size_t *servers,
			   char *err, size_t errlen);
/* Give a tenant pause p; event is "pause" (counted as a pause) or
 * "pause_resumed" (as a resume).  The caller then has escalation look at
 * the tenant's servers. */
int cp_state_set_pause(struct cp_state *st, uint32_t id, const struct tes_pause *p,
		       const char *event, const json_t *who, char *err, size_t errlen);
/* Recompute whether a tenant (or every tenant) is at its server cap and
 * notify when that changed (gateways then stop reporting servers they have
 * no record of for it: enfstate_sighting_wanted). */
void cp_state_cap_check(struct cp_state *st, uint32_t tenant_id);
void cp_state_caps_check(struct cp_state *st);

/* ---- documents (documents.c) ---- */
/* A catalog parsed and what it would change, before it is in force. */
struct cp_catalog_plan {
	struct catalog *cat;
	struct store_doc builds, compliance;
	struct cp_planned *plan;
	size_t nplan;
	json_t *changes; /* what tesctl shows: one object per server */
};
/* Parse the two texts (names for messages; "" for the defaults), refuse
 * what cannot be sent to the gateways in one frame, and plan what it
 * changes at now.  0, or -1 with err (nothing changed). */
int cp_state_catalog_prepare(struct cp_state *st, const char *builds, const char *builds_name,
			     const char *compliance, const char *compliance_name, int64_t now,
			     struct cp_catalog_plan *p, char *err, size_t errlen);
/* Put a prepared catalog in force: the texts and every change of the plan
 * in one transaction, then memory and notifications.  p's catalog belongs
 * to the state afterwards; free p with cp_state_catalog_discard either
 * way.  0, or -1 with err (nothing changed). */
int cp_state_catalog_commit(struct cp_state *st, struct cp_catalog_plan *p, int64_t now,
			    const json_t *who, char *err, size_t errlen);
void cp_state_catalog_discard(struct cp_catalog_plan *p);
/* Compliance rules carry dates: re-classify every tracked server's last
 * build at now and resolve or re-detect those whose verdict changed at a
 * date after their own last change, as of that date (so a date passed
 * while tescontrol was down starts where it would have, and a clock set
 * back undoes nothing).  why: for the log.  0, or -1 (logged: retry). */
int cp_state_catalog_dates(struct cp_state *st, int64_t now, const char *why);

/* What a policy would change at now: one object per server whose stage
 * or status differs.  NULL without memory. */
json_t *cp_state_policy_changes(const struct cp_state *st, const struct tes_policy *np,
				int64_t now);
/* Put a parsed policy (text, name) in force: stored, then memory, then a
 * notification; servers_changed is for the event log.  The caller then has
 * escalation look at every server.  0, or -1 with err. */
int cp_state_policy_commit(struct cp_state *st, const struct tes_policy *np, const char *text,
			   const char *name, size_t servers_changed, const json_t *who, char *err,
			   size_t len);

/* ---- the fleet: a shared store (fleet.c, docs/fleet.md) ----
 * With a shared store every change this appliance makes is written with a
 * compare-and-swap and merged with what other appliances wrote (the
 * earliest first detection wins, a resolution is not undone by an older
 * sighting: cp_fleet_apply); what other appliances write arrives through
 * cp_state_fleet_poll and is put in memory and notified like any change,
 * with reschedule set so that escalation looks at what it changes. */

/* Set up the fleet's bookkeeping over a shared store.  flush_seconds: how
 * often seen times are written (coalesced).  0, or -1 (no memory). */
int cp_state_fleet_init(struct cp_state *st, unsigned flush_seconds);
/* Apply what the store says other appliances changed (its descriptor was
 * readable).  Never blocks for long (store.h). */
void cp_state_fleet_poll(struct cp_state *st);
/* Every flush interval: liveness, and when the store is back after a
 * cut-off, reconcile the journal.  gateways: how many are connected (for
 * this appliance's record). */
void cp_state_fleet_tick(struct cp_state *st, unsigned gateways);
/* At a clean stop: write every seen time the store lacks, leave. */
void cp_state_fleet_stop(struct cp_state *st);

/* The fleet's merge of one sighting (or re-classification) e with the
 * record the store holds (cur, NULL: none).  *out is the record afterwards;
 * true when it differs from cur in what must be written at once (the
 * clock's start, resolution, stale time; a new record).  Seen times,
 * build and sources are merged into *out either way.  Pure. */
bool cp_fleet_apply(const struct store_server *cur, const struct store_event *e,
		    const struct tes_tenant *t, const struct tes_policy *p,
		    struct store_server *out);
/* Merge a copy's seen times, build and sources into the store's record
 * cur: true when *out differs from cur.  Pure. */
bool cp_fleet_merge_seen(const struct store_server *cur, const struct store_server *mine,
			 struct store_server *out);

/* Write one change of a server through the fleet: e merged with the
 * store's record (base: this appliance's copy, NULL: none), compared and
 * swapped until it holds.  1: this change is in the store (*out);
 * 0: the store already held what wins (*out, nothing written); 2: the
 * store is out of reach: e is in the local journal and *out is base with e
 * applied; -1 with err.  Counts conflicts and journal entries. */
int cp_fleet_write(struct cp_state *st, const struct store_server *base,
		   const struct store_event *e, struct store_server *out, char *err, size_t errlen);
/* Put a record the fleet holds in memory (slot CP_NO_SLOT: a new server)
 * and notify it when what gateways see changed, with the event log line
 * given (NULL: none; fields consumed).  Returns the slot (CP_NO_SLOT
 * without memory). */
uint32_t cp_fleet_adopt(struct cp_state *st, uint32_t slot, const struct store_server *r,
			const char *event, json_t *fields);
/* The same without a notification: the caller announces this appliance's
 * own change (its stage and status are recorded as announced at now). */
uint32_t cp_fleet_keep(struct cp_state *st, uint32_t slot, const struct store_server *r);
/* While cut off: whether a sighting of class cls at when should go to the
 * journal (once per seen granularity per server and class). */
bool cp_fleet_journal_wanted(struct cp_state *st, uint32_t slot, unsigned cls, int64_t when);

/* A tenant's pause changed through a compare-and-swap on the tenant:
 * make computes the new pause from the tenant as it is (again, after
 * another appliance changed it meanwhile).  0, or -1 with err. */
typedef int (*cp_pause_fn)(const struct tes_tenant *t, struct tes_pause *out, void *ctx, char *err,
			   size_t errlen);
int cp_state_set_pause_with(struct cp_state *st, uint32_t id, cp_pause_fn make, void *ctx,
			    const char *event, const json_t *who, char *err, size_t errlen);

/* tesctl store import: a server of a single box's store into the fleet:
 * as it was when the fleet has no record of it, else merged as its first
 * detection and resolution would be (the earliest date wins).  1 the fleet
 * changed, 0 it held what wins already, -1 with err. */
int cp_state_import_server(struct cp_state *st, const struct tes_server *s, char *err,
			   size_t errlen);

/* Put a catalog or policy another appliance loaded in force (fleet.c
 * calls these; documents.c holds them). */
void cp_state_catalog_adopt(struct cp_state *st, const struct store_doc *b,
			    const struct store_doc *c, const char *by);
void cp_state_policy_adopt(struct cp_state *st, const struct store_doc *d, const char *by);

#endif
