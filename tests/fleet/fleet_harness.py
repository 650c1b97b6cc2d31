# SPDX-License-Identifier: BSD-3-Clause
"""A fleet for tests (Python 3 stdlib only): a 3-member etcd cluster
(etcd_harness.EtcdCluster) and appliances, each a tescontrol with
store = etcd and a tesgate on kernel sockets following its test clock.

Every process listens on loopback with ports and data directories of its
own and is stopped by its PID.  An appliance built with cuttable=True
reaches the members through relays (etcd_harness.TcpProxy) that a test cuts
to cut it off from etcd.  Every wait is bounded and waits for an event (a
log line, a report, a state generation), never for a fixed time.
"""
import json
import os
import re
import smtplib
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import ctl_harness as ch  # noqa: E402
from etcd_harness import EtcdCluster, TcpProxy, have_etcd  # noqa: E402
from gateway_harness import Gateway  # noqa: E402

T0 = ch.T0  # 2024-01-01T00:00:00Z
DAY = ch.DAY
OLD = "15.1.2507.35"   # 2016 CU23 Nov23SU: out of date
GOOD = "15.1.2507.61"  # 2016 CU23 Oct25SU: compliant
WAIT = 20.0            # bound on every wait for the fleet to converge
PREFIX = "/tesgate-test"

BLOCK60 = ("550", "5.7.230 Connecting Exchange server version is out-of-date; "
           "connection to Exchange Online blocked for 60 mins/hr.")
THROTTLE5 = ("450", "4.7.230 Connecting Exchange server version is out-of-date; "
             "connection to Exchange Online throttled for 5 mins/hr.")
OK = ("250", "")

