/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libtesxdp: loading, pinning, attaching, and the drop list.  The why of the
 * choices (netlink attach, boot-time expiry, versioned pins) is in
 * docs/xdp.md; the layout is contract/xdp_map.h.
 */
#include "dataplane/xdp/xdp_loader.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/if_link.h>
#include <linux/magic.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "tes_xdp.skel.h"

enum { M_EXACT4, M_EXACT6, M_PREFIX4, M_PREFIX6, M_STATS, M_PORTS, M_COUNT };

/* What every pinned map must be: the contract, as the kernel reports it. */
static const struct map_def {
	const char *name;
	uint32_t type, key_size, value_size, max_entries, flags;
} map_defs[M_COUNT] = {
	[M_EXACT4] = { TES_XDP_MAP_EXACT4, BPF_MAP_TYPE_HASH, sizeof(struct tes_xdp_key4),
		       sizeof(struct tes_xdp_entry), TES_XDP_EXACT_MAX, BPF_F_NO_PREALLOC },
	[M_EXACT6] = { TES_XDP_MAP_EXACT6, BPF_MAP_TYPE_HASH, sizeof(struct tes_xdp_key6),
		       sizeof(struct tes_xdp_entry), TES_XDP_EXACT_MAX, BPF_F_NO_PREALLOC },
	[M_PREFIX4] = { TES_XDP_MAP_PREFIX4, BPF_MAP_TYPE_LPM_TRIE, sizeof(struct tes_xdp_lpm4),
			sizeof(struct tes_xdp_entry), TES_XDP_PREFIX_MAX, BPF_F_NO_PREALLOC },
	[M_PREFIX6] = { TES_XDP_MAP_PREFIX6, BPF_MAP_TYPE_LPM_TRIE, sizeof(struct tes_xdp_lpm6),
			sizeof(struct tes_xdp_entry), TES_XDP_PREFIX_MAX, BPF_F_NO_PREALLOC },
	[M_STATS] = { TES_XDP_MAP_STATS, BPF_MAP_TYPE_PERCPU_ARRAY, sizeof(__u32),
		      sizeof(struct tes_xdp_counter), TES_XDP_CNT_COUNT, 0 },
	[M_PORTS] = { TES_XDP_MAP_PORTS, BPF_MAP_TYPE_ARRAY, sizeof(__u32),
		      sizeof(struct tes_xdp_ports), 1, 0 },
};

struct tes_xdp {
	struct tes_xdp_bpf *skel; /* NULL on a maps-only handle */
	int fd[M_COUNT];
	bool own_fds; /* maps-only: the fds are ours to close, not the skeleton's */
	bool reused;
	int ncpus;
	struct tes_xdp_counter *percpu; /* one per possible CPU: a per-CPU map read */
	char pin_dir[PATH_MAX];
};

/* --- errors and libbpf's messages --------------------------------------------- */

static bool verbose;
static _Thread_local char kernel_msg[256]; /* netlink's extack text of the last refusal */

__attribute__((format(printf, 4, 5))) static int fail(char *err, size_t errlen, int e,
						      const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -e;
}

__attribute__((format(printf, 2, 0))) static int libbpf_print(enum libbpf_print_level level,
							      const char *fmt, va_list ap)
{
	static const char prefix[] = "libbpf: Kernel error message: ";
	char line[512];
	va_list aq;

	va_copy(aq, ap);
	vsnprintf(line, sizeof(line), fmt, aq);
	va_end(aq);
	if (strncmp(line, prefix, sizeof(prefix) - 1) == 0) {
		const char *m = line + sizeof(prefix) - 1;
		size_t n = strcspn(m, "\n");

		if (n >= sizeof(kernel_msg))
			n = sizeof(kernel_msg) - 1;
		memcpy(kernel_msg, m, n);
		kernel_msg[n] = '\0';
		/* Every netlink call is ours and quotes it in its own error. */
		return 0;
	}
	if (level == LIBBPF_WARN || verbose)
		return vfprintf(stderr, fmt, ap);
	return 0;
}

static void hook_libbpf(void)
{
	static bool hooked;

	if (!__atomic_exchange_n(&hooked, true, __ATOMIC_ACQ_REL))
		libbpf_set_print(libbpf_print);
}

void tes_xdp_verbose(bool on)
{
	verbose = on;
	hook_libbpf();
}

/* ": <kernel text>" after a netlink refusal, or "". */
static const char *kmsg(void)
{
	static _Thread_local char buf[sizeof(kernel_msg) + 4];

	if (!kernel_msg[0])
		return "";
	snprintf(buf, sizeof(buf), ": %s", kernel_msg);
	return buf;
}

static const char *perm_hint(void)
{
	return "loading and attaching XDP programs needs CAP_BPF (or CAP_SYS_ADMIN) and "
	       "CAP_NET_ADMIN: run as root";
}

/* --- probing ---------------------------------------------------------------- */

int tes_xdp_probe(char *err, size_t errlen)
{
	/* r0 = XDP_PASS; exit: the smallest program the kernel accepts. */
	const struct bpf_insn insns[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = XDP_PASS },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	int fd;

	hook_libbpf();
	fd = bpf_prog_load(BPF_PROG_TYPE_XDP, "tes_probe", "Dual BSD/GPL", insns, 2, NULL);
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	switch (-fd) {
	case EPERM:
	case EACCES:
		return fail(err, errlen, EPERM, "the kernel refused a BPF program (%s): %s",
			    strerror(-fd), perm_hint());
	case ENOSYS:
		return fail(err, errlen, ENOSYS, "this kernel has no bpf() system call");
	default:
		return fail(err, errlen, -fd, "the kernel refused a minimal XDP program: %s",
			    strerror(-fd));
	}
}

/* --- pinning ---------------------------------------------------------------- */

static bool on_bpffs(const char *path)
{
	struct statfs st;

	return statfs(path, &st) == 0 && st.f_type == (typeof(st.f_type))BPF_FS_MAGIC;
}

