/* SPDX-License-Identifier: BSD-3-Clause */
#include "gateway/observe/log.h"

#include "base/text.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Lines from threads that may not make system calls wait in a bounded
 * ring (Vyukov's array queue: many producers, one consumer, one CAS per
 * line) for the writer thread.  A slot is smaller than a synchronous line:
 * the end of a longer line is cut. */
#define RING_SLOTS 4096
#define SLOT_BYTES 1024
#define WRITER_PERIOD_NS 10000000L
#define WRITER_BUSY_NS 500000L
/* Lines are written in batches of at most BATCH_PIPE octets, so one
 * write(2) stays atomic on a pipe (journald) and lines of other threads
 * cannot cut in; to a regular file, whose writes the kernel serialises,
 * in batches of BATCH_FILE: at 200 000 lines a second the system calls of
 * 4 KiB batches were 7 % of a core. */
#define BATCH_PIPE 4096
#define BATCH_FILE 65536

struct slot {
	atomic_size_t seq;
	size_t len;
	char line[SLOT_BYTES];
};

static struct {
	struct slot *slots;
	atomic_size_t tail;
	size_t head; /* the writer's */
	size_t batch_max;
	atomic_uint_fast64_t dropped;
	atomic_bool stop;
	pthread_t writer;
	bool running;
} ring;

static _Thread_local bool thread_async;

static enum log_level level = LOG_INFO;

static const char *const names[] = { "error", "warn", "info", "debug" };

void log_set_level(enum log_level lvl)
{
	level = lvl;
}

enum log_level log_get_level(void)
{
	return level;
}

bool log_level_from_name(const char *name, enum log_level *out)
{
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcasecmp(name, names[i]) == 0) {
			*out = (enum log_level)i;
			return true;
		}
	}
	return false;
}

const char *log_level_name(enum log_level lvl)
{
	return (unsigned)lvl < sizeof(names) / sizeof(names[0]) ? names[lvl] : "?";
}

static bool ring_put(const char *line, size_t len)
{
	size_t pos = atomic_load_explicit(&ring.tail, memory_order_relaxed);
	for (;;) {
		struct slot *c = &ring.slots[pos & (RING_SLOTS - 1)];
		size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
		intptr_t diff = (intptr_t)seq - (intptr_t)pos;
		if (diff == 0) {
			if (atomic_compare_exchange_weak_explicit(&ring.tail, &pos, pos + 1,
								  memory_order_relaxed,
								  memory_order_relaxed)) {
				if (len > SLOT_BYTES) { /* cut, still one line */
					memcpy(c->line, line, SLOT_BYTES - 1);
					c->line[SLOT_BYTES - 1] = '\n';
					len = SLOT_BYTES;
				} else {
					memcpy(c->line, line, len);
				}
				c->len = len;
				atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
				return true;
			}
		} else if (diff < 0) {
			return false; /* full */
		} else {
			pos = atomic_load_explicit(&ring.tail, memory_order_relaxed);
		}
	}
}

static void write_out(const char *line, size_t len)
{
	ssize_t r = write(STDERR_FILENO, line, len);
	(void)r;
}

/* Empties the ring; true if it held anything. */
static bool ring_drain(void)
{
	static char batch[BATCH_FILE]; /* the writer thread's alone */
	size_t used = 0;
	bool any = false;
	for (;;) {
		struct slot *c = &ring.slots[ring.head & (RING_SLOTS - 1)];
		if (atomic_load_explicit(&c->seq, memory_order_acquire) != ring.head + 1)
			break;
		if (used + c->len > ring.batch_max) {
			write_out(batch, used);
			used = 0;
		}
		memcpy(batch + used, c->line, c->len); /* a slot is smaller than a batch */
		used += c->len;
		atomic_store_explicit(&c->seq, ring.head + RING_SLOTS, memory_order_release);
		ring.head++;
		any = true;
	}
	if (used)
		write_out(batch, used);
	uint64_t d = atomic_exchange(&ring.dropped, 0);
	if (d)
		log_msg(LOG_WARN, "log: %llu lines from poll-mode workers dropped (ring full)",
			(unsigned long long)d);
	return any;
}

static void *writer_main(void *arg)
{
	(void)arg;
	bool busy = false;
	while (!atomic_load(&ring.stop)) {
		/* back soon while lines keep coming, so the ring does not fill */
		struct timespec ts = { 0, busy ? WRITER_BUSY_NS : WRITER_PERIOD_NS };
		nanosleep(&ts, NULL);
		busy = ring_drain();
	}
	ring_drain();
	return NULL;
}

