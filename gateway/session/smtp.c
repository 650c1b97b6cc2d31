/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The SMTP server engine (RFC 5321 with PIPELINING, SIZE, 8BITMIME,
 * ENHANCEDSTATUSCODES, STARTTLS, CHUNKING and SMTPUTF8).  See smtp.h for the
 * contract and docs/smtp-dialect.md for the dialect, including why a bare CR
 * or LF in message content gets the message refused.
 */
#include "gateway/session/smtp.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/text.h"

/* The largest reply a single command can produce (the EHLO list).  The
 * engine only starts a command when this much output space is free, so a
 * reply is never cut and output never grows past SMTP_OUT_BUF. */
#define REPLY_RESERVE 1024

/* Content octets staged before on_data is called, so the hook sees chunks,
 * not single bytes. */
#define STAGE_BUF 2048

enum phase {
	PH_CMD,    /* reading command lines */
	PH_DATA,   /* reading DATA content up to <CRLF>.<CRLF> */
	PH_BDAT,   /* reading a BDAT chunk of known length */
	PH_WAIT,   /* message handed over; waiting for smtp_message_done */
	PH_TLS,    /* STARTTLS accepted; waiting for smtp_tls_started */
	PH_CLOSED, /* QUIT, 421: nothing more is read */
};

/* Where the content scanner stands within a line.  A line ends only at CR LF:
 * a lone LF or CR is content (and marks the message as malformed), so no
 * sequence built from them can end DATA early (SMTP smuggling). */
enum dstate {
	D_BOL,    /* at the beginning of a line */
	D_TEXT,   /* inside a line */
	D_CR,     /* saw CR inside a line (or a line that began with CR) */
	D_DOT,    /* DATA only: '.' at the beginning of a line */
	D_DOT_CR, /* DATA only: ".\r" at the beginning of a line */
};

struct smtp_session {
	const struct smtp_config *cfg;
	const struct smtp_hooks *hooks;
	void *ctx;
	char peer[64];

	enum phase phase;
	bool helo_done;
	bool tls_active;
	bool shutdown_pending;
	unsigned errors;
	unsigned transactions;

	/* command line being assembled */
	size_t line_len;
	bool line_overflow;

	/* transaction */
	bool in_mail;
	struct smtp_envelope env;
	unsigned rcpt_cap;

	/* content */
	enum dstate dstate;
	uint32_t line_octets;
	bool bare_eol;
	bool long_line;
	bool too_big;
	bool sink_failed;
	bool refused;              /* a hook refused: body is discarded */
	struct smtp_reply verdict; /* the refusal, given at end of data */
	uint64_t bdat_left;
	uint64_t bdat_size;
	bool bdat_last;
	bool bdat_discard; /* invalid BDAT: read the chunk, then refuse */
	struct smtp_reply bdat_error;

	/* header section, kept for on_headers */
	bool hdr_done;
	uint32_t hdr_len;
	uint32_t hdr_cap; /* hdr grows as the section does, to max_header_bytes + 1 */
	char *hdr;

	size_t stage_len;
	size_t out_off, out_len;

	struct smtp_stats stats;

	/* Buffers, last: read only up to their lengths, so a new session
	 * zeroes what comes before them and not these 6.5 KiB. */
	char line[SMTP_CMD_LINE_MAX];
	uint8_t stage[STAGE_BUF];
	uint8_t out[SMTP_OUT_BUF];
};

/* Every phase change goes through here.  From each phase, the phases it
 * may go to (a bit each): reading commands may lead anywhere; content goes
 * back to commands or waits for its verdict; a verdict, STARTTLS and a BDAT
 * chunk end in commands; anything may close, and closed is final. */
#define PH_BIT(p) (1u << (p))
static const unsigned ph_next[] = {
	[PH_CMD] = PH_BIT(PH_CMD) | PH_BIT(PH_DATA) | PH_BIT(PH_BDAT) | PH_BIT(PH_WAIT) |
		   PH_BIT(PH_TLS) | PH_BIT(PH_CLOSED),
	[PH_DATA] = PH_BIT(PH_CMD) | PH_BIT(PH_WAIT) | PH_BIT(PH_CLOSED),
	[PH_BDAT] = PH_BIT(PH_CMD) | PH_BIT(PH_CLOSED),
	[PH_WAIT] = PH_BIT(PH_CMD) | PH_BIT(PH_CLOSED),
	[PH_TLS] = PH_BIT(PH_CMD) | PH_BIT(PH_CLOSED),
	[PH_CLOSED] = PH_BIT(PH_CLOSED),
};

static void enter(struct smtp_session *s, enum phase ph)
{
	assert(ph_next[s->phase] & PH_BIT(ph));
	s->phase = ph;
}

void smtp_config_defaults(struct smtp_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->hostname = "localhost";
	cfg->banner = "ESMTP tesgate";
	/* 35 MiB: what Exchange Online takes by default, so the gateway never
	 * refuses a message its customers' servers expect to send. */
	cfg->limits.max_message_size = 36700160;
	cfg->limits.max_recipients = 100;
	cfg->limits.max_messages = 100;
	cfg->limits.max_errors = 10;
	cfg->limits.max_header_bytes = 65536;
}

void smtp_config_set(struct smtp_config *cfg, const char *hostname, const struct smtp_settings *s)
{
	smtp_config_defaults(cfg);
	cfg->hostname = hostname;
	cfg->banner = s->banner;
	cfg->limits = s->limits;
}

void smtp_reply_set(struct smtp_reply *r, int code, const char *enh, const char *text)
{
	r->code = code;
	tes_str_copy(r->enh, sizeof(r->enh), enh ? enh : "");
	tes_str_copy(r->text, sizeof(r->text), text ? text : "");
}

/* ---- output ---------------------------------------------------------- */

static size_t out_free(const struct smtp_session *s)
{
	return sizeof(s->out) - s->out_len;
}

/* Move what is waiting to the front of the buffer: room at the end. */
static void out_compact(struct smtp_session *s)
{
	if (s->out_off > 0) {
		memmove(s->out, s->out + s->out_off, s->out_len - s->out_off);
		s->out_len -= s->out_off;
		s->out_off = 0;
	}
}

