/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The relay's SMTP client (RFC 5321 with PIPELINING, CHUNKING, SIZE,
 * 8BITMIME, SMTPUTF8).  See smtpc.h for the contract, and docs/smtp-dialect.md
 * ("Delivery") for what the gateway's own client is told.
 *
 * Commands of a transaction have fixed positions, so a reply is matched to
 * its command by counting alone, whatever the pipelining:
 *   0 MAIL, 1..n RCPT, then DATA and the end of data, or the BDAT chunks and
 *   the final BDAT, and after a failure one RSET (position rset_pos).
 */
#include "gateway/delivery/smtpc.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

enum kind { K_MAIL, K_RCPT, K_DATA, K_DOT, K_CHUNK, K_LAST, K_RSET };

/* Longest command smtpc writes: MAIL with a full path and every parameter. */
#define CMD_MAX 512

static size_t out_free(const struct smtpc *c)
{
	return sizeof(c->out) - c->out_len;
}

static void out_compact(struct smtpc *c)
{
	if (c->out_off == 0)
		return;
	memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
	c->out_len -= c->out_off;
	c->out_off = 0;
}

/* Room for n more octets, compacting if that makes it. */
static bool out_room(struct smtpc *c, size_t n)
{
	if (out_free(c) < n)
		out_compact(c);
	return out_free(c) >= n;
}

static void out_put(struct smtpc *c, const void *p, size_t n)
{
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
}

static bool emitf(struct smtpc *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A whole command or nothing: a half-written command could not be taken
 * back when space runs out. */
static bool emitf(struct smtpc *c, const char *fmt, ...)
{
	char cmd[CMD_MAX + 64];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(cmd) || !out_room(c, (size_t)n))
		return false;
	out_put(c, cmd, (size_t)n);
	return true;
}

static void reply_copy(struct smtpc_reply *dst, const struct smtpc_reply *src)
{
	if (src)
		*dst = *src;
	else
		memset(dst, 0, sizeof(*dst));
}

static void conn_fail(struct smtpc *c, enum smtpc_cause cause, const char *stage,
		      const struct smtpc_reply *r)
{
	memset(&c->fail, 0, sizeof(c->fail));
	c->fail.status = 4;
	c->fail.cause = cause;
	c->fail.stage = stage;
	reply_copy(&c->fail.reply, r);
	c->st = SMTPC_CLOSED;
}

/* ---- transaction bookkeeping ---- */

static uint64_t data_base(const struct smtpc *c)
{
	return 1 + (uint64_t)c->t.nrcpt;
}

static enum kind kind_at(const struct smtpc *c, uint64_t pos)
{
	if (c->rset_emitted && pos == c->rset_pos)
		return K_RSET;
	if (pos == 0)
		return K_MAIL;
	if (pos < data_base(c))
		return K_RCPT;
	uint64_t j = pos - data_base(c);
	if (!c->chunking)
		return j == 0 ? K_DATA : K_DOT;
	return c->last_emitted && j == c->nchunks ? K_LAST : K_CHUNK;
}

static const char *kind_name(enum kind k)
{
	static const char *const names[] = { "MAIL", "RCPT",      "DATA", "end of data",
					     "BDAT", "BDAT LAST", "RSET" };
	return names[k];
}

static void set_outcome(struct smtpc *c, int status, enum smtpc_cause cause, const char *stage,
			const struct smtpc_reply *r)
{
	if (c->have_outcome)
		return;
	memset(&c->oc, 0, sizeof(c->oc));
	c->oc.status = status;
	c->oc.cause = cause;
	c->oc.stage = stage;
	reply_copy(&c->oc.reply, r);
	c->oc.nrcpt = c->t.nrcpt;
	c->oc.rcpt_failed = c->rcpt_failed;
	c->oc.rcpt_answered = c->rcpt_answered;
	/* Nothing of this transaction was answered (or only the 421 that
	 * closed the connection): the backend cannot have taken it. */
	c->oc.retryable = cause == SMTPC_CAUSE_LOST &&
			  (c->txn_replies == 0 || (c->txn_replies == 1 && r && r->code == 421));
	c->have_outcome = true;
	c->outcome_taken = false;
	if (status != 2)
		c->failed = true;
}

