/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tes-xdp: drive the XDP early drop by hand (docs/xdp.md).  A thin shell
 * over libtesxdp, for operators and tests until tesctl and tescontrol's map
 * sync take the drop list over; it works on the same pinned maps they will.
 *
 * Exit status: 0 done, 1 refused or failed, 2 usage error.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/xdp/xdp_loader.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2

static const char *pin_root;
static char err[512];

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: tes-xdp [--pin-root DIR] [-v] COMMAND [ARGS]\n"
		"\n"
		"Commands:\n"
		"  attach IFACE [--mode auto|native|generic] [--ports LIST]\n"
		"                 load tes_xdp (reusing the pinned maps) and attach it; auto\n"
		"                 tries native mode, then generic with a warning; replaces an\n"
		"                 older tes_xdp in place; stays attached after exit; --ports:\n"
		"                 the TCP ports listed sources are dropped on (as `ports`)\n"
		"  ports [LIST]   show, or set (\"25,587\"), the TCP ports a listed source is\n"
		"                 dropped on; all else from it passes (new maps: 25)\n"
		"  detach IFACE   detach tes_xdp (never another program)\n"
		"  status IFACE   what is attached to IFACE\n"
		"  add ADDR[/PREFIX] [--ttl SECONDS] [--enforcement]\n"
		"                 drop packets from ADDR (or the range); an admin deny unless\n"
		"                 --enforcement (the reason enforcement uses for blocked\n"
		"                 servers); --ttl: the entry expires after SECONDS\n"
		"  del ADDR[/PREFIX]\n"
		"                 remove exactly that entry\n"
		"  list           every entry: address, reason, expiry\n"
		"  expire         delete expired entries (the program already ignores them)\n"
		"  stats          the counters: name, packets, bytes\n"
		"  unpin          remove the pinned maps (detach first: entries are lost)\n"
		"  probe          may this process load XDP programs? (exit 0 if so)\n"
		"\n"
		"Options:\n"
		"  --pin-root DIR  where the maps are pinned (default: $TES_XDP_PIN_ROOT, or\n"
		"                  %s); the layout version %s is appended\n"
		"  -v              libbpf's informational messages too\n"
		"  -h, --help      this text\n"
		"\n"
		"Exit status: 0 done, 1 refused or failed, 2 usage error.\n",
		TES_XDP_PIN_ROOT, TES_XDP_LAYOUT_DIR);
}

__attribute__((noreturn)) static void usage_error(const char *msg, const char *arg)
{
	fprintf(stderr, "tes-xdp: %s%s%s\n(tes-xdp --help for usage)\n", msg, arg ? ": " : "",
		arg ? arg : "");
	exit(EXIT_USAGE);
}

__attribute__((noreturn)) static void failed(void)
{
	fprintf(stderr, "tes-xdp: %s\n", err);
	exit(EXIT_FAILED);
}

/* The pinned maps; created (by loading the program, unattached) if nothing
 * is pinned yet, so entries can be staged before the first attach. */
static struct tes_xdp *open_maps(bool create)
{
	struct tes_xdp_opts o = { .pin_root = pin_root };
	struct tes_xdp *x;
	int rc = tes_xdp_open_pinned(pin_root, &x, err, sizeof(err));

	if (rc == -ENOENT && create)
		rc = tes_xdp_load(&o, &x, err, sizeof(err));
	if (rc)
		failed();
	return x;
}

static void parse_addr(const char *s, struct tes_xdp_addr *a)
{
	if (tes_xdp_addr_parse(s, a, err, sizeof(err)))
		usage_error(err, NULL);
}

