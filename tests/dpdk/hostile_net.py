# SPDX-License-Identifier: BSD-3-Clause
"""A hostile segment in front of tesgate's userspace stack (Python 3 stdlib
only): tesgate with io = dpdk on a net_tap port of its own, raw Ethernet
frames written and read on the Linux side of the tap with an AF_PACKET
socket (spoofed SYNs, RSTs, ARP), and the stack's counters from /metrics and
the DPDK telemetry socket.  Used by test_synflood_dpdk.py,
test_offpath_probe_dpdk.py and test_arp_poison_dpdk.py.

Addresses: each test's tap gets 198.18.NET.0/24 with NET from 60..69 (the
kernel .1, the stack .2); spoofed sources come from 198.19.0.0/16.  Nothing
here is routed anywhere: frames go to the tap only."""
import glob
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap_harness import iface_exists, ip, wait_for  # noqa: E402

PORT = 2525
ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
PACKET_OUTGOING = 4
TH_FIN, TH_SYN, TH_RST, TH_PSH, TH_ACK = 0x01, 0x02, 0x04, 0x08, 0x10
BCAST = b"\xff" * 6


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)
    print("ok:", what, flush=True)


def mac_bytes(text):
    return bytes(int(x, 16) for x in text.split(":"))


def mac_text(b):
    return ":".join(f"{x:02x}" for x in b)


def ip_bytes(text):
    return socket.inet_aton(text)


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def eth(dst, src, etype, payload):
    frame = dst + src + struct.pack("!H", etype) + payload
    return frame + b"\0" * max(0, 60 - len(frame))


def ipv4(src, dst, proto, payload, ident=0x1234):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, 64, proto, 0,
                      src, dst)
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    return hdr + payload


def tcp(src, dst, sport, dport, seq, ack, flags, win=65535, opts=b"", data=b""):
    off = (20 + len(opts)) // 4
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, off << 4,
                      flags, win, 0, 0) + opts
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(hdr) + len(data))
    c = csum(pseudo + hdr + data)
    return hdr[:16] + struct.pack("!H", c) + hdr[18:] + data


def tcp_frame(dmac, smac, src, dst, sport, dport, seq, ack, flags, win=65535, opts=b"",
              data=b""):
    s, d = ip_bytes(src), ip_bytes(dst)
    return eth(dmac, smac, ETH_P_IP,
               ipv4(s, d, 6, tcp(s, d, sport, dport, seq, ack, flags, win, opts, data)))


def arp_frame(dmac, smac, op, sha, spa, tha, tpa):
    body = struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, op, sha, ip_bytes(spa), tha,
                       ip_bytes(tpa))
    return eth(dmac, smac, ETH_P_ARP, body)


MSS_1460 = b"\x02\x04\x05\xb4"


def parse(frame):
    """A dict for IPv4/TCP and ARP frames, None otherwise."""
    if len(frame) < 14:
        return None
    etype = struct.unpack("!H", frame[12:14])[0]
    out = {"dmac": frame[0:6], "smac": frame[6:12], "type": etype}
    if etype == ETH_P_ARP and len(frame) >= 42:
        op, sha, spa, tha, tpa = struct.unpack("!6xH6s4s6s4s", frame[14:42])
        out.update(op=op, sha=sha, spa=socket.inet_ntoa(spa), tha=tha, tpa=socket.inet_ntoa(tpa))
        return out
    if etype != ETH_P_IP or len(frame) < 34:
        return None
    iph = frame[14:34]
    ihl = (iph[0] & 15) * 4
    tot = struct.unpack("!H", iph[2:4])[0]
    out.update(ipid=struct.unpack("!H", iph[4:6])[0], ipflags=struct.unpack("!H", iph[6:8])[0],
               proto=iph[9], src=socket.inet_ntoa(iph[12:16]), dst=socket.inet_ntoa(iph[16:20]))
    if iph[9] != 6 or len(frame) < 14 + ihl + 20:
        return out
    th = frame[14 + ihl:14 + tot]
    sport, dport, seq, ack, off, flags, win = struct.unpack("!HHIIBBH", th[:16])
    out.update(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=win,
               data=th[(off >> 4) * 4:])
    return out


class RawPort:
    """An AF_PACKET socket on the Linux side of the tap: what it sends, the
    stack receives; it sees what the stack sends (and, filtered out, what
    the kernel sends)."""

    def __init__(self, iface):
        self.s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.s.bind((iface, 0))

    def send(self, frame):
        self.s.send(frame)

    def recv_until(self, pred, seconds):
        """The first received frame pred accepts, within seconds; None."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.s.settimeout(left)
            try:
                frame, addr = self.s.recvfrom(65536)
            except socket.timeout:
                return None
            if addr[2] == PACKET_OUTGOING:
                continue
            p = parse(frame)
            if p is not None and pred(p):
                return p

    def collect(self, pred, seconds):
        """Every received frame pred accepts during seconds."""
        got = []
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            self.s.settimeout(left)
            try:
                frame, addr = self.s.recvfrom(65536)
            except socket.timeout:
                return got
            if addr[2] == PACKET_OUTGOING:
                continue
            p = parse(frame)
            if p is not None and pred(p):
                got.append(p)

    def drain(self):
        self.s.setblocking(False)
        try:
            while True:
                self.s.recv(65536)
        except (BlockingIOError, InterruptedError):
            pass
        self.s.setblocking(True)

    def close(self):
        self.s.close()


def resolve(port, my_mac, my_ip, target_ip, seconds=5):
    """The target's MAC, asked by ARP from (my_mac, my_ip)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        port.send(arp_frame(BCAST, my_mac, 1, my_mac, my_ip, b"\0" * 6, target_ip))
        p = port.recv_until(lambda f: f["type"] == ETH_P_ARP and f["op"] == 2
                            and f["spa"] == target_ip and f["tpa"] == my_ip, 0.5)
        if p:
            return p["sha"]
    raise Failure(f"no ARP reply from {target_ip}")


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


