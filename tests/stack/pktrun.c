/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Packet-script runner for the userspace TCP/IP stack (format in
 * tests/stack/README.md).  Each script drives one stack through a virtual
 * port and a virtual clock: inbound frames are built from the script's
 * lines, outbound frames are parsed and compared field by field, and the
 * clock advances in 1 ms steps so every output is stamped with the virtual
 * time at which the stack sent it.
 *
 *   pktrun [-v] [--dump-corpus DIR] SCRIPT|DIR...
 *
 * Prints PASS/FAIL per script and "N passed, N failed"; exit status 1 if
 * any failed.  --dump-corpus writes each script's inbound frames as a seed
 * for tests/fuzz/fuzz_stack.c.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/stat.h>

#include "dataplane/stack/stack.h"

#define MS 1000000ULL
#define MAX_FLOWS 64
#define MAX_OUT 4096
#define MAX_EVENTS 1024
#define MAX_FRAME 10000

static const uint8_t our_mac[6] = { 0x02, 0, 0, 0, 0, 0x01 };
static const uint8_t peer_mac_default[6] = { 0x02, 0, 0, 0, 0, 0x02 };

enum ev_type { EV_ACCEPT, EV_CONNECTED, EV_READABLE, EV_WRITABLE, EV_CLOSED };
static const char *const ev_names[] = { "accept", "connected", "readable", "writable", "closed" };

struct event {
	enum ev_type type;
	int flow;
	enum tcp_close_reason reason;
	bool consumed;
};

struct flow {
	bool used;
	uint32_t raddr; /* host order */
	bool v6;        /* an IPv6 flow: raddr6, and the stack's laddr6 */
	uint8_t raddr6[16];
	uint16_t lport, rport;
	bool isn_known;
	uint32_t our_isn;
	struct tcp_conn *conn;
	uint64_t out_off; /* bytes the app sent */
	uint64_t rd_off;  /* bytes the app read */
	bool autoread;
};

struct outpkt {
	uint8_t *data;
	uint32_t len;
	uint64_t when;
	struct stack_txinfo ti;
};

struct run {
	const char *name;
	int line;
	char err[1024];
	bool failed;
	bool verbose;

	struct stack_config cfg;
	struct stack *st;
	bool created;
	uint64_t now; /* virtual clock */
	uint64_t line_time;
	uint64_t tolerance;

	uint32_t laddr;
	uint8_t laddr6[16];
	bool ipv6; /* config ipv6 yes: the stack has laddr6 too, flow 0 is v6 */
	uint32_t peer_isn;
	uint16_t def_lport, def_rport;
	unsigned backlog;
	bool refuse_accept;
	bool autoread;
	bool neigh_static;
	uint32_t early_drop_addr;
	bool early_drop6_set;
	uint8_t early_drop6[16];
	struct stack_listener *listener;

	struct flow flows[MAX_FLOWS];
	int cur; /* current flow */

	struct outpkt out[MAX_OUT];
	unsigned nout, out_head;

	struct event ev[MAX_EVENTS];
	unsigned nev;

	uint8_t echo_payload[MAX_FRAME];
	uint32_t echo_len;

	FILE *corpus;
	uint64_t corpus_time;
	unsigned tx_fail; /* tx_alloc calls left to fail */
};

static struct run *R;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	if (R->failed)
		return;
	R->failed = true;
	va_list ap;
	va_start(ap, fmt);
	int n = snprintf(R->err, sizeof(R->err), "line %d: ", R->line);
	vsnprintf(R->err + n, sizeof(R->err) - (size_t)n, fmt, ap);
	va_end(ap);
}

/* --- Byte helpers --- */

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void wr32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
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

static uint32_t tcp_pseudo(const uint8_t *src, const uint8_t *dst, uint32_t len)
{
	return sum16(sum16(0, src, 4), dst, 4) + 6 + len;
}

/* Payload patterns: what the peer sends at stream offset k, and what the
 * application sends. */
static uint8_t peer_byte(uint64_t k)
{
	return (uint8_t)('A' + k % 26);
}

static uint8_t app_byte(uint64_t k)
{
	return (uint8_t)('a' + (k * 7) % 26);
}

static int parse_ip(const char *s, uint32_t *out)
{
	unsigned a, b, c, d;
	char tail;
	if (sscanf(s, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) != 4 || a > 255 || b > 255 ||
	    c > 255 || d > 255)
		return -1;
	*out = a << 24 | b << 16 | c << 8 | d;
	return 0;
}

static int parse_ip6(const char *s, uint8_t out[16])
{
	return inet_pton(AF_INET6, s, out) == 1 ? 0 : -1;
}

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned m[6];
	if (sscanf(s, "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6)
		return -1;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)m[i];
	return 0;
}

static void ip_str(uint32_t a, char *buf, size_t n)
{
	snprintf(buf, n, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
}

/* "200ms", "1.5s", "40000us", "3" (seconds) -> ns */
static int parse_dur(const char *s, uint64_t *ns)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || v < 0)
		return -1;
	if (strcmp(end, "ms") == 0)
		*ns = (uint64_t)(v * 1e6 + 0.5);
	else if (strcmp(end, "us") == 0)
		*ns = (uint64_t)(v * 1e3 + 0.5);
	else if (strcmp(end, "s") == 0 || *end == '\0')
		*ns = (uint64_t)(v * 1e9 + 0.5);
	else
		return -1;
	return 0;
}

static int parse_u64(const char *s, uint64_t *v)
{
	char *end;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 0);
	if (end == s || *end || errno)
		return -1;
	*v = x;
	return 0;
}

static void format_frame(const uint8_t *f, uint32_t len, char *buf, size_t n, bool in);
static void corpus_op(uint8_t op);

/* --- The virtual port --- */

static uint8_t *io_alloc(void *ctx, uint32_t room, void **pkt)
{
	(void)ctx;
	if (R->tx_fail) {
		/* An empty mbuf pool, as the port glue would see it. */
		R->tx_fail--;
		return NULL;
	}
	uint8_t *b = calloc(1, room > MAX_FRAME ? room : MAX_FRAME);
	*pkt = b;
	return b;
}

static void io_send(void *ctx, void *pkt, uint32_t len, const struct stack_txinfo *ti)
{
	(void)ctx;
	if (R->nout >= MAX_OUT) {
		free(pkt);
		fail("more than %d frames queued", MAX_OUT);
		return;
	}
	R->out[R->nout++] = (struct outpkt){ pkt, len, R->now, *ti };
	if (R->verbose) {
		char buf[512];
		format_frame(pkt, len, buf, sizeof(buf), false);
		printf("  %8.3f > %s\n", (double)R->now / 1e9, buf);
	}
}

static uint16_t io_pick_port(void *ctx, const struct stack_tuple *t, unsigned attempt)
{
	(void)ctx;
	(void)t;
	if (attempt > 8)
		return 0;
	return (uint16_t)(R->flows[R->cur].lport + attempt);
}

static bool io_early_drop(void *ctx, const struct stack_addr *src)
{
	(void)ctx;
	if (src->family == STACK_AF_INET6)
		return R->early_drop6_set && memcmp(src->a, R->early_drop6, 16) == 0;
	return R->early_drop_addr && src->family == STACK_AF_INET &&
	       rd32(src->a) == R->early_drop_addr;
}

static bool flow_is(const struct flow *f, const struct stack_addr *a)
{
	if (a->family == STACK_AF_INET6)
		return f->v6 && memcmp(f->raddr6, a->a, 16) == 0;
	return !f->v6 && f->raddr == rd32(a->a);
}

static void flow_addr(const struct flow *f, struct stack_addr *a)
{
	if (f->v6)
		stack_addr_ipv6(a, f->raddr6);
	else
		stack_addr_ipv4(a, f->raddr);
}

/* --- The application --- */

static int flow_of(const struct tcp_conn *c)
{
	const struct stack_tuple *t = tcp_tuple(c);
	for (int i = 0; i < MAX_FLOWS; i++) {
		struct flow *f = &R->flows[i];
		if (f->used && f->lport == t->lport && f->rport == t->rport &&
		    flow_is(f, &t->raddr))
			return i;
	}
	for (int i = 0; i < MAX_FLOWS; i++) {
		struct flow *f = &R->flows[i];
		if (!f->used) {
			memset(f, 0, sizeof(*f));
			f->used = true;
			f->lport = t->lport;
			f->rport = t->rport;
			f->v6 = t->raddr.family == STACK_AF_INET6;
			if (f->v6)
				memcpy(f->raddr6, t->raddr.a, 16);
			else
				f->raddr = rd32(t->raddr.a);
			return i;
		}
	}
	return 0;
}

static void add_event(enum ev_type type, int flow, enum tcp_close_reason reason)
{
	if (R->nev >= MAX_EVENTS) {
		fail("too many events");
		return;
	}
	R->ev[R->nev++] = (struct event){ type, flow, reason, false };
}

static bool read_and_check(struct flow *f, struct tcp_conn *c, uint64_t want, bool exact);

static int app_accept(void *lctx, struct stack_listener *l, struct tcp_conn *c)
{
	(void)lctx;
	(void)l;
	int i = flow_of(c);
	add_event(EV_ACCEPT, i, 0);
	if (R->refuse_accept)
		return -1;
	R->flows[i].conn = c;
	R->flows[i].autoread = R->autoread;
	tcp_set_ctx(c, &R->flows[i]);
	return 0;
}

static void app_connected(void *ctx, struct tcp_conn *c)
{
	(void)ctx;
	add_event(EV_CONNECTED, flow_of(c), 0);
}

static void app_readable(void *ctx, struct tcp_conn *c)
{
	struct flow *f = ctx;
	add_event(EV_READABLE, flow_of(c), 0);
	if (f && f->autoread)
		read_and_check(f, c, tcp_readable(c), false);
}

static void app_writable(void *ctx, struct tcp_conn *c)
{
	(void)ctx;
	add_event(EV_WRITABLE, flow_of(c), 0);
}

static void app_closed(void *ctx, struct tcp_conn *c, enum tcp_close_reason why)
{
	(void)ctx;
	int i = flow_of(c);
	add_event(EV_CLOSED, i, why);
	R->flows[i].conn = NULL;
}

static bool read_and_check(struct flow *f, struct tcp_conn *c, uint64_t want, bool exact)
{
	uint8_t buf[4096];
	uint64_t got = 0;
	while (got < want) {
		size_t n = tcp_recv(c, buf, want - got < sizeof(buf) ? want - got : sizeof(buf));
		if (n == 0)
			break;
		for (size_t i = 0; i < n; i++) {
			if (buf[i] != peer_byte(f->rd_off + i)) {
				fail("received byte at stream offset %" PRIu64 " is %#x, want %#x",
				     f->rd_off + i, buf[i], peer_byte(f->rd_off + i));
				return false;
			}
		}
		f->rd_off += n;
		got += n;
	}
	if (exact && got != want) {
		fail("app read %" PRIu64 " bytes, wanted %" PRIu64, got, want);
		return false;
	}
	return true;
}

/* --- Stack creation --- */

