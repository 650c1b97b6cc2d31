/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tesgate: the gateway process, on kernel sockets (kio) or on the userspace
 * TCP stack over a DPDK port (io = dpdk, gateway/conn/dpdk.c).
 *
 * The main thread parses the configuration, loads the catalog, starts the
 * delivery threads and the kio workers, and then only waits for signals
 * (they are blocked everywhere else, so no handler ever runs inside a
 * worker).  Shutdown order matters: workers stop first (no new messages),
 * then the delivery threads finish what was submitted, then the verdicts
 * that found their worker gone are run and freed.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "enforce/catalog.h"
#include "gateway/delivery/backends.h"
#include "gateway/config.h"
#include "gateway/conn/conn.h"
#include "gateway/conn/dpdk.h"
#include "gateway/conn/kernel.h"
#include "gateway/observe/dptelemetry.h"
#include "gateway/state/ctlclient.h"
#include "gateway/state/enfstate.h"
#include "gateway/state/export.h"
#include "gateway/observe/log.h"
#include "gateway/observe/metrics.h"
#include "gateway/observe/registry.h"
#include "gateway/delivery/spool.h"
#include "gateway/session/tls.h"
#include "gateway/observe/verdictlog.h"
#include "base/privdrop.h"

#ifndef TES_VERSION
#define TES_VERSION "unknown"
#endif

#define LINGER_MS 10000

static void usage(FILE *f)
{
	fprintf(f, "Usage: tesgate [options]\n"
		   "\n"
		   "The tesgate SMTP gateway on kernel sockets.  It accepts mail, reads the\n"
		   "sending Exchange server's build from the Received headers, logs it with its\n"
		   "compliance, and stores each message in the spool (new/<id>.eml + <id>.env).\n"
		   "Without -c it runs on its embedded defaults; options override the file.\n"
		   "\n"
		   "Options:\n"
		   "  -c, --config FILE     read settings from FILE (key = value lines)\n"
		   "  -l, --listen ADDR:PORT  accept SMTP here (default 127.0.0.1:2525;\n"
		   "                        IPv6 as [::1]:2525; port 0 picks a free one)\n"
		   "  -s, --spool DIR       spool directory (default /var/lib/tesgate/spool)\n"
		   "  -w, --workers N       worker threads (default 1)\n"
		   "      --tls-cert FILE   STARTTLS certificate (PEM; with --tls-key)\n"
		   "      --tls-key FILE    its private key (PEM, unencrypted)\n"
		   "      --control PATH    tescontrol's gateway socket (default\n"
		   "                        /run/tescontrol/gateway.sock; '' for none)\n"
		   "  -u, --user NAME       after start-up run as NAME with no capabilities\n"
		   "                        (started as root; see docs/security.md)\n"
		   "      --check-config    check the settings, the catalog and the TLS pair, then "
		   "exit\n"
		   "      --print-defaults  print every setting with its default, then exit\n"
		   "  -h, --help            this text\n"
		   "  -V, --version         print the version\n"
		   "\n"
		   "Signals: SIGTERM or SIGINT stop gracefully (421 to idle clients, messages in\n"
		   "flight finished, at most shutdown_grace seconds; a second signal stops at\n"
		   "once).  SIGHUP reloads the TLS certificate and key from their files; on\n"
		   "an error the old ones stay in force.\n"
		   "See docs/configuration.md for every setting.\n");
}

/* The stop line: the figures an operator compares run to run, from the
 * registry (a group that is not there, the spool's with another backend,
 * counts 0). */
static const struct obs_item stop_line[] = {
	{ "connections", "conn", "connections_accepted" },
	{ "refused_global", "conn", "connections_refused_global" },
	{ "refused_source", "conn", "connections_refused_source" },
	{ "timeouts_idle", "conn", "timeouts_idle" },
	{ "timeouts_session", "conn", "timeouts_session" },
	{ "shutdown_forced", "conn", "shutdown_forced" },
	{ "bytes_in", "conn", "bytes_in" },
	{ "bytes_out", "conn", "bytes_out" },
	{ "sessions", "conn", "sessions" },
	{ "accepted", "conn", "messages_accepted" },
	{ "refused", "conn", "messages_refused" },
	{ "exchange", "conn", "exchange_seen" },
	{ "not_exchange", "conn", "not_exchange" },
	{ "stored", "spool", "stored" },
	{ "spool_failed", "spool", "failed" },
	{ "starttls", "conn", "tls_starts" },
	{ "tls_full", "conn", "tls_handshakes_full" },
	{ "tls_resumed", "conn", "tls_handshakes_resumed" },
	{ "tls_failed", "conn", "tls_handshakes_failed" },
	{ "slow_closed", "conn", "slow_closed" },
	{ "no_space", "conn", "no_space" },
};

