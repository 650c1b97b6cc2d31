/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The stack against the Linux kernel's TCP as the peer, over a tap device in
 * a network namespace of the test's own (so nothing outside it is touched).
 * No DPDK: frames go through the tap file descriptor, which is the same
 * contract the port glue will have with the stack.
 *
 *   1. passive: a kernel client connects to the stack's echo server, sends
 *      2 MB, half-closes, and must read back exactly what it sent;
 *   2. active: the stack connects to a kernel echo server, sends 1 MB and
 *      must read it back;
 *   3. both again with 3% of frames dropped in each direction (seeded), so
 *      retransmission, fast retransmit and recovery meet a real peer.
 *
 * Needs root and /dev/net/tun; exits 77 (skipped) otherwise.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/stack/stack.h"

#define STACK_IP "198.18.0.1"
#define KERNEL_IP "198.18.0.2"
#define PASSIVE_BYTES (2u << 20)
#define ACTIVE_BYTES (1u << 20)

static int tapfd;
static unsigned loss_pct;
static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint8_t txbuf[2048];
static atomic_int kernel_done, kernel_failed;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static bool lose(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return loss_pct && rng % 100 < loss_pct;
}

/* TAP_TRACE=file: one line per TCP frame either way, for post-mortems. */
static FILE *trace;

static void trace_frame(const char *dir, const uint8_t *f, size_t len, bool lost)
{
	if (!trace || len < 54 || f[12] != 8 || f[13] != 0 || f[23] != 6)
		return;
	const uint8_t *ip = f + 14, *th = ip + (ip[0] & 15) * 4;
	unsigned tot = (unsigned)(ip[2] << 8 | ip[3]);
	unsigned plen = tot - (unsigned)(ip[0] & 15) * 4 - (unsigned)(th[12] >> 4) * 4;
	fprintf(trace, "%.6f %s %u>%u fl %02x seq %u ack %u len %u win %u%s\n",
		(double)now_ns() / 1e9, dir, th[0] << 8 | th[1], th[2] << 8 | th[3], th[13],
		(unsigned)th[4] << 24 | (unsigned)th[5] << 16 | (unsigned)th[6] << 8 | th[7],
		(unsigned)th[8] << 24 | (unsigned)th[9] << 16 | (unsigned)th[10] << 8 | th[11],
		plen, th[14] << 8 | th[15], lost ? " LOST" : "");
}

static uint8_t pattern(uint64_t k)
{
	return (uint8_t)(k * 131 + (k >> 9));
}

/* --- The virtual port: the tap --- */

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
	(void)ti;
	bool lost = lose();
	trace_frame("out", pkt, len, lost);
	if (lost)
		return;
	if (write(tapfd, pkt, len) < 0 && errno != EAGAIN)
		perror("write tap");
}

/* --- The application on the stack: an echo server, and a client --- */

struct client {
	struct tcp_conn *c;
	uint64_t sent, got;
	bool done, failed, closed;
};

static struct client cli;

static void echo(struct tcp_conn *c)
{
	for (;;) {
		const uint8_t *p1, *p2;
		size_t n1, n2;
		tcp_peek(c, &p1, &n1, &p2, &n2);
		if (n1 == 0)
			break;
		long took = tcp_send(c, p1, n1);
		if (took <= 0)
			break;
		tcp_consume(c, (size_t)took);
	}
	if (tcp_eof(c))
		tcp_close(c);
}

static void client_pump(void)
{
	static uint8_t chunk[4096];
	while (cli.c && cli.sent < ACTIVE_BYTES) {
		size_t n = ACTIVE_BYTES - cli.sent < sizeof(chunk) ? ACTIVE_BYTES - cli.sent
								   : sizeof(chunk);
		for (size_t i = 0; i < n; i++)
			chunk[i] = pattern(cli.sent + i);
		long took = tcp_send(cli.c, chunk, n);
		if (took <= 0)
			break;
		cli.sent += (uint64_t)took;
	}
	if (cli.c && cli.sent == ACTIVE_BYTES && !cli.closed) {
		cli.closed = true;
		tcp_close(cli.c);
	}
}

static void client_read(struct tcp_conn *c)
{
	uint8_t buf[4096];
	size_t n;
	while ((n = tcp_recv(c, buf, sizeof(buf))) > 0) {
		for (size_t i = 0; i < n; i++)
			if (buf[i] != pattern(cli.got + i))
				cli.failed = true;
		cli.got += n;
	}
}

