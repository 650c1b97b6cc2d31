#!/usr/bin/env python3
"""tesgate with io = dpdk over IPv6 on net_tap, the Linux kernel as the
client (issue 18).  The gateway's dpdk_addr holds an IPv4 and an IPv6
address; the kernel side of the tap gets addresses in 198.18.0.0/15 and
fd00::/8 (with nodad: the kernel's own duplicate address detection would
only delay the test).

  main6    the stack's duplicate address detection, then ICMPv6 echo
           (ping -6); over IPv6: smtplib (plain, PIPELINING, BDAT, one of
           2 MB), swaks -6, STARTTLS with smtplib and with
           `openssl s_client -6 -starttls smtp`, every message
           byte-identical in the spool; IPv4 on the same listener at the
           same time; SESSIONS6 sessions (1000 by default, 50 at once),
           one message each, byte-identical; /metrics counting them.
  limits6  max_connections_per_source counts an IPv6 source by its /64:
           two held from one address, a third from another address of the
           same /64 is refused with 421 4.7.0, one from another /64 is not.
  workers6 2 workers: IPv6 segments steered by their 4-tuple; 50 sessions
           at once, byte-identical.
  drop6    tescontrol (test clock, full_block = drop) puts an IPv6 Exchange
           source in drop state: after the probe its SYNs get no SYN-ACK
           and the early-drop counter rises; another address is greeted
           (TESCONTROL and TESCTL from meson).
  impair6  IMPAIR_MESSAGES (10000) messages over IPv6 through the seeded
           impairment on every queue of 2 workers: none lost, none twice,
           byte-identical.  Long: meson runs it on its own.

Needs root and free hugepages: exits 77 otherwise.  Every wait is bounded;
interfaces and processes made here are removed whatever happens.

Usage: test_tesgate_dpdk_v6.py TESGATE [SCENARIO...]
"""
import glob
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap_harness import hugepages_free, ip, skip, verdict, wait_for  # noqa: E402
import test_tesgate_dpdk as base  # noqa: E402
from test_tesgate_dpdk import (IO_TIMEOUT, PORT, Failure, check, make_cert,  # noqa: E402
                               make_message, read_reply, send_bdat, send_pipelined,
                               send_smtplib)


class Gateway6(base.Gateway):
    """A gateway on 198.18.N.2/24 and fd00:18:N::2/64; the kernel side of
    its tap on .1 and ::1."""

    def __init__(self, prog, slot, workers=1, extra="", lcores=None):
        super().__init__(prog, 20 + slot, workers=workers, extra=extra, lcores=lcores)
        net = int(self.ip.split(".")[2])
        self.ip6 = f"fd00:18:{net}::2"
        self.kernel_ip6 = f"fd00:18:{net}::1"
        with open(self.conf) as f:
            text = f.read()
        text = text.replace(f"dpdk_addr = {self.ip}/24",
                            f"dpdk_addr = {self.ip}/24, {self.ip6}/64")
        with open(self.conf, "w") as f:
            f.write(text)

    def start(self, env=None):
        super().start(env)
        ip("-6", "addr", "add", f"{self.kernel_ip6}/64", "dev", self.iface, "nodad")
        return self

    def add_kernel_addr(self, addr):
        ip("-6", "addr", "add", f"{addr}/64", "dev", self.iface, "nodad")

    def wait_v6(self):
        """The stack's address becomes usable once its DAD passed (a
        second): until then ICMPv6 echo to it goes unanswered."""
        wait_for(lambda: icmp6_echo(self.ip6), 20, f"an ICMPv6 echo reply from {self.ip6}")


def icmp6_echo(addr, payload=b"tesgate-v6-echo" * 4):
    """One ICMPv6 echo request (the kernel fills the checksum of a raw
    ICMPv6 socket); True when the reply carries the same identifier,
    sequence and data."""
    ident, seq = os.getpid() & 0xffff, int(time.monotonic() * 1000) & 0xffff
    req = bytes([128, 0, 0, 0]) + ident.to_bytes(2, "big") + seq.to_bytes(2, "big") + payload
    with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as s:
        s.settimeout(1.0)
        s.sendto(req, (addr, 0))
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                data, frm = s.recvfrom(2048)
            except socket.timeout:
                return False
            if frm[0] == addr and data[0] == 129 and data[4:] == req[4:]:
                return True
    return False


def smtp6(gw6, msgs, starttls=False):
    send_smtplib(gw6.ip6, msgs, starttls=starttls)