static int make_dir(const char *path, char *err, size_t errlen)
{
	struct stat st;
	char parent[PATH_MAX];
	char *slash;

	if (stat(path, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			return fail(err, errlen, ENOTDIR, "%s exists and is not a directory", path);
		return 0;
	}
	if (errno == EACCES || errno == EPERM)
		return fail(err, errlen, EPERM, "%s: %s; %s", path, strerror(errno), perm_hint());
	if (errno != ENOENT)
		return fail(err, errlen, errno, "%s: %s", path, strerror(errno));
	snprintf(parent, sizeof(parent), "%s", path);
	slash = strrchr(parent, '/');
	if (slash && slash != parent)
		*slash = '\0';
	if (!on_bpffs(parent))
		return fail(err, errlen, ENOTSUP,
			    "%s is not on a BPF filesystem, so maps cannot be pinned there; "
			    "mount one (mount -t bpf bpf /sys/fs/bpf) or choose another pin root",
			    parent);
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return fail(err, errlen, errno, "creating %s: %s", path, strerror(errno));
	return 0;
}

static int pin_dir_of(const char *root, char *out, size_t len, char *err, size_t errlen)
{
	if (!root)
		root = TES_XDP_PIN_ROOT;
	if (!root[0] || (size_t)snprintf(out, len, "%s/%s", root, TES_XDP_LAYOUT_DIR) >= len)
		return fail(err, errlen, ENAMETOOLONG, "pin root '%s' is empty or too long", root);
	return 0;
}

static int pin_path(char *out, size_t len, const char *dir, unsigned m)
{
	return (size_t)snprintf(out, len, "%s/%s", dir, map_defs[m].name) >= len ? -ENAMETOOLONG
										 : 0;
}

/* Does the map behind fd match the contract?  -ESTALE with what differs. */
static int check_map(int fd, unsigned m, const char *what, char *err, size_t errlen)
{
	const struct map_def *d = &map_defs[m];
	struct bpf_map_info info;
	__u32 len = sizeof(info);

	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0)
		return fail(err, errlen, errno, "reading %s: %s", what, strerror(errno));
	if (info.type != d->type || info.key_size != d->key_size ||
	    info.value_size != d->value_size || info.max_entries != d->max_entries ||
	    info.map_flags != d->flags)
		return fail(err, errlen, ESTALE,
			    "%s is not a layout %d %s map (it has type %u, key %u, value %u, "
			    "%u entries, flags %#x; expected %u, %u, %u, %u, %#x): an "
			    "incompatible build pinned it; detach and unpin it (tes-xdp unpin), "
			    "which drops its entries, or give the new layout its own version",
			    what, TES_XDP_LAYOUT_VERSION, d->name, info.type, info.key_size,
			    info.value_size, info.max_entries, info.map_flags, d->type, d->key_size,
			    d->value_size, d->max_entries, d->flags);
	return 0;
}

/* 0 if a compatible map is pinned at path, -ENOENT if nothing is. */
static int check_pin(const char *path, unsigned m, char *err, size_t errlen)
{
	int fd = bpf_obj_get(path);
	int rc;

	if (fd < 0) {
		if (errno == ENOENT)
			return -ENOENT;
		if (errno == EPERM || errno == EACCES)
			return fail(err, errlen, EPERM, "opening %s: %s; %s", path, strerror(errno),
				    perm_hint());
		return fail(err, errlen, errno, "opening %s: %s", path, strerror(errno));
	}
	rc = check_map(fd, m, path, err, errlen);
	close(fd);
	return rc;
}

/* --- handles ------------------------------------------------------------------- */

static struct tes_xdp *handle_new(char *err, size_t errlen, int *rc)
{
	struct tes_xdp *x = calloc(1, sizeof(*x));

	if (!x) {
		*rc = fail(err, errlen, ENOMEM, "out of memory");
		return NULL;
	}
	for (unsigned m = 0; m < M_COUNT; m++)
		x->fd[m] = -1;
	x->ncpus = libbpf_num_possible_cpus();
	if (x->ncpus <= 0) {
		*rc = fail(err, errlen, x->ncpus ? -x->ncpus : EINVAL,
			   "cannot tell how many CPUs this machine may have");
		free(x);
		return NULL;
	}
	x->percpu = calloc((size_t)x->ncpus, sizeof(*x->percpu));
	if (!x->percpu) {
		*rc = fail(err, errlen, ENOMEM, "out of memory");
		free(x);
		return NULL;
	}
	return x;
}

void tes_xdp_close(struct tes_xdp *x)
{
	if (!x)
		return;
	if (x->skel)
		tes_xdp_bpf__destroy(x->skel);
	if (x->own_fds)
		for (unsigned m = 0; m < M_COUNT; m++)
			if (x->fd[m] >= 0)
				close(x->fd[m]);
	free(x->percpu);
	free(x);
}

