/* SPDX-License-Identifier: BSD-3-Clause */
#include "base/privdrop.h"

#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *const cap_names[] = {
	"cap_chown",
	"cap_dac_override",
	"cap_dac_read_search",
	"cap_fowner",
	"cap_fsetid",
	"cap_kill",
	"cap_setgid",
	"cap_setuid",
	"cap_setpcap",
	"cap_linux_immutable",
	"cap_net_bind_service",
	"cap_net_broadcast",
	"cap_net_admin",
	"cap_net_raw",
	"cap_ipc_lock",
	"cap_ipc_owner",
	"cap_sys_module",
	"cap_sys_rawio",
	"cap_sys_chroot",
	"cap_sys_ptrace",
	"cap_sys_pacct",
	"cap_sys_admin",
	"cap_sys_boot",
	"cap_sys_nice",
	"cap_sys_resource",
	"cap_sys_time",
	"cap_sys_tty_config",
	"cap_mknod",
	"cap_lease",
	"cap_audit_write",
	"cap_audit_control",
	"cap_setfcap",
	"cap_mac_override",
	"cap_mac_admin",
	"cap_syslog",
	"cap_wake_alarm",
	"cap_block_suspend",
	"cap_audit_read",
	"cap_perfmon",
	"cap_bpf",
	"cap_checkpoint_restore",
};
#define NCAPNAMES (sizeof(cap_names) / sizeof(cap_names[0]))

/* The raw system calls: glibc has no wrapper, and libcap is not needed for
 * two calls. */
static int cap_get(struct __user_cap_data_struct d[2])
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };

	memset(d, 0, 2 * sizeof(*d));
	return (int)syscall(SYS_capget, &h, d);
}

static int cap_set(const struct __user_cap_data_struct d[2])
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };

	return (int)syscall(SYS_capset, &h, d);
}

static uint64_t join(uint32_t lo, uint32_t hi)
{
	return (uint64_t)lo | (uint64_t)hi << 32;
}

static unsigned last_cap(void)
{
	unsigned last = CAP_LAST_CAP;
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");

	if (f) {
		if (fscanf(f, "%u", &last) != 1 || last > 63)
			last = CAP_LAST_CAP;
		fclose(f);
	}
	return last;
}

int priv_lookup(const char *name, struct priv_user *u, char *err, size_t errlen)
{
	struct passwd pw, *res = NULL;
	char buf[16384];
	int n = PRIV_GROUPS_MAX;

	memset(u, 0, sizeof(*u));
	if (!name || !name[0])
		return 0;
	if (strlen(name) >= sizeof(u->name)) {
		snprintf(err, errlen, "user name '%.40s...' is too long", name);
		return -1;
	}
	errno = 0;
	if (getpwnam_r(name, &pw, buf, sizeof(buf), &res) != 0 || !res) {
		snprintf(err, errlen,
			 "no user named '%s' (tools/setup.sh creates the system users tesgate "
			 "and tescontrol)",
			 name);
		return -1;
	}
	if (getgrouplist(name, pw.pw_gid, u->groups, &n) < 0) {
		snprintf(err, errlen, "user '%s' is in more than %d groups", name, PRIV_GROUPS_MAX);
		return -1;
	}
	u->set = true;
	snprintf(u->name, sizeof(u->name), "%s", name);
	u->uid = pw.pw_uid;
	u->gid = pw.pw_gid;
	u->ngroups = n;
	return 0;
}

