/* SPDX-License-Identifier: BSD-3-Clause */
#include "gateway/conn/kernel.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dataplane/kio.h"
#include "gateway/conn/conn.h"
#include "gateway/observe/log.h"

_Static_assert(GW_MAX_WORKERS == KIO_MAX_WORKERS, "the gateway's worker limit is kio's");
_Static_assert(GW_LINE_MAX == KIO_LINE_MAX, "refusal lines fit kio's");

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

/* ---- the seam's per-connection side, on kio ---- */

static size_t kt_write(void *tc, const void *p, size_t n)
{
	return kio_write(tc, p, n);
}

static void kt_pause(void *tc)
{
	kio_pause(tc);
}

static void kt_resume(void *tc)
{
	kio_resume(tc);
}

static void kt_close(void *tc)
{
	kio_close(tc);
}

/* A gateway post rides kio's post: kio's node lives in the post's link,
 * so posting allocates nothing and cannot fail. */
_Static_assert(sizeof(struct kio_post) <= sizeof(((struct gw_post *)0)->link) &&
		       _Alignof(struct kio_post) <= _Alignof(void *),
	       "a kio_post fits a gw_post's link");

static void kt_run(struct kio_post *kp)
{
	struct gw_post *p = container_of(kp, struct gw_post, link);
	p->fn(p);
}

static void kt_post(void *tw, struct gw_post *p)
{
	struct kio_post *kp = (struct kio_post *)(void *)p->link;
	kp->fn = kt_run;
	kio_post(tw, kp);
}

static const struct gw_transport kio_transport = {
	.write = kt_write,
	.pause = kt_pause,
	.resume = kt_resume,
	.close = kt_close,
	.post = kt_post,
};

static enum gw_close_reason reason(enum kio_close_reason why)
{
	switch (why) {
	case KIO_CLOSE_LOCAL:
		return GW_CLOSE_LOCAL;
	case KIO_CLOSE_PEER:
		return GW_CLOSE_PEER;
	case KIO_CLOSE_ERROR:
		return GW_CLOSE_ERROR;
	case KIO_CLOSE_IDLE:
		return GW_CLOSE_IDLE;
	case KIO_CLOSE_SESSION:
		return GW_CLOSE_SESSION;
	case KIO_CLOSE_LINGER:
		return GW_CLOSE_LINGER;
	case KIO_CLOSE_SHUTDOWN:
		return GW_CLOSE_SHUTDOWN;
	case KIO_CLOSE_OVERFLOW:
		return GW_CLOSE_OVERFLOW;
	}
	return GW_CLOSE_ERROR;
}

/* ---- kio's ops: its events become the session's ---- */

static void *k_open(void *app, struct kio_conn *kc, const struct sockaddr_storage *peer,
		    const char **refuse)
{
	struct kio_worker *kw = kio_conn_worker(kc);
	return gw_conn_open(app, &kio_transport, kc, kw, kio_worker_index(kw), peer, refuse);
}

static size_t k_data(void *ctx, struct kio_conn *kc, const uint8_t *p, size_t n)
{
	(void)kc;
	return gw_conn_data(ctx, p, n);
}

static void k_writable(void *ctx, struct kio_conn *kc)
{
	(void)kc;
	gw_conn_writable(ctx);
}

static void k_timeout(void *ctx, struct kio_conn *kc, enum kio_timeout which)
{
	(void)kc;
	gw_conn_timeout(ctx, which == KIO_TIMEOUT_IDLE ? GW_TIMEOUT_IDLE : GW_TIMEOUT_SESSION);
}

static void k_shutdown(void *ctx, struct kio_conn *kc)
{
	(void)kc;
	gw_conn_shutdown(ctx);
}

static void k_close(void *ctx, struct kio_conn *kc, enum kio_close_reason why)
{
	(void)kc;
	gw_conn_closed(ctx, reason(why));
}

static bool k_holding(void *ctx, struct kio_conn *kc)
{
	(void)kc;
	return gw_conn_waiting(ctx);
}

static void k_worker_start(void *app, unsigned worker)
{
	(void)worker;
	gw_worker_start(app);
}

/* epoll_wait is where a kio worker sleeps: offline there, so the control
 * thread's grace periods never wait for a worker with nothing to do. */
static void k_before_wait(void *app, unsigned worker)
{
	(void)worker;
	gw_worker_offline(app);
}

static void k_after_wait(void *app, unsigned worker)
{
	(void)worker;
	gw_worker_online(app);
}

static void k_worker_stop(void *app, unsigned worker)
{
	(void)worker;
	gw_worker_stop(app);
}

static const struct kio_ops kio_gw_ops = {
	.on_open = k_open,
	.on_data = k_data,
	.on_writable = k_writable,
	.on_timeout = k_timeout,
	.on_shutdown = k_shutdown,
	.on_close = k_close,
	.holding = k_holding,
	.on_worker_start = k_worker_start,
	.before_wait = k_before_wait,
	.after_wait = k_after_wait,
	.on_worker_stop = k_worker_stop,
};

/* ---- the seam's whole-transport side ---- */

static int io_start(void *t)
{
	int e = kio_start(t);
	if (e)
		fprintf(stderr, "tesgate: cannot start workers: %s\n", strerror(e));
	return e ? -1 : 0;
}

static void io_stop(void *t, unsigned grace_ms)
{
	kio_stop(t, grace_ms);
}

static bool io_wait(void *t, unsigned timeout_ms)
{
	return kio_wait(t, timeout_ms);
}

static void io_destroy(void *t)
{
	kio_destroy(t);
}

static void io_stats(const void *t, struct gw_io_stats *out)
{
	struct kio_stats ks;
	kio_stats(t, &ks);
#define COPY(f) out->f = ks.f;
	GW_IO_STATS(COPY)
#undef COPY
}

static const struct gw_io_ops kernel_io_ops = {
	.start = io_start,
	.stop = io_stop,
	.wait = io_wait,
	.destroy = io_destroy,
	.stats = io_stats,
};

int gw_kernel_bind(const struct gw_io_settings *s, unsigned linger_ms, struct gw_io *io, char *err,
		   size_t errlen)
{
	struct kio_config kc = {
		.listen = s->listen,
		.workers = s->workers,
		.cpus = s->ncpus ? s->cpus : NULL,
		.backlog = 1024,
		.idle_timeout_ms = s->idle_timeout * 1000u,
		.session_timeout_ms = s->session_timeout * 1000u,
		.linger_ms = linger_ms,
		.max_conns = s->max_connections,
		.max_conns_source = s->max_connections_per_source,
		.log = log_msg,
	};
	struct kio *k = kio_create(&kc, &kio_gw_ops, NULL, err, errlen);
	if (!k)
		return -1;
	io->ops = &kernel_io_ops;
	io->t = k;
	return 0;
}

void gw_kernel_attach(struct gw_io *io, struct gw *g)
{
	kio_set_app(io->t, g, gw_refuse_global(g), gw_refuse_source(g));
}

void gw_kernel_where(const struct gw_io *io, char *buf, size_t len)
{
	struct sockaddr_storage bound;
	kio_local_addr(io->t, &bound);
	kio_format_addr(&bound, buf, len, true);
}