static void config_init(void)
{
	stack_config_defaults(&R->cfg);
	memcpy(R->cfg.mac, our_mac, 6);
	R->cfg.naddrs = 1;
	R->laddr = 198u << 24 | 18u << 16 | 0 << 8 | 1;
	stack_addr_ipv4(&R->cfg.addrs[0].addr, R->laddr);
	R->cfg.addrs[0].prefix_len = 24;
	R->cfg.max_conns = 64;
	/* DAD off unless a script asks (config dad_transmits N): it would
	 * delay every IPv6 script by a second. */
	R->cfg.dad_transmits = 0;
	parse_ip6("2001:db8::1", R->laddr6);
	for (int i = 0; i < 16; i++) {
		R->cfg.hash_key[i] = (uint8_t)(i * 3 + 1);
		R->cfg.isn_key[i] = (uint8_t)(i * 5 + 7);
	}
	R->tolerance = 1 * MS;
	R->peer_isn = 1000000;
	R->def_lport = 25;
	R->def_rport = 40000;
	R->backlog = 16;
	struct flow *f = &R->flows[0];
	f->used = true;
	f->raddr = 198u << 24 | 18u << 16 | 0 << 8 | 2;
	parse_ip6("2001:db8::2", f->raddr6);
	f->lport = R->def_lport;
	f->rport = R->def_rport;
}

static const struct stack_io io_ops = {
	.tx_alloc = io_alloc,
	.tx_send = io_send,
	.pick_port = io_pick_port,
	.early_drop = io_early_drop,
};

static const struct stack_app app_ops = {
	.accept = app_accept,
	.connected = app_connected,
	.readable = app_readable,
	.writable = app_writable,
	.closed = app_closed,
};

static void ensure_stack(void)
{
	if (R->created)
		return;
	R->created = true;
	char err[256] = "";
	if (R->ipv6) {
		/* Both families on one stack: 198.18.0.1/24 and 2001:db8::1/64. */
		R->cfg.naddrs = 2;
		stack_addr_ipv6(&R->cfg.addrs[1].addr, R->laddr6);
		R->cfg.addrs[1].prefix_len = 64;
	}
	R->st = stack_create(&R->cfg, &io_ops, NULL, &app_ops, err, sizeof(err));
	if (!R->st) {
		fail("stack_create: %s", err[0] ? err : "?");
		return;
	}
	if (R->neigh_static) {
		corpus_op(R->flows[0].v6 ? 8 : 5);
		struct stack_addr a;
		flow_addr(&R->flows[0], &a);
		stack_neigh_add(R->st, &a, peer_mac_default);
	}
}

static int set_config(const char *key, const char *val)
{
	uint64_t v = 0, d = 0;
	bool is_num = parse_u64(val, &v) == 0;
	bool is_dur = parse_dur(val, &d) == 0;
	bool yes = strcmp(val, "yes") == 0 || strcmp(val, "on") == 0 || strcmp(val, "1") == 0;
	struct stack_config *c = &R->cfg;
	if (R->created && strcmp(key, "tolerance") != 0) {
		fail("config %s after the stack started", key);
		return -1;
	}
#define NUM(name, field)                        \
	if (strcmp(key, name) == 0 && is_num) { \
		c->field = (typeof(c->field))v; \
		return 0;                       \
	}
#define DUR(name, field)                        \
	if (strcmp(key, name) == 0 && is_dur) { \
		c->field = d;                   \
		return 0;                       \
	}
	NUM("rcvbuf", rcvbuf)
	NUM("sndbuf", sndbuf)
	NUM("ooo_max", ooo_max)
	NUM("max_conns", max_conns)
	NUM("max_bufs", max_bufs)
	NUM("mem_budget", mem_budget)
	NUM("mtu", mtu)
	NUM("max_retries", max_retries)
	NUM("syn_retries", syn_retries)
	NUM("synack_retries", synack_retries)
	NUM("challenge_ack_limit", challenge_ack_limit)
	NUM("rcv_wscale", rcv_wscale)
	NUM("neigh_incomplete_max", neigh_incomplete_max)
	NUM("neigh_size", neigh_size)
	NUM("backlog_max", backlog_max)
	NUM("syn_rcvd_max", syn_rcvd_max)
	NUM("synack_retries_pressure", synack_retries_pressure)
	NUM("dad_transmits", dad_transmits)
	DUR("rto_min", rto_min)
	DUR("rto_max", rto_max)
	DUR("rto_initial", rto_initial)
	DUR("delack", delack)
	DUR("msl", msl)
	DUR("idle", idle)
	DUR("cookie_period", cookie_period)
	DUR("neigh_retry", neigh_retry)
	DUR("neigh_ttl", neigh_ttl)
#undef NUM
#undef DUR
	if (strcmp(key, "tx_csum_offload") == 0) {
		c->tx_csum_offload = yes;
		return 0;
	}
	if (strcmp(key, "rx_csum_offload") == 0) {
		c->rx_csum_offload = yes;
		return 0;
	}
	if (strcmp(key, "rst_unknown") == 0) {
		c->rst_unknown = yes;
		return 0;
	}
	if (strcmp(key, "tolerance") == 0 && is_dur) {
		R->tolerance = d;
		return 0;
	}
	if (strcmp(key, "peer_isn") == 0 && is_num) {
		R->peer_isn = (uint32_t)v;
		return 0;
	}
	if (strcmp(key, "lport") == 0 && is_num) {
		R->flows[0].lport = R->def_lport = (uint16_t)v;
		return 0;
	}
	if (strcmp(key, "rport") == 0 && is_num) {
		R->flows[0].rport = R->def_rport = (uint16_t)v;
		return 0;
	}
	if (strcmp(key, "backlog") == 0 && is_num) {
		R->backlog = (unsigned)v;
		return 0;
	}
	if (strcmp(key, "accept") == 0) {
		R->refuse_accept = !yes;
		return 0;
	}
	if (strcmp(key, "autoread") == 0) {
		R->autoread = yes;
		return 0;
	}
	if (strcmp(key, "neigh_static") == 0) {
		R->neigh_static = yes;
		return 0;
	}
	if (strcmp(key, "early_drop") == 0 && parse_ip(val, &R->early_drop_addr) == 0)
		return 0;
	if (strcmp(key, "early_drop") == 0 && parse_ip6(val, R->early_drop6) == 0) {
		R->early_drop6_set = true;
		return 0;
	}
	if (strcmp(key, "ipv6") == 0) {
		R->ipv6 = yes;
		R->flows[0].v6 = yes;
		return 0;
	}
	if (strcmp(key, "gateway6") == 0) {
		uint8_t a[16];
		if (parse_ip6(val, a) != 0)
			return -1;
		stack_addr_ipv6(&c->gateway6, a);
		return 0;
	}
	if (strcmp(key, "gateway") == 0) {
		uint32_t a;
		if (parse_ip(val, &a) != 0)
			return -1;
		stack_addr_ipv4(&c->gateway, a);
		return 0;
	}
	fail("unknown config %s %s", key, val);
	return -1;
}

/* --- Time --- */

/* Move the clock to t in 1 ms steps, running the timers at each, so that
 * every frame is stamped with the time the stack chose to send it. */
static void advance_to(uint64_t t)
{
	if (!R->st)
		return;
	if (t < R->now)
		t = R->now;
	while (R->now < t && !R->failed) {
		uint64_t next = (R->now / MS + 1) * MS;
		if (next > t)
			next = t;
		R->now = next;
		stack_timers(R->st, R->now);
	}
	stack_timers(R->st, R->now);
	const char *bad = stack_check(R->st);
	if (bad)
		fail("stack_check: %s", bad);
}

/* --- Formatting frames for messages --- */

/* The transport header of an IPv4 or IPv6 frame (extension headers
 * skipped), its protocol and length; NULL when neither. */
static const uint8_t *frame_l4(const uint8_t *f, uint32_t len, uint8_t *proto, uint32_t *l4len)
{
	if (len < 34)
		return NULL;
	uint16_t type = rd16(f + 12);
	const uint8_t *ip = f + 14;
	if (type == 0x0800) {
		uint32_t hl = (ip[0] & 15u) * 4, tot = rd16(ip + 2);
		if (hl < 20 || tot < hl || 14 + tot > len)
			return NULL;
		*proto = ip[9];
		*l4len = tot - hl;
		return ip + hl;
	}
	if (type != 0x86dd || len < 54)
		return NULL;
	uint32_t end = 40 + rd16(ip + 4), off = 40;
	if (14 + end > len)
		return NULL;
	uint8_t nh = ip[6];
	for (int k = 0; k < 16 && (nh == 0 || nh == 43 || nh == 60 || nh == 44); k++) {
		if (off + 8 > end)
			return NULL;
		uint32_t hl = nh == 44 ? 8 : ((uint32_t)ip[off + 1] + 1) * 8;
		nh = ip[off];
		off += hl;
	}
	if (off > end)
		return NULL;
	*proto = nh;
	*l4len = end - off;
	return ip + off;
}

static void format_frame(const uint8_t *f, uint32_t len, char *buf, size_t n, bool in)
{
	struct flow *fl = &R->flows[R->cur];
	if (len < 14) {
		snprintf(buf, n, "runt frame of %u bytes", len);
		return;
	}
	uint16_t type = rd16(f + 12);
	if (type == 0x0806 && len >= 42) {
		char s[20], t[20];
		ip_str(rd32(f + 28), s, sizeof(s));
		ip_str(rd32(f + 38), t, sizeof(t));
		snprintf(buf, n, "arp %s sender %s target %s",
			 rd16(f + 20) == 1 ? "request" : "reply", s, t);
		return;
	}
	uint8_t proto;
	uint32_t l4len;
	const uint8_t *th = frame_l4(f, len, &proto, &l4len);
	if (!th) {
		snprintf(buf, n, "frame type %#x len %u", type, len);
		return;
	}
	if (proto == 1 || proto == 58) {
		if (l4len < 8) {
			snprintf(buf, n, "short icmp");
			return;
		}
		if (proto == 58 && (th[0] == 135 || th[0] == 136) && l4len >= 24) {
			char t[64], sa[64];
			inet_ntop(AF_INET6, th + 8, t, sizeof(t));
			inet_ntop(AF_INET6, f + 14 + 8, sa, sizeof(sa));
			snprintf(buf, n, "nd %s target %s from %s flags %#x",
				 th[0] == 135 ? "ns" : "na", t, sa, th[4]);
			return;
		}
		snprintf(buf, n, "icmp%s type %u id %u seq %u len %u", proto == 58 ? "6" : "",
			 th[0], rd16(th + 4), rd16(th + 6), l4len);
		return;
	}
	if (proto != 6 || l4len < 20) {
		snprintf(buf, n, "ip proto %u", proto);
		return;
	}
	uint32_t doff = (uint32_t)(th[12] >> 4) * 4;
	uint32_t plen = l4len - doff;
	char flags[16];
	int k = 0;
	uint8_t fl8 = th[13];
	if (fl8 & 0x02)
		flags[k++] = 'S';
	if (fl8 & 0x01)
		flags[k++] = 'F';
	if (fl8 & 0x04)
		flags[k++] = 'R';
	if (fl8 & 0x08)
		flags[k++] = 'P';
	if (fl8 & 0x10)
		flags[k++] = '.';
	flags[k] = 0;
	uint32_t our = fl->isn_known ? fl->our_isn : 0;
	uint32_t seq = rd32(th + 4) - (in ? R->peer_isn : our);
	int m = snprintf(buf, n, "%u>%u %s %u:%u(%u)", rd16(th), rd16(th + 2), flags, seq,
			 seq + plen, plen);
	if (fl8 & 0x10)
		m += snprintf(buf + m, n - (size_t)m, " ack %u",
			      rd32(th + 8) - (in ? our : R->peer_isn));
	m += snprintf(buf + m, n - (size_t)m, " win %u", rd16(th + 14));
	if (doff > 20) {
		m += snprintf(buf + m, n - (size_t)m, " <");
		for (uint32_t i = 20; i < doff && (size_t)m < n - 20;) {
			uint8_t kind = th[i];
			if (kind == 0)
				break;
			if (kind == 1) {
				m += snprintf(buf + m, n - (size_t)m, "nop,");
				i++;
				continue;
			}
			if (i + 1 >= doff || th[i + 1] < 2)
				break;
			if (kind == 2)
				m += snprintf(buf + m, n - (size_t)m, "mss %u,", rd16(th + i + 2));
			else if (kind == 3)
				m += snprintf(buf + m, n - (size_t)m, "wscale %u,", th[i + 2]);
			else
				m += snprintf(buf + m, n - (size_t)m, "opt%u,", kind);
			i += th[i + 1];
		}
		if (buf[m - 1] == ',')
			m--;
		snprintf(buf + m, n - (size_t)m, ">");
	}
}

