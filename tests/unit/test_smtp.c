/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * SMTP engine conversation tests.
 *
 * Every tests/smtp/ *.conv script is run three ways: each send as one piece,
 * byte by byte, and the whole script pipelined as a single piece (not
 * registered for scripts with an event between sends: STARTTLS, shutdown,
 * hangup, or "nopipeline").  The same transcript must come out every time, so a reply can never depend on how
 * TCP happened to segment the input.  The format is in tests/smtp/README.md.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <cmocka.h>

#include "gateway/session/smtp.h"

#define MAX_ITEMS 4096
#define MAX_VERDICTS 64

enum mode { MODE_PIECE, MODE_BYTE, MODE_WHOLE };
static const char *const mode_names[] = { "piece", "byte", "whole" };

struct verdict {
	struct smtp_reply r;
	bool pending;
};

struct vqueue {
	unsigned n, next;
	struct verdict v[MAX_VERDICTS];
};

enum item_kind { IT_SEND, IT_TLS, IT_SHUTDOWN, IT_CLOSE_TRANSPORT };

struct item {
	enum item_kind kind;
	uint8_t *data;
	size_t len;
};

struct buf {
	char *p;
	size_t len, cap;
};

struct script {
	char path[1024];
	struct smtp_config cfg;
	bool nopipeline;
	unsigned nitems;
	struct item items[MAX_ITEMS];
	struct vqueue mail_v, hdr_v, msg_v;
	/* expectations */
	struct buf expect_out;  /* reply lines, '\n'-joined; "<*" lines end in '*' */
	struct buf expect_msgs; /* one record per message */
	struct buf expect_hdrs; /* one record per on_headers */
	char expect_status[16];
};

/* What one run produced. */
struct run {
	struct script *sc;
	struct smtp_session *s;
	struct buf out;
	struct buf msgs;
	struct buf hdrs;
	struct buf body; /* content of the message in progress */
	struct vqueue mail_v, hdr_v, msg_v;
	struct verdict *pending;
	const char *status;
	bool closed;
};

static void buf_add(struct buf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		b->p = realloc(b->p, cap);
		assert_non_null(b->p);
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

static void buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* Escapes: \r \n \t \\ \0 \xHH. */
static size_t unescape(const char *in, uint8_t *out)
{
	size_t n = 0;

	for (const char *p = in; *p; p++) {
		if (*p != '\\' || !p[1]) {
			out[n++] = (uint8_t)*p;
			continue;
		}
		p++;
		switch (*p) {
		case 'r':
			out[n++] = '\r';
			break;
		case 'n':
			out[n++] = '\n';
			break;
		case 't':
			out[n++] = '\t';
			break;
		case '0':
			out[n++] = 0;
			break;
		case 'x': {
			unsigned v;
			if (sscanf(p + 1, "%2x", &v) != 1)
				fail_msg("bad \\x escape in %s", in);
			out[n++] = (uint8_t)v;
			p += 2;
			break;
		}
		default:
			out[n++] = (uint8_t)*p;
		}
	}
	return n;
}

/* Printable form of raw bytes, for records compared as text. */
static void buf_escaped(struct buf *b, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char t[8];
		switch (p[i]) {
		case '\r':
			buf_str(b, "\\r");
			break;
		case '\n':
			buf_str(b, "\\n");
			break;
		case '\\':
			buf_str(b, "\\\\");
			break;
		default:
			if (p[i] < 0x20 || p[i] >= 0x7f) {
				snprintf(t, sizeof(t), "\\x%02x", p[i]);
				buf_str(b, t);
			} else {
				buf_add(b, &p[i], 1);
			}
		}
	}
}

static void add_item(struct script *sc, enum item_kind kind, const uint8_t *data, size_t len)
{
	if (sc->nitems == MAX_ITEMS)
		fail_msg("%s: too many items", sc->path);
	struct item *it = &sc->items[sc->nitems++];
	it->kind = kind;
	it->len = len;
	it->data = NULL;
	if (len) {
		it->data = malloc(len);
		assert_non_null(it->data);
		memcpy(it->data, data, len);
	}
}

