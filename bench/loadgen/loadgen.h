/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tes-loadgen: an SMTP load generator on the project's userspace TCP/IP
 * stack over one DPDK port (bench/loadgen/main.c has the usage).
 *
 * Threading: everything here runs on the one worker lcore that polls the
 * port (the EAL main lcore), except the stop flag, which a signal handler
 * sets.  Nothing locks.
 */
#ifndef TES_BENCH_LOADGEN_H
#define TES_BENCH_LOADGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <openssl/ssl.h>

#include "dataplane/stack/stack.h"

#define LG_LINE_MAX 1024     /* longest reply line accepted (RFC 5321: 512) */
#define LG_SEQ_DIGITS 12     /* the per-message sequence number in Message-ID */
#define LG_MAX_SESSIONS 4096 /* bounds the stack's buffer memory */
#define LG_ADDR_MAX 256
#define LG_SIZE_MAX (64ull << 20) /* --size: the message is built in memory */

/* ---- the message (msg.c) ---- */

/* One message, built once.  Messages differ only in the LG_SEQ_DIGITS
 * digits of their Message-ID, so the wire form is held as the dot-stuffed
 * text before the digits and after them (the latter ending in CRLF.CRLF). */
struct lg_msg {
	char *plain;      /* the message as the server should store it (seq 0) */
	size_t plain_len; /* == the requested size */
	size_t seq_off;   /* where the digits are in plain */
	char *wire_a, *wire_b;
	size_t wire_a_len, wire_b_len;
};

/* Reads the Received: fields (with their continuation lines) of hdr_file
 * (NULL: none) and builds a message of exactly size bytes.  0, or -1 with
 * a message in err. */
int lg_msg_build(struct lg_msg *m, const char *hdr_file, const char *from, const char *rcpt,
		 size_t size, char *err, size_t errlen);
void lg_msg_free(struct lg_msg *m);
/* The digits of message seq (exactly LG_SEQ_DIGITS, no NUL). */
void lg_msg_seq(char out[LG_SEQ_DIGITS], uint64_t seq);
/* Dot-stuffs in into out (room for 2 * n), at_bol: in starts a line.
 * Returns the length written; *at_bol is updated for a following piece. */
size_t lg_dot_stuff(char *out, const char *in, size_t n, bool *at_bol);

/* ---- latency histogram (msg.c) ---- */

/* Log-linear buckets over microseconds: 32 per power of two, so a reported
 * percentile is within about 3 % of the true value whatever the range. */
#define LG_HIST_SUB_BITS 5
#define LG_HIST_BUCKETS ((64 - LG_HIST_SUB_BITS + 1) << LG_HIST_SUB_BITS)

struct lg_hist {
	uint64_t n, max, sum;
	uint64_t b[LG_HIST_BUCKETS];
};

void lg_hist_add(struct lg_hist *h, uint64_t v);
/* The value at quantile q (0..1): the middle of its bucket.  0 when empty. */
uint64_t lg_hist_quantile(const struct lg_hist *h, double q);

/* ---- the run (main.c) and the sessions (session.c) ---- */

enum lg_err {
	LG_E_TIMEOUT,  /* no reply (or no progress) within --timeout */
	LG_E_RESET,    /* the server reset the connection */
	LG_E_REFUSED,  /* a connect was answered with RST */
	LG_E_CONNTO,   /* a connect timed out */
	LG_E_CLOSED,   /* the server closed the connection mid-session */
	LG_E_PROTOCOL, /* a reply that is not SMTP, or too long */
	LG_E_TLS,      /* the TLS handshake or record layer failed */
	LG_E_NOSTARTTLS,
	LG_E_NOCONN, /* stack_connect failed (no port, no memory, no route) */
	LG_E_NKINDS
};

struct lg_opts {
	unsigned sessions;
	unsigned mpc; /* messages per connection */
	size_t size;
	uint64_t count;  /* 0: --duration decides */
	double duration; /* seconds; 0: --count decides */
	double rate;     /* transactions/s; 0: closed loop */
	double timeout;  /* seconds */
	bool starttls;
	bool tls_resume; /* resume with the server's latest session ticket */
	bool json;
	bool quiet;
	bool trace;     /* the dialogue of session 0 on stderr */
	int server_pid; /* a local server whose CPU time is reported (0: none) */
	uint32_t server;
	uint16_t server_port;
	uint32_t addr;
	uint8_t plen; /* of addr, or of addr6 */
	/* IPv6 (addr6.c): --server [X::Y]:PORT and --addr X::Y/LEN */
	bool v6;
	uint8_t server6[16], addr6[16];
	uint32_t gateway;
	const char *mail_from, *rcpt, *helo, *header_file;
	bool allow[600]; /* reply codes that do not count as failures */
	/* flood mode: spoofed SYNs per second (0: none) from flood_src/plen */
	double flood_rate;
	uint32_t flood_src;
	uint8_t flood_plen;
};

