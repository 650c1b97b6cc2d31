/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * RSS arithmetic without DPDK: the Toeplitz hash, the one RSS key tesgate
 * programs into ports, and the map from a TCP/IPv4 or TCP/IPv6 4-tuple
 * to the worker
 * that owns it (through the port's RETA when it has one, hash mod the
 * number of workers otherwise).  Pure functions on caller memory: no EAL,
 * no allocation, callable from any thread; a map is read-only once built.
 *
 * Byte order: every address and port argument here is in HOST order, and
 * "source" is the sender of the packet being classified.  The hash input
 * is the Microsoft RSS layout: source address, destination address, source
 * port, destination port, each big-endian.
 */
#ifndef TES_DATAPLANE_DPDK_RSS_H
#define TES_DATAPLANE_DPDK_RSS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/stack/stack.h"

#define DP_RSS_KEY_LEN 40
#define DP_RETA_MAX 2048     /* largest RETA followed (ice has 2048) */
#define DP_RSS_INPUT_LEN 12  /* IPv4 addresses and TCP ports */
#define DP_RSS_INPUT6_LEN 36 /* IPv6 addresses and TCP ports */

/* The key tesgate sets on every port: 0x6d5a repeated.  A key with a
 * 16-bit period makes the hash symmetric (hash(a->b) == hash(b->a)), so
 * both directions of a connection land on one queue.  The only copy. */
extern const uint8_t dp_rss_key[DP_RSS_KEY_LEN];

/* Toeplitz over len bytes of data with a key of keylen bytes; the key must
 * be at least len + 4 bytes.  Bit-serial: for tests and one-off use. */
uint32_t dp_toeplitz(const uint8_t *key, size_t keylen, const uint8_t *data, size_t len);

/* Who owns what.  Built once, then only read (share it between workers). */
struct dp_rss_map {
	unsigned nworkers;  /* at least 1 */
	unsigned reta_size; /* 0: hash % nworkers */
	uint16_t reta[DP_RETA_MAX];
	/* Per input byte position and value, the XOR that byte contributes:
	 * twelve lookups per IPv4 4-tuple, 36 per IPv6 one. */
	uint32_t tab[DP_RSS_INPUT6_LEN][256];
};

/* key: DP_RSS_KEY_LEN bytes; reta: reta_size entries, each < nworkers
 * (reta_size 0: no RETA).  -1 for an invalid argument. */
int dp_rss_map_init(struct dp_rss_map *m, const uint8_t *key, unsigned nworkers,
		    const uint16_t *reta, unsigned reta_size);

/* The hash of a TCP/IPv4 4-tuple (host order) under the map's key. */
uint32_t dp_rss_hash4(const struct dp_rss_map *m, uint32_t saddr, uint32_t daddr, uint16_t sport,
		      uint16_t dport);
/* The hash of a TCP/IPv6 4-tuple (addresses as on the wire, ports in host
 * order) under the map's key: the NIC's RTE_ETH_RSS_NONFRAG_IPV6_TCP input. */
uint32_t dp_rss_hash6(const struct dp_rss_map *m, const uint8_t saddr[16], const uint8_t daddr[16],
		      uint16_t sport, uint16_t dport);
unsigned dp_rss_owner6(const struct dp_rss_map *m, const uint8_t saddr[16], const uint8_t daddr[16],
		       uint16_t sport, uint16_t dport);
/* The worker that owns a hash value / a 4-tuple (host order, source = the
 * sender of the packet). */
unsigned dp_rss_owner_of_hash(const struct dp_rss_map *m, uint32_t hash);
unsigned dp_rss_owner4(const struct dp_rss_map *m, uint32_t saddr, uint32_t daddr, uint16_t sport,
		       uint16_t dport);

/* Ephemeral ports for active opens: 49152..65535. */
#define DP_EPHEMERAL_LO 49152u
#define DP_EPHEMERAL_N 16384u

/* A local port for the active open t (everything but lport filled, IPv4
 * or IPv6) whose replies (raddr:rport -> laddr:lport) are owned by worker
 * index.  *cursor walks the ephemeral range (any start value; advanced
 * past the port returned).  0 when no port in the whole range qualifies
 * or the families are mixed.  This is the stack_io.pick_port of a steered
 * worker. */
uint16_t dp_rss_pick_port(const struct dp_rss_map *m, unsigned index, uint32_t *cursor,
			  const struct stack_tuple *t);

#endif