static struct tcp_conn *server_conn; /* for the diagnostics */

static int app_accept(void *lctx, struct stack_listener *l, struct tcp_conn *c)
{
	(void)lctx;
	(void)l;
	tcp_set_ctx(c, NULL);
	server_conn = c;
	return 0;
}

static void dump(const char *who, struct tcp_conn *c)
{
	if (!c)
		return;
	struct tcp_info i;
	tcp_get_info(c, &i);
	fprintf(stderr,
		"%s: %s una %u nxt %u max %u snd_wnd %u cwnd %u ssthresh %u rto %llu ms "
		"retries %u rcv_wnd %u rcvbuf %u sndbuf %u ooo %u recovery %d\n",
		who, tcp_state_name(i.state), i.snd_una - i.iss, i.snd_nxt - i.iss,
		i.snd_max - i.iss, i.snd_wnd, i.cwnd, i.ssthresh,
		(unsigned long long)(i.rto / 1000000), i.retries, i.rcv_wnd, i.rcvbuf_used,
		i.sndbuf_used, i.ooo_bytes, i.in_recovery);
}

static void app_connected(void *ctx, struct tcp_conn *c)
{
	(void)ctx;
	(void)c;
	client_pump();
}

static void app_readable(void *ctx, struct tcp_conn *c)
{
	if (ctx)
		client_read(c);
	else
		echo(c);
}

static void app_writable(void *ctx, struct tcp_conn *c)
{
	if (ctx)
		client_pump();
	else
		echo(c);
}

static void app_closed(void *ctx, struct tcp_conn *c, enum tcp_close_reason why)
{
	(void)c;
	if (ctx) {
		cli.done = true;
		cli.c = NULL;
		if (why != TCP_CLOSE_NORMAL) {
			fprintf(stderr, "active connection closed: %s\n",
				tcp_close_reason_name(why));
			cli.failed = true;
		}
	} else {
		if (why != TCP_CLOSE_NORMAL) {
			fprintf(stderr, "passive connection closed: %s\n",
				tcp_close_reason_name(why));
			dump("server", c);
		}
		server_conn = NULL;
	}
}

/* --- The kernel side --- */

static void *kernel_client(void *arg)
{
	(void)arg;
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(25) };
	inet_pton(AF_INET, STACK_IP, &a.sin_addr);
	struct timeval tv = { 30, 0 };
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(s, (struct sockaddr *)&a, sizeof(a)) != 0) {
		perror("kernel connect");
		atomic_store(&kernel_failed, 1);
		goto out;
	}
	static uint8_t buf[65536];
	uint64_t sent = 0, got = 0;
	/* Send and read back in turns so neither side's buffers deadlock. */
	while (got < PASSIVE_BYTES) {
		if (sent < PASSIVE_BYTES) {
			size_t n = PASSIVE_BYTES - sent < 16384 ? PASSIVE_BYTES - sent : 16384;
			for (size_t i = 0; i < n; i++)
				buf[i] = pattern(sent + i);
			ssize_t w = send(s, buf, n, MSG_DONTWAIT);
			if (w > 0)
				sent += (uint64_t)w;
			if (sent == PASSIVE_BYTES)
				shutdown(s, SHUT_WR);
		}
		ssize_t r = recv(s, buf, sizeof(buf), sent < PASSIVE_BYTES ? MSG_DONTWAIT : 0);
		if (r == 0)
			break;
		if (r < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				if (sent == PASSIVE_BYTES)
					break; /* timed out */
				usleep(100);
				continue;
			}
			perror("kernel recv");
			break;
		}
		for (ssize_t i = 0; i < r; i++)
			if (buf[i] != pattern(got + (uint64_t)i)) {
				fprintf(stderr, "echo differs at %llu\n",
					(unsigned long long)(got + (uint64_t)i));
				atomic_store(&kernel_failed, 1);
				goto out;
			}
		got += (uint64_t)r;
	}
	if (got != PASSIVE_BYTES) {
		fprintf(stderr, "kernel client read back %llu of %u\n", (unsigned long long)got,
			PASSIVE_BYTES);
		atomic_store(&kernel_failed, 1);
	} else if (recv(s, buf, 1, 0) != 0) {
		fprintf(stderr, "no FIN after the echo\n");
		atomic_store(&kernel_failed, 1);
	}
