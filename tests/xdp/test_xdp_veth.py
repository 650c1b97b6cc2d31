#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""End to end: the XDP early drop on a veth pair, driven by tes-xdp.

    client namespace                     server namespace
    198.18.1.1 (to be blocked)  txcN <==veth==> txsN  198.18.1.2:2525
    198.18.1.3 (allowed)                        tes_xdp attached here; tesgate
                                                (or a Python listener) behind

Both ends live in network namespaces this test creates, so it never touches
the machine's own interfaces or routes and runs beside other copies of
itself.  The maps are pinned on a BPF filesystem mounted on a temporary
directory, never under /sys/fs/bpf.

For each attach mode (auto, which is native on veth, and generic): before
any entry both clients connect; with the blocked client's address added its
SYNs never reach the listener (its accept count stays put, the drop counter
rises) while the allowed client still delivers mail, and the blocked client
still reaches the server on another TCP port, by UDP and by ICMP echo (the
list is for the SMTP port only: --ports 2525); a restart (attach
again: a new program on the reused maps) keeps the drop; removing the entry
lets the client through; an entry with a TTL drops until it expires; a range
drops both clients.

Usage: test_xdp_veth.py TES_XDP [TESGATE]
Exit 77 (skipped) without root, ip(8), or BPF.  Every wait is bounded, and
the namespaces, the mount and the processes started here are removed
whatever happens (only those, by name and PID).
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

SKIP = 77
PORT = 2525
SRV_ADDR = "198.18.1.2"
BLOCKED = "198.18.1.1"
ALLOWED = "198.18.1.3"
CONNECT_TIMEOUT = 1.5  # a dropped SYN and its first retransmission
CMD_TIMEOUT = 30
START_TIMEOUT = 15

# Run inside the client namespace: connect from a given source address,
# optionally deliver one message with smtplib.  Exit 0 done, 1 timed out,
# 2 anything else.
CLIENT = r"""
import smtplib, socket, sys
src, dst, port, timeout, smtp = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5] == "1"
try:
    if smtp:
        with smtplib.SMTP(dst, port, source_address=(src, 0), timeout=timeout) as s:
            s.sendmail("probe@client.example", ["user@tesgate.example"],
                       "From: probe@client.example\r\nTo: user@tesgate.example\r\n"
                       "Subject: xdp veth test\r\n\r\nhello from " + src + "\r\n")
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((src, 0))
        s.settimeout(timeout)
        s.connect((dst, port))
        s.close()
except (socket.timeout, TimeoutError):
    sys.exit(1)
except Exception as e:
    print(type(e).__name__, e, file=sys.stderr)
    sys.exit(2)
"""

# What a listed source may still reach: TCP on OTHER_PORT (accepted and
# closed), UDP on OTHER_PORT (echoed), in the server namespace.
OTHER_PORT = 8025
OTHER_SERVER = r"""
import socket, sys, threading
addr, port = sys.argv[1], int(sys.argv[2])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind((addr, port))
def echo():
    while True:
        data, peer = u.recvfrom(2048)
        u.sendto(data, peer)
threading.Thread(target=echo, daemon=True).start()
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((addr, port))
t.listen(16)
print("listening", flush=True)
while True:
    c, _ = t.accept()
    c.close()
"""

# From the client namespace: one exchange of kind tcp, udp or icmp with the
# server, from a given source.  Exit 0 answered, 1 timed out, 2 error.
OTHER_CLIENT = r"""
import os, socket, struct, sys
kind, src, dst, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
try:
    if kind == "tcp":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((src, 0)); s.settimeout(1.5); s.connect((dst, port)); s.close()
    elif kind == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((src, 0)); s.settimeout(1.5); s.sendto(b"ping", (dst, port))
        data, _ = s.recvfrom(64)
        sys.exit(0 if data == b"ping" else 2)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        s.bind((src, 0)); s.settimeout(1.5)
        ident = os.getpid() & 0xffff
        def csum(b):
            t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
            t = (t >> 16) + (t & 0xffff); t += t >> 16
            return ~t & 0xffff
        body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"xdp-test"
        body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
        s.sendto(body, (dst, 0))
        while True:
            pkt, _ = s.recvfrom(2048)
            icmp = pkt[(pkt[0] & 15) * 4:]
            if icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
                break
except (socket.timeout, TimeoutError):
    sys.exit(1)
except Exception as e:
    print(type(e).__name__, e, file=sys.stderr)
    sys.exit(2)
"""

