/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tesgate's commands on DPDK's telemetry socket (io = dpdk), beside the
 * ones DPDK registers itself (/ethdev/..., /mempool/..., /eal/...), each
 * rendered from groups of the counters registry (registry.h) by their
 * rows' keys:
 *
 *   /tesgate/stats          group "conn": the gateway's counters and the
 *                           connection counters of the stack transport
 *   /tesgate/stack[,N]      group "stack": TCP/IP stack counters, summed
 *                           over the workers, or of worker N; with
 *                           connections by state and the stack's memory
 *   /tesgate/workers        group "dpdk_workers", per worker: poll-loop
 *                           and packet counters
 *   /tesgate/enforcement    groups "enfstate" and "control": the RCU
 *                           enforcement tables' sizes and generations, and
 *                           the control plane's state
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
 * Threading: dptel_start and dptel_stop on the main thread, after the EAL
 * is up and before it goes; dptel_stop waits for a command in progress,
 * and later commands answer that tesgate is stopping (DPDK has no way to
 * unregister a command).
 */
#ifndef TES_GATEWAY_OBSERVE_DPTELEMETRY_H
#define TES_GATEWAY_OBSERVE_DPTELEMETRY_H

struct obs_registry;

/* 0, or -1 (logged) when a command could not be registered; tesgate runs
 * on without them. */
int dptel_start(const struct obs_registry *reg);
void dptel_stop(void);

#endif
