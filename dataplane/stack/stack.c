/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Stack lifecycle, pools and memory accounting, the connection table, the
 * timer wheel and the FIFO timeout lists.
 */
#include <stdlib.h>

#include "dataplane/stack/stack_impl.h"

static const char *const state_names[TCP_NSTATES] = {
	"CLOSED",     "LISTEN",     "SYN_SENT", "SYN_RCVD", "ESTABLISHED", "FIN_WAIT_1",
	"FIN_WAIT_2", "CLOSE_WAIT", "CLOSING",  "LAST_ACK", "TIME_WAIT",
};

const char *tcp_state_name(enum tcp_state s)
{
	return (unsigned)s < TCP_NSTATES ? state_names[s] : "?";
}

const char *tcp_close_reason_name(enum tcp_close_reason r)
{
	switch (r) {
	case TCP_CLOSE_NORMAL:
		return "normal";
	case TCP_CLOSE_RESET:
		return "reset";
	case TCP_CLOSE_TIMEOUT:
		return "timeout";
	case TCP_CLOSE_IDLE:
		return "idle";
	case TCP_CLOSE_REFUSED:
		return "refused";
	}
	return "?";
}

/* --- Counter names --- */

static const char *const stat_names[] = {
#define STACK_STAT_NAME(name) #name,
	STACK_STATS(STACK_STAT_NAME)
#undef STACK_STAT_NAME
};
#define NSTAT_FIELDS (sizeof(stat_names) / sizeof(stat_names[0]))

/* stack_stats.h cannot see enum tcp_state (stack.h includes it first). */
_Static_assert(sizeof(((struct stack_stats *)0)->conns_by_state) / sizeof(uint64_t) == TCP_NSTATES,
	       "conns_by_state must have one gauge per state");

static const char *const state_stat_names[TCP_NSTATES] = {
	"state_CLOSED",      "state_LISTEN",     "state_SYN_SENT",   "state_SYN_RCVD",
	"state_ESTABLISHED", "state_FIN_WAIT_1", "state_FIN_WAIT_2", "state_CLOSE_WAIT",
	"state_CLOSING",     "state_LAST_ACK",   "state_TIME_WAIT",
};

const char *stack_stat_name(size_t i)
{
	if (i < NSTAT_FIELDS)
		return stat_names[i];
	i -= NSTAT_FIELDS;
	return i < TCP_NSTATES ? state_stat_names[i] : NULL;
}

uint64_t stack_stat_value(const struct stack_stats *s, size_t i)
{
	if (i < NSTAT_FIELDS) {
		uint64_t v;
		memcpy(&v, (const uint8_t *)s + i * sizeof(uint64_t), sizeof(v));
		return v;
	}
	i -= NSTAT_FIELDS;
	return i < TCP_NSTATES ? s->conns_by_state[i] : 0;
}

int stack_stat_get(const struct stack_stats *s, const char *name, uint64_t *value)
{
	for (size_t i = 0; stack_stat_name(i); i++) {
		if (strcmp(stack_stat_name(i), name) == 0) {
			*value = stack_stat_value(s, i);
			return 0;
		}
	}
	return -1;
}

/* --- Addresses --- */

void stack_addr_ipv4(struct stack_addr *a, uint32_t host_order)
{
	memset(a, 0, sizeof(*a));
	a->family = STACK_AF_INET;
	put32(a->a, host_order);
}

bool stack_addr_eq(const struct stack_addr *x, const struct stack_addr *y)
{
	return x->family == y->family && memcmp(x->a, y->a, sizeof(x->a)) == 0;
}

void stack_addr_ipv6(struct stack_addr *a, const uint8_t bytes[16])
{
	memset(a, 0, sizeof(*a));
	a->family = STACK_AF_INET6;
	memcpy(a->a, bytes, 16);
}

int stack_local_addr_index6(const struct stack *st, const uint8_t ip6[16])
{
	for (unsigned i = 0; i < st->cfg.naddrs; i++) {
		const struct stack_addr *a = &st->cfg.addrs[i].addr;
		if (a->family == STACK_AF_INET6 && memcmp(a->a, ip6, 16) == 0)
			return (int)i;
	}
	return -1;
}

const struct stack_addr *stack_local_addr_match6(const struct stack *st, const uint8_t ip6[16])
{
	int i = stack_local_addr_index6(st, ip6);
	if (i < 0 || st->addr_state[i] != ADDR_USABLE)
		return NULL;
	return &st->cfg.addrs[i].addr;
}

bool stack_addr_usable(const struct stack *st, unsigned i)
{
	return i < st->cfg.naddrs && st->addr_state[i] == ADDR_USABLE;
}

