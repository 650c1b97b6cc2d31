/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * TCP input (RFC 9293 3.10.7), with the RFC 5961 checks, NewReno
 * (RFC 5681, RFC 6582) on the ACK path, bounded out-of-order reassembly in
 * the receive ring, and SYN cookies on the listen path.
 */
#include "dataplane/stack/stack_impl.h"

#define TH_FIN 0x01
#define TH_SYN 0x02
#define TH_RST 0x04
#define TH_PSH 0x08
#define TH_ACK 0x10

struct seg {
	uint32_t seq, ack, wnd; /* wnd: the raw field */
	uint32_t len;           /* payload bytes */
	uint8_t flags;
	const uint8_t *data;
	int mss, ws; /* -1: option absent */
};

static void parse_options(struct seg *s, const uint8_t *o, uint32_t n)
{
	uint32_t i = 0;
	while (i < n) {
		uint8_t kind = o[i];
		if (kind == 0)
			break;
		if (kind == 1) {
			i++;
			continue;
		}
		if (i + 1 >= n || o[i + 1] < 2 || i + o[i + 1] > n)
			break; /* malformed: ignore the rest, keep the segment */
		uint8_t len = o[i + 1];
		if (kind == 2 && len == 4)
			s->mss = get16(o + i + 2);
		else if (kind == 3 && len == 3)
			s->ws = o[i + 2];
		i += len;
	}
}

static struct stack_listener *listener_find(struct stack *st, const struct stack_addr *dst,
					    uint16_t port)
{
	for (unsigned i = 0; i < STACK_MAX_LISTENERS; i++) {
		struct stack_listener *l = &st->listeners[i];
		if (l->used && l->port == port &&
		    (l->addr.family == STACK_AF_NONE || stack_addr_eq(&l->addr, dst)))
			return l;
	}
	return NULL;
}

static uint16_t effective_mss(const struct stack *st, uint8_t family, int peer_mss)
{
	/* RFC 9293 3.7.1: 536 when the peer says nothing (1220 over IPv6,
	 * whose minimum MTU is 1280: RFC 8200 8.3); never below what makes
	 * progress. */
	uint32_t m = peer_mss >= 0 ? (uint32_t)peer_mss : family == STACK_AF_INET6 ? 1220 : 536;
	if (m < 88)
		m = 88;
	return (uint16_t)min_u32(m, stack_adv_mss(st, family));
}

/* --- Establishment --- */

/* The handshake completed.  false when the connection is gone (the
 * application refused it, or the listener closed). */
static bool establish(struct stack *st, struct tcp_conn *c)
{
	if (!stack_conn_attach_bufs(st, c)) {
		/* Passive half-open connections hold no reservation (active
		 * opens do, so for them this cannot happen): with every pair
		 * in use, the handshake's ACK is answered with RST. */
		st->stats.syn_refused_mem++;
		tcp_drop(st, c, TCP_CLOSE_RESET, true);
		return false;
	}
	stack_conn_set_state(st, c, TCP_ESTABLISHED);
	c->cwnd = tcp_initial_window(c);
	c->ssthresh = 1u << 30;
	c->recover = c->snd_una;
	c->retries = 0;
	st->stats.established++;
	stack_idle_touch(st, c);
	if (c->flags & CF_ACTIVE) {
		if (st->app.connected)
			st->app.connected(c->ctx, c);
		return !(c->flags & CF_DEAD);
	}
	struct stack_listener *l = c->l;
	if (!l || l->closed) {
		st->stats.syn_refused_listener++;
		tcp_drop(st, c, TCP_CLOSE_RESET, true);
		return false;
	}
	c->flags |= CF_APP;
	if (!st->app.accept || st->app.accept(l->ctx, l, c) != 0) {
		if (!(c->flags & CF_DEAD)) {
			st->stats.accept_refused++;
			c->flags &= ~CF_APP;
			tcp_drop(st, c, TCP_CLOSE_RESET, true);
		}
		return false;
	}
	st->stats.accepts++;
	return !(c->flags & CF_DEAD);
}

static bool conn_input(struct stack *st, struct tcp_conn *c, const struct seg *s);

/* --- Listen path --- */

static void send_cookie(struct stack *st, struct stack_listener *l, const uint8_t *smac,
			const struct stack_tuple *t, const struct seg *s)
{
	uint32_t iss =
		tcp_cookie_make(st, t, s->seq, (uint16_t)(s->mss < 0 ? 536 : s->mss), st->now);
	l->last_cookie = st->now + 1;
	st->stats.syn_cookies_sent++;
	tcp_send_synack_cookie(st, smac, t, s->seq, iss);
}

