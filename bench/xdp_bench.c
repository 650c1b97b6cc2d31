/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * xdp_bench: nanoseconds per packet of the tes_xdp program, from the
 * kernel's own timing of bpf_prog_test_run with repeat: pass and drop, IPv4
 * and IPv6, with one entry and with a million entries in the exact map of
 * the family, and then 16 and 1000 ranges in its prefix trie on top.
 *
 * Side by side in the same run: a program that only returns XDP_PASS, so
 * the harness's own cost per repetition can be told apart.  Every figure is
 * the median of several runs, on one pinned CPU.
 *
 * What it is not: a line-rate measurement.  The same frame is run again and
 * again, so the map bucket it hits stays in cache; real traffic from many
 * sources adds cache misses on a large map.  docs/benchmarks.md has the
 * numbers and that caveat.
 *
 * Needs root (BPF).  Usage: xdp_bench [-r REPEAT] [-n RUNS] [-e ENTRIES] [-c CPU]
 * Run it through bench/run-xdp.sh, which builds it and prints the machine.
 */
#include <errno.h>
#include <linux/bpf.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "dataplane/xdp/xdp_loader.h"
#include "tests/xdp/xdp_pkt.h"

static char err[512];

static int usage(const char *why)
{
	if (why)
		fprintf(stderr, "xdp_bench: %s\n", why);
	fprintf(stderr, "Usage: xdp_bench [-r REPEAT] [-n RUNS] [-e ENTRIES] [-c CPU]\n"
			"  -r  repetitions per bpf_prog_test_run call (default 1000000)\n"
			"  -n  calls per figure; the median is printed (default 5)\n"
			"  -e  entries in the large exact maps (default 1000000)\n"
			"  -c  the CPU to run on (default 0)\n");
	return 2;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Median ns per repetition over runs calls; 0 and a message on error. */
static uint32_t measure(int prog_fd, const uint8_t *frame, size_t len, int repeat, int runs,
			uint32_t want)
{
	uint32_t d[64];

	for (int i = 0; i < runs; i++) {
		LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = frame, .data_size_in = (uint32_t)len,
			    .repeat = repeat);
		int rc = bpf_prog_test_run_opts(prog_fd, &o);

		if (rc) {
			fprintf(stderr, "xdp_bench: bpf_prog_test_run_opts: %s\n", strerror(-rc));
			return 0;
		}
		if (o.retval != want) {
			fprintf(stderr, "xdp_bench: verdict %u, expected %u\n", o.retval, want);
			return 0;
		}
		d[i] = o.duration;
	}
	qsort(d, (size_t)runs, sizeof(d[0]), cmp_u32);
	return d[runs / 2];
}

/* The smallest XDP program: the harness's cost per repetition. */
static int load_baseline(void)
{
	const struct bpf_insn insns[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = XDP_PASS },
		{ .code = BPF_JMP | BPF_EXIT },
	};

	return bpf_prog_load(BPF_PROG_TYPE_XDP, "tes_bench_nop", "Dual BSD/GPL", insns, 2, NULL);
}

/* The i-th filler address: IPv4 from 10.0.0.0/8, IPv6 from 2001:db8::/32.
 * Map keys only: nothing is ever sent to them. */
static void filler(int family, uint32_t i, struct tes_xdp_addr *a)
{
	memset(a, 0, sizeof(*a));
	a->family = family;
	if (family == AF_INET) {
		a->prefixlen = 32;
		a->addr[0] = 10;
		a->addr[1] = (uint8_t)(i >> 16);
		a->addr[2] = (uint8_t)(i >> 8);
		a->addr[3] = (uint8_t)i;
	} else {
		a->prefixlen = 128;
		a->addr[0] = 0x20;
		a->addr[1] = 0x01;
		a->addr[2] = 0x0d;
		a->addr[3] = 0xb8;
		a->addr[12] = (uint8_t)(i >> 24);
		a->addr[13] = (uint8_t)(i >> 16);
		a->addr[14] = (uint8_t)(i >> 8);
		a->addr[15] = (uint8_t)i;
	}
}

/* The i-th filler range: a /24 or a /48 spread over the address space by a
 * multiplicative hash, so that a lookup walks a trie of realistic depth
 * rather than leaving it at the root.  (The benchmark checks every verdict:
 * a range that covered a test source would show as a wrong verdict.) */
static void filler_prefix(int family, uint32_t i, struct tes_xdp_addr *a)
{
	uint32_t h = (i + 1) * 2654435761u, h2 = (i + 7) * 0x85ebca6bu;

	memset(a, 0, sizeof(*a));
	a->family = family;
	if (family == AF_INET) {
		a->prefixlen = 24;
		a->addr[0] = (uint8_t)(h >> 24);
		a->addr[1] = (uint8_t)(h >> 16);
		a->addr[2] = (uint8_t)(h >> 8);
	} else {
		a->prefixlen = 48;
		a->addr[0] = (uint8_t)(0x20 | (h >> 27)); /* 2000::/3 */
		a->addr[1] = (uint8_t)(h >> 16);
		a->addr[2] = (uint8_t)(h >> 8);
		a->addr[3] = (uint8_t)h;
		a->addr[4] = (uint8_t)(h2 >> 24);
		a->addr[5] = (uint8_t)(h2 >> 16);
	}
}

