/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tescontrol: the control plane daemon.  Owns the durable enforcement state
 * (the store), the catalog and policy in force, the escalation timers and
 * the pause quota; serves gateways over the control protocol and operators
 * over the admin protocol.  One thread, one epoll set.  See
 * docs/tescontrol.8.md, and docs/architecture.md for the rooms this file
 * wires together: store -> state -> escalation -> notify, with the two
 * sockets (notify/gateways.c, admin/) calling down into the state.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "controlplane/admin/admin.h"
#include "controlplane/clock.h"
#include "controlplane/config.h"
#include "controlplane/escalation/escalation.h"
#include "controlplane/log.h"
#include "controlplane/loop.h"
#include "controlplane/notify/evlog.h"
#include "controlplane/notify/gateways.h"
#include "controlplane/notify/metrics.h"
#include "controlplane/notify/notices.h"
#include "controlplane/notify/report.h"
#include "controlplane/notify/xdp.h"
#include "controlplane/state/state.h"
#include "controlplane/store/etcdstore.h"
#include "controlplane/store/sqlite.h"
#include "base/privdrop.h"

/* The daemon: every room, and what only main holds (the lock, the signals,
 * the flush timer).  The rooms know each other only through the pointers
 * main gives them. */
struct cp {
	struct cp_config cfg;
	const char *conf; /* the configuration file's name, for messages */
	struct priv_user user;
	gid_t admin_gid, gateway_gid;
	bool admin_gid_set, gateway_gid_set;
	int lock_fd;

	struct cp_clock clock;
	struct cp_loop loop;
	struct tes_store *store;
	struct cp_state st;
	struct cp_esc esc;
	struct cp_evlog evlog;
	struct cp_gateways gws;
	struct cp_xdp *xdp;
	struct cp_admin admin;
	struct cp_metrics *metrics;
	struct cp_report *report;
	struct cp_notices *notices;

	struct cp_watch sig;   /* signalfd: TERM, INT, HUP */
	struct cp_watch flush; /* periodic write of dirty servers */
	struct cp_watch fleet; /* a shared store's changes (its watch) */
	char store_desc[CP_PATH_MAX + 64];
};

static void usage(FILE *f)
{
	fprintf(f, "Usage: tescontrol [-c FILE] [--test-clock[=EPOCH]]\n"
		   "\n"
		   "The tesgate control plane: durable enforcement state, catalog and policy,\n"
		   "escalation timers, the gateway socket and the admin socket (for tesctl).\n"
		   "Runs in the foreground and logs to stderr.\n"
		   "\n"
		   "Options:\n"
		   "  -c, --config FILE    configuration file (key = value; see tescontrol(8))\n"
		   "      --check-config   read the configuration, print it and exit\n"
		   "      --test-clock[=EPOCH]\n"
		   "                       FOR TESTS ONLY: a clock that stands still until\n"
		   "                       `tesctl clock set|advance` moves it; starts at EPOCH\n"
		   "                       (seconds) or the current time.  Refused unless the\n"
		   "                       environment has TES_ALLOW_TEST_CLOCK=1.\n"
		   "  -h, --help           this text\n"
		   "  -V, --version        print the version\n"
		   "\n"
		   "Configuration keys: state_dir, db_path, gateway_socket, gateway_group,\n"
		   "admin_socket, admin_group, catalog_file, compliance_file, policy_file,\n"
		   "log_level (error|warn|info|debug), flush_seconds, metrics_listen,\n"
		   "event_log, xdp_interfaces, xdp_pin_root, xdp_mode (auto|native|generic),\n"
		   "xdp_required (yes|no), xdp_ports, user; the report page and notices:\n"
		   "report_listen, report_tls_cert, report_tls_key, report_history_days,\n"
		   "notice_smtp_relay, notice_mail_from, notice_retry_min, notice_retry_max,\n"
		   "notice_timeout, notice_expire_days; the fleet (docs/fleet.md): store\n"
		   "(sqlite|etcd), etcd_endpoints, etcd_prefix, appliance, etcd_ca_file,\n"
		   "etcd_cert_file, etcd_key_file, etcd_username, etcd_password_file,\n"
		   "etcd_timeout_ms, etcd_connect_timeout_ms, etcd_lease_seconds,\n"
		   "etcd_flush_seconds, etcd_journal.  SIGHUP reopens the event log.\n");
}

