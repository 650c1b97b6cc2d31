/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The RSS arithmetic (dataplane/dpdk/rss.c) without an EAL: Toeplitz
 * against Microsoft's published verification vectors, the symmetric key,
 * the RETA lookup, and the source-port choice of active opens driven
 * through a real stack's stack_connect.
 */
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

#define IP4(a, b, c, d) ((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 | (d))

static const struct {
	uint32_t daddr;
	uint16_t dport;
	uint32_t saddr;
	uint16_t sport;
	uint32_t ipv4_only, ipv4_tcp;
} ms_vec[] = {
	{ IP4(161, 142, 100, 80), 1766, IP4(66, 9, 149, 187), 2794, 0x323e8fc2, 0x51ccc178 },
	{ IP4(65, 69, 140, 83), 4739, IP4(199, 92, 111, 2), 14230, 0xd718262a, 0xc626b0ea },
	{ IP4(12, 22, 207, 184), 38024, IP4(24, 19, 198, 95), 12898, 0xd2d0a5de, 0x5c2b394a },
	{ IP4(209, 142, 163, 6), 2217, IP4(38, 27, 205, 30), 48228, 0x82989176, 0xafc7327f },
	{ IP4(202, 188, 127, 2), 1303, IP4(153, 39, 163, 191), 44251, 0x5d1809c5, 0x10e828a2 },
};

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static struct dp_rss_map map; /* 200 KB: not on the stack */

static void test_vectors(void)
{
	CHECK(dp_rss_map_init(&map, ms_key, 1, NULL, 0) == 0, "map init");
	for (size_t i = 0; i < sizeof(ms_vec) / sizeof(ms_vec[0]); i++) {
		uint8_t in[12];
		put32(in, ms_vec[i].saddr);
		put32(in + 4, ms_vec[i].daddr);
		in[8] = (uint8_t)(ms_vec[i].sport >> 8);
		in[9] = (uint8_t)ms_vec[i].sport;
		in[10] = (uint8_t)(ms_vec[i].dport >> 8);
		in[11] = (uint8_t)ms_vec[i].dport;
		uint32_t h2 = dp_toeplitz(ms_key, sizeof(ms_key), in, 8);
		uint32_t h4 = dp_toeplitz(ms_key, sizeof(ms_key), in, 12);
		uint32_t ht = dp_rss_hash4(&map, ms_vec[i].saddr, ms_vec[i].daddr, ms_vec[i].sport,
					   ms_vec[i].dport);
		CHECK(h2 == ms_vec[i].ipv4_only, "vector %zu ipv4: %08x want %08x", i, h2,
		      ms_vec[i].ipv4_only);
		CHECK(h4 == ms_vec[i].ipv4_tcp, "vector %zu ipv4/tcp: %08x want %08x", i, h4,
		      ms_vec[i].ipv4_tcp);
		CHECK(ht == ms_vec[i].ipv4_tcp, "vector %zu table: %08x want %08x", i, ht,
		      ms_vec[i].ipv4_tcp);
	}
}

/* Our key: the table form agrees with the bit-serial one, and the hash is
 * the same in both directions of a connection. */
static void test_symmetric_key(void)
{
	CHECK(dp_rss_map_init(&map, dp_rss_key, 4, NULL, 0) == 0, "map init");
	uint64_t x = 0x9e3779b97f4a7c15ull;
	unsigned per_worker[4] = { 0 };
	for (int i = 0; i < 2000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint32_t sa = (uint32_t)x, da = (uint32_t)(x >> 32);
		uint16_t sp = (uint16_t)(x >> 5), dp = (uint16_t)(x >> 21);
		uint8_t in[12];
		put32(in, sa);
		put32(in + 4, da);
		in[8] = (uint8_t)(sp >> 8);
		in[9] = (uint8_t)sp;
		in[10] = (uint8_t)(dp >> 8);
		in[11] = (uint8_t)dp;
		uint32_t h = dp_rss_hash4(&map, sa, da, sp, dp);
		CHECK(h == dp_toeplitz(dp_rss_key, DP_RSS_KEY_LEN, in, 12), "table != serial");
		CHECK(h == dp_rss_hash4(&map, da, sa, dp, sp), "not symmetric for %08x:%u %08x:%u",
		      sa, sp, da, dp);
		per_worker[dp_rss_owner4(&map, sa, da, sp, dp)]++;
	}
	/* Spread: 2000 random tuples over 4 workers, each gets some. */
	for (int i = 0; i < 4; i++)
		CHECK(per_worker[i] > 0, "worker %d owns none of 2000 tuples", i);
}

static void test_reta(void)
{
	uint16_t reta[128];
	for (int i = 0; i < 128; i++)
		reta[i] = (uint16_t)(i % 3 == 0 ? 1 : 0);
	CHECK(dp_rss_map_init(&map, dp_rss_key, 2, reta, 128) == 0, "map init");
	for (uint32_t h = 0; h < 1000; h += 7)
		CHECK(dp_rss_owner_of_hash(&map, h * 2654435761u) == reta[(h * 2654435761u) % 128],
		      "reta lookup");
	/* An entry naming a worker that does not exist is refused. */
	reta[5] = 2;
	CHECK(dp_rss_map_init(&map, dp_rss_key, 2, reta, 128) == -1, "bad reta accepted");
	CHECK(dp_rss_map_init(&map, dp_rss_key, 0, NULL, 0) == -1, "0 workers accepted");
	CHECK(dp_rss_map_init(&map, dp_rss_key, 2, reta, DP_RETA_MAX + 1) == -1,
	      "oversized reta accepted");
}