const struct stack_addr *stack_local_addr_match(const struct stack *st, const uint8_t ip4[4])
{
	for (unsigned i = 0; i < st->cfg.naddrs; i++) {
		const struct stack_addr *a = &st->cfg.addrs[i].addr;
		if (a->family == STACK_AF_INET && memcmp(a->a, ip4, 4) == 0)
			return a;
	}
	return NULL;
}

/* --- Ring buffers --- */

uint32_t stack_ring_write_at(struct ring *r, uint32_t off, const uint8_t *p, uint32_t n)
{
	if (off >= r->cap)
		return 0;
	n = min_u32(n, r->cap - off);
	uint32_t pos = (r->head + off) % r->cap;
	uint32_t first = min_u32(n, r->cap - pos);
	memcpy(r->base + pos, p, first);
	memcpy(r->base, p + first, n - first);
	return n;
}

void stack_ring_read_at(const struct ring *r, uint32_t off, uint8_t *out, uint32_t n)
{
	uint32_t pos = (r->head + off) % r->cap;
	uint32_t first = min_u32(n, r->cap - pos);
	memcpy(out, r->base + pos, first);
	memcpy(out + first, r->base, n - first);
}

void stack_ring_drop(struct ring *r, uint32_t n)
{
	if (n > r->len)
		n = r->len;
	/* head never jumps back to 0 when the ring empties: out-of-order
	 * data sits at a position relative to head + len. */
	r->head = (r->head + n) % r->cap;
	r->len -= n;
}

/* --- Configuration --- */

void stack_config_defaults(struct stack_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->mtu = 1500;
	cfg->max_conns = 1024;
	cfg->max_bufs = 0; /* = max_conns */
	cfg->rcvbuf = 16384;
	cfg->sndbuf = 16384;
	cfg->ooo_max = 0; /* = rcvbuf */
	cfg->backlog_max = 4096;
	cfg->rto_min = 200 * NS_PER_MS;
	cfg->rto_max = 60 * NS_PER_S;
	cfg->rto_initial = NS_PER_S;
	cfg->delack = 40 * NS_PER_MS;
	cfg->msl = 30 * NS_PER_S;
	cfg->idle = 300 * NS_PER_S;
	cfg->cookie_period = 64 * NS_PER_S;
	cfg->max_retries = 15;
	cfg->syn_retries = 6;
	cfg->synack_retries = 5;
	cfg->synack_retries_pressure = 2;
	cfg->challenge_ack_limit = 2;
	cfg->rcv_wscale = 0xff;
	cfg->neigh_size = 64;
	cfg->neigh_incomplete_max = 16;
	cfg->neigh_ttl = 300 * NS_PER_S;
	cfg->neigh_retry = NS_PER_S;
	cfg->dad_transmits = 1;
	cfg->rst_unknown = true;
}

static void *default_alloc(void *actx, size_t size)
{
	(void)actx;
	return calloc(1, size);
}

static void default_free(void *actx, void *p)
{
	(void)actx;
	free(p);
}

static uint32_t pow2_at_least(uint32_t n)
{
	uint32_t p = 1;
	while (p < n && p < (1u << 30))
		p <<= 1;
	return p;
}

static void *zalloc(struct stack_config *cfg, size_t size)
{
	void *p = cfg->alloc(cfg->alloc_ctx, size);
	if (p)
		memset(p, 0, size);
	return p;
}

/* stack_create's error text, one line into err (NULL: not wanted); no
 * stdio in the stack. */
static void seterr(char *err, size_t errlen, const char *what)
{
	size_t i = 0;

	if (!err || !errlen)
		return;
	for (; what[i] && i + 1 < errlen; i++)
		err[i] = what[i];
	err[i] = '\0';
}

