/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * synbench: what the userspace stack alone spends on a spoofed SYN answered
 * with a cookie, and on a whole handshake through SYN-RCVD and through a
 * cookie, with a virtual port and a virtual clock (no DPDK, no NIC, no
 * application work: the listener refuses each connection at accept, so an
 * RST follows every handshake).  Frames are built once per iteration in the
 * caller, as a NIC would hand them over; the stack checks every checksum in
 * software.  bench/run-synflood.sh runs it next to the end-to-end figures.
 *
 * usage: synbench [-n ITERATIONS] [-r REPEATS]   (the median of REPEATS)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/stack/stack.h"

#define OUR_IP 0xc6120001u /* 198.18.0.1 */

static uint8_t txbuf[2048];
static uint32_t last_isn;

static uint8_t *b_alloc(void *ctx, uint32_t room, void **pkt)
{
	(void)ctx;
	(void)room;
	*pkt = txbuf;
	return txbuf;
}

static void b_send(void *ctx, void *pkt, uint32_t len, const struct stack_txinfo *ti)
{
	(void)ctx;
	(void)pkt;
	(void)len;
	(void)ti;
	const uint8_t *th = txbuf + 34;
	if (th[13] == 0x12) /* SYN-ACK: the ISN the ACK must acknowledge */
		last_isn = (uint32_t)th[4] << 24 | (uint32_t)th[5] << 16 | (uint32_t)th[6] << 8 |
			   th[7];
}

static int b_accept(void *lctx, struct stack_listener *l, struct tcp_conn *c)
{
	(void)lctx;
	(void)l;
	(void)c;
	return 1;
}

static const struct stack_io bench_io = { .tx_alloc = b_alloc, .tx_send = b_send };
static const struct stack_app bench_app = { .accept = b_accept };

static uint32_t sum16(uint32_t s, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		s += (uint32_t)p[n - 1] << 8;
	return s;
}

static uint16_t fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static void w16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void w32(uint8_t *p, uint32_t v)
{
	w16(p, (uint16_t)(v >> 16));
	w16(p + 2, (uint16_t)v);
}

