# SPDX-License-Identifier: BSD-3-Clause
"""A single box's state moved into a fleet: `tesctl store export` on a
tescontrol with the SQLite store, `tesctl store import` on an appliance of
a fleet (store = etcd, 3-member etcd cluster), test clock.

- every tenant and server of the box is in the fleet afterwards, on both
  appliances, with the box's dates (first detection, resolution, last seen)
  and status;
- a server the fleet already had with a later date takes the box's earlier
  one (the earliest first detection wins), and one the fleet had earlier
  keeps the fleet's;
- importing the same file again changes nothing;
- import on a tescontrol with the SQLite store is refused with the reason.

Usage: test_fleet_store_move.py TESGATE  (TESCONTROL, TESCTL, TES_SRCDIR in env)
"""
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fleet_harness as fh  # noqa: E402
from fleet_harness import ch  # noqa: E402
from fleet_harness import GOOD, OLD, T0, iso  # noqa: E402

FIELDS = ("fqdn", "tenant", "first_detected", "last_seen", "resolved_at", "status")


def view(report):
    """The servers of a report, by (tenant, fqdn), with the fields the move
    must keep."""
    return {(s["tenant"], s["fqdn"].lower()): {k: s.get(k) for k in FIELDS}
            for s in report["servers"]}


class StoreMove(unittest.TestCase):
    tesgate = None

    def setUp(self):
        self.box = ch.Tescontrol(test_clock=T0)
        self.fleet = None
        try:
            self.box.start()
            # seen times reach the other appliance with the coalesced
            # write: every second here
            self.fleet = fh.Fleet(self.tesgate, names=("A", "B"),
                                  conf={n: {"etcd_flush_seconds": "1"} for n in "AB"})
            self.fleet.start(tenant=False)
        except Exception:
            self.tearDown()
            raise
        self.A, self.B = self.fleet["A"], self.fleet["B"]

    def tearDown(self):
        try:
            if self.fleet:
                for a in self.fleet.apps.values():
                    a.stop()
        finally:
            try:
                if self.fleet:
                    self.fleet.cleanup()
            finally:
                self.box.stop()
                self.box.cleanup()

    def test_export_import(self):
        box = self.box
        box.ctl("tenant", "add", 1, "Contoso", "--connector", "127.0.0.0/24")
        box.ctl("tenant", "add", 2, "Fabrikam", "--connector", "127.0.2.0/24")
        gw = ch.FakeGateway(box.gw_sock)
        try:
            # on the box: three servers over two days, one resolved
            gw.sighting(1, "old.contoso.local", OLD, source="127.0.0.5")
            gw.sighting(1, "fixed.contoso.local", OLD, source="127.0.0.6")
            box.set_clock(T0 + 3600)
            gw.sighting(1, "fixed.contoso.local", GOOD, source="127.0.0.6")
            gw.sighting(2, "mail.fabrikam.local", OLD, source="127.0.2.9")
            box.set_clock(T0 + 86400)
            gw.sighting(1, "old.contoso.local", OLD, source="127.0.0.5")
            # known to the fleet too: "shared" later than on the box, "early"
            # earlier than on the box
            gw.sighting(1, "shared.contoso.local", OLD)
            box.set_clock(T0 + 2 * 86400)
            gw.sighting(1, "early.contoso.local", OLD)
        finally:
            gw.close()
        path = os.path.join(box.dir, "export.json")
        p = box.ctl_raw("store", "export", path, json_out=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(path) as f:
            doc = json.load(f)
        self.assertEqual((doc["format"], doc["version"]), ("tesgate-state", 1))
        self.assertEqual(len(doc["servers"]), 5)
        want = view(box.ctl("report", "--all"))

        # the fleet: the same tenant 1, and two servers of its own
        self.A.ctl("tenant", "add", 1, "Contoso", "--connector", "127.0.0.0/24")
        self.fleet.wait_all(lambda a: a.ctl("tenant", "list")["tenants"], "tenant 1")
        self.fleet.set_clock(T0 + 86400)
        fgw = ch.FakeGateway(self.A.tc.gw_sock, name="fleet-gw")
        try:
            fgw.sighting(1, "early.contoso.local", OLD)
            self.fleet.set_clock(T0 + 3 * 86400)
            fgw.sighting(1, "shared.contoso.local", OLD)
        finally:
            fgw.close()
        self.fleet.wait_server("shared.contoso.local")

        # a box's tescontrol does not import
        p = box.ctl_raw("store", "import", path, json_out=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("store = sqlite", p.stderr)

        p = self.B.tc.ctl_raw("store", "import", path, json_out=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("tenants: 1 created, 1 the same", p.stdout)

        want[(1, "early.contoso.local")]["first_detected"] = iso(T0 + 86400)
        want[(1, "early.contoso.local")]["last_seen"] = iso(T0 + 2 * 86400)
        want[(1, "shared.contoso.local")]["last_seen"] = iso(T0 + 3 * 86400)

        try:
            self.fleet.wait_all(lambda a: self.fleet_view(a) == want, "the box's servers",
                                timeout=fh.WAIT)
        except AssertionError:
            got = self.fleet_view(self.A)
            diff = {k: (want.get(k), got.get(k)) for k in set(want) | set(got)
                    if want.get(k) != got.get(k)}
            raise AssertionError(f"(box, fleet) where they differ on A: {diff}") from None
        for a in (self.A, self.B):
            got = self.fleet_view(a)
            self.assertEqual(got[(1, "old.contoso.local")]["first_detected"], iso(T0), a.name)
            self.assertEqual(got[(1, "fixed.contoso.local")]["resolved_at"], iso(T0 + 3600),
                             a.name)
            self.assertEqual(got[(1, "shared.contoso.local")]["first_detected"],
                             iso(T0 + 86400), a.name)
            self.assertEqual(got[(1, "early.contoso.local")]["first_detected"],
                             iso(T0 + 86400), a.name)
            self.assertEqual(got[(2, "mail.fabrikam.local")]["tenant"], 2, a.name)

        # again: nothing changes
        before = self.A.report_bytes()
        p = self.A.tc.ctl_raw("store", "import", path, json_out=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("tenants: 0 created, 2 the same", p.stdout)
        self.assertEqual(self.A.report_bytes(), before)

    @staticmethod
    def fleet_view(a):
        return view(a.ctl("report", "--all"))


if __name__ == "__main__":
    sys.exit(fh.run(sys.argv, [StoreMove]))