static void listen_syn(struct stack *st, struct stack_listener *l, const uint8_t *smac,
		       const struct stack_tuple *t, const struct seg *s)
{
	/* The half-open cap comes before memory: whatever the table holds,
	 * spoofed SYNs never take more than syn_rcvd_max slots, and beyond
	 * it cost one SYN-ACK each and no state. */
	if (l->syn_count >= l->backlog || st->syn_rcvd >= st->syn_rcvd_max) {
		st->stats.syn_queue_full++;
		send_cookie(st, l, smac, t, s);
		return;
	}
	struct tcp_conn *c = stack_mem_can_admit(st) ? stack_conn_alloc(st) : NULL;
	if (!c) {
		/* No slot, or the connection could not get buffers: a cookie
		 * costs nothing now, and its ACK is admitted if room has come
		 * by then. */
		st->stats.syn_cookies_nomem++;
		send_cookie(st, l, smac, t, s);
		return;
	}
	c->t = *t;
	c->l = l;
	memcpy(c->peer_mac, smac, 6);
	c->irs = s->seq;
	c->rcv_nxt = s->seq + 1;
	c->rcv_adv = c->rcv_nxt + min_u32(st->cfg.rcvbuf, 65535);
	c->iss = tcp_iss(st, t);
	c->snd_una = c->iss;
	c->snd_nxt = c->snd_max = c->iss + 1;
	c->snd_buf_seq = c->iss + 1;
	c->mss = effective_mss(st, c->t.laddr.family, s->mss);
	if (s->ws >= 0) {
		c->flags |= CF_WSCALE;
		c->snd_wscale = (uint8_t)min_u32((uint32_t)s->ws, 14);
		c->rcv_wscale = st->cfg.rcv_wscale;
	}
	c->snd_wnd = s->wnd;
	c->max_sndwnd = s->wnd;
	c->snd_wl1 = s->seq;
	c->snd_wl2 = c->iss;
	c->rto_us = (uint32_t)(st->cfg.rto_initial / 1000);
	stack_conn_set_state(st, c, TCP_SYN_RCVD);
	if (2 * st->syn_rcvd >= st->syn_rcvd_max)
		c->flags |= CF_SYN_PRESSURE;
	stack_conn_hash_add(st, c);
	tcp_send_syn(st, c, false);
	tcp_rto_arm(st, c);
}

static void listen_cookie_ack(struct stack *st, struct stack_listener *l, const uint8_t *smac,
			      const struct stack_tuple *t, const struct seg *s)
{
	uint16_t mss;
	if (st->io.early_drop && st->io.early_drop(st->io_ctx, &t->raddr)) {
		st->stats.early_drops++;
		return;
	}
	if (!tcp_cookie_check(st, t, s->seq - 1, s->ack - 1, &mss, st->now)) {
		st->stats.syn_cookies_failed++;
		tcp_send_rst_reply(st, smac, t, s->ack, 0, false);
		return;
	}
	st->stats.syn_cookies_validated++;
	if (l->closed) {
		st->stats.syn_refused_listener++;
		tcp_send_rst_reply(st, smac, t, s->ack, 0, false);
		return;
	}
	struct tcp_conn *c = stack_mem_can_admit(st) ? stack_conn_alloc(st) : NULL;
	if (!c) {
		/* The peer believes it is connected; an RST tells it now rather
		 * than after its own timeout (SMTP clients wait for the banner
		 * and send nothing that would be retried). */
		st->stats.syn_refused_mem++;
		tcp_send_rst_reply(st, smac, t, s->ack, 0, false);
		return;
	}
	c->t = *t;
	c->l = l;
	memcpy(c->peer_mac, smac, 6);
	c->irs = s->seq - 1;
	c->rcv_nxt = s->seq;
	c->iss = s->ack - 1;
	c->snd_una = c->snd_nxt = c->snd_max = s->ack;
	c->snd_buf_seq = s->ack;
	c->mss = effective_mss(st, c->t.laddr.family, mss);
	/* The cookie SYN-ACK offered no window scale: none on either side. */
	c->snd_wnd = s->wnd;
	c->max_sndwnd = c->snd_wnd;
	c->snd_wl1 = s->seq;
	c->snd_wl2 = s->ack;
	c->rcv_adv = c->rcv_nxt + min_u32(st->cfg.rcvbuf, 65535);
	c->rto_us = (uint32_t)(st->cfg.rto_initial / 1000);
	stack_conn_hash_add(st, c);
	if (establish(st, c))
		conn_input(st, c, s); /* its data, FIN */
}