def free_tcp_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Telemetry:
    """DPDK's telemetry socket (v2): a JSON greeting, then a reply per
    command."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.s.settimeout(10)
        self.s.connect(path)
        self.max_len = int(json.loads(self.s.recv(16384).decode())["max_output_len"])

    def query(self, cmd):
        self.s.send(cmd.encode())
        return json.loads(self.s.recv(self.max_len).decode())[cmd.split(",")[0]]

    def close(self):
        self.s.close()


class Gateway:
    """tesgate, io = dpdk, one worker, on a tap of its own: the defaults
    (max_connections 1000) unless extra says otherwise."""

    def __init__(self, prog, name, net, extra=""):
        self.prog = prog
        tag = os.getpid() % 1000
        self.iface = f"{name}{tag}"
        self.prefix = f"tesgate-{name}-{tag}"
        self.kernel_ip = f"198.18.{net}.1"
        self.ip = f"198.18.{net}.2"
        self.work = tempfile.mkdtemp(prefix=f"tesgate-{name}-")
        self.spool = os.path.join(self.work, "spool")
        self.metrics_port = free_tcp_port()
        self.proc = None
        self.log = None
        if iface_exists(self.iface):
            ip("link", "del", "dev", self.iface, check=False)
        self.conf = os.path.join(self.work, "tesgate.conf")
        with open(self.conf, "w") as f:
            f.write(f"""io = dpdk
dpdk_args = --no-pci --file-prefix={self.prefix} -m 256 -l 0-1 --log-level=user1,info --vdev=net_tap0,iface={self.iface}
dpdk_addr = {self.ip}/24
dpdk_port = {PORT}
workers = 1
spool_dir = {self.spool}
metrics_listen = 127.0.0.1:{self.metrics_port}
hostname = mx.test.example
shutdown_grace = 5
control_socket =
{extra}
""")

    def start(self):
        self.log = open(os.path.join(self.work, "tesgate.log"), "w+")
        cmd = [self.prog, "-c", self.conf]
        print("running:", " ".join(cmd), flush=True)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)

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

    def stack(self):
        """Every stack counter, from the DPDK telemetry socket."""
        path = os.path.join("/var/run/dpdk", self.prefix, "dpdk_telemetry.v2")
        t = Telemetry(path)
        try:
            return t.query("/tesgate/stack")
        finally:
            t.close()

    def spooled(self):
        return len(glob.glob(os.path.join(self.spool, "new", "*.eml")))

    def stop(self):
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
        if self.proc is None or self.proc.poll() is not None:
            # the EAL leaves its runtime files (--file-prefix, for the
            # telemetry socket) behind
            shutil.rmtree(os.path.join("/var/run/dpdk", self.prefix), ignore_errors=True)
        if self.log:
            self.log.seek(0)
            sys.stdout.write(f"--- tesgate output ({self.iface}) ---\n" + self.log.read()[-4000:])
            self.log.close()
        shutil.rmtree(self.work, ignore_errors=True)


def read_reply(f):
    lines = []
    while True:
        line = f.readline()
        if not line:
            raise Failure(f"connection closed after {lines}")
        lines.append(line)
        if line[3:4] != b"-":
            return int(line[:3]), lines


def smtp_session(addr, idx, connect_s):
    """One kernel TCP session with one message.  The connect is bounded by
    connect_s (its SYN and the kernel's retransmissions within it), the
    dialogue by 30 s a reply.  Raises on any failure."""
    s = socket.create_connection((addr, PORT), timeout=connect_s)
    s.settimeout(30)
    f = s.makefile("rb")
    try:
        code, lines = read_reply(f)
        if code != 220:
            raise Failure(f"greeting {lines}")
        for cmd, want in ((b"EHLO legit.example.org", 250), (b"MAIL FROM:<a@example.org>", 250),
                          (b"RCPT TO:<b@example.net>", 250), (b"DATA", 354)):
            s.sendall(cmd + b"\r\n")
            code, lines = read_reply(f)
            if code != want:
                raise Failure(f"{cmd!r}: {lines}")
        body = (f"From: a@example.org\r\nTo: b@example.net\r\nSubject: legit {idx}\r\n"
                f"Message-ID: <legit{idx}@example.org>\r\n\r\nmessage {idx}\r\n").encode()
        s.sendall(body + b".\r\n")
        code, lines = read_reply(f)
        if code != 250:
            raise Failure(f"end of data: {lines}")
        s.sendall(b"QUIT\r\n")
        read_reply(f)
    finally:
        f.close()
        s.close()


def spoofed_sources(n, seed):
    """n distinct addresses of 198.19.0.0/16, shuffled."""
    rng = random.Random(seed)
    pool = [f"198.19.{i >> 8}.{i & 255}" for i in range(1, 65535) if (i & 255) not in (0, 255)]
    rng.shuffle(pool)
    return pool[:n]
