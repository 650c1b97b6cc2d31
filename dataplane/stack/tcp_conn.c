/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Connections as the application sees them (send, receive, close, abort,
 * events), listeners, active opens, and SYN cookies.
 */
#include "dataplane/stack/stack_impl.h"

/* --- SYN cookies ---
 *
 * The ISN of a cookie SYN-ACK is all the state there is:
 *   bits 31..3  29 bits of SipHash-2-4, under the stack's secret ISN key,
 *               over the 4-tuple, the peer's ISN, the period counter and
 *               the MSS index
 *   bit  2      the period counter, modulo 2
 *   bits 1..0   an index into the MSS table
 * The period counter is the clock divided by cookie_period; being hashed,
 * it amounts to a secret that rotates every period, and a cookie is good in
 * the period it was made in and the next one.  Its low bit says which, so
 * an ACK costs one hash to check, not two.
 *
 * Forging: an off-path sender who cannot see our SYN-ACK has to guess the
 * 29 bits, 1 in 2^29 per ACK it sends (it chooses the period bit and the
 * MSS index, which only select the hash that must match); about 2.7e8
 * ACKs for an even chance.  The hash needs no more bits: SipHash is a PRF,
 * so answers to its own SYNs teach the attacker nothing about other
 * tuples.  No window scale, SACK or timestamp is offered in a cookie
 * SYN-ACK (nothing would remember them), as Linux does for peers without
 * timestamps; the connection runs with unscaled windows.  Why not a wider
 * MAC in the timestamp option: a forger simply sends no timestamp, so the
 * floor would stay what the ISN holds (docs/tcp-stack.md, "Hostile
 * network").
 */

#define COOKIE_MAC_BITS 29
#define COOKIE_MAC_MASK ((1u << COOKIE_MAC_BITS) - 1)

/* What peers send most (RFC 879's default, tunnels, PPPoE, Ethernet),
 * rounded down: a cookie connection never sends more than the peer said. */
static const uint16_t cookie_mss_tab[4] = { 536, 1300, 1440, 1460 };

static unsigned cookie_mss_index(uint16_t mss)
{
	unsigned i = 0;
	for (unsigned k = 0; k < 4; k++)
		if (cookie_mss_tab[k] <= mss)
			i = k;
	return i;
}

static uint32_t cookie_mac(struct stack *st, const struct stack_tuple *t, uint32_t irs,
			   uint64_t period, unsigned mssidx)
{
	/* Every field at a fixed offset, and the length tells the families
	 * apart, so no two inputs share an encoding.  IPv4 hashes 25 octets
	 * (four SipHash blocks) instead of 53: this runs for every SYN of a
	 * flood. */
	uint8_t in[53];
	size_t n = 0, alen = t->raddr.family == STACK_AF_INET ? 4 : 16;
	memcpy(in, t->laddr.a, alen);
	memcpy(in + alen, t->raddr.a, alen);
	n = 2 * alen;
	put16(in + n, t->lport);
	put16(in + n + 2, t->rport);
	put32(in + n + 4, irs);
	put32(in + n + 8, (uint32_t)(period >> 32));
	put32(in + n + 12, (uint32_t)period);
	in[n + 16] = (uint8_t)mssidx;
	n += 17;
	if (alen != 4)
		in[n++] = t->raddr.family;
	return (uint32_t)siphash24(&st->ikey, in, n) & COOKIE_MAC_MASK;
}

uint32_t tcp_cookie_make(struct stack *st, const struct stack_tuple *t, uint32_t irs,
			 uint16_t peer_mss, uint64_t now)
{
	uint64_t period = now / st->cfg.cookie_period;
	unsigned idx = cookie_mss_index(peer_mss);
	return cookie_mac(st, t, irs, period, idx) << 3 | (uint32_t)(period & 1) << 2 | idx;
}

bool tcp_cookie_check(struct stack *st, const struct stack_tuple *t, uint32_t irs, uint32_t cookie,
		      uint16_t *mss, uint64_t now)
{
	uint64_t cur = now / st->cfg.cookie_period;
	unsigned idx = cookie & 3;
	/* The period bit names the current period or the one before it. */
	uint64_t period = cur;
	if (((cookie >> 2) & 1) != (cur & 1)) {
		if (cur == 0)
			return false;
		period = cur - 1;
	}
	if (cookie_mac(st, t, irs, period, idx) != cookie >> 3)
		return false;
	*mss = cookie_mss_tab[idx];
	return true;
}

