# SPDX-License-Identifier: BSD-3-Clause
"""The audit trail: every admin action that changes something is exactly one
line in tescontrol's event log, with the caller's uid, gid and pid as the
admin socket's SO_PEERCRED reports them, and the values before and after.

tescontrol runs with admin_group = nogroup, so that tesctl can also be run
as uid/gid 65534 (setpriv --reuid=65534 --regid=65534 --clear-groups): those
lines must say 65534, the others 0.  A raw client that puts a uid in its
request changes nothing of that.  Refused and no-op requests write nothing.

With the argument `xdp` (privileged suite, root): tescontrol in a network
namespace of its own with the XDP program on a veth there (generic mode),
for xdp deny, allow and detach.

Usage: test_audit.py [xdp]  (TESCONTROL, TESCTL, TES_SRCDIR in env)
Exit 77 when setpriv (or, for xdp, root, ip(8) or BPF) is missing.
"""
import grp
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ctl_harness as ch  # noqa: E402
from ctl_harness import DAY, T0, FakeGateway, Tescontrol  # noqa: E402

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
STRANGER = ["setpriv", "--reuid=65533", "--regid=65533", "--clear-groups"]
BUILDS = os.path.join(ch.SRCDIR, "data", "exchange-builds.csv")
COMPLIANCE = os.path.join(ch.SRCDIR, "data", "compliance.conf")
ZERO_PAUSE = {"start": 0, "end": 0, "paused_before": 0, "year": 0, "days_used": 0}


def have_setpriv():
    return shutil.which("setpriv") is not None and os.getuid() == 0


class Trail(unittest.TestCase):
    conf = {}

    def setUp(self):
        if not have_setpriv():
            self.skipTest("needs root and setpriv")
        conf = {"admin_group": grp.getgrgid(65534).gr_name}
        conf.update(self.conf)
        self.tc = Tescontrol(test_clock=T0, conf=conf)
        self.events = os.path.join(self.tc.dir, "events.log")
        with open(self.tc.conf_path, "a") as f:
            f.write(f"event_log = {self.events}\n")
        # uid 65534 must reach the socket; the directory stays unlistable
        os.chmod(self.tc.dir, 0o711)
        self.addCleanup(self._cleanup)
        self.start()

    def start(self):
        self.tc.start()

    def _cleanup(self):
        sys.stderr.write("---- tescontrol log ----\n" + self.tc.log_text()[-20000:])
        self.tc.cleanup()

    # -- helpers ------------------------------------------------------------
    def ctl(self, *args, user=None):
        p = self.tc.ctl_raw(*args, user=user)
        self.assertEqual(p.returncode, 0, f"tesctl {args}: {p.stderr}")
        return json.loads(p.stdout)

    def lines(self):
        if not os.path.exists(self.events):
            return []
        with open(self.events) as f:
            return [json.loads(x) for x in f]

    def admin_lines(self):
        """The lines of admin actions: the only ones with a caller."""
        return [e for e in self.lines() if "uid" in e]

    def one_new(self, before, event, uid):
        """Exactly one admin line since `before` lines, of this event, by uid."""
        new = [e for e in self.lines()[before:] if "uid" in e]
        self.assertEqual(len(new), 1, f"{event}: {new}")
        e = new[0]
        self.assertEqual(e["event"], event)
        self.assertEqual((e["uid"], e["gid"]), (uid, uid))
        self.assertIsInstance(e["pid"], int)
        self.assertGreater(e["pid"], 0)
        self.assertNotEqual(e["pid"], self.tc.proc.pid)
        self.assertNotEqual(e["pid"], os.getpid())
        return e

    def none_new(self, before, what):
        self.assertEqual([e for e in self.lines()[before:] if "uid" in e], [], what)

    def failing(self, *args, rc=1, text="", user=None):
        n = len(self.lines())
        p = self.tc.ctl_raw(*args, user=user)
        self.assertEqual(p.returncode, rc, f"{args}: {p.stderr}")
        self.assertIn(text, p.stderr)
        self.assertEqual(p.stdout, "")
        self.none_new(n, f"refused {args} wrote a line")
        return p