int tes_xdp_load(const struct tes_xdp_opts *opts, struct tes_xdp **out, char *err, size_t errlen)
{
	static const struct tes_xdp_opts defaults;
	struct bpf_map *maps[M_COUNT];
	struct tes_xdp *x;
	char path[PATH_MAX];
	unsigned existing = 0;
	bool ports_reused = false;
	int rc;

	*out = NULL;
	if (!opts)
		opts = &defaults;
	if (opts->exact_max && !opts->no_pin)
		return fail(err, errlen, EINVAL,
			    "a different map capacity is only for private maps");
	hook_libbpf();
	x = handle_new(err, errlen, &rc);
	if (!x)
		return rc;

	if (!opts->no_pin) {
		char root[PATH_MAX];

		rc = pin_dir_of(opts->pin_root, x->pin_dir, sizeof(x->pin_dir), err, errlen);
		if (rc)
			goto out;
		snprintf(root, sizeof(root), "%s",
			 opts->pin_root ? opts->pin_root : TES_XDP_PIN_ROOT);
		rc = make_dir(root, err, errlen);
		if (!rc)
			rc = make_dir(x->pin_dir, err, errlen);
		if (rc)
			goto out;
		if (!on_bpffs(x->pin_dir)) {
			rc = fail(err, errlen, ENOTSUP,
				  "%s is not on a BPF filesystem (mount -t bpf bpf /sys/fs/bpf)",
				  x->pin_dir);
			goto out;
		}
	}

	x->skel = tes_xdp_bpf__open();
	if (!x->skel) {
		rc = fail(err, errlen, errno ? errno : EINVAL,
			  "opening the embedded BPF object failed: %s", strerror(errno));
		goto out;
	}
	maps[M_EXACT4] = x->skel->maps.tes_exact4;
	maps[M_EXACT6] = x->skel->maps.tes_exact6;
	maps[M_PREFIX4] = x->skel->maps.tes_prefix4;
	maps[M_PREFIX6] = x->skel->maps.tes_prefix6;
	maps[M_STATS] = x->skel->maps.tes_stats;
	maps[M_PORTS] = x->skel->maps.tes_ports;

	for (unsigned m = 0; m < M_COUNT; m++) {
		const struct map_def *d = &map_defs[m];

		/* The object and this table both come from the contract; a
		 * mismatch is a build error that must not reach the kernel. */
		if (strcmp(bpf_map__name(maps[m]), d->name) != 0 ||
		    bpf_map__type(maps[m]) != d->type ||
		    bpf_map__key_size(maps[m]) != d->key_size ||
		    bpf_map__value_size(maps[m]) != d->value_size ||
		    bpf_map__max_entries(maps[m]) != d->max_entries ||
		    bpf_map__map_flags(maps[m]) != d->flags) {
			rc = fail(err, errlen, EPROTO,
				  "the BPF object's map %s disagrees with contract/xdp_map.h",
				  bpf_map__name(maps[m]));
			goto out;
		}
		if (opts->no_pin) {
			if (opts->exact_max && (m == M_EXACT4 || m == M_EXACT6))
				bpf_map__set_max_entries(maps[m], opts->exact_max);
			continue;
		}
		if (pin_path(path, sizeof(path), x->pin_dir, m)) {
			rc = fail(err, errlen, ENAMETOOLONG, "pin path too long under %s",
				  x->pin_dir);
			goto out;
		}
		rc = check_pin(path, m, err, errlen);
		if (rc == 0) {
			existing++;
			ports_reused |= m == M_PORTS;
		} else if (rc != -ENOENT) {
			goto out;
		}
		/* libbpf reuses a map pinned here, or creates and pins one. */
		rc = bpf_map__set_pin_path(maps[m], path);
		if (rc) {
			rc = fail(err, errlen, -rc, "setting pin path %s: %s", path, strerror(-rc));
			goto out;
		}
	}

	rc = tes_xdp_bpf__load(x->skel);
	if (rc) {
		/* EPERM is privilege; EACCES and EINVAL are the verifier's. */
		if (rc == -EPERM)
			rc = fail(err, errlen, EPERM,
				  "the kernel refused to load the XDP program: %s", perm_hint());
		else
			rc = fail(err, errlen, -rc,
				  "the kernel refused to load the XDP program: %s (the verifier's "
				  "reasons are in the libbpf log above)",
				  strerror(-rc));
		goto out;
	}
	for (unsigned m = 0; m < M_COUNT; m++)
		x->fd[m] = bpf_map__fd(maps[m]);
	x->reused = existing > 0;
	/* A new ports map is empty, which would protect nothing: it starts
	 * with the SMTP port until its owner writes its own list. */
	if (!ports_reused) {
		const uint16_t dflt = TES_XDP_PORT_DEFAULT;

		rc = tes_xdp_set_ports(x, &dflt, 1, err, errlen);
		if (rc)
			goto out;
	}
	*out = x;
	return 0;
out:
	tes_xdp_close(x);
	return rc;
}

int tes_xdp_open_pinned(const char *pin_root, struct tes_xdp **out, char *err, size_t errlen)
{
	struct tes_xdp *x;
	char path[PATH_MAX];
	int rc;

	*out = NULL;
	hook_libbpf();
	x = handle_new(err, errlen, &rc);
	if (!x)
		return rc;
	x->own_fds = true;
	rc = pin_dir_of(pin_root, x->pin_dir, sizeof(x->pin_dir), err, errlen);
	if (rc)
		goto out;
	for (unsigned m = 0; m < M_COUNT; m++) {
		if (pin_path(path, sizeof(path), x->pin_dir, m)) {
			rc = fail(err, errlen, ENAMETOOLONG, "pin path too long under %s",
				  x->pin_dir);
			goto out;
		}
		x->fd[m] = bpf_obj_get(path);
		if (x->fd[m] < 0) {
			if (errno == ENOENT)
				rc = fail(err, errlen, ENOENT,
					  "no tes_xdp maps pinned in %s (nothing loaded yet, or no "
					  "BPF filesystem mounted there)",
					  x->pin_dir);
			else if (errno == EPERM || errno == EACCES)
				rc = fail(err, errlen, EPERM, "opening %s: %s; %s", path,
					  strerror(errno), perm_hint());
			else
				rc = fail(err, errlen, errno, "opening %s: %s", path,
					  strerror(errno));
			goto out;
		}
		rc = check_map(x->fd[m], m, path, err, errlen);
		if (rc)
			goto out;
	}
	x->reused = true;
	*out = x;
	return 0;
out:
	tes_xdp_close(x);
	return rc;
}

int tes_xdp_unpin(const char *pin_root, char *err, size_t errlen)
{
	char dir[PATH_MAX], path[PATH_MAX];
	int rc;

	rc = pin_dir_of(pin_root, dir, sizeof(dir), err, errlen);
	if (rc)
		return rc;
	for (unsigned m = 0; m < M_COUNT; m++) {
		if (pin_path(path, sizeof(path), dir, m))
			return fail(err, errlen, ENAMETOOLONG, "pin path too long under %s", dir);
		if (unlink(path) < 0 && errno != ENOENT)
			return fail(err, errlen, errno, "removing %s: %s", path, strerror(errno));
	}
	if (rmdir(dir) < 0 && errno != ENOENT)
		return fail(err, errlen, errno, "removing %s: %s", dir, strerror(errno));
	/* The root is shared by layout versions: gone only when empty. */
	if (rmdir(pin_root ? pin_root : TES_XDP_PIN_ROOT) < 0 && errno != ENOENT &&
	    errno != ENOTEMPTY && errno != EEXIST)
		return fail(err, errlen, errno, "removing %s: %s",
			    pin_root ? pin_root : TES_XDP_PIN_ROOT, strerror(errno));
	return 0;
}

