# SPDX-License-Identifier: BSD-3-Clause
"""The whole enforcement timeline through a real tescontrol, driven by its
test clock: first detection (report only), every throttle and block stage,
pause and resume, the pause quota, resolution on a compliant build,
re-detection, operator reset.  Asserts on tesctl's JSON and on what the
fake gateway receives."""
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ctl_harness import DAY, T0, CtlError, FakeGateway, Tescontrol  # noqa: E402

# (stage, start day, status, throttled min/h, blocked min/h): the default
# policy, data/policy.conf.
STAGES = [
    (1, 0, "Reporting", 0, 0),
    (2, 30, "Throttling", 5, 0),
    (3, 40, "Throttling", 10, 0),
    (4, 50, "Throttling", 20, 0),
    (5, 60, "Blocking", 30, 5),
    (6, 70, "Blocking", 0, 10),
    (7, 80, "Blocking", 0, 20),
    (8, 90, "Blocking", 0, 60),
]
OLD_2016 = "15.1.2507.35"     # CU23 Nov23SU: out of date
GOOD_2016 = "15.1.2507.61"    # CU23 Oct25SU: the compliance cut-off


class TescontrolCase(unittest.TestCase):
    def setUp(self):
        self.tc = Tescontrol()
        self.addCleanup(self._cleanup)
        self.tc.start()

    def _cleanup(self):
        # meson shows this only when the test fails.
        sys.stderr.write("---- tescontrol log ----\n" + self.tc.log_text()[-20000:])
        self.tc.cleanup()

    def gateway(self, name="gw-test"):
        gw = FakeGateway(self.tc.gw_sock, name)
        self.addCleanup(gw.close)
        return gw


class Timeline(TescontrolCase):
    def test_every_stage_on_time(self):
        tc = self.tc
        tc.ctl("tenant", "add", 1, "Bear", "--connector", "198.51.100.0/24")
        gw = self.gateway()
        self.assertIn(1, gw.tenants)
        self.assertIsNotNone(gw.policy)
        self.assertIsNotNone(gw.catalog)

        mark = len(gw.msgs)
        ack = gw.sighting(1, "EX1.bear.local", OLD_2016, source="198.51.100.7")
        self.assertTrue(ack["ok"])
        self.assertEqual(ack["change"], "first")
        pushed = gw.server_msgs_since(mark, "ex1.bear.local")
        self.assertEqual(len(pushed), 1)
        self.assertEqual(pushed[0]["stage"], 1)
        self.assertEqual(pushed[0]["status"], "Reporting")
        self.assertEqual(pushed[0]["server"]["first_detected"], T0)
        self.assertEqual(pushed[0]["server"]["sources"], ["198.51.100.7"])

        s = tc.server(1, "ex1.bear.local")
        self.assertEqual(s["fqdn"], "EX1.bear.local")
        self.assertEqual(s["build"], OLD_2016)
        self.assertEqual(s["family"], "2016")
        self.assertEqual(s["status"], "Reporting")
        self.assertEqual(s["first_detected_unix"], T0)
        self.assertEqual(s["first_detected"], "2024-01-01T00:00:00Z")
        self.assertEqual(s["throttle_enabled_unix"], T0 + 30 * DAY)
        self.assertEqual(s["blocking_enabled_unix"], T0 + 60 * DAY)
        self.assertEqual(s["next_stage"], 2)
        self.assertEqual(s["next_stage_throttle_min"], 5)
        self.assertEqual(s["next_stage_block_min"], 0)
        self.assertEqual(s["next_stage_start_unix"], T0 + 30 * DAY)
        # SE first (its rule has no end), then the server's own CU23 at its
        # last public update, then the other branches whose rule ends.
        self.assertEqual([r["build"] for r in s["recommended"]],
                         ["15.2.2562.46", "15.1.2507.61", "15.2.1748.39", "15.2.1544.36"])

        for i, (stage, day, status, thr, blk) in enumerate(STAGES[1:], start=1):
            prev = STAGES[i - 1]
            # One second before the stage: nothing changes.
            mark = len(gw.msgs)
            tc.advance(T0 + day * DAY - 1 - tc.test_clock)
            gw.drain()
            self.assertEqual(gw.server_msgs_since(mark), [], f"early push before stage {stage}")
            self.assertEqual(tc.server(1, "ex1.bear.local")["stage"], prev[0])
            # At the second it starts: logged, pushed, reported.
            mark = len(gw.msgs)
            tc.advance(1)
            gw.wait_until(lambda: gw.server_msgs_since(mark), what=f"stage {stage} push")
            m = gw.server_msgs_since(mark)[-1]
            self.assertEqual((m["stage"], m["status"]), (stage, status))
            self.assertEqual(m["at"], T0 + day * DAY)
            self.assertEqual(gw.servers[(1, "ex1.bear.local")]["stage"], stage)
            s = tc.server(1, "ex1.bear.local")
            self.assertEqual((s["stage"], s["status"]), (stage, status))
            self.assertEqual(s["first_detected_unix"], T0)
            if stage < 8:
                nxt = STAGES[stage]
                self.assertEqual(s["next_stage"], nxt[0])
                self.assertEqual(s["next_stage_throttle_min"], nxt[3])
                self.assertEqual(s["next_stage_block_min"], nxt[4])
                self.assertEqual(s["next_stage_start_unix"], T0 + nxt[1] * DAY)
            else:
                self.assertIsNone(s["next_stage"])
                self.assertIsNone(s["next_stage_start"])
            tc.wait_log(rf"stage change: tenant 1 server EX1\.bear\.local: stage {stage - 1}"
                        rf" -> {stage} \({thr} min/h throttled, {blk} min/h blocked\)")
        # After the last stage nothing more happens (until the server, seen
        # no more, turns Stale after stale_after days: test_ageing.py).
        mark = len(gw.msgs)
        tc.advance(25 * DAY)
        gw.drain()
        self.assertEqual(gw.server_msgs_since(mark), [])
        st = tc.ctl("status")
        self.assertEqual(st["servers"]["blocking"], 1)
        self.assertEqual(st["gateways_connected"], 1)
        self.assertTrue(st["clock"]["test_clock"])

    def test_jump_logs_every_stage_passed(self):
        tc = self.tc
        tc.ctl("tenant", "add", 1, "Bear")
        gw = self.gateway()
        gw.sighting(1, "ex1.bear.local", OLD_2016)
        mark = len(gw.msgs)
        tc.advance(65 * DAY)
        gw.wait_until(lambda: gw.server_msgs_since(mark), what="push after the jump")
        self.assertEqual(gw.server_msgs_since(mark)[-1]["stage"], 5)
        for k in range(2, 6):
            tc.wait_log(rf"stage {k - 1} -> {k} .*due {T0_ISO[k]}")


