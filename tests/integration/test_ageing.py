# SPDX-License-Identifier: BSD-3-Clause
"""Issue 13, item 3: ageing on tescontrol's test clock.

With stale_after = 35 and forget_after = 100 days: a server seen once, at
first detection, escalates on schedule until day 35, is Stale from then on
(reported as such by `tesctl report`, never refused at MAIL FROM), resumes
its clock where it stood when it is seen again (so every later stage comes
as late as it was Stale), and is forgotten 100 days after it was last seen;
seen after that, a new clock starts.

Usage: test_ageing.py TESGATE  (TESCONTROL, TESCTL, TES_SRCDIR in env)
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import issue13_harness as h  # noqa: E402
from issue13_harness import DAY, MIN, T0  # noqa: E402

TENANT = 1
SERVER = "ex16-02.contoso.local"
SRC = "127.0.0.1"
POLICY = "[ageing]\nstale_after = 35\nforget_after = 100\n"


class Ageing(unittest.TestCase):
    TESGATE = None

    def setUp(self):
        self.p = h.Pair(self.TESGATE, policy=POLICY)
        self.p.tc.ctl("tenant", "add", TENANT, "Contoso", "--connector", "127.0.0.0/8")
        self.p.fence()

    def tearDown(self):
        self.p.stop()

    def report(self):
        return self.p.tc.server(TENANT, SERVER)

    def test_stale_resume_forget(self):
        p = self.p
        msg = h.exchange_message(SERVER, h.OLD_2016)
        p.at(T0)
        self.assertEqual(p.send(msg, SRC), ("", "250", ""))
        p.settle()
        self.assertEqual(self.report()["status"], "Reporting")

        # day 34 23:00, minute 2: still enforced (stage 2) at MAIL FROM
        p.at(T0 + 34 * DAY + 23 * 3600 + 2 * MIN)
        self.assertEqual(p.send(msg, SRC), ("mail", "450", h.THROTTLE.format(5)))
        r = self.report()
        self.assertEqual((r["status"], r["stage"]), ("Throttling", 2))
        self.assertEqual(r["last_seen_unix"], T0)  # a refusal at MAIL FROM is no sighting

        # day 35: Stale, in the report and the table; not refused at MAIL FROM
        p.at(T0 + 35 * DAY)
        r = self.report()
        self.assertEqual((r["status"], r["stage"]), ("Stale", 2))
        self.assertEqual(r["stale_since_unix"], T0 + 35 * DAY)
        self.assertEqual(r["forget_at_unix"], T0 + 100 * DAY)
        self.assertIsNone(r["next_stage"])
        p.tc.wait_log(r"status change: tenant 1 server ex16-02\.contoso\.local: Throttling ->"
                      r" Stale")
        table = p.tc.ctl("report", json_out=False)
        row = [ln for ln in table.splitlines() if SERVER in ln]
        self.assertEqual(len(row), 1, table)
        self.assertIn("Stale", row[0])
        self.assertIn("2024-01-01", row[0])  # LAST SEEN
        self.assertEqual(p.tc_metric('tes_servers{status="stale"}'), 1)

        # day 36, minute 2: its message is read to its headers (no refusal
        # at MAIL FROM) and decided on the clock as it stood: day 35, stage
        # 2, throttled for the first five minutes
        back = T0 + 36 * DAY
        p.at(back + 2 * MIN)
        self.assertEqual(p.send(msg, SRC), ("data", "450", h.THROTTLE.format(5)))
        p.settle()
        r = self.report()
        self.assertEqual((r["status"], r["stage"]), ("Throttling", 2))
        # Stale from day 35 to day 36 00:02: stage 3 (day 40 of the clock)
        # comes a day and two minutes late
        self.assertEqual(r["next_stage"], 3)
        self.assertEqual(r["next_stage_start_unix"], T0 + 41 * DAY + 2 * MIN)
        self.assertEqual(r["throttle_enabled_unix"], T0 + 30 * DAY)
        self.assertEqual(r["blocking_enabled_unix"], T0 + 61 * DAY + 2 * MIN)
        # minute 7 of day 40 (stage 3 without the stale day): still stage 2
        p.at(T0 + 40 * DAY + 7 * MIN)
        self.assertEqual(p.send(msg, SRC), ("", "250", ""))
        p.at(T0 + 41 * DAY + 7 * MIN)
        self.assertEqual(p.send(msg, SRC), ("mail", "450", h.THROTTLE.format(10)))
        p.settle()

        # forgotten 100 days after it was last seen (day 40; day 41's
        # message was refused at MAIL FROM, which is no sighting): day 140
        last = self.report()["last_seen_unix"]
        self.assertEqual(last, T0 + 40 * DAY + 7 * MIN)
        p.at(last + 100 * DAY - 1)
        self.assertEqual(self.report()["status"], "Stale")
        p.at(last + 100 * DAY)
        self.assertIsNone(self.report())
        p.tc.wait_log(r"forgotten: tenant 1 server ex16-02\.contoso\.local, not seen since")
        self.assertEqual(p.tc_metric("tes_servers_forgotten_total"), 1)
        self.assertEqual(p.gw_metric('tes_enforcement_table_entries{table="servers"}'), 0)
        # seen again: a new clock from now
        p.at(T0 + 150 * DAY)
        self.assertEqual(p.send(msg, SRC), ("", "250", ""))
        p.settle()
        r = self.report()
        self.assertEqual((r["status"], r["first_detected_unix"]), ("Reporting", T0 + 150 * DAY))


if __name__ == "__main__":
    h.run([Ageing])
