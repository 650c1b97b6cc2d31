# SPDX-License-Identifier: BSD-3-Clause
"""tescontrol's telemetry: the Prometheus endpoint scraped directly (exact
values for known traffic, `promtool check metrics` on the text), the same
values as a real Prometheus server stores them (asked through its HTTP
API), and the enforcement event log (exact JSON lines, reopened on SIGHUP).

Exit 77 (skipped) when the prometheus binary is missing and everything
else passed; the promtool checks are skipped without promtool."""
import json
import os
import signal
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ctl_harness import DAY, T0, FakeGateway, Tescontrol  # noqa: E402
from prom_harness import (PROMETHEUS, PROMTOOL, WAIT, RealPrometheusMixin,  # noqa: E402
                          free_port, http_get, parse_metrics)

OLD_2016 = "15.1.2507.35"   # out of date
GOOD_2016 = "15.1.2507.61"  # compliant


class TelemetryCase(unittest.TestCase):
    def setUp(self):
        self.port = free_port()
        self.tc = Tescontrol(conf={"metrics_listen": f"127.0.0.1:{self.port}"})
        self.events = os.path.join(self.tc.dir, "events.log")
        with open(self.tc.conf_path, "a") as f:
            f.write(f"event_log = {self.events}\n")
        self.addCleanup(self._cleanup)
        self.tc.start()
        self.url = f"http://127.0.0.1:{self.port}/metrics"

    def _cleanup(self):
        sys.stderr.write("---- tescontrol log ----\n" + self.tc.log_text()[-20000:])
        self.tc.cleanup()

    def gateway(self, name="gw-a"):
        gw = FakeGateway(self.tc.gw_sock, name)
        self.addCleanup(gw.close)
        return gw

    def scrape(self):
        status, ctype, text = http_get(self.url)
        self.assertEqual(status, 200)
        self.assertTrue(ctype.startswith("text/plain; version=0.0.4"), ctype)
        return text

    def wait_metric(self, key, want):
        """tescontrol publishes once a second: wait (bounded) for want."""
        deadline = time.monotonic() + WAIT
        while True:
            text = self.scrape()
            got = parse_metrics(text).get(key)
            if got == want or time.monotonic() > deadline:
                self.assertEqual(got, want, f"{key} in\n{text}")
                return text
            time.sleep(0.2)

    def traffic(self, gw):
        """3 first detections, one resolution, one ignored sighting."""
        self.tc.ctl("tenant", "add", 1, "Bear", "--connector", "198.51.100.0/24")
        for n in (1, 2, 3):
            self.assertEqual(gw.sighting(1, f"EX{n}.bear.local", OLD_2016)["change"], "first")
        self.assertEqual(gw.sighting(1, "EX3.bear.local", GOOD_2016, cls="compliant")["change"],
                         "resolved")
        gw.send({"type": "counters",
                 "counters": {"messages_refused": 7, "early.drops": 2, "messages": 120}})