struct stack *stack_create(const struct stack_config *cfg_in, const struct stack_io *io,
			   void *io_ctx, const struct stack_app *app, char *err, size_t errlen)
{
	struct stack_config cfg = *cfg_in;
	if (!cfg.alloc || !cfg.free) {
		cfg.alloc = default_alloc;
		cfg.free = default_free;
	}
	if (!io || !io->tx_alloc || !io->tx_send) {
		seterr(err, errlen, "tx_alloc and tx_send are required");
		return NULL;
	}
	if (cfg.naddrs == 0 || cfg.naddrs > STACK_MAX_ADDRS) {
		seterr(err, errlen, "between 1 and STACK_MAX_ADDRS local addresses");
		return NULL;
	}
	bool any6 = false;
	for (unsigned i = 0; i < cfg.naddrs; i++) {
		const struct stack_ifaddr *ia = &cfg.addrs[i];
		if (ia->addr.family == STACK_AF_INET6) {
			/* Multicast, unspecified, loopback and v4-mapped are no
			 * host's own unicast address. */
			static const uint8_t zero[16];
			const uint8_t *b = ia->addr.a;
			if (b[0] == 0xff || memcmp(b, zero, 16) == 0 ||
			    (memcmp(b, zero, 15) == 0 && b[15] == 1) || ia->prefix_len > 128 ||
			    (memcmp(b, zero, 10) == 0 && b[10] == 0xff && b[11] == 0xff)) {
				seterr(err, errlen,
				       "an IPv6 local address is not unicast, or its prefix is "
				       "over 128");
				return NULL;
			}
			any6 = true;
		} else if (ia->addr.family != STACK_AF_INET || ia->prefix_len > 32) {
			seterr(err, errlen,
			       "a local address of no family, or an IPv4 prefix over 32");
			return NULL;
		}
	}
	if (cfg.mtu < 576 || cfg.mtu > 9000 || (any6 && cfg.mtu < 1280)) {
		seterr(err, errlen, "mtu out of 576..9000 (1280..9000 with IPv6)");
		return NULL;
	}
	if (cfg.dad_transmits > 10) {
		seterr(err, errlen, "dad_transmits above 10");
		return NULL;
	}
	if (cfg.max_conns == 0 || cfg.max_conns > (1u << 24)) {
		seterr(err, errlen, "max_conns out of 1..2^24");
		return NULL;
	}
	if (cfg.max_bufs == 0 || cfg.max_bufs > cfg.max_conns)
		cfg.max_bufs = cfg.max_conns;
	if (cfg.rcvbuf < 1024 || cfg.rcvbuf > (1u << 30) || cfg.sndbuf < 1024 ||
	    cfg.sndbuf > (1u << 30)) {
		seterr(err, errlen, "buffers out of 1 KB..1 GB");
		return NULL;
	}
	/* Out-of-order data sits in the ring's free space, inside the window
	 * we advertised, so holding a whole window of it costs nothing more;
	 * a smaller cap only makes a sender without SACK resend more. */
	if (cfg.ooo_max == 0 || cfg.ooo_max > cfg.rcvbuf)
		cfg.ooo_max = cfg.rcvbuf;
	if (cfg.rcv_wscale == 0xff) {
		uint8_t ws = 0;
		while (ws < 14 && (cfg.rcvbuf >> ws) > 65535)
			ws++;
		cfg.rcv_wscale = ws;
	}
	if (cfg.rcv_wscale > 14) {
		seterr(err, errlen, "rcv_wscale above 14");
		return NULL;
	}
	if (cfg.rto_min == 0 || cfg.rto_max < cfg.rto_min || cfg.rto_initial == 0 ||
	    cfg.rto_max > 3600 * NS_PER_S) {
		seterr(err, errlen, "RTO bounds inconsistent");
		return NULL;
	}
	if (cfg.cookie_period < NS_PER_MS || cfg.idle == 0 || cfg.backlog_max == 0) {
		seterr(err, errlen, "cookie_period, idle and backlog_max must be set");
		return NULL;
	}
	if (cfg.max_retries == 0 || cfg.max_retries > 30 || cfg.syn_retries > 30 ||
	    cfg.synack_retries > 30) {
		seterr(err, errlen, "retries out of 1..30");
		return NULL;
	}
	if (cfg.synack_retries_pressure > cfg.synack_retries)
		cfg.synack_retries_pressure = cfg.synack_retries;
	if (cfg.syn_rcvd_max == 0)
		cfg.syn_rcvd_max = cfg.max_conns / 16 ? cfg.max_conns / 16 : 1;
	if (cfg.syn_rcvd_max > cfg.max_conns)
		cfg.syn_rcvd_max = cfg.max_conns;
	if (cfg.neigh_size < 4)
		cfg.neigh_size = 4;
	if (cfg.neigh_incomplete_max == 0)
		cfg.neigh_incomplete_max = 1;

	struct stack *st = zalloc(&cfg, sizeof(*st));
	if (!st) {
		seterr(err, errlen, "out of memory");
		return NULL;
	}
	st->cfg = cfg;
	st->io = *io;
	st->io_ctx = io_ctx;
	if (app)
		st->app = *app;
	siphash_key_from_bytes(&st->hkey, cfg.hash_key);
	siphash_key_from_bytes(&st->ikey, cfg.isn_key);
	st->adv_mss = (uint16_t)(cfg.mtu - 40);
	st->frame_room = cfg.mtu + 14u;
	for (unsigned i = 0; i < cfg.naddrs; i++) {
		if (cfg.addrs[i].addr.family == STACK_AF_INET6 && cfg.dad_transmits) {
			/* Tentative until DAD passes; the first solicitation
			 * goes out on the first stack_timers(). */
			st->addr_state[i] = ADDR_TENTATIVE;
			st->dad_pending = true;
		}
	}
	st->buf_bytes = cfg.rcvbuf + cfg.sndbuf;

	st->conns = zalloc(&cfg, sizeof(struct tcp_conn) * cfg.max_conns);
	st->bufmem = zalloc(&cfg, (size_t)st->buf_bytes * cfg.max_bufs);
	st->buf_free = zalloc(&cfg, sizeof(uint32_t) * cfg.max_bufs);
	uint32_t buckets = pow2_at_least(cfg.max_conns);
	st->table = zalloc(&cfg, sizeof(struct tcp_conn *) * buckets);
	uint32_t nn = pow2_at_least(cfg.neigh_size);
	st->neigh = zalloc(&cfg, sizeof(struct neigh) * nn);
	if (!st->conns || !st->bufmem || !st->buf_free || !st->table || !st->neigh) {
		stack_destroy(st);
		seterr(err, errlen, "out of memory");
		return NULL;
	}
	st->table_mask = buckets - 1;
	st->neigh_mask = nn - 1;
	for (uint32_t i = 0; i < nn; i++)
		dl_init(&st->neigh[i].waiters);
	for (uint32_t i = cfg.max_conns; i-- > 0;) {
		struct tcp_conn *c = &st->conns[i];
		c->hnext = st->conn_free;
		st->conn_free = c;
	}
	for (uint32_t i = 0; i < cfg.max_bufs; i++)
		st->buf_free[i] = cfg.max_bufs - 1 - i;
	st->buf_free_n = cfg.max_bufs;
	for (unsigned i = 0; i < WHEEL_SLOTS; i++)
		dl_init(&st->wheel[i]);
	dl_init(&st->idle_list);
	dl_init(&st->tw_list);
	dl_init(&st->pending);
	dl_init(&st->dead);

	st->mem_prealloc =
		sizeof(*st) + sizeof(struct tcp_conn) * (uint64_t)cfg.max_conns +
		(uint64_t)st->buf_bytes * cfg.max_bufs + sizeof(uint32_t) * (uint64_t)cfg.max_bufs +
		sizeof(struct tcp_conn *) * (uint64_t)buckets + sizeof(struct neigh) * (uint64_t)nn;
	uint64_t pools = sizeof(struct tcp_conn) * (uint64_t)cfg.max_conns +
			 (uint64_t)st->buf_bytes * cfg.max_bufs;
	st->mem_budget = cfg.mem_budget && cfg.mem_budget < pools ? cfg.mem_budget : pools;
	st->port_seq = (uint32_t)siphash13(&st->hkey, "ports", 5);
	st->syn_rcvd_max = cfg.syn_rcvd_max;
	return st;
}

