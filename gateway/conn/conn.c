/* SPDX-License-Identifier: BSD-3-Clause */
#include "gateway/conn/conn.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/text.h"
#include "gateway/state/ctlclient.h"
#include "gateway/state/enfstate.h"
#include "gateway/observe/log.h"
#include "gateway/observe/registry.h"
#include "gateway/observe/verdictlog.h"

#define LINE_MAX_GW 160

/* Counters one worker writes and any thread may read.  The TLS layer
 * increments its counters with plain stores, so it gets a private copy
 * (tctr) that the worker publishes into st.tls with atomic stores. */
struct gw_worker {
	struct gw_stats st;
	struct tls_counters tctr;
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
	char slow_line[LINE_MAX_GW];
	struct gw_worker *w;
	const struct gw_io *io; /* the transport's counters, for the exports */
};

struct gw_conn {
	struct gw *g;
	const struct gw_transport *tp;
	void *tc; /* the transport's connection; NULL once it is gone */
	void *tw; /* the transport's worker, for posts */
	unsigned worker;
	struct smtp_session *s;
	struct delivery_msg *msg; /* content of the transaction in progress */
	bool msg_failed;          /* the backend lost this transaction's content */
	bool msg_nospace;         /* ... at its storage floor: 452 4.3.1 at the end */
	bool waiting;             /* a verdict is outstanding */
	bool blocked;             /* engine output did not fit the transport */
	bool close_after_flush;
	char peer[INET6_ADDRSTRLEN + 8];     /* "192.0.2.1:25", logs and envelope */
	char peer_lit[INET6_ADDRSTRLEN + 8]; /* "192.0.2.1", "IPv6:2001:db8::1": the engine */
	struct gw_post post;
	struct smtp_reply verdict;
	struct timespec submitted; /* for the delivery latency histogram */
	struct smtp_stats counted; /* the session's counters already in gw_stats */
	struct tes_addr src;       /* the client's address, for enforcement */
	uint32_t tenant;           /* the tenant whose connector it came over; 0: none */
	bool via_connector;
	/* STARTTLS.  pt holds decrypted input the engine has not taken yet
	 * (at most one read's worth); it exists only while it holds bytes. */
	struct tls_conn *tls;
	uint8_t *pt;
	size_t pt_off, pt_len;
	bool tls_pending; /* STARTTLS answered; its 220 not all with the transport yet */
	bool tls_up;      /* handshake done and smtp_tls_started() called */
	bool tls_dead;    /* fatal TLS error: the alert goes out, then the close */
	bool tls_shut;    /* close_notify queued */
	/* min_data_rate: the current window's start (ms) and input since */
	uint64_t rate_start;
	uint64_t rate_bytes;
};

#define STAT_ADD(g, wi, field) \
	__atomic_store_n(&(g)->w[wi].st.field, (g)->w[wi].st.field + 1, __ATOMIC_RELAXED)

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

/* The transport, on the worker owning the connection. */
static inline size_t t_write(struct gw_conn *gc, const void *p, size_t n)
{
	return gc->tp->write(gc->tc, p, n);
}

static inline void t_pause(struct gw_conn *gc)
{
	gc->tp->pause(gc->tc);
}

static inline void t_resume(struct gw_conn *gc)
{
	gc->tp->resume(gc->tc);
}

static inline void t_close(struct gw_conn *gc)
{
	gc->tp->close(gc->tc);
}

/* Client-supplied text in the detect line is printable (log_clean) and
 * cut at these lengths. */
#define LOG_HELO_MAX 79
#define LOG_PATH_MAX 119

/* ---- enforcement ----
 * At MAIL FROM, a source already known to belong to a server in a throttle
 * or block window is refused before the body is sent; at the end of the
 * headers every Exchange message is decided on the server its Received
 * headers name.  Both read the RCU state (lock-free) at the control
 * client's clock. */

#define STAT_ADD_IDX(g, wi, field, i) \
	__atomic_store_n(&(g)->w[wi].st.field[i], (g)->w[wi].st.field[i] + 1, __ATOMIC_RELAXED)

static void verdict_reply(const struct tes_verdict *v, struct smtp_reply *r)
{
	if (v->action == TES_ACCEPT)
		return;
	/* DROP at the SMTP level can only be the 550 it carries */
	smtp_reply_set(r, v->code, v->enhanced, v->text);
}

/* verdict_log: the record goes to this worker's ring; the writer thread
 * makes the line (no system call here). */
static void log_verdict(struct gw_conn *gc, enum vlog_at at, const struct tes_verdict *v,
			const struct exdetect_result *det)
{
	struct gw *g = gc->g;
	struct vlog_event ev;

	if (!g->p.verdicts)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.time = ctlclient_now(g->p.cc);
	ev.at = (uint8_t)at;
	ev.source = gc->src;
	ev.tenant = gc->tenant;
	if (v) {
		ev.action = (uint8_t)v->action;
		ev.reason = (uint8_t)v->reason;
		ev.stage = v->stage;
		ev.code = v->code;
		memcpy(ev.enhanced, v->enhanced, sizeof(ev.enhanced));
	} else {
		ev.action = TES_DROP;
	}
	if (det) {
		snprintf(ev.server, sizeof(ev.server), "%s", det->server);
		if (det->family != EX_FAMILY_NONE) {
			ev.has_build = true;
			ev.build = det->build;
			ev.family = (uint8_t)det->family;
		}
	}
	verdictlog_push(g->p.verdicts, gc->worker, &ev);
}

static void enforce_at_mail(struct gw_conn *gc, const struct smtp_envelope *env,
			    struct smtp_reply *r)
{
	struct gw *g = gc->g;
	struct tes_verdict v;
	(void)env;

	if (!g->p.st || gc->src.family == TES_ADDR_NONE)
		return;
	if (!enfstate_decide_source(g->p.st, &gc->src, gc->tenant, ctlclient_now(g->p.cc),
				    gc->via_connector, &v))
		return;
	STAT_ADD_IDX(g, gc->worker, mail_verdicts, v.action);
	/* A full block lets this one through to its headers (the verdict log
	 * has refusals only; tes_probes_total counts these). */
	if (v.reason == TES_REASON_PROBE)
		log_msg(LOG_INFO, "enforce peer=%s at=mail action=probe stage=%u", gc->peer,
			v.stage);
	if (v.action != TES_ACCEPT) {
		struct enfstate_source es;

		/* for the report: the server the source carried last (the
		 * headers that would name it were not read) */
		if (g->p.cc && enfstate_lookup_source(g->p.st, &gc->src, &es) &&
		    es.tenant_id == gc->tenant)
			ctlclient_refusal(g->p.cc, gc->worker, es.tenant_id, es.fqdn,
					  v.action == TES_THROTTLE);
		log_verdict(gc, VLOG_AT_MAIL, &v, NULL);
		log_msg(LOG_INFO, "enforce peer=%s at=mail action=%s stage=%u reply=\"%u %s\"",
			gc->peer, tes_action_name(v.action), v.stage, v.code, v.enhanced);
		verdict_reply(&v, r);
	}
}

