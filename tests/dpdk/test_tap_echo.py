#!/usr/bin/env python3
"""tes-dpdk-echo on net_tap with the Linux kernel as the TCP peer.

The program runs the userspace stack on a DPDK tap port; this test gives the
kernel side of the tap an address, opens 20 connections at once, pushes
1 MB of random bytes through each in odd-sized chunks and checks that the
same bytes come back (sha256), then stops the program with SIGTERM and checks
that it exits 0 and logs its port counters.

Program options after the program path are passed on, and change what is
checked:
  --queues N     N workers on N lcores over a multi-queue tap (the kernel's
                 tun picks the queue per flow, so segments reach workers that
                 do not own them): every worker's steering counters must be
                 logged, steering must have moved segments, and every worker
                 must have served connections.
  --impair SPEC  seeded loss/reordering/duplication/corruption on the queue
                 in both directions: the bytes must still come back
                 identical, and the impairment counters must show drops,
                 reorders, duplicates and corruptions in both directions.  Needs root and free hugepages
(the tap PMD does not work under --no-huge here): exits 77 otherwise.
Every wait is bounded; the interface is removed whatever happens.
"""
import hashlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap_harness import hugepages_free, iface_exists, ip, skip, verdict, wait_for  # noqa: E402

NCONN = 20
NBYTES = 1 << 20
PORT = 7
IO_TIMEOUT = 60.0


def one_connection(addr, seed, results, idx):
    rng = random.Random(seed)
    data = rng.randbytes(NBYTES)
    want = hashlib.sha256(data).hexdigest()
    got = hashlib.sha256()
    ngot = 0
    err = []
    s = socket.create_connection((addr, PORT), timeout=IO_TIMEOUT)
    s.settimeout(IO_TIMEOUT)

    def sender():
        try:
            off = 0
            while off < NBYTES:
                n = rng.choice((1, 7, 333, 1021, 1459, 4093, 9001, 65521))
                s.sendall(data[off:off + n])
                off += n
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            err.append(f"send: {e}")

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            got.update(b)
            ngot += len(b)
            if ngot > NBYTES:
                break
    except OSError as e:
        err.append(f"recv after {ngot} bytes: {e}")
    t.join(IO_TIMEOUT)
    s.close()
    if t.is_alive():
        err.append("sender did not finish")
    if ngot != NBYTES:
        err.append(f"got {ngot} bytes, sent {NBYTES}")
    elif got.hexdigest() != want:
        err.append("echoed bytes differ (sha256)")
    results[idx] = err


def check_steering(out, nq):
    """Every worker logged its counters; segments were handed between
    workers (the kernel does not know our hash); every worker served."""
    failed = []
    moved = 0
    for q in range(nq):
        m = re.search(rf"worker queue {q}: .* steered_out (\d+) steered_in (\d+) "
                      rf"steer_drops (\d+)", out)
        if not m:
            failed.append(f"no steering counters for worker {q}")
            continue
        moved += int(m.group(1))
        a = re.search(rf"tes-dpdk-echo: worker {q}: accepted (\d+)", out)
        if not a or int(a.group(1)) == 0:
            failed.append(f"worker {q} accepted no connection")
    if moved == 0:
        failed.append("no segment was steered to another worker")
    total = re.search(r"stopping: accepted (\d+)", out)
    if not total or int(total.group(1)) != NCONN:
        failed.append(f"accepted {total.group(1) if total else '?'} connections, "
                      f"want {NCONN}")
    return failed


def check_impairment(out):
    failed = []
    for d in ("rx", "tx"):
        m = re.search(rf"impair port 0 queue 0 {d}: packets (\d+) dropped (\d+) "
                      rf"reordered (\d+) duplicated (\d+) corrupted (\d+)", out)
        if not m:
            failed.append(f"no {d} impairment counters")
            continue
        for name, v in zip(("dropped", "reordered", "duplicated", "corrupted"),
                           m.groups()[1:]):
            if int(v) == 0:
                failed.append(f"{d}: nothing {name}")
    return failed