struct lg_sess;

struct lg_stats {
	uint64_t txn_started, txn_ok, txn_failed, txn_allowed;
	uint64_t conn_opened, conn_failed, conn_dropped, conn_closed;
	uint64_t tls_handshakes;
	uint64_t tls_resumed; /* of tls_handshakes, those that resumed a session */
	uint64_t tls_tickets; /* session tickets received (--tls-resume) */
	uint64_t msg_bytes;   /* message bytes (unstuffed) accepted with 250 */
	uint64_t codes[600];
	uint64_t errs[LG_E_NKINDS];
	uint64_t rate_missed; /* open loop: starts that found no idle session */
	struct lg_hist lat;
};

#define LG_TICKETS 1024

struct lg {
	struct lg_opts o;
	struct lg_msg msg;
	struct stack *st;
	SSL_CTX *ssl_ctx;
	/* --tls-resume: tickets the server gave, not used yet, newest last.
	 * A TLS 1.3 ticket is used once, so each connection takes one. */
	SSL_SESSION *tickets[LG_TICKETS];
	unsigned nticket;
	struct lg_sess *sess;
	uint64_t now;
	uint64_t t_start; /* ns, the first poll */
	bool stopping;    /* no new transactions */
	bool fatal;       /* give up the run: fatal_why says why */
	const char *fatal_why;
	unsigned live;    /* sessions with a connection */
	bool all_started; /* the first connection is up: the rest were connected */
	/* open loop */
	double credit;
	uint64_t t_credit;
	unsigned *wait_q; /* sessions waiting for a start, a ring */
	unsigned wq_head, wq_n;
	uint64_t next_scan;
	struct lg_stats s;
};

extern const struct stack_app lg_app;

/* ---- flood mode (flood.c) ---- */

struct dp_worker;

struct lg_flood {
	double rate;       /* SYNs per second */
	uint32_t src_base; /* the source range, host order */
	uint32_t src_n;    /* its size, a power of two (0: 2^32) */
	uint32_t dst;      /* the server */
	uint16_t dport;
	uint8_t dmac[6], smac[6];
	bool started;    /* the server's MAC is known */
	uint64_t t0;     /* ns, when it started */
	uint64_t sent;   /* SYNs handed to the port */
	uint64_t nobuf;  /* not sent: no mbuf */
	uint64_t behind; /* not sent: the poll came too late to catch up */
	uint64_t rng;
};

void lg_flood_init(struct lg_flood *f, const struct lg_opts *o, uint64_t seed);
/* Once per poll loop iteration, on the worker lcore: sends the SYNs due
 * by now (the first ones when the stack has resolved the server). */
void lg_flood_poll(struct lg_flood *f, struct stack *st, struct dp_worker *w, uint64_t now);
/* Distinct source addresses used so far. */
uint64_t lg_flood_sources(const struct lg_flood *f);

int lg_sessions_init(struct lg *lg);
void lg_sessions_free(struct lg *lg);
/* Connects every session (at start). */
void lg_sessions_start(struct lg *lg);
/* Timers: reconnects due, per-session timeouts, open-loop starts. */
void lg_sessions_poll(struct lg *lg);
/* SSL_CTX_sess_set_new_cb for --tls-resume (the SSL's app data is the lg). */
int lg_tls_new_session(SSL *ssl, SSL_SESSION *sess);
/* Aborts every live connection (end of run, after the grace period). */
void lg_sessions_abort_all(struct lg *lg);
/* True when no transaction can start any more and no session is live. */
bool lg_done(const struct lg *lg);
const char *lg_err_name(enum lg_err e);

/* addr6.c: the IPv6 forms of --server ([X::Y]:PORT, X::Y) and --addr
 * (X::Y/LEN), 0 or -1; and the stack addresses of either family. */
int lg_parse_server6(const char *s, uint8_t a[16], uint16_t *port);
int lg_parse_prefix6(const char *s, uint8_t a[16], uint8_t *plen);
bool lg_same_prefix6(const uint8_t *x, const uint8_t *y, unsigned plen);
void lg_server_addr(const struct lg_opts *o, struct stack_addr *out);
void lg_local_addr(const struct lg_opts *o, struct stack_ifaddr *out);
const char *lg_server_str(const struct lg_opts *o, char *buf, size_t n);

#endif
