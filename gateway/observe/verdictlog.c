/* SPDX-License-Identifier: BSD-3-Clause */
#include "gateway/observe/verdictlog.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gateway/observe/log.h"
#include "gateway/observe/registry.h"

/* Records per worker ring: a burst of verdicts from one worker larger than
 * this within one writer pass (a few ms) is dropped and counted. */
#define VL_RING 256
/* The writer's nap when every ring was empty. */
#define VL_NAP_NS (20 * 1000 * 1000)
#define VL_LINE_MAX 2048 /* a 255-octet server name escaped octet by octet fits */
/* Lines gathered before one write(2). */
#define VL_BATCH 32

/* head and dropped are the worker's, tail the writer's: separate cache
 * lines, and the slots on lines of their own. */
struct vl_ring {
	_Alignas(64) uint32_t head;
	uint64_t dropped; /* read relaxed by verdictlog_stats */
	_Alignas(64) uint32_t tail;
	_Alignas(64) struct vlog_event slot[VL_RING];
};

struct verdictlog {
	char path[4096]; /* "" for standard output */
	int fd;
	bool own_fd;
	unsigned nrings;
	struct vl_ring *rings;
	pthread_t thread;
	bool stop;   /* atomic */
	bool reopen; /* atomic */
	uint64_t lines, write_errors, reopens;
	uint64_t misrouted; /* pushes from a worker index without a ring */
	char buf[VL_BATCH * VL_LINE_MAX];
};

static int open_path(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

bool verdictlog_push(struct verdictlog *vl, unsigned worker, const struct vlog_event *ev)
{
	struct vl_ring *r;
	uint32_t head, tail;

	/* A ring has one producer: a worker without its own ring (a caller's
	 * bug) is counted as dropped rather than sharing one. */
	if (worker >= vl->nrings) {
		__atomic_fetch_add(&vl->misrouted, 1, __ATOMIC_RELAXED);
		return false;
	}
	r = &vl->rings[worker];
	head = r->head;
	tail = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);

	if (head - tail >= VL_RING) {
		__atomic_store_n(&r->dropped, r->dropped + 1, __ATOMIC_RELAXED);
		return false;
	}
	r->slot[head % VL_RING] = *ev;
	__atomic_store_n(&r->head, head + 1, __ATOMIC_RELEASE);
	return true;
}

void verdictlog_reopen(struct verdictlog *vl)
{
	if (vl)
		__atomic_store_n(&vl->reopen, true, __ATOMIC_RELAXED);
}

/* ---- formatting ---- */

struct out {
	char *p;
	size_t len, cap;
	bool full;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->full)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= o->cap - o->len)
		o->full = true;
	else
		o->len += (size_t)n;
}

/* A JSON string from octets that came off the network: quotes, backslash
 * and controls escaped, and every octet above 0x7e written as \u00XX so
 * invalid UTF-8 cannot make the line invalid JSON. */
static void put_str(struct out *o, const char *s)
{
	put(o, "\"");
	for (; *s && !o->full; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			put(o, "\\%c", c);
		else if (c < 0x20 || c > 0x7e)
			put(o, "\\u%04x", c);
		else
			put(o, "%c", c);
	}
	put(o, "\"");
}

static const char *at_name(unsigned at)
{
	static const char *const names[] = { "connect", "mail", "headers" };

	return at < 3 ? names[at] : "unknown";
}

