/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The XDP program's verdicts and counters, run by the kernel on canned
 * frames (bpf_prog_test_run_opts): IPv4, IPv6, one and two VLAN tags (and a
 * third, which is not understood), fragments, truncated and inconsistent
 * headers, random garbage, entries that expired, and the protected ports:
 * a listed source loses TCP to them and nothing else.
 *
 * Needs root and a kernel that lets this process load BPF; exits 77 (skip)
 * saying why otherwise.  Private maps: nothing is pinned.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <linux/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>

#include "dataplane/xdp/xdp_loader.h"
#include "tests/xdp/xdp_pkt.h"

static struct tes_xdp *x;
static char err[512];

/* Counters as the test last saw them, to assert on differences. */
static struct tes_xdp_counter base[TES_XDP_CNT_COUNT];

static void snap(void)
{
	assert_int_equal(tes_xdp_counters(x, base, err, sizeof(err)), 0);
}

/* The change of every counter since snap(): exactly the listed indices by
 * the listed packet counts, all others unchanged. */
static void expect_delta(const unsigned *idx, const uint64_t *n, unsigned k)
{
	struct tes_xdp_counter now[TES_XDP_CNT_COUNT];

	assert_int_equal(tes_xdp_counters(x, now, err, sizeof(err)), 0);
	for (unsigned i = 0; i < TES_XDP_CNT_COUNT; i++) {
		uint64_t want = 0;

		for (unsigned j = 0; j < k; j++)
			if (idx[j] == i)
				want += n[j];
		if (now[i].packets - base[i].packets != want)
			fail_msg("counter %s moved by %llu, expected %llu", tes_xdp_counter_name(i),
				 (unsigned long long)(now[i].packets - base[i].packets),
				 (unsigned long long)want);
	}
	memcpy(base, now, sizeof(base));
}

static void expect1(unsigned idx)
{
	const uint64_t one = 1;

	expect_delta(&idx, &one, 1);
}

static uint32_t run(const uint8_t *frame, size_t len)
{
	uint8_t out[PKT_MAX + 64];
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = frame, .data_size_in = (uint32_t)len,
		    .data_out = out, .data_size_out = sizeof(out), .repeat = 1);
	int rc = bpf_prog_test_run_opts(tes_xdp_prog_fd(x), &o);

	if (rc)
		fail_msg("bpf_prog_test_run_opts: %s (frame of %zu octets)", strerror(-rc), len);
	return o.retval;
}

static uint32_t run_spec(const struct pkt_spec *s)
{
	uint8_t frame[PKT_MAX];
	size_t len = pkt_build(frame, s);

	assert_true(len > 0);
	return run(frame, len);
}

static void add(const char *addr, enum tes_xdp_origin origin, uint64_t expires)
{
	struct tes_xdp_addr a;

	assert_int_equal(tes_xdp_addr_parse(addr, &a, err, sizeof(err)), 0);
	if (tes_xdp_add(x, &a, origin, expires, 0, err, sizeof(err)))
		fail_msg("add %s: %s", addr, err);
}

static void del(const char *addr)
{
	struct tes_xdp_addr a;

	assert_int_equal(tes_xdp_addr_parse(addr, &a, err, sizeof(err)), 0);
	if (tes_xdp_del(x, &a, err, sizeof(err)))
		fail_msg("del %s: %s", addr, err);
}

static int clear_one(const struct tes_xdp_rule *r, void *arg)
{
	(void)arg;
	return tes_xdp_del(x, &r->addr, err, sizeof(err)) ? -EIO : 0;
}

static int count_one(const struct tes_xdp_rule *r, void *arg)
{
	(void)r;
	(void)arg;
	return 0;
}

/* Every test starts from empty maps and port 25 protected. */
static int setup(void **state)
{
	const uint16_t smtp = 25;

	(void)state;
	while (tes_xdp_list(x, clear_one, NULL, err, sizeof(err)) > 0)
		;
	assert_int_equal(tes_xdp_set_ports(x, &smtp, 1, err, sizeof(err)), 0);
	snap();
	return 0;
}