HEADERS = os.path.join(ch.SRCDIR, "tests", "data", "headers", "ex2016-tls.hdr")


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def message(server, build=OLD):
    """An Exchange 2016 message whose connecting server is `server`,
    stamped with `build`."""
    with open(HEADERS, "rb") as f:
        hdr = f.read()
    hdr = hdr.replace(b"by EX16-02.contoso.local", b"by " + server.encode(), 1)
    hdr = hdr.replace(b"id 15.1.2507.35;", b"id " + build.encode() + b";", 1)
    return hdr + b"Body of a simulated Exchange message.\r\n"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred, what, timeout=WAIT):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def admin_request(sock_path, cmd, args=None, timeout=ch.IO_TIMEOUT):
    """A connected admin-protocol socket with one request sent (so that
    several requests leave at the same moment); read_response() answers."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sock_path)
    return s, ch.frame({"v": 1, "cmd": cmd, "args": args or {}})


def read_response(s):
    buf = b""
    while True:
        if len(buf) >= 4:
            (n,) = struct.unpack(">I", buf[:4])
            if len(buf) >= 4 + n:
                s.close()
                return json.loads(buf[4:4 + n])
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError("tescontrol closed the admin connection")
        buf += chunk


class Appliance:
    """tescontrol (store = etcd) and its tesgate."""

    def __init__(self, fleet, name, endpoints, test_clock=T0, conf=None):
        self.fleet = fleet
        self.name = name
        self.endpoints = endpoints
        self.metrics_port = free_port()
        settings = {
            "store": "etcd",
            "etcd_endpoints": ",".join(endpoints),
            "etcd_prefix": PREFIX,
            "appliance": name,
            "flush_seconds": "1",
            "metrics_listen": f"127.0.0.1:{self.metrics_port}",
            "etcd_timeout_ms": "1000",
            "etcd_connect_timeout_ms": "300",
        }
        settings.update(conf or {})
        self.tc = ch.Tescontrol(test_clock=test_clock, conf=settings)
        self.gw = None

    # -- processes -----------------------------------------------------
    def start(self, gateway=True, wait_ready=True):
        self.tc.start(wait_ready=wait_ready)
        if gateway and wait_ready:
            self.start_gateway()
        return self

    def start_gateway(self):
        self.gw = Gateway(self.fleet.tesgate, conf={
            "control_socket": self.tc.gw_sock,
            "follow_test_clock": "yes",
            "gateway_id": f"gw-{self.name}",
            "metrics_listen": "127.0.0.1:0",
        })
        wait_for(lambda: "control: synchronised" in self.gw.log_text(),
                 f"{self.name}'s tesgate to synchronise")

    def stop_gateway(self):
        if self.gw:
            rc = self.gw.stop()
            log = self.gw.log_text()
            self.gw.close()
            self.gw = None
            for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
                assert bad not in log, f"tesgate {self.name}: {bad}\n{log[-10000:]}"
            assert rc == 0, f"tesgate {self.name} exited {rc}\n{log[-5000:]}"

    def stop(self):
        """Both, cleanly (tescontrol writes what etcd lacks and leaves)."""
        self.stop_gateway()
        rc = self.tc.stop()
        text = self.tc.log_text()
        for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            assert bad not in text, f"tescontrol {self.name}: {bad}\n{text[-20000:]}"
        assert rc == 0, f"tescontrol {self.name} exited {rc}\n{text[-5000:]}"

    def cleanup(self):
        try:
            if self.gw:
                self.gw.close()
                self.gw = None
        finally:
            self.tc.cleanup()

    # -- tesctl and views ----------------------------------------------
    def ctl(self, *args):
        return self.tc.ctl(*args)

    def report_bytes(self):
        """tesctl report --json, byte for byte."""
        p = self.tc.ctl_raw("report", "--all")
        assert p.returncode == 0, p.stderr
        return p.stdout.encode()

    def server(self, fqdn, tenant=1):
        for s in self.tc.report()["servers"]:
            if s["tenant"] == tenant and s["fqdn"].lower() == fqdn.lower():
                return s
        return None

    def status(self):
        return self.ctl("status")

    def metric(self, name):
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=ch.IO_TIMEOUT) as r:
            text = r.read().decode()
        m = re.search(rf"^{name} (\S+)$", text, re.M)
        assert m, f"no {name} in {self.name}'s /metrics"
        return float(m.group(1))

    def set_clock(self, t):
        self.tc.set_clock(t)

    def sync(self):
        """This appliance's gateway has applied everything its tescontrol
        said: its next verdict is the one to judge."""
        self.gw.wait_generation(self.tc.generation())

    # -- mail ------------------------------------------------------------
    def send(self, server, build=OLD, source="127.0.0.1"):
        """One message of `server`; (code, text) of the refusal or OK."""
        try:
            with smtplib.SMTP("127.0.0.1", self.gw.port, timeout=15,
                              source_address=(source, 0)) as s:
                s.ehlo("ex.contoso.local")
                s.sendmail("grace.okafor@contoso.com", ["ian.hughes@example.net"],
                           message(server, build))
        except smtplib.SMTPSenderRefused as e:
            return str(e.smtp_code), e.smtp_error.decode()
        except smtplib.SMTPDataError as e:
            return str(e.smtp_code), e.smtp_error.decode()
        return OK


class Fleet:
    """etcd (3 members) and appliances A, B, C, ... (names)."""

    def __init__(self, tesgate, names=("A", "B", "C"), cuttable=(), conf=None):
        self.tesgate = tesgate
        self.cluster = EtcdCluster(members=3).start()
        self.relays = {}
        self.apps = {}
        try:
            for n in names:
                eps = self.cluster.endpoints
                if n in cuttable:
                    self.relays[n] = [TcpProxy(m.client_port) for m in self.cluster.members]
                    eps = [r.url for r in self.relays[n]]
                self.apps[n] = Appliance(self, n, eps, conf=(conf or {}).get(n))
        except Exception:
            self.cleanup()
            raise

    def __getitem__(self, name):
        return self.apps[name]

    def start(self, tenant=True):
        for a in self.apps.values():
            a.start()
        if tenant:
            first = next(iter(self.apps.values()))
            first.ctl("tenant", "add", 1, "Contoso", "--connector", "127.0.0.0/24")
            self.wait_all(lambda a: a.ctl("tenant", "list")["tenants"], "tenant 1 everywhere")
        return self

    def set_clock(self, t):
        for a in self.apps.values():
            a.set_clock(t)

    def wait_all(self, pred, what, apps=None, timeout=WAIT):
        for a in (apps or self.apps.values()):
            try:
                wait_for(lambda a=a: pred(a), f"{what} on {a.name}", timeout)
            except AssertionError as e:
                raise AssertionError(f"{e}\n{self.logs()}") from None

    def log_lines(self, words):
        """Every log line (all appliances, both daemons) naming a word, and
        every warning and error: what a failure's message needs."""
        out = []
        for a in self.apps.values():
            for who, text in (("tescontrol", a.tc.log_text()),
                              ("tesgate", a.gw.log_text() if a.gw else "")):
                for line in text.splitlines():
                    if "RUNNING AS ROOT" in line or "privileges:" in line:
                        continue
                    if any(w in line for w in words) or " warn" in line or "error" in line:
                        out.append(f"{who} {a.name}: {line[:400]}")
        return "\n".join(out[-300:])

    def logs(self, tail=4000):
        """The end of every appliance's logs, for a failure's message."""
        out = []
        for a in self.apps.values():
            out.append(f"--- tescontrol {a.name} ---\n" + a.tc.log_text()[-tail:])
            if a.gw:
                out.append(f"--- tesgate {a.name} ---\n" + a.gw.log_text()[-tail:])
        return "\n".join(out)

    def wait_server(self, fqdn, pred=lambda s: True, apps=None, tenant=1):
        self.wait_all(lambda a: (lambda s: s is not None and pred(s))(a.server(fqdn, tenant)),
                      f"server {fqdn}", apps)
        return {a.name: a.server(fqdn, tenant) for a in (apps or self.apps.values())}

    def cut(self, name):
        for r in self.relays[name]:
            r.cut()

    def restore(self, name):
        for r in self.relays[name]:
            r.restore()

    def cleanup(self):
        errors = []
        for a in self.apps.values():
            try:
                a.cleanup()
            except Exception as e:  # keep stopping the others
                errors.append(e)
        for rs in self.relays.values():
            for r in rs:
                r.close()
        self.cluster.cleanup()
        if errors:
            raise errors[0]


def run(argv, classes):
    """unittest over classes with argv[1] the tesgate binary; 77 when etcd
    is not installed."""
    import unittest
    if not have_etcd():
        print("SKIP: etcd or etcdctl not installed (tools/setup.sh installs etcd-server and "
              "etcd-client)")
        return 77
    if len(argv) < 2 or not os.access(argv[1], os.X_OK):
        print(f"usage: {argv[0]} PATH-TO-TESGATE", file=sys.stderr)
        return 2
    os.environ["TES_ALLOW_TEST_CLOCK"] = "1"
    if len(argv) > 2:  # only the classes named
        classes = [c for c in classes if c.__name__ in argv[2:]]
    for c in classes:
        c.tesgate = os.path.abspath(argv[1])
    suite = unittest.TestSuite()
    for c in classes:
        suite.addTests(unittest.TestLoader().loadTestsFromTestCase(c))
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    return 0 if result.wasSuccessful() else 1


def etcdctl_get(cluster, key):
    out = cluster.etcdctl("get", key, "--print-value-only")
    return out.rstrip("\n")


def stop_by_pid(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
