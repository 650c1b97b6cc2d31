/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The state room's counters in the registry (gateway/observe/registry.h):
 * the control client's (group "control") and the enforcement state's
 * (group "enfstate").  Apart from enfstate.c, which stays a data structure
 * its benchmarks and stress tests link alone.
 */
#include "gateway/state/export.h"

#include <stddef.h>
#include <string.h>

#include "gateway/observe/registry.h"
#include "gateway/state/ctlclient.h"
#include "gateway/state/enfstate.h"

/* ---- the control client ---- */

/* Every figure a uint64_t, the configured flag beside the counters. */
struct control_snap {
	uint64_t configured, connected, synced, generation, connects, updates, rejected;
	uint64_t sightings_sent, sightings_coalesced, sightings_dropped, sightings_untrusted;
	uint64_t sightings_untrusted_dropped, sightings_limited, sightings_capped;
};

static bool control_read(const void *arg, unsigned i, void *snap)
{
	struct control_snap *s = snap;
	struct ctlclient_stats cs;

	(void)i;
	if (!arg)
		return true; /* no control plane: every figure 0 */
	ctlclient_stats(arg, &cs);
	s->configured = 1;
	s->connected = cs.connected;
	s->synced = cs.synced;
	s->generation = cs.generation;
	s->connects = cs.connects;
	s->updates = cs.updates;
	s->rejected = cs.rejected;
	s->sightings_sent = cs.sightings_sent;
	s->sightings_coalesced = cs.sightings_coalesced;
	s->sightings_dropped = cs.sightings_dropped;
	s->sightings_untrusted = cs.sightings_untrusted;
	s->sightings_untrusted_dropped = cs.sightings_untrusted_dropped;
	s->sightings_limited = cs.sightings_limited;
	s->sightings_capped = cs.sightings_capped;
	return true;
}

#define CS(f) offsetof(struct control_snap, f)

static const struct obs_row control_rows[] = {
	/* Apart from connected, so an alert on a lost control plane can leave
	 * gateways that run without one on purpose alone. */
	{ .name = "tes_control_configured",
	  .help = "1 when control_socket is set",
	  .type = OBS_GAUGE,
	  .key = "control_configured",
	  .off = CS(configured) },
	{ .name = "tes_control_connected",
	  .help = "1 while the connection to tescontrol is up (0 also when none is configured)",
	  .type = OBS_GAUGE,
	  .key = "control_connected",
	  .off = CS(connected) },
	{ .name = "tes_control_synced",
	  .help = "1 once a full state from tescontrol has been applied",
	  .type = OBS_GAUGE,
	  .key = "control_synced",
	  .off = CS(synced) },
	{ .name = "tes_control_generation",
	  .help = "tescontrol's state generation this gateway last applied (tesctl status shows"
		  " tescontrol's own; 0 while a full state is arriving)",
	  .type = OBS_GAUGE,
	  .off = CS(generation) },
	{ .name = "tes_control_connects_total",
	  .help = "Connections made to tescontrol",
	  .off = CS(connects) },
	{ .name = "tes_control_updates_total",
	  .help = "Incremental state messages applied",
	  .key = "control_updates",
	  .off = CS(updates) },
	{ .name = "tes_control_rejected_total",
	  .help = "Messages from tescontrol that did not decode",
	  .off = CS(rejected) },
	{ .name = "tes_sightings_sent_total",
	  .help = "Exchange sightings sent to tescontrol",
	  .key = "sightings_sent",
	  .off = CS(sightings_sent) },
	{ .name = "tes_sightings_coalesced_total",
	  .help = "Exchange sightings counted into another one instead of sent (within a second of"
		  " an identical one)",
	  .key = "sightings_coalesced",
	  .off = CS(sightings_coalesced) },
	{ .name = "tes_sightings_dropped_total",
	  .help = "Exchange sightings dropped because a worker's queue to tescontrol was full",
	  .key = "sightings_dropped",
	  .off = CS(sightings_dropped) },
	{ .name = "tes_sightings_untrusted_total",
	  .help = "Exchange sightings in mail over no connector under scope connectors: counted, "
		  "not sent to tescontrol",
	  .off = CS(sightings_untrusted) },
	{ .name = "tes_sightings_untrusted_dropped_total",
	  .help = "Of the sightings dropped, those of mail over no connector (scope all): their "
		  "queue is separate, so a flood of them crowds out no connector's",
	  .off = CS(sightings_untrusted_dropped) },
	{ .name = "tes_sightings_limited_total",
	  .help = "Exchange sightings of servers not on record over a tenant's budget per worker "
		  "and second (a tenant flooding new names takes only its share of the queue to "
		  "tescontrol)",
	  .off = CS(sightings_limited) },
	{ .name = "tes_sightings_capped_total",
	  .help = "Exchange sightings of servers not on record of a tenant at its server cap: "
		  "counted, not sent to tescontrol",
	  .off = CS(sightings_capped) },
};

#undef CS

int ctlclient_export(const struct ctlclient *cc, struct obs_registry *r)
{
	struct obs_group g = {
		.name = "control",
		.rows = control_rows,
		.nrows = sizeof(control_rows) / sizeof(control_rows[0]),
		.size = sizeof(struct control_snap),
		.read = control_read,
		.arg = cc,
	};

	return obs_add(r, &g);
}

/* ---- the enforcement state ---- */

struct enfstate_snap {
	uint64_t probes, servers, sources, tenants, policy_gen, catalog_gen;
};

static bool enfstate_read(const void *arg, unsigned i, void *snap)
{
	struct enfstate_snap *s = snap;
	struct enfstate_stats es;

	(void)i;
	enfstate_stats(arg, &es);
	s->probes = es.probes;
	s->servers = es.servers;
	s->sources = es.sources;
	s->tenants = es.tenants;
	s->policy_gen = es.policy_gen;
	s->catalog_gen = es.catalog_gen;
	return true;
}

#define ES(f) offsetof(struct enfstate_snap, f)

static const struct obs_row enfstate_rows[] = {
	{ .name = "tes_probes_total",
	  .help = "Transactions let through a full block to their headers as a probe (one per"
		  " server, source and probe_interval)",
	  .off = ES(probes) },
	{ .name = "tes_enforcement_table_entries",
	  .help = "Entries in the enforcement state tables workers decide from",
	  .type = OBS_GAUGE,
	  .key = "",
	  .off = ES(servers),
	  .l2 = "table",
	  .n = 3,
	  .names = (const char *const[]){ "servers", "sources", "tenants" },
	  .stride = sizeof(uint64_t) },
	{ .key = "policy_generation", .off = ES(policy_gen) },
	{ .key = "catalog_generation", .off = ES(catalog_gen) },
};

#undef ES

int enfstate_export(const struct enfstate *st, struct obs_registry *r)
{
	struct obs_group g = {
		.name = "enfstate",
		.rows = enfstate_rows,
		.nrows = sizeof(enfstate_rows) / sizeof(enfstate_rows[0]),
		.size = sizeof(struct enfstate_snap),
		.read = enfstate_read,
		.arg = st,
	};

	return obs_add(r, &g);
}
