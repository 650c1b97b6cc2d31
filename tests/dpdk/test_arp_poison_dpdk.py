#!/usr/bin/env python3
"""ARP poisoning of the userspace stack's next hop, from a host on the same
segment, while the stack makes active opens through its neighbour cache.

The stack's active opens on the DPDK path are tes-loadgen's (tesgate's relay
delivery goes through kernel sockets, not through the stack), so
tes-loadgen runs on a net_tap port and delivers to an SMTP sink on the
tap's Linux side (198.18.63.1).  Once the first messages are through (the
stack has resolved the sink), a poisoner on the Linux side of the tap
(AF_PACKET) says every 100 ms that 198.18.63.1 is at 02:bd:00:00:00:01: a
gratuitous request and a gratuitous reply (broadcast), an unsolicited
reply to the generator, and a request for the generator's address "from"
198.18.63.1 at that MAC.  Before the fix any of them replaced the cache
entry: the next SYNs went to the poisoner's MAC, the kernel discarded
them, and the transactions timed out.

Passes when every transaction of the run succeeds (tes-loadgen exits 0,
at least 100, 60 of them after the poisoning began), the sink received each
one, and the stack counted the ARP it ignored.

Needs root and free hugepages: exits 77 otherwise.

Usage: test_arp_poison_dpdk.py TES-LOADGEN
"""
import json
import os
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hostile_net import (BCAST, Failure, RawPort, arp_frame, check, mac_bytes,  # noqa: E402
                         resolve)
from tap_harness import hugepages_free, iface_exists, ip, skip, verdict, wait_for  # noqa: E402

NET = "198.18.63"
SINK_IP = f"{NET}.1"
LG_IP = f"{NET}.2"
SINK_PORT = 2525
POISON_MAC = mac_bytes("02:bd:00:00:00:01")


class Sink(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr):
        super().__init__(addr, SinkHandler)
        self.lock = threading.Lock()
        self.messages = 0


class SinkHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP for tes-loadgen: one reply per command."""

    def handle(self):
        self.request.settimeout(30)
        w = self.wfile
        w.write(b"220 sink.example ESMTP\r\n")
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line[:4].upper()
            if cmd in (b"EHLO", b"HELO"):
                w.write(b"250-sink.example\r\n250 8BITMIME\r\n")
            elif cmd in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                w.write(b"250 ok\r\n")
            elif cmd == b"DATA":
                w.write(b"354 go\r\n")
                while True:
                    d = self.rfile.readline()
                    if not d:
                        return
                    if d == b".\r\n":
                        break
                with self.server.lock:
                    self.server.messages += 1
                w.write(b"250 queued\r\n")
            elif cmd == b"QUIT":
                w.write(b"221 bye\r\n")
                return
            else:
                w.write(b"500 what\r\n")


def run(prog):
    tag = os.getpid() % 1000
    iface = f"tgarp{tag}"
    if iface_exists(iface):
        ip("link", "del", "dev", iface, check=False)
    work = tempfile.mkdtemp(prefix="tesgate-arp-")
    out = open(os.path.join(work, "loadgen.out"), "w+")
    err = open(os.path.join(work, "loadgen.err"), "w+")
    lg = None
    sink = None
    port = None
    stop = threading.Event()
    try:
        cmd = [prog, "--server", f"{SINK_IP}:{SINK_PORT}", "--addr", f"{LG_IP}/24",
               "--eal", f"--no-pci --in-memory -m 256 -l 1 --vdev=net_tap0,iface={iface}",
               "--sessions", "1", "--messages-per-conn", "1", "--rate", "20", "--duration", "7",
               "--timeout", "5", "--json", "--quiet"]
        print("running:", " ".join(cmd), flush=True)
        lg = subprocess.Popen(cmd, stdout=out, stderr=err)
        wait_for(lambda: iface_exists(iface) or lg.poll() is not None, 30, "the tap to appear")
        check(lg.poll() is None, "tes-loadgen started")
        ip("addr", "add", f"{SINK_IP}/24", "dev", iface)
        ip("link", "set", "dev", iface, "up")
        sink = Sink((SINK_IP, SINK_PORT))
        threading.Thread(target=sink.serve_forever, daemon=True).start()
        port = RawPort(iface)
        wait_for(lambda: sink.messages >= 5 or lg.poll() is not None, 30,
                 "the first messages at the sink")
        lg_mac = resolve(port, mac_bytes("02:bd:00:00:00:02"), "198.18.63.200", LG_IP)
        at_poison = sink.messages
        print(f"poisoning from message {at_poison} on", flush=True)
        frames = [
            # gratuitous request and reply: "SINK_IP is at POISON_MAC"
            arp_frame(BCAST, POISON_MAC, 1, POISON_MAC, SINK_IP, b"\0" * 6, SINK_IP),
            arp_frame(BCAST, POISON_MAC, 2, POISON_MAC, SINK_IP, BCAST, SINK_IP),
            # an unsolicited reply to the generator
            arp_frame(lg_mac, POISON_MAC, 2, POISON_MAC, SINK_IP, lg_mac, LG_IP),
            # a request for the generator's address "from" SINK_IP
            arp_frame(BCAST, POISON_MAC, 1, POISON_MAC, SINK_IP, b"\0" * 6, LG_IP),
        ]
        sent = 0

        def poison():
            nonlocal sent
            while not stop.is_set():
                for f in frames:
                    port.send(f)
                    sent += 1
                stop.wait(0.1)

        pt = threading.Thread(target=poison, daemon=True)
        pt.start()
        try:
            rc = lg.wait(timeout=120)
        except subprocess.TimeoutExpired:
            raise Failure("tes-loadgen did not finish within 120 s")
        stop.set()
        pt.join(5)
        out.seek(0)
        err.seek(0)
        text = out.read()
        sys.stdout.write(err.read()[-3000:])
        summary = json.loads(text.strip().splitlines()[-1])
        ok = summary["transactions"]["ok"]
        print(f"tes-loadgen exit {rc}: {ok} ok, {summary['transactions']['failed']} failed, "
              f"connections failed {summary['connections']['failed']}; "
              f"{sent} poison frames; sink {sink.messages}", flush=True)
        check(rc == 0, f"tes-loadgen: every transaction succeeded (exit {rc})")
        check(ok >= 100 and ok - at_poison >= 60,
              f"{ok} transactions, {ok - at_poison} after the poisoning began")
        check(sink.messages == ok, f"the sink received each ({sink.messages})")
        check(sent >= 40, f"{sent} poisoning frames sent")
        ignored = summary["client_tcp"].get("arp_ignored", 0)
        check(ignored > 0, f"the stack ignored {ignored} ARP frames (arp_ignored)")
    finally:
        stop.set()
        if lg is not None and lg.poll() is None:
            lg.kill()
            lg.wait(timeout=10)
        if sink is not None:
            sink.shutdown()
            sink.server_close()
        if port is not None:
            port.close()
        if iface_exists(iface):
            ip("link", "del", "dev", iface, check=False)
        out.close()
        err.close()
        shutil.rmtree(work, ignore_errors=True)


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    if os.geteuid() != 0:
        skip("needs root (tap device, AF_PACKET)")
    if hugepages_free() < 128:
        skip("needs free 2 MB hugepages (tools/setup.sh reserves them)")
    try:
        run(sys.argv[1])
    except Failure as e:
        return verdict([str(e)])
    return verdict([])


if __name__ == "__main__":
    sys.exit(main())
