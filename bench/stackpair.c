/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * stackpair: the userspace stack against itself in memory, IPv4 against
 * IPv6 (issue 18).  Two stacks, a client and a server, exchange frames
 * through in-memory queues with a virtual clock: the client keeps
 * SESSIONS connections busy, each one a whole transaction (handshake,
 * SIZE bytes to the server, a 40-byte reply, both FINs), the server
 * reading everything.  Every checksum is computed and checked in software
 * (as on memif).  Rounds alternate between IPv4 and IPv6 on fresh stack
 * pairs, so both families meet the same machine state; each round reports
 * transactions per second of this process's CPU time (CLOCK_PROCESS_
 * CPUTIME_ID: time other processes take of the core does not count).
 * What it measures is the stack's own cost per transaction, both ends of
 * it; no DPDK, no SMTP engine.
 *
 * usage: stackpair [-n TRANSACTIONS] [-r ROUNDS] [-s SIZE] [-c SESSIONS] [-4|-6]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/stack/stack.h"

#define QCAP 8192
#define FRAME_MAX 1600

struct q {
	uint8_t (*buf)[FRAME_MAX];
	uint32_t *len;
	unsigned head, n;
};

struct end {
	struct stack *st;
	struct q *out; /* frames this end sent, for the other */
	uint8_t scratch[FRAME_MAX];
};

static struct end cli, srv;
static uint64_t now;
static uint64_t done, target, started;
static unsigned sessions;
static size_t msg_size;
static struct stack_addr srv_addr;
static uint8_t payload[65536];

static uint8_t *e_alloc(void *ctx, uint32_t room, void **pkt)
{
	struct end *e = ctx;
	(void)room;
	*pkt = e->scratch;
	return e->scratch;
}

static void e_send(void *ctx, void *pkt, uint32_t len, const struct stack_txinfo *ti)
{
	struct end *e = ctx;
	(void)ti;
	struct q *q = e->out;
	if (q->n == QCAP || len > FRAME_MAX)
		return; /* dropped: TCP recovers */
	unsigned i = (q->head + q->n++) % QCAP;
	memcpy(q->buf[i], pkt, len);
	q->len[i] = len;
}

static uint16_t e_port(void *ctx, const struct stack_tuple *t, unsigned attempt)
{
	static uint32_t next;
	(void)ctx;
	(void)t;
	(void)attempt;
	return (uint16_t)(1024 + next++ % 60000);
}

static const struct stack_io io_ops = { .tx_alloc = e_alloc,
					.tx_send = e_send,
					.pick_port = e_port };

/* Client: send the message and its end (a half close, as the end of the
 * data is for SMTP), then read the reply to the server's close. */
static void c_connected(void *ctx, struct tcp_conn *c)
{
	(void)ctx;
	tcp_send(c, payload, msg_size);
	tcp_close(c);
}

static void open_one(void);

static void c_readable(void *ctx, struct tcp_conn *c)
{
	(void)ctx;
	uint8_t b[256];
	while (tcp_recv(c, b, sizeof(b)) > 0)
		;
}

static void c_closed(void *ctx, struct tcp_conn *c, enum tcp_close_reason why)
{
	(void)ctx;
	(void)c;
	if (why == TCP_CLOSE_NORMAL)
		done++;
	open_one();
}

/* Server: read SIZE bytes, answer 40, close. */
static int s_accept(void *lctx, struct stack_listener *l, struct tcp_conn *c)
{
	(void)lctx;
	(void)l;
	tcp_set_ctx(c, NULL);
	return 0;
}

static void s_readable(void *ctx, struct tcp_conn *c)
{
	(void)ctx;
	uint8_t b[4096];
	size_t got = 0;
	while ((got = tcp_recv(c, b, sizeof(b))) > 0)
		;
	if (tcp_eof(c)) {
		static const char reply[] = "250 2.0.0 Ok: queued as 0123456789ABCD\r\n";
		tcp_send(c, reply, sizeof(reply) - 1);
		tcp_close(c);
	}
}

