/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * kio: kernel-socket front end.  See kio.h for the contract.
 */
#include "dataplane/kio.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/srclimit.h"

#define KIO_BUFSZ 16384
_Static_assert(KIO_INBUF == KIO_BUFSZ && KIO_OUTBUF == KIO_BUFSZ,
	       "one buffer pool serves input and output");

#define EVENTS_PER_WAIT 128
#define ACCEPTS_PER_WAKE 64
#define READS_PER_EVENT 4 /* fairness: a fast sender yields to the others */
#define POOL_KEEP 256     /* free buffers/conns kept per worker beyond that go back */
#define RELISTEN_MS 100   /* pause accepting after EMFILE, instead of spinning */
#define MAX_WAIT_MS 1000

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

/* Intrusive circular list; an unlinked node points at itself. */
struct klink {
	struct klink *prev, *next;
};

static void kl_init(struct klink *n)
{
	n->prev = n->next = n;
}

static bool kl_linked(const struct klink *n)
{
	return n->next != n;
}

static void kl_del(struct klink *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	kl_init(n);
}

static void kl_append(struct klink *head, struct klink *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}

struct kio_conn {
	struct kio_worker *w;
	void *ctx;
	int fd;
	uint32_t events; /* epoll interest currently registered */
	bool paused, closing, dead, out_blocked, want_writable;
	uint8_t srckey[16];
	bool src_counted;
	struct sockaddr_storage peer;
	uint64_t idle_at, session_at, linger_at;
	struct klink all;    /* every open connection of the worker */
	struct klink sess;   /* ordered by session deadline, until it fires */
	struct klink timer;  /* the idle list, or the linger list once closing */
	struct klink dirty;  /* output to send at the end of the loop iteration */
	struct klink resume; /* unconsumed input to offer again */
	struct kio_conn *next_free;
	uint8_t *in;
	uint32_t in_off, in_len;
	uint8_t *out;
	uint32_t out_off, out_len;
};

struct kio_worker {
	struct kio *k;
	unsigned index;
	pthread_t thread;
	bool started, joined;
	atomic_bool exited;
	int ep, lfd, evfd;
	uint64_t now;
	struct klink all, sess, idle, linger, dirty, resume;
	struct kio_conn *dead; /* closed this iteration, freed at its end */
	unsigned nconns;
	bool stopping, accept_paused;
	uint64_t relisten_at;

	pthread_mutex_t post_lock;
	struct kio_post *post_head, *post_tail;

	void *buf_free;
	unsigned nbuf_free;
	struct kio_conn *conn_free;
	unsigned nconn_free;

	struct kio_stats st;
	uint8_t scratch[KIO_BUFSZ];
};

struct kio {
	struct kio_config cfg;
	struct kio_ops ops;
	void *app;
	char refuse_global[KIO_LINE_MAX];
	char refuse_source[KIO_LINE_MAX];
	int cpus[KIO_MAX_WORKERS];
	struct sockaddr_storage bound;
	unsigned nworkers;
	struct kio_worker *w;
	atomic_uint nconns;
	atomic_bool stop_req;
	_Atomic uint64_t stop_at; /* monotonic ms */

	struct srclimit *src; /* connections per source, all workers */
};

#define STAT_ADD(w, field, n) \
	__atomic_store_n(&(w)->st.field, (w)->st.field + (n), __ATOMIC_RELAXED)

#define KLOG(k, lvl, ...)                               \
	do {                                            \
		if ((k)->cfg.log)                       \
			(k)->cfg.log(lvl, __VA_ARGS__); \
	} while (0)

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- addresses ---- */

static const uint8_t v4mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* An IPv4 source is its address; an IPv6 source is its /64, because one
 * host commonly holds a whole /64 and could otherwise walk around the limit. */
static void source_key(const struct sockaddr_storage *ss, uint8_t key[16])
{
	memset(key, 0, 16);
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
		memcpy(key, v4mapped_prefix, 12);
		memcpy(key + 12, &sin->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
		const uint8_t *a = s6->sin6_addr.s6_addr;
		if (memcmp(a, v4mapped_prefix, 12) == 0)
			memcpy(key, a, 16);
		else
			memcpy(key, a, 8);
	}
}

/* Decimal of v at p; returns the end.  Per connection, where inet_ntop's
 * and snprintf's format parsing showed in profiles. */