static enum tes_build_class classify(const struct exdetect_result *det,
				     const struct enfstate_class *ec, bool have_catalog)
{
	switch (det->family) {
	case EX_FAMILY_NONE:
	case EX_FAMILY_ONLINE:
		return TES_BUILD_NOT_EXCHANGE;
	default:
		break;
	}
	if (!have_catalog)
		return TES_BUILD_UNKNOWN; /* decide on the stored state alone */
	return ec->compliant ? TES_BUILD_COMPLIANT : TES_BUILD_VULNERABLE;
}

static void enforce_at_headers(struct gw_conn *gc, const struct exdetect_result *det,
			       enum tes_build_class cls, struct smtp_reply *r,
			       struct tes_verdict *v)
{
	struct gw *g = gc->g;
	int64_t now = ctlclient_now(g->p.cc);
	struct tes_detection d = { .cls = cls, .family = det->family, .build = det->build };

	enfstate_decide(g->p.st, gc->tenant, det->server, &gc->src, &d, now, gc->via_connector, v);
	STAT_ADD_IDX(g, gc->worker, header_verdicts, v->action);
	if (v->action != TES_ACCEPT) {
		if (g->p.cc)
			ctlclient_refusal(g->p.cc, gc->worker, gc->tenant, det->server,
					  v->action == TES_THROTTLE);
		log_verdict(gc, VLOG_AT_HEADERS, v, det);
	}
	verdict_reply(v, r);

	if (cls != TES_BUILD_COMPLIANT && cls != TES_BUILD_VULNERABLE)
		return;
	struct ctl_sighting sg = {
		.tenant_id = gc->tenant,
		.build = det->build,
		.family = det->family,
		.cls = cls,
		.source = gc->src,
		.time = now,
	};
	size_t n = strnlen(det->server, sizeof(sg.fqdn) - 1); /* per message: no printf */
	memcpy(sg.fqdn, det->server, n);
	sg.fqdn[n] = '\0';
	if (g->p.cc && !ctlclient_sighting(g->p.cc, gc->worker, &sg))
		STAT_ADD(g, gc->worker, sightings_dropped);
}

/* ---- engine hooks ---- */

static void h_mail(void *ctx, const struct smtp_envelope *env, struct smtp_reply *r)
{
	struct gw_conn *gc = ctx;
	const struct delivery_backend *be = gc->g->p.backend;
	gc->msg_failed = false;
	gc->msg_nospace = false;
	enforce_at_mail(gc, env, r);
	/* RFC 5321 4.5.3.1.10: no room now for a message (of its declared size) */
	if (r->code < 400 && be->admit && !be->admit(be->be, env->size_param)) {
		STAT_ADD(gc->g, gc->worker, no_space);
		smtp_reply_set(r, 452, "4.3.1", "Insufficient system storage, try again later");
	}
}

static void h_headers(void *ctx, const struct smtp_envelope *env, const char *hdr, size_t len,
		      bool truncated, struct smtp_reply *r)
{
	struct gw_conn *gc = ctx;
	struct gw *g = gc->g;
	struct exdetect_result det;
	struct enfstate_class ec;

	memset(&ec, 0, sizeof(ec));
	if (!exdetect_scan(g->p.exdetect, hdr, len, &det)) {
		STAT_ADD(g, gc->worker, not_exchange);
		if (log_enabled(LOG_DEBUG))
			log_msg(LOG_DEBUG, "detect peer=%s exchange=no truncated=%s", gc->peer,
				truncated ? "yes" : "no");
		return;
	}
	STAT_ADD(g, gc->worker, exchange_seen);
	STAT_ADD_IDX(g, gc->worker, family, det.family < EX_FAMILY_COUNT ? det.family : 0);
	/* at the clock the verdict is decided with: compliance rules end */
	bool have_catalog =
		g->p.st && enfstate_classify(g->p.st, &det.build, ctlclient_now(g->p.cc), &ec);
	enum tes_build_class cls = classify(&det, &ec, have_catalog);
	struct tes_verdict v = { .action = TES_ACCEPT };
	if (g->p.st)
		enforce_at_headers(gc, &det, cls, r, &v);

	/* one line per Exchange message: built by hand, not by printf (it
	 * showed in the DPDK worker's profile); the fields are the ones
	 * docs/telemetry.md lists */
	struct log_line l;
	if (!log_begin(&l, LOG_INFO))
		return;
	char build[48];
	ex_build_format(&det.build, build, sizeof(build));
	log_s(&l, "detect peer=");
	log_s(&l, gc->peer);
	log_s(&l, " helo=");
	log_clean(&l, env->helo, LOG_HELO_MAX);
	log_s(&l, " from=<");
	log_clean(&l, env->mail_from, LOG_PATH_MAX);
	log_s(&l, "> server=");
	log_clean(&l, det.server, LOG_PATH_MAX);
	log_s(&l, " build=");
	log_s(&l, build);
	log_s(&l, " family=");
	log_s(&l, ex_family_name(det.family));
	log_s(&l, " branch=");
	log_s(&l, ec.branch);
	log_s(&l, " update=\"");
	log_s(&l, ec.has_nearest ? ec.nearest.update : "");
	log_s(&l, "\" compliant=");
	log_s(&l, !have_catalog ? "unknown" : ec.compliant ? "yes" : "no");
	log_s(&l, " hop=");
	log_u(&l, det.hop);
	log_s(&l, " line=");
	log_u(&l, det.line);
	log_s(&l, det.mapi ? " mapi=yes" : " mapi=no");
	if (truncated)
		log_s(&l, " truncated=yes");
	log_s(&l, " tenant=");
	log_u(&l, gc->tenant);
	log_s(&l, " action=");
	log_s(&l, tes_action_name(v.action));
	log_s(&l, " stage=");
	log_u(&l, v.stage);
	if (!g->p.st)
		log_s(&l, " enforcement=off");
	log_end(&l);
}