static void s_closed(void *ctx, struct tcp_conn *c, enum tcp_close_reason why)
{
	(void)ctx;
	(void)c;
	(void)why;
}

static const struct stack_app cli_app = { .connected = c_connected,
					  .readable = c_readable,
					  .closed = c_closed };
static const struct stack_app srv_app = { .accept = s_accept,
					  .readable = s_readable,
					  .closed = s_closed };

static void open_one(void)
{
	if (started >= target)
		return;
	if (stack_connect(cli.st, NULL, &srv_addr, 25, NULL, now))
		started++;
}

static void config(struct stack_config *c, uint8_t last, bool v6)
{
	stack_config_defaults(c);
	uint8_t mac[6] = { 2, 0, 0, 0, 0, last };
	memcpy(c->mac, mac, 6);
	c->naddrs = 1;
	if (v6) {
		uint8_t a[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last };
		stack_addr_ipv6(&c->addrs[0].addr, a);
		c->addrs[0].prefix_len = 64;
	} else {
		stack_addr_ipv4(&c->addrs[0].addr, 0xc6120000u | last);
		c->addrs[0].prefix_len = 24;
	}
	c->dad_transmits = 0;
	/* Pools small enough to be touched in the warm-up: page faults on
	 * first use would otherwise be a large part of the CPU time. */
	c->max_conns = 512;
	c->rcvbuf = 16384;
	c->sndbuf = 16384;
	c->msl = 1000000; /* 1 ms of virtual time: TIME_WAIT must not fill the slots */
	for (int i = 0; i < 16; i++) {
		c->hash_key[i] = (uint8_t)(i * 7 + last);
		c->isn_key[i] = (uint8_t)(i * 11 + last);
	}
}

static unsigned pump(struct end *to, struct q *q)
{
	unsigned n = q->n;
	for (unsigned k = 0; k < n; k++) {
		unsigned i = q->head;
		q->head = (q->head + 1) % QCAP;
		q->n--;
		stack_input(to->st, q->buf[i], q->len[i], now);
	}
	return n;
}

static double round_once(bool v6, uint64_t n)
{
	struct stack_config cc, sc;
	config(&cc, 2, v6);
	config(&sc, 1, v6);
	static struct q qc, qs;
	static uint8_t(*b1)[FRAME_MAX], (*b2)[FRAME_MAX];
	static uint32_t *l1, *l2;
	if (!b1) {
		b1 = calloc(QCAP, FRAME_MAX);
		b2 = calloc(QCAP, FRAME_MAX);
		l1 = calloc(QCAP, sizeof(uint32_t));
		l2 = calloc(QCAP, sizeof(uint32_t));
	}
	qc = (struct q){ b1, l1, 0, 0 };
	qs = (struct q){ b2, l2, 0, 0 };
	cli.out = &qc;
	srv.out = &qs;
	char err[256] = "";
	cli.st = stack_create(&cc, &io_ops, &cli, &cli_app, err, sizeof(err));
	srv.st = stack_create(&sc, &io_ops, &srv, &srv_app, err, sizeof(err));
	if (!cli.st || !srv.st) {
		fprintf(stderr, "stack_create: %s\n", err[0] ? err : "?");
		exit(1);
	}
	uint8_t cmac[6] = { 2, 0, 0, 0, 0, 2 }, smac[6] = { 2, 0, 0, 0, 0, 1 };
	srv_addr = sc.addrs[0].addr;
	stack_neigh_add(cli.st, &srv_addr, smac);
	stack_neigh_add(srv.st, &cc.addrs[0].addr, cmac);
	if (!stack_listen(srv.st, NULL, 25, 1024, NULL)) {
		fprintf(stderr, "listen failed\n");
		exit(1);
	}
	done = started = 0;
	/* A warm-up of a tenth more, unmeasured: every pool touched once. */
	uint64_t warm = n / 10 + 2 * 512;
	target = n + warm;
	n += warm;
	now = 1000000;
	struct timespec t0 = { 0, 0 }, t1;
	bool timing = false;
	for (unsigned i = 0; i < sessions; i++)
		open_one();
	stack_flush(cli.st, now);
	uint64_t idle = 0;
	while (done < n && idle < 100000) {
		if (!timing && done >= warm) {
			clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
			timing = true;
		}
		now += 1000; /* 1 us of virtual time per pass */
		unsigned moved = pump(&srv, &qc) + pump(&cli, &qs);
		stack_timers(cli.st, now);
		stack_timers(srv.st, now);
		stack_flush(cli.st, now);
		stack_flush(srv.st, now);
		idle = moved ? 0 : idle + 1;
	}
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (done < n) {
		fprintf(stderr, "%s: only %lu of %lu transactions\n", v6 ? "IPv6" : "IPv4",
			(unsigned long)done, (unsigned long)n);
		const struct stack_stats *cs = stack_stats(cli.st), *ss = stack_stats(srv.st);
		fprintf(stderr,
			"  client: tx %lu rx %lu connects %lu established %lu; server: rx %lu tx "
			"%lu "
			"syn %lu accepts %lu not_ours %lu/%lu bad_csum %lu\n",
			(unsigned long)cs->tx_frames, (unsigned long)cs->rx_frames,
			(unsigned long)cs->connects, (unsigned long)cs->established,
			(unsigned long)ss->rx_frames, (unsigned long)ss->tx_frames,
			(unsigned long)ss->syn_rx, (unsigned long)ss->accepts,
			(unsigned long)ss->ip_not_ours, (unsigned long)ss->ip6_not_ours,
			(unsigned long)ss->checksum_errors);
	}
	stack_destroy(cli.st);
	stack_destroy(srv.st);
	return (double)(done - warm) / s;
}

