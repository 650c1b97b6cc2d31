# SPDX-License-Identifier: BSD-3-Clause
"""Start and stop a real tesgate for integration tests (Python 3 stdlib only).

Every gateway gets its own temporary directory (configuration, spool, log)
and listens on a port the kernel picks (--listen 127.0.0.1:0), read back from
its log.  Every wait is bounded; only the process started here is signalled,
by its PID.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

START_TIMEOUT = 15.0
STOP_TIMEOUT = 20.0
IO_TIMEOUT = 15.0


# What a sanitizer writes when it finds something (ASan, UBSan, LSan).
SANITIZER_MARKS = ("AddressSanitizer", "runtime error:", "LeakSanitizer")


class Gateway:
    def __init__(self, binary, conf=None, preexec_fn=None):
        self.dir = tempfile.mkdtemp(prefix="tesgate-it-")
        self.spool = os.path.join(self.dir, "spool")
        self.log_path = os.path.join(self.dir, "tesgate.log")
        self.conf_path = os.path.join(self.dir, "tesgate.conf")
        # no metrics endpoint unless a test asks for one: parallel tests
        # would otherwise compete for its default port
        settings = {"log_level": "info", "shutdown_grace": "10", "metrics_listen": ""}
        settings.update(conf or {})
        with open(self.conf_path, "w") as f:
            f.write("# written by the integration test\n")
            for k, v in settings.items():
                f.write(f"{k} = {v}\n")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "-c", self.conf_path, "--listen", "127.0.0.1:0", "--spool", self.spool],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, preexec_fn=preexec_fn)
        self.port = self._wait_port()

    def _wait_port(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", self.log_text())
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                raise RuntimeError("tesgate exited at start:\n" + self.log_text())
            time.sleep(0.02)
        self.kill()
        raise RuntimeError("tesgate did not start:\n" + self.log_text())

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout=STOP_TIMEOUT):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)

    def stop(self):
        """SIGTERM and a bounded wait; returns the exit status."""
        self.signal(signal.SIGTERM)
        return self.wait()

    def stop_clean(self, earlier_exit_ok=False):
        """Stop it (when it still runs) and fail unless it exited 0 with no
        sanitizer report in its log: what every test's tearDown asserts,
        so that a crash or a leak at shutdown turns the test red.  With
        earlier_exit_ok, a process that had already exited (a test that
        made it exit on purpose) is judged by its log only."""
        running = self.proc.poll() is None
        rc = self.stop() if running else self.proc.returncode
        log = self.log_text()
        for bad in SANITIZER_MARKS:
            if bad in log:
                raise AssertionError(f"tesgate's log has {bad!r}:\n{log[-4000:]}")
        if rc != 0 and (running or not earlier_exit_ok):
            raise AssertionError(f"tesgate exited {rc}:\n{log[-4000:]}")

    def close(self):
        try:
            if self.proc.poll() is None:
                self.stop()
        finally:
            self.kill()
            self.log.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def files(self, sub):
        d = os.path.join(self.spool, sub)
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def messages(self):
        """[(id, eml bytes, envelope dict)] of what is in new/."""
        out = []
        for name in self.files("new"):
            if not name.endswith(".eml"):
                continue
            mid = name[:-4]
            with open(os.path.join(self.spool, "new", name), "rb") as f:
                eml = f.read()
            env = {}
            with open(os.path.join(self.spool, "new", mid + ".env")) as f:
                for line in f:
                    k, _, v = line.rstrip("\n").partition(": ")
                    env.setdefault(k, []).append(v)
            out.append((mid, eml, env))
        return out

    def metrics_url(self):
        """The /metrics URL tesgate logged (metrics_listen = 127.0.0.1:0 in
        the test's conf makes it log the port the kernel gave)."""
        m = re.search(r"metrics: (http://[0-9.:\[\]a-f]+/metrics)", self.log_text())
        if not m:
            raise AssertionError("tesgate logged no metrics URL (metrics_listen unset?)")
        return m.group(1)

    def metric(self, name):
        """One unlabelled sample from /metrics, as an int."""
        with urllib.request.urlopen(self.metrics_url(), timeout=IO_TIMEOUT) as r:
            text = r.read().decode()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return int(float(line.split()[1]))
        raise AssertionError(f"no {name} in tesgate's /metrics")

    def wait_generation(self, gen, timeout=IO_TIMEOUT):
        """Wait until tesgate has applied tescontrol's state generation gen
        (tesctl status's "generation") or a later one: from then on its
        verdicts come from everything tescontrol had said when gen was read.
        Fails when it does not get there."""
        # tescontrol's generations only grow (also across its restarts), and
        # it may broadcast again between the read of gen and this wait (a
        # sighting the gateway itself sent, say): at or past gen is caught up.
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            got = self.metric("tes_control_generation")
            if got >= gen:
                return
            time.sleep(0.02)
        raise AssertionError(f"tesgate stayed at generation {got}, tescontrol is at {gen}")

    def wait_for(self, pred, timeout=IO_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return True
            time.sleep(0.02)
        return pred()


class Client:
    """A raw SMTP client: for what smtplib cannot do (BDAT, pipelining)."""

    def __init__(self, port, timeout=IO_TIMEOUT):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; have %r" % self.buf)
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line.decode("utf-8", "replace")

    def reply(self):
        """One reply, possibly multi-line: (code, [lines])."""
        lines = [self.line()]
        while len(lines[-1]) > 3 and lines[-1][3] == "-":
            lines.append(self.line())
        return int(lines[-1][:3]), lines

    def closed(self):
        """True when the server closed (EOF) with nothing more to read."""
        try:
            return self.buf == b"" and self.sock.recv(1) == b""
        except (ConnectionResetError, socket.timeout):
            return False

    def close(self):
        self.sock.close()


def run(argv, test_classes):
    """unittest over test_classes with argv[1] the tesgate binary; prints a
    'N passed, N failed' line and exits 0 only if nothing failed."""
    if len(argv) < 2 or not os.access(argv[1], os.X_OK):
        print("usage: %s PATH-TO-TESGATE" % argv[0], file=sys.stderr)
        return 2
    for c in test_classes:
        c.binary = os.path.abspath(argv[1])
    suite = unittest.TestSuite()
    loader = unittest.TestLoader()
    for c in test_classes:
        suite.addTests(loader.loadTestsFromTestCase(c))
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    if result.testsRun == skipped and skipped > 0:
        return 77  # meson: the whole test was skipped
    return 0 if failed == 0 else 1