static void log_stats(const struct obs_registry *reg)
{
	char line[1024];

	obs_line(reg, "stats", stop_line, sizeof(stop_line) / sizeof(stop_line[0]), line,
		 sizeof(line));
	log_msg(LOG_INFO, "%s", line);
}

/* The certificate and key are loaded at start-up, so a bad pair stops the
 * gateway before it listens rather than at the first STARTTLS.  *out stays
 * NULL when TLS is not configured. */
static int load_tls(const struct tes_config *cfg, struct tls_server_ctx **out)
{
	struct tls_server_config tc;
	char err[512], desc[512];

	*out = NULL;
	if (!tls_settings_config(&cfg->tls, &tc))
		return 0;
	*out = tls_server_ctx_new(&tc, err, sizeof(err));
	if (!*out) {
		fprintf(stderr, "tesgate: tls_cert/tls_key: %s\n", err);
		return -1;
	}
	tls_server_ctx_describe(*out, desc, sizeof(desc));
	log_msg(LOG_INFO, "tls certificate %s loaded: %s", cfg->tls.cert, desc);
	return 0;
}

/* SIGHUP: the files are read again; a pair that does not load leaves the
 * one in force (tls_server_ctx_reload builds the new context aside). */
static void reload_tls(const struct tes_config *cfg, struct tls_server_ctx *tls)
{
	char err[512], desc[512];

	if (!tls) {
		log_msg(LOG_INFO,
			"SIGHUP: no TLS configured (tls_cert, tls_key): nothing to reload");
		return;
	}
	if (tls_server_ctx_reload(tls, cfg->tls.cert, cfg->tls.key, err, sizeof(err)) != 0) {
		tls_server_ctx_describe(tls, desc, sizeof(desc));
		log_msg(LOG_ERROR, "SIGHUP: TLS reload failed: %s; still serving %s", err, desc);
		return;
	}
	tls_server_ctx_describe(tls, desc, sizeof(desc));
	log_msg(LOG_INFO, "SIGHUP: tls certificate reloaded (generation %llu): %s",
		(unsigned long long)tls_server_ctx_generation(tls), desc);
}

static uint64_t mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec;
}

/* Every connection is a descriptor: take the hard limit, and say so when
 * even that cannot hold max_connections (accept then fails and pauses). */
static void raise_fd_limit(unsigned max_conns)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)max_conns + 64)
		log_msg(LOG_WARN,
			"open-file limit %llu is below max_connections (%u) + 64: raise it "
			"(ulimit -n, LimitNOFILE=)",
			(unsigned long long)rl.rlim_cur, max_conns);
}

/* The catalog: configured files must load; found ones must load too (a
 * broken shipped file is a fault to report); none found only warns. */
static int load_catalog(const struct tes_config *cfg, struct catalog **out)
{
	char builds[PATH_MAX], policy[PATH_MAX];
	bool explicit = cfg->catalog_builds[0] || cfg->catalog_policy[0];

	*out = NULL;
	if (!config_catalog_paths(cfg, builds, policy, sizeof(builds))) {
		if (explicit) {
			fprintf(stderr, "tesgate: catalog_builds and catalog_policy must be set "
					"together\n");
			return -1;
		}
		log_msg(LOG_WARN, "no build catalog found: Exchange servers are detected and "
				  "logged, compliance unknown");
		return 0;
	}
	struct catalog_error err;
	memset(&err, 0, sizeof(err));
	*out = catalog_load(builds, policy, &err);
	if (!*out) {
		fprintf(stderr, "tesgate: %s:%u: %s\n", err.file, err.line, err.msg);
		return -1;
	}
	log_msg(LOG_INFO, "catalog %s loaded from %s and %s", catalog_version(*out), builds,
		policy);
	return 0;
}

/* enfstate_free needs a registered RCU thread; by now no other uses it. */
static void state_free(struct enfstate *st)
{
	if (!st)
		return;
	enfstate_thread_register();
	enfstate_free(st);
	enfstate_thread_unregister();
}