class Scrape(TelemetryCase):
    def test_exact_values_and_format(self):
        before = parse_metrics(self.scrape())
        self.assertEqual(before["tes_first_detections_total"], 0)
        self.assertEqual(before["tes_gateways_connected"], 0)
        gw = self.gateway()
        self.traffic(gw)
        text = self.wait_metric('tes_gateway_messages_refused{gateway="gw-a"}', 7)
        m = parse_metrics(text)
        expect = {
            "tes_first_detections_total": 3,
            "tes_resolutions_total": 1,
            "tes_redetections_total": 0,
            'tes_sightings_total{class="vulnerable"}': 3,
            'tes_sightings_total{class="compliant"}': 1,
            'tes_sightings_total{class="ignored"}': 0,
            'tes_servers{status="reporting"}': 2,
            'tes_servers{status="resolved"}': 1,
            'tes_servers{status="throttling"}': 0,
            "tes_gateways_connected": 1,
            'tes_gateway_early_drops{gateway="gw-a"}': 2,
            'tes_gateway_messages{gateway="gw-a"}': 120,
            'tes_tenant_pause_quota_used_seconds{tenant="1",tenant_name="Bear"}': 0,
            "tes_tenants": 1,
        }
        for k, v in expect.items():
            self.assertEqual(m.get(k), v, k)
        # Every first detection and the resolution were committed.
        self.assertGreaterEqual(m["tes_store_commit_duration_seconds_count"], 4)
        self.assertEqual(m['tes_store_commit_duration_seconds_bucket{le="+Inf"}'],
                         m["tes_store_commit_duration_seconds_count"])

        # A stage change by the test clock: all 2 open servers reach stage 2.
        self.tc.advance(31 * DAY)
        text = self.wait_metric('tes_stage_changes_total{stage="2"}', 2)
        m = parse_metrics(text)
        self.assertEqual(m['tes_status_changes_total{status="throttling"}'], 2)
        self.assertEqual(m['tes_servers{status="throttling"}'], 2)

        # A pause: 10 days of the quota.
        self.tc.ctl("pause", "add", 1, 10)
        text = self.wait_metric(
            'tes_tenant_pause_quota_used_seconds{tenant="1",tenant_name="Bear"}', 10 * DAY)
        self.assertEqual(parse_metrics(text)['tes_servers{status="paused"}'], 2)

        # The gateway leaves.
        gw.close()
        self.wait_metric("tes_gateways_connected", 0)

        status = None
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/nope", timeout=5)
        except urllib.error.HTTPError as e:
            status = e.code
        self.assertEqual(status, 404)

        if not PROMTOOL:
            sys.stderr.write("promtool not found: format check skipped\n")
            return
        p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


class RealPrometheus(RealPrometheusMixin, TelemetryCase):
    def setUp(self):
        super().setUp()
        self.start_prometheus("tescontrol", self.port)

    def test_prometheus_sees_the_traffic(self):
        self.wait_value('up{job="tescontrol"}', 1)
        self.wait_value("tes_first_detections_total", 0)
        gw = self.gateway()
        self.traffic(gw)
        self.wait_value("tes_first_detections_total", 3)
        self.wait_value("tes_resolutions_total", 1)
        self.wait_value('tes_sightings_total{class="vulnerable"}', 3)
        self.wait_value('tes_servers{status="reporting"}', 2)
        self.wait_value('tes_gateway_messages_refused{gateway="gw-a"}', 7)
        self.wait_value("tes_gateways_connected", 1)
        self.tc.advance(31 * DAY)
        self.wait_value('tes_stage_changes_total{stage="2"}', 2)
        self.wait_value('tes_servers{status="throttling"}', 2)
        # Prometheus saw the counter go from 0 to 3, nothing more.
        res = self.query("max_over_time(tes_first_detections_total[5m])"
                         " - min_over_time(tes_first_detections_total[5m])")
        self.assertEqual([v for _, v in res], [3.0])
        gw.close()
        self.wait_value("tes_gateways_connected", 0)


class AnyInt:
    """Equal to any int: tesctl's pid in an admin action's line."""

    def __eq__(self, other):
        return isinstance(other, int)

    def __repr__(self):
        return "AnyInt"


