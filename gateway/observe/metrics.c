/* SPDX-License-Identifier: BSD-3-Clause */
#include "gateway/observe/metrics.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "contract/promfmt.h"
#include "gateway/observe/log.h"
#include "gateway/observe/registry.h"

struct gw_metrics {
	struct MHD_Daemon *d;
	const struct obs_registry *reg;
};

static const char *type_name(enum obs_type t)
{
	switch (t) {
	case OBS_COUNTER:
		return "counter";
	case OBS_GAUGE:
		return "gauge";
	case OBS_HISTOGRAM:
		return "histogram";
	}
	return "untyped";
}

/* name{inst="..",l1="..",l2=".."} value: the labels a row has, in that
 * order. */
static void sample(struct prom_buf *b, const struct obs_group *g, const struct obs_row *r,
		   const char *inst, unsigned j, const void *snap)
{
	const char *l[3], *v[3];
	unsigned nl = 0;
	uint64_t x = obs_row_value(r, snap, j);

	if (g->inst_label) {
		l[nl] = g->inst_label;
		v[nl++] = inst;
	}
	if (r->l1) {
		l[nl] = r->l1;
		v[nl++] = r->v1;
	}
	if (r->l2) {
		l[nl] = r->l2;
		v[nl++] = obs_row_label(r, j);
	}
	prom_append(b, r->name, strlen(r->name));
	for (unsigned i = 0; i < nl; i++) {
		prom_printf(b, "%c%s=\"", i ? ',' : '{', l[i]);
		prom_label_value(b, v[i]);
		prom_append(b, "\"", 1);
	}
	if (nl)
		prom_append(b, "}", 1);
	if (r->div) {
		prom_append(b, " ", 1);
		prom_double(b, (double)x / r->div);
		prom_append(b, "\n", 1);
	} else {
		prom_printf(b, " %llu\n", (unsigned long long)x);
	}
}

static void histogram(struct prom_buf *b, const struct obs_row *r, const void *snap)
{
	const struct obs_hist *hd = r->hist;
	struct prom_hist h;
	uint64_t sum;

	memset(&h, 0, sizeof(h));
	for (size_t i = 0; i <= hd->nbounds && i <= PROM_HIST_MAX; i++) {
		memcpy(&h.counts[i], (const uint8_t *)snap + r->off + i * sizeof(uint64_t),
		       sizeof(uint64_t));
		h.count += h.counts[i];
	}
	memcpy(&sum, (const uint8_t *)snap + hd->sum_off, sizeof(sum));
	h.sum = (double)sum / hd->sum_div;
	prom_hist_write(b, r->name, hd->bounds, hd->nbounds, &h);
}

/* A group's families: its rows in order, each over the instances read
 * (none read: the group is left out, families and all). */
static void render_group(struct prom_buf *b, const struct obs_group *g)
{
	const char *family = NULL;
	struct obs_snap s;

	if (obs_snap_take(g, &s) != 0) {
		b->failed = true;
		return;
	}
	for (size_t ri = 0; s.nok && ri < g->nrows; ri++) {
		const struct obs_row *r = &g->rows[ri];

		if (!r->name)
			continue;
		if (!family || strcmp(family, r->name) != 0)
			prom_family(b, r->name, type_name(r->type), r->help);
		family = r->name;
		for (unsigned i = 0; i < s.n; i++) {
			if (!s.ok[i])
				continue;
			if (r->type == OBS_HISTOGRAM && r->hist) {
				histogram(b, r, obs_snap_inst(&s, i));
				continue;
			}
			for (unsigned j = 0; j < obs_row_len(r); j++)
				sample(b, g, r, s.names[i], j, obs_snap_inst(&s, i));
		}
	}
	obs_snap_free(&s);
}

void gw_metrics_render(const struct obs_registry *reg, struct prom_buf *b)
{
	size_t n = obs_ngroups(reg);

	for (size_t i = 0; i < n; i++)
		render_group(b, obs_group_at(reg, i));
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
			      const char *method, const char *version, const char *data,
			      size_t *data_size, void **state)
{
	static const char nf[] = "not found: try /metrics\n";
	struct gw_metrics *m = cls;
	struct MHD_Response *r;
	struct prom_buf b;
	unsigned code = MHD_HTTP_OK;
	enum MHD_Result rc;

	(void)version;
	(void)data;
	(void)data_size;
	/* The first call is for the headers only; answer on the second so a
	 * request body (there should be none) is not left unread. */
	if (!*state) {
		*state = m;
		return MHD_YES;
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return MHD_NO;
	if (strcmp(url, "/metrics") != 0) {
		r = MHD_create_response_from_buffer(sizeof(nf) - 1, (void *)nf,
						    MHD_RESPMEM_PERSISTENT);
		code = MHD_HTTP_NOT_FOUND;
	} else {
		memset(&b, 0, sizeof(b));
		gw_metrics_render(m->reg, &b);
		if (b.failed || !b.p) {
			prom_buf_free(&b);
			return MHD_NO;
		}
		/* b.p is handed over: MHD frees it with the response. */
		r = MHD_create_response_from_buffer(b.len, b.p, MHD_RESPMEM_MUST_FREE);
		if (!r)
			prom_buf_free(&b);
	}
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
				code == MHD_HTTP_OK ? "text/plain; version=0.0.4; charset=utf-8"
						    : "text/plain; charset=utf-8");
	rc = MHD_queue_response(conn, code, r);
	MHD_destroy_response(r);
	return rc;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];

	(void)cls;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	buf[strcspn(buf, "\n")] = '\0';
	log_msg(LOG_WARN, "metrics server: %s", buf);
}

struct gw_metrics *gw_metrics_start(const struct metrics_settings *s,
				    const struct obs_registry *reg)
{
	const char *listen = s->listen;
	struct sockaddr_storage ss = s->addr;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	struct gw_metrics *m;

	if (!listen[0]) {
		log_msg(LOG_INFO, "metrics: off (metrics_listen is empty)");
		return NULL;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		log_msg(LOG_ERROR, "metrics: out of memory; running without metrics");
		return NULL;
	}
	m->reg = reg;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	/* The logger first, or libmicrohttpd writes its own lines to stderr. */
	m->d = MHD_start_daemon(flags, 0, NULL, NULL, answer, m, MHD_OPTION_EXTERNAL_LOGGER,
				mhd_log, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				MHD_OPTION_CONNECTION_LIMIT, 16u, MHD_OPTION_CONNECTION_TIMEOUT,
				10u, MHD_OPTION_END);
	if (!m->d) {
		/* Mail matters more than its telemetry: a port someone else holds
		 * must not keep the gateway from running. */
		log_msg(LOG_ERROR,
			"metrics_listen %s: cannot listen (address in use or not local?); running "
			"without metrics",
			listen);
		free(m);
		return NULL;
	}
	{
		/* Port 0 asks the kernel for one: say which, so a test or an
		 * operator can find it. */
		const union MHD_DaemonInfo *di =
			MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_BIND_PORT);
		const char *colon = strrchr(listen, ':');
		unsigned port = di ? di->port : 0;

		if (colon && port)
			log_msg(LOG_INFO, "metrics: http://%.*s:%u/metrics", (int)(colon - listen),
				listen, port);
		else
			log_msg(LOG_INFO, "metrics: http://%s/metrics", listen);
	}
	return m;
}

void gw_metrics_stop(struct gw_metrics *m)
{
	if (!m)
		return;
	MHD_stop_daemon(m->d);
	free(m);
}
