/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tescontrol's durable state, behind a small interface: SQLite is the
 * embedded default (sqlite.h); a fleet store on etcd implements the same
 * operations (a struct store_ops and an open function of its own, beside
 * sqlite.c) without touching the callers: the state room (state/) uses
 * nothing but this header, and only main.c names an implementation.
 *
 * Contract every implementation keeps:
 * - a call that returns 0 has made its change durable (it survives kill -9
 *   and power loss), unless it runs inside store_begin/store_commit, in which
 *   case store_commit makes the whole group durable at once or none of it;
 * - a failed call changes nothing (inside a transaction: the caller rolls
 *   back);
 * - errors are described in the store's last error (store_errmsg).
 *
 * Threads: a struct tes_store is used by one thread at a time (tescontrol's
 * event loop); it has no internal locking.  Different stores are
 * independent.
 */
#ifndef TES_CONTROLPLANE_STORE_STORE_H
#define TES_CONTROLPLANE_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "enforce/decide.h"

/* A server as the control plane keeps it: the model's state plus what was
 * last announced (logged and pushed), which is how a stage change that fell
 * due while tescontrol was down is noticed at start-up. */
struct store_server {
	struct tes_server s;
	uint8_t stage_logged;  /* 1..TES_STAGE_COUNT */
	uint8_t status_logged; /* enum tes_status */
	/* Shared stores only (0 in SQLite): the store's revision of the
	 * record this copy was read or written as, and the end of the
	 * episode before the current one (the resolution the current clock
	 * followed; 0: none known), below which a vulnerable sighting belongs
	 * to a resolved past (state/fleet.c). */
	int64_t rev;
	int64_t floor;
};

/* A text document in force: the catalog's two files or the policy file. */
struct store_doc {
	char *text; /* malloc'd, NUL-terminated */
	size_t len;
	char name[256]; /* the file name it was loaded from, for messages */
	char version[64];
	int64_t loaded_at;
};

/* The documents the store keeps. */
#define STORE_DOC_BUILDS "catalog.builds"
#define STORE_DOC_COMPLIANCE "catalog.compliance"
#define STORE_DOC_POLICY "policy"

struct tes_store;
struct store_fleet_ops;

typedef int (*store_tenant_cb)(const struct tes_tenant *t, void *ctx);
typedef int (*store_server_cb)(const struct store_server *s, void *ctx);
/* One record of a collection: its key and its value (a JSON text). */
typedef int (*store_record_cb)(const char *key, const char *value, void *ctx);

/* Record collections and their limits (store/records.h gives them types:
 * the notice journal, notice contacts, report tokens, message counts and
 * the stage history). */
#define STORE_RECORD_KEY_MAX 600     /* octets of a key, without the NUL */
#define STORE_RECORD_VALUE_MAX 65536 /* octets of a value */

struct store_ops {
	void (*close)(struct tes_store *st);
	int (*begin)(struct tes_store *st);
	int (*commit)(struct tes_store *st);
	void (*rollback)(struct tes_store *st);
	/* Every tenant (with its connectors and pause), by id. */
	int (*load_tenants)(struct tes_store *st, store_tenant_cb cb, void *ctx);
	/* Insert or replace a tenant, its connectors and its pause. */
	int (*put_tenant)(struct tes_store *st, const struct tes_tenant *t);
	int (*delete_tenant)(struct tes_store *st, uint32_t id);
	int (*load_servers)(struct tes_store *st, store_server_cb cb, void *ctx);
	/* Insert or replace by (tenant, fqdn compared case-insensitively). */
	int (*put_server)(struct tes_store *st, const struct store_server *s);
	/* 0 also when there was no such server. */
	int (*delete_server)(struct tes_store *st, uint32_t tenant_id, const char *fqdn);
	/* 1 and *out (free with store_doc_free) if present, 0 if absent, -1. */
	int (*get_doc)(struct tes_store *st, const char *key, struct store_doc *out);
	int (*put_doc)(struct tes_store *st, const char *key, const struct store_doc *doc);
	/* The schema version the store is at. */
	int (*schema_version)(struct tes_store *st);
	/* Records: JSON documents by (collection, key), for what tescontrol
	 * keeps beside the enforcement state (records.h).  Put inserts or
	 * replaces; delete is 0 also when there was none; load calls cb for
	 * every record of a collection, in key order, and stops at the first
	 * non-zero cb (returned).  An implementation that leaves them NULL
	 * keeps no records: the calls fail (store_errmsg says so). */
	int (*put_record)(struct tes_store *st, const char *coll, const char *key,
			  const char *value);
	int (*delete_record)(struct tes_store *st, const char *coll, const char *key);
	int (*load_records)(struct tes_store *st, const char *coll, store_record_cb cb, void *ctx);
};

