/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libtesxdp: address parsing, pinning and reuse across handles (entries and
 * counters survive), refusing stale pins and non-BPF filesystems, the
 * errors an unprivileged process gets, and attaching: native-then-generic
 * fallback, atomic replace, never touching someone else's program, detach.
 *
 * Needs root and BPF; exits 77 (skip) saying why otherwise.  Everything it
 * creates is its own: a BPF filesystem mounted on a temporary directory (so
 * the machine's /sys/fs/bpf is never touched), and a network namespace with
 * a bridge and a veth pair for the attach tests.  All removed at exit.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "dataplane/xdp/xdp_loader.h"
#include "tests/xdp/xdp_pkt.h"

static char tmpdir[64] = "/tmp/tesxdp-loader-XXXXXX";
static char bpffs[128], pin_root[160], plain[128];
static char netns[64];
static int host_ns = -1;
static char err[512];

/* --- fixtures ---------------------------------------------------------------- */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int sh(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static void cleanup(void)
{
	if (host_ns >= 0) {
		setns(host_ns, CLONE_NEWNET);
		close(host_ns);
		host_ns = -1;
	}
	if (netns[0]) {
		sh("ip netns del %s 2>/dev/null", netns);
		netns[0] = '\0';
	}
	if (bpffs[0]) {
		umount2(bpffs, MNT_DETACH);
		rmdir(bpffs);
		rmdir(plain);
		rmdir(tmpdir);
		bpffs[0] = '\0';
	}
}

/* Enter a fresh network namespace holding a bridge (no native XDP)
 * and a veth pair (native XDP), all up. */
static int enter_netns(void)
{
	char path[128];
	int fd;

	snprintf(netns, sizeof(netns), "tesxdp-ld-%d", (int)getpid());
	if (sh("ip netns add %s && ip -n %s link add txd0 type bridge && "
	       "ip -n %s link add txv0 type veth peer name txv1 && "
	       "ip -n %s link set txd0 up && ip -n %s link set txv0 up && "
	       "ip -n %s link set txv1 up",
	       netns, netns, netns, netns, netns, netns))
		return -1;
	host_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	snprintf(path, sizeof(path), "/run/netns/%s", netns);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (host_ns < 0 || fd < 0 || setns(fd, CLONE_NEWNET)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

static struct tes_xdp *load(void)
{
	struct tes_xdp_opts o = { .pin_root = pin_root };
	struct tes_xdp *x;

	if (tes_xdp_load(&o, &x, err, sizeof(err)))
		fail_msg("tes_xdp_load: %s", err);
	return x;
}

static void parse(const char *s, struct tes_xdp_addr *a)
{
	if (tes_xdp_addr_parse(s, a, err, sizeof(err)))
		fail_msg("parse %s: %s", s, err);
}

static uint32_t run(struct tes_xdp *x, const char *src)
{
	struct pkt_spec s = { .src = src, .dst = strchr(src, ':') ? "2001:db8::2" : "198.18.1.2" };
	uint8_t frame[PKT_MAX];
	size_t len = pkt_build(frame, &s);
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = frame, .data_size_in = (uint32_t)len,
		    .repeat = 1);

	assert_int_equal(bpf_prog_test_run_opts(tes_xdp_prog_fd(x), &o), 0);
	return o.retval;
}

/* --- addresses ------------------------------------------------------------------ */

static void test_addr_parse(void **state)
{
	static const struct {
		const char *in, *out; /* out NULL: refused */
		int family;
		unsigned len;
	} cases[] = {
		{ "198.18.0.1", "198.18.0.1", AF_INET, 32 },
		{ "198.18.0.0/15", "198.18.0.0/15", AF_INET, 15 },
		{ "198.18.0.1/32", "198.18.0.1", AF_INET, 32 },
		{ "198.18.0.0/16", "198.18.0.0/16", AF_INET, 16 },
		{ "198.18.0.1/24", NULL, 0, 0 }, /* host bits */
		{ "198.19.0.0/15", NULL, 0, 0 },
		{ "0.0.0.0/0", NULL, 0, 0 },
		{ "198.18.0.1/33", NULL, 0, 0 },
		{ "198.18.0.1/", NULL, 0, 0 },
		{ "198.18.0.1/+8", NULL, 0, 0 },
		{ "198.18.0.1/0008", NULL, 0, 0 },
		{ "198.18.0", NULL, 0, 0 },
		{ "198.18.0.256", NULL, 0, 0 },
		{ "", NULL, 0, 0 },
		{ "garbage", NULL, 0, 0 },
		{ "2001:db8::1", "2001:db8::1", AF_INET6, 128 },
		{ "2001:db8::/32", "2001:db8::/32", AF_INET6, 32 },
		{ "2001:db8:8000::/33", "2001:db8:8000::/33", AF_INET6, 33 },
		{ "2001:db8:4000::/33", NULL, 0, 0 },
		{ "2001:db8::1/129", NULL, 0, 0 },
		{ "2001:db8:::1", NULL, 0, 0 },
		{ "::ffff:198.18.0.1", "198.18.0.1", AF_INET, 32 },
		{ "::ffff:198.18.0.0/112", "198.18.0.0/16", AF_INET, 16 },
		{ "::ffff:0:0/95", NULL, 0, 0 },
	};
	char out[TES_XDP_ADDR_STRLEN];
	struct tes_xdp_addr a;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = tes_xdp_addr_parse(cases[i].in, &a, err, sizeof(err));

		if (!cases[i].out) {
			if (rc == 0)
				fail_msg("'%s' was accepted", cases[i].in);
			assert_int_equal(rc, -EINVAL);
			continue;
		}
		if (rc)
			fail_msg("'%s' refused: %s", cases[i].in, err);
		assert_int_equal(a.family, cases[i].family);
		assert_int_equal(a.prefixlen, cases[i].len);
		tes_xdp_addr_format(&a, out, sizeof(out));
		assert_string_equal(out, cases[i].out);
	}
	assert_int_equal(tes_xdp_addr_parse("198.18.0.1/24", &a, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "host bits"));
}

/* --- pinning ------------------------------------------------------------------- */

static void test_pin_and_reuse(void **state)
{
	struct tes_xdp_counter c[TES_XDP_CNT_COUNT];
	struct tes_xdp *x, *y;
	struct tes_xdp_addr a;
	struct tes_xdp_rule r;
	char path[256];
	struct stat st;

	(void)state;
	assert_int_equal(tes_xdp_open_pinned(pin_root, &x, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "no tes_xdp maps pinned"));

	x = load();
	assert_false(tes_xdp_maps_reused(x));
	snprintf(path, sizeof(path), "%s/%s/%s", pin_root, TES_XDP_LAYOUT_DIR, TES_XDP_MAP_EXACT4);
	assert_int_equal(stat(path, &st), 0);
	*strrchr(path, '/') = '\0';
	assert_string_equal(tes_xdp_pin_dir(x), path);
	snprintf(path, sizeof(path), "%s/%s/%s", pin_root, TES_XDP_LAYOUT_DIR, TES_XDP_MAP_EXACT4);
	parse("198.18.1.1", &a);
	assert_int_equal(tes_xdp_add(x, &a, TES_XDP_ORIGIN_ENFORCEMENT, 0, 7, err, sizeof(err)), 0);
	assert_int_equal(run(x, "198.18.1.1"), XDP_DROP);
	tes_xdp_close(x);

	/* A new program on the same maps: the entry and the counter are there. */
	x = load();
	assert_true(tes_xdp_maps_reused(x));
	assert_int_equal(tes_xdp_get(x, &a, &r, err, sizeof(err)), 0);
	assert_int_equal(r.cookie, 7);
	assert_int_equal(r.reason, TES_XDP_REASON_BLOCKED);
	assert_int_equal(tes_xdp_counters(x, c, err, sizeof(err)), 0);
	assert_int_equal(c[TES_XDP_CNT_DROP_BLOCKED].packets, 1);
	assert_int_equal(run(x, "198.18.1.1"), XDP_DROP);

	/* A maps-only handle sees the same maps, and has no program. */
	assert_int_equal(tes_xdp_open_pinned(pin_root, &y, err, sizeof(err)), 0);
	assert_int_equal(tes_xdp_prog_fd(y), -1);
	assert_int_equal(tes_xdp_counters(y, c, err, sizeof(err)), 0);
	assert_int_equal(c[TES_XDP_CNT_DROP_BLOCKED].packets, 2);
	assert_int_equal(tes_xdp_del(y, &a, err, sizeof(err)), 0);
	assert_int_equal(tes_xdp_del(y, &a, err, sizeof(err)), -ENOENT);
	assert_int_equal(tes_xdp_attach(y, "lo", TES_XDP_MODE_AUTO, NULL, err, sizeof(err)),
			 -EINVAL);
	tes_xdp_close(y);
	assert_int_equal(run(x, "198.18.1.1"), XDP_PASS);
	tes_xdp_close(x);

	assert_int_equal(tes_xdp_unpin(pin_root, err, sizeof(err)), 0);
	assert_int_equal(stat(path, &st), -1);
	assert_int_equal(tes_xdp_open_pinned(pin_root, &x, err, sizeof(err)), -ENOENT);
}

/* A map from another layout sits where ours would be: refused, with a way
 * out, instead of libbpf's bare "parameter mismatch". */
static void test_stale_pin(void **state)
{
	LIBBPF_OPTS(bpf_map_create_opts, mo, .map_flags = BPF_F_NO_PREALLOC);
	struct tes_xdp_opts o = { .pin_root = pin_root };
	char path[256];
	struct tes_xdp *x;
	int fd;

	(void)state;
	x = load(); /* creates the directory and the other maps */
	tes_xdp_close(x);
	snprintf(path, sizeof(path), "%s/%s/%s", pin_root, TES_XDP_LAYOUT_DIR, TES_XDP_MAP_EXACT6);
	assert_int_equal(unlink(path), 0);
	fd = bpf_map_create(BPF_MAP_TYPE_HASH, TES_XDP_MAP_EXACT6, 16, 8, 1024, &mo);
	assert_true(fd >= 0);
	assert_int_equal(bpf_obj_pin(fd, path), 0);
	close(fd);

	assert_int_equal(tes_xdp_load(&o, &x, err, sizeof(err)), -ESTALE);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "unpin"));
	assert_int_equal(tes_xdp_open_pinned(pin_root, &x, err, sizeof(err)), -ESTALE);
	assert_int_equal(tes_xdp_unpin(pin_root, err, sizeof(err)), 0);
}

