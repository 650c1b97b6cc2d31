/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Registering the state room's counters (gateway/observe/registry.h).
 * Main thread, before or while the exports run; cc and st must outlive the
 * registry's readers.
 */
#ifndef TES_GATEWAY_STATE_EXPORT_H
#define TES_GATEWAY_STATE_EXPORT_H

struct ctlclient;
struct enfstate;
struct obs_registry;

/* Group "control": tes_control_* and tes_sightings_*; cc NULL (no control
 * plane) exports zeros with tes_control_configured 0.  0, or -1. */
int ctlclient_export(const struct ctlclient *cc, struct obs_registry *r);
/* Group "enfstate": tes_probes_total and the tables' sizes; the telemetry
 * keys servers, sources, tenants, policy_generation, catalog_generation.
 * 0, or -1. */
int enfstate_export(const struct enfstate *st, struct obs_registry *r);

#endif
