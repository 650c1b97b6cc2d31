/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tes-dpdk-echo: the userspace stack on one DPDK port, echoing on a TCP
 * port.  It proves the port layer against a real peer (the Linux kernel over
 * net_tap in tests/dpdk/test_tap_echo.py) before the SMTP engine runs there.
 *
 *   tes-dpdk-echo [--addr A.B.C.D/len] [--port N] [--max-conns N]
 *                 [--no-csum-offload] [--queues N] [--impair SPEC]
 *                 -- EAL arguments
 *
 * --queues N runs N workers, one queue and one stack each, on the first N
 * enabled lcores (the EAL's -l must give at least N), with software (or
 * hardware RSS) steering between them; every worker listens.  --impair
 * puts seeded loss/reordering/duplication/corruption on every queue (see
 * dataplane/dpdk/impair.h for SPEC).
 *
 * The EAL arguments must contain --no-pci (or an explicit -a list); a
 * private --file-prefix or --in-memory is added when missing.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>

#include "dataplane/dpdk/impair.h"
#include "dataplane/dpdk/port.h"
#include "dataplane/dpdk/worker.h"
#include "dataplane/stack/stack.h"

static atomic_bool stop;

static void on_signal(int sig)
{
	(void)sig;
	atomic_store(&stop, true);
}

/* Echo what can be sent now; the rest stays in the receive buffer (which
 * closes the window) until writable says there is room again. */
static void echo(struct tcp_conn *c)
{
	for (;;) {
		const uint8_t *p1, *p2;
		size_t n1, n2;
		tcp_peek(c, &p1, &n1, &p2, &n2);
		if (n1 == 0)
			break;
		long took = tcp_send(c, p1, n1);
		if (took <= 0)
			break;
		tcp_consume(c, (size_t)took);
		if ((size_t)took < n1)
			break;
	}
	if (tcp_eof(c) && tcp_readable(c) == 0 && tcp_state(c) == TCP_CLOSE_WAIT)
		tcp_close(c);
}

/* One per queue; counters written by its own lcore only. */
struct echo_worker {
	struct dp_worker w;
	uint64_t accepted, closed_normal, closed_other;
};

static int app_accept(void *lctx, struct stack_listener *l, struct tcp_conn *c)
{
	struct echo_worker *ew = lctx;
	(void)l;
	tcp_set_ctx(c, ew);
	ew->accepted++;
	return 0;
}

static void app_readable(void *ctx, struct tcp_conn *c)
{
	(void)ctx;
	echo(c);
}

static void app_closed(void *ctx, struct tcp_conn *c, enum tcp_close_reason why)
{
	struct echo_worker *ew = ctx;
	(void)c;
	if (why == TCP_CLOSE_NORMAL)
		ew->closed_normal++;
	else
		ew->closed_other++;
}

static int worker_main(void *arg)
{
	struct echo_worker *ew = arg;
	dp_worker_run(&ew->w, &stop);
	dp_worker_drain(&ew->w);
	return 0;
}

static int parse_addr(const char *s, uint32_t *addr, uint8_t *plen)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%s", s);
	char *slash = strchr(buf, '/');
	*plen = 24;
	if (slash) {
		*slash = '\0';
		int n = atoi(slash + 1);
		if (n < 1 || n > 32)
			return -1;
		*plen = (uint8_t)n;
	}
	struct in_addr a;
	if (inet_pton(AF_INET, buf, &a) != 1)
		return -1;
	*addr = ntohl(a.s_addr);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: tes-dpdk-echo [--addr A.B.C.D/len] [--port N] [--max-conns N] "
			"[--no-csum-offload] [--queues N] [--impair SPEC] "
			"-- EAL arguments (with --no-pci)\n");
}

