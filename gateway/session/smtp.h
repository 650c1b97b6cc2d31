/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The SMTP server engine: sans-I/O.
 *
 * Bytes from the client go in through smtp_feed(); reply bytes come out of
 * smtp_output(); decisions the engine cannot make itself (enforcement at
 * MAIL FROM and at end of headers, delivery of a finished message) go out
 * through the hooks.  The engine owns no socket, no timer and no clock, so
 * the same code runs over kernel sockets, over the userspace TCP stack, in
 * unit tests and in fuzzers.
 *
 * Threading: a session is used by one thread at a time (the worker that owns
 * the connection).  Hooks run synchronously on that thread, inside
 * smtp_feed(); they must not call back into the same session except through
 * the reply they fill in.  Sessions share nothing but their read-only
 * struct smtp_config, which must outlive them.
 *
 * Memory: a session is one fixed allocation plus, during a transaction, the
 * envelope (bounded by max_recipients) and the header buffer (bounded by
 * max_header_bytes).  Input is never buffered beyond one command line: when
 * the engine cannot go on (output full, waiting for a verdict), smtp_feed()
 * returns and leaves the rest of the input to the caller, which stops reading
 * from the network until then.  That is the back-pressure.
 */
#ifndef TES_GATEWAY_SESSION_SMTP_H
#define TES_GATEWAY_SESSION_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 5321 4.5.3.1: limits that are not configuration. */
#define SMTP_CMD_LINE_MAX 512   /* command line, including CRLF */
#define SMTP_TEXT_LINE_MAX 1000 /* text line, including CRLF */
#define SMTP_PATH_MAX 256       /* reverse- or forward-path, with <> */
#define SMTP_REPLY_TEXT_MAX 400 /* text of a reply a hook may give */
#define SMTP_OUT_BUF 4096       /* reply bytes held before the caller drains */

struct smtp_limits {
	uint64_t max_message_size; /* SIZE, octets of content */
	unsigned max_recipients;   /* per message: 452 4.5.3 beyond it */
	unsigned max_messages;     /* transactions per connection (however they end): 421 beyond */
	unsigned max_errors;       /* protocol errors before 421 and close */
	uint32_t max_header_bytes; /* header section kept for on_headers */
};

struct smtp_config {
	const char *hostname; /* greeting and EHLO host name */
	const char *banner;   /* text after the host name in the greeting */
	struct smtp_limits limits;
	bool starttls; /* TLS layer present: advertise STARTTLS */
	bool smtputf8; /* delivery side takes SMTPUTF8: advertise it */
};

/* Defaults an operator gets when the configuration is silent. */
void smtp_config_defaults(struct smtp_config *cfg);

/* The engine's settings (docs/configuration.md); config.c parses the
 * configuration into them. */
struct smtp_settings {
	char banner[256]; /* text after the host name in the greeting */
	struct smtp_limits limits;
};

/* The engine's view of s, with hostname for the greeting and EHLO; its
 * strings point into s and hostname, which must outlive it.  starttls and
 * smtputf8 stay off: the caller knows whether TLS and the backend allow
 * them. */
void smtp_config_set(struct smtp_config *cfg, const char *hostname, const struct smtp_settings *s);

/* A reply a hook or the delivery side gives.  code 0 means "no opinion". */
struct smtp_reply {
	int code;                       /* 250, 450, 550, ... */
	char enh[16];                   /* "4.7.230"; empty: engine picks one */
	char text[SMTP_REPLY_TEXT_MAX]; /* one line, no CR or LF */
};

void smtp_reply_set(struct smtp_reply *r, int code, const char *enh, const char *text);

enum smtp_body { SMTP_BODY_7BIT, SMTP_BODY_8BITMIME };

/* The envelope of the transaction in progress.  Valid from on_mail until the
 * transaction ends (reply to end of data, RSET, HELO/EHLO, STARTTLS, close). */
struct smtp_envelope {
	char helo[256];                    /* HELO/EHLO argument */
	bool esmtp;                        /* EHLO (true) or HELO */
	bool tls;                          /* this transaction ran inside TLS */
	char mail_from[SMTP_PATH_MAX + 1]; /* without <>; empty for the null path */
	enum smtp_body body;
	bool smtputf8;
	uint64_t size_param; /* SIZE= from MAIL, 0 if absent */
	unsigned nrcpt;
	char **rcpt;            /* nrcpt paths without <> */
	uint64_t content_bytes; /* octets of content so far (after unstuffing) */
	bool bdat;              /* content came by BDAT, not DATA */
};