/* --- Active opens through a real stack --- */

static uint8_t txbuf[2048];
static unsigned worker_index;
static uint32_t cursor;

static uint8_t *io_alloc(void *ctx, uint32_t room, void **pkt)
{
	(void)ctx;
	if (room > sizeof(txbuf))
		return NULL;
	*pkt = txbuf;
	return txbuf;
}

static void io_send(void *ctx, void *pkt, uint32_t len, const struct stack_txinfo *ti)
{
	(void)ctx;
	(void)pkt;
	(void)len;
	(void)ti;
}

static uint16_t io_pick(void *ctx, const struct stack_tuple *t, unsigned attempt)
{
	(void)attempt;
	return dp_rss_pick_port(ctx, worker_index, &cursor, t);
}

static void test_active_open_ports(void)
{
	static const struct stack_io io = { .tx_alloc = io_alloc,
					    .tx_send = io_send,
					    .pick_port = io_pick };
	static const struct stack_app app = { 0 };
	const unsigned nworkers = 3;
	CHECK(dp_rss_map_init(&map, dp_rss_key, nworkers, NULL, 0) == 0, "map init");
	const uint32_t local = IP4(198, 18, 20, 2), remote = IP4(198, 18, 20, 1);
	for (worker_index = 0; worker_index < nworkers; worker_index++) {
		struct stack_config cfg;
		stack_config_defaults(&cfg);
		memcpy(cfg.mac, (uint8_t[6]){ 2, 0, 0, 0, 0, 1 }, 6);
		cfg.naddrs = 1;
		stack_addr_ipv4(&cfg.addrs[0].addr, local);
		cfg.addrs[0].prefix_len = 24;
		cfg.max_conns = 200;
		cfg.rcvbuf = 4096;
		cfg.sndbuf = 4096;
		memset(cfg.hash_key, 7, sizeof(cfg.hash_key));
		memset(cfg.isn_key, 9, sizeof(cfg.isn_key));
		char err[256] = "";
		struct stack *st = stack_create(&cfg, &io, &map, &app, err, sizeof(err));
		CHECK(st != NULL, "stack_create: %s", err[0] ? err : "?");
		if (!st)
			return;
		struct stack_addr ra;
		stack_addr_ipv4(&ra, remote);
		cursor = 12345 * worker_index;
		uint8_t seen[65536 / 8] = { 0 };
		unsigned made = 0;
		for (int i = 0; i < 150; i++) {
			uint64_t now = 1000000ull * (uint64_t)(i + 1);
			struct tcp_conn *c = stack_connect(st, NULL, &ra, 25, NULL, now);
			CHECK(c != NULL, "worker %u: connect %d failed", worker_index, i);
			if (!c)
				break;
			made++;
			const struct stack_tuple *t = tcp_tuple(c);
			CHECK(t->lport >= DP_EPHEMERAL_LO, "port %u below the ephemeral range",
			      t->lport);
			/* The reply, remote -> local, is what the NIC hashes. */
			unsigned owner = dp_rss_owner4(&map, remote, local, 25, t->lport);
			CHECK(owner == worker_index, "worker %u got port %u owned by %u",
			      worker_index, t->lport, owner);
			CHECK(!(seen[t->lport / 8] & (1u << (t->lport % 8))), "port %u twice",
			      t->lport);
			seen[t->lport / 8] |= (uint8_t)(1u << (t->lport % 8));
		}
		CHECK(made == 150, "worker %u: %u connects", worker_index, made);
		const char *why = stack_check(st);
		CHECK(why == NULL, "stack_check: %s", why ? why : "");
		stack_destroy(st);
	}
	/* Families mixed: no port (IPv6 tuples: tests/dpdk/test_rss6.c). */
	struct stack_tuple t6;
	memset(&t6, 0, sizeof(t6));
	t6.laddr.family = STACK_AF_INET6;
	t6.raddr.family = STACK_AF_INET;
	CHECK(dp_rss_pick_port(&map, 0, &cursor, &t6) == 0, "mixed tuple got a port");
	/* A worker index no entry maps to: the whole range is tried, then 0. */
	struct stack_tuple t4;
	memset(&t4, 0, sizeof(t4));
	stack_addr_ipv4(&t4.laddr, local);
	stack_addr_ipv4(&t4.raddr, remote);
	t4.rport = 25;
	CHECK(dp_rss_pick_port(&map, nworkers, &cursor, &t4) == 0, "unowned index got a port");
}

int main(void)
{
	test_vectors();
	test_symmetric_key();
	test_reta();
	test_active_open_ports();
	if (failures) {
		fprintf(stderr, "%d failure(s)\n", failures);
		return 1;
	}
	printf("rss: ok\n");
	return 0;
}
