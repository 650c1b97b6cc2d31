/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * TCP output: segment building, the send loop (peer window, congestion
 * window over bytes in flight), retransmission and persist timers, RTT
 * estimation (RFC 6298) and the receive window we advertise.
 */
#include "dataplane/stack/stack_impl.h"

#define TH_FIN 0x01
#define TH_SYN 0x02
#define TH_RST 0x04
#define TH_PSH 0x08
#define TH_ACK 0x10

/* --- Windows --- */

/* The receive window to advertise, in bytes.  Receiver-side silly window
 * avoidance (RFC 9293 3.8.6.2.2): the right edge only moves once it can
 * move by min(half the buffer, one MSS); until then the old edge stands
 * and the window shrinks as data arrives.  Never below the edge already
 * advertised, which the ring always has room for. */
uint32_t tcp_rcv_window(const struct tcp_conn *c)
{
	uint32_t cur = SEQ_GT(c->rcv_adv, c->rcv_nxt) ? c->rcv_adv - c->rcv_nxt : 0;
	if (c->buf_idx == UINT32_MAX)
		return cur;
	uint32_t free_space = c->rb.cap - c->rb.len;
	uint32_t step = min_u32(c->rb.cap / 2, c->mss);
	uint32_t win = free_space >= cur + step ? free_space : cur;
	uint32_t maxwin = (uint32_t)65535 << c->rcv_wscale;
	win = min_u32(win, maxwin);
	/* What the scaled field can express; the edge never recedes. */
	win = (win >> c->rcv_wscale) << c->rcv_wscale;
	return max_u32(win, cur);
}

/* RFC 6928: min(10 * MSS, max(2 * MSS, 14600)); one segment when the SYN
 * or SYN-ACK had to be retransmitted (RFC 5681 3.1). */
uint32_t tcp_initial_window(const struct tcp_conn *c)
{
	if (c->flags & CF_REXMIT_SYN)
		return c->mss;
	return min_u32(10u * c->mss, max_u32(2u * c->mss, 14600));
}

/* RFC 6528: a keyed hash of the tuple plus a 4 us clock. */
uint32_t tcp_iss(struct stack *st, const struct stack_tuple *t)
{
	return (uint32_t)siphash24(&st->ikey, t, sizeof(*t)) + (uint32_t)(st->now / 4000);
}

/* --- RTT and RTO (RFC 6298) --- */

static uint32_t rto_clamp(const struct stack *st, uint64_t us)
{
	uint64_t lo = st->cfg.rto_min / 1000, hi = st->cfg.rto_max / 1000;
	if (us < lo)
		us = lo;
	if (us > hi)
		us = hi;
	return (uint32_t)us;
}

void tcp_update_rtt(struct stack *st, struct tcp_conn *c, uint64_t rtt_ns)
{
	uint32_t r = (uint32_t)min_u64(rtt_ns / 1000, 0x7fffffff);
	if (r == 0)
		r = 1;
	if (c->srtt_us == 0) {
		c->srtt_us = r;
		c->rttvar_us = r / 2;
	} else {
		uint32_t d = c->srtt_us > r ? c->srtt_us - r : r - c->srtt_us;
		c->rttvar_us = (3 * c->rttvar_us + d) / 4;
		c->srtt_us = (7 * c->srtt_us + r) / 8;
	}
	/* Clock granularity G is the wheel's tick. */
	uint64_t k = max_u32(4 * c->rttvar_us, WHEEL_TICK / 1000);
	c->rto_us = rto_clamp(st, (uint64_t)c->srtt_us + k);
}

static void rto_backoff(struct stack *st, struct tcp_conn *c)
{
	c->rto_us = rto_clamp(st, (uint64_t)c->rto_us * 2);
}

void tcp_rto_arm(struct stack *st, struct tcp_conn *c)
{
	c->flags &= ~CF_PERSIST;
	c->rto_at = st->now + (uint64_t)c->rto_us * 1000;
	stack_timer_update(st, c);
}

void tcp_rto_stop(struct stack *st, struct tcp_conn *c)
{
	c->flags &= ~CF_PERSIST;
	c->rto_at = 0;
	stack_timer_update(st, c);
}