int priv_begin(char *err, size_t errlen)
{
	struct __user_cap_data_struct d[2];
	unsigned last = last_cap();
	bool bnd_left = false;

	err[0] = '\0';
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		snprintf(err, errlen, "prctl(PR_SET_NO_NEW_PRIVS): %s", strerror(errno));
		return -1;
	}
	/* Older kernels have no ambient set: nothing to clear there. */
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
		snprintf(err, errlen, "clearing the ambient capabilities: %s", strerror(errno));
		return -1;
	}
	if (cap_get(d) != 0 || (d[0].inheritable = d[1].inheritable = 0, cap_set(d) != 0)) {
		snprintf(err, errlen, "clearing the inheritable capabilities: %s", strerror(errno));
		return -1;
	}
	for (unsigned c = 0; c <= last; c++) {
		if (prctl(PR_CAPBSET_READ, c, 0, 0, 0) != 1)
			continue;
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0)
			bnd_left = true; /* no CAP_SETPCAP: the starter's bounding set stays */
	}
	if (bnd_left)
		snprintf(err, errlen,
			 "the capability bounding set stays as given (emptying it needs "
			 "CAP_SETPCAP); no_new_privs makes it moot for this process");
	return 0;
}

/* This thread: permitted and effective become keep (what of it is held),
 * inheritable nothing. */
