/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target for the userspace TCP/IP stack: arbitrary frames into a
 * stack with a virtual port and a virtual clock, a listener on port 25 and
 * an application that echoes what it reads.  The stack has an IPv4 and an
 * IPv6 address (198.18.0.1, 2001:db8::1), so IPv6 frames, neighbour
 * discovery and extension header chains are fed as much as IPv4.
 *
 * Input: one configuration byte, then records of
 *   2 bytes length L (big-endian), 1 byte C, then L bytes of frame.
 * L > 0: C's low 6 bits advance the clock before the frame (milliseconds,
 * or hundreds of them when bit 6 is set); bit 7 asks the harness to fix the
 * IPv4/TCP/ICMP (or IPv6 TCP/ICMPv6, next header right after the fixed
 * header) checksums so that mutated frames get past validation.
 * L = 0: C is an application action (connect, close, abort, send, pause
 * reading) or a clock step (see action()), so both directions and every
 * close path run.  Seeds come from the packet scripts (pktrun
 * --dump-corpus), which share this harness's keys, addresses and ports.
 *
 * Checked after every record: stack_check() (pools, table, counts by state,
 * accounting, half-open connections holding no buffers) and memory within
 * the budget; every frame the stack sends is well formed with valid
 * checksums, DF and IP ID 0 (IPv6: flow label 0, no extension headers,
 * hop limit 64, or 255 for neighbour discovery).  ASan/LSan catch the
 * rest.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/stack/stack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXC 16

struct fz {
	struct stack *st;
	uint64_t now;
	bool reading;
	struct tcp_conn *conns[MAXC];
	bool tx_offload;
	uint8_t frame[9100];
};

static struct fz *F;