static char *put_u(char *p, unsigned v)
{
	char d[10];
	int i = 0;

	do {
		d[i++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (i)
		*p++ = d[--i];
	return p;
}

static char *put_v4(char *p, const uint8_t b[4])
{
	for (int i = 0; i < 4; i++) {
		if (i)
			*p++ = '.';
		p = put_u(p, b[i]);
	}
	return p;
}

void kio_format_addr(const struct sockaddr_storage *ss, char *buf, size_t len, bool with_port)
{
	/* "[" v6 "]:" port */
	char out[INET6_ADDRSTRLEN + 9], *p = out;
	unsigned port = 0;

	if (len == 0)
		return;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
		p = put_v4(p, (const uint8_t *)&sin->sin_addr);
		port = ntohs(sin->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
		port = ntohs(s6->sin6_port);
		if (memcmp(s6->sin6_addr.s6_addr, v4mapped_prefix, 12) == 0) {
			p = put_v4(p, s6->sin6_addr.s6_addr + 12);
		} else {
			if (with_port)
				*p++ = '[';
			inet_ntop(AF_INET6, &s6->sin6_addr, p, INET6_ADDRSTRLEN);
			p += strlen(p);
			if (with_port)
				*p++ = ']';
		}
	} else {
		memcpy(out, "unknown", 7);
		p = out + 7;
		with_port = false;
	}
	if (with_port) {
		*p++ = ':';
		p = put_u(p, port);
	}
	*p = '\0';
	size_t n = (size_t)(p - out);
	if (n >= len)
		n = len - 1;
	memcpy(buf, out, n);
	buf[n] = '\0';
}

/* ---- pools ---- */

static uint8_t *buf_get(struct kio_worker *w)
{
	if (w->buf_free) {
		void *b = w->buf_free;
		memcpy(&w->buf_free, b, sizeof(void *));
		w->nbuf_free--;
		return b;
	}
	return malloc(KIO_BUFSZ);
}

static void buf_put(struct kio_worker *w, uint8_t *b)
{
	if (!b)
		return;
	if (w->nbuf_free >= POOL_KEEP) {
		free(b);
		return;
	}
	memcpy(b, &w->buf_free, sizeof(void *));
	w->buf_free = b;
	w->nbuf_free++;
}

static struct kio_conn *conn_get(struct kio_worker *w)
{
	struct kio_conn *c = w->conn_free;
	if (c) {
		w->conn_free = c->next_free;
		w->nconn_free--;
		memset(c, 0, sizeof(*c));
	} else {
		c = calloc(1, sizeof(*c));
		if (!c)
			return NULL;
	}
	kl_init(&c->all);
	kl_init(&c->sess);
	kl_init(&c->timer);
	kl_init(&c->dirty);
	kl_init(&c->resume);
	c->w = w;
	c->fd = -1;
	return c;
}

static void conn_put(struct kio_worker *w, struct kio_conn *c)
{
	if (w->nconn_free >= POOL_KEEP) {
		free(c);
		return;
	}
	c->next_free = w->conn_free;
	w->conn_free = c;
	w->nconn_free++;
}

/* ---- connections ---- */

static void conn_update_events(struct kio_conn *c)
{
	uint32_t want = 0;
	if (!c->paused && !c->closing)
		want |= EPOLLIN;
	if (c->out_len > 0 && c->out_blocked)
		want |= EPOLLOUT;
	if (want == c->events)
		return;
	struct epoll_event ev = { .events = want, .data.ptr = c };
	if (epoll_ctl(c->w->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->events = want;
}

static void conn_close(struct kio_conn *c, enum kio_close_reason why)
{
	struct kio_worker *w = c->w;
	struct kio *k = w->k;

	if (c->dead)
		return;
	c->dead = true;
	switch (why) {
	case KIO_CLOSE_PEER:
		STAT_ADD(w, closed_peer, 1);
		break;
	case KIO_CLOSE_ERROR:
		STAT_ADD(w, closed_error, 1);
		break;
	case KIO_CLOSE_LINGER:
		STAT_ADD(w, linger_expired, 1);
		break;
	case KIO_CLOSE_SHUTDOWN:
		STAT_ADD(w, shutdown_forced, 1);
		break;
	case KIO_CLOSE_OVERFLOW:
		STAT_ADD(w, overflows, 1);
		break;
	default:
		break;
	}
	if (c->ctx && k->ops.on_close)
		k->ops.on_close(c->ctx, c, why);
	c->ctx = NULL;
	close(c->fd); /* also leaves the epoll set: the fd was never duplicated */
	c->fd = -1;
	kl_del(&c->all);
	kl_del(&c->sess);
	kl_del(&c->timer);
	kl_del(&c->dirty);
	kl_del(&c->resume);
	if (c->src_counted)
		srclimit_release(k->src, c->srckey);
	atomic_fetch_sub(&k->nconns, 1);
	w->nconns--;
	buf_put(w, c->in);
	buf_put(w, c->out);
	c->in = c->out = NULL;
	c->next_free = w->dead;
	w->dead = c;
}

static void idle_touch(struct kio_conn *c)
{
	struct kio_worker *w = c->w;
	if (c->closing)
		return;
	kl_del(&c->timer);
	c->idle_at = w->now + w->k->cfg.idle_timeout_ms;
	kl_append(&w->idle, &c->timer);
}

static void mark_dirty(struct kio_conn *c)
{
	if (!kl_linked(&c->dirty))
		kl_append(&c->w->dirty, &c->dirty);
}

size_t kio_write(struct kio_conn *c, const void *p, size_t n)
{
	if (c->dead || n == 0)
		return 0;
	if (!c->out) {
		c->out = buf_get(c->w);
		if (!c->out) {
			c->want_writable = true;
			return 0;
		}
		c->out_off = c->out_len = 0;
	}
	if (c->out_off > 0 && c->out_off + c->out_len + n > KIO_BUFSZ) {
		memmove(c->out, c->out + c->out_off, c->out_len);
		c->out_off = 0;
	}
	size_t space = KIO_BUFSZ - c->out_off - c->out_len;
	size_t take = n < space ? n : space;
	memcpy(c->out + c->out_off + c->out_len, p, take);
	c->out_len += (uint32_t)take;
	if (take < n)
		c->want_writable = true;
	mark_dirty(c);
	return take;
}

void kio_pause(struct kio_conn *c)
{
	if (c->paused || c->dead)
		return;
	c->paused = true;
	kl_del(&c->resume);
	conn_update_events(c);
}

void kio_resume(struct kio_conn *c)
{
	if (!c->paused || c->dead)
		return;
	c->paused = false;
	if (c->closing)
		return;
	idle_touch(c);
	if (c->in_len > 0 && !kl_linked(&c->resume))
		kl_append(&c->w->resume, &c->resume);
	conn_update_events(c);
}

void kio_close(struct kio_conn *c)
{
	struct kio_worker *w = c->w;
	if (c->dead)
		return;
	if (c->closing) {
		mark_dirty(c); /* held back for a reply that may have come now */
		return;
	}
	c->closing = true;
	kl_del(&c->resume);
	kl_del(&c->timer);
	c->linger_at = w->now + w->k->cfg.linger_ms;
	kl_append(&w->linger, &c->timer);
	conn_update_events(c);
	mark_dirty(c); /* the flush closes it once the output is out */
}

struct kio_worker *kio_conn_worker(const struct kio_conn *c)
{
	return c->w;
}

unsigned kio_worker_index(const struct kio_worker *w)
{
	return w->index;
}

const struct sockaddr_storage *kio_conn_peer(const struct kio_conn *c)
{
	return &c->peer;
}

/* Send what is queued.  Calls on_writable when a short kio_write() can now
 * be retried, and closes the connection when a requested close is due. */
static void conn_flush(struct kio_conn *c)
{
	struct kio_worker *w = c->w;

	while (c->out_len > 0) {
		ssize_t r =
			send(c->fd, c->out + c->out_off, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (r > 0) {
			c->out_off += (uint32_t)r;
			c->out_len -= (uint32_t)r;
			STAT_ADD(w, bytes_out, (uint64_t)r);
			idle_touch(c);
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			c->out_blocked = true;
			conn_update_events(c);
			break;
		}
		conn_close(c, KIO_CLOSE_ERROR);
		return;
	}
	if (c->out_len == 0) {
		buf_put(w, c->out);
		c->out = NULL;
		c->out_off = 0;
		c->out_blocked = false;
		/* A reply still on its way (a verdict after a timeout) goes out
		 * first: the sender would otherwise send the message again. */
		if (c->closing && !(w->k->ops.holding && c->ctx && w->k->ops.holding(c->ctx, c))) {
			conn_close(c, KIO_CLOSE_LOCAL);
			return;
		}
		conn_update_events(c);
	}
	/* Wake the writer once half the buffer is free, not for every octet. */
	if (c->want_writable && c->out_len <= KIO_BUFSZ / 2 && !c->closing) {
		c->want_writable = false;
		if (w->k->ops.on_writable)
			w->k->ops.on_writable(c->ctx, c);
	}
}

/* Offer buffered input again (after kio_resume). */
static void conn_offer(struct kio_conn *c)
{
	struct kio *k = c->w->k;
	if (c->in_len == 0 || c->paused || c->closing || c->dead)
		return;
	size_t used = k->ops.on_data(c->ctx, c, c->in + c->in_off, c->in_len);
	if (c->dead)
		return;
	if (used > c->in_len)
		used = c->in_len;
	c->in_off += (uint32_t)used;
	c->in_len -= (uint32_t)used;
	if (c->in_len == 0) {
		buf_put(c->w, c->in);
		c->in = NULL;
		c->in_off = 0;
	}
}

static void conn_read(struct kio_conn *c)
{
	struct kio_worker *w = c->w;
	struct kio *k = w->k;

	for (int round = 0; round < READS_PER_EVENT; round++) {
		if (c->dead || c->paused || c->closing)
			return;
		uint8_t *dst;
		size_t space;
		if (c->in) {
			if (c->in_off > 0) {
				memmove(c->in, c->in + c->in_off, c->in_len);
				c->in_off = 0;
			}
			dst = c->in + c->in_len;
			space = KIO_BUFSZ - c->in_len;
			if (space == 0) {
				/* Full, not paused, and still nothing consumed:
				 * the application can never make progress. */
				conn_close(c, KIO_CLOSE_OVERFLOW);
				return;
			}
		} else {
			dst = w->scratch;
			space = sizeof(w->scratch);
		}
		ssize_t r = recv(c->fd, dst, space, 0);
		if (r == 0) {
			conn_close(c, KIO_CLOSE_PEER);
			return;
		}
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			conn_close(c, KIO_CLOSE_ERROR);
			return;
		}
		STAT_ADD(w, bytes_in, (uint64_t)r);
		idle_touch(c);
		if (c->in) {
			c->in_len += (uint32_t)r;
			conn_offer(c);
		} else {
			size_t used = k->ops.on_data(c->ctx, c, dst, (size_t)r);
			if (c->dead)
				return;
			if (used < (size_t)r && !c->closing) {
				c->in = buf_get(w);
				if (!c->in) {
					conn_close(c, KIO_CLOSE_OVERFLOW);
					return;
				}
				c->in_off = 0;
				c->in_len = (uint32_t)((size_t)r - used);
				memcpy(c->in, dst + used, c->in_len);
			}
		}
		if ((size_t)r < space)
			return; /* the socket is drained; epoll tells us about more */
	}
}

static void refuse_fd(int fd, const char *line)
{
	if (line && *line) {
		ssize_t r = send(fd, line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT);
		(void)r; /* best effort: the client may already be gone */
	}
	close(fd);
}

static void accept_one(struct kio_worker *w, int fd, const struct sockaddr_storage *ss)
{
	struct kio *k = w->k;

	if (atomic_fetch_add(&k->nconns, 1) >= k->cfg.max_conns) {
		atomic_fetch_sub(&k->nconns, 1);
		STAT_ADD(w, refused_global, 1);
		refuse_fd(fd, k->refuse_global);
		return;
	}
	uint8_t key[16];
	source_key(ss, key);
	if (k->cfg.max_conns_source && !srclimit_acquire(k->src, key)) {
		atomic_fetch_sub(&k->nconns, 1);
		STAT_ADD(w, refused_source, 1);
		refuse_fd(fd, k->refuse_source);
		return;
	}
	struct kio_conn *c = conn_get(w);
	struct epoll_event ev = { .events = EPOLLIN };
	ev.data.ptr = c;
	if (!c || epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
		if (k->cfg.max_conns_source)
			srclimit_release(k->src, key);
		atomic_fetch_sub(&k->nconns, 1);
		STAT_ADD(w, accept_errors, 1);
		if (c)
			conn_put(w, c);
		close(fd);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->fd = fd;
	c->events = EPOLLIN;
	c->peer = *ss;
	memcpy(c->srckey, key, 16);
	c->src_counted = k->cfg.max_conns_source != 0;
	c->session_at = w->now + k->cfg.session_timeout_ms;
	c->idle_at = w->now + k->cfg.idle_timeout_ms;
	kl_append(&w->all, &c->all);
	kl_append(&w->sess, &c->sess);
	kl_append(&w->idle, &c->timer);
	w->nconns++;

	const char *refuse = NULL;
	STAT_ADD(w, accepted, 1);
	void *ctx = k->ops.on_open(k->app, c, ss, &refuse);
	if (!ctx) {
		STAT_ADD(w, refused_app, 1);
		/* Whatever on_open queued is dropped: the refusal line is all
		 * the client gets. */
		c->out_len = 0;
		if (refuse && *refuse) {
			ssize_t r = send(fd, refuse, strlen(refuse), MSG_NOSIGNAL | MSG_DONTWAIT);
			(void)r;
		}
		conn_close(c, KIO_CLOSE_LOCAL);
		return;
	}
	c->ctx = ctx;
}

static void accept_batch(struct kio_worker *w)
{
	for (int i = 0; i < ACCEPTS_PER_WAKE && w->lfd >= 0; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(w->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
				continue;
			STAT_ADD(w, accept_errors, 1);
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* Level-triggered: the pending connection would
				 * wake us at once, forever.  Step aside briefly. */
				KLOG(w->k, 1, "kio: worker %u: accept: %s; pausing accepts",
				     w->index, strerror(errno));
				epoll_ctl(w->ep, EPOLL_CTL_DEL, w->lfd, NULL);
				w->accept_paused = true;
				w->relisten_at = w->now + RELISTEN_MS;
			}
			return;
		}
		accept_one(w, fd, &ss);
	}
}

static void run_posts(struct kio_worker *w)
{
	pthread_mutex_lock(&w->post_lock);
	struct kio_post *p = w->post_head;
	w->post_head = w->post_tail = NULL;
	pthread_mutex_unlock(&w->post_lock);
	while (p) {
		struct kio_post *next = p->next;
		p->fn(p);
		p = next;
	}
}

void kio_post(struct kio_worker *w, struct kio_post *p)
{
	p->next = NULL;
	pthread_mutex_lock(&w->post_lock);
	if (w->post_tail)
		w->post_tail->next = p;
	else
		w->post_head = p;
	w->post_tail = p;
	pthread_mutex_unlock(&w->post_lock);
	uint64_t one = 1;
	ssize_t r = write(w->evfd, &one, sizeof(one));
	(void)r; /* EAGAIN means the counter is already non-zero: awake anyway */
}

static void expire(struct kio_worker *w)
{
	struct kio *k = w->k;

	while (kl_linked(&w->idle)) {
		struct kio_conn *c = container_of(w->idle.next, struct kio_conn, timer);
		if (c->idle_at > w->now)
			break;
		kl_del(&c->timer);
		STAT_ADD(w, timeouts_idle, 1);
		if (k->ops.on_timeout)
			k->ops.on_timeout(c->ctx, c, KIO_TIMEOUT_IDLE);
		kio_close(c);
	}
	while (kl_linked(&w->sess)) {
		struct kio_conn *c = container_of(w->sess.next, struct kio_conn, sess);
		if (c->session_at > w->now)
			break;
		kl_del(&c->sess);
		STAT_ADD(w, timeouts_session, 1);
		if (!c->closing && k->ops.on_timeout)
			k->ops.on_timeout(c->ctx, c, KIO_TIMEOUT_SESSION);
		kio_close(c);
	}
	while (kl_linked(&w->linger)) {
		struct kio_conn *c = container_of(w->linger.next, struct kio_conn, timer);
		if (c->linger_at > w->now)
			break;
		conn_close(c, KIO_CLOSE_LINGER);
	}
}

static void process_resumes(struct kio_worker *w)
{
	while (kl_linked(&w->resume)) {
		struct kio_conn *c = container_of(w->resume.next, struct kio_conn, resume);
		kl_del(&c->resume);
		conn_offer(c);
	}
}

static void flush_dirty(struct kio_worker *w)
{
	while (kl_linked(&w->dirty)) {
		struct kio_conn *c = container_of(w->dirty.next, struct kio_conn, dirty);
		kl_del(&c->dirty);
		conn_flush(c);
	}
}

static void reap(struct kio_worker *w)
{
	while (w->dead) {
		struct kio_conn *c = w->dead;
		w->dead = c->next_free;
		conn_put(w, c);
	}
}

static void begin_shutdown(struct kio_worker *w)
{
	struct kio *k = w->k;

	w->stopping = true;
	if (w->lfd >= 0) {
		epoll_ctl(w->ep, EPOLL_CTL_DEL, w->lfd, NULL);
		close(w->lfd);
		w->lfd = -1;
	}
	struct klink *n = w->all.next;
	while (n != &w->all) {
		struct kio_conn *c = container_of(n, struct kio_conn, all);
		n = n->next; /* c may close itself, never another connection */
		if (!c->closing && k->ops.on_shutdown)
			k->ops.on_shutdown(c->ctx, c);
	}
}

static int next_wait_ms(struct kio_worker *w)
{
	uint64_t t = w->now + MAX_WAIT_MS;

	if (kl_linked(&w->dirty) || kl_linked(&w->resume))
		return 0;
	if (kl_linked(&w->idle)) {
		uint64_t d = container_of(w->idle.next, struct kio_conn, timer)->idle_at;
		t = d < t ? d : t;
	}
	if (kl_linked(&w->sess)) {
		uint64_t d = container_of(w->sess.next, struct kio_conn, sess)->session_at;
		t = d < t ? d : t;
	}
	if (kl_linked(&w->linger)) {
		uint64_t d = container_of(w->linger.next, struct kio_conn, timer)->linger_at;
		t = d < t ? d : t;
	}
	if (w->accept_paused && w->relisten_at < t)
		t = w->relisten_at;
	if (w->stopping) {
		uint64_t d = atomic_load(&w->k->stop_at);
		t = d < t ? d : t;
	}
	return t <= w->now ? 0 : (int)(t - w->now);
}

static void *worker_main(void *arg)
{
	struct kio_worker *w = arg;
	struct kio *k = w->k;
	struct epoll_event evs[EVENTS_PER_WAIT];

	if (k->cfg.cpus) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(k->cpus[w->index], &set);
		int e = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
		if (e)
			KLOG(k, 1, "kio: worker %u: cannot pin to CPU %d: %s", w->index,
			     k->cpus[w->index], strerror(e));
	}
	if (k->ops.on_worker_start)
		k->ops.on_worker_start(k->app, w->index);
	w->now = mono_ms();
	for (;;) {
		if (k->ops.before_wait)
			k->ops.before_wait(k->app, w->index);
		int n = epoll_wait(w->ep, evs, EVENTS_PER_WAIT, next_wait_ms(w));
		if (k->ops.after_wait)
			k->ops.after_wait(k->app, w->index);
		if (n < 0) {
			if (errno != EINTR)
				KLOG(k, 0, "kio: worker %u: epoll_wait: %s", w->index,
				     strerror(errno));
			n = 0;
		}
		w->now = mono_ms();
		STAT_ADD(w, wakeups, 1);
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;
			uint32_t e = evs[i].events;
			if (p == &w->lfd) {
				accept_batch(w);
			} else if (p == &w->evfd) {
				uint64_t v;
				ssize_t r = read(w->evfd, &v, sizeof(v));
				(void)r;
				run_posts(w);
			} else {
				struct kio_conn *c = p;
				if (c->dead)
					continue;
				if (e & EPOLLERR) {
					conn_close(c, KIO_CLOSE_ERROR);
					continue;
				}
				if (e & EPOLLOUT)
					conn_flush(c);
				if (c->dead)
					continue;
				if ((e & EPOLLHUP) && (c->paused || c->closing))
					conn_close(c, KIO_CLOSE_PEER);
				else if (e & (EPOLLIN | EPOLLHUP))
					conn_read(c);
			}
		}
		if (w->accept_paused && !w->stopping && w->now >= w->relisten_at) {
			struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &w->lfd };
			if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->lfd, &ev) == 0)
				w->accept_paused = false;
			else
				w->relisten_at = w->now + RELISTEN_MS;
		}
		expire(w);
		if (!w->stopping && atomic_load(&k->stop_req))
			begin_shutdown(w);
		process_resumes(w);
		flush_dirty(w);
		if (w->stopping) {
			if (w->nconns == 0) {
				reap(w);
				break;
			}
			if (w->now >= atomic_load(&k->stop_at)) {
				while (kl_linked(&w->all))
					conn_close(container_of(w->all.next, struct kio_conn, all),
						   KIO_CLOSE_SHUTDOWN);
				reap(w);
				break;
			}
		}
		reap(w);
	}
	if (k->ops.on_worker_stop)
		k->ops.on_worker_stop(k->app, w->index);
	atomic_store(&w->exited, true);
	return NULL;
}