static void test_ipv4_exact(void **state)
{
	struct pkt_spec blocked = { .src = "198.18.1.1", .dst = "198.18.1.2" };
	struct pkt_spec admin = { .src = "198.18.1.3", .dst = "198.18.1.2" };
	struct pkt_spec other = { .src = "198.18.1.4", .dst = "198.18.1.2" };
	uint8_t frame[PKT_MAX];
	struct tes_xdp_counter c[TES_XDP_CNT_COUNT];
	size_t len;

	(void)state;
	assert_int_equal(run_spec(&blocked), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_IPV4);

	add("198.18.1.1", TES_XDP_ORIGIN_ENFORCEMENT, 0);
	add("198.18.1.3", TES_XDP_ORIGIN_ADMIN, 0);
	len = pkt_build(frame, &blocked);
	assert_int_equal(run(frame, len), XDP_DROP);
	expect1(TES_XDP_CNT_DROP_BLOCKED);
	assert_int_equal(run_spec(&admin), XDP_DROP);
	expect1(TES_XDP_CNT_DROP_ADMIN_EXACT);
	assert_int_equal(run_spec(&other), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_IPV4);

	/* Bytes are the frame's length. */
	assert_int_equal(tes_xdp_counters(x, c, err, sizeof(err)), 0);
	assert_int_equal(run(frame, len), XDP_DROP);
	snap();
	assert_int_equal(base[TES_XDP_CNT_DROP_BLOCKED].bytes - c[TES_XDP_CNT_DROP_BLOCKED].bytes,
			 len);

	/* The destination is not what is judged. */
	blocked.src = "198.18.1.2";
	blocked.dst = "198.18.1.1";
	assert_int_equal(run_spec(&blocked), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_IPV4);

	del("198.18.1.1");
	blocked.src = "198.18.1.1";
	blocked.dst = "198.18.1.2";
	assert_int_equal(run_spec(&blocked), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_IPV4);
}

static void test_ipv4_prefix(void **state)
{
	struct pkt_spec in = { .src = "198.19.200.7", .dst = "198.18.1.2" };
	struct pkt_spec edge = { .src = "198.19.255.255", .dst = "198.18.1.2" };
	struct pkt_spec out = { .src = "198.18.200.7", .dst = "198.18.1.2" };

	(void)state;
	add("198.19.0.0/16", TES_XDP_ORIGIN_ADMIN, 0);
	assert_int_equal(run_spec(&in), XDP_DROP);
	expect1(TES_XDP_CNT_DROP_ADMIN_PREFIX);
	assert_int_equal(run_spec(&edge), XDP_DROP);
	expect1(TES_XDP_CNT_DROP_ADMIN_PREFIX);
	assert_int_equal(run_spec(&out), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_IPV4);

	/* An exact entry wins over the range it is in, for the counter. */
	add("198.19.200.7", TES_XDP_ORIGIN_ENFORCEMENT, 0);
	assert_int_equal(run_spec(&in), XDP_DROP);
	expect1(TES_XDP_CNT_DROP_BLOCKED);

	/* Enforcement may block a range too (its reason stays "blocked"). */
	add("198.18.200.0/24", TES_XDP_ORIGIN_ENFORCEMENT, 0);
	assert_int_equal(run_spec(&out), XDP_DROP);
	expect1(TES_XDP_CNT_DROP_BLOCKED);
}

