/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tesgate: the gateway process on kernel sockets.
 *
 * The main thread parses the configuration, loads the catalog, starts the
 * delivery threads and the kio workers, and then only waits for signals
 * (they are blocked everywhere else, so no handler ever runs inside a
 * worker).  Shutdown order matters: workers stop first (no new messages),
 * then the delivery threads finish what was submitted, then the verdicts
 * that found their worker gone are run and freed.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "dataplane/kio.h"
#include "enforce/catalog.h"
#include "gateway/config.h"
#include "gateway/conn.h"
#include "gateway/log.h"
#include "gateway/spool.h"

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
		   "      --check-config    check the settings and the catalog, then exit\n"
		   "      --print-defaults  print every setting with its default, then exit\n"
		   "  -h, --help            this text\n"
		   "  -V, --version         print the version\n"
		   "\n"
		   "Signals: SIGTERM or SIGINT stop gracefully (421 to idle clients, messages in\n"
		   "flight finished, at most shutdown_grace seconds; a second signal stops at\n"
		   "once).  SIGHUP is reserved for reloading and is ignored for now.\n"
		   "See docs/configuration.md for every setting.\n");
}

static void log_stats(const struct kio_stats *ks, const struct gw_stats *gs,
		      const struct spool_stats *ss)
{
	log_msg(LOG_INFO,
		"stats connections=%llu refused_global=%llu refused_source=%llu "
		"timeouts_idle=%llu timeouts_session=%llu shutdown_forced=%llu "
		"bytes_in=%llu bytes_out=%llu sessions=%llu accepted=%llu refused=%llu "
		"exchange=%llu not_exchange=%llu stored=%llu spool_failed=%llu",
		(unsigned long long)ks->accepted, (unsigned long long)ks->refused_global,
		(unsigned long long)ks->refused_source, (unsigned long long)ks->timeouts_idle,
		(unsigned long long)ks->timeouts_session, (unsigned long long)ks->shutdown_forced,
		(unsigned long long)ks->bytes_in, (unsigned long long)ks->bytes_out,
		(unsigned long long)gs->sessions, (unsigned long long)gs->messages_accepted,
		(unsigned long long)gs->messages_refused, (unsigned long long)gs->exchange_seen,
		(unsigned long long)gs->not_exchange, (unsigned long long)ss->stored,
		(unsigned long long)ss->failed);
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

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "listen", required_argument, NULL, 'l' },
		{ "spool", required_argument, NULL, 's' },
		{ "workers", required_argument, NULL, 'w' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "print-defaults", no_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct tes_config cfg;
	const char *conf_path = NULL;
	const char *over[3][2] = { { "listen", NULL }, { "spool_dir", NULL }, { "workers", NULL } };
	const char *over_flag[3] = { "--listen", "--spool", "--workers" };
	bool check_only = false;
	int o;

	while ((o = getopt_long(argc, argv, "c:l:s:w:hV", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			conf_path = optarg;
			break;
		case 'l':
			over[0][1] = optarg;
			break;
		case 's':
			over[1][1] = optarg;
			break;
		case 'w':
			over[2][1] = optarg;
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
		default:
			usage(stderr);
			return 2;
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
	for (int i = 0; i < 3; i++) {
		if (over[i][1] && !config_set(&cfg, over[i][0], over[i][1], err, sizeof(err))) {
			fprintf(stderr, "tesgate: %s: %s\n", over_flag[i], err);
			return 1;
		}
	}
	if (!config_check(&cfg, err, sizeof(err))) {
		fprintf(stderr, "tesgate: %s%s%s\n", conf_path ? conf_path : "",
			conf_path ? ": " : "", err);
		return 1;
	}
	log_set_level(cfg.log_level);

	struct catalog *cat = NULL;
	if (load_catalog(&cfg, &cat) != 0)
		return 1;
	if (check_only) {
		printf("tesgate: configuration OK%s%s\n", cat ? ", catalog " : "",
		       cat ? catalog_version(cat) : "");
		catalog_free(cat);
		return 0;
	}

	/* Before any thread exists, so every thread inherits the mask. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	raise_fd_limit(cfg.max_connections);
	struct spool *sp =
		spool_open(cfg.spool_dir, cfg.delivery_threads, cfg.workers, err, sizeof(err));
	if (!sp) {
		fprintf(stderr, "tesgate: %s\n", err);
		catalog_free(cat);
		return 1;
	}
	struct delivery_backend backend;
	spool_backend(sp, &backend);

	struct smtp_config smtp;
	config_smtp(&cfg, &smtp);
	struct gw_params gp = {
		.smtp = &smtp,
		.exdetect = &cfg.exdetect,
		.catalog = cat,
		.backend = &backend,
		.hostname = cfg.hostname,
		.workers = cfg.workers,
	};
	struct gw *g = gw_new(&gp);
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
		.refuse_global = g ? gw_refuse_global(g) : NULL,
		.refuse_source = g ? gw_refuse_source(g) : NULL,
		.log = log_msg,
	};
	struct kio *k = g ? kio_create(&kc, &ops, g, err, sizeof(err)) : NULL;
	if (!k) {
		fprintf(stderr, "tesgate: %s\n", g ? err : "out of memory");
		gw_free(g);
		spool_close(sp);
		catalog_free(cat);
		return 1;
	}
	int e = kio_start(k);
	if (e) {
		fprintf(stderr, "tesgate: cannot start workers: %s\n", strerror(e));
		kio_wait(k, 5000);
		spool_stop(sp);
		kio_destroy(k);
		gw_free(g);
		spool_close(sp);
		catalog_free(cat);
		return 1;
	}
	struct sockaddr_storage bound;
	char where[80];
	kio_local_addr(k, &bound);
	kio_format_addr(&bound, where, sizeof(where), true);
	log_msg(LOG_INFO, "tesgate %s listening on %s (workers %u, hostname %s, delivery %s %s)",
		TES_VERSION, where, cfg.workers, cfg.hostname, backend.name, cfg.spool_dir);

	bool stopping = false;
	for (;;) {
		struct timespec tick = { 0, 200 * 1000 * 1000 };
		siginfo_t si;
		int sig = sigtimedwait(&sigs, &si, &tick);
		if (sig == SIGHUP) {
			log_msg(LOG_WARN, "SIGHUP: reloading is not implemented yet; ignored");
		} else if (sig == SIGINT || sig == SIGTERM) {
			if (!stopping) {
				log_msg(LOG_INFO, "%s: shutting down (grace %u s)",
					sig == SIGINT ? "SIGINT" : "SIGTERM", cfg.shutdown_grace);
				kio_stop(k, cfg.shutdown_grace * 1000u);
				stopping = true;
			} else {
				log_msg(LOG_WARN, "second signal: closing every connection now");
				kio_stop(k, 0);
			}
		}
		if (stopping && kio_wait(k, 0))
			break;
	}

	struct kio_stats ks;
	struct gw_stats gs;
	struct spool_stats ss;
	kio_stats(k, &ks);
	spool_stop(sp);
	kio_destroy(k); /* after spool_stop: runs verdicts for sessions already gone */
	gw_stats(g, &gs);
	spool_stats(sp, &ss);
	log_stats(&ks, &gs, &ss);
	gw_free(g);
	spool_close(sp);
	catalog_free(cat);
	log_msg(LOG_INFO, "stopped");
	return 0;
}