static int keep_only(uint64_t keep, char *err, size_t errlen)
{
	struct __user_cap_data_struct d[2];

	if (cap_get(d) != 0) {
		snprintf(err, errlen, "capget: %s", strerror(errno));
		return -1;
	}
	uint64_t prm = join(d[0].permitted, d[1].permitted) & keep;
	d[0].permitted = d[0].effective = (uint32_t)prm;
	d[1].permitted = d[1].effective = (uint32_t)(prm >> 32);
	d[0].inheritable = d[1].inheritable = 0;
	if (cap_set(d) != 0) {
		snprintf(err, errlen, "capset: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int priv_set_caps(uint64_t prm, uint64_t eff, char *err, size_t errlen)
{
	struct __user_cap_data_struct d[2];

	if (cap_get(d) != 0) {
		snprintf(err, errlen, "capget: %s", strerror(errno));
		return -1;
	}
	prm &= join(d[0].permitted, d[1].permitted);
	eff &= prm;
	d[0].permitted = (uint32_t)prm;
	d[1].permitted = (uint32_t)(prm >> 32);
	d[0].effective = (uint32_t)eff;
	d[1].effective = (uint32_t)(eff >> 32);
	if (cap_set(d) != 0) {
		snprintf(err, errlen, "capset: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int priv_drop(const struct priv_user *u, uint64_t keep, char *err, size_t errlen)
{
	uid_t r, e, s;
	gid_t rg, eg, sg;

	err[0] = '\0';
	if (geteuid() == 0 && (!u || !u->set || u->uid == 0))
		return 0; /* root stays root, every thread alike: the caller says so */
	if (geteuid() == 0) {
		/* Only this thread keeps capabilities across the switch (the
		 * flag is per thread); every other thread loses them all. */
		if (keep && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) {
			snprintf(err, errlen, "prctl(PR_SET_KEEPCAPS): %s", strerror(errno));
			return -1;
		}
		if (setgroups((size_t)u->ngroups, u->groups) != 0) {
			snprintf(err, errlen, "setgroups for %s: %s", u->name, strerror(errno));
			return -1;
		}
		if (setresgid(u->gid, u->gid, u->gid) != 0) {
			snprintf(err, errlen, "setresgid(%u): %s", (unsigned)u->gid,
				 strerror(errno));
			return -1;
		}
		if (setresuid(u->uid, u->uid, u->uid) != 0) {
			snprintf(err, errlen, "setresuid(%u): %s", (unsigned)u->uid,
				 strerror(errno));
			return -1;
		}
		if (keep)
			prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
		if (getresuid(&r, &e, &s) != 0 || getresgid(&rg, &eg, &sg) != 0 || r != u->uid ||
		    e != u->uid || s != u->uid || rg != u->gid || eg != u->gid || sg != u->gid) {
			snprintf(err, errlen, "the switch to %s did not take", u->name);
			return -1;
		}
		/* As OpenSSH does: prove root cannot be had back. */
		if (setresuid(0, 0, 0) == 0 || setresgid(0, 0, 0) == 0) {
			snprintf(err, errlen, "root could be regained after switching to %s",
				 u->name);
			return -1;
		}
	}
	if (keep_only(keep, err, errlen) != 0)
		return -1;
	if (geteuid() != 0 && u && u->set && u->uid != geteuid())
		snprintf(err, errlen,
			 "not started as root: cannot switch to user %s (uid %u); going on as "
			 "uid %u",
			 u->name, (unsigned)u->uid, (unsigned)geteuid());
	return 0;
}

/* "Name:\t<value>" from a /proc status file, as text. */
static bool status_field(const char *text, const char *name, char *out, size_t len)
{
	size_t n = strlen(name);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, name, n) != 0 || p[n] != ':')
			continue;
		p += n + 1;
		while (*p == ' ' || *p == '\t')
			p++;
		size_t l = strcspn(p, "\n");
		if (l >= len)
			l = len - 1;
		memcpy(out, p, l);
		out[l] = '\0';
		return true;
	}
	return false;
}

static bool read_text(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f)
		return false;
	n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
	fclose(f);
	return n > 0;
}

static uint64_t hex_field(const char *text, const char *name)
{
	char v[64];

	return status_field(text, name, v, sizeof(v)) ? strtoull(v, NULL, 16) : 0;
}

int priv_state(struct priv_state *st)
{
	char text[4096], v[128], path[64];
	unsigned a, b, c;
	DIR *d;
	struct dirent *e;

	memset(st, 0, sizeof(*st));
	if (!read_text("/proc/thread-self/status", text, sizeof(text)))
		return -1;
	if (status_field(text, "Uid", v, sizeof(v)) && sscanf(v, "%u %u %u", &a, &b, &c) == 3) {
		st->ruid = a;
		st->euid = b;
		st->suid = c;
	}
	if (status_field(text, "Gid", v, sizeof(v)) && sscanf(v, "%u %u %u", &a, &b, &c) == 3) {
		st->rgid = a;
		st->egid = b;
		st->sgid = c;
	}
	st->no_new_privs = status_field(text, "NoNewPrivs", v, sizeof(v)) && v[0] == '1';
	st->bnd = hex_field(text, "CapBnd");
	d = opendir("/proc/self/task");
	if (!d)
		return -1;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%.20s/status", e->d_name);
		if (!read_text(path, text, sizeof(text)))
			continue; /* the thread ended meanwhile */
		uint64_t eff = hex_field(text, "CapEff"), prm = hex_field(text, "CapPrm");
		st->threads++;
		st->threads_with_caps += (eff | prm) != 0;
		st->eff |= eff;
		st->prm |= prm;
		st->inh |= hex_field(text, "CapInh");
		st->amb |= hex_field(text, "CapAmb");
	}
	closedir(d);
	return 0;
}

const char *priv_caps_format(uint64_t caps, char *buf, size_t len)
{
	size_t off = 0;

	if (len == 0)
		return buf;
	buf[0] = '\0';
	if (!caps) {
		snprintf(buf, len, "none");
		return buf;
	}
	for (unsigned c = 0; c < 64 && off < len; c++) {
		if (!(caps & PRIV_CAP(c)))
			continue;
		int n;
		if (c < NCAPNAMES)
			n = snprintf(buf + off, len - off, "%s%s", off ? "," : "", cap_names[c]);
		else
			n = snprintf(buf + off, len - off, "%scap_%u", off ? "," : "", c);
		if (n < 0)
			break;
		off += (size_t)n;
	}
	return buf;
}

void priv_state_format(const struct priv_state *st, char *buf, size_t len)
{
	char eff[512], prm[512];

	priv_caps_format(st->eff, eff, sizeof(eff));
	priv_caps_format(st->prm, prm, sizeof(prm));
	snprintf(buf, len,
		 "uid=%u gid=%u, capabilities effective=%s permitted=%s in %u of %u threads, "
		 "inheritable=%s ambient=%s, no_new_privs=%s",
		 (unsigned)st->euid, (unsigned)st->egid, eff, prm, st->threads_with_caps,
		 st->threads, st->inh ? "some" : "none", st->amb ? "some" : "none",
		 st->no_new_privs ? "yes" : "no");
}