static int h_data(void *ctx, const uint8_t *p, size_t n)
{
	struct gw_conn *gc = ctx;
	const struct delivery_backend *be = gc->g->p.backend;
	if (gc->msg_nospace)
		return 0; /* read and dropped: the answer is 452 at the end */
	if (gc->msg_failed)
		return -1;
	if (!gc->msg) {
		gc->msg = be->open(be->be, gc->worker);
		if (!gc->msg) {
			gc->msg_failed = true;
			return -1;
		}
	}
	int rc = be->write(gc->msg, p, n);
	if (rc != 0) {
		be->abort(gc->msg);
		gc->msg = NULL;
		if (rc == DELIVERY_ENOSPC) {
			gc->msg_nospace = true;
			return 0;
		}
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
	gc->tp->post(gc->tw, &gc->post);
}

static int h_message(void *ctx, const struct smtp_envelope *env, struct smtp_reply *r)
{
	struct gw_conn *gc = ctx;
	const struct delivery_backend *be = gc->g->p.backend;
	if (gc->msg_nospace) {
		gc->msg_nospace = false;
		STAT_ADD(gc->g, gc->worker, no_space);
		smtp_reply_set(r, 452, "4.3.1", "Insufficient system storage, try again later");
		return 0;
	}
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
	clock_gettime(CLOCK_MONOTONIC, &gc->submitted);
	be->submit(m, env, gc->peer, delivered, gc);
	return SMTP_PENDING;
}

/* Add what the session's engine counted since the last call to the
 * worker's counters: plain per-connection subtractions, no atomics beyond
 * the relaxed stores every worker counter uses. */
static void account_smtp(struct gw_conn *gc)
{
	struct gw_worker *w = &gc->g->w[gc->worker];
	const struct smtp_stats *now = smtp_stats(gc->s);

	if (now->commands != gc->counted.commands)
		__atomic_store_n(&w->st.smtp_commands,
				 w->st.smtp_commands + (now->commands - gc->counted.commands),
				 __ATOMIC_RELAXED);
	for (int c = 2; c <= 5; c++)
		if (now->replies[c] != gc->counted.replies[c])
			__atomic_store_n(&w->st.smtp_replies[c],
					 w->st.smtp_replies[c] +
						 (now->replies[c] - gc->counted.replies[c]),
					 __ATOMIC_RELAXED);
	gc->counted = *now;
}

/* ---- transport side ---- */

static void pt_free(struct gw_conn *gc)
{
	free(gc->pt);
	gc->pt = NULL;
	gc->pt_off = gc->pt_len = 0;
}

/* Move engine output to the transport; returns what did not fit. */
static size_t out_move(struct gw_conn *gc)
{
	size_t len;
	const uint8_t *p = smtp_output(gc->s, &len);
	if (len == 0)
		return 0;
	size_t took = t_write(gc, p, len);
	smtp_output_consume(gc->s, took);
	return len - took;
}

/* ---- STARTTLS ----
 * After the plaintext 220, bytes from the transport are ciphertext for the
 * TLS layer; what it decrypts goes to the engine, and the engine's replies
 * go back through it.  Every step moves bytes between bounded buffers (the
 * transport's, the TLS layer's queues, the engine's output, pt), and a step
 * that cannot move anything waits for the event that frees room: on_writable
 * for output, a delivery verdict for a waiting engine.  Reading stops
 * meanwhile, so a client that floods or does not read meets TCP flow
 * control, not growing buffers. */

/* Decrypted bytes are read into this before the engine sees them; only
 * what the engine leaves is copied into the connection (pt).  One TLS
 * record's worth of plaintext. */
static _Thread_local uint8_t tls_scratch[16384];

static void tls_publish(struct gw *g, unsigned wi)
{
	_Static_assert(sizeof(struct tls_counters) % sizeof(uint64_t) == 0, "counters only");
	const uint64_t *src = (const uint64_t *)(const void *)&g->w[wi].tctr;
	uint64_t *dst = (uint64_t *)(void *)&g->w[wi].st.tls;
	for (size_t i = 0; i < sizeof(struct tls_counters) / sizeof(uint64_t); i++)
		__atomic_store_n(&dst[i], src[i], __ATOMIC_RELAXED);
}

static bool tls_begin(struct gw_conn *gc)
{
	struct gw *g = gc->g;
	gc->tls_pending = false;
	gc->tls = tls_conn_new(g->p.tls, &g->w[gc->worker].tctr);
	if (!gc->tls) {
		log_msg(LOG_WARN, "tls peer=%s: out of memory, closing", gc->peer);
		return false;
	}
	STAT_ADD(g, gc->worker, tls_starts);
	return true;
}

/* Pending ciphertext to the transport; returns how many octets it took. */
static size_t tls_send(struct gw_conn *gc)
{
	const uint8_t *p;
	size_t len;
	tls_pending_ciphertext(gc->tls, &p, &len);
	if (len == 0)
		return 0;
	size_t took = t_write(gc, p, len);
	tls_consume_ciphertext(gc->tls, took);
	return took;
}

static size_t tls_unsent(const struct gw_conn *gc)
{
	const uint8_t *p;
	size_t len;
	tls_pending_ciphertext(gc->tls, &p, &len);
	return len;
}

/* A verified client certificate: the connection came over a certificate
 * connector if one of the certificate's names (its DNS SANs, else its CN)
 * is the connector's name and the source is in its range.  The session
 * starts over after STARTTLS, so the tenant found here is the one every
 * message of it is enforced and reported under.  Once per TLS connection,
 * so a short RCU walk per name is fine. */
static void match_cert_connector(struct gw_conn *gc, const struct tls_peer_cert *pc)
{
	struct gw *g = gc->g;
	char name[TES_CERT_NAME_MAX + 1];
	uint32_t best = 0, tid;
	bool found = false;

	if (!g->p.st || gc->src.family == TES_ADDR_NONE)
		return;
	for (unsigned i = 0; tls_peer_cert_name(pc, i, name, sizeof(name)); i++) {
		/* address-only connectors match whatever the name; the lowest
		 * tenant wins, as for the address alone */
		if (name[0] && enfstate_tenant_for_source(g->p.st, &gc->src, name, &tid) &&
		    (!found || tid < best)) {
			best = tid;
			found = true;
		}
	}
	if (!found)
		return;
	gc->tenant = best;
	gc->via_connector = true;
	log_msg(LOG_INFO, "tls peer=%s client certificate verified: tenant=%u", gc->peer, best);
}

/* RFC 3207 4.2: the session starts over once TLS is up, and must do so
 * before the first decrypted octet reaches the engine.  The handshake can
 * finish inside a feed or inside a read, so this follows each. */
static void tls_check_up(struct gw_conn *gc)
{
	if (gc->tls_up || !tls_handshake_done(gc->tls))
		return;
	gc->tls_up = true;
	smtp_tls_started(gc->s);
	tls_publish(gc->g, gc->worker);
	const struct tls_peer_cert *pc = tls_peer_cert(gc->tls);
	log_msg(LOG_INFO, "tls peer=%s version=%s cipher=%s bits=%d resumed=%s%s%s%s%s%s%s",
		gc->peer, tls_version_name(gc->tls), tls_cipher_name(gc->tls),
		tls_cipher_bits(gc->tls), tls_session_resumed(gc->tls) ? "yes" : "no",
		pc ? " client_cn=\"" : "", pc ? pc->cn : "", pc ? "\" client_san=" : "",
		pc ? pc->san : "", pc && pc->verified ? " client_verified=yes" : "",
		pc && pc->verify_error[0] ? " client_verified=no" : "");
	if (pc && pc->verify_error[0])
		log_msg(LOG_INFO, "tls peer=%s client certificate not verified: %s", gc->peer,
			pc->verify_error);
	if (pc && pc->verified)
		match_cert_connector(gc, pc);
}

/* A fatal TLS error: the alert OpenSSL queued goes out (best effort), then
 * the connection closes.  The TLS layer has counted it. */
static void tls_fail(struct gw_conn *gc)
{
	gc->tls_dead = true;
	log_msg(LOG_INFO, "tls peer=%s %s: %s", gc->peer, gc->tls_up ? "error" : "handshake failed",
		tls_error_reason(gc->tls));
	tls_publish(gc->g, gc->worker);
	tls_send(gc);
	pt_free(gc);
	t_close(gc);
}

static bool gc_closing(const struct gw_conn *gc)
{
	return gc->close_after_flush || smtp_closing(gc->s);
}

/* Decrypted input to the engine; keeps what it leaves in pt.  false when
 * pt cannot be allocated (the connection is then closed). */
static bool engine_feed(struct gw_conn *gc, const uint8_t *p, size_t n, bool from_pt)
{
	size_t used = 0;
	enum smtp_status st = smtp_feed(gc->s, p, n, &used);
	if (used > n)
		used = n;
	if (st == SMTP_CLOSE || st == SMTP_STARTTLS) {
		/* after QUIT or 421 the rest is of no interest; a second
		 * STARTTLS is refused by the engine and never gets here */
		gc->close_after_flush = true;
		pt_free(gc);
		return true;
	}
	if (from_pt) {
		gc->pt_off += used;
		gc->pt_len -= used;
		if (gc->pt_len == 0)
			pt_free(gc);
		return true;
	}
	if (used == n)
		return true;
	gc->pt = malloc(n - used);
	if (!gc->pt)
		return false;
	memcpy(gc->pt, p + used, n - used);
	gc->pt_off = 0;
	gc->pt_len = n - used;
	return true;
}

/* Move whatever can move, until nothing does.  Returns whether anything
 * moved; false means every side waits for an event (room in the transport,
 * a verdict, more ciphertext). */
static bool tls_pump(struct gw_conn *gc)
{
	bool any = false, moved;
	do {
		moved = false;
		if (gc->tls_dead)
			return true;
		moved |= tls_send(gc) > 0;
		tls_check_up(gc);
		if (!gc->tls_up) {
			any |= moved;
			break; /* the handshake waits for the client */
		}

		size_t olen;
		const uint8_t *o = smtp_output(gc->s, &olen);
		if (olen > 0 && !gc->tls_shut) {
			size_t used = 0;
			if (tls_write_plaintext(gc->tls, o, olen, &used) == TLS_ERROR) {
				tls_fail(gc);
				return true;
			}
			smtp_output_consume(gc->s, used);
			moved |= used > 0;
		}

		bool engine_free = !gc->waiting && !gc_closing(gc);
		if (engine_free && gc->pt_len > 0) {
			size_t before = gc->pt_len;
			engine_feed(gc, gc->pt + gc->pt_off, gc->pt_len, true);
			moved |= gc->pt_len != before;
			engine_free = !gc->waiting && !gc_closing(gc);
		}

		/* More input only when the engine took all before and its replies
		 * have gone into TLS: otherwise the input would only pile up. */
		smtp_output(gc->s, &olen);
		if (engine_free && gc->pt_len == 0 && olen == 0) {
			ssize_t r = tls_read_plaintext(gc->tls, tls_scratch, sizeof(tls_scratch));
			tls_check_up(gc);
			if (r > 0) {
				moved = true;
				if (!engine_feed(gc, tls_scratch, (size_t)r, false)) {
					log_msg(LOG_WARN, "tls peer=%s: out of memory, closing",
						gc->peer);
					gc->tls_dead = true;
					t_close(gc);
					return true;
				}
			} else if (r == TLS_CLOSED) {
				/* close_notify or the end of the transport: SMTP is over
				 * for this client once its replies are out */
				gc->close_after_flush = true;
				moved = true;
			} else if (r == TLS_ERROR) {
				tls_fail(gc);
				return true;
			}
		}
		moved |= tls_send(gc) > 0;
		any |= moved;
	} while (moved);
	return any;
}

/* After a pump: close when due, and read again only when every stage
 * behind the transport has room (may_resume false: the caller saw the
 * TLS input queue refuse bytes and keeps the transport paused). */
static void tls_settle(struct gw_conn *gc, bool may_resume)
{
	size_t olen;
	if (gc->tls_dead)
		return;
	smtp_output(gc->s, &olen);
	if (gc_closing(gc)) {
		if (!gc->tls_up) {
			t_close(gc); /* mid-handshake: nothing to say */
			return;
		}
		if (gc->waiting || olen > 0) {
			t_pause(gc); /* the verdict and the last replies first */
			return;
		}
		if (!gc->tls_shut) {
			gc->tls_shut = true;
			tls_shutdown(gc->tls);
			tls_send(gc);
		}
		if (tls_unsent(gc) == 0)
			t_close(gc);
		else
			t_pause(gc); /* on_writable brings the rest */
		return;
	}
	if (!may_resume || gc->waiting || olen > 0 || gc->pt_len > 0 || tls_unsent(gc) > 0)
		t_pause(gc);
	else
		t_resume(gc);
}

/* Ciphertext from the transport. */
static size_t tls_data(struct gw_conn *gc, const uint8_t *p, size_t n)
{
	size_t off = 0;

	if (gc->tls_dead)
		return n;
	for (;;) {
		size_t used = 0;
		if (tls_feed_ciphertext(gc->tls, p + off, n - off, &used) == TLS_ERROR) {
			tls_fail(gc);
			return n;
		}
		off += used;
		bool moved = tls_pump(gc);
		if (gc->tls_dead)
			return n;
		if (off == n)
			break;
		if (used == 0 && !moved) {
			/* The TLS input queue is full and nothing behind it moves:
			 * the transport keeps the rest until an event frees room. */
			tls_settle(gc, false);
			return gc_closing(gc) ? n : off;
		}
	}
	tls_settle(gc, true);
	return n;
}

/* After the engine moved outside smtp_feed (a verdict, the transport
 * draining): send what it said and decide whether to read again. */
static void settle(struct gw_conn *gc)
{
	account_smtp(gc);
	if (gc->tls) {
		if (!gc->tls_dead) {
			tls_pump(gc);
			tls_settle(gc, true);
		}
		return;
	}
	if (out_move(gc) > 0) {
		gc->blocked = true;
		t_pause(gc);
		return;
	}
	gc->blocked = false;
	if (gc->tls_pending) {
		/* the 220 is with the transport: whatever arrives now is TLS */
		if (tls_begin(gc))
			t_resume(gc);
		else
			t_close(gc);
		return;
	}
	if (gc->close_after_flush || smtp_closing(gc->s)) {
		t_close(gc);
		return;
	}
	if (gc->waiting)
		t_pause(gc);
	else
		t_resume(gc);
}

static void conn_free(struct gw_conn *gc)
{
	if (gc->s)
		smtp_session_free(gc->s);
	if (gc->tls) {
		tls_conn_free(gc->tls);
		tls_publish(gc->g, gc->worker);
	}
	free(gc->pt);
	free(gc);
}

/* A spool fsync takes from under a millisecond to tens of milliseconds; a
 * relay to a backend MTA up to its data timeout. */
const double gw_latency_bounds[GW_LATENCY_BOUNDS] = { 0.0005, 0.001, 0.0025, 0.005, 0.01,
						      0.025,  0.05,  0.1,    0.25,  0.5,
						      1,      2.5,   5,      10 };

/* On the worker that owns gc, so plain per-worker counters suffice. */
static void latency_observe(struct gw *g, struct gw_conn *gc)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	int64_t us = (int64_t)(now.tv_sec - gc->submitted.tv_sec) * 1000000 +
		     (now.tv_nsec - gc->submitted.tv_nsec) / 1000;
	if (us < 0)
		us = 0;
	unsigned i = 0;
	while (i < GW_LATENCY_BOUNDS && (double)us / 1e6 > gw_latency_bounds[i])
		i++;
	STAT_ADD_IDX(g, gc->worker, latency, i);
	__atomic_store_n(&g->w[gc->worker].st.latency_sum_us,
			 g->w[gc->worker].st.latency_sum_us + (uint64_t)us, __ATOMIC_RELAXED);
}