/* --- Ending connections --- */

void tcp_notify_closed(struct stack *st, struct tcp_conn *c, enum tcp_close_reason why)
{
	if (!(c->flags & CF_APP))
		return;
	c->flags &= ~CF_APP;
	if (st->app.closed)
		st->app.closed(c->ctx, c, why);
}

static bool synchronized(const struct tcp_conn *c)
{
	return c->state >= TCP_SYN_RCVD && c->state != TCP_TIME_WAIT;
}

void tcp_drop(struct stack *st, struct tcp_conn *c, enum tcp_close_reason why, bool send_rst)
{
	if (c->flags & CF_DEAD)
		return;
	if (send_rst && synchronized(c))
		tcp_send_rst_conn(st, c);
	bool app = c->flags & CF_APP;
	stack_conn_release(st, c);
	/* Released first: the application sees a connection that can no
	 * longer send, whatever it calls. */
	if (app) {
		c->flags |= CF_APP;
		tcp_notify_closed(st, c, why);
	}
}

void tcp_deliver_events(struct stack *st, struct tcp_conn *c)
{
	if ((c->flags & CF_READABLE) && !(c->flags & CF_DEAD)) {
		c->flags &= ~CF_READABLE;
		if ((c->flags & CF_APP) && st->app.readable)
			st->app.readable(c->ctx, c);
	}
	if ((c->flags & CF_WRITABLE) && !(c->flags & CF_DEAD)) {
		c->flags &= ~(CF_WRITABLE | CF_WANT_WRITE);
		if ((c->flags & CF_APP) && st->app.writable)
			st->app.writable(c->ctx, c);
	}
}

/* --- Listeners --- */

struct stack_listener *stack_listen(struct stack *st, const struct stack_addr *addr, uint16_t port,
				    unsigned backlog, void *lctx)
{
	struct stack_addr any;
	memset(&any, 0, sizeof(any));
	if (!addr)
		addr = &any;
	if (port == 0)
		return NULL;
	if (addr->family != STACK_AF_NONE && addr->family != STACK_AF_INET &&
	    addr->family != STACK_AF_INET6)
		return NULL;
	struct stack_listener *slot = NULL;
	for (unsigned i = 0; i < STACK_MAX_LISTENERS; i++) {
		struct stack_listener *l = &st->listeners[i];
		if (!l->used) {
			if (!slot)
				slot = l;
			continue;
		}
		if (l->port == port &&
		    (l->addr.family == STACK_AF_NONE || addr->family == STACK_AF_NONE ||
		     stack_addr_eq(&l->addr, addr)))
			return NULL;
	}
	if (!slot)
		return NULL;
	memset(slot, 0, sizeof(*slot));
	slot->used = true;
	slot->addr = *addr;
	slot->port = port;
	slot->backlog = backlog == 0 ? 1 : backlog;
	if (slot->backlog > st->cfg.backlog_max)
		slot->backlog = st->cfg.backlog_max;
	slot->ctx = lctx;
	return slot;
}

void stack_unlisten(struct stack *st, struct stack_listener *l)
{
	(void)st;
	l->closed = true;
}

/* --- Active open --- */

static uint16_t default_port(struct stack *st, unsigned attempt)
{
	(void)attempt;
	return (uint16_t)(49152 + (st->port_seq++ % 16384));
}