static void no_conn(struct stack *st, const uint8_t *smac, const struct stack_tuple *t,
		    const struct seg *s)
{
	if (s->flags & TH_RST)
		return;
	struct stack_listener *l = listener_find(st, &t->laddr, t->lport);
	if (l && (s->flags & TH_ACK)) {
		/* A cookie is only worth checking while the listener has
		 * been handing them out; otherwise blind guessing could get
		 * a connection past an empty SYN queue. */
		if (!(s->flags & (TH_SYN | TH_FIN)) && l->last_cookie &&
		    st->now + 1 - l->last_cookie < 2 * st->cfg.cookie_period) {
			listen_cookie_ack(st, l, smac, t, s);
			return;
		}
		st->stats.tcp_no_conn++;
		tcp_send_rst_reply(st, smac, t, s->ack, 0, false);
		return;
	}
	if (l && (s->flags & TH_SYN)) {
		st->stats.syn_rx++;
		if (s->flags & TH_FIN) {
			st->stats.syn_dropped++;
			return;
		}
		if (st->io.early_drop && st->io.early_drop(st->io_ctx, &t->raddr)) {
			st->stats.early_drops++;
			return;
		}
		if (l->closed) {
			st->stats.syn_refused_listener++;
			tcp_send_rst_reply(st, smac, t, 0, s->seq + 1, true);
			return;
		}
		listen_syn(st, l, smac, t, s);
		return;
	}
	if (l)
		return; /* neither SYN nor ACK nor RST: nothing to answer */
	st->stats.tcp_no_conn++;
	if (!st->cfg.rst_unknown)
		return;
	if (s->flags & TH_ACK) {
		tcp_send_rst_reply(st, smac, t, s->ack, 0, false);
	} else {
		uint32_t seglen =
			s->len + ((s->flags & TH_SYN) ? 1 : 0) + ((s->flags & TH_FIN) ? 1 : 0);
		tcp_send_rst_reply(st, smac, t, 0, s->seq + seglen, true);
	}
}

/* --- SYN-SENT --- */

static void syn_sent_input(struct stack *st, struct tcp_conn *c, const struct seg *s)
{
	if (s->flags & TH_ACK) {
		if (SEQ_LEQ(s->ack, c->iss) || SEQ_GT(s->ack, c->snd_max)) {
			if (!(s->flags & TH_RST))
				tcp_send_rst_reply(st, c->peer_mac, &c->t, s->ack, 0, false);
			return;
		}
	}
	if (s->flags & TH_RST) {
		/* RFC 5961 3.2 / RFC 9293: only an RST that acknowledges our
		 * SYN is believed. */
		if (s->flags & TH_ACK) {
			st->stats.connects_failed++;
			tcp_drop(st, c, TCP_CLOSE_REFUSED, false);
		} else {
			st->stats.rst_ignored++;
		}
		return;
	}
	if (!(s->flags & TH_SYN))
		return;
	c->irs = s->seq;
	c->rcv_nxt = s->seq + 1;
	c->rcv_adv = c->rcv_nxt + min_u32(st->cfg.rcvbuf, 65535);
	c->mss = effective_mss(st, c->t.laddr.family, s->mss);
	if (s->ws >= 0) {
		c->flags |= CF_WSCALE;
		c->snd_wscale = (uint8_t)min_u32((uint32_t)s->ws, 14);
	} else {
		c->snd_wscale = c->rcv_wscale = 0;
	}
	c->snd_wl1 = s->seq;
	c->snd_wl2 = s->ack;
	c->snd_wnd = s->wnd;
	c->max_sndwnd = s->wnd;
	if (!(s->flags & TH_ACK)) {
		/* Simultaneous open. */
		c->snd_wl2 = c->iss;
		stack_conn_set_state(st, c, TCP_SYN_RCVD);
		tcp_send_syn(st, c, false);
		tcp_rto_arm(st, c);
		return;
	}
	c->snd_una = s->ack;
	if ((c->flags & CF_RTT_TIMING) && !(c->flags & CF_REXMIT_SYN))
		tcp_update_rtt(st, c, st->now - c->rtt_start);
	c->flags &= ~CF_RTT_TIMING;
	tcp_rto_stop(st, c);
	c->flags |= CF_ACK_NOW;
	if (!establish(st, c))
		return;
	stack_mark_pending(st, c);
}

/* --- Receiving data --- */

static void ooo_remove(struct tcp_conn *c, unsigned i)
{
	c->ooo_bytes -= c->ooo[i].end - c->ooo[i].start;
	for (unsigned j = i; j + 1 < c->nooo; j++)
		c->ooo[j] = c->ooo[j + 1];
	c->nooo--;
}

/* In-order bytes landed at rcv_nxt: pull in whatever out-of-order ranges
 * they reach.  The bytes are already in place in the ring. */
static bool ooo_advance(struct stack *st, struct tcp_conn *c)
{
	bool filled = false;
	while (c->nooo && SEQ_LEQ(c->ooo[0].start, c->rcv_nxt)) {
		if (SEQ_GT(c->ooo[0].end, c->rcv_nxt)) {
			uint32_t extra = c->ooo[0].end - c->rcv_nxt;
			c->rb.len += extra;
			c->rcv_nxt += extra;
			st->stats.data_rx_bytes += extra;
		}
		ooo_remove(c, 0);
		filled = true;
	}
	return filled;
}

/* Insert [start, end) into the sorted, disjoint ranges.  false when it
 * would exceed the byte cap or the number of ranges. */
