/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tesgate's configuration: a plain `key = value` file, every key with a
 * default, then command-line overrides.  docs/configuration.md and
 * etc/tesgate.conf.example list the keys; the table in config.c is the
 * single place they are defined.
 *
 * Threading: filled on the main thread before any worker starts, read-only
 * afterwards.
 */
#ifndef TES_GATEWAY_CONFIG_H
#define TES_GATEWAY_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "gateway/conn/conn.h"
#include "gateway/conn/dpdk.h"
#include "gateway/conn/transport.h"
#include "gateway/delivery/backends.h"
#include "gateway/observe/log.h"
#include "gateway/observe/metrics.h"
#include "gateway/observe/verdictlog.h"
#include "gateway/session/exdetect.h"
#include "gateway/session/smtp.h"
#include "gateway/session/tls.h"
#include "gateway/state/ctlclient.h"

#define CONFIG_DEFAULT_FILE "/etc/tesgate/tesgate.conf"

/* Every part's settings, each in the struct the part owns and reads; the
 * rest is start-up's own (main.c).  config.c parses into them and checks
 * what spans parts; no part includes this header. */
struct tes_config {
	/* start-up's own */
	char hostname[256]; /* greeting, EHLO, 421 lines; relay HELO and gateway_id default */
	/* after start-up, run as this user, with no capabilities; empty: stay
	 * as started (root: warned loudly).  docs/security.md */
	char user[64];
	bool io_dpdk; /* io = dpdk: the userspace stack (conn/dpdk.h), not kernel sockets */
	unsigned shutdown_grace;       /* seconds */
	char catalog_builds[PATH_MAX]; /* empty: look in the installed data */
	char catalog_policy[PATH_MAX]; /* directory, then the source tree */
	char policy_file[PATH_MAX];    /* the policy until tescontrol sends one */
	enum log_level log_level;

	struct gw_io_settings io;            /* conn/transport.h: both transports */
	struct gw_settings conn;             /* conn/conn.h: the session glue */
	struct dpgw_settings dpdk;           /* conn/dpdk.h: io = dpdk */
	struct smtp_settings smtp;           /* session/smtp.h */
	struct tls_settings tls;             /* session/tls.h: STARTTLS */
	struct exdetect_config exdetect;     /* session/exdetect.h */
	struct delivery_settings delivery;   /* delivery/backends.h, delivery/relay.h */
	struct ctlclient_settings control;   /* state/ctlclient.h */
	struct metrics_settings metrics;     /* observe/metrics.h */
	struct verdictlog_settings verdicts; /* observe/verdictlog.h */
};

/* The embedded defaults (host name from gethostname). */
void config_defaults(struct tes_config *c);

/* Read a file on top of what c holds.  false with err set to
 * "FILE:LINE: KEY: what is wrong" on the first bad line; c is then partly
 * updated and must not be used. */
bool config_load(struct tes_config *c, const char *path, char *err, size_t errlen);

/* Set one key from text (the command line uses this too).  false with err
 * set to what is wrong with the value. */
bool config_set(struct tes_config *c, const char *key, const char *value, char *err, size_t errlen);

/* Checks across keys, after everything is set. */
bool config_check(const struct tes_config *c, char *err, size_t errlen);

/* The catalog files to load: the configured ones, or the first pair found in
 * the installed data directory, then the source tree.  false when neither
 * is configured and none is found. */
bool config_catalog_paths(const struct tes_config *c, char *builds, char *policy, size_t len);

/* Parse "192.0.2.1:25" or "[2001:db8::1]:25". */
bool config_parse_listen(const char *s, struct sockaddr_storage *out);

/* Print every key with its default, as the example file has them. */
void config_print_keys(void);

#endif
