/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The smtp relay delivery backend.  See relay.h for the contract and
 * smtpc.h for the protocol side.
 */
#include "gateway/delivery/relay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "gateway/delivery/diskfloor.h"
#include "gateway/delivery/smtpc.h"
#include "gateway/observe/log.h"
#include "gateway/observe/registry.h"

#define STAGE_SIZE 65536       /* content staged before a write to the spill file */
#define FIRST_ALLOC 16384      /* first in-memory buffer; doubles up to the bound */
#define FBUF_SIZE 65536        /* spill file read per pread on a relay thread */
#define RBUF_SIZE 16384        /* replies read per recv */
#define PUMP_BUDGET (4u << 20) /* octets one connection sends before others get a turn */
#define BACKOFF_MS 200         /* no new connection attempt this soon after one failed */
#define QUIT_WAIT_MS 2000      /* for the 221 after QUIT */
#define MAX_EVENTS 64

struct rthread;

struct delivery_msg {
	struct delivery_msg *next;
	struct relay *r;
	struct rthread *t; /* set once queued: the thread it counts against */
	unsigned worker;
	uint8_t *mem; /* the whole content, or the stage in front of fd */
	size_t mem_len, mem_cap;
	int fd; /* unlinked spill file, or -1 */
	uint64_t size;
	bool failed;
	bool nospace; /* failed at the free-space floor: 452 4.3.1 */
	/* envelope, copied at submit */
	char *from;
	char **rcpt;
	unsigned nrcpt;
	bool body8, smtputf8;
	char peer[64];
	delivery_done_fn done;
	void *arg;
	unsigned tries;
	uint64_t queued_ms;
};

struct rconn {
	struct rthread *t;
	int fd;
	bool connecting; /* TCP (or unix) connect in progress */
	bool dead;       /* closed; freed after the event batch */
	bool out_armed;
	bool was_ready;
	unsigned used; /* transactions finished on it */
	struct delivery_msg *msg;
	uint64_t deadline; /* ms, 0: none */
	uint64_t idle_since;
	uint64_t fbuf_off;
	size_t fbuf_len;
	uint8_t fbuf[FBUF_SIZE];
	struct smtpc sc;
};

struct rthread {
	struct relay *r;
	unsigned idx;
	pthread_t tid;
	bool started;
	int epfd, evfd;
	pthread_mutex_t lock;
	struct delivery_msg *in_head, *in_tail; /* from the workers, under lock */
	bool stop;                              /* under lock */
	unsigned pending;                       /* atomic: submitted, not yet done */
	/* the thread's own */
	struct delivery_msg *wait_head, *wait_tail;
	unsigned nwait;
	struct rconn **conns;
	unsigned nconns;
	bool stopping;
	bool down; /* the last connection attempt failed (logged once) */
	uint64_t backoff_until;
};

struct relay {
	struct relay_config cfg;
	char host[256], socket_path[108], helo[256], tmp_dir[4096];
	char where[300];
	struct sockaddr_storage addr;
	socklen_t addrlen;
	int tmpfd;
	struct diskfloor *df; /* NULL: no free-space floor for spill files */
	unsigned nthreads;
	struct rthread *threads;
	uint64_t mem_used;     /* atomic: octets of content buffers, all messages */
	struct relay_stats st; /* atomics */
};

