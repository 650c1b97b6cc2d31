/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tesstack: a per-core userspace TCP/IP stack (Ethernet, ARP, IPv4, ICMP
 * echo, IPv6 with neighbour discovery and ICMPv6 echo, TCP per RFC 9293)
 * as a pure library.
 *
 * The stack owns no port, no thread and no clock.  The caller hands it every
 * received frame with stack_input(), advances its timers with stack_timers(),
 * and gives it buffers to build outgoing frames in (struct stack_io), so the
 * same code runs under the DPDK port glue (one stack per worker lcore, frames
 * in mbufs), under the packet-script tests and under the fuzzer, both with a
 * virtual port and a virtual clock.  Times are nanoseconds on any monotonic
 * clock the caller chooses; they must never go backwards.
 *
 * Threading: a stack instance and every connection in it belong to one
 * thread (one core).  No function here may be called for a stack from any
 * other thread, and nothing here locks.  Two stacks share nothing, so one per
 * core scales without contention; steering packets of a connection to its
 * core is the caller's business (RSS, and stack_io.pick_port for active
 * opens).
 *
 * Memory: everything is allocated in stack_create() (through cfg->alloc, so
 * the DPDK layer can place it on the right NUMA node); nothing is allocated
 * or freed afterwards.  stack_mem() reports the accounted use against the
 * budget; a SYN that would take the stack over its budget gets a SYN cookie
 * instead of state, before any pool runs dry.  See docs/tcp-stack.md for the
 * cost of a connection and for what the stack does against a hostile
 * network (SYN floods, blind injection, ARP poisoning).
 *
 * Callbacks (struct stack_app) run synchronously inside stack_input(),
 * stack_timers() and stack_flush().  From a callback the application may call
 * any tcp_* function on any connection, and stack_connect(); it must not call
 * stack_input(), stack_timers(), stack_flush() or stack_destroy().
 */
#ifndef TES_DATAPLANE_STACK_H
#define TES_DATAPLANE_STACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/stack/stack_stats.h"

#define STACK_MAX_ADDRS 8      /* local addresses per stack */
#define STACK_MAX_LISTENERS 16 /* listening ports per stack */
#define STACK_OOO_RANGES 8     /* out-of-order ranges kept per connection */

/* An address of either family.  IPv4 occupies a[0..3] and the rest is zero,
 * so a tuple can be hashed and compared as plain bytes. */
enum { STACK_AF_NONE = 0, STACK_AF_INET = 4, STACK_AF_INET6 = 6 };

struct stack_addr {
	uint8_t family;
	uint8_t pad[3]; /* zero */
	uint8_t a[16];
};

/* A connection's identity.  Ports in host byte order. */
struct stack_tuple {
	struct stack_addr laddr, raddr;
	uint16_t lport, rport;
};

void stack_addr_ipv4(struct stack_addr *a, uint32_t host_order);
void stack_addr_ipv6(struct stack_addr *a, const uint8_t bytes[16]);
bool stack_addr_eq(const struct stack_addr *x, const struct stack_addr *y);

struct stack;
struct tcp_conn;
struct stack_listener;

enum tcp_state {
	TCP_CLOSED,
	TCP_LISTEN,
	TCP_SYN_SENT,
	TCP_SYN_RCVD,
	TCP_ESTABLISHED,
	TCP_FIN_WAIT_1,
	TCP_FIN_WAIT_2,
	TCP_CLOSE_WAIT,
	TCP_CLOSING,
	TCP_LAST_ACK,
	TCP_TIME_WAIT,
	TCP_NSTATES
};

const char *tcp_state_name(enum tcp_state s);

/* Why a connection the application owned went away. */
enum tcp_close_reason {
	TCP_CLOSE_NORMAL,  /* both directions closed in order */
	TCP_CLOSE_RESET,   /* the peer reset it */
	TCP_CLOSE_TIMEOUT, /* retransmissions exhausted (or the SYN of a connect) */
	TCP_CLOSE_IDLE,    /* nothing from the peer for idle_timeout */
	TCP_CLOSE_REFUSED, /* a connect() was answered with RST */
};

const char *tcp_close_reason_name(enum tcp_close_reason r);

/* What a frame handed to tx_send needs for NIC offloads.  With checksum
 * offload the IPv4 checksum field is zero and the TCP checksum field holds
 * the pseudo-header sum (IPv4 or IPv6), as NICs (and DPDK's offload flags)
 * expect.  IPv6 has no header checksum: ip_csum_offload is never set for
 * it. */