static void test_not_bpffs(void **state)
{
	struct tes_xdp_opts o = { .pin_root = plain };
	struct tes_xdp *x;

	(void)state;
	assert_int_equal(tes_xdp_load(&o, &x, err, sizeof(err)), -ENOTSUP);
	assert_non_null(strstr(err, "mount -t bpf"));
}

/* An entry whose reason is not one the program knows is ignored (passed)
 * and counted. */
static void test_bad_entry(void **state)
{
	struct tes_xdp_entry e = { .reason = 99 };
	struct tes_xdp_key4 k = { { 198, 18, 1, 5 } };
	struct tes_xdp_counter c[TES_XDP_CNT_COUNT];
	char path[256];
	struct tes_xdp *x;
	int fd;

	(void)state;
	x = load();
	snprintf(path, sizeof(path), "%s/%s", tes_xdp_pin_dir(x), TES_XDP_MAP_EXACT4);
	fd = bpf_obj_get(path);
	assert_true(fd >= 0);
	assert_int_equal(bpf_map_update_elem(fd, &k, &e, BPF_ANY), 0);
	close(fd);
	assert_int_equal(run(x, "198.18.1.5"), XDP_PASS);
	assert_int_equal(tes_xdp_counters(x, c, err, sizeof(err)), 0);
	assert_int_equal(c[TES_XDP_CNT_BAD_ENTRY].packets, 1);
	assert_int_equal(c[TES_XDP_CNT_PASS_IPV4].packets, 1);
	tes_xdp_close(x);
	assert_int_equal(tes_xdp_unpin(pin_root, err, sizeof(err)), 0);
}