static void persist_arm(struct stack *st, struct tcp_conn *c)
{
	uint64_t t = ((uint64_t)c->rto_us * 1000) << c->persist_shift;
	if (t > st->cfg.rto_max)
		t = st->cfg.rto_max;
	c->flags |= CF_PERSIST;
	c->rto_at = st->now + t;
	stack_timer_update(st, c);
}

/* --- Segment building --- */

struct segspec {
	uint32_t seq;
	uint8_t flags;
	bool syn_opts;
	uint32_t data_off; /* offset in the send ring */
	uint32_t len;
};

static bool xmit(struct stack *st, struct tcp_conn *c, const struct segspec *s)
{
	void *pkt;
	uint8_t *frame;
	uint8_t *th = net_tcp_begin(st, c->t.laddr.family, &pkt, &frame);
	if (!th)
		return false;
	uint32_t hlen = 20;
	uint8_t *o = th + 20;
	if (s->syn_opts) {
		o[0] = 2;
		o[1] = 4;
		put16(o + 2, stack_adv_mss(st, c->t.laddr.family));
		hlen += 4;
		if ((c->flags & CF_ACTIVE && c->state == TCP_SYN_SENT) || (c->flags & CF_WSCALE)) {
			o[4] = 1;
			o[5] = 3;
			o[6] = 3;
			o[7] = c->rcv_wscale;
			hlen += 4;
		}
	}
	put16(th, c->t.lport);
	put16(th + 2, c->t.rport);
	put32(th + 4, s->seq);
	uint8_t flags = s->flags;
	uint32_t win;
	if (flags & TH_SYN) {
		/* Windows in SYN segments are never scaled (RFC 7323 2.2). */
		win = min_u32(st->cfg.rcvbuf, 65535);
		if (c->state == TCP_SYN_RCVD || c->state == TCP_SYN_SENT) {
			uint32_t edge = c->rcv_nxt + win;
			if (flags & TH_ACK)
				c->rcv_adv = edge;
		}
		put16(th + 14, (uint16_t)win);
	} else {
		win = tcp_rcv_window(c);
		put16(th + 14, (uint16_t)(win >> c->rcv_wscale));
		if (SEQ_GT(c->rcv_nxt + win, c->rcv_adv))
			c->rcv_adv = c->rcv_nxt + win;
	}
	put32(th + 8, (flags & TH_ACK) ? c->rcv_nxt : 0);
	th[12] = (uint8_t)((hlen / 4) << 4);
	th[13] = flags;
	put16(th + 18, 0);
	if (s->len)
		stack_ring_read_at(&c->sb, s->data_off, th + hlen, s->len);
	if (flags & TH_ACK) {
		c->flags &= ~CF_ACK_NOW;
		c->unacked = 0;
		if (c->delack_at) {
			c->delack_at = 0;
			stack_timer_update(st, c);
		}
	}
	c->last_tx = st->now;
	net_tcp_send(st, pkt, frame, &c->t, c->peer_mac, hlen + s->len);
	return true;
}

void tcp_send_ack(struct stack *st, struct tcp_conn *c)
{
	struct segspec s = { .seq = c->snd_nxt, .flags = TH_ACK };
	xmit(st, c, &s);
}

void tcp_challenge_ack(struct stack *st, struct tcp_conn *c)
{
	/* RFC 5961 7 asks for a limit; it is per connection, never per
	 * stack.  A budget the whole stack shares is a counter an off-path
	 * attacker reads from its own connection's challenge ACKs: spend it
	 * with spoofed segments to a guessed tuple, count what is left, and
	 * the tuple's existence and then its sequence numbers leak
	 * (CVE-2016-5696).  Reflection stays bounded: a spoofed segment
	 * reaches only the real peer of an existing connection, at most
	 * challenge_ack_limit times a second per connection. */
	if (c->chack_at == 0 || st->now - c->chack_at >= NS_PER_S) {
		c->chack_at = st->now ? st->now : 1;
		c->chack_n = 0;
	}
	if (c->chack_n >= st->cfg.challenge_ack_limit) {
		st->stats.challenge_acks_limited++;
		return;
	}
	c->chack_n++;
	st->stats.challenge_acks++;
	tcp_send_ack(st, c);
}