/* The policy the gateway decides with until tescontrol sends its own. */
static int load_policy(const struct tes_config *cfg, struct tes_policy *pol)
{
	struct tes_policy_error err;

	tes_policy_default(pol);
	if (!cfg->policy_file[0])
		return 0;
	if (tes_policy_load(cfg->policy_file, pol, &err) != 0) {
		char msg[512];
		tes_policy_error_format(&err, msg, sizeof(msg));
		fprintf(stderr, "tesgate: %s\n", msg);
		return -1;
	}
	return 0;
}

/* Counters the control client reports to tescontrol (arg: the registry). */
static void report_counters(void *arg, json_t *c)
{
	static const struct {
		const char *json, *key;
	} counters[] = {
		{ "sessions", "sessions" },
		{ "messages_accepted", "messages_accepted" },
		{ "messages_refused", "messages_refused" },
		{ "exchange_seen", "exchange_seen" },
		{ "early_drops", "early_drops" },
		{ "tls_handshakes_full", "tls_handshakes_full" },
		{ "tls_handshakes_resumed", "tls_handshakes_resumed" },
		{ "tls_handshakes_failed", "tls_handshakes_failed" },
		{ "verdict_mail_accept", "mail_verdicts/accept" },
		{ "verdict_headers_accept", "header_verdicts/accept" },
		{ "verdict_mail_throttle", "mail_verdicts/throttle" },
		{ "verdict_headers_throttle", "header_verdicts/throttle" },
		{ "verdict_mail_block", "mail_verdicts/block" },
		{ "verdict_headers_block", "header_verdicts/block" },
		{ "verdict_mail_drop", "mail_verdicts/drop" },
		{ "verdict_headers_drop", "header_verdicts/drop" },
	};

	for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
		uint64_t v = 0;

		obs_value(arg, "conn", counters[i].key, &v);
		json_object_set_new(c, counters[i].json, json_integer((json_int_t)v));
	}
}

/* ---- privileges (docs/security.md) ----
 * Started as root, tesgate binds its port, initialises the EAL and its
 * port, opens the spool, the TLS files and the logs, and then becomes
 * `user` with no capability at all, before its workers take the first
 * connection.  Started as another user with capabilities (systemd's
 * AmbientCapabilities=CAP_NET_BIND_SERVICE), it drops them right after
 * binding, while it has one thread: capabilities belong to each thread. */

/* What tesgate writes after the switch must be the user's: the spool's
 * directories, the relay's spill directory, the verdict log. */
static int give_files(const struct tes_config *cfg, const struct backends *bk,
		      const struct priv_user *pu)
{
	char err[512];

	if (bk->sp && spool_give(bk->sp, pu->uid, pu->gid, err, sizeof(err)) != 0) {
		fprintf(stderr, "tesgate: %s\n", err);
		return -1;
	}
	if (bk->rl && relay_give(bk->rl, pu->uid, pu->gid, err, sizeof(err)) != 0) {
		fprintf(stderr, "tesgate: %s\n", err);
		return -1;
	}
	if (cfg->verdicts.path[0] == '/' &&
	    fchownat(AT_FDCWD, cfg->verdicts.path, pu->uid, pu->gid, AT_SYMLINK_NOFOLLOW) != 0 &&
	    errno != ENOENT) {
		fprintf(stderr, "tesgate: verdict_log %s: cannot give it to %s: %s\n",
			cfg->verdicts.path, pu->name, strerror(errno));
		return -1;
	}
	return 0;
}

/* Things that work at start-up and would fail later, once the files are
 * opened again as the user: said now rather than at the first SIGHUP. */
static void check_access(const struct tes_config *cfg)
{
	unsigned uid = (unsigned)getuid();

	if (cfg->tls.cert[0] &&
	    (access(cfg->tls.cert, R_OK) != 0 || access(cfg->tls.key, R_OK) != 0))
		log_msg(LOG_WARN,
			"tls: %s or %s is not readable by uid %u: a SIGHUP reload will fail (make "
			"them readable by its group, mode 0640)",
			cfg->tls.cert, cfg->tls.key, uid);
	if (cfg->verdicts.path[0] == '/') {
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), "%s", cfg->verdicts.path);
		char *slash = strrchr(dir, '/');
		if (slash == dir)
			slash[1] = '\0';
		else
			*slash = '\0';
		if (access(dir, W_OK | X_OK) != 0)
			log_msg(LOG_WARN,
				"verdict_log: %s is not writable by uid %u: reopening a rotated "
				"log "
				"(SIGHUP) will fail",
				dir, uid);
	}
	if (cfg->control.socket[0] && access(cfg->control.socket, F_OK) == 0 &&
	    access(cfg->control.socket, W_OK) != 0)
		log_msg(LOG_WARN,
			"control_socket %s is not writable by uid %u: tesgate cannot reconnect to "
			"tescontrol (its gateway_group must be one of this user's groups)",
			cfg->control.socket, uid);
}