size_t verdictlog_format(const struct vlog_event *ev, char *buf, size_t len)
{
	struct out o = { .p = buf, .cap = len };
	char when[32], addr[64], build[64], enh[sizeof(ev->enhanced) + 1];
	struct tm tm;
	time_t t = (time_t)ev->time;

	if (!gmtime_r(&t, &tm))
		memset(&tm, 0, sizeof(tm));
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	put(&o, "{\"time\":\"%s\",\"epoch\":%lld,\"event\":\"verdict\",\"at\":\"%s\",", when,
	    (long long)ev->time, at_name(ev->at));
	put(&o, "\"action\":\"%s\"", tes_action_name((enum tes_action)ev->action));
	if (ev->at != VLOG_AT_CONNECT)
		put(&o, ",\"reason\":\"%s\"", tes_reason_name((enum tes_reason)ev->reason));
	put(&o, ",\"stage\":%u,\"code\":%u", ev->stage, ev->code);
	memcpy(enh, ev->enhanced, sizeof(ev->enhanced));
	enh[sizeof(ev->enhanced)] = '\0';
	if (enh[0]) {
		put(&o, ",\"enhanced\":");
		put_str(&o, enh);
	}
	put(&o, ",\"tenant\":%u", ev->tenant);
	if (ev->source.family != TES_ADDR_NONE &&
	    tes_addr_format(&ev->source, addr, sizeof(addr)) > 0)
		put(&o, ",\"source\":\"%s\"", addr);
	if (ev->server[0]) {
		char server[sizeof(ev->server)];

		memcpy(server, ev->server, sizeof(server));
		server[sizeof(server) - 1] = '\0';
		put(&o, ",\"server\":");
		put_str(&o, server);
	}
	if (ev->has_build && ex_build_format(&ev->build, build, sizeof(build)) > 0)
		put(&o, ",\"build\":\"%s\",\"family\":\"%s\"", build,
		    ex_family_name((enum ex_family)ev->family));
	put(&o, "}\n");
	return o.full ? 0 : o.len;
}

/* ---- the writer thread ---- */

static void write_all(struct verdictlog *vl, size_t len, unsigned nlines)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = write(vl->fd, vl->buf + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			__atomic_fetch_add(&vl->write_errors, nlines, __ATOMIC_RELAXED);
			return;
		}
		off += (size_t)n;
	}
	__atomic_fetch_add(&vl->lines, nlines, __ATOMIC_RELAXED);
}

static void do_reopen(struct verdictlog *vl)
{
	int fd;

	if (!vl->own_fd)
		return;
	fd = open_path(vl->path);
	if (fd < 0) {
		log_msg(LOG_ERROR,
			"verdict_log %s: cannot reopen (%s); still writing to the old file",
			vl->path, strerror(errno));
		return;
	}
	close(vl->fd);
	vl->fd = fd;
	__atomic_fetch_add(&vl->reopens, 1, __ATOMIC_RELAXED);
	log_msg(LOG_INFO, "verdict_log %s reopened", vl->path);
}

/* Everything the rings hold now; true when there was anything. */
static bool drain(struct verdictlog *vl)
{
	bool any = false;
	size_t len = 0;
	unsigned nlines = 0;

	for (unsigned w = 0; w < vl->nrings; w++) {
		struct vl_ring *r = &vl->rings[w];
		uint32_t tail = r->tail;
		uint32_t head = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);

		for (; tail != head; tail++) {
			size_t n = verdictlog_format(&r->slot[tail % VL_RING], vl->buf + len,
						     sizeof(vl->buf) - len);

			/* The slot may be reused once tail moves past it. */
			__atomic_store_n(&r->tail, tail + 1, __ATOMIC_RELEASE);
			any = true;
			if (n) {
				len += n;
				nlines++;
			} else { /* cannot happen at these sizes; counted if it does */
				__atomic_fetch_add(&vl->write_errors, 1, __ATOMIC_RELAXED);
			}
			if (sizeof(vl->buf) - len < VL_LINE_MAX) {
				write_all(vl, len, nlines);
				len = 0;
				nlines = 0;
			}
		}
	}
	if (len)
		write_all(vl, len, nlines);
	return any;
}

static void *writer(void *arg)
{
	struct verdictlog *vl = arg;
	const struct timespec nap = { 0, VL_NAP_NS };

	for (;;) {
		bool stop = __atomic_load_n(&vl->stop, __ATOMIC_ACQUIRE);

		if (__atomic_exchange_n(&vl->reopen, false, __ATOMIC_RELAXED))
			do_reopen(vl);
		if (!drain(vl)) {
			if (stop)
				break;
			nanosleep(&nap, NULL);
		}
	}
	return NULL;
}