void stack_destroy(struct stack *st)
{
	if (!st)
		return;
	void (*fr)(void *, void *) = st->cfg.free;
	void *actx = st->cfg.alloc_ctx;
	fr(actx, st->conns);
	fr(actx, st->bufmem);
	fr(actx, st->buf_free);
	fr(actx, st->table);
	fr(actx, st->neigh);
	fr(actx, st);
}

const struct stack_stats *stack_stats(const struct stack *st)
{
	return &st->stats;
}

void stack_mem(const struct stack *st, struct stack_mem *m)
{
	m->used = st->mem_used;
	m->budget = st->mem_budget;
	m->preallocated = st->mem_prealloc;
	m->conns_used = st->conns_used;
	m->bufs_used = st->bufs_used;
	m->conn_bytes = sizeof(struct tcp_conn);
	m->buf_bytes = st->buf_bytes;
}

/* --- Pools and accounting --- */

/* A buffer pair and the budget for it, beyond what active opens have
 * reserved. */
static bool buf_available(const struct stack *st, uint64_t extra)
{
	if (st->bufs_used + st->bufs_reserved + 1 > st->cfg.max_bufs)
		return false;
	uint64_t committed = st->mem_used + (uint64_t)st->bufs_reserved * st->buf_bytes;
	return committed + extra + st->buf_bytes <= st->mem_budget;
}

/* Room for one more connection that will need a buffer pair: a slot (or
 * a TIME_WAIT to recycle) and a pair.  Nothing is set aside by asking:
 * a passive half-open connection takes a slot only, and its pair comes at
 * establishment, so a flood of spoofed SYNs cannot tie up buffers (it is
 * bounded by syn_rcvd_max besides). */