static void test_ipv6(void **state)
{
	struct pkt_spec blocked = { .src = "2001:db8::1", .dst = "2001:db8::2" };
	struct pkt_spec range = { .src = "2001:db8:ff:1::9", .dst = "2001:db8::2" };
	struct pkt_spec admin = { .src = "2001:db8::3", .dst = "2001:db8::2" };
	struct pkt_spec other = { .src = "2001:db8::4", .dst = "2001:db8::1" };

	(void)state;
	assert_int_equal(run_spec(&blocked), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_IPV6);
	add("2001:db8::1", TES_XDP_ORIGIN_ENFORCEMENT, 0);
	add("2001:db8::3", TES_XDP_ORIGIN_ADMIN, 0);
	add("2001:db8:ff::/48", TES_XDP_ORIGIN_ADMIN, 0);
	assert_int_equal(run_spec(&blocked), XDP_DROP);
	expect1(TES_XDP_CNT_DROP_BLOCKED);
	assert_int_equal(run_spec(&admin), XDP_DROP);
	expect1(TES_XDP_CNT_DROP_ADMIN_EXACT);
	assert_int_equal(run_spec(&range), XDP_DROP);
	expect1(TES_XDP_CNT_DROP_ADMIN_PREFIX);
	assert_int_equal(run_spec(&other), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_IPV6);

	/* The IPv4 maps do not leak into IPv6, nor the other way round. */
	add("198.18.1.1", TES_XDP_ORIGIN_ENFORCEMENT, 0);
	other.src = "::ffff:198.18.1.1";
	assert_int_equal(run_spec(&other), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_IPV6);
}

static void test_vlan(void **state)
{
	struct pkt_spec s = { .src = "198.18.1.1", .dst = "198.18.1.2" };
	struct pkt_spec s6 = { .src = "2001:db8::1", .dst = "2001:db8::2" };

	(void)state;
	add("198.18.1.1", TES_XDP_ORIGIN_ENFORCEMENT, 0);
	add("2001:db8::1", TES_XDP_ORIGIN_ENFORCEMENT, 0);

	s.nvlan = 1;
	assert_int_equal(run_spec(&s), XDP_DROP);
	expect1(TES_XDP_CNT_DROP_BLOCKED);
	s.tpid[0] = PKT_TPID_8021AD;
	assert_int_equal(run_spec(&s), XDP_DROP);
	expect1(TES_XDP_CNT_DROP_BLOCKED);

	/* Q-in-Q: 802.1ad outside, 802.1Q inside; and two 802.1Q tags. */
	s.nvlan = 2;
	s.tpid[0] = PKT_TPID_8021AD;
	s.tpid[1] = PKT_TPID_8021Q;
	assert_int_equal(run_spec(&s), XDP_DROP);
	expect1(TES_XDP_CNT_DROP_BLOCKED);
	s.tpid[0] = PKT_TPID_8021Q;
	assert_int_equal(run_spec(&s), XDP_DROP);
	expect1(TES_XDP_CNT_DROP_BLOCKED);
	s6.nvlan = 2;
	s6.tpid[0] = PKT_TPID_8021AD;
	assert_int_equal(run_spec(&s6), XDP_DROP);
	expect1(TES_XDP_CNT_DROP_BLOCKED);

	/* A third tag is past what the program parses: passed, not judged. */
	s.nvlan = 3;
	assert_int_equal(run_spec(&s), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_NOT_IP);

	s.nvlan = 2;
	s.src = "198.18.1.4";
	assert_int_equal(run_spec(&s), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_IPV4);
}

static void test_fragments(void **state)
{
	struct pkt_spec s = { .src = "198.18.1.1", .dst = "198.18.1.2" };
	struct pkt_spec s6 = { .src = "2001:db8::1", .dst = "2001:db8::2", .frag6 = true };

	(void)state;
	add("198.18.1.1", TES_XDP_ORIGIN_ENFORCEMENT, 0);
	add("2001:db8::1", TES_XDP_ORIGIN_ENFORCEMENT, 0);

	s.frag = 0x4000; /* DF: not a fragment */
	assert_int_equal(run_spec(&s), XDP_DROP);
	expect1(TES_XDP_CNT_DROP_BLOCKED);
	s.frag = 0x2000; /* MF, offset 0: the first fragment, judged */
	assert_int_equal(run_spec(&s), XDP_DROP);
	expect1(TES_XDP_CNT_DROP_BLOCKED);
	s.frag = 0x2000 | 185; /* MF, offset 1480: a middle fragment */
	assert_int_equal(run_spec(&s), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_FRAGMENT);
	s.frag = 370; /* the last fragment */
	assert_int_equal(run_spec(&s), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_FRAGMENT);
	s.nvlan = 1;
	assert_int_equal(run_spec(&s), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_FRAGMENT);

	s6.frag = 0x0001; /* M, offset 0: first */
	assert_int_equal(run_spec(&s6), XDP_DROP);
	expect1(TES_XDP_CNT_DROP_BLOCKED);
	s6.frag = (uint16_t)(185 << 3 | 1); /* a middle fragment */
	assert_int_equal(run_spec(&s6), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_FRAGMENT);
	s6.frag = (uint16_t)(370 << 3); /* the last */
	assert_int_equal(run_spec(&s6), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_FRAGMENT);
}

