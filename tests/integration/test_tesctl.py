# SPDX-License-Identifier: BSD-3-Clause
"""tesctl against a real tescontrol: every command's --help, output formats,
catalog and policy loads (validated before they swap; a bad file changes
nothing; --dry-run lists what would change), errors on stderr with a
non-zero status, the test clock refused in production, configuration
errors, and who may open the admin socket."""
import csv
import grp
import io
import os
import shutil
import stat
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ctl_harness import (DAY, SRCDIR, T0, TESCONTROL, TESCTL, CtlError,  # noqa: E402
                         FakeGateway, Tescontrol)

OLD_2016 = "15.1.2507.35"
COMMANDS = ["report", "server show", "server reset", "tenant add", "tenant list",
            "tenant show", "pause add", "pause show", "pause resume", "catalog show",
            "catalog load", "catalog check", "policy show", "policy load", "status", "clock"]


def data(name):
    return os.path.join(SRCDIR, "data", name)


class WithDaemon(unittest.TestCase):
    def setUp(self):
        self.tc = Tescontrol()
        self.addCleanup(self._cleanup)
        self.tc.start()

    def _cleanup(self):
        sys.stderr.write("---- tescontrol log ----\n" + self.tc.log_text()[-20000:])
        self.tc.cleanup()

    def write(self, name, text):
        path = os.path.join(self.tc.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path


class Help(unittest.TestCase):
    def run_ctl(self, *args):
        return subprocess.run([TESCTL, "--socket", "/nonexistent/x.sock"] + list(args),
                              capture_output=True, text=True, timeout=30)

    def test_every_command_has_help(self):
        top = self.run_ctl("--help")
        self.assertEqual(top.returncode, 0)
        for c in COMMANDS:
            self.assertIn(c, top.stdout)
            with self.subTest(c):
                p = self.run_ctl(*c.split(), "--help")
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertIn("Usage: tesctl", p.stdout)
                self.assertIn(c, p.stdout)
                self.assertEqual(p.stderr, "")

    def test_usage_errors(self):
        for args, text in [
            (["frobnicate"], "unknown command"),
            (["server", "explode"], 'unknown command "server explode"'),
            (["pause", "add", "1"], "pause add takes 2 arguments"),
            (["pause", "add", "1", "x"], "DAYS: \"x\" is not a number"),
            (["report", "--format", "xml"], "--format must be table, json or csv"),
            (["report", "--bogus"], "unknown option --bogus"),
            (["clock", "advance", "3x"], "unknown unit"),
        ]:
            with self.subTest(args):
                p = self.run_ctl(*args)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn(text, p.stderr)
                self.assertEqual(p.stdout, "")

    def test_unreachable(self):
        p = self.run_ctl("status")
        self.assertEqual(p.returncode, 3)
        self.assertIn("cannot reach tescontrol at /nonexistent/x.sock", p.stderr)

    def test_tescontrol_help_and_version(self):
        p = subprocess.run([TESCONTROL, "--help"], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0)
        self.assertIn("--test-clock", p.stdout)
        p = subprocess.run([TESCONTROL, "--version"], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 0)
        self.assertIn("control protocol 1", p.stdout)


class Outputs(WithDaemon):
    def test_report_formats(self):
        tc = self.tc
        tc.ctl("tenant", "add", 5, "Comma, Inc.", "--connector", "192.0.2.0/24",
               "--connector", "0.0.0.0/0,mx.comma.example")
        gw = FakeGateway(tc.gw_sock)
        self.addCleanup(gw.close)
        gw.sighting(5, "ex1.comma.local", OLD_2016)
        gw.sighting(5, "ex0.comma.local", "15.0.1497.2")  # 2013: never compliant
        tc.advance(45 * DAY)
        table = tc.ctl("report", json_out=False)
        lines = table.splitlines()
        self.assertTrue(lines[0].startswith("TENANT"))
        self.assertIn("ex0.comma.local", lines[1])  # sorted by name
        self.assertIn("Throttling", lines[2])
        self.assertIn("2024-01-31", lines[2])  # throttle from
        rows = list(csv.DictReader(io.StringIO(tc.ctl("report", "--format", "csv",
                                                      json_out=False))))
        self.assertEqual(len(rows), 2)
        self.assertEqual(rows[1]["fqdn"], "ex1.comma.local")
        self.assertEqual(rows[1]["tenant_name"], "Comma, Inc.")
        self.assertEqual(rows[1]["status"], "Throttling")
        self.assertEqual(rows[1]["next_stage_throttle_min"], "20")
        self.assertEqual(rows[1]["first_detected"], "2024-01-01T00:00:00Z")
        self.assertEqual(rows[0]["family"], "2013")
        j = tc.ctl("report", "--format", "json", json_out=False)
        self.assertIn('"servers"', j)
        self.assertEqual(tc.report(tenant=5)["total"], 2)
        with self.assertRaises(CtlError) as e:
            tc.ctl("report", "--tenant", 6)
        self.assertIn("no tenant 6", e.exception.stderr)
        t = tc.ctl("tenant", "show", 5)
        self.assertEqual(t["connectors"][1], {"range": "0.0.0.0/0", "cert": "mx.comma.example"})
        self.assertEqual(t["servers"], 2)
        self.assertIn("Comma, Inc.", tc.ctl("tenant", "list", json_out=False))
        for args in (["server", "show", 5, "ex1.comma.local"], ["status"], ["catalog", "show"],
                     ["policy", "show"], ["pause", "show", 5], ["catalog", "check", OLD_2016]):
            with self.subTest(args):
                self.assertTrue(tc.ctl(*args, json_out=False).strip())

    def test_report_pages(self):
        tc = self.tc
        tc.ctl("tenant", "add", 1, "Many")
        gw = FakeGateway(tc.gw_sock)
        self.addCleanup(gw.close)
        for i in range(2100):
            gw.sighting(1, f"ex{i:04}.many.local", OLD_2016, wait=False)
        gw.wait_until(lambda: len(gw.acks) == 2100, timeout=120, what="2100 acks")
        rep = tc.report()
        self.assertEqual(rep["total"], 2100)
        self.assertEqual(len(rep["servers"]), 2100)
        self.assertEqual(rep["servers"][-1]["fqdn"], "ex2099.many.local")

    def test_tenant_errors(self):
        tc = self.tc
        for args, text in [
            (["tenant", "add", 1, "X", "--connector", "10.0.0.1/8"], "host bits"),
            (["tenant", "add", 1, "X", "--connector", "banana"], "bad connector range"),
            (["tenant", "add", 0, "X"], "ID"),
            (["tenant", "show", 9], "no tenant 9"),
        ]:
            with self.subTest(args):
                p = tc.ctl_raw(*args)
                self.assertNotEqual(p.returncode, 0)
                self.assertIn(text, p.stderr)
                self.assertEqual(p.stdout, "")
        self.assertEqual(tc.ctl("tenant", "list")["tenants"], [])


class CatalogAndPolicy(WithDaemon):
    def setUp(self):
        super().setUp()
        tc = self.tc
        tc.ctl("tenant", "add", 1, "Bear")
        self.gw = FakeGateway(tc.gw_sock)
        self.addCleanup(self.gw.close)
        self.gw.sighting(1, "ex1.bear.local", OLD_2016)
        self.gw.sighting(1, "ex2.bear.local", "15.0.1497.2")
        tc.advance(25 * DAY)

    def test_catalog_check(self):
        r = self.tc.ctl("catalog", "check", "15.01.2507.061")
        self.assertTrue(r["compliant"])
        self.assertEqual(r["build"], "15.1.2507.61")
        self.assertEqual(r["branch"], "CU23")
        r = self.tc.ctl("catalog", "check", "15.20.7000.1")
        self.assertFalse(r["on_premises"])
        p = self.tc.ctl_raw("catalog", "check", "fifteen")
        self.assertEqual(p.returncode, 1)
        self.assertIn("is not a build", p.stderr)

    def test_catalog_load(self):
        tc, gw = self.tc, self.gw
        before = tc.ctl("catalog", "show")
        with open(data("compliance.conf")) as f:
            lax = f.read().replace("2016 CU23 from 15.1.2507.61", "2016 CU23 from 15.1.2507.35")
        lax_path = self.write("lax.conf", lax)
        # A bad file changes nothing and says where it is wrong.
        with open(data("exchange-builds.csv")) as f:
            rows = f.read().splitlines()
        rows[40] = "2016,CU23,broken row"
        bad_csv = self.write("bad.csv", "\n".join(rows) + "\n")
        for builds, comp, text in [(bad_csv, lax_path, "bad.csv:41:"),
                                   (data("exchange-builds.csv"),
                                    self.write("bad.conf", "2016 CU99 from 1.2.3.4\n"),
                                    "bad.conf:1:"),
                                   ("/nonexistent.csv", lax_path, "/nonexistent.csv")]:
            with self.subTest(builds=builds, comp=comp):
                p = tc.ctl_raw("catalog", "load", builds, comp)
                self.assertEqual(p.returncode, 1)
                self.assertIn(text, p.stderr)
                self.assertEqual(tc.ctl("catalog", "show")["version"], before["version"])
                self.assertEqual(tc.server(1, "ex1.bear.local")["status"], "Reporting")
        # Dry run: lists the change, makes none.
        mark = len(gw.msgs)
        r = tc.ctl("catalog", "load", "--dry-run", data("exchange-builds.csv"), lax_path)
        self.assertTrue(r["dry_run"])
        self.assertEqual(r["changes"], [{
            "tenant": 1, "fqdn": "ex1.bear.local", "build": OLD_2016, "old_status": "Reporting",
            "new_status": "Resolved", "old_stage": 1, "new_stage": 1}])
        self.assertEqual(tc.ctl("catalog", "show")["version"], before["version"])
        self.assertEqual(tc.server(1, "ex1.bear.local")["status"], "Reporting")
        gw.drain()
        self.assertEqual([m for m in gw.msgs[mark:] if m["type"] in ("catalog", "server")], [])
        text = tc.ctl("catalog", "load", "--dry-run", data("exchange-builds.csv"), lax_path,
                      json_out=False)
        self.assertIn("would change the status of 1 known server", text)
        self.assertIn("Reporting stage 1 -> Resolved stage 1", text)
        # The real load: stored, pushed, applied.
        r = tc.ctl("catalog", "load", data("exchange-builds.csv"), lax_path)
        self.assertFalse(r["dry_run"])
        self.assertNotEqual(r["version"], before["version"])
        self.assertEqual(tc.ctl("catalog", "show")["compliance_name"], "lax.conf")
        gw.wait_until(lambda: gw.catalog["version"] == r["version"], what="catalog push")
        gw.wait_until(lambda: gw.servers[(1, "ex1.bear.local")]["status"] == "Resolved",
                      what="resolved push")
        self.assertEqual(tc.server(1, "ex1.bear.local")["status"], "Resolved")
        self.assertEqual(tc.server(1, "ex2.bear.local")["status"], "Reporting")
        # It survives a restart, and the original brings the clock back.
        tc.stop()
        tc.start()
        self.assertEqual(tc.ctl("catalog", "show")["version"], r["version"])
        r2 = tc.ctl("catalog", "load", "--dry-run", data("exchange-builds.csv"),
                    data("compliance.conf"))
        self.assertEqual([(c["fqdn"], c["old_status"], c["new_status"]) for c in r2["changes"]],
                         [("ex1.bear.local", "Resolved", "Reporting")])

    def test_policy_load(self):
        tc, gw = self.tc, self.gw
        before = tc.ctl("policy", "show")
        with open(data("policy.conf")) as f:
            text = f.read()
        quick = self.write("quick.conf", text.replace("2 = 30 5 0", "2 = 20 5 0"))
        bad = self.write("bad-policy.conf", text.replace("2 = 30 5 0", "2 = 30 50 20"))
        p = tc.ctl_raw("policy", "load", bad)
        self.assertEqual(p.returncode, 1)
        self.assertIn("bad-policy.conf:", p.stderr)
        self.assertIn("stages.2", p.stderr)
        p = tc.ctl_raw("policy", "load", "--dry-run", bad)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(tc.ctl("policy", "show")["version"], before["version"])
        r = tc.ctl("policy", "load", "--dry-run", quick)
        self.assertEqual(sorted((c["fqdn"], c["old_status"], c["new_status"], c["new_stage"])
                                for c in r["changes"]),
                         [("ex1.bear.local", "Reporting", "Throttling", 2),
                          ("ex2.bear.local", "Reporting", "Throttling", 2)])
        self.assertEqual(tc.ctl("policy", "show")["version"], before["version"])
        self.assertEqual(tc.server(1, "ex1.bear.local")["status"], "Reporting")
        mark = len(gw.msgs)
        r = tc.ctl("policy", "load", quick)
        self.assertEqual(len(r["changes"]), 2)
        gw.wait_until(lambda: gw.policy["version"] == r["version"], what="policy push")
        gw.wait_until(lambda: gw.servers[(1, "ex1.bear.local")]["status"] == "Throttling",
                      what="server push")
        self.assertTrue(gw.server_msgs_since(mark))
        self.assertEqual(tc.server(1, "ex1.bear.local")["throttle_enabled_unix"], T0 + 20 * DAY)
        self.assertEqual(tc.ctl("policy", "show")["stages"][1]["start_day"], 20)
        tc.wait_log(r"stage change: tenant 1 server ex1\.bear\.local: stage 1 -> 2")


class TestClock(unittest.TestCase):
    def test_refused_without_the_environment(self):
        tc = Tescontrol()
        self.addCleanup(tc.cleanup)
        tc.start(env_allow=False, wait_ready=False)
        self.assertEqual(tc.proc.wait(timeout=20), 2)
        self.assertIn("--test-clock is for tests only", tc.log_text())
        self.assertFalse(os.path.exists(tc.gw_sock))

    def test_production_clock_cannot_move(self):
        tc = Tescontrol(test_clock=None)
        self.addCleanup(tc.cleanup)
        tc.start()
        self.assertNotIn("TEST CLOCK", tc.log_text())
        st = tc.ctl("status")
        self.assertFalse(st["clock"]["test_clock"])
        p = tc.ctl_raw("clock", "advance", "30d")
        self.assertEqual(p.returncode, 1)
        self.assertIn("only a tescontrol started with --test-clock", p.stderr)

    def test_test_clock_is_announced(self):
        tc = Tescontrol()
        self.addCleanup(tc.cleanup)
        tc.start()
        self.assertIn("TEST CLOCK ENABLED", tc.log_text())
        self.assertIn("(TEST CLOCK", tc.ctl("status", json_out=False))
        self.assertEqual(tc.ctl("clock", "show")["now"], T0)


class Configuration(unittest.TestCase):
    def test_errors_name_file_line_key(self):
        tc = Tescontrol()
        self.addCleanup(tc.cleanup)
        for line, text in [("bogus = 1", "bogus: unknown key"),
                           ("log_level = loud", "log_level: \"loud\" is not one of"),
                           ("admin_socket = relative.sock", "is not an absolute path"),
                           ("admin_socket = /" + "x" * 120, "unix socket address"),
                           ("state_dir", "expected \"key = value\"")]:
            with self.subTest(line):
                path = os.path.join(tc.dir, "bad.conf")
                with open(path, "w") as f:
                    f.write("# comment\n\n" + line + "\n")
                p = subprocess.run([TESCONTROL, "-c", path], capture_output=True, text=True,
                                   timeout=30)
                self.assertEqual(p.returncode, 2)
                self.assertIn(f"{path}:3:", p.stderr)
                self.assertIn(text, p.stderr)

    def test_bad_catalog_file_stops_start(self):
        tc = Tescontrol(conf={"compliance_file": "/nonexistent/compliance.conf"})
        self.addCleanup(tc.cleanup)
        tc.start(wait_ready=False)
        self.assertEqual(tc.proc.wait(timeout=20), 1)
        self.assertIn("compliance_file: /nonexistent/compliance.conf", tc.log_text())

    def test_one_daemon_per_state_dir(self):
        tc = Tescontrol()
        self.addCleanup(tc.cleanup)
        tc.start()
        p = subprocess.run([TESCONTROL, "-c", tc.conf_path], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("another tescontrol is running", p.stderr)
        self.assertEqual(tc.ctl("status")["tenants"], 0)


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"),
                     "needs root and setpriv to act as other users")
class AdminSocketAccess(unittest.TestCase):
    def test_root_group_members_only(self):
        group = None
        for name in ("users", "nogroup", "staff"):
            try:
                group = grp.getgrnam(name)
                break
            except KeyError:
                continue
        if group is None:
            self.skipTest("no spare group to use")
        tc = Tescontrol(conf={"admin_group": group.gr_name})
        self.addCleanup(tc.cleanup)
        os.chmod(tc.dir, 0o755)  # let other users reach the socket file
        tc.start()
        st = os.stat(tc.admin_sock)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
        self.assertEqual((st.st_uid, st.st_gid), (0, group.gr_gid))
        outsider = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        member = ["setpriv", "--reuid=65534", "--regid=65534", f"--groups={group.gr_gid}"]
        # a copy the other user can always run, wherever the build tree is
        tesctl = os.path.join(tc.dir, "tesctl")
        shutil.copy(TESCTL, tesctl)
        os.chmod(tesctl, 0o755)

        def ctl(user):
            return subprocess.run(user + [tesctl, "--socket", tc.admin_sock, "--json", "status"],
                                  capture_output=True, text=True, timeout=30,
                                  stdin=subprocess.DEVNULL)
        probe = subprocess.run(outsider + [tesctl, "--help"], capture_output=True, text=True,
                               timeout=30)
        self.assertEqual(probe.returncode, 0, probe.stderr)
        p = ctl(outsider)
        self.assertEqual(p.returncode, 3)
        self.assertIn("Permission denied", p.stderr)
        p = ctl(member)
        self.assertEqual(p.returncode, 0, p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
