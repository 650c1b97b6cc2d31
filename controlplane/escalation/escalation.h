/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The escalation room: stage changes over time.  The stage clock of every
 * server runs in the model (enforce/decide.h); what escalation adds is the
 * announcement: when a server's stage or status changes, at the time it
 * falls due, it is logged and a notification goes out (state/note.h).  One
 * timerfd (CLOCK_REALTIME, absolute) fires at the earliest next change of
 * all servers or the next date of a compliance rule.  A change that fell
 * due while tescontrol was down is found at start-up by comparing each
 * server with the stage and status it last announced.  Ageing (Stale,
 * forgotten) and the test clock's moves are here too.
 *
 * Escalation calls the state (it may change the servers it evaluates) and
 * subscribes to it (esc_on_note: a server changed from outside); it never
 * calls the gateways, the XDP sync, the event log or the metrics.
 *
 * Threads: the event loop's.
 */
#ifndef TES_CONTROLPLANE_ESCALATION_ESCALATION_H
#define TES_CONTROLPLANE_ESCALATION_ESCALATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "controlplane/clock.h"
#include "controlplane/loop.h"
#include "controlplane/state/state.h"

/* What escalation did since start-up (exported by notify/metrics.c). */
struct esc_counts {
	uint64_t stage_changes;
	uint64_t stage_entered[TES_STAGE_COUNT + 1]; /* [stage] */
	uint64_t status_entered[TES_STATUS_COUNT];   /* [enum tes_status] */
	uint64_t forgotten;                          /* servers forgotten after forget_after */
	uint64_t timer_armed;                        /* timerfd set to a new deadline */
	uint64_t timer_fired;                        /* timerfd expiries */
	uint64_t escalations_due;                    /* servers evaluated off the queue */
};

struct cp_esc {
	struct cp_state *st;
	struct cp_clock *clock; /* moved by the test clock's commands */
	struct cp_loop *loop;
	struct cp_watch timer;
	int64_t armed_due;   /* the timer's deadline, INT64_MAX: none */
	int64_t catalog_due; /* the next date a compliance rule changes a verdict */
	struct esc_counts counts;
};

/* The timer in loop (not armed yet).  0 or -1 (logged). */
int esc_init(struct cp_esc *e, struct cp_state *st, struct cp_clock *clock, struct cp_loop *loop);
void esc_fini(struct cp_esc *e);

/* State's subscriber: a server changed from outside escalation (its next
 * change is queued anew) or was seen again after it went Stale (it is
 * evaluated now).  ctx is the struct cp_esc. */
void esc_on_note(void *ctx, const struct cp_note *n);

/* Recompute a server's stage and status at now; log and announce any
 * change since the last announced one (each stage change with the time it
 * fell due), forget it when forget_after has passed, and queue its next
 * change.  why explains the evaluation ("start-up", "pause", ...) in the
 * log; NULL for the timer. */
void esc_evaluate(struct cp_esc *e, uint32_t slot, int64_t now, const char *why);
/* Apply the compliance rules' dates that passed, evaluate every server
 * whose change is due and re-arm the timer; why as for esc_evaluate (NULL
 * when the timer fired on time). */
void esc_run_due(struct cp_esc *e, const char *why);
/* Evaluate every server (start-up, a policy change, a clock set back). */
void esc_evaluate_all(struct cp_esc *e, const char *why);
/* Evaluate a tenant's servers (a pause began or ended). */
void esc_evaluate_tenant(struct cp_esc *e, uint32_t tenant_id, const char *why);
/* A new catalog is in force: its next rule date is due anew. */
void esc_catalog_loaded(struct cp_esc *e);
/* Set the timer to the earliest thing due (disarmed on the test clock). */
void esc_arm(struct cp_esc *e);

/* ---- the clock (clock.c) ---- */
/* Move the test clock (only with --test-clock): set it, or advance it by
 * seconds.  Notifies CP_NOTE_CLOCK, then runs the escalation for
 * everything now due.  -1 with msg when refused. */
int esc_clock_move(struct cp_esc *e, bool advance, int64_t seconds, char *err, size_t errlen);
/* {"now", "now_iso", "test_clock"}, as tesctl clock shows it. */
json_t *esc_clock_json(const struct cp_esc *e);

#endif
