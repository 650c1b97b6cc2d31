#!/usr/bin/env python3
"""tesgate's DPDK telemetry commands and DPDK metrics, io = dpdk on net_tap.

tesgate runs with io = dpdk (one worker) on a tap port the EAL makes, with
--in-memory and a unique --file-prefix (with --in-memory alone there is no
runtime directory to hold the socket name per instance).  The Linux kernel
sends a few messages with smtplib; then the DPDK telemetry socket
(RUNTIME_DIR/dpdk_telemetry.v2, SOCK_SEQPACKET, JSON) must answer DPDK's own
/ethdev/list and tesgate's /tesgate/stats, /tesgate/stack, /tesgate/workers
and /tesgate/enforcement with the counts of what was sent, through
dpdk-telemetry.py (Debian package dpdk-dev) when installed as well as
directly; and /metrics must show the port, mempool and stack counters
having moved, `promtool check metrics` clean.  Needs root and free
hugepages: exits 77 otherwise.  Every wait is bounded; the tap is removed
whatever happens.
"""
import glob
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import time
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap_harness import hugepages_free, iface_exists, ip, skip, wait_for  # noqa: E402

PORT = 2525
MESSAGES = 5
IO_TIMEOUT = 30.0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def runtime_dir(prefix):
    # The EAL's choice for root: /var/run/dpdk/PREFIX (XDG_RUNTIME_DIR for
    # other users).
    base = "/var/run" if os.geteuid() == 0 else os.environ.get("XDG_RUNTIME_DIR", "/tmp")
    return os.path.join(base, "dpdk", prefix)


class Telemetry:
    """The v2 protocol: connect, read the greeting (a JSON object with
    max_output_len), then one command per message, one JSON reply each."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.s.settimeout(IO_TIMEOUT)
        self.s.connect(path)
        hello = json.loads(self.s.recv(16384).decode())
        self.max_len = int(hello["max_output_len"])

    def query(self, cmd):
        self.s.send(cmd.encode())
        reply = json.loads(self.s.recv(self.max_len).decode())
        return reply[cmd.split(",")[0]]

    def close(self):
        self.s.close()


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def sample(text, name, **labels):
    """The value of one sample, or None."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pat = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" (\S+)$"
    for line in text.splitlines():
        m = re.match(pat, line)
        if m:
            return float(m.group(1))
    return None


def send(addr, n):
    s = smtplib.SMTP(addr, PORT, timeout=IO_TIMEOUT)
    try:
        s.ehlo("client.example.org")
        for i in range(n):
            msg = (f"From: a@example.org\r\nTo: b@example.net\r\nSubject: tel {i}\r\n"
                   f"Message-ID: <tel{i}@example.org>\r\n\r\nbody {i}\r\n" + ("x" * 98 + "\r\n") * 30)
            s.sendmail("a@example.org", ["b@example.net"], msg.encode())
        s.quit()
    finally:
        s.close()


def worker_cpu_seconds(pid):
    """CPU seconds the kernel charged tesgate's first worker thread
    (tes-dp-0), or None when it is not found."""
    for task in glob.glob(f"/proc/{pid}/task/*"):
        try:
            with open(os.path.join(task, "comm")) as f:
                if f.read().strip() != "tes-dp-0":
                    continue
            with open(os.path.join(task, "stat")) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            continue
    return None


