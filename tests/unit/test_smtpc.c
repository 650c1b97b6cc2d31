/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The relay's SMTP client against scripted server replies.
 *
 * Every scenario runs twice: replies fed whole with the output taken at
 * once, and replies fed byte by byte with the output taken and the content
 * given in small odd-sized pieces.  The bytes sent must be the same both
 * ways, so nothing depends on how TCP segments either direction.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "gateway/delivery/smtpc.h"

struct h {
	struct smtpc c;
	bool bytewise;
	char *sent;
	size_t len, cap;
	const uint8_t *content;
	size_t clen;
};

static void append(struct h *h, const uint8_t *p, size_t n)
{
	if (h->len + n + 1 > h->cap) {
		h->cap = (h->len + n + 1) * 2;
		h->sent = realloc(h->sent, h->cap);
		assert_non_null(h->sent);
	}
	memcpy(h->sent + h->len, p, n);
	h->len += n;
	h->sent[h->len] = '\0';
}

/* What a socket would do: take the output, give content when asked. */
static void drain(struct h *h)
{
	for (;;) {
		bool moved = false;
		uint64_t off;
		size_t want;
		while ((want = smtpc_content_want(&h->c, &off)) > 0) {
			assert_true(off <= h->clen);
			size_t n = h->clen - off < want ? h->clen - off : want;
			if (h->bytewise && n > 3)
				n = 3;
			size_t took = smtpc_content(&h->c, h->content + off, n);
			if (took == 0)
				break;
			moved = true;
		}
		size_t len;
		const uint8_t *p = smtpc_output(&h->c, &len);
		if (len) {
			if (h->bytewise && len > 7)
				len = 7;
			append(h, p, len);
			smtpc_consume(&h->c, len);
			moved = true;
		}
		if (!moved)
			return;
	}
}

static void srv(struct h *h, const char *s)
{
	size_t n = strlen(s);
	if (!h->bytewise) {
		smtpc_feed(&h->c, (const uint8_t *)s, n);
		drain(h);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		smtpc_feed(&h->c, (const uint8_t *)s + i, 1);
		drain(h);
	}
}

/* What was sent since the last call. */
static void expect_sent(struct h *h, const char *want)
{
	drain(h);
	if (strcmp(h->sent ? h->sent : "", want) != 0)
		fail_msg("sent:\n[%s]\nwanted:\n[%s]", h->sent ? h->sent : "", want);
	h->len = 0;
	if (h->sent)
		h->sent[0] = '\0';
}

static struct h *new_h(bool bytewise)
{
	struct h *h = calloc(1, sizeof(*h));
	assert_non_null(h);
	h->bytewise = bytewise;
	smtpc_init(&h->c, "gw.test");
	return h;
}

static void free_h(struct h *h)
{
	free(h->sent);
	free(h);
}

#define EXT_ALL                                                                        \
	"250-mx.test Hello\r\n250-PIPELINING\r\n250-SIZE 10000000\r\n250-8BITMIME\r\n" \
	"250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n"
#define EXT_PIPE "250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
#define EXT_NONE "250 mx.test\r\n"

static struct h *ready(bool bytewise, const char *ehlo_reply)
{
	struct h *h = new_h(bytewise);
	assert_int_equal(smtpc_state(&h->c), SMTPC_GREETING);
	srv(h, "220 mx.test ESMTP\r\n");
	expect_sent(h, "EHLO gw.test\r\n");
	srv(h, ehlo_reply);
	assert_int_equal(smtpc_state(&h->c), SMTPC_READY);
	return h;
}

static const char *const two[] = { "x@example.net", "y@example.net" };
static const char *const three[] = { "x@example.net", "y@example.net", "z@example.net" };

static void begin(struct h *h, const char *content, const char *const *rcpt, unsigned n)
{
	h->content = (const uint8_t *)content;
	h->clen = strlen(content);
	struct smtpc_txn t = {
		.mail_from = "a@example.com",
		.rcpt = rcpt,
		.nrcpt = n,
		.size = h->clen,
	};
	assert_true(smtpc_begin(&h->c, &t));
}

