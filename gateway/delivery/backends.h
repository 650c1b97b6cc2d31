/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The delivery backend the configuration's `delivery` key names, opened,
 * stopped and closed for main(): spool (spool.h), smtp (relay.h) or discard
 * (discard.h).  For smtp, opening also probes the backend once, which
 * decides whether the engine may offer SMTPUTF8.
 *
 * Threading: main thread only.
 */
#ifndef TES_GATEWAY_DELIVERY_BACKENDS_H
#define TES_GATEWAY_DELIVERY_BACKENDS_H

#include <limits.h>
#include <stdbool.h>

#include "gateway/config.h"
#include "gateway/delivery/delivery.h"
#include "gateway/delivery/relay.h"
#include "gateway/delivery/spool.h"

struct backends {
	struct spool *sp;          /* delivery = spool */
	struct relay *rl;          /* delivery = smtp */
	bool smtputf8;             /* the engine may offer SMTPUTF8 */
	char where[PATH_MAX + 16]; /* for the start-up log line */
};

/* 0, or -1 after saying why on stderr. */
int backends_open(const struct tes_config *cfg, struct backends *b, struct delivery_backend *be);

/* Finish what was submitted; after the workers stopped. */
void backends_stop(struct backends *b);
void backends_close(struct backends *b);

/* Registers the open backend's counters: group "spool" or "relay"
 * (nothing for discard).  0, or -1. */
struct obs_registry;
int backends_export(const struct backends *b, struct obs_registry *r);
/* At the end: the relay's stop line ("stats relay ..."), or the discard
 * backend's count of what it threw away. */
void backends_log_stats(const struct backends *b, const struct obs_registry *r);

#endif
