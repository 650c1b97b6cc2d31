/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The Prometheus endpoint (docs/telemetry.md).  The event loop renders the
 * whole exposition text once a second from what the rooms count and hold,
 * and swaps it in under a mutex it only ever try-locks, so a slow or stuck
 * scrape can delay a publication by a tick but never stall enforcement.
 * libmicrohttpd's own thread answers GET /metrics with a copy of the latest
 * text; it reads nothing else of tescontrol's.
 *
 * Threads: everything here is the event loop's, except the server thread
 * inside, which touches only the published text.
 */
#ifndef TES_CONTROLPLANE_NOTIFY_METRICS_H
#define TES_CONTROLPLANE_NOTIFY_METRICS_H

#include <microhttpd.h>

#include "contract/promfmt.h"
#include "controlplane/escalation/escalation.h"
#include "controlplane/loop.h"
#include "controlplane/notify/gateways.h"
#include "controlplane/notify/notices.h"
#include "controlplane/notify/xdp.h"
#include "controlplane/state/state.h"

/* What the metrics are read from (xdp may be NULL). */
struct cp_metrics_sources {
	const struct cp_state *st;
	const struct cp_esc *esc;
	const struct cp_gateways *gws;
	struct cp_xdp *xdp;
	/* The store's commit latency (observed through the store's
	 * on_commit while the endpoint runs). */
	const struct prom_hist *commit;
	/* The notices' counters (NULL: none). */
	const struct cp_notices *notices;
	/* Pages under /report, answered on the server's thread (report.h);
	 * NULL: 404 like any other path. */
	enum MHD_Result (*report)(void *ctx, struct MHD_Connection *conn, const char *url,
				  const char *method);
	void *report_ctx;
};

struct cp_metrics;

/* Serve listen ("host:port"; "" : off, *out NULL).  Call with the signals
 * already blocked: the server thread inherits the mask.  A port that
 * cannot be had is logged and tescontrol goes on without metrics.  0, or
 * -1 (logged) for a listen value that is not a numeric host:port. */
int cp_metrics_start(struct cp_metrics **out, const char *listen, struct cp_loop *loop,
		     const struct cp_metrics_sources *src, struct tes_store *store);
void cp_metrics_stop(struct cp_metrics *m, struct tes_store *store);
/* Render the current values and hand them to the server thread; never
 * waits for a scrape in progress (the next tick retries). */
void cp_metrics_publish(struct cp_metrics *m);

/* The exposition text of src, appended to b. */
void cp_metrics_render(const struct cp_metrics_sources *src, struct prom_buf *b);

#endif