def main():
    if len(sys.argv) < 2:
        print("usage: test_tap_echo.py path/to/tes-dpdk-echo [program options]")
        return 2
    prog = sys.argv[1]
    extra = sys.argv[2:]  # e.g. --no-csum-offload
    nq = int(extra[extra.index("--queues") + 1]) if "--queues" in extra else 1
    impaired = "--impair" in extra
    if os.geteuid() != 0:
        skip("needs root (creates a tap device)")
    if hugepages_free() < 64:
        skip("needs free 2 MB hugepages (tools/setup.sh reserves them); "
             "the tap PMD does not work under --no-huge")

    # Unique per run so parallel or leftover runs never collide; the
    # subnet too, so two runs never route the same prefix.
    tag = os.getpid() % 100000
    iface = f"tesdp{tag}"
    net = 20 + tag % 10  # 198.18.20-29.0/24: this test's share of the range
    kernel_ip = f"198.18.{net}.1"
    stack_ip = f"198.18.{net}.2"
    if iface_exists(iface):
        ip("link", "del", "dev", iface, check=False)

    log = tempfile.NamedTemporaryFile(prefix="tes-dpdk-echo-", suffix=".log", delete=False)
    proc = None
    failed = []
    try:
        cmd = [prog, "--addr", f"{stack_ip}/24", "--port", str(PORT), *extra, "--",
               "--no-pci", "--in-memory", "-l", ",".join(str(i) for i in range(nq)),
               "--log-level=user1,info",
               f"--vdev=net_tap0,iface={iface}"]
        print("running:", " ".join(cmd))
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

        def listening():
            if proc.poll() is not None:
                raise RuntimeError(f"tes-dpdk-echo exited early ({proc.returncode})")
            with open(log.name, errors="replace") as f:
                return "listening on" in f.read() and iface_exists(iface)

        wait_for(listening, 30, "tes-dpdk-echo to listen")
        ip("addr", "add", f"{kernel_ip}/24", "dev", iface)
        ip("link", "set", "dev", iface, "up")

        # The first connection also proves ARP both ways before the rush.
        results = [None] * NCONN
        one_connection(stack_ip, 0, results, 0)
        if results[0]:
            failed.append(f"first connection: {results[0]}")
        else:
            threads = [threading.Thread(target=one_connection,
                                        args=(stack_ip, i, results, i), daemon=True)
                       for i in range(1, NCONN)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(IO_TIMEOUT * 2)
                if t.is_alive():
                    failed.append("a connection did not finish in time")
            for i, r in enumerate(results):
                if r:
                    failed.append(f"connection {i}: {'; '.join(r)}")
                elif r is None:
                    failed.append(f"connection {i}: no result")
        print(f"{NCONN} connections x {NBYTES} bytes echoed: "
              f"{'FAILED' if failed else 'ok'}")

        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            failed.append("tes-dpdk-echo did not exit within 20 s of SIGTERM")
            rc = None
        if rc is not None and rc != 0:
            failed.append(f"tes-dpdk-echo exited {rc}")
        with open(log.name, errors="replace") as f:
            out = f.read()
        if "port 0 counters: ipackets" not in out:
            failed.append("no port counters in the log")
        if nq > 1:
            failed += check_steering(out, nq)
        if impaired:
            failed += check_impairment(out)
    except Exception as e:  # noqa: BLE001 - report any failure, then clean up
        failed.append(f"error: {e}")
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if iface_exists(iface):
            ip("link", "del", "dev", iface, check=False)
        with open(log.name, errors="replace") as f:
            sys.stdout.write("--- tes-dpdk-echo output ---\n" + f.read())
        log.close()
        os.unlink(log.name)

    return verdict(failed)


if __name__ == "__main__":
    sys.exit(main())