T0_ISO = {2: "2024-01-31", 3: "2024-02-10", 4: "2024-02-20", 5: "2024-03-01"}


class PauseAndQuota(TescontrolCase):
    def test_pause_stops_the_clock_and_resumes(self):
        tc = self.tc
        tc.ctl("tenant", "add", 2, "Fox", "--connector", "203.0.113.0/24")
        gw = self.gateway()
        gw.sighting(2, "ex2.fox.local", OLD_2016, source="203.0.113.9")
        tc.advance(35 * DAY)
        self.assertEqual(tc.server(2, "ex2.fox.local")["status"], "Throttling")

        mark = len(gw.msgs)
        p = tc.ctl("pause", "add", 2, 10)
        self.assertTrue(p["active"])
        self.assertEqual(p["days_used"], 10)
        self.assertEqual(p["days_left"], 80)
        self.assertEqual(p["end_unix"], T0 + 45 * DAY)
        gw.wait_until(lambda: gw.tenants[2]["pause"]["end"] == T0 + 45 * DAY,
                      what="tenant pause pushed")
        gw.wait_until(lambda: gw.servers[(2, "ex2.fox.local")]["status"] == "Paused",
                      what="server Paused pushed")
        self.assertTrue(gw.server_msgs_since(mark, "ex2.fox.local"))
        s = tc.server(2, "ex2.fox.local")
        self.assertEqual(s["status"], "Paused")
        tc.wait_log(r"status change: tenant 2 server ex2\.fox\.local: Throttling -> Paused")

        tc.advance(5 * DAY)
        s = tc.ctl("server", "show", 2, "ex2.fox.local")
        self.assertEqual(s["status"], "Paused")
        self.assertEqual(s["stage"], 2)
        self.assertEqual(s["elapsed_seconds"], 35 * DAY)
        self.assertEqual(s["paused_seconds"], 5 * DAY)

        # The pause ends at day 45: the clock resumes at 35 days.
        mark = len(gw.msgs)
        tc.advance(5 * DAY)
        gw.wait_until(lambda: gw.servers[(2, "ex2.fox.local")]["status"] == "Throttling",
                      what="server resumed")
        s = tc.server(2, "ex2.fox.local")
        self.assertEqual((s["status"], s["stage"]), ("Throttling", 2))
        self.assertEqual(s["first_detected_unix"], T0)
        # Stage 3 starts at 40 days of clock: day 50 of the calendar.
        self.assertEqual(s["next_stage_start_unix"], T0 + 50 * DAY)
        self.assertEqual(s["blocking_enabled_unix"], T0 + 70 * DAY)
        mark = len(gw.msgs)
        tc.advance(5 * DAY)
        gw.wait_until(lambda: gw.server_msgs_since(mark, "ex2.fox.local"), what="stage 3")
        self.assertEqual(tc.server(2, "ex2.fox.local")["stage"], 3)

    def test_quota(self):
        tc = self.tc
        tc.ctl("tenant", "add", 2, "Fox")
        gw = self.gateway()
        gw.sighting(2, "ex2.fox.local", OLD_2016)
        tc.advance(31 * DAY)
        tc.ctl("pause", "add", 2, 10)
        with self.assertRaises(CtlError) as e:
            tc.ctl("pause", "add", 2, 81)
        self.assertEqual(e.exception.rc, 1)
        self.assertIn("pause quota exceeded", e.exception.stderr)
        self.assertIn("80 of its 90 pause days left in 2024", e.exception.stderr)
        self.assertEqual(e.exception.stdout, "")
        p = tc.ctl("pause", "show", 2)
        self.assertEqual((p["days_used"], p["days_left"]), (10, 80))
        # An active pause is extended from its end.
        p = tc.ctl("pause", "add", 2, 30)
        self.assertEqual(p["end_unix"], T0 + 31 * DAY + 40 * DAY)
        p = tc.ctl("pause", "add", 2, 30)
        self.assertEqual(p["days_left"], 20)
        with self.assertRaises(CtlError) as e:
            tc.ctl("pause", "add", 2, 21)
        self.assertIn("20 of its 90 pause days left", e.exception.stderr)
        # Resuming ends the pause; the days granted stay used.
        mark = len(gw.msgs)
        p = tc.ctl("pause", "resume", 2)
        self.assertFalse(p["active"])
        self.assertEqual(p["days_left"], 20)
        gw.wait_until(lambda: gw.servers[(2, "ex2.fox.local")]["status"] == "Throttling",
                      what="resume pushed")
        self.assertTrue(gw.server_msgs_since(mark))
        with self.assertRaises(CtlError) as e:
            tc.ctl("pause", "resume", 2)
        self.assertIn("not paused", e.exception.stderr)
        with self.assertRaises(CtlError) as e:
            tc.ctl("pause", "add", 99, 1)
        self.assertIn("no tenant 99", e.exception.stderr)


