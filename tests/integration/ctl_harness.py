# SPDX-License-Identifier: BSD-3-Clause
"""Drive a real tescontrol for integration tests (Python 3 stdlib only).

- Tescontrol: starts the daemon with its own temporary state directory under
  /tmp (unix socket paths must stay under 108 bytes), the test clock, and
  the repository's catalog and policy; runs tesctl against it.
- FakeGateway: speaks the control protocol (docs/control-protocol.md) the
  way tesgate does: hello, full sync, incremental updates, sightings, acks.
  It keeps the last state it received when tescontrol goes away, as a
  gateway must.

Every wait is bounded; only processes started here are signalled, by PID.
"""
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
IO_TIMEOUT = 10.0
CTL_TIMEOUT = 30.0

DAY = 86400
# 2024-01-01T00:00:00Z: a leap year, so day arithmetic crosses February.
T0 = 1704067200
FRAME_MAX = 1024 * 1024

TESCONTROL = os.environ.get("TESCONTROL", "tescontrol")
TESCTL = os.environ.get("TESCTL", "tesctl")
SRCDIR = os.environ.get(
    "TES_SRCDIR", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def frame(obj):
    """One frame: 4-byte big-endian length, then the JSON object."""
    data = json.dumps(obj, separators=(",", ":")).encode()
    return struct.pack(">I", len(data)) + data


class CtlError(Exception):
    def __init__(self, rc, stderr, stdout=""):
        super().__init__(f"tesctl exited {rc}: {stderr.strip()}")
        self.rc = rc
        self.stderr = stderr
        self.stdout = stdout


class Tescontrol:
    def __init__(self, test_clock=T0, conf=None, keep_dir=None):
        # Short paths: the sockets live in this directory.
        self.dir = keep_dir or tempfile.mkdtemp(prefix="tc-", dir="/tmp")
        self.gw_sock = os.path.join(self.dir, "gw.sock")
        self.admin_sock = os.path.join(self.dir, "adm.sock")
        self.conf_path = os.path.join(self.dir, "tescontrol.conf")
        self.log_path = os.path.join(self.dir, "tescontrol.log")
        self.state_dir = os.path.join(self.dir, "state")
        settings = {
            "state_dir": self.state_dir,
            "gateway_socket": self.gw_sock,
            "admin_socket": self.admin_sock,
            "catalog_file": os.path.join(SRCDIR, "data", "exchange-builds.csv"),
            "compliance_file": os.path.join(SRCDIR, "data", "compliance.conf"),
            "policy_file": os.path.join(SRCDIR, "data", "policy.conf"),
            "log_level": "debug",
            # no metrics endpoint unless a test asks for one: parallel tests
            # would otherwise compete for the default port
            "metrics_listen": "",
        }
        settings.update(conf or {})
        with open(self.conf_path, "w") as f:
            f.write("# written by the integration test\n")
            for k, v in settings.items():
                f.write(f"{k} = {v}\n")
        self.proc = None
        self.log = None
        self.log_offset = 0
        self.test_clock = test_clock

    # -- process --------------------------------------------------------
    def start(self, test_clock=None, extra_args=(), env_allow=True, wait_ready=True):
        if test_clock is not None:
            self.test_clock = test_clock
        args = [TESCONTROL, "-c", self.conf_path]
        if self.test_clock is not None:
            args.append(f"--test-clock={self.test_clock}")
        args.extend(extra_args)
        env = dict(os.environ)
        env.pop("TES_ALLOW_TEST_CLOCK", None)
        env.pop("JOURNAL_STREAM", None)
        if env_allow:
            env["TES_ALLOW_TEST_CLOCK"] = "1"
        self.log_offset = self._log_size()
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, env=env)
        if wait_ready:
            self.wait_log(r"info: ready:", START_TIMEOUT, since_start=True)
        return self

    def _log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_text(self, since_start=False):
        try:
            with open(self.log_path, "rb") as f:
                if since_start:
                    f.seek(self.log_offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, pattern, timeout=IO_TIMEOUT, since_start=False, count=1):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(re.findall(pattern, self.log_text(since_start))) >= count:
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"tescontrol exited ({self.proc.returncode}) before "
                                   f"logging {pattern!r}:\n{self.log_text()}")
            time.sleep(0.02)
        raise RuntimeError(f"tescontrol did not log {pattern!r} in {timeout}s:\n"
                           + self.log_text())

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT)
        self._closelog()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=STOP_TIMEOUT)
                raise RuntimeError("tescontrol did not stop on SIGTERM")
        self._closelog()
        return self.proc.returncode if self.proc else None

    def _closelog(self):
        if self.log:
            self.log.close()
            self.log = None

    def cleanup(self):
        """Stop cleanly (so a sanitizer build checks for leaks) and fail on
        a bad exit or any sanitizer report."""
        try:
            rc = self.stop()
            text = self.log_text()
            for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
                if bad in text:
                    raise AssertionError(f"tescontrol: {bad}\n{text[-20000:]}")
            if rc not in (None, 0, -signal.SIGKILL, 2, 1):
                raise AssertionError(f"tescontrol exited {rc}\n{text[-20000:]}")
            if rc == 1 and "info: ready:" in text[self.log_offset:]:
                raise AssertionError(f"tescontrol exited 1 after start\n{text[-20000:]}")
        finally:
            self.kill9()
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- tesctl ---------------------------------------------------------
    def ctl_raw(self, *args, json_out=True, user=None):
        cmd = [TESCTL, "--socket", self.admin_sock]
        if json_out:
            cmd.append("--json")
        cmd.extend(str(a) for a in args)
        if user is not None:
            cmd = user + cmd
        return subprocess.run(cmd, capture_output=True, text=True, timeout=CTL_TIMEOUT,
                              stdin=subprocess.DEVNULL)

    def ctl(self, *args, json_out=True):
        p = self.ctl_raw(*args, json_out=json_out)
        if p.returncode != 0:
            raise CtlError(p.returncode, p.stderr, p.stdout)
        if p.stderr:
            raise AssertionError(f"tesctl wrote to stderr on success: {p.stderr}")
        return json.loads(p.stdout) if json_out else p.stdout

    def report(self, tenant=None):
        args = ["report"] + (["--tenant", tenant] if tenant is not None else [])
        return self.ctl(*args)

    def server(self, tenant, fqdn):
        for s in self.report()["servers"]:
            if s["tenant"] == tenant and s["fqdn"].lower() == fqdn.lower():
                return s
        return None

    def generation(self):
        """tescontrol's state generation: a gateway whose
        tes_control_generation equals it has applied everything."""
        return self.ctl("status")["generation"]

    def advance(self, seconds):
        r = self.ctl("clock", "advance", seconds)
        self.test_clock = r["now"]
        return r

    def set_clock(self, t):
        r = self.ctl("clock", "set", t)
        self.test_clock = r["now"]
        return r


