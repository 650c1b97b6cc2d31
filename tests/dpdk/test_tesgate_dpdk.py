#!/usr/bin/env python3
"""tesgate with io = dpdk on net_tap, the Linux kernel as the SMTP client.

tesgate runs its SMTP engine on the userspace stack over a DPDK tap port
(the EAL makes the tap from --vdev); this test addresses the kernel side,
sends 20 messages with smtplib (plain, PIPELINING, BDAT over a raw socket,
one of 2 MB), checks every one lands in the spool byte-identical, then runs
50 sessions at once, then SIGTERM: tesgate must exit 0.  Needs root and free
hugepages: exits 77 otherwise.  Every wait is bounded; the interface is
removed whatever happens.
"""
import glob
import os
import random
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap_harness import hugepages_free, iface_exists, ip, skip, wait_for  # noqa: E402

PORT = 2525
IO_TIMEOUT = 60.0


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


def send_smtplib(addr, msgs):
    s = smtplib.SMTP(addr, PORT, timeout=IO_TIMEOUT)
    try:
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


def spool_contents(spool):
    out = []
    for p in glob.glob(os.path.join(spool, "new", "*.eml")):
        with open(p, "rb") as f:
            out.append(f.read())
    return out


def main():
    if len(sys.argv) < 2:
        print("usage: test_tesgate_dpdk.py path/to/tesgate")
        return 2
    prog = sys.argv[1]
    if os.geteuid() != 0:
        skip("needs root (creates a tap device)")
    if hugepages_free() < 64:
        skip("needs free 2 MB hugepages (tools/setup.sh reserves them)")

    tag = os.getpid() % 100000
    iface = f"tesgw{tag}"
    net = 5 + (tag * 7) % 200
    kernel_ip = f"198.19.{net}.1"
    stack_ip = f"198.19.{net}.2"
    if iface_exists(iface):
        ip("link", "del", "dev", iface, check=False)

    work = tempfile.mkdtemp(prefix="tesgate-dpdk-")
    spool = os.path.join(work, "spool")
    conf = os.path.join(work, "tesgate.conf")
    with open(conf, "w") as f:
        f.write(f"""io = dpdk
dpdk_args = --no-pci --in-memory -l 0 --log-level=user1,info --vdev=net_tap0,iface={iface}
dpdk_addr = {stack_ip}/24
dpdk_port = {PORT}
spool_dir = {spool}
control_socket =
metrics_listen =
hostname = mx.test.example
shutdown_grace = 10
""")
    log = open(os.path.join(work, "tesgate.log"), "w+")
    proc = None
    failed = []
    try:
        cmd = [prog, "-c", conf]
        print("running:", " ".join(cmd))
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

        def listening():
            if proc.poll() is not None:
                raise RuntimeError(f"tesgate exited early ({proc.returncode})")
            with open(log.name, errors="replace") as f:
                return "listening on" in f.read() and iface_exists(iface)

        wait_for(listening, 30, "tesgate to listen")
        ip("addr", "add", f"{kernel_ip}/24", "dev", iface)
        ip("link", "set", "dev", iface, "up")

        sent = []
        plain = [make_message(i, 2000 + 300 * i) for i in range(7)]
        send_smtplib(stack_ip, plain)
        sent += plain
        piped = [make_message(100 + i, 5000 + 1000 * i) for i in range(6)]
        send_pipelined(stack_ip, piped)
        sent += piped
        bdat = [make_message(200 + i, 3000 + 7000 * i) for i in range(6)]
        send_bdat(stack_ip, bdat)
        sent += bdat
        big = [make_message(300, 2 << 20)]
        send_smtplib(stack_ip, big)
        sent += big
        assert len(sent) == 20

        def spooled(n):
            return len(glob.glob(os.path.join(spool, "new", "*.eml"))) >= n

        wait_for(lambda: spooled(20), 30, "20 messages in the spool")
        got = sorted(spool_contents(spool))
        if got != sorted(sent):
            missing = sum(1 for m in sent if m not in got)
            failed.append(f"spool differs from what was sent: {missing} of 20 missing "
                          f"or changed ({len(got)} files)")
        else:
            print("20 messages byte-identical in the spool: ok")

        # 50 sessions at once, one message each.
        errs = []
        conc = [make_message(1000 + i, 4000) for i in range(50)]

        def one(i):
            try:
                send_smtplib(stack_ip, [conc[i]])
            except Exception as e:  # noqa: BLE001
                errs.append(f"session {i}: {e!r}")

        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(IO_TIMEOUT * 2)
            if t.is_alive():
                errs.append("a session did not finish in time")
        failed += errs
        wait_for(lambda: spooled(70), 30, "70 messages in the spool")
        got = spool_contents(spool)
        if any(m not in got for m in conc):
            failed.append("a concurrent message is missing or changed in the spool")
        else:
            print("50 concurrent sessions: ok")

        # An idle session at SIGTERM gets the engine's 421, then the close.
        idle = socket.create_connection((stack_ip, PORT), timeout=IO_TIMEOUT)
        idle_f = idle.makefile("rb")
        assert read_reply(idle_f)[0] == 220
        idle.sendall(b"EHLO idle.example.org\r\n")
        assert read_reply(idle_f)[0] == 250
        proc.send_signal(signal.SIGTERM)
        try:
            code, lines = read_reply(idle_f)
            if code != 421:
                failed.append(f"idle session at SIGTERM got {lines}, not 421")
            elif idle_f.read() != b"":
                failed.append("idle session not closed after its 421")
            else:
                print("idle session at SIGTERM: 421 and close: ok")
        except Exception as e:  # noqa: BLE001
            failed.append(f"idle session at SIGTERM: {e!r}")
        idle_f.close()
        idle.close()
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            failed.append("tesgate did not exit within 30 s of SIGTERM")
            rc = None
        if rc is not None and rc != 0:
            failed.append(f"tesgate exited {rc}")
    except Exception as e:  # noqa: BLE001 - report any failure, then clean up
        failed.append(f"error: {e!r}")
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if iface_exists(iface):
            ip("link", "del", "dev", iface, check=False)
        log.seek(0)
        sys.stdout.write("--- tesgate output ---\n" + log.read()[-20000:])
        log.close()
        shutil.rmtree(work, ignore_errors=True)

    for f in failed:
        print("FAIL:", f)
    if failed:
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