int log_async_start(void)
{
	if (ring.running)
		return 0;
	ring.slots = calloc(RING_SLOTS, sizeof(*ring.slots));
	if (!ring.slots)
		return -1;
	for (size_t i = 0; i < RING_SLOTS; i++)
		atomic_init(&ring.slots[i].seq, i);
	atomic_store(&ring.tail, 0);
	ring.head = 0;
	struct stat sb;
	ring.batch_max =
		fstat(STDERR_FILENO, &sb) == 0 && S_ISREG(sb.st_mode) ? BATCH_FILE : BATCH_PIPE;
	atomic_store(&ring.stop, false);
	if (pthread_create(&ring.writer, NULL, writer_main, NULL) != 0) {
		free(ring.slots);
		ring.slots = NULL;
		return -1;
	}
	pthread_setname_np(ring.writer, "log");
	ring.running = true;
	return 0;
}

void log_async_stop(void)
{
	if (!ring.running)
		return;
	atomic_store(&ring.stop, true);
	pthread_join(ring.writer, NULL);
	ring.running = false;
	free(ring.slots);
	ring.slots = NULL;
}

void log_thread_async(bool on)
{
	thread_async = on;
}

uint64_t log_async_dropped(void)
{
	return atomic_load(&ring.dropped);
}

/* The timestamp and level that start every line; returns their length.
 * "2026-11-28T01:40:27" changes once a second: each thread keeps the last
 * one it formatted (a busy worker logs thousands of lines a second, and
 * gmtime_r plus a seven-field snprintf showed in profiles). */
static size_t line_prefix(char *line, int lvl)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	static _Thread_local time_t cached_sec = -1;
	static _Thread_local char cached[64]; /* 19 used; room for any int */
	if (ts.tv_sec != cached_sec) {
		struct tm tm;
		gmtime_r(&ts.tv_sec, &tm);
		snprintf(cached, sizeof(cached), "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
			 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
		cached_sec = ts.tv_sec;
	}
	unsigned ms = (unsigned)(ts.tv_nsec / 1000000);
	size_t n = strlen(cached);
	memcpy(line, cached, n);
	line[n++] = '.';
	line[n++] = (char)('0' + ms / 100);
	line[n++] = (char)('0' + ms / 10 % 10);
	line[n++] = (char)('0' + ms % 10);
	line[n++] = 'Z';
	line[n++] = ' ';
	const char *name = log_level_name((enum log_level)lvl);
	size_t nl = strlen(name);
	memcpy(line + n, name, nl);
	n += nl;
	while (nl++ < 5) /* "%-5s" */
		line[n++] = ' ';
	line[n++] = ' ';
	return n;
}

/* line holds len octets of text (at most size - 2 kept: a cut line is
 * still one line); its newline goes after them. */
static void line_out(char *line, size_t len, size_t size)
{
	if (len > size - 2)
		len = size - 2;
	line[len++] = '\n';
	if (thread_async && ring.running) {
		if (!ring_put(line, len))
			atomic_fetch_add(&ring.dropped, 1);
		return;
	}
	write_out(line, len);
}

void log_msg(int lvl, const char *fmt, ...)
{
	if (lvl > (int)level)
		return;
	if (lvl < 0)
		lvl = 0;
	char line[2048];
	size_t n = line_prefix(line, lvl);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	line_out(line, n + (m < 0 ? 0 : (size_t)m), sizeof(line));
}

/* ---- lines built piece by piece ---- */

bool log_begin(struct log_line *l, int lvl)
{
	if (lvl > (int)level)
		return false;
	l->n = line_prefix(l->buf, lvl < 0 ? 0 : lvl);
	return true;
}

/* Room for text: the last two octets are for the newline (and the cut
 * that log_msg's vsnprintf makes). */
void log_sn(struct log_line *l, const char *s, size_t len)
{
	size_t room = sizeof(l->buf) - 2 - l->n;
	if (len > room)
		len = room;
	memcpy(l->buf + l->n, s, len);
	l->n += len;
}

void log_s(struct log_line *l, const char *s)
{
	log_sn(l, s, strlen(s));
}

void log_c(struct log_line *l, char c)
{
	if (l->n < sizeof(l->buf) - 2)
		l->buf[l->n++] = c;
}

void log_u(struct log_line *l, unsigned long long v)
{
	char d[TES_U64_DIGITS];
	log_sn(l, d, tes_u64_digits(d, v));
}

void log_i(struct log_line *l, long long v)
{
	if (v < 0) {
		log_c(l, '-');
		log_u(l, 0ull - (unsigned long long)v);
	} else {
		log_u(l, (unsigned long long)v);
	}
}

void log_clean(struct log_line *l, const char *s, size_t max)
{
	for (size_t i = 0; s[i] && i < max && l->n < sizeof(l->buf) - 2; i++)
		l->buf[l->n++] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
}

void log_end(struct log_line *l)
{
	line_out(l->buf, l->n, sizeof(l->buf));
}