int tes_xdp_prog_fd(const struct tes_xdp *x)
{
	return x->skel ? bpf_program__fd(x->skel->progs.tes_xdp) : -1;
}

bool tes_xdp_maps_reused(const struct tes_xdp *x)
{
	return x->reused;
}

const char *tes_xdp_pin_dir(const struct tes_xdp *x)
{
	return x->pin_dir;
}

/* --- attaching ------------------------------------------------------------------ */

const char *tes_xdp_mode_name(enum tes_xdp_mode m)
{
	switch (m) {
	case TES_XDP_MODE_AUTO:
		return "auto";
	case TES_XDP_MODE_NATIVE:
		return "native";
	case TES_XDP_MODE_GENERIC:
		return "generic";
	case TES_XDP_MODE_NONE:
		return "none";
	case TES_XDP_MODE_OTHER:
		break;
	}
	return "other";
}

static __u32 mode_flag(enum tes_xdp_mode m)
{
	return m == TES_XDP_MODE_NATIVE ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE;
}

static int ifindex_of(const char *ifname, char *err, size_t errlen)
{
	unsigned idx;

	if (!ifname || !ifname[0] || strlen(ifname) >= IF_NAMESIZE)
		return fail(err, errlen, EINVAL, "'%s' is not an interface name",
			    ifname ? ifname : "");
	idx = if_nametoindex(ifname);
	if (!idx)
		return fail(err, errlen, ENODEV, "no interface named %s in this network namespace",
			    ifname);
	return (int)idx;
}

/* The id of the program behind fd; 0 if it cannot be read. */
static uint32_t prog_id_of(int fd)
{
	struct bpf_prog_info pinfo;
	__u32 len = sizeof(pinfo);

	memset(&pinfo, 0, sizeof(pinfo));
	if (fd < 0 || bpf_obj_get_info_by_fd(fd, &pinfo, &len) != 0)
		return 0;
	return pinfo.id;
}

/* What is attached; *cur_fd (if asked) is a new fd of the attached program,
 * for an atomic replace or detach, or -1.  own_fd: the caller's program, or
 * -1: when it is the one attached, nothing more needs asking.  Opening a
 * program by its id takes CAP_SYS_ADMIN; a process that gave it up can still
 * recognise and detach its own program this way. */
static int query(int ifindex, const char *ifname, struct tes_xdp_attach_info *info, bool *ours,
		 int *cur_fd, int own_fd, char *err, size_t errlen)
{
	struct bpf_xdp_query_opts q;
	struct bpf_prog_info pinfo;
	__u32 len = sizeof(pinfo);
	int fd, rc;

	memset(info, 0, sizeof(*info));
	*ours = false;
	if (cur_fd)
		*cur_fd = -1;
	memset(&q, 0, sizeof(q));
	q.sz = sizeof(q);
	kernel_msg[0] = '\0';
	rc = bpf_xdp_query(ifindex, 0, &q);
	if (rc < 0) {
		if (rc == -EPERM)
			return fail(err, errlen, EPERM, "querying XDP on %s: %s", ifname,
				    perm_hint());
		return fail(err, errlen, -rc, "querying XDP on %s: %s%s", ifname, strerror(-rc),
			    kmsg());
	}
	switch (q.attach_mode) {
	case XDP_ATTACHED_NONE:
		info->mode = TES_XDP_MODE_NONE;
		return 0;
	case XDP_ATTACHED_DRV:
		info->mode = TES_XDP_MODE_NATIVE;
		break;
	case XDP_ATTACHED_SKB:
		info->mode = TES_XDP_MODE_GENERIC;
		break;
	default:
		info->mode = TES_XDP_MODE_OTHER;
		break;
	}
	info->prog_id = q.prog_id ? q.prog_id : q.drv_prog_id ? q.drv_prog_id : q.skb_prog_id;
	if (!info->prog_id)
		return 0;
	if (own_fd >= 0 && info->prog_id == prog_id_of(own_fd)) {
		*ours = true;
		if (cur_fd) {
			*cur_fd = fcntl(own_fd, F_DUPFD_CLOEXEC, 0);
			if (*cur_fd < 0)
				return fail(err, errlen, errno, "dup: %s", strerror(errno));
		}
		return 0;
	}
	fd = bpf_prog_get_fd_by_id(info->prog_id);
	if (fd < 0)
		return fail(err, errlen, errno, "opening XDP program %u on %s: %s", info->prog_id,
			    ifname, strerror(errno));
	memset(&pinfo, 0, sizeof(pinfo));
	if (bpf_obj_get_info_by_fd(fd, &pinfo, &len) == 0)
		*ours = strcmp(pinfo.name, TES_XDP_PROG_NAME) == 0 &&
			pinfo.type == BPF_PROG_TYPE_XDP;
	if (cur_fd)
		*cur_fd = fd;
	else
		close(fd);
	return 0;
}

int tes_xdp_query(const char *ifname, struct tes_xdp_attach_info *info, bool *ours, char *err,
		  size_t errlen)
{
	return tes_xdp_query_own(NULL, ifname, info, ours, err, errlen);
}

int tes_xdp_query_own(struct tes_xdp *x, const char *ifname, struct tes_xdp_attach_info *info,
		      bool *ours, char *err, size_t errlen)
{
	int ifindex = ifindex_of(ifname, err, errlen);

	if (ifindex < 0)
		return ifindex;
	hook_libbpf();
	return query(ifindex, ifname, info, ours, NULL, x ? tes_xdp_prog_fd(x) : -1, err, errlen);
}

