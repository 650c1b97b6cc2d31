/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * kio: the kernel-socket front end (the fallback I/O path for NICs that DPDK
 * does not drive).
 *
 * N worker threads, each with its own SO_REUSEPORT listening socket and its
 * own epoll loop, so the kernel spreads connections across workers and a
 * connection lives on one thread for its whole life.  kio knows nothing of
 * the protocol it carries: the application (the gateway) plugs in through
 * struct kio_ops and writes through kio_write().
 *
 * Memory per connection is bounded: at most KIO_INBUF octets of input the
 * application has not consumed and KIO_OUTBUF octets of output not yet taken
 * by the kernel.  Both buffers come from a per-worker pool and only while they
 * hold data, so an idle connection costs its struct alone.
 *
 * Time: every connection has an idle deadline (pushed back by progress in
 * either direction: input read, output taken by the kernel, reading
 * resumed), a whole-session deadline, and once kio_close() was asked, a
 * linger deadline for its last output.  So a client that neither sends nor
 * reads its replies is dropped, however it stalls.  Each deadline kind has a
 * constant length, so each is kept in a list that is ordered by deadline
 * simply by appending.
 *
 * Threading: kio_create, kio_start, kio_stop, kio_wait and kio_destroy
 * belong to one controlling thread.  Every kio_conn_* call and
 * kio_write/pause/resume/close must be made on the worker thread that owns
 * the connection, which is the thread its ops callbacks run on.  kio_post()
 * and kio_stats() (relaxed loads of per-worker counters: a metrics scrape
 * thread uses it) may be called from any thread.
 */
#ifndef TES_DATAPLANE_KIO_H
#define TES_DATAPLANE_KIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define KIO_MAX_WORKERS 64
#define KIO_INBUF 16384  /* unconsumed input kept per connection */
#define KIO_OUTBUF 16384 /* output kept per connection until the kernel takes it */
#define KIO_LINE_MAX 256 /* a refusal line, CRLF included */

struct kio;
struct kio_worker;
struct kio_conn;

enum kio_close_reason {
	KIO_CLOSE_LOCAL,    /* kio_close() and the output was sent */
	KIO_CLOSE_PEER,     /* the client closed its side */
	KIO_CLOSE_ERROR,    /* socket error (reset, ...) */
	KIO_CLOSE_IDLE,     /* idle timeout */
	KIO_CLOSE_SESSION,  /* whole-session timeout */
	KIO_CLOSE_LINGER,   /* the last output was not taken within the linger time */
	KIO_CLOSE_SHUTDOWN, /* the shutdown grace period ran out */
	KIO_CLOSE_OVERFLOW, /* input buffer full and the application took nothing */
};

enum kio_timeout { KIO_TIMEOUT_IDLE, KIO_TIMEOUT_SESSION };

/* What the application implements.  All run on the connection's worker. */
struct kio_ops {
	/* Accepted and within the limits.  Return the connection's context, or
	 * NULL to refuse it; then *refuse, if set, is a CRLF-terminated line
	 * written best effort before the close (on_close is not called).  c
	 * already accepts kio_write() (a greeting, say). */
	void *(*on_open)(void *app, struct kio_conn *c, const struct sockaddr_storage *peer,
			 const char **refuse);
	/* Input.  Return how many octets were consumed; the rest is kept and
	 * offered again, with what follows, when more arrives or after
	 * kio_resume().  Call kio_pause() to stop reading meanwhile. */
	size_t (*on_data)(void *ctx, struct kio_conn *c, const uint8_t *p, size_t n);
	/* Output space was freed after a kio_write() that took less than asked. */
	void (*on_writable)(void *ctx, struct kio_conn *c);
	/* A timeout fired: write a last line if wanted.  The connection is then
	 * closed after its output is sent (bounded by the linger time). */
	void (*on_timeout)(void *ctx, struct kio_conn *c, enum kio_timeout which);
	/* A graceful shutdown began: say goodbye (kio_close) to connections that
	 * can go now; the others have until the grace period ends. */
	void (*on_shutdown)(void *ctx, struct kio_conn *c);
	/* The connection is gone; kio does not use ctx again. */
	void (*on_close)(void *ctx, struct kio_conn *c, enum kio_close_reason why);
	/* Whether the application still owes output it is waiting for (a
	 * delivery verdict computed elsewhere): a close kio_close() or a
	 * timeout asked for then waits for that output, within the linger
	 * time, instead of closing as soon as the queue is empty.  NULL: never. */
	bool (*holding)(void *ctx, struct kio_conn *c);