/*
 * Hooks: every one may be NULL.  A hook that fills r->code >= 400 refuses
 * what it was asked about with that reply.  They are called on the worker's
 * thread and must not block (an RCU read-side lookup is fine).
 */
struct smtp_hooks {
	/* MAIL FROM parsed and valid.  Enforcement for sources already known. */
	void (*on_mail)(void *ctx, const struct smtp_envelope *env, struct smtp_reply *r);
	/* RCPT TO parsed and valid, before it joins the envelope. */
	void (*on_rcpt)(void *ctx, const struct smtp_envelope *env, const char *rcpt,
			struct smtp_reply *r);
	/* The header section is complete (or max_header_bytes is reached, then
	 * truncated is true).  A refusal here is answered at end of data: the
	 * body is read and discarded, so the client gets its reply in order. */
	void (*on_headers)(void *ctx, const struct smtp_envelope *env, const char *hdr, size_t len,
			   bool truncated, struct smtp_reply *r);
	/* Content octets, in order, dot-unstuffed, CRLF line ends.  Returning
	 * non-zero means the delivery side cannot take them: the message is
	 * answered with 451 4.3.0 at its end. */
	int (*on_data)(void *ctx, const uint8_t *p, size_t n);
	/* The message is complete and nothing refused it.  Fill r now, or leave
	 * r->code 0 and return SMTP_PENDING: smtp_feed() returns SMTP_WAIT until
	 * smtp_message_done() gives the verdict. */
	int (*on_message)(void *ctx, const struct smtp_envelope *env, struct smtp_reply *r);
	/* The transaction ended without a message being handed over (RSET, an
	 * error, the client gone): discard what on_data stored. */
	void (*on_abort)(void *ctx);
};

#define SMTP_PENDING 1

enum smtp_status {
	SMTP_OK,       /* all input consumed */
	SMTP_BLOCKED,  /* output full: drain smtp_output(), call again with the rest */
	SMTP_WAIT,     /* waiting for smtp_message_done() */
	SMTP_STARTTLS, /* start TLS now: the rest of the plaintext input is gone */
	SMTP_CLOSE,    /* send what smtp_output() holds, then close */
};

struct smtp_session;

/* Counters a session keeps; the I/O layer sums them per worker. */
struct smtp_stats {
	uint64_t commands;
	uint64_t replies[6]; /* by class: [2] = 2xx, [4] = 4xx, [5] = 5xx */
	uint64_t messages;   /* handed to on_message */
	uint64_t bytes_in;
};

/* peer is the client address as text ("198.18.0.1"), shown in the EHLO reply; it is
 * copied.  Returns NULL when out of memory. */
struct smtp_session *smtp_session_new(const struct smtp_config *cfg, const struct smtp_hooks *hooks,
				      void *ctx, const char *peer);
void smtp_session_free(struct smtp_session *s);

/* Queue the 220 greeting. */
void smtp_start(struct smtp_session *s);

/* Consume client bytes.  *used says how many were taken; the caller keeps
 * the rest and offers it again after acting on the status. */
enum smtp_status smtp_feed(struct smtp_session *s, const uint8_t *in, size_t len, size_t *used);

/* Reply bytes waiting to be sent, and how many the transport took. */
const uint8_t *smtp_output(const struct smtp_session *s, size_t *len);
void smtp_output_consume(struct smtp_session *s, size_t n);

/* The delivery verdict for the message on_message left pending. */
void smtp_message_done(struct smtp_session *s, const struct smtp_reply *r);

/* TLS is up: the session starts over (RFC 3207 4.2), the client must EHLO. */
void smtp_tls_started(struct smtp_session *s);

/* The gateway is going down: 421 now if the client is between commands,
 * otherwise after the reply to the message in flight.  Returns true when
 * the session can be closed once its output is sent. */
bool smtp_shutdown(struct smtp_session *s);

/* The transport is gone (client closed, timeout): abort what is open. */
void smtp_abort(struct smtp_session *s);

const struct smtp_stats *smtp_stats(const struct smtp_session *s);
bool smtp_closing(const struct smtp_session *s);

#endif