static int attach_err(int rc, const char *ifname, enum tes_xdp_mode m, char *err, size_t errlen)
{
	if (rc == -EPERM)
		return fail(err, errlen, EPERM, "attaching to %s: %s", ifname, perm_hint());
	if (rc == -EBUSY || rc == -EEXIST)
		return fail(err, errlen, EBUSY,
			    "attaching to %s in %s mode: another XDP program got there first%s",
			    ifname, tes_xdp_mode_name(m), kmsg());
	return fail(err, errlen, -rc, "the kernel refused XDP in %s mode on %s: %s%s",
		    tes_xdp_mode_name(m), ifname, strerror(-rc), kmsg());
}

int tes_xdp_attach(struct tes_xdp *x, const char *ifname, enum tes_xdp_mode want,
		   struct tes_xdp_attach_info *info, char *err, size_t errlen)
{
	struct tes_xdp_attach_info cur, dummy;
	bool ours;
	int ifindex, prog_fd, cur_fd, rc;
	enum tes_xdp_mode mode;

	if (!info)
		info = &dummy;
	memset(info, 0, sizeof(*info));
	if (!x->skel)
		return fail(err, errlen, EINVAL, "this handle has maps only, no program to attach");
	if (want != TES_XDP_MODE_AUTO && want != TES_XDP_MODE_NATIVE &&
	    want != TES_XDP_MODE_GENERIC)
		return fail(err, errlen, EINVAL, "attach mode must be auto, native or generic");
	ifindex = ifindex_of(ifname, err, errlen);
	if (ifindex < 0)
		return ifindex;
	prog_fd = tes_xdp_prog_fd(x);
	rc = query(ifindex, ifname, &cur, &ours, &cur_fd, prog_fd, err, errlen);
	if (rc)
		return rc;

	if (cur.mode != TES_XDP_MODE_NONE) {
		LIBBPF_OPTS(bpf_xdp_attach_opts, ao, .old_prog_fd = cur_fd);

		if (!ours ||
		    (cur.mode != TES_XDP_MODE_NATIVE && cur.mode != TES_XDP_MODE_GENERIC)) {
			close(cur_fd);
			return fail(
				err, errlen, EBUSY,
				"%s already runs XDP program %u (%s mode) that is not tesgate's; "
				"refusing to replace it",
				ifname, cur.prog_id, tes_xdp_mode_name(cur.mode));
		}
		if (want != TES_XDP_MODE_AUTO && want != cur.mode) {
			close(cur_fd);
			return fail(
				err, errlen, EBUSY,
				"tes_xdp is attached to %s in %s mode; detach it first to change "
				"the mode (there is no atomic switch between modes)",
				ifname, tes_xdp_mode_name(cur.mode));
		}
		/* Replace only the program we saw: if it changed meanwhile the
		 * kernel refuses instead of clobbering someone else's. */
		kernel_msg[0] = '\0';
		rc = bpf_xdp_attach(ifindex, prog_fd, mode_flag(cur.mode) | XDP_FLAGS_REPLACE, &ao);
		close(cur_fd);
		if (rc < 0)
			return attach_err(rc, ifname, cur.mode, err, errlen);
		info->replaced = true;
		mode = cur.mode;
	} else {
		mode = want == TES_XDP_MODE_GENERIC ? TES_XDP_MODE_GENERIC : TES_XDP_MODE_NATIVE;
		kernel_msg[0] = '\0';
		rc = bpf_xdp_attach(ifindex, prog_fd, mode_flag(mode) | XDP_FLAGS_UPDATE_IF_NOEXIST,
				    NULL);
		if (rc < 0 && want == TES_XDP_MODE_AUTO && rc != -EPERM && rc != -EBUSY &&
		    rc != -EEXIST && rc != -ENODEV) {
			snprintf(info->warning, sizeof(info->warning),
				 "%s: native XDP refused (%s%s); attached in generic mode, where "
				 "drops happen only after the kernel allocated an skb",
				 ifname, strerror(-rc), kmsg());
			info->fell_back = true;
			mode = TES_XDP_MODE_GENERIC;
			kernel_msg[0] = '\0';
			rc = bpf_xdp_attach(ifindex, prog_fd,
					    mode_flag(mode) | XDP_FLAGS_UPDATE_IF_NOEXIST, NULL);
		}
		if (rc < 0)
			return attach_err(rc, ifname, mode, err, errlen);
	}
	rc = query(ifindex, ifname, &cur, &ours, NULL, prog_fd, err, errlen);
	if (rc)
		return rc;
	info->mode = mode;
	info->prog_id = cur.prog_id;
	return 0;
}

int tes_xdp_detach(const char *ifname, char *err, size_t errlen)
{
	return tes_xdp_detach_own(NULL, ifname, err, errlen);
}

int tes_xdp_detach_own(struct tes_xdp *x, const char *ifname, char *err, size_t errlen)
{
	struct tes_xdp_attach_info cur;
	bool ours;
	int ifindex, cur_fd, rc;

	ifindex = ifindex_of(ifname, err, errlen);
	if (ifindex < 0)
		return ifindex;
	hook_libbpf();
	rc = query(ifindex, ifname, &cur, &ours, &cur_fd, x && x->skel ? tes_xdp_prog_fd(x) : -1,
		   err, errlen);
	if (rc)
		return rc;
	if (cur.mode == TES_XDP_MODE_NONE)
		return fail(err, errlen, ENOENT, "no XDP program is attached to %s", ifname);
	if (!ours || (cur.mode != TES_XDP_MODE_NATIVE && cur.mode != TES_XDP_MODE_GENERIC)) {
		close(cur_fd);
		return fail(err, errlen, EBUSY,
			    "the XDP program on %s (id %u, %s mode) is not tesgate's; leaving it",
			    ifname, cur.prog_id, tes_xdp_mode_name(cur.mode));
	}
	{
		LIBBPF_OPTS(bpf_xdp_attach_opts, ao, .old_prog_fd = cur_fd);

		kernel_msg[0] = '\0';
		rc = bpf_xdp_detach(ifindex, mode_flag(cur.mode), &ao);
	}
	close(cur_fd);
	if (rc < 0) {
		if (rc == -EPERM)
			return fail(err, errlen, EPERM, "detaching from %s: %s", ifname,
				    perm_hint());
		return fail(err, errlen, -rc, "detaching from %s: %s%s", ifname, strerror(-rc),
			    kmsg());
	}
	return 0;
}