int main(int argc, char **argv)
{
	uint64_t n = 200000;
	int rounds = 3, opt;
	msg_size = 2048;
	sessions = 32;
	int only = 0; /* -4 / -6: one family only (for a profiler) */
	while ((opt = getopt(argc, argv, "n:r:s:c:46")) != -1) {
		switch (opt) {
		case '4':
		case '6':
			only = opt - '0';
			break;
		case 'n':
			n = strtoull(optarg, NULL, 10);
			break;
		case 'r':
			rounds = atoi(optarg);
			break;
		case 's':
			msg_size = strtoul(optarg, NULL, 10);
			break;
		case 'c':
			sessions = (unsigned)atoi(optarg);
			break;
		default:
			fprintf(stderr,
				"usage: stackpair [-n N] [-r ROUNDS] [-s SIZE] [-c SESSIONS]\n");
			return 2;
		}
	}
	if (msg_size > sizeof(payload) || sessions == 0 || sessions > 1024 || n == 0) {
		fprintf(stderr, "stackpair: size at most 65536, 1..1024 sessions\n");
		return 2;
	}
	for (size_t i = 0; i < msg_size; i++)
		payload[i] = (uint8_t)('a' + i % 26);
	printf("stackpair: %lu transactions a round, %zu bytes each, %u sessions\n",
	       (unsigned long)n, msg_size, sessions);
	printf("%-5s %-6s %14s %14s %8s\n", "round", "", "IPv4 txn/cpu-s", "IPv6 txn/cpu-s",
	       "v6/v4");
	for (int r = 0; r < rounds && only; r++)
		printf("%-5d IPv%d %14.0f\n", r + 1, only, round_once(only == 6, n));
	for (int r = 0; r < rounds && !only; r++) {
		/* Which family goes first alternates, so neither always runs
		 * on a cold cache. */
		double a, b;
		if (r % 2 == 0) {
			a = round_once(false, n);
			b = round_once(true, n);
		} else {
			b = round_once(true, n);
			a = round_once(false, n);
		}
		printf("%-5d %-6s %14.0f %14.0f %8.3f\n", r + 1, r % 2 ? "v6 1st" : "v4 1st", a, b,
		       b / a);
		fflush(stdout);
	}
	return 0;
}
