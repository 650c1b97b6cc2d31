/* SPDX-License-Identifier: BSD-3-Clause */
#include "gateway/conn.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/log.h"

#define LINE_MAX_GW 160

/* Counters one worker writes and any thread may read. */
struct gw_worker {
	struct gw_stats st;
	char pad[64];
};

struct gw {
	struct gw_params p;
	struct smtp_hooks hooks;
	char refuse_global[LINE_MAX_GW];
	char refuse_source[LINE_MAX_GW];
	char idle_line[LINE_MAX_GW];
	char session_line[LINE_MAX_GW];
	char busy_line[LINE_MAX_GW];
	struct gw_worker *w;
};

struct gw_conn {
	struct gw *g;
	struct kio_conn *kc; /* NULL once the transport is gone */
	struct kio_worker *kw;
	unsigned worker;
	struct smtp_session *s;
	struct delivery_msg *msg; /* content of the transaction in progress */
	bool msg_failed;          /* the backend lost this transaction's content */
	bool waiting;             /* a verdict is outstanding */
	bool blocked;             /* engine output did not fit the transport */
	bool close_after_flush;
	char peer[INET6_ADDRSTRLEN + 8];     /* "192.0.2.1:25", logs and envelope */
	char peer_lit[INET6_ADDRSTRLEN + 8]; /* "[192.0.2.1]" for the engine */
	struct kio_post post;
	struct smtp_reply verdict;
};

#define STAT_ADD(g, wi, field) \
	__atomic_store_n(&(g)->w[wi].st.field, (g)->w[wi].st.field + 1, __ATOMIC_RELAXED)

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

/* Client-supplied text in a log line: printable, bounded. */
static const char *clean(char *dst, size_t len, const char *src)
{
	size_t i = 0;
	for (; src[i] && i + 1 < len; i++)
		dst[i] = ((unsigned char)src[i] < 0x20 || src[i] == 0x7f) ? '?' : src[i];
	dst[i] = '\0';
	return dst;
}

/* ---- enforcement seams ----
 * The enforcement issue fills these in: a verdict for sources already known
 * at MAIL FROM, and for every message once its headers reveal the server.
 * Until then they have no opinion (r->code stays 0). */

static void enforce_at_mail(struct gw_conn *gc, const struct smtp_envelope *env,
			    struct smtp_reply *r)
{
	(void)gc;
	(void)env;
	(void)r;
}

static void enforce_at_headers(struct gw_conn *gc, const struct smtp_envelope *env,
			       const struct exdetect_result *det, const struct catalog_class *cls,
			       struct smtp_reply *r)
{
	(void)gc;
	(void)env;
	(void)det;
	(void)cls;
	(void)r;
}

/* ---- engine hooks ---- */

static void h_mail(void *ctx, const struct smtp_envelope *env, struct smtp_reply *r)
{
	struct gw_conn *gc = ctx;
	gc->msg_failed = false;
	enforce_at_mail(gc, env, r);
}

static void h_headers(void *ctx, const struct smtp_envelope *env, const char *hdr, size_t len,
		      bool truncated, struct smtp_reply *r)
{
	struct gw_conn *gc = ctx;
	struct gw *g = gc->g;
	struct exdetect_result det;
	struct catalog_class cls;
	char helo[80], from[120], server[120];

	memset(&cls, 0, sizeof(cls));
	if (!exdetect_scan(g->p.exdetect, hdr, len, &det)) {
		STAT_ADD(g, gc->worker, not_exchange);
		if (log_enabled(LOG_DEBUG))
			log_msg(LOG_DEBUG, "detect peer=%s exchange=no truncated=%s", gc->peer,
				truncated ? "yes" : "no");
		enforce_at_headers(gc, env, &det, &cls, r);
		return;
	}
	STAT_ADD(g, gc->worker, exchange_seen);
	char build[48];
	ex_build_format(&det.build, build, sizeof(build));
	const char *compliant = "unknown", *branch = "", *update = "";
	if (g->p.catalog) {
		catalog_classify(g->p.catalog, &det.build, &cls);
		compliant = cls.compliant ? "yes" : "no";
		branch = cls.branch ? cls.branch : "";
		update = cls.nearest ? cls.nearest->update : "";
	}
	log_msg(LOG_INFO,
		"detect peer=%s helo=%s from=<%s> server=%s build=%s family=%s branch=%s "
		"update=\"%s\" compliant=%s hop=%u line=%u mapi=%s%s",
		gc->peer, clean(helo, sizeof(helo), env->helo),
		clean(from, sizeof(from), env->mail_from),
		clean(server, sizeof(server), det.server), build, ex_family_name(det.family),
		branch, update, compliant, det.hop, det.line, det.mapi ? "yes" : "no",
		truncated ? " truncated=yes" : "");
	enforce_at_headers(gc, env, &det, &cls, r);
}

