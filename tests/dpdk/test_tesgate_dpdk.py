#!/usr/bin/env python3
"""tesgate with io = dpdk on net_tap, the Linux kernel as the SMTP client.

tesgate runs conn.c (the same session layer as the kernel-socket path) on
the userspace stack over a DPDK tap port (the EAL makes the tap from --vdev);
the tests address the kernel side of the tap.  Several gateways are started
in turn, each on its own tap and /24 from 198.18.10.0/24..198.18.19.0/24:

  main     20 messages (smtplib, PIPELINING, BDAT, one of 2 MB) byte-identical
           in the spool; 50 sessions at once; STARTTLS with smtplib (message
           byte-identical) and with `openssl s_client -starttls smtp`;
           /metrics counters moving; an idle session at SIGTERM gets 421.
  limits   idle timeout: 421 4.4.2 then the close; per-source limit: 421
           4.7.0 to the connection over it.
  workers  2 workers (net_tap with 2 queue pairs): 50 sessions at once,
           every message byte-identical.
  drop     tescontrol (test clock, full_block = drop) puts the client's
           address in drop state: after the probe a full block lets through
           (issue 13), its SYN gets no SYN-ACK, the early-drop counter rises
           (only when TESCONTROL and TESCTL are given).

Needs root and free hugepages: exits 77 otherwise.  Every wait is bounded;
the interfaces and processes made here are removed whatever happens.

Usage: test_tesgate_dpdk.py TESGATE [SCENARIO...]
"""
import glob
import hashlib
import os
import random
import re
import resource
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap_harness import hugepages_free, iface_exists, ip, skip, verdict, wait_for  # noqa: E402

PORT = 2525
IO_TIMEOUT = 60.0
HOSTNAME = "mx.test.example"
SRCDIR = os.environ.get(
    "TES_SRCDIR", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)
    print("ok:", what, flush=True)


def make_message(idx, size):
    """CRLF text, some lines starting with a dot, about size octets."""
    rng = random.Random(idx)
    head = (f"From: a{idx}@example.org\r\nTo: b@example.net\r\n"
            f"Subject: dpdk test {idx}\r\nMessage-ID: <m{idx}@example.org>\r\n\r\n")
    lines = []
    n = len(head)
    while n < size:
        w = rng.randint(1, 200)
        line = ("." if rng.random() < 0.05 else "") + \
            "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789 ") for _ in range(w))
        lines.append(line)
        n += len(line) + 2
    return (head + "\r\n".join(lines) + "\r\n").encode()


def tls_ctx():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def send_smtplib(addr, msgs, starttls=False):
    s = smtplib.SMTP(addr, PORT, timeout=IO_TIMEOUT)
    try:
        s.ehlo("client.example.org")
        if starttls:
            code, _ = s.starttls(context=tls_ctx())
            if code != 220:
                raise Failure(f"STARTTLS answered {code}")
            s.ehlo("client.example.org")
        for m in msgs:
            s.sendmail("a@example.org", ["b@example.net"], m)
        s.quit()
    finally:
        s.close()


def read_reply(f):
    lines = []
    while True:
        line = f.readline()
        if not line:
            raise RuntimeError(f"connection closed after {lines}")
        lines.append(line)
        if line[3:4] != b"-":
            return int(line[:3]), lines


