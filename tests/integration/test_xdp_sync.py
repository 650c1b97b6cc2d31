#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""tescontrol's XDP map sync, end to end on a veth pair.

    client namespace                      server namespace
    198.18.1.1 (Exchange sender)  xcN <==veth==> xsN  198.18.1.2:2525 tesgate
    198.18.1.3 (operator deny)                        tes_xdp attached by tescontrol

tescontrol (test clock, policy full_block = drop) runs in the server
namespace and attaches the program to the server side of the pair; tesgate
listens there.  The Exchange sender is detected; 91 days later its server
blocks all hour, so within about a second its address is in the drop list
and its SYNs never reach tesgate (accept count unchanged, drop counter up).
A pause takes it out again and the client delivers.  An operator deny of
another address drops it, survives the sync, and xdp allow lifts it; xdp
detach detaches.

With --v6 the same scenario runs over IPv6 (fd00:18:1::1, ::2, ::3 on the
pair, a /64 connector): the drop list and the program hold IPv6 sources.

Usage: test_xdp_sync.py TESGATE [--v6]  (TESCONTROL, TESCTL, TES_SRCDIR in env)
Exit 77 (skipped) without root, ip(8), or BPF.  Every wait is bounded; the
namespaces, the bpffs mount and the processes started here (by PID) are
removed whatever happens.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ctl_harness as ch  # noqa: E402

SKIP = 77
PORT = 2525
SRV_ADDR = "198.18.1.2"
EXCH = "198.18.1.1"
OTHER = "198.18.1.3"
PLEN = 24
CONNECTOR = "198.18.1.0/24"
TENANT = 1
SERVER = "ex16-02.contoso.local"
CONNECT_TIMEOUT = 1.5
CMD_TIMEOUT = 30
START_TIMEOUT = 20
SYNC_WAIT = 30  # bound on waiting for a drop-list sync pass (one a second)
DAY = 86400

# Inside the client namespace: connect from src; with a message file, deliver
# it with smtplib.  Exit 0 done, 1 timed out, 2 anything else, 3 refused
# by SMTP (code on stdout).
CLIENT = r"""
import smtplib, socket, sys
src, dst, port, timeout, msgfile = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
try:
    if msgfile:
        msg = open(msgfile, "rb").read()
        with smtplib.SMTP(dst, port, source_address=(src, 0), timeout=timeout) as s:
            s.ehlo("ex16-02.contoso.local")
            s.sendmail("grace.okafor@contoso.com", ["ian.hughes@example.net"], msg)
    else:
        s = socket.socket(socket.AF_INET6 if ":" in src else socket.AF_INET, socket.SOCK_STREAM)
        s.bind((src, 0))
        s.settimeout(timeout)
        s.connect((dst, port))
        s.close()
except (socket.timeout, TimeoutError):
    sys.exit(1)
except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError, smtplib.SMTPRecipientsRefused) as e:
    print(getattr(e, "smtp_code", e))
    sys.exit(3)
except Exception as e:
    print(type(e).__name__, e, file=sys.stderr)
    sys.exit(2)
"""

METRICS = r"""
import sys, urllib.request
print(urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode())
"""


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)
    print("ok:", what, flush=True)


