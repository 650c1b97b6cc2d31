#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""tesgate on kernel sockets against swaks, a real SMTP client.

swaks (20201014, Debian 12) has no BDAT; BDAT is covered by test_gateway.py.
Skipped, with a message, when swaks is not installed.

usage: test_swaks.py PATH-TO-TESGATE
"""
import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_harness import Gateway, run  # noqa: E402

HDR_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "headers")
SWAKS = shutil.which("swaks")


@unittest.skipIf(SWAKS is None, "swaks is not installed (apt-get install swaks)")
class Swaks(unittest.TestCase):
    binary = None

    def setUp(self):
        self.gw = Gateway(self.binary)

    def tearDown(self):
        try:
            self.assertEqual(self.gw.stop(), 0)
        finally:
            self.gw.close()

    def swaks(self, *args):
        p = subprocess.run([SWAKS, "--server", "127.0.0.1", "--port", str(self.gw.port),
                            "--timeout", "15", *args],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        return p.stdout

    def test_plain_exchange_2016(self):
        path = os.path.join(HDR_DIR, "ex2016-tls.hdr")
        out = self.swaks("--from", "grace.okafor@contoso.com", "--to", "ian.hughes@example.net",
                         "--helo", "EX16-02.contoso.local", "--data", "@" + path)
        self.assertRegex(out, r"<-  250 2\.0\.0 Ok: queued as \S+")
        self.assertTrue(self.gw.wait_for(lambda: len(self.gw.messages()) == 1))
        [(_, eml, env)] = self.gw.messages()
        with open(path, "rb") as f:
            sent = f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        self.assertEqual(eml.rstrip(b"\r\n"), sent.rstrip(b"\r\n"))
        self.assertEqual(env["helo"], ["EX16-02.contoso.local"])
        self.assertRegex(self.gw.log_text(),
                         r"detect .*server=ex16-02\.contoso\.local build=15\.1\.2507\.35 "
                         r"family=2016 .*compliant=no")

    def test_pipelining_two_recipients(self):
        out = self.swaks("--pipeline", "--from", "a@example.com",
                         "--to", "b@example.net,c@example.net",
                         "--header", "Subject: swaks pipelining")
        self.assertIn("PIPELINING", out)
        self.assertTrue(self.gw.wait_for(lambda: len(self.gw.messages()) == 1))
        [(_, eml, env)] = self.gw.messages()
        self.assertEqual(env["rcpt"], ["<b@example.net>", "<c@example.net>"])
        self.assertIn(b"Subject: swaks pipelining\r\n", eml)


if __name__ == "__main__":
    sys.exit(run(sys.argv, [Swaks]))
