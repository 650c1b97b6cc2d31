#!/usr/bin/env python3
"""The DPDK workers make no system calls while they carry mail.

tesgate runs with io = dpdk on net_tap (the spool backend, enforcement
tables in place); once it listens, every poll-mode worker thread (named
tes-dp-N) is traced with strace while the Linux kernel sends it mail:
small messages, one large enough to be handed to the spool in blocks,
messages from an Exchange server (detection and its log line), and
STARTTLS sessions when the gateway offers them.
Any system call a worker makes in that window is a failure, listed by
name.  The messages must all be in the spool afterwards, so the window is
known to have carried work.  Needs root, hugepages and strace: exits 77
otherwise.
"""
import glob
import os
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap_harness import hugepages_free, iface_exists, ip, skip, verdict, wait_for  # noqa: E402

PORT = 2525
IO_TIMEOUT = 60.0


EXCHANGE_HOP = ("Received: from EX16-01.contoso.local (10.1.1.41) by EX16-02.contoso.local "
                "(10.1.1.42) with Microsoft SMTP Server (version=TLS1_2, "
                "cipher=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) id 15.1.2507.35; "
                "Thu, 6 Jun 2024 16:59:04 -0500\r\n")


def message(i, size, hop=""):
    head = (hop + f"From: a{i}@example.org\r\nTo: b@example.net\r\nSubject: nosyscall {i}\r\n"
            f"Message-ID: <ns{i}@example.org>\r\n\r\n")
    line = "abcdefghijklmnopqrstuvwxyz0123456789" * 2 + "\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return (head + body).encode()


def worker_tids(pid):
    tids = []
    for task in glob.glob(f"/proc/{pid}/task/*"):
        try:
            with open(os.path.join(task, "comm")) as f:
                if f.read().strip().startswith("tes-dp-"):
                    tids.append(int(os.path.basename(task)))
        except OSError:
            pass
    return sorted(tids)


def tun_fds(pid):
    """The tap PMD's own descriptors: its readv/writev on them are how a
    tap port moves frames (a hardware NIC needs none), so they are not the
    gateway's system calls."""
    fds = set()
    for fd in glob.glob(f"/proc/{pid}/fd/*"):
        try:
            if os.readlink(fd) == "/dev/net/tun":
                fds.add(int(os.path.basename(fd)))
        except OSError:
            pass
    return fds


def own_calls(lines, tap_fds):
    """System calls not made by the tap PMD on its own descriptors.  The
    tap PMD also has the kernel signal it (SIGIO) on received frames, so a
    signal's delivery and rt_sigreturn are its too."""
    mine, pmd = [], 0
    for c in lines:
        name, _, rest = c.partition("(")
        fd = rest.split(",", 1)[0]
        if name in ("readv", "writev", "read", "write") and fd.isdigit() and int(fd) in tap_fds:
            pmd += 1
        elif name == "rt_sigreturn":
            pmd += 1
        else:
            mine.append(c)
    return mine, pmd