struct tes_store {
	const struct store_ops *ops;
	/* A store several tescontrols share (the fleet on etcd); NULL for
	 * the SQLite store.  See below. */
	const struct store_fleet_ops *fleet;
	char err[512];
	/* Told how long each successful commit took (telemetry); NULL: nobody
	 * asks.  Called on the store's thread. */
	void (*on_commit)(void *ctx, double seconds);
	void *on_commit_ctx;
};

static inline const char *store_errmsg(const struct tes_store *st)
{
	return st->err;
}

static inline void store_close(struct tes_store *st)
{
	if (st)
		st->ops->close(st);
}

static inline int store_begin(struct tes_store *st)
{
	return st->ops->begin(st);
}

static inline int store_commit(struct tes_store *st)
{
	return st->ops->commit(st);
}

static inline void store_rollback(struct tes_store *st)
{
	st->ops->rollback(st);
}

static inline int store_load_tenants(struct tes_store *st, store_tenant_cb cb, void *ctx)
{
	return st->ops->load_tenants(st, cb, ctx);
}

static inline int store_put_tenant(struct tes_store *st, const struct tes_tenant *t)
{
	return st->ops->put_tenant(st, t);
}

static inline int store_delete_tenant(struct tes_store *st, uint32_t id)
{
	return st->ops->delete_tenant(st, id);
}

static inline int store_load_servers(struct tes_store *st, store_server_cb cb, void *ctx)
{
	return st->ops->load_servers(st, cb, ctx);
}

static inline int store_put_server(struct tes_store *st, const struct store_server *s)
{
	return st->ops->put_server(st, s);
}

static inline int store_delete_server(struct tes_store *st, uint32_t tenant_id, const char *fqdn)
{
	return st->ops->delete_server(st, tenant_id, fqdn);
}

static inline int store_get_doc(struct tes_store *st, const char *key, struct store_doc *out)
{
	return st->ops->get_doc(st, key, out);
}

static inline int store_put_doc(struct tes_store *st, const char *key, const struct store_doc *d)
{
	return st->ops->put_doc(st, key, d);
}

static inline int store_schema_version(struct tes_store *st)
{
	return st->ops->schema_version(st);
}

int store_put_record(struct tes_store *st, const char *coll, const char *key, const char *value);
int store_delete_record(struct tes_store *st, const char *coll, const char *key);
int store_load_records(struct tes_store *st, const char *coll, store_record_cb cb, void *ctx);

static inline void store_doc_free(struct store_doc *d)
{
	free(d->text);
	d->text = NULL;
	d->len = 0;
}

/* ---- shared stores (docs/fleet.md) ----
 * A store that several tescontrols share (store_etcd_open) keeps the same
 * contract as above for what it offers through store_ops, and adds what
 * sharing needs: writes that compare and swap, the changes other
 * appliances made (fed to the state, which notifies them like its own), a
 * local journal of what was detected while the shared store could not be
 * reached, and liveness.  Every call blocks for a bounded time only
 * (docs/fleet.md, "What blocks"); while the store is cut off, calls fail at
 * once without touching the network, and store_fleet_tick probes. */

/* Something another appliance (or this one, echoed) changed. */
enum store_change_kind {
	STORE_CHANGE_SERVER,      /* server (rev set): adopt if newer than the copy */
	STORE_CHANGE_SERVER_GONE, /* tenant_id, fqdn, rev: the delete's revision */
	STORE_CHANGE_TENANT,      /* tenant */
	STORE_CHANGE_TENANT_GONE, /* tenant_id */
	STORE_CHANGE_POLICY,      /* policy */
	STORE_CHANGE_CATALOG,     /* builds and compliance */
	/* A full re-read (the watch's history was compacted): every server
	 * follows as SERVER; at the END, those of rev <= rev not delivered
	 * since the BEGIN are gone. */
	STORE_CHANGE_RESYNC_BEGIN,
	STORE_CHANGE_RESYNC_END,
};

struct store_change {
	enum store_change_kind kind;
	const struct store_server *server;
	uint32_t tenant_id;
	const char *fqdn;
	int64_t rev;
	const struct tes_tenant *tenant;
	const struct store_doc *policy;
	const struct store_doc *builds, *compliance;
	const char *by; /* the appliance that wrote it; "" when not said */
};

/* Valid during the call only. */
typedef void (*store_change_cb)(void *ctx, const struct store_change *c);

/* A sighting kept in the local journal while the shared store could not
 * be reached (reconciled, in id order, when it is back). */
struct store_event {
	uint64_t id;
	uint32_t tenant_id;
	char fqdn[TES_FQDN_MAX];
	int64_t when;
	struct ex_build build;
	uint8_t family; /* enum ex_family */
	uint8_t cls;    /* enum tes_build_class: COMPLIANT or VULNERABLE */
	/* A catalog's re-classification, not a message: the seen times,
	 * sources and build stay. */
	bool reclassify;
	struct tes_addr source; /* family NONE: none */
};