static int h_data(void *ctx, const uint8_t *p, size_t n)
{
	struct gw_conn *gc = ctx;
	const struct delivery_backend *be = gc->g->p.backend;
	if (gc->msg_failed)
		return -1;
	if (!gc->msg) {
		gc->msg = be->open(be->be, gc->worker);
		if (!gc->msg) {
			gc->msg_failed = true;
			return -1;
		}
	}
	if (be->write(gc->msg, p, n) != 0) {
		be->abort(gc->msg);
		gc->msg = NULL;
		gc->msg_failed = true;
		return -1;
	}
	return 0;
}

static void h_abort(void *ctx)
{
	struct gw_conn *gc = ctx;
	if (gc->msg) {
		gc->g->p.backend->abort(gc->msg);
		gc->msg = NULL;
	}
}

/* Delivery thread: hand the verdict to the session's worker. */
static void delivered(void *arg, const struct smtp_reply *r)
{
	struct gw_conn *gc = arg;
	gc->verdict = *r;
	kio_post(gc->kw, &gc->post);
}

static int h_message(void *ctx, const struct smtp_envelope *env, struct smtp_reply *r)
{
	struct gw_conn *gc = ctx;
	const struct delivery_backend *be = gc->g->p.backend;
	if (!gc->msg && !gc->msg_failed)
		gc->msg = be->open(be->be, gc->worker); /* empty content */
	if (!gc->msg) {
		gc->msg_failed = false;
		smtp_reply_set(r, 451, "4.3.0", "Temporary local problem, try again later");
		return 0;
	}
	struct delivery_msg *m = gc->msg;
	gc->msg = NULL;
	gc->waiting = true;
	be->submit(m, env, gc->peer, delivered, gc);
	return SMTP_PENDING;
}

/* ---- transport side ---- */

/* Move engine output to the transport; returns what did not fit. */
static size_t out_move(struct gw_conn *gc)
{
	size_t len;
	const uint8_t *p = smtp_output(gc->s, &len);
	if (len == 0)
		return 0;
	size_t took = kio_write(gc->kc, p, len);
	smtp_output_consume(gc->s, took);
	return len - took;
}

/* After the engine moved outside smtp_feed (a verdict, the transport
 * draining): send what it said and decide whether to read again. */
static void settle(struct gw_conn *gc)
{
	if (out_move(gc) > 0) {
		gc->blocked = true;
		kio_pause(gc->kc);
		return;
	}
	gc->blocked = false;
	if (gc->close_after_flush || smtp_closing(gc->s)) {
		kio_close(gc->kc);
		return;
	}
	if (gc->waiting)
		kio_pause(gc->kc);
	else
		kio_resume(gc->kc);
}

static void conn_free(struct gw_conn *gc)
{
	if (gc->s)
		smtp_session_free(gc->s);
	free(gc);
}

