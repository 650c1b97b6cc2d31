/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tesgate: the gateway process, on kernel sockets (kio) or on the userspace
 * TCP stack over a DPDK port (io = dpdk, gateway/dpconn.c).
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

#include "dataplane/kio.h"
#include "enforce/catalog.h"
#include "gateway/backends.h"
#include "gateway/config.h"
#include "gateway/conn.h"
#include "gateway/dpconn.h"
#include "gateway/dptelemetry.h"
#include "gateway/ctlclient.h"
#include "gateway/enfstate.h"
#include "gateway/log.h"
#include "gateway/metrics.h"
#include "gateway/spool.h"
#include "gateway/tls.h"
#include "gateway/verdictlog.h"
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

static uint64_t sum_versions(const uint64_t *v)
{
	uint64_t n = 0;
	for (int i = 0; i < TLS_V_COUNT; i++)
		n += v[i];
	return n;
}

static void log_stats(const struct kio_stats *ks, const struct gw_stats *gs,
		      const struct spool_stats *ss)
{
	log_msg(LOG_INFO,
		"stats connections=%llu refused_global=%llu refused_source=%llu "
		"timeouts_idle=%llu timeouts_session=%llu shutdown_forced=%llu "
		"bytes_in=%llu bytes_out=%llu sessions=%llu accepted=%llu refused=%llu "
		"exchange=%llu not_exchange=%llu stored=%llu spool_failed=%llu starttls=%llu "
		"tls_full=%llu tls_resumed=%llu tls_failed=%llu slow_closed=%llu no_space=%llu",
		(unsigned long long)ks->accepted, (unsigned long long)ks->refused_global,
		(unsigned long long)ks->refused_source, (unsigned long long)ks->timeouts_idle,
		(unsigned long long)ks->timeouts_session, (unsigned long long)ks->shutdown_forced,
		(unsigned long long)ks->bytes_in, (unsigned long long)ks->bytes_out,
		(unsigned long long)gs->sessions, (unsigned long long)gs->messages_accepted,
		(unsigned long long)gs->messages_refused, (unsigned long long)gs->exchange_seen,
		(unsigned long long)gs->not_exchange, (unsigned long long)ss->stored,
		(unsigned long long)ss->failed, (unsigned long long)gs->tls_starts,
		(unsigned long long)sum_versions(gs->tls.full),
		(unsigned long long)sum_versions(gs->tls.resumed),
		(unsigned long long)sum_versions(gs->tls.failed),
		(unsigned long long)gs->slow_closed, (unsigned long long)gs->no_space);
}

/* The certificate and key are loaded at start-up, so a bad pair stops the
 * gateway before it listens rather than at the first STARTTLS.  *out stays
 * NULL when TLS is not configured. */
