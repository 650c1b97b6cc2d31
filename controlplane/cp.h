/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tescontrol's internals: the daemon's context and what its modules offer
 * each other.  Not an API for anything outside controlplane/ (tools talk to
 * the daemon over the admin protocol, contract/adminproto.h).
 *
 * Threads: tescontrol's state belongs to one thread, its event loop; every
 * function here is called from it and none is reentrant.  The one other
 * thread is libmicrohttpd's, serving /metrics from a text the event loop
 * publishes (metrics.c); it touches nothing else.
 */
#ifndef TES_CONTROLPLANE_CP_H
#define TES_CONTROLPLANE_CP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <jansson.h>

#include "contract/ctlproto.h"
#include "controlplane/config.h"
#include "controlplane/log.h"
#include "contract/promfmt.h"
#include "controlplane/state/tables.h"
#include "controlplane/store/store.h"
#include "enforce/catalog.h"
#include "enforce/policy.h"

struct cp;

/* Something in the epoll set: fn runs when fd is ready. */
struct cp_watch {
	int fd;
	void (*fn)(struct cp *cp, struct cp_watch *w, uint32_t events);
};

/* Frames waiting to be written to a peer. */
struct cp_outq {
	uint8_t *buf;
	size_t head, len, cap; /* pending octets are buf[head .. head+len) */
};

struct cp_gateway;
struct admin_conn;

enum cp_sighting_class { CP_SIGHT_VULNERABLE, CP_SIGHT_COMPLIANT, CP_SIGHT_IGNORED, CP_SIGHT_N };

/* Since start-up; exported by metrics.c. */
struct cp_counts {
	uint64_t sightings;
	uint64_t first;
	uint64_t redetected;
	uint64_t resolved;
	uint64_t stage_changes;
	uint64_t store_errors;
	uint64_t sightings_by_class[CP_SIGHT_N];
	uint64_t sightings_refused;
	uint64_t stage_entered[TES_STAGE_COUNT + 1]; /* [stage] */
	uint64_t status_entered[TES_STATUS_COUNT];   /* [enum tes_status] */
	/* Issue 13: bounds on what untrusted input can make us keep. */
	uint64_t untrusted_ignored; /* scope connectors: sightings over no connector */
	uint64_t not_tracked;       /* new servers of a tenant at its cap */
	uint64_t untrusted_evicted; /* tenant-0 servers evicted at a cap */
	uint64_t tracked;           /* compliant servers first seen */
	uint64_t forgotten;         /* servers forgotten after forget_after */
	uint64_t timer_armed;       /* timerfd set to a new deadline */
	uint64_t timer_fired;       /* timerfd expiries */
	uint64_t escalations_due;   /* servers evaluated off the queue */
	uint64_t pauses, resumes, resets;
	struct prom_hist commit; /* store commit latency, seconds */
};

struct cp_metrics;

struct cp {
	struct cp_config cfg;
	struct tes_store *store;
	struct cp_tables st;

	/* What is in force: the parsed values and the texts they came from
	 * (the texts are what gateways receive). */
	struct catalog *catalog;
	struct store_doc builds, compliance;
	int64_t catalog_due; /* the next date a compliance rule changes a verdict */
	struct tes_policy policy;
	struct store_doc policy_doc;

	bool test_clock;
	int64_t test_now;

	int epfd;
	struct cp_watch timer; /* escalation: CLOCK_REALTIME timerfd */
	struct cp_watch flush; /* periodic write of dirty servers */
	struct cp_watch sig;   /* signalfd: TERM, INT */
	struct cp_watch gw_listen;
	struct cp_watch admin_listen;
	gid_t admin_gid, gateway_gid;
	bool admin_gid_set, gateway_gid_set;
	int lock_fd;

	struct cp_gateway *gws;
	unsigned ngws;
	unsigned next_conn_id;
	struct admin_conn *admins;

	bool stop;
	int64_t started_at;
	/* The state generation (ctl_msg_set_gen): one more per broadcast. */
	uint64_t gen;
	struct cp_counts counts;
	int64_t armed_due; /* the escalation timer's deadline, INT64_MAX: none */

	struct cp_metrics *metrics; /* NULL: metrics_listen is empty */
	struct cp_watch metrics_tick;
	int evlog_fd; /* -1: no event log */

	int64_t cap_logged_at; /* the last "tenant at its cap" warning */

