/* SPDX-License-Identifier: BSD-3-Clause */
#include "gateway/delivery/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "gateway/delivery/diskfloor.h"
#include "gateway/delivery/opool.h"
#include "gateway/observe/log.h"
#include "gateway/observe/registry.h"

/* Content is gathered in blocks of this size.  A message that fits in one
 * costs the worker no system call at all (the delivery thread creates its
 * file); a larger one hands each full block to the delivery threads, which
 * write it at its offset while the worker goes on. */
#define BLOCK_SIZE 65536
#define BATCH_MAX 64
/* Delivery threads of a polling spool (the DPDK path, whose workers may
 * not make the system call a wake-up needs) look for work this often. */
#define POLL_NS 50000
/* Each worker's pools (gateway/delivery/opool.h): what a worker allocates for a
 * message and a delivery thread frees goes back to that worker, so no
 * allocator lock is shared between them.  Idle objects kept per worker,
 * and how many it starts with. */
#define POOL_BLOCKS_KEEP 64
#define POOL_BLOCKS_PREFILL 16
#define POOL_MSGS_KEEP 4096
#define POOL_MSGS_PREFILL 64
/* Envelope text up to this size comes from a pool too (about 25
 * recipients); a longer one is malloc'd. */
#define ENV_POOLED 8192
#define POOL_ENVS_KEEP 1024
#define POOL_ENVS_PREFILL 32
#define NO_POOL 0xffffu

enum job_kind { JOB_BLOCK, JOB_SUBMIT, JOB_ABORT, JOB_WRITTEN };

/* Workers push jobs on one lock-free stack; a delivery thread takes the
 * whole stack at once and restores arrival order. */
struct job {
	struct job *next;
	enum job_kind kind;
};

struct block {
	struct job j;
	struct delivery_msg *m;
	unsigned pool; /* the worker whose pool it returns to, or NO_POOL */
	uint64_t off;
	size_t len;
	uint8_t data[BLOCK_SIZE];
};

struct delivery_msg {
	struct job j; /* the message's one submit or abort */
	struct spool *sp;
	char id[64];
	/* Owned by delivery threads: blocks of one message may be written by
	 * two threads at once, so the file is created under fdlock and every
	 * block goes to its own offset. */
	pthread_mutex_t fdlock;
	int fd;              /* tmp/<id>.eml, -1 until a block is written */
	atomic_bool failed;  /* set by whichever side fails first */
	bool nospace;        /* failed at the free-space floor: 452 4.3.1, not 451 */
	atomic_uint pending; /* blocks handed over and not yet written */
	bool env_in_new, eml_in_new;
	uint64_t size;
	struct block *cur; /* the block the worker fills; NULL before content */
	char *env;
	size_t envlen;
	unsigned pool; /* the worker whose pools m, its blocks and env return to */
	bool env_pooled;
	delivery_done_fn done;
	void *arg;
};

struct spool {
	char dir[4096];
	int dirfd, tmpfd, newfd, lockfd;
	int pid;
	bool polling;
	unsigned nthreads;
	pthread_t *threads;
	struct job *_Atomic jobs;
	atomic_uint sleepers;
	atomic_bool stop;
	pthread_mutex_t lock; /* only for sleeping and waking */
	pthread_cond_t cond;
	_Atomic uint64_t inflight; /* block bytes handed over, not yet written */
	uint64_t inflight_max;
	struct diskfloor *df;                /* NULL: no free-space floor */
	uint64_t counter[SPOOL_MAX_WORKERS]; /* each touched by its worker only */
	unsigned npools;
	struct opool blocks[SPOOL_MAX_WORKERS], msgs[SPOOL_MAX_WORKERS], envs[SPOOL_MAX_WORKERS];
	struct spool_stats st; /* atomics */
};

static void stat_add(uint64_t *f, uint64_t n)
{
	__atomic_fetch_add(f, n, __ATOMIC_RELAXED);
}

