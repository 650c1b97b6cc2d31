/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tesgate's log: one line per event on stderr, with a UTC timestamp and a
 * level.  Nothing is logged per packet or per command; counters cover those.
 *
 * Threading: log_msg() may be called from any thread; each line goes out in
 * one write(2), so lines from different threads do not interleave.  Set the
 * level before starting threads.
 */
#ifndef TES_GATEWAY_LOG_H
#define TES_GATEWAY_LOG_H

#include <stdbool.h>

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

/* A level from dataplane code, which may not include this header: 0..3. */
void log_msg(int lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
