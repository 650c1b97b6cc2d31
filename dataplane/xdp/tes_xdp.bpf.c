/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tes_xdp: drop TCP packets to the protected (SMTP) ports whose IPv4 or IPv6
 * source is on tesgate's drop list, before the kernel spends anything on
 * them (no skb in native mode, no TCP state in either mode).  Everything
 * else from a listed source passes: other ports, UDP, ICMP (contract/
 * xdp_map.h, struct tes_xdp_ports, says why).
 *
 * The maps and their meaning are in contract/xdp_map.h.  The rule for
 * everything else is: pass what is not understood.  This program must never
 * be the reason legitimate traffic is lost, so non-IP frames, a third VLAN
 * tag, fragments after the first, and truncated or inconsistent headers all
 * go on to the kernel, which has its own opinion of them.
 *
 * Parsing reads at most: Ethernet, two VLAN tags, the fixed IPv4 header (its
 * options are only bounds-checked) or the fixed IPv6 header plus a fragment
 * header directly after it, and the TCP ports.  An IPv6 packet with other
 * extension headers before TCP is not looked into (passed as "other"): the
 * gateway still refuses such a source when it connects.  No loops the
 * verifier has to follow past two iterations.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "contract/xdp_map.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The UAPI headers do not export these. */
struct tes_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

struct tes_frag6_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset in 8-octet units << 3, then flags */
	__be32 id;
};

#define TES_IP_OFFSET_MASK 0x1fff
#define TES_IP6_OFFSET_MASK 0xfff8

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TES_XDP_EXACT_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tes_xdp_key4);
	__type(value, struct tes_xdp_entry);
} tes_exact4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TES_XDP_EXACT_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tes_xdp_key6);
	__type(value, struct tes_xdp_entry);
} tes_exact6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, TES_XDP_PREFIX_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* the kernel requires it for LPM tries */
	__type(key, struct tes_xdp_lpm4);
	__type(value, struct tes_xdp_entry);
} tes_prefix4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, TES_XDP_PREFIX_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tes_xdp_lpm6);
	__type(value, struct tes_xdp_entry);
} tes_prefix6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tes_xdp_ports);
} tes_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TES_XDP_CNT_COUNT);
	__type(key, __u32);
	__type(value, struct tes_xdp_counter);
} tes_stats SEC(".maps");

static __always_inline void count(__u32 idx, __u64 len)
{
	struct tes_xdp_counter *c = bpf_map_lookup_elem(&tes_stats, &idx);

	/* Per-CPU slot: no other CPU writes it, so no atomics. */
	if (c) {
		c->packets++;
		c->bytes += len;
	}
}

static __always_inline int verdict(__u32 idx, __u64 len)
{
	count(idx, len);
	return idx >= TES_XDP_CNT_DROP_BLOCKED ? XDP_DROP : XDP_PASS;
}

/* The drop counter an entry asks for, or 0 when it does not apply.  The
 * clock is only read when an entry with an expiry matched, so the common
 * path (no match) never pays for it. */
static __always_inline __u32 judge(const struct tes_xdp_entry *e, __u64 len)
{
	__u32 reason;

	if (!e)
		return 0;
	if (e->expires_ns && e->expires_ns <= bpf_ktime_get_boot_ns()) {
		count(TES_XDP_CNT_EXPIRED, len);
		return 0;
	}
	reason = e->reason;
	if (reason == TES_XDP_REASON_NONE || reason >= TES_XDP_REASON_COUNT) {
		count(TES_XDP_CNT_BAD_ENTRY, len);
		return 0;
	}
	return TES_XDP_CNT_DROP_OF(reason);
}

/* Is this TCP destination port (network order) one the list is for? */
static __always_inline int protected_port(__be16 dport)
{
	__u32 zero = 0;
	__u16 port = bpf_ntohs(dport);
	struct tes_xdp_ports *p = bpf_map_lookup_elem(&tes_ports, &zero);

	return p && (p->bits[port >> 6] & (1ull << (port & 63)));
}

static __always_inline int check4(const struct iphdr *ip, __u64 len)
{
	struct tes_xdp_key4 key;
	struct tes_xdp_lpm4 lpm;
	__u32 idx;

	__builtin_memcpy(key.addr, &ip->saddr, sizeof(key.addr));
	idx = judge(bpf_map_lookup_elem(&tes_exact4, &key), len);
	if (idx)
		return verdict(idx, len);
	lpm.prefixlen = 32;
	__builtin_memcpy(lpm.addr, &ip->saddr, sizeof(lpm.addr));
	idx = judge(bpf_map_lookup_elem(&tes_prefix4, &lpm), len);
	return verdict(idx ? idx : TES_XDP_CNT_PASS_IPV4, len);
}

