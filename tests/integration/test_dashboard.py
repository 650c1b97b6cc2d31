# SPDX-License-Identifier: BSD-3-Clause
"""The Grafana dashboard and the alert rules name only metrics that exist.

docs/grafana/tesgate.json must be valid JSON with unique panel ids and
panels that do not overlap on the 24-column grid; every metric name in a
panel's PromQL expression, and in every alert rule's expression, must be
one that a running tesgate or tescontrol really exports, read from their
/metrics: tescontrol with a kernel-socket tesgate connected (which has
carried a message and reported its counters, re-exported as
tes_gateway_<counter>), and a tesgate on DPDK over a net_tap port (root and
hugepages; the privileged suite).  Histograms count with their
_bucket/_sum/_count series; Prometheus' own `up` is known.  Then `promtool
check rules` and `promtool test rules` on docs/prometheus/.

Usage: test_dashboard.py TESGATE  (TESCONTROL, TESCTL, TES_SRCDIR in env)
"""
import json
import os
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "dpdk"))
import ctl_harness as ch  # noqa: E402
from gateway_harness import Gateway  # noqa: E402
from prom_harness import free_port  # noqa: E402
from tap_harness import hugepages_free, iface_exists, ip, wait_for  # noqa: E402

TESGATE = None

SRCDIR = os.environ.get("TES_SRCDIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DASHBOARD = os.path.join(SRCDIR, "docs", "grafana", "tesgate.json")
RULES = os.path.join(SRCDIR, "docs", "prometheus", "tesgate-alerts.yml")
RULES_TEST = os.path.join(SRCDIR, "docs", "prometheus", "tesgate-alerts.test.yml")

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                "unless", "bool", "offset", "inf", "nan"}


def families(text):
    """Metric names in a Prometheus text exposition: every # TYPE family and
    every sample's name."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, 1)[0])
    return names


def scrape(url):
    with urllib.request.urlopen(url, timeout=15) as r:
        return r.read().decode()


def scrape_kernel_pair():
    """tescontrol + a kernel-socket tesgate that carried one Exchange message
    and reported its counters: the names both export."""
    os.environ["TES_ALLOW_TEST_CLOCK"] = "1"
    tc = ch.Tescontrol(test_clock=ch.T0, conf={"metrics_listen": f"127.0.0.1:{free_port()}"})
    gw = None
    try:
        tc.start()
        tc.ctl("tenant", "add", 1, "Contoso", "--connector", "127.0.0.0/8")
        # the verdict log's families exist only when it is on
        gw = Gateway(TESGATE, conf={"control_socket": tc.gw_sock, "follow_test_clock": "yes",
                                    "metrics_listen": "127.0.0.1:0",
                                    "verdict_log": os.path.join(tc.dir, "verdicts.log")})
        gw.wait_generation(tc.generation())
        with open(os.path.join(ch.SRCDIR, "tests", "data", "headers", "ex2016-tls.hdr"),
                  "rb") as f:
            msg = f.read() + b"Body.\r\n"
        with smtplib.SMTP("127.0.0.1", gw.port, timeout=15) as s:
            s.sendmail("grace.okafor@contoso.com", ["ian.hughes@example.net"], msg)
        # The gateway reports its counters every few seconds, and tescontrol
        # publishes its exposition on a tick: wait for them to show.
        port = re.search(r"metrics_listen = 127\.0\.0\.1:(\d+)",
                         open(tc.conf_path).read()).group(1)
        deadline = time.monotonic() + 30
        while True:
            names = families(scrape(f"http://127.0.0.1:{port}/metrics"))
            if any(n.startswith("tes_gateway_") for n in names):
                break
            if time.monotonic() > deadline:
                raise AssertionError("tescontrol never exported the gateway's counters")
            time.sleep(0.1)
        names |= families(scrape(gw.metrics_url()))
        return names
    finally:
        if gw:
            rc = gw.stop()
            gw.close()
            assert rc == 0, f"tesgate exited {rc}"
        tc.cleanup()


def dpdk_unavailable():
    if os.geteuid() != 0:
        return "needs root (a DPDK tesgate on a tap device)"
    if hugepages_free() < 64:
        return "needs free 2 MB hugepages (tools/setup.sh reserves them)"
    return None


def scrape_dpdk_gateway():
    """A tesgate with io = dpdk on a net_tap port of its own: the port,
    mempool, worker and stack families only that path exports."""
    tag = os.getpid() % 100000
    iface = f"tesdash{tag}"
    work = tempfile.mkdtemp(prefix="tesgate-dash-")
    conf = os.path.join(work, "tesgate.conf")
    mport = free_port()
    with open(conf, "w") as f:
        f.write(f"""io = dpdk