static void test_truncated_and_inconsistent(void **state)
{
	struct pkt_spec s = { .src = "198.18.1.1", .dst = "198.18.1.2", .nvlan = 2 };
	struct pkt_spec s6 = {
		.src = "2001:db8::1", .dst = "2001:db8::2", .frag6 = true, .frag = 0x0001
	};
	uint8_t frame[PKT_MAX], copy[PKT_MAX];
	size_t len, l3;

	(void)state;
	add("198.18.1.1", TES_XDP_ORIGIN_ENFORCEMENT, 0);
	add("2001:db8::1", TES_XDP_ORIGIN_ENFORCEMENT, 0);

	/* Every cut of a blocked, double-tagged IPv4 SYN: shorter than the
	 * IPv4 header and the TCP ports -> passed as malformed; from there on
	 * it is judged. */
	len = pkt_build(frame, &s);
	l3 = 14 + 8;
	for (size_t cut = 14; cut <= len; cut++) {
		bool whole = cut >= l3 + 20 + 4;

		assert_int_equal(run(frame, cut), whole ? XDP_DROP : XDP_PASS);
		expect1(whole ? TES_XDP_CNT_DROP_BLOCKED : TES_XDP_CNT_PASS_MALFORMED);
	}

	/* The same for IPv6 with a fragment header. */
	len = pkt_build(frame, &s6);
	for (size_t cut = 14; cut <= len; cut++) {
		bool whole = cut >= 14 + 40 + 8 + 4;

		assert_int_equal(run(frame, cut), whole ? XDP_DROP : XDP_PASS);
		expect1(whole ? TES_XDP_CNT_DROP_BLOCKED : TES_XDP_CNT_PASS_MALFORMED);
	}

	s.nvlan = 0;
	len = pkt_build(frame, &s);

	/* IHL below 5. */
	memcpy(copy, frame, len);
	copy[14] = 0x44;
	assert_int_equal(run(copy, len), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_MALFORMED);
	/* IHL claiming options beyond the end of the frame. */
	memcpy(copy, frame, len);
	copy[14] = 0x4f;
	assert_int_equal(run(copy, len), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_MALFORMED);
	/* Options that are there are fine: a 24-octet header (a NOP option
	 * word), the TCP ports after it. */
	memcpy(copy, frame, 14 + 20);
	copy[14] = 0x46;
	memset(copy + 14 + 20, 1, 4);
	memcpy(copy + 14 + 24, frame + 14 + 20, len - 14 - 20);
	assert_int_equal(run(copy, len + 4), XDP_DROP);
	expect1(TES_XDP_CNT_DROP_BLOCKED);
	/* ...and where the options push the ports past the end: malformed */
	assert_int_equal(run(copy, 14 + 24 + 3), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_MALFORMED);
	/* Version 6 under the IPv4 ethertype. */
	memcpy(copy, frame, len);
	copy[14] = 0x65;
	assert_int_equal(run(copy, len), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_MALFORMED);
	/* Version 4 under the IPv6 ethertype. */
	s6.frag6 = false;
	len = pkt_build(frame, &s6);
	frame[14] = 0x40;
	assert_int_equal(run(frame, len), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_MALFORMED);
}

