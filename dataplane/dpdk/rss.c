/* SPDX-License-Identifier: BSD-3-Clause */
#include "dataplane/dpdk/rss.h"

#include <string.h>

const uint8_t dp_rss_key[DP_RSS_KEY_LEN] = {
	0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
	0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
	0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
};

/* The 32 key bits starting at bit k (bit 0 = the top bit of key[0]). */
static uint32_t key_window(const uint8_t *key, size_t keylen, size_t k)
{
	uint32_t v = 0;
	for (size_t i = 0; i < 32; i++) {
		size_t b = k + i;
		unsigned bit = b / 8 < keylen ? (key[b / 8] >> (7 - b % 8)) & 1u : 0u;
		v = v << 1 | bit;
	}
	return v;
}

uint32_t dp_toeplitz(const uint8_t *key, size_t keylen, const uint8_t *data, size_t len)
{
	uint32_t h = 0;
	for (size_t i = 0; i < len * 8; i++)
		if ((data[i / 8] >> (7 - i % 8)) & 1u)
			h ^= key_window(key, keylen, i);
	return h;
}

int dp_rss_map_init(struct dp_rss_map *m, const uint8_t *key, unsigned nworkers,
		    const uint16_t *reta, unsigned reta_size)
{
	if (nworkers == 0 || reta_size > DP_RETA_MAX || (reta_size && !reta))
		return -1;
	for (unsigned i = 0; i < reta_size; i++)
		if (reta[i] >= nworkers)
			return -1;
	memset(m, 0, sizeof(*m));
	m->nworkers = nworkers;
	m->reta_size = reta_size;
	if (reta_size)
		memcpy(m->reta, reta, reta_size * sizeof(reta[0]));
	/* 36 positions need bits up to 36 * 8 + 31 of the key: the 40 bytes
	 * of DP_RSS_KEY_LEN, as the NICs' IPv6 hash does. */
	for (unsigned pos = 0; pos < DP_RSS_INPUT6_LEN; pos++) {
		uint32_t w[8];
		for (unsigned j = 0; j < 8; j++)
			w[j] = key_window(key, DP_RSS_KEY_LEN, pos * 8 + j);
		for (unsigned v = 0; v < 256; v++) {
			uint32_t x = 0;
			for (unsigned j = 0; j < 8; j++)
				if (v & (0x80u >> j))
					x ^= w[j];
			m->tab[pos][v] = x;
		}
	}
	return 0;
}

uint32_t dp_rss_hash4(const struct dp_rss_map *m, uint32_t saddr, uint32_t daddr, uint16_t sport,
		      uint16_t dport)
{
	const uint8_t in[DP_RSS_INPUT_LEN] = {
		(uint8_t)(saddr >> 24), (uint8_t)(saddr >> 16), (uint8_t)(saddr >> 8),
		(uint8_t)saddr,         (uint8_t)(daddr >> 24), (uint8_t)(daddr >> 16),
		(uint8_t)(daddr >> 8),  (uint8_t)daddr,         (uint8_t)(sport >> 8),
		(uint8_t)sport,         (uint8_t)(dport >> 8),  (uint8_t)dport,
	};
	uint32_t h = 0;
	for (unsigned i = 0; i < DP_RSS_INPUT_LEN; i++)
		h ^= m->tab[i][in[i]];
	return h;
}

uint32_t dp_rss_hash6(const struct dp_rss_map *m, const uint8_t saddr[16], const uint8_t daddr[16],
		      uint16_t sport, uint16_t dport)
{
	uint32_t h = 0;
	for (unsigned i = 0; i < 16; i++)
		h ^= m->tab[i][saddr[i]] ^ m->tab[16 + i][daddr[i]];
	h ^= m->tab[32][sport >> 8] ^ m->tab[33][sport & 0xff];
	h ^= m->tab[34][dport >> 8] ^ m->tab[35][dport & 0xff];
	return h;
}

unsigned dp_rss_owner6(const struct dp_rss_map *m, const uint8_t saddr[16], const uint8_t daddr[16],
		       uint16_t sport, uint16_t dport)
{
	return dp_rss_owner_of_hash(m, dp_rss_hash6(m, saddr, daddr, sport, dport));
}

unsigned dp_rss_owner_of_hash(const struct dp_rss_map *m, uint32_t hash)
{
	/* NICs index the RETA with the low bits of the hash. */
	if (m->reta_size)
		return m->reta[hash % m->reta_size];
	return hash % m->nworkers;
}

unsigned dp_rss_owner4(const struct dp_rss_map *m, uint32_t saddr, uint32_t daddr, uint16_t sport,
		       uint16_t dport)
{
	return dp_rss_owner_of_hash(m, dp_rss_hash4(m, saddr, daddr, sport, dport));
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

uint16_t dp_rss_pick_port(const struct dp_rss_map *m, unsigned index, uint32_t *cursor,
			  const struct stack_tuple *t)
{
	bool v6 = t->laddr.family == STACK_AF_INET6;
	if (t->laddr.family != t->raddr.family || (!v6 && t->laddr.family != STACK_AF_INET))
		return 0;
	uint32_t la = rd32(t->laddr.a), ra = rd32(t->raddr.a);
	/* Bounded by the range: with n workers about one port in n fits. */
	for (uint32_t i = 0; i < DP_EPHEMERAL_N; i++) {
		uint16_t p = (uint16_t)(DP_EPHEMERAL_LO + (*cursor)++ % DP_EPHEMERAL_N);
		unsigned o = v6 ? dp_rss_owner6(m, t->raddr.a, t->laddr.a, t->rport, p)
				: dp_rss_owner4(m, ra, la, t->rport, p);
		if (o == index)
			return p;
	}
	return 0;
}
