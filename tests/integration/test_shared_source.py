# SPDX-License-Identifier: BSD-3-Clause
"""Issue 13, item 1: per-server decisions behind a shared source address.

Two Exchange servers of one tenant send from the same address (a NAT, a
smart host): one out of date, one compliant.  Walked over days 0-120 on
tescontrol's test clock, at minute 0 (inside every stage's window) and
minute 45 (outside all but stage 8's) of each day, both sending each time:
the compliant one is never refused, the out-of-date one follows the stage
schedule exactly, and its refusals come at the end of the data (the
headers decide), never at MAIL FROM, because the address also carries a
server that is not refused.  The same out-of-date server from an address
only it uses is still refused at MAIL FROM.

Usage: test_shared_source.py TESGATE  (TESCONTROL, TESCTL, TES_SRCDIR in env)
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import issue13_harness as h  # noqa: E402
from issue13_harness import DAY, MIN, T0  # noqa: E402

TENANT = 1
OLD = "ex16-old.contoso.local"
NEW = "ex16-new.contoso.local"
SHARED = "127.0.0.1"
ALONE = "127.0.0.2"


class SharedSource(unittest.TestCase):
    TESGATE = None

    def setUp(self):
        self.p = h.Pair(self.TESGATE)
        self.p.tc.ctl("tenant", "add", TENANT, "Contoso", "--connector", "127.0.0.0/8")
        self.p.fence()

    def tearDown(self):
        self.p.stop()

    def test_two_servers_one_address_days_0_to_120(self):
        p = self.p
        old = h.exchange_message(OLD, h.OLD_2016)
        new = h.exchange_message(NEW, h.NEW_2016)
        seen_where = set()
        for day in range(0, 121):
            for minute in (0, 45):
                t = T0 + day * DAY + minute * MIN
                p.at(t)
                # the compliant server first: it must never be refused
                got = p.send(new, SHARED)
                self.assertEqual(got, ("", "250", ""), f"compliant server, day {day} "
                                 f"minute {minute}")
                want = h.expected(t - T0, minute)
                where, code, text = p.send(old, SHARED)
                self.assertEqual((code, text), want, f"out-of-date server, day {day} "
                                 f"minute {minute}")
                if code != "250":
                    # the shared address is never refused before the headers
                    self.assertEqual(where, "data", f"day {day} minute {minute}")
                    seen_where.add(where)
                if day == 0 and minute == 0:
                    # both tracked before the walk goes on: the compliant
                    # one without a clock, out of the report
                    p.settle()
                    s = p.tc.ctl("server", "show", TENANT, NEW)
                    self.assertEqual(s["status"], "Compliant")
                    self.assertEqual(s["sources"], [SHARED])
                    self.assertIsNone(p.tc.server(TENANT, NEW))
                    self.assertEqual(p.tc.server(TENANT, OLD)["first_detected_unix"], T0)
                    all_ = p.tc.ctl("report", "--all")["servers"]
                    self.assertIn(NEW, [x["fqdn"] for x in all_])
        self.assertEqual(seen_where, {"data"})
        r = p.tc.server(TENANT, OLD)
        self.assertEqual((r["status"], r["stage"]), ("Blocking", 8))
        self.assertEqual(r["first_detected_unix"], T0)

    def test_an_address_only_it_uses_is_refused_at_mail_from(self):
        p = self.p
        old = h.exchange_message(OLD, h.OLD_2016)
        new = h.exchange_message(NEW, h.NEW_2016)
        p.at(T0)
        self.assertEqual(p.send(old, SHARED)[1], "250")
        self.assertEqual(p.send(old, ALONE)[1], "250")
        self.assertEqual(p.send(new, SHARED)[1], "250")
        p.settle()
        # day 45, minute 0: stage 3 throttles ten minutes
        for day, want in ((45, ("450", h.THROTTLE.format(10))),
                          (65, ("550", h.BLOCK.format(5)))):
            p.at(T0 + day * DAY)
            self.assertEqual(p.send(old, ALONE), ("mail",) + want, f"day {day}, alone")
            self.assertEqual(p.send(old, SHARED), ("data",) + want, f"day {day}, shared")
            self.assertEqual(p.send(new, SHARED), ("", "250", ""), f"day {day}, compliant")
            p.settle()
        s = p.tc.ctl("server", "show", TENANT, OLD)
        self.assertEqual(sorted(s["sources"]), [SHARED, ALONE])


if __name__ == "__main__":
    h.run([SharedSource])