static void parse_verdict(struct script *sc, struct vqueue *q, const char *arg, unsigned lineno)
{
	struct verdict *v;
	int code;
	char enh[16];
	int off = 0;

	if (q->n == MAX_VERDICTS)
		fail_msg("%s:%u: too many verdicts", sc->path, lineno);
	v = &q->v[q->n++];
	memset(v, 0, sizeof(*v));
	if (strncmp(arg, "pending ", 8) == 0) {
		v->pending = true;
		arg += 8;
	}
	if (sscanf(arg, "%d %15s %n", &code, enh, &off) < 2 || off == 0)
		fail_msg("%s:%u: verdict needs CODE ENH TEXT", sc->path, lineno);
	smtp_reply_set(&v->r, code, enh, arg + off);
}

static void set_config(struct script *sc, const char *kv, unsigned lineno)
{
	char key[64];
	unsigned long long v;

	if (sscanf(kv, "%63[^=]=%llu", key, &v) != 2)
		fail_msg("%s:%u: config KEY=NUMBER", sc->path, lineno);
	if (!strcmp(key, "max_message_size"))
		sc->cfg.limits.max_message_size = v;
	else if (!strcmp(key, "max_recipients"))
		sc->cfg.limits.max_recipients = (unsigned)v;
	else if (!strcmp(key, "max_messages"))
		sc->cfg.limits.max_messages = (unsigned)v;
	else if (!strcmp(key, "max_errors"))
		sc->cfg.limits.max_errors = (unsigned)v;
	else if (!strcmp(key, "max_header_bytes"))
		sc->cfg.limits.max_header_bytes = (uint32_t)v;
	else if (!strcmp(key, "starttls"))
		sc->cfg.starttls = v != 0;
	else if (!strcmp(key, "smtputf8"))
		sc->cfg.smtputf8 = v != 0;
	else
		fail_msg("%s:%u: unknown config key %s", sc->path, lineno, key);
}

/* A script line after which the rest cannot be sent in one piece: an
 * explicit "nopipeline", or an event between sends (TLS starting, a
 * shutdown, the transport closing). */
static bool breaks_pipeline(const char *line)
{
	return !strcmp(line, "nopipeline") || !strcmp(line, "tls") || !strcmp(line, "shutdown") ||
	       !strcmp(line, "hangup");
}

/* Whether the script at path can run pipelined whole: decided before the
 * tests are registered, so a script that cannot is not registered in that
 * mode rather than skipped. */
static bool script_pipelines(const char *path)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	bool ok = true;

	if (!f)
		return true; /* load_script reports it */
	while (ok && (n = getline(&line, &cap, f)) >= 0) {
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		ok = !breaks_pipeline(line);
	}
	free(line);
	fclose(f);
	return ok;
}

static struct script *load_script(const char *path)
{
	struct script *sc = calloc(1, sizeof(*sc));
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	unsigned lineno = 0;
	uint8_t *tmp;

	assert_non_null(sc);
	if (!f)
		fail_msg("%s: %s", path, strerror(errno));
	snprintf(sc->path, sizeof(sc->path), "%s", path);
	smtp_config_defaults(&sc->cfg);
	sc->cfg.hostname = "gw.test";
	sc->cfg.banner = "ESMTP tesgate test";
	snprintf(sc->expect_status, sizeof(sc->expect_status), "open");