void tcp_send_syn(struct stack *st, struct tcp_conn *c, bool rexmit)
{
	if (c->flags & CF_ACTIVE && c->state == TCP_SYN_SENT &&
	    net_neigh_resolve(st, &c->t.laddr, &c->t.raddr, c->peer_mac, c) != 0)
		return; /* sent when the neighbour answers, or on the next RTO */
	struct segspec s = { .seq = c->iss, .flags = TH_SYN, .syn_opts = true };
	if (c->state == TCP_SYN_RCVD)
		s.flags |= TH_ACK;
	if (!rexmit) {
		c->flags |= CF_RTT_TIMING;
		c->rtt_seq = c->iss + 1;
		c->rtt_start = st->now;
	}
	if (xmit(st, c, &s) && c->state == TCP_SYN_RCVD)
		st->stats.synack_tx++;
}

void tcp_send_rst_conn(struct stack *st, struct tcp_conn *c)
{
	struct segspec s = { .seq = c->snd_nxt, .flags = TH_RST | TH_ACK };
	if (c->state == TCP_SYN_SENT) {
		s.seq = c->snd_nxt;
		s.flags = TH_RST;
	}
	if (xmit(st, c, &s))
		st->stats.rst_tx++;
}

/* A segment for no connection: answered from its own fields only. */
void tcp_send_rst_reply(struct stack *st, const uint8_t *smac, const struct stack_tuple *t,
			uint32_t seq, uint32_t ack, bool with_ack)
{
	void *pkt;
	uint8_t *frame;
	uint8_t *th = net_tcp_begin(st, t->laddr.family, &pkt, &frame);
	if (!th)
		return;
	put16(th, t->lport);
	put16(th + 2, t->rport);
	put32(th + 4, seq);
	put32(th + 8, with_ack ? ack : 0);
	th[12] = 5 << 4;
	th[13] = TH_RST | (with_ack ? TH_ACK : 0);
	put16(th + 14, 0);
	put16(th + 18, 0);
	st->stats.rst_tx++;
	net_tcp_send(st, pkt, frame, t, smac, 20);
}

/* MSS only: window scale (like SACK and timestamps) would have to be
 * remembered, and a cookie remembers nothing else. */
void tcp_send_synack_cookie(struct stack *st, const uint8_t *smac, const struct stack_tuple *t,
			    uint32_t irs, uint32_t iss)
{
	void *pkt;
	uint8_t *frame;
	uint8_t *th = net_tcp_begin(st, t->laddr.family, &pkt, &frame);
	if (!th)
		return;
	uint32_t hlen = 24;
	put16(th, t->lport);
	put16(th + 2, t->rport);
	put32(th + 4, iss);
	put32(th + 8, irs + 1);
	th[13] = TH_SYN | TH_ACK;
	put16(th + 14, (uint16_t)min_u32(st->cfg.rcvbuf, 65535));
	put16(th + 18, 0);
	uint8_t *o = th + 20;
	o[0] = 2;
	o[1] = 4;
	put16(o + 2, stack_adv_mss(st, t->laddr.family));
	th[12] = (uint8_t)((hlen / 4) << 4);
	st->stats.synack_tx++;
	net_tcp_send(st, pkt, frame, t, smac, hlen);
}

/* --- The send loop --- */

/* Bytes of the send ring not yet sent at snd_nxt. */
static uint32_t unsent(const struct tcp_conn *c)
{
	uint32_t off = c->snd_nxt - c->snd_buf_seq;
	if (SEQ_LT(c->snd_nxt, c->snd_buf_seq) || off >= c->sb.len)
		return 0;
	return c->sb.len - off;
}

static bool fin_due(const struct tcp_conn *c, uint32_t seg_end)
{
	return (c->flags & CF_FIN_QUEUED) && seg_end == c->snd_buf_seq + c->sb.len;
}

/* One segment of data starting at seq (which is in the send ring), at most
 * len bytes, with FIN if it reaches the end and close was asked. */
static bool send_data(struct stack *st, struct tcp_conn *c, uint32_t seq, uint32_t len)
{
	struct segspec s = {
		.seq = seq,
		.flags = TH_ACK,
		.data_off = seq - c->snd_buf_seq,
		.len = len,
	};
	if (fin_due(c, seq + len))
		s.flags |= TH_FIN;
	if (len && seq + len == c->snd_buf_seq + c->sb.len)
		s.flags |= TH_PSH;
	if (len == 0 && !(s.flags & TH_FIN))
		return false;
	bool rexmit = SEQ_LT(seq, c->snd_max);
	if (!xmit(st, c, &s))
		return false;
	if (rexmit) {
		st->stats.retransmits++;
		/* Karn: no RTT sample from anything that was sent twice. */
		c->flags &= ~CF_RTT_TIMING;
	} else {
		st->stats.data_tx_bytes += len;
		if (!(c->flags & CF_RTT_TIMING)) {
			c->flags |= CF_RTT_TIMING;
			c->rtt_seq = seq + len + ((s.flags & TH_FIN) ? 1 : 0);
			c->rtt_start = st->now;
		}
	}
	if (s.flags & TH_FIN)
		c->flags |= CF_FIN_SENT;
	return true;
}