struct stack_txinfo {
	uint8_t l2_len, l3_len, l4_len;
	uint8_t ip_csum_offload : 1; /* the NIC must fill the IPv4 checksum */
	uint8_t l4_csum_offload : 1; /* the NIC must fill the TCP checksum */
	uint8_t is_tcp : 1;
	uint8_t is_ipv6 : 1; /* l3 is an IPv6 header (RTE_MBUF_F_TX_IPV6) */
};

/* The caller's side of the port. */
struct stack_io {
	/* A buffer to build one frame in, at least *room bytes (the stack asks
	 * for mtu + 14).  *pkt is the caller's handle for it (an mbuf).  NULL
	 * when none is free: the frame is dropped and counted (tx_nobuf);
	 * retransmission recovers. */
	uint8_t *(*tx_alloc)(void *ctx, uint32_t room, void **pkt);
	/* The frame is built: len bytes at the start of the buffer. */
	void (*tx_send)(void *ctx, void *pkt, uint32_t len, const struct stack_txinfo *info);
	/* Optional: choose the local port of an active open so that replies
	 * land on this core.  t has everything but lport; attempt counts from 0.
	 * Return 0 to give up.  NULL: a keyed sequence over 49152..65535. */
	uint16_t (*pick_port)(void *ctx, const struct stack_tuple *t, unsigned attempt);
	/* Optional: a SYN (or SYN-cookie ACK) to a listener from src; true
	 * drops it before any state exists (counted: early_drops). */
	bool (*early_drop)(void *ctx, const struct stack_addr *src);
};

/* The application's side.  lctx is the listener's context, ctx the
 * connection's (tcp_set_ctx, or stack_connect's argument). */
struct stack_app {
	/* A passive connection reached ESTABLISHED.  Return 0 to take it
	 * (call tcp_set_ctx here), non-zero to refuse it (it is reset). */
	int (*accept)(void *lctx, struct stack_listener *l, struct tcp_conn *c);
	/* An active open reached ESTABLISHED. */
	void (*connected)(void *ctx, struct tcp_conn *c);
	/* New in-order data, or the peer's FIN (tcp_eof), arrived.  Edge
	 * triggered: data left unread is not announced again until more
	 * arrives; read it whenever convenient (tcp_peek/tcp_recv). */
	void (*readable)(void *ctx, struct tcp_conn *c);
	/* Send space was freed after a tcp_send() that took less than asked. */
	void (*writable)(void *ctx, struct tcp_conn *c);
	/* The last event of a connection the application owned (not after
	 * tcp_abort()).  c is invalid once this returns. */
	void (*closed)(void *ctx, struct tcp_conn *c, enum tcp_close_reason why);
};

struct stack_ifaddr {
	struct stack_addr addr;
	uint8_t prefix_len; /* on-link prefix, for choosing the next hop */
};

struct stack_config {
	uint8_t mac[6];
	unsigned naddrs;
	struct stack_ifaddr addrs[STACK_MAX_ADDRS];
	struct stack_addr gateway;  /* IPv4 next hop off-link (family NONE: none) */
	struct stack_addr gateway6; /* IPv6 next hop off-link (family NONE: none) */
	/* IP MTU; the MSS offered is mtu - 40 over IPv4, mtu - 60 over IPv6
	 * (at least 1280 for IPv6 addresses: RFC 8200 5). */
	uint16_t mtu;
	/* Duplicate address detection (RFC 4862 5.4): neighbour solicitations
	 * sent for each IPv6 address before it is used, one neigh_retry
	 * apart; the address is usable one neigh_retry after the last.  0:
	 * none, the address is usable at once. */
	unsigned dad_transmits;

	/* Pools and budget. */
	uint32_t max_conns;   /* connection slots (all states) */
	uint32_t max_bufs;    /* buffer pairs, for connections past the handshake (0: max_conns) */
	uint32_t rcvbuf;      /* receive buffer per connection, bytes */
	uint32_t sndbuf;      /* send buffer per connection, bytes */
	uint32_t ooo_max;     /* out-of-order bytes held per connection (0: rcvbuf) */
	uint64_t mem_budget;  /* accounted bytes; 0: everything preallocated */
	uint16_t backlog_max; /* cap on a listener's SYN queue */
	/* Passive half-open (SYN-RCVD) connections in the whole stack; past
	 * it SYNs are answered with cookies.  0: max_conns / 16 (at least 1),
	 * so a flood of spoofed SYNs holds at most 1/16 of the slots. */
	uint32_t syn_rcvd_max;

