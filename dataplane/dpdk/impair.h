/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Seeded packet impairment on a port's queues, for tests: loss, reordering,
 * duplication and corruption, in the receive and the transmit direction, as
 * ethdev RX/TX callbacks (rte_eth_add_rx_callback/add_tx_callback), so the
 * worker and the stack above run unchanged.  The kernel here has no netem;
 * this stands in for it.
 *
 * Decisions come from a PRNG seeded with (seed, queue, direction) and
 * drawn a fixed number of times per packet: the same packets in the same
 * order meet the same fate.
 *
 * - loss: the packet is freed.
 * - reorder: the packet is held and released after the next 1..hold
 *   packets of that direction, or at the first poll that brings none (the
 *   queue went idle), or 1 ms after it was held: nothing is held for ever.
 * - dup: a copy (rte_pktmbuf_copy, from the packet's own pool) follows it.
 * - corrupt: one bit flips in the IPv4 or IPv6 payload (TCP header or data), so the
 *   receiver's checksum catches it.  On transmit with checksum offload the
 *   checksums are first computed in software and the offload flags cleared,
 *   because a checksum filled in after the flip would hide it.  On receive
 *   the PMD's checksum flags are reset to "unknown".
 *
 * Transmit contract: a queue with TX impairment takes over every packet
 * given to rte_eth_tx_burst: it sends what survives itself (with a nested
 * rte_eth_tx_burst), puts NULL in every slot and returns 0.  dp_worker's TX
 * path treats NULL slots as sent; any other caller must do the same.  An
 * idle TX queue releases held packets only when rte_eth_tx_burst is called,
 * so the worker calls it with no packets while dp_impair_tx_pending().
 *
 * Threads: attach, detach and the stats of a queue from the control thread
 * while no worker polls that queue (before dp_worker_run, after it
 * returns); the callbacks run on the queue's worker.
 */
#ifndef TES_DATAPLANE_DPDK_IMPAIR_H
#define TES_DATAPLANE_DPDK_IMPAIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dataplane/dpdk/port.h"

#define DP_IMPAIR_HOLD_MAX 8 /* packets held back at once, per direction */
#define DP_IMPAIR_MAX_PORTS 8

struct dp_impair_conf {
	double loss, reorder, dup, corrupt; /* per packet, 0..1 each */
	uint64_t seed;
	unsigned hold; /* reorder: released after 1..hold later packets (default 2) */
	bool rx, tx;   /* directions (default both) */
};

/* Per direction of one queue. */
struct dp_impair_stats {
	uint64_t packets; /* seen by the callback */
	uint64_t dropped, reordered, duplicated, corrupted;
	uint64_t dup_failed; /* no mbuf for the copy, or no room in the burst */
	uint64_t tx_refused; /* transmit: the PMD would not take them; freed */
};

/* "loss=0.05,reorder=0.05,dup=0.01,corrupt=0.001,seed=42[,hold=N][,dir=rx|tx|both]".
 * Keys in any order, each at most once; missing ones are 0 (seed 0, hold
 * 2, both directions).  0 with *out filled, or -1 with a message in err
 * (errlen bytes, always terminated). */
int dp_impair_parse(const char *spec, struct dp_impair_conf *out, char *err, size_t errlen);

/* Install the callbacks on queue of port p (started).  At most one
 * attachment per queue.  0, or -1 with a message on stderr. */
int dp_impair_attach(const struct dp_port *p, uint16_t queue, const struct dp_impair_conf *c);
/* Remove the callbacks and free what is held.  No-op when not attached.
 * dp_port_close does this for every queue. */
void dp_impair_detach(const struct dp_port *p, uint16_t queue);
/* Zeroes when not attached; either pointer may be NULL. */
void dp_impair_stats(const struct dp_port *p, uint16_t queue, struct dp_impair_stats *rx,
		     struct dp_impair_stats *tx);
void dp_impair_log_stats(const struct dp_port *p, uint16_t queue, FILE *f);
/* Packets held on the TX side of the queue (the worker's loop asks; cheap,
 * worker thread only). */
bool dp_impair_tx_pending(uint16_t port_id, uint16_t queue);

#endif