static bool pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
	while (n > 0) {
		ssize_t r = pwrite(fd, p, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return true;
}

static void name_of(char *buf, size_t len, const char *id, const char *ext)
{
	snprintf(buf, len, "%s.%s", id, ext);
}

static int create_tmp(struct spool *sp, const char *id, const char *ext)
{
	char name[80];
	name_of(name, sizeof(name), id, ext);
	int fd;
	do
		fd = openat(sp->tmpfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	while (fd < 0 && errno == EINTR);
	return fd;
}

static void unlink_in(int dirfd, const char *id, const char *ext)
{
	char name[80];
	name_of(name, sizeof(name), id, ext);
	unlinkat(dirfd, name, 0);
}

/* Give up on m's files, wherever they are, so nothing half-visible stays.
 * Delivery threads only, once no block of m is pending. */
static void discard_files(struct delivery_msg *m)
{
	struct spool *sp = m->sp;
	if (m->fd >= 0) {
		close(m->fd);
		m->fd = -1;
	}
	unlink_in(sp->tmpfd, m->id, "eml");
	unlink_in(sp->tmpfd, m->id, "env");
	if (m->eml_in_new)
		unlink_in(sp->newfd, m->id, "eml");
	if (m->env_in_new)
		unlink_in(sp->newfd, m->id, "env");
	m->eml_in_new = m->env_in_new = false;
}

/* Delivery threads: the first failure is logged; the files go once every
 * block is accounted for (finish_msg). */
static void fail(struct delivery_msg *m, const char *what, int err)
{
	if (!atomic_exchange(&m->failed, true))
		log_msg(LOG_ERROR, "spool: %s: %s: %s", m->id, what, strerror(err));
}

/* Delivery threads: content at its offset, the file created on first use. */
static void write_block(struct delivery_msg *m, const uint8_t *p, size_t n, uint64_t off)
{
	if (atomic_load(&m->failed))
		return;
	pthread_mutex_lock(&m->fdlock);
	if (m->fd < 0) {
		m->fd = create_tmp(m->sp, m->id, "eml");
		if (m->fd < 0) {
			pthread_mutex_unlock(&m->fdlock);
			fail(m, "create", errno);
			return;
		}
	}
	int fd = m->fd;
	pthread_mutex_unlock(&m->fdlock);
	if (n && !pwrite_all(fd, p, n, off))
		fail(m, "write", errno ? errno : EIO);
}

/* ---- worker side: no system calls, no locks ---- */

static void push_job(struct spool *sp, struct job *j)
{
	struct job *head = atomic_load_explicit(&sp->jobs, memory_order_relaxed);
	do
		j->next = head;
	while (!atomic_compare_exchange_weak_explicit(&sp->jobs, &head, j, memory_order_seq_cst,
						      memory_order_relaxed));
	/* A sleeping thread is woken (kernel path only: the polling spool's
	 * threads look on their own).  seq_cst on both sides: either the
	 * sleeper sees this job or this sees the sleeper. */
	if (!sp->polling && atomic_load(&sp->sleepers)) {
		pthread_mutex_lock(&sp->lock);
		pthread_cond_signal(&sp->cond);
		pthread_mutex_unlock(&sp->lock);
	}
}

/* An object from worker pool's pool in pools, or malloc'd when it has none
 * (NO_POOL); give returns it the same way (obj may be NULL). */
static void *take(struct opool *pools, unsigned pool, size_t size)
{
	return pool != NO_POOL ? opool_get(&pools[pool]) : malloc(size);
}

static void give(struct opool *pools, unsigned pool, void *obj)
{
	if (pool != NO_POOL)
		opool_put(&pools[pool], obj);
	else
		free(obj);
}

static struct delivery_msg *sp_open(void *be, unsigned worker)
{
	struct spool *sp = be;
	unsigned pool = worker < sp->npools ? worker : NO_POOL;
	struct delivery_msg *m = take(sp->msgs, pool, sizeof(*m));
	if (!m)
		return NULL;
	memset(m, 0, sizeof(*m));
	m->pool = pool;
	m->sp = sp;
	m->fd = -1;
	pthread_mutex_init(&m->fdlock, NULL);
	/* gettimeofday is a vDSO call; the pid was read at open */
	struct timeval tv;
	gettimeofday(&tv, NULL);
	unsigned w = worker < SPOOL_MAX_WORKERS ? worker : SPOOL_MAX_WORKERS - 1;
	snprintf(m->id, sizeof(m->id), "%lld.%06ld.P%dW%uC%llu", (long long)tv.tv_sec,
		 (long)tv.tv_usec, sp->pid, w, (unsigned long long)++sp->counter[w]);
	return m;
}

static struct block *block_new(struct delivery_msg *m)
{
	struct block *b = take(m->sp->blocks, m->pool, sizeof(*b));
	if (!b)
		return NULL;
	b->pool = m->pool;
	b->j.kind = JOB_BLOCK;
	b->m = m;
	b->off = m->size;
	b->len = 0;
	return b;
}

/* A full block goes to the delivery threads, within the spool's budget of
 * content in memory; beyond it the message fails (451) rather than the
 * gateway growing without bound when the disk is slower than the network.
 * Its octets are taken off the free space first: a block that would go
 * below the floor fails the message with 452 4.3.1 (DELIVERY_ENOSPC). */
static int hand_over(struct delivery_msg *m)
{
	struct spool *sp = m->sp;
	if (!diskfloor_take(sp->df, BLOCK_SIZE)) {
		stat_add(&sp->st.no_space, 1);
		return DELIVERY_ENOSPC;
	}
	uint64_t was = atomic_fetch_add(&sp->inflight, BLOCK_SIZE);
	if (was + BLOCK_SIZE > sp->inflight_max) {
		atomic_fetch_sub(&sp->inflight, BLOCK_SIZE);
		stat_add(&sp->st.over_budget, 1);
		return -1;
	}
	atomic_fetch_add(&m->pending, 1);
	push_job(sp, &m->cur->j);
	m->cur = NULL;
	return 0;
}

static int sp_write(struct delivery_msg *m, const uint8_t *p, size_t n)
{
	if (atomic_load_explicit(&m->failed, memory_order_relaxed))
		return -1;
	while (n > 0) {
		if (!m->cur && !(m->cur = block_new(m)))
			return -1;
		struct block *b = m->cur;
		size_t room = BLOCK_SIZE - b->len;
		size_t take = n < room ? n : room;
		memcpy(b->data + b->len, p, take);
		b->len += take;
		m->size += take;
		p += take;
		n -= take;
		if (b->len == BLOCK_SIZE) {
			int rc = hand_over(m);
			if (rc != 0)
				return rc;
		}
	}
	return 0;
}

static void sp_abort(struct delivery_msg *m)
{
	stat_add(&m->sp->st.aborted, 1);
	m->j.kind = JOB_ABORT;
	push_job(m->sp, &m->j);
}

/* Envelope values come from the client: keep each on its line. */
static size_t put_clean(char *dst, const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		dst[n++] = ((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s;
	return n;
}

struct strbuf {
	char *p;
	size_t len, cap;
};

static void sb_kv(struct strbuf *b, const char *key, const char *pre, const char *val,
		  const char *post)
{
	/* cap was sized for the longest values the engine allows */
	size_t need = strlen(key) + strlen(pre) + strlen(val) + strlen(post) + 4;
	if (b->len + need > b->cap)
		return;
	b->len += (size_t)sprintf(b->p + b->len, "%s: %s", key, pre);
	b->len += put_clean(b->p + b->len, val);
	b->len += (size_t)sprintf(b->p + b->len, "%s\n", post);
}

static char *format_envelope(struct delivery_msg *m, const struct smtp_envelope *env,
			     const char *peer, size_t *lenp)
{
	struct strbuf b;
	b.cap = 1024 + sizeof(env->helo) + sizeof(env->mail_from) + strlen(peer) +
		(size_t)env->nrcpt * (SMTP_PATH_MAX + 16);
	m->env_pooled = m->pool != NO_POOL && b.cap <= ENV_POOLED;
	if (m->env_pooled)
		b.cap = ENV_POOLED;
	b.p = take(m->sp->envs, m->env_pooled ? m->pool : NO_POOL, b.cap);
	b.len = 0;
	if (!b.p)
		return NULL;
	char when[32], size[24];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(size, sizeof(size), "%llu", (unsigned long long)m->size);
	sb_kv(&b, "id", "", m->id, "");
	sb_kv(&b, "received", "", when, "");
	sb_kv(&b, "peer", "", peer, "");
	sb_kv(&b, "helo", "", env->helo, "");
	sb_kv(&b, "protocol", "", env->esmtp ? "ESMTP" : "SMTP", "");
	sb_kv(&b, "tls", "", env->tls ? "yes" : "no", "");
	sb_kv(&b, "mail-from", "<", env->mail_from, ">");
	for (unsigned i = 0; i < env->nrcpt; i++)
		sb_kv(&b, "rcpt", "<", env->rcpt[i] ? env->rcpt[i] : "", ">");
	sb_kv(&b, "body", "", env->body == SMTP_BODY_8BITMIME ? "8BITMIME" : "7BIT", "");
	sb_kv(&b, "smtputf8", "", env->smtputf8 ? "yes" : "no", "");
	sb_kv(&b, "transfer", "", env->bdat ? "BDAT" : "DATA", "");
	sb_kv(&b, "size", "", size, "");
	*lenp = b.len;
	return b.p;
}

static void sp_submit(struct delivery_msg *m, const struct smtp_envelope *env, const char *peer,
		      delivery_done_fn done, void *arg)
{
	m->done = done;
	m->arg = arg;
	if (!atomic_load(&m->failed)) {
		m->env = format_envelope(m, env, peer, &m->envlen);
		if (!m->env)
			atomic_store(&m->failed, true); /* logged as a 451 below */
	}
	/* The last, partial block and the envelope, off the free space. */
	if (!atomic_load(&m->failed) &&
	    !diskfloor_take(m->sp->df, (m->cur ? m->cur->len : 0) + m->envlen)) {
		m->nospace = true;
		atomic_store(&m->failed, true);
	}
	m->j.kind = JOB_SUBMIT;
	push_job(m->sp, &m->j);
}

/* ---- delivery threads ---- */

/* Blocks of m taken by another thread are written by it before it waits
 * for anything (run_jobs writes blocks first), so this wait is short. */
static void wait_blocks(struct delivery_msg *m)
{
	while (atomic_load_explicit(&m->pending, memory_order_acquire))
		sched_yield();
}

/* Delivery threads. */
static void msg_free(struct delivery_msg *m)
{
	struct spool *sp = m->sp;
	if (m->cur)
		give(sp->blocks, m->cur->pool, m->cur);
	give(sp->envs, m->env_pooled ? m->pool : NO_POOL, m->env);
	pthread_mutex_destroy(&m->fdlock);
	give(sp->msgs, m->pool, m);
}

static void make_durable(struct delivery_msg *m)
{
	struct spool *sp = m->sp;
	/* The last, partial block (or the file of an empty message) */
	if (m->cur)
		write_block(m, m->cur->data, m->cur->len, m->cur->off);
	else
		write_block(m, NULL, 0, 0);
	if (atomic_load(&m->failed))
		return;
	if (fsync(m->fd) != 0) {
		fail(m, "fsync", errno);
		return;
	}
	int e = close(m->fd);
	m->fd = -1;
	if (e != 0) {
		fail(m, "close", errno);
		return;
	}
	int efd = create_tmp(sp, m->id, "env");
	if (efd < 0) {
		fail(m, "create envelope", errno);
		return;
	}
	bool ok = pwrite_all(efd, (const uint8_t *)m->env, m->envlen, 0) && fsync(efd) == 0;
	e = errno ? errno : EIO;
	if (close(efd) != 0 && ok) {
		ok = false;
		e = errno;
	}
	if (!ok)
		fail(m, "write envelope", e);
}

static void rename_into_new(struct delivery_msg *m, const char *ext, bool *flag)
{
	char name[80];
	if (atomic_load(&m->failed))
		return;
	name_of(name, sizeof(name), m->id, ext);
	if (renameat(m->sp->tmpfd, name, m->sp->newfd, name) != 0) {
		fail(m, "rename", errno);
		return;
	}
	*flag = true;
}

static void sync_new(struct spool *sp, struct delivery_msg **batch, size_t n)
{
	bool any = false;
	for (size_t i = 0; i < n; i++)
		any |= !atomic_load(&batch[i]->failed);
	if (any && fsync(sp->newfd) != 0) {
		int e = errno;
		for (size_t i = 0; i < n; i++)
			fail(batch[i], "fsync new/", e);
	}
}

static void deliver_batch(struct spool *sp, struct delivery_msg **batch, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		wait_blocks(batch[i]);
		make_durable(batch[i]);
	}
	/* Envelopes first and durable, so a visible .eml always has one. */
	for (size_t i = 0; i < n; i++)
		rename_into_new(batch[i], "env", &batch[i]->env_in_new);
	sync_new(sp, batch, n);
	for (size_t i = 0; i < n; i++)
		rename_into_new(batch[i], "eml", &batch[i]->eml_in_new);
	sync_new(sp, batch, n);

	for (size_t i = 0; i < n; i++) {
		struct delivery_msg *m = batch[i];
		struct smtp_reply r;
		if (atomic_load(&m->failed) && m->nospace) {
			discard_files(m);
			stat_add(&sp->st.no_space, 1);
			smtp_reply_set(&r, 452, "4.3.1",
				       "Insufficient system storage, try again later");
		} else if (atomic_load(&m->failed)) {
			discard_files(m);
			stat_add(&sp->st.failed, 1);
			smtp_reply_set(&r, 451, "4.3.0",
				       "Temporary spool failure, try again later");
		} else {
			stat_add(&sp->st.stored, 1);
			stat_add(&sp->st.bytes, m->size);
			char text[96];
			snprintf(text, sizeof(text), "Ok: queued as %s", m->id);
			smtp_reply_set(&r, 250, "2.0.0", text);
			log_msg(LOG_DEBUG, "spool: stored %s (%llu octets)", m->id,
				(unsigned long long)m->size);
		}
		delivery_done_fn done = m->done;
		void *arg = m->arg;
		msg_free(m);
		done(arg, &r);
	}
}

static void abort_msg(struct delivery_msg *m)
{
	wait_blocks(m);
	if (m->fd >= 0 || atomic_load(&m->failed))
		discard_files(m);
	msg_free(m);
}

/* One taken stack of jobs, oldest first: every block is written before
 * anything waits, then messages are finished in batches that share the
 * directory fsyncs (group commit). */
static void run_jobs(struct spool *sp, struct job *j)
{
	struct delivery_msg *batch[BATCH_MAX];
	size_t n = 0;
	for (struct job *k = j; k; k = k->next) {
		if (k->kind != JOB_BLOCK)
			continue;
		struct block *b = (struct block *)(void *)k;
		struct delivery_msg *m = b->m;
		write_block(m, b->data, b->len, b->off);
		atomic_fetch_sub(&sp->inflight, BLOCK_SIZE);
		k->kind = JOB_WRITTEN; /* freed below, with the list */
		atomic_fetch_sub_explicit(&m->pending, 1, memory_order_release);
	}
	while (j) {
		struct job *next = j->next;
		if (j->kind == JOB_SUBMIT) {
			batch[n++] = (struct delivery_msg *)(void *)j;
			if (n == BATCH_MAX) {
				deliver_batch(sp, batch, n);
				n = 0;
			}
		} else if (j->kind == JOB_ABORT) {
			abort_msg((struct delivery_msg *)(void *)j);
		} else {
			struct block *b = (struct block *)(void *)j; /* written */
			give(sp->blocks, b->pool, b);
		}
		j = next;
	}
	if (n)
		deliver_batch(sp, batch, n);
}

static struct job *take_jobs(struct spool *sp)
{
	struct job *j = atomic_exchange(&sp->jobs, NULL), *fifo = NULL;
	while (j) { /* the stack is newest first */
		struct job *next = j->next;
		j->next = fifo;
		fifo = j;
		j = next;
	}
	return fifo;
}

static void *delivery_main(void *arg)
{
	struct spool *sp = arg;
	for (;;) {
		struct job *j = take_jobs(sp);
		if (j) {
			run_jobs(sp, j);
			continue;
		}
		/* stop comes after the workers have submitted their last */
		if (atomic_load(&sp->stop))
			return NULL;
		if (__atomic_load_n(&sp->polling, __ATOMIC_RELAXED)) {
			struct timespec ts = { 0, POLL_NS };
			nanosleep(&ts, NULL);
			continue;
		}
		pthread_mutex_lock(&sp->lock);
		atomic_fetch_add(&sp->sleepers, 1);
		if (!atomic_load(&sp->jobs) && !atomic_load(&sp->stop) && !sp->polling)
			pthread_cond_wait(&sp->cond, &sp->lock);
		atomic_fetch_sub(&sp->sleepers, 1);
		pthread_mutex_unlock(&sp->lock);
	}
}

/* ---- life cycle ---- */

static int open_dir(int at, const char *path, bool create, char *err, size_t errlen,
		    const char *label)
{
	if (create && mkdirat(at, path, 0750) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "spool: cannot create %s: %s", label, strerror(errno));
		return -1;
	}
	int fd = openat(at, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		snprintf(err, errlen, "spool: cannot open %s: %s", label, strerror(errno));
	return fd;
}

/* mkdir -p: the spool may sit below a state directory not made yet. */
static int make_parents(const char *dir)
{
	char path[4096];
	if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0755) != 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return 0;
}

/* A message in tmp/ never got its 250: the client will send it again. */
static unsigned clean_tmp(struct spool *sp)
{
	int fd = dup(sp->tmpfd);
	if (fd < 0)
		return 0;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return 0;
	}
	unsigned n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (unlinkat(sp->tmpfd, e->d_name, 0) == 0)
			n++;
	}
	closedir(d);
	return n;
}

