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

#endif
