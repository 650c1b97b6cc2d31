# SPDX-License-Identifier: BSD-3-Clause
"""Prometheus helpers shared by the telemetry tests (Python 3 stdlib only).

- scrape-side helpers: a free loopback port, an HTTP GET, the text format
  parsed into {'name{labels}': value};
- RealPrometheusMixin: a real Prometheus server (Debian's /usr/bin/prometheus)
  with a temporary configuration, storage and port, scraping one target every
  second, and queries through its HTTP API.  Only the process started here is
  signalled, by its PID; every wait is bounded.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

PROMETHEUS = shutil.which("prometheus") or (
    "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None)
PROMTOOL = shutil.which("promtool")
WAIT = 30.0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read().decode()


def parse_metrics(text):
    """{'name{labels}': value} for every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        out[key] = float(value)
    return out


class RealPrometheusMixin:
    """For a unittest.TestCase: start_prometheus() in setUp, then query()."""

    def start_prometheus(self, job, target_port):
        if not PROMETHEUS:
            self.skipTest("the prometheus binary is missing (Debian package prometheus)")
        self.pdir = tempfile.mkdtemp(prefix="prom-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.pdir, True)
        self.pport = free_port()
        conf = os.path.join(self.pdir, "prometheus.yml")
        with open(conf, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    f"scrape_configs:\n  - job_name: {job}\n    static_configs:\n"
                    f"      - targets: ['127.0.0.1:{target_port}']\n")
        self.plog = open(os.path.join(self.pdir, "prometheus.log"), "wb")
        self.prom = subprocess.Popen(
            [PROMETHEUS, f"--config.file={conf}",
             f"--storage.tsdb.path={os.path.join(self.pdir, 'data')}",
             f"--web.listen-address=127.0.0.1:{self.pport}"],
            stdin=subprocess.DEVNULL, stdout=self.plog, stderr=self.plog)
        self.addCleanup(self._stop_prom)
        self.api = f"http://127.0.0.1:{self.pport}/api/v1/query?query="
        deadline = time.monotonic() + WAIT
        while True:
            try:
                if http_get(f"http://127.0.0.1:{self.pport}/-/ready")[0] == 200:
                    break
            except OSError:
                pass
            if self.prom.poll() is not None or time.monotonic() > deadline:
                self.fail("prometheus did not become ready:\n" + self.prom_log())
            time.sleep(0.2)

    def prom_log(self):
        with open(os.path.join(self.pdir, "prometheus.log"), "rb") as f:
            return f.read().decode("utf-8", "replace")[-5000:]

    def _stop_prom(self):
        if self.prom.poll() is None:
            self.prom.send_signal(signal.SIGTERM)
            try:
                self.prom.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.prom.kill()
                self.prom.wait()
        self.plog.close()

    def query(self, expr):
        _, _, body = http_get(self.api + urllib.parse.quote(expr))
        r = json.loads(body)
        self.assertEqual(r["status"], "success", body)
        return [(s["metric"], float(s["value"][1])) for s in r["data"]["result"]]

    def wait_value(self, expr, want):
        deadline = time.monotonic() + WAIT
        got = None
        while time.monotonic() < deadline:
            res = self.query(expr)
            got = res[0][1] if len(res) == 1 else res
            if got == want:
                return
            time.sleep(0.3)
        self.fail(f"prometheus: {expr} is {got}, want {want}\n{self.prom_log()}")