struct spool *spool_open(const char *dir, unsigned nthreads, unsigned nworkers, char *err,
			 size_t errlen)
{
	if (nworkers > SPOOL_MAX_WORKERS || nthreads == 0) {
		snprintf(err, errlen, "spool: bad thread counts");
		return NULL;
	}
	struct spool *sp = calloc(1, sizeof(*sp));
	if (!sp) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	sp->dirfd = sp->tmpfd = sp->newfd = sp->lockfd = -1;
	snprintf(sp->dir, sizeof(sp->dir), "%s", dir);
	sp->pid = (int)getpid();
	sp->inflight_max = SPOOL_INFLIGHT_DEFAULT;
	pthread_mutex_init(&sp->lock, NULL);
	pthread_cond_init(&sp->cond, NULL);
	for (; sp->npools < nworkers; sp->npools++) {
		unsigned w = sp->npools;
		if (opool_init(&sp->blocks[w], sizeof(struct block), POOL_BLOCKS_KEEP,
			       POOL_BLOCKS_PREFILL) != 0 ||
		    opool_init(&sp->msgs[w], sizeof(struct delivery_msg), POOL_MSGS_KEEP,
			       POOL_MSGS_PREFILL) != 0 ||
		    opool_init(&sp->envs[w], ENV_POOLED, POOL_ENVS_KEEP, POOL_ENVS_PREFILL) != 0) {
			sp->npools++; /* what it holds is freed below */
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
	}

	char label[4200];
	if (make_parents(dir) != 0) {
		snprintf(err, errlen, "spool: cannot create the directories above %s: %s", dir,
			 strerror(errno));
		goto fail;
	}
	sp->dirfd = open_dir(AT_FDCWD, dir, true, err, errlen, dir);
	if (sp->dirfd < 0)
		goto fail;
	sp->lockfd = openat(sp->dirfd, ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (sp->lockfd < 0) {
		snprintf(err, errlen, "spool: cannot open %s/.lock: %s", dir, strerror(errno));
		goto fail;
	}
	if (flock(sp->lockfd, LOCK_EX | LOCK_NB) != 0) {
		snprintf(err, errlen, "spool: %s is in use by another tesgate (%s)", dir,
			 strerror(errno));
		goto fail;
	}
	snprintf(label, sizeof(label), "%s/tmp", dir);
	sp->tmpfd = open_dir(sp->dirfd, "tmp", true, err, errlen, label);
	if (sp->tmpfd < 0)
		goto fail;
	snprintf(label, sizeof(label), "%s/new", dir);
	sp->newfd = open_dir(sp->dirfd, "new", true, err, errlen, label);
	if (sp->newfd < 0)
		goto fail;
	unsigned stale = clean_tmp(sp);
	if (stale)
		log_msg(LOG_WARN, "spool: removed %u unfinished files from %s/tmp", stale, dir);

	sp->threads = calloc(nthreads, sizeof(*sp->threads));
	if (!sp->threads) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (; sp->nthreads < nthreads; sp->nthreads++) {
		int e = pthread_create(&sp->threads[sp->nthreads], NULL, delivery_main, sp);
		if (e) {
			snprintf(err, errlen, "spool: cannot start a delivery thread: %s",
				 strerror(e));
			spool_stop(sp);
			goto fail;
		}
		pthread_setname_np(sp->threads[sp->nthreads], "spool");
	}
	return sp;
fail:
	spool_close(sp);
	return NULL;
}

static bool sp_admit(void *be, uint64_t size)
{
	struct spool *sp = be;
	if (diskfloor_admit(sp->df, size))
		return true;
	stat_add(&sp->st.no_space, 1);
	return false;
}

int spool_set_min_free(struct spool *sp, uint64_t floor, char *err, size_t errlen)
{
	char label[4200];
	if (!floor)
		return 0;
	snprintf(label, sizeof(label), "spool %s", sp->dir);
	sp->df = diskfloor_new(sp->dirfd, floor, label, err, errlen);
	return sp->df ? 0 : -1;
}

int spool_give(struct spool *sp, uid_t uid, gid_t gid, char *err, size_t errlen)
{
	static const char *const what[] = { "", "/tmp", "/new", "/.lock" };
	const int fds[] = { sp->dirfd, sp->tmpfd, sp->newfd, sp->lockfd };
	for (int i = 0; i < 4; i++) {
		if (fchown(fds[i], uid, gid) != 0) {
			snprintf(err, errlen, "spool: cannot give %s%s to uid %u: %s", sp->dir,
				 what[i], (unsigned)uid, strerror(errno));
			return -1;
		}
	}
	return 0;
}

void spool_backend(struct spool *sp, struct delivery_backend *out)
{
	out->name = "spool";
	out->be = sp;
	out->admit = sp_admit;
	out->open = sp_open;
	out->write = sp_write;
	out->submit = sp_submit;
	out->abort = sp_abort;
}

void spool_set_polling(struct spool *sp, bool polling)
{
	/* The delivery threads are running already and may be asleep: under
	 * the lock they check polling before they wait, and the broadcast
	 * wakes those that wait, so none sleeps on in a polling spool. */
	pthread_mutex_lock(&sp->lock);
	__atomic_store_n(&sp->polling, polling, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&sp->cond);
	pthread_mutex_unlock(&sp->lock);
}

void spool_set_inflight_max(struct spool *sp, uint64_t bytes)
{
	sp->inflight_max = bytes < BLOCK_SIZE ? BLOCK_SIZE : bytes;
}

void spool_stop(struct spool *sp)
{
	pthread_mutex_lock(&sp->lock);
	atomic_store(&sp->stop, true);
	pthread_cond_broadcast(&sp->cond);
	pthread_mutex_unlock(&sp->lock);
	for (unsigned i = 0; i < sp->nthreads; i++)
		pthread_join(sp->threads[i], NULL);
	sp->nthreads = 0;
}

void spool_close(struct spool *sp)
{
	if (!sp)
		return;
	if (sp->nthreads)
		spool_stop(sp);
	diskfloor_free(sp->df);
	free(sp->threads);
	if (sp->newfd >= 0)
		close(sp->newfd);
	if (sp->tmpfd >= 0)
		close(sp->tmpfd);
	if (sp->lockfd >= 0)
		close(sp->lockfd); /* releases the flock */
	if (sp->dirfd >= 0)
		close(sp->dirfd);
	pthread_mutex_destroy(&sp->lock);
	pthread_cond_destroy(&sp->cond);
	for (unsigned w = 0; w < sp->npools; w++) {
		opool_fini(&sp->blocks[w]);
		opool_fini(&sp->msgs[w]);
		opool_fini(&sp->envs[w]);
	}
	free(sp);
}

void spool_stats(const struct spool *sp, struct spool_stats *out)
{
	out->stored = __atomic_load_n(&sp->st.stored, __ATOMIC_RELAXED);
	out->failed = __atomic_load_n(&sp->st.failed, __ATOMIC_RELAXED);
	out->aborted = __atomic_load_n(&sp->st.aborted, __ATOMIC_RELAXED);
	out->bytes = __atomic_load_n(&sp->st.bytes, __ATOMIC_RELAXED);
	out->over_budget = __atomic_load_n(&sp->st.over_budget, __ATOMIC_RELAXED);
	out->no_space = __atomic_load_n(&sp->st.no_space, __ATOMIC_RELAXED);
}

/* ---- exports (gateway/observe/registry.h) ---- */

static bool export_read(const void *arg, unsigned i, void *snap)
{
	(void)i;
	spool_stats(arg, snap);
	return true;
}

#define SS(f) offsetof(struct spool_stats, f)

static const struct obs_row spool_rows[] = {
	{ .name = "tes_deliveries_total",
	  .help = "Delivery outcomes by backend",
	  .key = "",
	  .off = SS(stored),
	  .l1 = "backend",
	  .v1 = "spool",
	  .l2 = "outcome",
	  .n = 3,
	  .names = (const char *const[]){ "stored", "failed", "aborted" },
	  .stride = sizeof(uint64_t) },
	{ .name = "tes_delivered_bytes_total",
	  .help = "Message content octets delivered by backend",
	  .key = "bytes",
	  .off = SS(bytes),
	  .l1 = "backend",
	  .v1 = "spool" },
	{ .key = "over_budget", .off = SS(over_budget) },
	{ .key = "no_space", .off = SS(no_space) },
};

#undef SS

int spool_export(const struct spool *sp, struct obs_registry *r)
{
	struct obs_group g = {
		.name = "spool",
		.rows = spool_rows,
		.nrows = sizeof(spool_rows) / sizeof(spool_rows[0]),
		.size = sizeof(struct spool_stats),
		.read = export_read,
		.arg = sp,
	};

	return obs_add(r, &g);
}
