# SPDX-License-Identifier: BSD-3-Clause
"""Issue 13, item 4: the probe at full block, kernel sockets, test clock.

At a stage that blocks all 60 minutes, one transaction per (server, source)
per probe_interval (60 minutes) is read to the end of its headers: an
out-of-date build gets the 550 at the end of the data, and the next
transaction (in the same session or another) is refused at MAIL FROM again
until an hour after the probe; an updated build resolves the server and is
accepted, and everything after it is accepted.  With full_block = drop the
connect-time drop lets the source in while a probe is due, and only then.

Usage: test_probe.py TESGATE  (TESCONTROL, TESCTL, TES_SRCDIR in env)
"""
import os
import smtplib
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import issue13_harness as h  # noqa: E402
from issue13_harness import DAY, MIN, T0  # noqa: E402

TENANT = 1
SERVER = "ex16-02.contoso.local"
SRC = "127.0.0.1"
BLOCK60 = ("550", h.BLOCK.format(60))


class Probe(unittest.TestCase):
    TESGATE = None
    POLICY = ""

    def setUp(self):
        self.p = h.Pair(self.TESGATE, policy=self.POLICY)
        self.p.tc.ctl("tenant", "add", TENANT, "Contoso", "--connector", "127.0.0.0/8")
        self.p.fence()
        self.old = h.exchange_message(SERVER, h.OLD_2016)
        self.new = h.exchange_message(SERVER, h.NEW_2016)
        self.p.at(T0)
        self.assertEqual(self.p.send(self.old, SRC), ("", "250", ""))
        self.p.settle()

    def tearDown(self):
        self.p.stop()

    def probes(self):
        return self.p.gw_metric("tes_probes_total")

    def two_in_one_session(self):
        """Two transactions in one session: what each got, and where."""
        out = []
        with smtplib.SMTP("127.0.0.1", self.p.gw.port, timeout=15,
                          source_address=(SRC, 0)) as s:
            s.ehlo("ex16-02.contoso.local")
            for _ in range(2):
                try:
                    s.sendmail("grace.okafor@contoso.com", ["ian.hughes@example.net"], self.old)
                    out.append(("", "250", ""))
                except smtplib.SMTPSenderRefused as e:
                    out.append(("mail", str(e.smtp_code), e.smtp_error.decode()))
                    s.rset()
                except smtplib.SMTPDataError as e:
                    out.append(("data", str(e.smtp_code), e.smtp_error.decode()))
        return out


class ProbeReply(Probe):
    def test_probe_out_of_date_then_updated(self):
        p = self.p
        # Day 95, 10:00: a full block.  Its last message was read on day 0,
        # so a probe is due: the first transaction is read to its headers
        # and refused there; the second, in the same session, at MAIL FROM.
        t = T0 + 95 * DAY + 10 * 3600
        p.at(t)
        self.assertEqual(self.two_in_one_session(), [("data",) + BLOCK60, ("mail",) + BLOCK60])
        self.assertEqual(self.probes(), 1)
        p.settle()
        r = p.tc.server(TENANT, SERVER)
        self.assertEqual((r["status"], r["stage"], r["last_seen_unix"]), ("Blocking", 8, t))
        # the rest of the hour: refused at MAIL FROM, no second probe
        for minute in (1, 30, 59):
            p.at(t + minute * MIN)
            self.assertEqual(p.send(self.old, SRC), ("mail",) + BLOCK60, f"minute {minute}")
        p.at(t + 60 * MIN - 1)
        self.assertEqual(p.send(self.old, SRC), ("mail",) + BLOCK60)
        self.assertEqual(self.probes(), 1)
        # an hour after the probe: the next one; the server was updated
        p.at(t + 60 * MIN)
        self.assertEqual(p.send(self.new, SRC), ("", "250", ""))
        self.assertEqual(self.probes(), 2)
        p.settle()
        r = p.tc.server(TENANT, SERVER)
        self.assertEqual((r["status"], r["resolved_at_unix"]), ("Resolved", t + 60 * MIN))
        # everything after it is accepted, at once
        for _ in range(3):
            self.assertEqual(p.send(self.new, SRC), ("", "250", ""))
        self.assertEqual(self.probes(), 2)

    def test_no_probe_without_interval(self):
        p = self.p
        p.tc.ctl("policy", "load", self.write_policy("[enforcement]\nprobe_interval = 0\n"))
        p.at(T0 + 95 * DAY)
        self.assertEqual(p.send(self.new, SRC), ("mail",) + BLOCK60)
        self.assertEqual(self.probes(), 0)

    def write_policy(self, text):
        path = os.path.join(self.p.tmp, "p2.conf")
        with open(path, "w") as f:
            f.write(text)
        return path


class ProbeDrop(Probe):
    POLICY = "[enforcement]\nfull_block = drop\n"

    def closed_before_greeting(self):
        """The kernel path's connect-time drop: accepted by the kernel,
        closed by tesgate before a word is said."""
        try:
            with smtplib.SMTP("127.0.0.1", self.p.gw.port, timeout=15,
                              source_address=(SRC, 0)):
                return False
        except smtplib.SMTPServerDisconnected:
            return True

    def test_drop_leaves_room_for_the_probe(self):
        p = self.p
        early = "tes_connections_early_dropped_total"
        t = T0 + 95 * DAY + 10 * 3600
        p.at(t)
        # a probe is due: the connection is let in, the probe gets its 550
        # at the end of the data (DROP at the SMTP level is the 550)
        d0 = p.gw_metric(early)
        self.assertEqual(p.send(self.old, SRC), ("data",) + BLOCK60)
        self.assertEqual(p.gw_metric(early), d0)
        self.assertEqual(self.probes(), 1)
        p.settle()
        # then dropped at connect time until the next one is due
        for minute in (0, 30, 59):
            p.at(t + minute * MIN + 1)
            self.assertTrue(self.closed_before_greeting(), f"minute {minute}")
        self.assertEqual(p.gw_metric(early), d0 + 3)
        # an hour on: let in again; the updated build resolves it
        p.at(t + 60 * MIN)
        self.assertEqual(p.send(self.new, SRC), ("", "250", ""))
        p.settle()
        self.assertEqual(p.tc.server(TENANT, SERVER)["status"], "Resolved")
        self.assertEqual(p.send(self.new, SRC), ("", "250", ""))
        self.assertEqual(p.gw_metric(early), d0 + 3)


if __name__ == "__main__":
    h.run([ProbeReply, ProbeDrop])