	while ((n = getline(&line, &cap, f)) >= 0) {
		lineno++;
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (n == 0 || line[0] == '#')
			continue;
		if (breaks_pipeline(line))
			sc->nopipeline = true;
		tmp = malloc((size_t)n + 3);
		assert_non_null(tmp);
		if (!strncmp(line, ">> ", 3)) {
			add_item(sc, IT_SEND, tmp, unescape(line + 3, tmp));
		} else if (!strncmp(line, "> ", 2) || !strcmp(line, ">")) {
			size_t l = strlen(line + (n > 1 ? 2 : 1));
			memcpy(tmp, line + (n > 1 ? 2 : 1), l);
			memcpy(tmp + l, "\r\n", 2);
			add_item(sc, IT_SEND, tmp, l + 2);
		} else if (!strncmp(line, "repeat ", 7)) {
			unsigned count;
			int off = 0;
			if (sscanf(line + 7, "%u %n", &count, &off) != 1 || !off)
				fail_msg("%s:%u: repeat N ESCAPED", path, lineno);
			size_t l = unescape(line + 7 + off, tmp);
			uint8_t *big = malloc(l * count + 1);
			assert_non_null(big);
			for (unsigned i = 0; i < count; i++)
				memcpy(big + i * l, tmp, l);
			add_item(sc, IT_SEND, big, l * count);
			free(big);
		} else if (!strncmp(line, "< ", 2)) {
			buf_str(&sc->expect_out, line + 2);
			buf_str(&sc->expect_out, "\n");
		} else if (!strncmp(line, "<* ", 3)) {
			buf_str(&sc->expect_out, line + 3);
			buf_str(&sc->expect_out, "*\n");
		} else if (!strncmp(line, "config ", 7)) {
			set_config(sc, line + 7, lineno);
		} else if (!strcmp(line, "nopipeline")) {
			/* breaks_pipeline() */
		} else if (!strncmp(line, "mail-verdict ", 13)) {
			parse_verdict(sc, &sc->mail_v, line + 13, lineno);
		} else if (!strncmp(line, "header-verdict ", 15)) {
			parse_verdict(sc, &sc->hdr_v, line + 15, lineno);
		} else if (!strncmp(line, "deliver ", 8)) {
			parse_verdict(sc, &sc->msg_v, line + 8, lineno);
		} else if (!strncmp(line, "expect-message ", 15)) {
			buf_str(&sc->expect_msgs, line + 15);
			buf_str(&sc->expect_msgs, "\n");
		} else if (!strncmp(line, "expect-headers ", 15)) {
			buf_str(&sc->expect_hdrs, line + 15);
			buf_str(&sc->expect_hdrs, "\n");
		} else if (!strncmp(line, "expect-status ", 14)) {
			snprintf(sc->expect_status, sizeof(sc->expect_status), "%s", line + 14);
		} else if (!strcmp(line, "tls")) {
			add_item(sc, IT_TLS, NULL, 0);
		} else if (!strcmp(line, "shutdown")) {
			add_item(sc, IT_SHUTDOWN, NULL, 0);
		} else if (!strcmp(line, "hangup")) {
			add_item(sc, IT_CLOSE_TRANSPORT, NULL, 0);
		} else {
			fail_msg("%s:%u: cannot parse: %s", path, lineno, line);
		}
		free(tmp);
	}
	free(line);
	fclose(f);
	return sc;
}

static void free_script(struct script *sc)
{
	for (unsigned i = 0; i < sc->nitems; i++)
		free(sc->items[i].data);
	buf_free(&sc->expect_out);
	buf_free(&sc->expect_msgs);
	buf_free(&sc->expect_hdrs);
	free(sc);
}

/* ---- hooks -------------------------------------------------------------- */

static struct verdict *pop(struct vqueue *q)
{
	return q->next < q->n ? &q->v[q->next++] : NULL;
}

static void h_mail(void *ctx, const struct smtp_envelope *env, struct smtp_reply *r)
{
	struct run *run = ctx;
	struct verdict *v = pop(&run->mail_v);
	(void)env;
	if (v)
		*r = v->r;
}

static void h_headers(void *ctx, const struct smtp_envelope *env, const char *hdr, size_t len,
		      bool truncated, struct smtp_reply *r)
{
	struct run *run = ctx;
	struct verdict *v = pop(&run->hdr_v);
	(void)env;
	buf_str(&run->hdrs, truncated ? "truncated " : "");
	buf_escaped(&run->hdrs, (const uint8_t *)hdr, len);
	buf_str(&run->hdrs, "\n");
	if (v)
		*r = v->r;
}

static int h_data(void *ctx, const uint8_t *p, size_t n)
{
	struct run *run = ctx;
	buf_add(&run->body, p, n);
	return 0;
}

static void h_abort(void *ctx)
{
	struct run *run = ctx;
	run->body.len = 0;
}

