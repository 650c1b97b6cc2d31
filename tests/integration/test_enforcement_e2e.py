# SPDX-License-Identifier: BSD-3-Clause
"""tescontrol and tesgate together, with simulated Exchange senders.

A real tescontrol (test clock) and a real tesgate (kernel sockets, spool,
following the test clock) are started; smtplib plays on-premises Exchange
servers whose messages carry the header fixtures of tests/data/headers/.  The
test walks the 0-90 day timeline and checks, at the window edges of each
stage, what reaches the spool and what is refused with which exact reply;
then pause and resume, resolution by an updated build, re-detection, and a
kill -9 of tescontrol while the gateway keeps enforcing.

Usage: test_enforcement_e2e.py TESGATE  (TESCONTROL, TESCTL, TES_SRCDIR in env)
"""
import os
import re
import smtplib
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ctl_harness as ch  # noqa: E402
from gateway_harness import Gateway  # noqa: E402

TESGATE = None
DAY = ch.DAY
MIN = 60
T0 = ch.T0  # 2024-01-01T00:00:00Z, the start of a clock hour
TENANT = 1
SERVER = "ex16-02.contoso.local"
HEADERS = os.path.join(ch.SRCDIR, "tests", "data", "headers")
PROPAGATION = 10.0  # bound on waits for tescontrol and the gateway to catch up

THROTTLE = ("450", "4.7.230 Connecting Exchange server version is out-of-date; "
            "connection to Exchange Online throttled for {} mins/hr.")
BLOCK = ("550", "5.7.230 Connecting Exchange server version is out-of-date; "
         "connection to Exchange Online blocked for {} mins/hr.")


