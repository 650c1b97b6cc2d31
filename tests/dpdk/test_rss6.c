/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The RSS arithmetic over IPv6 (dataplane/dpdk/rss.c) without an EAL:
 * Toeplitz over the 36-byte TCP/IPv6 input against Microsoft's published
 * IPv6 verification vectors, the table form against the bit-serial one,
 * the symmetric key on IPv6 tuples, and active-open port choice for IPv6
 * tuples landing on the calling worker.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/dpdk/rss.h"
#include "dataplane/stack/stack.h"

static int failures;

#define CHECK(cond, ...)                                                     \
	do {                                                                 \
		if (!(cond)) {                                               \
			failures++;                                          \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                        \
			fprintf(stderr, "\n");                               \
		}                                                            \
	} while (0)

/* "Verifying the RSS Hash Calculation", Microsoft NDIS documentation. */
static const uint8_t ms_key[40] = {
	0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
	0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
	0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
};

static const struct {
	const char *daddr;
	uint16_t dport;
	const char *saddr;
	uint16_t sport;
	uint32_t ipv6_only, ipv6_tcp;
} ms_vec6[] = {
	{ "3ffe:2501:200:3::1", 1766, "3ffe:2501:200:1fff::7", 2794, 0x2cc18cd5, 0x40207d3d },
	{ "ff02::1", 4739, "3ffe:501:8::260:97ff:fe40:efab", 14230, 0x0f0c461c, 0xdde51bbf },
	{ "fe80::200:f8ff:fe21:67cf", 38024, "3ffe:1900:4545:3:200:f8ff:fe21:67cf", 44251,
	  0x4b61e985, 0x02d1feef },
};

static struct dp_rss_map map;

static void test_vectors(void)
{
	CHECK(dp_rss_map_init(&map, ms_key, 1, NULL, 0) == 0, "map init");
	for (size_t i = 0; i < sizeof(ms_vec6) / sizeof(ms_vec6[0]); i++) {
		uint8_t in[36];
		inet_pton(AF_INET6, ms_vec6[i].saddr, in);
		inet_pton(AF_INET6, ms_vec6[i].daddr, in + 16);
		in[32] = (uint8_t)(ms_vec6[i].sport >> 8);
		in[33] = (uint8_t)ms_vec6[i].sport;
		in[34] = (uint8_t)(ms_vec6[i].dport >> 8);
		in[35] = (uint8_t)ms_vec6[i].dport;
		uint32_t h2 = dp_toeplitz(ms_key, sizeof(ms_key), in, 32);
		uint32_t h4 = dp_toeplitz(ms_key, sizeof(ms_key), in, 36);
		uint32_t ht = dp_rss_hash6(&map, in, in + 16, ms_vec6[i].sport, ms_vec6[i].dport);
		CHECK(h2 == ms_vec6[i].ipv6_only, "vector %zu ipv6: %08x want %08x", i, h2,
		      ms_vec6[i].ipv6_only);
		CHECK(h4 == ms_vec6[i].ipv6_tcp, "vector %zu ipv6/tcp: %08x want %08x", i, h4,
		      ms_vec6[i].ipv6_tcp);
		CHECK(ht == ms_vec6[i].ipv6_tcp, "vector %zu table: %08x want %08x", i, ht,
		      ms_vec6[i].ipv6_tcp);
	}
}

/* With tesgate's key both directions of an IPv6 connection hash alike, so
 * the NIC puts a SYN and our SYN-ACK's answer on one queue. */
static void test_symmetric(void)
{
	CHECK(dp_rss_map_init(&map, dp_rss_key, 4, NULL, 0) == 0, "map init");
	uint8_t a[16], b[16];
	inet_pton(AF_INET6, "2001:db8::1", a);
	inet_pton(AF_INET6, "fd00::77", b);
	for (unsigned k = 0; k < 2000; k++) {
		a[15] = (uint8_t)k;
		b[7] = (uint8_t)(k * 7);
		uint16_t sp = (uint16_t)(1024 + k * 13), dp = 25;
		CHECK(dp_rss_hash6(&map, a, b, sp, dp) == dp_rss_hash6(&map, b, a, dp, sp),
		      "asymmetric at %u", k);
	}
}

/* The port an IPv6 active open gets makes the replies land on the calling
 * worker, for every worker; mixed families get none. */
static void test_pick_port(void)
{
	uint16_t r[128];
	for (unsigned i = 0; i < 128; i++)
		r[i] = (uint16_t)(i % 3);
	CHECK(dp_rss_map_init(&map, dp_rss_key, 3, r, 128) == 0, "map init");
	uint8_t l[16], rem[16];
	inet_pton(AF_INET6, "2001:db8::1", l);
	inet_pton(AF_INET6, "2001:db8:5::25", rem);
	struct stack_tuple t;
	memset(&t, 0, sizeof(t));
	stack_addr_ipv6(&t.laddr, l);
	stack_addr_ipv6(&t.raddr, rem);
	t.rport = 25;
	for (unsigned w = 0; w < 3; w++) {
		uint32_t cur = 12345u * w;
		for (unsigned k = 0; k < 200; k++) {
			uint16_t p = dp_rss_pick_port(&map, w, &cur, &t);
			CHECK(p >= DP_EPHEMERAL_LO, "no port for worker %u", w);
			CHECK(dp_rss_owner6(&map, rem, l, 25, p) == w, "port %u not worker %u's", p,
			      w);
		}
	}
	stack_addr_ipv4(&t.raddr, 0xc6120005u);
	uint32_t cur = 0;
	CHECK(dp_rss_pick_port(&map, 0, &cur, &t) == 0, "mixed families got a port");
}

int main(void)
{
	test_vectors();
	test_symmetric();
	test_pick_port();
	if (failures) {
		fprintf(stderr, "%d failures\n", failures);
		return 1;
	}
	printf("rss6: all passed\n");
	return 0;
}
