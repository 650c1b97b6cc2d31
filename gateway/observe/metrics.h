/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tesgate's Prometheus endpoint (GET /metrics, text format 0.0.4; the
 * metrics are listed in docs/telemetry.md).
 *
 * libmicrohttpd's own thread renders each scrape straight from the
 * counters: every source is per-worker or per-thread counters read with
 * relaxed loads, so a scrape takes no lock a worker could wait on, and a
 * slow scraper costs the workers nothing.
 *
 * Threading: gw_metrics_start and gw_metrics_stop on the main thread; every
 * source in struct gw_metrics_src must outlive gw_metrics_stop.
 */
#ifndef TES_GATEWAY_OBSERVE_METRICS_H
#define TES_GATEWAY_OBSERVE_METRICS_H

struct gw;
struct gw_io;
struct dpgw;
struct verdictlog;
struct backends;
struct ctlclient;
struct enfstate;
struct gw_metrics;

struct gw_metrics_src {
	const struct gw *g;
	/* The transport's connection counters; with io = dpdk also the DPDK
	 * gateway (between dpgw_start and dpgw_destroy), which adds port,
	 * mempool, worker and stack metrics. */
	const struct gw_io *io;
	const struct dpgw *dp;
	const struct backends *bk;  /* its spool or relay, whichever is open */
	const struct ctlclient *cc; /* NULL: no control plane */
	const struct enfstate *st;
	const struct verdictlog *vl; /* NULL: verdict_log is off */
};

/* listen: "ADDRESS:PORT" (config_parse_listen syntax), or empty for none.
 * NULL when there is no endpoint: off, or it could not listen (logged as an
 * error; the gateway runs on without metrics). */
struct gw_metrics *gw_metrics_start(const char *listen, const struct gw_metrics_src *src);
void gw_metrics_stop(struct gw_metrics *m);

#endif
