/* SPDX-License-Identifier: BSD-3-Clause */
#include "gateway/dpconn.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <rte_ethdev.h>

#include "dataplane/dpdk/port.h"
#include "dataplane/dpdk/worker.h"
#include "dataplane/stack/stack.h"
#include "enforce/build.h"
#include "gateway/ctlclient.h"
#include "gateway/enfstate.h"
#include "gateway/log.h"

/* Iterations between RCU quiescent states: often enough that the control
 * thread's synchronize_rcu never waits long, rare enough to cost nothing. */
#define QS_EVERY 64
#define EAL_MAX_ARGS 64

struct dconn {
	struct dpgw *d;
	struct tcp_conn *tc; /* NULL once the stack has closed it */
	struct smtp_session *s;
	struct delivery_msg *msg;
	bool msg_failed;
	bool waiting;        /* a delivery verdict is outstanding */
	bool close_after;    /* close once the output is sent */
	bool fin_sent;       /* tcp_close called */
	struct tes_addr src; /* for enforcement */
	uint32_t tenant;
	bool via_connector;
	char peer[24];     /* "198.18.0.1:40000": envelope */
	char peer_lit[24]; /* "[198.18.0.1]": the engine */
	struct smtp_reply verdict;
	struct dconn *_Atomic next_done; /* link in the verdict list */
	struct dconn *prev, *next;       /* every connection, for shutdown */
};

struct dpgw {
	struct dpgw_params p;
	struct smtp_hooks hooks;
	struct dp_port port;
	struct dp_worker w;
	struct stack_listener *lst;
	char *eal_buf;
	char *eal_argv[EAL_MAX_ARGS + 1];
	/* Verdicts pushed by delivery threads (a Treiber stack: one CAS per
	 * push, one exchange per loop to take them all). */
	struct dconn *_Atomic done;
	struct dconn *conns; /* the worker's list */
	unsigned nconns;
	const atomic_bool *sig;
	atomic_bool stop_loop;
	bool stopping;
	uint64_t deadline;
	unsigned iter;
	struct dpgw_stats st;
};

/* ---- enforcement: the same enfstate calls conn.c makes ---- */

static void verdict_reply(const struct tes_verdict *v, struct smtp_reply *r)
{
	if (v->action != TES_ACCEPT)
		smtp_reply_set(r, v->code, v->enhanced, v->text);
}

static void h_mail(void *ctx, const struct smtp_envelope *env, struct smtp_reply *r)
{
	struct dconn *dc = ctx;
	struct dpgw *d = dc->d;
	struct tes_verdict v;
	(void)env;
	dc->msg_failed = false;
	if (!d->p.st)
		return;
	if (!enfstate_decide_source(d->p.st, &dc->src, ctlclient_now(d->p.cc), dc->via_connector,
				    &v))
		return;
	d->st.mail_verdicts[v.action & 3]++;
	verdict_reply(&v, r);
}

static void h_headers(void *ctx, const struct smtp_envelope *env, const char *hdr, size_t len,
		      bool truncated, struct smtp_reply *r)
{
	struct dconn *dc = ctx;
	struct dpgw *d = dc->d;
	struct exdetect_result det;
	struct enfstate_class ec;
	(void)env;
	(void)truncated;
	if (!exdetect_scan(d->p.exdetect, hdr, len, &det)) {
		d->st.not_exchange++;
		return;
	}
	d->st.exchange_seen++;
	if (!d->p.st)
		return;
	memset(&ec, 0, sizeof(ec));
	enum tes_build_class cls;
	if (det.family == EX_FAMILY_NONE || det.family == EX_FAMILY_ONLINE)
		cls = TES_BUILD_NOT_EXCHANGE;
	else if (!enfstate_classify(d->p.st, &det.build, &ec))
		cls = TES_BUILD_UNKNOWN;
	else
		cls = ec.compliant ? TES_BUILD_COMPLIANT : TES_BUILD_VULNERABLE;
	int64_t now = ctlclient_now(d->p.cc);
	struct tes_detection td = { .cls = cls, .family = det.family, .build = det.build };
	struct tes_verdict v = { .action = TES_ACCEPT };
	enfstate_decide(d->p.st, dc->tenant, det.server, &dc->src, &td, now, dc->via_connector, &v);
	d->st.header_verdicts[v.action & 3]++;
	verdict_reply(&v, r);
	if (cls != TES_BUILD_COMPLIANT && cls != TES_BUILD_VULNERABLE)
		return;
	struct ctl_sighting sg = {
		.tenant_id = dc->tenant,
		.build = det.build,
		.family = det.family,
		.cls = cls,
		.source = dc->src,
		.time = now,
	};
	snprintf(sg.fqdn, sizeof(sg.fqdn), "%s", det.server);
	if (d->p.cc && !ctlclient_sighting(d->p.cc, 0, &sg))
		d->st.sightings_dropped++;
}

