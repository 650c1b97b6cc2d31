# SPDX-License-Identifier: BSD-3-Clause
"""The report as a page, as a person sees it: Debian's headless Chromium
loads tescontrol's report (test clock) and the test reads the DOM Chromium
built.

A real tesgate (kernel sockets, following the test clock) carries an
out-of-date Exchange 2016 server of tenant 1 (a name with markup in it):
accepted on day 0, throttled twice at MAIL FROM on day 30, blocked on day
91; its counts reach tescontrol through the control protocol (counters'
"servers").  A fake gateway reports two servers of tenant 2, which pauses
on day 35 and has one of them resolved on day 91.  Then:

- /report on the metrics listener: the summary per tenant, each server's
  status, stage, dates (as tesctl report gives them), timeline and counts
  (throttled 2, refused 1), the chart's data day by day, the policy and
  catalog versions in force, nothing of the names as markup; a screenshot
  is kept in the build directory;
- tenant 2's page through its token (tesctl token create): its servers and
  nothing of tenant 1; the same over the TLS listener (report_listen);
  screenshot kept;
- a wrong token, a revoked one: 403 and no data, in Chromium and over TLS;
  the full report is not served on the TLS listener.

Usage: test_report_page.py TESGATE BUILDDIR  (TESCONTROL, TESCTL, TES_SRCDIR
in the environment).  Exit 77 without chromium.
"""
import http.client
import os
import shutil
import smtplib
import ssl
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import browser_harness as bh  # noqa: E402
import ctl_harness as ch  # noqa: E402
from certs_harness import Certs  # noqa: E402
from gateway_harness import Gateway  # noqa: E402
from prom_harness import free_port  # noqa: E402

DAY = ch.DAY
T0 = ch.T0
SERVER = "ex16-02.contoso.local"
TENANT1 = 'Contoso <b>&amp;</b> "Ltd"'
PROPAGATION = 30.0


def fixture():
    with open(os.path.join(ch.SRCDIR, "tests", "data", "headers", "ex2016-tls.hdr"), "rb") as f:
        return f.read() + b"Body of a simulated Exchange message.\r\n"