static void test_not_ip(void **state)
{
	/* An ARP request from the blocked address: not IP, not judged. */
	static const uint8_t arp[42] = {
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0,    0, 0,   0x01, 0x08, 0x06,
		0,    1,    0x08, 0,    6,    4,    0,    1, 0x02, 0, 0,   0,    0,    0x01,
		198,  18,   1,    1,    0,    0,    0,    0, 0,    0, 198, 18,   1,    2,
	};
	uint8_t frame[PKT_MAX];
	size_t len;

	(void)state;
	add("198.18.1.1", TES_XDP_ORIGIN_ENFORCEMENT, 0);
	assert_int_equal(run(arp, sizeof(arp)), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_NOT_IP);

	/* A bare Ethernet header. */
	memset(frame, 0, sizeof(frame));
	frame[12] = 0x08;
	assert_int_equal(run(frame, 14), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_MALFORMED);
	frame[12] = 0x88;
	frame[13] = 0xb5; /* local experimental ethertype */
	assert_int_equal(run(frame, 60), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_NOT_IP);
	/* A VLAN tag with nothing after it. */
	frame[12] = 0x81;
	frame[13] = 0x00;
	assert_int_equal(run(frame, 16), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_MALFORMED);
	len = 18;
	assert_int_equal(run(frame, len), XDP_PASS); /* a tag of ethertype 0 */
	expect1(TES_XDP_CNT_PASS_NOT_IP);
}

/* Random frames never crash, abort, or go uncounted; with no entry that
 * could match, every one passes.  Seeded: a failure reproduces. */
static void test_garbage(void **state)
{
	enum { N = 20000 };
	struct tes_xdp_counter now[TES_XDP_CNT_COUNT];
	uint64_t seen = 0, before = 0;
	uint32_t seed = 0x7e5a7e5a;
	uint8_t frame[PKT_MAX];

	(void)state;
	for (unsigned i = 0; i < TES_XDP_CNT_VERDICTS; i++)
		before += base[i].packets;
	for (unsigned n = 0; n < N; n++) {
		size_t len = 14 + (seed % (PKT_MAX - 14 + 1));

		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			frame[i] = (uint8_t)(seed >> 16);
		}
		/* Steer a third of them into the IP parsers. */
		if (n % 3 == 1) {
			frame[12] = 0x08;
			frame[13] = 0x00;
		} else if (n % 3 == 2) {
			frame[12] = 0x86;
			frame[13] = 0xdd;
		}
		assert_int_equal(run(frame, len), XDP_PASS);
	}
	assert_int_equal(tes_xdp_counters(x, now, err, sizeof(err)), 0);
	for (unsigned i = 0; i < TES_XDP_CNT_VERDICTS; i++)
		seen += now[i].packets;
	assert_int_equal(seen - before, N);
	assert_int_equal(now[TES_XDP_CNT_EXPIRED].packets, base[TES_XDP_CNT_EXPIRED].packets);
	assert_int_equal(now[TES_XDP_CNT_BAD_ENTRY].packets, base[TES_XDP_CNT_BAD_ENTRY].packets);
}

/* A listed source loses TCP to the protected ports only: TCP to another
 * port, UDP and ICMP from it pass without a lookup ("other"); the set is
 * what the owner writes. */
