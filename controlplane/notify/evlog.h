/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The enforcement event log (docs/telemetry.md): one JSON object per line
 * for every change an operator's log pipeline may act on, written from the
 * notifications that carry an event (state/note.h).  Each line is one
 * write(2) on an O_APPEND descriptor, so a reader (or a second writer)
 * never sees half a line.  The time is tescontrol's clock (the test clock
 * in tests), the one every enforcement date is computed with.
 *
 * Threads: the event loop's.
 */
#ifndef TES_CONTROLPLANE_NOTIFY_EVLOG_H
#define TES_CONTROLPLANE_NOTIFY_EVLOG_H

#include "controlplane/clock.h"
#include "controlplane/state/note.h"

struct cp_evlog {
	int fd; /* -1: no event log */
	const char *path;
	const struct cp_clock *clock;
};

/* Open path (a file, "-" for stdout, "" for none; the string must outlive
 * the log).  0, or -1 (logged). */
int cp_evlog_open(struct cp_evlog *e, const char *path, const struct cp_clock *clock);
/* SIGHUP: reopen the file by name so that a rotated one is let go. */
void cp_evlog_reopen(struct cp_evlog *e);
void cp_evlog_close(struct cp_evlog *e);

/* State's subscriber (ctx is the struct cp_evlog): a note with an event
 * becomes a line. */
void cp_evlog_on_note(void *ctx, const struct cp_note *n);
/* The line a note makes at now, with its newline, malloc'd; NULL when the
 * note has no event (or without memory). */
char *cp_evlog_format(const struct cp_note *n, int64_t now);

#endif