static bool ooo_insert(struct stack *st, struct tcp_conn *c, uint32_t start, uint32_t end)
{
	struct {
		uint32_t start, end;
	} r[STACK_OOO_RANGES + 1];
	unsigned n = 0, i = 0;
	uint32_t bytes = 0;
	while (i < c->nooo && SEQ_LT(c->ooo[i].end, start))
		r[n++] = (typeof(r[0])){ c->ooo[i].start, c->ooo[i].end }, i++;
	uint32_t ms = start, me = end;
	while (i < c->nooo && SEQ_LEQ(c->ooo[i].start, me)) {
		if (SEQ_LT(c->ooo[i].start, ms))
			ms = c->ooo[i].start;
		if (SEQ_GT(c->ooo[i].end, me))
			me = c->ooo[i].end;
		i++;
	}
	r[n].start = ms;
	r[n].end = me;
	n++;
	while (i < c->nooo) {
		if (n > STACK_OOO_RANGES)
			return false;
		r[n].start = c->ooo[i].start;
		r[n].end = c->ooo[i].end;
		n++;
		i++;
	}
	if (n > STACK_OOO_RANGES)
		return false;
	for (unsigned k = 0; k < n; k++)
		bytes += r[k].end - r[k].start;
	if (bytes > st->cfg.ooo_max)
		return false;
	for (unsigned k = 0; k < n; k++) {
		c->ooo[k].start = r[k].start;
		c->ooo[k].end = r[k].end;
	}
	c->nooo = (uint8_t)n;
	c->ooo_bytes = bytes;
	return true;
}

/* Where a segment's text went, which decides what its FIN means. */
enum text_place {
	TEXT_NONE,        /* not offered: no text and no FIN, or a state past the peer's FIN */
	TEXT_IN_ORDER,    /* at rcv_nxt: taken, with the out-of-order ranges it reached */
	TEXT_BEYOND_HOLE, /* kept in the ring beyond a hole */
	TEXT_DROPPED,     /* beyond a hole, with no room to keep it */
};

static enum text_place text_in(struct stack *st, struct tcp_conn *c, uint32_t seq, const uint8_t *p,
			       uint32_t len)
{
	if (seq == c->rcv_nxt) {
		if (len) {
			uint32_t n = stack_ring_write_at(&c->rb, c->rb.len, p, len);
			c->rb.len += n;
			c->rcv_nxt += n;
			st->stats.data_rx_bytes += n;
			c->flags |= CF_READABLE;
			c->unacked += n;
			bool filled = ooo_advance(st, c);
			if (filled || c->nooo)
				c->flags |= CF_ACK_NOW; /* RFC 5681 4.2: at once */
			else if (c->unacked >= 2u * c->mss)
				c->flags |= CF_ACK_NOW;
			else if (!c->delack_at) {
				c->delack_at = st->now + st->cfg.delack;
				stack_timer_update(st, c);
			}
		}
		return TEXT_IN_ORDER;
	}
	/* Beyond a hole.  The bytes go straight to their final place in the
	 * ring (the window guarantees room); only the ranges are tracked. */
	st->stats.ooo_segments++;
	c->flags |= CF_ACK_NOW;
	if (len == 0)
		return TEXT_BEYOND_HOLE;
	if ((uint64_t)c->rb.len + (seq - c->rcv_nxt) + len > c->rb.cap ||
	    !ooo_insert(st, c, seq, seq + len)) {
		st->stats.ooo_dropped++;
		return TEXT_DROPPED;
	}
	stack_ring_write_at(&c->rb, c->rb.len + (seq - c->rcv_nxt), p, len);
	return TEXT_BEYOND_HOLE;
}

void tcp_enter_time_wait(struct stack *st, struct tcp_conn *c)
{
	/* The application reads what is left, then hears that it is over;
	 * only then do the buffers go. */
	if ((c->flags & CF_READABLE) && (c->flags & CF_APP) && st->app.readable) {
		c->flags &= ~CF_READABLE;
		st->app.readable(c->ctx, c);
		if (c->flags & CF_DEAD)
			return;
	}
	tcp_notify_closed(st, c, TCP_CLOSE_NORMAL);
	if (c->flags & CF_DEAD)
		return;
	stack_conn_set_state(st, c, TCP_TIME_WAIT);
	c->nooo = 0;
	c->ooo_bytes = 0;
	if (dl_linked(&c->fifo_node))
		dl_del(&c->fifo_node);
	c->fifo_at = st->now + 2 * st->cfg.msl;
	dl_add_tail(&st->tw_list, &c->fifo_node);
}

static bool fin_acked(const struct tcp_conn *c)
{
	return (c->flags & CF_FIN_SENT) && c->snd_una == c->snd_max;
}

static void fin_in(struct stack *st, struct tcp_conn *c)
{
	c->flags |= CF_ACK_NOW;
	if (c->flags & CF_FIN_RCVD)
		return;
	c->flags |= CF_FIN_RCVD | CF_READABLE;
	c->rcv_nxt++;
	c->nooo = 0;
	c->ooo_bytes = 0;
	switch (c->state) {
	case TCP_SYN_RCVD:
	case TCP_ESTABLISHED:
		stack_conn_set_state(st, c, TCP_CLOSE_WAIT);
		break;
	case TCP_FIN_WAIT_1:
		if (fin_acked(c)) {
			tcp_send_ack(st, c);
			tcp_enter_time_wait(st, c);
		} else {
			stack_conn_set_state(st, c, TCP_CLOSING);
		}
		break;
	case TCP_FIN_WAIT_2:
		tcp_send_ack(st, c);
		tcp_enter_time_wait(st, c);
		break;
	default:
		break;
	}
}

