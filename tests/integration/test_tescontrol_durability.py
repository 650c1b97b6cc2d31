# SPDX-License-Identifier: BSD-3-Clause
"""kill -9 of tescontrol loses no first-detection date that was acknowledged
or reported; the gateway keeps its last state meanwhile and resynchronises
when tescontrol is back; stage changes that fell due while tescontrol was
down are applied (and logged as late) at start-up."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ctl_harness import DAY, T0, FakeGateway, Tescontrol  # noqa: E402

OLD_2016 = "15.1.2507.35"


class KillNine(unittest.TestCase):
    def setUp(self):
        self.tc = Tescontrol()
        self.addCleanup(self._cleanup)
        self.tc.start()
        self.tc.ctl("tenant", "add", 1, "Bear", "--connector", "198.51.100.0/24")

    def _cleanup(self):
        sys.stderr.write("---- tescontrol log ----\n" + self.tc.log_text()[-20000:])
        self.tc.cleanup()

    def assert_dates(self, expected):
        got = {(s["tenant"], s["fqdn"]): s["first_detected_unix"]
               for s in self.tc.report()["servers"]}
        for key, when in expected.items():
            self.assertIn(key, got, f"{key} lost after kill -9")
            self.assertEqual(got[key], when, f"{key}: first detection changed")

    def test_acknowledged_and_reported_dates_survive(self):
        tc = self.tc
        gw = FakeGateway(tc.gw_sock)
        self.addCleanup(gw.close)
        promised = {}  # (tenant, fqdn) -> first_detected that someone was shown
        for rnd in range(4):
            for i in range(5):
                fqdn = f"ex{rnd}-{i}.bear.local"
                ack = gw.sighting(1, fqdn, OLD_2016, source=f"198.51.100.{10 + i}")
                self.assertEqual(ack["change"], "first")
                tc.advance(3600)
            for s in tc.report()["servers"]:
                promised[(s["tenant"], s["fqdn"])] = s["first_detected_unix"]
            # The last one is only acknowledged (and pushed), then kill -9
            # at once: no report, no flush, no clean shutdown.
            fqdn = f"last{rnd}.bear.local"
            gw.sighting(1, fqdn, OLD_2016)
            promised[(1, fqdn)] = gw.servers[(1, fqdn)]["first_detected"]
            before = dict(gw.servers)
            tc.kill9()
            # The gateway notices, and keeps enforcing with what it had.
            gw.wait_closed()
            self.assertEqual(gw.servers, before)
            # Back a day later.
            tc.start(test_clock=tc.test_clock + DAY)
            self.assert_dates(promised)
            gw.connect()
            self.assertEqual(gw.syncs, rnd + 2)
            for key, when in promised.items():
                self.assertEqual(gw.servers[(key[0], key[1].lower())]["first_detected"], when)
            tc.wait_log(r"state: 1 tenants, \d+ servers", since_start=True)

    def test_pipelined_sightings_killed_midway(self):
        tc = self.tc
        gw = FakeGateway(tc.gw_sock)
        self.addCleanup(gw.close)
        names = {}
        total = 2000  # each a durable commit: far more than fit before the kill
        for i in range(total):
            seq = gw.sighting(1, f"burst{i}.bear.local", OLD_2016, when=T0 - i, wait=False)
            names[seq] = f"burst{i}.bear.local"
        # Kill as soon as some (not all) are acknowledged.
        gw.wait_until(lambda: len(gw.acks) >= 20, what="20 acks")
        tc.kill9()
        gw.wait_closed()  # every ack tescontrol sent before it died is read
        acked = {seq: names[seq] for seq in gw.acks if gw.acks[seq]["ok"]}
        self.assertGreaterEqual(len(acked), 20)
        # the kill landed in the middle of the burst, or it proved nothing
        self.assertLess(len(gw.acks), total, "every sighting was acknowledged before the kill")
        tc.start()
        got = {s["fqdn"]: s["first_detected_unix"] for s in tc.report()["servers"]}
        for seq, fqdn in acked.items():
            i = int(fqdn[5:].split(".")[0])
            self.assertEqual(got.get(fqdn), T0 - i, f"acknowledged {fqdn} lost")

    def test_stage_changes_missed_while_down(self):
        tc = self.tc
        gw = FakeGateway(tc.gw_sock)
        self.addCleanup(gw.close)
        gw.sighting(1, "ex1.bear.local", OLD_2016)
        tc.advance(DAY)
        tc.kill9()
        gw.wait_closed()
        self.assertEqual(gw.servers[(1, "ex1.bear.local")]["stage"], 1)
        # Down for 44 days: stages 2 (day 30) and 3 (day 40) fell due.
        tc.start(test_clock=T0 + 45 * DAY)
        tc.wait_log(r"stage change: tenant 1 server ex1\.bear\.local: stage 1 -> 2 .* due"
                    r" 2024-01-31T00:00:00Z, applied \d+ s late \(tescontrol was not running\)",
                    since_start=True)
        tc.wait_log(r"stage 2 -> 3 .* due 2024-02-10T00:00:00Z, applied \d+ s late"
                    r" \(tescontrol was not running\)", since_start=True)
        s = tc.server(1, "ex1.bear.local")
        self.assertEqual((s["stage"], s["status"]), (3, "Throttling"))
        self.assertEqual(s["first_detected_unix"], T0)
        gw.connect()
        self.assertEqual(gw.servers[(1, "ex1.bear.local")]["stage"], 3)
        # Announced once: a clean restart does not log them again.
        tc.stop()
        tc.start()
        tc.wait_log(r"info: ready:", since_start=True)
        self.assertNotIn("stage change", tc.log_text(since_start=True))

    def test_clean_shutdown_keeps_last_seen(self):
        tc = self.tc
        gw = FakeGateway(tc.gw_sock)
        self.addCleanup(gw.close)
        gw.sighting(1, "ex1.bear.local", OLD_2016, source="198.51.100.1")
        tc.advance(3600)
        gw.sighting(1, "ex1.bear.local", OLD_2016, source="198.51.100.2")
        self.assertEqual(tc.stop(), 0)
        tc.start()
        s = tc.ctl("server", "show", 1, "ex1.bear.local")
        self.assertEqual(s["last_seen_unix"], T0 + 3600)
        self.assertEqual(s["sources"], ["198.51.100.1", "198.51.100.2"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
