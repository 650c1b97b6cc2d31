/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libtesxdp: the user side of the XDP early drop (docs/xdp.md).
 *
 * Three jobs, usable apart:
 *   - loading: tes_xdp_load() loads tes_xdp.bpf.o (embedded through its
 *     bpftool skeleton) with its maps pinned under <pin root>/v<layout>/,
 *     reusing pins that are already there, so entries and counters survive
 *     the process;
 *   - attaching: tes_xdp_attach() puts the loaded program on an interface,
 *     native mode first and generic as fallback, and replaces our own older
 *     program atomically; tes_xdp_detach() removes it.  The attach is the
 *     netlink kind, which stays after the process exits: drops stay in force
 *     across restarts and crashes, and only an explicit detach ends them;
 *   - the drop list: tes_xdp_add/del/list/expire and tes_xdp_counters work on
 *     a handle from either tes_xdp_load() or tes_xdp_open_pinned() (maps
 *     only, no program: what a map sync or a CLI needs).
 *
 * Errors: functions return 0 (or a count) on success and a negative errno on
 * failure, with a sentence for an operator in err (which may be NULL).  The
 * usual ones: -EPERM (not root: CAP_BPF and CAP_NET_ADMIN are needed),
 * -ENOENT (nothing pinned yet, no such entry), -ENODEV (no such interface),
 * -EBUSY (the interface runs someone else's XDP program), -ESTALE (a pinned
 * map from an incompatible build), -ENOTSUP (no BPF filesystem at the pin
 * root, or the kernel lacks a feature).
 *
 * libbpf's own messages (the verifier log, the kernel's netlink error text)
 * go to stderr, prefixed "libbpf: ", warnings only unless tes_xdp_verbose().
 * libbpf has one print hook per process; this library sets it on first use.
 *
 * Threads: a struct tes_xdp is used by one thread at a time.  Several
 * processes may write the same pinned maps (each update is atomic in the
 * kernel); whoever owns the drop list should be the only one deleting.
 */
#ifndef TES_DATAPLANE_XDP_LOADER_H
#define TES_DATAPLANE_XDP_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "contract/xdp_map.h"

struct tes_xdp;

struct tes_xdp_opts {
	const char *pin_root; /* NULL: TES_XDP_PIN_ROOT; TES_XDP_LAYOUT_DIR is appended */
	bool no_pin;          /* private maps: nothing pinned or reused (tests, benchmarks) */
	uint32_t exact_max;   /* with no_pin only: capacity of the exact maps (0: contract's) */
};

/* Whether this process may load BPF programs at all.  0, or -EPERM/-ENOSYS
 * with the reason: what a test checks before deciding to skip. */
int tes_xdp_probe(char *err, size_t errlen);

/* Load the program and its maps (see above).  *out on success. */
int tes_xdp_load(const struct tes_xdp_opts *opts, struct tes_xdp **out, char *err, size_t errlen);

/* The pinned maps only.  -ENOENT when nothing is pinned under pin_root
 * (NULL: TES_XDP_PIN_ROOT) for this layout version. */
int tes_xdp_open_pinned(const char *pin_root, struct tes_xdp **out, char *err, size_t errlen);

/* Release the handle.  Pins and attachments stay. */
void tes_xdp_close(struct tes_xdp *x);

/* Remove this layout version's pins (and the pin root if it is left
 * empty).  Entries and counters are lost once nothing attached uses them. */
int tes_xdp_unpin(const char *pin_root, char *err, size_t errlen);

/* The loaded program's fd (bpf_prog_test_run), -1 on a maps-only handle. */
int tes_xdp_prog_fd(const struct tes_xdp *x);

/* True if tes_xdp_load() reused pinned maps instead of creating them. */
bool tes_xdp_maps_reused(const struct tes_xdp *x);

/* The directory the maps are pinned in, "" for private maps. */
const char *tes_xdp_pin_dir(const struct tes_xdp *x);

/* libbpf's informational and debug messages to stderr too. */
void tes_xdp_verbose(bool on);

/* --- attaching ------------------------------------------------------------ */

enum tes_xdp_mode {
	TES_XDP_MODE_AUTO = 0, /* request: native, then generic with a warning */
	TES_XDP_MODE_NATIVE,   /* in the driver, before any skb is allocated */
	TES_XDP_MODE_GENERIC,  /* after skb allocation: any device, slower */
	TES_XDP_MODE_NONE,     /* report: nothing attached */
	TES_XDP_MODE_OTHER,    /* report: offloaded, or several modes at once */
};

const char *tes_xdp_mode_name(enum tes_xdp_mode m);

struct tes_xdp_attach_info {
	enum tes_xdp_mode mode; /* the mode it is attached in */
	uint32_t prog_id;       /* the attached program's id */
	bool fell_back;         /* native was refused and generic taken: export it as a metric */
	bool replaced;          /* an older tes_xdp program was replaced in place */
	char warning[512];      /* why native was refused, when fell_back */
};

/* Attach the handle's program to ifname.  If our own program (by name,
 * TES_XDP_PROG_NAME) is attached already it is replaced atomically, in the
 * mode it is in: no moment without the program.  Someone else's program is
 * never touched (-EBUSY). */
int tes_xdp_attach(struct tes_xdp *x, const char *ifname, enum tes_xdp_mode want,
		   struct tes_xdp_attach_info *info, char *err, size_t errlen);

/* Detach our program from ifname.  -ENOENT if no XDP program is attached,
 * -EBUSY if the one attached is not ours.  Telling whose program it is
 * opens it by id, which needs CAP_SYS_ADMIN; tes_xdp_detach_own() needs
 * only CAP_NET_ADMIN when x's own program is the one attached (x may be
 * NULL: then as tes_xdp_detach). */
