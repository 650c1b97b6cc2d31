/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * SipHash (Aumasson and Bernstein, "SipHash: a fast short-input PRF", 2012),
 * written from the paper's description.
 *
 * Both processes hash keys that senders choose (their source addresses, the
 * server names in their headers) into tables they could otherwise flood
 * with collisions; a PRF under a secret random key makes the bucket of a key
 * unpredictable to them.  SipHash-2-4 is the paper's recommended instance;
 * SipHash-1-3 is the faster one hash tables use (CPython, Rust's std), whose
 * margin is ample when outputs are never shown to the attacker, which is the
 * case for bucket indices.
 *
 * Pure functions over values: any thread, no state.
 */
#ifndef TES_BASE_SIPHASH_H
#define TES_BASE_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

#define SIPHASH_KEY_LEN 16

/* The 128-bit key as the paper's two little-endian words k0 and k1. */
struct siphash_key {
	uint64_t k0, k1;
};

/* k0 from bytes 0..7 and k1 from bytes 8..15, both little-endian, as the
 * paper reads a key given as 16 octets. */
void siphash_key_from_bytes(struct siphash_key *key, const uint8_t bytes[SIPHASH_KEY_LEN]);

/* A secret key from the kernel (getrandom): 0, or -1 with errno.  Blocks
 * only before the kernel's pool is initialised, once at boot. */
int siphash_key_random(struct siphash_key *key);

uint64_t siphash24(const struct siphash_key *key, const void *data, size_t len);
uint64_t siphash13(const struct siphash_key *key, const void *data, size_t len);

#endif