/* A last line before the transport closes (a timeout, a slow client): in
 * plaintext, or inside TLS followed by close_notify; mid-handshake there is
 * no way to say it. */
static void say_goodbye(struct gw_conn *gc, const char *line)
{
	if (!gc->tls) {
		if (!gc->tls_pending)
			t_write(gc, line, strlen(line));
		return;
	}
	if (gc->tls_up && !gc->tls_dead && !gc->tls_shut) {
		size_t used;
		tls_write_plaintext(gc->tls, (const uint8_t *)line, strlen(line), &used);
		gc->tls_shut = true;
		tls_shutdown(gc->tls);
		tls_send(gc);
	}
}

/* Coarse is enough for windows of seconds, and it is the cheapest vDSO
 * clock (this runs per input on the DPDK workers, where no system call is
 * allowed: the vDSO makes none). */
static uint64_t coarse_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void rate_restart(struct gw_conn *gc)
{
	gc->rate_start = coarse_ms();
	gc->rate_bytes = 0;
}

/* min_data_rate: once a window has passed, the client must have sent its
 * share in it, or it is told 421 and closed.  Time the session spends
 * waiting for a delivery verdict is the gateway's, not the client's: the
 * window starts again when the verdict arrives.  true: closed. */
static bool too_slow(struct gw_conn *gc)
{
	struct gw *g = gc->g;
	if (!g->p.set.min_data_rate || gc->waiting || gc_closing(gc) || gc->tls_dead)
		return false;
	uint64_t now = coarse_ms(), el = now - gc->rate_start;
	if (el < (uint64_t)g->p.set.min_data_rate_window * 1000u)
		return false;
	if (gc->rate_bytes * 1000u >= (uint64_t)g->p.set.min_data_rate * el) {
		gc->rate_start = now;
		gc->rate_bytes = 0;
		return false;
	}
	STAT_ADD(g, gc->worker, slow_closed);
	log_msg(LOG_INFO, "slow peer=%s: %llu octets in %llu ms, below min_data_rate %u/s: closing",
		gc->peer, (unsigned long long)gc->rate_bytes, (unsigned long long)el,
		g->p.set.min_data_rate);
	say_goodbye(gc, g->slow_line);
	gc->close_after_flush = true;
	t_close(gc);
	return true;
}