static uint16_t g16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t sum16(uint32_t s, const uint8_t *p, size_t n)
{
	size_t i = 0;
	for (; i + 1 < n; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (i < n)
		s += (uint32_t)p[i] << 8;
	return s;
}

static uint16_t fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static uint8_t *fz_alloc(void *ctx, uint32_t room, void **pkt)
{
	(void)ctx;
	if (room > sizeof(F->frame))
		abort();
	*pkt = F->frame;
	return F->frame;
}

/* What the stack sends must be sound, whatever it was fed. */
static void fz_send(void *ctx, void *pkt, uint32_t len, const struct stack_txinfo *ti)
{
	(void)ctx;
	const uint8_t *f = pkt;
	if (len < 42 || len > 1514)
		abort();
	if (g16(f + 12) == 0x86dd) {
		const uint8_t *ip = f + 14;
		uint32_t pl = g16(ip + 4);
		if (len < 54 || 54 + pl > len || ip[0] != 0x60 || ip[1] || ip[2] || ip[3])
			abort();
		if (ip[6] != 6 && ip[6] != 58)
			abort();
		if (ip[7] != 64 && !(ip[6] == 58 && ip[7] == 255))
			abort();
		uint32_t ps = sum16(sum16(0, ip + 8, 16), ip + 24, 16) + ip[6] + pl;
		if (ip[6] == 6 && ti->l4_csum_offload)
			return;
		if (fold(sum16(ps, ip + 40, pl)) != 0)
			abort();
		if (ip[6] == 6 && (pl < 20 || (uint32_t)(ip[40 + 12] >> 4) * 4 > pl))
			abort();
		return;
	}
	if (g16(f + 12) != 0x0800)
		return;
	const uint8_t *ip = f + 14;
	uint32_t hl = (ip[0] & 15u) * 4, tot = g16(ip + 2);
	if (ip[0] >> 4 != 4 || hl != 20 || tot + 14 > len)
		abort();
	/* Atomic datagrams only: DF, ID 0 (no per-stack counter to read). */
	if (g16(ip + 4) != 0 || g16(ip + 6) != 0x4000)
		abort();
	if (ip[9] == 6) {
		if (ti->l4_csum_offload)
			return;
		if (fold(sum16(0, ip, hl)) != 0)
			abort();
		uint32_t ps = sum16(sum16(0, ip + 12, 4), ip + 16, 4) + 6 + tot - hl;
		if (fold(sum16(ps, ip + hl, tot - hl)) != 0)
			abort();
		if ((uint32_t)(ip[hl + 12] >> 4) * 4 > tot - hl)
			abort();
	}
}

static void forget(struct tcp_conn *c)
{
	for (int i = 0; i < MAXC; i++)
		if (F->conns[i] == c)
			F->conns[i] = NULL;
}

static void remember(struct tcp_conn *c)
{
	for (int i = 0; i < MAXC; i++)
		if (!F->conns[i]) {
			F->conns[i] = c;
			return;
		}
}

static void echo(struct tcp_conn *c)
{
	if (!F->reading)
		return;
	const uint8_t *p1, *p2;
	size_t n1, n2;
	tcp_peek(c, &p1, &n1, &p2, &n2);
	if (n1 == 0)
		return;
	long took = tcp_send(c, p1, n1);
	if (took > 0)
		tcp_consume(c, (size_t)took);
	if (tcp_eof(c))
		tcp_close(c);
}

static int fz_accept(void *lctx, struct stack_listener *l, struct tcp_conn *c)
{
	(void)lctx;
	(void)l;
	remember(c);
	return 0;
}

static void fz_connected(void *ctx, struct tcp_conn *c)
{
	(void)ctx;
	static const char hello[] = "EHLO fuzz\r\n";
	tcp_send(c, hello, sizeof(hello) - 1);
}

static void fz_readable(void *ctx, struct tcp_conn *c)
{
	(void)ctx;
	echo(c);
}

static void fz_writable(void *ctx, struct tcp_conn *c)
{
	(void)ctx;
	echo(c);
}

static void fz_closed(void *ctx, struct tcp_conn *c, enum tcp_close_reason why)
{
	(void)ctx;
	(void)why;
	forget(c);
}

static void fix_checksums6(uint8_t *f, uint32_t len)
{
	uint8_t *ip = f + 14, *l4 = ip + 40;
	uint32_t pl = g16(ip + 4);
	if (len < 54 || 54 + pl > len)
		return;
	uint32_t ps = sum16(sum16(0, ip + 8, 16), ip + 24, 16) + ip[6] + pl;
	uint32_t at = ip[6] == 6 ? 16 : 2;
	if ((ip[6] != 6 && ip[6] != 58) || pl < at + 2)
		return;
	l4[at] = l4[at + 1] = 0;
	uint16_t c = fold(sum16(ps, l4, pl));
	l4[at] = (uint8_t)(c >> 8);
	l4[at + 1] = (uint8_t)c;
}

static void fix_checksums(uint8_t *f, uint32_t len)
{
	if (len >= 54 && g16(f + 12) == 0x86dd) {
		fix_checksums6(f, len);
		return;
	}
	if (len < 34 || g16(f + 12) != 0x0800)
		return;
	uint8_t *ip = f + 14;
	uint32_t hl = (ip[0] & 15u) * 4, tot = g16(ip + 2);
	if (hl < 20 || 14 + hl > len)
		return;
	ip[10] = ip[11] = 0;
	uint16_t c = fold(sum16(0, ip, hl));
	ip[10] = (uint8_t)(c >> 8);
	ip[11] = (uint8_t)c;
	if (tot < hl || 14 + tot > len)
		return;
	uint8_t *l4 = ip + hl;
	uint32_t l4len = tot - hl;
	if (ip[9] == 6 && l4len >= 20) {
		l4[16] = l4[17] = 0;
		uint32_t ps = sum16(sum16(0, ip + 12, 4), ip + 16, 4) + 6 + l4len;
		c = fold(sum16(ps, l4, l4len));
		l4[16] = (uint8_t)(c >> 8);
		l4[17] = (uint8_t)c;
	} else if (ip[9] == 1 && l4len >= 8) {
		l4[2] = l4[3] = 0;
		c = fold(sum16(0, l4, l4len));
		l4[2] = (uint8_t)(c >> 8);
		l4[3] = (uint8_t)c;
	}
}

static void check(void)
{
	if (stack_check(F->st))
		abort();
	struct stack_mem m;
	stack_mem(F->st, &m);
	if (m.used > m.budget)
		abort();
}

/* Control bytes of length-0 records: below 0x40 an application action
 * (low nibble) with a parameter (high bits); above, a clock step of
 * 100 ms, 1 ms or 1 s units (0x40, 0x80, 0xc0 plus the count). */
static void action(uint8_t op)
{
	struct stack_addr ra, ra6;
	stack_addr_ipv4(&ra, 198u << 24 | 18u << 16 | 2);
	static const uint8_t peer6[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,
					   0,    0,    0,    0,    0, 0, 0, 2 };
	stack_addr_ipv6(&ra6, peer6);
	struct tcp_conn *first = NULL;
	for (int i = 0; i < MAXC && !first; i++)
		first = F->conns[i];
	if (op >= 0x40) {
		static const uint64_t unit[4] = { 0, 100000000ULL, 1000000ULL, 1000000000ULL };
		F->now += (uint64_t)(op & 63) * unit[op >> 6];
		stack_timers(F->st, F->now);
		return;
	}
	switch (op & 15) {
	case 0: {
		struct tcp_conn *c = stack_connect(F->st, NULL, &ra, 25, NULL, F->now);
		if (c)
			remember(c);
		break;
	}
	case 1:
		if (first)
			tcp_close(first);
		break;
	case 2:
		if (first) {
			forget(first);
			tcp_abort(first);
		}
		break;
	case 3: {
		static const uint8_t junk[2000];
		for (int i = 0; i < MAXC; i++)
			if (F->conns[i])
				tcp_send(F->conns[i], junk, (size_t)((op >> 4) + 1) * 500);
		break;
	}
	case 4:
		F->reading = !F->reading;
		if (F->reading)
			for (int i = 0; i < MAXC; i++)
				if (F->conns[i])
					echo(F->conns[i]);
		break;
	case 5: {
		static const uint8_t mac[6] = { 2, 0, 0, 0, 0, 2 };
		stack_neigh_add(F->st, &ra, mac);
		break;
	}
	case 6:
		for (int i = 0; i < MAXC; i++)
			if (F->conns[i])
				tcp_close(F->conns[i]);
		break;
	case 7: {
		struct tcp_conn *c = stack_connect(F->st, NULL, &ra6, 25, NULL, F->now);
		if (c)
			remember(c);
		break;
	}
	case 8: {
		static const uint8_t mac[6] = { 2, 0, 0, 0, 0, 2 };
		stack_neigh_add(F->st, &ra6, mac);
		break;
	}
	default:
		break;
	}
	stack_flush(F->st, F->now);
}

/* Active opens use the ports the packet scripts use, so that the scripts'
 * frames (dumped as seeds) answer them. */
static uint16_t fz_pick_port(void *ctx, const struct stack_tuple *t, unsigned attempt)
{
	(void)ctx;
	(void)t;
	return attempt < 8 ? (uint16_t)(50000 + attempt) : 0;
}

static const struct stack_io fz_io = {
	.tx_alloc = fz_alloc,
	.tx_send = fz_send,
	.pick_port = fz_pick_port,
};

static const struct stack_app fz_app = {
	.accept = fz_accept,
	.connected = fz_connected,
	.readable = fz_readable,
	.writable = fz_writable,
	.closed = fz_closed,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	struct fz *fz = calloc(1, sizeof(*fz));
	if (!fz)
		return 0;
	F = fz;
	uint8_t conf = data[0];
	struct stack_config cfg;
	stack_config_defaults(&cfg);
	static const uint8_t mac[6] = { 2, 0, 0, 0, 0, 1 };
	memcpy(cfg.mac, mac, 6);
	cfg.naddrs = 2;
	stack_addr_ipv4(&cfg.addrs[0].addr, 198u << 24 | 18u << 16 | 1);
	cfg.addrs[0].prefix_len = 24;
	static const uint8_t own6[16] = {
		0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1
	};
	stack_addr_ipv6(&cfg.addrs[1].addr, own6);
	cfg.addrs[1].prefix_len = 64;
	/* Duplicate address detection runs when asked (the scripts that
	 * test it), else the address is usable at once as in pktrun. */
	cfg.dad_transmits = (conf & 128) ? 1 : 0;
	cfg.max_conns = MAXC;
	cfg.rx_csum_offload = conf & 1;
	cfg.tx_csum_offload = conf & 2;
	/* Small buffers: windows close and open within a short input. */
	cfg.rcvbuf = (conf & 4) ? 1024 : 4096;
	cfg.sndbuf = (conf & 4) ? 1024 : 4096;
	cfg.ooo_max = (conf & 4) ? 512 : 2048;
	if (conf & 8)
		cfg.mem_budget = 6 * (uint64_t)(cfg.rcvbuf + cfg.sndbuf + 512);
	cfg.msl = 1000000000ULL;
	cfg.idle = 30ULL * 1000000000ULL;
	cfg.cookie_period = 1000000000ULL;
	cfg.challenge_ack_limit = 50;
	/* The packet runner's half-open cap (64 slots / 16), or one: cookies
	 * from the second SYN on. */
	cfg.syn_rcvd_max = (conf & 64) ? 1 : 4;
	cfg.max_retries = 4;
	/* The packet runner's keys: the ISNs in the seeds' ACKs then match. */
	for (int i = 0; i < 16; i++) {
		cfg.hash_key[i] = (uint8_t)(i * 3 + 1);
		cfg.isn_key[i] = (uint8_t)(i * 5 + 7);
	}
	fz->st = stack_create(&cfg, &fz_io, NULL, &fz_app, NULL, 0);
	if (!fz->st)
		abort();
	fz->reading = !(conf & 16);
	if (!stack_listen(fz->st, NULL, 25, (conf & 32) ? 1 : 8, NULL))
		abort();

	size_t i = 1;
	while (i + 3 <= size) {
		uint32_t len = (uint32_t)(data[i] << 8 | data[i + 1]);
		uint8_t c = data[i + 2];
		i += 3;
		if (len == 0) {
			action(c);
		} else {
			if (len > size - i)
				len = (uint32_t)(size - i);
			if (len > sizeof(fz->frame))
				len = sizeof(fz->frame);
			uint64_t dt = (uint64_t)(c & 63) * ((c & 64) ? 100 : 1) * 1000000ULL;
			fz->now += dt;
			stack_timers(fz->st, fz->now);
			/* The frame is copied so that fixing checksums never
			 * writes into the fuzzer's input. */
			uint8_t *f = malloc(len);
			if (!f)
				break;
			memcpy(f, data + i, len);
			if (c & 128)
				fix_checksums(f, len);
			stack_input(fz->st, f, len, fz->now);
			free(f);
			i += len;
		}
		check();
	}
	/* Let every timer run out: retransmissions give up, TIME_WAIT and idle
	 * expire; nothing may be left but what the application still holds. */
	for (int k = 0; k < 50; k++) {
		fz->now += 8000000000ULL;
		stack_timers(fz->st, fz->now);
		check();
	}
	/* Idle timeout, retransmission limits, SYN retries and TIME_WAIT
	 * bound every state: no connection may outlive them all. */
	struct stack_mem m;
	stack_mem(fz->st, &m);
	if (m.conns_used != 0 || m.bufs_used != 0)
		abort();
	for (int k = 0; k < MAXC; k++)
		if (fz->conns[k])
			abort(); /* the application was never told */
	stack_destroy(fz->st);
	free(fz);
	F = NULL;
	return 0;
}