static void on_signal(struct cp_watch *w, uint32_t events)
{
	struct cp *cp = cp_container_of(w, struct cp, sig);
	struct signalfd_siginfo si;

	(void)events;
	while (read(w->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			/* Only the event log is reopened (rotation); the catalog
			 * and policy change through tesctl. */
			cp_evlog_reopen(&cp->evlog);
			continue;
		}
		cp_info("signal %u: shutting down", si.ssi_signo);
		cp->loop.stop = true;
	}
}

static int setup_signals(struct cp *cp)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL))
		return -1;
	cp->sig.fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	cp->sig.fn = on_signal;
	if (cp->sig.fd < 0 || cp_watch_add(&cp->loop, &cp->sig, EPOLLIN)) {
		cp_err("setting up the event loop: %s", strerror(errno));
		if (cp->sig.fd >= 0)
			close(cp->sig.fd);
		return -1;
	}
	return 0;
}

/* The shared store's watch may be made anew (after a failure, a re-read):
 * keep its current descriptor in the loop. */
static void fleet_watch_sync(struct cp *cp)
{
	int fd = store_shared(cp->store) ? cp->store->fleet->fd(cp->store) : -1;

	if (fd == cp->fleet.fd)
		return;
	cp_watch_del(&cp->loop, &cp->fleet);
	cp->fleet.fd = fd;
	if (fd >= 0 && cp_watch_add(&cp->loop, &cp->fleet, EPOLLIN))
		cp_err("fleet: adding etcd's watch to the event loop: %s", strerror(errno));
}

static void on_fleet(struct cp_watch *w, uint32_t events)
{
	struct cp *cp = cp_container_of(w, struct cp, fleet);

	(void)events;
	cp_state_fleet_poll(&cp->st);
	fleet_watch_sync(cp);
}

