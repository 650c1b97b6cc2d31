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

#include "dataplane/kio.h"
#include "gateway/session/exdetect.h"
#include "gateway/observe/log.h"
#include "gateway/session/smtp.h"

#define CONFIG_DEFAULT_FILE "/etc/tesgate/tesgate.conf"

struct tes_config {
	struct sockaddr_storage listen;
	unsigned workers;
	unsigned ncpus;
	int cpus[KIO_MAX_WORKERS];

	char hostname[256];
	char banner[256];
	struct smtp_limits limits;

	unsigned idle_timeout; /* seconds */
	unsigned session_timeout;
	unsigned shutdown_grace;
	unsigned max_connections;
	unsigned max_connections_per_source;
	/* slow clients (gateway/conn/conn.c): octets per second a client must send,
	 * on average over each window of min_data_rate_window seconds; 0: off */
	unsigned min_data_rate;
	unsigned min_data_rate_window;

	/* after start-up, run as this user, with no capabilities; empty: stay
	 * as started (root: warned loudly).  docs/security.md */
	char user[64];

	char delivery[16]; /* backend name: "spool", "smtp" or "discard" */
	char spool_dir[PATH_MAX];
	unsigned delivery_threads;
	/* free space kept on spool_dir's file system (spool and relay spill
	 * files): below it new messages get 452 4.3.1 */
	uint64_t spool_min_free;

	/* delivery = smtp (gateway/delivery/relay.h) */
	char relay_host[256];
	unsigned relay_port;
	char relay_socket[108]; /* sun_path */
	char relay_helo_name[256];
	unsigned relay_threads;
	unsigned relay_max_connections;
	unsigned relay_max_queue;
	unsigned relay_connect_timeout; /* seconds */
	unsigned relay_command_timeout;
	unsigned relay_data_timeout;
	unsigned relay_idle_timeout;
	uint64_t relay_memory_per_message;
	uint64_t relay_memory_total;
	/* delivery = discard needs this too: it loses every message */
	bool i_understand_discard_loses_mail;

	char catalog_builds[PATH_MAX]; /* empty: look in the installed data */
	char catalog_policy[PATH_MAX]; /* directory, then the source tree */

	char control_socket[108]; /* the limit of a unix socket address */
	char gateway_id[64];
	char policy_file[PATH_MAX];
	bool follow_test_clock;
	/* "ADDRESS:PORT" of the Prometheus endpoint, or empty: none */
	char metrics_listen[64];
	/* One JSON line per throttle, block or drop verdict (gateway/observe/verdictlog.h):
	 * an absolute path, "stdout" or "-", or empty: off */
	char verdict_log[PATH_MAX];

	/* STARTTLS (gateway/session/tls.h): both paths empty means no TLS */
	char tls_cert[PATH_MAX];
	char tls_key[PATH_MAX];
	bool tls_request_client_cert;
	char tls_client_ca[PATH_MAX]; /* CAs for client certificates; "": none */
	unsigned tls_ticket_lifetime; /* seconds; 0: no session tickets */

	/* io = dpdk: the SMTP engine on the userspace stack over a DPDK port
	 * (gateway/conn/dpdk.h) instead of kernel sockets */
	bool io_dpdk;
	char dpdk_args[256]; /* EAL arguments, split on spaces */
	char dpdk_addr[24];  /* the stack's IPv4 address, A.B.C.D/len */
	unsigned dpdk_port;
	/* FOR TESTS ONLY: packet impairment on every queue
	 * (dataplane/dpdk/impair.h syntax); empty: off */
	char dpdk_impair[128];

	struct exdetect_config exdetect;
	enum log_level log_level;
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

/* The engine's view.  Its strings point into c, which must outlive it. */
void config_smtp(const struct tes_config *c, struct smtp_config *out);

/* The TLS layer's view: false (and out unused) when TLS is not configured.
 * Its strings point into c. */
struct tls_server_config;
bool config_tls(const struct tes_config *c, struct tls_server_config *out);

/* The catalog files to load: the configured ones, or the first pair found in
 * the installed data directory, then the source tree.  false when neither
 * is configured and none is found. */
bool config_catalog_paths(const struct tes_config *c, char *builds, char *policy, size_t len);

/* Parse "192.0.2.1:25" or "[2001:db8::1]:25". */
bool config_parse_listen(const char *s, struct sockaddr_storage *out);

/* Print every key with its default, as the example file has them. */
void config_print_keys(void);

#endif
