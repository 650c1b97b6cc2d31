/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * DPDK port layer under the userspace TCP/IP stack: EAL start-up from an
 * argument vector that is checked before DPDK sees it, and one Ethernet port
 * with one RX/TX queue pair per worker lcore.
 *
 * The checks exist because this machine's own NIC is a PCI device: an EAL
 * started without --no-pci (or an explicit allow-list) would claim it and cut
 * the machine off.  Runtime files are kept private to the process (a file
 * prefix, or --in-memory added when neither is given) so parallel tests and
 * killed runs never share or leave hugepage files.
 */
#ifndef TES_DATAPLANE_DPDK_PORT_H
#define TES_DATAPLANE_DPDK_PORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dataplane/dpdk/rss.h"

#define DP_MAX_QUEUES 16
#define DP_MAX_SOCKETS 8

struct rte_mempool;

/* 0 when argv is acceptable to hand to the EAL; otherwise *why says what is
 * missing.  *need_in_memory is set when neither --file-prefix nor
 * --in-memory is present (dp_eal_init then adds --in-memory). */
int dp_eal_args_check(int argc, char *const argv[], bool *need_in_memory, const char **why);

/* Checks argv, then rte_eal_init.  argv[0] is the program name.  0 or -1
 * (with a message on stderr). */
int dp_eal_init(int argc, char *argv[]);
void dp_eal_cleanup(void);

struct dp_port_conf {
	uint16_t port_id;
	uint16_t nb_queues; /* one pair per worker lcore */
	uint16_t nb_rxd, nb_txd;
	unsigned mbufs_per_socket;
	bool no_csum_offload; /* force software checksums even if offered */
};

struct dp_port {
	uint16_t port_id;
	uint16_t nb_queues;
	int socket; /* the port's NUMA node (0 when unknown) */
	uint8_t mac[6];
	/* Checksum offloads in use: both IPv4 and TCP on transmit, or none,
	 * because the stack has one switch for both. */
	bool tx_csum_offload;
	/* Hardware RSS on the TCP/IPv4 4-tuple with dp_rss_key and the RETA
	 * below, both read back and checked after start.  False with one
	 * queue, or when the port has no RSS or no RETA (net_tap reports a
	 * RETA of 0, net_memif none): workers then steer in software. */
	bool rss;
	bool rss6;                  /* ... and on the TCP/IPv6 4-tuple (else: software for IPv6) */
	uint16_t reta_size;         /* entries in reta (0 when !rss) */
	uint16_t reta[DP_RETA_MAX]; /* hash % reta_size -> queue */
	struct rte_mempool *pool[DP_MAX_SOCKETS];
};

/* Configure, start and report the port.  Pools are made for the port's
 * socket and for the socket of every enabled lcore. */
int dp_port_setup(struct dp_port *p, const struct dp_port_conf *conf);
/* The pool for workers on this NUMA node. */
struct rte_mempool *dp_port_pool(const struct dp_port *p, int socket);
/* Port counters (rte_eth_stats) on one line. */
void dp_port_log_stats(const struct dp_port *p, FILE *f);
void dp_port_close(struct dp_port *p);

#endif