static void test_ports(void **state)
{
	struct pkt_spec smtp = { .src = "198.18.1.1", .dst = "198.18.1.2" };
	struct pkt_spec web = { .src = "198.18.1.1", .dst = "198.18.1.2", .dport = 443 };
	struct pkt_spec sub = { .src = "198.18.1.1", .dst = "198.18.1.2", .dport = 587 };
	struct pkt_spec udp = { .src = "198.18.1.1", .dst = "198.18.1.2", .proto = PKT_UDP };
	struct pkt_spec icmp = { .src = "198.18.1.1", .dst = "198.18.1.2", .proto = PKT_ICMP };
	struct pkt_spec smtp6 = { .src = "2001:db8::1", .dst = "2001:db8::2" };
	struct pkt_spec web6 = { .src = "2001:db8::1", .dst = "2001:db8::2", .dport = 80 };
	struct pkt_spec udp6 = { .src = "2001:db8::1", .dst = "2001:db8::2", .proto = PKT_UDP };
	struct pkt_spec icmp6 = { .src = "2001:db8::1", .dst = "2001:db8::2", .proto = PKT_ICMP };
	struct pkt_spec frag6 = {
		.src = "2001:db8::1", .dst = "2001:db8::2", .frag6 = true, .frag = 1, .dport = 8080
	};
	struct pkt_spec other = { .src = "198.18.1.4", .dst = "198.18.1.2", .dport = 443 };
	const uint16_t two[2] = { 587, 2525 };
	uint16_t got[4];

	(void)state;
	add("198.18.1.1", TES_XDP_ORIGIN_ENFORCEMENT, 0);
	add("2001:db8::1", TES_XDP_ORIGIN_ADMIN, 0);

	assert_int_equal(run_spec(&smtp), XDP_DROP);
	expect1(TES_XDP_CNT_DROP_BLOCKED);
	assert_int_equal(run_spec(&web), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_OTHER);
	assert_int_equal(run_spec(&udp), XDP_PASS); /* UDP to port 25, even */
	expect1(TES_XDP_CNT_PASS_OTHER);
	assert_int_equal(run_spec(&icmp), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_OTHER);
	assert_int_equal(run_spec(&smtp6), XDP_DROP);
	expect1(TES_XDP_CNT_DROP_ADMIN_EXACT);
	assert_int_equal(run_spec(&web6), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_OTHER);
	assert_int_equal(run_spec(&udp6), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_OTHER);
	assert_int_equal(run_spec(&icmp6), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_OTHER);
	assert_int_equal(run_spec(&frag6), XDP_PASS); /* first fragment, TCP, not 25 */
	expect1(TES_XDP_CNT_PASS_OTHER);
	frag6.dport = 25;
	assert_int_equal(run_spec(&frag6), XDP_DROP);
	expect1(TES_XDP_CNT_DROP_ADMIN_EXACT);
	assert_int_equal(run_spec(&other), XDP_PASS); /* not listed, not looked up */
	expect1(TES_XDP_CNT_PASS_OTHER);

	/* The set is replaced as a whole. */
	assert_int_equal(tes_xdp_set_ports(x, two, 2, err, sizeof(err)), 0);
	assert_int_equal(tes_xdp_get_ports(x, got, 4, err, sizeof(err)), 2);
	assert_int_equal(got[0], 587);
	assert_int_equal(got[1], 2525);
	assert_int_equal(run_spec(&smtp), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_OTHER);
	assert_int_equal(run_spec(&sub), XDP_DROP);
	expect1(TES_XDP_CNT_DROP_BLOCKED);
	sub.dport = 2525;
	assert_int_equal(run_spec(&sub), XDP_DROP);
	expect1(TES_XDP_CNT_DROP_BLOCKED);
	sub.dport = 65535;
	assert_int_equal(run_spec(&sub), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_OTHER);
	/* None protected: the list drops nothing. */
	assert_int_equal(tes_xdp_set_ports(x, two, 0, err, sizeof(err)), 0);
	sub.dport = 587;
	assert_int_equal(run_spec(&sub), XDP_PASS);
	expect1(TES_XDP_CNT_PASS_OTHER);
	assert_int_equal(tes_xdp_ports_parse("25, 587,2525", got, 4, err, sizeof(err)), 3);
	assert_int_equal(got[2], 2525);
	assert_int_equal(tes_xdp_ports_parse("25,0", got, 4, err, sizeof(err)), -EINVAL);
	assert_int_equal(tes_xdp_ports_parse("", got, 4, err, sizeof(err)), -EINVAL);
	assert_int_equal(tes_xdp_ports_parse("70000", got, 4, err, sizeof(err)), -EINVAL);
	assert_int_equal(tes_xdp_ports_parse("1,2,3,4,5", got, 4, err, sizeof(err)), -E2BIG);
}

