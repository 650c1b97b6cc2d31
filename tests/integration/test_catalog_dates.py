# SPDX-License-Identifier: BSD-3-Clause
"""Compliance rules with dates, end to end, on tescontrol's test clock.

The shipped data/compliance.conf ends the 2016 and 2019 rules on
2026-09-01 and holds SE to "current 60d".  Walked over the second half of
2026 with fixed dates (never today's):

- a dry-run load of the dated policy over the undated one it replaces counts
  exactly the servers whose status it changes, at two dates;
- the load, then the dates passing: each server whose last build stops being
  compliant is re-detected with its clock starting at the rule's date, even
  when the clock jumps past it or tescontrol was not running then;
- tesctl catalog check BUILD --at DATE names the rule (file:line and text)
  and the dates;
- a rule file with an unknown date form names file:line and changes nothing;
- tesgate classifies a message's build at its own (followed) clock.

Usage: test_catalog_dates.py [TESGATE]  (TESCONTROL, TESCTL, TES_SRCDIR in env)
"""
import calendar
import json
import os
import re
import smtplib
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ctl_harness as ch  # noqa: E402
from ctl_harness import DAY, FakeGateway, Tescontrol  # noqa: E402

TESGATE = None


def utc(y, m, d, hh=0, mm=0, ss=0):
    return calendar.timegm((y, m, d, hh, mm, ss))


AUG20 = utc(2026, 8, 20)
SEP1 = utc(2026, 9, 1)    # the 2016/2019 rules end
SEP5 = utc(2026, 9, 5)
OCT10 = utc(2026, 10, 10)  # SE Aug26SU (2026-08-11) is 60 days old
DEC6 = utc(2026, 12, 6)

# What data/compliance.conf said before the rules had dates.
UNDATED = """2007 never
2010 never
2013 never
2016 CU23 from 15.1.2507.61
2019 CU15 from 15.2.1748.39
2019 CU14 from 15.2.1544.36
SE RTM from 15.2.2562.29
"""

BUILDS = os.path.join(ch.SRCDIR, "data", "exchange-builds.csv")
SHIPPED = os.path.join(ch.SRCDIR, "data", "compliance.conf")

# (fqdn, out-of-date build first seen, the build it was updated to)
RESOLVED = [
    ("ex16.bear.local", "15.1.2507.58", "15.1.2507.61"),
    ("ex19.bear.local", "15.2.1748.37", "15.2.1748.39"),
    ("se29.bear.local", "15.2.2562.17", "15.2.2562.29"),
    ("se45.bear.local", "15.2.2562.17", "15.2.2562.45"),
    ("se46.bear.local", "15.2.2562.17", "15.2.2562.46"),
]


def shipped_line(prefix):
    with open(SHIPPED) as f:
        for no, line in enumerate(f, start=1):
            if line.startswith(prefix):
                return no, line.split("#")[0].strip()
    raise AssertionError(f"{prefix!r} not in {SHIPPED}")