static void txn_end(struct smtpc *c)
{
	c->st = SMTPC_READY;
}

/* After a failure: RSET once the framing allows it.  Never while DATA's
 * reply is outstanding (a 354 would make RSET message content), never in
 * the middle of a BDAT chunk. */
static void maybe_rset(struct smtpc *c)
{
	if (c->rset_emitted || c->chunk_left > 0)
		return;
	if (!c->chunking && c->data_emitted && c->nreplied <= data_base(c))
		return;
	if (!c->pipelining && c->nsent != c->nreplied)
		return;
	if (!emitf(c, "RSET\r\n"))
		return;
	c->rset_emitted = true;
	c->rset_pos = c->nsent++;
}

static bool needs_crlf(const struct smtpc *c)
{
	return c->t.size > 0 && !(c->tail[0] == '\r' && c->tail[1] == '\n');
}

/* Emit whatever may go out now. */
static void fill(struct smtpc *c)
{
	while (c->st == SMTPC_BUSY) {
		if (c->chunk_left > 0)
			return; /* content owed first */
		if (c->failed) {
			maybe_rset(c);
			return;
		}
		if (!c->pipelining && c->nsent != c->nreplied)
			return;
		if (!c->mail_emitted) {
			const char *utf8 = c->t.smtputf8 ? " SMTPUTF8" : "";
			const char *body =
				c->t.body8 && (c->ext & SMTPC_EXT_8BITMIME) ? " BODY=8BITMIME" : "";
			char size[32] = "";
			if (c->ext & SMTPC_EXT_SIZE)
				snprintf(size, sizeof(size), " SIZE=%llu",
					 (unsigned long long)c->t.size);
			if (!emitf(c, "MAIL FROM:<%s>%s%s%s\r\n", c->t.mail_from, size, body, utf8))
				return;
			c->mail_emitted = true;
			c->nsent++;
			continue;
		}
		if (c->rcpt_emitted < c->t.nrcpt) {
			if (!emitf(c, "RCPT TO:<%s>\r\n", c->t.rcpt[c->rcpt_emitted]))
				return;
			c->rcpt_emitted++;
			c->nsent++;
			continue;
		}
		bool env_done = c->nreplied >= data_base(c);
		if (!c->chunking) {
			if (!c->data_emitted) {
				if (!emitf(c, "DATA\r\n"))
					return;
				c->data_emitted = true;
				c->nsent++;
				continue;
			}
			if (!c->data_go || c->content_off < c->t.size || c->dot_emitted)
				return;
			if (!emitf(c, "%s.\r\n", needs_crlf(c) ? "\r\n" : ""))
				return;
			c->dot_emitted = true;
			c->nsent++;
			return;
		}
		if (c->last_emitted)
			return;
		if (!c->pipelining) {
			/* the envelope is known good here: one chunk, the last */
			if (!emitf(c, "BDAT %llu LAST\r\n", (unsigned long long)c->t.size))
				return;
			c->last_emitted = true;
			c->chunk_left = c->t.size;
			c->nsent++;
			continue;
		}
		if (c->content_off < c->t.size) {
			uint64_t k = c->t.size - c->content_off;
			if (k > SMTPC_CHUNK_MAX)
				k = SMTPC_CHUNK_MAX;
			if (!emitf(c, "BDAT %llu\r\n", (unsigned long long)k))
				return;
			c->chunk_left = k;
			c->nchunks++;
			c->nsent++;
			continue;
		}
		if (!env_done)
			return; /* the commit waits for every RCPT's 250 */
		if (!emitf(c, "BDAT 0 LAST\r\n"))
			return;
		c->last_emitted = true;
		c->nsent++;
		return;
	}
}

static void env_refused(struct smtpc *c, const char *stage)
{
	if (!c->env_failed) {
		c->env_failed = true;
		c->first_fail = c->cur;
		c->first_fail_stage = stage;
	}
	if (c->cur.code / 100 == 4)
		c->any_4xx = true;
}

