/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The gateway's side of the control protocol (contract/ctlproto.h): a
 * control thread that keeps a connection to tescontrol, applies the state it
 * sends to the RCU tables (it is their one writer), and forwards the
 * workers' sightings.
 *
 * While tescontrol is unreachable the gateway keeps enforcing with the state
 * it last had; the thread reconnects with backoff and tescontrol sends a
 * full state again, which replaces the old one without readers ever seeing
 * it empty (enfstate_sync_begin/end).
 *
 * Threads:
 * - ctlclient_start/stop: the main thread.
 * - ctlclient_sighting, ctlclient_refusal: worker w only (one producer per
 *   ring); never block and make no system call, so the DPDK path can use
 *   them too.
 * - ctlclient_now, ctlclient_stats: any thread.
 */
#ifndef TES_GATEWAY_STATE_CTLCLIENT_H
#define TES_GATEWAY_STATE_CTLCLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "contract/ctlproto.h"
#include "gateway/state/enfstate.h"

struct ctlclient;

/* Counters the gateway reports to tescontrol every few seconds. */
typedef void (*ctlclient_counters_fn)(void *arg, json_t *counters);

/* The control client's settings (docs/configuration.md); config.c parses
 * the configuration into them. */
struct ctlclient_settings {
	char socket[108];    /* tescontrol's gateway socket; "": no control plane */
	char gateway_id[64]; /* "": the gateway's host name */
	/* FOR TESTS ONLY: decide at tescontrol's test clock */
	bool follow_test_clock;
};

struct ctlclient_params {
	const char *socket_path; /* tescontrol's gateway socket */
	const char *gateway_id;  /* for its logs and `tesctl status` */
	struct enfstate *st;     /* the state this thread writes */
	unsigned workers;        /* one sighting ring each */
	/* Follow tescontrol's test clock.  Only for tests: main refuses it
	 * unless the environment allows test clocks. */
	bool follow_test_clock;
	ctlclient_counters_fn counters;
	void *counters_arg;
};

struct ctlclient_stats {
	bool connected;
	bool synced;                          /* a full state has arrived since start */
	uint64_t connects;                    /* connections made */
	uint64_t syncs;                       /* full states applied */
	uint64_t updates;                     /* incremental messages applied */
	uint64_t rejected;                    /* messages that did not decode (logged) */
	uint64_t sightings_sent;              /* messages sent, each standing for one or more */
	uint64_t sightings_coalesced;         /* counted into another sighting (sightcoal.h) */
	uint64_t sightings_dropped;           /* a worker's ring was full (either ring) */
	uint64_t sightings_untrusted_dropped; /* of those, tenant 0's ring */
	/* Mail over no connector under scope "connectors": counted, not sent. */
	uint64_t sightings_untrusted;
	/* Servers not on record of a tenant at its cap: counted, not sent. */
	uint64_t sightings_capped;
	/* New names over a tenant's per-worker budget a second. */
	uint64_t sightings_limited;
	uint64_t acks;
	/* tescontrol's state generation last applied (ctl_msg_set_gen); 0
	 * from a sync-begin until its sync-end. */
	uint64_t generation;
};

/* Starts the thread.  NULL (and a log line) on failure. */
struct ctlclient *ctlclient_start(const struct ctlclient_params *p);
void ctlclient_stop(struct ctlclient *cc);

/* Queue a sighting from worker w; false when its ring is full (counted).
 * One of tenant 0 (no connector) under the scope "connectors" is only
 * counted (sightings_untrusted) and true, as is one of a server not on
 * record of a tenant at its cap (sightings_capped).  Tenant 0's go to a
 * ring of their own, drained after the connectors' ones. */
bool ctlclient_sighting(struct ctlclient *cc, unsigned w, const struct ctl_sighting *s);

/* Count a message refused for server (tenant_id, fqdn) on worker w: a 450
 * (throttle) or a 550 or drop; tescontrol's report shows them per server
 * (counters' "servers").  false when the worker's ring is full (counted in
 * the counter control_refusals_dropped). */
bool ctlclient_refusal(struct ctlclient *cc, unsigned w, uint32_t tenant_id, const char *fqdn,
		       bool throttle);

/* The time enforcement decides at: the wall clock, or tescontrol's test
 * clock when following one. */
int64_t ctlclient_now(const struct ctlclient *cc);

void ctlclient_stats(const struct ctlclient *cc, struct ctlclient_stats *out);

#endif