static int h_message(void *ctx, const struct smtp_envelope *env, struct smtp_reply *r)
{
	struct run *run = ctx;
	struct buf *m = &run->msgs;
	char t[64];

	buf_str(m, "from=<");
	buf_str(m, env->mail_from);
	buf_str(m, "> rcpt=");
	for (unsigned i = 0; i < env->nrcpt; i++) {
		buf_str(m, i ? "," : "");
		buf_str(m, env->rcpt[i]);
	}
	snprintf(t, sizeof(t), " size=%llu%s%s%s%s body=", (unsigned long long)env->content_bytes,
		 env->bdat ? " bdat" : "", env->body == SMTP_BODY_8BITMIME ? " 8bit" : "",
		 env->smtputf8 ? " utf8" : "", env->tls ? " tls" : "");
	buf_str(m, t);
	if (env->content_bytes != run->body.len)
		fail_msg("%s: content_bytes %llu but on_data saw %zu", run->sc->path,
			 (unsigned long long)env->content_bytes, run->body.len);
	/* long bodies are recorded by length and a checksum */
	if (run->body.len > 200) {
		uint32_t h = 2166136261u;
		for (size_t i = 0; i < run->body.len; i++)
			h = (h ^ (uint8_t)run->body.p[i]) * 16777619u;
		snprintf(t, sizeof(t), "#%08x", h);
		buf_str(m, t);
	} else {
		buf_escaped(m, (const uint8_t *)run->body.p, run->body.len);
	}
	buf_str(m, "\n");
	run->body.len = 0;

	struct verdict *v = pop(&run->msg_v);
	if (!v) {
		smtp_reply_set(r, 250, "2.0.0", "Queued");
		return 0;
	}
	if (v->pending) {
		run->pending = v;
		return SMTP_PENDING;
	}
	*r = v->r;
	return 0;
}

static const struct smtp_hooks hooks = {
	.on_mail = h_mail,
	.on_headers = h_headers,
	.on_data = h_data,
	.on_message = h_message,
	.on_abort = h_abort,
};

/* ---- running ------------------------------------------------------------ */

static void drain(struct run *run)
{
	size_t n;
	const uint8_t *p = smtp_output(run->s, &n);
	buf_add(&run->out, p, n);
	smtp_output_consume(run->s, n);
}

/* Feed one piece the way a transport would: drain when blocked, answer a
 * pending delivery, drop the rest of the piece at STARTTLS. */
static void feed(struct run *run, const uint8_t *p, size_t len)
{
	unsigned spins = 0;

	while (!run->closed) {
		size_t used = 0;
		enum smtp_status st = smtp_feed(run->s, p, len, &used);
		assert_true(used <= len);
		p += used;
		len -= used;
		drain(run);
		switch (st) {
		case SMTP_OK:
			if (len == 0)
				return;
			if (used == 0 && ++spins > 3)
				fail_msg("%s: engine made no progress", run->sc->path);
			break;
		case SMTP_BLOCKED:
			if (++spins > 100000)
				fail_msg("%s: blocked for ever", run->sc->path);
			break;
		case SMTP_WAIT:
			if (!run->pending)
				fail_msg("%s: SMTP_WAIT with no pending delivery", run->sc->path);
			smtp_message_done(run->s, &run->pending->r);
			run->pending = NULL;
			drain(run);
			break;
		case SMTP_STARTTLS:
			run->status = "starttls";
			return;
		case SMTP_CLOSE:
			run->status = "close";
			run->closed = true;
			return;
		}
	}
}