static void txn_reply(struct smtpc *c)
{
	const struct smtpc_reply *r = &c->cur;
	uint64_t pos = c->nreplied;
	if (pos >= c->nsent) {
		/* Nothing asked: a backend closing on us says 421 here. */
		enum smtpc_cause why = r->code == 421 ? SMTPC_CAUSE_LOST : SMTPC_CAUSE_PROTOCOL;
		set_outcome(c, 4, why, "reply", r);
		conn_fail(c, why, "reply", r);
		return;
	}
	c->nreplied++;
	c->txn_replies++;
	enum kind k = kind_at(c, pos);
	bool ok = r->code / 100 == 2;

	if (r->code == 421) {
		/* The backend is closing the connection. */
		set_outcome(c, 4, SMTPC_CAUSE_LOST, kind_name(k), r);
		conn_fail(c, SMTPC_CAUSE_LOST, kind_name(k), r);
		return;
	}
	switch (k) {
	case K_RSET:
		if (ok)
			txn_end(c);
		else
			conn_fail(c, SMTPC_CAUSE_REPLY, "RSET", r);
		return;
	case K_MAIL:
	case K_RCPT:
		if (k == K_RCPT)
			c->rcpt_answered++;
		if (!ok) {
			if (k == K_RCPT)
				c->rcpt_failed++;
			env_refused(c, kind_name(k));
		}
		/* Decide once every envelope reply is in (pipelining), or at
		 * the first refusal (one command at a time stops there). */
		if (c->env_failed && (pos + 1 == data_base(c) || !c->pipelining))
			set_outcome(c, c->any_4xx ? 4 : 5, SMTPC_CAUSE_REPLY, c->first_fail_stage,
				    &c->first_fail);
		break;
	case K_DATA:
		if (r->code == 354) {
			if (c->failed) {
				/* Content now would commit a message the
				 * envelope refused: only closing aborts it. */
				conn_fail(c, SMTPC_CAUSE_OK, "DATA", r);
				return;
			}
			c->data_go = true;
		} else {
			set_outcome(c, r->code / 100 == 4 ? 4 : 5, SMTPC_CAUSE_REPLY, "DATA", r);
		}
		break;
	case K_CHUNK:
		if (!ok)
			set_outcome(c, r->code / 100 == 4 ? 4 : 5, SMTPC_CAUSE_REPLY, "BDAT", r);
		break;
	case K_DOT:
	case K_LAST:
		if (ok)
			set_outcome(c, 2, SMTPC_CAUSE_OK, kind_name(k), r);
		else
			set_outcome(c, r->code / 100 == 4 ? 4 : 5, SMTPC_CAUSE_REPLY, kind_name(k),
				    r);
		break;
	}
	if (!c->failed && c->have_outcome && c->nreplied == c->nsent)
		txn_end(c);
}

/* ---- replies ---- */

static void parse_ext(struct smtpc *c, const char *kw)
{
	static const struct {
		const char *name;
		unsigned bit;
	} exts[] = {
		{ "PIPELINING", SMTPC_EXT_PIPELINING },
		{ "CHUNKING", SMTPC_EXT_CHUNKING },
		{ "SIZE", SMTPC_EXT_SIZE },
		{ "8BITMIME", SMTPC_EXT_8BITMIME },
		{ "SMTPUTF8", SMTPC_EXT_SMTPUTF8 },
		{ "STARTTLS", SMTPC_EXT_STARTTLS },
		{ "ENHANCEDSTATUSCODES", SMTPC_EXT_ENHANCEDSTATUSCODES },
	};
	size_t n = strcspn(kw, " ");
	for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
		if (strlen(exts[i].name) != n || strncasecmp(kw, exts[i].name, n) != 0)
			continue;
		c->ehlo_ext |= exts[i].bit;
		if (exts[i].bit == SMTPC_EXT_SIZE) {
			uint64_t v = 0;
			const char *p = kw + n;
			while (*p == ' ')
				p++;
			for (; *p >= '0' && *p <= '9'; p++) {
				if (v > (UINT64_MAX - 9) / 10) {
					v = 0; /* absurd: treat as no limit */
					break;
				}
				v = v * 10 + (uint64_t)(*p - '0');
			}
			c->ehlo_size_max = v;
		}
	}
}