static int cmd_attach(int argc, char **argv)
{
	struct tes_xdp_opts o = { .pin_root = pin_root };
	enum tes_xdp_mode mode = TES_XDP_MODE_AUTO;
	struct tes_xdp_attach_info info;
	const char *ifname = NULL;
	uint16_t ports[64];
	int nports = 0;
	struct tes_xdp *x;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--ports") == 0) {
			if (++i == argc)
				usage_error("--ports needs a list of ports", NULL);
			nports = tes_xdp_ports_parse(argv[i], ports, 64, err, sizeof(err));
			if (nports < 0)
				usage_error(err, NULL);
		} else if (strcmp(argv[i], "--mode") == 0) {
			if (++i == argc)
				usage_error("--mode needs a value", NULL);
			if (strcmp(argv[i], "auto") == 0)
				mode = TES_XDP_MODE_AUTO;
			else if (strcmp(argv[i], "native") == 0)
				mode = TES_XDP_MODE_NATIVE;
			else if (strcmp(argv[i], "generic") == 0)
				mode = TES_XDP_MODE_GENERIC;
			else
				usage_error("--mode is auto, native or generic", argv[i]);
		} else if (!ifname && argv[i][0] != '-') {
			ifname = argv[i];
		} else {
			usage_error("attach: unexpected argument", argv[i]);
		}
	}
	if (!ifname)
		usage_error("attach needs an interface", NULL);
	if (tes_xdp_load(&o, &x, err, sizeof(err)))
		failed();
	if (nports > 0 && tes_xdp_set_ports(x, ports, (unsigned)nports, err, sizeof(err))) {
		tes_xdp_close(x);
		failed();
	}
	if (tes_xdp_attach(x, ifname, mode, &info, err, sizeof(err))) {
		tes_xdp_close(x);
		failed();
	}
	if (info.fell_back)
		fprintf(stderr, "tes-xdp: warning: %s\n", info.warning);
	printf("%s %s: %s mode, program id %u, maps %s in %s\n",
	       info.replaced ? "replaced on" : "attached to", ifname, tes_xdp_mode_name(info.mode),
	       info.prog_id, tes_xdp_maps_reused(x) ? "reused" : "created", tes_xdp_pin_dir(x));
	tes_xdp_close(x);
	return 0;
}

static int cmd_detach(int argc, char **argv)
{
	if (argc != 1)
		usage_error("detach takes one interface", NULL);
	if (tes_xdp_detach(argv[0], err, sizeof(err)))
		failed();
	printf("detached from %s\n", argv[0]);
	return 0;
}

static int cmd_status(int argc, char **argv)
{
	struct tes_xdp_attach_info info;
	bool ours;

	if (argc != 1)
		usage_error("status takes one interface", NULL);
	if (tes_xdp_query(argv[0], &info, &ours, err, sizeof(err)))
		failed();
	if (info.mode == TES_XDP_MODE_NONE)
		printf("%s: none\n", argv[0]);
	else
		printf("%s: %s mode, program id %u, %s\n", argv[0], tes_xdp_mode_name(info.mode),
		       info.prog_id, ours ? "tes_xdp" : "not tes_xdp");
	return 0;
}

static int cmd_add(int argc, char **argv)
{
	enum tes_xdp_origin origin = TES_XDP_ORIGIN_ADMIN;
	uint64_t expires = 0;
	struct tes_xdp_addr a;
	const char *addr = NULL;
	struct tes_xdp *x;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--ttl") == 0) {
			char *end;
			unsigned long long s;

			if (++i == argc)
				usage_error("--ttl needs a number of seconds", NULL);
			errno = 0;
			s = strtoull(argv[i], &end, 10);
			if (errno || *end || end == argv[i] || s == 0 || argv[i][0] == '-')
				usage_error("--ttl is a positive number of seconds", argv[i]);
			expires = tes_xdp_expiry_in(s);
		} else if (strcmp(argv[i], "--enforcement") == 0) {
			origin = TES_XDP_ORIGIN_ENFORCEMENT;
		} else if (!addr && argv[i][0] != '-') {
			addr = argv[i];
		} else {
			usage_error("add: unexpected argument", argv[i]);
		}
	}
	if (!addr)
		usage_error("add needs an address", NULL);
	parse_addr(addr, &a);
	x = open_maps(true);
	if (tes_xdp_add(x, &a, origin, expires, 0, err, sizeof(err))) {
		tes_xdp_close(x);
		failed();
	}
	tes_xdp_close(x);
	return 0;
}

static int cmd_del(int argc, char **argv)
{
	struct tes_xdp_addr a;
	struct tes_xdp *x;

	if (argc != 1)
		usage_error("del takes one address", NULL);
	parse_addr(argv[0], &a);
	x = open_maps(false);
	if (tes_xdp_del(x, &a, err, sizeof(err))) {
		tes_xdp_close(x);
		failed();
	}
	tes_xdp_close(x);
	return 0;
}

static const char *reason_name(enum tes_xdp_reason r)
{
	switch (r) {
	case TES_XDP_REASON_BLOCKED:
		return "blocked";
	case TES_XDP_REASON_ADMIN_EXACT:
		return "admin_exact";
	case TES_XDP_REASON_ADMIN_PREFIX:
		return "admin_prefix";
	default:
		return "invalid";
	}
}

static int print_rule(const struct tes_xdp_rule *r, void *arg)
{
	uint64_t now = *(const uint64_t *)arg;
	char text[TES_XDP_ADDR_STRLEN];

	tes_xdp_addr_format(&r->addr, text, sizeof(text));
	if (!r->expires_ns)
		printf("%s %s never\n", text, reason_name(r->reason));
	else if (r->expired)
		printf("%s %s expired\n", text, reason_name(r->reason));
	else
		printf("%s %s %" PRIu64 "s\n", text, reason_name(r->reason),
		       (r->expires_ns - now + 999999999u) / 1000000000u);
	return 0;
}