static void run_script(struct script *sc, enum mode mode)
{
	struct run run = { .sc = sc, .status = "open" };
	run.mail_v = sc->mail_v;
	run.hdr_v = sc->hdr_v;
	run.msg_v = sc->msg_v;

	run.s = smtp_session_new(&sc->cfg, &hooks, &run, "198.18.0.1");
	assert_non_null(run.s);
	smtp_start(run.s);
	drain(&run);

	struct buf whole = { 0 };
	for (unsigned i = 0; i < sc->nitems && !run.closed; i++) {
		struct item *it = &sc->items[i];
		switch (it->kind) {
		case IT_SEND:
			if (mode == MODE_WHOLE)
				buf_add(&whole, it->data, it->len);
			else if (mode == MODE_PIECE)
				feed(&run, it->data, it->len);
			else
				for (size_t b = 0; b < it->len && !run.closed; b++) {
					feed(&run, it->data + b, 1);
					if (!strcmp(run.status, "starttls"))
						break;
				}
			break;
		case IT_TLS:
			if (strcmp(run.status, "starttls") != 0)
				fail_msg("%s: tls without SMTP_STARTTLS", sc->path);
			smtp_tls_started(run.s);
			run.status = "open";
			break;
		case IT_SHUTDOWN:
			if (smtp_shutdown(run.s))
				run.status = "close";
			drain(&run);
			break;
		case IT_CLOSE_TRANSPORT:
			smtp_abort(run.s);
			run.status = "hangup";
			run.closed = true;
			break;
		}
	}
	if (mode == MODE_WHOLE)
		feed(&run, (const uint8_t *)whole.p, whole.len);
	buf_free(&whole);

	/* compare the transcript line by line, so a failure names the line */
	char *exp = sc->expect_out.p ? sc->expect_out.p : "";
	char *got = run.out.p ? run.out.p : "";
	unsigned line = 1;
	while (*exp || *got) {
		size_t el = strcspn(exp, "\n");
		char *crlf = strstr(got, "\r\n");
		size_t gl = crlf ? (size_t)(crlf - got) : strlen(got);
		bool prefix = el > 0 && exp[el - 1] == '*';
		size_t cmp = prefix ? el - 1 : el;
		if (!*exp)
			fail_msg("%s [%s]: unexpected reply line %u: %.*s", sc->path,
				 mode_names[mode], line, (int)gl, got);
		if (!*got)
			fail_msg("%s [%s]: missing reply line %u: %.*s", sc->path, mode_names[mode],
				 line, (int)el, exp);
		if (!crlf)
			fail_msg("%s [%s]: reply line %u not ended by CRLF", sc->path,
				 mode_names[mode], line);
		if ((prefix ? gl < cmp : gl != cmp) || memcmp(exp, got, cmp) != 0)
			fail_msg("%s [%s]: reply line %u:\n  expected: %.*s\n  got:      %.*s",
				 sc->path, mode_names[mode], line, (int)el, exp, (int)gl, got);
		exp += el + (exp[el] == '\n');
		got += gl + 2;
		line++;
	}
	const char *em = sc->expect_msgs.p ? sc->expect_msgs.p : "";
	const char *gm = run.msgs.p ? run.msgs.p : "";
	if (strcmp(em, gm) != 0)
		fail_msg("%s [%s]: messages differ\n  expected:\n%s  got:\n%s", sc->path,
			 mode_names[mode], em, gm);
	const char *eh = sc->expect_hdrs.p ? sc->expect_hdrs.p : "";
	const char *gh = run.hdrs.p ? run.hdrs.p : "";
	if (sc->expect_hdrs.len && strcmp(eh, gh) != 0)
		fail_msg("%s [%s]: headers differ\n  expected:\n%s  got:\n%s", sc->path,
			 mode_names[mode], eh, gh);
	if (strcmp(sc->expect_status, run.status) != 0)
		fail_msg("%s [%s]: status %s, expected %s", sc->path, mode_names[mode], run.status,
			 sc->expect_status);

	smtp_session_free(run.s);
	buf_free(&run.out);
	buf_free(&run.msgs);
	buf_free(&run.hdrs);
	buf_free(&run.body);
}

struct case_state {
	char path[1024];
	enum mode mode;
};

static void test_script(void **state)
{
	struct case_state *cs = *state;
	struct script *sc = load_script(cs->path);
	/* main registers no whole mode for such scripts */
	assert_false(cs->mode == MODE_WHOLE && sc->nopipeline);
	run_script(sc, cs->mode);
	free_script(sc);
}

/* ---- direct API tests ---------------------------------------------------- */

/* The engine never holds more than SMTP_OUT_BUF of replies, however much is
 * pipelined at it: it stops and hands the rest of the input back. */
static void test_output_backpressure(void **state)
{
	struct smtp_config cfg;
	(void)state;
	smtp_config_defaults(&cfg);
	struct smtp_session *s = smtp_session_new(&cfg, NULL, NULL, "198.18.0.2");
	assert_non_null(s);
	smtp_start(s);

	static uint8_t in[6 * 100000];
	for (size_t i = 0; i < sizeof(in); i += 6)
		memcpy(in + i, "NOOP\r\n", 6);
	size_t used = 0, total = 0, out;
	enum smtp_status st = smtp_feed(s, in, sizeof(in), &used);
	assert_int_equal(st, SMTP_BLOCKED);
	assert_true(used < sizeof(in));
	smtp_output(s, &out);
	assert_true(out <= SMTP_OUT_BUF);
	/* draining lets it go on; every NOOP gets exactly one reply */
	size_t replies = 0;
	total = used;
	for (;;) {
		const uint8_t *p = smtp_output(s, &out);
		for (size_t i = 0; i + 1 < out; i++)
			replies += p[i] == '\r' && p[i + 1] == '\n';
		smtp_output_consume(s, out);
		if (total == sizeof(in))
			break;
		st = smtp_feed(s, in + total, sizeof(in) - total, &used);
		total += used;
		assert_true(st == SMTP_OK || st == SMTP_BLOCKED);
	}
	assert_int_equal(replies, 1 /* greeting */ + sizeof(in) / 6);
	smtp_session_free(s);
}

