#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""The shipped systemd units (etc/systemd/) parse and let their features work
(issue 14, item 4):

- `systemd-analyze verify` accepts each unit without a word (the ExecStart
  binaries pointed at this build);
- tescontrol.service can load and attach XDP and serve a reachable
  metrics_listen: no PrivateNetwork, no IPAddressDeny, AF_NETLINK and
  AF_INET allowed, CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_SYS_ADMIN
  given (what loading, attaching and replacing were measured to need), the
  bpf system call allowed, /sys writable for the pins;
- tesgate.service lets tesgate drop the capability it starts with: capset is
  allowed back after @privileged is denied, and tesgate runs --user tesgate;
- tesgate-dpdk.service starts as root with a bounding set that holds what
  the EAL and the drop need, lets the drop's system calls through, and
  makes the EAL's runtime directory;
- the system-call groups those lines rely on hold what they are relied on
  for (systemd-analyze syscall-filter), so a systemd that moves a call
  between groups is noticed here.

Exit 77 when systemd-analyze is not installed.

usage: test_units.py TESGATE TESCONTROL
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
UNITS = ("tesgate.service", "tesgate-dpdk.service", "tescontrol.service")
TESGATE = TESCONTROL = None


def directives(text):
    """[(key, value)] in order, comments and sections left out."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("["):
            continue
        k, _, v = line.partition("=")
        out.append((k.strip(), v.strip()))
    return out


def values(text, key):
    return [v for k, v in directives(text) if k == key]


def group(name):
    p = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True,
                       text=True, timeout=60, check=True)
    return {ln.strip() for ln in p.stdout.splitlines()[1:] if ln.strip() and
            not ln.strip().startswith("#")}


class Units(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="tesgate-units-")
        self.text = {}
        for u in UNITS:
            path = os.path.join(SRC, "etc", "systemd", u)
            if os.path.exists(path):  # a missing one fails its own test
                with open(path) as f:
                    self.text[u] = f.read()

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_verify(self):
        paths = []
        for u, t in self.text.items():
            t = t.replace("/usr/sbin/tesgate", TESGATE).replace("/usr/sbin/tescontrol",
                                                                 TESCONTROL)
            path = os.path.join(self.dir, u)
            with open(path, "w") as f:
                f.write(t)
            paths.append(path)
        p = subprocess.run(["systemd-analyze", "verify", "--man=no"] + paths,
                           capture_output=True, text=True, timeout=120)
        # only our units' lines count: the host's own units may be noisy
        ours = [ln for ln in (p.stdout + p.stderr).splitlines()
                if any(u in ln for u in UNITS)]
        self.assertEqual(ours, [], p.stdout + p.stderr)

    def test_tescontrol_can_do_xdp_and_metrics(self):
        t = self.text.get("tescontrol.service", "")
        self.assertNotIn("yes", values(t, "PrivateNetwork"))
        self.assertEqual(values(t, "IPAddressDeny"), [])
        fams = " ".join(values(t, "RestrictAddressFamilies")).split()
        for fam in ("AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"):
            self.assertIn(fam, fams)
        for key in ("CapabilityBoundingSet", "AmbientCapabilities"):
            caps = " ".join(values(t, key)).split()
            for cap in ("CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"):
                self.assertIn(cap, caps, key)
        filt = values(t, "SystemCallFilter")
        self.assertFalse(filt[0].startswith("~"), "the first filter line is the allow list")
        self.assertIn("bpf", filt[-1].split(), "bpf allowed back last")
        self.assertNotIn("bpf", group("@system-service"))
        self.assertEqual(values(t, "ProtectKernelTunables"), ["no"])
        self.assertTrue(any("/sys/fs/bpf/tesgate" in v for v in values(t, "ExecStartPre")))

    def test_tesgate_can_drop(self):
        t = self.text.get("tesgate.service", "")
        self.assertIn("--user tesgate", values(t, "ExecStart")[0])
        self.assertEqual(values(t, "User"), ["tesgate"])
        filt = values(t, "SystemCallFilter")
        self.assertFalse(filt[0].startswith("~"))
        self.assertTrue(any(v.startswith("~") and "@privileged" in v for v in filt))
        self.assertEqual(filt[-1].split(), ["capset"])
        self.assertIn("capset", group("@privileged"))
        self.assertIn("CAP_NET_BIND_SERVICE", values(t, "AmbientCapabilities")[0].split())

    def test_dpdk_unit(self):
        self.assertTrue("tesgate-dpdk.service" in self.text, "no DPDK unit")
        t = self.text["tesgate-dpdk.service"]
        self.assertEqual(values(t, "User"), [])
        self.assertIn("--user tesgate", values(t, "ExecStart")[0])
        caps = values(t, "CapabilityBoundingSet")[0].split()
        for cap in ("CAP_NET_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN"):
            self.assertIn(cap, caps)
        self.assertNotIn("CAP_SYS_ADMIN", caps)
        filt = values(t, "SystemCallFilter")
        allowed_back = filt[-1].split()
        self.assertIn("@setuid", allowed_back)
        self.assertIn("@chown", allowed_back)
        self.assertIn("capset", allowed_back)
        setuid = group("@setuid")
        for call in ("setgroups", "setresuid", "setresgid"):
            self.assertIn(call, setuid)
        self.assertIn("fchown", group("@chown"))
        self.assertEqual(values(t, "RuntimeDirectory"), ["dpdk"])
        self.assertIn("AF_NETLINK", values(t, "RestrictAddressFamilies")[0].split())
        self.assertEqual(values(t, "NoNewPrivileges"), ["yes"])


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    if not shutil.which("systemd-analyze"):
        print("SKIP: systemd-analyze is not installed")
        sys.exit(77)
    TESGATE, TESCONTROL = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    sys.argv[1:] = []
    unittest.main(verbosity=2)