def get(url, context=None):
    """(status, body text)."""
    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class ReportPage(unittest.TestCase):
    binary = None
    builddir = None

    @classmethod
    def setUpClass(cls):
        if not bh.CHROMIUM:
            raise unittest.SkipTest("SKIP: needs chromium (Debian package chromium)")
        os.environ["TES_ALLOW_TEST_CLOCK"] = "1"
        cls.tmp = tempfile.mkdtemp(prefix="tes-report-")
        cls.certs = Certs()
        policy = os.path.join(cls.tmp, "policy.conf")
        with open(policy, "w") as f:
            # no probe at the full block: the day-91 message is refused at
            # MAIL FROM, a count the test knows exactly
            f.write("[enforcement]\nprobe_interval = 0\n")
        cls.mport, cls.tport = free_port(), free_port()
        cls.tc = ch.Tescontrol(test_clock=T0, conf={
            "policy_file": policy,
            "metrics_listen": f"127.0.0.1:{cls.mport}",
            "report_listen": f"127.0.0.1:{cls.tport}",
            "report_tls_cert": cls.certs.path("server.crt"),
            "report_tls_key": cls.certs.path("server.key"),
        }).start()
        cls.base = f"http://127.0.0.1:{cls.mport}"
        cls.gw = None
        cls.fake = None
        try:
            cls.walk()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.fake:
                cls.fake.close()
            if cls.gw:
                rc = cls.gw.stop()
                log = cls.gw.log_text()
                for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
                    assert bad not in log, log[-5000:]
                assert rc == 0, log[-5000:]
        finally:
            if cls.gw:
                cls.gw.close()
            cls.tc.cleanup()
            cls.certs.cleanup()
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- the timeline ----------------------------------------------------
    @classmethod
    def send(cls, code):
        cls.gw.wait_generation(cls.tc.generation())
        try:
            with smtplib.SMTP("127.0.0.1", cls.gw.port, timeout=15,
                              source_address=("127.0.0.1", 0)) as s:
                s.ehlo(SERVER)
                s.sendmail("grace.okafor@contoso.com", ["ian.hughes@example.net"], fixture())
            got = 250
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as e:
            got = e.smtp_code
        assert got == code, f"expected {code}, got {got}"

    @classmethod
    def wait_for(cls, pred, what, timeout=PROPAGATION):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    @classmethod
    def walk(cls):
        tc = cls.tc
        tc.ctl("tenant", "add", 1, TENANT1, "--connector", "127.0.0.0/8")
        tc.ctl("tenant", "add", 2, "Fabrikam", "--connector", "198.18.2.0/24")
        cls.gw = Gateway(cls.binary, conf={
            "control_socket": tc.gw_sock, "follow_test_clock": "yes",
            "gateway_id": "gw-report", "metrics_listen": "127.0.0.1:0"})
        cls.wait_for(lambda: "control: synchronised" in cls.gw.log_text(), "synchronised")
        cls.fake = ch.FakeGateway(tc.gw_sock, name="gw-fake")
        cls.send(250)  # day 0: the first detection
        cls.wait_for(lambda: tc.server(1, SERVER) is not None, "first detection")
        cls.fake.sighting(2, "mx1.fabrikam.local", "15.1.2507.35", source="198.18.2.10")
        tc.set_clock(T0 + 10 * DAY)
        cls.fake.sighting(2, "mx2.fabrikam.local", "15.1.2507.35", source="198.18.2.11")
        tc.set_clock(T0 + 30 * DAY + 3600)  # stage 2, minute 0: throttled
        cls.send(450)
        cls.send(450)
        tc.set_clock(T0 + 35 * DAY)
        tc.ctl("pause", "add", 2, 5)
        tc.set_clock(T0 + 91 * DAY + 1800)  # stage 8: blocked all hour
        cls.send(550)
        cls.fake.sighting(2, "mx2.fabrikam.local", "15.1.2507.61", cls="compliant",
                          source="198.18.2.11")
        # the gateway sends its counts with its counters, every 5 s
        cls.wait_for(lambda: 'class="n refused">1<' in get(cls.base + "/report")[1],
                     "the gateway's counts on the page")
        cls.report = {(s["tenant"], s["fqdn"]): s for s in tc.report()["servers"]}
        cls.dom = bh.dump_dom(cls.base + "/report")
        cls.shot = os.path.join(cls.builddir, "report-page.png")
        bh.screenshot(cls.base + "/report", cls.shot)

    # -- helpers ---------------------------------------------------------
    def row(self, dom, fqdn):
        r = dom.find("tr", cls="server", data_fqdn=fqdn)
        self.assertIsNotNone(r, f"no row for {fqdn}")
        return r

    def check_row(self, dom, tenant, fqdn, status, stage, throttled, refused):
        r = self.row(dom, fqdn)
        want = self.report[(tenant, fqdn)]
        self.assertEqual(r.attrs["data-tenant"], str(tenant))
        self.assertEqual(r.cell("fqdn"), fqdn)
        self.assertEqual(r.cell("status"), status)
        self.assertEqual(want["status"], status)
        self.assertEqual(r.cell("stage"), str(stage))
        self.assertEqual(want["stage"], stage)
        self.assertEqual(r.cell("build"), want["build"])
        # the same dates as tesctl report
        for cls, key in (("first-seen", "first_detected"), ("throttle-date", "throttle_enabled"),
                         ("block-date", "blocking_enabled"), ("resolved-date", "resolved_at"),
                         ("last-seen", "last_seen")):
            self.assertEqual(r.cell(cls), (want[key] or "")[:10], f"{fqdn} {cls}")
        self.assertEqual(r.cell("throttled"), str(throttled))
        self.assertEqual(r.cell("refused"), str(refused))
        return r

    def summary(self, dom, tenant):
        r = dom.by_id(f"sum-{tenant}")
        self.assertIsNotNone(r)
        cols = ["total", "Reporting", "Throttling", "Blocking", "Paused", "Stale", "Resolved"]
        cols += [f"stage-{k}" for k in range(1, 9)]
        return {c: int(r.cell(c)) for c in cols}

    # -- the full report -------------------------------------------------
    def test_full_report(self):
        dom = self.dom
        self.assertEqual(dom.find("time").attrs["datetime"], "2024-04-01T00:30:00Z")
        self.assertIn("TEST CLOCK", dom.by_id("asof").text())
        # the tenant's name is text, not markup: no <b> element anywhere
        self.assertIsNone(dom.find("b"))
        self.assertEqual(dom.by_id("tenant-1").find("h2").text(), TENANT1 + " (tenant 1)")
        self.assertEqual(self.summary(dom, 1), {
            "total": 1, "Reporting": 0, "Throttling": 0, "Blocking": 1, "Paused": 0,
            "Stale": 0, "Resolved": 0, "stage-1": 0, "stage-2": 0, "stage-3": 0, "stage-4": 0,
            "stage-5": 0, "stage-6": 0, "stage-7": 0, "stage-8": 1})
        self.assertEqual(self.summary(dom, 2), {
            "total": 2, "Reporting": 0, "Throttling": 0, "Blocking": 1, "Paused": 0,
            "Stale": 0, "Resolved": 1, "stage-1": 0, "stage-2": 0, "stage-3": 0, "stage-4": 0,
            "stage-5": 0, "stage-6": 0, "stage-7": 1, "stage-8": 0})
        r = self.check_row(dom, 1, SERVER, "Blocking", 8, 2, 1)
        self.assertEqual(r.cell("first-seen"), "2024-01-01")
        self.assertEqual(r.cell("throttle-date"), "2024-01-31")
        self.assertEqual(r.cell("block-date"), "2024-03-01")
        self.assertEqual([li.attrs["data-event"] for li in r.find_all("li")],
                         ["first-seen", "throttle", "block"])
        mx1 = self.check_row(dom, 2, "mx1.fabrikam.local", "Blocking", 7, 0, 0)
        # the pause is in its timeline, with its dates
        pause = mx1.find("li", data_event="pause")
        self.assertIsNotNone(pause)
        self.assertEqual(pause.text(), "2024-02-05 paused until 2024-02-10")
        # resolved on day 91, the stage it had reached then kept (as tesctl report)
        mx2 = self.check_row(dom, 2, "mx2.fabrikam.local", "Resolved", 6, 0, 0)
        self.assertEqual(mx2.cell("resolved-date"), "2024-04-01")
        self.assertEqual(mx2.find_all("li").__next__().attrs["data-event"], "first-seen")
        # the chart's data: all tenants, one row per day something changed
        rows = []
        for tr in dom.by_id("history").find("tbody").find_all("tr"):
            rows.append([tr.attrs["data-day"]] + [int(td.text()) for td in tr.find_all("td")])
        #             day           st1 st2 st3 st4 st5 st6 st7 st8 paused stale resolved
        self.assertEqual(rows, [
            ["2024-01-01", 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ["2024-01-11", 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ["2024-01-31", 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ["2024-02-05", 0, 1, 0, 0, 0, 0, 0, 0, 2, 0, 0],
            ["2024-04-01", 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1]])
        svg = dom.by_id("stage-chart")
        self.assertIsNotNone(svg)
        self.assertEqual(sorted(p.attrs["class"] for p in svg.find_all("polygon")),
                         ["series paused", "series stage-1", "series stage-2",
                          "series stage-7", "series stage-8"])
        # the documents in force, as tesctl shows them
        self.assertEqual(dom.find(cls="policy-version").text(),
                         self.tc.ctl("policy", "show")["version"])
        self.assertEqual(dom.find(cls="catalog-version").text(),
                         self.tc.ctl("catalog", "show")["version"])
        # no script on the page, and the screenshot was kept
        self.assertIsNone(dom.find("script"))
        with open(self.shot, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    # -- one tenant's view -----------------------------------------------
    def test_tenant_view(self):
        tok = self.tc.ctl("token", "create", 2)
        self.assertEqual(len(tok["token"]), 64)
        self.assertEqual(tok["path"], "/report/tenant/" + tok["token"])
        url = self.base + tok["path"]
        dom = bh.dump_dom(url)
        bh.screenshot(url, os.path.join(self.builddir, "report-page-tenant.png"))
        text = dom.text()
        for other in ("Contoso", "contoso", "tenant-1", "sum-1"):
            self.assertNotIn(other, text)
        self.assertIsNone(dom.by_id("tenant-1"))
        self.assertIsNone(dom.by_id("sum-1"))
        self.assertEqual(len(list(dom.find_all("tr", cls="server"))), 2)
        self.check_row(dom, 2, "mx1.fabrikam.local", "Blocking", 7, 0, 0)
        self.assertEqual(self.summary(dom, 2)["Resolved"], 1)
        rows = [[tr.attrs["data-day"]] + [int(td.text()) for td in tr.find_all("td")]
                for tr in dom.by_id("history").find("tbody").find_all("tr")]
        self.assertEqual(rows, [
            ["2024-01-01", 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ["2024-01-11", 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ["2024-01-31", 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ["2024-02-05", 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0],
            ["2024-04-01", 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]])

        # the same page over TLS (report_listen), the certificate checked
        ctx = ssl.create_default_context(cafile=self.certs.path("server.crt"))
        ctx.check_hostname = False
        code, body = get(f"https://127.0.0.1:{self.tport}{tok['path']}", ctx)
        self.assertEqual(code, 200)
        self.assertIn('data-fqdn="mx2.fabrikam.local"', body)
        self.assertNotIn("ontoso", body)
        conn = http.client.HTTPSConnection("127.0.0.1", self.tport, context=ctx, timeout=10)
        conn.request("GET", tok["path"])
        resp = conn.getresponse()
        resp.read()
        self.assertEqual(resp.getheader("Referrer-Policy"), "no-referrer")
        self.assertIn("default-src 'none'", resp.getheader("Content-Security-Policy"))
        conn.close()
        # the full report is not served there
        self.assertEqual(get(f"https://127.0.0.1:{self.tport}/report", ctx)[0], 404)

        # revoked: 403 from the moment tesctl returns, on both listeners
        self.tc.ctl("token", "revoke", tok["id"])
        self.assertEqual(get(url), (403, "403 Forbidden\n"))
        self.assertEqual(get(f"https://127.0.0.1:{self.tport}{tok['path']}", ctx),
                         (403, "403 Forbidden\n"))

    def test_wrong_token(self):
        tok = self.tc.ctl("token", "create", 2)["token"]
        wrong = ("0" if tok[0] != "0" else "1") + tok[1:]
        for t in (wrong, tok.upper(), tok[:-1], "../../report", ""):
            code, body = get(f"{self.base}/report/tenant/{t}")
            self.assertEqual((code, body), (403, "403 Forbidden\n"), t)
        # a person with a wrong link: the browser shows 403 and nothing else
        dom = bh.dump_dom(f"{self.base}/report/tenant/{wrong}")
        self.assertEqual(dom.text().strip(), "403 Forbidden")
        self.assertIsNone(dom.find("table"))
        ctx = ssl.create_default_context(cafile=self.certs.path("server.crt"))
        ctx.check_hostname = False
        self.assertEqual(get(f"https://127.0.0.1:{self.tport}/report/tenant/{wrong}", ctx),
                         (403, "403 Forbidden\n"))


if __name__ == "__main__":
    if len(sys.argv) < 3 or not os.access(sys.argv[1], os.X_OK):
        print("usage: test_report_page.py TESGATE BUILDDIR", file=sys.stderr)
        sys.exit(2)
    ReportPage.binary = os.path.abspath(sys.argv[1])
    ReportPage.builddir = os.path.abspath(sys.argv[2])
    if not bh.CHROMIUM:
        print("SKIP: needs chromium (Debian package chromium)")
        sys.exit(77)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(
        unittest.TestLoader().loadTestsFromTestCase(ReportPage))
    sys.exit(0 if result.wasSuccessful() else 1)