/* A message held by the delivery side keeps the rest of the input with the
 * caller: the pipelined QUIT is answered only after the verdict. */
static int pending_message(void *ctx, const struct smtp_envelope *env, struct smtp_reply *r)
{
	(void)ctx;
	(void)env;
	(void)r;
	return SMTP_PENDING;
}

static void test_wait_keeps_input(void **state)
{
	struct smtp_config cfg;
	struct smtp_hooks h = { .on_message = pending_message };
	(void)state;
	smtp_config_defaults(&cfg);
	struct smtp_session *s = smtp_session_new(&cfg, &h, NULL, "198.18.0.3");
	smtp_start(s);
	const char *in = "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n"
			 "Subject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n";
	size_t used, len = strlen(in);
	assert_int_equal(smtp_feed(s, (const uint8_t *)in, len, &used), SMTP_WAIT);
	assert_int_equal(len - used, strlen("QUIT\r\n"));
	size_t before;
	smtp_output(s, &before);
	assert_int_equal(smtp_feed(s, (const uint8_t *)in + used, len - used, &used), SMTP_WAIT);
	assert_int_equal(used, 0);
	struct smtp_reply r;
	smtp_reply_set(&r, 250, "2.0.0", "Delivered as 42");
	smtp_message_done(s, &r);
	size_t out;
	const uint8_t *p = smtp_output(s, &out);
	assert_true(out > before);
	assert_non_null(memmem(p, out, "250 2.0.0 Delivered as 42\r\n", 27));
	assert_int_equal(smtp_feed(s, (const uint8_t *)"QUIT\r\n", 6, &used), SMTP_CLOSE);
	smtp_session_free(s);
}

int main(void)
{
	const char *src = getenv("TES_SRCDIR");
	char dir[512];
	struct dirent **names = NULL;
	int n;

	snprintf(dir, sizeof(dir), "%s/tests/smtp", src ? src : ".");
	n = scandir(dir, &names, NULL, alphasort);
	if (n < 0) {
		fprintf(stderr, "cannot read %s: %s (set TES_SRCDIR)\n", dir, strerror(errno));
		return 1;
	}
	struct CMUnitTest *tests = calloc((size_t)n * 3 + 2, sizeof(*tests));
	struct case_state *cs = calloc((size_t)n * 3, sizeof(*cs));
	size_t nt = 0, ncs = 0;
	tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_output_backpressure);
	tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_wait_keeps_input);
	for (int i = 0; i < n; i++) {
		size_t l = strlen(names[i]->d_name);
		if (l > 5 && !strcmp(names[i]->d_name + l - 5, ".conv")) {
			char path[1024];

			snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
			for (int m = 0; m < 3; m++) {
				if (m == MODE_WHOLE && !script_pipelines(path))
					continue;
				struct case_state *c = &cs[ncs++];
				snprintf(c->path, sizeof(c->path), "%s", path);
				c->mode = (enum mode)m;
				size_t nl = strlen(names[i]->d_name) + 16;
				char *name = malloc(nl);
				snprintf(name, nl, "%s/%s", names[i]->d_name, mode_names[m]);
				tests[nt].name = name;
				tests[nt].test_func = test_script;
				tests[nt].initial_state = c;
				nt++;
			}
		}
		free(names[i]);
	}
	free(names);
	if (ncs == 0) {
		fprintf(stderr, "no .conv scripts in %s\n", dir);
		return 1;
	}
	int rc = _cmocka_run_group_tests("smtp", tests, nt, NULL, NULL);
	for (size_t i = 2; i < nt; i++)
		free((char *)tests[i].name);
	free(tests);
	free(cs);
	return rc;
}