static struct smtpc_outcome outcome(struct h *h)
{
	struct smtpc_outcome o;
	assert_true(smtpc_outcome(&h->c, &o));
	assert_false(smtpc_outcome(&h->c, &o)); /* once */
	return o;
}

static void no_outcome(struct h *h)
{
	struct smtpc_outcome o;
	assert_false(smtpc_outcome(&h->c, &o));
}

static void client_reply_is(const struct smtpc_outcome *o, int code, const char *enh,
			    const char *text_part)
{
	struct smtp_reply r;
	smtpc_client_reply(o, &r);
	assert_int_equal(r.code, code);
	assert_string_equal(r.enh, enh);
	if (!strstr(r.text, text_part))
		fail_msg("reply text [%s] lacks [%s]", r.text, text_part);
}

/* ---- scenarios; each runs whole and byte by byte ---- */

static void sc_extensions(bool bw)
{
	struct h *h = ready(bw, EXT_ALL);
	uint64_t size;
	unsigned ext = smtpc_extensions(&h->c, &size);
	assert_int_equal(ext, SMTPC_EXT_PIPELINING | SMTPC_EXT_SIZE | SMTPC_EXT_8BITMIME |
				      SMTPC_EXT_ENHANCEDSTATUSCODES | SMTPC_EXT_SMTPUTF8 |
				      SMTPC_EXT_CHUNKING);
	assert_int_equal(size, 10000000);
	assert_int_equal(smtpc_waiting(&h->c), SMTPC_WAIT_NONE);
	smtpc_quit(&h->c);
	expect_sent(h, "QUIT\r\n");
	assert_int_equal(smtpc_state(&h->c), SMTPC_QUITTING);
	srv(h, "221 2.0.0 Bye\r\n");
	assert_int_equal(smtpc_state(&h->c), SMTPC_CLOSED);
	free_h(h);
}

static void sc_helo_fallback(bool bw)
{
	struct h *h = new_h(bw);
	srv(h, "220-mx.test first line\r\n220 second line\r\n");
	expect_sent(h, "EHLO gw.test\r\n");
	srv(h, "502 5.5.2 Command not recognized\r\n");
	expect_sent(h, "HELO gw.test\r\n");
	srv(h, "250 mx.test\r\n");
	assert_int_equal(smtpc_state(&h->c), SMTPC_READY);
	assert_int_equal(smtpc_extensions(&h->c, NULL), 0);
	/* no PIPELINING, no CHUNKING: one command at a time and DATA */
	begin(h, "Subject: x\r\n\r\nhi\r\n", two, 1);
	expect_sent(h, "MAIL FROM:<a@example.com>\r\n");
	srv(h, "250 ok\r\n");
	expect_sent(h, "RCPT TO:<x@example.net>\r\n");
	srv(h, "250 ok\r\n");
	expect_sent(h, "DATA\r\n");
	srv(h, "354 go\r\n");
	expect_sent(h, "Subject: x\r\n\r\nhi\r\n.\r\n");
	no_outcome(h);
	assert_int_equal(smtpc_waiting(&h->c), SMTPC_WAIT_CONTENT);
	srv(h, "250 queued\r\n");
	struct smtpc_outcome o = outcome(h);
	assert_int_equal(o.status, 2);
	client_reply_is(&o, 250, "2.0.0", "backend: \"250 queued\"");
	assert_int_equal(smtpc_state(&h->c), SMTPC_READY);
	free_h(h);
}

static void sc_greeting_refused(bool bw)
{
	struct h *h = new_h(bw);
	srv(h, "554 5.3.2 mx.test no service\r\n");
	expect_sent(h, "");
	assert_int_equal(smtpc_state(&h->c), SMTPC_CLOSED);
	const struct smtpc_outcome *f = smtpc_failure(&h->c);
	assert_int_equal(f->cause, SMTPC_CAUSE_CONNECT);
	client_reply_is(f, 451, "4.4.1", "\"554 5.3.2 mx.test no service\"");
	free_h(h);
}