typedef int (*store_event_cb)(const struct store_event *e, void *ctx);

/* An appliance of the fleet, as it last wrote itself (tesctl fleet
 * status), or this one as the state describes itself to store_fleet_tick. */
struct store_member {
	char name[64];
	bool alive;         /* its lease is held: it ran within the lease's TTL */
	int64_t started_at; /* its wall clock, seconds */
	int64_t written_at; /* when it last wrote this record (wall clock) */
	char catalog[64];   /* the versions it enforces */
	char policy[64];
	int64_t cut_off_since; /* 0: connected when it wrote */
	uint64_t journal;      /* events it had not reconciled */
	uint64_t sightings, first_detections, redetections, resolutions;
	uint32_t servers;
	uint32_t gateways;
};

typedef int (*store_member_cb)(const struct store_member *m, void *ctx);

struct store_fleet_status {
	char kind[16];         /* "etcd" */
	char appliance[64];    /* this one's name */
	char where[512];       /* endpoints and prefix, for people */
	char endpoint[256];    /* the endpoint calls start at */
	bool cut_off;          /* the last call found no quorum, or none answered */
	int64_t cut_off_since; /* wall clock; 0 when connected */
	char last_error[512];
	uint64_t journal;      /* events waiting to be reconciled */
	int64_t revision;      /* the newest revision read or written */
	uint64_t writes;       /* write requests sent (each one Raft entry) */
	uint64_t keys_written; /* keys those wrote */
	uint64_t conflicts;    /* compare-and-swaps that lost */
	uint64_t reconciled;   /* journal events reconciled */
	uint64_t watch_events; /* changes delivered from the watch */
	uint64_t watch_reconnects;
	uint64_t bad_records;            /* values refused (foreign layout, not JSON) */
	int64_t catalog_rev, policy_rev; /* the newest documents' revisions */
};

struct store_fleet_ops {
	/* One server's record: 1 (*out, with rev), 0 absent, -1. */
	int (*get_server)(struct tes_store *st, uint32_t tenant_id, const char *fqdn,
			  struct store_server *out);
	/* Write *v if its record is still at revision expect (0: absent).  1
	 * written (v->rev is the new revision); 0 it changed meanwhile
	 * (*found says whether there is one, *cur holds it); -1 failed
	 * (store_fleet_cut_off says whether because the store is out of
	 * reach).  A write whose answer was lost is read back: never
	 * "maybe". */
	int (*cas_server)(struct tes_store *st, struct store_server *v, int64_t expect,
			  struct store_server *cur, bool *found);
	/* Delete a server's record if it is still at revision expect.  1
	 * deleted (or already gone), 0 it changed meanwhile, -1. */
	int (*cas_delete_server)(struct tes_store *st, uint32_t tenant_id, const char *fqdn,
				 int64_t expect);
	/* Write tenant t if the stored tenant is still the one this store
	 * last delivered (loaded, watched or written; absent for a new id).
	 * 1 written, 0 changed meanwhile (*found, *cur), -1. */
	int (*cas_tenant)(struct tes_store *st, const struct tes_tenant *t, struct tes_tenant *cur,
			  bool *found);
	/* The local journal (durable when the call returns 0). */
	int (*journal_add)(struct tes_store *st, const struct store_event *e);
	int (*journal_each)(struct tes_store *st, store_event_cb cb, void *ctx);
	int (*journal_remove)(struct tes_store *st, uint64_t id);
	/* A descriptor to poll for reading; then store_fleet_poll. */
	int (*fd)(const struct tes_store *st);
	/* Hand every change others made that has arrived to cb, without
	 * waiting for more.  0, or -1 (logged in the store's error). */
	int (*poll)(struct tes_store *st, store_change_cb cb, void *ctx);
	/* Once every few seconds: keep this appliance's lease, write self
	 * (at most every flush interval or when write_self), and when cut
	 * off, probe.  1 when the store was cut off and is back (reconcile
	 * now), 0, -1 (still cut off or failing). */
	int (*tick)(struct tes_store *st, const struct store_member *self, bool write_self);
	bool (*cut_off)(const struct tes_store *st);
	void (*status)(const struct tes_store *st, struct store_fleet_status *out);
	/* Every appliance that wrote itself, by name. */
	int (*members)(struct tes_store *st, store_member_cb cb, void *ctx);
	/* Stop: revoke the lease (others see this one gone at once). */
	void (*leave)(struct tes_store *st);
};

static inline bool store_shared(const struct tes_store *st)
{
	return st && st->fleet;
}

static inline bool store_fleet_cut_off(const struct tes_store *st)
{
	return st->fleet && st->fleet->cut_off(st);
}

#endif