	/* Worker life cycle, on the worker's thread; each may be NULL.  The
	 * gateway registers its workers as RCU readers here: before_wait runs
	 * just before the worker may block in epoll_wait (a quiescent point,
	 * where it holds nothing), after_wait as soon as it returns. */
	void (*on_worker_start)(void *app, unsigned worker);
	void (*before_wait)(void *app, unsigned worker);
	void (*after_wait)(void *app, unsigned worker);
	void (*on_worker_stop)(void *app, unsigned worker);
};

struct kio_config {
	struct sockaddr_storage listen; /* AF_INET or AF_INET6; port 0 picks one */
	unsigned workers;               /* 1..KIO_MAX_WORKERS */
	const int *cpus;                /* NULL, or workers CPU numbers to pin to */
	int backlog;
	unsigned idle_timeout_ms;
	unsigned session_timeout_ms;
	unsigned linger_ms;        /* for the last output after kio_close() */
	unsigned max_conns;        /* all workers together */
	unsigned max_conns_source; /* per source: an IPv4 address or an IPv6 /64 */
	/* CRLF-terminated lines for connections over a limit. */
	const char *refuse_global;
	const char *refuse_source;
	/* Where kio reports what it cannot tell a caller (level: 0 error,
	 * 1 warning, 2 info, 3 debug).  NULL: silent. */
	void (*log)(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
};

/* Counters, one set per worker, summed by kio_stats(). */
struct kio_stats {
	uint64_t accepted;       /* handed to on_open */
	uint64_t refused_global; /* over max_conns */
	uint64_t refused_source; /* over max_conns_source */
	uint64_t refused_app;    /* on_open said no */
	uint64_t accept_errors;
	uint64_t closed_peer;
	uint64_t closed_error;
	uint64_t timeouts_idle;
	uint64_t timeouts_session;
	uint64_t linger_expired;
	uint64_t shutdown_forced;
	uint64_t overflows;
	uint64_t bytes_in;
	uint64_t bytes_out;
	/* Times a worker woke from epoll_wait (kernel sockets only): a worker
	 * that spins on a connection it cannot serve shows here. */
	uint64_t wakeups;
	uint64_t open; /* gauge: connections open now (kio_stats only) */
};

/* Cross-thread work for a worker: fill fn, then kio_post().  The node is the
 * caller's (embed it); it must stay valid until fn runs.  fn runs on the
 * worker's thread, or, for posts that arrive after the worker has exited, on
 * the thread calling kio_destroy(). */
struct kio_post {
	struct kio_post *next;
	void (*fn)(struct kio_post *p);
};

/* Creates the listening sockets (so an address in use is reported here, on
 * the calling thread) but starts no thread.  NULL with err filled on error. */
struct kio *kio_create(const struct kio_config *cfg, const struct kio_ops *ops, void *app,
		       char *err, size_t errlen);

/* Before kio_start: the application pointer (on_open's app) and the refusal
 * lines, for a caller that binds early, before the objects behind them exist
 * (tesgate binds before it gives up its privileges and makes any thread).
 * The lines are copied; NULL leaves one as it is. */
void kio_set_app(struct kio *k, void *app, const char *refuse_global, const char *refuse_source);

/* The address actually bound (port 0 resolved). */
void kio_local_addr(const struct kio *k, struct sockaddr_storage *out);

/* Start the worker threads.  0, or an errno value. */
int kio_start(struct kio *k);

/* Stop accepting, tell every connection (on_shutdown), and let them finish
 * for at most grace_ms before closing what is left.  Calling it again with a
 * shorter grace shortens the wait. */
void kio_stop(struct kio *k, unsigned grace_ms);

/* Wait up to timeout_ms for every worker to exit; true when they have. */
bool kio_wait(struct kio *k, unsigned timeout_ms);

/* After kio_wait() returned true: run posts that arrived late, free all. */
void kio_destroy(struct kio *k);

void kio_stats(const struct kio *k, struct kio_stats *sum);

/* Any thread. */
void kio_post(struct kio_worker *w, struct kio_post *p);

/* Owner worker thread only, from here on. */

/* Queue output; returns how many octets were taken (less than n when the
 * output buffer is full: on_writable follows once space is free). */
size_t kio_write(struct kio_conn *c, const void *p, size_t n);
/* Stop delivering input (the client then meets TCP flow control). */
void kio_pause(struct kio_conn *c);
/* Deliver input again, starting with what was left unconsumed. */
void kio_resume(struct kio_conn *c);
/* Close once the output is sent.  No input is delivered after this. */
void kio_close(struct kio_conn *c);

struct kio_worker *kio_conn_worker(const struct kio_conn *c);
unsigned kio_worker_index(const struct kio_worker *w);
const struct sockaddr_storage *kio_conn_peer(const struct kio_conn *c);

/* "192.0.2.1:25" or "[2001:db8::1]:25"; IPv4-mapped IPv6 printed as IPv4. */
void kio_format_addr(const struct sockaddr_storage *ss, char *buf, size_t len, bool with_port);

#endif