static void test_expiry(void **state)
{
	struct pkt_spec past = { .src = "198.18.1.9", .dst = "198.18.1.2" };
	struct pkt_spec future = { .src = "198.18.1.10", .dst = "198.18.1.2" };
	struct pkt_spec past6 = { .src = "2001:db8::9", .dst = "2001:db8::2" };
	struct pkt_spec covered = { .src = "198.19.0.9", .dst = "198.18.1.2" };
	const unsigned idx[2] = { TES_XDP_CNT_PASS_IPV4, TES_XDP_CNT_EXPIRED };
	const unsigned idx6[2] = { TES_XDP_CNT_PASS_IPV6, TES_XDP_CNT_EXPIRED };
	const unsigned idx_cov[2] = { TES_XDP_CNT_DROP_ADMIN_PREFIX, TES_XDP_CNT_EXPIRED };
	const uint64_t ones[2] = { 1, 1 };
	struct tes_xdp_addr a;
	struct tes_xdp_rule r;

	(void)state;
	add("198.18.1.9", TES_XDP_ORIGIN_ENFORCEMENT, tes_xdp_now_ns() - 1);
	add("2001:db8::9", TES_XDP_ORIGIN_ADMIN, 1);
	add("198.18.1.10", TES_XDP_ORIGIN_ENFORCEMENT, tes_xdp_expiry_in(3600));
	add("198.18.2.0/24", TES_XDP_ORIGIN_ADMIN, tes_xdp_expiry_at(time(NULL) - 10));

	assert_int_equal(run_spec(&past), XDP_PASS);
	expect_delta(idx, ones, 2);
	assert_int_equal(run_spec(&past6), XDP_PASS);
	expect_delta(idx6, ones, 2);
	assert_int_equal(run_spec(&future), XDP_DROP);
	expect1(TES_XDP_CNT_DROP_BLOCKED);
	past.src = "198.18.2.77";
	assert_int_equal(run_spec(&past), XDP_PASS);
	expect_delta(idx, ones, 2);

	/* An expired exact entry is absent: a live range behind it decides. */
	add("198.19.0.0/16", TES_XDP_ORIGIN_ADMIN, 0);
	add("198.19.0.9", TES_XDP_ORIGIN_ENFORCEMENT, 1);
	assert_int_equal(run_spec(&covered), XDP_DROP);
	expect_delta(idx_cov, ones, 2);

	/* The sweep deletes exactly the expired ones. */
	assert_int_equal(tes_xdp_expire(x, 0, err, sizeof(err)), 4);
	assert_int_equal(tes_xdp_addr_parse("198.18.1.9", &a, err, sizeof(err)), 0);
	assert_int_equal(tes_xdp_get(x, &a, &r, err, sizeof(err)), -ENOENT);
	assert_int_equal(tes_xdp_addr_parse("198.18.1.10", &a, err, sizeof(err)), 0);
	assert_int_equal(tes_xdp_get(x, &a, &r, err, sizeof(err)), 0);
	assert_false(r.expired);
	assert_int_equal(r.reason, TES_XDP_REASON_BLOCKED);
	assert_int_equal(tes_xdp_list(x, count_one, NULL, err, sizeof(err)), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_ipv4_exact, setup),
		cmocka_unit_test_setup(test_ipv4_prefix, setup),
		cmocka_unit_test_setup(test_ipv6, setup),
		cmocka_unit_test_setup(test_vlan, setup),
		cmocka_unit_test_setup(test_fragments, setup),
		cmocka_unit_test_setup(test_truncated_and_inconsistent, setup),
		cmocka_unit_test_setup(test_not_ip, setup),
		cmocka_unit_test_setup(test_garbage, setup),
		cmocka_unit_test_setup(test_expiry, setup),
		cmocka_unit_test_setup(test_ports, setup),
	};
	struct tes_xdp_opts o = { .no_pin = true };
	int rc;

	if (tes_xdp_probe(err, sizeof(err))) {
		printf("SKIP: BPF is not permitted here: %s\n", err);
		return 77;
	}
	if (tes_xdp_load(&o, &x, err, sizeof(err))) {
		fprintf(stderr, "loading tes_xdp: %s\n", err);
		return 1;
	}
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	tes_xdp_close(x);
	return rc;
}
