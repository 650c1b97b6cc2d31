# SPDX-License-Identifier: BSD-3-Clause
"""The Debian packages, built, checked, installed, run and purged on this
machine (suite 'packaging'; docs/packaging.md).

1. A copy of the source tree (what git tracks and what it does not ignore)
   is built with `dpkg-buildpackage -us -uc -b` in the build directory: the
   packages tesgate, tescontrol, tesctl and tesgate-data.
2. lintian finds no error and no warning (overrides in debian/*.lintian-
   overrides say why each one is there).
3. `dpkg -i` installs them (no service is started by the packages: a
   policy-rc.d says no, as tools/setup.sh does): the binaries, the
   configuration as conffiles in /etc/tesgate, the systemd units, the man
   pages, the catalog and policies, tesctl's bash completion, the system
   users and groups and their directories.
4. tescontrol and tesgate are started by hand as their users (there is no
   systemd here), each on the installed configuration, as the units would:
   tescontrol serves tesctl and its report page, tesgate connects to it
   and answers SMTP on its port.
5. `dpkg --purge` removes them and leaves nothing behind: no file of the
   packages, no directory they made (system users stay, as Debian keeps
   them; a directory that was there before, like tools/setup.sh's
   /var/lib/tesgate, gets its owner and mode back).

Needs root and dpkg-buildpackage, debhelper, lintian, pandoc (exit 77
otherwise).  Holds /tmp/tesgate-pkg.lock while it installs: two worktrees
never install the packages at once.  Refuses to run when packages of these
names are installed already: it does not touch what someone else
installed.

Usage: test_packaging.py SRCDIR BUILDDIR
"""
import ctypes
import fcntl
import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request

PACKAGES = ("tesgate", "tescontrol", "tesctl", "tesgate-data")
LOCK = "/tmp/tesgate-pkg.lock"
POLICY_RC = "/usr/sbin/policy-rc.d"
BUILD_TIMEOUT = 1500
STATE_DIRS = ("/etc/tesgate", "/var/lib/tescontrol", "/var/lib/tesgate", "/var/log/tesgate",
              "/run/tescontrol")


def log(msg):
    print(f"packaging: {msg}", flush=True)


def run(argv, timeout=600, check=True, env=None, cwd=None):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd,
                       stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {p.returncode}:\n"
                             f"{p.stdout[-6000:]}\n{p.stderr[-6000:]}")
    return p


def dpkg(*args):
    """dpkg, waiting (bounded) while another dpkg or apt holds its lock."""
    deadline = time.monotonic() + 300
    while True:
        p = run(["dpkg", *args], check=False)
        if p.returncode == 0:
            return p
        if "lock" not in p.stderr or time.monotonic() > deadline:
            raise AssertionError(f"dpkg {' '.join(args)} exited {p.returncode}:\n"
                                 f"{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
        time.sleep(2)


def installed(pkg):
    p = run(["dpkg-query", "-W", "-f=${Status}", pkg], check=False)
    return p.returncode == 0 and "installed" in p.stdout and "not-installed" not in p.stdout


def missing_tools():
    need = {"dpkg-buildpackage": "dpkg-dev", "dh": "debhelper", "lintian": "lintian",
            "pandoc": "pandoc"}
    return [f"{tool} ({pkg})" for tool, pkg in need.items() if not shutil.which(tool)]


def copy_tree(src, dst):
    """What a source package would hold: git's files (tracked, and new ones
    not ignored), or the whole tree without build directories."""
    p = run(["git", "-C", src, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            check=False)
    if p.returncode == 0 and p.stdout:
        for rel in p.stdout.split("\0"):
            if not rel or not os.path.lexists(os.path.join(src, rel)):
                continue
            os.makedirs(os.path.join(dst, os.path.dirname(rel)), exist_ok=True)
            shutil.copy2(os.path.join(src, rel), os.path.join(dst, rel), follow_symlinks=False)
    else:
        shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("build*", ".git"))


def snapshot(path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))