static void on_flush(struct cp_watch *w, uint32_t events)
{
	struct cp *cp = cp_container_of(w, struct cp, flush);
	uint64_t n;

	(void)events;
	if (read(w->fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		cp_debug("flush timer: %s", strerror(errno));
	if (store_shared(cp->store)) {
		cp_state_fleet_tick(&cp->st, cp->gws.n);
		fleet_watch_sync(cp);
	}
	cp_state_flush(&cp->st);
	/* Resets, deletions and policy loads change who is at a cap too: the
	 * gateways hear of it within flush_seconds. */
	cp_state_caps_check(&cp->st);
}

/* Lazy writes (last-seen times, sources, announced stages) wait at most
 * flush_seconds. */
static int start_flush(struct cp *cp)
{
	struct itimerspec its;

	memset(&its, 0, sizeof(its));
	its.it_value.tv_sec = cp->cfg.flush_seconds;
	its.it_interval.tv_sec = cp->cfg.flush_seconds;
	cp->flush.fn = on_flush;
	cp->flush.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (cp->flush.fd < 0 || timerfd_settime(cp->flush.fd, 0, &its, NULL) ||
	    cp_watch_add(&cp->loop, &cp->flush, EPOLLIN)) {
		cp_err("setting up timers: %s", strerror(errno));
		if (cp->flush.fd >= 0)
			close(cp->flush.fd);
		return -1;
	}
	return 0;
}

static int resolve_group(const char *name, gid_t *gid, bool *set, const char *conf, const char *key)
{
	struct group gr, *res = NULL;
	char buf[16384];

	*set = false;
	if (!name[0])
		return 0;
	if (getgrnam_r(name, &gr, buf, sizeof(buf), &res) || !res) {
		char *end;
		unsigned long x = strtoul(name, &end, 10);

		if (!*end && end != name) {
			*gid = (gid_t)x;
			*set = true;
			return 0;
		}
		cp_err("%s: %s: no group named \"%s\"", conf, key, name);
		return -1;
	}
	*gid = gr.gr_gid;
	*set = true;
	return 0;
}

static int lock_state_dir(struct cp *cp)
{
	char path[CP_PATH_MAX + 32];

	if (mkdir(cp->cfg.state_dir, 0750) && errno != EEXIST) {
		cp_err("state_dir %s: %s", cp->cfg.state_dir, strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/tescontrol.lock", cp->cfg.state_dir);
	cp->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (cp->lock_fd < 0) {
		cp_err("%s: %s", path, strerror(errno));
		return -1;
	}
	/* Two daemons on one database would each believe they own the
	 * escalation; the second one stops here. */
	if (flock(cp->lock_fd, LOCK_EX | LOCK_NB)) {
		cp_err("%s: another tescontrol is running on this state directory", path);
		close(cp->lock_fd);
		return -1;
	}
	return 0;
}

/* ---- privileges (docs/security.md) ----
 * After start-up (sockets made, database and event log open, the XDP
 * program loaded and attached) and before the metrics thread exists,
 * tescontrol becomes `user` (started as root) and keeps only what the XDP
 * work needs at run time: CAP_NET_ADMIN for an operator's detach of its own
 * program, and CAP_BPF only on kernels that gate every bpf() call behind it
 * (before 6.5, with unprivileged_bpf_disabled); nothing without XDP. */

/* Started as root: what tescontrol writes afterwards becomes the user's. */
static int give_state(const struct cp *cp, const struct priv_user *pu)
{
	char p[6][CP_PATH_MAX + 32];
	unsigned n = 0;

	snprintf(p[n++], sizeof(p[0]), "%s", cp->cfg.state_dir);
	snprintf(p[n++], sizeof(p[0]), "%s/tescontrol.lock", cp->cfg.state_dir);
	snprintf(p[n++], sizeof(p[0]), "%s", cp->cfg.db_path);
	snprintf(p[n++], sizeof(p[0]), "%s-wal", cp->cfg.db_path);
	snprintf(p[n++], sizeof(p[0]), "%s-shm", cp->cfg.db_path);
	if (cp->cfg.event_log[0] == '/')
		snprintf(p[n++], sizeof(p[0]), "%s", cp->cfg.event_log);
	for (unsigned i = 0; i < n; i++) {
		if (fchownat(AT_FDCWD, p[i], pu->uid, pu->gid, AT_SYMLINK_NOFOLLOW) != 0 &&
		    errno != ENOENT) {
			cp_err("cannot give %s to %s: %s", p[i], pu->name, strerror(errno));
			return -1;
		}
	}
	return 0;
}

static int drop_privileges(struct cp *cp, const struct priv_user *pu)
{
	uint64_t keep = 0;
	bool root = geteuid() == 0;
	struct priv_state st;
	char err[512], line[1400], kept[256];

	if (cp_xdp_running(cp->xdp))
		keep = PRIV_CAP(PRIV_CAP_NET_ADMIN) | PRIV_CAP(PRIV_CAP_BPF);
	if (root && (!pu->set || pu->uid == 0)) {
		for (int i = 0; i < 3; i++)
			cp_warn("RUNNING AS ROOT: %s, so tescontrol keeps root and every "
				"capability; set user = tescontrol (tools/setup.sh makes that "
				"user)",
				pu->set ? "user = root" : "no user is configured");
		return 0;
	}
	if (root && give_state(cp, pu))
		return -1;
	if (priv_drop(pu, keep, err, sizeof(err))) {
		cp_err("giving up privileges: %s", err);
		return -1;
	}
	if (err[0])
		cp_warn("privileges: %s", err);
	if (keep) {
		/* Without CAP_BPF in the effective set first: most kernels let a
		 * process use the map fds it holds with no capability. */
		if (priv_set_caps(keep, PRIV_CAP(PRIV_CAP_NET_ADMIN), err, sizeof(err))) {
			cp_err("privileges: %s", err);
			return -1;
		}
		if (cp_xdp_probe_maps(cp->xdp) == 0) {
			keep = PRIV_CAP(PRIV_CAP_NET_ADMIN);
		} else {
			cp_info("xdp: this kernel lets only CAP_BPF use BPF maps "
				"(kernel.unprivileged_bpf_disabled): keeping it");
		}
		if (priv_set_caps(keep, keep, err, sizeof(err))) {
			cp_err("privileges: %s", err);
			return -1;
		}
	}
	if (priv_state(&st)) {
		cp_err("privileges: cannot read /proc/self: %s", strerror(errno));
		return -1;
	}
	priv_state_format(&st, line, sizeof(line));
	if ((st.eff | st.prm) & ~keep) {
		cp_err("privileges: %s: more than %s left", line,
		       priv_caps_format(keep, kept, sizeof(kept)));
		return -1;
	}
	/* SQLite opens its -wal and -shm files by name, so the whole path
	 * must be the user's to walk and write, not just the files given. */
	if (pu->set && root &&
	    (access(cp->cfg.state_dir, W_OK | X_OK) || access(cp->cfg.db_path, R_OK | W_OK))) {
		cp_err("privileges: as %s, %s or %s is not writable (%s): every directory above "
		       "them must let %s through",
		       pu->name, cp->cfg.state_dir, cp->cfg.db_path, strerror(errno), pu->name);
		return -1;
	}
	if (pu->set && root)
		cp_info("privileges: now user %s (uid %u, gid %u)", pu->name, (unsigned)pu->uid,
			(unsigned)pu->gid);
	cp_info("privileges: %s", line);
	return 0;
}

static void print_config(const struct cp *cp)
{
	const struct cp_config *c = &cp->cfg;

	printf("state_dir = %s\ndb_path = %s\ngateway_socket = %s\ngateway_group = %s\n"
	       "admin_socket = %s\nadmin_group = %s\ncatalog_file = %s\ncompliance_file = %s\n"
	       "policy_file = %s\nflush_seconds = %u\nmetrics_listen = %s\nevent_log = %s\n"
	       "xdp_interfaces = %s\nxdp_pin_root = %s\nxdp_mode = %s\nxdp_required = %s\n"
	       "xdp_ports = %s\nuser = %s\n",
	       c->state_dir, c->db_path, c->gateway_socket, c->gateway_group, c->admin_socket,
	       c->admin_group, c->catalog_file, c->compliance_file, c->policy_file,
	       c->flush_seconds, c->metrics_listen, c->event_log, c->xdp_interfaces,
	       c->xdp_pin_root, c->xdp_mode, c->xdp_required ? "yes" : "no", c->xdp_ports, c->user);
	printf("store = %s\netcd_endpoints = %s\netcd_prefix = %s\nappliance = %s\n"
	       "etcd_ca_file = %s\netcd_cert_file = %s\netcd_key_file = %s\netcd_username = %s\n"
	       "etcd_password_file = %s\netcd_timeout_ms = %u\netcd_connect_timeout_ms = %u\n"
	       "etcd_lease_seconds = %u\netcd_flush_seconds = %u\netcd_journal = %s\n",
	       c->store, c->etcd_endpoints, c->etcd_prefix, c->appliance, c->etcd_ca_file,
	       c->etcd_cert_file, c->etcd_key_file, c->etcd_username, c->etcd_password_file,
	       c->etcd_timeout_ms, c->etcd_connect_timeout_ms, c->etcd_lease_seconds,
	       c->etcd_flush_seconds, c->etcd_journal);
	printf("report_listen = %s\nreport_tls_cert = %s\nreport_tls_key = %s\n"
	       "report_history_days = %u\nnotice_smtp_relay = %s\nnotice_mail_from = %s\n"
	       "notice_retry_min = %u\nnotice_retry_max = %u\nnotice_timeout = %u\n"
	       "notice_expire_days = %u\n",
	       c->report_listen, c->report_tls_cert, c->report_tls_key, c->report_history_days,
	       c->notice_smtp_relay, c->notice_mail_from, c->notice_retry_min, c->notice_retry_max,
	       c->notice_timeout, c->notice_expire_days);
}

/* ---- start-up, run, teardown ---- */

struct options {
	const char *conf;
	const char *test_clock; /* --test-clock=EPOCH's value, or NULL */
	bool check;
	bool want_test_clock;
};

/* The command line.  -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "test-clock", optional_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(o, 0, sizeof(*o));
	while ((c = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->conf = optarg;
			break;
		case 'C':
			o->check = true;
			break;
		case 'T':
			o->want_test_clock = true;
			o->test_clock = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("tescontrol %s (control protocol %d)\n", TES_VERSION,
			       CTL_PROTO_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tescontrol: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	return -1;
}

/* The configuration file and the user to become.  -1 to go on, else the
 * exit status (--check-config prints and stops here). */
static int configure(struct cp *cp, const struct options *o)
{
	char err[1024];

	cp->conf = o->conf ? o->conf : "configuration";
	cp_config_defaults(&cp->cfg);
	if (o->conf && cp_config_load(&cp->cfg, o->conf, err, sizeof(err))) {
		fprintf(stderr, "tescontrol: %s\n", err);
		return 2;
	}
	cp_config_finish(&cp->cfg);
	if (priv_lookup(cp->cfg.user, &cp->user, err, sizeof(err))) {
		fprintf(stderr, "tescontrol: %s: user: %s\n", cp->conf, err);
		return 2;
	}
	if (o->check) {
		print_config(cp);
		return 0;
	}
	return -1;
}

/* --test-clock: 0, or 2 (refused). */
static int set_test_clock(struct cp *cp, const struct options *o)
{
	const char *allow = getenv("TES_ALLOW_TEST_CLOCK");
	struct timespec ts;

	/* Moving the clock moves every enforcement date: never in production,
	 * so it takes a deliberate second switch. */
	if (!allow || strcmp(allow, "1") != 0) {
		fprintf(stderr, "tescontrol: --test-clock is for tests only and is refused"
				" unless TES_ALLOW_TEST_CLOCK=1 is set in the environment\n");
		return 2;
	}
	cp->clock.test = true;
	clock_gettime(CLOCK_REALTIME, &ts);
	cp->clock.test_now = ts.tv_sec;
	if (o->test_clock) {
		char *end;
		long long x = strtoll(o->test_clock, &end, 10);

		if (*end || end == o->test_clock || x < 0 || x > TES_TIME_MAX) {
			fprintf(stderr, "tescontrol: --test-clock=%s: not a time in seconds\n",
				o->test_clock);
			return 2;
		}
		cp->clock.test_now = x;
	}
	cp_warn("TEST CLOCK ENABLED: time stands at %lld and only moves by `tesctl clock`;"
		" enforcement dates are not real. Never run this in production.",
		(long long)cp->clock.test_now);
	return 0;
}

/* A secret from a file of its own (not in the configuration, which more
 * people read): its first line. */
static int read_secret(const char *path, char *out, size_t len, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f) {
		snprintf(err, errlen, "etcd_password_file %s: %s", path, strerror(errno));
		return -1;
	}
	if (!fgets(out, (int)len, f))
		out[0] = '\0';
	fclose(f);
	n = strcspn(out, "\r\n");
	out[n] = '\0';
	if (!n) {
		snprintf(err, errlen, "etcd_password_file %s: empty", path);
		return -1;
	}
	return 0;
}

/* The store the configuration names: SQLite (one box) or the fleet's
 * etcd. */
static struct tes_store *open_store(struct cp *cp, char *err, size_t errlen)
{
	const struct cp_config *c = &cp->cfg;
	char eps_buf[sizeof(c->etcd_endpoints)], password[512] = "";
	const char *eps[16];
	size_t n = 0;
	struct tes_store *st;
	char *save = NULL;

	if (strcmp(c->store, "etcd") != 0) {
		snprintf(cp->store_desc, sizeof(cp->store_desc), "%s", c->db_path);
		return store_sqlite_open(c->db_path, err, errlen);
	}
	if (!c->etcd_endpoints[0]) {
		snprintf(err, errlen, "%s: store = etcd needs etcd_endpoints", cp->conf);
		return NULL;
	}
	snprintf(eps_buf, sizeof(eps_buf), "%s", c->etcd_endpoints);
	for (char *t = strtok_r(eps_buf, ", \t", &save); t && n < 16;
	     t = strtok_r(NULL, ", \t", &save))
		eps[n++] = t;
	if (c->etcd_password_file[0] &&
	    read_secret(c->etcd_password_file, password, sizeof(password), err, errlen))
		return NULL;
	if (!c->etcd_username[0] != !password[0]) {
		snprintf(err, errlen, "%s: etcd_username and etcd_password_file go together",
			 cp->conf);
		return NULL;
	}
	{
		const struct store_etcd_config ec = {
			.endpoints = eps,
			.nendpoints = n,
			.prefix = c->etcd_prefix,
			.appliance = c->appliance,
			.ca_file = c->etcd_ca_file,
			.cert_file = c->etcd_cert_file,
			.key_file = c->etcd_key_file,
			.username = c->etcd_username,
			.password = password,
			.timeout_ms = (int)c->etcd_timeout_ms,
			.connect_timeout_ms = (int)c->etcd_connect_timeout_ms,
			.lease_seconds = c->etcd_lease_seconds,
			.flush_seconds = c->etcd_flush_seconds,
			.journal_path = c->etcd_journal,
		};

		st = store_etcd_open(&ec, err, errlen);
	}
	memset(password, 0, sizeof(password));
	snprintf(cp->store_desc, sizeof(cp->store_desc), "etcd %.2048s prefix %s",
		 c->etcd_endpoints, c->etcd_prefix);
	return st;
}

/* The store and the state on it, documents and servers loaded.  The
 * subscribers that must hear of changes from here on are added first; the
 * others join as they start. */
static int open_state(struct cp *cp)
{
	char err[2048];
	struct timespec ts;

	cp->fleet.fd = -1;
	cp->fleet.fn = on_fleet;
	cp->store = open_store(cp, err, sizeof(err));
	if (!cp->store) {
		cp_err("store: %s", err);
		return -1;
	}
	if (cp_state_init(&cp->st, cp->store, &cp->clock)) {
		cp_err("out of memory");
		store_close(cp->store);
		return -1;
	}
	cp->st.started_at = cp_clock_now(&cp->clock);
	/* the real clock, not the test one: generations must keep growing
	 * across restarts whatever the test clock says */
	clock_gettime(CLOCK_REALTIME, &ts);
	cp_gateways_init(&cp->gws, &cp->loop, &cp->st,
			 (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
	cp->evlog.fd = -1;
	/* In this order: the event log line of a change, then the gateways,
	 * then escalation (esc_on_note, once it exists). */
	cp_state_subscribe(&cp->st, cp_evlog_on_note, &cp->evlog);
	cp_state_subscribe(&cp->st, cp_gateways_on_note, &cp->gws);
	if (cp_state_load_documents(&cp->st, cp->cfg.catalog_file, cp->cfg.compliance_file,
				    cp->cfg.policy_file) ||
	    cp_state_load(&cp->st)) {
		cp_state_free(&cp->st);
		store_close(cp->store);
		return -1;
	}
	if (store_shared(cp->store)) {
		if (cp_state_fleet_init(&cp->st, cp->cfg.etcd_flush_seconds)) {
			cp_err("out of memory");
			cp_state_free(&cp->st);
			store_close(cp->store);
			return -1;
		}
		cp_info("fleet: appliance %s on %s", cp->cfg.appliance, cp->store_desc);
	}
	return 0;
}

static void close_state(struct cp *cp)
{
	cp_watch_del(&cp->loop, &cp->fleet);
	cp_state_free(&cp->st);
	store_close(cp->store);
}

static int start_escalation(struct cp *cp)
{
	if (esc_init(&cp->esc, &cp->st, &cp->clock, &cp->loop)) {
		esc_fini(&cp->esc);
		return -1;
	}
	cp_state_subscribe(&cp->st, esc_on_note, &cp->esc);
	return 0;
}

static int start_xdp(struct cp *cp)
{
	const struct cp_xdp_config xc = {
		.interfaces = cp->cfg.xdp_interfaces,
		.pin_root = cp->cfg.xdp_pin_root,
		.mode = cp->cfg.xdp_mode,
		.ports = cp->cfg.xdp_ports,
		.required = cp->cfg.xdp_required,
	};

	if (cp_xdp_start(&cp->xdp, &xc, &cp->loop, &cp->st)) {
		cp_xdp_stop(cp->xdp);
		return -1;
	}
	if (cp->xdp)
		cp_state_subscribe(&cp->st, cp_xdp_on_note, cp->xdp);
	return 0;
}

/* The report page and the notices: what they keep is loaded now (the
 * TLS files read while we may still be root); their threads start after
 * the drop (start_threads). */
static int start_pages(struct cp *cp)
{
	const struct cp_report_config rc = {
		.listen = cp->cfg.report_listen,
		.tls_cert = cp->cfg.report_tls_cert,
		.tls_key = cp->cfg.report_tls_key,
		.history_days = cp->cfg.report_history_days,
		.version = TES_VERSION,
	};
	const struct cp_notices_config nc = {
		.smtp_relay = cp->cfg.notice_smtp_relay,
		.mail_from = cp->cfg.notice_mail_from,
		.retry_min = cp->cfg.notice_retry_min,
		.retry_max = cp->cfg.notice_retry_max,
		.timeout = cp->cfg.notice_timeout,
		.expire_days = cp->cfg.notice_expire_days,
		.version = TES_VERSION,
	};

	if (cp_report_init(&cp->report, &rc, &cp->st, &cp->loop) ||
	    cp_notices_init(&cp->notices, &nc, &cp->st, &cp->loop))
		return -1;
	cp_state_subscribe(&cp->st, cp_report_on_note, cp->report);
	cp_state_subscribe(&cp->st, cp_notices_on_note, cp->notices);
	cp->gws.on_count = cp_report_add_count;
	cp->gws.on_count_ctx = cp->report;
	return 0;
}

static void stop_pages(struct cp *cp)
{
	cp_notices_stop(cp->notices);
	cp_report_stop(cp->report);
	cp->notices = NULL;
	cp->report = NULL;
}

/* After the drop, like the metrics server: the TLS listener and the
 * notices' sender thread. */
static int start_threads(struct cp *cp)
{
	if (cp_report_listen(cp->report))
		return -1;
	return cp_notices_start(cp->notices);
}

static int start_admin(struct cp *cp)
{
	cp_admin_init(&cp->admin, &cp->loop, &cp->st, &cp->esc, &cp->gws, cp->xdp, cp->store_desc);
	cp_admin_init(&cp->admin, &cp->loop, &cp->st, &cp->esc, &cp->gws, cp->xdp, cp->cfg.db_path);
	cp->admin.report = cp->report;
	cp->admin.notices = cp->notices;
	if (cp_admin_listen(&cp->admin, cp->cfg.admin_socket, cp->admin_gid_set, cp->admin_gid)) {
		cp_admin_stop(&cp->admin);
		return -1;
	}
	return 0;
}

static int start_metrics(struct cp *cp)
{
	const struct cp_metrics_sources src = {
		.st = &cp->st,
		.esc = &cp->esc,
		.gws = &cp->gws,
		.xdp = cp->xdp,
		.notices = cp->notices,
		.report = cp_report_http,
		.report_ctx = cp->report,
	};

	return cp_metrics_start(&cp->metrics, cp->cfg.metrics_listen, &cp->loop, &src, cp->store);
}

/* Until a signal (0) or a broken event loop (1). */
static int run(struct cp *cp)
{
	cp_info("ready: %zu tenants, %u servers, catalog %s, policy %s%s", cp->st.tab.ntenants,
		cp->st.tab.nlive, catalog_version(cp->st.catalog), cp->st.policy_doc.version,
		cp->clock.test ? ", TEST CLOCK" : "");
	while (!cp->loop.stop) {
		if (cp_loop_round(&cp->loop))
			break;
		cp_gateways_reap(&cp->gws);
		cp_admin_reap(&cp->admin);
		/* Batched: one sync for a round of sightings, not one each. */
		cp_xdp_sync_pending(cp->xdp);
		cp_notices_after_round(cp->notices);
		cp_report_after_round(cp->report);
	}
	cp_state_flush(&cp->st);
	/* The fleet gets every seen time it lacks, and sees this one leave. */
	cp_state_fleet_stop(&cp->st);
	cp_info("stopped");
	return cp->loop.stop ? 0 : 1;
}

/* Start-up and teardown as one ladder: each step undoes the ones before
 * it when it fails, and what runs is torn down in the reverse order. */
static int serve(struct cp *cp)
{
	int rc = 1;

	if (lock_state_dir(cp))
		return 1;
	if (cp_loop_init(&cp->loop)) {
		cp_err("setting up the event loop: %s", strerror(errno));
		goto unlock;
	}
	if (open_state(cp))
		goto loop;
	if (setup_signals(cp))
		goto state;
	if (start_escalation(cp))
		goto signals;
	if (start_flush(cp))
		goto escalation;
	/* The fleet sees this appliance alive from the start. */
	if (store_shared(cp->store))
		cp_state_fleet_tick(&cp->st, 0);
	fleet_watch_sync(cp);
	if (cp_evlog_open(&cp->evlog, cp->cfg.event_log, &cp->clock))
		goto flush;
	/* Anything that fell due while we were down is announced now, late
	 * and saying so, before any gateway connects. */
	esc_evaluate_all(&cp->esc, "tescontrol was not running");
	cp_state_flush(&cp->st);
	if (start_pages(cp))
		goto pages;
	if (start_xdp(cp))
		goto pages;
	if (cp_gateways_listen(&cp->gws, cp->cfg.gateway_socket, cp->gateway_gid_set,
			       cp->gateway_gid))
		goto gateways;
	if (start_admin(cp))
		goto gateways;
	if (drop_privileges(cp, &cp->user))
		goto admin;
	/* The metrics server makes a thread: after the drop, so that it
	 * inherits only what the main thread kept. */
	if (start_metrics(cp) || start_threads(cp))
		goto metrics;
	rc = run(cp);
metrics:
	cp_metrics_stop(cp->metrics, cp->store);
admin:
	cp_admin_stop(&cp->admin);
gateways:
	cp_gateways_stop(&cp->gws);
	cp_xdp_stop(cp->xdp);
pages:
	stop_pages(cp);
	cp_evlog_close(&cp->evlog);
flush:
	close(cp->flush.fd);
escalation:
	esc_fini(&cp->esc);
      signals:
	close(cp->sig.fd);
state:
	close_state(cp);
loop:
	cp_loop_fini(&cp->loop);
unlock:
	close(cp->lock_fd);
	return rc;
}

int main(int argc, char **argv)
{
	static struct cp cpv;
	struct cp *cp = &cpv;
	struct options o;
	char err[1024];
	int rc;

	rc = parse_args(argc, argv, &o);
	if (rc < 0)
		rc = configure(cp, &o);
	if (rc >= 0)
		return rc;
	cp_log_init(cp->cfg.log_level);
	/* While this is the only thread: every thread made later inherits it. */
	if (priv_begin(err, sizeof(err))) {
		cp_err("%s", err);
		return 1;
	}
	if (err[0])
		cp_info("privileges: %s", err);
	if (o.want_test_clock && set_test_clock(cp, &o))
		return 2;
	if (resolve_group(cp->cfg.admin_group, &cp->admin_gid, &cp->admin_gid_set, cp->conf,
			  "admin_group") ||
	    resolve_group(cp->cfg.gateway_group, &cp->gateway_gid, &cp->gateway_gid_set, cp->conf,
			  "gateway_group"))
		return 2;
	cp_info("tescontrol %s starting (pid %d, control protocol %d)", TES_VERSION, (int)getpid(),
		CTL_PROTO_VERSION);
	return serve(cp);
}