class DatedRules(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="tcd-", dir="/tmp")
        self.undated = os.path.join(self.tmp, "undated.conf")
        with open(self.undated, "w") as f:
            f.write(UNDATED)
        self.tc = Tescontrol(test_clock=AUG20, conf={"compliance_file": self.undated})
        self.events = os.path.join(self.tc.dir, "events.log")
        with open(self.tc.conf_path, "a") as f:
            f.write(f"event_log = {self.events}\n")
        self.addCleanup(self._cleanup)
        self.tc.start()
        self.tc.ctl("tenant", "add", 1, "Bear")
        self.gw = FakeGateway(self.tc.gw_sock)
        self.addCleanup(self.gw.close)
        for fqdn, old, new in RESOLVED:
            self.gw.sighting(1, fqdn, old)
            self.gw.sighting(1, fqdn, new, cls="compliant")
        self.gw.sighting(1, "ex13.bear.local", "15.0.1497.48")
        for fqdn, _, _ in RESOLVED:
            self.assertEqual(self.status(fqdn), "Resolved", fqdn)

    def _cleanup(self):
        sys.stderr.write("---- tescontrol log ----\n" + self.tc.log_text()[-20000:])
        self.tc.cleanup()
        for n in os.listdir(self.tmp):
            os.unlink(os.path.join(self.tmp, n))
        os.rmdir(self.tmp)

    def status(self, fqdn):
        return self.tc.server(1, fqdn)["status"]

    def events_of(self, kind):
        if not os.path.exists(self.events):
            return []
        with open(self.events) as f:
            return [e for e in map(json.loads, f) if e["event"] == kind]

    def changes(self, r):
        return sorted((c["fqdn"], c["old_status"], c["new_status"]) for c in r["changes"])

    def test_dry_run_counts_exactly(self):
        tc = self.tc
        # 2026-08-20: only SE's floor moved (Jun26SU .43 is 60 days old).
        r = tc.ctl("catalog", "load", "--dry-run", BUILDS, SHIPPED)
        self.assertEqual(r["count"], 1)
        self.assertEqual(self.changes(r), [("se29.bear.local", "Resolved", "Reporting")])
        text = tc.ctl("catalog", "load", "--dry-run", BUILDS, SHIPPED, json_out=False)
        self.assertIn("would change the status of 1 known server:", text)
        # 2026-12-06, the undated policy still in force (its rules have no
        # dates, so the clock changed nothing): 2016 and 2019 have ended,
        # SE is held to Aug26SU.
        tc.set_clock(DEC6)
        for fqdn, _, _ in RESOLVED:
            self.assertEqual(self.status(fqdn), "Resolved", fqdn)
        r = tc.ctl("catalog", "load", "--dry-run", BUILDS, SHIPPED)
        self.assertEqual(r["count"], 4)
        self.assertEqual(self.changes(r), [
            ("ex16.bear.local", "Resolved", "Reporting"),
            ("ex19.bear.local", "Resolved", "Reporting"),
            ("se29.bear.local", "Resolved", "Reporting"),
            ("se45.bear.local", "Resolved", "Reporting"),
        ])
        text = tc.ctl("catalog", "load", "--dry-run", BUILDS, SHIPPED, json_out=False)
        self.assertIn("would change the status of 4 known servers:", text)
        # A dry run changes nothing and writes no line.
        for fqdn, _, _ in RESOLVED:
            self.assertEqual(self.status(fqdn), "Resolved", fqdn)
        self.assertEqual(self.events_of("catalog_load"), [])
        # The real load does what the dry run said, as of now.
        r = tc.ctl("catalog", "load", BUILDS, SHIPPED)
        self.assertEqual(r["count"], 4)
        for fqdn in ("ex16.bear.local", "ex19.bear.local", "se29.bear.local",
                     "se45.bear.local"):
            s = tc.server(1, fqdn)
            self.assertEqual((s["status"], s["first_detected_unix"]), ("Reporting", DEC6), fqdn)
        self.assertEqual(self.status("se46.bear.local"), "Resolved")
        loads = self.events_of("catalog_load")
        self.assertEqual(len(loads), 1)
        self.assertEqual(loads[0]["servers_changed"], 4)
        self.assertEqual(loads[0]["after"]["compliance_name"], "compliance.conf")
        self.assertTrue(loads[0]["before"]["compliance_name"].endswith("undated.conf"))

    def test_dates_pass_while_running(self):
        tc, gw = self.tc, self.gw
        r = tc.ctl("catalog", "load", BUILDS, SHIPPED)
        self.assertEqual(r["count"], 1)
        s = tc.server(1, "se29.bear.local")
        self.assertEqual((s["status"], s["first_detected_unix"]), ("Reporting", AUG20))
        # One jump from 08-20 to 09-05: the 2016 and 2019 servers are
        # re-detected as of 09-01, not of the jump; pushed to the gateway.
        mark = len(gw.msgs)
        tc.set_clock(SEP5)
        for fqdn in ("ex16.bear.local", "ex19.bear.local"):
            s = tc.server(1, fqdn)
            self.assertEqual((s["status"], s["stage"], s["first_detected_unix"]),
                             ("Reporting", 1, SEP1), fqdn)
            self.assertEqual(s["throttle_enabled_unix"], SEP1 + 30 * DAY)
            gw.wait_until(lambda f=fqdn: gw.server_msgs_since(mark, f), what=f"push {fqdn}")
        for fqdn in ("se45.bear.local", "se46.bear.local"):
            self.assertEqual(self.status(fqdn), "Resolved", fqdn)
        line16, _ = shipped_line("2016 CU23")
        line19, _ = shipped_line("2019 CU15")
        red = {e["server"]: e for e in self.events_of("redetection")}
        self.assertEqual(red["ex16.bear.local"]["detected_at"], SEP1)
        self.assertEqual(red["ex16.bear.local"]["rule_line"], line16)
        self.assertEqual(red["ex19.bear.local"]["rule_line"], line19)
        self.assertEqual(red["ex16.bear.local"]["reason"], "test clock moved")
        self.assertEqual(red["se29.bear.local"]["reason"], "catalog load")
        # SE Jul26SU stays compliant until Aug26SU is 60 days old.
        tc.set_clock(OCT10 - 1)
        self.assertEqual(self.status("se45.bear.local"), "Resolved")
        tc.advance(1)
        s = tc.server(1, "se45.bear.local")
        self.assertEqual((s["status"], s["first_detected_unix"]), ("Reporting", OCT10))
        self.assertEqual(self.status("se46.bear.local"), "Resolved")
        # The clock starting at 09-01 escalates from there.
        tc.set_clock(SEP1 + 30 * DAY)
        self.assertEqual(tc.server(1, "ex16.bear.local")["status"], "Throttling")
        # Set back: nothing is undone, nothing re-detected twice.
        n = len(self.events_of("redetection"))
        tc.set_clock(AUG20 + DAY)
        self.assertEqual(len(self.events_of("redetection")), n)
        self.assertEqual(tc.server(1, "ex16.bear.local")["first_detected_unix"], SEP1)

    def test_dates_pass_while_down(self):
        tc = self.tc
        tc.ctl("catalog", "load", BUILDS, SHIPPED)
        tc.stop()
        tc.start(test_clock=SEP5)
        for fqdn in ("ex16.bear.local", "ex19.bear.local"):
            s = tc.server(1, fqdn)
            self.assertEqual((s["status"], s["first_detected_unix"]), ("Reporting", SEP1), fqdn)
        red = {e["server"]: e for e in self.events_of("redetection")}
        self.assertEqual(red["ex16.bear.local"]["reason"], "tescontrol was not running")
        self.assertEqual(self.status("se45.bear.local"), "Resolved")

    def test_catalog_check(self):
        tc = self.tc
        tc.ctl("catalog", "load", BUILDS, SHIPPED)
        line, text = shipped_line("2016 CU23")
        r = tc.ctl("catalog", "check", "15.1.2507.61", "--at", "2026-08-31T23:59:59Z")
        self.assertTrue(r["compliant"])
        self.assertEqual(r["at_unix"], SEP1 - 1)
        self.assertEqual(r["rule"]["kind"], "from")
        self.assertEqual((r["rule"]["file"], r["rule"]["line"]), ("compliance.conf", line))
        self.assertEqual(r["rule"]["text"], text)
        self.assertEqual(r["rule"]["until_unix"], SEP1)
        self.assertIsNone(r["rule"]["since_unix"])
        self.assertEqual(r["rule"]["floor"]["build"], "15.1.2507.61")
        self.assertIsNone(r["verdict_since_unix"])
        self.assertEqual(r["verdict_until_unix"], SEP1)
        # From 09-01 the rule is not in force; it is still named.
        r = tc.ctl("catalog", "check", "15.1.2507.61", "--at", "2026-09-01")
        self.assertFalse(r["compliant"])
        self.assertEqual((r["rule"]["kind"], r["rule"]["line"]), ("none", line))
        self.assertEqual(r["verdict_since_unix"], SEP1)
        self.assertIsNone(r["verdict_until_unix"])
        self.assertEqual([x["build"] for x in r["recommended"]], ["15.2.2562.46"])
        # Without --at: tescontrol's clock (2026-08-20).
        r = tc.ctl("catalog", "check", "15.2.2562.45")
        self.assertEqual(r["at_unix"], AUG20)
        self.assertTrue(r["compliant"])
        sline, stext = shipped_line("SE RTM")
        self.assertEqual((r["rule"]["kind"], r["rule"]["line"], r["rule"]["days"]),
                         ("current", sline, 60))
        self.assertEqual(r["rule"]["text"], stext)
        self.assertEqual(r["rule"]["floor"]["build"], "15.2.2562.43")
        self.assertEqual(r["verdict_until_unix"], OCT10)
        r = tc.ctl("catalog", "check", "15.2.2562.45", "--at", f"@{OCT10}")
        self.assertFalse(r["compliant"])
        self.assertEqual(r["rule"]["floor"]["build"], "15.2.2562.46")
        # The same as text.
        out = tc.ctl("catalog", "check", "15.1.2507.61", "--at", "2026-08-31", json_out=False)
        self.assertIn(f"compliance.conf:{line}: {text}", out)
        self.assertRegex(out, r"this verdict holds\s+since always, until 2026-09-01T00:00:00Z")
        out = tc.ctl("catalog", "check", "15.1.2507.61", "--at", "2026-09-02", json_out=False)
        self.assertIn("(not in force at that time)", out)
        self.assertRegex(out, r"verdict\s+out of date")
        # A date tesctl cannot read is a usage error, nothing sent.
        for bad in ("2026-9-1", "yesterday", "@-5", "2026-09-01T00:00:00"):
            p = tc.ctl_raw("catalog", "check", "15.1.2507.61", "--at", bad)
            self.assertEqual(p.returncode, 2, bad)
            self.assertIn("--at", p.stderr)

    def test_unknown_date_form(self):
        tc = self.tc
        before = tc.ctl("catalog", "show")["version"]
        bad = os.path.join(self.tmp, "bad.conf")
        with open(bad, "w") as f:
            f.write("2013 never\n# a comment\n2016 CU23 from 15.1.2507.61 until 2026-9-1\n")
        p = tc.ctl_raw("catalog", "load", BUILDS, bad)
        self.assertEqual(p.returncode, 1)
        self.assertIn("bad.conf:3: unknown date form '2026-9-1' after 'until'", p.stderr)
        self.assertIn("(nothing was changed)", p.stderr)
        self.assertEqual(tc.ctl("catalog", "show")["version"], before)
        self.assertEqual(self.events_of("catalog_load"), [])


