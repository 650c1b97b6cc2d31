#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""tes-loadgen over IPv6 against tesgate (io = dpdk), two processes over
net_memif (issue 18).

tesgate holds 198.18.31.1/24 and fd00:31::1/64 (its IPv6 address usable
once its duplicate address detection passed); tes-loadgen runs with
--server [fd00:31::1]:2525 --addr fd00:31::N/64:
  - 2000 messages over 20 sessions x 10 messages per connection: the JSON
    summary counts 2000 ok, no failure, every connection closed in order,
    and the spool holds exactly the 2000 messages tes-loadgen --print-message
    describes, each once;
  - STARTTLS: 200 messages, 20 TLS handshakes, all spooled;
  - the IPv4 generator against the same gateway still works (100 messages).
Needs root and free hugepages: exits 77 otherwise.
"""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap_harness import hugepages_free, skip, verdict, wait_for  # noqa: E402
import test_loadgen_memif as v4  # noqa: E402

GW_IP6 = "fd00:31::1"


class Gateway6:
    @staticmethod
    def patch(conf):
        with open(conf) as f:
            text = f.read()
        text = text.replace(f"dpdk_addr = {v4.GW_IP}/24",
                            f"dpdk_addr = {v4.GW_IP}/24, {GW_IP6}/64")
        with open(conf, "w") as f:
            f.write(text)


def start_gateway(prog, work, name, extra=""):
    # write_conf is deterministic per name: patch it, then start tesgate on it.
    conf, _, _ = v4.write_conf(work, name, extra)
    Gateway6.patch(conf)
    orig = v4.write_conf
    v4.write_conf = lambda w, n, e: (conf, os.path.join(w, f"memif-{n}.sock"),
                                     os.path.join(w, f"spool-{n}"))
    try:
        gw = v4.Gateway(prog, work, name, extra)
    finally:
        v4.write_conf = orig
    return gw


def run_loadgen6(prog, gw, tag, args):
    lg_ip = f"fd00:31::{10 + ord(tag) - ord('a'):x}"
    eal = (f"--no-pci --in-memory -m 128 -l 1 --file-prefix=lg6{os.getpid()}{tag} "
           f"--vdev=net_memif0,role=client,socket={gw.sock},socket-abstract=no")
    cmd = [prog, "--server", f"[{GW_IP6}]:{v4.PORT}", "--addr", f"{lg_ip}/64", "--eal", eal,
           "--json", "--timeout", "30"] + args
    print("running:", " ".join(cmd[:5]), f"--eal '{eal}'", " ".join(cmd[7:]), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=v4.RUN_TIMEOUT)
    err = p.stderr.decode(errors="replace")
    lines = p.stdout.decode(errors="replace").strip().splitlines()
    try:
        summary = v4.json.loads(lines[-1]) if lines else None
    except ValueError:
        summary = None
    return p.returncode, summary, err


def main():
    if len(sys.argv) < 3:
        print("usage: test_loadgen_memif_v6.py path/to/tes-loadgen path/to/tesgate")
        return 2
    lg, tesgate = sys.argv[1], sys.argv[2]
    if os.geteuid() != 0:
        skip("needs root (DPDK with hugepages)")
    if hugepages_free() < 160:
        skip("needs 160 free 2 MB hugepages (tools/setup.sh reserves them)")
    src = os.path.dirname(os.path.abspath(__file__))
    hdr = os.path.join(src, "..", "data", "headers", "ex2016-tls.hdr")
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    work = tempfile.mkdtemp(prefix="tes-loadgen-memif6-", dir=shm)
    failed = []
    gws = []
    try:
        common = ["--header-file", hdr, "--size", "2k"]
        template = subprocess.run([lg, "--print-message"] + common, check=True,
                                  stdout=subprocess.PIPE, timeout=30).stdout
        key = os.path.join(work, "key.pem")
        cert = os.path.join(work, "cert.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=mx.test.example"],
                       check=True, timeout=30, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        gw = start_gateway(tesgate, work, "v6", f"tls_cert = {cert}\ntls_key = {key}\n")
        gws.append(gw)
        if not gw.wait_listening():
            raise RuntimeError(f"tesgate exited early:\n{gw.text()[-3000:]}")
        time.sleep(1.5)  # the gateway's DAD: its IPv6 address is usable after 1 s
        rc, s, err = run_loadgen6(lg, gw, "a", common + [
            "--sessions", "20", "--messages-per-conn", "10", "--count", "2000"])
        if rc != 0 or not s:
            failed.append(f"IPv6 run: exit {rc}, stderr:\n{err[-3000:]}")
        else:
            t, c = s["transactions"], s["connections"]
            if (t["ok"], t["failed"], t["started"]) != (2000, 0, 2000):
                failed.append(f"IPv6 run: transactions {t}")
            if c["opened"] < 200 or c["closed"] != c["opened"] or c["failed"] or c["dropped"]:
                failed.append(f"IPv6 run: connections {c}")
            if s["errors"] or s["failed"]:
                failed.append(f"IPv6 run: errors {s['errors']}, failed {s['failed']}")
            print(f"IPv6: {t['ok']} ok over {c['opened']} connections, "
                  f"p50 {s['latency_us']['p50']} us", flush=True)
        wait_for(lambda: len(gw.spooled()) >= 2000, 30, "2000 messages in the spool")
        why = v4.check_spool(gw.spooled(), template, 2000)
        if why:
            failed.append("IPv6 run: " + why)
        else:
            print("spool: 2000 messages, byte-identical, each once: ok", flush=True)

        before = len(gw.spooled())
        rc, s, err = run_loadgen6(lg, gw, "b", common + [
            "--sessions", "20", "--messages-per-conn", "10", "--count", "200", "--starttls"])
        if rc != 0 or not s or s["transactions"]["ok"] != 200 or s["connections"]["tls_handshakes"] != 20:
            failed.append(f"IPv6 STARTTLS run: exit {rc}, summary {s}, stderr:\n{err[-2000:]}")
        else:
            wait_for(lambda: len(gw.spooled()) >= before + 200, 30, "200 more in the spool")
            print("IPv6 STARTTLS: 200 messages, 20 handshakes: ok", flush=True)

        before = len(gw.spooled())
        rc, s, err = v4.run_loadgen(lg, gw, "c", common + [
            "--sessions", "10", "--messages-per-conn", "10", "--count", "100"])
        if rc != 0 or not s or s["transactions"]["ok"] != 100:
            failed.append(f"IPv4 run on the same gateway: exit {rc}, stderr:\n{err[-2000:]}")
        else:
            wait_for(lambda: len(gw.spooled()) >= before + 100, 30, "100 more in the spool")
            print("IPv4 beside it: 100 messages: ok", flush=True)
    except Exception as e:  # noqa: BLE001
        failed.append(repr(e))
    finally:
        for g in gws:
            g.stop()
            if failed:
                print(g.text()[-3000:])
        v4.shutil.rmtree(work, ignore_errors=True)
    return verdict(failed)


if __name__ == "__main__":
    sys.exit(main())
