/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The XDP early-drop contract: the maps the BPF program (dataplane/xdp/
 * tes_xdp.bpf.c) reads and user space writes through dataplane/xdp/
 * xdp_loader.c (tescontrol's map sync, controlplane/xdpsync.c, and the
 * tes-xdp CLI).  Both sides compile this one header, so a layout can only
 * change for both at once.  docs/xdp.md describes it for
 * people.
 *
 * The maps outlive the processes that fill them: they are pinned under
 * TES_XDP_PIN_ROOT/TES_XDP_LAYOUT_DIR and reused on restart, so drops stay in
 * force while tescontrol or tesgate restart.  A pinned map is reused only if
 * its type, key and value sizes, capacity and flags are what this header
 * says; anything else is refused.  Hence the rule: any change here that an
 * older reader or writer would misread (a key or value layout, a map type, a
 * capacity, a flag, a reason's meaning, a counter's index) bumps
 * TES_XDP_LAYOUT_VERSION, and the new version pins beside the old one instead
 * of fighting over it.
 *
 * Only <linux/types.h>: this is compiled with clang -target bpf, where there
 * is no libc.
 */
#ifndef TES_CONTRACT_XDP_MAP_H
#define TES_CONTRACT_XDP_MAP_H

#include <linux/types.h>

/* Version 2: the protected-ports map (tes_ports) and the pass_other
 * counter; sources on the list are dropped only on TCP to those ports. */
#define TES_XDP_LAYOUT_VERSION 2
#define TES_XDP_LAYOUT_DIR "v2" /* keep in step with TES_XDP_LAYOUT_VERSION */

/* Maps are pinned as TES_XDP_PIN_ROOT "/" TES_XDP_LAYOUT_DIR "/" <map name>. */
#define TES_XDP_PIN_ROOT "/sys/fs/bpf/tesgate"

/* The program's name in the kernel: how a loader recognises an attached
 * program as its own (it never detaches or replaces anything else). */
#define TES_XDP_PROG_NAME "tes_xdp"

/* Map names, as the kernel and the pin files know them (at most 15 chars). */
#define TES_XDP_MAP_EXACT4 "tes_exact4"   /* HASH: struct tes_xdp_key4 -> struct tes_xdp_entry */
#define TES_XDP_MAP_EXACT6 "tes_exact6"   /* HASH: struct tes_xdp_key6 -> struct tes_xdp_entry */
#define TES_XDP_MAP_PREFIX4 "tes_prefix4" /* LPM_TRIE: struct tes_xdp_lpm4 -> tes_xdp_entry */
#define TES_XDP_MAP_PREFIX6 "tes_prefix6" /* LPM_TRIE: struct tes_xdp_lpm6 -> tes_xdp_entry */
#define TES_XDP_MAP_STATS "tes_stats" /* PERCPU_ARRAY: counter index -> struct tes_xdp_counter */
#define TES_XDP_MAP_PORTS "tes_ports" /* ARRAY, one entry (key 0): struct tes_xdp_ports */

/* Capacities.  The exact maps are created without preallocation, so an
 * empty map costs its bucket array only (16 octets a bucket, a power of two
 * at least the capacity), and each entry is allocated when added. */
#define TES_XDP_EXACT_MAX (1u << 20)
#define TES_XDP_PREFIX_MAX (1u << 16)

/* Keys.  Addresses in network byte order, as they appear in the packet. */
struct tes_xdp_key4 {
	__u8 addr[4];
};

struct tes_xdp_key6 {
	__u8 addr[16];
};

/* LPM trie keys: the kernel's struct bpf_lpm_trie_key layout (prefix length
 * in bits, host order, then the address), with the address sized. */
struct tes_xdp_lpm4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct tes_xdp_lpm6 {
	__u32 prefixlen;
	__u8 addr[16];
};

/* The TCP destination ports a listed source is dropped on (the SMTP ports
 * the gateway listens on): a bit per port, port p at bits[p / 64] bit
 * p % 64.  Everything else from a listed source (other TCP ports, UDP,
 * ICMP, ...) passes: the list is about mail, and dropping a source's DNS
 * replies or ICMP errors would harm this host, not the sender.  An empty set
 * protects nothing.  A loader that creates the map fresh sets
 * TES_XDP_PORT_DEFAULT; the owner (tescontrol: xdp_ports) writes its own. */
struct tes_xdp_ports {
	__u64 bits[1024];
};

#define TES_XDP_PORT_DEFAULT 25

/* Why an entry drops.  The value picks the drop counter, so the exact maps
 * hold both enforcement blocks and admin exact denies. */
