/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The glue between a transport connection and an SMTP session: bytes both
 * ways with back-pressure, the engine's hooks (Exchange detection at end of
 * headers, the delivery backend for content), and the seams where
 * enforcement verdicts go.  It runs over the transport seam of
 * gateway/conn/transport.h and knows no transport: kernel.c (kio) and
 * dpdk.c (the userspace stack) are the two beside it.
 *
 * Back-pressure: reading stops while the engine cannot take input (its
 * output is full, or it waits for a delivery verdict) and resumes when that
 * clears; the transport keeps what was not consumed.  SMTP_CLOSE closes the
 * connection once the last reply is sent.
 *
 * STARTTLS: the 220 goes out in plaintext, whatever the client sent behind
 * the command is dropped, and from then on a struct tls_conn sits between
 * the transport and the engine (ciphertext in and out, plaintext to and
 * from the engine).  The same back-pressure holds through it: the TLS
 * layer's bounded queues fill, and reading stops.
 *
 * The transport ops may be called from inside every gw_conn_* call, so
 * resume must not re-enter gw_conn_data synchronously (both transports
 * offer the input again from their loop).
 *
 * Threading: gw_new/gw_free/gw_set_control on the main thread before the
 * workers start; gw_stats on any thread.  Every gw_conn_* call runs on the
 * worker owning the connection, which must be a registered RCU reader of
 * the enforcement state (gw_worker_start) and online while it calls them.
 * Delivery verdicts come back through the transport's post, so
 * smtp_message_done() only ever runs on that worker.
 */
#ifndef TES_GATEWAY_CONN_CONN_H
#define TES_GATEWAY_CONN_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "enforce/catalog.h"
#include "enforce/build.h"
#include "gateway/conn/transport.h"
#include "gateway/delivery/delivery.h"
#include "gateway/session/exdetect.h"
#include "gateway/session/smtp.h"
#include "gateway/session/tls.h"

struct gw;
struct enfstate;
struct verdictlog;
struct tes_addr;

/* Delivery latency histogram bounds, in seconds (gw_latency_bounds). */
#define GW_LATENCY_BOUNDS 14
extern const double gw_latency_bounds[GW_LATENCY_BOUNDS];
struct ctlclient;

/* The session glue's settings (docs/configuration.md). */
struct gw_settings {
	/* Slow clients: a client must send min_data_rate octets a second on
	 * average over each window of min_data_rate_window seconds (time
	 * waiting for a delivery verdict starts a new window); 0: no minimum.
	 * Checked when input arrives or output drains, so a client that sends
	 * nothing at all is left to the idle timeout. */
	unsigned min_data_rate;
	unsigned min_data_rate_window;
};

struct gw_params {
	const struct smtp_config *smtp;
	const struct exdetect_config *exdetect;
	/* May be NULL (detection is then logged without a verdict).  Read by
	 * every worker; swapping it at run time needs RCU (enforcement issue). */
	const struct catalog *catalog;
	const struct delivery_backend *backend;
	/* Enforcement: the RCU state the workers decide from and the control
	 * client that feeds it and takes sightings.  Both NULL: detection is
	 * logged, nothing is enforced. */
	struct enfstate *st;
	struct ctlclient *cc;
	/* STARTTLS: NULL when TLS is not configured (the engine then does not
	 * offer it).  Shared by the workers; main may reload it meanwhile. */
	struct tls_server_ctx *tls;
	const char *hostname;
	unsigned workers;
	/* verdict_log: one record per throttle, block or drop verdict, pushed
	 * from the worker (gateway/observe/verdictlog.h); NULL: off.  One ring per
	 * worker, so made with at least workers rings. */
	struct verdictlog *verdicts;
	struct gw_settings set;
};