def iso(t):
    """The report's time format."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def fixture(name, build=None):
    with open(os.path.join(HEADERS, name), "rb") as f:
        hdr = f.read()
    if build:
        # the same server after an update: its own hop stamps the new build
        hdr = hdr.replace(b"id 15.1.2507.35;", b"id " + build.encode() + b";", 1)
    return hdr + b"Body of a simulated Exchange message.\r\n"


class Harness:
    """tescontrol + tesgate; helpers shared by the test classes."""

    def start_pair(self):
        os.environ["TES_ALLOW_TEST_CLOCK"] = "1"
        self.tc = ch.Tescontrol(test_clock=T0).start()
        self.gw = None
        self.tc.ctl("tenant", "add", TENANT, "Contoso", "--connector", "127.0.0.0/8")
        self.gw = Gateway(TESGATE, conf={
            "control_socket": self.tc.gw_sock,
            "follow_test_clock": "yes",
            "gateway_id": "gw-e2e",
            "metrics_listen": "127.0.0.1:0",
        })
        self.wait_gateway_log(r"control: synchronised")

    def stop_pair(self):
        try:
            if self.gw:
                rc = self.gw.stop()
                log = self.gw.log_text()
                for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                            "runtime error:"):
                    assert bad not in log, f"tesgate: {bad}\n{log[-10000:]}"
                assert rc == 0, f"tesgate exited {rc}\n{log[-10000:]}"
        finally:
            if self.gw:
                self.gw.close()
            self.tc.cleanup()

    def wait_gateway_log(self, pattern, count=1):
        deadline = time.monotonic() + PROPAGATION
        while time.monotonic() < deadline:
            if len(re.findall(pattern, self.gw.log_text())) >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"tesgate did not log {pattern!r}:\n{self.gw.log_text()[-5000:]}")

    def wait_server(self, fqdn, pred=lambda s: True):
        deadline = time.monotonic() + PROPAGATION
        while time.monotonic() < deadline:
            s = self.tc.server(TENANT, fqdn)
            if s is not None and pred(s):
                return s
            time.sleep(0.05)
        return self.tc.server(TENANT, fqdn)

    # -- helpers ----------------------------------------------------------
    def at(self, t):
        self.tc.set_clock(t)

    def send(self, msg, source="127.0.0.1"):
        """One message from source; returns (code, text) of the refusal, or
        ('250', '') when the gateway took it."""
        before = self.spooled()
        try:
            with smtplib.SMTP("127.0.0.1", self.gw.port, timeout=15,
                              source_address=(source, 0)) as s:
                s.ehlo("ex16-02.contoso.local")
                s.sendmail("grace.okafor@contoso.com", ["ian.hughes@example.net"], msg)
        except smtplib.SMTPSenderRefused as e:
            return str(e.smtp_code), e.smtp_error.decode()
        except smtplib.SMTPDataError as e:
            return str(e.smtp_code), e.smtp_error.decode()
        self.assertEqual(self.spooled(), before + 1, "a 250 without a spooled message")
        return "250", ""

    def spooled(self):
        new = os.path.join(self.gw.spool, "new")
        return len([n for n in os.listdir(new) if n.endswith(".eml")]) if os.path.isdir(new) else 0

    def sync(self):
        """Wait until tesgate has applied everything tescontrol has said
        (its state generation), so the next verdict is the one to judge."""
        self.gw.wait_generation(self.tc.generation())

    def expect(self, msg, want, what, source="127.0.0.1"):
        """Once tesgate has caught up with tescontrol, its first answer is
        `want`, and so is the next one: a stale or flapping verdict fails."""
        self.sync()
        self.assertEqual(self.send(msg, source), want, what)
        self.assertEqual(self.send(msg, source), want, what + " (it holds)")

    def report(self, fqdn=SERVER):
        s = self.tc.server(TENANT, fqdn)
        self.assertIsNotNone(s, "server missing from the report")
        return s



class Enforcement(Harness, unittest.TestCase):
    def setUp(self):
        self.start_pair()

    def tearDown(self):
        self.stop_pair()

    # -- the timeline -------------------------------------------------------
    def test_every_family(self):
        """Each product family's header fixture, each server from its own
        address: the out-of-date ones are tracked and blocked at day 90,
        the compliant SE server and a non-Exchange sender never are."""
        cases = [
            # fixture, source, server the report shows, family, enforced
            ("ex2007.hdr", "127.0.1.1", "gw01.contoso.com", "2007", True),
            ("ex2010-smtp.hdr", "127.0.1.2", "ex02.contoso.local", "2010", True),
            ("ex2010-mapi.hdr", "127.0.1.3", "ex03.contoso.local", "2010", True),
            ("ex2013-frontend.hdr", "127.0.1.4", "ex13cas01.contoso.local", "2013", True),
            ("ex2016-tls.hdr", "127.0.1.5", "ex16-02.contoso.local", "2016", True),
            ("ex2019.hdr", "127.0.1.6", "edge01.contoso.com", "2019", True),
            ("online-then-onprem.hdr", "127.0.1.7", "ex16-04.contoso.local", "2016", True),
            ("exse.hdr", "127.0.1.8", "mail.contoso.com", "SE", False),
            ("postfix-only.hdr", "127.0.1.9", None, None, False),
        ]
        self.at(T0)
        for name, src, server, family, enforced in cases:
            self.assertEqual(self.send(fixture(name), src), ("250", ""), name)
        for name, src, server, family, enforced in cases:
            if not enforced:
                continue
            s = self.wait_server(server)
            self.assertIsNotNone(s, f"{name}: {server} not reported")
            self.assertEqual(s["family"], family, name)
            self.assertEqual(s["status"], "Reporting", name)
            self.assertEqual(s["first_detected"], iso(T0), name)
        tracked = {s["fqdn"].lower() for s in self.tc.report()["servers"]}
        self.assertNotIn("mail.contoso.com", tracked, "a compliant SE server is tracked")
        # day 91: every out-of-date server is blocked all hour; the others pass
        self.at(T0 + 91 * DAY + 30 * MIN)
        for name, src, server, family, enforced in cases:
            want = (BLOCK[0], BLOCK[1].format(60)) if enforced else ("250", "")
            self.expect(fixture(name), want, f"{name} at day 91", source=src)

    def test_timeline(self):
        old = fixture("ex2016-tls.hdr")
        t1 = T0 + 3 * MIN  # first detection, 3 minutes into an hour

        # day 0: report only; the first sighting is durable and reported
        self.at(t1)
        self.assertEqual(self.send(old), ("250", ""))
        self.assertIsNotNone(self.wait_server(SERVER), "first detection not reported")
        r = self.report()
        self.assertEqual(r["status"], "Reporting")
        self.assertEqual(r["build"], "15.1.2507.35")
        self.assertEqual(r["family"], "2016")
        first = r["first_detected"]
        self.assertEqual(first, iso(t1))

        # day 29, 23:59 after detection: still report only, at minute 0 too
        self.at(t1 + 30 * DAY - MIN - 3 * MIN)
        self.expect(old, ("250", ""), "report only before day 30")

        # stage 2 (day 30-40): throttled in minutes 0-4 of every hour, refused
        # at MAIL FROM for the known source, with the exact reply
        hour30 = T0 + 30 * DAY + 1 * 3600  # an hour boundary after day 30
        self.at(hour30)
        self.expect(old, (THROTTLE[0], THROTTLE[1].format(5)), "stage 2, minute 0")
        self.at(hour30 + 4 * MIN + 59)
        self.expect(old, (THROTTLE[0], THROTTLE[1].format(5)), "stage 2, minute 4")
        self.at(hour30 + 5 * MIN)
        self.expect(old, ("250", ""), "stage 2, minute 5")

        # stage 3 and 4: 10 and 20 throttled minutes
        h = T0 + 41 * DAY
        self.at(h + 9 * MIN)
        self.expect(old, (THROTTLE[0], THROTTLE[1].format(10)), "stage 3, minute 9")
        self.at(h + 10 * MIN)
        self.expect(old, ("250", ""), "stage 3, minute 10")
        h = T0 + 51 * DAY
        self.at(h + 19 * MIN)
        self.expect(old, (THROTTLE[0], THROTTLE[1].format(20)), "stage 4, minute 19")
        self.at(h + 20 * MIN)
        self.expect(old, ("250", ""), "stage 4, minute 20")

        # stage 5 (day 60-70): blocked minutes 0-4, then throttled to 34
        h = T0 + 61 * DAY
        self.at(h + 4 * MIN)
        self.expect(old, (BLOCK[0], BLOCK[1].format(5)), "stage 5, minute 4")
        self.at(h + 5 * MIN)
        self.expect(old, (THROTTLE[0], THROTTLE[1].format(30)), "stage 5, minute 5")
        self.at(h + 35 * MIN)
        self.expect(old, ("250", ""), "stage 5, minute 35")

        # stages 6 and 7: 10 and 20 blocked minutes, nothing throttled
        h = T0 + 71 * DAY
        self.at(h + 9 * MIN)
        self.expect(old, (BLOCK[0], BLOCK[1].format(10)), "stage 6, minute 9")
        self.at(h + 10 * MIN)
        self.expect(old, ("250", ""), "stage 6, minute 10")
        h = T0 + 81 * DAY
        self.at(h + 19 * MIN)
        self.expect(old, (BLOCK[0], BLOCK[1].format(20)), "stage 7, minute 19")

        # stage 8 (day 90 on): everything blocked
        h = T0 + 91 * DAY
        self.at(h + 59 * MIN)
        self.expect(old, (BLOCK[0], BLOCK[1].format(60)), "stage 8, minute 59")
        r = self.report()
        self.assertEqual(r["status"], "Blocking")
        self.assertEqual(r["first_detected"], first, "first detection moved")

        # kill -9 tescontrol: the gateway keeps blocking with its last state
        self.tc.kill9()
        self.assertEqual(self.send(old), (BLOCK[0], BLOCK[1].format(60)),
                         "the gateway stopped enforcing without its control plane")
        self.tc.start(test_clock=h + 59 * MIN)
        self.wait_gateway_log(r"control: synchronised", count=2)
        self.assertEqual(self.report()["first_detected"], first,
                         "first detection lost over kill -9")
        self.expect(old, (BLOCK[0], BLOCK[1].format(60)), "blocked after resync")

        # pause: accepted while paused, blocked again after resume
        self.tc.ctl("pause", "add", TENANT, 10)
        self.expect(old, ("250", ""), "paused tenant")
        self.assertEqual(self.report()["status"], "Paused")
        self.tc.ctl("pause", "resume", TENANT)
        self.expect(old, (BLOCK[0], BLOCK[1].format(60)), "blocked after resume")

    def test_reset_forgets_and_next_sighting_restarts(self):
        srv = "ex13cas01.contoso.local"
        old = fixture("ex2013-frontend.hdr")
        self.at(T0 + 200 * DAY)
        self.assertEqual(self.send(old), ("250", ""))
        s = self.wait_server(srv)
        self.assertIsNotNone(s, "2013 server not reported")
        self.assertEqual(s["family"], "2013")
        self.assertEqual(s["first_detected"], iso(T0 + 200 * DAY))
        # an operator reset forgets it; the next sighting is a new first detection
        self.tc.ctl("server", "reset", TENANT, srv)
        self.assertIsNone(self.tc.server(TENANT, srv))
        self.at(T0 + 210 * DAY)
        self.assertEqual(self.send(old), ("250", ""))
        s = self.wait_server(srv)
        self.assertIsNotNone(s)
        self.assertEqual(s["first_detected"], iso(T0 + 210 * DAY))

    def test_update_resolves_then_redetection_restarts(self):
        old = fixture("ex2016-tls.hdr")
        new = fixture("ex2016-tls.hdr", build="15.1.2507.61")
        self.at(T0)
        self.assertEqual(self.send(old), ("250", ""))
        self.assertIsNotNone(self.wait_server(SERVER))
        # day 45, minute 30: outside the throttle window, so the updated
        # server's message is read to its headers, which resolve it
        self.at(T0 + 45 * DAY + 30 * MIN)
        self.expect(new, ("250", ""), "updated server")
        s = self.wait_server(SERVER, lambda s: s["status"] == "Resolved")
        self.assertEqual(s["status"], "Resolved")
        # resolved: minute 0 is no longer throttled
        self.at(T0 + 46 * DAY)
        self.expect(new, ("250", ""), "resolved server at minute 0")
        # the old build again: a new clock, report only at first
        self.at(T0 + 50 * DAY)
        self.expect(old, ("250", ""), "re-detected server, report only")
        s = self.wait_server(SERVER, lambda s: s["status"] == "Reporting")
        self.assertEqual(s["status"], "Reporting")
        self.assertEqual(s["first_detected"], iso(T0 + 50 * DAY))
        # and 30 days later it is throttled again
        self.at(T0 + 80 * DAY)
        self.expect(old, (THROTTLE[0], THROTTLE[1].format(5)), "re-detected, day 30")


if __name__ == "__main__":
    TESGATE = sys.argv.pop(1)
    unittest.main(verbosity=2)
