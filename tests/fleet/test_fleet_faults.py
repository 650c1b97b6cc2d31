# SPDX-License-Identifier: BSD-3-Clause
"""The fleet under faults: a 3-member etcd cluster and three appliances
(tescontrol with store = etcd, tesgate on kernel sockets), test clock.

- kill -9 of the etcd leader during a stream of first detections through
  the three gateways: none is lost, and every appliance ends with the same
  report, byte for byte;
- one appliance cut off from etcd (its relays to the members cut) across a
  server's stage edge: it keeps enforcing (its gateway throttles at the
  edge), says so (tesctl status, tes_store_cut_off), journals what it
  detects, and when it is back its detection is reconciled: the earliest
  date wins on every appliance;
- everything restarted (appliances stopped, etcd members stopped and
  started on their data, appliances started): each appliance's report is
  byte-identical to what it was.

Usage: test_fleet_faults.py TESGATE  (TESCONTROL, TESCTL, TES_SRCDIR in env)
"""
import os
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fleet_harness as fh  # noqa: E402
from fleet_harness import DAY, GOOD, OK, T0, THROTTLE5, iso  # noqa: E402


class FleetCase(unittest.TestCase):
    tesgate = None
    cuttable = ()
    conf = None

    def setUp(self):
        self.fleet = fh.Fleet(self.tesgate, cuttable=self.cuttable, conf=self.conf)
        try:
            self.fleet.start()
        except Exception:
            self.fleet.cleanup()
            raise
        self.A, self.B, self.C = self.fleet["A"], self.fleet["B"], self.fleet["C"]
        self.all = (self.A, self.B, self.C)

    def tearDown(self):
        try:
            for a in self.all:
                a.stop()
        finally:
            self.fleet.cleanup()

    def same_reports(self):
        """Every appliance's report, once they are all equal."""
        reps = {}

        def equal():
            reps.clear()
            reps.update({a.name: a.report_bytes() for a in self.all})
            return len(set(reps.values())) == 1

        fh.wait_for(equal, "the same report on every appliance")
        return reps


class LeaderKill(FleetCase):
    # Requests stalled by the election time out, so that detections made
    # while etcd has no leader are journaled (the path this test covers).
    conf = {n: {"etcd_timeout_ms": "250", "etcd_connect_timeout_ms": "100"} for n in "ABC"}

    def test_leader_killed_during_first_detections(self):
        """First detections keep coming through all three gateways while
        the leader dies; those made while no leader is elected go to the
        journals and are reconciled."""
        sent, errors = [], []
        lock = threading.Lock()
        stop = threading.Event()

        def stream(a, k):
            # Paced under the gateway's budget of new names per tenant and
            # second (TENANT_BUDGET in gateway/state/ctlclient.c): a name
            # over it is reported only by its next message, and these are
            # sent once.  Bounded in count, far beyond what the waits below
            # need, so that the stream outlives them.
            i = 0
            while not stop.is_set() and i < 3000:
                name = f"s{k}-{i:04d}.contoso.local"
                r = a.send(name)
                with lock:
                    (sent if r == OK else errors).append((a.name, name, r))
                i += 1
                stop.wait(0.02)

        threads = [threading.Thread(target=stream, args=(a, k)) for k, a in enumerate(self.all)]
        for t in threads:
            t.start()
        try:
            fh.wait_for(lambda: len(sent) >= 30, "30 first detections before the kill")
            leader = self.fleet.cluster.leader()
            self.fleet.cluster.kill9(leader)
            # until some appliance found no leader and journaled a detection
            fh.wait_for(lambda: any(a.status()["fleet"]["journaled"] > 0 for a in self.all),
                        "a detection journaled while etcd had no leader", timeout=60)
            n = len(sent)
            fh.wait_for(lambda: len(sent) >= n + 30, "30 more first detections after it")
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        self.assertEqual(errors, [])
        for a in self.all:
            self.assertEqual(a.gw.metric("tes_sightings_limited_total"), 0, a.name)
            self.assertEqual(a.gw.metric("tes_sightings_dropped_total"), 0, a.name)
        self.fleet.cluster.restart(leader)
        names = set(n for _, n, _ in sent)
        diff = {}

        def complete(a):
            have = {s["fqdn"] for s in a.tc.report()["servers"]}
            journal = a.status()["fleet"]["journal"]
            diff[a.name] = (journal, sorted(names - have)[:5], sorted(have - names)[:5])
            return journal == 0 and have == names

        try:
            self.fleet.wait_all(complete, f"all {len(names)} first detections", timeout=90)
        except AssertionError as e:
            missing = [m for d in diff.values() for m in d[1]]
            raise AssertionError(f"(journal, missing, extra) per appliance: {diff}\n"
                                 f"{self.fleet.log_lines(missing)}") from e
        reps = self.same_reports()
        self.assertEqual(len(set(reps.values())), 1)
        for a in self.all:
            for s in a.tc.report()["servers"]:
                self.assertEqual(s["first_detected"], iso(T0), (a.name, s["fqdn"]))