struct gw_stats {
	uint64_t sessions;
	uint64_t smtp_commands;     /* command lines the engine read */
	uint64_t smtp_replies[6];   /* replies sent, by class: [2] 2xx ... [5] 5xx */
	uint64_t messages_accepted; /* the backend said 250 */
	uint64_t messages_refused;  /* the backend said 4xx/5xx */
	uint64_t exchange_seen;     /* header sections with an Exchange hop */
	uint64_t not_exchange;
	uint64_t orphaned;    /* verdicts that found the client gone */
	uint64_t early_drops; /* connections from "drop" sources, closed unanswered */
	/* enforcement verdicts: at MAIL FROM (known sources) and at the end of
	 * the headers (every Exchange message), by action */
	uint64_t mail_verdicts[4];        /* enum tes_action */
	uint64_t header_verdicts[4];      /* enum tes_action */
	uint64_t family[EX_FAMILY_COUNT]; /* Exchange messages by product family */
	uint64_t sightings_dropped;       /* the control client's ring was full */
	uint64_t tls_starts;              /* STARTTLS accepted, TLS connection made */
	/* handshakes (full, resumed, failed and why), client certificates,
	 * how TLS peers closed: gateway/session/tls.h */
	struct tls_counters tls;
	/* Delivery latency, end of content to the backend's verdict: counts
	 * per bucket (not cumulative; the last is above every bound) and the
	 * sum in microseconds, so the struct stays all uint64_t. */
	uint64_t latency[GW_LATENCY_BOUNDS + 1];
	uint64_t latency_sum_us;
	uint64_t slow_closed; /* closed for sending below min_data_rate */
	uint64_t no_space;    /* 452 4.3.1: the delivery backend's storage floor */
};

struct gw_conn;

/* A connection was accepted: the session (its greeting is written at once),
 * or NULL when refused; *refuse is then the line to send, or NULL (a
 * "drop" source, counted in early_drops: close without a word). */
struct gw_conn *gw_conn_open(struct gw *g, const struct gw_transport *tp, void *tc, void *tw,
			     unsigned worker, const struct sockaddr_storage *peer,
			     const char **refuse);
/* Input; how much was consumed (the transport keeps the rest). */
size_t gw_conn_data(struct gw_conn *gc, const uint8_t *p, size_t n);
/* Output room was freed after a write that took less than asked. */
void gw_conn_writable(struct gw_conn *gc);
/* A deadline passed: the session says its 421 (if it can); the transport
 * then closes after the output, bounded by a linger time. */
void gw_conn_timeout(struct gw_conn *gc, enum gw_timeout which);
/* A graceful shutdown began. */
void gw_conn_shutdown(struct gw_conn *gc);
/* The transport is gone; tc is not used again.  gc is freed here, or when
 * an outstanding verdict arrives.  why: GW_CLOSE_PEER when the client
 * closed (the TLS layer counts how), otherwise only logged. */
void gw_conn_closed(struct gw_conn *gc, enum gw_close_reason why);

/* A delivery verdict is outstanding: a transport asked to close holds its
 * FIN back (within its linger time) so the verdict's reply still goes out. */
bool gw_conn_waiting(const struct gw_conn *gc);

/* Worker life cycle, on the worker's thread: register as an RCU reader
 * before the first gw_conn_* call, report a quiescent state regularly (a
 * polling worker), or go offline while it may sleep and online again (a
 * worker that blocks in epoll_wait: its sleep is its quiescent state),
 * unregister at the end. */
void gw_worker_start(struct gw *g);
void gw_worker_quiescent(struct gw *g);
void gw_worker_offline(struct gw *g);
void gw_worker_online(struct gw *g);
void gw_worker_stop(struct gw *g);
/* A "drop" source (the enforcement state says close it unanswered); any
 * registered RCU reader, online. */
bool gw_source_drop(struct gw *g, const struct tes_addr *src);
/* A connection refused before any state existed (the stack's early drop). */
void gw_count_early_drop(struct gw *g, unsigned worker);

/* NULL when out of memory.  p's pointers must outlive the gateway. */
struct gw *gw_new(const struct gw_params *p);
void gw_free(struct gw *g);
/* The control client, once it exists (it reports gw_stats, so it comes
 * after the gateway).  Before the workers start. */
void gw_set_control(struct gw *g, struct ctlclient *cc);

/* The lines a transport writes to connections over its limits (CRLF
 * terminated, at most GW_LINE_MAX). */
const char *gw_refuse_global(const struct gw *g);
const char *gw_refuse_source(const struct gw *g);

/* Summed over the workers; any thread. */
void gw_stats(const struct gw *g, struct gw_stats *out);

/* Registers group "conn" (gateway/observe/registry.h): the transport's
 * connection counters (io's) and the sessions' SMTP, enforcement and TLS
 * counters.  io must outlive the registry's readers (main may swap its
 * ops for a frozen copy once the transport is gone).  0, or -1. */
struct obs_registry;
int gw_export(struct gw *g, const struct gw_io *io, struct obs_registry *r);

#endif
