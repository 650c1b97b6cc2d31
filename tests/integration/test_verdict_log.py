# SPDX-License-Identifier: BSD-3-Clause
"""tesgate's per-verdict log (verdict_log), kernel sockets, with tescontrol.

A real tescontrol (test clock) and a real tesgate following it; smtplib
plays an out-of-date Exchange 2016 server.  Throttled at MAIL FROM (a known
source), throttled at the end of the headers (the same server from a new
address: server and build known), blocked at day 91: each refusal must be
one JSON line with the verdict's fields, the line count must equal the
gateway's refused verdicts and its tes_verdict_log_lines_total, nothing is
dropped, and a rename + SIGHUP moves the next lines to a new file.  A second
gateway writes its lines to standard output (verdict_log = stdout).

Usage: test_verdict_log.py TESGATE  (TESCONTROL, TESCTL, TES_SRCDIR in env)
"""
import json
import os
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ctl_harness as ch  # noqa: E402
from gateway_harness import Gateway, run  # noqa: E402
from prom_harness import http_get, parse_metrics  # noqa: E402

DAY = ch.DAY
MIN = 60
T0 = ch.T0
TENANT = 1
SERVER = "ex16-02.contoso.local"
BUILD = "15.1.2507.35"
PROPAGATION = 10.0


def fixture():
    with open(os.path.join(ch.SRCDIR, "tests", "data", "headers", "ex2016-tls.hdr"), "rb") as f:
        return f.read() + b"Body of a simulated Exchange message.\r\n"


def read_lines(path):
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        data = f.read()
    if data and not data.endswith(b"\n"):
        raise AssertionError(f"{path} ends in a partial line")
    return [json.loads(ln) for ln in data.decode().splitlines()]