class CutOff(FleetCase):
    cuttable = ("C",)

    def test_cut_off_across_a_stage_edge(self):
        self.assertEqual(self.A.send("edge.contoso.local"), OK)
        self.fleet.wait_server("edge.contoso.local")
        self.assertEqual(self.C.metric("tes_store_cut_off"), 0)
        self.fleet.cut("C")
        st = fh.wait_for(lambda: (lambda s: s if s["fleet"]["cut_off"] else None)(
            self.C.status()), "C to find itself cut off")
        self.assertIsNotNone(st["fleet"]["cut_off_since"])
        text = self.C.tc.ctl("status", json_out=False)
        self.assertIn("CUT OFF from etcd since " + st["fleet"]["cut_off_since"], text)
        # /metrics is rendered at tescontrol's ticks: it follows status
        fh.wait_for(lambda: self.C.metric("tes_store_cut_off") == 1, "tes_store_cut_off 1")
        # what TescontrolCutOffFromEtcd (docs/prometheus) fires on: it counts
        fh.wait_for(lambda: self.C.metric("tes_store_cut_off_seconds") >= 1,
                    "tes_store_cut_off_seconds to count")
        # the stage edge: day 30, minute 1 of an hour, throttled 5 min/h
        t1 = T0 + 30 * DAY + 3600 + 60
        self.fleet.set_clock(t1)
        for a in (self.C, self.A):
            a.sync()
            self.assertEqual(a.send("edge.contoso.local"), THROTTLE5, a.name)
        # detected on C while it is cut off, then on A 10 minutes later
        # (from another source: this one carries a throttled server)
        self.assertEqual(self.C.send("island.contoso.local", source="127.0.0.9"), OK)
        fh.wait_for(lambda: self.C.status()["fleet"]["journal"] >= 1, "C's journal")
        self.assertEqual(self.C.server("island.contoso.local")["first_detected"], iso(t1))
        self.fleet.set_clock(t1 + 600)
        self.assertEqual(self.A.send("island.contoso.local", source="127.0.0.9"), OK)
        self.fleet.wait_server("island.contoso.local",
                               lambda s: s["first_detected"] == iso(t1 + 600),
                               apps=[self.A, self.B])
        # back: the journal is reconciled and the earliest date wins
        self.fleet.restore("C")
        fh.wait_for(lambda: (lambda f: not f["cut_off"] and f["journal"] == 0)(
            self.C.status()["fleet"]), "C reconnected with an empty journal")
        got = self.fleet.wait_server("island.contoso.local",
                                     lambda s: s["first_detected"] == iso(t1))
        for name, s in got.items():
            self.assertEqual(s["first_detected"], iso(t1), name)
        fh.wait_for(lambda: self.C.metric("tes_store_cut_off") == 0, "tes_store_cut_off 0")
        self.assertIn("connected to etcd", self.C.tc.ctl("status", json_out=False))


class Restart(FleetCase):
    def test_restart_everything(self):
        self.assertEqual(self.A.send("r1.contoso.local"), OK)
        self.assertEqual(self.B.send("r2.contoso.local"), OK)
        self.assertEqual(self.C.send("r3.contoso.local"), OK)
        self.fleet.wait_server("r3.contoso.local")
        self.fleet.wait_server("r2.contoso.local")
        # r2 resolved an hour later on B; tenant 2 paused on C
        self.fleet.set_clock(T0 + 3600)
        self.assertEqual(self.B.send("r2.contoso.local", build=GOOD), OK)
        self.A.ctl("tenant", "add", 2, "Fabrikam", "--connector", "127.0.2.0/24")
        fh.wait_for(lambda: any(t["id"] == 2 for t in self.C.ctl("tenant", "list")["tenants"]),
                    "tenant 2 on C")
        self.C.ctl("pause", "add", 2, 10)
        self.fleet.wait_server("r2.contoso.local", lambda s: s["status"] == "Resolved")
        # r1 seen again on every appliance: a last-seen time only, which
        # etcd gets at the clean stop
        self.fleet.set_clock(T0 + 3600 + 120)
        for a in self.all:
            self.assertEqual(a.send("r1.contoso.local"), OK)
        self.fleet.wait_server("r1.contoso.local",
                               lambda s: s["last_seen"] == iso(T0 + 3600 + 120))
        self.fleet.wait_all(lambda a: a.ctl("pause", "show", 2)["active"], "the pause")
        before = self.same_reports()
        for a in self.all:
            a.stop()
        c = self.fleet.cluster
        for i in range(3):
            c.stop_member(i)
        for i in range(3):
            c.restart(i, wait=False)
        c.wait_healthy()
        for a in self.all:
            a.start()
        after = {a.name: a.report_bytes() for a in self.all}
        for a in self.all:
            self.assertEqual(after[a.name], before[a.name], a.name)
        fs = fh.wait_for(lambda: (lambda x: x if x["appliances_alive"] == 3 else None)(
            self.A.ctl("fleet", "status")), "three appliances alive")
        self.assertEqual(fs["drift"], 0)


if __name__ == "__main__":
    sys.exit(fh.run(sys.argv, [LeaderKill, CutOff, Restart]))
