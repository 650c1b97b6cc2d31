/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target for the SMTP engine.  The first octets choose the
 * configuration and how the rest is cut into pieces, so the fuzzer explores
 * segmentation as well as content.  Invariants checked: output never grows
 * past SMTP_OUT_BUF, every reply line ends in CRLF, the engine always makes
 * progress, content_bytes matches what on_data saw.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/session/smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fz {
	uint64_t seen;
	unsigned messages;
	uint8_t flags;
};

static int fz_data(void *ctx, const uint8_t *p, size_t n)
{
	struct fz *f = ctx;
	f->seen += n;
	(void)p;
	return 0;
}

static void fz_abort(void *ctx)
{
	((struct fz *)ctx)->seen = 0;
}

static void fz_headers(void *ctx, const struct smtp_envelope *env, const char *hdr, size_t len,
		       bool truncated, struct smtp_reply *r)
{
	struct fz *f = ctx;
	(void)env;
	(void)truncated;
	if (len && hdr[len] != '\0')
		abort();
	if ((f->flags & 0x10) && len > 40)
		smtp_reply_set(r, 550, "5.7.230", "blocked");
}

static int fz_message(void *ctx, const struct smtp_envelope *env, struct smtp_reply *r)
{
	struct fz *f = ctx;
	if (env->content_bytes != f->seen)
		abort();
	f->seen = 0;
	if (env->nrcpt == 0)
		abort();
	if (++f->messages % 2)
		return SMTP_PENDING;
	smtp_reply_set(r, 250, "2.0.0", "ok");
	return 0;
}

static void check_output(struct smtp_session *s)
{
	size_t n;
	const uint8_t *p = smtp_output(s, &n);
	if (n > SMTP_OUT_BUF)
		abort();
	if (n && (n < 2 || p[n - 2] != '\r' || p[n - 1] != '\n'))
		abort();
	smtp_output_consume(s, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_config cfg;
	struct fz f = { 0 };
	const struct smtp_hooks hooks = {
		.on_data = fz_data,
		.on_abort = fz_abort,
		.on_headers = fz_headers,
		.on_message = fz_message,
	};

	if (size < 2)
		return 0;
	f.flags = data[0];
	uint8_t cut = data[1];
	data += 2;
	size -= 2;

	smtp_config_defaults(&cfg);
	cfg.starttls = f.flags & 1;
	cfg.smtputf8 = f.flags & 2;
	if (f.flags & 4) {
		cfg.limits.max_message_size = 64;
		cfg.limits.max_recipients = 2;
		cfg.limits.max_messages = 3;
		cfg.limits.max_header_bytes = 16;
	}
	cfg.limits.max_errors = (f.flags & 8) ? 3 : 1000;

	struct smtp_session *s = smtp_session_new(&cfg, &hooks, &f, "198.18.0.1");
	if (!s)
		return 0;
	smtp_start(s);
	check_output(s);

	size_t piece = cut ? cut : size;
	size_t pos = 0;
	unsigned stuck = 0;
	while (pos < size) {
		size_t len = size - pos < piece ? size - pos : piece;
		size_t used = 0;
		enum smtp_status st = smtp_feed(s, data + pos, len, &used);
		if (used > len)
			abort();
		pos += used;
		check_output(s);
		if (st == SMTP_CLOSE)
			break;
		if (st == SMTP_WAIT) {
			struct smtp_reply r;
			smtp_reply_set(&r, (f.flags & 0x20) ? 451 : 250, "", "done");
			smtp_message_done(s, &r);
			check_output(s);
		} else if (st == SMTP_STARTTLS) {
			smtp_tls_started(s);
		} else if (used == 0 && st == SMTP_OK && ++stuck > 4) {
			abort();
		}
	}
	if (f.flags & 0x40)
		smtp_shutdown(s);
	else
		smtp_abort(s);
	check_output(s);
	smtp_session_free(s);
	return 0;
}
