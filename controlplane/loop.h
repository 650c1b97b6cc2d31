/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tescontrol's event loop: one epoll set, the watches every room puts in
 * it, and what the two socket servers (notify/gateways.c, admin/) share:
 * output queues of frames, listening unix sockets, the peer check.
 *
 * Threads: everything here belongs to the event loop's thread.
 */
#ifndef TES_CONTROLPLANE_LOOP_H
#define TES_CONTROLPLANE_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <jansson.h>

/* The struct a member belongs to: a watch's owner finds itself from the
 * watch it put in the loop. */
#define cp_container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* Something in the epoll set: fn runs when fd is ready. */
struct cp_watch {
	int fd;
	void (*fn)(struct cp_watch *w, uint32_t events);
};

struct cp_loop {
	int epfd;
	bool stop; /* set by a watch: cp_loop_round's caller stops */
	/* Connection numbers for the log: one sequence for every listener,
	 * so that "#N" names one connection. */
	unsigned next_conn_id;
};

/* 0, or -1 (errno set). */
int cp_loop_init(struct cp_loop *l);
void cp_loop_fini(struct cp_loop *l);
/* Wait for events and run their watches, once.  0, or -1 when epoll_wait
 * failed (logged). */
int cp_loop_round(struct cp_loop *l);

int cp_watch_add(struct cp_loop *l, struct cp_watch *w, uint32_t events);
int cp_watch_mod(struct cp_loop *l, struct cp_watch *w, uint32_t events);
void cp_watch_del(struct cp_loop *l, struct cp_watch *w);

/* Frames waiting to be written to a peer. */
struct cp_outq {
	uint8_t *buf;
	size_t head, len, cap; /* pending octets are buf[head .. head+len) */
};

/* Encode msg as a frame and queue it (msg's reference is consumed).  0 or
 * -1 (too large, no memory). */
int cp_outq_push(struct cp_outq *q, json_t *msg);
/* Append an already encoded frame.  0 or -1 (no memory). */
int cp_outq_push_raw(struct cp_outq *q, const uint8_t *frame, size_t n);
/* Write what the socket takes.  1 if everything was written, 0 if some is
 * left, -1 on a write error (errno set). */
int cp_outq_flush(struct cp_outq *q, int fd);
void cp_outq_free(struct cp_outq *q);

/* A listening unix socket at path, mode 0600 or 0660 with group gid,
 * replacing a stale socket file but refusing to steal a live one. */
int cp_listen_unix(const char *path, bool with_group, gid_t gid, char *err, size_t errlen);
/* Whether the peer of a unix socket may talk to us: root, tescontrol's own
 * user, or (with_group) a member of gid.  -1 with why otherwise. */
int cp_peer_check(int fd, bool with_group, gid_t gid, struct ucred *cred, char *err, size_t errlen);

#endif
