/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The transport seam: what a transport offers the gateway, named by the
 * gateway.  Two transports implement it, beside each other in this folder:
 * kernel.c (kio's kernel sockets, dataplane/kio.h) and dpdk.c (the
 * userspace TCP/IP stack on a DPDK port, dataplane/stack).  conn.c runs a
 * session against it and includes no dataplane header; a third transport
 * would be a third adapter, not a change to conn.c.
 *
 * A transport offers two things:
 * - per connection (struct gw_transport): write what fits, pause and resume
 *   reading, close, and post work back to the worker owning the
 *   connection.  It delivers the gw_conn_* events of conn.h: input until
 *   paused, nothing after close, a timeout's line then the close, and
 *   gw_conn_closed last;
 * - as a whole (struct gw_io), to main.c and the counters: start its
 *   workers, stop them with a grace time, wait for them, free everything,
 *   and its connection counters (struct gw_io_stats).
 *
 * Threading: struct gw_transport's functions run on the worker owning the
 * connection, except post (any thread).  struct gw_io's start, stop, wait
 * and destroy on the main thread; stats on any thread (relaxed loads of
 * per-worker counters).
 */
#ifndef TES_GATEWAY_CONN_TRANSPORT_H
#define TES_GATEWAY_CONN_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Workers a transport runs at most (kio's KIO_MAX_WORKERS, checked there). */
#define GW_MAX_WORKERS 64
/* A refusal line a transport writes for the gateway, CRLF included. */
#define GW_LINE_MAX 256

/* The settings both transports take (docs/configuration.md); config.c
 * parses the configuration into them. */
struct gw_io_settings {
	struct sockaddr_storage listen; /* io = kernel: AF_INET or AF_INET6; port 0 picks one */
	unsigned workers;
	unsigned ncpus;
	int cpus[GW_MAX_WORKERS]; /* io = kernel: ncpus (= workers) CPUs to pin to */
	unsigned idle_timeout;    /* seconds without progress either way */
	unsigned session_timeout; /* seconds a connection may last */
	unsigned max_connections; /* all workers together */
	unsigned max_connections_per_source;
};

/* Why a connection ended.  The numbers are in the debug log's close line. */
enum gw_close_reason {
	GW_CLOSE_LOCAL,    /* the gateway closed and its output was sent */
	GW_CLOSE_PEER,     /* the client closed its side */
	GW_CLOSE_ERROR,    /* transport error (reset, ...) */
	GW_CLOSE_IDLE,     /* idle timeout */
	GW_CLOSE_SESSION,  /* whole-session timeout */
	GW_CLOSE_LINGER,   /* the last output was not taken within the linger time */
	GW_CLOSE_SHUTDOWN, /* the shutdown grace period ran out */
	GW_CLOSE_OVERFLOW, /* input buffer full and the session took nothing */
};

/* Which deadline passed (gw_conn_timeout). */
enum gw_timeout { GW_TIMEOUT_IDLE, GW_TIMEOUT_SESSION };

/* Work for the worker that owns a connection, posted from another thread
 * (a delivery verdict).  The node is the poster's (embedded in the
 * session) and stays valid until fn has run; link is the transport's, for
 * queueing it.  fn runs on the worker, or, for a post that arrives after
 * the worker has exited, on the main thread while the transport is
 * destroyed. */
struct gw_post {
	void (*fn)(struct gw_post *p);
	void *link[2];
};

/* A transport's connection counters, one set per worker, summed.  The
 * X-macro keeps the adapters' copies and the exports in step with it. */
#define GW_IO_STATS(X)                                                                    \
	X(accepted)       /* handed to the session */                                     \
	X(refused_global) /* over max_connections */                                      \
	X(refused_source) /* over max_connections_per_source */                           \
	X(refused_app)    /* the session said no (out of memory, a "drop" source) */      \
	X(accept_errors)                                                                  \
	X(closed_peer)                                                                    \
	X(closed_error)                                                                   \
	X(timeouts_idle)                                                                  \
	X(timeouts_session)                                                               \
	X(linger_expired)                                                                 \
	X(shutdown_forced)                                                                \
	X(overflows)                                                                      \
	X(bytes_in)                                                                       \
	X(bytes_out)                                                                      \
	X(wakeups) /* a kernel-socket worker woke from epoll_wait (0 on a polling one) */ \
	X(open)    /* gauge: connections open now */

struct gw_io_stats {
#define GW_IO_STATS_FIELD(f) uint64_t f;
	GW_IO_STATS(GW_IO_STATS_FIELD)
#undef GW_IO_STATS_FIELD
};

/* The transport under one session; tc is the transport's connection, tw
 * its worker. */
struct gw_transport {
	/* Queue output; how much was taken (less: gw_conn_writable follows). */
	size_t (*write)(void *tc, const void *p, size_t n);
	void (*pause)(void *tc);
	/* Input again, beginning with what was left unconsumed; offered later
	 * from the transport's loop, never from inside this call. */
	void (*resume)(void *tc);
	/* Close once the output is sent; no input after this.  A session
	 * waiting for a delivery verdict (gw_conn_waiting) holds the close back
	 * within the linger time, so the verdict's reply still goes out. */
	void (*close)(void *tc);
	/* Any thread: make p->fn(p) run on worker tw soon. */
	void (*post)(void *tw, struct gw_post *p);
};

/* The transport as a whole. */
struct gw_io_ops {
	/* Start the workers: 0, or -1 (said on stderr). */
	int (*start)(void *t);
	/* Stop accepting, tell every session (gw_conn_shutdown) and close what
	 * is left after grace_ms; again with a shorter grace: sooner. */
	void (*stop)(void *t, unsigned grace_ms);
	/* Wait up to timeout_ms for every worker to exit; true when they have. */
	bool (*wait)(void *t, unsigned timeout_ms);
	/* After wait said true and the delivery backend stopped: run the posts
	 * that found their worker gone, free everything. */
	void (*destroy)(void *t);
	void (*stats)(const void *t, struct gw_io_stats *out);
};

struct gw_io {
	const struct gw_io_ops *ops;
	void *t;
};

#endif
