/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tesgate's log: one line per event on stderr, with a UTC timestamp and a
 * level.  Nothing is logged per packet or per command; counters cover those.
 *
 * Threading: log_msg() may be called from any thread; each line goes out in
 * one write(2), so lines from different threads do not interleave.  Set the
 * level before starting threads.
 *
 * Threads that must not make system calls (DPDK poll-mode workers) call
 * log_thread_async(true): their lines then go into a bounded lock-free ring
 * that a writer thread (log_async_start) empties every 10 ms (every 0.5 ms
 * while lines keep coming), in writes of at most 4 KiB.  A full ring
 * drops the line and counts it; the writer reports the count.
 */
#ifndef TES_GATEWAY_OBSERVE_LOG_H
#define TES_GATEWAY_OBSERVE_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
static inline bool log_enabled(enum log_level lvl)
{
	return lvl <= log_get_level();
}

/* "error", "warn", "info", "debug" -> level; false if unknown. */
bool log_level_from_name(const char *name, enum log_level *out);
const char *log_level_name(enum log_level lvl);

/* The writer thread for asynchronous lines: start before the threads that
 * use it, stop after they have stopped (the rest is written then).  Main
 * thread. */
int log_async_start(void);
void log_async_stop(void);
/* For the calling thread only. */
void log_thread_async(bool on);
/* Lines dropped since the writer last reported. */
uint64_t log_async_dropped(void);

/* A level from dataplane code, which may not include this header: 0..3. */
void log_msg(int lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A line built piece by piece, for the lines of every message on a busy
 * worker (printf's format interpretation showed in the DPDK worker's
 * profile).  The line is log_msg's: the same prefix, cut at the same
 * length, written or queued the same way.
 *
 *	struct log_line l;
 *	if (log_begin(&l, LOG_INFO)) {
 *		log_s(&l, "message peer=");
 *		log_s(&l, peer);
 *		log_end(&l);
 *	}
 *
 * log_begin returns false (and nothing else may be called) when the level
 * is off.  The calling thread only. */
struct log_line {
	size_t n;
	char buf[2048];
};
bool log_begin(struct log_line *l, int lvl);
void log_sn(struct log_line *l, const char *s, size_t len);
void log_s(struct log_line *l, const char *s);
void log_c(struct log_line *l, char c);
void log_u(struct log_line *l, unsigned long long v);
void log_i(struct log_line *l, long long v);
/* s with control octets (< 0x20, 0x7f) as '?', at most max octets of it. */
void log_clean(struct log_line *l, const char *s, size_t max);
void log_end(struct log_line *l);

#endif