static void stat_add(uint64_t *f, uint64_t n)
{
	__atomic_fetch_add(f, n, __ATOMIC_RELAXED);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- messages ---- */

static void mem_account(struct relay *r, size_t old_cap, size_t new_cap)
{
	if (new_cap > old_cap)
		__atomic_fetch_add(&r->mem_used, new_cap - old_cap, __ATOMIC_RELAXED);
	else
		__atomic_fetch_sub(&r->mem_used, old_cap - new_cap, __ATOMIC_RELAXED);
}

static void msg_free(struct delivery_msg *m)
{
	if (m->fd >= 0)
		close(m->fd);
	mem_account(m->r, m->mem_cap, 0);
	free(m->mem);
	if (m->rcpt)
		for (unsigned i = 0; i < m->nrcpt; i++)
			free(m->rcpt[i]);
	free(m->rcpt);
	free(m->from);
	free(m);
}

/* Answer m and free it; any thread. */
static void complete(struct delivery_msg *m, const struct smtp_reply *rep)
{
	struct relay *r = m->r;
	if (rep->code >= 200 && rep->code < 300) {
		stat_add(&r->st.relayed, 1);
		stat_add(&r->st.bytes, m->size);
	} else if (rep->code >= 500) {
		stat_add(&r->st.perm_fail, 1);
	} else {
		stat_add(&r->st.temp_fail, 1);
	}
	if (log_enabled(LOG_DEBUG))
		log_msg(LOG_DEBUG, "relay: peer=%s size=%llu rcpts=%u result=\"%d %s %s\"", m->peer,
			(unsigned long long)m->size, m->nrcpt, rep->code, rep->enh, rep->text);
	if (m->t)
		__atomic_fetch_sub(&m->t->pending, 1, __ATOMIC_RELAXED);
	delivery_done_fn done = m->done;
	void *arg = m->arg;
	msg_free(m);
	done(arg, rep);
}

static int open_spill(struct relay *r)
{
	int fd = openat(r->tmpfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
		return fd;
	/* file systems without O_TMPFILE: a named file, unlinked at once */
	char path[4200];
	snprintf(path, sizeof(path), "%s/relay.XXXXXX", r->tmp_dir);
	fd = mkostemp(path, O_CLOEXEC);
	if (fd >= 0)
		unlink(path);
	return fd;
}

static bool write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

static void msg_fail(struct delivery_msg *m, const char *what, int err)
{
	if (!m->failed)
		log_msg(LOG_ERROR, "relay: peer=%s: %s: %s", m->peer[0] ? m->peer : "?", what,
			strerror(err));
	m->failed = true;
}

/* n octets are about to go to m's spill file: false (m failed, 452) when
 * that would take the file system below its floor. */
static bool take_space(struct delivery_msg *m, size_t n)
{
	if (diskfloor_take(m->r->df, n))
		return true;
	if (!m->failed)
		log_msg(LOG_WARN,
			"relay: peer=%s: the spill file would go below the free-space "
			"floor (spool_min_free): 452 4.3.1",
			m->peer[0] ? m->peer : "?");
	m->failed = true;
	m->nospace = true;
	return false;
}

/* From here on the content lives in a file and mem is its stage. */
static bool spill(struct delivery_msg *m)
{
	struct relay *r = m->r;
	if (!take_space(m, m->mem_len))
		return false;
	m->fd = open_spill(r);
	if (m->fd < 0) {
		msg_fail(m, "cannot create a temporary file", errno);
		return false;
	}
	stat_add(&r->st.spilled, 1);
	if (m->mem_len && !write_all(m->fd, m->mem, m->mem_len)) {
		msg_fail(m, "cannot write a temporary file", errno ? errno : EIO);
		return false;
	}
	m->mem_len = 0;
	if (m->mem_cap != STAGE_SIZE) {
		uint8_t *p = realloc(m->mem, STAGE_SIZE);
		if (!p) {
			msg_fail(m, "stage", ENOMEM);
			return false;
		}
		mem_account(r, m->mem_cap, STAGE_SIZE);
		m->mem = p;
		m->mem_cap = STAGE_SIZE;
	}
	return true;
}

/* More memory for an in-memory message, if both bounds allow it. */
static bool grow(struct delivery_msg *m, size_t need)
{
	struct relay *r = m->r;
	size_t cap = m->mem_cap ? m->mem_cap : FIRST_ALLOC;
	while (cap < need)
		cap *= 2;
	if (cap > r->cfg.memory_per_message)
		cap = (size_t)r->cfg.memory_per_message;
	uint64_t add = cap - m->mem_cap;
	uint64_t used = __atomic_add_fetch(&r->mem_used, add, __ATOMIC_RELAXED);
	if (used > r->cfg.memory_total) {
		__atomic_fetch_sub(&r->mem_used, add, __ATOMIC_RELAXED);
		return false;
	}
	uint8_t *p = realloc(m->mem, cap);
	if (!p) {
		__atomic_fetch_sub(&r->mem_used, add, __ATOMIC_RELAXED);
		return false;
	}
	m->mem = p;
	m->mem_cap = cap;
	return true;
}

static bool flush_stage(struct delivery_msg *m)
{
	if (m->mem_len && !take_space(m, m->mem_len))
		return false;
	if (m->mem_len && !write_all(m->fd, m->mem, m->mem_len)) {
		msg_fail(m, "cannot write a temporary file", errno ? errno : EIO);
		return false;
	}
	m->mem_len = 0;
	return true;
}

static struct delivery_msg *rl_open(void *be, unsigned worker)
{
	struct delivery_msg *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->r = be;
	m->fd = -1;
	m->worker = worker;
	return m;
}

static int rl_write(struct delivery_msg *m, const uint8_t *p, size_t n)
{
	struct relay *r = m->r;
	if (m->failed)
		return -1;
	if (m->fd < 0) {
		size_t need = m->mem_len + n;
		if (need <= r->cfg.memory_per_message && (need <= m->mem_cap || grow(m, need))) {
			memcpy(m->mem + m->mem_len, p, n);
			m->mem_len = need;
			m->size += n;
			return 0;
		}
		if (!spill(m))
			return m->nospace ? DELIVERY_ENOSPC : -1;
	}
	m->size += n;
	while (n > 0) {
		size_t room = m->mem_cap - m->mem_len;
		size_t take = n < room ? n : room;
		memcpy(m->mem + m->mem_len, p, take);
		m->mem_len += take;
		p += take;
		n -= take;
		if (m->mem_len == m->mem_cap && !flush_stage(m))
			return m->nospace ? DELIVERY_ENOSPC : -1;
	}
	return 0;
}

static void rl_abort(struct delivery_msg *m)
{
	stat_add(&m->r->st.aborted, 1);
	msg_free(m);
}

static char *dup_str(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = malloc(n);
	if (d)
		memcpy(d, s, n);
	return d;
}

static bool copy_envelope(struct delivery_msg *m, const struct smtp_envelope *env)
{
	m->from = dup_str(env->mail_from);
	m->rcpt = calloc(env->nrcpt ? env->nrcpt : 1, sizeof(*m->rcpt));
	if (!m->from || !m->rcpt)
		return false;
	m->nrcpt = env->nrcpt;
	for (unsigned i = 0; i < env->nrcpt; i++) {
		m->rcpt[i] = dup_str(env->rcpt[i] ? env->rcpt[i] : "");
		if (!m->rcpt[i])
			return false;
	}
	m->body8 = env->body == SMTP_BODY_8BITMIME;
	m->smtputf8 = env->smtputf8;
	return true;
}

static void wake(struct rthread *t)
{
	uint64_t one = 1;
	ssize_t w;
	do
		w = write(t->evfd, &one, sizeof(one));
	while (w < 0 && errno == EINTR);
}

static void rl_submit(struct delivery_msg *m, const struct smtp_envelope *env, const char *peer,
		      delivery_done_fn done, void *arg)
{
	struct relay *r = m->r;
	struct smtp_reply rep;
	m->done = done;
	m->arg = arg;
	snprintf(m->peer, sizeof(m->peer), "%s", peer);
	if (!m->failed && m->fd >= 0 && flush_stage(m)) {
		/* the file holds it all: the stage is not needed any more */
		mem_account(r, m->mem_cap, 0);
		free(m->mem);
		m->mem = NULL;
		m->mem_cap = 0;
	}
	if (!m->failed && !copy_envelope(m, env))
		msg_fail(m, "envelope", ENOMEM);
	if (m->failed) {
		if (m->nospace)
			smtp_reply_set(&rep, 452, "4.3.1",
				       "Insufficient system storage, try again later");
		else
			smtp_reply_set(&rep, 451, "4.3.0",
				       "Temporary local problem, try again later");
		complete(m, &rep);
		return;
	}
	m->queued_ms = now_ms();
	for (unsigned i = 0; i < r->nthreads; i++) {
		struct rthread *t = &r->threads[(m->worker + i) % r->nthreads];
		if (__atomic_add_fetch(&t->pending, 1, __ATOMIC_RELAXED) > r->cfg.max_queue) {
			__atomic_fetch_sub(&t->pending, 1, __ATOMIC_RELAXED);
			continue;
		}
		m->t = t;
		pthread_mutex_lock(&t->lock);
		bool was_empty = t->in_head == NULL;
		if (t->in_tail)
			t->in_tail->next = m;
		else
			t->in_head = m;
		t->in_tail = m;
		pthread_mutex_unlock(&t->lock);
		/* the thread takes the whole list at each wake-up */
		if (was_empty)
			wake(t);
		return;
	}
	stat_add(&r->st.queue_full, 1);
	smtp_reply_set(&rep, 451, "4.3.0",
		       "Too many messages waiting for the backend, try again later");
	complete(m, &rep);
}

/* ---- relay threads: connections ---- */

static void wait_push(struct rthread *t, struct delivery_msg *m, bool front)
{
	m->next = NULL;
	if (front) {
		m->next = t->wait_head;
		t->wait_head = m;
		if (!t->wait_tail)
			t->wait_tail = m;
	} else {
		if (t->wait_tail)
			t->wait_tail->next = m;
		else
			t->wait_head = m;
		t->wait_tail = m;
	}
	t->nwait++;
}

static struct delivery_msg *wait_pop(struct rthread *t)
{
	struct delivery_msg *m = t->wait_head;
	if (!m)
		return NULL;
	t->wait_head = m->next;
	if (!t->wait_head)
		t->wait_tail = NULL;
	m->next = NULL;
	t->nwait--;
	return m;
}

static void fail_waiting(struct rthread *t, const struct smtp_reply *rep)
{
	struct delivery_msg *m;
	while ((m = wait_pop(t)) != NULL)
		complete(m, rep);
}

static void set_events(struct rconn *c, bool out)
{
	struct epoll_event ev = { .events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c };
	if (epoll_ctl(c->t->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->out_armed = out;
}

static void conn_close(struct rconn *c)
{
	if (c->dead)
		return;
	c->dead = true;
	epoll_ctl(c->t->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
}

static unsigned live_conns(const struct rthread *t)
{
	unsigned n = 0;
	for (unsigned i = 0; i < t->nconns; i++)
		n += !t->conns[i]->dead;
	return n;
}

/* A connection never became usable.  Messages waiting are failed when no
 * other connection could take them; otherwise they wait for those. */
static void setup_failed(struct rthread *t, const struct smtpc_outcome *why, uint64_t now)
{
	struct smtp_reply rep;
	smtpc_client_reply(why, &rep);
	if (!t->down)
		log_msg(LOG_WARN, "relay: backend %s not usable: %d %s %s", t->r->where, rep.code,
			rep.enh, rep.text);
	t->down = true;
	t->backoff_until = now + BACKOFF_MS;
	if (live_conns(t) == 0)
		fail_waiting(t, &rep);
}

static void connect_failed(struct rconn *c, int err, uint64_t now)
{
	struct smtpc_outcome o;
	memset(&o, 0, sizeof(o));
	o.status = 4;
	o.cause = SMTPC_CAUSE_CONNECT;
	o.stage = "connect";
	snprintf(o.reply.text, sizeof(o.reply.text), "%s", strerror(err));
	conn_close(c);
	setup_failed(c->t, &o, now);
}

static void touch(struct rconn *c, uint64_t now)
{
	const struct relay_config *cfg = &c->t->r->cfg;
	if (c->connecting)
		return; /* the connect deadline stands */
	switch (smtpc_state(&c->sc)) {
	case SMTPC_GREETING:
		return; /* so does it for the greeting */
	case SMTPC_READY:
		c->deadline = c->msg ? now + cfg->command_timeout_ms
				     : c->idle_since + cfg->idle_timeout_ms;
		return;
	case SMTPC_QUITTING:
		if (!c->deadline || c->deadline > now + QUIT_WAIT_MS)
			c->deadline = now + QUIT_WAIT_MS;
		return;
	case SMTPC_CLOSED:
		c->deadline = 0;
		return;
	case SMTPC_EHLO:
	case SMTPC_BUSY:
		break;
	}
	c->deadline = now + (smtpc_waiting(&c->sc) == SMTPC_WAIT_CONTENT ? cfg->data_timeout_ms
									 : cfg->command_timeout_ms);
}

/* Content for smtpc from the message, at off: memory, or the spill file
 * through a read buffer.  0 with *err on a read error. */
static size_t content_at(struct rconn *c, uint64_t off, const uint8_t **p, bool *err)
{
	struct delivery_msg *m = c->msg;
	*err = false;
	if (m->fd < 0) {
		*p = m->mem + off;
		return off < m->mem_len ? m->mem_len - (size_t)off : 0;
	}
	if (off < c->fbuf_off || off >= c->fbuf_off + c->fbuf_len) {
		ssize_t n;
		do
			n = pread(m->fd, c->fbuf, sizeof(c->fbuf), (off_t)off);
		while (n < 0 && errno == EINTR);
		if (n <= 0) {
			log_msg(LOG_ERROR, "relay: reading a temporary file: %s",
				n < 0 ? strerror(errno) : "short file");
			*err = true;
			return 0;
		}
		c->fbuf_off = off;
		c->fbuf_len = (size_t)n;
	}
	*p = c->fbuf + (off - c->fbuf_off);
	return c->fbuf_len - (size_t)(off - c->fbuf_off);
}

/* Content into smtpc and smtpc's output into the socket, while both go. */
static void pump(struct rconn *c)
{
	size_t sent = 0;
	for (;;) {
		uint64_t off;
		size_t want;
		while (c->msg && (want = smtpc_content_want(&c->sc, &off)) > 0) {
			const uint8_t *p;
			bool err;
			size_t have = content_at(c, off, &p, &err);
			if (err) {
				smtpc_broken(&c->sc, SMTPC_CAUSE_ERROR);
				return;
			}
			if (smtpc_content(&c->sc, p, have < want ? have : want) == 0)
				break;
		}
		size_t len;
		const uint8_t *out = smtpc_output(&c->sc, &len);
		if (len == 0)
			break;
		if (sent >= PUMP_BUDGET) {
			if (!c->out_armed)
				set_events(c, true); /* level-triggered: back soon */
			return;
		}
		ssize_t w = send(c->fd, out, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0) {
			smtpc_consume(&c->sc, (size_t)w);
			sent += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (!c->out_armed)
				set_events(c, true);
			return;
		}
		smtpc_broken(&c->sc, SMTPC_CAUSE_LOST);
		return;
	}
	if (c->out_armed)
		set_events(c, false);
}

static void finish(struct rconn *c, const struct smtpc_outcome *o)
{
	struct rthread *t = c->t;
	struct delivery_msg *m = c->msg;
	c->msg = NULL;
	bool reused = c->used > 0;
	c->used++;
	if (o->status != 2 && o->retryable && reused && m->tries == 0) {
		m->tries++;
		m->queued_ms = now_ms(); /* a fresh wait for the new connection */
		stat_add(&t->r->st.retried, 1);
		log_msg(LOG_DEBUG, "relay: connection to %s went stale; trying again", t->r->where);
		wait_push(t, m, true);
		return;
	}
	struct smtp_reply rep;
	smtpc_client_reply(o, &rep);
	complete(m, &rep);
}

static void assign(struct rconn *c, struct delivery_msg *m)
{
	struct smtpc_txn txn = {
		.mail_from = m->from,
		.rcpt = (const char *const *)m->rcpt,
		.nrcpt = m->nrcpt,
		.size = m->size,
		.body8 = m->body8,
		.smtputf8 = m->smtputf8,
	};
	c->msg = m;
	c->fbuf_off = 0;
	c->fbuf_len = 0;
	/* refused at once (too big for the backend, ...): the outcome is
	 * ready and settle() answers it */
	if (smtpc_begin(&c->sc, &txn))
		pump(c);
}

/* Act on what the connection's state machine decided, and give a ready
 * connection the next message waiting (a loop: messages refused at once
 * leave the connection ready for the next). */
static void settle(struct rconn *c, uint64_t now)
{
	struct rthread *t = c->t;
	struct smtpc_outcome o;
	for (;;) {
		if (c->msg && smtpc_outcome(&c->sc, &o))
			finish(c, &o);
		enum smtpc_state st = smtpc_state(&c->sc);
		if (st == SMTPC_CLOSED) {
			if (c->msg) {
				/* cannot happen: a broken transaction has its outcome */
				memset(&o, 0, sizeof(o));
				o.status = 4;
				o.cause = SMTPC_CAUSE_LOST;
				finish(c, &o);
			}
			conn_close(c);
			const struct smtpc_outcome *f = smtpc_failure(&c->sc);
			if (!c->was_ready)
				setup_failed(t, f, now);
			else if (f->cause != SMTPC_CAUSE_OK)
				log_msg(LOG_DEBUG, "relay: connection to %s closed at %s",
					t->r->where, f->stage ? f->stage : "?");
			return;
		}
		if (st != SMTPC_READY || c->msg)
			break;
		if (!c->was_ready) {
			c->was_ready = true;
			if (t->down)
				log_msg(LOG_INFO, "relay: backend %s is usable again", t->r->where);
			t->down = false;
		}
		struct delivery_msg *m = wait_pop(t);
		if (m) {
			assign(c, m);
			continue;
		}
		c->idle_since = now;
		if (t->stopping) {
			smtpc_quit(&c->sc);
			pump(c);
			continue;
		}
		break;
	}
	touch(c, now);
}

static void conn_open(struct rthread *t, uint64_t now)
{
	struct relay *r = t->r;
	struct rconn *c = malloc(sizeof(*c));
	if (!c)
		return;
	memset(c, 0, offsetof(struct rconn, fbuf));
	c->t = t;
	smtpc_init(&c->sc, r->helo);
	c->fd = socket(r->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		int e = errno;
		log_msg(LOG_ERROR, "relay: socket: %s", strerror(e));
		free(c);
		t->backoff_until = now + BACKOFF_MS;
		return;
	}
	if (r->addr.ss_family != AF_UNIX) {
		int one = 1;
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	t->conns[t->nconns++] = c;
	stat_add(&r->st.connections, 1);
	c->deadline = now + r->cfg.connect_timeout_ms;
	int rc = connect(c->fd, (const struct sockaddr *)&r->addr, r->addrlen);
	if (rc != 0 && errno != EINPROGRESS) {
		int e = errno;
		c->dead = true; /* not in epoll yet */
		close(c->fd);
		c->fd = -1;
		struct smtpc_outcome o;
		memset(&o, 0, sizeof(o));
		o.status = 4;
		o.cause = SMTPC_CAUSE_CONNECT;
		o.stage = "connect";
		snprintf(o.reply.text, sizeof(o.reply.text), "%s", strerror(e));
		setup_failed(t, &o, now);
		return;
	}
	c->connecting = rc != 0;
	struct epoll_event ev = { .events = EPOLLIN | (c->connecting ? EPOLLOUT : 0),
				  .data.ptr = c };
	c->out_armed = c->connecting;
	if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
		int e = errno;
		c->dead = true;
		close(c->fd);
		c->fd = -1;
		log_msg(LOG_ERROR, "relay: epoll_ctl: %s", strerror(e));
		t->backoff_until = now + BACKOFF_MS;
	}
}

static void conn_event(struct rconn *c, uint32_t events, uint64_t now)
{
	if (c->dead)
		return;
	if (c->connecting) {
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
			err = errno;
		if (err) {
			connect_failed(c, err, now);
			return;
		}
		c->connecting = false;
		set_events(c, false);
		return; /* the greeting comes as EPOLLIN */
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		uint8_t buf[RBUF_SIZE];
		/* bounded, so a chatty backend cannot starve the other
		 * connections; epoll is level-triggered and comes back */
		for (unsigned reads = 0; reads < 16; reads++) {
			ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (n > 0) {
				smtpc_feed(&c->sc, buf, (size_t)n);
				if (smtpc_state(&c->sc) == SMTPC_CLOSED)
					break;
				continue;
			}
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			smtpc_broken(&c->sc, SMTPC_CAUSE_LOST);
			break;
		}
	}
	if (smtpc_state(&c->sc) != SMTPC_CLOSED)
		pump(c);
	settle(c, now);
}

/* ---- relay threads: the loop ---- */

static void take_incoming(struct rthread *t)
{
	uint64_t v;
	while (read(t->evfd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&t->lock);
	struct delivery_msg *m = t->in_head;
	t->in_head = t->in_tail = NULL;
	if (t->stop)
		t->stopping = true;
	pthread_mutex_unlock(&t->lock);
	while (m) {
		struct delivery_msg *next = m->next;
		wait_push(t, m, false);
		m = next;
	}
}

static void reap(struct rthread *t)
{
	unsigned j = 0;
	for (unsigned i = 0; i < t->nconns; i++) {
		if (t->conns[i]->dead)
			free(t->conns[i]);
		else
			t->conns[j++] = t->conns[i];
	}
	t->nconns = j;
}

static void dispatch(struct rthread *t, uint64_t now)
{
	for (unsigned i = 0; i < t->nconns && t->nwait; i++) {
		struct rconn *c = t->conns[i];
		if (!c->dead && !c->msg && smtpc_state(&c->sc) == SMTPC_READY)
			settle(c, now);
	}
	unsigned setting_up = 0;
	for (unsigned i = 0; i < t->nconns; i++) {
		struct rconn *c = t->conns[i];
		enum smtpc_state s = smtpc_state(&c->sc);
		if (!c->dead && (c->connecting || s == SMTPC_GREETING || s == SMTPC_EHLO))
			setting_up++;
	}
	while (t->nwait > setting_up && t->nconns < t->r->cfg.max_connections &&
	       now >= t->backoff_until) {
		unsigned before = t->nconns;
		conn_open(t, now);
		if (t->nconns == before || t->conns[t->nconns - 1]->dead)
			break;
		setting_up++;
	}
}

static void check_timers(struct rthread *t, uint64_t now)
{
	const struct relay_config *cfg = &t->r->cfg;
	for (unsigned i = 0; i < t->nconns; i++) {
		struct rconn *c = t->conns[i];
		if (c->dead || !c->deadline || now < c->deadline)
			continue;
		if (c->connecting) {
			connect_failed(c, ETIMEDOUT, now);
			continue;
		}
		if (smtpc_state(&c->sc) == SMTPC_READY && !c->msg) {
			/* idle long enough: the pool shrinks */
			smtpc_quit(&c->sc);
			pump(c);
			settle(c, now);
			continue;
		}
		if (smtpc_state(&c->sc) == SMTPC_QUITTING) {
			conn_close(c);
			continue;
		}
		smtpc_broken(&c->sc, SMTPC_CAUSE_TIMEOUT);
		settle(c, now);
	}
	while (t->wait_head && now >= t->wait_head->queued_ms + cfg->data_timeout_ms) {
		struct smtp_reply rep;
		smtp_reply_set(&rep, 451, "4.4.5",
			       "No connection to the backend became free in time, try again later");
		complete(wait_pop(t), &rep);
	}
}

static int next_timeout(const struct rthread *t, uint64_t now)
{
	uint64_t next = UINT64_MAX;
	for (unsigned i = 0; i < t->nconns; i++) {
		const struct rconn *c = t->conns[i];
		if (!c->dead && c->deadline && c->deadline < next)
			next = c->deadline;
	}
	/* retries go to the front, so the head is the oldest */
	if (t->wait_head) {
		uint64_t w = t->wait_head->queued_ms + t->r->cfg.data_timeout_ms;
		if (w < next)
			next = w;
		if (t->backoff_until > now && t->backoff_until < next)
			next = t->backoff_until;
	}
	if (next == UINT64_MAX)
		return -1;
	if (next <= now)
		return 0;
	return next - now > 60000 ? 60000 : (int)(next - now);
}

static bool busy(const struct rthread *t)
{
	if (t->nwait)
		return true;
	for (unsigned i = 0; i < t->nconns; i++)
		if (!t->conns[i]->dead && t->conns[i]->msg)
			return true;
	return false;
}

static void *thread_main(void *arg)
{
	struct rthread *t = arg;
	struct epoll_event ev[MAX_EVENTS];
	for (;;) {
		uint64_t now = now_ms();
		int n = epoll_wait(t->epfd, ev, MAX_EVENTS, next_timeout(t, now));
		now = now_ms();
		for (int i = 0; i < n; i++) {
			if (ev[i].data.ptr == t)
				take_incoming(t);
			else
				conn_event(ev[i].data.ptr, ev[i].events, now);
		}
		check_timers(t, now);
		dispatch(t, now);
		if (t->stopping && !busy(t)) {
			pthread_mutex_lock(&t->lock);
			bool more = t->in_head != NULL;
			pthread_mutex_unlock(&t->lock);
			if (!more) {
				for (unsigned i = 0; i < t->nconns; i++) {
					struct rconn *c = t->conns[i];
					if (c->dead)
						continue;
					if (smtpc_state(&c->sc) == SMTPC_READY) {
						smtpc_quit(&c->sc);
						pump(c);
						settle(c, now);
					} else if (smtpc_state(&c->sc) != SMTPC_QUITTING) {
						conn_close(c);
					}
				}
			}
		}
		reap(t);
		if (t->stopping && !busy(t) && t->nconns == 0) {
			pthread_mutex_lock(&t->lock);
			bool more = t->in_head != NULL;
			pthread_mutex_unlock(&t->lock);
			if (!more)
				return NULL;
		}
	}
}

/* ---- set-up ---- */

static int resolve(struct relay *r, char *err, size_t errlen)
{
	if (r->socket_path[0]) {
		struct sockaddr_un *sun = (struct sockaddr_un *)&r->addr;
		if (strlen(r->socket_path) >= sizeof(sun->sun_path)) {
			snprintf(err, errlen, "relay_socket: path too long");
			return -1;
		}
		memset(&r->addr, 0, sizeof(r->addr));
		sun->sun_family = AF_UNIX;
		memcpy(sun->sun_path, r->socket_path, strlen(r->socket_path) + 1);
		r->addrlen = (socklen_t)sizeof(*sun);
		snprintf(r->where, sizeof(r->where), "unix:%s", r->socket_path);
		return 0;
	}
	char port[16];
	snprintf(port, sizeof(port), "%u", r->cfg.port);
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	int e = getaddrinfo(r->host, port, &hints, &res);
	if (e != 0 || !res) {
		snprintf(err, errlen, "relay_host: cannot resolve '%s': %s", r->host,
			 gai_strerror(e));
		return -1;
	}
	memcpy(&r->addr, res->ai_addr, res->ai_addrlen);
	r->addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	char addr[INET6_ADDRSTRLEN] = "?";
	if (r->addr.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&r->addr)->sin_addr, addr, sizeof(addr));
	else if (r->addr.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&r->addr)->sin6_addr, addr,
			  sizeof(addr));
	snprintf(r->where, sizeof(r->where), strchr(addr, ':') ? "[%s]:%u" : "%s:%u", addr,
		 r->cfg.port);
	return 0;
}

static int make_dirs(const char *dir)
{
	char path[4096];
	if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (char *p = path + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char was = *p;
		*p = '\0';
		if (mkdir(path, 0750) != 0 && errno != EEXIST)
			return -1;
		if (!was)
			return 0;
		*p = '/';
	}
}

struct relay *relay_open(const struct relay_config *cfg, char *err, size_t errlen)
{
	if (cfg->threads == 0 || cfg->max_connections == 0 || cfg->max_queue == 0) {
		snprintf(err, errlen, "relay: bad thread, connection or queue counts");
		return NULL;
	}
	struct relay *r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->cfg = *cfg;
	r->tmpfd = -1;
	snprintf(r->host, sizeof(r->host), "%s", cfg->host ? cfg->host : "");
	snprintf(r->socket_path, sizeof(r->socket_path), "%s",
		 cfg->socket_path ? cfg->socket_path : "");
	snprintf(r->helo, sizeof(r->helo), "%s", cfg->helo_name ? cfg->helo_name : "localhost");
	snprintf(r->tmp_dir, sizeof(r->tmp_dir), "%s", cfg->tmp_dir ? cfg->tmp_dir : "/tmp");
	r->cfg.host = r->host;
	r->cfg.socket_path = r->socket_path;
	r->cfg.helo_name = r->helo;
	r->cfg.tmp_dir = r->tmp_dir;
	if (resolve(r, err, errlen))
		goto fail;
	if (make_dirs(r->tmp_dir) != 0 ||
	    (r->tmpfd = open(r->tmp_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		snprintf(err, errlen, "relay: cannot use %s for temporary files: %s", r->tmp_dir,
			 strerror(errno));
		goto fail;
	}
	r->threads = calloc(cfg->threads, sizeof(*r->threads));
	if (!r->threads) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (; r->nthreads < cfg->threads; r->nthreads++) {
		struct rthread *t = &r->threads[r->nthreads];
		t->r = r;
		t->idx = r->nthreads;
		t->epfd = epoll_create1(EPOLL_CLOEXEC);
		t->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		t->conns = calloc(cfg->max_connections, sizeof(*t->conns));
		pthread_mutex_init(&t->lock, NULL);
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = t };
		if (t->epfd < 0 || t->evfd < 0 || !t->conns ||
		    epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->evfd, &ev) != 0) {
			snprintf(err, errlen, "relay: cannot set up a thread: %s", strerror(errno));
			r->nthreads++;
			goto fail;
		}
		int e = pthread_create(&t->tid, NULL, thread_main, t);
		if (e) {
			snprintf(err, errlen, "relay: cannot start a thread: %s", strerror(e));
			r->nthreads++;
			goto fail;
		}
		t->started = true;
		pthread_setname_np(t->tid, "relay");
	}
	return r;
fail:
	relay_close(r);
	return NULL;
}

/* Blocking I/O for the probe, every wait bounded. */
static bool probe_wait(int fd, short what, unsigned ms)
{
	struct pollfd p = { .fd = fd, .events = what };
	int n;
	do
		n = poll(&p, 1, (int)ms);
	while (n < 0 && errno == EINTR);
	return n > 0;
}

static bool probe_flush(int fd, struct smtpc *sc, unsigned ms)
{
	size_t len;
	const uint8_t *p;
	while ((p = smtpc_output(sc, &len)), len > 0) {
		ssize_t w = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0) {
			smtpc_consume(sc, (size_t)w);
			continue;
		}
		if (w < 0 && (errno == EINTR || ((errno == EAGAIN || errno == EWOULDBLOCK) &&
						 probe_wait(fd, POLLOUT, ms))))
			continue;
		return false;
	}
	return true;
}

int relay_probe(struct relay *r, unsigned *ext, uint64_t *size_max, char *err, size_t errlen)
{
	*ext = 0;
	*size_max = 0;
	int fd = socket(r->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	int rc = connect(fd, (const struct sockaddr *)&r->addr, r->addrlen);
	if (rc != 0 && errno == EINPROGRESS) {
		int e = 0;
		socklen_t el = sizeof(e);
		if (!probe_wait(fd, POLLOUT, r->cfg.connect_timeout_ms))
			e = ETIMEDOUT;
		else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0)
			e = errno;
		rc = e ? -1 : 0;
		errno = e;
	}
	if (rc != 0) {
		snprintf(err, errlen, "connect to %s: %s", r->where, strerror(errno));
		close(fd);
		return -1;
	}
	struct smtpc *sc = malloc(sizeof(*sc));
	if (!sc) {
		close(fd);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	smtpc_init(sc, r->helo);
	bool ok = false;
	uint64_t deadline = now_ms() + r->cfg.connect_timeout_ms + r->cfg.command_timeout_ms;
	while (smtpc_state(sc) != SMTPC_READY && smtpc_state(sc) != SMTPC_CLOSED) {
		uint64_t now = now_ms();
		if (!probe_flush(fd, sc, r->cfg.command_timeout_ms) || now >= deadline ||
		    !probe_wait(fd, POLLIN, (unsigned)(deadline - now))) {
			smtpc_broken(sc, SMTPC_CAUSE_TIMEOUT);
			break;
		}
		uint8_t buf[RBUF_SIZE];
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0)
			smtpc_feed(sc, buf, (size_t)n);
		else if (n == 0 || (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK))
			smtpc_broken(sc, SMTPC_CAUSE_LOST);
	}
	if (smtpc_state(sc) == SMTPC_READY) {
		ok = true;
		*ext = smtpc_extensions(sc, size_max);
		smtpc_quit(sc);
		if (probe_flush(fd, sc, 1000) && probe_wait(fd, POLLIN, 1000)) {
			uint8_t buf[512];
			ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
			(void)n; /* the 221, if it comes; nothing depends on it */
		}
	} else {
		struct smtp_reply rep;
		smtpc_client_reply(smtpc_failure(sc), &rep);
		snprintf(err, errlen, "%s: %s", r->where, rep.text);
	}
	free(sc);
	close(fd);
	return ok ? 0 : -1;
}

/* A message that fits in memory needs no disk; a larger declared one needs
 * room for its spill file above the floor. */
static bool rl_admit(void *be, uint64_t size)
{
	struct relay *r = be;
	return size <= r->cfg.memory_per_message || diskfloor_admit(r->df, size);
}

int relay_set_min_free(struct relay *r, uint64_t floor, char *err, size_t errlen)
{
	char label[4200];
	if (!floor)
		return 0;
	snprintf(label, sizeof(label), "relay spill files in %s", r->tmp_dir);
	r->df = diskfloor_new(r->tmpfd, floor, label, err, errlen);
	return r->df ? 0 : -1;
}

int relay_give(struct relay *r, uid_t uid, gid_t gid, char *err, size_t errlen)
{
	if (fchown(r->tmpfd, uid, gid) != 0) {
		snprintf(err, errlen, "relay: cannot give %s to uid %u: %s", r->tmp_dir,
			 (unsigned)uid, strerror(errno));
		return -1;
	}
	return 0;
}

void relay_backend(struct relay *r, struct delivery_backend *out)
{
	out->name = "smtp";
	out->be = r;
	out->admit = rl_admit;
	out->open = rl_open;
	out->write = rl_write;
	out->submit = rl_submit;
	out->abort = rl_abort;
}

void relay_stop(struct relay *r)
{
	for (unsigned i = 0; i < r->nthreads; i++) {
		struct rthread *t = &r->threads[i];
		if (!t->started)
			continue;
		pthread_mutex_lock(&t->lock);
		t->stop = true;
		pthread_mutex_unlock(&t->lock);
		wake(t);
	}
	for (unsigned i = 0; i < r->nthreads; i++) {
		struct rthread *t = &r->threads[i];
		if (t->started)
			pthread_join(t->tid, NULL);
		t->started = false;
	}
}

void relay_close(struct relay *r)
{
	if (!r)
		return;
	relay_stop(r);
	for (unsigned i = 0; i < r->nthreads; i++) {
		struct rthread *t = &r->threads[i];
		for (unsigned j = 0; j < t->nconns; j++) {
			if (!t->conns[j]->dead)
				close(t->conns[j]->fd);
			free(t->conns[j]);
		}
		free(t->conns);
		if (t->epfd >= 0)
			close(t->epfd);
		if (t->evfd >= 0)
			close(t->evfd);
		pthread_mutex_destroy(&t->lock);
	}
	free(r->threads);
	diskfloor_free(r->df);
	if (r->tmpfd >= 0)
		close(r->tmpfd);
	free(r);
}

void relay_stats(const struct relay *r, struct relay_stats *out)
{
#define LOAD(f) out->f = __atomic_load_n(&r->st.f, __ATOMIC_RELAXED)
	LOAD(relayed);
	LOAD(temp_fail);
	LOAD(perm_fail);
	LOAD(queue_full);
	LOAD(aborted);
	LOAD(spilled);
	LOAD(retried);
	LOAD(connections);
	LOAD(bytes);
#undef LOAD
}

/* ---- exports (gateway/observe/registry.h) ---- */

static bool export_read(const void *arg, unsigned i, void *snap)
{
	(void)i;
	relay_stats(arg, snap);
	return true;
}

#define RS(f) offsetof(struct relay_stats, f)

static const struct obs_row relay_rows[] = {
	{ .name = "tes_deliveries_total",
	  .help = "Delivery outcomes by backend",
	  .key = "",
	  .off = RS(relayed),
	  .l1 = "backend",
	  .v1 = "smtp",
	  .l2 = "outcome",
	  .n = 5,
	  .names = (const char *const[]){ "relayed", "temp_fail", "perm_fail", "queue_full",
					  "aborted" },
	  .stride = sizeof(uint64_t) },
	{ .name = "tes_delivered_bytes_total",
	  .help = "Message content octets delivered by backend",
	  .key = "bytes",
	  .off = RS(bytes),
	  .l1 = "backend",
	  .v1 = "smtp" },
	{ .name = "tes_relay_connections_total",
	  .help = "Connections opened to the backend MTA",
	  .key = "connections",
	  .off = RS(connections) },
	{ .name = "tes_relay_retries_total",
	  .help = "Messages tried again after a stale backend connection",
	  .key = "retried",
	  .off = RS(retried) },
	{ .key = "spilled", .off = RS(spilled) },
};

#undef RS

int relay_export(const struct relay *rl, struct obs_registry *r)
{
	struct obs_group g = {
		.name = "relay",
		.rows = relay_rows,
		.nrows = sizeof(relay_rows) / sizeof(relay_rows[0]),
		.size = sizeof(struct relay_stats),
		.read = export_read,
		.arg = rl,
	};

	return obs_add(r, &g);
}