# The stand-in gateway when tesgate is not given: accepts, says who, closes.
LISTENER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(64)
print("listening", flush=True)
while True:
    c, peer = s.accept()
    print("accept", peer[0], flush=True)
    try:
        c.sendall(b"220 listener\r\n")
    except OSError:
        pass
    c.close()
"""


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)
    print("ok:", what, flush=True)


class World:
    def __init__(self, tes_xdp, tesgate):
        tag = str(os.getpid() % 100000)
        self.tes_xdp = tes_xdp
        self.tesgate = tesgate
        self.ns_srv = "tesxdp-s-" + tag
        self.ns_cli = "tesxdp-c-" + tag
        self.if_srv = "txs" + tag
        self.if_cli = "txc" + tag
        self.tmp = tempfile.mkdtemp(prefix="tesxdp-veth-")
        self.bpffs = os.path.join(self.tmp, "bpffs")
        self.env = dict(os.environ, TES_XDP_PIN_ROOT=os.path.join(self.bpffs, "tesgate"))
        self.made_ns = []
        self.mounted = False
        self.server = None
        self.other = None
        self.server_log = None
        self.lines = []
        self.lock = threading.Lock()
        self.accepts = {BLOCKED: 0, ALLOWED: 0}  # what the test expects

    # --- plumbing ---------------------------------------------------------

    def sh(self, *args, check_rc=True, timeout=CMD_TIMEOUT):
        p = subprocess.run(list(args), stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=timeout, env=self.env)
        if check_rc and p.returncode != 0:
            raise Failure("%s: exit %d\n%s%s" % (" ".join(args), p.returncode, p.stdout,
                                                 p.stderr))
        return p

    def xdp(self, *args, ns=None, check_rc=True):
        cmd = ([] if ns is None else ["ip", "netns", "exec", ns]) + [self.tes_xdp, *args]
        return self.sh(*cmd, check_rc=check_rc)

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
        self.sh("ip", "-n", s, "addr", "add", SRV_ADDR + "/24", "dev", self.if_srv)
        self.sh("ip", "-n", c, "addr", "add", BLOCKED + "/24", "dev", self.if_cli)
        self.sh("ip", "-n", c, "addr", "add", ALLOWED + "/24", "dev", self.if_cli)
        for ns, dev in ((s, self.if_srv), (c, self.if_cli), (s, "lo"), (c, "lo")):
            self.sh("ip", "-n", ns, "link", "set", dev, "up")

    def cleanup(self):
        for p in (self.server, self.other):
            if p and p.poll() is None:
                p.kill()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        # Deleting the namespaces deletes the veth pair and with it the
        # attachment; the program and maps go with their last reference.
        for ns in self.made_ns:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=CMD_TIMEOUT)
        if self.mounted:
            subprocess.run(["umount", "-l", self.bpffs], capture_output=True,
                           timeout=CMD_TIMEOUT)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- the server ---------------------------------------------------------

    def start_server(self):
        if self.tesgate:
            conf = os.path.join(self.tmp, "tesgate.conf")
            with open(conf, "w") as f:
                f.write("log_level = debug\nshutdown_grace = 2\nhostname = xdp-test.example\n")
            self.server_log = os.path.join(self.tmp, "tesgate.log")
            log = open(self.server_log, "wb")
            cmd = [self.tesgate, "-c", conf, "--listen", "%s:%d" % (SRV_ADDR, PORT),
                   "--spool", os.path.join(self.tmp, "spool")]
            self.server = subprocess.Popen(["ip", "netns", "exec", self.ns_srv] + cmd,
                                           stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            log.close()
            ready = lambda: "listening on %s:%d" % (SRV_ADDR, PORT) in self.log_text()
        else:
            self.server = subprocess.Popen(
                ["ip", "netns", "exec", self.ns_srv, sys.executable, "-u", "-c", LISTENER,
                 SRV_ADDR, str(PORT)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True)
            threading.Thread(target=self.read_listener, daemon=True).start()
            ready = lambda: any(l == "listening" for l in self.snapshot())
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            if self.server.poll() is not None or time.monotonic() > deadline:
                raise Failure("the server did not start:\n" + self.log_text())
            time.sleep(0.05)

    def start_other(self):
        self.other = subprocess.Popen(
            ["ip", "netns", "exec", self.ns_srv, sys.executable, "-u", "-c", OTHER_SERVER,
             SRV_ADDR, str(OTHER_PORT)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        line = self.other.stdout.readline().strip()
        if line != "listening":
            raise Failure("the other-port server did not start: " + line)

    def other_traffic(self, kind, src):
        """0 answered, 1 timed out, 2 other error."""
        p = subprocess.run(
            ["ip", "netns", "exec", self.ns_cli, sys.executable, "-c", OTHER_CLIENT, kind, src,
             SRV_ADDR, str(OTHER_PORT)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CMD_TIMEOUT)
        if p.returncode == 2:
            print("%s client %s: %s" % (kind, src, p.stderr.strip()), flush=True)
        return p.returncode

    def read_listener(self):
        for line in self.server.stdout:
            with self.lock:
                self.lines.append(line.strip())

    def snapshot(self):
        with self.lock:
            return list(self.lines)

    def log_text(self):
        if self.server_log:
            with open(self.server_log, "rb") as f:
                return f.read().decode("utf-8", "replace")
        return "\n".join(self.snapshot())

    def accepted_from(self, addr):
        """Connections the server saw from addr."""
        if self.tesgate:
            return len(re.findall(r"close peer=%s:\d+" % re.escape(addr), self.log_text()))
        return sum(1 for l in self.snapshot() if l == "accept " + addr)

    def settle(self):
        """Let the server log connections that closed a moment ago."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if all(self.accepted_from(a) >= n for a, n in self.accepts.items()):
                break
            time.sleep(0.05)
        # one more than expected shows in the check that follows or, at the
        # end, in tesgate's exact connection count

    # --- clients and counters ---------------------------------------------

    def connect(self, src, smtp=False):
        """0 connected (and delivered, with smtp), 1 timed out, 2 other error."""
        p = subprocess.run(
            ["ip", "netns", "exec", self.ns_cli, sys.executable, "-c", CLIENT, src, SRV_ADDR,
             str(PORT), str(CONNECT_TIMEOUT if not smtp else 10), "1" if smtp else "0"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CMD_TIMEOUT)
        if p.returncode == 2:
            print("client %s: %s" % (src, p.stderr.strip()), flush=True)
        if p.returncode == 0:
            self.accepts[src] += 1
        return p.returncode

    def stats(self):
        out = self.xdp("stats").stdout
        return {name: int(pk) for name, pk, _ in (l.split() for l in out.splitlines())}

    def expect_accepts(self, what):
        self.settle()
        for a, n in self.accepts.items():
            check(self.accepted_from(a) == n,
                  "%s: the server saw %d connections from %s (expected %d)" %
                  (what, self.accepted_from(a), a, n))

    def spooled(self):
        new = os.path.join(self.tmp, "spool", "new")
        return len([f for f in os.listdir(new) if f.endswith(".eml")]) if os.path.isdir(new) \
            else 0

    # --- the scenario -------------------------------------------------------

    def deliver_allowed(self, what):
        if self.tesgate:
            before = self.spooled()
            check(self.connect(ALLOWED, smtp=True) == 0, what + ": the allowed client delivers")
            check(self.spooled() == before + 1, what + ": its message is in the spool")
        else:
            check(self.connect(ALLOWED) == 0, what + ": the allowed client connects")

    def scenario(self, mode):
        print("--- attach mode %s" % mode, flush=True)
        out = self.xdp("attach", self.if_srv, "--mode", mode, "--ports", str(PORT),
                       ns=self.ns_srv).stdout
        m = re.search(r"attached to \S+: (\w+) mode", out)
        check(m is not None, "attached: " + out.strip())
        if mode != "auto":
            check(m.group(1) == mode, "attached in %s mode" % mode)

        check(self.connect(BLOCKED) == 0, "no entry yet: %s connects" % BLOCKED)
        self.deliver_allowed("no entry yet")

        s0 = self.stats()
        self.xdp("add", BLOCKED)
        check(self.connect(BLOCKED) == 1, "%s listed: its connect times out" % BLOCKED)
        s1 = self.stats()
        check(s1["drop_admin_exact"] - s0["drop_admin_exact"] >= 1,
              "the admin drop counter rose by %d" %
              (s1["drop_admin_exact"] - s0["drop_admin_exact"]))
        self.deliver_allowed("%s listed" % BLOCKED)
        self.expect_accepts("%s listed" % BLOCKED)

        # Only TCP to the SMTP port is the list's business.
        s0 = self.stats()
        for kind in ("tcp", "udp", "icmp"):
            check(self.other_traffic(kind, BLOCKED) == 0,
                  "%s listed: its %s to the server still gets through" % (BLOCKED, kind))
        s1 = self.stats()
        check(s1["pass_other"] - s0["pass_other"] >= 3,
              "pass_other rose by %d" % (s1["pass_other"] - s0["pass_other"]))
        check(s1["drop_admin_exact"] == s0["drop_admin_exact"],
              "nothing of that was dropped")
        check(self.xdp("ports").stdout.strip() == str(PORT), "tes-xdp ports: %d" % PORT)

        # A restart: a new program replaces the old one on the reused maps.
        out = self.xdp("attach", self.if_srv, ns=self.ns_srv).stdout
        check("replaced on" in out and "maps reused" in out, "re-attach: " + out.strip())
        check(self.connect(BLOCKED) == 1, "after the re-attach %s is still dropped" % BLOCKED)

        self.xdp("del", BLOCKED)
        check(self.connect(BLOCKED) == 0, "entry removed: %s connects" % BLOCKED)

        # An entry with a TTL drops until it expires, then passes.
        s0 = self.stats()
        added = time.monotonic()
        self.xdp("add", BLOCKED, "--ttl", "3", "--enforcement")
        check(self.connect(BLOCKED) == 1, "TTL entry: %s dropped" % BLOCKED)
        s1 = self.stats()
        check(s1["drop_blocked"] > s0["drop_blocked"], "the blocked drop counter rose")
        time.sleep(max(0.0, added + 3.3 - time.monotonic()))
        check(self.connect(BLOCKED) == 0, "TTL expired: %s connects" % BLOCKED)
        check(self.stats()["expired_match"] > s1["expired_match"], "expired matches counted")
        check("1 expired" in self.xdp("expire").stdout, "the sweep deleted the expired entry")
        check(self.xdp("list").stdout.strip() == "", "the drop list is empty")

        # A range covers both clients.
        s0 = self.stats()
        self.xdp("add", "198.18.1.0/24")
        check(self.connect(ALLOWED) == 1, "range listed: %s dropped" % ALLOWED)
        check(self.stats()["drop_admin_prefix"] > s0["drop_admin_prefix"],
              "the prefix drop counter rose")
        self.xdp("del", "198.18.1.0/24")
        self.expect_accepts("after the range")

        self.xdp("detach", self.if_srv, ns=self.ns_srv)
        out = self.xdp("status", self.if_srv, ns=self.ns_srv).stdout
        check(out.strip().endswith("none"), "detached: " + out.strip())
        check(self.connect(BLOCKED) == 0, "detached: %s connects" % BLOCKED)

    def finish(self):
        self.expect_accepts("at the end")
        if self.tesgate:
            self.server.send_signal(signal.SIGTERM)
            rc = self.server.wait(timeout=30)
            # a sanitizer report at shutdown ends in a non-zero status
            check(rc == 0, "tesgate exits 0 after SIGTERM (exit %d)" % rc)
            m = re.findall(r"stats connections=(\d+)", self.log_text())
            total = sum(self.accepts.values())
            check(bool(m) and int(m[-1]) == total,
                  "tesgate counted %s connections in all, the clients made %d" %
                  (m[-1] if m else "no", total))


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__)
        return 2
    tes_xdp = sys.argv[1]
    tesgate = sys.argv[2] if len(sys.argv) == 3 else None
    if os.environ.get("TES_XDP_VETH_LISTENER") == "python":
        tesgate = None
    if os.geteuid() != 0:
        print("SKIP: needs root (network namespaces, a BPF filesystem, XDP)")
        return SKIP
    if not shutil.which("ip"):
        print("SKIP: ip(8) from iproute2 is not installed")
        return SKIP
    p = subprocess.run([tes_xdp, "probe"], capture_output=True, text=True, timeout=CMD_TIMEOUT)
    if p.returncode != 0:
        print("SKIP: BPF is not permitted here: " + p.stderr.strip())
        return SKIP

    def on_signal(signum, frame):
        raise SystemExit("killed by signal %d" % signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)

    w = World(tes_xdp, tesgate)
    try:
        w.setup()
        w.start_server()
        w.start_other()
        print("server: %s" % ("tesgate " + tesgate if tesgate else "Python listener"),
              flush=True)
        for mode in ("auto", "generic"):
            w.scenario(mode)
        w.finish()
        print("PASS")
        return 0
    except Failure as e:
        print("FAIL:", e, flush=True)
        print("--- server log\n" + w.log_text()[-4000:])
        return 1
    finally:
        w.cleanup()


if __name__ == "__main__":
    sys.exit(main())