/* What a process without the capabilities is told. */
static void test_unprivileged(void **state)
{
	int status;
	pid_t pid;

	(void)state;
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct tes_xdp_opts o = { .no_pin = true };
		struct tes_xdp *x;
		int rc;

		if (setgroups(0, NULL) || setgid(65534) || setuid(65534))
			_exit(3);
		rc = tes_xdp_probe(err, sizeof(err));
		if (rc != -EPERM || !strstr(err, "run as root")) {
			fprintf(stderr, "probe: %d %s\n", rc, err);
			_exit(1);
		}
		rc = tes_xdp_load(&o, &x, err, sizeof(err));
		if (rc != -EPERM || !strstr(err, "run as root")) {
			fprintf(stderr, "load: %d %s\n", rc, err);
			_exit(2);
		}
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* --- attaching ---------------------------------------------------------------- */

static void test_attach(void **state)
{
	struct tes_xdp_attach_info info, q;
	struct tes_xdp *x, *x2;
	bool ours;

	(void)state;
	x = load();

	assert_int_equal(tes_xdp_attach(x, "nosuchif0", TES_XDP_MODE_AUTO, &info, err, sizeof(err)),
			 -ENODEV);
	assert_int_equal(tes_xdp_detach("txd0", err, sizeof(err)), -ENOENT);

	/* A bridge has no native XDP: auto falls back, saying so. */
	if (tes_xdp_attach(x, "txd0", TES_XDP_MODE_AUTO, &info, err, sizeof(err)))
		fail_msg("attach txd0: %s", err);
	assert_int_equal(info.mode, TES_XDP_MODE_GENERIC);
	assert_true(info.fell_back);
	assert_non_null(strstr(info.warning, "generic"));
	assert_false(info.replaced);
	assert_int_equal(tes_xdp_query("txd0", &q, &ours, err, sizeof(err)), 0);
	assert_true(ours);
	assert_int_equal(q.mode, TES_XDP_MODE_GENERIC);
	assert_int_equal(q.prog_id, info.prog_id);

	/* Native only: refused without a fallback. */
	assert_int_equal(tes_xdp_attach(x, "txd0", TES_XDP_MODE_NATIVE, &info, err, sizeof(err)),
			 -EBUSY);
	assert_non_null(strstr(err, "detach it first"));

	/* A newer program replaces ours in place, in the same mode. */
	x2 = load();
	if (tes_xdp_attach(x2, "txd0", TES_XDP_MODE_AUTO, &info, err, sizeof(err)))
		fail_msg("re-attach txd0: %s", err);
	assert_true(info.replaced);
	assert_false(info.fell_back);
	assert_int_equal(info.mode, TES_XDP_MODE_GENERIC);
	assert_int_not_equal(info.prog_id, q.prog_id);
	assert_int_equal(tes_xdp_detach("txd0", err, sizeof(err)), 0);
	assert_int_equal(tes_xdp_query("txd0", &q, &ours, err, sizeof(err)), 0);
	assert_int_equal(q.mode, TES_XDP_MODE_NONE);

	/* Native where the driver has it. */
	if (tes_xdp_attach(x, "txv0", TES_XDP_MODE_NATIVE, &info, err, sizeof(err)))
		fail_msg("attach txv0 native: %s", err);
	assert_int_equal(info.mode, TES_XDP_MODE_NATIVE);
	assert_false(info.fell_back);
	assert_int_equal(tes_xdp_detach("txv0", err, sizeof(err)), 0);
	if (tes_xdp_attach(x, "txv0", TES_XDP_MODE_GENERIC, &info, err, sizeof(err)))
		fail_msg("attach txv0 generic: %s", err);
	assert_int_equal(info.mode, TES_XDP_MODE_GENERIC);
	assert_int_equal(tes_xdp_detach("txv0", err, sizeof(err)), 0);

	/* Our handle closed, the attachment stays (and is still ours). */
	if (tes_xdp_attach(x2, "txd0", TES_XDP_MODE_GENERIC, &info, err, sizeof(err)))
		fail_msg("attach txd0: %s", err);
	tes_xdp_close(x2);
	assert_int_equal(tes_xdp_query("txd0", &q, &ours, err, sizeof(err)), 0);
	assert_true(ours);
	assert_int_equal(q.prog_id, info.prog_id);
	assert_int_equal(tes_xdp_detach("txd0", err, sizeof(err)), 0);
	tes_xdp_close(x);
	assert_int_equal(tes_xdp_unpin(pin_root, err, sizeof(err)), 0);
}

/* Someone else's XDP program is never replaced or detached. */
static void test_foreign_program(void **state)
{
	const struct bpf_insn insns[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = XDP_PASS },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	struct tes_xdp_attach_info info, q;
	struct tes_xdp *x;
	int fd, ifindex = (int)if_nametoindex("txd0");
	bool ours;

	(void)state;
	fd = bpf_prog_load(BPF_PROG_TYPE_XDP, "someone_else", "Dual BSD/GPL", insns, 2, NULL);
	assert_true(fd >= 0 && ifindex > 0);
	assert_int_equal(bpf_xdp_attach(ifindex, fd, XDP_FLAGS_SKB_MODE, NULL), 0);

	x = load();
	assert_int_equal(tes_xdp_attach(x, "txd0", TES_XDP_MODE_AUTO, &info, err, sizeof(err)),
			 -EBUSY);
	assert_non_null(strstr(err, "not tesgate's"));
	assert_int_equal(tes_xdp_detach("txd0", err, sizeof(err)), -EBUSY);
	assert_int_equal(tes_xdp_query("txd0", &q, &ours, err, sizeof(err)), 0);
	assert_false(ours);
	assert_int_equal(q.mode, TES_XDP_MODE_GENERIC);

	assert_int_equal(bpf_xdp_detach(ifindex, XDP_FLAGS_SKB_MODE, NULL), 0);
	close(fd);
	tes_xdp_close(x);
	assert_int_equal(tes_xdp_unpin(pin_root, err, sizeof(err)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addr_parse), cmocka_unit_test(test_pin_and_reuse),
		cmocka_unit_test(test_stale_pin),  cmocka_unit_test(test_not_bpffs),
		cmocka_unit_test(test_bad_entry),  cmocka_unit_test(test_unprivileged),
		cmocka_unit_test(test_attach),     cmocka_unit_test(test_foreign_program),
	};
	int rc;

	if (tes_xdp_probe(err, sizeof(err))) {
		printf("SKIP: BPF is not permitted here: %s\n", err);
		return 77;
	}
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(bpffs, sizeof(bpffs), "%s/bpffs", tmpdir);
	snprintf(plain, sizeof(plain), "%s/plain", tmpdir);
	snprintf(pin_root, sizeof(pin_root), "%s/tesgate", bpffs);
	if (mkdir(bpffs, 0700) || mkdir(plain, 0700)) {
		perror("mkdir");
		cleanup();
		return 1;
	}
	if (mount("bpf", bpffs, "bpf", 0, "mode=0700")) {
		printf("SKIP: cannot mount a BPF filesystem on %s: %s\n", bpffs, strerror(errno));
		cleanup();
		return 77;
	}
	atexit(cleanup);
	if (enter_netns()) {
		fprintf(stderr, "cannot create the test network namespace (ip netns add)\n");
		return 1;
	}
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	cleanup();
	return rc;
}