/* --- Line parsing --- */

#define MAX_TOK 32

struct line {
	char *tok[MAX_TOK];
	int ntok;
	char opts[256]; /* inside <...> */
	bool has_opts;
	char muts[512]; /* inside [...] */
	bool has_muts;
};

static int split_line(char *s, struct line *L)
{
	memset(L, 0, sizeof(*L));
	/* Pull out <...> and [...] first: they hold spaces and commas.  A
	 * lone '<' or '>' token (the direction) is not an option list. */
	for (char *p = s; *p; p++) {
		if ((*p == '<' && p[1] != ' ' && p[1] != '\0') || *p == '[') {
			char close = *p == '<' ? '>' : ']';
			char *e = strchr(p + 1, close);
			if (!e)
				return -1;
			char *dst = *p == '<' ? L->opts : L->muts;
			size_t cap = *p == '<' ? sizeof(L->opts) : sizeof(L->muts);
			size_t len = (size_t)(e - p - 1);
			if (len >= cap)
				return -1;
			memcpy(dst, p + 1, len);
			dst[len] = 0;
			if (*p == '<')
				L->has_opts = true;
			else
				L->has_muts = true;
			memset(p, ' ', (size_t)(e - p + 1));
			p = e;
		}
	}
	char *save = NULL;
	for (char *t = strtok_r(s, " \t\r\n", &save); t && L->ntok < MAX_TOK;
	     t = strtok_r(NULL, " \t\r\n", &save))
		L->tok[L->ntok++] = t;
	return 0;
}

static const char *kv(const struct line *L, int from, const char *key)
{
	for (int i = from; i + 1 < L->ntok; i++)
		if (strcmp(L->tok[i], key) == 0)
			return L->tok[i + 1];
	return NULL;
}

/* An expectation line names only keys its type checks, each with a value:
 * a typo must fail the script, not silently drop the check. */
static bool kv_known(const struct line *L, int from, const char *const *keys, const char *what)
{
	for (int i = from; i < L->ntok; i += 2) {
		bool ok = false;

		for (const char *const *k = keys; *k; k++)
			ok = ok || strcmp(L->tok[i], *k) == 0;
		if (!ok) {
			fail("%s line: unknown key %s", what, L->tok[i]);
			return false;
		}
		if (i + 1 >= L->ntok) {
			fail("%s line: %s needs a value", what, L->tok[i]);
			return false;
		}
	}
	return true;
}

static int parse_flags(const char *s, uint8_t *out)
{
	uint8_t f = 0;
	for (; *s; s++) {
		switch (*s) {
		case 'S':
			f |= 0x02;
			break;
		case 'F':
			f |= 0x01;
			break;
		case 'R':
			f |= 0x04;
			break;
		case 'P':
			f |= 0x08;
			break;
		case '.':
			f |= 0x10;
			break;
		case 'U':
			f |= 0x20;
			break;
		case 'E':
			f |= 0x40;
			break;
		case 'W':
			f |= 0x80;
			break;
		default:
			return -1;
		}
	}
	*out = f;
	return 0;
}

static int parse_range(const char *s, uint32_t *start, uint32_t *len)
{
	unsigned long long a, b, l;
	if (sscanf(s, "%llu:%llu(%llu)", &a, &b, &l) != 3 || b < a || b - a != l)
		return -1;
	*start = (uint32_t)a;
	*len = (uint32_t)l;
	return 0;
}

/* Options as (kind, value) pairs, NOPs left out. */
struct optv {
	int n;
	uint8_t kind[16];
	uint32_t val[16];
	uint32_t val2[16];
};

static int parse_optlist(const char *s, struct optv *o, uint8_t *raw, uint32_t *rawlen)
{
	o->n = 0;
	uint32_t rl = 0;
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", s);
	char *save = NULL;
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		while (*t == ' ')
			t++;
		unsigned v1 = 0, v2 = 0;
		if (o->n >= 16 || rl > 36)
			return -1;
		if (sscanf(t, "mss %u", &v1) == 1) {
			raw[rl++] = 2;
			raw[rl++] = 4;
			wr16(raw + rl, (uint16_t)v1);
			rl += 2;
			o->kind[o->n] = 2;
			o->val[o->n++] = v1;
		} else if (sscanf(t, "wscale %u", &v1) == 1) {
			raw[rl++] = 3;
			raw[rl++] = 3;
			raw[rl++] = (uint8_t)v1;
			o->kind[o->n] = 3;
			o->val[o->n++] = v1;
		} else if (strncmp(t, "nop", 3) == 0) {
			raw[rl++] = 1;
		} else if (strncmp(t, "eol", 3) == 0) {
			raw[rl++] = 0;
		} else if (strncmp(t, "sackOK", 6) == 0) {
			raw[rl++] = 4;
			raw[rl++] = 2;
			o->kind[o->n] = 4;
			o->val[o->n++] = 0;
		} else if (sscanf(t, "TS val %u ecr %u", &v1, &v2) == 2) {
			raw[rl++] = 8;
			raw[rl++] = 10;
			wr32(raw + rl, v1);
			wr32(raw + rl + 4, v2);
			rl += 8;
			o->kind[o->n] = 8;
			o->val[o->n] = v1;
			o->val2[o->n++] = v2;
		} else if (sscanf(t, "badopt %u len %u", &v1, &v2) == 2) {
			/* A kind and length with no body: overruns the header. */
			raw[rl++] = (uint8_t)v1;
			raw[rl++] = (uint8_t)v2;
		} else if (sscanf(t, "opt %u len %u", &v1, &v2) == 2 && v2 >= 2 && v2 <= 10) {
			/* An arbitrary (possibly malformed) option. */
			raw[rl++] = (uint8_t)v1;
			raw[rl++] = (uint8_t)v2;
			memset(raw + rl, 0, v2 - 2);
			rl += v2 - 2;
		} else {
			return -1;
		}
	}
	while (rl % 4)
		raw[rl++] = 1; /* pad with NOPs */
	*rawlen = rl;
	return 0;
}

static void parse_frame_opts(const uint8_t *th, uint32_t doff, struct optv *o)
{
	o->n = 0;
	for (uint32_t i = 20; i < doff && o->n < 16;) {
		uint8_t kind = th[i];
		if (kind == 0)
			break;
		if (kind == 1) {
			i++;
			continue;
		}
		if (i + 1 >= doff || th[i + 1] < 2 || i + th[i + 1] > doff) {
			o->kind[o->n] = 255; /* malformed */
			o->val[o->n++] = 0;
			break;
		}
		o->kind[o->n] = kind;
		o->val[o->n] = kind == 2 ? rd16(th + i + 2) : kind == 3 ? th[i + 2] : 0;
		o->val2[o->n] = 0;
		if (kind == 8 && th[i + 1] == 10) {
			o->val[o->n] = rd32(th + i + 2);
			o->val2[o->n] = rd32(th + i + 6);
		}
		o->n++;
		i += th[i + 1];
	}
}

/* --- Inbound frames --- */

struct mutations {
	bool bad_ipcsum, bad_tcpcsum, mf;
	int iplen_delta;
	bool iplen_set;
	uint32_t iplen;
	int ihl, ver, ttl, proto, doff;
	uint32_t fragoff, ipopts, trunc, pad;
	bool src_set, dst_set, dmac_set, smac_set;
	uint32_t src, dst;
	uint8_t dmac[6], smac[6];
	int ethtype;
	/* IPv6: the addresses, extension headers in order (kind, length in
	 * octets, routing segments left / option type), flow label. */
	bool src6_set, dst6_set;
	uint8_t src6[16], dst6[16];
	int next_hdr; /* overrides the last next-header field */
	unsigned next;
	struct {
		uint8_t kind;
		uint32_t len;
		uint8_t arg;
	} ext[40];
	bool frag6;
};

static int parse_mutations(const char *s, struct mutations *m)
{
	memset(m, 0, sizeof(*m));
	m->ihl = m->ver = m->ttl = m->proto = m->doff = m->ethtype = m->next_hdr = -1;
	char buf[512];
	snprintf(buf, sizeof(buf), "%s", s);
	char *save = NULL;
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		while (*t == ' ')
			t++;
		char k[32] = "", v[64] = "";
		int n = sscanf(t, "%31s %63s", k, v);
		uint64_t x = 0;
		bool num = n == 2 && parse_u64(v, &x) == 0;
		if (strcmp(k, "ipcsum") == 0)
			m->bad_ipcsum = true;
		else if (strcmp(k, "tcpcsum") == 0 || strcmp(k, "icmpcsum") == 0)
			m->bad_tcpcsum = true;
		else if (strcmp(k, "mf") == 0)
			m->mf = true;
		else if (strcmp(k, "iplen") == 0 && n == 2) {
			if (v[0] == '+' || v[0] == '-')
				m->iplen_delta = atoi(v);
			else if (num) {
				m->iplen_set = true;
				m->iplen = (uint32_t)x;
			} else
				return -1;
		} else if (strcmp(k, "ihl") == 0 && num)
			m->ihl = (int)x;
		else if (strcmp(k, "ver") == 0 && num)
			m->ver = (int)x;
		else if (strcmp(k, "ttl") == 0 && num)
			m->ttl = (int)x;
		else if (strcmp(k, "proto") == 0 && num)
			m->proto = (int)x;
		else if (strcmp(k, "doff") == 0 && num)
			m->doff = (int)x;
		else if (strcmp(k, "fragoff") == 0 && num)
			m->fragoff = (uint32_t)x;
		else if (strcmp(k, "ipopts") == 0 && num && x % 4 == 0 && x <= 40)
			m->ipopts = (uint32_t)x;
		else if (strcmp(k, "trunc") == 0 && num)
			m->trunc = (uint32_t)x;
		else if (strcmp(k, "pad") == 0 && num)
			m->pad = (uint32_t)x;
		else if (strcmp(k, "src") == 0 && parse_ip(v, &m->src) == 0)
			m->src_set = true;
		else if (strcmp(k, "dst") == 0 && parse_ip(v, &m->dst) == 0)
			m->dst_set = true;
		else if (strcmp(k, "src") == 0 && parse_ip6(v, m->src6) == 0)
			m->src6_set = true;
		else if (strcmp(k, "dst") == 0 && parse_ip6(v, m->dst6) == 0)
			m->dst6_set = true;
		else if (strcmp(k, "hlim") == 0 && num)
			m->ttl = (int)x;
		else if (strcmp(k, "nexthdr") == 0 && num)
			m->next_hdr = (int)x;
		else if ((strcmp(k, "hbh") == 0 || strcmp(k, "dstopt") == 0 ||
			  strcmp(k, "badopt") == 0 || strcmp(k, "skipopt") == 0) &&
			 num && x >= 8 && x % 8 == 0 && x <= 2048 && m->next < 40) {
			/* an options header of x octets, PadN (or an unknown
			 * option whose type says discard / skip) */
			m->ext[m->next].kind = k[0] == 'h' ? 0 : 60;
			m->ext[m->next].arg = k[0] == 'b' ? 0xc2 : k[0] == 's' ? 0x1e : 1;
			m->ext[m->next++].len = (uint32_t)x;
		} else if (strcmp(k, "rthdr") == 0 && num && m->next < 40) {
			/* a routing header (type 4) with x segments left */
			m->ext[m->next].kind = 43;
			m->ext[m->next].arg = (uint8_t)x;
			m->ext[m->next++].len = 24;
		} else if (strcmp(k, "extchain") == 0 && num && x <= 40) {
			/* x destination options headers in a row, 8 octets each */
			for (uint64_t e = 0; e < x && m->next < 40; e++) {
				m->ext[m->next].kind = 60;
				m->ext[m->next].arg = 1;
				m->ext[m->next++].len = 8;
			}
		} else if (strcmp(k, "exttrunc") == 0 && m->next < 40) {
			/* an options header claiming more than the datagram has */
			m->ext[m->next].kind = 60;
			m->ext[m->next].arg = 0xff;
			m->ext[m->next++].len = 8;
		} else if (strcmp(k, "frag") == 0) {
			m->frag6 = true;
			if (m->next < 40) {
				m->ext[m->next].kind = 44;
				m->ext[m->next++].len = 8;
			}
		} else if (strcmp(k, "dmac") == 0 && parse_mac(v, m->dmac) == 0)
			m->dmac_set = true;
		else if (strcmp(k, "smac") == 0 && parse_mac(v, m->smac) == 0)
			m->smac_set = true;
		else if (strcmp(k, "ethtype") == 0 && num)
			m->ethtype = (int)x;
		else
			return -1;
	}
	return 0;
}