/* ---- delivery ---- */

static int h_data(void *ctx, const uint8_t *p, size_t n)
{
	struct dconn *dc = ctx;
	const struct delivery_backend *be = dc->d->p.backend;
	if (dc->msg_failed)
		return -1;
	if (!dc->msg && !(dc->msg = be->open(be->be, 0))) {
		dc->msg_failed = true;
		return -1;
	}
	if (be->write(dc->msg, p, n) != 0) {
		be->abort(dc->msg);
		dc->msg = NULL;
		dc->msg_failed = true;
		return -1;
	}
	return 0;
}

static void h_abort(void *ctx)
{
	struct dconn *dc = ctx;
	if (dc->msg) {
		dc->d->p.backend->abort(dc->msg);
		dc->msg = NULL;
	}
}

/* A delivery thread: the worker polls this list, so no wake-up is needed. */
static void delivered(void *arg, const struct smtp_reply *r)
{
	struct dconn *dc = arg;
	struct dpgw *d = dc->d;
	dc->verdict = *r;
	struct dconn *head = atomic_load_explicit(&d->done, memory_order_relaxed);
	do
		atomic_store_explicit(&dc->next_done, head, memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(&d->done, &head, dc, memory_order_release,
						      memory_order_relaxed));
}

static int h_message(void *ctx, const struct smtp_envelope *env, struct smtp_reply *r)
{
	struct dconn *dc = ctx;
	const struct delivery_backend *be = dc->d->p.backend;
	if (!dc->msg && !dc->msg_failed)
		dc->msg = be->open(be->be, 0);
	if (!dc->msg) {
		dc->msg_failed = false;
		smtp_reply_set(r, 451, "4.3.0", "Temporary local problem, try again later");
		return 0;
	}
	struct delivery_msg *m = dc->msg;
	dc->msg = NULL;
	dc->waiting = true;
	be->submit(m, env, dc->peer, delivered, dc);
	return SMTP_PENDING;
}

/* ---- transport ---- */

static void conn_unlink_free(struct dconn *dc)
{
	struct dpgw *d = dc->d;
	if (dc->prev)
		dc->prev->next = dc->next;
	else
		d->conns = dc->next;
	if (dc->next)
		dc->next->prev = dc->prev;
	d->nconns--;
	if (dc->s)
		smtp_session_free(dc->s);
	free(dc);
}

/* Engine output into the send buffer; true when all of it went. */
static bool out_move(struct dconn *dc)
{
	size_t len;
	const uint8_t *p = smtp_output(dc->s, &len);
	if (len == 0)
		return true;
	long took = tcp_send(dc->tc, p, len);
	if (took <= 0)
		return false;
	smtp_output_consume(dc->s, (size_t)took);
	return (size_t)took == len;
}

/* Move bytes until something waits: room in the send buffer (writable
 * calls back), a verdict (the done list), or more input (readable).  Input
 * not taken stays in the stack, whose window then closes. */
static void pump(struct dconn *dc)
{
	unsigned stalls = 0;
	while (dc->tc && !dc->fin_sent) {
		if (!out_move(dc))
			return;
		if (dc->close_after || smtp_closing(dc->s)) {
			if (dc->waiting)
				return;
			dc->fin_sent = true;
			tcp_close(dc->tc);
			return;
		}
		if (dc->waiting)
			return;
		const uint8_t *p1, *p2;
		size_t n1, n2;
		tcp_peek(dc->tc, &p1, &n1, &p2, &n2);
		if (n1 == 0) {
			if (tcp_eof(dc->tc))
				dc->close_after = true; /* the client is done: so are we */
			else
				return;
			continue;
		}
		size_t used = 0;
		enum smtp_status s = smtp_feed(dc->s, p1, n1, &used);
		if (used > n1)
			used = n1;
		tcp_consume(dc->tc, used);
		if (s == SMTP_CLOSE || s == SMTP_STARTTLS) {
			/* STARTTLS is not offered here, so the engine cannot ask
			 * for it; closing is the safe answer if it ever did */
			dc->close_after = true;
			continue;
		}
		size_t olen;
		smtp_output(dc->s, &olen);
		if (used == 0 && olen == 0 && s != SMTP_WAIT && ++stalls > 2)
			return; /* never spin on an engine that takes nothing */
	}
}

