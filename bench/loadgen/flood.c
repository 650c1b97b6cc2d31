/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tes-loadgen's flood mode: spoofed SYNs at a given rate, from a range of
 * source addresses, to the server's port, on the same port and lcore as the
 * SMTP sessions, so a benchmark can measure legitimate transactions under a
 * SYN flood with one generator.
 *
 * The frames are built straight into mbufs from the worker's pool and go
 * out in its TX burst; they never touch the stack.  What the server answers
 * (SYN-ACKs to addresses that are not ours) reaches the stack, which drops
 * it as not for us (ip_not_ours).  The destination MAC is the server's, as
 * the stack's neighbour cache learned it for the sessions: the flood starts
 * with the first resolution.
 */
#include <string.h>

#include "bench/loadgen/loadgen.h"
#include "dataplane/dpdk/worker.h"

#define FLOOD_FRAME 60
/* A late poll (the lcore preempted on a shared machine) catches up at
 * most this much, 20 ms at 100 000 SYN/s: the average holds through short
 * preemptions, and what is owed beyond is counted behind and never sent, so
 * the flood never bursts by more than this. */
#define FLOOD_CATCHUP 2048

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static uint16_t csum(uint32_t sum, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		sum += (uint32_t)p[n - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

void lg_flood_init(struct lg_flood *f, const struct lg_opts *o, uint64_t seed)
{
	memset(f, 0, sizeof(*f));
	f->rate = o->flood_rate;
	f->src_n = o->flood_plen == 0 ? 0 : 1u << (32 - o->flood_plen); /* 0: 2^32 */
	f->src_base = o->flood_src & (o->flood_plen ? ~(f->src_n - 1) : 0);
	f->dst = o->server;
	f->dport = o->server_port;
	f->rng = seed | 1;
}

/* The i-th source: an odd multiplier walks a power-of-two range in a
 * scattered order and reaches every address once per pass. */
static uint32_t flood_src(const struct lg_flood *f, uint64_t i)
{
	uint32_t k = (uint32_t)(i * 0x9e3779b1u);
	return f->src_base + (f->src_n ? k & (f->src_n - 1) : k);
}

static bool flood_one(struct lg_flood *f, struct dp_worker *w)
{
	void *pkt;
	uint8_t *b = dp_worker_io.tx_alloc(w, FLOOD_FRAME, &pkt);
	if (!b)
		return false;
	uint64_t r = xorshift(&f->rng);
	uint32_t src = flood_src(f, f->sent);
	memset(b, 0, FLOOD_FRAME);
	memcpy(b, f->dmac, 6);
	memcpy(b + 6, f->smac, 6);
	put16(b + 12, 0x0800);
	uint8_t *ip = b + 14, *th = ip + 20;
	ip[0] = 0x45;
	put16(ip + 2, 20 + 24);
	put16(ip + 6, 0x4000);
	ip[8] = 64;
	ip[9] = 6;
	put32(ip + 12, src);
	put32(ip + 16, f->dst);
	put16(ip + 10, csum(0, ip, 20));
	put16(th, (uint16_t)(1024 + (r >> 48) % 64000));
	put16(th + 2, f->dport);
	put32(th + 4, (uint32_t)r);
	th[12] = 6 << 4;
	th[13] = 0x02; /* SYN */
	put16(th + 14, 65535);
	th[20] = 2; /* MSS 1460 */
	th[21] = 4;
	put16(th + 22, 1460);
	uint32_t ps = (src >> 16) + (src & 0xffff) + (f->dst >> 16) + (f->dst & 0xffff) + 6 + 24;
	put16(th + 16, csum(ps, th, 24));
	struct stack_txinfo ti = { .l2_len = 14, .l3_len = 20, .l4_len = 24, .is_tcp = 1 };
	dp_worker_io.tx_send(w, pkt, FLOOD_FRAME, &ti);
	f->sent++;
	return true;
}

void lg_flood_poll(struct lg_flood *f, struct stack *st, struct dp_worker *w, uint64_t now)
{
	if (f->rate <= 0)
		return;
	if (!f->started) {
		struct stack_addr a;
		stack_addr_ipv4(&a, f->dst);
		if (stack_neigh_lookup(st, &a, f->dmac) != 0)
			return;
		memcpy(f->smac, w->port->mac, 6);
		f->started = true;
		f->t0 = now;
	}
	uint64_t due = (uint64_t)((double)(now - f->t0) * f->rate / 1e9);
	uint64_t done = f->sent + f->behind + f->nobuf;
	if (due <= done)
		return;
	uint64_t owed = due - done;
	if (owed > FLOOD_CATCHUP) {
		f->behind += owed - FLOOD_CATCHUP;
		owed = FLOOD_CATCHUP;
	}
	for (; owed > 0; owed--) {
		if (!flood_one(f, w)) {
			/* an empty pool: the SMTP sessions come first, and
			 * what is owed now is not sent */
			f->nobuf += owed;
			return;
		}
	}
}

uint64_t lg_flood_sources(const struct lg_flood *f)
{
	if (f->src_n == 0 || f->sent < f->src_n)
		return f->sent;
	return f->src_n;
}