def tracer_of(tid):
    """The pid ptrace-attached to thread tid (0: none)."""
    try:
        with open(f"/proc/{tid}/status") as f:
            for line in f:
                if line.startswith("TracerPid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main():
    if len(sys.argv) < 2:
        print("usage: test_dpdk_nosyscall.py path/to/tesgate")
        return 2
    prog = sys.argv[1]
    # meson registers this test only in builds without sanitizers: their
    # allocator maps memory from the workers (jemalloc is not used there)
    if os.geteuid() != 0:
        skip("needs root (creates a tap device, ptrace)")
    if hugepages_free() < 64:
        skip("needs free 2 MB hugepages (tools/setup.sh reserves them)")
    strace = shutil.which("strace")
    if not strace:
        skip("needs strace (tools/setup.sh installs it)")

    tag = os.getpid() % 100000
    iface = f"tesns{tag}"
    net = 5 + (tag * 13) % 200
    kernel_ip = f"198.18.{net}.1"
    stack_ip = f"198.18.{net}.2"
    if iface_exists(iface):
        ip("link", "del", "dev", iface, check=False)
    work = tempfile.mkdtemp(prefix="tesgate-nosys-")
    spool = os.path.join(work, "spool")
    conf = os.path.join(work, "tesgate.conf")
    cert = os.path.join(work, "cert.pem")
    key = os.path.join(work, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=mx.test.example",
                    "-days", "2", "-keyout", key, "-out", cert],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    tls = f"tls_cert = {cert}\ntls_key = {key}\n"
    with open(conf, "w") as f:
        f.write(f"""io = dpdk
dpdk_args = --no-pci --in-memory -l 0-1 --vdev=net_tap0,iface={iface}
dpdk_addr = {stack_ip}/24
dpdk_port = {PORT}
spool_dir = {spool}
control_socket =
metrics_listen =
hostname = mx.test.example
shutdown_grace = 10
{tls}""")
    log = open(os.path.join(work, "tesgate.log"), "w+")
    proc = None
    tracers = []
    failed = []
    try:
        proc = subprocess.Popen([prog, "-c", conf], stdout=log, stderr=subprocess.STDOUT)

        def listening():
            if proc.poll() is not None:
                raise RuntimeError(f"tesgate exited early ({proc.returncode})")
            with open(log.name, errors="replace") as f:
                return "listening on" in f.read() and iface_exists(iface)

        wait_for(listening, 30, "tesgate to listen")
        ip("addr", "add", f"{kernel_ip}/24", "dev", iface)
        ip("link", "set", "dev", iface, "up")
        # One message first: ARP, the first connection and the first spool
        # file are start-up, not the steady state under test.
        s = smtplib.SMTP(stack_ip, PORT, timeout=IO_TIMEOUT)
        s.sendmail("w@example.org", ["b@example.net"], message(0, 1000))
        starttls = "starttls" in s.esmtp_features
        s.quit()

        tids = worker_tids(proc.pid)
        if not tids:
            raise RuntimeError("no tes-dp-N worker thread found")
        for tid in tids:
            out = os.path.join(work, f"strace.{tid}")
            tracers.append((tid, out, subprocess.Popen(
                [strace, "-qq", *(["-k"] if os.environ.get("NOSYSCALL_STACKS") else []),
                 "-o", out, "-p", str(tid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
        # strace has attached when the kernel names it the thread's tracer
        wait_for(lambda: all(tracer_of(tid) == t.pid for tid, _, t in tracers), 30,
                 "strace to attach to every worker")

        sent = 1
        s = smtplib.SMTP(stack_ip, PORT, timeout=IO_TIMEOUT)
        for i in range(1, 61):
            s.sendmail("w@example.org", ["b@example.net"], message(i, 2000))
            sent += 1
        s.sendmail("w@example.org", ["b@example.net"], message(99, 600_000))
        sent += 1
        # Exchange messages: detection, and its log line, on the worker
        for i in range(100, 110):
            s.sendmail("x@contoso.com", ["b@example.net"], message(i, 2000, EXCHANGE_HOP))
            sent += 1
        s.quit()
        if starttls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            for i in range(5):
                s = smtplib.SMTP(stack_ip, PORT, timeout=IO_TIMEOUT)
                s.starttls(context=ctx)
                s.sendmail("t@example.org", ["b@example.net"], message(200 + i, 3000))
                sent += 1
                s.quit()
        else:
            print("note: STARTTLS not offered on this path; traced plain sessions only")

        wait_for(lambda: len(glob.glob(os.path.join(spool, "new", "*.eml"))) >= sent, 30,
                 f"{sent} messages in the spool")
        pmd_total = 0
        for tid, out, t in tracers:
            t.send_signal(signal.SIGINT)
            t.wait(timeout=10)
            err = t.stderr.read().decode(errors="replace").strip()
            # A tracer that failed saw nothing: its silence is not a result.
            # strace detaches on SIGINT and then dies of it.
            if t.returncode not in (0, -signal.SIGINT) or err:
                failed.append(f"strace on worker thread {tid} exited {t.returncode}: {err!r}")
            with open(out) as f:
                lines = f.readlines()
            if os.environ.get("NOSYSCALL_STACKS"):
                # -k: each call is followed by its stack (lines starting " > ");
                # print the stacks of calls other than the PMD's reads and writes
                show = False
                for ln in lines:
                    if not ln.startswith(" > "):
                        show = not ln.startswith(("read", "write"))
                    if show:
                        sys.stdout.write(ln)
                lines = [ln for ln in lines if not ln.startswith(" > ")]
            calls = [ln.strip() for ln in lines if ln.strip() and not ln.startswith(("+++", "---"))]
            calls, pmd = own_calls(calls, tun_fds(proc.pid))
            print(f"worker thread {tid}: {pmd} calls by the tap PMD on its tun descriptors")
            pmd_total += pmd
            if calls:
                names = {}
                for c in calls:
                    n = c.split("(", 1)[0]
                    names[n] = names.get(n, 0) + 1
                failed.append(f"worker thread {tid} made {len(calls)} system calls: {names}; "
                              f"first: {calls[:3]}")
            else:
                print(f"worker thread {tid}: no system call while carrying {sent - 1} messages")
        # Every frame of the window crossed a tun descriptor in a worker: a
        # trace without those calls did not trace the workers.
        if pmd_total < sent - 1:
            failed.append(f"strace saw only {pmd_total} tap PMD calls in the workers for "
                          f"{sent - 1} messages: it did not trace them")
        tracers = []
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        if rc != 0:
            failed.append(f"tesgate exited {rc}")
    except Exception as e:  # noqa: BLE001 - report, then clean up
        failed.append(f"error: {e!r}")
    finally:
        for _, _, t in tracers:
            if t.poll() is None:
                t.send_signal(signal.SIGINT)
                try:
                    t.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    t.kill()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if iface_exists(iface):
            ip("link", "del", "dev", iface, check=False)
        log.seek(0)
        sys.stdout.write("--- tesgate output (tail) ---\n" + log.read()[-6000:])
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    return verdict(failed)


if __name__ == "__main__":
    sys.exit(main())
