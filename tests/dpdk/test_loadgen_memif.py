#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""tes-loadgen against tesgate (io = dpdk), two processes over net_memif.

tesgate is the memif server (spool delivery), tes-loadgen the memif client.
Checks what a user of the generator relies on:
  - 2000 messages over 20 sessions x 10 messages per connection: the JSON
    summary counts 2000 ok, no failure, at least 200 connections all closed
    in order, and the spool holds exactly 2000 messages, each byte-identical
    to what `tes-loadgen --print-message` says, with every transaction
    number 0..1999 once (none lost, none twice);
  - a message over tesgate's max_message_size: every transaction is counted
    under the server's reply code, nothing is spooled, exit status 1;
  - open loop (--rate) for --duration: every started transaction succeeds and
    the spool grows by exactly the number reported ok;
  - STARTTLS (when tesgate on DPDK offers it; skipped with a message
    otherwise): 200 messages, 20 TLS handshakes, all spooled.
Needs root and free hugepages: exits 77 otherwise.  Every wait is bounded;
the temporary directory (memif socket, spool) is removed whatever happens.
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap_harness import hugepages_free, skip, verdict, wait_for  # noqa: E402

PORT = 2525
NET = "198.18.31"  # helper H3's range
GW_IP = f"{NET}.1"
RUN_TIMEOUT = 200


def write_conf(work, name, extra):
    sock = os.path.join(work, f"memif-{name}.sock")
    spool = os.path.join(work, f"spool-{name}")
    conf = os.path.join(work, f"tesgate-{name}.conf")
    # Two lcores on CPU 0: tesgate versions that run the stack on a worker
    # lcore need the main lcore besides it; older ones use lcore 0 only.
    with open(conf, "w") as f:
        f.write(f"""io = dpdk
dpdk_args = --no-pci --in-memory -m 128 --lcores=0@0,1@0 --file-prefix=tglg{os.getpid()}{name} \
--vdev=net_memif0,role=server,socket={sock},socket-abstract=no
dpdk_addr = {GW_IP}/24
dpdk_port = {PORT}
spool_dir = {spool}
control_socket =
metrics_listen =
hostname = mx.test.example
shutdown_grace = 5
max_connections_per_source = 0
max_message_size = 16384
max_header_bytes = 8192
""" + extra)
    return conf, sock, spool


class Gateway:
    def __init__(self, prog, work, name, extra=""):
        self.conf, self.sock, self.spool = write_conf(work, name, extra)
        self.logpath = os.path.join(work, f"tesgate-{name}.log")
        self.log = open(self.logpath, "w+")
        self.proc = subprocess.Popen([prog, "-c", self.conf], stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def text(self):
        with open(self.logpath, errors="replace") as f:
            return f.read()

    def wait_listening(self):
        def up():
            if self.proc.poll() is not None:
                return True
            return "listening on" in self.text() and os.path.exists(self.sock)
        wait_for(up, 30, "tesgate to listen")
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()

    def spooled(self):
        out = []
        for p in glob.glob(os.path.join(self.spool, "new", "*.eml")):
            with open(p, "rb") as f:
                out.append(f.read())
        return out


def run_loadgen(prog, gw, tag, args):
    # One client address per run: a new process reusing the tuples of the
    # last one while the server holds them in TIME_WAIT may be kept out.
    lg_ip = f"{NET}.{10 + ord(tag) - ord('a')}"
    eal = (f"--no-pci --in-memory -m 128 -l 1 --file-prefix=lg{os.getpid()}{tag} "
           f"--vdev=net_memif0,role=client,socket={gw.sock},socket-abstract=no")
    cmd = [prog, "--server", f"{GW_IP}:{PORT}", "--addr", f"{lg_ip}/24", "--eal", eal,
           "--json", "--timeout", "30"] + args
    print("running:", " ".join(cmd[:5]), f"--eal '{eal}'", " ".join(cmd[7:]))
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=RUN_TIMEOUT)
    err = p.stderr.decode(errors="replace")
    summary = None
    # The port layer prints its set-up lines on stdout too: the JSON summary
    # is the last line.
    lines = p.stdout.decode(errors="replace").strip().splitlines()
    try:
        summary = json.loads(lines[-1]) if lines else None
    except ValueError:
        pass
    return p.returncode, summary, err


