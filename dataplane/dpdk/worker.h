/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The poll-mode loop of one worker lcore: one RX/TX queue pair of a port,
 * one stack instance.  The loop makes no system calls: time comes from the
 * TSC, and stopping is a flag another thread (or a signal handler) sets.
 *
 * Several workers on one port (one queue each) share a struct dp_steer:
 * every TCP/IPv4 segment belongs to the worker its 4-tuple hashes to
 * (Toeplitz with dp_rss_key, then the port's RETA when it has hardware RSS,
 * hash % nworkers otherwise).  A worker that receives a segment it does not
 * own passes the mbuf to the owner's ring (multi-producer, single-consumer;
 * a full ring drops and counts); each worker drains its own ring every
 * loop.  ARP and ICMP are handled by the worker that received them, except
 * that a copy of each ARP reply goes to every other worker too, so that
 * every worker's neighbour cache learns the peer (the reply to one
 * worker's request may arrive on another's queue).  No locks, no syscalls.
 */
#ifndef TES_DATAPLANE_DPDK_WORKER_H
#define TES_DATAPLANE_DPDK_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "dataplane/dpdk/port.h"
#include "dataplane/stack/stack.h"

#define DP_BURST 32
#define DP_TX_RETRIES 4

struct rte_mbuf;

struct dp_worker_stats {
	uint64_t rx_pkts, tx_pkts;
	uint64_t tx_drops;    /* frames the queue would not take after retries */
	uint64_t rx_csum_bad; /* frames the NIC marked with a bad checksum */
	uint64_t rx_copied;   /* multi-segment frames linearised */
	uint64_t loops;
	/* Time in loop iterations that received or sent something: the
	 * worker's CPU time at work, as against spinning on empty queues. */
	uint64_t busy_ns;
	/* Software steering (all zero without a dp_steer). */
	uint64_t steered_out; /* received here, handed to the owner's ring */
	uint64_t steered_in;  /* taken from this worker's ring */
	uint64_t steer_drops; /* the owner's ring was full: freed */
	uint64_t arp_shared;  /* copies of ARP replies passed to the others */
};

struct dp_steer;

struct dp_worker {
	const struct dp_port *port;
	uint16_t queue;
	struct rte_mempool *pool;
	struct stack *st;
	uint64_t tsc_hz, tsc0;
	uint64_t ns_mult; /* ns per TSC tick, 32.32 fixed point */
	/* Optional, once per loop iteration before the stack flushes (the
	 * application's own polling). */
	void (*poll)(void *arg, uint64_t now);
	void *poll_arg;
	struct dp_steer *steer; /* NULL: this worker owns every flow */
	unsigned steer_index;
	uint32_t port_cursor; /* walks the ephemeral ports of active opens */
	unsigned ntx;
	struct rte_mbuf *tx[DP_BURST];
	struct dp_worker_stats stats;
};

/* The stack_io to create this worker's stack with (io_ctx: the worker).
 * Its pick_port gives active opens only local ports whose replies this
 * worker owns (dp_rss_pick_port) once dp_worker_set_steer was called;
 * without a steer, a sequence over 49152..65535. */
extern const struct stack_io dp_worker_io;

void dp_worker_init(struct dp_worker *w, const struct dp_port *port, uint16_t queue);
/* Fills the parts of a stack_config the port decides: MAC, MTU and
 * checksum offloads. */
void dp_worker_stack_config(const struct dp_worker *w, struct stack_config *cfg);
/* Nanoseconds on the TSC since dp_worker_init. */
uint64_t dp_worker_now(const struct dp_worker *w);
/* Runs until *stop is true; w->st must be set. */
void dp_worker_run(struct dp_worker *w, const atomic_bool *stop);
/* Sends what is still queued (at shutdown). */
void dp_worker_drain(struct dp_worker *w);
void dp_worker_log_stats(const struct dp_worker *w, FILE *f);

/* --- Software flow steering between the workers of one port --- */

/* One ring per worker (1023 mbufs each, on the port's socket) and the
 * owner map: RETA of the port when p->rss, else hash % nworkers.
 * nworkers must equal p->nb_queues (worker i polls queue i).  Call from
 * the control thread after dp_port_setup; NULL on failure (message on
 * stderr). */
struct dp_steer *dp_steer_create(const struct dp_port *p, unsigned nworkers);
/* After every worker using it has returned from dp_worker_run; frees what
 * is still queued in the rings. */
void dp_steer_free(struct dp_steer *s);
/* Before dp_worker_run (and before the worker's first stack_connect):
 * this worker is worker index (its queue) of s.  Every worker of the port
 * must be set and run, or segments steered to the missing one are
 * dropped when its ring fills. */
void dp_worker_set_steer(struct dp_worker *w, struct dp_steer *s, unsigned index);
/* The worker that owns a TCP/IPv4 segment with this 4-tuple.  HOST byte
 * order; source = the segment's sender (for a connection of ours: the
 * remote address and port as source, ours as destination).  Any thread. */
unsigned dp_steer_owner(const struct dp_steer *s, uint32_t saddr, uint32_t daddr, uint16_t sport,
			uint16_t dport);
/* The owner map (for dp_rss_pick_port and diagnostics). */
const struct dp_rss_map *dp_steer_map(const struct dp_steer *s);

#endif