def concurrent6(gw, base_idx, n, at_once=50):
    msgs = [make_message(base_idx + i, 1500 + 37 * (i % 100)) for i in range(n)]
    errs = []
    lock = threading.Lock()
    nxt = [0]

    def worker():
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= n or len(errs) > 5:
                return
            try:
                send_smtplib(gw.ip6, [msgs[i]])
            except Exception as e:  # noqa: BLE001
                with lock:
                    errs.append(f"session {i}: {e!r}")

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(at_once)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
        if t.is_alive():
            errs.append("a session did not finish within 600 s")
            break
    check(not errs, f"{n} sessions over IPv6, {at_once} at once: {errs[:3]}")
    return msgs


def scenario_main6(prog):
    certdir = tempfile.mkdtemp(prefix="tesgate-dpdk6-cert-")
    cert, key = make_cert(certdir)
    gw = Gateway6(prog, 0, extra=f"tls_cert = {cert}\ntls_key = {key}\n"
                  "max_connections = 4096\n")
    try:
        gw.start()
        gw.wait_v6()
        print("ok: ICMPv6 echo answered once the stack's DAD passed", flush=True)
        m0 = gw.metrics()
        sent = []
        plain = [make_message(i, 2000 + 300 * i) for i in range(7)]
        smtp6(gw, plain)
        sent += plain
        piped = [make_message(100 + i, 5000 + 1000 * i) for i in range(4)]
        send_pipelined(gw.ip6, piped)
        sent += piped
        bdat = [make_message(200 + i, 3000 + 7000 * i) for i in range(3)]
        send_bdat(gw.ip6, bdat)
        sent += bdat
        big = [make_message(300, 2 << 20)]
        smtp6(gw, big)
        sent += big
        gw.wait_spooled(len(sent))
        check(sorted(gw.spooled()) == sorted(sent),
              f"{len(sent)} messages over IPv6 byte-identical in the spool")

        # swaks -6, its message from a file.
        # (no line starting with a dot: what swaks does with those is
        # swaks's business; dot-stuffing is checked with the others)
        sw = make_message(500, 12000).replace(b"\r\n.", b"\r\n-")
        swfile = os.path.join(certdir, "swaks.eml")
        with open(swfile, "wb") as f:
            # swaks ends the data with CRLF . CRLF itself: the file's last
            # line break would be one more line.
            f.write(sw[:-2])
        p = subprocess.run(["swaks", "-6", "--server", gw.ip6, "--port", str(PORT),
                            "--from", "s@example.org", "--to", "b@example.net",
                            "--helo", "swaks.example.org", "--data", swfile,
                            "--timeout", "60"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=120)
        out = p.stdout.decode("utf-8", "replace")
        check(p.returncode == 0 and "<-  250 2.0.0" in out and "<-  221" in out,
              "swaks -6: 250 to the message, 221\n" + out[-1500:])
        sent.append(sw)

        # IPv4 on the same listener meanwhile.
        v4 = [make_message(600 + i, 4000) for i in range(2)]
        send_smtplib(gw.ip, v4)
        sent += v4

        # STARTTLS over IPv6: smtplib, three messages, one of 300 KB.
        tmsgs = [make_message(400 + i, 3000 + 150000 * i) for i in range(3)]
        smtp6(gw, tmsgs, starttls=True)
        sent += tmsgs
        # openssl s_client -6 -starttls smtp: a whole transaction over TLS,
        # one command at a time (s_client sends each line as it reads it).
        om = make_message(450, 8000)
        script = (b"EHLO o.example.org\r\nMAIL FROM:<o@example.org>\r\n"
                  b"RCPT TO:<b@example.net>\r\nDATA\r\n")
        p = subprocess.Popen(["openssl", "s_client", "-6", "-starttls", "smtp", "-connect",
                              f"[{gw.ip6}]:{PORT}", "-brief", "-ign_eof"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
        try:
            # Each command waits for its answer: the session layer takes
            # pipelining only where RFC 2920 allows it.
            outbuf = b""

            def wait_out(pat, secs=30):
                nonlocal outbuf
                deadline = time.monotonic() + secs
                os.set_blocking(p.stdout.fileno(), False)
                while time.monotonic() < deadline:
                    try:
                        chunk = p.stdout.read()
                    except (BlockingIOError, TypeError):
                        chunk = None
                    if chunk:
                        outbuf += chunk
                    if re.search(pat, outbuf):
                        return
                    time.sleep(0.02)
                raise Failure(f"openssl s_client: no {pat!r} in {outbuf[-800:]!r}")

            wait_out(rb"CONNECTION ESTABLISHED|Verification|Protocol version")
            for line, want in zip(script.split(b"\r\n")[:4],
                                  (rb"250 ", rb"250 2\.1\.0", rb"250 2\.1\.5", rb"354")):
                outbuf = b""
                p.stdin.write(line + b"\r\n")
                p.stdin.flush()
                wait_out(want)
            outbuf = b""
            # s_client sends what it is given: the dot-stuffing is ours.
            p.stdin.write(om.replace(b"\r\n.", b"\r\n..") + b".\r\n")
            p.stdin.flush()
            wait_out(rb"250 2\.0\.0")
            outbuf = b""
            p.stdin.write(b"QUIT\r\n")
            p.stdin.flush()
            wait_out(rb"221 2\.0\.0")
        finally:
            p.stdin.close()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        sent.append(om)
        gw.wait_spooled(len(sent))
        got = gw.spooled()
        missing = [re.search(rb"Message-ID: <[^>]*>", m).group(0) for m in sent if m not in got]
        stray = []
        for g in got:
            if g in sent:
                continue
            mid = re.search(rb"Message-ID: <[^>]*>", g)
            ref = next((m for m in sent if mid and mid.group(0) in m), b"")
            k = next((i for i in range(min(len(g), len(ref))) if g[i] != ref[i]),
                     min(len(g), len(ref)))
            stray.append((len(g), len(ref), k, g[max(0, k - 40):k + 40],
                          ref[max(0, k - 40):k + 40]))
        check(not missing and not stray,
              "swaks, IPv4, STARTTLS (smtplib and openssl s_client -6): all "
              f"{len(sent)} byte-identical (missing {missing}, stray {stray[:1]})")

        n = int(os.environ.get("SESSIONS6", "1000"))
        conc = concurrent6(gw, 10000, n)
        gw.wait_spooled(len(sent) + n)
        got = set(gw.spooled())
        check(all(m in got for m in conc), f"{n} IPv6 sessions' messages byte-identical")

        m1 = gw.metrics()

        def delta(name):
            return m1.get(name, 0) - m0.get(name, 0)

        sessions = 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + n
        check(delta("tes_connections_accepted_total") == sessions,
              f"/metrics: {sessions} connections accepted "
              f"({delta('tes_connections_accepted_total')})")
        check(delta('tes_messages_total{outcome="accepted"}') == len(sent) + n,
              f"/metrics: {len(sent) + n} messages accepted")
        check(gw.stop() == 0, "tesgate exits 0")
    finally:
        gw.cleanup()
        shutil.rmtree(certdir, ignore_errors=True)


def connect_from(gw, src):
    s = socket.create_connection((gw.ip6, PORT), timeout=IO_TIMEOUT, source_address=(src, 0))
    return s, s.makefile("rb")


def scenario_limits6(prog):
    gw = Gateway6(prog, 1, extra="max_connections_per_source = 2\n")
    try:
        gw.start()
        net = gw.kernel_ip6.rsplit("::", 1)[0]
        same64 = f"{net}::77"
        gw.add_kernel_addr(same64)
        gw.wait_v6()
        held = []
        for _ in range(2):
            h, hf = connect_from(gw, gw.kernel_ip6)
            check(read_reply(hf)[0] == 220, "held connection greeted")
            held.append((h, hf))
        s, f = connect_from(gw, same64)
        code, lines = read_reply(f)
        check(code == 421 and b"4.7.0" in lines[0],
              f"a third from the same /64 ({same64}): 421 4.7.0: {lines}")
        f.close()
        s.close()
        # Another /64 (on the tap too; the stack answers inbound
        # connections at the SYN's MAC, so it needs no route to it).
        other = f"{net}:1::5"
        gw.add_kernel_addr(other)
        s, f = connect_from(gw, other)
        check(read_reply(f)[0] == 220, f"another /64 ({other}) is not limited")
        f.close()
        s.close()
        for h, hf in held:
            hf.close()
            h.close()
        check(gw.stop() == 0, "tesgate exits 0")
    finally:
        gw.cleanup()


def scenario_workers6(prog):
    gw = Gateway6(prog, 2, workers=2, lcores="--lcores=0@0,1@0,2@1")
    try:
        gw.start()
        gw.wait_v6()
        msgs = concurrent6(gw, 20000, 50)
        gw.wait_spooled(50)
        got = set(gw.spooled())
        check(all(m in got for m in msgs), "50 sessions over IPv6 on 2 workers byte-identical")
        check(gw.stop() == 0, "tesgate exits 0")
    finally:
        gw.cleanup()


def scenario_impair6(prog):
    total = int(os.environ.get("IMPAIR_MESSAGES", "10000"))
    per_conn = 10
    clients = int(os.environ.get("IMPAIR_CLIENTS", "32"))
    seed = int(os.environ.get("IMPAIR_SEED", "42"))
    spec = f"loss=0.05,reorder=0.05,dup=0.01,corrupt=0.001,seed={seed}"
    gw = Gateway6(prog, 3, workers=2, lcores="--lcores=0@0,1@0,2@1",
                  extra=f"dpdk_impair = {spec}\nmax_connections = 4096\n")
    try:
        gw.start()
        # Neighbour discovery is impaired too, and seeded: the kernel gets
        # the stack's MAC statically (the stack answers inbound
        # connections at the SYN's MAC and needs none).
        mac = re.search(r"dpdk: port 0 .* mac ([0-9a-f:]{17})", gw.text()).group(1)
        ip("-6", "neigh", "replace", gw.ip6, "lladdr", mac, "dev", gw.iface, "nud", "permanent")
        time.sleep(1.5)  # the stack's DAD: its address is usable after 1 s
        want = {}
        lock = threading.Lock()
        errs = []
        nxt = [0]
        nconns = (total + per_conn - 1) // per_conn

        def client():
            while True:
                with lock:
                    c = nxt[0]
                    nxt[0] += 1
                if c >= nconns or len(errs) > 5:
                    return
                first = c * per_conn
                msgs = [make_message(10**6 + i, 500 + (i * 7919) % 6000)
                        for i in range(first, min(first + per_conn, total))]
                try:
                    send_smtplib(gw.ip6, msgs)
                except Exception as e:  # noqa: BLE001
                    with lock:
                        errs.append(f"connection {c}: {e!r}")
                    return
                with lock:
                    for m in msgs:
                        want[hashlib.sha256(m).hexdigest()] = m

        t0 = time.monotonic()
        threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
            if t.is_alive():
                errs.append("a client did not finish within 600 s")
                break
        print(f"{len(want)} messages in {time.monotonic() - t0:.1f} s over IPv6, impaired",
              flush=True)
        check(not errs, f"every IPv6 session through the impaired port succeeded: {errs[:3]}")
        check(len(want) == total, f"{total} distinct messages sent and acknowledged")
        gw.wait_spooled(total)
        got = {}
        dup = 0
        for p in glob.glob(os.path.join(gw.spool, "new", "*.eml")):
            with open(p, "rb") as f:
                h = hashlib.sha256(f.read()).hexdigest()
            dup += h in got
            got[h] = p
        check(not [h for h in want if h not in got], "none lost")
        check(not [h for h in got if h not in want], "none altered")
        check(dup == 0, f"none twice ({dup})")
        check(gw.stop() == 0, "tesgate exits 0")
        # The impairment reached IPv6 frames: bits flipped in them too (the
        # TCP checksum over the IPv6 pseudo-header caught every one).
        flips = sum(int(n) for n in re.findall(r"dpdk: impair port \d+ queue \d+ \w+: .* "
                                               r"corrupted (\d+)", gw.text()))
        check(flips > 0, f"IPv6 frames corrupted on the way ({flips} bits flipped)")
    finally:
        gw.cleanup()


def scenario_drop6(prog):
    """tescontrol puts an IPv6 Exchange source in drop state (test clock,
    full_block = drop): after the probe, its SYNs to the stack's IPv6
    address get no SYN-ACK (the stack's early-drop hook asked with the IPv6
    source) and the early-drop counter rises."""
    tescontrol = os.environ.get("TESCONTROL")
    tesctl = os.environ.get("TESCTL")
    check(bool(tescontrol and tesctl),
          "TESCONTROL and TESCTL are set (meson test sets them) for drop6")
    if not tescontrol or not tesctl:
        return
    sys.path.insert(0, os.path.join(base.SRCDIR, "tests", "integration"))
    import ctl_harness as ch  # noqa: E402
    import smtplib
    ch.TESCONTROL = tescontrol
    ch.TESCTL = tesctl
    tmp = tempfile.mkdtemp(prefix="tesgate-dpdk-drop6-")
    policy = os.path.join(tmp, "policy.conf")
    with open(policy, "w") as f:
        f.write("[enforcement]\nfull_block = drop\n")
    tc = ch.Tescontrol(test_clock=ch.T0, conf={"policy_file": policy})
    gw = None
    try:
        tc.start()
        gw = Gateway6(prog, 4, extra=(f"control_socket = {tc.gw_sock}\nfollow_test_clock = yes\n"
                                      "gateway_id = gw-dpdk6\nlog_level = debug\n"))
        tc.ctl("tenant", "add", 1, "Contoso", "--connector", f"{gw.kernel_ip6}/128")
        env = dict(os.environ, TES_ALLOW_TEST_CLOCK="1")
        gw.start(env=env)
        wait_for(lambda: "control: synchronised" in gw.text(), 20, "tesgate synchronised")
        gw.wait_v6()
        with open(os.path.join(base.SRCDIR, "tests", "data", "headers", "ex2016-tls.hdr"),
                  "rb") as f:
            msg = f.read() + b"Body of a simulated Exchange message.\r\n"
        s = smtplib.SMTP(gw.ip6, PORT, timeout=IO_TIMEOUT)
        s.ehlo("ex16-02.contoso.local")
        refused = s.sendmail("grace.okafor@contoso.com", ["ian.hughes@example.net"], msg)
        s.quit()
        check(refused == {} and len(gw.spooled()) == 1,
              "the Exchange sender over IPv6 delivers (first detection)")
        wait_for(lambda: tc.server(1, "ex16-02.contoso.local") is not None, 10,
                 "tescontrol tracks the server")
        tc.advance(91 * 86400)
        gen = tc.generation()
        wait_for(lambda: gw.metrics().get("tes_control_generation", 0) >= gen, 20,
                 "tesgate to apply tescontrol's state")

        def probed():
            try:
                with smtplib.SMTP(gw.ip6, PORT, timeout=IO_TIMEOUT) as p:
                    p.ehlo("ex16-02.contoso.local")
                    p.sendmail("grace.okafor@contoso.com", ["ian.hughes@example.net"], msg)
            except smtplib.SMTPDataError as e:
                return e.smtp_code == 550
            except (smtplib.SMTPException, OSError):
                return False
            return False

        wait_for(probed, 20, "the probe's 550 at the end of the data")

        def dropped():
            try:
                c = socket.create_connection((gw.ip6, PORT), timeout=1.5)
            except (socket.timeout, TimeoutError):
                return True
            except OSError:
                return False
            c.close()
            return False

        m0 = gw.metrics()
        check(dropped(), "fully blocked IPv6 source under drop: no SYN-ACK")
        m1 = gw.metrics()
        check(m1.get("tes_connections_early_dropped_total", 0)
              > m0.get("tes_connections_early_dropped_total", 0),
              "/metrics: early drops rose")
        check(m1.get("tes_connections_accepted_total") == m0.get("tes_connections_accepted_total"),
              "no connection accepted from the dropped IPv6 source")
        # Another address of the same /64 is another source to enforcement.
        net = gw.kernel_ip6.rsplit("::", 1)[0]
        gw.add_kernel_addr(f"{net}::9")
        c = socket.create_connection((gw.ip6, PORT), timeout=IO_TIMEOUT,
                                     source_address=(f"{net}::9", 0))
        check(read_reply(c.makefile("rb"))[0] == 220, "another IPv6 source is greeted")
        c.close()
        check(gw.stop() == 0, "tesgate exits 0")
    finally:
        if gw is not None:
            gw.cleanup()
        tc.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


SCENARIOS = {
    "main6": scenario_main6,
    "limits6": scenario_limits6,
    "workers6": scenario_workers6,
    "impair6": scenario_impair6,
    "drop6": scenario_drop6,
}
DEFAULT = ["main6", "limits6", "workers6", "drop6"]


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    prog = sys.argv[1]
    names = sys.argv[2:] or DEFAULT
    if os.geteuid() != 0:
        skip("needs root (creates a tap device)")
    if hugepages_free() < 128:
        skip("needs free 2 MB hugepages (tools/setup.sh reserves them)")
    failed = []
    for name in names:
        print(f"=== {name}", flush=True)
        try:
            SCENARIOS[name](prog)
        except Exception as e:  # noqa: BLE001
            failed.append(f"{name}: {e!r}")
            print(f"FAIL: {name}: {e!r}", flush=True)
    return verdict(failed)


if __name__ == "__main__":
    sys.exit(main())
