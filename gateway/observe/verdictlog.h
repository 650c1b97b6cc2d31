/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The per-verdict log (verdict_log in tesgate.conf): one JSON line for each
 * enforcement verdict that is not "accept" (throttle, block, drop), beside
 * the state-change events tescontrol writes.
 *
 * Workers (kio threads or DPDK lcores) must not make system calls, so a
 * worker only copies its record into its own single-producer ring; a writer
 * thread owned by this module empties the rings every few milliseconds,
 * formats the lines and writes them.  A full ring drops the record and
 * counts it: enforcement never waits for its log.
 *
 * Threading: verdictlog_open and verdictlog_close on the main thread;
 * verdictlog_push on worker `worker` only (one producer per ring);
 * verdictlog_reopen from any thread or a signal handler;
 * verdictlog_stats from any thread.
 */
#ifndef TES_GATEWAY_OBSERVE_VERDICTLOG_H
#define TES_GATEWAY_OBSERVE_VERDICTLOG_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "enforce/build.h"
#include "enforce/decide.h"

struct verdictlog;

/* The verdict log's settings (docs/configuration.md); config.c parses the
 * configuration into them. */
struct verdictlog_settings {
	/* an absolute path (reopened on SIGHUP), "stdout" or "-", or "": off */
	char path[PATH_MAX];
};

enum vlog_at {
	VLOG_AT_CONNECT = 0, /* a "drop" source closed before the greeting */
	VLOG_AT_MAIL,        /* MAIL FROM from a source the state knows */
	VLOG_AT_HEADERS,     /* the end of an Exchange message's headers */
};

struct vlog_event {
	int64_t time;     /* seconds since the epoch, the deciding clock */
	uint8_t at;       /* enum vlog_at */
	uint8_t action;   /* enum tes_action */
	uint8_t reason;   /* enum tes_reason */
	uint8_t stage;    /* 1..8, 0 when no stage clock applied */
	uint8_t family;   /* enum ex_family, with has_build */
	bool has_build;   /* build and family are known */
	uint16_t code;    /* the SMTP reply's code; 0 for a silent drop */
	char enhanced[8]; /* its enhanced status code */
	uint32_t tenant;  /* 0: unknown */
	struct tes_addr source;
	struct ex_build build;
	char server[256]; /* the Exchange server's name as seen (lower-case); "" unknown */
};

/* where: "stdout" or "-" for standard output, otherwise an absolute path
 * (opened O_APPEND, created mode 0640).  workers: rings to make.  NULL
 * with *err set when the file cannot be opened or a thread made. */
struct verdictlog *verdictlog_open(const char *where, unsigned workers, char *err, size_t errlen);
/* Hands the record to the writer.  false when the worker's ring is full
 * or worker is not below the workers given to verdictlog_open (the record
 * is dropped and counted).  No system call, no lock. */
bool verdictlog_push(struct verdictlog *vl, unsigned worker, const struct vlog_event *ev);
/* Reopen the path before the next line (log rotation; SIGHUP).  If it
 * cannot be opened the old descriptor stays in use. */
void verdictlog_reopen(struct verdictlog *vl);

struct verdictlog_stats {
	uint64_t lines;        /* lines written */
	uint64_t dropped;      /* records dropped: a ring was full */
	uint64_t write_errors; /* lines lost to a failed write */
	uint64_t reopens;      /* successful reopens */
};
void verdictlog_stats(const struct verdictlog *vl, struct verdictlog_stats *out);
/* Registers group "verdictlog" (registry.h).  0, or -1. */
struct obs_registry;
int verdictlog_export(const struct verdictlog *vl, struct obs_registry *r);

/* Writes what the rings still hold, stops the thread, closes the file.
 * The workers must have stopped. */
void verdictlog_close(struct verdictlog *vl);

/* One line (with its newline) for ev into buf; the length, or 0 when it
 * does not fit.  Exposed for the unit test. */
size_t verdictlog_format(const struct vlog_event *ev, char *buf, size_t len);

#endif