/* --- The ACK path --- */

static void new_ack(struct stack *st, struct tcp_conn *c, const struct seg *s)
{
	uint32_t acked = s->ack - c->snd_una;
	if (SEQ_GT(s->ack, c->snd_buf_seq)) {
		uint32_t n = min_u32(s->ack - c->snd_buf_seq, c->sb.len);
		stack_ring_drop(&c->sb, n);
		c->snd_buf_seq += n;
	}
	c->snd_una = s->ack;
	if (SEQ_LT(c->snd_nxt, c->snd_una))
		c->snd_nxt = c->snd_una;
	c->retries = 0;
	if ((c->flags & CF_RTT_TIMING) && SEQ_GEQ(s->ack, c->rtt_seq)) {
		c->flags &= ~CF_RTT_TIMING;
		tcp_update_rtt(st, c, st->now - c->rtt_start);
	}
	bool restart_rto = true;
	if (c->flags & CF_RECOVERY) {
		if (SEQ_GEQ(s->ack, c->recover)) {
			/* Full ACK (RFC 6582 3.2 step 3): deflate. */
			uint32_t flight = c->snd_max - c->snd_una;
			c->cwnd = min_u32(c->ssthresh, max_u32(flight, c->mss) + c->mss);
			c->flags &= ~(CF_RECOVERY | CF_FIRST_PARTIAL);
			c->dupacks = 0;
		} else {
			/* Partial ACK: the next hole was lost as well.  Resend
			 * it, deflate by what was acknowledged and add one
			 * segment back (RFC 6582 3.2 step 4).  Only the first
			 * partial ACK restarts the timer ("impatient"). */
			st->stats.partial_acks++;
			tcp_retransmit_head(st, c);
			c->cwnd = c->cwnd > acked ? c->cwnd - acked : 0;
			if (acked >= c->mss)
				c->cwnd += c->mss;
			if (c->cwnd < c->mss)
				c->cwnd = c->mss;
			if (c->flags & CF_FIRST_PARTIAL)
				restart_rto = false;
			c->flags |= CF_FIRST_PARTIAL;
		}
	} else {
		c->dupacks = 0;
		if (c->cwnd < c->ssthresh) {
			c->cwnd += min_u32(acked, c->mss); /* slow start */
		} else {
			/* Congestion avoidance by byte counting: one MSS
			 * per window acknowledged. */
			c->bytes_acked += acked;
			if (c->bytes_acked >= c->cwnd) {
				c->bytes_acked -= c->cwnd;
				c->cwnd += c->mss;
			}
		}
	}
	if (c->snd_una == c->snd_max) {
		if (!(c->flags & CF_PERSIST))
			tcp_rto_stop(st, c);
	} else if (restart_rto) {
		tcp_rto_arm(st, c);
	}
	if ((c->flags & CF_WANT_WRITE) && c->sb.len < c->sb.cap)
		c->flags |= CF_WRITABLE;
	stack_mark_pending(st, c);
}

static void dup_ack(struct stack *st, struct tcp_conn *c, const struct seg *s)
{
	st->stats.dup_acks++;
	if (c->dupacks < 255)
		c->dupacks++;
	if (c->flags & CF_RECOVERY) {
		/* Each further duplicate means a segment left the network. */
		c->cwnd += c->mss;
		stack_mark_pending(st, c);
		return;
	}
	if (c->dupacks != 3)
		return;
	/* RFC 6582 3.2 step 1: only if this is not a leftover from the
	 * previous recovery. */
	if (!SEQ_GT(s->ack, c->recover) && c->recover != c->snd_una)
		return;
	uint32_t flight = c->snd_max - c->snd_una;
	c->ssthresh = max_u32(flight / 2, 2u * c->mss);
	c->recover = c->snd_max;
	c->flags |= CF_RECOVERY;
	c->flags &= ~(CF_FIRST_PARTIAL | CF_RTT_TIMING);
	st->stats.fast_retransmits++;
	tcp_retransmit_head(st, c);
	c->cwnd = c->ssthresh + 3u * c->mss;
	stack_mark_pending(st, c);
}

static void window_update(struct stack *st, struct tcp_conn *c, const struct seg *s)
{
	if (!(SEQ_LT(c->snd_wl1, s->seq) || (c->snd_wl1 == s->seq && SEQ_LEQ(c->snd_wl2, s->ack))))
		return;
	uint32_t w = s->wnd << c->snd_wscale;
	if (w == 0)
		st->stats.zero_window_rx++;
	bool opened = w > c->snd_wnd;
	c->snd_wnd = w;
	c->max_sndwnd = max_u32(c->max_sndwnd, w);
	c->snd_wl1 = s->seq;
	c->snd_wl2 = s->ack;
	if (opened) {
		if ((c->flags & CF_PERSIST) && w > 0) {
			c->persist_shift = 0;
			tcp_rto_stop(st, c);
		}
		stack_mark_pending(st, c);
	}
}

