/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Internals shared by the stack's files.  Not for users of the library.
 */
#ifndef TES_DATAPLANE_STACK_IMPL_H
#define TES_DATAPLANE_STACK_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/siphash.h"
#include "dataplane/stack/stack.h"

#define NS_PER_MS 1000000ULL
#define NS_PER_S 1000000000ULL

/* Sequence-space comparisons (RFC 9293 3.4): modulo 2^32. */
#define SEQ_LT(a, b) ((int32_t)((uint32_t)(a) - (uint32_t)(b)) < 0)
#define SEQ_LEQ(a, b) ((int32_t)((uint32_t)(a) - (uint32_t)(b)) <= 0)
#define SEQ_GT(a, b) SEQ_LT(b, a)
#define SEQ_GEQ(a, b) SEQ_LEQ(b, a)

static inline uint32_t min_u32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

static inline uint32_t max_u32(uint32_t a, uint32_t b)
{
	return a > b ? a : b;
}

static inline uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* Big-endian field access octet by octet: frames are not aligned, and the
 * wire's byte order is not the host's. */
static inline uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Intrusive doubly linked list; a node not on a list points to itself. */
struct dl {
	struct dl *prev, *next;
};

static inline void dl_init(struct dl *n)
{
	n->prev = n->next = n;
}

static inline bool dl_empty(const struct dl *h)
{
	return h->next == h;
}

static inline bool dl_linked(const struct dl *n)
{
	return n->next != n;
}

static inline void dl_del(struct dl *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	dl_init(n);
}

static inline void dl_add_tail(struct dl *h, struct dl *n)
{
	n->prev = h->prev;
	n->next = h;
	h->prev->next = n;
	h->prev = n;
}

#define dl_entry(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* A byte ring over a fixed slice of the buffer pool. */
struct ring {
	uint8_t *base;
	uint32_t cap, head, len;
};

uint32_t stack_ring_write_at(struct ring *r, uint32_t off, const uint8_t *p, uint32_t n);
void stack_ring_read_at(const struct ring *r, uint32_t off, uint8_t *out, uint32_t n);
void stack_ring_drop(struct ring *r, uint32_t n);

/* Connection flags. */
enum {
	CF_APP = 1u << 0,            /* the application owns it (closed event due) */
	CF_FIN_QUEUED = 1u << 1,     /* tcp_close: FIN after the queued data */
	CF_FIN_SENT = 1u << 2,       /* the FIN has a sequence number */
	CF_FIN_RCVD = 1u << 3,       /* the peer's FIN is in order */
	CF_OOO_FIN = 1u << 4,        /* a FIN beyond a hole: ooo_fin_seq */
	CF_RECOVERY = 1u << 5,       /* NewReno fast recovery */
	CF_RTT_TIMING = 1u << 6,     /* rtt_seq is being timed */
	CF_PERSIST = 1u << 7,        /* rto_at is the persist timer */
	CF_WANT_WRITE = 1u << 8,     /* a send was short: writable event due */
	CF_ACK_NOW = 1u << 9,        /* an ACK must go out at the next output */
	CF_REXMIT_SYN = 1u << 10,    /* the SYN or SYN-ACK was retransmitted (IW 1) */
	CF_ACTIVE = 1u << 11,        /* opened by stack_connect */
	CF_DEAD = 1u << 12,          /* released; memory reaped at the end */
	CF_WSCALE = 1u << 13,        /* both sides sent window scale */
	CF_READABLE = 1u << 14,      /* readable event due */
	CF_FIRST_PARTIAL = 1u << 15, /* a partial ACK was seen in this recovery */
	CF_WRITABLE = 1u << 16,      /* writable event due */
	CF_NOTIFY = 1u << 17,        /* closed event due when reaped */
	CF_BUF_RESERVED = 1u << 18,  /* an active open holds a buffer pair's reservation */
	CF_SYN_PRESSURE = 1u << 19,  /* half-open, made under pressure: fewer SYN-ACK retries */
};

struct stack_listener {
	struct stack_addr addr; /* family NONE: any */
	uint16_t port;
	bool used, closed;
	uint32_t backlog;
	uint32_t syn_count;   /* SYN-RCVD connections of this listener */
	uint64_t last_cookie; /* when a cookie was last sent (+1, 0: never) */
	void *ctx;
};

struct tcp_conn {
	struct stack_tuple t;
	uint8_t state;
	uint8_t snd_wscale, rcv_wscale;
	uint8_t retries, dupacks, persist_shift;
	uint8_t peer_mac[6];
	uint8_t nooo;
	uint8_t close_why; /* with CF_NOTIFY */
	uint8_t chack_n;   /* challenge ACKs sent in the window starting at chack_at */
	uint16_t mss;      /* what we send per segment */
	uint32_t flags;