/* Says what every thread holds.  must_be_clean: root was given up, so any
 * capability left is a failure to stop for. */
static int report_privileges(bool must_be_clean)
{
	struct priv_state st;
	char line[1400];

	if (priv_state(&st) != 0) {
		log_msg(LOG_WARN, "privileges: cannot read /proc/self: %s", strerror(errno));
		return must_be_clean ? -1 : 0;
	}
	priv_state_format(&st, line, sizeof(line));
	if ((st.eff | st.prm) == 0) {
		log_msg(LOG_INFO, "privileges: %s", line);
		return 0;
	}
	if (must_be_clean) {
		log_msg(LOG_ERROR, "privileges: %s: capabilities left after the switch", line);
		return -1;
	}
	log_msg(LOG_WARN, "privileges: %s%s", line,
		st.euid == 0 ? ""
			     : ": threads made before the drop keep what they had (start as root "
			       "with user set, or without capabilities)");
	return 0;
}

/* After everything is open: become the user (started as root), or say
 * loudly why not.  early: the capabilities were dropped already, right after
 * binding.  -1: stop (something is held that should not be). */
static int settle_privileges(const struct tes_config *cfg, const struct backends *bk,
			     const struct priv_user *pu, bool early)
{
	char err[512];

	if (geteuid() == 0 && (!pu->set || pu->uid == 0)) {
		for (int i = 0; i < 3; i++)
			log_msg(LOG_WARN,
				"RUNNING AS ROOT: %s, so tesgate keeps root and every capability "
				"while it serves; set user = tesgate (tools/setup.sh makes that "
				"user) "
				"or pass --user",
				pu->set ? "user = root" : "no user is configured");
		return report_privileges(false);
	}
	if (geteuid() == 0) {
		if (give_files(cfg, bk, pu) != 0)
			return -1;
		if (priv_drop(pu, 0, err, sizeof(err)) != 0) {
			fprintf(stderr, "tesgate: giving up root: %s\n", err);
			return -1;
		}
		log_msg(LOG_INFO, "privileges: now user %s (uid %u, gid %u, %d groups)", pu->name,
			(unsigned)pu->uid, (unsigned)pu->gid, pu->ngroups);
		check_access(cfg);
		return report_privileges(true);
	}
	if (!early) {
		if (priv_drop(pu, 0, err, sizeof(err)) != 0) {
			fprintf(stderr, "tesgate: dropping capabilities: %s\n", err);
			return -1;
		}
		if (err[0])
			log_msg(LOG_WARN, "privileges: %s", err);
	}
	check_access(cfg);
	return report_privileges(false);
}

/* The transport's counters after it is gone: the stop line's.  No
 * destroy: there is nothing left to free. */
static void frozen_stats(const void *t, struct gw_io_stats *out)
{
	*out = *(const struct gw_io_stats *)t;
}

static const struct gw_io_ops frozen_io = { .stats = frozen_stats };

/* tes_tesgate_build_info: always 1, the version in a label. */
static bool build_read(const void *arg, unsigned i, void *snap)
{
	static const uint64_t one = 1;

	(void)arg;
	(void)i;
	memcpy(snap, &one, sizeof(one));
	return true;
}

static int register_build(struct obs_registry *reg)
{
	static const char *const version[] = { TES_VERSION };
	static const struct obs_row rows[] = {
		{ .name = "tes_tesgate_build_info",
		  .help = "Always 1; the version in a label",
		  .type = OBS_GAUGE,
		  .l2 = "version",
		  .names = version },
	};
	struct obs_group g = {
		.name = "build",
		.rows = rows,
		.nrows = 1,
		.size = sizeof(uint64_t),
		.read = build_read,
	};

	return obs_add(reg, &g);
}

/* The transport under the gateway (gateway/conn/transport.h): kernel
 * sockets (kernel.c) or the userspace stack on a DPDK port (dpdk.c, io =
 * dpdk).  Everything else (the session layer, control client, metrics,
 * signals, shutdown order) is shared.  NULL ops: none made yet; the
 * frozen counters (no destroy): gone already. */
static void io_destroy(struct gw_io *io)
{
	if (!io->ops || !io->ops->destroy)
		return;
	io->ops->destroy(io->t);
	io->ops = NULL;
	io->t = NULL;
}