struct tcp_conn *stack_connect(struct stack *st, const struct stack_addr *laddr,
			       const struct stack_addr *raddr, uint16_t rport, void *ctx,
			       uint64_t now)
{
	if (now > st->now)
		st->now = now;
	if (!raddr || (raddr->family != STACK_AF_INET && raddr->family != STACK_AF_INET6) ||
	    rport == 0)
		return NULL;
	const struct stack_addr *src = NULL;
	if (laddr && laddr->family != STACK_AF_NONE) {
		if (laddr->family != raddr->family)
			return NULL;
		src = laddr->family == STACK_AF_INET ? stack_local_addr_match(st, laddr->a)
						     : stack_local_addr_match6(st, laddr->a);
	} else {
		for (unsigned i = 0; i < st->cfg.naddrs && !src; i++)
			if (st->cfg.addrs[i].addr.family == raddr->family &&
			    stack_addr_usable(st, i))
				src = &st->cfg.addrs[i].addr;
	}
	if (!src)
		return NULL;
	if (!stack_mem_can_admit(st))
		return NULL;
	struct stack_tuple t;
	memset(&t, 0, sizeof(t));
	t.laddr = *src;
	t.raddr = *raddr;
	t.rport = rport;
	bool found = false;
	for (unsigned attempt = 0; attempt < 1024 && !found; attempt++) {
		uint16_t p = st->io.pick_port ? st->io.pick_port(st->io_ctx, &t, attempt)
					      : default_port(st, attempt);
		if (p == 0)
			break;
		t.lport = p;
		/* A tuple in TIME_WAIT is not reused: its old segments may
		 * still be about. */
		found = stack_conn_lookup(st, &t) == NULL;
	}
	if (!found)
		return NULL;
	struct tcp_conn *c = stack_conn_alloc(st);
	if (!c)
		return NULL;
	c->t = t;
	c->ctx = ctx;
	c->flags = CF_ACTIVE | CF_APP;
	c->iss = tcp_iss(st, &t);
	c->snd_una = c->iss;
	c->snd_nxt = c->snd_max = c->iss + 1;
	c->snd_buf_seq = c->iss + 1;
	c->recover = c->iss;
	c->rcv_wscale = st->cfg.rcv_wscale;
	c->mss = 536; /* until the SYN-ACK says */
	c->rto_us = (uint32_t)(st->cfg.rto_initial / 1000);
	stack_conn_reserve_bufs(st, c);
	stack_conn_set_state(st, c, TCP_SYN_SENT);
	stack_conn_hash_add(st, c);
	st->stats.connects++;
	tcp_send_syn(st, c, false);
	tcp_rto_arm(st, c);
	return c;
}

/* --- The application's calls --- */

void tcp_set_ctx(struct tcp_conn *c, void *ctx)
{
	c->ctx = ctx;
}

void *tcp_ctx(const struct tcp_conn *c)
{
	return c->ctx;
}

const struct stack_tuple *tcp_tuple(const struct tcp_conn *c)
{
	return &c->t;
}

enum tcp_state tcp_state(const struct tcp_conn *c)
{
	return (enum tcp_state)c->state;
}

static struct stack *conn_stack(const struct tcp_conn *c)
{
	return c->st;
}

long tcp_send(struct tcp_conn *c, const void *p, size_t n)
{
	if (c->flags & (CF_DEAD | CF_FIN_QUEUED))
		return -1;
	if (c->state != TCP_ESTABLISHED && c->state != TCP_CLOSE_WAIT)
		return c->state == TCP_SYN_SENT || c->state == TCP_SYN_RCVD ? 0 : -1;
	uint32_t room = c->sb.cap - c->sb.len;
	uint32_t take = n < room ? (uint32_t)n : room;
	if (take) {
		stack_ring_write_at(&c->sb, c->sb.len, p, take);
		c->sb.len += take;
		stack_mark_pending(conn_stack(c), c);
	}
	if (take < n)
		c->flags |= CF_WANT_WRITE;
	return take;
}

size_t tcp_peek(struct tcp_conn *c, const uint8_t **p1, size_t *n1, const uint8_t **p2, size_t *n2)
{
	*p1 = *p2 = NULL;
	*n1 = *n2 = 0;
	if ((c->flags & CF_DEAD) || c->buf_idx == UINT32_MAX || c->rb.len == 0)
		return 0;
	uint32_t first = min_u32(c->rb.len, c->rb.cap - c->rb.head);
	*p1 = c->rb.base + c->rb.head;
	*n1 = first;
	if (first < c->rb.len) {
		*p2 = c->rb.base;
		*n2 = c->rb.len - first;
	}
	return c->rb.len;
}