/* "4.7.1 text" -> enh "4.7.1", text "text", when the class matches. */
static void split_enh(struct smtpc_reply *r, const char *s)
{
	const char *p = s;
	if (*p == (char)('0' + r->code / 100) && p[1] == '.') {
		p += 2;
		unsigned groups = 0;
		for (;;) {
			unsigned d = 0;
			while (*p >= '0' && *p <= '9' && d < 4) {
				p++;
				d++;
			}
			if (d == 0 || d > 3)
				break;
			if (++groups == 2)
				break;
			if (*p != '.')
				break;
			p++;
		}
		if (groups == 2 && (*p == ' ' || *p == '\0') && (size_t)(p - s) < sizeof(r->enh)) {
			memcpy(r->enh, s, (size_t)(p - s));
			r->enh[p - s] = '\0';
			while (*p == ' ')
				p++;
			s = p;
		}
	}
	snprintf(r->text, sizeof(r->text), "%s", s);
}

static void on_reply(struct smtpc *c)
{
	const struct smtpc_reply *r = &c->cur;
	switch (c->st) {
	case SMTPC_GREETING:
		if (r->code != 220) {
			conn_fail(c, SMTPC_CAUSE_CONNECT, "greeting", r);
			return;
		}
		c->ehlo_ext = 0;
		c->ehlo_size_max = 0;
		c->st = SMTPC_EHLO;
		emitf(c, "EHLO %s\r\n", c->helo);
		return;
	case SMTPC_EHLO:
		if (r->code == 250) {
			c->ext = c->tried_helo ? 0 : c->ehlo_ext;
			c->size_max = c->tried_helo ? 0 : c->ehlo_size_max;
			c->st = SMTPC_READY;
			return;
		}
		if (!c->tried_helo && r->code / 100 == 5) {
			c->tried_helo = true;
			emitf(c, "HELO %s\r\n", c->helo);
			return;
		}
		conn_fail(c, r->code == 421 ? SMTPC_CAUSE_LOST : SMTPC_CAUSE_CONNECT,
			  c->tried_helo ? "HELO" : "EHLO", r);
		return;
	case SMTPC_READY:
		/* Unasked: a backend dropping an idle connection says 421. */
		conn_fail(c, SMTPC_CAUSE_LOST, "idle", r);
		return;
	case SMTPC_BUSY:
		txn_reply(c);
		fill(c);
		return;
	case SMTPC_QUITTING:
		c->st = SMTPC_CLOSED;
		return;
	case SMTPC_CLOSED:
		return;
	}
}

static void protocol_error(struct smtpc *c)
{
	struct smtpc_reply r;
	memset(&r, 0, sizeof(r));
	snprintf(r.text, sizeof(r.text), "malformed reply line");
	if (c->st == SMTPC_BUSY)
		set_outcome(c, 4, SMTPC_CAUSE_PROTOCOL, "reply", &r);
	if (c->st == SMTPC_QUITTING)
		c->st = SMTPC_CLOSED;
	else
		conn_fail(c, c->st < SMTPC_READY ? SMTPC_CAUSE_CONNECT : SMTPC_CAUSE_PROTOCOL,
			  "reply", &r);
}

static void on_line(struct smtpc *c)
{
	const char *l = c->line;
	if (c->line_len < 3 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '9' || l[2] < '0' ||
	    l[2] > '9' || (c->line_len > 3 && l[3] != ' ' && l[3] != '-')) {
		protocol_error(c);
		return;
	}
	int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
	bool more = c->line_len > 3 && l[3] == '-';
	const char *text = c->line_len > 3 ? l + 4 : "";
	if (c->reply_lines == 0) {
		memset(&c->cur, 0, sizeof(c->cur));
		c->cur.code = code;
		split_enh(&c->cur, text);
	} else if (code != c->cur.code) {
		protocol_error(c);
		return;
	} else if (c->st == SMTPC_EHLO && !c->tried_helo && code == 250) {
		parse_ext(c, text);
	}
	if (more) {
		c->reply_lines++;
		return;
	}
	c->reply_lines = 0;
	on_reply(c);
}

/* ---- public ---- */

void smtpc_init(struct smtpc *c, const char *helo_name)
{
	memset(c, 0, offsetof(struct smtpc, out)); /* not the 64 KiB buffer */
	snprintf(c->helo, sizeof(c->helo), "%s", helo_name && *helo_name ? helo_name : "localhost");
	c->st = SMTPC_GREETING;
}

