/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * smtpc: the SMTP client the relay backend speaks to the backend MTA with.
 * Sans-I/O, like the server engine: reply bytes go in through smtpc_feed(),
 * command and content bytes come out of smtpc_output(), and the caller owns
 * the socket, the clock and the message content.  The same code runs in the
 * relay threads, in the start-up probe and in tests/unit/test_smtpc.c.
 *
 * One struct smtpc is one connection: greeting, EHLO (HELO when EHLO gets a
 * 5xx), then any number of transactions, then QUIT.
 *
 * A transaction is all or nothing.  The client already got 250 for every
 * RCPT, so a message the backend takes for only some recipients would be
 * retried by the client for all of them (duplicates) or bounced for all of
 * them.  So the commit (BDAT LAST, or the content after DATA's 354) is only
 * sent once every RCPT got 2xx; otherwise the transaction is abandoned (RSET,
 * or closing the connection when DATA already got its 354) and the outcome
 * is a failure.
 *
 * With PIPELINING: MAIL, every RCPT and either DATA or the content as
 * non-final BDAT chunks go out in one write; "BDAT 0 LAST" follows once the
 * envelope replies are in.  Without it: one command at a time, and the
 * content as a single "BDAT <size> LAST" (or DATA).  DATA content is
 * dot-stuffed here, and a message that does not end in CRLF (possible with
 * BDAT from the client) gets one, since DATA cannot carry it otherwise.
 *
 * After a failed transaction the client sends RSET and waits for its reply
 * before the connection is READY again, so a reused connection always starts
 * clean.  After a successful one no RSET is needed (RFC 5321 4.1.1.4: the end
 * of data clears the transaction).
 *
 * Memory: fixed, inside the struct (output buffer, one reply line).  Replies
 * are parsed line by line with lines cut at SMTPC_LINE_MAX, so a hostile
 * backend cannot make it grow.  Commands are generated only as output space
 * frees up, so a message with many recipients never needs more.
 *
 * Threading: none; a struct smtpc is used by one thread at a time.
 */
#ifndef TES_GATEWAY_DELIVERY_SMTPC_H
#define TES_GATEWAY_DELIVERY_SMTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/session/smtp.h"

#define SMTPC_LINE_MAX 1024     /* reply line kept, without CRLF; longer ones are cut */
#define SMTPC_TEXT_MAX 256      /* text of a reply kept for the outcome */
#define SMTPC_OUT_BUF 65536     /* commands and content waiting for the socket */
#define SMTPC_CHUNK_MAX 1048576 /* non-final BDAT chunk when pipelining */

enum smtpc_ext {
	SMTPC_EXT_PIPELINING = 1 << 0,
	SMTPC_EXT_CHUNKING = 1 << 1,
	SMTPC_EXT_SIZE = 1 << 2,
	SMTPC_EXT_8BITMIME = 1 << 3,
	SMTPC_EXT_SMTPUTF8 = 1 << 4,
	SMTPC_EXT_STARTTLS = 1 << 5,
	SMTPC_EXT_ENHANCEDSTATUSCODES = 1 << 6,
};

enum smtpc_state {
	SMTPC_GREETING, /* waiting for the 220 */
	SMTPC_EHLO,     /* EHLO or HELO sent */
	SMTPC_READY,    /* idle: smtpc_begin() or smtpc_quit() */
	SMTPC_BUSY,     /* a transaction, or the RSET after one */
	SMTPC_QUITTING, /* QUIT sent */
	SMTPC_CLOSED,   /* finished or broken: close the socket */
};

/* Why a transaction (or the connection) ended the way it did. */
enum smtpc_cause {
	SMTPC_CAUSE_OK,
	SMTPC_CAUSE_REPLY,    /* the backend refused: see reply */
	SMTPC_CAUSE_CONNECT,  /* no usable connection: connect, greeting or EHLO failed */
	SMTPC_CAUSE_TIMEOUT,  /* the backend did not answer in time */
	SMTPC_CAUSE_LOST,     /* the connection closed or broke, or the backend said 421 */
	SMTPC_CAUSE_PROTOCOL, /* the backend's reply made no sense */
	SMTPC_CAUSE_LOCAL,    /* not attempted: the backend cannot take this message */
	SMTPC_CAUSE_ERROR,    /* a local error (reading the content) */
};

struct smtpc_reply {
	int code;                  /* 0: none */
	char enh[16];              /* enhanced status code, when the reply had one */
	char text[SMTPC_TEXT_MAX]; /* the first line, after the code (and enh) */
};

struct smtpc_outcome {
	int status; /* 2, 4 or 5: the class of the result */
	enum smtpc_cause cause;
	const char *stage;        /* "MAIL", "RCPT", "DATA", "BDAT", "end of data", ... */
	struct smtpc_reply reply; /* the reply that decided, or code 0 */
	unsigned rcpt_failed;     /* of rcpt_answered */
	unsigned rcpt_answered;   /* RCPT replies read (one at a time: up to the first refusal) */
	unsigned nrcpt;
	/* Failed on the connection itself before the backend answered anything
	 * in this transaction: on a connection the backend may have closed
	 * while it was idle, trying once more on a new one is safe. */
	bool retryable;
};

/* What the caller hands smtpc_begin().  The strings must stay valid until
 * the transaction's outcome has been taken. */
struct smtpc_txn {
	const char *mail_from;   /* without <>; "" for the null path */
	const char *const *rcpt; /* without <> */
	unsigned nrcpt;          /* at least 1 */
	uint64_t size;           /* octets of content */
	bool body8;              /* the client said BODY=8BITMIME */
	bool smtputf8;           /* the client said SMTPUTF8 */
};

/* What a connection is waiting for: the caller picks its timeout by it. */
enum smtpc_wait {
	SMTPC_WAIT_NONE,    /* idle, or closed */
	SMTPC_WAIT_REPLY,   /* a reply to a command (or the greeting) */
	SMTPC_WAIT_CONTENT, /* content is being sent, or its final reply awaited */
};

struct smtpc {
	enum smtpc_state st;
	char helo[256];
	unsigned ext, ehlo_ext;
	uint64_t size_max, ehlo_size_max;
	bool tried_helo;

	/* the reply being read */
	char line[SMTPC_LINE_MAX + 1];
	size_t line_len;
	unsigned reply_lines;
	struct smtpc_reply cur;

	size_t out_off, out_len;

	/* the connection's failure, when st became CLOSED unasked */
	struct smtpc_outcome fail;

	/* transaction */
	struct smtpc_txn t;
	bool pipelining, chunking;
	uint64_t nsent, nreplied; /* command positions: MAIL = 0, RCPT i = 1 + i, ... */
	unsigned rcpt_emitted;
	bool mail_emitted;
	bool env_failed; /* MAIL or a RCPT was refused */
	bool any_4xx;
	struct smtpc_reply first_fail;
	const char *first_fail_stage;
	unsigned rcpt_failed, rcpt_answered;
	bool data_emitted, data_go, dot_emitted;
	uint64_t nchunks, chunk_left;
	bool last_emitted;
	uint64_t content_off;
	bool bol;
	uint8_t tail[2];
	bool failed; /* the outcome is a failure: emit nothing new but RSET */
	bool rset_emitted;
	uint64_t rset_pos;
	bool have_outcome, outcome_taken;
	unsigned txn_replies;
	struct smtpc_outcome oc;

	uint8_t out[SMTPC_OUT_BUF]; /* last: smtpc_init clears all before it */
};

/* Start a connection: the caller connects, then feeds what the server says. */
void smtpc_init(struct smtpc *c, const char *helo_name);

/* Reply bytes from the server; everything is consumed. */
void smtpc_feed(struct smtpc *c, const uint8_t *p, size_t n);

/* Bytes to send, and how many the socket took. */
const uint8_t *smtpc_output(const struct smtpc *c, size_t *len);
void smtpc_consume(struct smtpc *c, size_t n);

enum smtpc_state smtpc_state(const struct smtpc *c);
enum smtpc_wait smtpc_waiting(const struct smtpc *c);

/* Extensions the server's EHLO offered, and its SIZE (0: none given). */
unsigned smtpc_extensions(const struct smtpc *c, uint64_t *size_max);

/* Start a transaction; READY only.  false when the backend cannot take
 * this message at all (larger than its SIZE, SMTPUTF8 not offered, an
 * address it cannot be sent): the outcome is then ready at once and the
 * connection stays READY. */
bool smtpc_begin(struct smtpc *c, const struct smtpc_txn *t);

/* How much content the client can take now, and from which offset (the
 * caller reads its copy from there).  0: none now. */
size_t smtpc_content_want(const struct smtpc *c, uint64_t *offset);
/* Content from the offset smtpc_content_want() gave; returns how much was
 * taken (less than n when the output buffer is full). */
size_t smtpc_content(struct smtpc *c, const uint8_t *p, size_t n);

/* The transaction's outcome, once, as soon as it is known (the connection
 * may still be BUSY cleaning up with RSET).  false: not known yet. */
bool smtpc_outcome(struct smtpc *c, struct smtpc_outcome *out);

/* The connection broke (cause LOST, TIMEOUT or ERROR): an open transaction
 * fails with that cause; the state becomes CLOSED. */
void smtpc_broken(struct smtpc *c, enum smtpc_cause cause);

/* Why the connection is CLOSED when it was not asked to be. */
const struct smtpc_outcome *smtpc_failure(const struct smtpc *c);

/* Say goodbye; READY only.  CLOSED once the 221 (or EOF) arrives. */
void smtpc_quit(struct smtpc *c);

/* The reply the gateway gives its own client for an outcome:
 * 250 for success; 451 for a backend 4xx, a timeout, a lost or failed
 * connection; 554 for a backend 5xx.  The backend's enhanced code is kept
 * when it has the right class; its text is quoted when it is printable
 * ASCII. */
void smtpc_client_reply(const struct smtpc_outcome *o, struct smtp_reply *r);

#endif