static __always_inline int check6(const struct ipv6hdr *ip6, __u64 len)
{
	struct tes_xdp_key6 key;
	struct tes_xdp_lpm6 lpm;
	__u32 idx;

	__builtin_memcpy(key.addr, &ip6->saddr, sizeof(key.addr));
	idx = judge(bpf_map_lookup_elem(&tes_exact6, &key), len);
	if (idx)
		return verdict(idx, len);
	lpm.prefixlen = 128;
	__builtin_memcpy(lpm.addr, &ip6->saddr, sizeof(lpm.addr));
	idx = judge(bpf_map_lookup_elem(&tes_prefix6, &lpm), len);
	return verdict(idx ? idx : TES_XDP_CNT_PASS_IPV6, len);
}

/* Multi-buffer aware ("frags"): the headers read here are always in the
 * first buffer, and declaring it lets drivers take the program in native
 * mode on jumbo MTUs (and spares generic mode a linearisation).  Kernel
 * 5.18 or later. */
SEC("xdp.frags")
int tes_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u64 len = end - data;
	struct ethhdr *eth = data;
	void *l3;
	__be16 proto;

	if ((void *)(eth + 1) > end)
		return verdict(TES_XDP_CNT_PASS_MALFORMED, len);
	proto = eth->h_proto;
	l3 = eth + 1;

#pragma unroll
	for (int i = 0; i < 2; i++) {
		struct tes_vlan_hdr *vh = l3;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vh + 1) > end)
			return verdict(TES_XDP_CNT_PASS_MALFORMED, len);
		proto = vh->proto;
		l3 = vh + 1;
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;

		if ((void *)(ip + 1) > end)
			return verdict(TES_XDP_CNT_PASS_MALFORMED, len);
		/* A header longer than the frame is the kernel's to refuse; we
		 * only promise not to act on what we could not fully see. */
		if (ip->version != 4 || ip->ihl < 5 || l3 + ip->ihl * 4 > end)
			return verdict(TES_XDP_CNT_PASS_MALFORMED, len);
		/* Later fragments are left alone: without the first one they
		 * never reassemble, and deciding on them would mean keeping
		 * fragment state here. */
		if (ip->frag_off & bpf_htons(TES_IP_OFFSET_MASK))
			return verdict(TES_XDP_CNT_PASS_FRAGMENT, len);
		if (ip->protocol != IPPROTO_TCP)
			return verdict(TES_XDP_CNT_PASS_OTHER, len);
		/* Source and destination ports: the first four octets. */
		__be16 *ports = l3 + ip->ihl * 4;
		if ((void *)(ports + 2) > end)
			return verdict(TES_XDP_CNT_PASS_MALFORMED, len);
		if (!protected_port(ports[1]))
			return verdict(TES_XDP_CNT_PASS_OTHER, len);
		return check4(ip, len);
	}

	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;

		if ((void *)(ip6 + 1) > end)
			return verdict(TES_XDP_CNT_PASS_MALFORMED, len);
		if (ip6->version != 6)
			return verdict(TES_XDP_CNT_PASS_MALFORMED, len);
		/* Only a fragment header right after the fixed header is
		 * looked at (cheap); one behind other extension headers is
		 * judged like any packet, by its source. */
		__u8 next = ip6->nexthdr;
		void *l4 = ip6 + 1;

		if (next == IPPROTO_FRAGMENT) {
			struct tes_frag6_hdr *fh = l4;

			if ((void *)(fh + 1) > end)
				return verdict(TES_XDP_CNT_PASS_MALFORMED, len);
			if (fh->frag_off & bpf_htons(TES_IP6_OFFSET_MASK))
				return verdict(TES_XDP_CNT_PASS_FRAGMENT, len);
			next = fh->nexthdr;
			l4 = fh + 1;
		}
		if (next != IPPROTO_TCP)
			return verdict(TES_XDP_CNT_PASS_OTHER, len);
		__be16 *ports = l4;
		if ((void *)(ports + 2) > end)
			return verdict(TES_XDP_CNT_PASS_MALFORMED, len);
		if (!protected_port(ports[1]))
			return verdict(TES_XDP_CNT_PASS_OTHER, len);
		return check6(ip6, len);
	}

	return verdict(TES_XDP_CNT_PASS_NOT_IP, len);
}
