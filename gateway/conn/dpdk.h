/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tesgate on DPDK (io = dpdk): the userspace TCP stack (dataplane/stack)
 * over one DPDK port, adapted to the transport seam
 * (gateway/conn/transport.h) beside kernel.c, so this path runs
 * the same gateway as the kernel-socket path: the same SMTP engine,
 * STARTTLS, enforcement, delivery, counters and 421 lines.  This file does
 * what kio does for kernel sockets: connection limits (global and per
 * source, shared by all workers), idle, session and linger deadlines,
 * pause/resume with the unconsumed input left in the stack's receive buffer
 * (whose window then closes), and graceful shutdown.
 *
 * N workers, each a poll-mode lcore with its own RX/TX queue pair, its own
 * stack instance and its own connections.  Delivery verdicts come back from
 * the backend's threads through a lock-free list per worker that the worker
 * takes whole once per loop iteration: no eventfd, no lock, no system call
 * on the worker.  A SYN from a source the enforcement state says to drop is
 * discarded by the stack before any state exists (early_drops).
 *
 * Threading: dpgw_start, dpgw_launch, dpgw_stop, dpgw_wait and dpgw_destroy
 * on the main thread, which must be the EAL's main lcore (it does not poll;
 * the workers run on the EAL's worker lcores, so dpdk_args must give
 * workers + 1 lcores).  The statistics functions may be called from any
 * thread between dpgw_start and dpgw_destroy.  Each worker registers itself
 * as an RCU reader of the enforcement state and reports a quiescent state
 * every few loop iterations.
 */
#ifndef TES_GATEWAY_CONN_DPDK_H
#define TES_GATEWAY_CONN_DPDK_H

#include <stdbool.h>
#include <stdint.h>

#include "gateway/conn/transport.h"

struct gw;
struct dpgw;
struct dp_port;
struct stack_stats;
struct stack_mem;
struct dp_worker_stats;

/* The DPDK path's own settings (io = dpdk; docs/configuration.md). */
struct dpgw_settings {
	char args[256]; /* EAL arguments, split on spaces */
	/* the stack's addresses, IPv4 and IPv6 with prefixes, comma-separated:
	 * "198.18.5.2/24, 2001:db8:5::2/64" */
	char addr[400];
	unsigned port; /* TCP port to accept SMTP on */
	/* FOR TESTS ONLY: packet impairment on every queue, in
	 * dataplane/dpdk/impair.h syntax; "": off */
	char impair[128];
};

struct dpgw_params {
	struct gw *g; /* made with workers = io->workers */
	const struct dpgw_settings *set;
	/* workers, limits (the per-source one per IPv4 address or IPv6 /64)
	 * and timeouts;
	 * listen and cpus are the kernel path's */
	const struct gw_io_settings *io;
	unsigned linger_ms;
	const char *refuse_global, *refuse_source; /* CRLF-terminated */
};

/* EAL, port (one queue pair per worker), stacks, listeners.  Starts no
 * worker.  NULL (with a message on stderr) on failure; the EAL is then
 * cleaned up again. */
struct dpgw *dpgw_start(const struct dpgw_params *p);
/* Start the workers on the EAL's worker lcores.  0, or -1 with a message. */
int dpgw_launch(struct dpgw *d);
/* Stop accepting, 421 to idle sessions (the rest after their message), and
 * close what is left after grace_ms.  Again with a shorter grace: sooner. */
void dpgw_stop(struct dpgw *d, unsigned grace_ms);
/* Wait up to timeout_ms for every worker to exit; true when they have. */
bool dpgw_wait(struct dpgw *d, unsigned timeout_ms);
/* After dpgw_wait() said true and the backend has stopped (every verdict
 * given): runs verdicts that arrived after the workers left, frees
 * everything, closes the port, cleans up the EAL. */
void dpgw_destroy(struct dpgw *d);

/* The same as struct gw_io: start is dpgw_launch, stop dpgw_stop, wait
 * dpgw_wait, destroy dpgw_destroy, stats dpgw_conn_stats. */
void dpgw_io(struct dpgw *d, struct gw_io *out);

/* Any thread.  The same counters kernel.c gives for kernel sockets
 * (accepted, refused, timeouts, ...; bytes are the stack's). */
void dpgw_conn_stats(const struct dpgw *d, struct gw_io_stats *out);

/* Registers the DPDK path's counters (gateway/observe/registry.h): groups
 * "dpdk_port" (tes_dpdk_port_*), "dpdk_mempools" (tes_dpdk_mempool_*),
 * "dpdk_workers" (tes_dpdk_worker_* and the stack's tes_stack_* per worker;
 * /tesgate/workers) and "stack" (every stack counter by its stack_stats.h
 * name; /tesgate/stack).  After dpgw_start; 0, or -1. */
struct obs_registry;
int dpgw_export(struct dpgw *d, struct obs_registry *r);

unsigned dpgw_workers(const struct dpgw *d);
const struct dp_port *dpgw_port(const struct dpgw *d);
/* Any thread; counters read with relaxed atomic loads (a few packets old
 * at most).  stack_mem is the worker's snapshot, taken every ~100 ms. */
void dpgw_stack_stats(const struct dpgw *d, unsigned worker, struct stack_stats *out);
void dpgw_stack_mem(const struct dpgw *d, unsigned worker, struct stack_mem *out);
void dpgw_worker_stats(const struct dpgw *d, unsigned worker, struct dp_worker_stats *out);

#endif