enum tes_xdp_reason {
	TES_XDP_REASON_NONE = 0,         /* invalid: such an entry is ignored (counted) */
	TES_XDP_REASON_BLOCKED = 1,      /* source of a fully blocked server (enforcement) */
	TES_XDP_REASON_ADMIN_EXACT = 2,  /* operator deny, one address */
	TES_XDP_REASON_ADMIN_PREFIX = 3, /* operator deny range */
	TES_XDP_REASON_COUNT = 4,
};

/* The value of every address map.
 *
 * expires_ns is CLOCK_BOOTTIME nanoseconds (bpf_ktime_get_boot_ns() in the
 * program, clock_gettime(CLOCK_BOOTTIME) in user space), 0 for never.  Not
 * wall-clock time: stepping the wall clock (NTP, an operator) must not expire
 * or revive every entry at once, and a boot-time clock lives exactly as long
 * as the pins do (bpffs is gone after a reboot).  Owners that keep wall-clock
 * expiries (tescontrol's store) convert at write time.  An expired entry is
 * treated as absent by the program and deleted later by user space.
 *
 * cookie is not read by the program: the map's owner may use it (tescontrol:
 * the sync generation, for mark-and-sweep). */
struct tes_xdp_entry {
	__u64 expires_ns;
	__u32 reason; /* enum tes_xdp_reason */
	__u32 cookie;
};

/* Counters: one struct tes_xdp_counter per index per CPU; readers sum the
 * CPUs.  The first TES_XDP_CNT_VERDICTS are verdicts: every packet the
 * program sees is counted in exactly one of them.  The ones after are events
 * counted beside the verdict. */
enum tes_xdp_counter_index {
	TES_XDP_CNT_PASS_IPV4 = 0,      /* IPv4 TCP to a protected port, no matching entry */
	TES_XDP_CNT_PASS_IPV6 = 1,      /* IPv6 TCP to a protected port, no matching entry */
	TES_XDP_CNT_PASS_NOT_IP = 2,    /* neither IPv4 nor IPv6, or more than two VLAN tags */
	TES_XDP_CNT_PASS_FRAGMENT = 3,  /* a fragment after the first: no decision made */
	TES_XDP_CNT_PASS_MALFORMED = 4, /* truncated or inconsistent headers */
	TES_XDP_CNT_PASS_OTHER = 5,     /* IP, but not TCP to a protected port: not looked up */
	TES_XDP_CNT_DROP_BLOCKED = 6,   /* drops: TES_XDP_CNT_DROP_OF(reason) */
	TES_XDP_CNT_DROP_ADMIN_EXACT = 7,
	TES_XDP_CNT_DROP_ADMIN_PREFIX = 8,
	TES_XDP_CNT_VERDICTS = 9,
	TES_XDP_CNT_EXPIRED = 9,    /* event: a matching entry had expired (user space: sweep) */
	TES_XDP_CNT_BAD_ENTRY = 10, /* event: a matching entry had an invalid reason */
	TES_XDP_CNT_COUNT = 11,
};

/* The drop counter of a valid reason. */
#define TES_XDP_CNT_DROP_OF(reason) (TES_XDP_CNT_DROP_BLOCKED + (reason)-1)

struct tes_xdp_counter {
	__u64 packets;
	__u64 bytes; /* the frame as XDP sees it, link-layer header included (for a
		      * multi-buffer jumbo frame: its first buffer) */
};

_Static_assert(sizeof(struct tes_xdp_key4) == 4, "tes_xdp_key4 layout");
_Static_assert(sizeof(struct tes_xdp_key6) == 16, "tes_xdp_key6 layout");
_Static_assert(sizeof(struct tes_xdp_lpm4) == 8, "tes_xdp_lpm4 layout");
_Static_assert(sizeof(struct tes_xdp_lpm6) == 20, "tes_xdp_lpm6 layout");
_Static_assert(sizeof(struct tes_xdp_entry) == 16, "tes_xdp_entry layout");
_Static_assert(sizeof(struct tes_xdp_counter) == 16, "tes_xdp_counter layout");
_Static_assert(sizeof(struct tes_xdp_ports) == 8192, "tes_xdp_ports: a bit per port");
_Static_assert(TES_XDP_CNT_DROP_OF(TES_XDP_REASON_ADMIN_PREFIX) == TES_XDP_CNT_DROP_ADMIN_PREFIX,
	       "drop counters follow the reasons");
_Static_assert(TES_XDP_CNT_DROP_OF(TES_XDP_REASON_COUNT) == TES_XDP_CNT_VERDICTS,
	       "every reason has a drop counter");

#endif
