/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * A keyed hash for the stack's tables, ISNs and SYN cookies: SipHash-1-3 and
 * SipHash-2-4 (Aumasson and Bernstein, 2012), from the paper's description.
 * The dataplane may not include gateway/, so it has its own copy; the input
 * sizes here are tiny (a 44-byte tuple), which is SipHash's home ground.
 *
 * Senders choose the addresses and ports that index the connection table; a
 * PRF under a random per-process key makes their buckets unpredictable.
 * 1-3 rounds for bucket indices (never shown to the peer); 2-4 for what goes
 * on the wire (ISNs, cookies).
 *
 * Pure functions: any thread.
 */
#ifndef TES_DATAPLANE_STACK_SKHASH_H
#define TES_DATAPLANE_STACK_SKHASH_H

#include <stddef.h>
#include <stdint.h>

struct skhash_key {
	uint64_t k0, k1;
};

void skhash_key_init(struct skhash_key *k, const uint8_t bytes[16]);
uint64_t skhash13(const struct skhash_key *k, const void *data, size_t len);
uint64_t skhash24(const struct skhash_key *k, const void *data, size_t len);

#endif
