/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * What tescontrol keeps beside the enforcement state, as typed records
 * over the store's three record operations (store.h: put_record,
 * delete_record, load_records): a collection of JSON documents by key.
 * An implementation of store.h provides those three and gets every type
 * below; the SQLite store keeps them in one table (records), an etcd store
 * under a key prefix per collection.  Nothing here knows which.
 *
 *   collection  key                 value
 *   contact     TENANT              a tenant's notice contacts
 *   notice      ID                  one notice and its deliveries (the journal)
 *   token       ID                  a report token: its tenant and SHA-256
 *   count       TENANT/FQDN-KEY     throttled and refused messages of a server
 *   history     TENANT/DAY          servers per stage on a day (the chart)
 *
 * Each call is one record operation, so it has the store's guarantees
 * (durable on return, or with the enclosing store_commit).  A record that
 * does not decode fails its load with the collection and key named.
 *
 * Threads: as store.h (the store's one thread).
 */
#ifndef TES_CONTROLPLANE_STORE_RECORDS_H
#define TES_CONTROLPLANE_STORE_RECORDS_H

#include <stdbool.h>
#include <stdint.h>

#include "controlplane/store/store.h"

#define STORE_COLL_CONTACT "contact"
#define STORE_COLL_NOTICE "notice"
#define STORE_COLL_TOKEN "token"
#define STORE_COLL_COUNT "count"
#define STORE_COLL_HISTORY "history"

/* ---- notice contacts (one record per tenant) ---- */

#define STORE_MAIL_MAX 8
#define STORE_URL_MAX 1024
#define STORE_ADDR_MAX 256
#define STORE_SECRET_MAX 256

struct store_contacts {
	uint32_t tenant_id;
	unsigned days_before;          /* notices come this many days before a date */
	char webhook[STORE_URL_MAX];   /* "" : none */
	char secret[STORE_SECRET_MAX]; /* the webhook's HMAC-SHA256 key */
	unsigned nmail;
	char mail[STORE_MAIL_MAX][STORE_ADDR_MAX];
	/* tescontrol's clock when they were set: dates before it get no
	 * notice (nobody asked to be told of them then). */
	int64_t since;
};

typedef int (*store_contacts_cb)(const struct store_contacts *c, void *ctx);
int store_put_contacts(struct tes_store *st, const struct store_contacts *c);
int store_delete_contacts(struct tes_store *st, uint32_t tenant_id);
int store_load_contacts(struct tes_store *st, store_contacts_cb cb, void *ctx);

/* ---- the notice journal ---- */

enum store_notice_kind {
	STORE_NOTICE_THROTTLE, /* days before throttling starts */
	STORE_NOTICE_BLOCK,    /* days before blocking starts */
	STORE_NOTICE_RESOLVED, /* the server was resolved */
	STORE_NOTICE_KINDS,
};
/* "throttle", "block", "resolved"; -1 for anything else. */
const char *store_notice_kind_name(enum store_notice_kind k);
int store_notice_kind_parse(const char *s);

/* One target of a notice: the webhook, or one mail recipient. */
struct store_delivery {
	bool mail;
	char target[STORE_URL_MAX]; /* the URL, or the address */
	bool done;                  /* delivered: a 2xx, or 250 after DATA */
	bool expired;               /* given up (notice_expire_days) */
	uint32_t attempts;
	int64_t last_attempt; /* real time */
	int64_t done_at;      /* real time */
	char last_error[256];
};

#define STORE_DELIVERIES_MAX (1 + STORE_MAIL_MAX)
#define STORE_NOTICE_ID_LEN 32 /* hex digits */

struct store_notice {
	char id[STORE_NOTICE_ID_LEN + 1];
	uint32_t tenant_id;
	char fqdn[TES_FQDN_MAX];
	enum store_notice_kind kind;
	int64_t date;    /* throttling or blocking starts, or the resolution */
	int64_t due;     /* when it became due, by tescontrol's clock */
	int64_t created; /* real time it was journaled */
	char *body;      /* the JSON sent, every time the same (malloc'd) */
	char secret[STORE_SECRET_MAX];
	unsigned ndeliveries;
	struct store_delivery d[STORE_DELIVERIES_MAX];
};

/* Whether every delivery is done or expired. */
bool store_notice_finished(const struct store_notice *n);
void store_notice_free(struct store_notice *n);

/* The callback gets a notice it may keep: it owns n->body afterwards (and
 * frees it with store_notice_free or free). */
typedef int (*store_notice_cb)(struct store_notice *n, void *ctx);
int store_put_notice(struct tes_store *st, const struct store_notice *n);
int store_delete_notice(struct tes_store *st, const char *id);
int store_load_notices(struct tes_store *st, store_notice_cb cb, void *ctx);

/* ---- report tokens ---- */

#define STORE_TOKEN_ID_LEN 12 /* hex digits */

struct store_token {
	char id[STORE_TOKEN_ID_LEN + 1];
	uint32_t tenant_id;
	uint8_t sha256[32]; /* of the token: the token itself is never kept */
	int64_t created;    /* tescontrol's clock */
};

typedef int (*store_token_cb)(const struct store_token *t, void *ctx);
int store_put_token(struct tes_store *st, const struct store_token *t);
int store_delete_token(struct tes_store *st, const char *id);
int store_load_tokens(struct tes_store *st, store_token_cb cb, void *ctx);

/* ---- messages refused per server (from the gateways' counters) ---- */

struct store_count {
	uint32_t tenant_id;
	char fqdn[TES_FQDN_MAX]; /* as the server is on record */
	uint64_t throttled;      /* 450 4.7.230 */
	uint64_t refused;        /* 550 5.7.230, or dropped */
};

typedef int (*store_count_cb)(const struct store_count *c, void *ctx);
int store_put_count(struct tes_store *st, const struct store_count *c);
int store_delete_count(struct tes_store *st, uint32_t tenant_id, const char *fqdn);
int store_load_counts(struct tes_store *st, store_count_cb cb, void *ctx);

/* ---- servers per stage, one sample per tenant and day ---- */

/* stages 1..8 (Reporting, Throttling, Blocking), then Paused, Stale,
 * Resolved */
#define STORE_HISTORY_SERIES 11
#define STORE_HISTORY_PAUSED 8
#define STORE_HISTORY_STALE 9
#define STORE_HISTORY_RESOLVED 10

struct store_history {
	uint32_t tenant_id;
	int64_t day; /* days since the epoch, tescontrol's clock */
	uint32_t n[STORE_HISTORY_SERIES];
};

typedef int (*store_history_cb)(const struct store_history *h, void *ctx);
int store_put_history(struct tes_store *st, const struct store_history *h);
int store_delete_history(struct tes_store *st, uint32_t tenant_id, int64_t day);
int store_load_history(struct tes_store *st, store_history_cb cb, void *ctx);

#endif