/* Seeds for tests/fuzz/fuzz_stack.c, in its input format: records of a
 * 2-byte length, a control byte and the frame; a length of 0 makes the
 * control byte an application action (0 connect, 1 close, 2 abort, 3 send,
 * 5 static neighbour, 7 connect over IPv6, 8 static IPv6 neighbour) or a clock step (0x40 + n: n * 100 ms, 0x80 + n:
 * n ms, 0xc0 + n: n s), so the fuzzer replays a script's timing exactly. */
static void corpus_op(uint8_t op)
{
	if (!R->corpus)
		return;
	uint8_t rec[3] = { 0, 0, op };
	fwrite(rec, 1, 3, R->corpus);
}

static void corpus_sync_time(void)
{
	if (!R->corpus)
		return;
	uint64_t dt = (R->now - R->corpus_time) / MS;
	R->corpus_time += dt * MS;
	while (dt >= 1000) {
		uint64_t n = dt / 1000 > 63 ? 63 : dt / 1000;
		corpus_op((uint8_t)(0xc0 | n));
		dt -= n * 1000;
	}
	if (dt >= 100) {
		corpus_op((uint8_t)(0x40 | dt / 100));
		dt %= 100;
	}
	while (dt) {
		uint64_t n = dt > 63 ? 63 : dt;
		corpus_op((uint8_t)(0x80 | n));
		dt -= n;
	}
}

static void corpus_frame(const uint8_t *f, uint32_t len)
{
	if (!R->corpus)
		return;
	corpus_sync_time();
	uint8_t hdr[3] = { (uint8_t)(len >> 8), (uint8_t)len, 0 };
	fwrite(hdr, 1, 3, R->corpus);
	fwrite(f, 1, len, R->corpus);
}

static void inject(uint8_t *f, uint32_t len)
{
	if (R->verbose) {
		char buf[512];
		format_frame(f, len, buf, sizeof(buf), true);
		printf("  %8.3f < %s\n", (double)R->now / 1e9, buf);
	}
	corpus_frame(f, len);
	stack_input(R->st, f, len, R->now);
	const char *bad = stack_check(R->st);
	if (bad)
		fail("stack_check: %s", bad);
}

static uint32_t ext_len(const struct mutations *m)
{
	uint32_t n = 0;
	for (unsigned i = 0; i < m->next; i++)
		n += m->ext[i].len;
	return n;
}

/* Where the transport header goes in a frame built for the current flow. */
static uint32_t l4_off(const struct mutations *m)
{
	if (R->flows[R->cur].v6)
		return 14 + 40 + ext_len(m);
	return 14 + 20 + m->ipopts;
}

/* The pseudo-header sum of a frame built by build_ip. */
static uint32_t l4_pseudo(const uint8_t *f, uint8_t proto, uint32_t len)
{
	const uint8_t *ip = f + 14;
	if (R->flows[R->cur].v6)
		return sum16(sum16(0, ip + 8, 16), ip + 24, 16) + proto + (len >> 16) +
		       (len & 0xffff);
	return sum16(sum16(0, ip + 12, 4), ip + 16, 4) + proto + len;
}

static uint32_t build_ip6(uint8_t *f, uint8_t proto, uint32_t l4len, const struct mutations *m)
{
	struct flow *fl = &R->flows[R->cur];
	memcpy(f, m->dmac_set ? m->dmac : our_mac, 6);
	memcpy(f + 6, m->smac_set ? m->smac : peer_mac_default, 6);
	wr16(f + 12, m->ethtype >= 0 ? (uint16_t)m->ethtype : 0x86dd);
	uint8_t *ip = f + 14;
	uint32_t el = ext_len(m);
	wr32(ip, (uint32_t)(m->ver >= 0 ? m->ver : 6) << 28);
	uint32_t pl = el + l4len;
	if (m->iplen_set)
		pl = m->iplen;
	pl = (uint32_t)((int)pl + m->iplen_delta);
	wr16(ip + 4, (uint16_t)pl);
	uint8_t last = m->proto >= 0 ? (uint8_t)m->proto : proto;
	if (m->next_hdr >= 0)
		last = (uint8_t)m->next_hdr;
	ip[6] = m->next ? m->ext[0].kind : last;
	ip[7] = (uint8_t)(m->ttl >= 0 ? m->ttl : 64);
	memcpy(ip + 8, m->src6_set ? m->src6 : fl->raddr6, 16);
	memcpy(ip + 24, m->dst6_set ? m->dst6 : R->laddr6, 16);
	uint8_t *h = ip + 40;
	for (unsigned i = 0; i < m->next; i++) {
		uint32_t hl = m->ext[i].len;
		memset(h, 0, hl);
		h[0] = i + 1 < m->next ? m->ext[i + 1].kind : last;
		if (m->ext[i].kind == 44) {
			wr16(h + 2, (uint16_t)((m->fragoff & 0x1fff) << 3 | (m->mf ? 1 : 0)));
			wr32(h + 4, 0x1234);
		} else if (m->ext[i].kind == 43) {
			h[1] = (uint8_t)(hl / 8 - 1);
			h[2] = 4;
			h[3] = m->ext[i].arg;
		} else {
			h[1] = m->ext[i].arg == 0xff ? 200 : (uint8_t)(hl / 8 - 1);
			h[2] = m->ext[i].arg == 0xff ? 1 : m->ext[i].arg;
			h[3] = (uint8_t)(hl - 4);
		}
		h += hl;
	}
	uint32_t flen = 14 + 40 + el + l4len + m->pad;
	if (flen < 60)
		flen = 60;
	if (m->trunc && m->trunc < flen)
		flen = m->trunc;
	return flen;
}

/* Build Ethernet + IPv4 around a payload at f + 14 + 20 + ipopts (or IPv6
 * with its extension headers, on a v6 flow: at l4_off). */
static uint32_t build_ip(uint8_t *f, uint8_t proto, uint32_t l4len, const struct mutations *m)
{
	struct flow *fl = &R->flows[R->cur];
	if (fl->v6)
		return build_ip6(f, proto == 1 ? 58 : proto, l4len, m);
	memcpy(f, m->dmac_set ? m->dmac : our_mac, 6);
	memcpy(f + 6, m->smac_set ? m->smac : peer_mac_default, 6);
	wr16(f + 12, m->ethtype >= 0 ? (uint16_t)m->ethtype : 0x0800);
	uint8_t *ip = f + 14;
	uint32_t hl = 20 + m->ipopts;
	ip[0] = (uint8_t)(((m->ver >= 0 ? m->ver : 4) << 4) | (m->ihl >= 0 ? m->ihl : (int)hl / 4));
	ip[1] = 0;
	uint32_t tot = hl + l4len;
	if (m->iplen_set)
		tot = m->iplen;
	tot = (uint32_t)((int)tot + m->iplen_delta);
	wr16(ip + 2, (uint16_t)tot);
	wr16(ip + 4, 0x1234);
	/* DF, unless the line asks for a fragment. */
	wr16(ip + 6, (uint16_t)((m->mf || m->fragoff ? (m->mf ? 0x2000 : 0) : 0x4000) |
				(m->fragoff & 0x1fff)));
	ip[8] = (uint8_t)(m->ttl >= 0 ? m->ttl : 64);
	ip[9] = m->proto >= 0 ? (uint8_t)m->proto : proto;
	wr16(ip + 10, 0);
	wr32(ip + 12, m->src_set ? m->src : fl->raddr);
	wr32(ip + 16, m->dst_set ? m->dst : R->laddr);
	for (uint32_t i = 0; i < m->ipopts; i++)
		ip[20 + i] = 1; /* NOP options */
	wr16(ip + 10, fold(sum16(0, ip, hl)));
	if (m->bad_ipcsum)
		ip[11] ^= 0x5a;
	uint32_t flen = 14 + hl + l4len + m->pad;
	if (flen < 60)
		flen = 60; /* Ethernet minimum, as a NIC would deliver it */
	if (m->trunc && m->trunc < flen)
		flen = m->trunc;
	return flen;
}

static void line_inbound_tcp(const struct line *L)
{
	struct flow *fl = &R->flows[R->cur];
	uint8_t flags;
	uint32_t start, len;
	if (L->ntok < 3 || parse_flags(L->tok[1], &flags) || parse_range(L->tok[2], &start, &len)) {
		fail("bad inbound segment line");
		return;
	}
	uint64_t ackv = 0, winv = 65535;
	const char *a = kv(L, 3, "ack");
	if (a && parse_u64(a, &ackv)) {
		fail("bad ack");
		return;
	}
	const char *w = kv(L, 3, "win");
	if (w && parse_u64(w, &winv)) {
		fail("bad win");
		return;
	}
	struct mutations m;
	if (parse_mutations(L->has_muts ? L->muts : "", &m)) {
		fail("bad mutations [%s]", L->muts);
		return;
	}
	uint8_t optraw[48];
	uint32_t optlen = 0;
	struct optv ov;
	if (L->has_opts && parse_optlist(L->opts, &ov, optraw, &optlen)) {
		fail("bad options <%s>", L->opts);
		return;
	}
	static uint8_t f[MAX_FRAME + 100];
	memset(f, 0, sizeof(f));
	uint32_t tcplen = 20 + optlen + len;
	if (l4_off(&m) + tcplen > MAX_FRAME) {
		fail("segment too large");
		return;
	}
	uint8_t *th = f + l4_off(&m);
	wr16(th, fl->rport);
	wr16(th + 2, fl->lport);
	wr32(th + 4, R->peer_isn + start);
	wr32(th + 8, (uint32_t)ackv + (fl->isn_known ? fl->our_isn : 0));
	th[12] = (uint8_t)(((m.doff >= 0 ? (uint32_t)m.doff : (20 + optlen) / 4)) << 4);
	th[13] = flags;
	wr16(th + 14, (uint16_t)winv);
	memcpy(th + 20, optraw, optlen);
	for (uint32_t i = 0; i < len; i++)
		th[20 + optlen + i] = peer_byte((uint64_t)start + i - 1);
	/* The pseudo-header needs the addresses: the IP header goes first. */
	uint32_t flen = build_ip(f, 6, tcplen, &m);
	uint32_t csum = fold(sum16(l4_pseudo(f, 6, tcplen), th, tcplen));
	wr16(th + 16, (uint16_t)csum);
	if (m.bad_tcpcsum)
		th[17] ^= 0x33;
	inject(f, flen);
}