/* A TCP/IPv4 frame to us: a SYN with MSS 1460, or a bare segment. */
static uint32_t frame(uint8_t *f, uint32_t src, uint16_t sport, uint32_t seq, uint32_t ack,
		      uint8_t flags)
{
	static const uint8_t our_mac[6] = { 2, 0, 0, 0, 0, 1 }, peer_mac[6] = { 2, 0, 0, 0, 0, 2 };
	memset(f, 0, 64);
	memcpy(f, our_mac, 6);
	memcpy(f + 6, peer_mac, 6);
	w16(f + 12, 0x0800);
	uint8_t *ip = f + 14, *th = ip + 20;
	uint32_t tl = (flags & 0x02) ? 24 : 20;
	ip[0] = 0x45;
	w16(ip + 2, (uint16_t)(20 + tl));
	w16(ip + 6, 0x4000);
	ip[8] = 64;
	ip[9] = 6;
	w32(ip + 12, src);
	w32(ip + 16, OUR_IP);
	w16(ip + 10, fold(sum16(0, ip, 20)));
	w16(th, sport);
	w16(th + 2, 25);
	w32(th + 4, seq);
	w32(th + 8, ack);
	th[12] = (uint8_t)((tl / 4) << 4);
	th[13] = flags;
	w16(th + 14, 65535);
	if (flags & 0x02) {
		th[20] = 2;
		th[21] = 4;
		w16(th + 22, 1460);
	}
	w16(th + 16, fold(sum16(sum16(0, ip + 12, 8) + 6 + tl, th, tl)));
	return 60;
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

enum mode { HANDSHAKE_SYNRCVD, HANDSHAKE_COOKIE, SPOOFED_SYN, NMODES };

static const char *const mode_name[NMODES] = {
	"handshake through SYN-RCVD (SYN, SYN-ACK, ACK, accept refused, RST)",
	"handshake through a cookie (the same)",
	"spoofed SYN answered with a cookie",
};

/* ns per iteration of one mode over n iterations, on a fresh stack with
 * tesgate's sizes (1000 slots, 64 KB buffers). */
static double run(enum mode m, long n)
{
	struct stack_config cfg;
	stack_config_defaults(&cfg);
	static const uint8_t mac[6] = { 2, 0, 0, 0, 0, 1 };
	memcpy(cfg.mac, mac, 6);
	cfg.naddrs = 1;
	stack_addr_ipv4(&cfg.addrs[0].addr, OUR_IP);
	cfg.addrs[0].prefix_len = 24;
	cfg.max_conns = 1000;
	cfg.rcvbuf = cfg.sndbuf = 65536;
	for (int i = 0; i < 16; i++) {
		cfg.hash_key[i] = (uint8_t)(i + 1);
		cfg.isn_key[i] = (uint8_t)(7 * i + 3);
	}
	char err[256] = "";
	struct stack *st = stack_create(&cfg, &bench_io, NULL, &bench_app, err, sizeof(err));
	if (!st) {
		fprintf(stderr, "synbench: stack_create: %s\n", err[0] ? err : "?");
		exit(1);
	}
	uint8_t f[64];
	uint64_t t = 1000;
	/* Cookies: a backlog of one, held by a half-open connection that stays
	 * for the whole run (the virtual clock moves a microsecond a round). */
	stack_listen(st, NULL, 25, m == HANDSHAKE_SYNRCVD ? 1024 : 1, NULL);
	if (m != HANDSHAKE_SYNRCVD)
		stack_input(st, f, frame(f, 0xc6130001u, 9, 1, 0, 0x02), t);
	double t0 = now_s();
	for (long i = 0; i < n; i++) {
		uint32_t src = 0xc6140000u + (uint32_t)(i % 60000);
		uint16_t sport = (uint16_t)(1024 + (i / 60000) % 60000);
		uint32_t seq = (uint32_t)i * 2654435761u;
		stack_input(st, f, frame(f, src, sport, seq, 0, 0x02), t);
		if (m != SPOOFED_SYN)
			stack_input(st, f, frame(f, src, sport, seq + 1, last_isn + 1, 0x10), t);
		t += 1000;
	}
	double ns = (now_s() - t0) / (double)n * 1e9;
	const struct stack_stats *s = stack_stats(st);
	uint64_t want_cookies = m == HANDSHAKE_SYNRCVD ? 0 : (uint64_t)n;
	uint64_t want_valid = m == HANDSHAKE_COOKIE ? (uint64_t)n : 0;
	uint64_t want_refused = m == SPOOFED_SYN ? 0 : (uint64_t)n;
	if (s->syn_cookies_sent != want_cookies || s->syn_cookies_validated != want_valid ||
	    s->accept_refused != want_refused) {
		fprintf(stderr,
			"synbench: %s did not run as meant (cookies %llu/%llu, refused %llu)\n",
			mode_name[m], (unsigned long long)s->syn_cookies_sent,
			(unsigned long long)s->syn_cookies_validated,
			(unsigned long long)s->accept_refused);
		exit(1);
	}
	stack_destroy(st);
	return ns;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	long n = 1000000;
	int reps = 5, opt;
	while ((opt = getopt(argc, argv, "n:r:")) != -1) {
		if (opt == 'n')
			n = atol(optarg);
		else if (opt == 'r')
			reps = atoi(optarg);
		else {
			fprintf(stderr, "usage: synbench [-n ITERATIONS] [-r REPEATS]\n");
			return 2;
		}
	}
	if (n < 1 || reps < 1 || reps > 99) {
		fprintf(stderr, "synbench: -n and -r must be positive (-r at most 99)\n");
		return 2;
	}
	printf("synbench: %ld iterations, median of %d runs each\n", n, reps);
	for (int m = 0; m < NMODES; m++) {
		double v[99];
		for (int r = 0; r < reps; r++)
			v[r] = run((enum mode)m, n);
		qsort(v, (size_t)reps, sizeof(v[0]), cmp_double);
		printf("  %-70s %6.0f ns\n", mode_name[m], v[reps / 2]);
	}
	return 0;
}