static void out_raw(struct smtp_session *s, const char *p, size_t n)
{
	out_compact(s);
	/* REPLY_RESERVE makes this unreachable; cutting beats overflowing. */
	if (n > out_free(s))
		n = out_free(s);
	memcpy(s->out + s->out_len, p, n);
	s->out_len += n;
}

#define REPLY_LINE_MAX (SMTP_REPLY_TEXT_MAX + 64)

/* One reply line.  more: a continuation line ("250-") follows.  text is
 * cut to SMTP_REPLY_TEXT_MAX - 1 octets. */
static void reply_line(struct smtp_session *s, int code, bool more, const char *enh,
		       const char *text)
{
	char tmp[REPLY_LINE_MAX];
	/* "ddd" "-" or " ", "enh " if any, the text, CRLF; a line too long is
	 * cut with its CRLF kept.  Built by hand in the output buffer when it
	 * has room for the longest line (it has, but for a client that does not
	 * read): one per reply, and printf and copies showed in profiles.
	 * Codes are three digits (the engine's own, or a hook's checked by
	 * reply_from). */
	const size_t room = REPLY_LINE_MAX - 3; /* octets before the CRLF */
	out_compact(s);
	bool direct = out_free(s) >= REPLY_LINE_MAX;
	char *buf = direct ? (char *)s->out + s->out_len : tmp;
	size_t n = 0;
	unsigned c = code < 0 ? 0 : code > 999 ? 999 : (unsigned)code;
	buf[n++] = (char)('0' + c / 100);
	buf[n++] = (char)('0' + c / 10 % 10);
	buf[n++] = (char)('0' + c % 10);
	buf[n++] = more ? '-' : ' ';
	if (enh && enh[0]) {
		size_t l = strlen(enh);
		if (l > room - n)
			l = room - n;
		memcpy(buf + n, enh, l);
		n += l;
		if (n < room)
			buf[n++] = ' ';
	}
	size_t l = strnlen(text, SMTP_REPLY_TEXT_MAX - 1);
	if (l > room - n)
		l = room - n;
	memcpy(buf + n, text, l);
	n += l;
	buf[n++] = '\r';
	buf[n++] = '\n';
	if (direct)
		s->out_len += n;
	else
		out_raw(s, tmp, n);
}

static bool is_protocol_error(int code)
{
	return code == 500 || code == 501 || code == 502 || code == 503 || code == 504 ||
	       code == 555;
}

static void close_with(struct smtp_session *s, const char *enh, const char *text)
{
	reply_line(s, 421, false, enh, text);
	s->stats.replies[4]++;
	enter(s, PH_CLOSED);
}