static void verdict_arrived(struct gw_post *p)
{
	struct gw_conn *gc = container_of(p, struct gw_conn, post);
	struct gw *g = gc->g;
	gc->waiting = false;
	rate_restart(gc);
	latency_observe(g, gc);
	if (gc->verdict.code >= 200 && gc->verdict.code < 300)
		STAT_ADD(g, gc->worker, messages_accepted);
	else
		STAT_ADD(g, gc->worker, messages_refused);
	if (!gc->tc) {
		/* The client left (or shutdown closed it) while the backend
		 * worked: a stored message stays stored; the client retries. */
		STAT_ADD(g, gc->worker, orphaned);
		log_msg(LOG_WARN, "delivery finished after peer=%s was gone: %d %s %s", gc->peer,
			gc->verdict.code, gc->verdict.enh, gc->verdict.text);
		conn_free(gc);
		return;
	}
	struct log_line l; /* every message: built by hand, as the detect line */
	if (log_begin(&l, LOG_INFO)) {
		log_s(&l, "message peer=");
		log_s(&l, gc->peer);
		log_s(&l, " result=\"");
		log_i(&l, gc->verdict.code);
		log_c(&l, ' ');
		log_s(&l, gc->verdict.enh);
		log_c(&l, ' ');
		log_s(&l, gc->verdict.text);
		log_c(&l, '"');
		if (gc->tls_up) {
			log_s(&l, " tls=");
			log_s(&l, tls_version_name(gc->tls));
			log_c(&l, '/');
			log_s(&l, tls_cipher_name(gc->tls));
		}
		log_end(&l);
	}
	smtp_message_done(gc->s, &gc->verdict);
	settle(gc);
}