def wait_for(pred, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Daemon:
    """A packaged daemon started by hand as its user, as its unit would."""

    def __init__(self, name, user, argv, logdir):
        self.name = name
        self.log_path = os.path.join(logdir, name + ".log")
        self.logf = open(self.log_path, "wb")
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        # the user, its group and its supplementary groups, as systemd's
        # User= gives them, set in the child itself (not through runuser,
        # which would stand between our SIGTERM and the daemon)
        pw = pwd.getpwnam(user)
        groups = [g.gr_gid for g in grp.getgrall() if user in g.gr_mem]
        self.proc = subprocess.Popen(argv, env=env, user=pw.pw_uid, group=pw.pw_gid,
                                     extra_groups=groups, cwd="/",
                                     stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=self.logf)

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, pattern, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.text()):
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n"
                                     f"{self.text()[-4000:]}")
            time.sleep(0.1)
        raise AssertionError(f"{self.name} did not log {pattern!r}:\n{self.text()[-4000:]}")

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self.logf.close()
        return self.proc.returncode


def build(src, work):
    tree = os.path.join(work, "src")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(tree)
    copy_tree(src, tree)
    env = dict(os.environ)
    env["DEB_BUILD_OPTIONS"] = f"nocheck parallel={os.cpu_count() or 2}"
    # the shared compiler cache: debhelper gives the build a HOME of its own
    if shutil.which("ccache"):
        cache = run(["ccache", "-k", "cache_dir"], check=False).stdout.strip()
        if cache:
            env["CCACHE_DIR"] = cache
    log("dpkg-buildpackage -us -uc -b")
    started = time.monotonic()
    p = run(["dpkg-buildpackage", "-us", "-uc", "-b"], timeout=BUILD_TIMEOUT, check=False,
            env=env, cwd=tree)
    with open(os.path.join(work, "build.log"), "w") as f:
        f.write(p.stdout + p.stderr)
    if p.returncode != 0:
        raise AssertionError(f"dpkg-buildpackage failed ({p.returncode}); the log: "
                             f"{work}/build.log\n{(p.stdout + p.stderr)[-6000:]}")
    log(f"built in {time.monotonic() - started:.0f} s")
    debs = {}
    for name in os.listdir(work):
        m = re.match(r"^([a-z0-9-]+)_([^_]+)_(amd64|arm64|all)\.deb$", name)
        if m and m.group(1) in PACKAGES:
            debs[m.group(1)] = os.path.join(work, name)
    assert sorted(debs) == sorted(PACKAGES), f"packages built: {sorted(debs)}"
    changes = [n for n in os.listdir(work) if n.endswith(".changes")]
    assert len(changes) == 1, changes
    return debs, os.path.join(work, changes[0])


def check_lintian(changes):
    log("lintian")
    p = run(["lintian", "--fail-on", "error,warning", "--display-level", ">=warning",
             changes], timeout=600, check=False)
    out = (p.stdout + p.stderr).strip()
    tags = [ln for ln in out.splitlines() if re.match(r"^[EW]: ", ln)]
    assert p.returncode == 0 and not tags, f"lintian:\n{out}"