static int load_tls(const struct tes_config *cfg, struct tls_server_ctx **out)
{
	struct tls_server_config tc;
	char err[512], desc[512];

	*out = NULL;
	if (!config_tls(cfg, &tc))
		return 0;
	*out = tls_server_ctx_new(&tc, err, sizeof(err));
	if (!*out) {
		fprintf(stderr, "tesgate: tls_cert/tls_key: %s\n", err);
		return -1;
	}
	tls_server_ctx_describe(*out, desc, sizeof(desc));
	log_msg(LOG_INFO, "tls certificate %s loaded: %s", cfg->tls_cert, desc);
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
	if (tls_server_ctx_reload(tls, cfg->tls_cert, cfg->tls_key, err, sizeof(err)) != 0) {
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

/* Counters the control client reports to tescontrol. */
static void report_counters(void *arg, json_t *c)
{
	static const char *const actions[] = { "accept", "throttle", "block", "drop" };
	struct gw_stats gs;
	char name[64];

	gw_stats(arg, &gs);
	json_object_set_new(c, "sessions", json_integer((json_int_t)gs.sessions));
	json_object_set_new(c, "messages_accepted", json_integer((json_int_t)gs.messages_accepted));
	json_object_set_new(c, "messages_refused", json_integer((json_int_t)gs.messages_refused));
	json_object_set_new(c, "exchange_seen", json_integer((json_int_t)gs.exchange_seen));
	json_object_set_new(c, "early_drops", json_integer((json_int_t)gs.early_drops));
	json_object_set_new(c, "tls_handshakes_full",
			    json_integer((json_int_t)sum_versions(gs.tls.full)));
	json_object_set_new(c, "tls_handshakes_resumed",
			    json_integer((json_int_t)sum_versions(gs.tls.resumed)));
	json_object_set_new(c, "tls_handshakes_failed",
			    json_integer((json_int_t)sum_versions(gs.tls.failed)));
	for (int a = 0; a < 4; a++) {
		snprintf(name, sizeof(name), "verdict_mail_%s", actions[a]);
		json_object_set_new(c, name, json_integer((json_int_t)gs.mail_verdicts[a]));
		snprintf(name, sizeof(name), "verdict_headers_%s", actions[a]);
		json_object_set_new(c, name, json_integer((json_int_t)gs.header_verdicts[a]));
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
	if (cfg->verdict_log[0] == '/' &&
	    fchownat(AT_FDCWD, cfg->verdict_log, pu->uid, pu->gid, AT_SYMLINK_NOFOLLOW) != 0 &&
	    errno != ENOENT) {
		fprintf(stderr, "tesgate: verdict_log %s: cannot give it to %s: %s\n",
			cfg->verdict_log, pu->name, strerror(errno));
		return -1;
	}
	return 0;
}

/* Things that work at start-up and would fail later, once the files are
 * opened again as the user: said now rather than at the first SIGHUP. */
static void check_access(const struct tes_config *cfg)
{
	unsigned uid = (unsigned)getuid();

	if (cfg->tls_cert[0] &&
	    (access(cfg->tls_cert, R_OK) != 0 || access(cfg->tls_key, R_OK) != 0))
		log_msg(LOG_WARN,
			"tls: %s or %s is not readable by uid %u: a SIGHUP reload will fail (make "
			"them readable by its group, mode 0640)",
			cfg->tls_cert, cfg->tls_key, uid);
	if (cfg->verdict_log[0] == '/') {
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), "%s", cfg->verdict_log);
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
	if (cfg->control_socket[0] && access(cfg->control_socket, F_OK) == 0 &&
	    access(cfg->control_socket, W_OK) != 0)
		log_msg(LOG_WARN,
			"control_socket %s is not writable by uid %u: tesgate cannot reconnect to "
			"tescontrol (its gateway_group must be one of this user's groups)",
			cfg->control_socket, uid);
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

/* The connection front end under the gateway: kio's kernel sockets, or the
 * userspace stack on a DPDK port (io = dpdk).  Everything else (the session
 * layer, control client, metrics, signals, shutdown order) is shared. */
struct front {
	struct kio *k;
	struct dpgw *d;
};

static void front_stats(const void *arg, struct kio_stats *ks)
{
	const struct front *f = arg;
	if (f->k)
		kio_stats(f->k, ks);
	else
		dpgw_conn_stats(f->d, ks);
}

static int front_start(struct front *f)
{
	if (f->k) {
		int e = kio_start(f->k);
		if (e)
			fprintf(stderr, "tesgate: cannot start workers: %s\n", strerror(e));
		return e ? -1 : 0;
	}
	return dpgw_launch(f->d);
}

static void front_stop(struct front *f, unsigned grace_ms)
{
	if (f->k)
		kio_stop(f->k, grace_ms);
	else
		dpgw_stop(f->d, grace_ms);
}

static bool front_wait(struct front *f, unsigned ms)
{
	return f->k ? kio_wait(f->k, ms) : dpgw_wait(f->d, ms);
}

/* After front_wait said yes and the backend stopped: runs the verdicts for
 * sessions already gone. */
static void front_destroy(struct front *f)
{
	if (f->k)
		kio_destroy(f->k);
	else if (f->d)
		dpgw_destroy(f->d);
	f->k = NULL;
	f->d = NULL;
}

int main(int argc, char **argv)
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
	struct tes_config cfg;
	const char *conf_path = NULL;
	/* Options that set a configuration key: one row each, applied after
	 * the file so the command line wins. */
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
	const char *over[NOVER] = { NULL };
	bool check_only = false;
	int o;

	while ((o = getopt_long(argc, argv, "c:l:s:w:u:hV", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			conf_path = optarg;
			break;
		case 'C':
			check_only = true;
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

	char err[1024];
	config_defaults(&cfg);
	if (conf_path && !config_load(&cfg, conf_path, err, sizeof(err))) {
		fprintf(stderr, "tesgate: %s\n", err);
		return 1;
	}
	for (int i = 0; i < NOVER; i++) {
		if (over[i] && !config_set(&cfg, overrides[i].key, over[i], err, sizeof(err))) {
			fprintf(stderr, "tesgate: %s: %s\n", overrides[i].flag, err);
			return 1;
		}
	}
	if (!config_check(&cfg, err, sizeof(err))) {
		fprintf(stderr, "tesgate: %s%s%s\n", conf_path ? conf_path : "",
			conf_path ? ": " : "", err);
		return 1;
	}
	log_set_level(cfg.log_level);
	struct priv_user pu;
	if (priv_lookup(cfg.user, &pu, err, sizeof(err)) != 0) {
		fprintf(stderr, "tesgate: user: %s\n", err);
		return 1;
	}

	struct catalog *cat = NULL;
	struct tes_policy pol;
	struct tls_server_ctx *tls = NULL;
	if (load_catalog(&cfg, &cat) != 0 || load_policy(&cfg, &pol) != 0 ||
	    load_tls(&cfg, &tls) != 0) {
		catalog_free(cat);
		return 1;
	}
	if (check_only) {
		printf("tesgate: configuration OK%s%s%s\n", cat ? ", catalog " : "",
		       cat ? catalog_version(cat) : "", tls ? ", TLS certificate loads" : "");
		tls_server_ctx_free(tls);
		catalog_free(cat);
		return 0;
	}

	/* Before any thread exists, so every thread inherits what it sets
	 * (no_new_privs, no bounding, inheritable or ambient capabilities). */
	if (priv_begin(err, sizeof(err)) != 0) {
		fprintf(stderr, "tesgate: %s\n", err);
		tls_server_ctx_free(tls);
		catalog_free(cat);
		return 1;
	}
	if (err[0])
		log_msg(LOG_INFO, "privileges: %s", err);

	/* Before any thread exists, so every thread inherits the mask. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	raise_fd_limit(cfg.max_connections);

	/* Kernel sockets: bound first, while this is the only thread, so that
	 * a capability needed only to bind (port 25 without root) is dropped
	 * from the one thread there is. */
	struct front fe = { NULL, NULL };
	bool early_drop = false;
	if (!cfg.io_dpdk) {
		struct kio_ops ops;
		gw_kio_ops(&ops);
		struct kio_config kc = {
			.listen = cfg.listen,
			.workers = cfg.workers,
			.cpus = cfg.ncpus ? cfg.cpus : NULL,
			.backlog = 1024,
			.idle_timeout_ms = cfg.idle_timeout * 1000u,
			.session_timeout_ms = cfg.session_timeout * 1000u,
			.linger_ms = LINGER_MS,
			.max_conns = cfg.max_connections,
			.max_conns_source = cfg.max_connections_per_source,
			.log = log_msg,
		};
		fe.k = kio_create(&kc, &ops, NULL, err, sizeof(err));
		if (!fe.k) {
			fprintf(stderr, "tesgate: %s\n", err);
			catalog_free(cat);
			tls_server_ctx_free(tls);
			return 1;
		}
		if (geteuid() != 0) {
			if (priv_drop(&pu, 0, err, sizeof(err)) != 0) {
				fprintf(stderr, "tesgate: dropping capabilities: %s\n", err);
				kio_destroy(fe.k);
				catalog_free(cat);
				tls_server_ctx_free(tls);
				return 1;
			}
			if (err[0])
				log_msg(LOG_WARN, "privileges: %s", err);
			early_drop = true;
		}
	}

	struct backends bk;
	struct delivery_backend backend;
	memset(&backend, 0, sizeof(backend));
	if (backends_open(&cfg, &bk, &backend) != 0) {
		front_destroy(&fe);
		catalog_free(cat);
		tls_server_ctx_free(tls);
		return 1;
	}
	if ((bk.sp && spool_set_min_free(bk.sp, cfg.spool_min_free, err, sizeof(err)) != 0) ||
	    (bk.rl && relay_set_min_free(bk.rl, cfg.spool_min_free, err, sizeof(err)) != 0)) {
		fprintf(stderr, "tesgate: %s\n", err);
		backends_stop(&bk);
		backends_close(&bk);
		front_destroy(&fe);
		catalog_free(cat);
		tls_server_ctx_free(tls);
		return 1;
	}

	/* From here on every failure goes to fail: each of these is NULL until
	 * it exists. */
	struct enfstate *st = NULL;
	struct verdictlog *vl = NULL;
	struct gw *g = NULL;
	struct ctlclient *cc = NULL;
	char where[80];

	/* The enforcement state: filled here with the local catalog and policy,
	 * then by the control thread (its only writer from now on) with what
	 * tescontrol sends.  Main is a writer only while no other thread is. */
	st = enfstate_new(&pol, 0);
	if (!st) {
		fprintf(stderr, "tesgate: cannot create the enforcement state: %s\n",
			strerror(errno));
		goto fail;
	}
	enfstate_thread_register();
	if (cat && enfstate_catalog_set(st, cat) == 0)
		cat = NULL; /* st owns it now */
	enfstate_thread_unregister();

	struct smtp_config smtp;
	config_smtp(&cfg, &smtp);
	smtp.smtputf8 = bk.smtputf8;
	smtp.starttls = tls != NULL; /* offered only with a certificate in force */
	if (cfg.verdict_log[0]) {
		vl = verdictlog_open(cfg.verdict_log, cfg.workers, err, sizeof(err));
		if (!vl) {
			fprintf(stderr, "tesgate: %s\n", err);
			goto fail;
		}
	}
	struct gw_params gp = {
		.verdicts = vl,
		.smtp = &smtp,
		.exdetect = &cfg.exdetect,
		.catalog = NULL,
		.backend = &backend,
		.st = st,
		.tls = tls,
		.hostname = cfg.hostname,
		.workers = cfg.workers,
		.min_data_rate = cfg.min_data_rate,
		.rate_window_ms = cfg.min_data_rate_window * 1000u,
	};
	/* DPDK workers make no system calls, and a log line is one: theirs
	 * go through the log's ring to its writer thread. */
	if (cfg.io_dpdk && log_async_start() != 0) {
		fprintf(stderr, "tesgate: cannot start the log writer thread\n");
		goto fail;
	}
	g = gw_new(&gp);
	if (!g) {
		fprintf(stderr, "tesgate: out of memory\n");
		goto fail;
	}
	if (cfg.io_dpdk) {
		/* The EAL makes its threads here, with the signals blocked: only
		 * the main thread (the main lcore, which does not poll) takes
		 * them, below. */
		struct dpgw_params dp = {
			.g = g,
			.eal_args = cfg.dpdk_args,
			.addr = cfg.dpdk_addr,
			.port = (uint16_t)cfg.dpdk_port,
			.workers = cfg.workers,
			.max_conns = cfg.max_connections,
			.max_conns_source = cfg.max_connections_per_source,
			.idle_timeout_ms = cfg.idle_timeout * 1000u,
			.session_timeout_ms = cfg.session_timeout * 1000u,
			.linger_ms = LINGER_MS,
			.refuse_global = gw_refuse_global(g),
			.refuse_source = gw_refuse_source(g),
			.impair = cfg.dpdk_impair,
		};
		fe.d = dpgw_start(&dp);
		if (!fe.d)
			goto fail;
		snprintf(where, sizeof(where), "%s port %u (io dpdk)", cfg.dpdk_addr,
			 cfg.dpdk_port);
	} else {
		struct sockaddr_storage bound;
		kio_set_app(fe.k, g, gw_refuse_global(g), gw_refuse_source(g));
		kio_local_addr(fe.k, &bound);
		kio_format_addr(&bound, where, sizeof(where), true);
	}
	if (cfg.control_socket[0]) {
		struct ctlclient_params cp = {
			.socket_path = cfg.control_socket,
			.gateway_id = cfg.gateway_id[0] ? cfg.gateway_id : cfg.hostname,
			.st = st,
			.workers = cfg.workers,
			.follow_test_clock = cfg.follow_test_clock,
			.counters = report_counters,
			.counters_arg = g,
		};
		cc = ctlclient_start(&cp);
		if (!cc) {
			fprintf(stderr, "tesgate: cannot start the control thread\n");
			goto fail;
		}
		gw_set_control(g, cc);
	} else {
		log_msg(LOG_WARN, "control_socket is empty: no control plane, nothing is enforced");
	}
	/* Everything that needs privileges is open; the workers have not
	 * taken a connection yet. */
	if (settle_privileges(&cfg, &bk, &pu, early_drop) != 0)
		goto fail;
	if (front_start(&fe) != 0) {
		front_stop(&fe, 0);
		front_wait(&fe, 5000);
		goto fail;
	}
	log_msg(LOG_INFO,
		"tesgate %s listening on %s (workers %u, hostname %s, delivery %s %s, starttls %s)",
		TES_VERSION, where, cfg.workers, cfg.hostname, backend.name, bk.where,
		tls ? "on" : "off");
	if (tls)
		tls_server_ctx_tick(tls, mono_s()); /* starts the ticket-key clock */
	struct gw_metrics_src msrc = {
		.g = g,
		.k = fe.k,
		.dp = fe.d,
		.conn_stats = fe.k ? NULL : front_stats,
		.conn_stats_arg = &fe,
		.bk = &bk,
		.cc = cc,
		.st = st,
		.vl = vl,
	};
	struct gw_metrics *met = gw_metrics_start(cfg.metrics_listen, &msrc);
	if (fe.d) {
		/* DPDK's telemetry socket gets tesgate's commands too */
		struct dptel_src ts = { .d = fe.d, .g = g, .st = st, .cc = cc };
		dptel_start(&ts);
	}

	bool stopping = false;
	for (;;) {
		struct timespec tick = { 0, 200 * 1000 * 1000 };
		siginfo_t si;
		int sig = sigtimedwait(&sigs, &si, &tick);
		if (sig == SIGHUP) {
			reload_tls(&cfg, tls);
			verdictlog_reopen(vl);
		} else if (sig == SIGINT || sig == SIGTERM) {
			if (!stopping) {
				log_msg(LOG_INFO, "%s: shutting down (grace %u s)",
					sig == SIGINT ? "SIGINT" : "SIGTERM", cfg.shutdown_grace);
				front_stop(&fe, cfg.shutdown_grace * 1000u);
				stopping = true;
			} else {
				log_msg(LOG_WARN, "second signal: closing every connection now");
				front_stop(&fe, 0);
			}
		}
		if (tls && tls_server_ctx_tick(tls, mono_s()))
			log_msg(LOG_INFO, "tls session-ticket key rotated");
		if (stopping && front_wait(&fe, 0))
			break;
	}

	gw_metrics_stop(met); /* before anything it reads is freed */
	if (fe.d)
		dptel_stop();
	struct kio_stats ks;
	struct gw_stats gs;
	struct spool_stats ss;
	front_stats(&fe, &ks);
	backends_stop(&bk);
	front_destroy(&fe); /* after backends_stop: runs verdicts for sessions already gone */
	log_async_stop();   /* the workers' last lines, and those verdicts' */
	/* The workers are gone: the rest of the verdict lines, then the file. */
	verdictlog_close(vl);
	ctlclient_stop(cc);
	gw_stats(g, &gs);
	backends_stats(&bk, &ss);
	log_stats(&ks, &gs, &ss);
	gw_free(g);
	backends_close(&bk);
	state_free(st);
	catalog_free(cat);
	tls_server_ctx_free(tls); /* every tls_conn went with its connection */
	log_msg(LOG_INFO, "stopped");
	return 0;

fail:
	backends_stop(&bk);
	front_destroy(&fe); /* after backends_stop, as above */
	log_async_stop();
	ctlclient_stop(cc);
	gw_free(g);
	verdictlog_close(vl);
	backends_close(&bk);
	state_free(st);
	catalog_free(cat);
	tls_server_ctx_free(tls);
	return 1;
}