static int cmd_list(int argc, char **argv)
{
	uint64_t now = tes_xdp_now_ns();
	struct tes_xdp *x;
	long n;

	(void)argv;
	if (argc)
		usage_error("list takes no arguments", NULL);
	x = open_maps(false);
	n = tes_xdp_list(x, print_rule, &now, err, sizeof(err));
	tes_xdp_close(x);
	if (n < 0)
		failed();
	return 0;
}

static int cmd_expire(int argc, char **argv)
{
	struct tes_xdp *x;
	long n;

	(void)argv;
	if (argc)
		usage_error("expire takes no arguments", NULL);
	x = open_maps(false);
	n = tes_xdp_expire(x, 0, err, sizeof(err));
	tes_xdp_close(x);
	if (n < 0)
		failed();
	printf("%ld expired entries deleted\n", n);
	return 0;
}

static int cmd_stats(int argc, char **argv)
{
	struct tes_xdp_counter c[TES_XDP_CNT_COUNT];
	struct tes_xdp *x;

	(void)argv;
	if (argc)
		usage_error("stats takes no arguments", NULL);
	x = open_maps(false);
	if (tes_xdp_counters(x, c, err, sizeof(err))) {
		tes_xdp_close(x);
		failed();
	}
	tes_xdp_close(x);
	for (unsigned i = 0; i < TES_XDP_CNT_COUNT; i++)
		printf("%s %" PRIu64 " %" PRIu64 "\n", tes_xdp_counter_name(i),
		       (uint64_t)c[i].packets, (uint64_t)c[i].bytes);
	return 0;
}

static int cmd_ports(int argc, char **argv)
{
	uint16_t ports[64];
	struct tes_xdp *x;
	int n;

	if (argc > 1)
		usage_error("ports takes at most one list", NULL);
	if (argc == 1) {
		n = tes_xdp_ports_parse(argv[0], ports, 64, err, sizeof(err));
		if (n < 0)
			usage_error(err, NULL);
		x = open_maps(true);
		if (tes_xdp_set_ports(x, ports, (unsigned)n, err, sizeof(err))) {
			tes_xdp_close(x);
			failed();
		}
		tes_xdp_close(x);
		return 0;
	}
	x = open_maps(false);
	n = tes_xdp_get_ports(x, ports, 64, err, sizeof(err));
	tes_xdp_close(x);
	if (n < 0)
		failed();
	for (int i = 0; i < n && i < 64; i++)
		printf("%s%u", i ? "," : "", ports[i]);
	printf("%s\n", n > 64 ? ",..." : "");
	return 0;
}

static int cmd_unpin(int argc, char **argv)
{
	(void)argv;
	if (argc)
		usage_error("unpin takes no arguments", NULL);
	if (tes_xdp_unpin(pin_root, err, sizeof(err)))
		failed();
	return 0;
}

static int cmd_probe(int argc, char **argv)
{
	(void)argv;
	if (argc)
		usage_error("probe takes no arguments", NULL);
	if (tes_xdp_probe(err, sizeof(err)))
		failed();
	printf("BPF: XDP programs can be loaded\n");
	return 0;
}

static const struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
} commands[] = {
	{ "attach", cmd_attach }, { "detach", cmd_detach }, { "status", cmd_status },
	{ "add", cmd_add },       { "del", cmd_del },       { "list", cmd_list },
	{ "expire", cmd_expire }, { "stats", cmd_stats },   { "unpin", cmd_unpin },
	{ "probe", cmd_probe },   { "ports", cmd_ports },
};

int main(int argc, char **argv)
{
	int i = 1;

	pin_root = getenv("TES_XDP_PIN_ROOT");
	if (pin_root && !pin_root[0])
		pin_root = NULL;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "-v") == 0) {
			tes_xdp_verbose(true);
		} else if (strcmp(argv[i], "--pin-root") == 0) {
			if (++i == argc)
				usage_error("--pin-root needs a directory", NULL);
			pin_root = argv[i];
		} else {
			usage_error("unknown option", argv[i]);
		}
	}
	if (i == argc)
		usage_error("no command", NULL);
	for (size_t c = 0; c < sizeof(commands) / sizeof(commands[0]); c++) {
		if (strcmp(argv[i], commands[c].name) == 0) {
			for (int j = i + 1; j < argc; j++)
				if (strcmp(argv[j], "-h") == 0 || strcmp(argv[j], "--help") == 0) {
					usage(stdout);
					return 0;
				}
			return commands[c].fn(argc - i - 1, argv + i + 1);
		}
	}
	usage_error("unknown command", argv[i]);
}