def expected_for(template, seq):
    """The template (message 0) with its transaction number replaced."""
    return template.replace(b"<lg000000000000@", b"<lg%012d@" % seq, 1)


def check_spool(msgs, template, n):
    """None when msgs are exactly messages 0..n-1, else what is wrong."""
    if len(msgs) != n:
        return f"{len(msgs)} messages in the spool, expected {n}"
    seen = set()
    for m in msgs:
        mo = re.search(rb"<lg(\d{12})@loadgen\.invalid>", m)
        if not mo:
            return "a spooled message has no tes-loadgen Message-ID"
        seq = int(mo.group(1))
        if seq in seen:
            return f"message {seq} spooled twice"
        seen.add(seq)
        if m != expected_for(template, seq):
            return f"message {seq} differs from what tes-loadgen sent"
    if seen != set(range(n)):
        return "transaction numbers are not 0..n-1"
    return None


def main():
    if len(sys.argv) < 3:
        print("usage: test_loadgen_memif.py path/to/tes-loadgen path/to/tesgate")
        return 2
    lg, tesgate = sys.argv[1], sys.argv[2]
    if os.geteuid() != 0:
        skip("needs root (DPDK with hugepages)")
    if hugepages_free() < 160:
        skip("needs 160 free 2 MB hugepages (tools/setup.sh reserves them)")
    src = os.path.dirname(os.path.abspath(__file__))
    hdr = os.path.join(src, "..", "data", "headers", "ex2016-tls.hdr")

    # tmpfs when there is one: the spool's fsyncs on a shared disk make the
    # run slow, not more telling.
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    work = tempfile.mkdtemp(prefix="tes-loadgen-memif-", dir=shm)
    failed = []
    gws = []
    try:
        # -- plain: 2000 messages, 20 sessions x 10 per connection ----------
        common = ["--header-file", hdr, "--size", "2k"]
        template = subprocess.run([lg, "--print-message"] + common, check=True,
                                  stdout=subprocess.PIPE, timeout=30).stdout
        assert len(template) == 2048, len(template)
        gw = Gateway(tesgate, work, "plain")
        gws.append(gw)
        if not gw.wait_listening():
            raise RuntimeError(f"tesgate exited early:\n{gw.text()[-3000:]}")
        rc, s, err = run_loadgen(lg, gw, "a", common + [
            "--sessions", "20", "--messages-per-conn", "10", "--count", "2000"])
        if rc != 0 or not s:
            failed.append(f"plain run: exit {rc}, stderr:\n{err[-3000:]}")
        else:
            t, c = s["transactions"], s["connections"]
            if (t["ok"], t["failed"], t["started"]) != (2000, 0, 2000):
                failed.append(f"plain run: transactions {t}")
            if c["opened"] < 200 or c["closed"] != c["opened"] or c["failed"] or c["dropped"]:
                failed.append(f"plain run: connections {c}")
            if s["errors"] or s["failed"]:
                failed.append(f"plain run: errors {s['errors']}, failed {s['failed']}")
            if not 0 < s["latency_us"]["p50"] <= s["latency_us"]["p99"] <= s["latency_us"]["max"]:
                failed.append(f"plain run: latency {s['latency_us']}")
            if s["packets"]["in"] == 0 or s["packets"]["out"] == 0:
                failed.append(f"plain run: packets {s['packets']}")
            print(f"plain: {t['ok']} ok over {c['opened']} connections, "
                  f"p50 {s['latency_us']['p50']} us")
        wait_for(lambda: len(gw.spooled()) >= 2000, 30, "2000 messages in the spool")
        why = check_spool(gw.spooled(), template, 2000)
        if why:
            failed.append("plain run: " + why)
        else:
            print("spool: 2000 messages, byte-identical, each once: ok")

        # -- over the server's size limit: counted by reply code, exit 1 ----
        before = len(gw.spooled())
        rc, s, err = run_loadgen(lg, gw, "b", [
            "--sessions", "2", "--messages-per-conn", "5", "--count", "10", "--size", "20k"])
        if rc != 1 or not s:
            failed.append(f"oversize run: exit {rc} (expected 1), stderr:\n{err[-2000:]}")
        else:
            t = s["transactions"]
            codes = {k: v for k, v in s["errors"].items() if k.isdigit()}
            if t["ok"] != 0 or t["failed"] != 10 or sum(codes.values()) != 10 \
                    or not all(k.startswith("5") for k in codes):
                failed.append(f"oversize run: transactions {t}, errors {s['errors']}")
            elif not re.search(r"errors\s+5\d\d: 10", err):
                failed.append(f"oversize run: text summary lacks the code count:\n{err}")
            else:
                print(f"oversize: 10 transactions failed with {codes}, exit 1: ok")
        time.sleep(0.5)
        if len(gw.spooled()) != before:
            failed.append("oversize run: something was spooled")

        # -- open loop for a duration: whatever ran, ran cleanly ---------------
        before = len(gw.spooled())
        rc, s, err = run_loadgen(lg, gw, "d", [
            "--sessions", "4", "--messages-per-conn", "3", "--rate", "300", "--duration", "1"])
        if rc != 0 or not s:
            failed.append(f"open-loop run: exit {rc}, stderr:\n{err[-2000:]}")
        else:
            t = s["transactions"]
            if t["ok"] == 0 or t["failed"] or t["ok"] != t["started"] or s["rate_target"] != 300:
                failed.append(f"open-loop run: transactions {t}, rate {s['rate_target']}")
            else:
                wait_for(lambda: len(gw.spooled()) >= before + t["ok"], 30,
                         "the open-loop messages in the spool")
                if len(gw.spooled()) != before + t["ok"]:
                    failed.append(f"open-loop run: {len(gw.spooled()) - before} spooled, "
                                  f"{t['ok']} reported ok")
                else:
                    print(f"open loop: {t['ok']} transactions in 1 s at --rate 300, "
                          "all spooled: ok")
        gw.stop()

        # -- STARTTLS ------------------------------------------------------
        key = os.path.join(work, "key.pem")
        cert = os.path.join(work, "cert.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=mx.test.example"],
                       check=True, timeout=30, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        gw = Gateway(tesgate, work, "tls", f"tls_cert = {cert}\ntls_key = {key}\n")
        gws.append(gw)
        if not gw.wait_listening():
            print("SKIP (STARTTLS case): tesgate with io = dpdk does not start with a "
                  "certificate: " + gw.text().strip().splitlines()[-1])
        else:
            rc, s, err = run_loadgen(lg, gw, "c", common + [
                "--sessions", "20", "--messages-per-conn", "10", "--count", "200",
                "--starttls"])
            if s and s["errors"].get("no-starttls"):
                print("SKIP (STARTTLS case): tesgate on DPDK does not advertise STARTTLS")
            elif rc != 0 or not s:
                failed.append(f"STARTTLS run: exit {rc}, stderr:\n{err[-3000:]}")
            else:
                t, c = s["transactions"], s["connections"]
                if t["ok"] != 200 or t["failed"] or c["tls_handshakes"] != c["opened"] \
                        or c["opened"] < 20:
                    failed.append(f"STARTTLS run: transactions {t}, connections {c}")
                wait_for(lambda: len(gw.spooled()) >= 200, 30, "200 messages in the spool")
                why = check_spool(gw.spooled(), template, 200)
                if why:
                    failed.append("STARTTLS run: " + why)
                else:
                    print(f"STARTTLS: 200 messages over {c['tls_handshakes']} TLS sessions, "
                          "spooled byte-identical: ok")
    except Exception as e:  # noqa: BLE001 - report any failure, then clean up
        failed.append(f"error: {e!r}")
    finally:
        for gw in gws:
            gw.stop()
            if failed:
                sys.stdout.write(f"--- {gw.logpath} ---\n" + gw.text()[-5000:])
        shutil.rmtree(work, ignore_errors=True)

    return verdict(failed)


if __name__ == "__main__":
    sys.exit(main())
