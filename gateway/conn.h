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
 * Threading: gw_new/gw_free/gw_stats on the main thread; the kio ops run on
 * the worker owning the connection.  Delivery verdicts come back through
 * kio_post, so smtp_message_done() only ever runs on that worker.
 */
#ifndef TES_GATEWAY_CONN_H
#define TES_GATEWAY_CONN_H

#include <stdint.h>

#include "dataplane/kio.h"
#include "enforce/catalog.h"
#include "gateway/delivery.h"
#include "gateway/exdetect.h"
#include "gateway/smtp.h"

struct gw;

struct gw_params {
	const struct smtp_config *smtp;
	const struct exdetect_config *exdetect;
	/* May be NULL (detection is then logged without a verdict).  Read by
	 * every worker; swapping it at run time needs RCU (enforcement issue). */
	const struct catalog *catalog;
	const struct delivery_backend *backend;
	const char *hostname;
	unsigned workers;
};

struct gw_stats {
	uint64_t sessions;
	uint64_t messages_accepted; /* the backend said 250 */
	uint64_t messages_refused;  /* the backend said 4xx/5xx */
	uint64_t exchange_seen;     /* header sections with an Exchange hop */
	uint64_t not_exchange;
	uint64_t orphaned; /* verdicts that found the client gone */
};

/* NULL when out of memory.  p's pointers must outlive the gateway. */
struct gw *gw_new(const struct gw_params *p);
void gw_free(struct gw *g);

/* The kio side: ops whose app pointer is the struct gw, and the lines for
 * connections over the limits. */
void gw_kio_ops(struct kio_ops *ops);
const char *gw_refuse_global(const struct gw *g);
const char *gw_refuse_source(const struct gw *g);

/* Summed over the workers; any thread. */
void gw_stats(const struct gw *g, struct gw_stats *out);

#endif