	struct cp_xdp *xdp;       /* NULL: xdp_interfaces is empty */
	struct cp_watch xdp_tick; /* the one-second mark-and-sweep */
	bool xdp_pending;         /* state changed since the last sync */
};

/* ---- clock.c ---- */
/* The daemon's now: the wall clock, or the test clock when enabled. */
int64_t cp_now(const struct cp *cp);
/* Move the test clock (only with --test-clock): set it, or advance it by
 * seconds.  Runs the escalation for everything now due and tells the
 * gateways.  -1 with msg when refused. */
int cp_clock_move(struct cp *cp, bool advance, int64_t seconds, char *msg, size_t len);
json_t *cp_clock_json(const struct cp *cp);

/* ---- escalation.c ---- */
/* Recompute a server's stage and status at now; log and announce any
 * change since the last announced one (each stage change with the time it
 * fell due), and queue its next change. why explains the evaluation
 * ("start-up", "pause", ...) in the log; NULL for the timer. */
void esc_evaluate(struct cp *cp, uint32_t slot, int64_t now, const char *why);
/* Evaluate every server whose change is due and re-arm the timer; why as
 * for esc_evaluate (NULL when the timer fired on time). */
void esc_run_due(struct cp *cp, const char *why);
/* Evaluate every server (start-up, policy change, clock set backwards). */
void esc_evaluate_all(struct cp *cp, const char *why);
void esc_evaluate_tenant(struct cp *cp, uint32_t tenant_id, const char *why);
int esc_init(struct cp *cp);
void esc_arm(struct cp *cp);
/* Write the servers whose last-seen time or sources changed.  0 or -1. */
int cp_flush_dirty(struct cp *cp);

/* ---- core.c: state changes that touch store, memory and gateways ---- */
int cp_load_state(struct cp *cp);
/* Put the catalog/policy in force at start-up: the store's, else the
 * configured files (then stored).  0 or -1 (logged). */
int cp_load_documents(struct cp *cp);
/* Apply one sighting.  Returns 0 and the change, or -1 with msg when the
 * sighting was refused (unknown tenant, store failure). */
int cp_apply_sighting(struct cp *cp, const struct ctl_sighting *s, enum tes_change *change,
		      char *msg, size_t len);
/* The stage and status to announce for a server at now. */
void cp_server_view(const struct cp *cp, const struct tes_server *s, int64_t now, unsigned *stage,
		    enum tes_status *status);
const struct tes_tenant *cp_server_tenant(struct cp *cp, const struct tes_server *s);
/* Stage/status/next change after a durable change to a server. */
void cp_server_changed(struct cp *cp, uint32_t slot, int64_t now);
/* When the escalation next has to look at a server: its next stage or
 * status change, or when it is to be forgotten. */
int64_t cp_server_next_event(struct cp *cp, const struct tes_server *s, int64_t now);
/* Forget a server now (ageing, eviction): its row goes at the next flush,
 * gateways get a delete.  why names it in the log and the event log. */
void cp_server_forget(struct cp *cp, uint32_t slot, const char *why);
/* Recompute whether a tenant (or every tenant) is at its server cap and
 * tell the gateways when that changed (they then stop reporting servers
 * they have no record of for it: enfstate_sighting_wanted). */
void cp_tenant_cap_check(struct cp *cp, uint32_t tenant_id);
void cp_tenant_caps_check(struct cp *cp);
/* Seconds a server's last-seen time or a source's seen time must move
 * before it is pushed to the gateways on its own. */
int64_t cp_seen_granularity(const struct cp *cp);
/* FNV-1a based version string for a text document. */
void cp_doc_version(const char *a, size_t alen, const char *b, size_t blen, char *out, size_t len);

/* ---- outq (netio.c) ---- */
/* Encode msg as a frame and queue it (msg's reference is consumed).  0 or
 * -1 (too large, no memory). */
int cp_outq_push(struct cp_outq *q, json_t *msg);
/* Write what the socket takes.  1 if everything was written, 0 if some is
 * left, -1 on a write error (errno set). */
int cp_outq_flush(struct cp_outq *q, int fd);
void cp_outq_free(struct cp_outq *q);
/* A listening unix socket at path, mode 0600 or 0660 with group gid,
 * replacing a stale socket file but refusing to steal a live one. */
int cp_listen_unix(const char *path, bool with_group, gid_t gid, char *err, size_t len);
/* Whether the peer of a unix socket may talk to us: root, tescontrol's own
 * user, or (with_group) a member of gid.  -1 with why otherwise. */
