/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The gateway socket (docs/control-protocol.md): any number of tesgate
 * processes connect, say hello, receive a full state (sync-begin ...
 * sync-end) and then incremental updates; they send sightings and
 * counters.  It is both an I/O edge (a sighting is handed to the state,
 * whose answer becomes the ack) and a sink (every notification a gateway
 * must know of is broadcast, with one more state generation each).  A
 * gateway that sends anything malformed is logged once and disconnected;
 * nobody else notices.
 *
 * Threads: the event loop's.
 */
#ifndef TES_CONTROLPLANE_NOTIFY_GATEWAYS_H
#define TES_CONTROLPLANE_NOTIFY_GATEWAYS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "controlplane/loop.h"
#include "controlplane/state/state.h"

struct cp_gateway;

struct cp_gateways {
	struct cp_loop *loop;
	struct cp_state *st;
	struct cp_watch listen;
	const char *path; /* the socket's path (outlives the struct) */
	bool with_group;
	gid_t gid;
	struct cp_gateway *list;
	unsigned n;
	/* The state generation (ctl_msg_set_gen): one more per broadcast. */
	uint64_t gen;
	/* Told each server's refused messages of a counters message (its
	 * "servers"); NULL: nobody keeps them (they are still checked). */
	ctl_server_count_cb on_count;
	void *on_count_ctx;
};

/* Ready for notifications, with no socket yet; gen0 is the first
 * generation (it must grow across restarts: main takes the real clock). */
void cp_gateways_init(struct cp_gateways *g, struct cp_loop *loop, struct cp_state *st,
		      uint64_t gen0);
/* Listen on path (0600, or 0660 for group gid).  0 or -1 (logged). */
int cp_gateways_listen(struct cp_gateways *g, const char *path, bool with_group, gid_t gid);
/* Flush what is queued, close every connection and the socket. */
void cp_gateways_stop(struct cp_gateways *g);
/* Free connections closed during this round of events: the epoll batch may
 * still name them, so they live until the round is over. */
void cp_gateways_reap(struct cp_gateways *g);

/* State's subscriber (ctx is the struct cp_gateways). */
void cp_gateways_on_note(void *ctx, const struct cp_note *n);

/* One object per connection (tesctl status). */
json_t *cp_gateways_status(const struct cp_gateways *g);

#endif