bool stack_mem_can_admit(const struct stack *st)
{
	bool slot = st->conn_free != NULL || !dl_empty(&st->tw_list);
	if (!slot)
		return false;
	/* a TIME_WAIT slot recycled costs nothing more */
	return buf_available(st, st->conn_free ? sizeof(struct tcp_conn) : 0);
}

/* An active open is the application's own choice and bounded by it: its
 * pair is set aside at stack_connect, so the SYN-ACK never finds none. */
void stack_conn_reserve_bufs(struct stack *st, struct tcp_conn *c)
{
	if (c->flags & CF_BUF_RESERVED)
		return;
	c->flags |= CF_BUF_RESERVED;
	st->bufs_reserved++;
}

static void conn_unreserve_bufs(struct stack *st, struct tcp_conn *c)
{
	if (!(c->flags & CF_BUF_RESERVED))
		return;
	c->flags &= ~CF_BUF_RESERVED;
	st->bufs_reserved--;
}

static void slot_free(struct stack *st, struct tcp_conn *c)
{
	st->stats.conns_by_state[TCP_CLOSED]--;
	st->conns_used--;
	st->mem_used -= sizeof(*c);
	c->flags = 0;
	c->hnext = st->conn_free;
	st->conn_free = c;
}

void stack_conn_free_now(struct stack *st, struct tcp_conn *c)
{
	dl_del(&c->pend_node);
	slot_free(st, c);
}

struct tcp_conn *stack_conn_alloc(struct stack *st)
{
	if (!st->conn_free && !dl_empty(&st->tw_list)) {
		/* Out of slots: the oldest TIME_WAIT goes first (it has the
		 * least time left to protect). */
		struct tcp_conn *old = dl_entry(st->tw_list.next, struct tcp_conn, fifo_node);
		st->stats.time_wait_recycled++;
		stack_conn_release(st, old);
		stack_conn_free_now(st, old);
	}
	struct tcp_conn *c = st->conn_free;
	if (!c)
		return NULL;
	if (st->mem_used + sizeof(*c) > st->mem_budget)
		return NULL;
	st->conn_free = c->hnext;
	memset(c, 0, sizeof(*c));
	dl_init(&c->tm_node);
	dl_init(&c->fifo_node);
	dl_init(&c->pend_node);
	dl_init(&c->arp_node);
	c->buf_idx = UINT32_MAX;
	c->st = st;
	c->state = TCP_CLOSED;
	st->conns_used++;
	st->mem_used += sizeof(*c);
	st->stats.conns_by_state[TCP_CLOSED]++;
	return c;
}

bool stack_conn_attach_bufs(struct stack *st, struct tcp_conn *c)
{
	if (c->buf_idx != UINT32_MAX)
		return true;
	/* A reservation is spent here; without one, what the reservations
	 * hold is not available. */
	conn_unreserve_bufs(st, c);
	if (!buf_available(st, 0))
		return false;
	uint32_t idx = st->buf_free[--st->buf_free_n];
	uint8_t *base = st->bufmem + (size_t)idx * st->buf_bytes;
	c->buf_idx = idx;
	c->rb = (struct ring){ base, st->cfg.rcvbuf, 0, 0 };
	c->sb = (struct ring){ base + st->cfg.rcvbuf, st->cfg.sndbuf, 0, 0 };
	st->bufs_used++;
	st->mem_used += st->buf_bytes;
	return true;
}

static void conn_detach_bufs(struct stack *st, struct tcp_conn *c)
{
	if (c->buf_idx == UINT32_MAX)
		return;
	st->buf_free[st->buf_free_n++] = c->buf_idx;
	c->buf_idx = UINT32_MAX;
	memset(&c->rb, 0, sizeof(c->rb));
	memset(&c->sb, 0, sizeof(c->sb));
	st->bufs_used--;
	st->mem_used -= st->buf_bytes;
}

void stack_conn_set_state(struct stack *st, struct tcp_conn *c, enum tcp_state s)
{
	if (c->state == s)
		return;
	if (c->state == TCP_SYN_RCVD && c->l) {
		c->l->syn_count--;
		st->syn_rcvd--;
	}
	if (s == TCP_SYN_RCVD && c->l) {
		c->l->syn_count++;
		st->syn_rcvd++;
	}
	st->stats.conns_by_state[c->state]--;
	st->stats.conns_by_state[s]++;
	c->state = s;
	if (s == TCP_TIME_WAIT || s == TCP_CLOSED) {
		/* Nothing more to send or deliver: the buffers go back now, so
		 * TIME_WAIT costs a connection slot only. */
		conn_detach_bufs(st, c);
		c->rto_at = c->delack_at = 0;
		c->flags &= ~(CF_PERSIST | CF_RTT_TIMING);
		stack_timer_update(st, c);
	}
}