static void verdict_arrived(struct kio_post *p)
{
	struct gw_conn *gc = container_of(p, struct gw_conn, post);
	struct gw *g = gc->g;
	gc->waiting = false;
	if (gc->verdict.code >= 200 && gc->verdict.code < 300)
		STAT_ADD(g, gc->worker, messages_accepted);
	else
		STAT_ADD(g, gc->worker, messages_refused);
	if (!gc->kc) {
		/* The client left (or shutdown closed it) while the backend
		 * worked: a stored message stays stored; the client retries. */
		STAT_ADD(g, gc->worker, orphaned);
		log_msg(LOG_WARN, "delivery finished after peer=%s was gone: %d %s %s", gc->peer,
			gc->verdict.code, gc->verdict.enh, gc->verdict.text);
		conn_free(gc);
		return;
	}
	log_msg(LOG_INFO, "message peer=%s result=\"%d %s %s\"", gc->peer, gc->verdict.code,
		gc->verdict.enh, gc->verdict.text);
	smtp_message_done(gc->s, &gc->verdict);
	settle(gc);
}

static void *k_open(void *app, struct kio_conn *kc, const struct sockaddr_storage *peer,
		    const char **refuse)
{
	struct gw *g = app;
	struct gw_conn *gc = calloc(1, sizeof(*gc));
	if (!gc) {
		*refuse = g->busy_line;
		return NULL;
	}
	gc->g = g;
	gc->kc = kc;
	gc->kw = kio_conn_worker(kc);
	gc->worker = kio_worker_index(gc->kw);
	gc->post.fn = verdict_arrived;
	kio_format_addr(peer, gc->peer, sizeof(gc->peer), true);
	char addr[INET6_ADDRSTRLEN + 1];
	kio_format_addr(peer, addr, sizeof(addr), false);
	snprintf(gc->peer_lit, sizeof(gc->peer_lit), strchr(addr, ':') ? "[IPv6:%s]" : "[%s]",
		 addr);
	gc->s = smtp_session_new(g->p.smtp, &g->hooks, gc, gc->peer_lit);
	if (!gc->s) {
		free(gc);
		*refuse = g->busy_line;
		return NULL;
	}
	STAT_ADD(g, gc->worker, sessions);
	smtp_start(gc->s);
	settle(gc);
	return gc;
}

static size_t k_data(void *ctx, struct kio_conn *kc, const uint8_t *p, size_t n)
{
	struct gw_conn *gc = ctx;
	size_t off = 0;
	unsigned stalls = 0;

	while (off < n) {
		size_t used = 0;
		enum smtp_status st = smtp_feed(gc->s, p + off, n - off, &used);
		if (used > n - off)
			used = n - off;
		off += used;
		size_t left = out_move(gc);
		switch (st) {
		case SMTP_OK:
		case SMTP_BLOCKED:
			if (left > 0) {
				gc->blocked = true;
				kio_pause(kc);
				return off;
			}
			/* The engine had room again at once; but never spin on
			 * an engine that takes nothing. */
			if (used == 0 && ++stalls > 2)
				return off;
			break;
		case SMTP_WAIT:
			kio_pause(kc);
			return off;
		case SMTP_STARTTLS:
			/* Seam for the TLS layer; STARTTLS is not advertised
			 * yet, so the engine should never get here. */
		case SMTP_CLOSE:
			gc->close_after_flush = true;
			if (left > 0) {
				gc->blocked = true;
				kio_pause(kc);
			} else {
				kio_close(kc);
			}
			return n;
		}
	}
	return off;
}

static void k_writable(void *ctx, struct kio_conn *kc)
{
	struct gw_conn *gc = ctx;
	(void)kc;
	if (gc->blocked)
		settle(gc);
}

static void k_timeout(void *ctx, struct kio_conn *kc, enum kio_timeout which)
{
	struct gw_conn *gc = ctx;
	const char *line = which == KIO_TIMEOUT_IDLE ? gc->g->idle_line : gc->g->session_line;
	log_msg(LOG_DEBUG, "timeout peer=%s %s", gc->peer,
		which == KIO_TIMEOUT_IDLE ? "idle" : "session");
	/* A session waiting for its verdict gets the verdict instead, if it
	 * comes within the linger time. */
	if (!gc->waiting)
		kio_write(kc, line, strlen(line));
}

