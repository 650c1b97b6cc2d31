/* SPDX-License-Identifier: BSD-3-Clause */
/* What the state room's own files share; nothing outside state/ includes
 * this. */
#ifndef TES_CONTROLPLANE_STATE_INTERNAL_H
#define TES_CONTROLPLANE_STATE_INTERNAL_H

#include <jansson.h>

#include "enforce/build.h"

/* The members of an operator's event log line: who (borrowed; NULL writes
 * nulls), then the values before and after (null for what did not exist),
 * then extra; before, after and extra are consumed. */
json_t *cp_audit_fields(const json_t *who, json_t *before, json_t *after, json_t *extra);

/* A build as text, "15.1.2507.39". */
json_t *cp_build_json(const struct ex_build *b);

#endif