int tes_xdp_detach(const char *ifname, char *err, size_t errlen);
int tes_xdp_detach_own(struct tes_xdp *x, const char *ifname, char *err, size_t errlen);

/* What is attached to ifname.  mode is TES_XDP_MODE_NONE when nothing is;
 * ours says whether it is a tes_xdp program.  As for detaching, a program
 * other than x's own (or any, for tes_xdp_query) is opened by id: without
 * CAP_SYS_ADMIN that is -EPERM. */
int tes_xdp_query(const char *ifname, struct tes_xdp_attach_info *info, bool *ours, char *err,
		  size_t errlen);
int tes_xdp_query_own(struct tes_xdp *x, const char *ifname, struct tes_xdp_attach_info *info,
		      bool *ours, char *err, size_t errlen);

/* --- addresses -------------------------------------------------------------- */

struct tes_xdp_addr {
	int family;         /* AF_INET or AF_INET6 */
	unsigned prefixlen; /* 32 or 128 for one address */
	uint8_t addr[16];   /* network order; the first 4 for AF_INET */
};

#define TES_XDP_ADDR_STRLEN 64 /* longest IPv6 text, '/', three digits, NUL */

/* "198.18.0.1", "198.18.0.0/15", "2001:db8::1", "2001:db8::/32".  Host bits
 * below the prefix are refused (as iproute2 does), as is /0.  An
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d[/96+n]) becomes IPv4: it is how
 * a dual-stack socket reports an IPv4 client, never what a packet carries. */
int tes_xdp_addr_parse(const char *s, struct tes_xdp_addr *a, char *err, size_t errlen);

/* The text form; "/N" only for a prefix shorter than the address. */
void tes_xdp_addr_format(const struct tes_xdp_addr *a, char *buf, size_t len);

/* --- the drop list ---------------------------------------------------------- */

/* Who asked for an entry.  With the prefix length it gives the reason:
 * enforcement -> TES_XDP_REASON_BLOCKED; admin -> ADMIN_EXACT for one
 * address, ADMIN_PREFIX for a range. */
enum tes_xdp_origin {
	TES_XDP_ORIGIN_ENFORCEMENT,
	TES_XDP_ORIGIN_ADMIN,
};

/* Expiry times are CLOCK_BOOTTIME nanoseconds (contract/xdp_map.h says
 * why); 0 is never.  These convert. */
uint64_t tes_xdp_now_ns(void);
uint64_t tes_xdp_expiry_in(uint64_t seconds);
/* A wall-clock expiry (time_t), as a store keeps it; 1 (already expired)
 * for a time in the past. */
uint64_t tes_xdp_expiry_at(time_t wall);

struct tes_xdp_rule {
	struct tes_xdp_addr addr;
	enum tes_xdp_reason reason;
	uint64_t expires_ns; /* 0: never */
	uint32_t cookie;
	bool expired; /* at the time of listing */
};

/* Add or replace the entry for a.  One address goes to the exact map of its
 * family, a range to the prefix trie.  -E2BIG when the map is full. */
int tes_xdp_add(struct tes_xdp *x, const struct tes_xdp_addr *a, enum tes_xdp_origin origin,
		uint64_t expires_ns, uint32_t cookie, char *err, size_t errlen);

/* Remove the entry for exactly a (not what covers it).  -ENOENT if none. */
int tes_xdp_del(struct tes_xdp *x, const struct tes_xdp_addr *a, char *err, size_t errlen);

/* Look up the entry for exactly a.  -ENOENT if none. */
int tes_xdp_get(struct tes_xdp *x, const struct tes_xdp_addr *a, struct tes_xdp_rule *r, char *err,
		size_t errlen);

/* Call fn for every entry (exact IPv4, exact IPv6, prefix IPv4, prefix IPv6;
 * no order within a map) and return how many there were.  A non-zero return
 * from fn stops the walk and is returned: make it negative (an errno of the
 * caller's choosing) so it cannot pass for a count.  Entries added or removed
 * meanwhile may or may not be seen. */
typedef int (*tes_xdp_rule_fn)(const struct tes_xdp_rule *r, void *arg);
long tes_xdp_list(struct tes_xdp *x, tes_xdp_rule_fn fn, void *arg, char *err, size_t errlen);

/* Delete every entry that expired before now_ns (0: now).  The number
 * deleted.  The program already ignores them; this returns their memory. */
long tes_xdp_expire(struct tes_xdp *x, uint64_t now_ns, char *err, size_t errlen);

/* --- protected ports ---------------------------------------------------------- */

/* The TCP destination ports a listed source is dropped on (contract/
 * xdp_map.h); everything else from it passes.  Replaces the whole set.  A
 * freshly created map holds TES_XDP_PORT_DEFAULT. */
int tes_xdp_set_ports(struct tes_xdp *x, const uint16_t *ports, unsigned n, char *err,
		      size_t errlen);
/* The set, ascending, into ports (at most max); returns how many there are
 * (possibly more than max), or a negative errno. */
int tes_xdp_get_ports(struct tes_xdp *x, uint16_t *ports, unsigned max, char *err, size_t errlen);
/* "25, 587" into ports; how many, or a negative errno (an empty list is
 * refused: it would protect nothing). */
int tes_xdp_ports_parse(const char *s, uint16_t *ports, unsigned max, char *err, size_t errlen);

/* --- counters ---------------------------------------------------------------- */

/* The counters summed over CPUs, indexed by enum tes_xdp_counter_index. */
int tes_xdp_counters(struct tes_xdp *x, struct tes_xdp_counter out[TES_XDP_CNT_COUNT], char *err,
		     size_t errlen);

/* Stable names for metrics: "pass_ipv4", "drop_blocked", ...; NULL past the
 * end. */
const char *tes_xdp_counter_name(unsigned idx);

#endif