	/* TCP timing, nanoseconds. */
	uint64_t rto_min, rto_max, rto_initial;
	uint64_t delack;
	uint64_t msl;  /* TIME_WAIT lasts 2 * msl */
	uint64_t idle; /* no segment from the peer for this long: reset */
	uint64_t cookie_period;
	unsigned max_retries; /* data/FIN retransmissions before reset */
	unsigned syn_retries; /* SYN of an active open */
	unsigned synack_retries;
	/* SYN-ACK retransmissions of a half-open connection while SYN-RCVD
	 * holds at least half of syn_rcvd_max (pressure): a spoofed SYN then
	 * draws at most this + 1 SYN-ACKs, and its slot frees sooner. */
	unsigned synack_retries_pressure;
	/* Challenge ACKs (RFC 5961) per connection per second.  Per
	 * connection on purpose: a budget shared by the stack is a counter an
	 * off-path attacker can read (CVE-2016-5696). */
	uint32_t challenge_ack_limit;
	uint8_t rcv_wscale; /* window scale offered; 0xff: derive from rcvbuf */

	/* Neighbour cache. */
	unsigned neigh_size;           /* entries, rounded to a power of two */
	unsigned neigh_incomplete_max; /* unresolved entries at once */
	uint64_t neigh_ttl;
	uint64_t neigh_retry; /* between ARP requests for one address */

	/* Checksums: the NIC computes them on transmit / has verified them on
	 * receive (the port glue drops frames the NIC marks bad). */
	bool tx_csum_offload;
	bool rx_csum_offload;
	/* Answer segments for no connection and no listener with RST. */
	bool rst_unknown;

	/* Secrets, random per process (the caller reads them from the OS):
	 * the connection-table hash key and the ISN/SYN-cookie key. */
	uint8_t hash_key[16];
	uint8_t isn_key[16];

	/* Allocation at create time only.  NULL: calloc/free. */
	void *(*alloc)(void *actx, size_t size);
	void (*free)(void *actx, void *p);
	void *alloc_ctx;
};

/* Defaults: mtu 1500, 1024 connections, 16 KB buffers, RTO 200 ms..60 s
 * (initial 1 s), delayed ACK 40 ms, MSL 30 s, idle 300 s, cookie period
 * 64 s, 15 retries, 5 SYN-ACK retries (2 under pressure), half-open
 * connections up to max_conns / 16, 2 challenge ACKs per connection per
 * second, 64 neighbours.  Addresses, MAC and keys are left zero: the caller
 * fills them. */
void stack_config_defaults(struct stack_config *cfg);

/* NULL when the configuration is invalid or allocation fails, with err
 * (errlen octets; may be NULL) saying why.  io, app and the pointers they
 * hold must outlive the stack. */
struct stack *stack_create(const struct stack_config *cfg, const struct stack_io *io, void *io_ctx,
			   const struct stack_app *app, char *err, size_t errlen);

/* Frees everything.  No callback runs: the application forgets its
 * connections itself. */
void stack_destroy(struct stack *st);

/* One received Ethernet frame.  The stack does not keep the pointer. */
void stack_input(struct stack *st, const uint8_t *frame, uint32_t len, uint64_t now);

/* Fire the timers due at now (retransmission, delayed ACK, persist,
 * TIME_WAIT, idle, neighbour and SYN-cookie secret ageing).  Call it every
 * millisecond or so; it is cheap when nothing is due. */
void stack_timers(struct stack *st, uint64_t now);

/* Send what tcp_send()/tcp_close() queued outside of a callback.  The stack
 * flushes by itself at the end of stack_input() and stack_timers(); the
 * port glue calls this once per poll loop iteration, before its TX burst. */
void stack_flush(struct stack *st, uint64_t now);

/* Listen on port of addr (family NONE: every local address of both
 * families).  backlog
 * bounds the SYN queue (and cfg.syn_rcvd_max the whole stack's); beyond
 * either, and when no slot is free, SYN cookies answer.  NULL when the
 * table of listeners is full or the port is taken. */
struct stack_listener *stack_listen(struct stack *st, const struct stack_addr *addr, uint16_t port,
				    unsigned backlog, void *lctx);