/* The peer's RST is exactly at rcv_nxt (RFC 5961 3.2): the connection
 * ends here, in whatever state. */
static void reset_in(struct stack *st, struct tcp_conn *c)
{
	if (c->state == TCP_SYN_RCVD && !(c->flags & CF_ACTIVE)) {
		/* Back to LISTEN: the half-open entry just goes. */
		stack_conn_release(st, c);
		return;
	}
	if (c->state == TCP_SYN_RCVD)
		st->stats.connects_failed++;
	st->stats.resets++;
	tcp_drop(st, c, c->state == TCP_SYN_RCVD ? TCP_CLOSE_REFUSED : TCP_CLOSE_RESET, false);
}

/* RFC 9293 3.10.7.4's acceptability test, with the right edge included:
 * a peer that has filled our window sends its ACKs with SEG.SEQ exactly at
 * the edge, and a peer probing a zero window sends data at rcv_nxt; the
 * strict test would drop both unread, ACK field and all (RFC 9293 asks to
 * "accept valid ACKs" at zero window; Linux accepts the edge too).  What
 * lies beyond the edge is trimmed away afterwards. */
static bool acceptable(const struct tcp_conn *c, uint32_t seq, uint32_t seglen)
{
	uint32_t wnd = SEQ_GT(c->rcv_adv, c->rcv_nxt) ? c->rcv_adv - c->rcv_nxt : 0;
	if (SEQ_GT(seq, c->rcv_nxt + wnd))
		return false;
	if (seglen == 0)
		return SEQ_GEQ(seq, c->rcv_nxt);
	return SEQ_GEQ(seq + seglen - 1, c->rcv_nxt);
}

/* --- A segment for a connection past SYN-SENT (RFC 9293 3.10.7.4) --- */

/* What a step decided about the segment. */
enum step {
	STEP_NEXT,   /* go on to the next step */
	STEP_DONE,   /* the segment is dealt with (or dropped) */
	STEP_LISTEN, /* it ended a TIME_WAIT: the listen path takes it */
};

/* What the steps after the first take of the segment: its text and FIN,
 * trimmed to the receive window. */
struct text {
	uint32_t seq, len;
	const uint8_t *data;
	bool fin;
};

/* Fourth step, taken before the others: RFC 5961 4.2 answers a SYN in a
 * synchronized state with a challenge ACK whatever its sequence number.
 * A bare SYN is first read for what else it may be: a new connection that
 * ends a TIME-WAIT, or the peer's first SYN again in SYN-RECEIVED. */
static enum step step_syn(struct stack *st, struct tcp_conn *c, const struct seg *s)
{
	uint8_t f = s->flags;
	if ((f & (TH_SYN | TH_ACK | TH_RST)) == TH_SYN) {
		if (c->state == TCP_TIME_WAIT && SEQ_GT(s->seq, c->rcv_nxt) &&
		    !(c->flags & CF_ACTIVE)) {
			/* A new incarnation whose ISN is beyond the old one
			 * cannot be confused with it (RFC 9293 3.6.1). */
			st->stats.time_wait_reopened++;
			stack_conn_release(st, c);
			stack_conn_free_now(st, c); /* its slot serves the new SYN */
			return STEP_LISTEN;
		}
		if (c->state == TCP_SYN_RCVD) {
			if (s->seq == c->irs) {
				/* Our SYN-ACK was lost: say it again. */
				st->stats.retransmits++;
				tcp_send_syn(st, c, true);
				c->flags &= ~CF_RTT_TIMING;
			} else if (!(c->flags & CF_ACTIVE)) {
				st->stats.syn_dropped++;
				stack_conn_release(st, c);
			}
			return STEP_DONE;
		}
	}
	if ((f & TH_SYN) && !(f & TH_RST)) {
		tcp_challenge_ack(st, c);
		return STEP_DONE;
	}
	return STEP_NEXT;
}

/* First step: a segment outside the window is answered with an ACK (an RST
 * there is ignored), which also tells a peer that lost our last ACK. */
static enum step step_seq(struct stack *st, struct tcp_conn *c, const struct seg *s)
{
	uint8_t f = s->flags;
	uint32_t seglen = s->len + ((f & TH_SYN) ? 1 : 0) + ((f & TH_FIN) ? 1 : 0);
	if (acceptable(c, s->seq, seglen))
		return STEP_NEXT;
	if (f & TH_RST) {
		st->stats.rst_ignored++;
		return STEP_DONE;
	}
	st->stats.out_of_window++;
	if (s->len && SEQ_LEQ(s->seq + s->len, c->rcv_nxt))
		st->stats.dup_segments++;
	if (c->state == TCP_TIME_WAIT && (f & TH_FIN)) {
		/* The peer did not hear our last ACK. */
		dl_del(&c->fifo_node);
		c->fifo_at = st->now + 2 * st->cfg.msl;
		dl_add_tail(&st->tw_list, &c->fifo_node);
	}
	tcp_send_ack(st, c);
	return STEP_DONE;
}