	uint32_t iss, irs;
	uint32_t snd_una, snd_nxt, snd_max;
	uint32_t snd_wnd, max_sndwnd, snd_wl1, snd_wl2;
	uint32_t snd_buf_seq; /* sequence number of the first byte in sb */
	uint32_t cwnd, ssthresh, recover, bytes_acked;

	uint32_t rcv_nxt, rcv_adv; /* rcv_adv: right edge advertised */
	uint32_t unacked;          /* bytes received since our last ACK */
	uint32_t ooo_bytes, ooo_fin_seq;
	struct {
		uint32_t start, end;
	} ooo[STACK_OOO_RANGES];

	uint32_t srtt_us, rttvar_us, rto_us; /* srtt 0: no sample yet */
	uint32_t rtt_seq;
	uint64_t rtt_start;

	uint64_t rto_at, delack_at; /* 0: not armed */
	uint64_t tm_at;             /* on the wheel for this time */
	uint64_t fifo_at;           /* idle: last enqueue; TIME_WAIT: expiry */
	uint64_t last_rx, last_tx;
	uint64_t chack_at; /* start of this connection's challenge-ACK second */

	struct dl tm_node;   /* timer wheel slot */
	struct dl fifo_node; /* idle or TIME_WAIT list */
	struct dl pend_node; /* output pending, or dead */
	struct dl arp_node;  /* waiting for a neighbour */
	struct tcp_conn *hnext;
	struct stack *st;
	struct stack_listener *l;
	void *ctx;
	uint32_t buf_idx; /* UINT32_MAX: no buffers */
	struct ring rb, sb;
};

struct neigh {
	struct stack_addr addr;
	uint8_t mac[6];
	uint8_t state; /* NEIGH_FREE, _INCOMPLETE, _VALID, _STATIC */
	uint8_t probes;
	bool pending; /* a request of ours is unanswered: a reply may be learned */
	uint64_t updated, asked;
	struct dl waiters; /* tcp_conn.arp_node */
};

enum { NEIGH_FREE, NEIGH_INCOMPLETE, NEIGH_VALID, NEIGH_STATIC };

enum { ADDR_USABLE, ADDR_TENTATIVE, ADDR_DUPLICATE };

#define WHEEL_SLOTS 4096u
#define WHEEL_TICK NS_PER_MS

struct stack {
	struct stack_config cfg;
	struct stack_io io;
	void *io_ctx;
	struct stack_app app;
	struct stack_stats stats;
	struct siphash_key hkey, ikey;

	uint64_t now;
	uint16_t adv_mss; /* over IPv4; IPv6's header is 20 bytes more */
	uint32_t frame_room;

	/* IPv6 addresses: duplicate address detection (RFC 4862 5.4), per
	 * cfg.addrs[i].  An address is used (answered, sent from) only
	 * once ADDR_USABLE. */
	uint8_t addr_state[STACK_MAX_ADDRS];
	uint8_t dad_sent[STACK_MAX_ADDRS]; /* solicitations sent so far */
	uint64_t dad_at[STACK_MAX_ADDRS];  /* when the last was sent */
	bool dad_pending;                  /* some address is tentative */

	/* Pools. */
	struct tcp_conn *conns;
	struct tcp_conn *conn_free;
	uint32_t conns_used;
	uint8_t *bufmem;
	uint32_t *buf_free;
	uint32_t buf_free_n, bufs_used;
	uint32_t bufs_reserved; /* CF_BUF_RESERVED connections */
	uint32_t buf_bytes;
	uint64_t mem_used, mem_budget, mem_prealloc;

	struct tcp_conn **table;
	uint32_t table_mask;

	struct stack_listener listeners[STACK_MAX_LISTENERS];
	uint32_t syn_rcvd; /* passive SYN-RCVD connections, all listeners */
	uint32_t syn_rcvd_max;

	struct neigh *neigh;
	uint32_t neigh_mask, neigh_incomplete;

	struct dl wheel[WHEEL_SLOTS];
	uint64_t wheel_bits[WHEEL_SLOTS / 64]; /* slot may be non-empty */
	uint64_t wheel_tick;
	struct dl idle_list, tw_list;
	struct dl pending; /* conns with output to try */
	struct dl dead;    /* conns to reap */

	uint32_t port_seq;
};

/* The MSS we offer over a family (and the most we send). */
static inline uint16_t stack_adv_mss(const struct stack *st, uint8_t family)
{
	return family == STACK_AF_INET6 ? (uint16_t)(st->adv_mss - 20) : st->adv_mss;
}

/* The functions the stack's files share carry the prefix of the file that
 * defines them (stack_: stack.c, net_: net.c, tcp_: tcp_*.c), as its API
 * does: the library is linked into programs with their own names, so it
 * exports none without a prefix (nm -g --defined-only libtesstack.a). */

