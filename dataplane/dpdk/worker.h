/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The poll-mode loop of one worker lcore: one RX/TX queue pair of a port,
 * one stack instance.  The loop makes no system calls: time comes from the
 * TSC, and stopping is a flag another thread (or a signal handler) sets.
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
};

struct dp_worker {
	const struct dp_port *port;
	uint16_t queue;
	struct rte_mempool *pool;
	struct stack *st;
	uint64_t tsc_hz, tsc0;
	/* Optional, once per loop iteration before the stack flushes (the
	 * application's own polling). */
	void (*poll)(void *arg, uint64_t now);
	void *poll_arg;
	unsigned ntx;
	struct rte_mbuf *tx[DP_BURST];
	struct dp_worker_stats stats;
};

/* The stack_io to create this worker's stack with (io_ctx: the worker). */
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

#endif
