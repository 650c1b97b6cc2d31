/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The smtp delivery backend: every accepted message is relayed to a backend
 * MTA, and the client's final reply is the backend's verdict (250 only after
 * the backend's 250).  docs/configuration.md ("The smtp relay") has what the
 * client is told in each case.
 *
 * Worker side (the delivery_backend functions): content is gathered in
 * memory up to memory_per_message (and while all messages together stay
 * under memory_total), beyond that in an unlinked temporary file in tmp_dir;
 * nothing on a worker waits for the network or for fsync.  At the end of
 * data the message is queued to a relay thread (a mutex held for a pointer
 * push, and an eventfd write when the thread may be asleep).  A thread that
 * already holds max_queue messages refuses more: the client gets 451 4.3.0
 * at once.
 *
 * Relay threads: each has its own epoll loop and its own pool of at most
 * max_connections persistent non-blocking connections to the backend (TCP,
 * or a unix socket).  Connections are opened as messages need them, reused
 * for message after message, and closed with QUIT after idle_timeout.  Every
 * wait is bounded: connect_timeout for the connection and the greeting,
 * command_timeout for each command's reply, data_timeout for content
 * progress and the final reply, and data_timeout again for a message waiting
 * for a free connection.  A message that failed on a reused connection
 * before the backend answered anything is tried once more on a new one (the
 * backend may have closed the idle connection just then).
 *
 * Threading: relay_open, relay_probe, relay_stop and relay_close on the
 * main thread; the backend functions as delivery.h says (done runs on a
 * relay thread, or on the worker inside submit when the queue is full).
 */
#ifndef TES_GATEWAY_DELIVERY_RELAY_H
#define TES_GATEWAY_DELIVERY_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "gateway/delivery/delivery.h"

struct relay;

/* The smtp backend's settings (delivery = smtp; docs/configuration.md),
 * times in seconds; config.c parses the configuration into them. */
struct relay_settings {
	char host[256]; /* a host name or an IP address, or "" */
	unsigned port;
	char socket[108];    /* a unix socket instead of host and port; "": none */
	char helo_name[256]; /* "": the gateway's host name */
	unsigned threads;
	unsigned max_connections; /* per thread */
	unsigned max_queue;       /* per thread */
	unsigned connect_timeout, command_timeout, data_timeout, idle_timeout;
	uint64_t memory_per_message;
	uint64_t memory_total;
};

struct relay_config {
	const char *host; /* name or address, resolved once at relay_open */
	unsigned port;
	const char *socket_path; /* non-empty: a unix socket instead of host:port */
	const char *helo_name;
	const char *tmp_dir; /* for content beyond the memory bounds; created */
	unsigned threads;
	unsigned max_connections; /* per thread */
	unsigned max_queue;       /* messages per thread, waiting or in flight */
	unsigned connect_timeout_ms;
	unsigned command_timeout_ms;
	unsigned data_timeout_ms;
	unsigned idle_timeout_ms;
	uint64_t memory_per_message;
	uint64_t memory_total;
};

struct relay_stats {
	uint64_t relayed;     /* the backend said 250 */
	uint64_t temp_fail;   /* the client was told 451 */
	uint64_t perm_fail;   /* the client was told 554 */
	uint64_t queue_full;  /* refused at submit: 451 4.3.0 */
	uint64_t aborted;     /* transactions that ended without a message */
	uint64_t spilled;     /* messages that went to a temporary file */
	uint64_t retried;     /* second tries after a stale connection */
	uint64_t connections; /* opened to the backend */
	uint64_t bytes;       /* content octets relayed */
};

/* Resolve the backend, create tmp_dir and start the threads.  NULL with err
 * set on error. */
struct relay *relay_open(const struct relay_config *cfg, char *err, size_t errlen);

/* Before the workers start: keep at least floor octets free on tmp_dir's
 * file system when writing spill files (gateway/delivery/diskfloor.h); 0: no floor.
 * -1 with err when the free space cannot be watched. */
int relay_set_min_free(struct relay *r, uint64_t floor, char *err, size_t errlen);

/* Started as root, before giving root up: tmp_dir becomes uid's and gid's,
 * so spill files can still be made there.  -1 with err on failure. */
int relay_give(struct relay *r, uid_t uid, gid_t gid, char *err, size_t errlen);

/* Connect once and read the backend's EHLO (blocking, bounded by the
 * timeouts): 0 with the smtpc_ext bits it offers and its SIZE (0: none),
 * -1 with err set when it cannot be reached. */
int relay_probe(struct relay *r, unsigned *ext, uint64_t *size_max, char *err, size_t errlen);

void relay_backend(struct relay *r, struct delivery_backend *out);

/* Finish every submitted message (each gets its done call), say QUIT on
 * every connection and stop the threads.  Call after the workers stopped. */
void relay_stop(struct relay *r);

void relay_close(struct relay *r);

void relay_stats(const struct relay *r, struct relay_stats *out);

/* Registers group "relay" (gateway/observe/registry.h): the outcomes,
 * octets, connections and retries on /metrics; every field of struct
 * relay_stats by its name.  0, or -1. */
struct obs_registry;
int relay_export(const struct relay *rl, struct obs_registry *r);

#endif