/* --- addresses ------------------------------------------------------------------- */

static unsigned addr_bits(int family)
{
	return family == AF_INET ? 32 : 128;
}

static int addr_check(const struct tes_xdp_addr *a, const char *text, char *err, size_t errlen)
{
	unsigned bits, full;

	if (a->family != AF_INET && a->family != AF_INET6)
		return fail(err, errlen, EAFNOSUPPORT, "address family %d is neither IPv4 nor IPv6",
			    a->family);
	bits = addr_bits(a->family);
	if (a->prefixlen == 0 || a->prefixlen > bits)
		return fail(err, errlen, EINVAL, "%s: prefix length %u is not in 1..%u%s", text,
			    a->prefixlen, bits,
			    a->prefixlen == 0 ? " (a /0 would drop every source)" : "");
	full = a->prefixlen / 8;
	for (unsigned i = full; i < bits / 8; i++) {
		uint8_t mask = i == full ? (uint8_t)(0xff >> (a->prefixlen % 8)) : 0xff;

		if (a->addr[i] & mask)
			return fail(err, errlen, EINVAL,
				    "%s: host bits are set below the /%u prefix", text,
				    a->prefixlen);
	}
	return 0;
}

int tes_xdp_addr_parse(const char *s, struct tes_xdp_addr *a, char *err, size_t errlen)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	char buf[TES_XDP_ADDR_STRLEN];
	char *slash;
	bool has_len = false;
	unsigned len = 0;

	memset(a, 0, sizeof(*a));
	if (!s || strlen(s) >= sizeof(buf))
		return fail(err, errlen, EINVAL, "'%s' is not an address", s ? s : "");
	memcpy(buf, s, strlen(s) + 1);
	slash = strchr(buf, '/');
	if (slash) {
		const char *p = slash + 1;

		*slash = '\0';
		if (!*p || strlen(p) > 3)
			return fail(err, errlen, EINVAL, "'%s': bad prefix length", s);
		for (; *p; p++) {
			if (*p < '0' || *p > '9')
				return fail(err, errlen, EINVAL, "'%s': bad prefix length", s);
			len = len * 10 + (unsigned)(*p - '0');
		}
		has_len = true;
	}
	if (strchr(buf, ':')) {
		if (inet_pton(AF_INET6, buf, a->addr) != 1)
			return fail(err, errlen, EINVAL, "'%s' is not an IPv6 address", buf);
		a->family = AF_INET6;
	} else {
		if (inet_pton(AF_INET, buf, a->addr) != 1)
			return fail(err, errlen, EINVAL, "'%s' is not an IPv4 address", buf);
		a->family = AF_INET;
	}
	a->prefixlen = has_len ? len : addr_bits(a->family);
	if (a->family == AF_INET6 && memcmp(a->addr, mapped, sizeof(mapped)) == 0) {
		if (a->prefixlen < 96)
			return fail(err, errlen, EINVAL,
				    "'%s': an IPv4-mapped range must be /96 or longer", s);
		memmove(a->addr, a->addr + 12, 4);
		memset(a->addr + 4, 0, 12);
		a->family = AF_INET;
		a->prefixlen -= 96;
	}
	return addr_check(a, s, err, errlen);
}

void tes_xdp_addr_format(const struct tes_xdp_addr *a, char *buf, size_t len)
{
	char text[INET6_ADDRSTRLEN];

	if (!inet_ntop(a->family, a->addr, text, sizeof(text))) {
		snprintf(buf, len, "?");
		return;
	}
	if (a->prefixlen == addr_bits(a->family))
		snprintf(buf, len, "%s", text);
	else
		snprintf(buf, len, "%s/%u", text, a->prefixlen);
}

/* --- the drop list ------------------------------------------------------------------ */

uint64_t tes_xdp_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t tes_xdp_expiry_in(uint64_t seconds)
{
	uint64_t now = tes_xdp_now_ns();

	if (seconds > (UINT64_MAX - now) / 1000000000u)
		return UINT64_MAX;
	return now + seconds * 1000000000u;
}

uint64_t tes_xdp_expiry_at(time_t wall)
{
	struct timespec ts;
	uint64_t now_ns, left;

	clock_gettime(CLOCK_REALTIME, &ts);
	now_ns = tes_xdp_now_ns();
	if (wall <= ts.tv_sec)
		return 1;
	left = (uint64_t)(wall - ts.tv_sec) * 1000000000u - (uint64_t)ts.tv_nsec;
	return left > UINT64_MAX - now_ns ? UINT64_MAX : now_ns + left;
}

union any_key {
	struct tes_xdp_key4 k4;
	struct tes_xdp_key6 k6;
	struct tes_xdp_lpm4 l4;
	struct tes_xdp_lpm6 l6;
};

/* The map and key an address lives under. */
static unsigned key_of(const struct tes_xdp_addr *a, union any_key *k)
{
	memset(k, 0, sizeof(*k));
	if (a->family == AF_INET) {
		if (a->prefixlen == 32) {
			memcpy(k->k4.addr, a->addr, 4);
			return M_EXACT4;
		}
		k->l4.prefixlen = a->prefixlen;
		memcpy(k->l4.addr, a->addr, 4);
		return M_PREFIX4;
	}
	if (a->prefixlen == 128) {
		memcpy(k->k6.addr, a->addr, 16);
		return M_EXACT6;
	}
	k->l6.prefixlen = a->prefixlen;
	memcpy(k->l6.addr, a->addr, 16);
	return M_PREFIX6;
}

static void addr_of(unsigned m, const union any_key *k, struct tes_xdp_addr *a)
{
	memset(a, 0, sizeof(*a));
	switch (m) {
	case M_EXACT4:
		a->family = AF_INET;
		a->prefixlen = 32;
		memcpy(a->addr, k->k4.addr, 4);
		break;
	case M_EXACT6:
		a->family = AF_INET6;
		a->prefixlen = 128;
		memcpy(a->addr, k->k6.addr, 16);
		break;
	case M_PREFIX4:
		a->family = AF_INET;
		a->prefixlen = k->l4.prefixlen;
		memcpy(a->addr, k->l4.addr, 4);
		break;
	default:
		a->family = AF_INET6;
		a->prefixlen = k->l6.prefixlen;
		memcpy(a->addr, k->l6.addr, 16);
		break;
	}
}

