/* SPDX-License-Identifier: BSD-3-Clause */
#include "gateway/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/kio.h"
#include "gateway/log.h"

/* Content is gathered here before it is written, so a small message costs
 * the worker no system call at all (the delivery thread creates its file),
 * and a large one is written in big pieces. */
#define STAGE_SIZE 65536
#define BATCH_MAX 64

struct delivery_msg {
	struct delivery_msg *next;
	struct spool *sp;
	char id[64];
	int fd; /* tmp/<id>.eml, -1 until the stage first fills */
	bool failed;
	bool env_in_new, eml_in_new;
	uint64_t size;
	size_t staged;
	char *env;
	size_t envlen;
	delivery_done_fn done;
	void *arg;
	uint8_t stage[STAGE_SIZE];
};

struct spool {
	char dir[4096];
	int dirfd, tmpfd, newfd, lockfd;
	unsigned nthreads;
	pthread_t *threads;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct delivery_msg *head, *tail;
	bool stop;
	uint64_t counter[KIO_MAX_WORKERS]; /* each touched by its worker only */
	struct spool_stats st;             /* atomics */
};

static void stat_add(uint64_t *f, uint64_t n)
{
	__atomic_fetch_add(f, n, __ATOMIC_RELAXED);
}

static bool write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t r = write(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		p += r;
		n -= (size_t)r;
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

/* Give up on m's files, wherever they are, so nothing half-visible stays. */
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

static void fail(struct delivery_msg *m, const char *what, int err)
{
	if (!m->failed)
		log_msg(LOG_ERROR, "spool: %s: %s: %s", m->id, what, strerror(err));
	m->failed = true;
	discard_files(m);
}

static bool flush_stage(struct delivery_msg *m)
{
	if (m->fd < 0) {
		m->fd = create_tmp(m->sp, m->id, "eml");
		if (m->fd < 0) {
			fail(m, "create", errno);
			return false;
		}
	}
	if (m->staged && !write_all(m->fd, m->stage, m->staged)) {
		fail(m, "write", errno ? errno : EIO);
		return false;
	}
	m->staged = 0;
	return true;
}

/* ---- worker side ---- */

static struct delivery_msg *sp_open(void *be, unsigned worker)
{
	struct spool *sp = be;
	struct delivery_msg *m = malloc(sizeof(*m));
	if (!m)
		return NULL;
	m->next = NULL;
	m->sp = sp;
	m->fd = -1;
	m->failed = m->env_in_new = m->eml_in_new = false;
	m->size = m->staged = 0;
	m->env = NULL;
	m->envlen = 0;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	unsigned w = worker < KIO_MAX_WORKERS ? worker : KIO_MAX_WORKERS - 1;
	snprintf(m->id, sizeof(m->id), "%lld.%06ld.P%dW%uC%llu", (long long)tv.tv_sec,
		 (long)tv.tv_usec, (int)getpid(), w, (unsigned long long)++sp->counter[w]);
	return m;
}

static int sp_write(struct delivery_msg *m, const uint8_t *p, size_t n)
{
	if (m->failed)
		return -1;
	m->size += n;
	while (n > 0) {
		size_t room = STAGE_SIZE - m->staged;
		size_t take = n < room ? n : room;
		memcpy(m->stage + m->staged, p, take);
		m->staged += take;
		p += take;
		n -= take;
		if (m->staged == STAGE_SIZE && !flush_stage(m))
			return -1;
	}
	return 0;
}

static void sp_abort(struct delivery_msg *m)
{
	stat_add(&m->sp->st.aborted, 1);
	if (m->fd >= 0 || m->failed)
		discard_files(m);
	free(m->env);
	free(m);
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

static char *format_envelope(const struct delivery_msg *m, const struct smtp_envelope *env,
			     const char *peer, size_t *lenp)
{
	struct strbuf b;
	b.cap = 1024 + sizeof(env->helo) + sizeof(env->mail_from) + strlen(peer) +
		(size_t)env->nrcpt * (SMTP_PATH_MAX + 16);
	b.p = malloc(b.cap);
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
	struct spool *sp = m->sp;
	m->done = done;
	m->arg = arg;
	if (!m->failed) {
		m->env = format_envelope(m, env, peer, &m->envlen);
		if (!m->env)
			fail(m, "envelope", ENOMEM);
	}
	pthread_mutex_lock(&sp->lock);
	if (sp->tail)
		sp->tail->next = m;
	else
		sp->head = m;
	sp->tail = m;
	pthread_cond_signal(&sp->cond);
	pthread_mutex_unlock(&sp->lock);
}

/* ---- delivery threads ---- */

static void make_durable(struct delivery_msg *m)
{
	struct spool *sp = m->sp;
	if (m->failed)
		return;
	if (!flush_stage(m))
		return;
	if (fsync(m->fd) != 0) {
		fail(m, "fsync", errno);
		return;
	}
	if (close(m->fd) != 0) {
		m->fd = -1;
		fail(m, "close", errno);
		return;
	}
	m->fd = -1;
	int efd = create_tmp(sp, m->id, "env");
	if (efd < 0) {
		fail(m, "create envelope", errno);
		return;
	}
	bool ok = write_all(efd, (const uint8_t *)m->env, m->envlen) && fsync(efd) == 0;
	int e = errno ? errno : EIO;
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
	if (m->failed)
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
		any |= !batch[i]->failed;
	if (any && fsync(sp->newfd) != 0) {
		int e = errno;
		for (size_t i = 0; i < n; i++)
			fail(batch[i], "fsync new/", e);
	}
}

static void deliver_batch(struct spool *sp, struct delivery_msg **batch, size_t n)
{
	for (size_t i = 0; i < n; i++)
		make_durable(batch[i]);
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
		if (m->failed) {
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
		free(m->env);
		free(m);
		done(arg, &r);
	}
}

static void *delivery_main(void *arg)
{
	struct spool *sp = arg;
	struct delivery_msg *batch[BATCH_MAX];

	for (;;) {
		pthread_mutex_lock(&sp->lock);
		while (!sp->head && !sp->stop)
			pthread_cond_wait(&sp->cond, &sp->lock);
		size_t n = 0;
		while (sp->head && n < BATCH_MAX) {
			batch[n++] = sp->head;
			sp->head = sp->head->next;
		}
		if (!sp->head)
			sp->tail = NULL;
		bool stop = sp->stop && n == 0;
		pthread_mutex_unlock(&sp->lock);
		if (stop)
			return NULL;
		deliver_batch(sp, batch, n);
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
	if (nworkers > KIO_MAX_WORKERS || nthreads == 0) {
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
	pthread_mutex_init(&sp->lock, NULL);
	pthread_cond_init(&sp->cond, NULL);

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

void spool_backend(struct spool *sp, struct delivery_backend *out)
{
	out->name = "spool";
	out->be = sp;
	out->open = sp_open;
	out->write = sp_write;
	out->submit = sp_submit;
	out->abort = sp_abort;
}

void spool_stop(struct spool *sp)
{
	pthread_mutex_lock(&sp->lock);
	sp->stop = true;
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
	free(sp);
}

void spool_stats(const struct spool *sp, struct spool_stats *out)
{
	out->stored = __atomic_load_n(&sp->st.stored, __ATOMIC_RELAXED);
	out->failed = __atomic_load_n(&sp->st.failed, __ATOMIC_RELAXED);
	out->aborted = __atomic_load_n(&sp->st.aborted, __ATOMIC_RELAXED);
	out->bytes = __atomic_load_n(&sp->st.bytes, __ATOMIC_RELAXED);
}
