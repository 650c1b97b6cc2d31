/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tescontrol's log: one line per event on stderr.  Under systemd (the
 * JOURNAL_STREAM variable names stderr) each line carries its priority as a
 * "<N>" prefix for the journal; otherwise it starts with the wall-clock time.
 *
 * Threads: tescontrol is one thread; cp_log may be called from any thread but
 * the level is set once at start-up, before any other thread exists.
 */
#ifndef TES_CONTROLPLANE_LOG_H
#define TES_CONTROLPLANE_LOG_H

#include <stdbool.h>

enum cp_level {
	CP_ERR = 3,
	CP_WARN = 4,
	CP_INFO = 6,
	CP_DEBUG = 7,
};

void cp_log_init(enum cp_level level);
void cp_log_set_level(enum cp_level level);
/* "error", "warn", "info", "debug"; false if name is none of them. */
bool cp_log_level_parse(const char *name, enum cp_level *out);
bool cp_log_enabled(enum cp_level level);

void cp_log(enum cp_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define cp_err(...) cp_log(CP_ERR, __VA_ARGS__)
#define cp_warn(...) cp_log(CP_WARN, __VA_ARGS__)
#define cp_info(...) cp_log(CP_INFO, __VA_ARGS__)
#define cp_debug(...) cp_log(CP_DEBUG, __VA_ARGS__)

#endif