static int map_err(int rc, unsigned m, const char *what, const char *text, char *err, size_t errlen)
{
	if (rc == -E2BIG || rc == -ENOSPC)
		return fail(err, errlen, E2BIG, "%s %s: map %s is full (%u entries)", what, text,
			    map_defs[m].name, map_defs[m].max_entries);
	if (rc == -EPERM || rc == -EACCES)
		return fail(err, errlen, EPERM, "%s %s: %s", what, text, strerror(-rc));
	return fail(err, errlen, -rc, "%s %s in map %s: %s", what, text, map_defs[m].name,
		    strerror(-rc));
}

int tes_xdp_add(struct tes_xdp *x, const struct tes_xdp_addr *a, enum tes_xdp_origin origin,
		uint64_t expires_ns, uint32_t cookie, char *err, size_t errlen)
{
	char text[TES_XDP_ADDR_STRLEN];
	struct tes_xdp_entry e;
	union any_key k;
	unsigned m;
	int rc;

	rc = addr_check(a, "address", err, errlen);
	if (rc)
		return rc;
	if (origin != TES_XDP_ORIGIN_ENFORCEMENT && origin != TES_XDP_ORIGIN_ADMIN)
		return fail(err, errlen, EINVAL, "unknown origin %d", (int)origin);
	m = key_of(a, &k);
	memset(&e, 0, sizeof(e));
	e.expires_ns = expires_ns;
	e.cookie = cookie;
	if (origin == TES_XDP_ORIGIN_ENFORCEMENT)
		e.reason = TES_XDP_REASON_BLOCKED;
	else
		e.reason = m == M_EXACT4 || m == M_EXACT6 ? TES_XDP_REASON_ADMIN_EXACT
							  : TES_XDP_REASON_ADMIN_PREFIX;
	rc = bpf_map_update_elem(x->fd[m], &k, &e, BPF_ANY);
	if (rc < 0) {
		tes_xdp_addr_format(a, text, sizeof(text));
		return map_err(rc, m, "adding", text, err, errlen);
	}
	return 0;
}

int tes_xdp_del(struct tes_xdp *x, const struct tes_xdp_addr *a, char *err, size_t errlen)
{
	char text[TES_XDP_ADDR_STRLEN];
	union any_key k;
	unsigned m;
	int rc;

	rc = addr_check(a, "address", err, errlen);
	if (rc)
		return rc;
	m = key_of(a, &k);
	rc = bpf_map_delete_elem(x->fd[m], &k);
	if (rc < 0) {
		tes_xdp_addr_format(a, text, sizeof(text));
		if (rc == -ENOENT)
			return fail(err, errlen, ENOENT, "no entry for %s", text);
		return map_err(rc, m, "removing", text, err, errlen);
	}
	return 0;
}

static void rule_of(unsigned m, const union any_key *k, const struct tes_xdp_entry *e, uint64_t now,
		    struct tes_xdp_rule *r)
{
	addr_of(m, k, &r->addr);
	r->reason = (enum tes_xdp_reason)e->reason;
	r->expires_ns = e->expires_ns;
	r->cookie = e->cookie;
	r->expired = e->expires_ns && e->expires_ns <= now;
}

int tes_xdp_get(struct tes_xdp *x, const struct tes_xdp_addr *a, struct tes_xdp_rule *r, char *err,
		size_t errlen)
{
	char text[TES_XDP_ADDR_STRLEN];
	struct tes_xdp_entry e;
	union any_key k;
	unsigned m;
	int rc;

	rc = addr_check(a, "address", err, errlen);
	if (rc)
		return rc;
	m = key_of(a, &k);
	rc = bpf_map_lookup_elem(x->fd[m], &k, &e);
	if (rc < 0) {
		tes_xdp_addr_format(a, text, sizeof(text));
		if (rc == -ENOENT)
			return fail(err, errlen, ENOENT, "no entry for %s", text);
		return map_err(rc, m, "looking up", text, err, errlen);
	}
	rule_of(m, &k, &e, tes_xdp_now_ns(), r);
	return 0;
}

/* Walk map m: fn(key, value) for each entry, *count of them.  A non-zero
 * fn return stops the walk and is returned.  The next key is fetched before
 * fn runs, so fn may delete the entry it was given. */
typedef int (*walk_fn)(unsigned m, const union any_key *k, const struct tes_xdp_entry *e,
		       void *arg);

static int walk(struct tes_xdp *x, unsigned m, walk_fn fn, void *arg, long *count, char *err,
		size_t errlen)
{
	union any_key k, next;
	struct tes_xdp_entry e;
	/* Entries deleted behind our back can restart a hash walk; bound it. */
	uint64_t budget = 2 * (uint64_t)map_defs[m].max_entries + 16;
	int rc;

	rc = bpf_map_get_next_key(x->fd[m], NULL, &k);
	while (rc == 0 && budget--) {
		int more = bpf_map_get_next_key(x->fd[m], &k, &next);

		if (more < 0 && more != -ENOENT)
			return map_err(more, m, "walking", "", err, errlen);
		if (bpf_map_lookup_elem(x->fd[m], &k, &e) == 0) {
			int stop = fn(m, &k, &e, arg);

			if (stop)
				return stop;
			++*count;
		}
		if (more < 0)
			return 0;
		k = next;
	}
	if (rc < 0 && rc != -ENOENT)
		return map_err(rc, m, "walking", "", err, errlen);
	return 0;
}

struct list_ctx {
	tes_xdp_rule_fn fn;
	void *arg;
	uint64_t now;
};

static int list_one(unsigned m, const union any_key *k, const struct tes_xdp_entry *e, void *arg)
{
	struct list_ctx *c = arg;
	struct tes_xdp_rule r;

	rule_of(m, k, e, c->now, &r);
	return c->fn(&r, c->arg);
}

