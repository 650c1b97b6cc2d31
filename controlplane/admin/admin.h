/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The admin socket: tesctl's requests (contract/adminproto.h).  Only root,
 * tescontrol's own user and members of admin_group get in (the socket is
 * 0660 root:group, and the peer's credentials are checked again on accept).
 * A malformed frame gets the connection closed with one log line; a
 * well-formed request that cannot be done gets {"ok":false,"error":...}.
 *
 * Each command is a function in a table (commands.c).  A command reads the
 * state, or calls down into the state (a change: durable, in memory,
 * notified) and escalation (what the change makes due); it reads the
 * gateways and the XDP sink for status and runs the xdp.* commands.
 *
 * Threads: the event loop's.
 */
#ifndef TES_CONTROLPLANE_ADMIN_ADMIN_H
#define TES_CONTROLPLANE_ADMIN_ADMIN_H

#include <stdbool.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <jansson.h>

#include "controlplane/escalation/escalation.h"
#include "controlplane/loop.h"
#include "controlplane/notify/gateways.h"
#include "controlplane/notify/notices.h"
#include "controlplane/notify/report.h"
#include "controlplane/notify/xdp.h"
#include "controlplane/state/state.h"

struct cp_admin_conn;

struct cp_admin {
	struct cp_loop *loop;
	struct cp_state *st;
	struct cp_esc *esc;
	const struct cp_gateways *gws; /* status only */
	struct cp_xdp *xdp;            /* NULL: not configured */
	/* The report page's tokens and the notices (NULL: not running; main
	 * sets them after cp_admin_init). */
	struct cp_report *report;
	struct cp_notices *notices;
	const char *db_path; /* for status: where the store is */
	struct cp_watch listen;
	const char *path;
	bool with_group;
	gid_t gid;
	struct cp_admin_conn *conns;
	/* The credentials (SO_PEERCRED, taken when the connection was
	 * accepted) of the request being run: its event log lines name
	 * them. */
	const struct ucred *caller;
};

/* Ready to run commands, with no socket yet. */
void cp_admin_init(struct cp_admin *a, struct cp_loop *loop, struct cp_state *st,
		   struct cp_esc *esc, const struct cp_gateways *gws, struct cp_xdp *xdp,
		   const char *db_path);
/* Listen on path (0600, or 0660 for group gid).  0 or -1 (logged). */
int cp_admin_listen(struct cp_admin *a, const char *path, bool with_group, gid_t gid);
/* Flush what is queued, close every connection and the socket. */
void cp_admin_stop(struct cp_admin *a);
/* Free connections closed during this round of events. */
void cp_admin_reap(struct cp_admin *a);

/* Run one request (cmd and its args, an object or NULL) for caller (NULL:
 * unknown) and return the response, {"ok":true,"result":...} or
 * {"ok":false,"error":...}; NULL without memory. */
json_t *cp_admin_run(struct cp_admin *a, const char *cmd, const json_t *args,
		     const struct ucred *caller);

#endif
