# SPDX-License-Identifier: BSD-3-Clause
"""The Grafana dashboard and the alert rules name only metrics that exist.

docs/grafana/tesgate.json must be valid JSON with unique panel ids and
panels that do not overlap on the 24-column grid; every metric name in a
panel's PromQL expression, and in every alert rule's expression, must be
one that tesgate or tescontrol exports (collected from their sources: the
"tes_..." literals of gateway/ and controlplane/, histograms with their
_bucket/_sum/_count series, and tes_gateway_<counter> for the counters
tesgate reports to tescontrol) or Prometheus' own `up`.  Then `promtool
check rules` and `promtool test rules` on docs/prometheus/ when promtool is
installed.

Usage: test_dashboard.py  (TES_SRCDIR in env, or run from the source tree)
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import unittest

SRCDIR = os.environ.get("TES_SRCDIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DASHBOARD = os.path.join(SRCDIR, "docs", "grafana", "tesgate.json")
RULES = os.path.join(SRCDIR, "docs", "prometheus", "tesgate-alerts.yml")
RULES_TEST = os.path.join(SRCDIR, "docs", "prometheus", "tesgate-alerts.test.yml")

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                "unless", "bool", "offset", "inf", "nan"}


def exported_metrics():
    names = set()
    for path in glob.glob(os.path.join(SRCDIR, "gateway", "*.c")) + \
            glob.glob(os.path.join(SRCDIR, "controlplane", "*.c")):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        names.update(re.findall(r'"(tes_[a-z0-9_]+)"', text))
    # The counters each gateway reports, re-exported by tescontrol as
    # tes_gateway_<name> (gateway/main.c report_counters).
    with open(os.path.join(SRCDIR, "gateway", "main.c"), encoding="utf-8") as f:
        main = f.read()
    for m in re.findall(r'json_object_set_new\(c, "([a-z0-9_]+)"', main):
        names.add("tes_gateway_" + m)
    names.add("up")
    return names


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
        cls.names = exported_metrics()
        with open(DASHBOARD, encoding="utf-8") as f:
            cls.dash = json.load(f)

    def test_metric_collection_works(self):
        # the collection itself must find what the tests rely on
        for n in ("tes_smtp_replies_total", "tes_dpdk_port_missed_packets_total",
                  "tes_stack_retransmits_total", "tes_servers", "tes_gateway_early_drops",
                  "tes_verdict_log_lines_total"):
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

    @unittest.skipUnless(shutil.which("promtool"), "promtool not installed")
    def test_promtool(self):
        r = subprocess.run(["promtool", "check", "rules", RULES], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = subprocess.run(["promtool", "test", "rules", RULES_TEST], capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() else 1)