static void line_inbound_arp(const struct line *L)
{
	struct flow *fl = &R->flows[R->cur];
	if (L->ntok < 4) {
		fail("arp line: < arp request|reply IP [from IP] [mac MAC] [to IP]");
		return;
	}
	bool req = strcmp(L->tok[2], "request") == 0;
	uint32_t ipx, from = fl->raddr, to = R->laddr;
	uint8_t mac[6];
	memcpy(mac, peer_mac_default, 6);
	if (parse_ip(L->tok[3], &ipx)) {
		fail("bad IP %s", L->tok[3]);
		return;
	}
	const char *s;
	if ((s = kv(L, 4, "from")) && parse_ip(s, &from)) {
		fail("bad from");
		return;
	}
	if ((s = kv(L, 4, "to")) && parse_ip(s, &to)) {
		fail("bad to");
		return;
	}
	if ((s = kv(L, 4, "mac")) && parse_mac(s, mac)) {
		fail("bad mac");
		return;
	}
	static uint8_t f[64];
	memset(f, 0, sizeof(f));
	memcpy(f, req ? (const uint8_t[6]){ 255, 255, 255, 255, 255, 255 } : our_mac, 6);
	memcpy(f + 6, mac, 6);
	wr16(f + 12, 0x0806);
	uint8_t *a = f + 14;
	wr16(a, 1);
	wr16(a + 2, 0x0800);
	a[4] = 6;
	a[5] = 4;
	wr16(a + 6, req ? 1 : 2);
	memcpy(a + 8, mac, 6);
	/* request: who has ipx, tell from.  reply: ipx is at mac, to `to`. */
	wr32(a + 14, req ? from : ipx);
	if (!req)
		memcpy(a + 18, our_mac, 6);
	wr32(a + 24, req ? ipx : to);
	uint32_t flen = 60;
	if (L->has_muts) {
		struct mutations m;
		if (parse_mutations(L->muts, &m)) {
			fail("bad mutations");
			return;
		}
		if (m.trunc)
			flen = m.trunc;
	}
	inject(f, flen);
}

static void line_inbound_icmp(const struct line *L)
{
	uint64_t id = 1, sq = 1, len = 56, type = 8;
	const char *s;
	if (L->ntok >= 3 && strcmp(L->tok[2], "echo") != 0) {
		if (parse_u64(L->tok[2], &type)) {
			fail("icmp line: < icmp echo|TYPE [id N] [seq N] [len N]");
			return;
		}
	}
	if ((s = kv(L, 2, "id")))
		parse_u64(s, &id);
	if ((s = kv(L, 2, "seq")))
		parse_u64(s, &sq);
	if ((s = kv(L, 2, "len")))
		parse_u64(s, &len);
	if (len < 8 || len > 9000) {
		fail("icmp len out of range");
		return;
	}
	struct mutations m;
	if (parse_mutations(L->has_muts ? L->muts : "", &m)) {
		fail("bad mutations");
		return;
	}
	static uint8_t f[MAX_FRAME + 100];
	memset(f, 0, sizeof(f));
	bool v6 = R->flows[R->cur].v6;
	uint8_t *ic = f + l4_off(&m);
	/* "echo" on an IPv6 flow is ICMPv6's (128) */
	ic[0] = (uint8_t)(v6 && (L->ntok < 3 || strcmp(L->tok[2], "echo") == 0) ? 128 : type);
	ic[1] = 0;
	wr16(ic + 4, (uint16_t)id);
	wr16(ic + 6, (uint16_t)sq);
	for (uint64_t i = 8; i < len; i++)
		ic[i] = (uint8_t)(i * 13);
	memcpy(R->echo_payload, ic, len);
	R->echo_len = (uint32_t)len;
	uint32_t flen = build_ip(f, 1, (uint32_t)len, &m);
	wr16(ic + 2, fold(sum16(v6 ? l4_pseudo(f, 58, (uint32_t)len) : 0, ic, len)));
	if (m.bad_tcpcsum)
		ic[3] ^= 0x44;
	inject(f, flen);
}

static void line_inbound_raw(const struct line *L)
{
	/* < raw HEXBYTES...: a frame exactly as given. */
	static uint8_t f[MAX_FRAME];
	uint32_t n = 0;
	for (int i = 2; i < L->ntok; i++) {
		for (const char *p = L->tok[i]; p[0] && p[1] && n < sizeof(f); p += 2) {
			unsigned b;
			if (sscanf(p, "%2x", &b) != 1) {
				fail("bad hex");
				return;
			}
			f[n++] = (uint8_t)b;
		}
	}
	inject(f, n);
}

/* --- Outbound expectations --- */

static struct outpkt *next_out(const char *what)
{
	if (R->out_head >= R->nout) {
		fail("expected %s, but nothing was sent", what);
		return NULL;
	}
	return &R->out[R->out_head++];
}

static void check_time(const struct outpkt *o)
{
	uint64_t want = R->line_time, got = o->when;
	uint64_t d = want > got ? want - got : got - want;
	if (d > R->tolerance) {
		char buf[512];
		format_frame(o->data, o->len, buf, sizeof(buf), false);
		fail("%s sent at %.3f s, expected at %.3f s", buf, (double)got / 1e9,
		     (double)want / 1e9);
	}
}

/* Every datagram the stack sends is atomic: DF set, ID 0 (a per-stack
 * counter would be a side channel).  Checked on every frame of every
 * script. */
static bool ip_id_df_ok(const uint8_t *ip, const char *got)
{
	if (rd16(ip + 4) != 0 || rd16(ip + 6) != 0x4000) {
		fail("IP ID %u, flags/offset %#x on %s: want ID 0 with DF", rd16(ip + 4),
		     rd16(ip + 6), got);
		return false;
	}
	return true;
}

static void line_outbound_tcp(const struct line *L)
{
	struct flow *fl = &R->flows[R->cur];
	uint8_t flags;
	uint32_t start, len;
	if (L->ntok < 3 || parse_flags(L->tok[1], &flags) || parse_range(L->tok[2], &start, &len)) {
		fail("bad outbound segment line");
		return;
	}
	static const char *const keys[] = { "ack", "win", "dmac", NULL };
	if (!kv_known(L, 3, keys, "outbound segment"))
		return;
	struct outpkt *o = next_out("a TCP segment");
	if (!o)
		return;
	char got[512];
	format_frame(o->data, o->len, got, sizeof(got), false);
	const uint8_t *f = o->data;
	if (fl->v6) {
		if (o->len < 74 || rd16(f + 12) != 0x86dd || f[14 + 6] != 6) {
			fail("expected a TCP/IPv6 segment, got %s", got);
			return;
		}
	} else if (o->len < 54 || rd16(f + 12) != 0x0800 || f[14 + 9] != 6) {
		fail("expected a TCP segment, got %s", got);
		return;
	}
	uint8_t dmac[6];
	memcpy(dmac, peer_mac_default, 6);
	const char *dm = kv(L, 3, "dmac");
	if (dm && parse_mac(dm, dmac)) {
		fail("bad dmac %s", dm);
		return;
	}
	if (memcmp(f, dmac, 6) != 0 || memcmp(f + 6, our_mac, 6) != 0) {
		fail("wrong MAC addresses on %s", got);
		return;
	}
	const uint8_t *ip = f + 14;
	uint32_t hl = (ip[0] & 15u) * 4, tot = rd16(ip + 2);
	if (fl->v6) {
		/* Version 6, traffic class and flow label 0 (nothing shared
		 * across connections shows, as IP ID 0 for IPv4), hop limit
		 * 64, no extension headers, our address to the peer's. */
		hl = 40;
		tot = 40 + rd16(ip + 4);
		if (rd32(ip) != 0x60000000u || tot + 14 != o->len || ip[7] != 64 ||
		    memcmp(ip + 8, R->laddr6, 16) != 0 || memcmp(ip + 24, fl->raddr6, 16) != 0) {
			fail("bad IPv6 header on %s", got);
			return;
		}
		if (o->ti.ip_csum_offload || !o->ti.is_ipv6 || o->ti.l3_len != 40) {
			fail("offload info wrong for IPv6 on %s", got);
			return;
		}
	} else if (ip[0] != 0x45 || tot + 14 != o->len || rd32(ip + 12) != R->laddr ||
		   rd32(ip + 16) != fl->raddr) {
		fail("bad IPv4 header on %s", got);
		return;
	}
	if (!fl->v6 && !ip_id_df_ok(ip, got))
		return;
	const uint8_t *th = ip + hl;
	uint32_t tcplen = tot - hl;
	if (fl->v6) {
		uint32_t ps = l4_pseudo(f, 6, tcplen);
		if (o->ti.l4_csum_offload) {
			uint16_t want = (uint16_t)~fold(ps);
			if (rd16(th + 16) != want)
				fail("TCP checksum field should hold the IPv6 pseudo-header sum");
		} else if (fold(sum16(ps, th, tcplen)) != 0) {
			fail("bad TCP checksum on %s", got);
		}
	} else if (o->ti.ip_csum_offload) {
		if (rd16(ip + 10) != 0)
			fail("IP checksum should be left to the NIC");
		uint16_t want = (uint16_t)~fold(tcp_pseudo(ip + 12, ip + 16, tcplen));
		if (rd16(th + 16) != want)
			fail("TCP checksum field should hold the pseudo-header sum");
	} else {
		if (fold(sum16(0, ip, hl)) != 0)
			fail("bad IP checksum on %s", got);
		if (fold(sum16(tcp_pseudo(ip + 12, ip + 16, tcplen), th, tcplen)) != 0)
			fail("bad TCP checksum on %s", got);
	}
	if (rd16(th) != fl->lport || rd16(th + 2) != fl->rport) {
		fail("segment for another flow: %s (current flow %u>%u)", got, fl->lport,
		     fl->rport);
		return;
	}
	uint32_t doff = (uint32_t)(th[12] >> 4) * 4;
	uint32_t plen = tcplen - doff;
	uint32_t seq = rd32(th + 4);
	if (flags & 0x02) {
		/* Every SYN we send names our ISN for the flow (a new
		 * connection on the same tuple has a new one). */
		fl->isn_known = true;
		fl->our_isn = seq - start;
		format_frame(o->data, o->len, got, sizeof(got), false);
	}
	uint32_t base = fl->isn_known ? fl->our_isn : 0;
	if (th[13] != flags || seq - base != start || plen != len) {
		fail("got %s", got);
		return;
	}
	const char *a = kv(L, 3, "ack");
	if (a) {
		uint64_t av;
		if (parse_u64(a, &av) || rd32(th + 8) - R->peer_isn != (uint32_t)av) {
			fail("got %s, want ack %s", got, a);
			return;
		}
	}
	const char *w = kv(L, 3, "win");
	if (w) {
		uint64_t wv;
		if (parse_u64(w, &wv) || rd16(th + 14) != wv) {
			fail("got %s, want win %s", got, w);
			return;
		}
	}
	if (L->has_opts) {
		struct optv want, have;
		uint8_t raw[48];
		uint32_t rl;
		if (parse_optlist(L->opts, &want, raw, &rl)) {
			fail("bad options <%s>", L->opts);
			return;
		}
		parse_frame_opts(th, doff, &have);
		bool same = want.n == have.n;
		for (int i = 0; same && i < want.n; i++)
			same = want.kind[i] == have.kind[i] && want.val[i] == have.val[i];
		if (!same) {
			fail("got %s, want options <%s>", got, L->opts);
			return;
		}
	}
	/* Payload: the application's stream at offset seq - 1. */
	for (uint32_t i = 0; i < plen; i++) {
		uint64_t k = (uint64_t)(uint32_t)(start + i - 1);
		if (th[doff + i] != app_byte(k)) {
			fail("payload byte %u of %s is %#x, want %#x", i, got, th[doff + i],
			     app_byte(k));
			return;
		}
	}
	check_time(o);
}