/* Retransmit the first unacknowledged segment (fast retransmit, partial
 * ACK); snd_nxt stays where it is. */
void tcp_retransmit_head(struct stack *st, struct tcp_conn *c)
{
	uint32_t off = c->snd_una - c->snd_buf_seq;
	uint32_t len = 0;
	if (SEQ_GEQ(c->snd_una, c->snd_buf_seq) && off < c->sb.len)
		len = min_u32(c->mss, c->sb.len - off);
	send_data(st, c, c->snd_una, len);
}

static bool can_send(const struct tcp_conn *c)
{
	switch (c->state) {
	case TCP_ESTABLISHED:
	case TCP_FIN_WAIT_1:
	case TCP_CLOSE_WAIT:
	case TCP_CLOSING:
	case TCP_LAST_ACK:
		return true;
	default:
		return false;
	}
}

void tcp_output(struct stack *st, struct tcp_conn *c)
{
	if (c->flags & CF_DEAD)
		return;
	if (!can_send(c)) {
		if ((c->flags & CF_ACK_NOW) &&
		    (c->state == TCP_FIN_WAIT_2 || c->state == TCP_TIME_WAIT))
			tcp_send_ack(st, c);
		return;
	}
	/* RFC 5681 4.1: after an idle period longer than the RTO, restart
	 * from the initial window rather than bursting a stale cwnd. */
	if (c->snd_una == c->snd_max && c->last_tx &&
	    st->now - c->last_tx > (uint64_t)c->rto_us * 1000)
		c->cwnd = min_u32(c->cwnd, tcp_initial_window(c));

	bool sent = false;
	for (;;) {
		uint32_t avail = unsent(c);
		uint32_t flight = c->snd_nxt - c->snd_una;
		uint32_t wnd = min_u32(c->snd_wnd, c->cwnd);
		uint32_t usable = wnd > flight ? wnd - flight : 0;
		uint32_t len = min_u32(min_u32(avail, usable), c->mss);
		bool fin = fin_due(c, c->snd_nxt + len) &&
			   !((c->flags & CF_FIN_SENT) && c->snd_nxt == c->snd_max);
		if (len == 0 && !(fin && avail == 0))
			break;
		/* Sender-side silly window avoidance: a short segment only
		 * when it carries everything queued or half the largest
		 * window the peer offered; else the persist timer decides. */
		if (len < c->mss && len < avail && len < c->max_sndwnd / 2)
			break;
		if (!send_data(st, c, c->snd_nxt, len))
			break;
		sent = true;
		c->snd_nxt += len + (fin ? 1 : 0);
		if (SEQ_GT(c->snd_nxt, c->snd_max))
			c->snd_max = c->snd_nxt;
		if (!c->rto_at || (c->flags & CF_PERSIST)) {
			c->persist_shift = 0;
			tcp_rto_arm(st, c);
		}
		if (fin)
			break;
	}
	if (!sent && (c->flags & CF_ACK_NOW))
		tcp_send_ack(st, c);
	if (!c->rto_at && unsent(c) > 0 && c->snd_nxt == c->snd_una)
		persist_arm(st, c);
}

/* --- Timers --- */

