/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The XDP drop list as a sink of the enforcement state (docs/xdp.md):
 * tescontrol loads the program, attaches it to the configured interfaces
 * and keeps the exact maps equal to the sources the state would drop now
 * (cp_xdp_select, xdpsel.c, a pure function of the state).  A notification
 * asks for a sync after the current round of events; a one-second tick
 * syncs anyway and expires operators' entries.  Operators add their own
 * deny entries through the admin protocol; the sync never removes those.
 *
 * Without the XDP build (TES_HAVE_XDP undefined) only the admin commands
 * exist, and they say so; the selection is built either way.
 *
 * Threads: the event loop's.
 */
#ifndef TES_CONTROLPLANE_NOTIFY_XDP_H
#define TES_CONTROLPLANE_NOTIFY_XDP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "contract/promfmt.h"
#include "controlplane/loop.h"
#include "controlplane/state/state.h"

struct cp_xdp;

struct cp_xdp_config {
	const char *interfaces; /* comma-separated; "" : no XDP */
	const char *pin_root;
	const char *mode; /* auto, native or generic */
	const char *ports;
	bool required; /* a refused load or attach is an error, not a warning */
};

/* Load, attach to the interfaces, start the sync tick.  *out is NULL when
 * no interface is configured, else the sink (also when the load was
 * refused and tescontrol goes on without XDP).  0, or -1 (logged) when
 * required and refused. */
int cp_xdp_start(struct cp_xdp **out, const struct cp_xdp_config *c, struct cp_loop *loop,
		 struct cp_state *st);
/* Close the handle; attachments and pins stay (drops survive a restart). */
void cp_xdp_stop(struct cp_xdp *x);

/* State's subscriber (ctx is the struct cp_xdp): anything that may change
 * a verdict asks for a sync after this round. */
void cp_xdp_on_note(void *ctx, const struct cp_note *n);
/* Run the sync asked for, if any (once per round of events). */
void cp_xdp_sync_pending(struct cp_xdp *x);
/* A program is loaded (and its maps held): the XDP work goes on at run
 * time.  False for NULL. */
bool cp_xdp_running(const struct cp_xdp *x);
/* Whether the maps can be read with the capabilities this thread has now:
 * 0, or a negative errno (-EPERM, -ENOENT when not running). */
int cp_xdp_probe_maps(struct cp_xdp *x);
/* The admin protocol's xdp.* commands; op is what follows "xdp.".  x may
 * be NULL (not configured). */
int cp_xdp_cmd(struct cp_xdp *x, const char *op, const json_t *args, json_t **result, char *err,
	       size_t len);
/* tes_xdp_* families (nothing for NULL). */
void cp_xdp_metrics(struct cp_xdp *x, struct prom_buf *b);

/* ---- which sources to drop (xdpsel.c) ---- */
/* The sources the state would drop at now, each once, in no particular
 * order: *out is malloc'd (NULL when none).  The count, or -1 without
 * memory.  Nothing unless the policy's full_block is drop. */
long cp_xdp_select(const struct cp_state *st, int64_t now, struct tes_addr **out);

#endif