static void reply(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void reply(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
{
	char text[SMTP_REPLY_TEXT_MAX];
	const char *t = text;
	va_list ap;

	va_start(ap, fmt);
	if (!strchr(fmt, '%')) /* most replies: constant text */
		t = fmt;
	else if (strcmp(fmt, "%s") == 0)
		t = va_arg(ap, const char *);
	else
		vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	reply_line(s, code, false, enh, t);
	if (code >= 200 && code < 600)
		s->stats.replies[code / 100]++;
	if (is_protocol_error(code) && ++s->errors >= s->cfg->limits.max_errors)
		close_with(s, "4.7.0", "Too many errors in this session, closing connection");
}

/* A reply a hook or the delivery side gave.  Text is sanitised: it came from
 * code, but possibly from a backend MTA's words. */
static void reply_from(struct smtp_session *s, const struct smtp_reply *r)
{
	char text[SMTP_REPLY_TEXT_MAX];
	const char *enh = r->enh;
	int code = r->code;
	size_t i;

	if (code < 200 || code > 599)
		code = 451;
	for (i = 0; i < sizeof(text) - 1 && r->text[i]; i++) {
		unsigned char c = (unsigned char)r->text[i];
		text[i] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
	}
	text[i] = '\0';
	if (!enh[0])
		enh = code < 300 ? "2.0.0" : code < 500 ? "4.0.0" : "5.0.0";
	if (!text[0])
		tes_str_copy(text, sizeof(text), code < 300 ? "OK" : "Refused");
	reply(s, code, enh, "%s", text);
}

const uint8_t *smtp_output(const struct smtp_session *s, size_t *len)
{
	*len = s->out_len - s->out_off;
	return s->out + s->out_off;
}

void smtp_output_consume(struct smtp_session *s, size_t n)
{
	size_t have = s->out_len - s->out_off;

	s->out_off += n < have ? n : have;
	if (s->out_off == s->out_len)
		s->out_off = s->out_len = 0;
}

/* ---- session and transaction ----------------------------------------- */

struct smtp_session *smtp_session_new(const struct smtp_config *cfg, const struct smtp_hooks *hooks,
				      void *ctx, const char *peer)
{
	static const struct smtp_hooks no_hooks;
	struct smtp_session *s = malloc(sizeof(*s));

	if (!s)
		return NULL;
	memset(s, 0, offsetof(struct smtp_session, line));
	s->cfg = cfg;
	s->hooks = hooks ? hooks : &no_hooks;
	s->ctx = ctx;
	tes_str_copy(s->peer, sizeof(s->peer), peer ? peer : "unknown");
	enter(s, PH_CMD);
	return s;
}

/* The header buffer stays with the session for its next transaction when
 * it is small (most are, and so a session of many messages allocates it
 * once); a big one goes, so idle sessions do not hold max_header_bytes. */
#define HDR_START 2048
#define HDR_KEEP 16384

static void hdr_release(struct smtp_session *s)
{
	if (s->hdr_cap > HDR_KEEP) {
		free(s->hdr);
		s->hdr = NULL;
		s->hdr_cap = 0;
	}
}

/* Room for n more octets and the terminating NUL; n keeps hdr_len within
 * max_header_bytes (the callers see to it).  false: out of memory. */
static bool hdr_reserve(struct smtp_session *s, size_t n)
{
	size_t need = (size_t)s->hdr_len + n + 1;
	if (need <= s->hdr_cap)
		return true;
	size_t max = (size_t)s->cfg->limits.max_header_bytes + 1;
	size_t cap = s->hdr_cap ? s->hdr_cap : HDR_START;
	while (cap < need)
		cap *= 2;
	if (cap > max)
		cap = max;
	char *p = realloc(s->hdr, cap);
	if (!p)
		return false;
	s->hdr = p;
	s->hdr_cap = (uint32_t)cap;
	return true;
}

static void free_envelope(struct smtp_session *s)
{
	for (unsigned i = 0; i < s->env.nrcpt; i++)
		free(s->env.rcpt[i]);
	free(s->env.rcpt);
	s->env.rcpt = NULL;
	s->env.nrcpt = 0;
	s->rcpt_cap = 0;
}

/* Forget the transaction.  aborted: content may have reached on_data and the
 * delivery side must drop it. */
static void reset_transaction(struct smtp_session *s, bool aborted)
{
	if (aborted && s->in_mail && s->hooks->on_abort)
		s->hooks->on_abort(s->ctx);
	free_envelope(s);
	hdr_release(s);
	if (s->hdr)
		s->hdr[0] = '\0';

	char helo[sizeof(s->env.helo)];
	bool esmtp = s->env.esmtp;
	memcpy(helo, s->env.helo, sizeof(helo));
	memset(&s->env, 0, sizeof(s->env));
	memcpy(s->env.helo, helo, sizeof(helo));
	s->env.esmtp = esmtp;
	s->env.tls = s->tls_active;

	s->in_mail = false;
	s->dstate = D_BOL;
	s->line_octets = 0;
	s->bare_eol = s->long_line = s->too_big = s->sink_failed = s->refused = false;
	memset(&s->verdict, 0, sizeof(s->verdict));
	s->hdr_done = false;
	s->hdr_len = 0;
	s->stage_len = 0;
}

void smtp_session_free(struct smtp_session *s)
{
	if (!s)
		return;
	reset_transaction(s, s->phase != PH_WAIT);
	free(s->hdr);
	free(s);
}

void smtp_start(struct smtp_session *s)
{
	char text[SMTP_REPLY_TEXT_MAX];

	/* no enhanced code on the greeting (RFC 2034 3.) */
	size_t n = tes_str_copy(text, sizeof(text), s->cfg->hostname);
	n = tes_str_append(text, sizeof(text), n, " ");
	tes_str_append(text, sizeof(text), n, s->cfg->banner);
	reply_line(s, 220, false, NULL, text);
	s->stats.replies[2]++;
}

/* ---- content ----------------------------------------------------------- */

static void stage_flush(struct smtp_session *s)
{
	if (s->stage_len == 0)
		return;
	if (!s->refused && !s->too_big && !s->sink_failed && s->hooks->on_data &&
	    s->hooks->on_data(s->ctx, s->stage, s->stage_len) != 0)
		s->sink_failed = true;
	s->stage_len = 0;
}

static void headers_complete(struct smtp_session *s, bool truncated)
{
	struct smtp_reply r = { 0 };

	s->hdr_done = true;
	if (s->hooks->on_headers)
		s->hooks->on_headers(s->ctx, &s->env, s->hdr ? s->hdr : "", s->hdr_len, truncated,
				     &r);
	if (r.code >= 400) {
		s->refused = true;
		s->verdict = r;
	}
	hdr_release(s);
}

/* One octet of message content, after unstuffing. */
static void emit(struct smtp_session *s, uint8_t c)
{
	s->env.content_bytes++;
	if (s->env.content_bytes > s->cfg->limits.max_message_size)
		s->too_big = true;

	if (!s->hdr_done && s->hdr_len < s->cfg->limits.max_header_bytes) {
		if (hdr_reserve(s, 1)) {
			s->hdr[s->hdr_len++] = (char)c;
			s->hdr[s->hdr_len] = '\0';
		} else {
			s->sink_failed = true;
		}
	}

	if (s->refused || s->too_big || s->sink_failed)
		return;
	s->stage[s->stage_len++] = c;
	if (s->stage_len == sizeof(s->stage))
		stage_flush(s);
}

static void content_octet(struct smtp_session *s, uint8_t c)
{
	emit(s, c);
	if (++s->line_octets > SMTP_TEXT_LINE_MAX - 2)
		s->long_line = true;
	/* the header section fills its buffer before it ends */
	if (!s->hdr_done && s->hdr_len >= s->cfg->limits.max_header_bytes) {
		stage_flush(s);
		headers_complete(s, true);
	}
}

/* Octets of emit() for a run of ordinary line octets (no CR, no LF) that
 * fits in the header buffer's room, with the same outcome as emitting them
 * one by one: counted, copied into the header section, staged. */
static void emit_run(struct smtp_session *s, const uint8_t *p, size_t n)
{
	uint64_t max = s->cfg->limits.max_message_size;
	uint64_t before = s->env.content_bytes;
	s->env.content_bytes += n;
	size_t keep = n;
	if (s->env.content_bytes > max) {
		s->too_big = true;
		keep = before >= max ? 0 : (size_t)(max - before);
	}
	if (!s->hdr_done) { /* the caller keeps n within the room */
		if (hdr_reserve(s, n)) {
			memcpy(s->hdr + s->hdr_len, p, n);
			s->hdr_len += n;
			s->hdr[s->hdr_len] = '\0';
		} else {
			s->sink_failed = true;
		}
	}
	if (s->refused || s->sink_failed)
		return;
	while (keep > 0) {
		size_t room = sizeof(s->stage) - s->stage_len;
		size_t take = keep < room ? keep : room;
		memcpy(s->stage + s->stage_len, p, take);
		s->stage_len += take;
		p += take;
		keep -= take;
		if (s->stage_len == sizeof(s->stage))
			stage_flush(s);
	}
}

/* content_octet() for each of n ordinary line octets, in runs: the engine's
 * hot loop, where one call per octet cost most of a small message. */
static void content_run(struct smtp_session *s, const uint8_t *p, size_t n)
{
	while (n > 0) {
		size_t k = n;
		if (!s->hdr_done) {
			size_t room = s->cfg->limits.max_header_bytes - s->hdr_len;
			if (k > room)
				k = room;
		}
		emit_run(s, p, k);
		s->line_octets += k;
		if (s->line_octets > SMTP_TEXT_LINE_MAX - 2)
			s->long_line = true;
		if (!s->hdr_done && s->hdr_len >= s->cfg->limits.max_header_bytes) {
			stage_flush(s);
			headers_complete(s, true);
		}
		p += k;
		n -= k;
	}
}

static void content_crlf(struct smtp_session *s)
{
	emit(s, '\r');
	emit(s, '\n');
	bool empty = s->line_octets == 0;
	s->line_octets = 0;
	if (!s->hdr_done && empty) {
		/* the empty line: the header section is complete */
		stage_flush(s);
		headers_complete(s, false);
	}
}

/* Runs the content state machine over in[0..len).  Returns the octets used;
 * *end is set when DATA's terminating <CRLF>.<CRLF> was consumed. */
static size_t scan_content(struct smtp_session *s, const uint8_t *in, size_t len, bool stuffed,
			   bool *end)
{
	size_t i;

	*end = false;
	for (i = 0; i < len; i++) {
		uint8_t c = in[i];

		switch (s->dstate) {
		case D_BOL:
			if (c == '.' && stuffed) {
				s->dstate = D_DOT;
				continue;
			}
			break;
		case D_DOT:
			if (c == '\r') {
				s->dstate = D_DOT_CR;
				continue;
			}
			/* transparency dot: dropped (RFC 5321 4.5.2) */
			s->dstate = D_TEXT;
			break;
		case D_DOT_CR:
			if (c == '\n') {
				*end = true;
				s->dstate = D_BOL;
				return i + 1;
			}
			/* ".\r" then not LF: a bare CR after a dropped dot */
			s->bare_eol = true;
			content_octet(s, '\r');
			s->dstate = D_TEXT;
			break;
		case D_CR:
			if (c == '\n') {
				content_crlf(s);
				s->dstate = D_BOL;
				continue;
			}
			s->bare_eol = true;
			content_octet(s, '\r');
			s->dstate = D_TEXT;
			break;
		case D_TEXT:
			break;
		}
		/* c is an ordinary octet of a line, in D_BOL or D_TEXT */
		if (c == '\r') {
			s->dstate = D_CR;
			continue;
		}
		if (c == '\n') {
			s->bare_eol = true;
			content_octet(s, c);
			s->dstate = D_TEXT;
			continue;
		}
		/* the rest of the line up to its CR or LF in one run */
		const uint8_t *cr = memchr(in + i, '\r', len - i);
		size_t stop = cr ? (size_t)(cr - in) : len;
		const uint8_t *lf = memchr(in + i, '\n', stop - i);
		if (lf)
			stop = (size_t)(lf - in);
		content_run(s, in + i, stop - i);
		s->dstate = D_TEXT;
		i = stop - 1;
	}
	return i;
}

/* ---- end of message ----------------------------------------------------- */

static void after_message(struct smtp_session *s)
{
	reset_transaction(s, false);
	enter(s, PH_CMD);
	if (s->shutdown_pending)
		close_with(s, "4.3.2", "Service shutting down, closing connection");
}

/* DATA's final dot or BDAT LAST.  Returns SMTP_WAIT when delivery is
 * pending, SMTP_OK otherwise. */
static enum smtp_status finish_message(struct smtp_session *s)
{
	struct smtp_reply r = { 0 };

	/* a BDAT message may end inside a line; a CR it ends with was bare */
	if (s->dstate == D_CR) {
		s->bare_eol = true;
		content_octet(s, '\r');
	}
	stage_flush(s);
	if (!s->hdr_done)
		headers_complete(s, false);

	if (s->bare_eol)
		smtp_reply_set(&r, 550, "5.6.0",
			       "Message contains a bare CR or LF; lines must end with CRLF");
	else if (s->long_line)
		smtp_reply_set(&r, 550, "5.6.0",
			       "Message has a line longer than 998 octets (RFC 5321 4.5.3.1.6)");
	else if (s->too_big)
		smtp_reply_set(&r, 552, "5.3.4", "Message size exceeds fixed maximum message size");
	else if (s->refused)
		r = s->verdict;
	else if (s->sink_failed)
		smtp_reply_set(&r, 451, "4.3.0", "Local error in processing; try again later");

	if (r.code) {
		if (s->hooks->on_abort)
			s->hooks->on_abort(s->ctx);
		reply_from(s, &r);
		after_message(s);
		return SMTP_OK;
	}

	s->stats.messages++;
	if (!s->hooks->on_message) {
		reply(s, 250, "2.0.0", "Message accepted");
		after_message(s);
		return SMTP_OK;
	}
	if (s->hooks->on_message(s->ctx, &s->env, &r) == SMTP_PENDING && r.code == 0) {
		enter(s, PH_WAIT);
		return SMTP_WAIT;
	}
	if (r.code == 0)
		smtp_reply_set(&r, 250, "2.0.0", "Message accepted");
	reply_from(s, &r);
	after_message(s);
	return SMTP_OK;
}

void smtp_message_done(struct smtp_session *s, const struct smtp_reply *r)
{
	struct smtp_reply fallback;

	if (s->phase != PH_WAIT)
		return;
	if (!r || r->code == 0) {
		smtp_reply_set(&fallback, 451, "4.3.0",
			       "Delivery gave no verdict; try again later");
		r = &fallback;
	}
	reply_from(s, r);
	after_message(s);
}

/* ---- command parsing -------------------------------------------------- */

static bool is_atext(unsigned char c, bool utf8)
{
	if (c >= 0x80)
		return utf8;
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static bool is_let_dig(unsigned char c, bool utf8)
{
	if (c >= 0x80)
		return utf8;
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* RFC 5321 4.1.2 Domain / address-literal; utf8 admits U-labels. */
static bool valid_domain(const char *p, size_t n, bool utf8)
{
	if (n == 0)
		return false;
	if (p[0] == '[') {
		if (n < 3 || p[n - 1] != ']')
			return false;
		for (size_t i = 1; i + 1 < n; i++) {
			unsigned char c = (unsigned char)p[i];
			if (c < 33 || c > 126 || c == '[' || c == ']' || c == '\\')
				return false;
		}
		return true;
	}
	size_t label = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '.') {
			if (label == 0 || p[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (c == '-') {
			if (label == 0)
				return false;
		} else if (!is_let_dig(c, utf8)) {
			return false;
		}
		if (++label > 63)
			return false;
	}
	return label > 0 && p[n - 1] != '-';
}

/* RFC 5321 4.1.2 Local-part: Dot-string or Quoted-string. */
static bool valid_local(const char *p, size_t n, bool utf8)
{
	if (n == 0 || n > 64 * 4)
		return false;
	if (p[0] == '"') {
		if (n < 2 || p[n - 1] != '"')
			return false;
		for (size_t i = 1; i + 1 < n; i++) {
			unsigned char c = (unsigned char)p[i];
			if (c == '\\') {
				if (++i + 1 >= n)
					return false;
				c = (unsigned char)p[i];
				if (c < 32 || c > 126)
					return false;
			} else if (c == '"' || (c < 32 && c != '\t') || c == 127 ||
				   (c >= 0x80 && !utf8)) {
				return false;
			}
		}
		return true;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '.') {
			if (i == 0 || i + 1 == n || p[i - 1] == '.')
				return false;
		} else if (!is_atext(c, utf8)) {
			return false;
		}
	}
	return true;
}

static bool has_8bit(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] >= 0x80)
			return true;
	return false;
}

enum path_result { PATH_OK, PATH_SYNTAX, PATH_8BIT };

/* The end of the "<...>" path at p (one past '>'), or NULL.  A '>' inside a
 * quoted local part does not end it. */
static const char *path_end(const char *p)
{
	bool quoted = false;

	if (*p != '<')
		return NULL;
	for (p++; *p; p++) {
		if (quoted && *p == '\\' && p[1]) {
			p++;
			continue;
		}
		if (*p == '"')
			quoted = !quoted;
		else if (*p == '>' && !quoted)
			return p + 1;
	}
	return NULL;
}

/* Parse "<path>" at *pp (advanced past it).  out gets the mailbox without
 * the brackets or any source route.  allow_null: "<>" is valid.
 * allow_postmaster: "<postmaster>" without a domain is valid. */
static enum path_result parse_path(const char **pp, char *out, size_t outlen, bool allow_null,
				   bool allow_postmaster, bool utf8)
{
	const char *p = *pp;
	const char *end = path_end(p);
	bool quoted;

	if (!end || (size_t)(end - p) > SMTP_PATH_MAX)
		return PATH_SYNTAX;
	*pp = end;

	const char *m = p + 1;
	size_t n = (size_t)(end - 1 - m);
	if (n == 0) {
		if (!allow_null)
			return PATH_SYNTAX;
		out[0] = '\0';
		return PATH_OK;
	}
	/* A-d-l source route (RFC 5321 4.1.2): accepted and ignored (C.) */
	if (m[0] == '@') {
		const char *colon = memchr(m, ':', n);
		if (!colon)
			return PATH_SYNTAX;
		n -= (size_t)(colon + 1 - m);
		m = colon + 1;
	}
	if (has_8bit(m, n) && !utf8)
		return PATH_8BIT;
	if (allow_postmaster && n == 10 && strncasecmp(m, "postmaster", 10) == 0)
		goto ok;
	/* the last '@' outside quotes splits local part and domain */
	const char *at = NULL;
	quoted = false;
	for (size_t i = 0; i < n; i++) {
		if (quoted && m[i] == '\\') {
			i++;
			continue;
		}
		if (m[i] == '"')
			quoted = !quoted;
		else if (m[i] == '@' && !quoted)
			at = m + i;
	}
	if (!at || !valid_local(m, (size_t)(at - m), utf8) ||
	    !valid_domain(at + 1, n - (size_t)(at + 1 - m), utf8))
		return PATH_SYNTAX;
ok:
	if (n >= outlen)
		return PATH_SYNTAX;
	memcpy(out, m, n);
	out[n] = '\0';
	return PATH_OK;
}

static const char *skip_sp(const char *p)
{
	while (*p == ' ')
		p++;
	return p;
}

/* "FROM:" / "TO:" after the verb; lenient about one space before the path,
 * which many clients send. */
static const char *expect_keyword(const char *args, const char *kw)
{
	size_t n = strlen(kw);

	if (strncasecmp(args, kw, n) != 0)
		return NULL;
	return skip_sp(args + n);
}

static bool parse_u64(const char *p, size_t n, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0 || n > 20)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		uint64_t d = (uint64_t)(p[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/* ---- commands ---------------------------------------------------------- */

static void cmd_helo(struct smtp_session *s, const char *args, bool esmtp)
{
	const char *p = skip_sp(args);
	size_t n = strcspn(p, " ");

	if (n == 0) {
		reply(s, 501, "5.5.4", "Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
		return;
	}
	/* RFC 5321 4.1.4: HELO/EHLO resets the transaction */
	reset_transaction(s, true);
	if (n >= sizeof(s->env.helo))
		n = sizeof(s->env.helo) - 1;
	memcpy(s->env.helo, p, n);
	s->env.helo[n] = '\0';
	s->env.esmtp = esmtp;
	s->helo_done = true;

	if (!esmtp) {
		reply_line(s, 250, false, NULL, s->cfg->hostname);
		s->stats.replies[2]++;
		return;
	}
	char line[SMTP_REPLY_TEXT_MAX];
	size_t len = tes_str_copy(line, sizeof(line), s->cfg->hostname);
	len = tes_str_append(line, sizeof(line), len, " Hello ");
	len = tes_str_append(line, sizeof(line), len, s->env.helo);
	len = tes_str_append(line, sizeof(line), len, " [");
	len = tes_str_append(line, sizeof(line), len, s->peer);
	tes_str_append(line, sizeof(line), len, "]");
	reply_line(s, 250, true, NULL, line);
	reply_line(s, 250, true, NULL, "PIPELINING");
	tes_str_append_u64(line, sizeof(line), tes_str_copy(line, sizeof(line), "SIZE "),
			   s->cfg->limits.max_message_size);
	reply_line(s, 250, true, NULL, line);
	reply_line(s, 250, true, NULL, "8BITMIME");
	reply_line(s, 250, true, NULL, "ENHANCEDSTATUSCODES");
	if (s->cfg->starttls && !s->tls_active)
		reply_line(s, 250, true, NULL, "STARTTLS");
	if (s->cfg->smtputf8)
		reply_line(s, 250, true, NULL, "SMTPUTF8");
	reply_line(s, 250, false, NULL, "CHUNKING");
	s->stats.replies[2]++;
}

static void cmd_mail(struct smtp_session *s, const char *args)
{
	const struct smtp_limits *lim = &s->cfg->limits;
	char path[SMTP_PATH_MAX + 1];

	args = skip_sp(args);
	if (!s->helo_done) {
		reply(s, 503, "5.5.1", "Send HELO/EHLO first");
		return;
	}
	if (s->in_mail) {
		reply(s, 503, "5.5.1", "Nested MAIL command");
		return;
	}
	if (s->transactions >= lim->max_messages) {
		close_with(s, "4.7.0", "Too many messages in one connection, closing");
		return;
	}
	const char *p = expect_keyword(args, "FROM:");
	if (!p) {
		reply(s, 501, "5.5.4", "Syntax: MAIL FROM:<address>");
		return;
	}

	/* Parameters first: SMTPUTF8 decides whether the path may be UTF-8. */
	const char *params = path_end(p);
	if (!params) {
		reply(s, 501, "5.1.7", "Bad sender address syntax");
		return;
	}
	bool utf8 = false, body_set = false, size_set = false;
	enum smtp_body body = SMTP_BODY_7BIT;
	uint64_t size = 0;
	for (const char *q = skip_sp(params); *q; q = skip_sp(q)) {
		size_t n = strcspn(q, " ");
		if (!s->env.esmtp) {
			reply(s, 555, "5.5.4", "MAIL parameters need EHLO");
			return;
		}
		if (n > 5 && strncasecmp(q, "SIZE=", 5) == 0 && !size_set) {
			if (!parse_u64(q + 5, n - 5, &size)) {
				reply(s, 501, "5.5.4", "Bad SIZE parameter");
				return;
			}
			size_set = true;
		} else if (n > 5 && strncasecmp(q, "BODY=", 5) == 0 && !body_set) {
			if (n - 5 == 4 && strncasecmp(q + 5, "7BIT", 4) == 0)
				body = SMTP_BODY_7BIT;
			else if (n - 5 == 8 && strncasecmp(q + 5, "8BITMIME", 8) == 0)
				body = SMTP_BODY_8BITMIME;
			else {
				reply(s, 555, "5.5.4", "Unsupported BODY type");
				return;
			}
			body_set = true;
		} else if (n == 8 && strncasecmp(q, "SMTPUTF8", 8) == 0 && s->cfg->smtputf8 &&
			   !utf8) {
			utf8 = true;
		} else {
			reply(s, 555, "5.5.4", "Unsupported MAIL parameter %.*s",
			      (int)(n > 32 ? 32 : n), q);
			return;
		}
		q += n;
	}

	switch (parse_path(&p, path, sizeof(path), true, false, utf8)) {
	case PATH_OK:
		break;
	case PATH_8BIT:
		reply(s, 553, "5.6.7", "Non-ASCII address needs SMTPUTF8");
		return;
	default:
		reply(s, 501, "5.1.7", "Bad sender address syntax");
		return;
	}
	if (size_set && size > lim->max_message_size) {
		reply(s, 552, "5.3.4", "Message size exceeds fixed maximum message size");
		return;
	}

	reset_transaction(s, false);
	memcpy(s->env.mail_from, path, strlen(path) + 1);
	s->env.body = body;
	s->env.smtputf8 = utf8;
	s->env.size_param = size;

	struct smtp_reply r = { 0 };
	/* Every transaction counts toward max_messages however it ends (250,
	 * a refusal, RSET, QUIT): a client cycling MAIL ... RSET gets no more
	 * rounds per connection than one that delivers. */
	s->transactions++;
	if (s->hooks->on_mail)
		s->hooks->on_mail(s->ctx, &s->env, &r);
	if (r.code >= 400) {
		reply_from(s, &r);
		reset_transaction(s, false);
		return;
	}
	s->in_mail = true;
	reply(s, 250, "2.1.0", "Sender OK");
}

static void cmd_rcpt(struct smtp_session *s, const char *args)
{
	char path[SMTP_PATH_MAX + 1];

	args = skip_sp(args);
	if (!s->in_mail) {
		reply(s, 503, "5.5.1", "Need MAIL before RCPT");
		return;
	}
	const char *p = expect_keyword(args, "TO:");
	if (!p) {
		reply(s, 501, "5.5.4", "Syntax: RCPT TO:<address>");
		return;
	}
	switch (parse_path(&p, path, sizeof(path), false, true, s->env.smtputf8)) {
	case PATH_OK:
		break;
	case PATH_8BIT:
		reply(s, 553, "5.6.7", "Non-ASCII address needs SMTPUTF8");
		return;
	default:
		reply(s, 501, "5.1.3", "Bad recipient address syntax");
		return;
	}
	p = skip_sp(p);
	if (*p) {
		reply(s, 555, "5.5.4", "Unsupported RCPT parameter");
		return;
	}
	if (s->env.nrcpt >= s->cfg->limits.max_recipients) {
		reply(s, 452, "4.5.3", "Too many recipients");
		return;
	}
	struct smtp_reply r = { 0 };
	if (s->hooks->on_rcpt)
		s->hooks->on_rcpt(s->ctx, &s->env, path, &r);
	if (r.code >= 400) {
		reply_from(s, &r);
		return;
	}
	if (s->env.nrcpt == s->rcpt_cap) {
		unsigned cap = s->rcpt_cap ? s->rcpt_cap * 2 : 4;
		if (cap > s->cfg->limits.max_recipients)
			cap = s->cfg->limits.max_recipients;
		char **v = realloc(s->env.rcpt, cap * sizeof(*v));
		if (!v) {
			reply(s, 452, "4.3.1", "Out of memory, try fewer recipients");
			return;
		}
		s->env.rcpt = v;
		s->rcpt_cap = cap;
	}
	char *copy = strdup(path);
	if (!copy) {
		reply(s, 452, "4.3.1", "Out of memory, try fewer recipients");
		return;
	}
	s->env.rcpt[s->env.nrcpt++] = copy;
	reply(s, 250, "2.1.5", "Recipient OK");
}

static void cmd_data(struct smtp_session *s, const char *args)
{
	if (*skip_sp(args)) {
		reply(s, 501, "5.5.4", "DATA takes no arguments");
		return;
	}
	if (!s->in_mail) {
		reply(s, 503, "5.5.1", "Need MAIL and RCPT before DATA");
		return;
	}
	if (s->env.bdat) {
		reply(s, 503, "5.5.1", "DATA not allowed after BDAT");
		return;
	}
	if (s->env.nrcpt == 0) {
		/* RFC 2920 3.1: pipelined RCPTs may all have failed */
		reply(s, 554, "5.5.1", "No valid recipients");
		return;
	}
	enter(s, PH_DATA);
	s->dstate = D_BOL;
	reply_line(s, 354, false, NULL, "Start mail input; end with <CRLF>.<CRLF>");
	s->stats.replies[3]++;
}

static void cmd_bdat(struct smtp_session *s, const char *args)
{
	const char *p = skip_sp(args);
	size_t n = strcspn(p, " ");
	uint64_t size;

	if (!parse_u64(p, n, &size)) {
		/* the chunk length is unknown: nothing can be skipped */
		reply(s, 501, "5.5.4", "Syntax: BDAT size [LAST]");
		return;
	}
	p = skip_sp(p + n);
	bool last = false;
	if (*p) {
		n = strcspn(p, " ");
		if (n != 4 || strncasecmp(p, "LAST", 4) != 0 || *skip_sp(p + n)) {
			reply(s, 501, "5.5.4", "Syntax: BDAT size [LAST]");
			return;
		}
		last = true;
	}

	/* From here on the chunk is always read, even when the command is
	 * refused: otherwise its octets would be taken as commands. */
	enter(s, PH_BDAT);
	s->bdat_left = size;
	s->bdat_size = size;
	s->bdat_last = last;
	s->bdat_discard = false;
	memset(&s->bdat_error, 0, sizeof(s->bdat_error));
	if (!s->helo_done || !s->env.esmtp) {
		smtp_reply_set(&s->bdat_error, 503, "5.5.1", "Send EHLO first");
	} else if (!s->in_mail) {
		smtp_reply_set(&s->bdat_error, 503, "5.5.1", "Need MAIL and RCPT before BDAT");
	} else if (s->env.nrcpt == 0) {
		smtp_reply_set(&s->bdat_error, 554, "5.5.1", "No valid recipients");
	} else if (s->env.content_bytes + size > s->cfg->limits.max_message_size ||
		   size > s->cfg->limits.max_message_size) {
		/* known too big before reading: skip the octets unparsed */
		smtp_reply_set(&s->bdat_error, 552, "5.3.4",
			       "Message size exceeds fixed maximum message size");
	}
	if (s->bdat_error.code) {
		s->bdat_discard = true;
		return;
	}
	if (!s->env.bdat) {
		s->env.bdat = true;
		s->dstate = D_BOL;
	}
}

static void cmd_starttls(struct smtp_session *s, const char *args)
{
	if (*skip_sp(args)) {
		reply(s, 501, "5.5.4", "STARTTLS takes no arguments");
		return;
	}
	if (!s->cfg->starttls) {
		reply(s, 502, "5.5.1", "STARTTLS not available");
		return;
	}
	if (s->tls_active) {
		reply(s, 503, "5.5.1", "TLS already active");
		return;
	}
	if (!s->helo_done || !s->env.esmtp) {
		reply(s, 503, "5.5.1", "Send EHLO first");
		return;
	}
	if (s->in_mail) {
		reply(s, 503, "5.5.1", "MAIL transaction in progress");
		return;
	}
	reply(s, 220, "2.0.0", "Ready to start TLS");
	enter(s, PH_TLS);
}

void smtp_tls_started(struct smtp_session *s)
{
	if (s->phase != PH_TLS)
		return;
	/* RFC 3207 4.2: discard everything known from before TLS */
	reset_transaction(s, true);
	s->helo_done = false;
	memset(s->env.helo, 0, sizeof(s->env.helo));
	s->env.esmtp = false;
	s->tls_active = true;
	s->env.tls = true;
	enter(s, PH_CMD);
}

static void cmd_ehlo(struct smtp_session *s, const char *args)
{
	cmd_helo(s, args, true);
}

static void cmd_helo_only(struct smtp_session *s, const char *args)
{
	cmd_helo(s, args, false);
}

static void cmd_rset(struct smtp_session *s, const char *args)
{
	if (*skip_sp(args)) {
		reply(s, 501, "5.5.4", "RSET takes no arguments");
		return;
	}
	reset_transaction(s, true);
	reply(s, 250, "2.0.0", "Reset OK");
}

static void cmd_noop(struct smtp_session *s, const char *args)
{
	(void)args;
	reply(s, 250, "2.0.0", "OK");
}

static void cmd_quit(struct smtp_session *s, const char *args)
{
	(void)args;
	reset_transaction(s, true);
	reply(s, 221, "2.0.0", "Bye");
	enter(s, PH_CLOSED);
}

static void cmd_vrfy(struct smtp_session *s, const char *args)
{
	if (!*skip_sp(args))
		reply(s, 501, "5.5.4", "Syntax: VRFY address");
	else
		reply(s, 252, "2.5.0", "Cannot VRFY user, but will accept message");
}

static void cmd_help(struct smtp_session *s, const char *args)
{
	(void)args;
	reply(s, 214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP%s",
	      s->cfg->starttls ? " STARTTLS" : "");
}

static void cmd_not_implemented(struct smtp_session *s, const char *args)
{
	(void)args;
	reply(s, 502, "5.5.1", "Command not implemented");
}

/* An HTTP client or proxy abuse: no point in a dialogue. */
static void cmd_http(struct smtp_session *s, const char *args)
{
	(void)args;
	close_with(s, "4.7.0", "This is an SMTP server, closing");
}

/* The verbs, most frequent first (the search is a walk): each handler gets
 * what follows the verb, from its space on. */
static const struct verb {
	const char *name;
	size_t len;
	void (*fn)(struct smtp_session *s, const char *args);
} verbs[] = {
#define VERB(n, f)                  \
	{                           \
		n, sizeof(n) - 1, f \
	}
	VERB("EHLO", cmd_ehlo),
	VERB("HELO", cmd_helo_only),
	VERB("MAIL", cmd_mail),
	VERB("RCPT", cmd_rcpt),
	VERB("DATA", cmd_data),
	VERB("BDAT", cmd_bdat),
	VERB("RSET", cmd_rset),
	VERB("NOOP", cmd_noop),
	VERB("QUIT", cmd_quit),
	VERB("VRFY", cmd_vrfy),
	VERB("HELP", cmd_help),
	VERB("STARTTLS", cmd_starttls),
	VERB("EXPN", cmd_not_implemented),
	VERB("TURN", cmd_not_implemented),
	VERB("ETRN", cmd_not_implemented),
	VERB("AUTH", cmd_not_implemented),
	VERB("GET", cmd_http),
	VERB("POST", cmd_http),
	VERB("CONNECT", cmd_http),
	VERB("HEAD", cmd_http),
	VERB("PUT", cmd_http),
#undef VERB
};

static void command(struct smtp_session *s, char *line, size_t len)
{
	s->stats.commands++;
	if (memchr(line, '\0', len)) {
		reply(s, 500, "5.5.2", "NUL octet in command");
		return;
	}
	line[len] = '\0';
	size_t vlen = strcspn(line, " ");

	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (verbs[i].len == vlen && strncasecmp(line, verbs[i].name, vlen) == 0) {
			verbs[i].fn(s, line + vlen);
			return;
		}
	}
	reply(s, 500, "5.5.2", "Command unrecognized");
}

/* ---- input ------------------------------------------------------------- */

static size_t feed_cmd(struct smtp_session *s, const uint8_t *in, size_t len, bool *line_done)
{
	size_t i;

	*line_done = false;
	for (i = 0; i < len; i++) {
		uint8_t c = in[i];
		if (c == '\n') {
			*line_done = true;
			return i + 1;
		}
		if (s->line_len < sizeof(s->line) - 1)
			s->line[s->line_len++] = (char)c;
		else
			s->line_overflow = true;
	}
	return i;
}

static enum smtp_status feed_bdat(struct smtp_session *s, const uint8_t *in, size_t len,
				  size_t *used)
{
	size_t n = len < s->bdat_left ? len : (size_t)s->bdat_left;
	bool end;

	if (!s->bdat_discard)
		scan_content(s, in, n, false, &end);
	*used = n;
	s->bdat_left -= n;
	if (s->bdat_left > 0)
		return SMTP_OK;

	enter(s, PH_CMD);
	if (s->bdat_discard) {
		/* a refused chunk ends the transaction (RFC 3030 2.) */
		if (s->in_mail)
			reset_transaction(s, true);
		reply_from(s, &s->bdat_error);
		s->bdat_error.code = 0;
		return SMTP_OK;
	}
	if (s->bdat_last)
		return finish_message(s);
	if (s->too_big) {
		reset_transaction(s, true);
		reply(s, 552, "5.3.4", "Message size exceeds fixed maximum message size");
		return SMTP_OK;
	}
	reply(s, 250, "2.0.0", "%llu octets received", (unsigned long long)s->bdat_size);
	return SMTP_OK;
}

enum smtp_status smtp_feed(struct smtp_session *s, const uint8_t *in, size_t len, size_t *used)
{
	size_t pos = 0;
	enum smtp_status st = SMTP_OK;

	while (pos < len || (s->phase == PH_BDAT && s->bdat_left == 0)) {
		if (s->phase == PH_CLOSED) {
			/* after QUIT or 421 the rest is of no interest */
			pos = len;
			st = SMTP_CLOSE;
			break;
		}
		if (s->phase == PH_TLS) {
			/* RFC 3207 4.2: what came with STARTTLS is discarded */
			pos = len;
			st = SMTP_STARTTLS;
			break;
		}
		if (s->phase == PH_WAIT) {
			st = SMTP_WAIT;
			break;
		}
		if (out_free(s) < REPLY_RESERVE) {
			st = SMTP_BLOCKED;
			break;
		}
		if (s->phase == PH_DATA) {
			bool end;
			pos += scan_content(s, in + pos, len - pos, true, &end);
			if (end && finish_message(s) == SMTP_WAIT) {
				st = SMTP_WAIT;
				break;
			}
			continue;
		}
		if (s->phase == PH_BDAT) {
			size_t n;
			st = feed_bdat(s, in + pos, len - pos, &n);
			pos += n;
			if (st == SMTP_WAIT)
				break;
			continue;
		}
		bool done;
		pos += feed_cmd(s, in + pos, len - pos, &done);
		if (!done)
			continue;
		size_t l = s->line_len;
		if (l > 0 && s->line[l - 1] == '\r')
			l--;
		bool overflow = s->line_overflow;
		s->line_len = 0;
		s->line_overflow = false;
		if (overflow)
			reply(s, 500, "5.5.2", "Line too long");
		else
			command(s, s->line, l);
	}
	if (st == SMTP_OK) {
		if (s->phase == PH_CLOSED)
			st = SMTP_CLOSE;
		else if (s->phase == PH_TLS)
			st = SMTP_STARTTLS;
		else if (s->phase == PH_WAIT)
			st = SMTP_WAIT;
	}
	/* content staged in this call reaches the hook before we return */
	if (s->phase == PH_DATA || s->phase == PH_BDAT)
		stage_flush(s);
	s->stats.bytes_in += pos;
	*used = pos;
	return st;
}

bool smtp_shutdown(struct smtp_session *s)
{
	if (s->phase == PH_CLOSED)
		return true;
	if (s->phase == PH_CMD && s->line_len == 0) {
		reset_transaction(s, true);
		close_with(s, "4.3.2", "Service shutting down, closing connection");
		return true;
	}
	s->shutdown_pending = true;
	return false;
}

void smtp_abort(struct smtp_session *s)
{
	if (s->phase == PH_WAIT)
		return; /* the delivery side still holds the message */
	reset_transaction(s, true);
	enter(s, PH_CLOSED);
}

const struct smtp_stats *smtp_stats(const struct smtp_session *s)
{
	return &s->stats;
}

bool smtp_closing(const struct smtp_session *s)
{
	return s->phase == PH_CLOSED;
}