static void sc_ehlo_421(bool bw)
{
	struct h *h = new_h(bw);
	srv(h, "220 mx\r\n");
	expect_sent(h, "EHLO gw.test\r\n");
	srv(h, "421 4.3.2 going away\r\n");
	assert_int_equal(smtpc_state(&h->c), SMTPC_CLOSED);
	expect_sent(h, "");
	free_h(h);
}

static void sc_pipelined_bdat(bool bw)
{
	struct h *h = ready(bw, EXT_ALL);
	begin(h, "Subject: x\r\n\r\n.dot stays\r\nno final crlf", two, 2);
	/* envelope and content in one go, the commit held back */
	expect_sent(h, "MAIL FROM:<a@example.com> SIZE=39\r\n"
		       "RCPT TO:<x@example.net>\r\nRCPT TO:<y@example.net>\r\n"
		       "BDAT 39\r\nSubject: x\r\n\r\n.dot stays\r\nno final crlf");
	assert_int_equal(smtpc_waiting(&h->c), SMTPC_WAIT_CONTENT);
	srv(h, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n");
	expect_sent(h, "");
	srv(h, "250 2.1.5 ok\r\n");
	expect_sent(h, "BDAT 0 LAST\r\n");
	srv(h, "250 2.0.0 39 octets received\r\n");
	no_outcome(h);
	srv(h, "250 2.0.0 Ok: queued as 4XyZ\r\n");
	struct smtpc_outcome o = outcome(h);
	assert_int_equal(o.status, 2);
	client_reply_is(&o, 250, "2.0.0",
			"Ok: relayed (backend: \"250 2.0.0 Ok: queued as 4XyZ\")");
	assert_int_equal(smtpc_state(&h->c), SMTPC_READY);

	/* the next message on the same connection starts at once, no RSET */
	begin(h, "", two, 1);
	expect_sent(h, "MAIL FROM:<a@example.com> SIZE=0\r\nRCPT TO:<x@example.net>\r\n");
	srv(h, "250 ok\r\n250 ok\r\n");
	expect_sent(h, "BDAT 0 LAST\r\n");
	srv(h, "250 ok\r\n");
	assert_int_equal(outcome(h).status, 2);
	free_h(h);
}

static void sc_pipelined_data_stuffing(bool bw)
{
	struct h *h = ready(bw, EXT_PIPE);
	begin(h, ".a\r\n..b\r\nc.\r\n.\r\nend", two, 1);
	expect_sent(h, "MAIL FROM:<a@example.com>\r\nRCPT TO:<x@example.net>\r\nDATA\r\n");
	srv(h, "250 ok\r\n250 ok\r\n354 go\r\n");
	/* stuffed, and the missing CRLF added before the dot */
	expect_sent(h, "..a\r\n...b\r\nc.\r\n..\r\nend\r\n.\r\n");
	srv(h, "250 ok\r\n");
	assert_int_equal(outcome(h).status, 2);
	free_h(h);
}

static void sc_partial_rcpt_bdat(bool bw)
{
	struct h *h = ready(bw, EXT_ALL);
	begin(h, "hello\r\n", three, 3);
	expect_sent(h, "MAIL FROM:<a@example.com> SIZE=7\r\nRCPT TO:<x@example.net>\r\n"
		       "RCPT TO:<y@example.net>\r\nRCPT TO:<z@example.net>\r\nBDAT 7\r\nhello\r\n");
	srv(h, "250 ok\r\n250 ok\r\n550 5.1.1 <y@example.net>: unknown\r\n");
	no_outcome(h);
	srv(h, "250 ok\r\n");
	/* never the commit; RSET instead */
	struct smtpc_outcome o = outcome(h);
	expect_sent(h, "RSET\r\n");
	assert_int_equal(o.status, 5);
	assert_int_equal(o.rcpt_failed, 1);
	client_reply_is(&o, 554, "5.1.1", "1 of 3 recipients (relayed to none)");
	assert_int_equal(smtpc_state(&h->c), SMTPC_BUSY);
	srv(h, "250 2.0.0 chunk ok\r\n");
	assert_int_equal(smtpc_state(&h->c), SMTPC_BUSY);
	srv(h, "250 2.0.0 reset\r\n");
	assert_int_equal(smtpc_state(&h->c), SMTPC_READY);
	free_h(h);
}

static void sc_partial_rcpt_4xx(bool bw)
{
	struct h *h = ready(bw, EXT_ALL);
	begin(h, "hello\r\n", three, 3);
	expect_sent(h, "MAIL FROM:<a@example.com> SIZE=7\r\nRCPT TO:<x@example.net>\r\n"
		       "RCPT TO:<y@example.net>\r\nRCPT TO:<z@example.net>\r\nBDAT 7\r\nhello\r\n");
	srv(h, "250 ok\r\n550 5.1.1 no\r\n452 4.2.2 full\r\n250 ok\r\n");
	struct smtpc_outcome o = outcome(h);
	assert_int_equal(o.status, 4);
	assert_int_equal(o.rcpt_failed, 2);
	/* the first refusal is quoted; a 4xx among them makes it 451 */
	client_reply_is(&o, 451, "4.4.0", "\"550 5.1.1 no\"");
	expect_sent(h, "RSET\r\n");
	srv(h, "503 5.5.1 no valid recipients\r\n250 ok\r\n");
	assert_int_equal(smtpc_state(&h->c), SMTPC_READY);
	free_h(h);
}

static void sc_all_rcpt_fail_lockstep(bool bw)
{
	struct h *h = ready(bw, EXT_NONE);
	begin(h, "x\r\n", two, 2);
	expect_sent(h, "MAIL FROM:<a@example.com>\r\n");
	srv(h, "250 ok\r\n");
	expect_sent(h, "RCPT TO:<x@example.net>\r\n");
	srv(h, "450 4.7.1 greylisted\r\n");
	struct smtpc_outcome o = outcome(h);
	assert_int_equal(o.status, 4);
	client_reply_is(&o, 451, "4.7.1",
			"a recipient (relayed to none) (backend: \"450 4.7.1 greylisted\")");
	expect_sent(h, "RSET\r\n");
	srv(h, "250 ok\r\n");
	assert_int_equal(smtpc_state(&h->c), SMTPC_READY);
	free_h(h);
}

static void sc_data_abandon(bool bw)
{
	struct h *h = ready(bw, EXT_PIPE);
	begin(h, "content\r\n", two, 2);
	expect_sent(h, "MAIL FROM:<a@example.com>\r\nRCPT TO:<x@example.net>\r\n"
		       "RCPT TO:<y@example.net>\r\nDATA\r\n");
	srv(h, "250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n");
	struct smtpc_outcome o = outcome(h);
	assert_int_equal(o.status, 5);
	/* a 354 now: content would commit for x alone, so the connection goes */
	srv(h, "354 go ahead\r\n");
	expect_sent(h, "");
	assert_int_equal(smtpc_state(&h->c), SMTPC_CLOSED);
	free_h(h);
}

static void sc_data_refused_after_envelope(bool bw)
{
	struct h *h = ready(bw, EXT_PIPE);
	begin(h, "content\r\n", two, 1);
	expect_sent(h, "MAIL FROM:<a@example.com>\r\nRCPT TO:<x@example.net>\r\nDATA\r\n");
	srv(h, "250 ok\r\n550 5.7.1 relay denied\r\n");
	expect_sent(h, ""); /* no RSET while DATA's reply is outstanding */
	srv(h, "554 5.5.1 no valid recipients\r\n");
	struct smtpc_outcome o = outcome(h);
	client_reply_is(&o, 554, "5.7.1", "the recipient (backend: \"550 5.7.1 relay denied\")");
	expect_sent(h, "RSET\r\n");
	srv(h, "250 ok\r\n");
	assert_int_equal(smtpc_state(&h->c), SMTPC_READY);
	free_h(h);
}

static void sc_mail_refused(bool bw)
{
	struct h *h = ready(bw, EXT_ALL);
	begin(h, "x\r\n", two, 1);
	expect_sent(
		h,
		"MAIL FROM:<a@example.com> SIZE=3\r\nRCPT TO:<x@example.net>\r\nBDAT 3\r\nx\r\n");
	srv(h, "553 5.1.8 bad sender\r\n503 5.5.1 need MAIL\r\n");
	struct smtpc_outcome o = outcome(h);
	client_reply_is(&o, 554, "5.1.8", "Backend refused the sender");
	expect_sent(h, "RSET\r\n");
	srv(h, "503 5.5.1 need MAIL\r\n250 ok\r\n");
	assert_int_equal(smtpc_state(&h->c), SMTPC_READY);
	free_h(h);
}

static void sc_final_4xx(bool bw)
{
	struct h *h = ready(bw, EXT_ALL);
	begin(h, "x\r\n", two, 1);
	expect_sent(
		h,
		"MAIL FROM:<a@example.com> SIZE=3\r\nRCPT TO:<x@example.net>\r\nBDAT 3\r\nx\r\n");
	srv(h, "250 ok\r\n250 ok\r\n250 ok\r\n");
	expect_sent(h, "BDAT 0 LAST\r\n");
	srv(h, "452 4.3.1 Insufficient system storage\r\n");
	struct smtpc_outcome o = outcome(h);
	client_reply_is(&o, 451, "4.3.1",
			"message (backend: \"452 4.3.1 Insufficient system storage\")");
	expect_sent(h, "RSET\r\n");
	srv(h, "250 ok\r\n");
	assert_int_equal(smtpc_state(&h->c), SMTPC_READY);
	free_h(h);
}

static void sc_final_5xx_unsafe_text(bool bw)
{
	struct h *h = ready(bw, EXT_PIPE);
	begin(h, "x\r\n", two, 1);
	expect_sent(h, "MAIL FROM:<a@example.com>\r\nRCPT TO:<x@example.net>\r\nDATA\r\n");
	srv(h, "250 ok\r\n250 ok\r\n354 go\r\n");
	expect_sent(h, "x\r\n.\r\n");
	srv(h, "554 spam \"detected\"\r\n");
	struct smtpc_outcome o = outcome(h);
	struct smtp_reply r;
	smtpc_client_reply(&o, &r);
	assert_int_equal(r.code, 554);
	assert_string_equal(r.enh, "5.0.0");
	assert_string_equal(r.text, "Backend refused the message (backend: \"554\")");
	free_h(h);
}

static void sc_421_retryable(bool bw)
{
	struct h *h = ready(bw, EXT_ALL);
	begin(h, "x\r\n", two, 1);
	drain(h);
	srv(h, "421 4.4.2 mx.test timeout, closing\r\n");
	struct smtpc_outcome o = outcome(h);
	assert_int_equal(o.cause, SMTPC_CAUSE_LOST);
	assert_true(o.retryable);
	client_reply_is(&o, 451, "4.4.2", "lost (MAIL)");
	assert_int_equal(smtpc_state(&h->c), SMTPC_CLOSED);
	free_h(h);
}

static void sc_broken(bool bw)
{
	struct h *h = ready(bw, EXT_ALL);
	begin(h, "x\r\n", two, 1);
	drain(h);
	srv(h, "250 ok\r\n");
	smtpc_broken(&h->c, SMTPC_CAUSE_TIMEOUT);
	struct smtpc_outcome o = outcome(h);
	assert_false(o.retryable);
	client_reply_is(&o, 451, "4.4.2", "did not answer in time (RCPT)");
	assert_int_equal(smtpc_state(&h->c), SMTPC_CLOSED);
	free_h(h);

	h = ready(bw, EXT_ALL);
	begin(h, "x\r\n", two, 1);
	drain(h);
	smtpc_broken(&h->c, SMTPC_CAUSE_LOST);
	o = outcome(h);
	assert_true(o.retryable);
	free_h(h);
}

static void sc_multiline_and_garbage(bool bw)
{
	/* a line longer than SMTPC_LINE_MAX is cut, not fatal */
	struct h *h = new_h(bw);
	char big[3000];
	memset(big, 'x', sizeof(big));
	memcpy(big, "220-", 4);
	memcpy(big + sizeof(big) - 3, "\r\n", 3);
	srv(h, big);
	srv(h, "220 fine\r\n");
	expect_sent(h, "EHLO gw.test\r\n");
	srv(h, EXT_PIPE);
	begin(h, "x\r\n", two, 1);
	drain(h);
	h->len = 0;
	srv(h, "250-first\r\n251 mismatch\r\n");
	struct smtpc_outcome o = outcome(h);
	assert_int_equal(o.cause, SMTPC_CAUSE_PROTOCOL);
	client_reply_is(&o, 451, "4.4.0", "malformed");
	assert_int_equal(smtpc_state(&h->c), SMTPC_CLOSED);
	free_h(h);

	h = ready(bw, EXT_PIPE);
	srv(h, "hello?\r\n");
	assert_int_equal(smtpc_state(&h->c), SMTPC_CLOSED);
	assert_int_equal(smtpc_failure(&h->c)->cause, SMTPC_CAUSE_PROTOCOL);
	free_h(h);

	/* an idle connection the backend drops */
	h = ready(bw, EXT_PIPE);
	srv(h, "421 4.4.2 idle too long\r\n");
	assert_int_equal(smtpc_state(&h->c), SMTPC_CLOSED);
	assert_int_equal(smtpc_failure(&h->c)->cause, SMTPC_CAUSE_LOST);
	free_h(h);
}

static void sc_local_refusals(bool bw)
{
	struct h *h = ready(bw, "250-mx\r\n250-SIZE 10\r\n250 PIPELINING\r\n");
	struct smtpc_txn t = { .mail_from = "a@b", .rcpt = two, .nrcpt = 1, .size = 11 };
	assert_false(smtpc_begin(&h->c, &t));
	struct smtpc_outcome o = outcome(h);
	client_reply_is(&o, 554, "5.3.4", "larger than the backend accepts");
	assert_int_equal(smtpc_state(&h->c), SMTPC_READY);
	t.size = 10;
	t.smtputf8 = true;
	assert_false(smtpc_begin(&h->c, &t));
	o = outcome(h);
	client_reply_is(&o, 554, "5.6.7", "SMTPUTF8");
	const char *const evil[] = { "x@y>\r\nRSET" };
	t.smtputf8 = false;
	t.rcpt = evil;
	assert_false(smtpc_begin(&h->c, &t));
	o = outcome(h);
	assert_int_equal(o.cause, SMTPC_CAUSE_LOCAL);
	expect_sent(h, "");
	free_h(h);
}

static void sc_params(bool bw)
{
	struct h *h = ready(bw, EXT_ALL);
	static const char *const u[] = { "j\xc3\xb6rg@example.net" };
	struct smtpc_txn t = {
		.mail_from = "", .rcpt = u, .nrcpt = 1, .size = 0, .body8 = true, .smtputf8 = true
	};
	h->clen = 0;
	assert_true(smtpc_begin(&h->c, &t));
	expect_sent(h, "MAIL FROM:<> SIZE=0 BODY=8BITMIME SMTPUTF8\r\n"
		       "RCPT TO:<j\xc3\xb6rg@example.net>\r\n");
	free_h(h);
	/* no 8BITMIME offered: no BODY= */
	h = ready(bw, "250-mx\r\n250 PIPELINING\r\n");
	static const char *const a[] = { "a@b" };
	t.rcpt = a;
	t.smtputf8 = false;
	assert_true(smtpc_begin(&h->c, &t));
	expect_sent(h, "MAIL FROM:<>\r\nRCPT TO:<a@b>\r\nDATA\r\n");
	free_h(h);
}

/* Larger than the output buffer: content flows through it intact. */
static void sc_big(bool bw)
{
	size_t n = 3 * SMTPC_OUT_BUF + 12345;
	char *msg = malloc(n + 1);
	assert_non_null(msg);
	for (size_t i = 0; i < n; i++)
		msg[i] = (i % 80 == 78) ? '\r' : (i % 80 == 79) ? '\n' : (i % 80 == 0) ? '.' : 'a';
	msg[n] = '\0';

	struct h *h = ready(bw, EXT_ALL);
	begin(h, msg, two, 1);
	drain(h);
	char head[128];
	snprintf(head, sizeof(head),
		 "MAIL FROM:<a@example.com> SIZE=%zu\r\nRCPT TO:<x@example.net>\r\nBDAT %zu\r\n", n,
		 n);
	assert_int_equal(h->len, strlen(head) + n);
	assert_memory_equal(h->sent, head, strlen(head));
	assert_memory_equal(h->sent + strlen(head), msg, n);
	free_h(h);

	/* DATA: every line starts with a dot, so every line is stuffed */
	h = ready(bw, EXT_PIPE);
	begin(h, msg, two, 1);
	srv(h, "250 ok\r\n250 ok\r\n354 go\r\n");
	const char *body = strstr(h->sent, "DATA\r\n") + 6;
	size_t lines = (n + 79) / 80;
	size_t blen = h->len - (size_t)(body - h->sent);
	assert_int_equal(blen, n + lines + 2 /* CRLF added */ + 3);
	for (size_t i = 0, j = 0; i < n; i++, j++) {
		if (i % 80 == 0)
			assert_int_equal(body[j++], '.');
		assert_int_equal(body[j], msg[i]);
	}
	free_h(h);
	free(msg);
}

/* Many recipients: generated as the output drains, all in order. */
static void sc_many_rcpts(bool bw)
{
	enum { N = 3000 };
	static char names[N][32];
	static const char *rc[N];
	for (unsigned i = 0; i < N; i++) {
		snprintf(names[i], sizeof(names[i]), "user%04u@example.net", i);
		rc[i] = names[i];
	}
	struct h *h = ready(bw, EXT_ALL);
	begin(h, "x\r\n", rc, N);
	drain(h);
	const char *p = h->sent;
	p = strstr(p, "\r\n") + 2;
	for (unsigned i = 0; i < N; i++) {
		char want[64];
		int l = snprintf(want, sizeof(want), "RCPT TO:<%s>\r\n", names[i]);
		assert_memory_equal(p, want, (size_t)l);
		p += l;
	}
	assert_string_equal(p, "BDAT 3\r\nx\r\n");
	h->len = 0;
	/* the replies: all good but the last */
	char *rep = malloc((N + 2) * 10);
	size_t o = 0;
	for (unsigned i = 0; i < N; i++)
		o += (size_t)sprintf(rep + o, "%s", i == N - 1 ? "450 4.2.0\r\n" : "250 ok\r\n");
	o += (size_t)sprintf(rep + o, "250 chunk\r\n");
	srv(h, "250 sender ok\r\n");
	srv(h, rep);
	free(rep);
	struct smtpc_outcome oc = outcome(h);
	client_reply_is(&oc, 451, "4.2.0", "1 of 3000 recipients");
	expect_sent(h, "RSET\r\n");
	free_h(h);
}

#define BOTH(name)                         \
	static void t_##name(void **state) \
	{                                  \
		(void)state;               \
		sc_##name(false);          \
		sc_##name(true);           \
	}

BOTH(extensions)
BOTH(helo_fallback)
BOTH(greeting_refused)
BOTH(ehlo_421)
BOTH(pipelined_bdat)
BOTH(pipelined_data_stuffing)
BOTH(partial_rcpt_bdat)
BOTH(partial_rcpt_4xx)
BOTH(all_rcpt_fail_lockstep)
BOTH(data_abandon)
BOTH(data_refused_after_envelope)
BOTH(mail_refused)
BOTH(final_4xx)
BOTH(final_5xx_unsafe_text)
BOTH(421_retryable)
BOTH(broken)
BOTH(multiline_and_garbage)
BOTH(local_refusals)
BOTH(params)
BOTH(big)
BOTH(many_rcpts)

static void t_setup_failures_reply(void **state)
{
	(void)state;
	struct smtpc_outcome o;
	memset(&o, 0, sizeof(o));
	o.status = 4;
	o.cause = SMTPC_CAUSE_CONNECT;
	o.stage = "connect";
	snprintf(o.reply.text, sizeof(o.reply.text), "Connection refused");
	client_reply_is(&o, 451, "4.4.1", "not reachable (connect: Connection refused)");
	struct h *h = new_h(false);
	smtpc_broken(&h->c, SMTPC_CAUSE_TIMEOUT);
	client_reply_is(smtpc_failure(&h->c), 451, "4.4.1", "greeting: no answer in time");
	free_h(h);
}

/* Any reply in any order: no crash, the output stays bounded, and every
 * transaction that starts gets exactly one outcome.  A fixed seed, so a
 * failure repeats. */
static void t_random_replies(void **state)
{
	(void)state;
	static const char *const lines[] = {
		"250 ok\r\n",       "250-more\r\n",
		"354 go\r\n",       "421 4.4.2 bye\r\n",
		"450 4.2.0 no\r\n", "550 5.1.1 no\r\n",
		"220 hi\r\n",       "503 5.5.1 seq\r\n",
		"garbage\r\n",      "25",
		"0 split\r\n",      "\n",
		"252 2.5.0 x\r\n",  "554 5.3.0 \"q\"\r\n",
	};
	uint32_t seed = 12345;
	for (unsigned round = 0; round < 3000; round++) {
		static const char *const exts[] = { EXT_ALL, EXT_PIPE, EXT_NONE };
		struct h *h = ready(round & 1, exts[round % 3]);
		begin(h, ".x\r\nbody\r\n", three, 1 + round % 3);
		unsigned outcomes = 0;
		for (unsigned k = 0; k < 12 && smtpc_state(&h->c) != SMTPC_CLOSED; k++) {
			seed = seed * 1103515245u + 12345u;
			srv(h, lines[(seed >> 16) % (sizeof(lines) / sizeof(lines[0]))]);
			struct smtpc_outcome o;
			while (smtpc_outcome(&h->c, &o)) {
				outcomes++;
				assert_true(o.status == 2 || o.status == 4 || o.status == 5);
			}
			size_t len;
			smtpc_output(&h->c, &len);
			assert_true(len <= SMTPC_OUT_BUF);
			h->len = 0;
			if (smtpc_state(&h->c) == SMTPC_READY && outcomes)
				break;
		}
		assert_true(outcomes <= 1);
		if (smtpc_state(&h->c) != SMTPC_CLOSED && !outcomes) {
			smtpc_broken(&h->c, SMTPC_CAUSE_LOST);
			struct smtpc_outcome o;
			assert_true(smtpc_outcome(&h->c, &o) || smtpc_state(&h->c) == SMTPC_CLOSED);
		}
		free_h(h);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_extensions),
		cmocka_unit_test(t_helo_fallback),
		cmocka_unit_test(t_greeting_refused),
		cmocka_unit_test(t_ehlo_421),
		cmocka_unit_test(t_pipelined_bdat),
		cmocka_unit_test(t_pipelined_data_stuffing),
		cmocka_unit_test(t_partial_rcpt_bdat),
		cmocka_unit_test(t_partial_rcpt_4xx),
		cmocka_unit_test(t_all_rcpt_fail_lockstep),
		cmocka_unit_test(t_data_abandon),
		cmocka_unit_test(t_data_refused_after_envelope),
		cmocka_unit_test(t_mail_refused),
		cmocka_unit_test(t_final_4xx),
		cmocka_unit_test(t_final_5xx_unsafe_text),
		cmocka_unit_test(t_421_retryable),
		cmocka_unit_test(t_broken),
		cmocka_unit_test(t_multiline_and_garbage),
		cmocka_unit_test(t_local_refusals),
		cmocka_unit_test(t_params),
		cmocka_unit_test(t_big),
		cmocka_unit_test(t_many_rcpts),
		cmocka_unit_test(t_setup_failures_reply),
		cmocka_unit_test(t_random_replies),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