static void persist_fire(struct stack *st, struct tcp_conn *c)
{
	c->flags &= ~CF_PERSIST;
	if (!can_send(c) || unsent(c) == 0)
		return;
	if (++c->retries > st->cfg.max_retries) {
		st->stats.retries_exhausted++;
		tcp_drop(st, c, TCP_CLOSE_TIMEOUT, true);
		return;
	}
	st->stats.persist_probes++;
	uint32_t flight = c->snd_nxt - c->snd_una;
	uint32_t wnd = c->snd_wnd;
	if (wnd > flight) {
		/* A window too small for the SWS rule: send what fits. */
		uint32_t len = min_u32(min_u32(wnd - flight, unsent(c)), c->mss);
		if (send_data(st, c, c->snd_nxt, len)) {
			c->snd_nxt += len;
			if (SEQ_GT(c->snd_nxt, c->snd_max))
				c->snd_max = c->snd_nxt;
			tcp_rto_arm(st, c);
			return;
		}
	} else {
		/* Zero window: an old sequence number draws an ACK carrying
		 * the current window, without consuming sequence space. */
		struct segspec s = { .seq = c->snd_una - 1, .flags = TH_ACK };
		xmit(st, c, &s);
	}
	if (c->persist_shift < 16)
		c->persist_shift++;
	persist_arm(st, c);
}

static void rto_fire(struct stack *st, struct tcp_conn *c)
{
	if (c->state == TCP_SYN_SENT || c->state == TCP_SYN_RCVD) {
		unsigned limit =
			c->state == TCP_SYN_SENT ? st->cfg.syn_retries : st->cfg.synack_retries;
		bool cut = false;
		if (c->state == TCP_SYN_RCVD && c->l &&
		    ((c->flags & CF_SYN_PRESSURE) || 2 * st->syn_rcvd >= st->syn_rcvd_max) &&
		    limit > st->cfg.synack_retries_pressure) {
			/* Under pressure (half the half-open cap in use, now or
			 * when the SYN came) an unanswered SYN-ACK is given
			 * fewer tries, as Linux does past half its SYN queue:
			 * a spoofed SYN then costs a third party fewer
			 * SYN-ACKs and its slot comes back sooner, and a real
			 * peer that lost one still gets a few. */
			limit = st->cfg.synack_retries_pressure;
			cut = true;
		}
		if (c->retries >= limit) {
			st->stats.retries_exhausted++;
			if (cut)
				st->stats.synack_pressure_drops++;
			if (c->state == TCP_SYN_SENT)
				st->stats.connects_failed++;
			tcp_drop(st, c, TCP_CLOSE_TIMEOUT, false);
			return;
		}
		c->retries++;
		c->flags |= CF_REXMIT_SYN;
		c->flags &= ~CF_RTT_TIMING;
		rto_backoff(st, c);
		st->stats.retransmits++;
		st->stats.syn_retransmits++;
		tcp_send_syn(st, c, true);
		tcp_rto_arm(st, c);
		return;
	}
	if (c->snd_una == c->snd_max || !can_send(c))
		return;
	if (c->retries >= st->cfg.max_retries) {
		st->stats.retries_exhausted++;
		tcp_drop(st, c, TCP_CLOSE_TIMEOUT, true);
		return;
	}
	c->retries++;
	st->stats.rto_expired++;
	/* RFC 5681 (4), RFC 6582: loss window of one segment, leave fast
	 * recovery, go back to snd_una. */
	uint32_t flight = c->snd_max - c->snd_una;
	c->ssthresh = max_u32(flight / 2, 2u * c->mss);
	c->cwnd = c->mss;
	c->bytes_acked = 0;
	c->flags &= ~(CF_RECOVERY | CF_RTT_TIMING | CF_FIRST_PARTIAL);
	c->recover = c->snd_max;
	c->dupacks = 0;
	c->snd_nxt = c->snd_una;
	rto_backoff(st, c);
	c->rto_at = 0;
	uint32_t before = (uint32_t)st->stats.retransmits;
	tcp_output(st, c);
	if ((uint32_t)st->stats.retransmits == before && !c->rto_at) {
		/* Nothing went (no buffer, or a zero window): try again. */
		tcp_rto_arm(st, c);
	}
}

void tcp_timer_fire(struct stack *st, struct tcp_conn *c)
{
	uint64_t now = st->now;
	if (c->delack_at && c->delack_at <= now) {
		c->delack_at = 0;
		if (c->unacked || (c->flags & CF_ACK_NOW)) {
			st->stats.delayed_acks++;
			tcp_send_ack(st, c);
		}
	}
	if (c->rto_at && c->rto_at <= now && !(c->flags & CF_DEAD)) {
		c->rto_at = 0;
		if (c->flags & CF_PERSIST)
			persist_fire(st, c);
		else
			rto_fire(st, c);
	}
	if (!(c->flags & CF_DEAD))
		stack_timer_update(st, c);
}