static void line_outbound_arp(const struct line *L)
{
	struct flow *fl = &R->flows[R->cur];
	if (L->ntok < 4) {
		fail("arp line: > arp request|reply IP");
		return;
	}
	bool req = strcmp(L->tok[2], "request") == 0;
	uint32_t ipx;
	if (parse_ip(L->tok[3], &ipx)) {
		fail("bad IP");
		return;
	}
	static const char *const keys[] = { "mac", NULL };
	bool unicast = L->ntok >= 5 && strcmp(L->tok[4], "unicast") == 0;
	if (!kv_known(L, unicast ? 5 : 4, keys, "outbound arp"))
		return;
	struct outpkt *o = next_out("an ARP frame");
	if (!o)
		return;
	char got[512];
	format_frame(o->data, o->len, got, sizeof(got), false);
	const uint8_t *f = o->data, *a = f + 14;
	if (o->len < 42 || rd16(f + 12) != 0x0806) {
		fail("expected ARP, got %s", got);
		return;
	}
	if (rd16(a + 6) != (req ? 1 : 2) || memcmp(a + 8, our_mac, 6) != 0 ||
	    memcmp(f + 6, our_mac, 6) != 0) {
		fail("got %s", got);
		return;
	}
	if (req) {
		/* "unicast": a confirmation of a known entry, to its MAC */
		static const uint8_t b[6] = { 255, 255, 255, 255, 255, 255 };
		bool uni = L->ntok >= 5 && strcmp(L->tok[4], "unicast") == 0;
		if (memcmp(f, uni ? peer_mac_default : b, 6) != 0 || rd32(a + 24) != ipx ||
		    rd32(a + 14) != R->laddr) {
			fail("got %s, want a %s request for the target", got,
			     uni ? "unicast" : "broadcast");
			return;
		}
	} else {
		/* to the asker's MAC: the peer's, or "mac MAC" */
		uint8_t tmac[6];
		memcpy(tmac, peer_mac_default, 6);
		const char *m = kv(L, 4, "mac");
		if (m && parse_mac(m, tmac)) {
			fail("bad mac %s", m);
			return;
		}
		if (rd32(a + 14) != ipx || memcmp(f, tmac, 6) != 0 ||
		    memcmp(a + 18, tmac, 6) != 0 || rd32(a + 24) != fl->raddr) {
			fail("got %s, want reply from %s to the peer", got, L->tok[3]);
			return;
		}
	}
	check_time(o);
}

static void line_outbound_icmp(const struct line *L)
{
	static const char *const none[] = { NULL };
	if (!kv_known(L, 3, none, "outbound icmp"))
		return;
	struct outpkt *o = next_out("an ICMP echo reply");
	if (!o)
		return;
	char got[512];
	format_frame(o->data, o->len, got, sizeof(got), false);
	const uint8_t *f = o->data, *ip = f + 14;
	struct flow *fl = &R->flows[R->cur];
	if (fl->v6) {
		uint32_t len = o->len >= 54 ? rd16(ip + 4) : 0;
		const uint8_t *ic = ip + 40;
		if (o->len < 62 || rd16(f + 12) != 0x86dd || ip[6] != 58 || 54 + len != o->len ||
		    fold(sum16(l4_pseudo(f, 58, len), ic, len)) != 0 || rd32(ip) != 0x60000000u) {
			fail("expected an ICMPv6 reply with a good checksum, got %s", got);
			return;
		}
		if (ic[0] != 129 || len != R->echo_len ||
		    memcmp(ic + 4, R->echo_payload + 4, len - 4) != 0 ||
		    memcmp(ip + 8, R->laddr6, 16) != 0 || memcmp(ip + 24, fl->raddr6, 16) != 0 ||
		    memcmp(f, peer_mac_default, 6) != 0) {
			fail("got %s, want the echo reply to what was sent", got);
			return;
		}
		check_time(o);
		return;
	}
	if (o->len < 42 || rd16(f + 12) != 0x0800 || ip[9] != 1) {
		fail("expected ICMP, got %s", got);
		return;
	}
	uint32_t hl = (ip[0] & 15u) * 4, tot = rd16(ip + 2);
	const uint8_t *ic = ip + hl;
	uint32_t len = tot - hl;
	if (fold(sum16(0, ip, hl)) != 0 || fold(sum16(0, ic, len)) != 0) {
		fail("bad checksum on %s", got);
		return;
	}
	if (!ip_id_df_ok(ip, got))
		return;
	if (ic[0] != 0 || len != R->echo_len || memcmp(ic + 4, R->echo_payload + 4, len - 4) != 0 ||
	    rd32(ip + 12) != R->laddr || rd32(ip + 16) != R->flows[R->cur].raddr) {
		fail("got %s, want the echo reply to what was sent", got);
		return;
	}
	check_time(o);
}

/* --- Neighbour discovery lines --- */

static void solnode6(uint8_t out[16], const uint8_t *a)
{
	static const uint8_t pfx[13] = { 0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff };
	memcpy(out, pfx, 13);
	memcpy(out + 13, a + 13, 3);
}

static void group_mac(uint8_t mac[6], const uint8_t *g)
{
	mac[0] = mac[1] = 0x33;
	memcpy(mac + 2, g + 12, 4);
}

static bool has_word(const struct line *L, int from, const char *w)
{
	for (int i = from; i < L->ntok; i++)
		if (strcmp(L->tok[i], w) == 0)
			return true;
	return false;
}

/* < nd ns TARGET [from IP] [dad] [unicast] [mac MAC] [nolla] [hlim N]
 * < nd na TARGET [from IP] [all] [unsolicited] [mac MAC] [nolla] [hlim N] */
static void line_inbound_nd(const struct line *L)
{
	struct flow *fl = &R->flows[R->cur];
	uint8_t target[16], from[16], mac[6];
	if (L->ntok < 4 || (strcmp(L->tok[2], "ns") && strcmp(L->tok[2], "na")) ||
	    parse_ip6(L->tok[3], target)) {
		fail("nd line: < nd ns|na TARGET ...");
		return;
	}
	bool ns = strcmp(L->tok[2], "ns") == 0;
	memcpy(from, fl->raddr6, 16);
	memcpy(mac, peer_mac_default, 6);
	const char *v;
	if ((v = kv(L, 4, "from")) && parse_ip6(v, from)) {
		fail("bad from");
		return;
	}
	if ((v = kv(L, 4, "mac")) && parse_mac(v, mac)) {
		fail("bad mac");
		return;
	}
	uint64_t hlim = 255;
	if ((v = kv(L, 4, "hlim")) && parse_u64(v, &hlim)) {
		fail("bad hlim");
		return;
	}
	bool dad = has_word(L, 4, "dad"), unicast = has_word(L, 4, "unicast");
	bool all = has_word(L, 4, "all"), unsol = has_word(L, 4, "unsolicited");
	bool nolla = has_word(L, 4, "nolla") || dad;
	struct mutations m;
	if (parse_mutations(L->has_muts ? L->muts : "", &m)) {
		fail("bad mutations");
		return;
	}
	static uint8_t f[256];
	memset(f, 0, sizeof(f));
	uint8_t dst[16], dmac[6];
	static const uint8_t allnodes[16] = { 0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };
	if (ns && !unicast)
		solnode6(dst, target);
	else if (ns)
		memcpy(dst, target, 16);
	else if (all)
		memcpy(dst, allnodes, 16);
	else
		memcpy(dst, R->laddr6, 16);
	if (m.dst6_set)
		memcpy(dst, m.dst6, 16);
	if (dst[0] == 0xff)
		group_mac(dmac, dst);
	else
		memcpy(dmac, our_mac, 6);
	memcpy(f, m.dmac_set ? m.dmac : dmac, 6);
	memcpy(f + 6, m.smac_set ? m.smac : mac, 6);
	wr16(f + 12, 0x86dd);
	uint8_t *ip = f + 14, *ic = ip + 40;
	uint32_t len = nolla ? 24 : 32;
	wr32(ip, 0x60000000u);
	wr16(ip + 4, (uint16_t)len);
	ip[6] = 58;
	ip[7] = (uint8_t)hlim;
	if (!dad)
		memcpy(ip + 8, from, 16);
	memcpy(ip + 24, dst, 16);
	ic[0] = ns ? 135 : 136;
	if (!ns)
		wr32(ic + 4, (unsol || all ? 0 : 0x40000000u) | 0x20000000u);
	memcpy(ic + 8, target, 16);
	if (!nolla) {
		ic[24] = ns ? 1 : 2;
		ic[25] = 1;
		memcpy(ic + 26, mac, 6);
	}
	uint32_t ps = sum16(sum16(0, ip + 8, 16), ip + 24, 16) + 58 + len;
	wr16(ic + 2, fold(sum16(ps, ic, len)));
	if (m.bad_tcpcsum)
		ic[3] ^= 0x44;
	uint32_t flen = 14 + 40 + len;
	if (m.trunc && m.trunc < flen)
		flen = m.trunc;
	inject(f, flen);
}

