/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libtespriv: giving up root and capabilities, the same way in both daemons
 * (tesgate and tescontrol); docs/security.md says why and in what order.
 *
 * Capabilities and no_new_privs belong to each thread, and a thread starts
 * with a copy of its creator's.  So the order is:
 *   1. priv_begin(), while the process has one thread: no_new_privs, an
 *      empty bounding set (where CAP_SETPCAP allows), no inheritable and no
 *      ambient capabilities.  Every thread made later inherits all four,
 *      so none of them can gain anything by an execve.  What the start-up
 *      still needs (permitted, effective) stays.
 *   2. the start-up: sockets bound, devices opened, files opened.
 *   3. priv_drop(): started as root with a user, setgroups, setresgid and
 *      setresuid, which glibc applies to every thread of the process (its
 *      setxid broadcast), and which clear every thread's permitted and
 *      effective sets (only the calling thread keeps `keep`, when asked);
 *      started as another user, the capabilities can only be cleared in the
 *      calling thread (capset is per thread), so a caller that starts
 *      unprivileged with capabilities calls priv_drop before it makes any
 *      thread.  priv_state() tells afterwards what every thread holds.
 *
 * Threading: priv_begin and priv_drop on the main thread (priv_begin before
 * any other thread exists); priv_lookup, priv_state and the formatters
 * anywhere.
 */
#ifndef TES_BASE_PRIVDROP_H
#define TES_BASE_PRIVDROP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PRIV_GROUPS_MAX 64
#define PRIV_CAP(n) (1ull << (n))

/* Linux capability numbers used by callers (linux/capability.h). */
#define PRIV_CAP_CHOWN 0
#define PRIV_CAP_DAC_OVERRIDE 1
#define PRIV_CAP_SETGID 6
#define PRIV_CAP_SETUID 7
#define PRIV_CAP_SETPCAP 8
#define PRIV_CAP_NET_BIND_SERVICE 10
#define PRIV_CAP_NET_ADMIN 12
#define PRIV_CAP_SYS_ADMIN 21
#define PRIV_CAP_PERFMON 38
#define PRIV_CAP_BPF 39

/* The user a daemon runs as; set false: none configured. */
struct priv_user {
	bool set;
	char name[64];
	uid_t uid;
	gid_t gid;
	int ngroups;
	gid_t groups[PRIV_GROUPS_MAX]; /* the user's supplementary groups */
};

/* name "" leaves u unset (0).  Otherwise the passwd and group databases:
 * -1 with err saying why when there is no such user. */
int priv_lookup(const char *name, struct priv_user *u, char *err, size_t errlen);

/* Step 1 above.  0, or -1 with err (no_new_privs refused: nothing else is
 * fatal; a bounding set that cannot be emptied without CAP_SETPCAP is noted
 * in err with 0 returned). */
int priv_begin(char *err, size_t errlen);

/* Step 3.  keep: the capabilities the calling thread goes on with, in its
 * permitted and effective sets (0 for none); a capability it does not hold
 * is not added.  Started as root with u set: becomes u (its groups too) and
 * cannot regain root (checked).  Root without u (or u being root): nothing
 * changes, in no thread; the caller says so.  Not root: clears this thread's
 * capabilities but keep; switching to u is impossible and, if u names
 * someone else, noted in err with 0 returned.  -1 with err on a failure (the
 * caller must not go on: it would run with more than it says). */
int priv_drop(const struct priv_user *u, uint64_t keep, char *err, size_t errlen);

/* This thread's permitted and effective sets become prm and eff (each
 * limited to what is permitted now; eff to prm): to lower the effective set
 * for a try and raise it back, or to drop from the permitted set for good.
 * -1 with err on failure. */
int priv_set_caps(uint64_t prm, uint64_t eff, char *err, size_t errlen);

/* What the process holds now, from /proc/self: ids, no_new_privs, the
 * bounding set of the calling thread, and the union over every thread of
 * each capability set. */
struct priv_state {
	uid_t ruid, euid, suid;
	gid_t rgid, egid, sgid;
	bool no_new_privs;
	unsigned threads;            /* tasks read */
	unsigned threads_with_caps;  /* with anything permitted or effective */
	uint64_t eff, prm, inh, amb; /* unions over the threads */
	uint64_t bnd;                /* the calling thread's bounding set */
};

int priv_state(struct priv_state *st);

/* "cap_net_admin,cap_bpf", "none" for 0.  buf always terminated. */
const char *priv_caps_format(uint64_t caps, char *buf, size_t len);

/* One line for a log: ids, capabilities, no_new_privs. */
void priv_state_format(const struct priv_state *st, char *buf, size_t len);

#endif