/* stack.c */
void stack_conn_set_state(struct stack *st, struct tcp_conn *c, enum tcp_state s);
void stack_timer_update(struct stack *st, struct tcp_conn *c);
void stack_idle_touch(struct stack *st, struct tcp_conn *c);
void stack_mark_pending(struct stack *st, struct tcp_conn *c);
struct tcp_conn *stack_conn_alloc(struct stack *st);
bool stack_conn_attach_bufs(struct stack *st, struct tcp_conn *c);
void stack_conn_release(struct stack *st, struct tcp_conn *c);
void stack_conn_hash_add(struct stack *st, struct tcp_conn *c);
struct tcp_conn *stack_conn_lookup(struct stack *st, const struct stack_tuple *t);
/* For a released connection nobody else can hold (no event due). */
void stack_conn_free_now(struct stack *st, struct tcp_conn *c);
bool stack_mem_can_admit(const struct stack *st);
void stack_conn_reserve_bufs(struct stack *st, struct tcp_conn *c);
const struct stack_addr *stack_local_addr_match(const struct stack *st, const uint8_t ip4[4]);
/* A usable IPv6 address of ours (not tentative, not duplicate); with
 * index, which cfg.addrs entry (tentative ones too, for DAD). */
const struct stack_addr *stack_local_addr_match6(const struct stack *st, const uint8_t ip6[16]);
int stack_local_addr_index6(const struct stack *st, const uint8_t ip6[16]);

/* net.c */
void net_input(struct stack *st, const uint8_t *frame, uint32_t len);
uint16_t net_csum_fold(uint32_t sum);
uint32_t net_csum_add(uint32_t sum, const uint8_t *p, size_t n);
/* Begin a TCP frame over family: returns the TCP header pointer, or NULL. */
uint8_t *net_tcp_begin(struct stack *st, uint8_t family, void **pkt, uint8_t **frame);
void net_tcp_send(struct stack *st, void *pkt, uint8_t *frame, const struct stack_tuple *t,
		  const uint8_t dmac[6], uint32_t tcp_len);
int net_neigh_resolve(struct stack *st, const struct stack_addr *src, const struct stack_addr *dst,
		      uint8_t mac[6], struct tcp_conn *waiter);
void net_neigh_timers(struct stack *st);
/* Duplicate address detection: solicitations due, addresses coming into
 * use.  Cheap when none is tentative. */
void net_dad_timers(struct stack *st);
void net_neigh_forget_waiter(struct tcp_conn *c);

/* tcp_in.c */
void tcp_input(struct stack *st, const uint8_t *smac, const struct stack_addr *src,
	       const struct stack_addr *dst, const uint8_t *seg, uint32_t len);

/* tcp_out.c */
void tcp_output(struct stack *st, struct tcp_conn *c);
void tcp_retransmit_head(struct stack *st, struct tcp_conn *c);
void tcp_send_ack(struct stack *st, struct tcp_conn *c);
void tcp_send_syn(struct stack *st, struct tcp_conn *c, bool rexmit);
void tcp_send_rst_conn(struct stack *st, struct tcp_conn *c);
void tcp_send_rst_reply(struct stack *st, const uint8_t *smac, const struct stack_tuple *t,
			uint32_t seq, uint32_t ack, bool with_ack);
void tcp_send_synack_cookie(struct stack *st, const uint8_t *smac, const struct stack_tuple *t,
			    uint32_t irs, uint32_t iss);
void tcp_challenge_ack(struct stack *st, struct tcp_conn *c);
void tcp_timer_fire(struct stack *st, struct tcp_conn *c);
void tcp_rto_arm(struct stack *st, struct tcp_conn *c);
void tcp_rto_stop(struct stack *st, struct tcp_conn *c);
void tcp_update_rtt(struct stack *st, struct tcp_conn *c, uint64_t rtt_ns);
uint32_t tcp_rcv_window(const struct tcp_conn *c);
uint32_t tcp_initial_window(const struct tcp_conn *c);
uint32_t tcp_iss(struct stack *st, const struct stack_tuple *t);

/* tcp_conn.c */
void tcp_notify_closed(struct stack *st, struct tcp_conn *c, enum tcp_close_reason why);
void tcp_drop(struct stack *st, struct tcp_conn *c, enum tcp_close_reason why, bool send_rst);
void tcp_enter_time_wait(struct stack *st, struct tcp_conn *c);
uint32_t tcp_cookie_make(struct stack *st, const struct stack_tuple *t, uint32_t irs,
			 uint16_t peer_mss, uint64_t now);
bool tcp_cookie_check(struct stack *st, const struct stack_tuple *t, uint32_t irs, uint32_t cookie,
		      uint16_t *mss, uint64_t now);
void tcp_deliver_events(struct stack *st, struct tcp_conn *c);

#endif