static int a_accept(void *lctx, struct stack_listener *l, struct tcp_conn *c)
{
	struct dpgw *d = lctx;
	(void)l;
	if (d->stopping)
		return -1;
	struct dconn *dc = calloc(1, sizeof(*dc));
	if (!dc)
		return -1;
	dc->d = d;
	dc->tc = c;
	const struct stack_tuple *t = tcp_tuple(c);
	tes_addr_v4(&dc->src, t->raddr.a);
	if (d->p.st) {
		if (enfstate_source_drop(d->p.st, &dc->src)) {
			d->st.early_drops++;
			free(dc);
			return -1;
		}
		dc->via_connector =
			enfstate_tenant_for_source(d->p.st, &dc->src, NULL, &dc->tenant);
	}
	char a[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, t->raddr.a, a, sizeof(a));
	snprintf(dc->peer, sizeof(dc->peer), "%s:%u", a, t->rport);
	snprintf(dc->peer_lit, sizeof(dc->peer_lit), "[%s]", a);
	dc->s = smtp_session_new(d->p.smtp, &d->hooks, dc, dc->peer_lit);
	if (!dc->s) {
		free(dc);
		return -1;
	}
	dc->next = d->conns;
	if (d->conns)
		d->conns->prev = dc;
	d->conns = dc;
	d->nconns++;
	d->st.sessions++;
	tcp_set_ctx(c, dc);
	smtp_start(dc->s);
	pump(dc);
	return 0;
}

static void a_readable(void *ctx, struct tcp_conn *c)
{
	(void)c;
	pump(ctx);
}

static void a_closed(void *ctx, struct tcp_conn *c, enum tcp_close_reason why)
{
	struct dconn *dc = ctx;
	(void)c;
	(void)why;
	dc->tc = NULL;
	dc->d->st.closed++;
	smtp_abort(dc->s);
	h_abort(dc);
	if (!dc->waiting)
		conn_unlink_free(dc);
	/* else: the verdict's arrival frees it */
}

static void verdicts(struct dpgw *d)
{
	struct dconn *dc = atomic_exchange_explicit(&d->done, NULL, memory_order_acquire);
	while (dc) {
		struct dconn *next = atomic_load_explicit(&dc->next_done, memory_order_relaxed);
		dc->waiting = false;
		if (dc->verdict.code >= 200 && dc->verdict.code < 300)
			d->st.messages_accepted++;
		else
			d->st.messages_refused++;
		if (!dc->tc) {
			d->st.orphaned++; /* stored stays stored; the client retries */
			conn_unlink_free(dc);
		} else {
			smtp_message_done(dc->s, &dc->verdict);
			pump(dc);
		}
		dc = next;
	}
}

static void begin_shutdown(struct dpgw *d, uint64_t now)
{
	d->stopping = true;
	d->deadline = now + (uint64_t)d->p.shutdown_grace_s * 1000000000ull;
	if (d->lst)
		stack_unlisten(d->w.st, d->lst);
	d->lst = NULL;
	for (struct dconn *dc = d->conns, *next; dc; dc = next) {
		next = dc->next; /* pump may not free, but stay safe */
		if (dc->tc && !dc->fin_sent && smtp_shutdown(dc->s)) {
			dc->close_after = true;
			pump(dc);
		}
	}
}

/* Once per loop iteration, between RX and the flush. */
static void on_poll(void *arg, uint64_t now)
{
	struct dpgw *d = arg;
	if (atomic_load_explicit(&d->done, memory_order_relaxed))
		verdicts(d);
	if (d->p.st && ++d->iter % QS_EVERY == 0)
		enfstate_quiescent();
	if (!d->stopping && atomic_load_explicit(d->sig, memory_order_relaxed))
		begin_shutdown(d, now);
	if (d->stopping) {
		bool live = false;
		for (struct dconn *dc = d->conns; dc && !live; dc = dc->next)
			live = dc->waiting || (dc->tc && !dc->fin_sent);
		if (!live || now >= d->deadline)
			atomic_store(&d->stop_loop, true);
	}
}

/* ---- start and stop ---- */

static int split_args(struct dpgw *d)
{
	d->eal_buf = strdup(d->p.eal_args);
	if (!d->eal_buf)
		return -1;
	int n = 0;
	d->eal_argv[n++] = (char *)"tesgate";
	for (char *save = NULL, *t = strtok_r(d->eal_buf, " ", &save); t;
	     t = strtok_r(NULL, " ", &save)) {
		if (n >= EAL_MAX_ARGS) {
			fprintf(stderr, "tesgate: dpdk_args: more than %d arguments\n",
				EAL_MAX_ARGS - 1);
			return -1;
		}
		d->eal_argv[n++] = t;
	}
	d->eal_argv[n] = NULL;
	return n;
}

static int parse_addr(const char *s, uint32_t *addr, uint8_t *plen)
{
	char buf[24];
	snprintf(buf, sizeof(buf), "%s", s);
	char *slash = strchr(buf, '/');
	*plen = 24;
	if (slash) {
		*slash = '\0';
		*plen = (uint8_t)atoi(slash + 1);
	}
	struct in_addr a;
	if (inet_pton(AF_INET, buf, &a) != 1 || *plen < 1 || *plen > 32)
		return -1;
	*addr = ntohl(a.s_addr);
	return 0;
}

