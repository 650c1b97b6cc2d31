/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tes-dpdk-echo: the userspace stack on one DPDK port, echoing on a TCP
 * port.  It proves the port layer against a real peer (the Linux kernel over
 * net_tap in tests/dpdk/test_tap_echo.py) before the SMTP engine runs there.
 *
 *   tes-dpdk-echo [--addr A.B.C.D/len] [--port N] [--max-conns N]
 *                 [--no-csum-offload] -- EAL arguments
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

static uint64_t accepted, closed_normal, closed_other;

static int app_accept(void *lctx, struct stack_listener *l, struct tcp_conn *c)
{
	(void)lctx;
	(void)l;
	tcp_set_ctx(c, NULL);
	accepted++;
	return 0;
}

static void app_readable(void *ctx, struct tcp_conn *c)
{
	(void)ctx;
	echo(c);
}

static void app_closed(void *ctx, struct tcp_conn *c, enum tcp_close_reason why)
{
	(void)ctx;
	(void)c;
	if (why == TCP_CLOSE_NORMAL)
		closed_normal++;
	else
		closed_other++;
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
			"[--no-csum-offload] -- EAL arguments (with --no-pci)\n");
}

int main(int argc, char **argv)
{
	uint32_t addr = 0;
	uint8_t plen = 24;
	unsigned port = 7, max_conns = 1024;
	bool no_csum = false;
	static const struct option opts[] = {
		{ "addr", required_argument, NULL, 'a' },
		{ "port", required_argument, NULL, 'p' },
		{ "max-conns", required_argument, NULL, 'm' },
		{ "no-csum-offload", no_argument, NULL, 'n' },
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
	struct dp_port dport;
	struct dp_port_conf pc = { .port_id = pid, .nb_queues = 1, .no_csum_offload = no_csum };
	if (dp_port_setup(&dport, &pc) != 0)
		goto out_eal;

	struct dp_worker w;
	dp_worker_init(&w, &dport, 0);
	struct stack_config cfg;
	stack_config_defaults(&cfg);
	dp_worker_stack_config(&w, &cfg);
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
		goto out_port;
	}
	static const struct stack_app app = {
		.accept = app_accept,
		.readable = app_readable,
		.writable = app_readable,
		.closed = app_closed,
	};
	const char *err = NULL;
	w.st = stack_create(&cfg, &dp_worker_io, &w, &app, &err);
	if (!w.st) {
		fprintf(stderr, "stack_create: %s\n", err ? err : "?");
		goto out_port;
	}
	if (!stack_listen(w.st, NULL, (uint16_t)port, 128, NULL)) {
		fprintf(stderr, "stack_listen %u failed\n", port);
		goto out_stack;
	}
	struct in_addr ia = { .s_addr = htonl(addr) };
	printf("tes-dpdk-echo: listening on %s:%u (lcore %u)\n", inet_ntoa(ia), port,
	       rte_lcore_id());
	fflush(stdout);

	dp_worker_run(&w, &stop);
	dp_worker_drain(&w);

	printf("tes-dpdk-echo: stopping: accepted %llu closed %llu (abnormal %llu)\n",
	       (unsigned long long)accepted, (unsigned long long)closed_normal,
	       (unsigned long long)closed_other);
	dp_worker_log_stats(&w, stdout);
	dp_port_log_stats(&dport, stdout);
	fflush(stdout);
	rc = 0;
out_stack:
	stack_destroy(w.st);
out_port:
	dp_port_close(&dport);
out_eal:
	dp_eal_cleanup();
	free(eargv); /* the EAL's pointers into it are gone with the cleanup */
	return rc;
}