class FakeGateway:
    """A gateway as tescontrol sees it; state is what it last received."""

    def __init__(self, path, name="gw-test", hello=True):
        self.path = path
        self.name = name
        self.sock = None
        self.buf = b""
        self.servers = {}
        self.tenants = {}
        self.policy = None
        self.catalog = None
        self.clock = None
        self.synced = False
        self.building = None
        self.msgs = []
        self.acks = {}
        self.errors = []
        self.seq = 0
        self.closed = True
        self.syncs = 0
        self.connect(hello)

    def connect(self, hello=True):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(IO_TIMEOUT)
        self.sock.connect(self.path)
        self.closed = False
        self.buf = b""
        self.synced = False
        if hello:
            self.send({"type": "hello", "gateway": self.name, "version": "test"})
            self.wait_until(lambda: self.synced, what="full sync")

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None
        self.closed = True

    def send(self, obj):
        obj = dict(obj)
        obj.setdefault("v", 1)
        self.send_raw(frame(obj))

    def send_raw(self, data):
        self.sock.settimeout(IO_TIMEOUT)  # pump() leaves a short one behind
        self.sock.sendall(data)

    # -- receiving --------------------------------------------------------
    def _decode(self):
        while len(self.buf) >= 4:
            (n,) = struct.unpack(">I", self.buf[:4])
            if n > FRAME_MAX:
                raise AssertionError(f"tescontrol sent a frame of {n} octets")
            if len(self.buf) < 4 + n:
                return
            msg = json.loads(self.buf[4:4 + n])
            self.buf = self.buf[4 + n:]
            if msg.get("v") != 1:
                raise AssertionError(f"frame without v=1: {msg}")
            self.msgs.append(msg)
            self._apply(msg)

    @staticmethod
    def key(tenant, fqdn):
        return (tenant, fqdn.lower())

    def _apply(self, m):
        t = m["type"]
        target = self.building if self.building is not None else None
        servers = target["servers"] if target else self.servers
        tenants = target["tenants"] if target else self.tenants
        if t == "sync-begin":
            self.building = {"servers": {}, "tenants": {}}
            self.clock = m["now"]
        elif t == "sync-end":
            self.servers = self.building["servers"]
            self.tenants = self.building["tenants"]
            self.building = None
            self.synced = True
            self.syncs += 1
        elif t == "server":
            s = m["server"]
            servers[self.key(s["tenant"], s["fqdn"])] = dict(s, stage=m["stage"],
                                                             status=m["status"])
        elif t == "tenant":
            tenants[m["tenant"]["id"]] = m["tenant"]
        elif t == "delete":
            if m["what"] == "server":
                servers.pop(self.key(m["tenant"], m["fqdn"]), None)
            else:
                tenants.pop(m["tenant"], None)
        elif t == "policy":
            self.policy = m
        elif t == "catalog":
            self.catalog = m
        elif t == "clock":
            self.clock = m["now"]
        elif t == "ack":
            self.acks[m["seq"]] = m
        elif t == "error":
            self.errors.append(m["message"])
        else:
            raise AssertionError(f"unknown message from tescontrol: {m}")

    def pump(self, timeout):
        """Read what arrives within timeout; False once the peer closed."""
        if self.closed:
            return False
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            return True
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.close()
            return False
        self.buf += data
        self._decode()
        return True

    def wait_until(self, pred, timeout=IO_TIMEOUT, what="condition"):
        deadline = time.monotonic() + timeout
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"gateway {self.name}: timed out waiting for {what}")
            if not self.pump(min(left, 0.2)) and not pred():
                raise AssertionError(f"gateway {self.name}: connection closed while waiting"
                                     f" for {what}")

    def wait_closed(self, timeout=IO_TIMEOUT):
        deadline = time.monotonic() + timeout
        while not self.closed:
            if time.monotonic() > deadline:
                raise AssertionError(f"gateway {self.name}: tescontrol did not disconnect it")
            self.pump(0.2)

    def drain(self, quiet=0.2):
        """Read until nothing arrives for `quiet` seconds (bounded)."""
        deadline = time.monotonic() + IO_TIMEOUT
        n = len(self.msgs)
        while time.monotonic() < deadline:
            self.pump(quiet)
            if len(self.msgs) == n:
                return
            n = len(self.msgs)

    # -- sending ----------------------------------------------------------
    def sighting(self, tenant, fqdn, build, cls="vulnerable", source=None, when=None,
                 family=None, wait=True):
        self.seq += 1
        m = {"type": "sighting", "seq": self.seq, "tenant": tenant, "fqdn": fqdn,
             "build": build, "family": family or family_of(build), "class": cls}
        if source:
            m["source"] = source
        if when is not None:
            m["time"] = when
        self.send(m)
        if wait:
            return self.wait_ack(self.seq)
        return self.seq

    def wait_ack(self, seq, timeout=IO_TIMEOUT):
        self.wait_until(lambda: seq in self.acks, timeout, what=f"ack {seq}")
        return self.acks[seq]

    def server_msgs_since(self, index, fqdn=None):
        return [m for m in self.msgs[index:]
                if m["type"] == "server"
                and (fqdn is None or m["server"]["fqdn"].lower() == fqdn.lower())]


def family_of(build):
    v = [int(x) for x in build.split(".")]
    if v[0] == 8:
        return "2007"
    if v[0] == 14:
        return "2010"
    if v[0] == 15 and v[1] == 0:
        return "2013"
    if v[0] == 15 and v[1] == 1:
        return "2016"
    if v[0] == 15 and v[1] == 2:
        return "SE" if v[2] >= 2562 else "2019"
    return "none"


def raw_connect(path, timeout=IO_TIMEOUT):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def read_until_closed(s, timeout=IO_TIMEOUT):
    """Everything the peer sends until it closes; raises if it does not."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("the peer did not close the connection")
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def decode_frames(data):
    out = []
    while len(data) >= 4:
        (n,) = struct.unpack(">I", data[:4])
        if len(data) < 4 + n:
            break
        out.append(json.loads(data[4:4 + n]))
        data = data[4 + n:]
    return out