void tcp_consume(struct tcp_conn *c, size_t n)
{
	if ((c->flags & CF_DEAD) || c->buf_idx == UINT32_MAX)
		return;
	struct stack *st = conn_stack(c);
	uint32_t before = tcp_rcv_window(c);
	uint32_t adv = SEQ_GT(c->rcv_adv, c->rcv_nxt) ? c->rcv_adv - c->rcv_nxt : 0;
	stack_ring_drop(&c->rb, n > c->rb.len ? c->rb.len : (uint32_t)n);
	uint32_t after = tcp_rcv_window(c);
	/* A window update costs a segment: send one when the window at
	 * least doubles, or when it was below one segment (the peer may be
	 * stalled on it); smaller openings ride on the next ACK. */
	if (after > before && after > adv && (after >= 2 * adv || adv < c->mss) &&
	    !(c->flags & CF_FIN_RCVD) &&
	    (c->state == TCP_ESTABLISHED || c->state == TCP_FIN_WAIT_1 ||
	     c->state == TCP_FIN_WAIT_2)) {
		if (!(c->flags & CF_ACK_NOW))
			st->stats.window_updates++;
		c->flags |= CF_ACK_NOW;
		stack_mark_pending(st, c);
	}
}

size_t tcp_recv(struct tcp_conn *c, void *buf, size_t n)
{
	if ((c->flags & CF_DEAD) || c->buf_idx == UINT32_MAX)
		return 0;
	uint32_t take = min_u32(c->rb.len, n > UINT32_MAX ? UINT32_MAX : (uint32_t)n);
	stack_ring_read_at(&c->rb, 0, buf, take);
	tcp_consume(c, take);
	return take;
}

size_t tcp_readable(const struct tcp_conn *c)
{
	if ((c->flags & CF_DEAD) || c->buf_idx == UINT32_MAX)
		return 0;
	return c->rb.len;
}

bool tcp_eof(const struct tcp_conn *c)
{
	return (c->flags & CF_FIN_RCVD) && tcp_readable(c) == 0;
}

void tcp_close(struct tcp_conn *c)
{
	if (c->flags & (CF_DEAD | CF_FIN_QUEUED))
		return;
	struct stack *st = conn_stack(c);
	switch (c->state) {
	case TCP_SYN_SENT:
		/* RFC 9293 3.10.4: nothing was said yet; just forget it.  The
		 * closed event comes from the stack's next call, not from
		 * inside this one. */
		stack_conn_release(st, c);
		c->flags |= CF_NOTIFY;
		c->close_why = TCP_CLOSE_NORMAL;
		return;
	case TCP_ESTABLISHED:
		stack_conn_set_state(st, c, TCP_FIN_WAIT_1);
		break;
	case TCP_CLOSE_WAIT:
		stack_conn_set_state(st, c, TCP_LAST_ACK);
		break;
	default:
		return;
	}
	c->flags |= CF_FIN_QUEUED;
	stack_mark_pending(st, c);
}

void tcp_abort(struct tcp_conn *c)
{
	if (c->flags & CF_DEAD)
		return;
	struct stack *st = conn_stack(c);
	st->stats.aborts++;
	c->flags &= ~CF_APP;
	tcp_drop(st, c, TCP_CLOSE_RESET, true);
}

void tcp_get_info(const struct tcp_conn *c, struct tcp_info *i)
{
	memset(i, 0, sizeof(*i));
	i->state = (enum tcp_state)c->state;
	i->iss = c->iss;
	i->irs = c->irs;
	i->snd_una = c->snd_una;
	i->snd_nxt = c->snd_nxt;
	i->snd_max = c->snd_max;
	i->rcv_nxt = c->rcv_nxt;
	i->snd_wnd = c->snd_wnd;
	i->rcv_wnd = SEQ_GT(c->rcv_adv, c->rcv_nxt) ? c->rcv_adv - c->rcv_nxt : 0;
	i->cwnd = c->cwnd;
	i->ssthresh = c->ssthresh;
	i->flight = c->snd_nxt - c->snd_una;
	i->mss = c->mss;
	i->snd_wscale = c->snd_wscale;
	i->rcv_wscale = c->rcv_wscale;
	i->srtt = (uint64_t)c->srtt_us * 1000;
	i->rttvar = (uint64_t)c->rttvar_us * 1000;
	i->rto = (uint64_t)c->rto_us * 1000;
	i->sndbuf_used = c->sb.len;
	i->rcvbuf_used = c->rb.len;
	i->ooo_bytes = c->ooo_bytes;
	i->retries = c->retries;
	i->dupacks = c->dupacks;
	i->in_recovery = c->flags & CF_RECOVERY;
}