/* Second step: only an RST exactly at rcv_nxt ends the connection; one
 * elsewhere in the window gets a challenge ACK (RFC 5961 3.2). */
static enum step step_rst(struct stack *st, struct tcp_conn *c, const struct seg *s)
{
	if (!(s->flags & TH_RST))
		return STEP_NEXT;
	if (s->seq == c->rcv_nxt)
		reset_in(st, c);
	else
		tcp_challenge_ack(st, c);
	return STEP_DONE;
}

/* The rest of the first step, once the segment is known acceptable: what
 * precedes rcv_nxt was seen already, what passes the right edge was not
 * offered room. */
static void trim_to_window(struct stack *st, struct tcp_conn *c, const struct seg *s,
			   struct text *txt)
{
	txt->seq = s->seq;
	txt->len = s->len;
	txt->data = s->data;
	txt->fin = s->flags & TH_FIN;
	if (SEQ_LT(txt->seq, c->rcv_nxt)) {
		uint32_t d = c->rcv_nxt - txt->seq;
		if (d >= txt->len) {
			if (txt->len)
				st->stats.dup_segments++;
			if (d > txt->len)
				txt->fin = false; /* that FIN is already behind us */
			txt->data += txt->len;
			txt->len = 0;
		} else {
			txt->data += d;
			txt->len -= d;
		}
		txt->seq = c->rcv_nxt;
		c->flags |= CF_ACK_NOW;
	}
	uint32_t wnd = SEQ_GT(c->rcv_adv, c->rcv_nxt) ? c->rcv_adv - c->rcv_nxt : 0;
	if (txt->len && SEQ_GT(txt->seq + txt->len, c->rcv_nxt + wnd)) {
		uint32_t excess = txt->seq + txt->len - (c->rcv_nxt + wnd);
		st->stats.rcv_trimmed += excess;
		txt->len -= excess;
		txt->fin = false;
		c->flags |= CF_ACK_NOW;
	}
}

/* The fifth step in SYN-RECEIVED: an ACK of our SYN completes the
 * handshake; any other is answered with RST. */
static enum step ack_syn_rcvd(struct stack *st, struct tcp_conn *c, const struct seg *s)
{
	if (!SEQ_GT(s->ack, c->snd_una) || SEQ_GT(s->ack, c->snd_max)) {
		st->stats.ack_invalid++;
		tcp_send_rst_reply(st, c->peer_mac, &c->t, s->ack, 0, false);
		return STEP_DONE;
	}
	c->snd_una = s->ack;
	c->snd_wnd = s->wnd << c->snd_wscale;
	c->max_sndwnd = c->snd_wnd;
	c->snd_wl1 = s->seq;
	c->snd_wl2 = s->ack;
	if ((c->flags & CF_RTT_TIMING) && !(c->flags & CF_REXMIT_SYN))
		tcp_update_rtt(st, c, st->now - c->rtt_start);
	c->flags &= ~CF_RTT_TIMING;
	tcp_rto_stop(st, c);
	return establish(st, c) ? STEP_NEXT : STEP_DONE;
}

/* The fifth step in the synchronized states: what the ACK acknowledges,
 * the send window, and the closes that an ACK of our FIN completes. */
static enum step ack_synchronized(struct stack *st, struct tcp_conn *c, const struct seg *s,
				  bool fin)
{
	if (SEQ_GT(s->ack, c->snd_max) || SEQ_LT(s->ack, c->snd_una - max_u32(c->max_sndwnd, 1))) {
		/* RFC 5961 5.2. */
		tcp_challenge_ack(st, c);
		return STEP_DONE;
	}
	if (c->flags & CF_PERSIST)
		c->retries = 0; /* the peer answers its probes */
	if (SEQ_GT(s->ack, c->snd_una)) {
		new_ack(st, c, s);
	} else if (s->ack == c->snd_una && s->len == 0 && !(s->flags & TH_FIN) &&
		   (s->wnd << c->snd_wscale) == c->snd_wnd && c->snd_max != c->snd_una) {
		dup_ack(st, c, s);
	}
	window_update(st, c, s);
	if (c->flags & CF_DEAD)
		return STEP_DONE;
	if (fin_acked(c)) {
		switch (c->state) {
		case TCP_FIN_WAIT_1:
			stack_conn_set_state(st, c, TCP_FIN_WAIT_2);
			break;
		case TCP_CLOSING:
			tcp_enter_time_wait(st, c);
			return STEP_DONE;
		case TCP_LAST_ACK:
			tcp_drop(st, c, TCP_CLOSE_NORMAL, false);
			return STEP_DONE;
		default:
			break;
		}
	}
	if (c->state == TCP_TIME_WAIT) {
		/* Only the peer's FIN again can arrive here: acknowledge it. */
		if (fin)
			tcp_send_ack(st, c);
		return STEP_DONE;
	}
	return STEP_NEXT;
}