/* > nd ns TARGET [unicast] [dad]   > nd na TARGET [all] [mac MAC] */
static void line_outbound_nd(const struct line *L)
{
	struct flow *fl = &R->flows[R->cur];
	uint8_t target[16];
	if (L->ntok < 4 || (strcmp(L->tok[2], "ns") && strcmp(L->tok[2], "na")) ||
	    parse_ip6(L->tok[3], target)) {
		fail("nd line: > nd ns|na TARGET ...");
		return;
	}
	bool ns = strcmp(L->tok[2], "ns") == 0;
	for (int i = 4; i < L->ntok; i++) {
		const char *w = L->tok[i];
		if (strcmp(w, "unicast") && strcmp(w, "dad") && strcmp(w, "all") &&
		    strcmp(w, "mac")) {
			fail("outbound nd line: unknown word %s", w);
			return;
		}
		if (strcmp(w, "mac") == 0)
			i++;
	}
	bool dad = has_word(L, 4, "dad"), unicast = has_word(L, 4, "unicast");
	bool all = has_word(L, 4, "all");
	uint8_t emac[6];
	memcpy(emac, peer_mac_default, 6);
	const char *v = kv(L, 4, "mac");
	if (v && parse_mac(v, emac)) {
		fail("bad mac");
		return;
	}
	struct outpkt *o = next_out("a neighbour discovery message");
	if (!o)
		return;
	char got[512];
	format_frame(o->data, o->len, got, sizeof(got), false);
	const uint8_t *f = o->data, *ip = f + 14, *ic = ip + 40;
	if (o->len < 78 || rd16(f + 12) != 0x86dd || ip[6] != 58 || ip[7] != 255 ||
	    ic[0] != (ns ? 135 : 136) || ic[1] != 0 || 54u + rd16(ip + 4) != o->len) {
		fail("expected an ND %s with hop limit 255, got %s", ns ? "NS" : "NA", got);
		return;
	}
	uint32_t len = rd16(ip + 4);
	uint32_t ps = sum16(sum16(0, ip + 8, 16), ip + 24, 16) + 58 + len;
	if (fold(sum16(ps, ic, len)) != 0 || memcmp(ic + 8, target, 16) != 0 ||
	    memcmp(f + 6, our_mac, 6) != 0) {
		fail("bad checksum, target or source MAC on %s", got);
		return;
	}
	static const uint8_t zero[16];
	static const uint8_t allnodes[16] = { 0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };
	uint8_t dst[16], dmac[6];
	if (ns) {
		if (unicast)
			memcpy(dst, target, 16);
		else
			solnode6(dst, target);
		if (unicast)
			memcpy(dmac, emac, 6);
		else
			group_mac(dmac, dst);
		bool src_ok =
			dad ? memcmp(ip + 8, zero, 16) == 0 : memcmp(ip + 8, R->laddr6, 16) == 0;
		bool opt_ok = dad ? len == 24
				  : len == 32 && ic[24] == 1 && ic[25] == 1 &&
					      memcmp(ic + 26, our_mac, 6) == 0;
		if (!src_ok || !opt_ok || memcmp(ip + 24, dst, 16) != 0 ||
		    memcmp(f, dmac, 6) != 0) {
			fail("got %s, want a %s%s solicitation", got,
			     unicast ? "unicast" : "multicast", dad ? " DAD" : "");
			return;
		}
	} else {
		if (all) {
			memcpy(dst, allnodes, 16);
			group_mac(dmac, dst);
		} else {
			memcpy(dst, fl->raddr6, 16);
			memcpy(dmac, emac, 6);
		}
		uint32_t want_fl = (all ? 0 : 0x40000000u) | 0x20000000u;
		if (memcmp(ip + 8, target, 16) != 0 || memcmp(ip + 24, dst, 16) != 0 ||
		    memcmp(f, dmac, 6) != 0 || rd32(ic + 4) != want_fl || len != 32 ||
		    ic[24] != 2 || ic[25] != 1 || memcmp(ic + 26, our_mac, 6) != 0) {
			fail("got %s, want a%s advertisement of our MAC", got,
			     all ? "n unsolicited" : " solicited");
			return;
		}
	}
	check_time(o);
}

/* --- Other lines --- */

static int state_by_name(const char *s)
{
	for (int i = 0; i < TCP_NSTATES; i++)
		if (strcmp(tcp_state_name((enum tcp_state)i), s) == 0)
			return i;
	return -1;
}

static struct tcp_conn *cur_conn_lookup(void)
{
	struct flow *fl = &R->flows[R->cur];
	struct stack_tuple t;
	memset(&t, 0, sizeof(t));
	if (fl->v6)
		stack_addr_ipv6(&t.laddr, R->laddr6);
	else
		stack_addr_ipv4(&t.laddr, R->laddr);
	flow_addr(fl, &t.raddr);
	t.lport = fl->lport;
	t.rport = fl->rport;
	return stack_lookup(R->st, &t);
}

static int find_event(const char *name, const char *reason, bool consume)
{
	for (unsigned i = 0; i < R->nev; i++) {
		struct event *e = &R->ev[i];
		if (e->consumed || e->flow != R->cur || strcmp(ev_names[e->type], name) != 0)
			continue;
		if (reason && e->type == EV_CLOSED &&
		    strcmp(tcp_close_reason_name(e->reason), reason))
			continue;
		if (consume)
			e->consumed = true;
		return (int)i;
	}
	return -1;
}

static void line_app(const struct line *L)
{
	struct flow *fl = &R->flows[R->cur];
	if (L->ntok < 2) {
		fail("app what?");
		return;
	}
	const char *op = L->tok[1];
	if (strcmp(op, "listen") == 0) {
		uint64_t port = fl->lport, bl = R->backlog;
		if (L->ntok >= 3 && isdigit((unsigned char)L->tok[2][0]))
			parse_u64(L->tok[2], &port);
		const char *b = kv(L, 2, "backlog");
		if (b)
			parse_u64(b, &bl);
		bool want_fail = strcmp(L->tok[L->ntok - 1], "fails") == 0;
		struct stack_listener *l =
			stack_listen(R->st, NULL, (uint16_t)port, (unsigned)bl, NULL);
		if (!l && !want_fail)
			fail("stack_listen failed");
		if (l && want_fail)
			fail("stack_listen succeeded");
		if (l)
			R->listener = l;
		return;
	}
	if (strcmp(op, "unlisten") == 0) {
		if (R->listener)
			stack_unlisten(R->st, R->listener);
		return;
	}
	if (strcmp(op, "connect") == 0) {
		struct stack_addr ra;
		flow_addr(fl, &ra);
		corpus_sync_time();
		corpus_op(fl->v6 ? 7 : 0);
		struct tcp_conn *c = stack_connect(R->st, NULL, &ra, fl->rport, fl, R->now);
		bool want_fail = L->ntok >= 3 && strcmp(L->tok[2], "fails") == 0;
		if (!c && !want_fail)
			fail("stack_connect failed");
		if (c && want_fail)
			fail("stack_connect succeeded");
		if (c) {
			/* The port the stack picked names the flow from here. */
			R->cur = flow_of(c);
			R->flows[R->cur].conn = c;
			R->flows[R->cur].autoread = R->autoread;
			tcp_set_ctx(c, &R->flows[R->cur]);
		}
		stack_flush(R->st, R->now);
		return;
	}
	if (!fl->conn) {
		fail("app %s: the flow has no connection", op);
		return;
	}
	struct tcp_conn *c = fl->conn;
	if (strcmp(op, "send") == 0) {
		uint64_t n, acc;
		if (L->ntok < 3 || parse_u64(L->tok[2], &n) || n > 10000000) {
			fail("app send N [accepted M]");
			return;
		}
		const char *as = kv(L, 3, "accepted");
		acc = n;
		if (as && parse_u64(as, &acc)) {
			fail("bad accepted");
			return;
		}
		uint8_t *buf = malloc(n ? n : 1);
		for (uint64_t i = 0; i < n; i++)
			buf[i] = app_byte(fl->out_off + i);
		long r = tcp_send(c, buf, n);
		free(buf);
		corpus_sync_time();
		corpus_op((uint8_t)(3 | (n >= 2000 ? 3 : n >= 1000 ? n / 500 - 1 : 0) << 4));
		if (r < 0 || (uint64_t)r != acc) {
			fail("tcp_send took %ld of %" PRIu64 ", want %" PRIu64, r, n, acc);
			return;
		}
		fl->out_off += (uint64_t)r;
	} else if (strcmp(op, "read") == 0) {
		uint64_t n = tcp_readable(c);
		bool exact = false;
		if (L->ntok >= 3 && strcmp(L->tok[2], "all") != 0) {
			if (parse_u64(L->tok[2], &n)) {
				fail("app read [N|all]");
				return;
			}
			exact = true;
		}
		read_and_check(fl, c, n, exact);
	} else if (strcmp(op, "close") == 0) {
		corpus_sync_time();
		corpus_op(1);
		tcp_close(c);
	} else if (strcmp(op, "abort") == 0) {
		corpus_sync_time();
		corpus_op(2);
		tcp_abort(c);
		fl->conn = NULL;
	} else {
		fail("unknown app op %s", op);
		return;
	}
	stack_flush(R->st, R->now);
}

static void line_expect(const struct line *L)
{
	const char *what = L->tok[0];
	if (strcmp(what, "expect-state") == 0) {
		if (L->ntok < 2) {
			fail("expect-state STATE");
			return;
		}
		struct tcp_conn *c = cur_conn_lookup();
		int want = state_by_name(L->tok[1]);
		if (want < 0) {
			fail("unknown state %s", L->tok[1]);
			return;
		}
		int have = c ? (int)tcp_state(c) : TCP_CLOSED;
		if (have != want)
			fail("state is %s, want %s", tcp_state_name((enum tcp_state)have),
			     L->tok[1]);
		return;
	}
	if (strcmp(what, "expect-counter") == 0) {
		uint64_t want, have;
		if (L->ntok < 3) {
			fail("expect-counter NAME [>=] VALUE");
			return;
		}
		bool ge = L->ntok >= 4 && strcmp(L->tok[2], ">=") == 0;
		if (parse_u64(L->tok[ge ? 3 : 2], &want)) {
			fail("bad value");
			return;
		}
		if (stack_stat_get(stack_stats(R->st), L->tok[1], &have)) {
			fail("unknown counter %s", L->tok[1]);
			return;
		}
		if (ge ? have < want : have != want)
			fail("counter %s is %" PRIu64 ", want %s%" PRIu64, L->tok[1], have,
			     ge ? ">= " : "", want);
		return;
	}
	if (strcmp(what, "expect-info") == 0) {
		struct tcp_conn *c = cur_conn_lookup();
		uint64_t want;
		if (!c) {
			fail("expect-info: no connection");
			return;
		}
		if (L->ntok < 3 || parse_u64(L->tok[2], &want)) {
			fail("expect-info FIELD VALUE");
			return;
		}
		struct tcp_info ti;
		tcp_get_info(c, &ti);
		const char *k = L->tok[1];
		uint64_t have;
		if (strcmp(k, "cwnd") == 0)
			have = ti.cwnd;
		else if (strcmp(k, "ssthresh") == 0)
			have = ti.ssthresh;
		else if (strcmp(k, "snd_wnd") == 0)
			have = ti.snd_wnd;
		else if (strcmp(k, "rcv_wnd") == 0)
			have = ti.rcv_wnd;
		else if (strcmp(k, "flight") == 0)
			have = ti.flight;
		else if (strcmp(k, "mss") == 0)
			have = ti.mss;
		else if (strcmp(k, "rto_ms") == 0)
			have = ti.rto / MS;
		else if (strcmp(k, "srtt_ms") == 0)
			have = ti.srtt / MS;
		else if (strcmp(k, "snd_wscale") == 0)
			have = ti.snd_wscale;
		else if (strcmp(k, "rcv_wscale") == 0)
			have = ti.rcv_wscale;
		else if (strcmp(k, "sndbuf_used") == 0)
			have = ti.sndbuf_used;
		else if (strcmp(k, "rcvbuf_used") == 0)
			have = ti.rcvbuf_used;
		else if (strcmp(k, "ooo_bytes") == 0)
			have = ti.ooo_bytes;
		else if (strcmp(k, "in_recovery") == 0)
			have = ti.in_recovery;
		else if (strcmp(k, "retries") == 0)
			have = ti.retries;
		else {
			fail("unknown info field %s", k);
			return;
		}
		if (have != want)
			fail("%s is %" PRIu64 ", want %" PRIu64, k, have, want);
		return;
	}
	if (strcmp(what, "expect-event") == 0 || strcmp(what, "expect-no-event") == 0) {
		if (L->ntok < 2) {
			fail("%s NAME [REASON]", what);
			return;
		}
		bool want = strcmp(what, "expect-event") == 0;
		int i = find_event(L->tok[1], L->ntok >= 3 ? L->tok[2] : NULL, want);
		if (want && i < 0)
			fail("no %s event%s%s", L->tok[1], L->ntok >= 3 ? " " : "",
			     L->ntok >= 3 ? L->tok[2] : "");
		if (!want && i >= 0)
			fail("unexpected %s event", L->tok[1]);
		return;
	}
	if (strcmp(what, "expect-readable") == 0) {
		uint64_t want;
		struct flow *fl = &R->flows[R->cur];
		if (L->ntok < 2 || parse_u64(L->tok[1], &want)) {
			fail("expect-readable N");
			return;
		}
		uint64_t have = fl->conn ? tcp_readable(fl->conn) : 0;
		if (have != want)
			fail("readable is %" PRIu64 ", want %" PRIu64, have, want);
		return;
	}
	if (strcmp(what, "expect-eof") == 0) {
		struct flow *fl = &R->flows[R->cur];
		if (!fl->conn || !tcp_eof(fl->conn))
			fail("not at end of stream");
		return;
	}
	if (strcmp(what, "expect-mem") == 0) {
		struct stack_mem m;
		stack_mem(R->st, &m);
		uint64_t want;
		if (L->ntok < 3 || parse_u64(L->tok[2], &want)) {
			fail("expect-mem conns|bufs N");
			return;
		}
		uint64_t have = strcmp(L->tok[1], "conns") == 0 ? m.conns_used : m.bufs_used;
		if (have != want)
			fail("%s in use: %" PRIu64 ", want %" PRIu64, L->tok[1], have, want);
		if (m.used > m.budget)
			fail("over budget");
		return;
	}
	fail("unknown line %s", what);
}