int main(int argc, char **argv)
{
	uint32_t addr = 0;
	uint8_t plen = 24;
	unsigned port = 7, max_conns = 1024;
	unsigned nq = 1;
	bool no_csum = false, impair = false;
	struct dp_impair_conf ic;
	char ierr[160];
	static const struct option opts[] = {
		{ "addr", required_argument, NULL, 'a' },
		{ "port", required_argument, NULL, 'p' },
		{ "max-conns", required_argument, NULL, 'm' },
		{ "no-csum-offload", no_argument, NULL, 'n' },
		{ "queues", required_argument, NULL, 'q' },
		{ "impair", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int dashdash = -1;
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--") == 0) {
			dashdash = i;
			break;
		}
	if (dashdash < 0) {
		usage();
		return 2;
	}
	int oc;
	while ((oc = getopt_long(dashdash, argv, "", opts, NULL)) != -1) {
		switch (oc) {
		case 'a':
			if (parse_addr(optarg, &addr, &plen) != 0) {
				fprintf(stderr, "bad --addr %s\n", optarg);
				return 2;
			}
			break;
		case 'p':
			port = (unsigned)atoi(optarg);
			break;
		case 'm':
			max_conns = (unsigned)atoi(optarg);
			break;
		case 'n':
			no_csum = true;
			break;
		case 'q':
			nq = (unsigned)atoi(optarg);
			if (nq < 1 || nq > DP_MAX_QUEUES) {
				fprintf(stderr, "--queues: 1 to %d\n", DP_MAX_QUEUES);
				return 2;
			}
			break;
		case 'i':
			if (dp_impair_parse(optarg, &ic, ierr, sizeof(ierr)) != 0) {
				fprintf(stderr, "--impair: %s\n", ierr);
				return 2;
			}
			impair = true;
			break;
		default:
			usage();
			return 2;
		}
	}
	if (addr == 0 || port == 0 || port > 65535) {
		usage();
		return 2;
	}
	/* The EAL sees argv[0] followed by what came after "--". */
	int eargc = argc - dashdash;
	char **eargv = calloc((size_t)eargc + 1, sizeof(*eargv));
	if (!eargv)
		return 1;
	eargv[0] = argv[0];
	for (int i = 1; i < eargc; i++)
		eargv[i] = argv[dashdash + i];
	if (dp_eal_init(eargc, eargv) != 0) {
		free(eargv);
		return 1;
	}

	/* Installed after the EAL, which must not override them. */
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	int rc = 1;
	if (rte_eth_dev_count_avail() < 1) {
		fprintf(stderr, "no DPDK port (give one with --vdev)\n");
		goto out_eal;
	}
	uint16_t pid;
	RTE_ETH_FOREACH_DEV (pid) {
		break;
	}
	static struct dp_port dport; /* 4 KB of RETA: not on the stack */
	struct dp_port_conf pc = { .port_id = pid,
				   .nb_queues = (uint16_t)nq,
				   .no_csum_offload = no_csum };
	if (rte_lcore_count() < nq) {
		fprintf(stderr, "--queues %u needs %u lcores (-l), %u given\n", nq, nq,
			rte_lcore_count());
		goto out_eal;
	}
	if (dp_port_setup(&dport, &pc) != 0)
		goto out_eal;
	struct dp_steer *steer = NULL;
	struct echo_worker *ews = calloc(nq, sizeof(*ews));
	if (!ews)
		goto out_port;
	if (nq > 1 && !(steer = dp_steer_create(&dport, nq)))
		goto out_port;
	if (impair) {
		for (unsigned q = 0; q < nq; q++)
			if (dp_impair_attach(&dport, (uint16_t)q, &ic) != 0)
				goto out_port;
	}

	static const struct stack_app app = {
		.accept = app_accept,
		.readable = app_readable,
		.writable = app_readable,
		.closed = app_closed,
	};
	/* Worker q polls queue q on the q-th enabled lcore (port.c sets the
	 * queues up in that order); the main lcore is worker 0. */
	unsigned lcores[DP_MAX_QUEUES], q = 0, lc;
	RTE_LCORE_FOREACH(lc)
	{
		if (q < nq)
			lcores[q++] = lc;
	}
	for (q = 0; q < nq; q++) {
		struct echo_worker *ew = &ews[q];
		dp_worker_init(&ew->w, &dport, (uint16_t)q);
		ew->w.pool = dp_port_pool(&dport, (int)rte_lcore_to_socket_id(lcores[q]));
		if (steer)
			dp_worker_set_steer(&ew->w, steer, q);
		struct stack_config cfg;
		stack_config_defaults(&cfg);
		dp_worker_stack_config(&ew->w, &cfg);
		cfg.naddrs = 1;
		stack_addr_ipv4(&cfg.addrs[0].addr, addr);
		cfg.addrs[0].prefix_len = plen;
		cfg.max_conns = max_conns;
		cfg.rcvbuf = 65536;
		cfg.sndbuf = 65536;
		cfg.msl = 1000000000ULL; /* short TIME_WAIT: a test tool, not the gateway */
		if (getrandom(cfg.hash_key, sizeof(cfg.hash_key), 0) != sizeof(cfg.hash_key) ||
		    getrandom(cfg.isn_key, sizeof(cfg.isn_key), 0) != sizeof(cfg.isn_key)) {
			fprintf(stderr, "getrandom failed\n");
			goto out_stack;
		}
		char err[256] = "";
		ew->w.st = stack_create(&cfg, &dp_worker_io, &ew->w, &app, err, sizeof(err));
		if (!ew->w.st) {
			fprintf(stderr, "stack_create: %s\n", err[0] ? err : "?");
			goto out_stack;
		}
		if (!stack_listen(ew->w.st, NULL, (uint16_t)port, 128, ew)) {
			fprintf(stderr, "stack_listen %u failed\n", port);
			goto out_stack;
		}
	}
	struct in_addr ia = { .s_addr = htonl(addr) };
	for (q = 1; q < nq; q++) {
		if (rte_eal_remote_launch(worker_main, &ews[q], lcores[q]) != 0) {
			fprintf(stderr, "cannot launch worker %u on lcore %u\n", q, lcores[q]);
			atomic_store(&stop, true);
			rte_eal_mp_wait_lcore();
			goto out_stack;
		}
	}
	printf("tes-dpdk-echo: listening on %s:%u (%u worker(s), lcore %u first)\n", inet_ntoa(ia),
	       port, nq, rte_lcore_id());
	fflush(stdout);

	worker_main(&ews[0]);
	rte_eal_mp_wait_lcore();

	uint64_t acc = 0, cn = 0, co = 0;
	for (q = 0; q < nq; q++) {
		acc += ews[q].accepted;
		cn += ews[q].closed_normal;
		co += ews[q].closed_other;
	}
	printf("tes-dpdk-echo: stopping: accepted %llu closed %llu (abnormal %llu)\n",
	       (unsigned long long)acc, (unsigned long long)cn, (unsigned long long)co);
	for (q = 0; q < nq; q++) {
		if (nq > 1)
			printf("tes-dpdk-echo: worker %u: accepted %llu\n", q,
			       (unsigned long long)ews[q].accepted);
		dp_worker_log_stats(&ews[q].w, stdout);
		if (impair)
			dp_impair_log_stats(&dport, (uint16_t)q, stdout);
	}
	dp_port_log_stats(&dport, stdout);
	fflush(stdout);
	rc = 0;
out_stack:
	for (q = 0; q < nq; q++)
		if (ews[q].w.st)
			stack_destroy(ews[q].w.st);
out_port:
	/* The rings may hold mbufs of the port's pools: empty them first. */
	dp_steer_free(steer);
	dp_port_close(&dport);
	free(ews);
out_eal:
	dp_eal_cleanup();
	free(eargv); /* the EAL's pointers into it are gone with the cleanup */
	return rc;
}
