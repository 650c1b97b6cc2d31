/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tesgate's commands on DPDK's telemetry socket (io = dpdk), beside the
 * ones DPDK registers itself (/ethdev/..., /mempool/..., /eal/...):
 *
 *   /tesgate/stats          the gateway's counters (gw_stats) and the
 *                           connection counters of the stack transport
 *   /tesgate/stack[,N]      TCP/IP stack counters, summed over the workers,
 *                           or of worker N; with connections by state and
 *                           the stack's memory
 *   /tesgate/workers        per worker: poll-loop and packet counters
 *   /tesgate/enforcement    the RCU enforcement tables' sizes and
 *                           generations, and the control plane's state
 *
 * Query with `dpdk-telemetry.py -f PREFIX` (Debian package dpdk-dev) or
 * any client of the v2 socket, RUNTIME_DIR/dpdk_telemetry.v2.  The socket
 * exists only when the EAL has a runtime directory: with --in-memory, give
 * a --file-prefix too (docs/telemetry.md).
 *
 * The callbacks run on DPDK's telemetry thread and only read counters the
 * way the Prometheus endpoint does (relaxed loads), so a query never slows
 * a worker.
 *
 * Threading: dptel_start and dptel_stop on the main thread, after
 * dpgw_start and before dpgw_destroy; dptel_stop waits for a command in
 * progress, and later commands answer that tesgate is stopping (DPDK has no
 * way to unregister a command).
 */
#ifndef TES_GATEWAY_OBSERVE_DPTELEMETRY_H
#define TES_GATEWAY_OBSERVE_DPTELEMETRY_H

struct dpgw;
struct gw;
struct enfstate;
struct ctlclient;

struct dptel_src {
	const struct dpgw *d;
	const struct gw *g;
	const struct enfstate *st;  /* NULL: none */
	const struct ctlclient *cc; /* NULL: no control plane */
};

/* 0, or -1 (logged) when a command could not be registered; tesgate runs
 * on without them. */
int dptel_start(const struct dptel_src *src);
void dptel_stop(void);

#endif