class VerdictLog(unittest.TestCase):
    binary = None

    def setUp(self):
        os.environ["TES_ALLOW_TEST_CLOCK"] = "1"
        self.tmp = tempfile.mkdtemp(prefix="tesgate-vl-")
        # No probe at the full block: the first stage-8 message would be read
        # to its headers (a probe; tests/integration/test_probe.py), and
        # these tests count the MAIL FROM refusals' lines.
        policy = os.path.join(self.tmp, "policy.conf")
        with open(policy, "w") as f:
            f.write("[enforcement]\nprobe_interval = 0\n")
        self.tc = ch.Tescontrol(test_clock=T0, conf={"metrics_listen": "",
                                                     "policy_file": policy}).start()
        self.gws = []
        self.tc.ctl("tenant", "add", TENANT, "Contoso", "--connector", "127.0.0.0/8")

    def tearDown(self):
        try:
            for g in self.gws:
                rc = g.stop()
                log = g.log_text()
                for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                            "runtime error:"):
                    self.assertNotIn(bad, log, log[-5000:])
                self.assertEqual(rc, 0, log[-5000:])
        finally:
            for g in self.gws:
                g.close()
            self.tc.cleanup()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def gateway(self, **conf):
        settings = {
            "control_socket": self.tc.gw_sock,
            "follow_test_clock": "yes",
            "gateway_id": f"gw-vl-{len(self.gws)}",
            "metrics_listen": "127.0.0.1:0",
        }
        settings.update(conf)
        g = Gateway(self.binary, conf=settings)
        self.gws.append(g)
        self.wait_for(lambda: "control: synchronised" in g.log_text(), "synchronised")
        return g

    def wait_for(self, pred, what, timeout=PROPAGATION):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.05)
        self.fail(f"timed out waiting for {what}")

    def send(self, g, source):
        """(code, text): 250 when taken."""
        try:
            with smtplib.SMTP("127.0.0.1", g.port, timeout=15,
                              source_address=(source, 0)) as s:
                s.ehlo(SERVER)
                s.sendmail("grace.okafor@contoso.com", ["ian.hughes@example.net"], fixture())
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as e:
            return e.smtp_code, e.smtp_error.decode()
        return 250, ""

    def expect(self, g, source, code):
        """Once the gateway has applied everything tescontrol said (its state
        generation), the first answer has this code: one message, one
        verdict line."""
        g.wait_generation(self.tc.generation())
        self.assertEqual(self.send(g, source)[0], code, f"from {source}")

    def test_lines_counts_rotation(self):
        path = os.path.join(self.tmp, "verdicts.log")
        g = self.gateway(verdict_log=path)

        self.tc.set_clock(T0)
        self.assertEqual(self.send(g, "127.0.0.1")[0], 250)
        self.wait_for(lambda: self.tc.server(TENANT, SERVER) is not None, "first detection")
        self.assertEqual(read_lines(path), [], "an accepted message made a verdict line")

        hour30 = T0 + 30 * DAY + 3600  # stage 2, minute 0: throttled
        self.tc.set_clock(hour30)
        self.expect(g, "127.0.0.1", 450)  # a known source: at MAIL FROM
        self.expect(g, "127.0.0.3", 450)  # a new source: at the end of the headers
        self.tc.set_clock(T0 + 91 * DAY + 30 * MIN)  # stage 8: blocked
        self.expect(g, "127.0.0.1", 550)

        def metrics():
            return parse_metrics(http_get(g.metrics_url())[2])

        def refused(m):
            return sum(v for k, v in m.items() if k.startswith("tes_enforcement_verdicts_total{")
                       and 'action="accept"' not in k)

        # every refused verdict is one line, written shortly after
        self.wait_for(lambda: len(read_lines(path)) == refused(metrics()) > 0, "the lines")
        lines = read_lines(path)
        m = metrics()
        self.assertEqual(m["tes_verdict_log_lines_total"], len(lines))
        self.assertEqual(m["tes_verdict_log_dropped_total"], 0)
        self.assertEqual(m["tes_verdict_log_write_errors_total"], 0)
        for ln in lines:
            self.assertEqual(ln["event"], "verdict")
            self.assertEqual(ln["tenant"], TENANT)
            self.assertIn(ln["at"], ("mail", "headers"))
            self.assertEqual(ln["time"], time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                       time.gmtime(ln["epoch"])))
        for at in ("mail", "headers"):
            n = sum(1 for ln in lines if ln["at"] == at)
            want = sum(v for k, v in m.items()
                       if k.startswith(f'tes_enforcement_verdicts_total{{at="{at}"')
                       and 'action="accept"' not in k)
            self.assertEqual(n, want, f"lines at {at}")

        mail_throttle = [ln for ln in lines if ln["at"] == "mail" and ln["action"] == "throttle"
                         and ln["stage"] == 2]
        self.assertTrue(mail_throttle, lines)
        self.assertEqual({k: mail_throttle[0][k] for k in ("code", "enhanced", "source")},
                         {"code": 450, "enhanced": "4.7.230", "source": "127.0.0.1"})
        self.assertEqual(mail_throttle[0]["epoch"], hour30)

        hdr = [ln for ln in lines if ln["at"] == "headers"]
        self.assertEqual(len(hdr), 1, lines)
        self.assertEqual({k: hdr[0][k] for k in ("action", "stage", "code", "source", "server",
                                                 "build", "family")},
                         {"action": "throttle", "stage": 2, "code": 450, "source": "127.0.0.3",
                          "server": SERVER, "build": BUILD, "family": "2016"})

        block = [ln for ln in lines if ln["action"] == "block"]
        self.assertEqual(len(block), 1, lines)
        self.assertEqual({k: block[0][k] for k in ("at", "stage", "code", "enhanced", "source")},
                         {"at": "mail", "stage": 8, "code": 550, "enhanced": "5.7.230",
                          "source": "127.0.0.1"})

        # rotation: rename, SIGHUP, the next line goes to a new file
        os.rename(path, path + ".1")
        g.signal(signal.SIGHUP)
        self.wait_for(lambda: "verdict_log " + path + " reopened" in g.log_text(), "the reopen")
        self.assertEqual(self.send(g, "127.0.0.1")[0], 550)
        self.wait_for(lambda: len(read_lines(path)) == 1, "a line in the new file")
        self.assertEqual(read_lines(path)[0]["action"], "block")
        self.assertEqual(len(read_lines(path + ".1")), len(lines), "the old file changed")
        self.assertEqual(metrics()["tes_verdict_log_lines_total"], len(lines) + 1)
        if shutil.which("promtool"):
            r = subprocess.run(["promtool", "check", "metrics"],
                               input=http_get(g.metrics_url())[2],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""))

    def test_stdout(self):
        self.tc.set_clock(T0)
        g = self.gateway(verdict_log="stdout")
        self.assertEqual(self.send(g, "127.0.0.1")[0], 250)
        self.wait_for(lambda: self.tc.server(TENANT, SERVER) is not None, "first detection")
        self.tc.set_clock(T0 + 91 * DAY + 30 * MIN)
        self.expect(g, "127.0.0.1", 550)

        def json_lines():
            return [json.loads(ln) for ln in g.log_text().splitlines() if ln.startswith("{")]

        self.wait_for(lambda: any(ln["action"] == "block" for ln in json_lines()), "the line")
        block = [ln for ln in json_lines() if ln["action"] == "block"][0]
        self.assertEqual((block["at"], block["stage"], block["source"]), ("mail", 8, "127.0.0.1"))

    def test_bad_setting(self):
        """A relative path is a configuration error; tesgate does not start."""
        conf = os.path.join(self.tmp, "bad.conf")
        with open(conf, "w") as f:
            f.write("control_socket =\nverdict_log = relative.log\n")
        r = subprocess.run([self.binary, "-c", conf, "--check-config"], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn("verdict_log must be an absolute path, stdout or empty", r.stderr)


if __name__ == "__main__":
    sys.exit(run(sys.argv, [VerdictLog]))