struct dpgw *dpgw_start(const struct dpgw_params *p)
{
	static const struct stack_app app = {
		.accept = a_accept,
		.readable = a_readable,
		.writable = a_readable,
		.closed = a_closed,
	};
	uint32_t addr;
	uint8_t plen;
	if (p->smtp->starttls) {
		fprintf(stderr, "tesgate: io = dpdk does not offer STARTTLS yet\n");
		return NULL;
	}
	if (parse_addr(p->addr, &addr, &plen) != 0) {
		fprintf(stderr, "tesgate: dpdk_addr '%s' is not A.B.C.D/len\n", p->addr);
		return NULL;
	}
	struct dpgw *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->p = *p;
	d->hooks.on_mail = h_mail;
	d->hooks.on_headers = h_headers;
	d->hooks.on_data = h_data;
	d->hooks.on_message = h_message;
	d->hooks.on_abort = h_abort;
	int argc = split_args(d);
	if (argc < 0 || dp_eal_init(argc, d->eal_argv) != 0) {
		free(d->eal_buf);
		free(d);
		return NULL;
	}
	uint16_t pid = 0;
	bool have = false;
	RTE_ETH_FOREACH_DEV (pid) {
		have = true;
		break;
	}
	struct dp_port_conf pc = { .port_id = pid, .nb_queues = 1 };
	if (!have) {
		fprintf(stderr, "tesgate: no DPDK port (give one in dpdk_args, --vdev)\n");
		goto fail_eal;
	}
	if (dp_port_setup(&d->port, &pc) != 0)
		goto fail_eal;
	dp_worker_init(&d->w, &d->port, 0);
	struct stack_config cfg;
	stack_config_defaults(&cfg);
	dp_worker_stack_config(&d->w, &cfg);
	cfg.naddrs = 1;
	stack_addr_ipv4(&cfg.addrs[0].addr, addr);
	cfg.addrs[0].prefix_len = plen;
	cfg.max_conns = p->max_conns;
	cfg.rcvbuf = 65536;
	cfg.sndbuf = 65536;
	if (getrandom(cfg.hash_key, sizeof(cfg.hash_key), 0) != sizeof(cfg.hash_key) ||
	    getrandom(cfg.isn_key, sizeof(cfg.isn_key), 0) != sizeof(cfg.isn_key)) {
		fprintf(stderr, "tesgate: getrandom failed\n");
		goto fail_port;
	}
	const char *err = NULL;
	d->w.st = stack_create(&cfg, &dp_worker_io, &d->w, &app, &err);
	if (!d->w.st) {
		fprintf(stderr, "tesgate: stack_create: %s\n", err ? err : "?");
		goto fail_port;
	}
	d->lst = stack_listen(d->w.st, NULL, p->port, 1024, d);
	if (!d->lst) {
		fprintf(stderr, "tesgate: cannot listen on port %u of the stack\n", p->port);
		stack_destroy(d->w.st);
		goto fail_port;
	}
	d->w.poll = on_poll;
	d->w.poll_arg = d;
	return d;
fail_port:
	dp_port_close(&d->port);
fail_eal:
	dp_eal_cleanup();
	free(d->eal_buf);
	free(d);
	return NULL;
}

void dpgw_run(struct dpgw *d, const atomic_bool *stop)
{
	d->sig = stop;
	pthread_setname_np(pthread_self(), "tes-dp-0");
	if (d->p.st)
		enfstate_thread_register();
	dp_worker_run(&d->w, &d->stop_loop);
	dp_worker_drain(&d->w);
	if (d->p.st)
		enfstate_thread_unregister();
}

void dpgw_finish(struct dpgw *d, struct dpgw_stats *out)
{
	/* The backend has stopped: every verdict is in the list now.  The
	 * stack is not run again, so no session is answered any more. */
	struct dconn *dc = atomic_exchange(&d->done, NULL);
	while (dc) {
		struct dconn *next = atomic_load(&dc->next_done);
		dc->waiting = false;
		dc = next;
	}
	while (d->conns) {
		dc = d->conns;
		if (dc->tc) { /* a_closed has aborted the others */
			smtp_abort(dc->s);
			h_abort(dc);
		}
		conn_unlink_free(dc);
	}
	if (out)
		*out = d->st;
	dp_worker_log_stats(&d->w, stderr);
	dp_port_log_stats(&d->port, stderr);
	stack_destroy(d->w.st);
	dp_port_close(&d->port);
	dp_eal_cleanup();
	free(d->eal_buf);
	free(d);
}
