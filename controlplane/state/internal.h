/* SPDX-License-Identifier: BSD-3-Clause */
/* What the state room's own files share; nothing outside state/ includes
 * this. */
#ifndef TES_CONTROLPLANE_STATE_INTERNAL_H
#define TES_CONTROLPLANE_STATE_INTERNAL_H

#include <stdbool.h>

#include <jansson.h>

#include "enforce/build.h"

/* The members of an operator's event log line: who (borrowed; NULL writes
 * nulls), then the values before and after (null for what did not exist),
 * then extra; before, after and extra are consumed. */
json_t *cp_audit_fields(const json_t *who, json_t *before, json_t *after, json_t *extra);

/* A build as text, "15.1.2507.39". */
json_t *cp_build_json(const struct ex_build *b);

/* fleet.c: the pending deletions and, every flush interval (force: now,
 * every seen time the store lacks), the coalesced seen times.  0, or -1
 * (logged; what failed is kept). */
struct cp_state;
int cp_fleet_flush(struct cp_state *st, bool force);
/* A tenant as the fleet holds it, in memory and notified (reschedule:
 * escalation looks at its servers). */
struct tes_tenant;
void cp_fleet_adopt_tenant(struct cp_state *st, const struct tes_tenant *t, const char *by);
/* Free the fleet's bookkeeping (cp_state_free). */
void cp_fleet_free(struct cp_state *st);

#endif
