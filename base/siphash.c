/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * SipHash-c-d from the paper: four 64-bit words of state initialised from
 * the key and the ASCII constants "somepseudorandomlygeneratedbytes", c
 * SipRounds per 8-octet message word, the final word carrying the message
 * length modulo 256 in its top octet, then 0xff into v2 and d SipRounds.
 */
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "base/siphash.h"

static inline uint64_t rotl(uint64_t x, unsigned b)
{
	return (x << b) | (x >> (64 - b));
}

/* Read through memcpy so any alignment works; the bytes are assembled
 * little-endian explicitly so the result does not depend on the host. */
static inline uint64_t load_le64(const uint8_t *p)
{
	uint8_t b[8];

	memcpy(b, p, 8);
	return (uint64_t)b[0] | (uint64_t)b[1] << 8 | (uint64_t)b[2] << 16 | (uint64_t)b[3] << 24 |
	       (uint64_t)b[4] << 32 | (uint64_t)b[5] << 40 | (uint64_t)b[6] << 48 |
	       (uint64_t)b[7] << 56;
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

/* c and d are constants at both call sites, so the compiler unrolls the
 * round loops of each instance. */
static inline __attribute__((always_inline)) uint64_t
siphash_cd(const struct siphash_key *key, const void *data, size_t len, unsigned c, unsigned d)
{
	const uint8_t *p = data;
	const uint8_t *end = p + (len & ~(size_t)7);
	struct sipstate s = {
		.v0 = key->k0 ^ UINT64_C(0x736f6d6570736575),
		.v1 = key->k1 ^ UINT64_C(0x646f72616e646f6d),
		.v2 = key->k0 ^ UINT64_C(0x6c7967656e657261),
		.v3 = key->k1 ^ UINT64_C(0x7465646279746573),
	};
	uint64_t m;
	unsigned i;

	for (; p != end; p += 8) {
		m = load_le64(p);
		s.v3 ^= m;
		for (i = 0; i < c; i++)
			sipround(&s);
		s.v0 ^= m;
	}

	/* The last word: the 0..7 octets left, zero-padded, with len mod 256
	 * in the most significant octet. */
	m = (uint64_t)(len & 0xff) << 56;
	switch (len & 7) {
	case 7:
		m |= (uint64_t)p[6] << 48;
		/* fall through */
	case 6:
		m |= (uint64_t)p[5] << 40;
		/* fall through */
	case 5:
		m |= (uint64_t)p[4] << 32;
		/* fall through */
	case 4:
		m |= (uint64_t)p[3] << 24;
		/* fall through */
	case 3:
		m |= (uint64_t)p[2] << 16;
		/* fall through */
	case 2:
		m |= (uint64_t)p[1] << 8;
		/* fall through */
	case 1:
		m |= (uint64_t)p[0];
		break;
	default:
		break;
	}
	s.v3 ^= m;
	for (i = 0; i < c; i++)
		sipround(&s);
	s.v0 ^= m;

	s.v2 ^= 0xff;
	for (i = 0; i < d; i++)
		sipround(&s);
	return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

void siphash_key_from_bytes(struct siphash_key *key, const uint8_t bytes[SIPHASH_KEY_LEN])
{
	key->k0 = load_le64(bytes);
	key->k1 = load_le64(bytes + 8);
}

uint64_t siphash24(const struct siphash_key *key, const void *data, size_t len)
{
	return siphash_cd(key, data, len, 2, 4);
}

uint64_t siphash13(const struct siphash_key *key, const void *data, size_t len)
{
	return siphash_cd(key, data, len, 1, 3);
}

int siphash_key_random(struct siphash_key *key)
{
	uint8_t b[SIPHASH_KEY_LEN];
	size_t got = 0;

	while (got < sizeof(b)) {
		ssize_t r = getrandom(b + got, sizeof(b) - got, 0);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		got += (size_t)r;
	}
	siphash_key_from_bytes(key, b);
	return 0;
}
