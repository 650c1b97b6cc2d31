/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The glue between a transport connection (kio today, the userspace TCP
 * stack later) and an SMTP session: bytes both ways with back-pressure, the
 * engine's hooks (Exchange detection at end of headers, the delivery
 * backend for content), and the seams where enforcement verdicts go.
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
 * Threading: gw_new/gw_free/gw_stats on the main thread; the kio ops run on
 * the worker owning the connection.  Delivery verdicts come back through
 * kio_post, so smtp_message_done() only ever runs on that worker.
 */
#ifndef TES_GATEWAY_CONN_H
#define TES_GATEWAY_CONN_H

#include <stdint.h>

#include "dataplane/kio.h"
#include "enforce/catalog.h"
#include "enforce/build.h"
#include "gateway/delivery.h"
#include "gateway/exdetect.h"
#include "gateway/smtp.h"
#include "gateway/tls.h"

struct gw;
struct enfstate;

/* Delivery latency histogram bounds, in seconds (gw_latency_bounds). */
#define GW_LATENCY_BOUNDS 14
extern const double gw_latency_bounds[GW_LATENCY_BOUNDS];
struct ctlclient;

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
	 * how TLS peers closed: gateway/tls.h */
	struct tls_counters tls;
	/* Delivery latency, end of content to the backend's verdict: counts
	 * per bucket (not cumulative; the last is above every bound) and the
	 * sum in microseconds, so the struct stays all uint64_t. */
	uint64_t latency[GW_LATENCY_BOUNDS + 1];
	uint64_t latency_sum_us;
};

/* NULL when out of memory.  p's pointers must outlive the gateway. */
struct gw *gw_new(const struct gw_params *p);
void gw_free(struct gw *g);
/* The control client, once it exists (it reports gw_stats, so it comes
 * after the gateway).  Before the workers start. */
void gw_set_control(struct gw *g, struct ctlclient *cc);

/* The kio side: ops whose app pointer is the struct gw, and the lines for
 * connections over the limits. */
void gw_kio_ops(struct kio_ops *ops);
const char *gw_refuse_global(const struct gw *g);
const char *gw_refuse_source(const struct gw *g);

/* Summed over the workers; any thread. */
void gw_stats(const struct gw *g, struct gw_stats *out);

#endif