static uint32_t tuple_bucket(const struct stack *st, const struct stack_tuple *t)
{
	/* Once per segment: an IPv4 tuple hashes its 12 octets of identity,
	 * two SipHash blocks instead of the whole struct's six. */
	if (t->laddr.family == STACK_AF_INET && t->raddr.family == STACK_AF_INET) {
		uint8_t k[12];
		memcpy(k, t->laddr.a, 4);
		memcpy(k + 4, t->raddr.a, 4);
		memcpy(k + 8, &t->lport, 2);
		memcpy(k + 10, &t->rport, 2);
		return (uint32_t)siphash13(&st->hkey, k, sizeof(k)) & st->table_mask;
	}
	/* IPv6: its 36 octets, not the struct's 44 of family bytes and
	 * padding (a family is implied: the table never mixes them in one
	 * tuple). */
	uint8_t k[36];
	memcpy(k, t->laddr.a, 16);
	memcpy(k + 16, t->raddr.a, 16);
	memcpy(k + 32, &t->lport, 2);
	memcpy(k + 34, &t->rport, 2);
	return (uint32_t)siphash13(&st->hkey, k, sizeof(k)) & st->table_mask;
}

void stack_conn_hash_add(struct stack *st, struct tcp_conn *c)
{
	uint32_t b = tuple_bucket(st, &c->t);
	c->hnext = st->table[b];
	st->table[b] = c;
}

static void conn_hash_del(struct stack *st, struct tcp_conn *c)
{
	struct tcp_conn **pp = &st->table[tuple_bucket(st, &c->t)];
	while (*pp) {
		if (*pp == c) {
			*pp = c->hnext;
			c->hnext = NULL;
			return;
		}
		pp = &(*pp)->hnext;
	}
}

struct tcp_conn *stack_conn_lookup(struct stack *st, const struct stack_tuple *t)
{
	for (struct tcp_conn *c = st->table[tuple_bucket(st, t)]; c; c = c->hnext)
		if (c->t.lport == t->lport && c->t.rport == t->rport &&
		    memcmp(&c->t, t, sizeof(*t)) == 0)
			return c;
	return NULL;
}

struct tcp_conn *stack_lookup(struct stack *st, const struct stack_tuple *t)
{
	return stack_conn_lookup(st, t);
}

/* Unhook a connection from everything that can find it; the slot itself
 * returns to the pool in reap_dead(), after the code that may still hold
 * the pointer (a callback's caller) has unwound. */
void stack_conn_release(struct stack *st, struct tcp_conn *c)
{
	if (c->flags & CF_DEAD)
		return;
	conn_hash_del(st, c);
	stack_conn_set_state(st, c, TCP_CLOSED);
	conn_unreserve_bufs(st, c);
	net_neigh_forget_waiter(c);
	if (dl_linked(&c->tm_node))
		dl_del(&c->tm_node);
	if (dl_linked(&c->fifo_node)) {
		dl_del(&c->fifo_node);
	}
	if (dl_linked(&c->pend_node))
		dl_del(&c->pend_node);
	c->flags |= CF_DEAD;
	c->flags &= ~CF_APP;
	dl_add_tail(&st->dead, &c->pend_node);
}

static void reap_dead(struct stack *st)
{
	while (!dl_empty(&st->dead)) {
		struct tcp_conn *c = dl_entry(st->dead.next, struct tcp_conn, pend_node);
		dl_del(&c->pend_node);
		if (c->flags & CF_NOTIFY) {
			/* A closed event that could not be given where the
			 * connection ended (inside the application's own call). */
			c->flags &= ~CF_NOTIFY;
			if (st->app.closed)
				st->app.closed(c->ctx, c, (enum tcp_close_reason)c->close_why);
		}
		slot_free(st, c);
	}
}

void stack_mark_pending(struct stack *st, struct tcp_conn *c)
{
	if (!dl_linked(&c->pend_node) && !(c->flags & CF_DEAD))
		dl_add_tail(&st->pending, &c->pend_node);
}

/* --- Timers --- */

void stack_timer_update(struct stack *st, struct tcp_conn *c)
{
	uint64_t at = c->rto_at;
	if (c->delack_at && (!at || c->delack_at < at))
		at = c->delack_at;
	if (at == c->tm_at && dl_linked(&c->tm_node) == (at != 0))
		return;
	if (dl_linked(&c->tm_node))
		dl_del(&c->tm_node);
	c->tm_at = at;
	if (!at)
		return;
	uint64_t tick = at / WHEEL_TICK;
	if (tick < st->wheel_tick)
		tick = st->wheel_tick;
	uint32_t idx = (uint32_t)(tick & (WHEEL_SLOTS - 1));
	dl_add_tail(&st->wheel[idx], &c->tm_node);
	st->wheel_bits[idx / 64] |= 1ULL << (idx % 64);
}