class GatewayClock(unittest.TestCase):
    """tesgate classifies each message's build at the clock it decides with
    (tescontrol's test clock, followed)."""

    def setUp(self):
        if TESGATE is None:
            self.skipTest("no tesgate binary given")
        from gateway_harness import Gateway
        os.environ["TES_ALLOW_TEST_CLOCK"] = "1"
        self.tc = Tescontrol(test_clock=SEP1 - 3600)
        self.addCleanup(self.tc.cleanup)
        self.tc.start()
        self.tc.ctl("tenant", "add", 1, "Contoso", "--connector", "127.0.0.0/8")
        self.gw = Gateway(TESGATE, conf={
            "control_socket": self.tc.gw_sock,
            "follow_test_clock": "yes",
            "gateway_id": "gw-dates",
            "metrics_listen": "127.0.0.1:0",
        })
        self.addCleanup(self.gw.close)
        self.addCleanup(self.gw.stop)
        self.wait_log(r"control: synchronised")

    def wait_log(self, pattern, count=1):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if len(re.findall(pattern, self.gw.log_text())) >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"tesgate did not log {pattern!r}:\n{self.gw.log_text()[-5000:]}")

    def send(self):
        with open(os.path.join(ch.SRCDIR, "tests", "data", "headers", "ex2016-tls.hdr"),
                  "rb") as f:
            hdr = f.read().replace(b"id 15.1.2507.35;", b"id 15.1.2507.61;", 1)
        with smtplib.SMTP("127.0.0.1", self.gw.port, timeout=15) as s:
            s.sendmail("a@contoso.com", ["b@example.net"], hdr + b"Body.\r\n")

    def test_rule_end_at_the_gateway(self):
        # 2026-08-31 23:00: CU23 Oct25SU is compliant; not tracked.
        self.send()
        self.wait_log(r"detect .* build=15\.1\.2507\.61 .* compliant=yes")
        self.assertIsNone(self.tc.server(1, "ex16-02.contoso.local"))
        # 2026-09-01 00:00:01: the same build is out of date, at the gateway
        # (its own classification, in the detect line) and in tescontrol.
        self.tc.set_clock(SEP1 + 1)
        # Once the gateway has applied the clock move, its first detection
        # must say it: no resending until it does.
        self.gw.wait_generation(self.tc.generation())
        self.send()
        self.wait_log(r"detect .* build=15\.1\.2507\.61 .* compliant=(yes|no)", count=2)
        self.assertRegex(re.findall(r"detect .* build=15\.1\.2507\.61 .* compliant=\w+",
                                    self.gw.log_text())[-1], r"compliant=no")
        deadline = time.monotonic() + 10
        while self.tc.server(1, "ex16-02.contoso.local") is None and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        s = self.tc.server(1, "ex16-02.contoso.local")
        self.assertEqual((s["status"], s["build"]), ("Reporting", "15.1.2507.61"))
        self.assertEqual(s["first_detected_unix"], SEP1 + 1)


if __name__ == "__main__":
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        TESGATE = sys.argv.pop(1)
    unittest.main(verbosity=2)
