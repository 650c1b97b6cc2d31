/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Notifications: how state and escalation tell the rest of tescontrol what
 * changed, without calling it.  A subscriber registers a function with the
 * state at start-up (cp_state_subscribe); every change is then handed to
 * every subscriber, in the order they registered, after it is durable and
 * in memory.  The sinks in notify/ are subscribers (the gateways push the
 * change, the XDP drop list re-syncs, the event log writes a line), and so
 * is escalation (a server changed from outside: its next change is queued
 * anew).  Nothing calls back the other way: a subscriber may read the state
 * but must not change it from inside a notification, except escalation,
 * which evaluates the server it is told of.
 *
 * Threads: the event loop's.  What a note points to is valid only during
 * the call.
 */
#ifndef TES_CONTROLPLANE_STATE_NOTE_H
#define TES_CONTROLPLANE_STATE_NOTE_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "enforce/decide.h"

enum cp_note_kind {
	/* A server's state as the gateways see it changed (a detection, a
	 * resolution, a stage or status change, a new source): announce it. */
	CP_NOTE_SERVER,
	/* A server was forgotten, evicted, reset or deleted with its tenant;
	 * it is no longer in memory (slot is CP_NO_SLOT). */
	CP_NOTE_SERVER_GONE,
	/* Escalation looked at a server: nothing to announce, but a verdict
	 * that depends on the minute (a window, a probe) may differ now. */
	CP_NOTE_SERVER_EVALUATED,
	/* A Stale server was seen again: its clock resumes; escalation looks
	 * at it now (why says so in the log). */
	CP_NOTE_SERVER_RESUMED,
	/* A tenant was added or changed (name, connectors, pause, whether it
	 * is at its server cap). */
	CP_NOTE_TENANT,
	/* A tenant was deleted (its servers went before, each in a note). */
	CP_NOTE_TENANT_GONE,
	/* A new policy or catalog is in force (the state's documents). */
	CP_NOTE_POLICY,
	CP_NOTE_CATALOG,
	/* The test clock moved to now. */
	CP_NOTE_CLOCK,
	/* Only a line for the event log: an operator's action that changes no
	 * enforcement state (the drop list's own entries). */
	CP_NOTE_EVENT,
};

struct cp_note {
	enum cp_note_kind kind;
	int64_t now;
	/* The server kinds: the server (a copy once it is gone), its slot,
	 * its tenant (NULL for tenant 0), and the stage and status it is
	 * announced at (what the event log line says). */
	uint32_t slot;
	const struct tes_server *server;
	unsigned stage;
	enum tes_status status;
	/* SERVER: the change came from outside escalation (a sighting, a
	 * catalog), so the server's next change must be queued anew.
	 * TENANT, POLICY, CATALOG: another appliance made it (a shared
	 * store), so escalation does what the operator's command does after
	 * a local one. */
	bool reschedule;
	/* The tenant kinds, and the server kinds' tenant. */
	const struct tes_tenant *tenant;
	/* RESUMED: the reason for escalation's log lines. */
	const char *why;
	/* The event log line this change makes ("first_detection", "pause",
	 * docs/telemetry.md), NULL for none, and its members after the common
	 * ones; the emitter keeps its reference. */
	const char *event;
	json_t *fields;
};

typedef void (*cp_note_fn)(void *ctx, const struct cp_note *n);

#endif
