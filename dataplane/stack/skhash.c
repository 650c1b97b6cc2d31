/* SPDX-License-Identifier: BSD-3-Clause */
#include "dataplane/stack/skhash.h"

#include <string.h>

static inline uint64_t rotl(uint64_t x, unsigned b)
{
	return (x << b) | (x >> (64 - b));
}

static inline uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

struct sipstate {
	uint64_t v0, v1, v2, v3;
};

static inline void sipround(struct sipstate *s)
{
	s->v0 += s->v1;
	s->v1 = rotl(s->v1, 13);
	s->v1 ^= s->v0;
	s->v0 = rotl(s->v0, 32);
	s->v2 += s->v3;
	s->v3 = rotl(s->v3, 16);
	s->v3 ^= s->v2;
	s->v0 += s->v3;
	s->v3 = rotl(s->v3, 21);
	s->v3 ^= s->v0;
	s->v2 += s->v1;
	s->v1 = rotl(s->v1, 17);
	s->v1 ^= s->v2;
	s->v2 = rotl(s->v2, 32);
}

void skhash_key_init(struct skhash_key *k, const uint8_t bytes[16])
{
	k->k0 = le64(bytes);
	k->k1 = le64(bytes + 8);
}

static uint64_t sip(const struct skhash_key *k, const void *data, size_t len, unsigned c,
		    unsigned d)
{
	const uint8_t *p = data;
	/* "somepseudorandomlygeneratedbytes", the paper's constants. */
	struct sipstate s = {
		k->k0 ^ 0x736f6d6570736575ULL,
		k->k1 ^ 0x646f72616e646f6dULL,
		k->k0 ^ 0x6c7967656e657261ULL,
		k->k1 ^ 0x7465646279746573ULL,
	};
	size_t full = len & ~(size_t)7;
	for (size_t i = 0; i < full; i += 8) {
		uint64_t m = le64(p + i);
		s.v3 ^= m;
		for (unsigned r = 0; r < c; r++)
			sipround(&s);
		s.v0 ^= m;
	}
	uint8_t last[8] = { 0 };
	memcpy(last, p + full, len - full);
	uint64_t m = le64(last) | ((uint64_t)(len & 0xff) << 56);
	s.v3 ^= m;
	for (unsigned r = 0; r < c; r++)
		sipround(&s);
	s.v0 ^= m;
	s.v2 ^= 0xff;
	for (unsigned r = 0; r < d; r++)
		sipround(&s);
	return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

uint64_t skhash13(const struct skhash_key *k, const void *data, size_t len)
{
	return sip(k, data, len, 1, 3);
}

uint64_t skhash24(const struct skhash_key *k, const void *data, size_t len)
{
	return sip(k, data, len, 2, 4);
}