/* New SYNs are answered with RST; half-open ones are reset as they arrive. */
void stack_unlisten(struct stack *st, struct stack_listener *l);

/* Active open from laddr (family NONE: the first local address of raddr's
 * family, usable: an IPv6 address only once DAD has passed) to raddr
 * rport.  The application owns the connection at once; connected or closed
 * follows.  NULL when no port is free, no memory, or no route. */
struct tcp_conn *stack_connect(struct stack *st, const struct stack_addr *laddr,
			       const struct stack_addr *raddr, uint16_t rport, void *ctx,
			       uint64_t now);

/* A static neighbour entry (the caller already knows the MAC), e.g. a
 * configured next hop, of either family.  Nothing received changes it.
 * Entries the stack learns itself come only from replies to its own ARP
 * requests or neighbour solicitations and are pinned as well: see
 * docs/tcp-stack.md, "Hostile network". */
int stack_neigh_add(struct stack *st, const struct stack_addr *addr, const uint8_t mac[6]);

/* The MAC the neighbour cache holds for addr (learned or static): 0, or
 * -1 when it has none (unknown, or its resolution is still pending).
 * Changes nothing. */
int stack_neigh_lookup(struct stack *st, const struct stack_addr *addr, uint8_t mac[6]);

/* The connection with this tuple (TIME_WAIT included), or NULL.  For
 * tests and diagnostics. */
struct tcp_conn *stack_lookup(struct stack *st, const struct stack_tuple *t);

const struct stack_stats *stack_stats(const struct stack *st);

/* Accounted memory in use, the budget, and the total preallocated. */
struct stack_mem {
	uint64_t used, budget, preallocated;
	uint32_t conns_used, bufs_used;
	uint32_t conn_bytes; /* one connection slot */
	uint32_t buf_bytes;  /* one buffer pair */
};
void stack_mem(const struct stack *st, struct stack_mem *m);

/* Internal consistency (pools, table, counts by state, accounting).
 * 0 when sound; otherwise a description.  For tests and the fuzzer. */
const char *stack_check(struct stack *st);

/* --- Connections: the owning thread only, handle valid until closed (or
 * until tcp_abort returns). --- */

void tcp_set_ctx(struct tcp_conn *c, void *ctx);
void *tcp_ctx(const struct tcp_conn *c);
const struct stack_tuple *tcp_tuple(const struct tcp_conn *c);
enum tcp_state tcp_state(const struct tcp_conn *c);

/* Queue up to n bytes; returns how many were taken (the free send space).
 * Less than n: a writable event follows when space frees.  -1 after
 * tcp_close() or when the connection cannot send any more. */
long tcp_send(struct tcp_conn *c, const void *p, size_t n);

/* In-order received data not yet consumed, as at most two spans. */
size_t tcp_peek(struct tcp_conn *c, const uint8_t **p1, size_t *n1, const uint8_t **p2, size_t *n2);
void tcp_consume(struct tcp_conn *c, size_t n);
/* Copy out and consume. */
size_t tcp_recv(struct tcp_conn *c, void *buf, size_t n);
size_t tcp_readable(const struct tcp_conn *c);
/* The peer has closed its side and every byte before its FIN was read. */
bool tcp_eof(const struct tcp_conn *c);

/* Send FIN after the queued data (half close: input is still delivered).
 * The closed event follows when both sides are done. */
void tcp_close(struct tcp_conn *c);
/* Send RST and forget the connection now; no closed event. */
void tcp_abort(struct tcp_conn *c);

/* Whether local address i (cfg.addrs[i]) may be used: IPv4 always; IPv6
 * once duplicate address detection passed (false while tentative, and for
 * good once a duplicate answered). */
bool stack_addr_usable(const struct stack *st, unsigned i);

/* Internal state for tests and diagnostics.  Sequence numbers absolute. */
struct tcp_info {
	enum tcp_state state;
	uint32_t iss, irs, snd_una, snd_nxt, snd_max, rcv_nxt;
	uint32_t snd_wnd, rcv_wnd; /* bytes */
	uint32_t cwnd, ssthresh, flight;
	uint32_t mss;
	uint8_t snd_wscale, rcv_wscale;
	uint64_t srtt, rttvar, rto; /* ns */
	uint32_t sndbuf_used, rcvbuf_used, ooo_bytes;
	unsigned retries, dupacks;
	bool in_recovery;
};
void tcp_get_info(const struct tcp_conn *c, struct tcp_info *info);

#endif