class AdminActions(Trail):
    def test_every_action_one_line(self):
        tc = self.tc
        gw = FakeGateway(tc.gw_sock)
        self.addCleanup(gw.close)
        bear = {"id": 1, "name": "Bear", "connectors": [{"range": "198.51.100.0/24"}],
                "pause": ZERO_PAUSE}

        # tenant add, as root
        n = len(self.lines())
        self.ctl("tenant", "add", 1, "Bear", "--connector", "198.51.100.0/24")
        e = self.one_new(n, "tenant_add", 0)
        self.assertEqual((e["tenant"], e["tenant_name"]), (1, "Bear"))
        self.assertIsNone(e["before"])
        self.assertEqual(e["after"], bear)

        # tenant change, as uid 65534 through the admin group
        n = len(self.lines())
        r = self.ctl("tenant", "set", 1, "--name", "Bear Corp", "--connector",
                     "198.51.100.0/24", "--connector", "0.0.0.0/0,mx.bear.example",
                     user=NOBODY)
        self.assertTrue(r["changed"])
        e = self.one_new(n, "tenant_change", 65534)
        self.assertEqual(e["before"], bear)
        self.assertEqual(e["after"], dict(bear, name="Bear Corp", connectors=[
            {"range": "198.51.100.0/24"}, {"range": "0.0.0.0/0", "cert": "mx.bear.example"}]))
        self.assertEqual(tc.ctl("tenant", "show", 1)["name"], "Bear Corp")
        # the same values again: nothing changes, nothing is written
        n = len(self.lines())
        r = self.ctl("tenant", "set", 1, "--name", "Bear Corp")
        self.assertFalse(r["changed"])
        self.none_new(n, "a no-op tenant set")
        out = tc.ctl("tenant", "set", 1, "--name", "Bear Corp", json_out=False)
        self.assertIn("tenant 1 unchanged", out)
        # bad input: a clear reply, exit status, nothing changed or written
        self.failing("tenant", "set", 99, "--name", "X", text="no tenant 99")
        self.failing("tenant", "set", 1, rc=2, text="nothing to change")
        self.failing("tenant", "set", 1, "--connector", "198.51.100.1/24", text="connector 1:")
        self.failing("tenant", "set", 1, "--name", "", text="the name must have")
        self.failing("tenant", "set", 1, "--no-connectors", "--connector", "10.0.0.0/8",
                     rc=2, text="contradict")
        self.failing("tenant", "add", 1, "Again", text="tenant 1 already exists")
        self.assertEqual(len(tc.ctl("tenant", "show", 1)["connectors"]), 2)

        gw.sighting(1, "EX1.bear.local", "15.1.2507.35")
        tc.advance(31 * DAY)

        # pause, as uid 65534
        n = len(self.lines())
        self.ctl("pause", "add", 1, 10, user=NOBODY)
        e = self.one_new(n, "pause", 65534)
        t1 = T0 + 31 * DAY
        self.assertEqual(e["before"], ZERO_PAUSE)
        self.assertEqual(e["after"], {"start": t1, "end": t1 + 10 * DAY, "paused_before": 0,
                                      "year": 2024, "days_used": 10})
        self.assertEqual(e["pause_end_epoch"], t1 + 10 * DAY)
        # the pause's consequence is its own event, without a caller
        self.assertIn("status_change", [x["event"] for x in self.lines()[n:]])
        self.failing("pause", "add", 1, 100, text="pause quota exceeded")

        # resume, as root
        tc.advance(DAY)
        n = len(self.lines())
        self.ctl("pause", "resume", 1)
        e = self.one_new(n, "pause_resumed", 0)
        self.assertEqual(e["before"]["end"], t1 + 10 * DAY)
        self.assertEqual(e["after"]["end"], t1 + DAY)
        self.failing("pause", "resume", 1, text="tenant 1 is not paused")

        # reset, as root: the state forgotten is the line's before
        n = len(self.lines())
        self.ctl("server", "reset", 1, "ex1.bear.local")
        e = self.one_new(n, "reset", 0)
        self.assertEqual(e["server"], "EX1.bear.local")
        self.assertEqual(e["before"]["build"], "15.1.2507.35")
        self.assertEqual(e["before"]["first_detected"], T0)
        self.assertEqual(e["before"]["status"], "Throttling")
        self.assertIsNone(e["after"])
        self.failing("server", "reset", 1, "ex1.bear.local", text="no server ex1.bear.local")

        # policy load, as uid 65534 (tesctl reads the file, as that user)
        pol = os.path.join(tc.dir, "policy.conf")
        with open(pol, "w") as f:
            f.write("[pause]\nquota_days = 60\n")
        os.chmod(pol, 0o644)
        before_v = tc.ctl("policy", "show")["version"]
        n = len(self.lines())
        self.ctl("policy", "load", "--dry-run", pol, user=NOBODY)
        self.none_new(n, "a dry run")
        r = self.ctl("policy", "load", pol, user=NOBODY)
        e = self.one_new(n, "policy_load", 65534)
        self.assertEqual(e["before"]["version"], before_v)
        self.assertEqual((e["after"]["version"], e["after"]["name"]), (r["version"],
                                                                        "policy.conf"))
        self.assertEqual(e["servers_changed"], r["count"])
        bad = os.path.join(tc.dir, "bad.conf")
        with open(bad, "w") as f:
            f.write("[pause]\nquota_days = many\n")
        self.failing("policy", "load", bad, text="bad.conf:2")

        # catalog load, as root
        n = len(self.lines())
        r = self.ctl("catalog", "load", BUILDS, COMPLIANCE)
        e = self.one_new(n, "catalog_load", 0)
        self.assertEqual(e["after"]["version"], r["version"])
        self.assertEqual(e["after"]["builds_name"], "exchange-builds.csv")
        self.assertEqual(e["servers_changed"], 0)

        # tenant delete: refused while it has servers, then forced
        self.ctl("tenant", "add", 2, "Owl")
        gw.sighting(2, "ex2.owl.local", "15.0.1497.48")
        n = len(self.lines())
        p = self.failing("tenant", "delete", 2, text="tenant 2 has 1 server on record")
        self.assertIn("tesctl tenant delete 2 --force", p.stderr)
        self.assertIsNotNone(tc.server(2, "ex2.owl.local"))
        mark = len(gw.msgs)
        r = self.ctl("tenant", "delete", 2, "--force", user=NOBODY)
        self.assertEqual(r["servers_deleted"], 1)
        e = self.one_new(n, "tenant_delete", 65534)
        self.assertEqual(e["before"], {"id": 2, "name": "Owl", "connectors": [],
                                       "pause": ZERO_PAUSE})
        self.assertIsNone(e["after"])
        self.assertEqual(e["servers_deleted"], 1)
        self.assertIsNone(tc.server(2, "ex2.owl.local"))
        self.assertEqual([t["id"] for t in tc.ctl("tenant", "list")["tenants"]], [1])
        gw.wait_until(lambda: sum(1 for m in gw.msgs[mark:] if m["type"] == "delete") == 2,
                      what="server and tenant deletes pushed")
        self.failing("tenant", "delete", 2, text="no tenant 2")
        # a tenant without servers needs no --force
        self.ctl("tenant", "add", 3, "Emu")
        n = len(self.lines())
        self.ctl("tenant", "delete", 3)
        self.one_new(n, "tenant_delete", 0)
        # deletion is durable
        tc.stop()
        tc.start()
        self.assertEqual([t["id"] for t in tc.ctl("tenant", "list")["tenants"]], [1])

        # somebody outside the admin group is refused before any command
        self.failing("tenant", "add", 4, "Nope", rc=3, user=STRANGER)

        self.assertEqual([(e["event"], e["uid"]) for e in self.admin_lines()], [
            ("tenant_add", 0), ("tenant_change", 65534), ("pause", 65534),
            ("pause_resumed", 0), ("reset", 0), ("policy_load", 65534), ("catalog_load", 0),
            ("tenant_add", 0), ("tenant_delete", 65534), ("tenant_add", 0),
            ("tenant_delete", 0)])

    def test_uid_comes_from_the_socket(self):
        """A request that names a uid of its own is audited with the
        socket's credentials."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(self.tc.admin_sock)
        req = {"v": 1, "cmd": "tenant.add",
               "args": {"id": 5, "name": "Forger", "uid": 4242, "gid": 4242}, "uid": 4242}
        data = json.dumps(req).encode()
        s.sendall(struct.pack(">I", len(data)) + data)
        hdr = s.recv(4)
        body = b""
        while len(body) < struct.unpack(">I", hdr)[0]:
            body += s.recv(65536)
        s.close()
        self.assertTrue(json.loads(body)["ok"], body)
        e = self.admin_lines()[-1]
        self.assertEqual((e["event"], e["uid"], e["gid"]), ("tenant_add", 0, 0))
        self.assertEqual(e["pid"], os.getpid())


class XdpActions(Trail):
    """xdp deny, allow and detach, with the program on a veth of a network
    namespace tescontrol runs in."""

    def setUp(self):
        if os.getuid() != 0 or shutil.which("ip") is None:
            self.skipTest("needs root and ip(8)")
        tag = str(os.getpid() % 100000)
        self.ns = "tesaud-" + tag
        self.ifname = "ta" + tag
        self.tmp = tempfile.mkdtemp(prefix="tesaud-", dir="/tmp")
        self.bpffs = os.path.join(self.tmp, "bpffs")
        self.addCleanup(self._teardown)
        os.mkdir(self.bpffs, 0o700)
        self.mounted = subprocess.run(["mount", "-t", "bpf", "bpf", self.bpffs],
                                      capture_output=True).returncode == 0
        if not self.mounted:
            self.skipTest("cannot mount bpffs")
        self.made_ns = subprocess.run(["ip", "netns", "add", self.ns],
                                      capture_output=True).returncode == 0
        if not self.made_ns:
            self.skipTest("cannot create a network namespace")
        for cmd in (["link", "add", self.ifname, "type", "veth", "peer", "name",
                     self.ifname + "p"], ["link", "set", self.ifname, "up"],
                    ["link", "set", self.ifname + "p", "up"]):
            subprocess.run(["ip", "-n", self.ns] + cmd, check=True, capture_output=True)
        wrapper = os.path.join(self.tmp, "tescontrol-in-ns")
        with open(wrapper, "w") as f:
            f.write('#!/bin/sh\nexec ip netns exec %s %s "$@"\n' % (self.ns, ch.TESCONTROL))
        os.chmod(wrapper, 0o755)
        self.real_tescontrol = ch.TESCONTROL
        ch.TESCONTROL = wrapper
        self.conf = {"xdp_interfaces": self.ifname, "xdp_mode": "generic",
                     "xdp_pin_root": os.path.join(self.bpffs, "tesgate"),
                     "xdp_required": "yes"}
        super().setUp()

    def start(self):
        try:
            self.tc.start()
        finally:
            ch.TESCONTROL = self.real_tescontrol

    def _teardown(self):
        if getattr(self, "made_ns", False):
            subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        if getattr(self, "mounted", False):
            subprocess.run(["umount", "-l", self.bpffs], capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_deny_allow_detach(self):
        n = len(self.lines())
        self.ctl("xdp", "deny", "198.18.5.1", user=NOBODY)
        e = self.one_new(n, "xdp_deny", 65534)
        self.assertEqual(e["address"], "198.18.5.1")
        self.assertIsNone(e["before"])
        self.assertEqual((e["after"]["address"], e["after"]["reason"]),
                         ("198.18.5.1", "admin_exact"))
        n = len(self.lines())
        self.ctl("xdp", "deny", "198.18.6.0/24", "--ttl", "3600")
        e = self.one_new(n, "xdp_deny", 0)
        self.assertEqual(e["after"]["reason"], "admin_prefix")
        self.assertNotIn("expires_in", e["after"])
        # denying again: the entry before is the one already there
        n = len(self.lines())
        self.ctl("xdp", "deny", "198.18.5.1")
        e = self.one_new(n, "xdp_deny", 0)
        self.assertEqual(e["before"]["address"], "198.18.5.1")
        n = len(self.lines())
        self.ctl("xdp", "allow", "198.18.5.1")
        e = self.one_new(n, "xdp_allow", 0)
        self.assertEqual(e["before"]["address"], "198.18.5.1")
        self.assertIsNone(e["after"])
        self.failing("xdp", "allow", "198.18.5.1", text="no operator deny entry")
        self.failing("xdp", "deny", "not-an-address", text="address")
        n = len(self.lines())
        self.ctl("xdp", "detach", self.ifname, user=NOBODY)
        e = self.one_new(n, "xdp_detach", 65534)
        self.assertEqual(e["interface"], self.ifname)
        self.assertEqual(e["before"], {"interface": self.ifname, "mode": "generic"})
        self.assertEqual(e["after"], {"interface": self.ifname, "mode": "none"})
        self.assertEqual([x["event"] for x in self.admin_lines()],
                         ["xdp_deny", "xdp_deny", "xdp_deny", "xdp_allow", "xdp_detach"])


if __name__ == "__main__":
    xdp = len(sys.argv) > 1 and sys.argv[1] == "xdp"
    if xdp:
        sys.argv.pop(1)
    suite = unittest.TestLoader().loadTestsFromTestCase(XdpActions if xdp else AdminActions)
    res = unittest.TextTestRunner(verbosity=2).run(suite)
    if res.wasSuccessful() and len(res.skipped) == res.testsRun:
        sys.exit(77)
    sys.exit(0 if res.wasSuccessful() else 1)