struct verdictlog *verdictlog_open(const char *where, unsigned workers, char *err, size_t errlen)
{
	struct verdictlog *vl;
	bool out = strcmp(where, "stdout") == 0 || strcmp(where, "-") == 0;
	int e;

	if (!out && where[0] != '/') {
		snprintf(err, errlen, "verdict_log %s: not an absolute path (or stdout)", where);
		return NULL;
	}
	if (!out && strlen(where) >= sizeof(vl->path)) {
		snprintf(err, errlen, "verdict_log: path too long");
		return NULL;
	}
	vl = calloc(1, sizeof(*vl));
	if (vl)
		vl->rings = aligned_alloc(64, sizeof(*vl->rings) * (workers ? workers : 1));
	if (!vl || !vl->rings) {
		free(vl);
		snprintf(err, errlen, "verdict_log: out of memory");
		return NULL;
	}
	vl->nrings = workers ? workers : 1;
	memset(vl->rings, 0, sizeof(*vl->rings) * vl->nrings);
	if (out) {
		vl->fd = STDOUT_FILENO;
	} else {
		snprintf(vl->path, sizeof(vl->path), "%s", where);
		vl->fd = open_path(where);
		vl->own_fd = true;
		if (vl->fd < 0) {
			snprintf(err, errlen, "verdict_log %s: %s", where, strerror(errno));
			free(vl->rings);
			free(vl);
			return NULL;
		}
	}
	e = pthread_create(&vl->thread, NULL, writer, vl);
	if (e) {
		snprintf(err, errlen, "verdict_log: cannot start its thread: %s", strerror(e));
		if (vl->own_fd)
			close(vl->fd);
		free(vl->rings);
		free(vl);
		return NULL;
	}
	return vl;
}

void verdictlog_stats(const struct verdictlog *vl, struct verdictlog_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!vl)
		return;
	out->lines = __atomic_load_n(&vl->lines, __ATOMIC_RELAXED);
	out->write_errors = __atomic_load_n(&vl->write_errors, __ATOMIC_RELAXED);
	out->reopens = __atomic_load_n(&vl->reopens, __ATOMIC_RELAXED);
	out->dropped = __atomic_load_n(&vl->misrouted, __ATOMIC_RELAXED);
	for (unsigned w = 0; w < vl->nrings; w++)
		out->dropped += __atomic_load_n(&vl->rings[w].dropped, __ATOMIC_RELAXED);
}

void verdictlog_close(struct verdictlog *vl)
{
	if (!vl)
		return;
	__atomic_store_n(&vl->stop, true, __ATOMIC_RELEASE);
	pthread_join(vl->thread, NULL);
	if (vl->own_fd)
		close(vl->fd);
	free(vl->rings);
	free(vl);
}

/* ---- exports (registry.h) ---- */

static bool export_read(const void *arg, unsigned i, void *snap)
{
	(void)i;
	verdictlog_stats(arg, snap);
	return true;
}

#define VS(f) offsetof(struct verdictlog_stats, f)

static const struct obs_row verdictlog_rows[] = {
	{ .name = "tes_verdict_log_lines_total",
	  .help = "Lines written to verdict_log",
	  .key = "lines",
	  .off = VS(lines) },
	{ .name = "tes_verdict_log_dropped_total",
	  .help = "Verdict records dropped because a worker's queue to the log writer was full",
	  .key = "dropped",
	  .off = VS(dropped) },
	{ .name = "tes_verdict_log_write_errors_total",
	  .help = "Verdict lines lost to a failed write to verdict_log",
	  .key = "write_errors",
	  .off = VS(write_errors) },
	{ .key = "reopens", .off = VS(reopens) },
};

#undef VS

int verdictlog_export(const struct verdictlog *vl, struct obs_registry *r)
{
	struct obs_group g = {
		.name = "verdictlog",
		.rows = verdictlog_rows,
		.nrows = sizeof(verdictlog_rows) / sizeof(verdictlog_rows[0]),
		.size = sizeof(struct verdictlog_stats),
		.read = export_read,
		.arg = vl,
	};

	return obs_add(r, &g);
}
