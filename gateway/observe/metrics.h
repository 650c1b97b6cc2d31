/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tesgate's Prometheus endpoint (GET /metrics, text format 0.0.4; the
 * metrics are listed in docs/telemetry.md), rendered from the counters
 * registry (registry.h): every registered group in the order it was
 * registered, each row a family or a series of one.
 *
 * libmicrohttpd's own thread renders each scrape straight from the parts'
 * counters: every group reads per-worker or per-thread counters with
 * relaxed loads, so a scrape takes no lock a worker could wait on, and a
 * slow scraper costs the workers nothing.
 *
 * Threading: gw_metrics_start and gw_metrics_stop on the main thread; the
 * registry and what its groups read must outlive gw_metrics_stop.
 * gw_metrics_render on any thread.
 */
#ifndef TES_GATEWAY_OBSERVE_METRICS_H
#define TES_GATEWAY_OBSERVE_METRICS_H

#include <sys/socket.h>

struct gw_metrics;
struct obs_registry;
struct prom_buf;

/* The endpoint's settings (docs/configuration.md); config.c parses the
 * configuration into them. */
struct metrics_settings {
	char listen[64];              /* "ADDRESS:PORT" as configured, or "": off */
	struct sockaddr_storage addr; /* listen, parsed */
};

/* NULL when there is no endpoint: off, or it could not listen (logged as an
 * error; the gateway runs on without metrics).  s is not kept. */
struct gw_metrics *gw_metrics_start(const struct metrics_settings *s,
				    const struct obs_registry *reg);
void gw_metrics_stop(struct gw_metrics *m);

/* The text of a scrape (b zeroed by the caller; b->failed when out of
 * memory). */
void gw_metrics_render(const struct obs_registry *reg, struct prom_buf *b);

#endif
