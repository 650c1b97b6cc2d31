# SPDX-License-Identifier: BSD-3-Clause
"""The fleet's semantics, end to end: a 3-member etcd cluster and three
appliances A, B, C (tescontrol with store = etcd, tesgate on kernel
sockets), on the test clock.

- a server first seen on A, then on B and C later (and B and C hear of their
  own sightings before they hear of A's), has A's date on all three;
- the other order: A's sighting (held by its gateway while its tescontrol
  was down) arrives after A holds B's and C's later date: A's date wins;
- the same server detected on A and B in the same millisecond (A's clock
  ahead of B's) gets one date on all three: the earliest;
- a pause made on B: C's gateway, once it has applied everything its
  tescontrol knows, refuses none of the tenant's mail (its first answer);
- two operators pausing one tenant on A and on B at the same moment cannot
  both spend its quota (one compare-and-swap on the tenant);
- a catalog load on A changes the verdicts on all three gateways.

Usage: test_fleet_semantics.py TESGATE  (TESCONTROL, TESCTL, TES_SRCDIR in env)
"""
import os
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fleet_harness as fh  # noqa: E402
from fleet_harness import BLOCK60, DAY, OK, OLD, T0, iso  # noqa: E402
from gateway_harness import Client  # noqa: E402


class Semantics(unittest.TestCase):
    tesgate = None

    @classmethod
    def setUpClass(cls):
        cls.fleet = fh.Fleet(cls.tesgate)
        try:
            cls.fleet.start()
        except Exception:
            cls.fleet.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        f = cls.fleet
        try:
            for a in f.apps.values():
                a.stop()
        finally:
            f.cleanup()

    def setUp(self):
        self.A, self.B, self.C = self.fleet["A"], self.fleet["B"], self.fleet["C"]
        self.all = (self.A, self.B, self.C)

    def expect_everywhere(self, server, want, what, source="127.0.0.1"):
        """Each gateway, once caught up with its tescontrol, answers want
        at the first message."""
        for a in self.all:
            a.sync()
            self.assertEqual(a.send(server, source=source), want, f"{what} on {a.name}")

    def test_1_first_seen_on_a_keeps_a_date(self):
        """A sees the server first; B and C see it 10 minutes later (their
        clocks), and their tescontrols hear of their own sightings before
        they hear of A's detection: they were stopped while A's detection
        and their gateways' sightings arrived, in that order of dates but
        theirs first in their sockets.  A's date is the server's
        everywhere."""
        t1 = T0 + 3 * 3600
        self.A.set_clock(t1)
        self.B.set_clock(t1 + 600)
        self.C.set_clock(t1 + 600)
        stopped = [self.B.tc.proc.pid, self.C.tc.proc.pid]
        sent = {a.name: a.gw.metric("tes_sightings_sent_total") for a in (self.B, self.C)}
        for p in stopped:
            os.kill(p, signal.SIGSTOP)
        try:
            for a in (self.B, self.C):
                self.assertEqual(a.send("first.contoso.local"), OK)
                # its sighting waits in its stopped tescontrol's socket
                fh.wait_for(lambda a=a: a.gw.metric("tes_sightings_sent_total") > sent[a.name],
                            f"{a.name}'s gateway to send its sighting")
            self.assertEqual(self.A.send("first.contoso.local"), OK)
            self.fleet.wait_server("first.contoso.local", apps=[self.A])
        finally:
            for p in stopped:
                os.kill(p, signal.SIGCONT)
        got = self.fleet.wait_server("first.contoso.local",
                                     lambda s: s["first_detected"] == iso(t1))
        for name, s in got.items():
            self.assertEqual(s["first_detected"], iso(t1), name)
            self.assertEqual(s["status"], "Reporting", name)
        # and it stays so: a later sighting on B changes no date anywhere
        self.fleet.set_clock(t1 + 1200)
        self.assertEqual(self.B.send("first.contoso.local"), OK)
        self.fleet.wait_server("first.contoso.local",
                               lambda s: s["last_seen"] == iso(t1 + 1200), apps=[self.B])
        for a in self.all:
            self.assertEqual(a.server("first.contoso.local")["first_detected"], iso(t1),
                             a.name)

    def test_1b_earlier_sighting_arriving_late_wins(self):
        """The other order: A's gateway sees the server while A's tescontrol
        is down (the sighting waits in the gateway), B and C detect it 10
        minutes later meanwhile, and A's tescontrol, started again, holds
        their date before its own earlier sighting reaches it.  To A's
        model that sighting is only "seen" (older than the date it holds);
        the fleet's merge makes it the server's first detection everywhere."""
        t1 = T0 + 4 * 3600
        self.fleet.set_clock(t1)
        self.A.sync()
        self.A.tc.stop()
        fh.wait_for(lambda: "control: lost tescontrol" in self.A.gw.log_text(),
                    "A's gateway to lose its tescontrol")
        self.assertEqual(self.A.send("late.contoso.local"), OK)
        self.B.set_clock(t1 + 600)
        self.C.set_clock(t1 + 600)
        for a in (self.B, self.C):
            self.assertEqual(a.send("late.contoso.local"), OK)
        self.fleet.wait_server("late.contoso.local",
                               lambda s: s["first_detected"] == iso(t1 + 600),
                               apps=[self.B, self.C])
        self.A.tc.start()  # at t1, its clock when stopped
        got = self.fleet.wait_server("late.contoso.local",
                                     lambda s: s["first_detected"] == iso(t1))
        for name, s in got.items():
            self.assertEqual(s["first_detected"], iso(t1), name)
        self.assertIn("was seen here at", self.A.tc.log_text())
        self.fleet.set_clock(t1 + 600)

    def test_2_same_millisecond_one_date(self):
        t2 = T0 + 5 * 3600
        # A's clock is 7 s ahead of B's: the two dates differ, one must win
        self.A.set_clock(t2 + 7)
        self.B.set_clock(t2)
        self.C.set_clock(t2 + 3)
        hdr = fh.message("twin.contoso.local")
        head, _, body = hdr.partition(b"\r\n\r\n")
        clients = []
        for a in (self.A, self.B):
            c = Client(a.gw.port)
            self.assertEqual(c.reply()[0], 220)
            c.send(b"EHLO ex.contoso.local\r\n")
            self.assertEqual(c.reply()[0], 250)
            c.send(b"MAIL FROM:<grace.okafor@contoso.com>\r\n")
            self.assertEqual(c.reply()[0], 250)
            c.send(b"RCPT TO:<ian.hughes@example.net>\r\n")
            self.assertEqual(c.reply()[0], 250)
            c.send(b"DATA\r\n")
            self.assertEqual(c.reply()[0], 354)
            c.send(head + b"\r\n")  # all but the empty line ending the headers
            clients.append(c)
        # the header sections end, on both gateways, back to back
        for c in clients:
            c.send(b"\r\n" + body + b".\r\n")
        for c in clients:
            self.assertEqual(c.reply()[0], 250)
            c.send(b"QUIT\r\n")
            c.close()
        got = self.fleet.wait_server("twin.contoso.local",
                                     lambda s: s["first_detected"] == iso(t2))
        for name, s in got.items():
            self.assertEqual(s["first_detected"], iso(t2), name)
        self.fleet.set_clock(t2 + 7)

    def test_3_pause_on_b_holds_on_c(self):
        t3 = T0 + 7 * 3600
        self.fleet.set_clock(t3)
        self.A.ctl("tenant", "add", 2, "Fabrikam", "--connector", "127.0.2.0/24")
        self.fleet.wait_all(lambda a: any(t["id"] == 2
                                          for t in a.ctl("tenant", "list")["tenants"]),
                            "tenant 2")
        src = "127.0.2.1"
        self.C.sync()
        self.assertEqual(self.C.send("paused.fabrikam.local", source=src), OK)
        self.fleet.wait_server("paused.fabrikam.local", tenant=2)
        # day 91: blocked the whole hour on every gateway
        self.fleet.set_clock(t3 + 91 * DAY + 1800)
        self.expect_everywhere("paused.fabrikam.local", BLOCK60, "day 91", source=src)
        # paused on B; C's tescontrol hears of it, and C's gateway once it
        # has applied what its tescontrol knows takes the first message
        p = self.B.ctl("pause", "add", 2, 30)
        self.assertTrue(p["active"])
        fh.wait_for(lambda: self.C.ctl("pause", "show", 2)["active"], "the pause on C")
        self.C.sync()
        self.assertEqual(self.C.send("paused.fabrikam.local", source=src), OK,
                         "C refused mail of a tenant paused on B")
        self.A.sync()
        self.assertEqual(self.A.send("paused.fabrikam.local", source=src), OK)
        for a in self.all:
            self.assertEqual(a.server("paused.fabrikam.local", tenant=2)["status"], "Paused",
                             a.name)
        self.fleet.set_clock(t3)

    def test_4_pause_quota_is_one_compare_and_swap(self):
        self.A.ctl("tenant", "add", 3, "Tailspin", "--connector", "127.0.3.0/24")
        self.fleet.wait_all(lambda a: any(t["id"] == 3
                                          for t in a.ctl("tenant", "list")["tenants"]),
                            "tenant 3")
        # Two operators, 60 days each, of a 90-day quota, at the same moment:
        # both requests wait in the sockets of two stopped tescontrols, which
        # then go on together; neither has seen the other's pause.
        pids = [self.A.tc.proc.pid, self.B.tc.proc.pid]
        socks = []
        for p in pids:
            os.kill(p, signal.SIGSTOP)
        try:
            for a in (self.A, self.B):
                s, frame = fh.admin_request(a.tc.admin_sock, "pause.add",
                                            {"tenant": 3, "days": 60})
                s.sendall(frame)
                socks.append(s)
        finally:
            for p in pids:
                os.kill(p, signal.SIGCONT)
        answers = [fh.read_response(s) for s in socks]
        ok = [x for x in answers if x["ok"]]
        refused = [x for x in answers if not x["ok"]]
        self.assertEqual(len(ok), 1, f"both or neither pause granted: {answers}")
        self.assertEqual(len(refused), 1)
        self.assertIn("pause quota exceeded", refused[0]["error"])
        self.assertIn("30 of its 90 pause days left", refused[0]["error"])
        for a in self.all:
            fh.wait_for(lambda a=a: a.ctl("pause", "show", 3)["days_used"] == 60,
                        f"60 days used on {a.name}")
            self.assertEqual(a.ctl("pause", "show", 3)["days_left"], 30, a.name)

    def test_5_catalog_load_on_a_changes_every_verdict(self):
        t5 = T0 + 9 * 3600
        self.fleet.set_clock(t5)
        self.assertEqual(self.B.send("catalog.contoso.local"), OK)
        self.fleet.wait_server("catalog.contoso.local")
        self.fleet.set_clock(t5 + 91 * DAY + 1800)
        self.expect_everywhere("catalog.contoso.local", BLOCK60, "day 91, old catalog")
        # a compliance policy under which this build is up to date
        builds = os.path.join(fh.ch.SRCDIR, "data", "exchange-builds.csv")
        with open(os.path.join(fh.ch.SRCDIR, "data", "compliance.conf")) as f:
            comp = f.read().replace("2016 CU23 from 15.1.2507.61", "2016 CU23 from " + OLD)
        path = os.path.join(self.A.tc.dir, "compliance-new.conf")
        with open(path, "w") as f:
            f.write(comp)
        before = {s["fqdn"] for s in self.A.tc.report()["servers"] if s["status"] != "Resolved"}
        r = self.A.ctl("catalog", "load", builds, path)
        version = r["version"]
        # every out-of-date server of this build is resolved by the load
        self.assertEqual(sorted(c["fqdn"] for c in r["changes"]), sorted(before), r)
        self.fleet.wait_all(lambda a: a.ctl("catalog", "show")["version"] == version,
                            "the new catalog")
        got = self.fleet.wait_server("catalog.contoso.local",
                                     lambda s: s["status"] == "Resolved")
        for name, s in got.items():
            self.assertEqual(s["resolved_at"], iso(t5 + 91 * DAY + 1800), name)
        self.expect_everywhere("catalog.contoso.local", OK, "day 91, new catalog")
        fs = fh.wait_for(lambda: (lambda x: x if x["drift"] == 0 else None)(
            self.C.ctl("fleet", "status")), "no drift in fleet status")
        self.assertEqual(sorted(m["appliance"] for m in fs["appliances"]), ["A", "B", "C"])


if __name__ == "__main__":
    sys.exit(fh.run(sys.argv, [Semantics]))
