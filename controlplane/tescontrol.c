/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tescontrol: the control plane daemon.  Owns the durable enforcement state
 * (SQLite), the catalog and policy in force, the escalation timers and the
 * pause quota; serves gateways over the control protocol and operators over
 * the admin protocol.  One thread, one epoll set.  See docs/tescontrol.8.md.
 */
#include "controlplane/cp.h"
#include "base/privdrop.h"

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
#include <time.h>
#include <unistd.h>

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
		   "xdp_required (yes|no), xdp_ports, user.  SIGHUP reopens the event log.\n");
}

static void on_signal(struct cp *cp, struct cp_watch *w, uint32_t events)
{
	struct signalfd_siginfo si;

	(void)events;
	while (read(w->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			/* Only the event log is reopened (rotation); the catalog
			 * and policy change through tesctl. */
			cp_evlog_reopen(cp);
			continue;
		}
		cp_info("signal %u: shutting down", si.ssi_signo);
		cp->stop = true;
	}
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
		return -1;
	}
	return 0;
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
	if (cp->sig.fd < 0 || cp_watch_add(cp, &cp->sig, EPOLLIN))
		return -1;
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

	if (cp_xdp_running(cp))
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
		if (cp_xdp_probe_maps(cp) == 0) {
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

static void loop(struct cp *cp)
{
	struct epoll_event ev[64];

	while (!cp->stop) {
		int n = epoll_wait(cp->epfd, ev, 64, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			cp_err("epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			struct cp_watch *w = ev[i].data.ptr;

			w->fn(cp, w, ev[i].events);
		}
		gw_reap(cp);
		admin_reap(cp);
		/* Batched: one sync for a round of sightings, not one each. */
		cp_xdp_sync_pending(cp);
	}
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
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "test-clock", optional_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	static struct cp cpv;
	struct cp *cp = &cpv;
	struct priv_user pu;
	const char *conf = NULL, *test_clock = NULL;
	bool check = false, want_test_clock = false;
	char err[1024];
	int c, rc = 1;

	while ((c = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			conf = optarg;
			break;
		case 'C':
			check = true;
			break;
		case 'T':
			want_test_clock = true;
			test_clock = optarg;
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
	cp->epfd = cp->lock_fd = -1;
	cp->gw_listen.fd = cp->admin_listen.fd = cp->timer.fd = cp->flush.fd = cp->sig.fd = -1;
	cp->metrics_tick.fd = cp->evlog_fd = cp->xdp_tick.fd = -1;
	cp->armed_due = INT64_MAX;
	cp_config_defaults(&cp->cfg);
	if (conf && cp_config_load(&cp->cfg, conf, err, sizeof(err))) {
		fprintf(stderr, "tescontrol: %s\n", err);
		return 2;
	}
	cp_config_finish(&cp->cfg);
	if (priv_lookup(cp->cfg.user, &pu, err, sizeof(err))) {
		fprintf(stderr, "tescontrol: %s: user: %s\n", conf ? conf : "configuration", err);
		return 2;
	}
	if (check) {
		print_config(cp);
		return 0;
	}
	cp_log_init(cp->cfg.log_level);
	/* While this is the only thread: every thread made later inherits it. */
	if (priv_begin(err, sizeof(err))) {
		cp_err("%s", err);
		return 1;
	}
	if (err[0])
		cp_info("privileges: %s", err);

	if (want_test_clock) {
		const char *allow = getenv("TES_ALLOW_TEST_CLOCK");
		struct timespec ts;

		/* Moving the clock moves every enforcement date: never in
		 * production, so it takes a deliberate second switch. */
		if (!allow || strcmp(allow, "1") != 0) {
			fprintf(stderr,
				"tescontrol: --test-clock is for tests only and is refused"
				" unless TES_ALLOW_TEST_CLOCK=1 is set in the environment\n");
			return 2;
		}
		cp->test_clock = true;
		clock_gettime(CLOCK_REALTIME, &ts);
		cp->test_now = ts.tv_sec;
		if (test_clock) {
			char *end;
			long long x = strtoll(test_clock, &end, 10);

			if (*end || end == test_clock || x < 0 || x > TES_TIME_MAX) {
				fprintf(stderr,
					"tescontrol: --test-clock=%s: not a time in seconds\n",
					test_clock);
				return 2;
			}
			cp->test_now = x;
		}
		cp_warn("TEST CLOCK ENABLED: time stands at %lld and only moves by `tesctl clock`;"
			" enforcement dates are not real. Never run this in production.",
			(long long)cp->test_now);
	}

	if (resolve_group(cp->cfg.admin_group, &cp->admin_gid, &cp->admin_gid_set,
			  conf ? conf : "configuration", "admin_group") ||
	    resolve_group(cp->cfg.gateway_group, &cp->gateway_gid, &cp->gateway_gid_set,
			  conf ? conf : "configuration", "gateway_group"))
		return 2;
	cp_info("tescontrol %s starting (pid %d, control protocol %d)", TES_VERSION, (int)getpid(),
		CTL_PROTO_VERSION);
	if (cp_state_init(&cp->st)) {
		cp_err("out of memory");
		return 1;
	}
	if (lock_state_dir(cp))
		goto out;
	cp->store = store_sqlite_open(cp->cfg.db_path, err, sizeof(err));
	if (!cp->store) {
		cp_err("store: %s", err);
		goto out;
	}
	cp->started_at = cp_now(cp);
	{
		/* the real clock, not the test one: generations must keep
		 * growing across restarts whatever the test clock says */
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		cp->gen = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	}
	if (cp_load_documents(cp) || cp_load_state(cp))
		goto out;
	cp->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (cp->epfd < 0 || setup_signals(cp) || esc_init(cp)) {
		cp_err("setting up the event loop: %s", strerror(errno));
		goto out;
	}
	if (cp_evlog_open(cp))
		goto out;
	/* Anything that fell due while we were down is announced now, late
	 * and saying so, before any gateway connects. */
	esc_evaluate_all(cp, "tescontrol was not running");
	cp_flush_dirty(cp);
	/* The metrics server makes a thread: after the drop, so that it
	 * inherits only what the main thread kept. */
	if (cp_xdp_start(cp) || gw_init(cp) || admin_init(cp) || drop_privileges(cp, &pu) ||
	    cp_metrics_start(cp))
		goto out;
	cp_info("ready: %zu tenants, %u servers, catalog %s, policy %s%s", cp->st.ntenants,
		cp->st.nlive, catalog_version(cp->catalog), cp->policy_doc.version,
		cp->test_clock ? ", TEST CLOCK" : "");
	loop(cp);
	rc = cp->stop ? 0 : 1;
	cp_flush_dirty(cp);
	cp_info("stopped");
out:
	cp_metrics_stop(cp);
	cp_xdp_stop(cp);
	cp_evlog_close(cp);
	gw_shutdown(cp);
	admin_shutdown(cp);
	store_close(cp->store);
	catalog_free(cp->catalog);
	store_doc_free(&cp->builds);
	store_doc_free(&cp->compliance);
	store_doc_free(&cp->policy_doc);
	cp_state_free(&cp->st);
	if (cp->epfd >= 0)
		close(cp->epfd);
	if (cp->timer.fd >= 0)
		close(cp->timer.fd);
	if (cp->flush.fd >= 0)
		close(cp->flush.fd);
	if (cp->sig.fd >= 0)
		close(cp->sig.fd);
	if (cp->lock_fd >= 0)
		close(cp->lock_fd);
	return rc;
}