class ResolveAndRedetect(TescontrolCase):
    def test_resolution_redetection_and_reset(self):
        tc = self.tc
        tc.ctl("tenant", "add", 3, "Owl")
        gw = self.gateway()
        gw.sighting(3, "ex3.owl.local", OLD_2016)
        tc.advance(31 * DAY)
        self.assertEqual(tc.server(3, "ex3.owl.local")["status"], "Throttling")

        mark = len(gw.msgs)
        ack = gw.sighting(3, "EX3.OWL.LOCAL", GOOD_2016, cls="compliant")
        self.assertEqual(ack["change"], "resolved")
        m = gw.server_msgs_since(mark)[-1]
        self.assertEqual(m["status"], "Resolved")
        self.assertTrue(m["server"]["resolved"])
        s = tc.server(3, "ex3.owl.local")
        self.assertEqual(s["status"], "Resolved")
        self.assertEqual(s["build"], GOOD_2016)
        self.assertEqual(s["resolved_at_unix"], T0 + 31 * DAY)
        self.assertIsNone(s["next_stage"])
        tc.wait_log(r"resolved: tenant 3 \(Owl\) server ex3\.owl\.local now runs 15\.1\.2507\.61")
        # Resolved servers do not escalate.
        mark = len(gw.msgs)
        tc.advance(100 * DAY)
        gw.drain()
        self.assertEqual(gw.server_msgs_since(mark), [])

        # Out of date again later: a new clock.
        now = tc.test_clock
        ack = gw.sighting(3, "ex3.owl.local", OLD_2016)
        self.assertEqual(ack["change"], "redetected")
        s = tc.server(3, "ex3.owl.local")
        self.assertEqual((s["status"], s["stage"]), ("Reporting", 1))
        self.assertEqual(s["first_detected_unix"], now)
        self.assertEqual(s["throttle_enabled_unix"], now + 30 * DAY)
        tc.wait_log(r"re-detection: tenant 3")

        # A sighting older than the resolution it follows cannot restart it.
        gw.sighting(3, "ex3.owl.local", GOOD_2016, cls="compliant")
        ack = gw.sighting(3, "ex3.owl.local", OLD_2016, when=now - DAY)
        self.assertEqual(ack["change"], "none")
        self.assertEqual(tc.server(3, "ex3.owl.local")["status"], "Resolved")

        # Operator reset: forgotten, and the gateways are told.
        gw.sighting(3, "ex3.owl.local", OLD_2016)
        r = tc.ctl("server", "reset", 3, "Ex3.Owl.Local")
        self.assertTrue(r["reset"])
        gw.wait_until(lambda: (3, "ex3.owl.local") not in gw.servers, what="delete pushed")
        self.assertIsNone(tc.server(3, "ex3.owl.local"))
        with self.assertRaises(CtlError) as e:
            tc.ctl("server", "show", 3, "ex3.owl.local")
        self.assertIn("no server ex3.owl.local", e.exception.stderr)
        self.assertEqual(gw.sighting(3, "ex3.owl.local", OLD_2016)["change"], "first")

    def test_sighting_edge_cases(self):
        tc = self.tc
        tc.ctl("tenant", "add", 4, "Elk")
        gw = self.gateway()
        # Compliant servers never seen out of date are tracked without a
        # clock (issue 13: shared sources), and not in the report.
        self.assertEqual(gw.sighting(4, "ok.elk.local", GOOD_2016, cls="compliant")["change"],
                         "tracked")
        self.assertIsNone(tc.server(4, "ok.elk.local"))
        # Unknown tenants are refused, not fatal.
        ack = gw.sighting(77, "x.local", OLD_2016)
        self.assertFalse(ack["ok"])
        self.assertIn("unknown tenant 77", ack["error"])
        # tescontrol's catalog decides, whatever the gateway said.
        self.assertEqual(gw.sighting(4, "liar.elk.local", OLD_2016, cls="compliant")["change"],
                         "first")
        # Exchange Online builds are never on-premises servers.
        self.assertEqual(gw.sighting(4, "eop.local", "15.20.7452.28")["change"], "none")
        # A late sighting keeps its time; one from the future gets now.
        tc.advance(DAY)
        gw.sighting(4, "late.elk.local", OLD_2016, when=T0 + 3600)
        self.assertEqual(tc.server(4, "late.elk.local")["first_detected_unix"], T0 + 3600)
        gw.sighting(4, "future.elk.local", OLD_2016, when=T0 + 50 * DAY)
        self.assertEqual(tc.server(4, "future.elk.local")["first_detected_unix"], T0 + DAY)
        # Tenant 0: mail over no connector is only counted under the default
        # scope "connectors" (issue 13; scope "all": test_untrusted_bound.py).
        self.assertEqual(gw.sighting(0, "stray.example", OLD_2016)["change"], "none")
        self.assertIsNone(tc.server(0, "stray.example"))
        # Sources are kept, newest last, and pushed when they change.
        mark = len(gw.msgs)
        gw.sighting(4, "liar.elk.local", OLD_2016, source="192.0.2.1")
        gw.sighting(4, "liar.elk.local", OLD_2016, source="2001:db8::1")
        gw.sighting(4, "liar.elk.local", OLD_2016, source="192.0.2.1")
        self.assertEqual(len(gw.server_msgs_since(mark, "liar.elk.local")), 2)
        s = tc.ctl("server", "show", 4, "liar.elk.local")
        self.assertEqual(s["sources"], ["192.0.2.1", "2001:db8::1"])