long tes_xdp_list(struct tes_xdp *x, tes_xdp_rule_fn fn, void *arg, char *err, size_t errlen)
{
	struct list_ctx c = { .fn = fn, .arg = arg, .now = tes_xdp_now_ns() };
	long total = 0;

	for (unsigned m = M_EXACT4; m <= M_PREFIX6; m++) {
		int rc = walk(x, m, list_one, &c, &total, err, errlen);

		if (rc)
			return rc;
	}
	return total;
}

struct expire_ctx {
	struct tes_xdp *x;
	uint64_t now;
	long deleted;
};

static int expire_one(unsigned m, const union any_key *k, const struct tes_xdp_entry *e, void *arg)
{
	struct expire_ctx *c = arg;

	if (e->expires_ns && e->expires_ns <= c->now && bpf_map_delete_elem(c->x->fd[m], k) == 0)
		c->deleted++;
	return 0;
}

long tes_xdp_expire(struct tes_xdp *x, uint64_t now_ns, char *err, size_t errlen)
{
	struct expire_ctx c = { .x = x, .now = now_ns ? now_ns : tes_xdp_now_ns() };

	long seen = 0;

	for (unsigned m = M_EXACT4; m <= M_PREFIX6; m++) {
		int rc = walk(x, m, expire_one, &c, &seen, err, errlen);

		if (rc)
			return rc;
	}
	return c.deleted;
}

/* --- counters ------------------------------------------------------------------- */

static const char *const counter_names[TES_XDP_CNT_COUNT] = {
	[TES_XDP_CNT_PASS_IPV4] = "pass_ipv4",
	[TES_XDP_CNT_PASS_IPV6] = "pass_ipv6",
	[TES_XDP_CNT_PASS_NOT_IP] = "pass_not_ip",
	[TES_XDP_CNT_PASS_FRAGMENT] = "pass_fragment",
	[TES_XDP_CNT_PASS_MALFORMED] = "pass_malformed",
	[TES_XDP_CNT_PASS_OTHER] = "pass_other",
	[TES_XDP_CNT_DROP_BLOCKED] = "drop_blocked",
	[TES_XDP_CNT_DROP_ADMIN_EXACT] = "drop_admin_exact",
	[TES_XDP_CNT_DROP_ADMIN_PREFIX] = "drop_admin_prefix",
	[TES_XDP_CNT_EXPIRED] = "expired_match",
	[TES_XDP_CNT_BAD_ENTRY] = "bad_entry",
};

const char *tes_xdp_counter_name(unsigned idx)
{
	return idx < TES_XDP_CNT_COUNT ? counter_names[idx] : NULL;
}

int tes_xdp_counters(struct tes_xdp *x, struct tes_xdp_counter out[TES_XDP_CNT_COUNT], char *err,
		     size_t errlen)
{
	for (__u32 i = 0; i < TES_XDP_CNT_COUNT; i++) {
		int rc = bpf_map_lookup_elem(x->fd[M_STATS], &i, x->percpu);

		if (rc < 0)
			return map_err(rc, M_STATS, "reading counter", counter_names[i], err,
				       errlen);
		out[i].packets = out[i].bytes = 0;
		for (int c = 0; c < x->ncpus; c++) {
			out[i].packets += x->percpu[c].packets;
			out[i].bytes += x->percpu[c].bytes;
		}
	}
	return 0;
}

/* --- protected ports ------------------------------------------------------------ */

int tes_xdp_set_ports(struct tes_xdp *x, const uint16_t *ports, unsigned n, char *err,
		      size_t errlen)
{
	struct tes_xdp_ports *p = calloc(1, sizeof(*p)); /* 8 KiB: not on the stack */
	__u32 zero = 0;
	int rc;

	if (!p)
		return fail(err, errlen, ENOMEM, "out of memory");
	for (unsigned i = 0; i < n; i++) {
		if (ports[i] == 0) {
			free(p);
			return fail(err, errlen, EINVAL, "port 0 is not a port");
		}
		p->bits[ports[i] >> 6] |= 1ull << (ports[i] & 63);
	}
	rc = bpf_map_update_elem(x->fd[M_PORTS], &zero, p, BPF_ANY);
	free(p);
	if (rc < 0)
		return map_err(rc, M_PORTS, "writing", "the protected ports", err, errlen);
	return 0;
}

int tes_xdp_get_ports(struct tes_xdp *x, uint16_t *ports, unsigned max, char *err, size_t errlen)
{
	struct tes_xdp_ports *p = calloc(1, sizeof(*p));
	__u32 zero = 0;
	unsigned n = 0;
	int rc;

	if (!p)
		return fail(err, errlen, ENOMEM, "out of memory");
	rc = bpf_map_lookup_elem(x->fd[M_PORTS], &zero, p);
	if (rc < 0) {
		free(p);
		return map_err(rc, M_PORTS, "reading", "the protected ports", err, errlen);
	}
	for (unsigned port = 1; port < 65536; port++)
		if (p->bits[port >> 6] & (1ull << (port & 63))) {
			if (n < max)
				ports[n] = (uint16_t)port;
			n++;
		}
	free(p);
	return (int)n;
}

int tes_xdp_ports_parse(const char *s, uint16_t *ports, unsigned max, char *err, size_t errlen)
{
	unsigned n = 0;
	const char *p = s;

	while (*p) {
		unsigned long v = 0;
		unsigned digits = 0;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (!*p)
			break;
		while (*p >= '0' && *p <= '9' && digits < 6) {
			v = v * 10 + (unsigned long)(*p - '0');
			p++;
			digits++;
		}
		if (!digits || v == 0 || v > 65535 || (*p && *p != ',' && *p != ' ' && *p != '\t'))
			return fail(err, errlen, EINVAL,
				    "'%s' is not a list of TCP ports (1-65535, comma-separated)",
				    s);
		if (n == max)
			return fail(err, errlen, E2BIG, "more than %u ports", max);
		ports[n++] = (uint16_t)v;
	}
	if (!n)
		return fail(err, errlen, EINVAL,
			    "no port given: the drop list would protect nothing");
	return (int)n;
}