/* Each state with an inactivity limit sits on the idle list in order of
 * its last segment from the peer: appending on every touch keeps the list
 * sorted, so expiry only ever looks at the head. */
void stack_idle_touch(struct stack *st, struct tcp_conn *c)
{
	c->last_rx = st->now;
	if (c->state == TCP_TIME_WAIT || c->state < TCP_ESTABLISHED)
		return;
	if (dl_linked(&c->fifo_node)) {
		if (st->idle_list.prev == &c->fifo_node && c->fifo_at == st->now)
			return;
		dl_del(&c->fifo_node);
	}
	c->fifo_at = st->now;
	dl_add_tail(&st->idle_list, &c->fifo_node);
}

static void wheel_run(struct stack *st, uint64_t now)
{
	uint64_t nt = now / WHEEL_TICK;
	uint64_t from = st->wheel_tick;
	if (nt >= from + WHEEL_SLOTS)
		from = nt - WHEEL_SLOTS + 1;
	st->wheel_tick = nt;
	for (uint64_t tick = from; tick <= nt; tick++) {
		/* Skip empty slots a word of the bitmap at a time: an idle
		 * wheel costs 64 loads per revolution, not 4096. */
		uint32_t idx = (uint32_t)(tick & (WHEEL_SLOTS - 1));
		uint64_t w = st->wheel_bits[idx / 64] >> (idx % 64);
		if (w == 0) {
			tick += 63 - idx % 64;
			continue;
		}
		if (!(w & 1)) {
			tick += (uint64_t)__builtin_ctzll(w) - 1;
			continue;
		}
		struct dl *slot = &st->wheel[idx];
		if (dl_empty(slot)) {
			st->wheel_bits[idx / 64] &= ~(1ULL << (idx % 64));
			continue;
		}
		/* Take the slot's list aside: what firing re-arms goes to the
		 * real slots and is not seen again in this pass. */
		struct dl tmp;
		tmp.next = slot->next;
		tmp.prev = slot->prev;
		tmp.next->prev = &tmp;
		tmp.prev->next = &tmp;
		dl_init(slot);
		while (!dl_empty(&tmp)) {
			struct tcp_conn *c = dl_entry(tmp.next, struct tcp_conn, tm_node);
			dl_del(&c->tm_node);
			if (c->tm_at && c->tm_at <= now) {
				c->tm_at = 0;
				tcp_timer_fire(st, c);
			} else {
				dl_add_tail(slot, &c->tm_node);
			}
		}
		if (dl_empty(slot))
			st->wheel_bits[idx / 64] &= ~(1ULL << (idx % 64));
	}
}

static void fifo_run(struct stack *st, uint64_t now)
{
	while (!dl_empty(&st->tw_list)) {
		struct tcp_conn *c = dl_entry(st->tw_list.next, struct tcp_conn, fifo_node);
		if (c->fifo_at > now)
			break;
		st->stats.time_wait_expired++;
		stack_conn_release(st, c);
	}
	while (!dl_empty(&st->idle_list)) {
		struct tcp_conn *c = dl_entry(st->idle_list.next, struct tcp_conn, fifo_node);
		if (c->fifo_at + st->cfg.idle > now)
			break;
		st->stats.idle_timeouts++;
		tcp_drop(st, c, TCP_CLOSE_IDLE, true);
	}
}

static void run_pending(struct stack *st)
{
	while (!dl_empty(&st->pending)) {
		struct tcp_conn *c = dl_entry(st->pending.next, struct tcp_conn, pend_node);
		dl_del(&c->pend_node);
		tcp_output(st, c);
	}
}

void stack_timers(struct stack *st, uint64_t now)
{
	if (now > st->now)
		st->now = now;
	now = st->now;
	wheel_run(st, now);
	fifo_run(st, now);
	net_neigh_timers(st);
	net_dad_timers(st);
	run_pending(st);
	reap_dead(st);
}

void stack_flush(struct stack *st, uint64_t now)
{
	if (now > st->now)
		st->now = now;
	run_pending(st);
	reap_dead(st);
}

void stack_input(struct stack *st, const uint8_t *frame, uint32_t len, uint64_t now)
{
	if (now > st->now)
		st->now = now;
	st->stats.rx_frames++;
	st->stats.rx_bytes += len;
	net_input(st, frame, len);
	run_pending(st);
	reap_dead(st);
}