out:
	close(s);
	atomic_store(&kernel_done, 1);
	return NULL;
}

static int lsock;

static void *kernel_server(void *arg)
{
	(void)arg;
	int s = accept(lsock, NULL, NULL);
	if (s < 0) {
		perror("kernel accept");
		atomic_store(&kernel_failed, 1);
		atomic_store(&kernel_done, 1);
		return NULL;
	}
	static uint8_t buf[65536];
	ssize_t r;
	while ((r = recv(s, buf, sizeof(buf), 0)) > 0) {
		ssize_t off = 0;
		while (off < r) {
			ssize_t w = send(s, buf + off, (size_t)(r - off), 0);
			if (w <= 0)
				break;
			off += w;
		}
	}
	close(s);
	atomic_store(&kernel_done, 1);
	return NULL;
}

/* --- Set-up --- */

static int tap_setup(void)
{
	if (unshare(CLONE_NEWNET) != 0) {
		perror("unshare(CLONE_NEWNET)");
		return 77;
	}
	tapfd = open("/dev/net/tun", O_RDWR | O_NONBLOCK);
	if (tapfd < 0) {
		perror("/dev/net/tun");
		return 77;
	}
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "tst0");
	if (ioctl(tapfd, TUNSETIFF, &ifr) != 0) {
		perror("TUNSETIFF");
		return 77;
	}
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in *sin = (struct sockaddr_in *)(void *)&ifr.ifr_addr;
	sin->sin_family = AF_INET;
	inet_pton(AF_INET, KERNEL_IP, &sin->sin_addr);
	if (ioctl(s, SIOCSIFADDR, &ifr) != 0) {
		perror("SIOCSIFADDR");
		return 1;
	}
	inet_pton(AF_INET, "255.255.255.0", &sin->sin_addr);
	if (ioctl(s, SIOCSIFNETMASK, &ifr) != 0) {
		perror("SIOCSIFNETMASK");
		return 1;
	}
	if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0) {
		perror("SIOCGIFFLAGS");
		return 1;
	}
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) {
		perror("SIOCSIFFLAGS");
		return 1;
	}
	close(s);
	return 0;
}

static struct stack *make_stack(void)
{
	static const struct stack_io io = { .tx_alloc = io_alloc, .tx_send = io_send };
	static const struct stack_app app = {
		.accept = app_accept,
		.connected = app_connected,
		.readable = app_readable,
		.writable = app_writable,
		.closed = app_closed,
	};
	struct stack_config cfg;
	stack_config_defaults(&cfg);
	static const uint8_t mac[6] = { 0x02, 0, 0, 0, 0, 0x01 };
	memcpy(cfg.mac, mac, 6);
	cfg.naddrs = 1;
	struct in_addr a;
	inet_pton(AF_INET, STACK_IP, &a);
	stack_addr_ipv4(&cfg.addrs[0].addr, ntohl(a.s_addr));
	cfg.addrs[0].prefix_len = 24;
	cfg.rcvbuf = 65536;
	cfg.sndbuf = 65536;
	cfg.msl = 1000000000ULL;
	for (int i = 0; i < 16; i++) {
		cfg.hash_key[i] = (uint8_t)rand();
		cfg.isn_key[i] = (uint8_t)rand();
	}
	char err[256] = "";
	struct stack *st = stack_create(&cfg, &io, NULL, &app, err, sizeof(err));
	if (!st)
		fprintf(stderr, "stack_create: %s\n", err);
	return st;
}

/* Drive the stack until done() or the deadline. */
static bool run(struct stack *st, bool (*done)(void), uint64_t seconds)
{
	uint64_t deadline = now_ns() + seconds * 1000000000ULL;
	uint8_t frame[2048];
	while (!done()) {
		if (now_ns() > deadline)
			return false;
		struct pollfd p = { .fd = tapfd, .events = POLLIN };
		poll(&p, 1, 1);
		for (int i = 0; i < 64; i++) {
			ssize_t n = read(tapfd, frame, sizeof(frame));
			if (n <= 0)
				break;
			bool lost = lose();
			trace_frame("in ", frame, (size_t)n, lost);
			if (lost)
				continue;
			stack_input(st, frame, (uint32_t)n, now_ns());
		}
		stack_timers(st, now_ns());
		if (cli.c)
			client_pump();
		stack_flush(st, now_ns());
		static uint64_t last_dump;
		if (getenv("TAP_DEBUG") && now_ns() - last_dump > 1000000000ULL) {
			last_dump = now_ns();
			dump("server", server_conn);
			dump("client", cli.c);
		}
		const char *bad = stack_check(st);
		if (bad) {
			fprintf(stderr, "stack_check: %s\n", bad);
			return false;
		}
	}
	return true;
}