/* The client's address as the logs show it ("192.0.2.1:25",
 * "[2001:db8::1]:25") and as the engine's address literal, whose brackets
 * it adds itself (RFC 5321 4.1.3: "192.0.2.1", "IPv6:2001:db8::1"); an
 * IPv4-mapped address is IPv4 (tes_addr_v6 made it so).  By hand, not
 * printf: once per connection, on the worker. */
static void peer_text(struct gw_conn *gc, const struct sockaddr_storage *peer)
{
	char addr[INET6_ADDRSTRLEN] = "unknown";
	unsigned port = 0;
	size_t n;

	if (peer->ss_family == AF_INET)
		port = ntohs(((const struct sockaddr_in *)(const void *)peer)->sin_port);
	else if (peer->ss_family == AF_INET6)
		port = ntohs(((const struct sockaddr_in6 *)(const void *)peer)->sin6_port);
	if (gc->src.family == TES_ADDR_V4) {
		n = 0;
		for (int i = 0; i < 4; i++) {
			if (i)
				n = tes_str_append(addr, sizeof(addr), n, ".");
			n = tes_str_append_u64(addr, sizeof(addr), n, gc->src.a[i]);
		}
	} else if (gc->src.family == TES_ADDR_V6) {
		inet_ntop(AF_INET6, gc->src.a, addr, sizeof(addr));
	}
	if (gc->src.family == TES_ADDR_NONE) {
		tes_str_copy(gc->peer, sizeof(gc->peer), addr);
		tes_str_copy(gc->peer_lit, sizeof(gc->peer_lit), addr);
		return;
	}
	bool v6 = gc->src.family == TES_ADDR_V6;
	n = tes_str_copy(gc->peer, sizeof(gc->peer), v6 ? "[" : "");
	n = tes_str_append(gc->peer, sizeof(gc->peer), n, addr);
	n = tes_str_append(gc->peer, sizeof(gc->peer), n, v6 ? "]:" : ":");
	tes_str_append_u64(gc->peer, sizeof(gc->peer), n, port);
	n = tes_str_copy(gc->peer_lit, sizeof(gc->peer_lit), v6 ? "IPv6:" : "");
	tes_str_append(gc->peer_lit, sizeof(gc->peer_lit), n, addr);
}

struct gw_conn *gw_conn_open(struct gw *g, const struct gw_transport *tp, void *tc, void *tw,
			     unsigned worker, const struct sockaddr_storage *peer,
			     const char **refuse)
{
	struct gw_conn *gc = calloc(1, sizeof(*gc));
	if (!gc) {
		*refuse = g->busy_line;
		return NULL;
	}
	gc->g = g;
	gc->tp = tp;
	gc->tc = tc;
	gc->tw = tw;
	gc->worker = worker;
	gc->post.fn = verdict_arrived;
	if (peer->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)peer;
		tes_addr_v4(&gc->src, (const uint8_t *)&in->sin_addr);
	} else if (peer->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)peer;
		tes_addr_v6(&gc->src, in6->sin6_addr.s6_addr);
	}
	if (g->p.st && gc->src.family != TES_ADDR_NONE) {
		/* a source of fully blocked servers under a "drop" policy: closed
		 * before a word is said (XDP drops it earlier where attached) */
		if (enfstate_source_drop(g->p.st, &gc->src, ctlclient_now(g->p.cc))) {
			STAT_ADD(g, gc->worker, early_drops);
			log_verdict(gc, VLOG_AT_CONNECT, NULL, NULL);
			free(gc);
			*refuse = NULL;
			return NULL;
		}
		gc->via_connector =
			enfstate_tenant_for_source(g->p.st, &gc->src, NULL, &gc->tenant);
	}
	peer_text(gc, peer);
	gc->s = smtp_session_new(g->p.smtp, &g->hooks, gc, gc->peer_lit);
	if (!gc->s) {
		free(gc);
		*refuse = g->busy_line;
		return NULL;
	}
	STAT_ADD(g, gc->worker, sessions);
	rate_restart(gc);
	smtp_start(gc->s);
	settle(gc);
	return gc;
}

static size_t conn_data(struct gw_conn *gc, const uint8_t *p, size_t n);

size_t gw_conn_data(struct gw_conn *gc, const uint8_t *p, size_t n)
{
	if (too_slow(gc))
		return n;
	size_t used = conn_data(gc, p, n);
	gc->rate_bytes += used;
	return used;
}

static size_t conn_data(struct gw_conn *gc, const uint8_t *p, size_t n)
{
	size_t off = 0;
	unsigned stalls = 0;

	account_smtp(gc);
	if (gc->tls)
		return tls_data(gc, p, n);
	if (gc->tls_pending)
		return n; /* sent before the client saw the 220: not TLS, not SMTP */
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
				t_pause(gc);
				return off;
			}
			/* The engine had room again at once; but never spin on
			 * an engine that takes nothing. */
			if (used == 0 && ++stalls > 2)
				return off;
			break;
		case SMTP_WAIT:
			t_pause(gc);
			return off;
		case SMTP_STARTTLS:
			/* RFC 3207 4.2: whatever the client pipelined behind
			 * STARTTLS was sent before it could know TLS would start
			 * (the command-injection attack).  The engine dropped the
			 * rest of this buffer; returning n drops everything the
			 * transport holds too.  The 220 goes out in plaintext first. */
			if (!gc->g->p.tls) {
				/* not offered, so the engine cannot get here */
				gc->close_after_flush = true;
				t_close(gc);
				return n;
			}
			if (left > 0) {
				gc->tls_pending = true;
				gc->blocked = true;
				t_pause(gc);
				return n;
			}
			if (!tls_begin(gc))
				t_close(gc);
			return n;
		case SMTP_CLOSE:
			gc->close_after_flush = true;
			if (left > 0) {
				gc->blocked = true;
				t_pause(gc);
			} else {
				t_close(gc);
			}
			return n;
		}
	}
	return off;
}