void smtpc_feed(struct smtpc *c, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n && c->st != SMTPC_CLOSED; i++) {
		if (p[i] != '\n') {
			if (c->line_len < SMTPC_LINE_MAX)
				c->line[c->line_len++] = (char)p[i];
			continue;
		}
		if (c->line_len > 0 && c->line[c->line_len - 1] == '\r')
			c->line_len--;
		c->line[c->line_len] = '\0';
		on_line(c);
		c->line_len = 0;
	}
}

const uint8_t *smtpc_output(const struct smtpc *c, size_t *len)
{
	*len = c->out_len - c->out_off;
	return c->out + c->out_off;
}

void smtpc_consume(struct smtpc *c, size_t n)
{
	size_t have = c->out_len - c->out_off;
	c->out_off += n < have ? n : have;
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	fill(c);
}

enum smtpc_state smtpc_state(const struct smtpc *c)
{
	return c->st;
}

enum smtpc_wait smtpc_waiting(const struct smtpc *c)
{
	switch (c->st) {
	case SMTPC_GREETING:
	case SMTPC_EHLO:
	case SMTPC_QUITTING:
		return SMTPC_WAIT_REPLY;
	case SMTPC_BUSY:
		if (c->nchunks > 0 || c->last_emitted || c->data_go)
			return SMTPC_WAIT_CONTENT;
		return SMTPC_WAIT_REPLY;
	case SMTPC_READY:
	case SMTPC_CLOSED:
		break;
	}
	return SMTPC_WAIT_NONE;
}

unsigned smtpc_extensions(const struct smtpc *c, uint64_t *size_max)
{
	if (size_max)
		*size_max = c->size_max;
	return c->ext;
}

/* An address goes between <> on a command line as the engine accepted it
 * (a quoted local part may hold a space): it must not be able to end the
 * line. */
static bool sendable(const char *a, bool utf8)
{
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)a; *p; p++, n++)
		if (*p < 0x20 || *p == 0x7f || (*p >= 0x80 && !utf8))
			return false;
	return n < SMTP_PATH_MAX;
}

static void local_outcome(struct smtpc *c, const char *enh, const char *text)
{
	struct smtpc_reply r;
	memset(&r, 0, sizeof(r));
	snprintf(r.enh, sizeof(r.enh), "%s", enh);
	snprintf(r.text, sizeof(r.text), "%s", text);
	memset(&c->oc, 0, sizeof(c->oc));
	c->oc.status = 5;
	c->oc.cause = SMTPC_CAUSE_LOCAL;
	c->oc.stage = "MAIL";
	c->oc.reply = r;
	c->oc.nrcpt = c->t.nrcpt;
	c->have_outcome = true;
	c->outcome_taken = false;
}

bool smtpc_begin(struct smtpc *c, const struct smtpc_txn *t)
{
	c->t = *t;
	c->have_outcome = false;
	c->outcome_taken = false;
	if (c->st != SMTPC_READY || t->nrcpt == 0) {
		local_outcome(c, "5.3.0", "internal error: no transaction possible");
		c->oc.status = 4;
		c->oc.cause = SMTPC_CAUSE_ERROR;
		return false;
	}
	if (t->smtputf8 && !(c->ext & SMTPC_EXT_SMTPUTF8)) {
		local_outcome(c, "5.6.7", "the backend does not accept SMTPUTF8 messages");
		return false;
	}
	if ((c->ext & SMTPC_EXT_SIZE) && c->size_max && t->size > c->size_max) {
		local_outcome(c, "5.3.4", "message larger than the backend accepts");
		return false;
	}
	bool ok = sendable(t->mail_from, t->smtputf8);
	for (unsigned i = 0; ok && i < t->nrcpt; i++)
		ok = t->rcpt[i] && t->rcpt[i][0] && sendable(t->rcpt[i], t->smtputf8);
	if (!ok) {
		local_outcome(c, "5.1.3", "an address cannot be relayed");
		return false;
	}
	c->pipelining = (c->ext & SMTPC_EXT_PIPELINING) != 0;
	c->chunking = (c->ext & SMTPC_EXT_CHUNKING) != 0;
	c->nsent = c->nreplied = 0;
	c->rcpt_emitted = 0;
	c->mail_emitted = false;
	c->env_failed = c->any_4xx = false;
	memset(&c->first_fail, 0, sizeof(c->first_fail));
	c->first_fail_stage = NULL;
	c->rcpt_failed = c->rcpt_answered = 0;
	c->data_emitted = c->data_go = c->dot_emitted = false;
	c->nchunks = c->chunk_left = 0;
	c->last_emitted = false;
	c->content_off = 0;
	c->bol = true;
	c->tail[0] = c->tail[1] = 0;
	c->failed = false;
	c->rset_emitted = false;
	c->rset_pos = 0;
	c->txn_replies = 0;
	c->st = SMTPC_BUSY;
	fill(c);
	return true;
}