static void check_no_output(void)
{
	if (R->out_head < R->nout) {
		char buf[512];
		struct outpkt *o = &R->out[R->out_head];
		format_frame(o->data, o->len, buf, sizeof(buf), false);
		fail("unexpected frame sent at %.3f s: %s", (double)o->when / 1e9, buf);
	}
}

static void exec_line(char *text)
{
	struct line L;
	if (split_line(text, &L)) {
		fail("unbalanced <> or []");
		return;
	}
	if (L.ntok == 0)
		return;
	int i = 0;
	/* Time: "+0.2" after the previous line, "1.5" absolute, or none. */
	uint64_t t = R->line_time;
	const char *ts = L.tok[0];
	if (ts[0] == '+' || isdigit((unsigned char)ts[0])) {
		uint64_t d;
		if (parse_dur(ts[0] == '+' ? ts + 1 : ts, &d)) {
			fail("bad time %s", ts);
			return;
		}
		t = ts[0] == '+' ? R->line_time + d : d;
		if (t < R->line_time) {
			fail("time goes backwards");
			return;
		}
		i = 1;
	}
	struct line M = L;
	M.ntok = L.ntok - i;
	for (int k = 0; k < M.ntok; k++)
		M.tok[k] = L.tok[k + i];
	if (M.ntok == 0)
		return;
	const char *cmd = M.tok[0];
	if (strcmp(cmd, "config") == 0) {
		if (M.ntok != 3)
			fail("config KEY VALUE");
		else
			set_config(M.tok[1], M.tok[2]);
		return;
	}
	ensure_stack();
	if (R->failed)
		return;
	R->line_time = t;
	advance_to(t);
	if (R->failed)
		return;
	if (strcmp(cmd, "flow") == 0) {
		uint64_t rport;
		uint32_t raddr = R->flows[0].raddr;
		uint8_t raddr6[16];
		bool v6 = R->flows[0].v6;
		memcpy(raddr6, R->flows[0].raddr6, 16);
		uint64_t lport = R->def_lport;
		bool named = M.ntok >= 3 && strcmp(M.tok[2], "lport") != 0 &&
			     strcmp(M.tok[2], "isn-of") != 0;
		if (named && parse_ip(M.tok[2], &raddr) == 0)
			v6 = false;
		else if (named && parse_ip6(M.tok[2], raddr6) == 0)
			v6 = true;
		else if (named)
			rport = 0, M.ntok = 0;
		if (M.ntok < 2 || parse_u64(M.tok[1], &rport)) {
			fail("flow RPORT [IP] [lport N] [isn-of RPORT]");
			return;
		}
		const char *lp = kv(&M, 2, "lport");
		if (lp)
			parse_u64(lp, &lport);
		/* isn-of: our ISN as learned on another flow (of the default
		 * peer), so that one flow's cookie can be replayed on another */
		const char *io = kv(&M, 2, "isn-of");
		uint64_t iport = 0;
		int isrc = -1;
		if (io && parse_u64(io, &iport) == 0) {
			for (int k = 0; k < MAX_FLOWS; k++) {
				struct flow *f = &R->flows[k];
				if (f->used && f->rport == iport && f->v6 == R->flows[0].v6 &&
				    f->raddr == R->flows[0].raddr &&
				    memcmp(f->raddr6, R->flows[0].raddr6, 16) == 0 && f->isn_known)
					isrc = k;
			}
		}
		if (io && isrc < 0) {
			fail("isn-of %s: no flow with a known ISN", io);
			return;
		}
		int found = -1;
		for (int k = 0; k < MAX_FLOWS; k++) {
			struct flow *f = &R->flows[k];
			if (f->used && f->rport == rport && f->lport == lport && f->v6 == v6 &&
			    (v6 ? memcmp(f->raddr6, raddr6, 16) == 0 : f->raddr == raddr))
				found = k;
		}
		if (found < 0) {
			for (int k = 0; k < MAX_FLOWS && found < 0; k++)
				if (!R->flows[k].used)
					found = k;
			if (found < 0) {
				fail("too many flows");
				return;
			}
			memset(&R->flows[found], 0, sizeof(R->flows[found]));
			R->flows[found].used = true;
			R->flows[found].rport = (uint16_t)rport;
			R->flows[found].lport = (uint16_t)lport;
			R->flows[found].raddr = raddr;
			R->flows[found].v6 = v6;
			memcpy(R->flows[found].raddr6, raddr6, 16);
		}
		if (isrc >= 0) {
			R->flows[found].isn_known = true;
			R->flows[found].our_isn = R->flows[isrc].our_isn;
		}
		R->cur = found;
		return;
	}
	if (strcmp(cmd, "<") == 0) {
		check_no_output();
		if (R->failed)
			return;
		if (M.ntok >= 2 && strcmp(M.tok[1], "arp") == 0)
			line_inbound_arp(&M);
		else if (M.ntok >= 2 && strcmp(M.tok[1], "nd") == 0)
			line_inbound_nd(&M);
		else if (M.ntok >= 2 && strcmp(M.tok[1], "icmp") == 0)
			line_inbound_icmp(&M);
		else if (M.ntok >= 2 && strcmp(M.tok[1], "raw") == 0)
			line_inbound_raw(&M);
		else
			line_inbound_tcp(&M);
		return;
	}
	if (strcmp(cmd, ">") == 0) {
		if (M.ntok >= 2 && strcmp(M.tok[1], "arp") == 0)
			line_outbound_arp(&M);
		else if (M.ntok >= 2 && strcmp(M.tok[1], "nd") == 0)
			line_outbound_nd(&M);
		else if (M.ntok >= 2 && strcmp(M.tok[1], "icmp") == 0)
			line_outbound_icmp(&M);
		else
			line_outbound_tcp(&M);
		return;
	}
	if (strcmp(cmd, "tick") == 0 || strcmp(cmd, "timers") == 0)
		return;
	if (strcmp(cmd, "tx-fail") == 0) {
		uint64_t n;
		if (M.ntok < 2 || parse_u64(M.tok[1], &n))
			fail("tx-fail N");
		else
			R->tx_fail = (unsigned)n;
		return;
	}
	if (strcmp(cmd, "expect-none") == 0) {
		check_no_output();
		return;
	}
	if (strcmp(cmd, "app") == 0) {
		line_app(&M);
		return;
	}
	if (strncmp(cmd, "expect-", 7) == 0) {
		line_expect(&M);
		return;
	}
	fail("unknown command %s", cmd);
}

static int run_script(const char *path, bool verbose, const char *corpus_dir)
{
	FILE *fp = fopen(path, "r");
	if (!fp) {
		printf("FAIL %s: %s\n", path, strerror(errno));
		return -1;
	}
	struct run *r = calloc(1, sizeof(*r));
	R = r;
	r->name = path;
	r->verbose = verbose;
	config_init();
	if (corpus_dir) {
		const char *base = strrchr(path, '/');
		base = base ? base + 1 : path;
		char out[4096];
		snprintf(out, sizeof(out), "%s/%.*s", corpus_dir,
			 (int)(strlen(base) > 4 ? strlen(base) - 4 : strlen(base)), base);
		r->corpus = fopen(out, "wb");
		if (r->corpus)
			fputc(0, r->corpus); /* configuration byte: defaults */
	}
	char buf[2048];
	while (fgets(buf, sizeof(buf), fp) && !r->failed) {
		r->line++;
		char *h = strchr(buf, '#');
		if (h)
			*h = 0;
		if (verbose && strspn(buf, " \t\r\n") != strlen(buf))
			printf("%4d| %s", r->line,
			       buf[strlen(buf) - 1] == '\n' ? buf : strcat(buf, "\n"));
		exec_line(buf);
	}
	fclose(fp);
	if (!r->failed) {
		ensure_stack();
		r->line++;
		if (!r->failed)
			check_no_output();
	}
	if (r->st) {
		const char *bad = stack_check(r->st);
		if (bad)
			fail("stack_check at the end: %s", bad);
		stack_destroy(r->st);
	}
	for (unsigned i = 0; i < r->nout; i++)
		free(r->out[i].data);
	if (r->corpus) {
		/* The harness's configuration byte, now that the script's
		 * config lines are known. */
		uint8_t conf =
			(uint8_t)((r->cfg.rx_csum_offload ? 1 : 0) |
				  (r->cfg.tx_csum_offload ? 2 : 0) | (r->backlog == 1 ? 32 : 0) |
				  (r->cfg.syn_rcvd_max == 1 ? 64 : 0) |
				  (r->cfg.dad_transmits ? 128 : 0));
		fseek(r->corpus, 0, SEEK_SET);
		fputc(conf, r->corpus);
		fclose(r->corpus);
	}
	int rc = r->failed ? -1 : 0;
	if (r->failed)
		printf("FAIL %s: %s\n", path, r->err);
	else
		printf("PASS %s\n", path);
	free(r);
	R = NULL;
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
	bool verbose = false;
	const char *corpus = NULL;
	char **paths = NULL;
	size_t np = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-v") == 0) {
			verbose = true;
			continue;
		}
		if (strcmp(argv[i], "--dump-corpus") == 0 && i + 1 < argc) {
			corpus = argv[++i];
			continue;
		}
		struct stat sb;
		if (stat(argv[i], &sb) != 0) {
			perror(argv[i]);
			return 2;
		}
		if (S_ISDIR(sb.st_mode)) {
			DIR *d = opendir(argv[i]);
			struct dirent *e;
			while (d && (e = readdir(d))) {
				size_t n = strlen(e->d_name);
				if (n < 5 || strcmp(e->d_name + n - 4, ".pkt") != 0)
					continue;
				paths = realloc(paths, (np + 1) * sizeof(*paths));
				size_t len = strlen(argv[i]) + n + 2;
				paths[np] = malloc(len);
				snprintf(paths[np++], len, "%s/%s", argv[i], e->d_name);
			}
			if (d)
				closedir(d);
		} else {
			paths = realloc(paths, (np + 1) * sizeof(*paths));
			paths[np++] = strdup(argv[i]);
		}
	}
	if (np == 0) {
		fprintf(stderr, "usage: pktrun [-v] [--dump-corpus DIR] SCRIPT|DIR...\n");
		return 2;
	}
	qsort(paths, np, sizeof(*paths), cmp_str);
	unsigned pass = 0, failn = 0;
	for (size_t i = 0; i < np; i++) {
		if (run_script(paths[i], verbose, corpus) == 0)
			pass++;
		else
			failn++;
		free(paths[i]);
	}
	free(paths);
	printf("%u passed, %u failed\n", pass, failn);
	return failn ? 1 : 0;
}