void gw_conn_writable(struct gw_conn *gc)
{
	if (too_slow(gc))
		return;
	if (gc->blocked || gc->tls)
		settle(gc);
}

void gw_conn_timeout(struct gw_conn *gc, enum gw_timeout which)
{
	const char *line = which == GW_TIMEOUT_IDLE ? gc->g->idle_line : gc->g->session_line;
	log_msg(LOG_DEBUG, "timeout peer=%s %s", gc->peer,
		which == GW_TIMEOUT_IDLE ? "idle" : "session");
	/* A session waiting for its verdict gets the verdict instead, if it
	 * comes within the linger time. */
	if (gc->waiting)
		return;
	say_goodbye(gc, line);
}

void gw_conn_shutdown(struct gw_conn *gc)
{
	/* Between STARTTLS and the end of the handshake nothing can be said. */
	if (gc->tls_pending || (gc->tls && !gc->tls_up)) {
		t_close(gc);
		return;
	}
	/* Mid-transaction sessions get their 421 after the reply to the
	 * message in flight, from the engine itself. */
	if (smtp_shutdown(gc->s)) {
		gc->close_after_flush = true;
		settle(gc);
	}
}

void gw_conn_closed(struct gw_conn *gc, enum gw_close_reason why)
{
	log_msg(LOG_DEBUG, "close peer=%s reason=%d", gc->peer, (int)why);
	account_smtp(gc);
	gc->tc = NULL;
	if (gc->tls) {
		if (why == GW_CLOSE_PEER && !gc->tls_dead) {
			/* Let the TLS layer see the end, so a half-done handshake
			 * is counted as "eof" rather than "abandoned" and a peer
			 * that left without close_notify as unclean_eof.  What is
			 * still decrypted is of no use to anyone now. */
			tls_transport_eof(gc->tls);
			while (tls_read_plaintext(gc->tls, tls_scratch, sizeof(tls_scratch)) > 0)
				;
		}
		tls_conn_free(gc->tls);
		gc->tls = NULL;
		tls_publish(gc->g, gc->worker);
	}
	pt_free(gc);
	smtp_abort(gc->s); /* on_abort discards content not yet submitted */
	h_abort(gc);
	smtp_session_free(gc->s);
	gc->s = NULL;
	if (!gc->waiting)
		conn_free(gc);
	/* else: the verdict's arrival frees it */
}

/* Workers are RCU readers of the enforcement state: online while they
 * work, offline while they may sleep in epoll_wait (which also serves as
 * their quiescent state, so retired entries are freed promptly). */
bool gw_conn_waiting(const struct gw_conn *gc)
{
	return gc->waiting;
}

void gw_worker_start(struct gw *g)
{
	if (g->p.st)
		enfstate_thread_register();
}

void gw_worker_quiescent(struct gw *g)
{
	if (g->p.st)
		enfstate_quiescent();
}

void gw_worker_offline(struct gw *g)
{
	if (g->p.st)
		enfstate_thread_offline();
}

void gw_worker_online(struct gw *g)
{
	if (g->p.st)
		enfstate_thread_online();
}

void gw_worker_stop(struct gw *g)
{
	if (g->p.st)
		enfstate_thread_unregister();
}

void gw_count_early_drop(struct gw *g, unsigned worker)
{
	STAT_ADD(g, worker, early_drops);
}

bool gw_source_drop(struct gw *g, const struct tes_addr *src)
{
	return g->p.st && enfstate_source_drop(g->p.st, src, ctlclient_now(g->p.cc));
}

void gw_set_control(struct gw *g, struct ctlclient *cc)
{
	g->p.cc = cc;
}

struct gw *gw_new(const struct gw_params *p)
{
	struct gw *g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	g->p = *p;
	unsigned nw = p->workers ? p->workers : 1;
	g->w = calloc(nw, sizeof(*g->w));
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
	snprintf(g->slow_line, sizeof(g->slow_line),
		 "421 4.4.2 %.64s Connection too slow, closing connection\r\n", p->hostname);
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
	/* every member is a uint64_t counter: sum them as an array */
	_Static_assert(sizeof(struct gw_stats) % sizeof(uint64_t) == 0, "gw_stats is counters");
	uint64_t *o = (uint64_t *)(void *)out;
	size_t n = sizeof(*out) / sizeof(uint64_t);

	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < (g->p.workers ? g->p.workers : 1); i++) {
		const uint64_t *w = (const uint64_t *)(const void *)&g->w[i].st;
		for (size_t j = 0; j < n; j++)
			o[j] += __atomic_load_n(&w[j], __ATOMIC_RELAXED);
	}
}

/* ---- exports (gateway/observe/registry.h) ----
 * The connection, SMTP and TLS counters: the transport's and the
 * sessions', one group, so /metrics keeps its families in the order
 * operators know (tes_connections_early_dropped_total, a session counter,
 * among the transport's). */

struct conn_snap {
	struct gw_io_stats io;
	struct gw_stats gs;
};

static bool export_read(const void *arg, unsigned i, void *snap)
{
	const struct gw *g = arg;
	struct conn_snap *cs = snap;

	(void)i;
	if (g->io && g->io->ops)
		g->io->ops->stats(g->io->t, &cs->io);
	gw_stats(g, &cs->gs);
	return true;
}

static const char *family_name(unsigned i)
{
	return ex_family_name((enum ex_family)i);
}

static const char *fail_reason_name(unsigned i)
{
	return tls_fail_reason_name((enum tls_fail_reason)i);
}

#define IO(f) offsetof(struct conn_snap, io.f)
#define GS(f) offsetof(struct conn_snap, gs.f)
#define W sizeof(uint64_t)

static const char *const reasons[] = { "global", "source" };
static const char *const kinds[] = { "idle", "session" };
static const char *const classes[] = { "2xx", "3xx", "4xx", "5xx" };
static const char *const outcomes[] = { "accepted", "refused" };
static const char *const actions[] = { "accept", "throttle", "block", "drop" };
static const char *const results[] = { "full", "resumed", "failed" };

static const struct obs_hist latency_hist = {
	.bounds = gw_latency_bounds,
	.nbounds = GW_LATENCY_BOUNDS,
	.sum_off = GS(latency_sum_us),
	.sum_div = 1e6,
};

