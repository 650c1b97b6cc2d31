/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * A tescontrol without its sockets, for the tests of notify/ sinks that
 * keep records (report, notices): a real SQLite store in a temporary
 * directory, the state over it with the shipped catalog and compliance
 * policy, and the escalation timer subscribed, opened as tescontrol starts
 * and closed as it stops, so a test can "restart" it on the same store.
 * Single-threaded; TES_SRCDIR names the source tree.
 */
#ifndef TES_TESTS_CP_WORLD_H
#define TES_TESTS_CP_WORLD_H

#include <stdint.h>

#include "controlplane/clock.h"
#include "controlplane/escalation/escalation.h"
#include "controlplane/loop.h"
#include "controlplane/state/state.h"
#include "controlplane/store/store.h"

struct cp_world {
	char dir[64], path[96];
	struct tes_store *store;
	struct cp_clock clock;
	struct cp_loop loop;
	struct cp_state st;
	struct cp_esc esc;
};

/* A new directory /tmp/PREFIX-XXXXXX for the store; the test clock at now. */
void cp_world_init(struct cp_world *w, const char *prefix, int64_t now);
/* Open the store, load the state, start escalation and announce what fell
 * due (as tescontrol's start-up does); the caller then adds its sink. */
void cp_world_open(struct cp_world *w);
/* Stop escalation, free the state, close the store (stop the sink first). */
void cp_world_close(struct cp_world *w);
/* Remove the directory. */
void cp_world_remove(struct cp_world *w);

#endif