size_t smtpc_content_want(const struct smtpc *c, uint64_t *offset)
{
	*offset = c->content_off;
	if (c->st != SMTPC_BUSY)
		return 0;
	uint64_t n = 0;
	if (c->chunking)
		n = c->chunk_left;
	else if (c->data_go && !c->failed && !c->dot_emitted)
		n = c->t.size - c->content_off;
	return n > SIZE_MAX ? SIZE_MAX : (size_t)n;
}

/* DATA: dot-stuffing (RFC 5321 4.5.2).  The content is canonical (CRLF
 * line ends only; the engine refuses anything else), so a line starts
 * after every LF. */
static size_t stuff(struct smtpc *c, const uint8_t *p, size_t n)
{
	out_compact(c);
	size_t i = 0;
	while (i < n) {
		size_t room = out_free(c);
		if (room == 0)
			break;
		if (c->bol && p[i] == '.') {
			if (room < 2)
				break;
			c->out[c->out_len++] = '.';
			room--;
		}
		/* the rest of this line, as far as it fits */
		size_t take = n - i < room ? n - i : room;
		const uint8_t *lf = memchr(p + i, '\n', take);
		if (lf)
			take = (size_t)(lf - (p + i)) + 1;
		out_put(c, p + i, take);
		c->bol = lf != NULL;
		i += take;
	}
	return i;
}

size_t smtpc_content(struct smtpc *c, const uint8_t *p, size_t n)
{
	uint64_t off;
	size_t want = smtpc_content_want(c, &off);
	if (n > want)
		n = want;
	if (n == 0)
		return 0;
	size_t took;
	if (c->chunking) {
		out_compact(c);
		took = n < out_free(c) ? n : out_free(c);
		out_put(c, p, took);
		c->chunk_left -= took;
	} else {
		took = stuff(c, p, n);
	}
	if (took >= 2) {
		c->tail[0] = p[took - 2];
		c->tail[1] = p[took - 1];
	} else if (took == 1) {
		c->tail[0] = c->tail[1];
		c->tail[1] = p[0];
	}
	c->content_off += took;
	fill(c);
	return took;
}

bool smtpc_outcome(struct smtpc *c, struct smtpc_outcome *out)
{
	if (!c->have_outcome || c->outcome_taken)
		return false;
	c->outcome_taken = true;
	*out = c->oc;
	return true;
}

void smtpc_broken(struct smtpc *c, enum smtpc_cause cause)
{
	switch (c->st) {
	case SMTPC_GREETING:
	case SMTPC_EHLO:
		/* Whatever broke, the connection never became usable. */
		conn_fail(c, SMTPC_CAUSE_CONNECT, c->st == SMTPC_GREETING ? "greeting" : "EHLO",
			  NULL);
		snprintf(c->fail.reply.text, sizeof(c->fail.reply.text), "%s",
			 cause == SMTPC_CAUSE_TIMEOUT ? "no answer in time" : "connection closed");
		return;
	case SMTPC_BUSY:
		set_outcome(c, 4, cause, kind_name(kind_at(c, c->nreplied)), NULL);
		conn_fail(c, cause, c->oc.stage, NULL);
		return;
	case SMTPC_READY:
		conn_fail(c, cause, "idle", NULL);
		return;
	case SMTPC_QUITTING:
	case SMTPC_CLOSED:
		c->st = SMTPC_CLOSED;
		return;
	}
}

const struct smtpc_outcome *smtpc_failure(const struct smtpc *c)
{
	return &c->fail;
}

void smtpc_quit(struct smtpc *c)
{
	if (c->st != SMTPC_READY)
		return;
	if (emitf(c, "QUIT\r\n"))
		c->st = SMTPC_QUITTING;
	else
		c->st = SMTPC_CLOSED;
}