static const struct obs_row conn_rows[] = {
	/* connections: the transport's */
	{ .name = "tes_connections_accepted_total",
	  .help = "Connections accepted within the connection limits",
	  .key = "connections_accepted",
	  .off = IO(accepted) },
	{ .name = "tes_connections_refused_total",
	  .help = "Connections refused at accept: over max_connections (global), over "
		  "max_connections_per_source (source), or by the gateway (app: early drops, "
		  "shutdown)",
	  .key = "connections_refused_",
	  .off = IO(refused_global),
	  .l2 = "reason",
	  .n = 2,
	  .names = reasons,
	  .stride = W },
	{ .name = "tes_connections_refused_total",
	  .off = IO(refused_app),
	  .l2 = "reason",
	  .names = (const char *const[]){ "app" } },
	{ .name = "tes_connections_early_dropped_total",
	  .help = "Connections from sources in drop, closed without a greeting",
	  .key = "early_drops",
	  .off = GS(early_drops) },
	{ .name = "tes_connection_timeouts_total",
	  .help = "Connections closed by a timeout",
	  .key = "timeouts_",
	  .off = IO(timeouts_idle),
	  .l2 = "kind",
	  .n = 2,
	  .names = kinds,
	  .stride = W },
	{ .name = "tes_connections_open",
	  .help = "Connections open now",
	  .type = OBS_GAUGE,
	  .key = "connections_open",
	  .off = IO(open) },
	{ .name = "tes_received_bytes_total",
	  .help = "Octets read from SMTP clients (TLS included)",
	  .key = "bytes_in",
	  .off = IO(bytes_in) },
	{ .name = "tes_sent_bytes_total",
	  .help = "Octets written to SMTP clients (TLS included; not the refusal lines of "
		  "connections refused at accept)",
	  .key = "bytes_out",
	  .off = IO(bytes_out) },
	{ .name = "tes_io_wakeups_total",
	  .help = "Times a kernel-socket worker woke from epoll_wait (0 with io = dpdk, whose "
		  "workers poll)",
	  .off = IO(wakeups) },
	/* SMTP: the sessions' */
	{ .name = "tes_smtp_sessions_total",
	  .help = "SMTP sessions begun (greeting sent)",
	  .key = "sessions",
	  .off = GS(sessions) },
	{ .name = "tes_smtp_commands_total",
	  .help = "SMTP command lines read from clients",
	  .key = "smtp_commands",
	  .off = GS(smtp_commands) },
	{ .name = "tes_smtp_replies_total",
	  .help = "SMTP replies sent to clients, by code class",
	  .key = "smtp_replies",
	  .flags = OBS_NEST,
	  .off = GS(smtp_replies[2]),
	  .l2 = "class",
	  .n = 4,
	  .names = classes,
	  .stride = W },
	{ .name = "tes_messages_total",
	  .help = "Messages whose content was received, by the client's final reply "
		  "(accepted: the backend said 250; refused: 4xx or 5xx)",
	  .key = "messages_",
	  .off = GS(messages_accepted),
	  .l2 = "outcome",
	  .n = 2,
	  .names = outcomes,
	  .stride = W },
	{ .name = "tes_delivery_duration_seconds",
	  .help = "Time from the end of a message's content to the delivery backend's verdict",
	  .type = OBS_HISTOGRAM,
	  .off = GS(latency),
	  .hist = &latency_hist },
	{ .name = "tes_verdicts_orphaned_total",
	  .help = "Delivery verdicts that arrived after their client had gone",
	  .key = "orphaned",
	  .off = GS(orphaned) },
	{ .name = "tes_enforcement_verdicts_total",
	  .help = "Enforcement verdicts by decision point (mail: MAIL FROM from a known "
		  "source; headers: end of the headers of an Exchange message) and action",
	  .key = "mail_verdicts",
	  .flags = OBS_NEST,
	  .off = GS(mail_verdicts),
	  .l1 = "at",
	  .v1 = "mail",
	  .l2 = "action",
	  .n = 4,
	  .names = actions,
	  .stride = W },
	{ .name = "tes_enforcement_verdicts_total",
	  .key = "header_verdicts",
	  .flags = OBS_NEST,
	  .off = GS(header_verdicts),
	  .l1 = "at",
	  .v1 = "headers",
	  .l2 = "action",
	  .n = 4,
	  .names = actions,
	  .stride = W },
	{ .name = "tes_exchange_messages_total",
	  .help = "Messages with an Exchange hop in their Received headers, by product family "
		  "(none: a build no family is known for)",
	  .off = GS(family),
	  .l2 = "family",
	  .n = EX_FAMILY_COUNT,
	  .name_of = family_name,
	  .stride = W },
	{ .name = "tes_non_exchange_messages_total",
	  .help = "Header sections scanned that had no Exchange hop",
	  .key = "not_exchange",
	  .off = GS(not_exchange) },
	/* TLS */
	{ .name = "tes_starttls_total",
	  .help = "STARTTLS commands accepted",
	  .key = "tls_starts",
	  .off = GS(tls_starts) },
	{ .name = "tes_tls_handshakes_total",
	  .help = "TLS handshakes by result",
	  .key = "tls_handshakes_",
	  .off = GS(tls.full),
	  .sum = TLS_V_COUNT,
	  .l2 = "result",
	  .n = 3,
	  .names = results,
	  .stride = TLS_V_COUNT * W },
	{ .name = "tes_tls_handshake_failures_total",
	  .help = "Failed TLS handshakes by reason",
	  .off = GS(tls.fail_reason),
	  .l2 = "reason",
	  .n = TLS_FAIL_COUNT,
	  .name_of = fail_reason_name,
	  .stride = W },
	/* not on /metrics: the telemetry's and the stop line's */
	{ .key = "exchange_seen", .off = GS(exchange_seen) },
	{ .key = "sightings_dropped", .off = GS(sightings_dropped) },
	{ .key = "shutdown_forced", .flags = OBS_HIDDEN, .off = IO(shutdown_forced) },
	{ .key = "slow_closed", .flags = OBS_HIDDEN, .off = GS(slow_closed) },
	{ .key = "no_space", .flags = OBS_HIDDEN, .off = GS(no_space) },
};

#undef IO
#undef GS
#undef W

int gw_export(struct gw *g, const struct gw_io *io, struct obs_registry *r)
{
	struct obs_group grp = {
		.name = "conn",
		.rows = conn_rows,
		.nrows = sizeof(conn_rows) / sizeof(conn_rows[0]),
		.size = sizeof(struct conn_snap),
		.read = export_read,
		.arg = g,
	};

	g->io = io;
	return obs_add(r, &grp);
}