class EventLog(TelemetryCase):
    def read_events(self, path=None):
        with open(path or self.events) as f:
            return [json.loads(line) for line in f]

    def wait_events(self, n, path=None):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if os.path.exists(path or self.events) and len(self.read_events(path)) >= n:
                break
            time.sleep(0.05)
        return self.read_events(path)

    def test_lines_and_rotation(self):
        tc = self.tc
        tc.ctl("tenant", "add", 1, "Bear", "--connector", "198.51.100.0/24")
        gw = self.gateway()
        gw.sighting(1, "EX1.bear.local", OLD_2016)
        tc.advance(31 * DAY)
        tc.ctl("pause", "add", 1, 10)
        tc.advance(1 * DAY)
        gw.sighting(1, "EX1.bear.local", GOOD_2016, cls="compliant")
        t1, t2 = T0 + 31 * DAY, T0 + 32 * DAY
        srv = {"tenant": 1, "tenant_name": "Bear", "server": "EX1.bear.local",
               "build": OLD_2016, "family": "2016"}
        who = dict(uid=os.getuid(), gid=os.getgid(), pid=AnyInt())
        bear = {"id": 1, "name": "Bear", "connectors": [{"range": "198.51.100.0/24"}],
                "pause": {"start": 0, "end": 0, "paused_before": 0, "year": 0,
                          "days_used": 0}}
        want = [
            dict(time="2024-01-01T00:00:00Z", epoch=T0, event="tenant_add", tenant=1,
                 tenant_name="Bear", **who, before=None, after=bear),
            dict(time="2024-01-01T00:00:00Z", epoch=T0, event="first_detection", **srv,
                 stage=1, status="Reporting", detected_at=T0),
            dict(time="2024-02-01T00:00:00Z", epoch=t1, event="stage_change", **srv, stage=2,
                 status="Throttling", from_stage=1, from_status="Reporting",
                 reason="test clock moved"),
            dict(time="2024-02-01T00:00:00Z", epoch=t1, event="pause", tenant=1,
                 tenant_name="Bear", **who, before=bear["pause"],
                 after={"start": t1, "end": t1 + 10 * DAY, "paused_before": 0,
                        "year": 2024, "days_used": 10},
                 pause_end="2024-02-11T00:00:00Z", pause_end_epoch=t1 + 10 * DAY,
                 pause_days_used=10),
            dict(time="2024-02-01T00:00:00Z", epoch=t1, event="status_change", **srv, stage=2,
                 status="Paused", from_stage=2, from_status="Throttling", reason="pause"),
            dict(time="2024-02-02T00:00:00Z", epoch=t2, event="resolved",
                 **dict(srv, build=GOOD_2016), stage=2, status="Resolved", detected_at=t2),
        ]
        got = self.wait_events(len(want))
        self.assertEqual(got, want)

        # Rotation: rename, SIGHUP, and the next event lands in a new file.
        rotated = self.events + ".1"
        os.rename(self.events, rotated)
        os.kill(tc.proc.pid, signal.SIGHUP)
        tc.wait_log(r"event log .* reopened")
        gw.sighting(1, "EX2.bear.local", OLD_2016)
        new = self.wait_events(1)
        self.assertEqual([(e["event"], e["server"]) for e in new],
                         [("first_detection", "EX2.bear.local")])
        self.assertEqual(self.read_events(rotated), want)

        # The tenant is still paused: ending the pause and resetting the
        # server are logged too, in the new file only.
        tc.ctl("pause", "resume", 1)
        tc.ctl("server", "reset", 1, "EX2.bear.local")
        new = self.wait_events(4)
        brief = [(e["event"], e.get("server"), e.get("status"), e.get("from_status"))
                 for e in new]
        self.assertEqual(brief, [
            ("first_detection", "EX2.bear.local", "Paused", None),
            ("pause_resumed", None, None, None),
            ("status_change", "EX2.bear.local", "Reporting", "Paused"),
            ("reset", "EX2.bear.local", "Reporting", None),
        ])
        self.assertEqual(new[1]["pause_end_epoch"], t2)
        self.assertEqual(new[1]["pause_days_used"], 10)
        self.assertEqual(new[2]["reason"], "pause ended by the operator")
        self.assertEqual(self.read_events(rotated), want)


if __name__ == "__main__":
    prog = unittest.main(exit=False, verbosity=2)
    ok = prog.result.wasSuccessful()
    if ok and not PROMETHEUS:
        print("SKIP: the prometheus binary is missing (apt-get install prometheus); the"
              " real-Prometheus test did not run")
        sys.exit(77)
    sys.exit(0 if ok else 1)