static void k_shutdown(void *ctx, struct kio_conn *kc)
{
	struct gw_conn *gc = ctx;
	(void)kc;
	/* Mid-transaction sessions get their 421 after the reply to the
	 * message in flight, from the engine itself. */
	if (smtp_shutdown(gc->s)) {
		gc->close_after_flush = true;
		settle(gc);
	}
}

static void k_close(void *ctx, struct kio_conn *kc, enum kio_close_reason why)
{
	struct gw_conn *gc = ctx;
	(void)kc;
	log_msg(LOG_DEBUG, "close peer=%s reason=%d", gc->peer, (int)why);
	gc->kc = NULL;
	smtp_abort(gc->s); /* on_abort discards content not yet submitted */
	h_abort(gc);
	smtp_session_free(gc->s);
	gc->s = NULL;
	if (!gc->waiting)
		conn_free(gc);
	/* else: the verdict's arrival frees it */
}

void gw_kio_ops(struct kio_ops *ops)
{
	memset(ops, 0, sizeof(*ops));
	ops->on_open = k_open;
	ops->on_data = k_data;
	ops->on_writable = k_writable;
	ops->on_timeout = k_timeout;
	ops->on_shutdown = k_shutdown;
	ops->on_close = k_close;
}

struct gw *gw_new(const struct gw_params *p)
{
	struct gw *g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	g->p = *p;
	g->w = calloc(p->workers ? p->workers : 1, sizeof(*g->w));
	if (!g->w) {
		free(g);
		return NULL;
	}
	g->hooks.on_mail = h_mail;
	g->hooks.on_headers = h_headers;
	g->hooks.on_data = h_data;
	g->hooks.on_message = h_message;
	g->hooks.on_abort = h_abort;
	snprintf(g->refuse_global, sizeof(g->refuse_global),
		 "421 4.7.0 %.64s Too many connections, try again later\r\n", p->hostname);
	snprintf(g->refuse_source, sizeof(g->refuse_source),
		 "421 4.7.0 %.64s Too many connections from your address\r\n", p->hostname);
	snprintf(g->idle_line, sizeof(g->idle_line),
		 "421 4.4.2 %.64s Idle timeout, closing connection\r\n", p->hostname);
	snprintf(g->session_line, sizeof(g->session_line),
		 "421 4.4.2 %.64s Session time limit reached, closing connection\r\n", p->hostname);
	snprintf(g->busy_line, sizeof(g->busy_line),
		 "421 4.3.2 %.64s Service not available, try again later\r\n", p->hostname);
	return g;
}

void gw_free(struct gw *g)
{
	if (!g)
		return;
	free(g->w);
	free(g);
}

const char *gw_refuse_global(const struct gw *g)
{
	return g->refuse_global;
}

const char *gw_refuse_source(const struct gw *g)
{
	return g->refuse_source;
}

void gw_stats(const struct gw *g, struct gw_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < (g->p.workers ? g->p.workers : 1); i++) {
		const struct gw_stats *s = &g->w[i].st;
		out->sessions += __atomic_load_n(&s->sessions, __ATOMIC_RELAXED);
		out->messages_accepted += __atomic_load_n(&s->messages_accepted, __ATOMIC_RELAXED);
		out->messages_refused += __atomic_load_n(&s->messages_refused, __ATOMIC_RELAXED);
		out->exchange_seen += __atomic_load_n(&s->exchange_seen, __ATOMIC_RELAXED);
		out->not_exchange += __atomic_load_n(&s->not_exchange, __ATOMIC_RELAXED);
		out->orphaned += __atomic_load_n(&s->orphaned, __ATOMIC_RELAXED);
	}
}