int cp_peer_check(int fd, bool with_group, gid_t gid, struct ucred *cred, char *why, size_t len);
/* Append an already encoded frame.  0 or -1 (no memory). */
int cp_outq_push_raw(struct cp_outq *q, const uint8_t *frame, size_t n);
int cp_watch_add(struct cp *cp, struct cp_watch *w, uint32_t events);
int cp_watch_mod(struct cp *cp, struct cp_watch *w, uint32_t events);
void cp_watch_del(struct cp *cp, struct cp_watch *w);

/* ---- gwserver.c ---- */
int gw_init(struct cp *cp);
void gw_shutdown(struct cp *cp);
/* Queue msg to every gateway that said hello (consumes the reference). */
void gw_broadcast(struct cp *cp, json_t *msg);
void gw_push_server(struct cp *cp, uint32_t slot, int64_t now);
void gw_push_tenant(struct cp *cp, const struct tes_tenant *t);
void gw_push_policy(struct cp *cp);
void gw_push_catalog(struct cp *cp);
json_t *gw_status_json(struct cp *cp);
/* Free connections closed during this round of events: the epoll batch may
 * still name them, so they live until the round is over. */
void gw_reap(struct cp *cp);

/* ---- metrics.c: the Prometheus endpoint ---- */
/* Start serving metrics_listen (nothing when empty).  Call with the
 * signals already blocked: the server thread inherits the mask.  0 or -1. */
int cp_metrics_start(struct cp *cp);
/* Render the current values and hand them to the server thread; never
 * waits for a scrape in progress (the next tick retries). */
void cp_metrics_publish(struct cp *cp);
void cp_metrics_stop(struct cp *cp);
/* The store's commit observer (struct tes_store.on_commit); ctx is cp. */
void cp_metrics_commit(void *ctx, double seconds);

/* ---- evlog.c: the enforcement event log (one JSON line per change) ---- */
int cp_evlog_open(struct cp *cp);
/* SIGHUP: reopen the file by name so that a rotated one is let go. */
void cp_evlog_reopen(struct cp *cp);
void cp_evlog_close(struct cp *cp);
/* A change to one server: its state now; extra (consumed, may be NULL)
 * adds members such as from_stage. */
void cp_evlog_server(struct cp *cp, const char *event, const struct tes_server *s, unsigned stage,
		     enum tes_status status, json_t *extra);
/* A change to a tenant (pause, resume). */
void cp_evlog_tenant(struct cp *cp, const char *event, const struct tes_tenant *t, json_t *extra);
/* Any other event: fields (consumed) follow time, epoch and event. */
void cp_evlog_event(struct cp *cp, const char *event, json_t *fields);

/* ---- xdpsync.c: the XDP drop list follows the enforcement state ---- */
struct cp_xdp;
/* Load, attach to xdp_interfaces, start the sync timer.  A refusal is
 * logged and tescontrol goes on without XDP, unless xdp_required: then -1. */
int cp_xdp_start(struct cp *cp);
/* Close the handle; attachments and pins stay (drops survive a restart). */
void cp_xdp_stop(struct cp *cp);
/* Something that may change a verdict happened: sync after this round. */
void cp_xdp_request(struct cp *cp);
/* A program is loaded (and its maps held): the XDP work goes on at run time. */
bool cp_xdp_running(const struct cp *cp);
/* Whether the maps can be read with the capabilities this thread has now:
 * 0, or a negative errno (-EPERM). */
int cp_xdp_probe_maps(struct cp *cp);
void cp_xdp_sync_pending(struct cp *cp);
/* The admin protocol's xdp.* commands; op is what follows "xdp.". */
int cp_xdp_cmd(struct cp *cp, const char *op, const json_t *args, json_t **result, char *err,
	       size_t len);
void cp_xdp_metrics(struct cp *cp, struct prom_buf *b);

/* ---- admin.c ---- */
/* Compliance rules carry dates: when one passes (or always, with force:
 * start-up, a clock set back), re-classify every tracked server's last
 * build and resolve or re-detect those whose verdict changed at that date,
 * as of that date.  Sets catalog_due to the next date.  why: for the log;
 * NULL for the timer. */
void cp_catalog_boundaries(struct cp *cp, bool force, const char *why);
int admin_init(struct cp *cp);
void admin_shutdown(struct cp *cp);
void admin_reap(struct cp *cp);

#endif