class RealClock(unittest.TestCase):
    """Without the test clock the escalation runs off a real-time timerfd."""

    def setUp(self):
        self.tc = Tescontrol(test_clock=None)
        self.addCleanup(self._cleanup)
        self.tc.start()

    def _cleanup(self):
        sys.stderr.write("---- tescontrol log ----\n" + self.tc.log_text()[-20000:])
        self.tc.cleanup()

    def test_stage_change_fires_on_time(self):
        tc = self.tc
        tc.ctl("tenant", "add", 1, "Bear")
        gw = FakeGateway(tc.gw_sock)
        self.addCleanup(gw.close)
        # Seen (late) 30 days minus 2 seconds ago: stage 2 is 2 s away.
        due = int(time.time()) + 2
        ack = gw.sighting(1, "ex1.bear.local", OLD_2016, when=due - 30 * DAY)
        self.assertEqual(ack["change"], "first")
        self.assertEqual(gw.servers[(1, "ex1.bear.local")]["stage"], 1)
        mark = len(gw.msgs)
        gw.wait_until(lambda: gw.server_msgs_since(mark), timeout=15, what="timer push")
        m = gw.server_msgs_since(mark)[-1]
        self.assertEqual((m["stage"], m["status"]), (2, "Throttling"))
        # never early; and the change is recorded at the second it fell due,
        # however late a busy machine ran the timer
        self.assertGreaterEqual(m["at"], due)
        due_iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(due))
        tc.wait_log(r"stage change: tenant 1 server ex1\.bear\.local: stage 1 -> 2 "
                    r"\(5 min/h throttled, 0 min/h blocked\), due " + re.escape(due_iso))
        # Counters from the gateway show up in status.
        gw.send({"type": "counters", "counters": {"messages": 12, "throttled": 3}})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            g = tc.ctl("status")["gateways"][0]
            if g.get("counters"):
                break
            time.sleep(0.05)
        self.assertEqual(g["counters"], {"messages": 12, "throttled": 3})
        self.assertEqual(g["gateway"], "gw-test")
        self.assertTrue(g["synced"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
