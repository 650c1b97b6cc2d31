/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The report as a page (docs/tescontrol.8.md, REPORT PAGE): a read-only
 * HTML view of the state, served on the metrics listener (GET /report, and
 * GET /report/tenant/TOKEN for one tenant) and optionally on a listener of
 * its own with TLS (report_listen: the tenant views only).
 *
 * What the page shows besides the state is kept here, durable in the
 * store's records (store/records.h): the messages the gateways refused per
 * server (counters' "servers", docs/control-protocol.md), one sample per
 * tenant and day of its servers per stage (the chart, bounded by
 * report_history_days), and the tenants' report tokens (SHA-256 only).
 *
 * How it is served: like /metrics, the event loop builds an immutable
 * snapshot (report_html.h) when something changed, at most once a second
 * (at once on the test clock and after a token change), and swaps it in
 * under a mutex; the HTTP threads render a page from the snapshot they
 * hold a reference to, and read nothing else of tescontrol's.  A token is
 * checked against the hashes in the snapshot, so a revoked token is
 * refused from the moment `tesctl token revoke` returns.
 *
 * Threads: everything is the event loop's except cp_report_http and the
 * TLS listener's thread, which touch only the published snapshot.
 */
#ifndef TES_CONTROLPLANE_NOTIFY_REPORT_H
#define TES_CONTROLPLANE_NOTIFY_REPORT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <microhttpd.h>

#include "contract/ctlproto.h"
#include "controlplane/loop.h"
#include "controlplane/state/state.h"
#include "controlplane/store/records.h"

struct cp_report_config {
	const char *listen;   /* report_listen: "" for none */
	const char *tls_cert; /* PEM files for it */
	const char *tls_key;
	unsigned history_days; /* samples kept for the chart */
	const char *version;   /* tescontrol's, for the page's footer */
};

/* At most this many report tokens in all. */
#define CP_REPORT_TOKENS_MAX 4096
/* A token: 64 hex digits (256 random bits). */
#define CP_REPORT_TOKEN_LEN 64

struct cp_report;

/* Load the counts, history and tokens from the store and read the TLS
 * files (before privileges are dropped); the timer joins loop.  0, or -1
 * (logged). */
int cp_report_init(struct cp_report **out, const struct cp_report_config *c, struct cp_state *st,
		   struct cp_loop *loop);
/* Serve report_listen, when set (after the drop: it makes a thread).  0,
 * or -1 (logged) for a listen value that is not a numeric host:port; a
 * port that cannot be had is logged and tescontrol goes on without it. */
int cp_report_listen(struct cp_report *r);
/* Write what is pending and free everything. */
void cp_report_stop(struct cp_report *r);

/* State's subscriber (ctx is the struct cp_report). */
void cp_report_on_note(void *ctx, const struct cp_note *n);
/* After a round of events: a history sample and a new snapshot when the
 * state changed (at most once a second on the real clock). */
void cp_report_after_round(struct cp_report *r);

/* A gateway's refused messages of a server (its counters' "servers");
 * counted only for servers on record.  Always 0 (a ctl_server_count_cb). */
int cp_report_add_count(const struct ctl_server_count *c, void *ctx);
/* The counts of one server (0 when none). */
void cp_report_counts(const struct cp_report *r, uint32_t tenant_id, const char *fqdn,
		      uint64_t *throttled, uint64_t *refused);

/* The pages, for the metrics listener's thread (any thread): url under
 * /report. */
enum MHD_Result cp_report_http(void *ctx, struct MHD_Connection *conn, const char *url,
			       const char *method);

/* ---- tokens (the admin commands) ---- */
/* A new token for tenant (which must exist): stored (its hash), in force
 * at once; token gets the 64 hex digits, shown once.  0, or -1 with
 * err. */
int cp_report_token_create(struct cp_report *r, uint32_t tenant_id,
			   char token[CP_REPORT_TOKEN_LEN + 1], struct store_token *out, char *err,
			   size_t errlen);
/* Revoke the token with id; refused from now on.  *out: what it was. */
int cp_report_token_revoke(struct cp_report *r, const char *id, struct store_token *out, char *err,
			   size_t errlen);
/* [{"id","tenant","created","created_unix"}], of one tenant or (0) all. */
json_t *cp_report_token_list(const struct cp_report *r, uint32_t tenant_id);

/* ---- for tests ---- */
/* Build a snapshot of the state now (report_html.h); NULL without
 * memory.  Free with cp_report_snapshot_free. */
struct rpt_snapshot *cp_report_snapshot(const struct cp_report *r);
void cp_report_snapshot_free(struct rpt_snapshot *s);
/* The tenant a token opens, or 0. */
uint32_t cp_report_token_tenant(const struct cp_report *r, const char *token);

#endif