def main():
    if len(sys.argv) < 2:
        print("usage: test_telemetry_dpdk.py path/to/tesgate")
        return 2
    prog = sys.argv[1]
    if os.geteuid() != 0:
        skip("needs root (creates a tap device)")
    if hugepages_free() < 64:
        skip("needs free 2 MB hugepages (tools/setup.sh reserves them)")

    tag = os.getpid() % 100000
    iface = f"tesgt{tag}"
    prefix = f"tesgate-tel-{tag}"
    net = 40 + tag % 10  # 198.18.40.0/24 .. 198.18.49.0/24
    kernel_ip = f"198.18.{net}.1"
    stack_ip = f"198.18.{net}.2"
    if iface_exists(iface):
        ip("link", "del", "dev", iface, check=False)
    mport = free_port()
    work = tempfile.mkdtemp(prefix="tesgate-tel-")
    spool = os.path.join(work, "spool")
    conf = os.path.join(work, "tesgate.conf")
    with open(conf, "w") as f:
        f.write(f"""io = dpdk
workers = 1
dpdk_args = --no-pci --in-memory --file-prefix={prefix} -l 0-1 --log-level=user1,info --vdev=net_tap0,iface={iface}
dpdk_addr = {stack_ip}/24
dpdk_port = {PORT}
spool_dir = {spool}
control_socket =
metrics_listen = 127.0.0.1:{mport}
hostname = mx.test.example
shutdown_grace = 5
""")
    log = open(os.path.join(work, "tesgate.log"), "w+")
    proc = None
    tel = None
    failed = []

    def check(cond, what):
        print(("ok: " if cond else "FAIL: ") + what)
        if not cond:
            failed.append(what)

    try:
        proc = subprocess.Popen([prog, "-c", conf], stdout=log, stderr=subprocess.STDOUT)
        sock_path = os.path.join(runtime_dir(prefix), "dpdk_telemetry.v2")

        def listening():
            if proc.poll() is not None:
                raise RuntimeError(f"tesgate exited early ({proc.returncode})")
            with open(log.name, errors="replace") as f:
                return "listening on" in f.read() and iface_exists(iface)

        wait_for(listening, 30, "tesgate to listen")
        wait_for(lambda: os.path.exists(sock_path), 10, f"the telemetry socket {sock_path}")
        ip("addr", "add", f"{kernel_ip}/24", "dev", iface)
        ip("link", "set", "dev", iface, "up")

        before = scrape(mport)
        rx0 = sample(before, "tes_dpdk_port_received_packets_total", port="0")
        check(rx0 is not None, "/metrics has tes_dpdk_port_received_packets_total{port=\"0\"}")

        send(stack_ip, MESSAGES)
        wait_for(lambda: len(glob.glob(os.path.join(spool, "new", "*.eml"))) >= MESSAGES, 30,
                 f"{MESSAGES} messages in the spool")

        tel = Telemetry(sock_path)
        ports = tel.query("/ethdev/list")
        check(ports == [0], f"/ethdev/list is [0] (got {ports})")
        st = tel.query("/tesgate/stats")
        check(st.get("messages_accepted") == MESSAGES,
              f"/tesgate/stats messages_accepted == {MESSAGES} (got {st.get('messages_accepted')})")
        check(st.get("sessions") == 1, f"/tesgate/stats sessions == 1 (got {st.get('sessions')})")
        check(st.get("connections_accepted") == 1,
              f"/tesgate/stats connections_accepted == 1 (got {st.get('connections_accepted')})")
        # greeting, EHLO, per message MAIL, RCPT, 354 (3xx), end of data, QUIT
        replies = st.get("smtp_replies", {})
        check(replies.get("2xx") == 3 + 3 * MESSAGES and replies.get("3xx") == MESSAGES,
              f"/tesgate/stats smtp_replies 2xx == {3 + 3 * MESSAGES}, 3xx == {MESSAGES} "
              f"(got {replies})")
        check(st.get("mail_verdicts") == {"accept": 0, "throttle": 0, "block": 0, "drop": 0},
              f"/tesgate/stats mail_verdicts all 0 without enforcement (got {st.get('mail_verdicts')})")
        stack = tel.query("/tesgate/stack")
        check(stack.get("accepts") == 1 and stack.get("established") == 1,
              f"/tesgate/stack accepts == established == 1 (got {stack.get('accepts')}, "
              f"{stack.get('established')})")
        check(stack.get("data_rx_bytes", 0) > 3000 * MESSAGES,
              f"/tesgate/stack data_rx_bytes > {3000 * MESSAGES} (got {stack.get('data_rx_bytes')})")
        one = tel.query("/tesgate/stack,0")
        check(one.get("accepts") == 1, "/tesgate/stack,0 is worker 0's (accepts == 1)")
        bad = tel.query("/tesgate/stack,7")
        check(bad is None, f"/tesgate/stack,7 (no such worker) answers null (got {bad!r})")
        workers = tel.query("/tesgate/workers")
        check(list(workers.keys()) == ["0"] and workers["0"]["rx_pkts"] > 0
              and workers["0"]["tx_pkts"] > 0,
              f"/tesgate/workers lists worker 0 with packets both ways (got {workers})")
        enf = tel.query("/tesgate/enforcement")
        check(enf.get("control_configured") == 0 and enf.get("servers") == 0,
              f"/tesgate/enforcement: no control plane, no servers (got {enf})")
        tel.close()
        tel = None

        tool = shutil.which("dpdk-telemetry.py")
        if tool:
            r = subprocess.run([tool, "-f", prefix], input="/tesgate/stats\n/ethdev/list\n",
                               capture_output=True, text=True, timeout=30)
            got = {}
            for line in r.stdout.splitlines():
                if line.startswith("{"):
                    got.update(json.loads(line))
            check(got.get("/tesgate/stats", {}).get("messages_accepted") == MESSAGES
                  and got.get("/ethdev/list") == [0],
                  "dpdk-telemetry.py answers /tesgate/stats and /ethdev/list the same")
        else:
            print("dpdk-telemetry.py not installed (Debian package dpdk-dev): skipped that part")

        after = scrape(mport)
        rx1 = sample(after, "tes_dpdk_port_received_packets_total", port="0")
        check(rx0 is not None and rx1 is not None and rx1 > rx0,
              f"port received packets moved ({rx0} -> {rx1})")
        tx1 = sample(after, "tes_dpdk_port_sent_packets_total", port="0")
        check(tx1 is not None and tx1 > 0, f"port sent packets > 0 ({tx1})")
        check(sample(after, "tes_stack_connections_accepted_total", worker="0") == 1,
              "tes_stack_connections_accepted_total{worker=\"0\"} == 1")
        check(sample(after, "tes_messages_total", outcome="accepted") == MESSAGES,
              f"tes_messages_total{{outcome=\"accepted\"}} == {MESSAGES}")
        check(sample(after, "tes_stack_retransmits_total", worker="0") is not None,
              "tes_stack_retransmits_total{worker=\"0\"} exported")
        inuse = [ln for ln in after.splitlines() if ln.startswith("tes_dpdk_mempool_in_use_mbufs{")]
        check(len(inuse) >= 1 and all(float(ln.split()[-1]) > 0 for ln in inuse),
              f"mempool in-use gauge present and > 0 ({inuse})")
        wrx = sample(after, "tes_dpdk_worker_received_packets_total", worker="0")
        check(wrx is not None and wrx > 0, f"worker received packets > 0 ({wrx})")
        # The worker polls all the time but worked only while the few
        # messages above went through: busy time is above zero and a small
        # part of the CPU time the kernel charged the spinning worker thread
        # (both shrink alike when the machine is loaded; no wall clock).
        busy = sample(after, "tes_dpdk_worker_busy_seconds_total", worker="0")
        cpu = worker_cpu_seconds(proc.pid)
        check(busy is not None and cpu is not None and 0 < busy < cpu / 2,
              f"worker busy time above zero and under half its CPU time {cpu} s ({busy} s)")
        promtool = shutil.which("promtool")
        if promtool:
            r = subprocess.run([promtool, "check", "metrics"], input=after, capture_output=True,
                               text=True, timeout=30)
            check(r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(),
                  f"promtool check metrics clean ({r.stdout.strip()} {r.stderr.strip()})")

        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=30)
            check(rc == 0, f"tesgate exited 0 after SIGTERM (got {rc})")
            with open(log.name, errors="replace") as f:
                text = f.read()
            for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
                check(bad not in text, f"no '{bad}' in tesgate's output")
        except subprocess.TimeoutExpired:
            check(False, "tesgate exited within 30 s of SIGTERM")
    except Exception as e:  # noqa: BLE001 - report any failure, then clean up
        failed.append(f"error: {e!r}")
        print("FAIL: error:", repr(e))
    finally:
        if tel is not None:
            tel.close()
        if proc is not None and proc.poll() is None:
            proc.kill()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if iface_exists(iface):
            ip("link", "del", "dev", iface, check=False)
        shutil.rmtree(runtime_dir(prefix), ignore_errors=True)
        log.seek(0)
        sys.stdout.write("--- tesgate output ---\n" + log.read()[-8000:])
        log.close()
        shutil.rmtree(work, ignore_errors=True)

    if failed:
        print(f"{len(failed)} check(s) failed")
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