static int fill(struct tes_xdp *x, int family, uint32_t from, uint32_t to, bool prefixes)
{
	struct tes_xdp_addr a;

	for (uint32_t i = from; i < to; i++) {
		if (prefixes)
			filler_prefix(family, i, &a);
		else
			filler(family, i, &a);
		if (tes_xdp_add(x, &a, prefixes ? TES_XDP_ORIGIN_ADMIN : TES_XDP_ORIGIN_ENFORCEMENT,
				0, 0, err, sizeof(err))) {
			fprintf(stderr, "xdp_bench: filling: %s\n", err);
			return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	long repeat = 1000000, runs = 5, entries = 1000000, cpu = 0;
	struct tes_xdp_opts o = { .no_pin = true };
	struct pkt_spec pass4 = { .src = "198.18.1.4", .dst = "198.18.1.2" };
	struct pkt_spec pass6 = { .src = "2001:db8:ffff::4", .dst = "2001:db8:ffff::2" };
	struct pkt_spec drop4 = { .src = "10.0.0.0", .dst = "198.18.1.2" };
	struct pkt_spec drop6 = { .src = "2001:db8::", .dst = "2001:db8:ffff::2" };
	/* Each step adds to the maps of the one before. */
	struct {
		uint32_t exact, prefixes;
	} sizes[] = { { 1, 0 }, { 0, 0 }, { 0, 16 }, { 0, 1000 } };
	uint8_t frame[PKT_MAX];
	struct utsname u;
	cpu_set_t set;
	struct tes_xdp *x;
	uint32_t base, filled = 0, pfx = 0;
	int opt, nop_fd;

	while ((opt = getopt(argc, argv, "r:n:e:c:h")) != -1) {
		char *end;
		long v;

		if (opt == 'h' || opt == '?')
			return usage(NULL);
		errno = 0;
		v = strtol(optarg, &end, 10);
		if (errno || *end || end == optarg || v < (opt == 'c' ? 0 : 1))
			return usage("option values are positive numbers (-c: zero or more)");
		if (opt == 'r')
			repeat = v;
		else if (opt == 'n')
			runs = v > 63 ? 63 : v;
		else if (opt == 'e')
			entries = v;
		else
			cpu = v;
	}
	if (optind != argc)
		return usage("no arguments besides options");
	if (entries > (1L << 24) || repeat > (1L << 30))
		return usage("-e is at most 16777216, -r at most 2^30");

	CPU_ZERO(&set);
	CPU_SET((int)cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set)) {
		fprintf(stderr, "xdp_bench: cannot run on CPU %ld: %s\n", cpu, strerror(errno));
		return 1;
	}
	if (tes_xdp_probe(err, sizeof(err))) {
		fprintf(stderr, "xdp_bench: %s\n", err);
		return 1;
	}
	if ((uint64_t)entries > TES_XDP_EXACT_MAX)
		o.exact_max = (uint32_t)entries;
	if (tes_xdp_load(&o, &x, err, sizeof(err))) {
		fprintf(stderr, "xdp_bench: %s\n", err);
		return 1;
	}
	nop_fd = load_baseline();
	if (nop_fd < 0) {
		fprintf(stderr, "xdp_bench: loading the baseline program: %s\n", strerror(-nop_fd));
		return 1;
	}

	uname(&u);
	printf("kernel %s %s, CPU %ld, repeat %ld, median of %ld runs\n", u.release, u.machine, cpu,
	       repeat, runs);
	base = measure(nop_fd, frame, pkt_build(frame, &pass4), (int)repeat, (int)runs, XDP_PASS);
	if (!base)
		return 1;
	printf("baseline: a program that only returns XDP_PASS: %u ns per packet\n\n", base);

	for (unsigned s = 1; s < sizeof(sizes) / sizeof(sizes[0]); s++)
		sizes[s].exact = (uint32_t)entries;

	printf("%-6s %-14s %-9s %-7s %10s %16s\n", "family", "exact entries", "prefixes", "verdict",
	       "ns/packet", "minus baseline");
	/* The maps only grow, so each size adds to the last.  Filler 0 is the
	 * dropped source. */
	for (unsigned s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		if (fill(x, AF_INET, filled, sizes[s].exact, false) ||
		    fill(x, AF_INET6, filled, sizes[s].exact, false) ||
		    fill(x, AF_INET, pfx, sizes[s].prefixes, true) ||
		    fill(x, AF_INET6, pfx, sizes[s].prefixes, true))
			return 1;
		if (sizes[s].exact > filled)
			filled = sizes[s].exact;
		if (sizes[s].prefixes > pfx)
			pfx = sizes[s].prefixes;
		for (int fam = 0; fam < 2; fam++) {
			for (int drop = 0; drop < 2; drop++) {
				const struct pkt_spec *sp =
					fam ? (drop ? &drop6 : &pass6) : (drop ? &drop4 : &pass4);
				size_t len = pkt_build(frame, sp);
				uint32_t ns = measure(tes_xdp_prog_fd(x), frame, len, (int)repeat,
						      (int)runs, drop ? XDP_DROP : XDP_PASS);

				if (!ns)
					return 1;
				printf("%-6s %-14u %-9u %-7s %10u %16d\n", fam ? "ipv6" : "ipv4",
				       sizes[s].exact, sizes[s].prefixes, drop ? "drop" : "pass",
				       ns, (int)ns - (int)base);
			}
		}
	}
	close(nop_fd);
	tes_xdp_close(x);
	return 0;
}
