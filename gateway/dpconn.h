/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tesgate on DPDK (io = dpdk): the SMTP engine on the userspace TCP stack
 * (dataplane/stack) over one DPDK port, one poll-mode worker.  The glue
 * mirrors gateway/conn.c for kio: greeting on accept, client bytes into
 * smtp_feed, engine output into tcp_send with back-pressure (input is left
 * in the stack's receive buffer, which closes the TCP window, while the
 * engine cannot go on), the same enforcement calls at MAIL FROM and at the
 * end of the headers, and the same delivery backend.
 *
 * Delivery verdicts come back from the backend's threads through a
 * lock-free list the worker takes whole once per loop iteration, so the
 * poll loop needs no eventfd or lock.  The worker is an RCU reader of the
 * enforcement state and reports a quiescent state every few iterations.
 *
 * Not on this path yet: STARTTLS (the engine's starttls must be false), the
 * connection limits and idle/session timeouts of kio (the stack's own idle
 * timeout applies), per-message log lines (a log line is a write(2)).
 *
 * Threading: dpgw_start, dpgw_run and dpgw_finish on the main thread, which
 * is the EAL's main lcore and runs the worker itself.
 */
#ifndef TES_GATEWAY_DPCONN_H
#define TES_GATEWAY_DPCONN_H

#include <stdatomic.h>
#include <stdint.h>

#include "gateway/delivery.h"
#include "gateway/exdetect.h"
#include "gateway/smtp.h"

struct enfstate;
struct ctlclient;
struct dpgw;

struct dpgw_params {
	const struct smtp_config *smtp; /* starttls false */
	const struct exdetect_config *exdetect;
	const struct delivery_backend *backend;
	struct enfstate *st;  /* NULL: nothing enforced */
	struct ctlclient *cc; /* may be NULL */
	const char *eal_args; /* split on spaces */
	const char *addr;     /* A.B.C.D or A.B.C.D/len */
	uint16_t port;
	unsigned max_conns;
	unsigned shutdown_grace_s;
};

struct dpgw_stats {
	uint64_t sessions, closed, messages_accepted, messages_refused, orphaned;
	uint64_t exchange_seen, not_exchange, early_drops;
	uint64_t mail_verdicts[4], header_verdicts[4];
	uint64_t sightings_dropped;
};

/* EAL, port, stack, listener.  NULL (with a message on stderr) on failure;
 * the EAL is then cleaned up again. */
struct dpgw *dpgw_start(const struct dpgw_params *p);
/* The poll loop, until *stop; then 421 to idle sessions, the rest after
 * their message, for at most shutdown_grace_s.  Verdicts may still be
 * outstanding when it returns: stop the backend, then dpgw_finish. */
void dpgw_run(struct dpgw *d, const atomic_bool *stop);
/* After the backend has given every verdict: frees everything, closes the
 * port, cleans up the EAL. */
void dpgw_finish(struct dpgw *d, struct dpgw_stats *out);

#endif