/* ---- what the gateway's client is told ---- */

/* The backend's reply for our client's eyes: only printable ASCII, and
 * without double quotes, so it cannot end the quoting or the line; an
 * unprintable text is left out rather than mangled. */
static void quote(char *dst, size_t len, const struct smtpc_reply *r)
{
	dst[0] = '\0';
	if (r->code == 0)
		return;
	bool safe = true;
	for (const char *p = r->text; *p; p++)
		if (*p < 0x20 || *p > 0x7e || *p == '"')
			safe = false;
	snprintf(dst, len, " (backend: \"%d%s%s%s%.200s\")", r->code, r->enh[0] ? " " : "", r->enh,
		 safe && r->text[0] ? " " : "", safe ? r->text : "");
}

/* The backend's enhanced code when it says what the reply class says. */
static const char *enh_or(const struct smtpc_reply *r, int status, const char *dflt)
{
	if (r->code / 100 == status && r->enh[0] == (char)('0' + status))
		return r->enh;
	return dflt;
}

void smtpc_client_reply(const struct smtpc_outcome *o, struct smtp_reply *r)
{
	char q[SMTPC_TEXT_MAX + 64];
	char text[SMTP_REPLY_TEXT_MAX];
	const char *stage = o->stage ? o->stage : "connection";
	quote(q, sizeof(q), &o->reply);

	switch (o->cause) {
	case SMTPC_CAUSE_OK:
		snprintf(text, sizeof(text), "Ok: relayed%s", q);
		smtp_reply_set(r, 250, "2.0.0", text);
		return;
	case SMTPC_CAUSE_REPLY: {
		int st = o->status == 4 ? 4 : 5;
		const char *what = "the message";
		char many[64];
		if (strcmp(stage, "MAIL") == 0) {
			what = "the sender";
		} else if (o->rcpt_failed > 0 && o->rcpt_failed == o->nrcpt) {
			what = o->nrcpt > 1 ? "the recipients" : "the recipient";
		} else if (o->rcpt_failed > 0 && o->rcpt_answered == o->nrcpt) {
			snprintf(many, sizeof(many), "%u of %u recipients (relayed to none)",
				 o->rcpt_failed, o->nrcpt);
			what = many;
		} else if (o->rcpt_failed > 0) {
			/* one command at a time stops at the first refusal */
			what = "a recipient (relayed to none)";
		}
		snprintf(text, sizeof(text), "Backend refused %s%s%s", what, q,
			 st == 4 ? "; try again later" : "");
		smtp_reply_set(r, st == 4 ? 451 : 554,
			       enh_or(&o->reply, st, st == 4 ? "4.4.0" : "5.0.0"), text);
		return;
	}
	case SMTPC_CAUSE_CONNECT:
		if (o->reply.code)
			snprintf(text, sizeof(text),
				 "Backend not available at %s%s; try again later", stage, q);
		else
			snprintf(text, sizeof(text),
				 "Backend not reachable (%s%s%.120s); try again later", stage,
				 o->reply.text[0] ? ": " : "", o->reply.text);
		smtp_reply_set(r, 451, "4.4.1", text);
		return;
	case SMTPC_CAUSE_TIMEOUT:
		snprintf(text, sizeof(text), "Backend did not answer in time (%s); try again later",
			 stage);
		smtp_reply_set(r, 451, "4.4.2", text);
		return;
	case SMTPC_CAUSE_LOST:
		snprintf(text, sizeof(text),
			 "Connection to the backend lost (%s)%s; try again later", stage, q);
		smtp_reply_set(r, 451, "4.4.2", text);
		return;
	case SMTPC_CAUSE_PROTOCOL:
		snprintf(text, sizeof(text), "Backend sent a malformed reply (%s); try again later",
			 stage);
		smtp_reply_set(r, 451, "4.4.0", text);
		return;
	case SMTPC_CAUSE_LOCAL:
		snprintf(text, sizeof(text), "Cannot relay: %s", o->reply.text);
		smtp_reply_set(r, 554, o->reply.enh[0] == '5' ? o->reply.enh : "5.0.0", text);
		return;
	case SMTPC_CAUSE_ERROR:
		break;
	}
	smtp_reply_set(r, 451, "4.3.0", "Local error relaying the message; try again later");
}
