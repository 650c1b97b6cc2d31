/* SPDX-License-Identifier: BSD-3-Clause */
#include "controlplane/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static enum cp_level log_level = CP_INFO;
static bool journal;

void cp_log_init(enum cp_level level)
{
	log_level = level;
	journal = getenv("JOURNAL_STREAM") != NULL;
}

void cp_log_set_level(enum cp_level level)
{
	log_level = level;
}

bool cp_log_level_parse(const char *name, enum cp_level *out)
{
	static const struct {
		const char *name;
		enum cp_level level;
	} names[] = {
		{ "error", CP_ERR },
		{ "warn", CP_WARN },
		{ "info", CP_INFO },
		{ "debug", CP_DEBUG },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(name, names[i].name) == 0) {
			*out = names[i].level;
			return true;
		}
	}
	return false;
}

bool cp_log_enabled(enum cp_level level)
{
	return level <= log_level;
}

static const char *level_name(enum cp_level l)
{
	switch (l) {
	case CP_ERR:
		return "error";
	case CP_WARN:
		return "warn";
	case CP_INFO:
		return "info";
	case CP_DEBUG:
		return "debug";
	}
	return "?";
}

void cp_log(enum cp_level level, const char *fmt, ...)
{
	char line[2048];
	int n = 0;
	va_list ap;

	if (!cp_log_enabled(level))
		return;
	if (journal) {
		n = snprintf(line, sizeof(line), "<%d>%s: ", (int)level, level_name(level));
	} else {
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = snprintf(line, sizeof(line),
			     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s: ", tm.tm_year + 1900,
			     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			     ts.tv_nsec / 1000000, level_name(level));
	}
	if (n < 0)
		n = 0;
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	/* Names in messages come from peers: a newline in one must not forge
	 * a log line. */
	for (char *p = line; *p; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	}
	/* One write per line so that lines from a restarted daemon and its
	 * predecessor's last words never interleave mid-line. */
	fprintf(stderr, "%s\n", line);
	fflush(stderr);
}