/* ---- life cycle ---- */

static int open_listener(const struct sockaddr_storage *ss, int backlog, char *err, size_t errlen)
{
	socklen_t sl =
		ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	char a[80];
	kio_format_addr(ss, a, sizeof(a), true);
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	int one = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
		snprintf(err, errlen, "setsockopt: %s", strerror(errno));
		close(fd);
		return -1;
	}
	if (bind(fd, (const struct sockaddr *)ss, sl) != 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", a, strerror(errno));
		close(fd);
		return -1;
	}
	if (listen(fd, backlog) != 0) {
		snprintf(err, errlen, "listen on %s: %s", a, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static void worker_release(struct kio_worker *w)
{
	while (w->buf_free) {
		void *b = w->buf_free;
		memcpy(&w->buf_free, b, sizeof(void *));
		free(b);
	}
	while (w->conn_free) {
		struct kio_conn *c = w->conn_free;
		w->conn_free = c->next_free;
		free(c);
	}
	if (w->lfd >= 0)
		close(w->lfd);
	if (w->evfd >= 0)
		close(w->evfd);
	if (w->ep >= 0)
		close(w->ep);
	w->lfd = w->evfd = w->ep = -1;
	pthread_mutex_destroy(&w->post_lock);
}

struct kio *kio_create(const struct kio_config *cfg, const struct kio_ops *ops, void *app,
		       char *err, size_t errlen)
{
	if (cfg->workers < 1 || cfg->workers > KIO_MAX_WORKERS) {
		snprintf(err, errlen, "workers must be 1..%d", KIO_MAX_WORKERS);
		return NULL;
	}
	if (cfg->listen.ss_family != AF_INET && cfg->listen.ss_family != AF_INET6) {
		snprintf(err, errlen, "listen address is neither IPv4 nor IPv6");
		return NULL;
	}
	if (!ops->on_open || !ops->on_data || cfg->max_conns == 0) {
		snprintf(err, errlen, "kio: on_open, on_data and max_conns are required");
		return NULL;
	}
	struct kio *k = calloc(1, sizeof(*k));
	if (!k) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	k->cfg = *cfg;
	k->ops = *ops;
	k->app = app;
	snprintf(k->refuse_global, sizeof(k->refuse_global), "%s",
		 cfg->refuse_global ? cfg->refuse_global : "");
	snprintf(k->refuse_source, sizeof(k->refuse_source), "%s",
		 cfg->refuse_source ? cfg->refuse_source : "");
	k->cfg.refuse_global = k->refuse_global;
	k->cfg.refuse_source = k->refuse_source;
	if (cfg->cpus) {
		memcpy(k->cpus, cfg->cpus, cfg->workers * sizeof(int));
		k->cfg.cpus = k->cpus;
	}
	if (k->cfg.backlog <= 0)
		k->cfg.backlog = 1024;
	k->nworkers = cfg->workers;
	k->src = srclimit_new(cfg->max_conns, cfg->max_conns_source);
	k->w = calloc(k->nworkers, sizeof(*k->w));
	if (!k->src || !k->w) {
		snprintf(err, errlen, "out of memory");
		srclimit_free(k->src);
		free(k->w);
		free(k);
		return NULL;
	}
	k->bound = cfg->listen;
	unsigned made = 0;
	for (; made < k->nworkers; made++) {
		struct kio_worker *w = &k->w[made];
		w->k = k;
		w->index = made;
		w->ep = w->evfd = -1;
		kl_init(&w->all);
		kl_init(&w->sess);
		kl_init(&w->idle);
		kl_init(&w->linger);
		kl_init(&w->dirty);
		kl_init(&w->resume);
		pthread_mutex_init(&w->post_lock, NULL);
		/* Every worker binds the port the first one got, so port 0
		 * still gives one port for all. */
		w->lfd = open_listener(&k->bound, k->cfg.backlog, err, errlen);
		if (w->lfd < 0) {
			made++;
			goto fail;
		}
		if (made == 0) {
			socklen_t sl = sizeof(k->bound);
			getsockname(w->lfd, (struct sockaddr *)&k->bound, &sl);
		}
		w->ep = epoll_create1(EPOLL_CLOEXEC);
		w->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		struct epoll_event lev = { .events = EPOLLIN, .data.ptr = &w->lfd };
		struct epoll_event wev = { .events = EPOLLIN, .data.ptr = &w->evfd };
		if (w->ep < 0 || w->evfd < 0 ||
		    epoll_ctl(w->ep, EPOLL_CTL_ADD, w->lfd, &lev) != 0 ||
		    epoll_ctl(w->ep, EPOLL_CTL_ADD, w->evfd, &wev) != 0) {
			snprintf(err, errlen, "epoll/eventfd: %s", strerror(errno));
			made++;
			goto fail;
		}
	}
	return k;
fail:
	for (unsigned i = 0; i < made; i++)
		worker_release(&k->w[i]);
	srclimit_free(k->src);
	free(k->w);
	free(k);
	return NULL;
}

void kio_set_app(struct kio *k, void *app, const char *refuse_global, const char *refuse_source)
{
	k->app = app;
	if (refuse_global)
		snprintf(k->refuse_global, sizeof(k->refuse_global), "%s", refuse_global);
	if (refuse_source)
		snprintf(k->refuse_source, sizeof(k->refuse_source), "%s", refuse_source);
}

void kio_local_addr(const struct kio *k, struct sockaddr_storage *out)
{
	*out = k->bound;
}

int kio_start(struct kio *k)
{
	for (unsigned i = 0; i < k->nworkers; i++) {
		struct kio_worker *w = &k->w[i];
		int e = pthread_create(&w->thread, NULL, worker_main, w);
		if (e) {
			kio_stop(k, 0);
			return e;
		}
		w->started = true;
		char name[16];
		snprintf(name, sizeof(name), "kio-%u", i);
		pthread_setname_np(w->thread, name);
	}
	return 0;
}

void kio_stop(struct kio *k, unsigned grace_ms)
{
	uint64_t at = mono_ms() + grace_ms;
	uint64_t old = atomic_load(&k->stop_at);
	while ((!atomic_load(&k->stop_req) || at < old) &&
	       !atomic_compare_exchange_weak(&k->stop_at, &old, at))
		;
	atomic_store(&k->stop_req, true);
	for (unsigned i = 0; i < k->nworkers; i++) {
		uint64_t one = 1;
		ssize_t r = write(k->w[i].evfd, &one, sizeof(one));
		(void)r;
	}
}

bool kio_wait(struct kio *k, unsigned timeout_ms)
{
	uint64_t until = mono_ms() + timeout_ms;
	for (;;) {
		bool all = true;
		for (unsigned i = 0; i < k->nworkers; i++) {
			struct kio_worker *w = &k->w[i];
			if (!w->started || w->joined)
				continue;
			if (atomic_load(&w->exited)) {
				pthread_join(w->thread, NULL);
				w->joined = true;
			} else {
				all = false;
			}
		}
		if (all)
			return true;
		if (mono_ms() >= until)
			return false;
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}

void kio_destroy(struct kio *k)
{
	if (!k)
		return;
	for (unsigned i = 0; i < k->nworkers; i++) {
		run_posts(&k->w[i]);
		worker_release(&k->w[i]);
	}
	srclimit_free(k->src);
	free(k->w);
	free(k);
}

void kio_stats(const struct kio *k, struct kio_stats *sum)
{
	_Static_assert(sizeof(struct kio_stats) % sizeof(uint64_t) == 0, "all uint64_t");
	enum { N = sizeof(struct kio_stats) / sizeof(uint64_t) };
	uint64_t acc[N] = { 0 };
	for (unsigned i = 0; i < k->nworkers; i++) {
		const uint64_t *f = (const uint64_t *)&k->w[i].st;
		for (unsigned j = 0; j < N; j++)
			acc[j] += __atomic_load_n(&f[j], __ATOMIC_RELAXED);
	}
	memcpy(sum, acc, sizeof(acc));
	sum->open = atomic_load(&k->nconns);
}