dpdk_args = --no-pci --in-memory -l 0-1 --vdev=net_tap0,iface={iface}
dpdk_addr = 198.18.{5 + (tag * 7) % 200}.2/24
dpdk_port = 2525
spool_dir = {work}/spool
control_socket =
metrics_listen = 127.0.0.1:{mport}
""")
    log = open(os.path.join(work, "tesgate.log"), "w+")
    proc = subprocess.Popen([TESGATE, "-c", conf], stdout=log, stderr=subprocess.STDOUT)
    try:
        def listening():
            if proc.poll() is not None:
                raise RuntimeError(f"tesgate exited early ({proc.returncode})")
            with open(log.name, errors="replace") as f:
                return "listening on" in f.read()
        wait_for(listening, 30, "the DPDK tesgate to listen")
        names = families(scrape(f"http://127.0.0.1:{mport}/metrics"))
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        assert rc == 0, f"the DPDK tesgate exited {rc}"
        return names
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if iface_exists(iface):
            ip("link", "del", "dev", iface, check=False)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def metric_names(expr):
    """The metric names a PromQL expression selects."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)       # strings
    e = re.sub(r"\{[^}]*\}", "", e)                     # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)                    # ranges
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    out = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        word = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or word.lower() in PROMQL_WORDS:
            continue  # a function or aggregation, or a keyword
        out.add(word)
    return out


def known(name, names):
    if name in names:
        return True
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in names:
            return True
    return False


class Dashboard(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.why_no_dpdk = dpdk_unavailable()
        cls.names = scrape_kernel_pair() | {"up"}
        if not cls.why_no_dpdk:
            cls.names |= scrape_dpdk_gateway()
        with open(DASHBOARD, encoding="utf-8") as f:
            cls.dash = json.load(f)

    def setUp(self):
        # without the DPDK scrape half the panels could not be judged
        if self.why_no_dpdk and self._testMethodName in ("test_panel_metrics_exist",
                                                         "test_rule_metrics_exist"):
            self.skipTest(self.why_no_dpdk)

    def test_scrapes_hold_what_the_checks_rely_on(self):
        for n in ("tes_smtp_replies_total", "tes_servers", "tes_gateway_early_drops",
                  "tes_verdict_log_lines_total", "tes_control_generation"):
            self.assertIn(n, self.names)
        if not self.why_no_dpdk:
            for n in ("tes_dpdk_port_missed_packets_total", "tes_stack_retransmits_total"):
                self.assertIn(n, self.names)
        self.assertEqual(metric_names('sum by (le) (rate(a_b_bucket{x="y(z)"}[5m])) / c > 1'),
                         {"a_b_bucket", "c"})

    def test_panels_valid(self):
        panels = self.dash["panels"]
        ids = [p["id"] for p in panels]
        self.assertEqual(len(ids), len(set(ids)), "panel ids repeat")
        cells = {}
        for p in panels:
            g = p["gridPos"]
            self.assertLessEqual(g["x"] + g["w"], 24, p["title"])
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    self.assertNotIn((x, y), cells, f"{p['title']} overlaps {cells.get((x, y))}")
                    cells[(x, y)] = p["title"]
            for t in p.get("targets", []):
                self.assertEqual(t["datasource"]["uid"], "${datasource}", p["title"])

    def test_panel_metrics_exist(self):
        seen = set()
        for p in self.dash["panels"]:
            for t in p.get("targets", []):
                for n in metric_names(t["expr"]):
                    seen.add(n)
                    self.assertTrue(known(n, self.names),
                                    f"panel {p['title']!r}: {n} is not exported")
        # the gateway panels the dashboard promises
        for n in ("tes_connections_accepted_total", "tes_smtp_replies_total",
                  "tes_enforcement_verdicts_total", "tes_tls_handshakes_total",
                  "tes_delivery_duration_seconds_bucket", "tes_connections_early_dropped_total",
                  "tes_dpdk_port_received_packets_total", "tes_dpdk_port_missed_packets_total",
                  "tes_stack_retransmits_total"):
            self.assertIn(n, seen)

    def test_rule_metrics_exist(self):
        with open(RULES, encoding="utf-8") as f:
            text = f.read()
        exprs = []
        # expr: one line, or a folded block (>-) of indented lines
        lines = text.splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"^(\s*)expr:\s*(.*)$", line)
            if not m:
                continue
            if m.group(2).strip() == ">-":
                block = []
                for nxt in lines[i + 1:]:
                    if len(nxt) - len(nxt.lstrip()) <= len(m.group(1)):
                        break
                    block.append(nxt.strip())
                exprs.append(" ".join(block))
            else:
                exprs.append(m.group(2))
        self.assertGreater(len(exprs), 10)
        for e in exprs:
            for n in metric_names(e):
                self.assertTrue(known(n, self.names), f"alert expr {e!r}: {n} is not exported")
        for alert in ("TesgateServerEnteredThrottling", "TesgateServerEnteredBlocking",
                      "TesgateDeliveryFailures", "TesgateEarlyDrops",
                      "TesgateGatewayLostControlPlane"):
            self.assertIn(f"alert: {alert}\n", text)

    def test_promtool(self):
        # tools/setup.sh installs Prometheus, promtool with it
        self.assertIsNotNone(shutil.which("promtool"), "promtool not installed")
        r = subprocess.run(["promtool", "check", "rules", RULES], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = subprocess.run(["promtool", "test", "rules", RULES_TEST], capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


if __name__ == "__main__":
    TESGATE = os.path.abspath(sys.argv.pop(1))
    result = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() else 1)
