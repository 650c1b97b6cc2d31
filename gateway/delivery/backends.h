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

#include "gateway/delivery/delivery.h"
#include "gateway/delivery/relay.h"
#include "gateway/delivery/spool.h"

/* Delivery's settings (docs/configuration.md); config.c parses the
 * configuration into them. */
struct delivery_settings {
	char backend[16]; /* "spool", "smtp" or "discard" */
	char spool_dir[PATH_MAX];
	unsigned threads; /* the spool's delivery threads */
	/* free space kept on spool_dir's file system (spool and relay spill
	 * files): below it new messages get 452 4.3.1 */
	uint64_t spool_min_free;
	/* delivery = discard needs this too: it loses every message */
	bool i_understand_discard_loses_mail;
	struct relay_settings relay; /* delivery = smtp */
};

/* What the backends need of the rest of the gateway. */
struct backends_env {
	const char *hostname;      /* the relay's HELO name unless relay.helo_name */
	unsigned workers;          /* that will open messages */
	bool polling;              /* io = dpdk: nobody may wake the spool's threads */
	uint64_t max_message_size; /* warned about when the relay takes less */
};

struct backends {
	struct spool *sp;          /* delivery = spool */
	struct relay *rl;          /* delivery = smtp */
	bool smtputf8;             /* the engine may offer SMTPUTF8 */
	char where[PATH_MAX + 16]; /* for the start-up log line */
};

/* Open the backend s->backend names, with its free-space floor.  0, or -1
 * after saying why on stderr (nothing is left open). */
int backends_open(const struct delivery_settings *s, const struct backends_env *env,
		  struct backends *b, struct delivery_backend *be);

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