static bool kernel_finished(void)
{
	return atomic_load(&kernel_done);
}

static bool both_finished(void)
{
	return atomic_load(&kernel_done) && cli.done;
}

static int passive(struct stack *st)
{
	atomic_store(&kernel_done, 0);
	atomic_store(&kernel_failed, 0);
	pthread_t th;
	pthread_create(&th, NULL, kernel_client, NULL);
	bool ok = run(st, kernel_finished, 60);
	pthread_join(th, NULL);
	/* Let the last ACKs and FINs settle. */
	uint64_t end = now_ns() + 300000000ULL;
	while (now_ns() < end) {
		uint8_t frame[2048];
		ssize_t n = read(tapfd, frame, sizeof(frame));
		if (n > 0 && !lose())
			stack_input(st, frame, (uint32_t)n, now_ns());
		stack_timers(st, now_ns());
		usleep(200);
	}
	if (!ok || atomic_load(&kernel_failed)) {
		fprintf(stderr, "passive echo (loss %u%%) failed\n", loss_pct);
		return 1;
	}
	printf("passive: kernel client sent and read back %u bytes (loss %u%%)\n", PASSIVE_BYTES,
	       loss_pct);
	return 0;
}

static int active(struct stack *st, uint16_t port)
{
	atomic_store(&kernel_done, 0);
	atomic_store(&kernel_failed, 0);
	lsock = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(lsock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	inet_pton(AF_INET, KERNEL_IP, &a.sin_addr);
	if (bind(lsock, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(lsock, 8) != 0) {
		perror("kernel listen");
		return 1;
	}
	pthread_t th;
	pthread_create(&th, NULL, kernel_server, NULL);
	memset(&cli, 0, sizeof(cli));
	struct stack_addr ra;
	stack_addr_ipv4(&ra, ntohl(a.sin_addr.s_addr));
	cli.c = stack_connect(st, NULL, &ra, port, &cli, now_ns());
	if (!cli.c) {
		fprintf(stderr, "stack_connect failed\n");
		return 1;
	}
	stack_flush(st, now_ns());
	bool ok = run(st, both_finished, 60);
	if (!ok)
		shutdown(lsock, SHUT_RDWR);
	pthread_join(th, NULL);
	close(lsock);
	if (!ok || cli.failed || cli.got != ACTIVE_BYTES || atomic_load(&kernel_failed)) {
		fprintf(stderr, "active echo (loss %u%%) failed: sent %llu, read back %llu\n",
			loss_pct, (unsigned long long)cli.sent, (unsigned long long)cli.got);
		return 1;
	}
	printf("active: stack sent and read back %u bytes (loss %u%%)\n", ACTIVE_BYTES, loss_pct);
	return 0;
}

int main(void)
{
	if (geteuid() != 0) {
		fprintf(stderr, "skipped: needs root for a network namespace and a tap\n");
		return 77;
	}
	if (getenv("TAP_TRACE"))
		trace = fopen(getenv("TAP_TRACE"), "w");
	int rc = tap_setup();
	if (rc)
		return rc;
	srand((unsigned)now_ns());
	struct stack *st = make_stack();
	if (!st || !stack_listen(st, NULL, 25, 64, NULL))
		return 1;
	int fails = 0;
	fails += passive(st);
	fails += active(st, 2525);
	loss_pct = 3;
	fails += passive(st);
	fails += active(st, 2526);
	const struct stack_stats *s = stack_stats(st);
	printf("retransmits %llu, fast retransmits %llu, RTO expiries %llu, out-of-order %llu, "
	       "dup ACKs %llu, checksum errors %llu\n",
	       (unsigned long long)s->retransmits, (unsigned long long)s->fast_retransmits,
	       (unsigned long long)s->rto_expired, (unsigned long long)s->ooo_segments,
	       (unsigned long long)s->dup_acks, (unsigned long long)s->checksum_errors);
	if (s->checksum_errors)
		fails++;
	stack_destroy(st);
	printf("%s\n", fails ? "FAIL" : "PASS");
	return fails ? 1 : 0;
}