/* Fifth step: a segment without ACK is dropped. */
static enum step step_ack(struct stack *st, struct tcp_conn *c, const struct seg *s,
			  const struct text *txt)
{
	if (!(s->flags & TH_ACK))
		return STEP_DONE;
	if (c->state == TCP_SYN_RCVD)
		return ack_syn_rcvd(st, c, s);
	return ack_synchronized(st, c, s, txt->fin);
}

/* Seventh step: text is taken in the states where the peer has not yet
 * sent its FIN; after it, none can come. */
static enum text_place step_text(struct stack *st, struct tcp_conn *c, const struct text *txt)
{
	switch (c->state) {
	case TCP_ESTABLISHED:
	case TCP_FIN_WAIT_1:
	case TCP_FIN_WAIT_2:
		if (txt->len || txt->fin)
			return text_in(st, c, txt->seq, txt->data, txt->len);
		return TEXT_NONE;
	default:
		return TEXT_NONE;
	}
}

/* Eighth step: a FIN counts once the text before it is in.  One beyond a
 * hole is remembered (the first one only) until the hole fills; one in a
 * state past the peer's FIN is a repeat that asks for an ACK. */
static void step_fin(struct stack *st, struct tcp_conn *c, const struct text *txt,
		     enum text_place at)
{
	switch (at) {
	case TEXT_NONE:
		if (txt->fin)
			c->flags |= CF_ACK_NOW;
		break;
	case TEXT_IN_ORDER:
		if (txt->fin) {
			fin_in(st, c);
		} else if ((c->flags & CF_OOO_FIN) && c->rcv_nxt == c->ooo_fin_seq) {
			c->flags &= ~CF_OOO_FIN;
			fin_in(st, c);
		}
		break;
	case TEXT_BEYOND_HOLE:
		if (txt->fin && !(c->flags & CF_OOO_FIN)) {
			c->flags |= CF_OOO_FIN;
			c->ooo_fin_seq = txt->seq + txt->len;
		}
		break;
	case TEXT_DROPPED:
		break;
	}
}

/* What the segment asks of us: the application hears its events, then an
 * ACK goes at once or the output waits for the end of the burst. */
static void respond(struct stack *st, struct tcp_conn *c)
{
	if (c->flags & CF_DEAD)
		return;
	tcp_deliver_events(st, c);
	if (c->flags & CF_DEAD)
		return;
	if (c->flags & CF_ACK_NOW)
		tcp_output(st, c);
	else
		stack_mark_pending(st, c);
}

/* The steps of RFC 9293 3.10.7.4 in the order this stack takes them.
 * Returns true when the segment should go to the listen path instead (a
 * new SYN that ended a TIME_WAIT). */
static bool conn_input(struct stack *st, struct tcp_conn *c, const struct seg *s)
{
	struct text txt;
	enum step r;

	if (c->state == TCP_SYN_SENT) {
		syn_sent_input(st, c, s); /* 3.10.7.3 */
		return false;
	}
	r = step_syn(st, c, s);
	if (r != STEP_NEXT)
		return r == STEP_LISTEN;
	if (step_seq(st, c, s) != STEP_NEXT || step_rst(st, c, s) != STEP_NEXT)
		return false;
	/* Third, security: connections carry no security or compartment
	 * to compare. */
	stack_idle_touch(st, c);
	trim_to_window(st, c, s, &txt);
	if (step_ack(st, c, s, &txt) != STEP_NEXT)
		return false;
	/* Sixth, URG: ignored; urgent bytes are read in line with the rest
	 * (RFC 6093), and SMTP sends none. */
	step_fin(st, c, &txt, step_text(st, c, &txt));
	respond(st, c);
	return false;
}

void tcp_input(struct stack *st, const uint8_t *smac, const struct stack_addr *src,
	       const struct stack_addr *dst, const uint8_t *p, uint32_t len)
{
	st->stats.tcp_rx++;
	uint32_t doff = (uint32_t)(p[12] >> 4) * 4;
	if (doff < 20 || doff > len) {
		st->stats.tcp_bad_hdr++;
		return;
	}
	struct seg s = {
		.seq = get32(p + 4),
		.ack = get32(p + 8),
		.wnd = get16(p + 14),
		.len = len - doff,
		.flags = p[13],
		.data = p + doff,
		.mss = -1,
		.ws = -1,
	};
	struct stack_tuple t;
	memset(&t, 0, sizeof(t));
	t.laddr = *dst;
	t.raddr = *src;
	t.rport = get16(p);
	t.lport = get16(p + 2);
	if (t.rport == 0 || t.lport == 0) {
		st->stats.tcp_bad_hdr++;
		return;
	}
	if (s.flags & TH_SYN)
		parse_options(&s, p + 20, doff - 20);
	if (s.flags & TH_RST)
		st->stats.rst_rx++;
	struct tcp_conn *c = stack_conn_lookup(st, &t);
	if (c && !conn_input(st, c, &s))
		return;
	no_conn(st, smac, &t, &s);
}