/* --- Consistency check --- */

const char *stack_check(struct stack *st)
{
	uint64_t by_state[TCP_NSTATES] = { 0 };
	uint32_t used = 0, with_bufs = 0, nfree = 0, reserved = 0, syn_rcvd = 0;
	/* Diagnostics may allocate: this is never on the packet path. */
	uint8_t *is_free = calloc(st->cfg.max_conns, 1);
	if (!is_free)
		return "out of memory for the check";
	for (struct tcp_conn *f = st->conn_free; f; f = f->hnext) {
		if (is_free[f - st->conns] || ++nfree > st->cfg.max_conns) {
			free(is_free);
			return "free list loops";
		}
		is_free[f - st->conns] = 1;
	}
	const char *bad = NULL;
	for (uint32_t i = 0; i < st->cfg.max_conns && !bad; i++) {
		struct tcp_conn *c = &st->conns[i];
		if (is_free[i])
			continue;
		used++;
		if (c->state >= TCP_NSTATES) {
			bad = "connection in an invalid state";
			break;
		}
		by_state[c->state]++;
		if (c->buf_idx != UINT32_MAX)
			with_bufs++;
		if (c->flags & CF_BUF_RESERVED)
			reserved++;
		if (c->state == TCP_SYN_RCVD && c->l)
			syn_rcvd++;
		if (c->flags & CF_DEAD)
			bad = "dead connection not reaped";
		else if (c->state == TCP_CLOSED)
			bad = "live connection in CLOSED";
		else if (stack_conn_lookup(st, &c->t) != c)
			bad = "live connection not in the table";
		else if (c->state == TCP_TIME_WAIT && c->buf_idx != UINT32_MAX)
			bad = "TIME_WAIT holding buffers";
		else if (c->state == TCP_SYN_RCVD && !(c->flags & CF_ACTIVE) &&
			 (c->buf_idx != UINT32_MAX || (c->flags & CF_BUF_RESERVED)))
			bad = "passive half-open connection holding or reserving buffers";
		else if ((c->flags & CF_BUF_RESERVED) && c->buf_idx != UINT32_MAX)
			bad = "buffers both held and reserved";
		else if (c->state >= TCP_ESTABLISHED && c->state != TCP_TIME_WAIT &&
			 c->buf_idx == UINT32_MAX)
			bad = "synchronized connection without buffers";
		else if (c->buf_idx != UINT32_MAX &&
			 (c->rb.len > c->rb.cap || c->sb.len > c->sb.cap))
			bad = "ring overflow";
		else if (c->ooo_bytes > st->cfg.ooo_max)
			bad = "out-of-order bytes over the cap";
		else if (c->buf_idx != UINT32_MAX && c->rb.len + c->ooo_bytes > c->rb.cap)
			bad = "out-of-order data beyond the buffer";
		else if (SEQ_GT(c->snd_una, c->snd_nxt) || SEQ_GT(c->snd_nxt, c->snd_max))
			bad = "snd_una <= snd_nxt <= snd_max violated";
	}
	free(is_free);
	if (bad)
		return bad;
	if (used != st->conns_used)
		return "conns_used disagrees with the pool";
	if (with_bufs != st->bufs_used || st->bufs_used + st->buf_free_n != st->cfg.max_bufs)
		return "buffer pool accounting";
	if (reserved != st->bufs_reserved || st->bufs_used + reserved > st->cfg.max_bufs)
		return "buffer reservations";
	if (syn_rcvd != st->syn_rcvd)
		return "half-open count";
	if (st->syn_rcvd > st->syn_rcvd_max)
		return "half-open connections over syn_rcvd_max";
	for (int s = 0; s < TCP_NSTATES; s++)
		if (by_state[s] != st->stats.conns_by_state[s])
			return "counts by state disagree";
	if (st->mem_used !=
	    (uint64_t)used * sizeof(struct tcp_conn) + (uint64_t)with_bufs * st->buf_bytes)
		return "mem_used disagrees";
	if (st->mem_used > st->mem_budget)
		return "over budget";
	uint32_t syn[STACK_MAX_LISTENERS] = { 0 };
	for (uint32_t i = 0; i < st->cfg.max_conns; i++) {
		struct tcp_conn *c = &st->conns[i];
		if (c->state == TCP_SYN_RCVD && c->l && !(c->flags & CF_DEAD))
			syn[c->l - st->listeners]++;
	}
	for (unsigned i = 0; i < STACK_MAX_LISTENERS; i++)
		if (st->listeners[i].used && st->listeners[i].syn_count != syn[i])
			return "listener SYN queue count";
	return NULL;
}