class World:
    def __init__(self, tesgate):
        tag = str(os.getpid() % 100000)
        self.tesgate = tesgate
        self.ns_srv = "tesxs-s-" + tag
        self.ns_cli = "tesxs-c-" + tag
        self.if_srv = "xs" + tag
        self.if_cli = "xc" + tag
        self.tmp = tempfile.mkdtemp(prefix="tesxs-", dir="/tmp")
        self.bpffs = os.path.join(self.tmp, "bpffs")
        self.made_ns = []
        self.mounted = False
        self.gw = None
        self.gw_log = os.path.join(self.tmp, "tesgate.log")
        self.tc = None
        self.expected = {EXCH: 0, OTHER: 0}  # connections tesgate should have seen

    def sh(self, *args, check_rc=True):
        p = subprocess.run(list(args), stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=CMD_TIMEOUT)
        if check_rc and p.returncode != 0:
            raise Failure("%s: exit %d\n%s%s" % (" ".join(args), p.returncode, p.stdout,
                                                 p.stderr))
        return p

    def setup(self):
        os.mkdir(self.bpffs, 0o700)
        self.sh("mount", "-t", "bpf", "-o", "mode=0700", "bpf", self.bpffs)
        self.mounted = True
        for ns in (self.ns_srv, self.ns_cli):
            self.sh("ip", "netns", "add", ns)
            self.made_ns.append(ns)
        s, c = self.ns_srv, self.ns_cli
        self.sh("ip", "-n", s, "link", "add", self.if_srv, "type", "veth", "peer", "name",
                self.if_cli, "netns", c)
        # nodad: an IPv6 address is usable at once (no duplicate can exist
        # on a pair made here)
        nodad = ["nodad"] if ":" in SRV_ADDR else []
        self.sh("ip", "-n", s, "addr", "add", "%s/%d" % (SRV_ADDR, PLEN), "dev", self.if_srv,
                *nodad)
        self.sh("ip", "-n", c, "addr", "add", "%s/%d" % (EXCH, PLEN), "dev", self.if_cli, *nodad)
        self.sh("ip", "-n", c, "addr", "add", "%s/%d" % (OTHER, PLEN), "dev", self.if_cli,
                *nodad)
        for ns, dev in ((s, self.if_srv), (c, self.if_cli), (s, "lo"), (c, "lo")):
            self.sh("ip", "-n", ns, "link", "set", dev, "up")
        hdr = os.path.join(ch.SRCDIR, "tests", "data", "headers", "ex2016-tls.hdr")
        with open(hdr, "rb") as f:
            self.msg = os.path.join(self.tmp, "msg.eml")
            with open(self.msg, "wb") as out:
                out.write(f.read() + b"Body of a simulated Exchange message.\r\n")

    def cleanup(self):
        if self.gw is not None and self.gw.poll() is None:
            os.kill(self.gw.pid, signal.SIGKILL)
            try:
                self.gw.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self.tc is not None:
            try:
                if self.tc.proc is not None and self.tc.proc.poll() is None:
                    os.kill(self.tc.proc.pid, signal.SIGKILL)
                    self.tc.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
            shutil.rmtree(self.tc.dir, ignore_errors=True)
        for ns in self.made_ns:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=CMD_TIMEOUT)
        if self.mounted:
            subprocess.run(["umount", "-l", self.bpffs], capture_output=True,
                           timeout=CMD_TIMEOUT)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- the pair -------------------------------------------------------------

    def start_tescontrol(self):
        policy = os.path.join(self.tmp, "policy.conf")
        with open(policy, "w") as f:
            f.write("[enforcement]\nfull_block = drop\n")
        # tescontrol attaches by interface name, so it runs in the server
        # namespace; ip netns exec execs, so the PID is tescontrol's.
        wrapper = os.path.join(self.tmp, "tescontrol-in-ns")
        with open(wrapper, "w") as f:
            f.write('#!/bin/sh\nexec ip netns exec %s %s "$@"\n' % (self.ns_srv, ch.TESCONTROL))
        os.chmod(wrapper, 0o755)
        ch.TESCONTROL = wrapper
        self.tc = ch.Tescontrol(test_clock=ch.T0, conf={
            "policy_file": policy,
            "xdp_interfaces": self.if_srv,
            "xdp_ports": str(PORT),  # the list drops TCP to the gateway's port only
            "xdp_pin_root": os.path.join(self.bpffs, "tesgate"),
            "xdp_required": "yes",
            # the server namespace has its own loopback: no port clash
            "metrics_listen": "127.0.0.1:9464",
        })
        self.tc.start()

    def start_tesgate(self):
        conf = os.path.join(self.tmp, "tesgate.conf")
        with open(conf, "w") as f:
            f.write("log_level = debug\nshutdown_grace = 2\nhostname = xdp-sync.example\n"
                    "control_socket = %s\nfollow_test_clock = yes\ngateway_id = gw-xdp\n"
                    % self.tc.gw_sock)
        env = dict(os.environ, TES_ALLOW_TEST_CLOCK="1")
        with open(self.gw_log, "wb") as log:
            self.gw = subprocess.Popen(
                ["ip", "netns", "exec", self.ns_srv, self.tesgate, "-c", conf, "--listen",
                 ("[%s]:%d" if ":" in SRV_ADDR else "%s:%d") % (SRV_ADDR, PORT), "--spool", os.path.join(self.tmp, "spool")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + START_TIMEOUT
        while "control: synchronised" not in self.gw_text():
            if self.gw.poll() is not None or time.monotonic() > deadline:
                raise Failure("tesgate did not start and synchronise:\n" + self.gw_text())
            time.sleep(0.05)

    def gw_text(self):
        try:
            with open(self.gw_log, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # --- clients and observations ---------------------------------------------

    def client(self, src, smtp=False):
        p = subprocess.run(
            ["ip", "netns", "exec", self.ns_cli, sys.executable, "-c", CLIENT, src, SRV_ADDR,
             str(PORT), str(15 if smtp else CONNECT_TIMEOUT), self.msg if smtp else ""],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CMD_TIMEOUT)
        if p.returncode == 2:
            print("client %s: %s" % (src, p.stderr.strip()), flush=True)
        if p.returncode in (0, 3):
            self.expected[src] += 1
        return p.returncode

    def accepted_from(self, addr):
        peer = "[%s]" % addr if ":" in addr else addr
        return len(re.findall(r"close peer=%s:\d+" % re.escape(peer), self.gw_text()))

    def settle(self):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if all(self.accepted_from(a) >= n for a, n in self.expected.items()):
                break
            time.sleep(0.05)
        # one more than expected shows here or, later, in finish()'s exact total
        for a, n in self.expected.items():
            check(self.accepted_from(a) == n,
                  "tesgate saw %d connections from %s (expected %d)" %
                  (self.accepted_from(a), a, n))

    def ctl(self, *args):
        return self.tc.ctl(*args)

    def entries(self):
        return {e["address"]: e for e in self.ctl("xdp", "list")["entries"]}

    def drops(self, name):
        return self.ctl("xdp", "status")["counters"][name]["packets"]

    def synced(self):
        """Wait for a drop-list sync pass that began after the caller's last
        change (tescontrol runs one thread: a pass counted after the change
        returned has seen it); then the list is what enforcement says."""
        s0 = self.ctl("xdp", "status")["syncs"]
        deadline = time.monotonic() + SYNC_WAIT
        while self.ctl("xdp", "status")["syncs"] <= s0:
            if time.monotonic() > deadline:
                raise Failure("no XDP sync pass in %d s" % SYNC_WAIT)
            time.sleep(0.05)

    def check_entry(self, addr, present, what):
        self.synced()
        check((addr in self.entries()) == present, "%s: %s %s the drop list: %s" % (
            what, addr, "in" if present else "not in", json.dumps(self.ctl("xdp", "list"))))

    def metrics(self):
        p = self.sh("ip", "netns", "exec", self.ns_srv, sys.executable, "-c", METRICS, "9464")
        return p.stdout

    def gw_synced(self):
        """Wait until tesgate (its /metrics on the default port, inside the
        server namespace) has applied tescontrol's state generation."""
        gen = self.tc.generation()
        deadline = time.monotonic() + SYNC_WAIT
        while True:
            p = self.sh("ip", "netns", "exec", self.ns_srv, sys.executable, "-c", METRICS, "9465")
            m = re.search(r"^tes_control_generation (\d+)", p.stdout, re.M)
            if m and int(m.group(1)) >= gen:
                return
            if time.monotonic() > deadline:
                raise Failure("tesgate stayed at generation %s, tescontrol is at %d" %
                              (m.group(1) if m else "?", gen))
            time.sleep(0.05)

    # --- the scenario -----------------------------------------------------------

    def scenario(self):
        st = self.ctl("xdp", "status")
        check([f["mode"] for f in st["interfaces"]] in (["native"], ["generic"]),
              "tescontrol attached to %s: %s" % (self.if_srv, st["interfaces"]))
        self.ctl("tenant", "add", TENANT, "Contoso", "--connector", CONNECTOR)
        self.start_tesgate()

        rc = self.client(EXCH, smtp=True)
        check(rc == 0, "the Exchange sender delivers (first detection, report only): rc %d" % rc)
        deadline = time.monotonic() + 10
        while self.tc.server(TENANT, SERVER) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        check(self.tc.server(TENANT, SERVER) is not None, "tescontrol tracks " + SERVER)
        check(EXCH not in self.entries(), "stage 1: not in the drop list")

        self.tc.advance(91 * DAY)
        # issue 13: a probe is due (the server's last message was read 91
        # days ago), so the address stays off the list until one
        # transaction was let through to its headers (550 at the end of the
        # data); then it is listed
        self.check_entry(EXCH, False, "a probe is due")
        self.gw_synced()
        rc = self.client(EXCH, smtp=True)
        check(rc == 3, "the probe is read to its headers and refused with 550 (rc %d)" % rc)
        self.check_entry(EXCH, True, "91 days on, after the probe")
        e = self.entries()[EXCH]
        check(e["reason"] == "enforcement" and e["sync"], "its entry is sync-owned: %s" % e)
        self.settle()
        d0 = self.drops("drop_blocked")
        rc = self.client(EXCH)
        check(rc == 1, "fully blocked: %s's connect times out (rc %d)" % (EXCH, rc))
        self.settle()
        check(self.drops("drop_blocked") > d0, "the enforcement drop counter rose")
        m = self.metrics()
        check(re.search(r'^tes_xdp_drops_total\{reason="enforcement"\} [1-9]', m, re.M),
              "/metrics exports tes_xdp_drops_total{reason=\"enforcement\"}")
        check(re.search(r'^tes_xdp_generic_fallback\{interface="%s"\} [01]$' % self.if_srv, m,
                        re.M), "/metrics exports tes_xdp_generic_fallback")

        # An operator deny survives the sweeps and drops at once.
        self.ctl("xdp", "deny", OTHER)
        d0 = self.drops("drop_admin_exact")
        check(self.client(OTHER) == 1, "xdp deny %s: its connect times out" % OTHER)
        check(self.drops("drop_admin_exact") > d0, "the admin drop counter rose")
        self.ctl("pause", "add", TENANT, 10)
        self.check_entry(EXCH, False, "paused")
        check(OTHER in self.entries(), "the operator's entry outlived the sync")
        rc = self.client(EXCH, smtp=True)
        check(rc == 0, "paused: the Exchange sender delivers again (rc %d)" % rc)
        self.ctl("xdp", "allow", OTHER)
        check(OTHER not in self.entries(), "xdp allow removed the operator's entry")
        check(self.client(OTHER) == 0, "xdp allow: %s connects" % OTHER)
        p = self.tc.ctl_raw("xdp", "allow", EXCH)
        check(p.returncode == 1, "xdp allow refuses an address without an operator entry")

        # A resume puts it back; the clean detach lets it through.
        self.ctl("pause", "resume", TENANT)
        self.check_entry(EXCH, True, "resumed")
        check(self.client(EXCH) == 1, "resumed: %s dropped again" % EXCH)
        self.ctl("xdp", "detach", self.if_srv)
        st = self.ctl("xdp", "status")
        check([f["mode"] for f in st["interfaces"]] == ["none"], "detached: %s" %
              st["interfaces"])
        # With the program gone a listed address connects (tesgate itself
        # refuses the blocked sender's connections, so another one shows it).
        self.ctl("xdp", "deny", OTHER)
        rc = self.client(OTHER)
        check(rc == 0, "detached: a denied address reaches tesgate (rc %d)" % rc)
        self.settle()

    def finish(self):
        os.kill(self.gw.pid, signal.SIGTERM)
        rc = self.gw.wait(timeout=30)
        # a sanitizer report at shutdown ends in a non-zero status
        check(rc == 0, "tesgate exits 0 after SIGTERM (exit %d)" % rc)
        m = re.findall(r"stats connections=(\d+)", self.gw_text())
        total = sum(self.expected.values())
        check(bool(m) and int(m[-1]) == total,
              "tesgate's accept counter: %s, the clients connected %d times" %
              (m[-1] if m else "none", total))
        self.tc.cleanup()


def main():
    global SRV_ADDR, EXCH, OTHER, PLEN, CONNECTOR
    if len(sys.argv) == 3 and sys.argv[2] == "--v6":
        SRV_ADDR, EXCH, OTHER = "fd00:18:1::2", "fd00:18:1::1", "fd00:18:1::3"
        PLEN, CONNECTOR = 64, "fd00:18:1::/64"
    elif len(sys.argv) != 2:
        print(__doc__)
        return 2
    if os.geteuid() != 0:
        print("SKIP: needs root (network namespaces, a BPF filesystem, XDP)")
        return SKIP
    if not shutil.which("ip"):
        print("SKIP: ip(8) from iproute2 is not installed")
        return SKIP
    tes_xdp = os.environ.get("TES_XDP")
    if tes_xdp:
        p = subprocess.run([tes_xdp, "probe"], capture_output=True, text=True,
                           timeout=CMD_TIMEOUT)
        if p.returncode != 0:
            print("SKIP: BPF is not permitted here: " + (p.stderr or p.stdout).strip())
            return SKIP

    def on_signal(signum, frame):
        raise SystemExit("killed by signal %d" % signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)

    os.environ["TES_ALLOW_TEST_CLOCK"] = "1"
    w = World(sys.argv[1])
    try:
        w.setup()
        w.start_tescontrol()
        w.scenario()
        w.finish()
        print("PASS")
        return 0
    except (Failure, ch.CtlError, RuntimeError, AssertionError) as e:
        print("FAIL:", e, flush=True)
        print("--- tesgate log\n" + w.gw_text()[-4000:])
        if w.tc is not None:
            print("--- tescontrol log\n" + w.tc.log_text()[-6000:])
        return 1
    finally:
        w.cleanup()


if __name__ == "__main__":
    sys.exit(main())