def complete(line):
    """What bash offers at the end of line, through the installed
    completion and bash-completion (sorted)."""
    script = ('. /usr/share/bash-completion/bash_completion\n'
              '. /usr/share/bash-completion/completions/tesctl\n'
              'COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}\n'
              'read -r -a COMP_WORDS <<< "$COMP_LINE"\n'
              '[[ $COMP_LINE == *" " ]] && COMP_WORDS+=("")\n'
              'COMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n'
              '_tesctl tesctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"\n'
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    p = run(["bash", "-c", script, "complete", line],
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
    return sorted(w for w in p.stdout.splitlines() if w)


def check_installed(debs):
    files = {}
    for pkg in PACKAGES:
        files[pkg] = [f for f in run(["dpkg", "-L", pkg]).stdout.splitlines() if f]
    # what must go at purge: the packages' files, not the directories they
    # share with the system (/lib is a link to usr/lib on a merged /usr)
    owned = {pkg: [f for f in paths if not os.path.isdir(f)] for pkg, paths in files.items()}
    # what each package carries
    want = {
        "tesgate": ["/usr/sbin/tesgate", "/etc/tesgate/tesgate.conf",
                    "/lib/systemd/system/tesgate.service",
                    "/lib/systemd/system/tesgate-dpdk.service",
                    "/usr/share/man/man8/tesgate.8.gz",
                    "/usr/share/doc/tesgate/examples/tesgate.conf.example"],
        "tescontrol": ["/usr/sbin/tescontrol", "/usr/sbin/tes-xdp",
                       "/etc/tesgate/tescontrol.conf", "/lib/systemd/system/tescontrol.service",
                       "/usr/share/man/man8/tescontrol.8.gz", "/usr/share/man/man8/tes-xdp.8.gz",
                       "/usr/share/doc/tescontrol/packaging.md"],
        "tesctl": ["/usr/bin/tesctl", "/usr/share/bash-completion/completions/tesctl",
                   "/usr/share/man/man8/tesctl.8.gz"],
        "tesgate-data": ["/usr/share/tesgate/exchange-builds.csv",
                         "/usr/share/tesgate/compliance.conf", "/usr/share/tesgate/policy.conf"],
    }
    for pkg, paths in want.items():
        for path in paths:
            assert path in files[pkg], f"{pkg} lacks {path}"
            assert os.path.exists(path), path
    # what the units' Documentation= names is there, under that name
    for unit in ("tesgate.service", "tesgate-dpdk.service", "tescontrol.service"):
        with open(f"/lib/systemd/system/{unit}") as f:
            docs = [w for ln in f if ln.startswith("Documentation=")
                    for w in ln.split("=", 1)[1].split()]
        assert docs, unit
        for d in docs:
            if d.startswith("file:"):
                assert os.path.isfile(d[5:]), f"{unit}: {d} is not installed"
            elif d.startswith("man:"):
                page = d[4:].replace("(8)", "")
                assert os.path.isfile(f"/usr/share/man/man8/{page}.8.gz"), f"{unit}: {d}"
    # the configuration is the packages' conffiles
    for pkg, conf in (("tesgate", "/etc/tesgate/tesgate.conf"),
                      ("tescontrol", "/etc/tesgate/tescontrol.conf")):
        cf = run(["dpkg-query", "-W", "-f=${Conffiles}", pkg]).stdout
        assert conf in cf, f"{pkg}: conffiles are {cf!r}"
    # users, groups and directories
    for user, home in (("tesgate", "/var/lib/tesgate"), ("tescontrol", "/var/lib/tescontrol")):
        pw = pwd.getpwnam(user)
        st = os.stat(home)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (pw.pw_uid, 0o750), \
            f"{home}: uid {st.st_uid} mode {oct(st.st_mode)}"
    for g in ("tesadm", "tesgate"):
        assert "tescontrol" in grp.getgrnam(g).gr_mem, f"tescontrol is not in {g}"
    # the man pages are man pages
    for page in ("tesgate", "tescontrol", "tesctl", "tes-xdp"):
        p = run(["man", "-P", "cat", "-l", f"/usr/share/man/man8/{page}.8.gz"],
                env={"PATH": "/usr/bin:/bin", "MANWIDTH": "80", "LANG": "C.UTF-8"})
        assert p.stdout.startswith(page.upper() + "(8)"), p.stdout[:200]
        assert "SYNOPSIS" in p.stdout
    # the completion is bash and completes tesctl's commands
    run(["bash", "-n", "/usr/share/bash-completion/completions/tesctl"])
    assert complete("tesctl to") == ["token"]
    assert complete("tesctl notice ") == ["clear", "list", "set", "show"]
    assert complete("tesctl report --f") == ["--format"]
    return owned


def own_netns():
    """Move this process (and so the daemons it starts) into a network
    namespace of its own with only loopback: the installed configuration's
    fixed ports (SMTP 2525, metrics 9464 and 9465) are then free whatever
    else runs on the machine.  The namespace has no name and goes with the
    last process in it; the sockets between the daemons are files."""
    libc = ctypes.CDLL(None, use_errno=True)
    clone_newnet = 0x40000000
    if libc.unshare(clone_newnet) != 0:
        raise AssertionError(f"unshare(CLONE_NEWNET): {os.strerror(ctypes.get_errno())}")
    run(["ip", "link", "set", "lo", "up"])


def run_daemons(logdir):
    """tescontrol and tesgate on the installed configuration, as their
    users, on kernel sockets."""
    own_netns()
    run(["runuser", "-u", "tescontrol", "--", "/usr/sbin/tescontrol", "-c",
         "/etc/tesgate/tescontrol.conf", "--check-config"])
    p = run(["runuser", "-u", "tesgate", "--", "/usr/sbin/tesgate", "-c",
             "/etc/tesgate/tesgate.conf", "--check-config"])
    assert "configuration OK" in p.stdout + p.stderr, p
    # RuntimeDirectory=tescontrol, as systemd makes it
    os.makedirs("/run/tescontrol", exist_ok=True)
    pw = pwd.getpwnam("tescontrol")
    os.chown("/run/tescontrol", pw.pw_uid, pw.pw_gid)
    os.chmod("/run/tescontrol", 0o755)
    tc = Daemon("tescontrol", "tescontrol",
                ["/usr/sbin/tescontrol", "-c", "/etc/tesgate/tescontrol.conf"], logdir)
    gw = None
    try:
        tc.wait_log(r"info: ready:")
        st = run(["/usr/bin/tesctl", "--socket", "/run/tescontrol/admin.sock", "--json",
                  "status"]).stdout
        assert '"gateways_connected": 0' in st, st
        assert stat.S_IMODE(os.stat("/run/tescontrol/admin.sock").st_mode) == 0o660
        assert os.stat("/run/tescontrol/admin.sock").st_gid == grp.getgrnam("tesadm").gr_gid
        gw = Daemon("tesgate", "tesgate",
                    ["/usr/sbin/tesgate", "-c", "/etc/tesgate/tesgate.conf"], logdir)
        gw.wait_log(r"listening on 127\.0\.0\.1:2525")
        gw.wait_log(r"control: synchronised")

        def connected():
            out = run(["/usr/bin/tesctl", "--socket", "/run/tescontrol/admin.sock", "--json",
                       "status"]).stdout
            return '"gateways_connected": 1' in out
        wait_for(connected, "tesgate connected to tescontrol")
        with socket.create_connection(("127.0.0.1", 2525), timeout=10) as s:
            f = s.makefile("rb")
            assert f.readline().startswith(b"220 "), "no greeting"
            s.sendall(b"QUIT\r\n")
            assert f.readline().startswith(b"221 ")
        # the report page on the installed metrics_listen (the network
        # namespace is ours: nothing else holds the port)
        with urllib.request.urlopen("http://127.0.0.1:9464/report", timeout=10) as r:
            assert r.status == 200
            assert b"tesgate: out-of-date Exchange servers" in r.read()
        # the installed tesctl: a tenant, its token, its page; a wrong token
        # gets 403; the completion asks tescontrol for tenant ids
        ctl = ["/usr/bin/tesctl", "--socket", "/run/tescontrol/admin.sock", "--json"]
        run(ctl + ["tenant", "add", "7", "Packaged Bear"])
        tok = json.loads(run(ctl + ["token", "create", "7"]).stdout)
        with urllib.request.urlopen("http://127.0.0.1:9464" + tok["path"], timeout=10) as r:
            assert r.status == 200
            assert b"Packaged Bear" in r.read()
        try:
            urllib.request.urlopen("http://127.0.0.1:9464/report/tenant/" + "0" * 64,
                                   timeout=10)
            raise AssertionError("a wrong token was served")
        except urllib.error.HTTPError as e:
            assert e.code == 403, e.code
            assert b"Packaged Bear" not in e.read()
        assert complete("tesctl --socket /run/tescontrol/admin.sock tenant show ") == ["7"]
    finally:
        rcs = []
        if gw:
            rcs.append(("tesgate", gw.stop(), gw.text()))
        rcs.append(("tescontrol", tc.stop(), tc.text()))
    for name, rc, text in rcs:
        assert rc == 0, f"{name} exited {rc}:\n{text[-4000:]}"
        assert "privileges:" in text, text[-2000:]


def main():
    if len(sys.argv) != 3:
        print("usage: test_packaging.py SRCDIR BUILDDIR", file=sys.stderr)
        return 2
    src, builddir = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    if os.geteuid() != 0:
        print("SKIP: needs root (installs the packages with dpkg -i)")
        return 77
    lack = missing_tools()
    if lack:
        print("SKIP: needs " + ", ".join(lack) + " (tools/setup.sh installs them)")
        return 77
    work = os.path.join(builddir, "pkg")
    debs, changes = build(src, work)
    check_lintian(changes)

    with open(LOCK, "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        already = [p for p in PACKAGES if installed(p)]
        if already:
            raise AssertionError(f"installed already: {already}; this test installs and purges "
                                 "them, so it will not run over a system's own (dpkg --purge "
                                 "them first)")
        before = {d: snapshot(d) for d in STATE_DIRS}
        own_policy = not os.path.exists(POLICY_RC)
        if own_policy:
            with open(POLICY_RC, "w") as f:
                f.write("#!/bin/sh\n# tesgate packaging test: no daemon starts during it\n"
                        "exit 101\n")
            os.chmod(POLICY_RC, 0o755)
        files = {}
        try:
            log("dpkg -i " + " ".join(os.path.basename(debs[p]) for p in PACKAGES))
            dpkg("-i", *(debs[p] for p in PACKAGES))
            files = check_installed(debs)
            run_daemons(work)
        finally:
            present = [p for p in PACKAGES if installed(p)]
            if present:
                log("dpkg --purge " + " ".join(present))
                dpkg("--purge", *present)
            if before["/run/tescontrol"] is None:
                shutil.rmtree("/run/tescontrol", ignore_errors=True)
            # a directory that was there before the packages: as it was
            for d, snap in before.items():
                if snap is not None and os.path.isdir(d):
                    os.chown(d, snap[0], snap[1])
                    os.chmod(d, snap[2])
            if own_policy:
                os.unlink(POLICY_RC)

        # nothing left behind
        for pkg in PACKAGES:
            assert not installed(pkg), f"{pkg} still installed"
            assert run(["dpkg-query", "-W", pkg], check=False).returncode != 0 or \
                "not-installed" in run(["dpkg-query", "-W", "-f=${Status}", pkg],
                                       check=False).stdout, f"{pkg} left in dpkg's database"
        left = [f for pkg in files for f in files[pkg]
                if os.path.isfile(f) or os.path.islink(f)]
        assert not left, f"files left after purge: {left}"
        for d in STATE_DIRS:
            if before[d] is None:
                assert not os.path.exists(d), f"{d} left after purge"
        assert not os.path.exists("/var/lib/tesgate/spool"), "the spool left after purge"
        for unit in ("tesgate.service", "tescontrol.service"):
            assert not os.path.lexists(f"/etc/systemd/system/multi-user.target.wants/{unit}"), \
                f"{unit} still enabled after purge"
    log("built, lintian clean, installed, ran, purged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