def send_pipelined(addr, msgs):
    """Every command of a transaction in one write (PIPELINING)."""
    s = socket.create_connection((addr, PORT), timeout=IO_TIMEOUT)
    f = s.makefile("rb")
    try:
        assert read_reply(f)[0] == 220
        s.sendall(b"EHLO p.example.org\r\n")
        code, lines = read_reply(f)
        assert code == 250 and any(b"PIPELINING" in ln for ln in lines), lines
        for m in msgs:
            stuffed = b"\r\n".join((b"." + ln if ln.startswith(b".") else ln)
                                   for ln in m.split(b"\r\n"))
            s.sendall(b"MAIL FROM:<p@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
            for want in (250, 250, 354):
                code, lines = read_reply(f)
                assert code == want, (want, lines)
            s.sendall(stuffed + b".\r\n")
            code, lines = read_reply(f)
            assert code == 250, lines
        s.sendall(b"QUIT\r\n")
        assert read_reply(f)[0] == 221
    finally:
        f.close()
        s.close()


def send_bdat(addr, msgs):
    s = socket.create_connection((addr, PORT), timeout=IO_TIMEOUT)
    f = s.makefile("rb")
    try:
        assert read_reply(f)[0] == 220
        s.sendall(b"EHLO b.example.org\r\n")
        code, lines = read_reply(f)
        assert code == 250 and any(b"CHUNKING" in ln for ln in lines), lines
        for m in msgs:
            s.sendall(b"MAIL FROM:<c@example.org>\r\n")
            assert read_reply(f)[0] == 250
            s.sendall(b"RCPT TO:<b@example.net>\r\n")
            assert read_reply(f)[0] == 250
            half = len(m) // 2
            s.sendall(b"BDAT %d\r\n" % half + m[:half])
            assert read_reply(f)[0] == 250
            s.sendall(b"BDAT %d LAST\r\n" % (len(m) - half) + m[half:])
            code, lines = read_reply(f)
            assert code == 250, lines
        s.sendall(b"QUIT\r\n")
        assert read_reply(f)[0] == 221
    finally:
        f.close()
        s.close()


def free_tcp_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            pass
    return out


class Gateway:
    """One tesgate with io = dpdk on its own tap and /24."""

    def __init__(self, prog, slot, workers=1, extra="", lcores=None):
        self.prog = prog
        tag = os.getpid() % 10000
        self.iface = f"tgd{tag}s{slot}"
        net = 10 + (tag + slot) % 10
        self.kernel_ip = f"198.18.{net}.1"
        self.ip = f"198.18.{net}.2"
        self.work = tempfile.mkdtemp(prefix="tesgate-dpdk-")
        self.spool = os.path.join(self.work, "spool")
        self.metrics_port = free_tcp_port()
        self.proc = None
        self.log = None
        if iface_exists(self.iface):
            ip("link", "del", "dev", self.iface, check=False)
        lc = lcores or f"-l 0-{workers}"
        self.conf = os.path.join(self.work, "tesgate.conf")
        with open(self.conf, "w") as f:
            f.write(f"""io = dpdk
dpdk_args = --no-pci --in-memory -m 256 {lc} --log-level=user1,info --vdev=net_tap0,iface={self.iface}
dpdk_addr = {self.ip}/24
dpdk_port = {PORT}
workers = {workers}
spool_dir = {self.spool}
metrics_listen = 127.0.0.1:{self.metrics_port}
hostname = {HOSTNAME}
shutdown_grace = 10
{extra if "control_socket" in extra else "control_socket =" + chr(10) + extra}
""")

    def start(self, env=None):
        self.log = open(os.path.join(self.work, "tesgate.log"), "w+")
        cmd = [self.prog, "-c", self.conf]
        print("running:", " ".join(cmd), flush=True)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)

        def listening():
            if self.proc.poll() is not None:
                raise Failure(f"tesgate exited early ({self.proc.returncode}):\n"
                              + self.text()[-4000:])
            return "listening on" in self.text() and iface_exists(self.iface)

        wait_for(listening, 30, "tesgate to listen")
        ip("addr", "add", f"{self.kernel_ip}/24", "dev", self.iface)
        ip("link", "set", "dev", self.iface, "up")
        return self

    def text(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=10) as r:
            return parse_metrics(r.read().decode())

    def spooled(self):
        out = []
        for p in glob.glob(os.path.join(self.spool, "new", "*.eml")):
            with open(p, "rb") as f:
                out.append(f.read())
        return out

    def wait_spooled(self, n):
        wait_for(lambda: len(glob.glob(os.path.join(self.spool, "new", "*.eml"))) >= n, 60,
                 f"{n} messages in the spool")

    def stop(self):
        """SIGTERM; the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise Failure("tesgate did not exit within 30 s of SIGTERM")

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if iface_exists(self.iface):
            ip("link", "del", "dev", self.iface, check=False)
        if self.log:
            self.log.seek(0)
            sys.stdout.write(f"--- tesgate output ({self.iface}) ---\n"
                             + self.log.read()[-6000:])
            self.log.close()
        shutil.rmtree(self.work, ignore_errors=True)


def concurrent(gw, base, n):
    msgs = [make_message(base + i, 4000 + 37 * i) for i in range(n)]
    errs = []

    def one(i):
        try:
            send_smtplib(gw.ip, [msgs[i]])
        except Exception as e:  # noqa: BLE001
            errs.append(f"session {i}: {e!r}")

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(IO_TIMEOUT * 2)
        if t.is_alive():
            errs.append("a session did not finish in time")
    check(not errs, f"{n} sessions at once: {errs[:3]}")
    return msgs


def make_cert(d):
    cert = os.path.join(d, "cert.pem")
    key = os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-sha256", "-subj", "/CN=tesgate-dpdk-test"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


# ---- scenarios -----------------------------------------------------------------

def scenario_main(prog):
    certdir = tempfile.mkdtemp(prefix="tesgate-dpdk-cert-")
    cert, key = make_cert(certdir)
    gw = Gateway(prog, 0, extra=f"tls_cert = {cert}\ntls_key = {key}\n")
    try:
        gw.start()
        m0 = gw.metrics()
        sent = []
        plain = [make_message(i, 2000 + 300 * i) for i in range(7)]
        send_smtplib(gw.ip, plain)
        sent += plain
        piped = [make_message(100 + i, 5000 + 1000 * i) for i in range(6)]
        send_pipelined(gw.ip, piped)
        sent += piped
        bdat = [make_message(200 + i, 3000 + 7000 * i) for i in range(6)]
        send_bdat(gw.ip, bdat)
        sent += bdat
        big = [make_message(300, 2 << 20)]
        send_smtplib(gw.ip, big)
        sent += big
        gw.wait_spooled(20)
        check(sorted(gw.spooled()) == sorted(sent), "20 messages byte-identical in the spool")

        conc = concurrent(gw, 1000, 50)
        gw.wait_spooled(70)
        got = gw.spooled()
        check(all(m in got for m in conc), "50 concurrent messages byte-identical")

        # STARTTLS over the stack: smtplib, three messages, one of 300 KB.
        tmsgs = [make_message(400 + i, 3000 + 150000 * i) for i in range(3)]
        send_smtplib(gw.ip, tmsgs, starttls=True)
        gw.wait_spooled(73)
        got = gw.spooled()
        check(all(m in got for m in tmsgs), "STARTTLS (smtplib): 3 messages byte-identical")

        p = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect",
                            f"{gw.ip}:{PORT}", "-brief", "-ign_eof"],
                           input=b"QUIT\r\n", capture_output=True, timeout=60)
        out = p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")
        check(p.returncode == 0 and "CONNECTION ESTABLISHED" in out
              and "CN = tesgate-dpdk-test" in out and "221 2.0.0" in out,
              "openssl s_client -starttls smtp: handshake, certificate, 221\n" + out[-1500:])

        # The counters of the kernel path, moving on this path.
        m1 = gw.metrics()

        def delta(name):
            return m1.get(name, 0) - m0.get(name, 0)

        sessions = 1 + 1 + 1 + 1 + 50 + 1 + 1
        check(delta("tes_connections_accepted_total") == sessions,
              f"/metrics: {sessions} connections accepted "
              f"({delta('tes_connections_accepted_total')})")
        check(delta("tes_smtp_sessions_total") == sessions, "/metrics: smtp sessions")
        check(delta('tes_messages_total{outcome="accepted"}') == 73,
              "/metrics: 73 messages accepted")
        check(delta('tes_tls_handshakes_total{result="full"}') == 2,
              "/metrics: 2 full TLS handshakes")
        check(delta('tes_smtp_replies_total{class="2xx"}') > 200, "/metrics: 2xx replies")
        check(delta("tes_received_bytes_total") > (2 << 20),
              f"/metrics: bytes received ({delta('tes_received_bytes_total')})")

        # An idle session at SIGTERM gets the engine's 421, then the close.
        idle = socket.create_connection((gw.ip, PORT), timeout=IO_TIMEOUT)
        idle_f = idle.makefile("rb")
        check(read_reply(idle_f)[0] == 220, "idle session greeted")
        idle.sendall(b"EHLO idle.example.org\r\n")
        check(read_reply(idle_f)[0] == 250, "idle session EHLO")
        gw.proc.send_signal(signal.SIGTERM)
        code, lines = read_reply(idle_f)
        check(code == 421, f"idle session at SIGTERM: {lines}")
        check(idle_f.read() == b"", "closed after its 421")
        idle_f.close()
        idle.close()
        rc = gw.proc.wait(timeout=30)
        check(rc == 0, f"tesgate exited {rc}")
        # The workers' log lines go through their queues (no write(2) on a
        # worker) and all come out, the last ones at exit.
        n = len(re.findall(r" info  message peer=\S+ result=\"250 ", gw.text()))
        check(n == 73, f"a log line for each of the 73 messages ({n})")
    finally:
        gw.cleanup()
        shutil.rmtree(certdir, ignore_errors=True)


def scenario_limits(prog):
    gw = Gateway(prog, 1, extra="idle_timeout = 2\nmax_connections_per_source = 2\n")
    try:
        gw.start()
        # Idle timeout: the 421 of the kernel path, then the close.
        s = socket.create_connection((gw.ip, PORT), timeout=IO_TIMEOUT)
        f = s.makefile("rb")
        check(read_reply(f)[0] == 220, "greeted")
        s.sendall(b"EHLO idle.example.org\r\n")
        check(read_reply(f)[0] == 250, "EHLO")
        code, lines = read_reply(f)
        check(code == 421 and lines[0].startswith(
            f"421 4.4.2 {HOSTNAME} Idle timeout".encode()), f"idle timeout: {lines}")
        check(f.read() == b"", "closed after the idle 421")
        f.close()
        s.close()

        # Per-source limit: two held, the third refused with 421 4.7.0.
        held = []
        for _ in range(2):
            h = socket.create_connection((gw.ip, PORT), timeout=IO_TIMEOUT)
            hf = h.makefile("rb")
            check(read_reply(hf)[0] == 220, "held connection greeted")
            held.append((h, hf))
        r = socket.create_connection((gw.ip, PORT), timeout=IO_TIMEOUT)
        rf = r.makefile("rb")
        code, lines = read_reply(rf)
        check(code == 421 and lines[0].startswith(
            f"421 4.7.0 {HOSTNAME} Too many connections from your address".encode()),
            f"third connection from one source: {lines}")
        check(rf.read() == b"", "closed after the source 421")
        rf.close()
        r.close()
        for h, hf in held:
            h.sendall(b"QUIT\r\n")
            check(read_reply(hf)[0] == 221, "held connection QUIT")
            hf.close()
            h.close()
        # The slots are free again.
        send_smtplib(gw.ip, [make_message(600, 2000)])
        gw.wait_spooled(1)
        m = gw.metrics()
        check(m.get('tes_connections_refused_total{reason="source"}') == 1,
              "/metrics: one refusal by source")
        check(gw.stop() == 0, "tesgate exits 0")
    finally:
        gw.cleanup()


def scenario_workers(prog):
    # The machine may have 2 CPUs: the main lcore (which does not poll)
    # shares CPU 0 with worker 1, worker 2 has CPU 1.
    gw = Gateway(prog, 2, workers=2, lcores="--lcores=0@0,1@0,2@1")
    try:
        gw.start()
        check(re.search(r"workers 2\b", gw.text()) is not None, "tesgate runs 2 workers")
        msgs = concurrent(gw, 2000, 50)
        gw.wait_spooled(50)
        got = gw.spooled()
        check(sorted(got) == sorted(msgs), "2 workers: 50 messages byte-identical")
        check(gw.stop() == 0, "tesgate exits 0")
        wq = re.findall(r"worker queue (\d+): rx (\d+)", gw.text())
        print("per-queue rx:", wq, flush=True)
        check(len(wq) == 2 and all(int(n) > 0 for _, n in wq),
              "both worker queues carried packets")
    finally:
        gw.cleanup()


def scenario_drop(prog):
    tescontrol = os.environ.get("TESCONTROL")
    tesctl = os.environ.get("TESCTL")
    # meson sets both; a run by hand without them is a failure, not a pass
    check(bool(tescontrol and tesctl),
          "TESCONTROL and TESCTL are set (meson test sets them) for the drop scenario")
    if not tescontrol or not tesctl:
        return
    sys.path.insert(0, os.path.join(SRCDIR, "tests", "integration"))
    import ctl_harness as ch  # noqa: E402
    ch.TESCONTROL = tescontrol
    ch.TESCTL = tesctl
    tmp = tempfile.mkdtemp(prefix="tesgate-dpdk-drop-")
    policy = os.path.join(tmp, "policy.conf")
    with open(policy, "w") as f:
        f.write("[enforcement]\nfull_block = drop\n")
    tc = ch.Tescontrol(test_clock=ch.T0, conf={"policy_file": policy})
    gw = None
    try:
        tc.start()
        gw = Gateway(prog, 3, extra=(f"control_socket = {tc.gw_sock}\nfollow_test_clock = yes\n"
                                     "gateway_id = gw-dpdk\nlog_level = debug\n"))
        tc.ctl("tenant", "add", 1, "Contoso", "--connector", f"{gw.kernel_ip}/32")
        env = dict(os.environ, TES_ALLOW_TEST_CLOCK="1")
        gw.start(env=env)
        wait_for(lambda: "control: synchronised" in gw.text(), 20, "tesgate synchronised")
        with open(os.path.join(SRCDIR, "tests", "data", "headers", "ex2016-tls.hdr"), "rb") as f:
            msg = f.read() + b"Body of a simulated Exchange message.\r\n"
        s = smtplib.SMTP(gw.ip, PORT, timeout=IO_TIMEOUT)
        s.ehlo("ex16-02.contoso.local")
        refused = s.sendmail("grace.okafor@contoso.com", ["ian.hughes@example.net"], msg)
        s.quit()
        check(refused == {} and len(gw.spooled()) == 1,
              "the Exchange sender delivers (first detection)")
        wait_for(lambda: tc.server(1, "ex16-02.contoso.local") is not None, 10,
                 "tescontrol tracks the server")
        tc.advance(91 * 86400)
        # the verdict is judged once the gateway has applied all of it
        gen = tc.generation()
        wait_for(lambda: gw.metrics().get("tes_control_generation", 0) >= gen, 20,
                 "tesgate to apply tescontrol's state")

        def probed():
            # issue 13: while a probe is due (an hour after the server's last
            # message was read) the source is let in and one transaction read
            # to its headers: the 550 comes at the end of the data
            try:
                with smtplib.SMTP(gw.ip, PORT, timeout=IO_TIMEOUT) as p:
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
                c = socket.create_connection((gw.ip, PORT), timeout=1.5)
            except (socket.timeout, TimeoutError):
                return True
            except OSError:
                return False
            c.close()
            return False

        m0 = gw.metrics()
        check(dropped(), "fully blocked source under drop: connect times out, no SYN-ACK")
        m1 = gw.metrics()
        check(m1.get("tes_connections_early_dropped_total", 0)
              > m0.get("tes_connections_early_dropped_total", 0),
              "/metrics: early drops rose")
        check(m1.get("tes_connections_accepted_total") == m0.get("tes_connections_accepted_total"),
              "no connection accepted from the dropped source")
        check(gw.stop() == 0, "tesgate exits 0")
    finally:
        if gw is not None:
            gw.cleanup()
        tc.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def scenario_impair(prog):
    """IMPAIR_MESSAGES messages through a lossy, reordering, duplicating and
    corrupting port (dpdk_impair on every queue of 2 workers): every one
    must be in the spool, byte-identical (sha256), none twice."""
    total = int(os.environ.get("IMPAIR_MESSAGES", "10000"))
    per_conn = 10
    clients = int(os.environ.get("IMPAIR_CLIENTS", "32"))
    seed = int(os.environ.get("IMPAIR_SEED", "42"))
    spec = f"loss=0.05,reorder=0.05,dup=0.01,corrupt=0.001,seed={seed}"
    workers = int(os.environ.get("IMPAIR_WORKERS", "2"))
    gw = Gateway(prog, 4, workers=workers,
                 lcores="--lcores=0@0,1@0,2@1" if workers == 2 else None,
                 extra=f"dpdk_impair = {spec}\nmax_connections = 4096\n")
    try:
        gw.start()
        check(f"dpdk_impair on queue {workers - 1}: {spec}" in gw.text(),
              "impairment on every queue")
        # ARP is impaired too, and seeded: a lost reply would be lost on
        # every run.  The kernel gets the stack's MAC statically.
        mac = re.search(r"dpdk: port 0 .* mac ([0-9a-f:]{17})", gw.text()).group(1)
        ip("neigh", "replace", gw.ip, "lladdr", mac, "dev", gw.iface, "nud", "permanent")
        want = {}
        lock = threading.Lock()
        errs = []
        next_conn = [0]
        nconns = (total + per_conn - 1) // per_conn
        t0 = time.monotonic()

        def client():
            while True:
                with lock:
                    c = next_conn[0]
                    next_conn[0] += 1
                if c >= nconns or len(errs) > 5:
                    return
                first = c * per_conn
                msgs = [make_message(10**6 + i, 500 + (i * 7919) % 6000)
                        for i in range(first, min(first + per_conn, total))]
                try:
                    send_smtplib(gw.ip, msgs)
                except Exception as e:  # noqa: BLE001
                    with lock:
                        errs.append(f"connection {c}: {e!r}")
                    return
                with lock:
                    for m in msgs:
                        want[hashlib.sha256(m).hexdigest()] = m

        threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
            if t.is_alive():
                errs.append("a client did not finish within 600 s")
                break
        took = time.monotonic() - t0
        print(f"{len(want)} messages in {took:.1f} s through the impaired port", flush=True)
        if errs:
            try:
                for k, v in sorted(gw.metrics().items()):
                    if v and re.match(r"tes_(stack|connections|dpdk_worker|spool|deliver|mess)",
                                      k):
                        print(f"  {k} {v:g}")
            except Exception as e:  # noqa: BLE001
                print("no metrics:", e)
            print("spool new/:", len(os.listdir(os.path.join(gw.spool, "new"))), "tmp/:",
                  len(os.listdir(os.path.join(gw.spool, "tmp"))), flush=True)
            subprocess.run(["ip", "neigh", "show", "dev", gw.iface], timeout=10)
        check(not errs, f"every session through the impaired port succeeded: {errs[:3]}")
        check(len(want) == total, f"{total} distinct messages sent and acknowledged")
        gw.wait_spooled(total)
        got = {}
        dup = 0
        for p in glob.glob(os.path.join(gw.spool, "new", "*.eml")):
            with open(p, "rb") as f:
                h = hashlib.sha256(f.read()).hexdigest()
            dup += h in got
            got[h] = p
        missing = [h for h in want if h not in got]
        stray = [h for h in got if h not in want]
        check(not missing, f"none lost: {len(missing)} of {total} missing")
        for h in stray[:3]:
            with open(got[h], "rb") as f:
                bad = f.read()
            mid = re.search(rb"Message-ID: <m(\d+)@", bad)
            ref = make_message(int(mid.group(1)), 0) if mid else b""
            for m in want.values():
                if mid and mid.group(0) in m:
                    ref = m
            i = next((k for k in range(min(len(bad), len(ref))) if bad[k] != ref[k]),
                     min(len(bad), len(ref)))
            print(f"stray {got[h]}: {len(bad)} octets, sent {len(ref)}; first difference at "
                  f"{i}: got {bad[max(0, i - 40):i + 40]!r} sent {ref[max(0, i - 40):i + 40]!r}",
                  flush=True)
        check(not stray, f"none corrupted: {len(stray)} spool files match no message sent")
        check(dup == 0, f"none stored twice ({dup})")
        check(gw.stop() == 0, "tesgate exits 0")
        print("\n".join(ln for ln in gw.text().splitlines() if "impair" in ln), flush=True)
    finally:
        gw.cleanup()


def session_at_barrier(addr, msg, barrier, errs, i):
    """Connect, greeting, EHLO; wait until every session is open at once;
    then one message and QUIT."""
    try:
        with socket.create_connection((addr, PORT), timeout=IO_TIMEOUT * 2) as s:
            f = s.makefile("rb")
            check_code = read_reply(f)[0]
            if check_code != 220:
                raise Failure(f"greeting {check_code}")
            s.sendall(b"EHLO many.example.org\r\n")
            read_reply(f)
            barrier.wait(timeout=IO_TIMEOUT * 3)
            stuffed = b"\r\n".join((b"." + ln if ln.startswith(b".") else ln)
                                   for ln in msg.split(b"\r\n"))
            for cmd, want in ((b"MAIL FROM:<m@example.org>\r\n", 250),
                              (b"RCPT TO:<b@example.net>\r\n", 250), (b"DATA\r\n", 354),
                              (stuffed + b".\r\n", 250), (b"QUIT\r\n", 221)):
                s.sendall(cmd)
                code, lines = read_reply(f)
                if code != want:
                    raise Failure(f"{cmd[:10]!r} answered {lines}")
    except Exception as e:  # noqa: BLE001
        errs.append(f"session {i}: {e!r}")
        try:
            barrier.abort()
        except threading.BrokenBarrierError:
            pass


def scenario_interop(prog):
    """Real peers over the stack: swaks, Postfix's smtp-source, a 20 MB
    message, and 1000 sessions open at the same time."""
    for tool in ("swaks", "smtp-source"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            raise Failure(f"{tool} is not installed (tools/setup.sh installs it)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    gw = Gateway(prog, 5, extra="max_connections = 2000\nmax_connections_per_source = 1500\n")
    try:
        gw.start()
        stored = 0
        # swaks: its own default message, plus a marker header
        out = subprocess.run(["swaks", "--server", gw.ip, "--port", str(PORT),
                              "--from", "s@example.org", "--to", "b@example.net",
                              "--add-header", "X-Interop: swaks-over-dpdk"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             timeout=120)
        check(out.returncode == 0 and "250 2.0.0 Ok: queued" in out.stdout,
              "swaks: message queued")
        stored += 1
        gw.wait_spooled(stored)
        check(any(b"X-Interop: swaks-over-dpdk" in m for m in gw.spooled()),
              "swaks message in the spool with its header")

        # smtp-source: 200 messages, 10 sessions in parallel at any time
        src = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
        out = subprocess.run([src, "-l", "3000", "-m", "200", "-s", "10",
                              "-f", "ss@example.org", "-t", "b@example.net",
                              f"{gw.ip}:{PORT}"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             timeout=300)
        check(out.returncode == 0,
              "smtp-source exits 0" + ("" if out.returncode == 0 else f": {out.stdout[-300:]!r}"))
        stored += 200
        gw.wait_spooled(stored)
        check(sum(1 for m in gw.spooled() if b"ss@example.org" in m) == 200,
              "smtp-source: 200 messages in the spool")

        # 20 MB, byte-identical
        big = make_message(9000, 20 << 20)
        send_smtplib(gw.ip, [big])
        stored += 1
        gw.wait_spooled(stored)
        check(big in gw.spooled(), "20 MB message byte-identical in the spool")

        # 1000 sessions open at once, then a message on each
        n = 1000
        msgs = [make_message(10000 + i, 1500 + (i % 97) * 11) for i in range(n)]
        barrier = threading.Barrier(n)
        errs = []
        threads = [threading.Thread(target=session_at_barrier,
                                    args=(gw.ip, msgs[i], barrier, errs, i), daemon=True)
                   for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(IO_TIMEOUT * 5)
        check(not errs and not any(t.is_alive() for t in threads),
              f"{n} sessions open at once, one message each ({errs[:3]})")
        stored += n
        gw.wait_spooled(stored)
        got = set(gw.spooled())
        check(all(m in got for m in msgs), f"{n} concurrent messages byte-identical in the spool")
        m = gw.metrics()
        print("sessions:", {k: v for k, v in m.items() if "session" in k}, flush=True)
        check(gw.stop() == 0, "tesgate exits 0")
    finally:
        gw.cleanup()


SCENARIOS = {
    "main": scenario_main,
    "limits": scenario_limits,
    "workers": scenario_workers,
    "drop": scenario_drop,
    "impair": scenario_impair,  # long: run on its own (meson: dpdk_tesgate_impair)
    "interop": scenario_interop,  # meson: dpdk_tesgate_interop
}
DEFAULT = ["main", "limits", "workers", "drop"]


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
        except Exception as e:  # noqa: BLE001 - report, go on with the next
            failed.append(f"{name}: {e!r}")
            print(f"FAIL: {name}: {e!r}", flush=True)
    return verdict(failed)


if __name__ == "__main__":
    sys.exit(main())