/* ---- start-up and teardown ----
 * Everything main holds, and one function per step.  main runs the steps
 * in order and, from the first that fails (or once the gateway has
 * stopped), undoes what was done in the reverse order: one ladder for both
 * ways out.  Each step says on stderr why it failed. */

struct gate {
	struct tes_config cfg;
	const char *conf_path;
	bool check_only;
	struct priv_user pu;
	struct catalog *cat;
	struct tes_policy pol;
	struct tls_server_ctx *tls;
	sigset_t sigs;
	struct gw_io io; /* the transport (ops NULL: none) */
	bool early_drop; /* capabilities dropped right after binding */
	struct backends bk;
	struct delivery_backend backend;
	struct obs_registry *reg;
	struct enfstate *st;
	struct verdictlog *vl;
	struct smtp_config smtp;
	struct gw *g;
	struct dpgw *dpg;     /* io = dpdk */
	struct ctlclient *cc; /* NULL: no control plane */
	struct gw_metrics *met;
	bool started;                /* the workers were started (perhaps not all) */
	bool stopped;                /* ... and have exited */
	struct gw_io_stats io_final; /* the transport's counters once it is gone */
	char where[80];
};

/* Options that set a configuration key: one row each, applied after the
 * file so the command line wins. */
static const struct {
	int opt;
	const char *key, *flag;
} overrides[] = {
	{ 'l', "listen", "--listen" },   { 's', "spool_dir", "--spool" },
	{ 'w', "workers", "--workers" }, { 'T', "tls_cert", "--tls-cert" },
	{ 'K', "tls_key", "--tls-key" }, { 'S', "control_socket", "--control" },
	{ 'u', "user", "--user" },
};
enum { NOVER = sizeof(overrides) / sizeof(overrides[0]) };

/* The command line: over[i] is overrides[i]'s value, or NULL.  -1: go on;
 * otherwise the exit status (help, version, a bad option). */
static int parse_options(struct gate *gt, int argc, char **argv, const char **over)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "listen", required_argument, NULL, 'l' },
		{ "spool", required_argument, NULL, 's' },
		{ "workers", required_argument, NULL, 'w' },
		{ "tls-cert", required_argument, NULL, 'T' },
		{ "tls-key", required_argument, NULL, 'K' },
		{ "control", required_argument, NULL, 'S' },
		{ "user", required_argument, NULL, 'u' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "print-defaults", no_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int o;

	while ((o = getopt_long(argc, argv, "c:l:s:w:u:hV", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			gt->conf_path = optarg;
			break;
		case 'C':
			gt->check_only = true;
			break;
		case 'P':
			config_print_keys();
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("tesgate %s\n", TES_VERSION);
			return 0;
		default: {
			int i = 0;
			while (i < NOVER && overrides[i].opt != o)
				i++;
			if (i == NOVER) {
				usage(stderr);
				return 2;
			}
			over[i] = optarg;
			break;
		}
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tesgate: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	return -1;
}

/* The configuration: defaults, the file, the command line's overrides, the
 * checks across keys, and the user to become.  -1: go on; otherwise the
 * exit status. */
static int configure(struct gate *gt, int argc, char **argv)
{
	const char *over[NOVER] = { NULL };
	struct tes_config *cfg = &gt->cfg;
	char err[1024];
	int rc = parse_options(gt, argc, argv, over);

	if (rc >= 0)
		return rc;
	config_defaults(cfg);
	if (gt->conf_path && config_load(cfg, gt->conf_path, err, sizeof(err))) {
		fprintf(stderr, "tesgate: %s\n", err);
		return 1;
	}
	for (int i = 0; i < NOVER; i++) {
		if (over[i] && config_set(cfg, overrides[i].key, over[i], err, sizeof(err))) {
			fprintf(stderr, "tesgate: %s: %s\n", overrides[i].flag, err);
			return 1;
		}
	}
	if (config_check(cfg, err, sizeof(err))) {
		fprintf(stderr, "tesgate: %s%s%s\n", gt->conf_path ? gt->conf_path : "",
			gt->conf_path ? ": " : "", err);
		return 1;
	}
	log_set_level(cfg->log_level);
	if (priv_lookup(cfg->user, &gt->pu, err, sizeof(err)) != 0) {
		fprintf(stderr, "tesgate: user: %s\n", err);
		return 1;
	}
	return -1;
}

/* What is read from files before anything runs: catalog, policy, the TLS
 * pair. */
static int load_inputs(struct gate *gt)
{
	if (load_catalog(&gt->cfg, &gt->cat) != 0 || load_policy(&gt->cfg, &gt->pol) != 0 ||
	    load_tls(&gt->cfg, &gt->tls) != 0)
		return -1;
	return 0;
}

static void free_inputs(struct gate *gt)
{
	tls_server_ctx_free(gt->tls); /* every tls_conn went with its connection */
	catalog_free(gt->cat);
}

/* Before any thread exists, so every thread inherits what it sets
 * (no_new_privs, no bounding, inheritable or ambient capabilities; the
 * blocked signals). */
static int begin_process(struct gate *gt)
{
	char err[512];

	if (priv_begin(err, sizeof(err)) != 0) {
		fprintf(stderr, "tesgate: %s\n", err);
		return -1;
	}
	if (err[0])
		log_msg(LOG_INFO, "privileges: %s", err);
	sigemptyset(&gt->sigs);
	sigaddset(&gt->sigs, SIGINT);
	sigaddset(&gt->sigs, SIGTERM);
	sigaddset(&gt->sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &gt->sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit(gt->cfg.io.max_connections);
	return 0;
}

/* Kernel sockets: bound first, while this is the only thread, so that a
 * capability needed only to bind (port 25 without root) is dropped from the
 * one thread there is.  io = dpdk: nothing yet (start_dpdk). */
static int bind_kernel(struct gate *gt)
{
	char err[512];

	if (gt->cfg.io_dpdk)
		return 0;
	if (gw_kernel_bind(&gt->cfg.io, LINGER_MS, &gt->io, err, sizeof(err)) != 0) {
		fprintf(stderr, "tesgate: %s\n", err);
		return -1;
	}
	if (geteuid() != 0) {
		if (priv_drop(&gt->pu, 0, err, sizeof(err)) != 0) {
			fprintf(stderr, "tesgate: dropping capabilities: %s\n", err);
			return -1;
		}
		if (err[0])
			log_msg(LOG_WARN, "privileges: %s", err);
		gt->early_drop = true;
	}
	return 0;
}

static int open_delivery(struct gate *gt)
{
	const struct backends_env env = {
		.hostname = gt->cfg.hostname,
		.workers = gt->cfg.io.workers,
		.polling = gt->cfg.io_dpdk,
		.max_message_size = gt->cfg.smtp.limits.max_message_size,
	};

	return backends_open(&gt->cfg.delivery, &env, &gt->bk, &gt->backend);
}

/* The counters registry and the enforcement state: filled here with the
 * local catalog and policy, then by the control thread (its only writer
 * from now on) with what tescontrol sends.  Main is a writer only while no
 * other thread is. */
static int make_state(struct gate *gt)
{
	gt->reg = obs_new();
	if (!gt->reg || register_build(gt->reg) != 0) {
		fprintf(stderr, "tesgate: out of memory\n");
		return -1;
	}
	gt->st = enfstate_new(&gt->pol, 0);
	if (!gt->st) {
		fprintf(stderr, "tesgate: cannot create the enforcement state: %s\n",
			strerror(errno));
		return -1;
	}
	enfstate_thread_register();
	if (gt->cat && enfstate_catalog_set(gt->st, gt->cat) == 0)
		gt->cat = NULL; /* st owns it now */
	enfstate_thread_unregister();
	return 0;
}

static void free_state(struct gate *gt)
{
	state_free(gt->st);
	obs_free(gt->reg);
}

static int open_verdicts(struct gate *gt)
{
	char err[512];

	if (!gt->cfg.verdicts.path[0])
		return 0;
	gt->vl = verdictlog_open(gt->cfg.verdicts.path, gt->cfg.io.workers, err, sizeof(err));
	if (!gt->vl) {
		fprintf(stderr, "tesgate: %s\n", err);
		return -1;
	}
	return 0;
}

/* The session layer, and its counters with the transport's and the
 * backend's (registered in the order /metrics shows them). */
static int make_gateway(struct gate *gt)
{
	smtp_config_set(&gt->smtp, gt->cfg.hostname, &gt->cfg.smtp);
	gt->smtp.smtputf8 = gt->bk.smtputf8;
	gt->smtp.starttls = gt->tls != NULL; /* offered only with a certificate in force */
	struct gw_params gp = {
		.verdicts = gt->vl,
		.smtp = &gt->smtp,
		.exdetect = &gt->cfg.exdetect,
		.catalog = NULL,
		.backend = &gt->backend,
		.st = gt->st,
		.tls = gt->tls,
		.hostname = gt->cfg.hostname,
		.workers = gt->cfg.io.workers,
		.set = gt->cfg.conn,
	};
	/* DPDK workers make no system calls, and a log line is one: theirs
	 * go through the log's ring to its writer thread. */
	if (gt->cfg.io_dpdk && log_async_start() != 0) {
		fprintf(stderr, "tesgate: cannot start the log writer thread\n");
		return -1;
	}
	gt->g = gw_new(&gp);
	if (!gt->g || gw_export(gt->g, &gt->io, gt->reg) != 0 ||
	    backends_export(&gt->bk, gt->reg) != 0) {
		fprintf(stderr, "tesgate: out of memory\n");
		return -1;
	}
	return 0;
}

/* stopped: the gateway ran and stopped, so its stop lines are written
 * (they read the sessions' counters: before gw_free). */
static void free_gateway(struct gate *gt, bool stopped)
{
	log_async_stop(); /* the workers' last lines, and their verdicts' */
	if (stopped) {
		backends_log_stats(&gt->bk, gt->reg);
		log_stats(gt->reg);
	}
	gw_free(gt->g);
}

/* The transport meets the gateway: io = dpdk starts here (the EAL makes its
 * threads with the signals blocked: only the main thread, the main lcore,
 * which does not poll, takes them); kernel sockets get their gateway. */
static int attach_transport(struct gate *gt)
{
	const struct tes_config *cfg = &gt->cfg;

	if (!cfg->io_dpdk) {
		gw_kernel_attach(&gt->io, gt->g);
		gw_kernel_where(&gt->io, gt->where, sizeof(gt->where));
		return 0;
	}
	struct dpgw_params dp = {
		.g = gt->g,
		.set = &cfg->dpdk,
		.io = &cfg->io,
		.linger_ms = LINGER_MS,
		.refuse_global = gw_refuse_global(gt->g),
		.refuse_source = gw_refuse_source(gt->g),
	};
	gt->dpg = dpgw_start(&dp);
	if (!gt->dpg)
		return -1;
	dpgw_io(gt->dpg, &gt->io);
	snprintf(gt->where, sizeof(gt->where), "%.50s port %u (io dpdk)", cfg->dpdk.addr,
		 cfg->dpdk.port);
	return 0;
}

static int start_control(struct gate *gt)
{
	const struct tes_config *cfg = &gt->cfg;

	if (!cfg->control.socket[0]) {
		log_msg(LOG_WARN, "control_socket is empty: no control plane, nothing is enforced");
		return 0;
	}
	struct ctlclient_params cp = {
		.socket_path = cfg->control.socket,
		.gateway_id = cfg->control.gateway_id[0] ? cfg->control.gateway_id : cfg->hostname,
		.st = gt->st,
		.workers = cfg->io.workers,
		.follow_test_clock = cfg->control.follow_test_clock,
		.counters = report_counters,
		.counters_arg = gt->reg,
	};
	gt->cc = ctlclient_start(&cp);
	if (!gt->cc) {
		fprintf(stderr, "tesgate: cannot start the control thread\n");
		return -1;
	}
	gw_set_control(gt->g, gt->cc);
	return 0;
}

static int start_workers(struct gate *gt)
{
	gt->started = true;
	if (gt->io.ops->start(gt->io.t) != 0)
		return -1;
	log_msg(LOG_INFO,
		"tesgate %s listening on %s (workers %u, hostname %s, delivery %s %s, starttls %s)",
		TES_VERSION, gt->where, gt->cfg.io.workers, gt->cfg.hostname, gt->backend.name,
		gt->bk.where, gt->tls ? "on" : "off");
	if (gt->tls)
		tls_server_ctx_tick(gt->tls, mono_s()); /* starts the ticket-key clock */
	return 0;
}

/* The workers are gone (stopped here if they were not): their counters are
 * final and kept for the stop line; the delivery threads finish what was
 * submitted, then the transport runs the verdicts that found their worker
 * gone and is freed. */
static void stop_workers(struct gate *gt)
{
	if (!gt->started)
		return;
	if (!gt->stopped) {
		gt->io.ops->stop(gt->io.t, 0);
		gt->io.ops->wait(gt->io.t, 5000);
	}
	gt->io.ops->stats(gt->io.t, &gt->io_final);
	backends_stop(&gt->bk);
	io_destroy(&gt->io);
	gt->io.ops = &frozen_io;
	gt->io.t = &gt->io_final;
}

/* The rest of the counters, and the exports that read them. */
static int start_exports(struct gate *gt)
{
	if (ctlclient_export(gt->cc, gt->reg) != 0 || enfstate_export(gt->st, gt->reg) != 0 ||
	    (gt->dpg && dpgw_export(gt->dpg, gt->reg) != 0) ||
	    (gt->vl && verdictlog_export(gt->vl, gt->reg) != 0)) {
		fprintf(stderr, "tesgate: cannot register the counters\n");
		return -1;
	}
	gt->met = gw_metrics_start(&gt->cfg.metrics, gt->reg);
	if (gt->dpg)
		dptel_start(gt->reg); /* DPDK's telemetry socket gets tesgate's commands too */
	return 0;
}

/* Before anything they read is freed. */
static void stop_exports(struct gate *gt)
{
	gw_metrics_stop(gt->met);
	if (gt->dpg)
		dptel_stop();
}

/* Signals until the workers have stopped: SIGHUP reloads the TLS pair and
 * reopens the verdict log; SIGTERM or SIGINT stop gracefully, a second one
 * at once. */
static void serve(struct gate *gt)
{
	const struct gw_io *io = &gt->io;
	bool stopping = false;

	for (;;) {
		struct timespec tick = { 0, 200 * 1000 * 1000 };
		siginfo_t si;
		int sig = sigtimedwait(&gt->sigs, &si, &tick);
		if (sig == SIGHUP) {
			reload_tls(&gt->cfg, gt->tls);
			verdictlog_reopen(gt->vl);
		} else if (sig == SIGINT || sig == SIGTERM) {
			if (!stopping) {
				log_msg(LOG_INFO, "%s: shutting down (grace %u s)",
					sig == SIGINT ? "SIGINT" : "SIGTERM",
					gt->cfg.shutdown_grace);
				io->ops->stop(io->t, gt->cfg.shutdown_grace * 1000u);
				stopping = true;
			} else {
				log_msg(LOG_WARN, "second signal: closing every connection now");
				io->ops->stop(io->t, 0);
			}
		}
		if (gt->tls && tls_server_ctx_tick(gt->tls, mono_s()))
			log_msg(LOG_INFO, "tls session-ticket key rotated");
		if (stopping && io->ops->wait(io->t, 0))
			break;
	}
	gt->stopped = true;
}

int main(int argc, char **argv)
{
	static struct gate gt;
	int rc = configure(&gt, argc, argv);

	if (rc >= 0)
		return rc;
	rc = 1;
	if (load_inputs(&gt) != 0)
		goto end_inputs;
	if (gt.check_only) {
		printf("tesgate: configuration OK%s%s%s\n", gt.cat ? ", catalog " : "",
		       gt.cat ? catalog_version(gt.cat) : "",
		       gt.tls ? ", TLS certificate loads" : "");
		rc = 0;
		goto end_inputs;
	}
	if (begin_process(&gt) != 0 || bind_kernel(&gt) != 0)
		goto end_transport;
	if (open_delivery(&gt) != 0)
		goto end_transport;
	if (make_state(&gt) != 0 || open_verdicts(&gt) != 0)
		goto end_state;
	if (make_gateway(&gt) != 0)
		goto end_gateway;
	if (attach_transport(&gt) != 0 || start_control(&gt) != 0)
		goto end_control;
	/* Everything that needs privileges is open; the workers have not
	 * taken a connection yet. */
	if (settle_privileges(&gt.cfg, &gt.bk, &gt.pu, gt.early_drop) != 0)
		goto end_control;
	if (start_workers(&gt) != 0 || start_exports(&gt) != 0)
		goto end_exports;

	serve(&gt);
	rc = 0;

end_exports:
	stop_exports(&gt);
	stop_workers(&gt);
end_control:
	ctlclient_stop(gt.cc);
	io_destroy(&gt.io); /* before the gateway its sessions use; none left after stop_workers */
end_gateway:
	free_gateway(&gt, rc == 0);
	verdictlog_close(gt.vl); /* the rest of the verdict lines, then the file */
end_state:
	free_state(&gt);
	backends_close(&gt.bk);
end_transport:
	io_destroy(&gt.io); /* kernel sockets bound, no gateway yet */
end_inputs:
	free_inputs(&gt);
	if (rc == 0 && !gt.check_only)
		log_msg(LOG_INFO, "stopped");
	return rc;
}
