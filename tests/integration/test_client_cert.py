# SPDX-License-Identifier: BSD-3-Clause
"""TLS client-certificate connectors on the kernel-socket path, observed
through enforcement.

tescontrol (test clock) knows tenant 1 with a certificate-only connector
(0.0.0.0/0 and ::/0, name mx.bear.example); tesgate verifies client
certificates against ca.crt (tls_client_ca).  An Exchange 2016 server sends
over that connector with its certificate: first detection at day 0; at day
91 it is fully blocked.  Then, from the same address, only the certificate
that verifies is enforced (550 5.7.230 at MAIL FROM):

- swaks and openssl s_client with the good certificate: refused;
- a certificate with the same names from another CA, an expired one, a
  verified one with another name, no certificate, no TLS at all: an
  ordinary sender, accepted.

Certificates are made with the openssl command line (certs_harness.py).
Usage: test_client_cert.py TESGATE  (TESCONTROL, TESCTL, TES_SRCDIR in env)
Exit 77 when swaks or openssl is missing.
"""
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ctl_harness as ch  # noqa: E402
from certs_harness import OPENSSL, SWAKS, Certs, SClient, swaks  # noqa: E402

TESGATE = None
DAY = ch.DAY
T0 = ch.T0
SERVER = "ex16-02.contoso.local"
BLOCK = "550 5.7.230"
PROPAGATION = 10.0


class ClientCertConnector(unittest.TestCase):
    def setUp(self):
        from gateway_harness import Gateway
        self.certs = Certs()
        self.addCleanup(self.certs.cleanup)
        os.environ["TES_ALLOW_TEST_CLOCK"] = "1"
        self.tc = ch.Tescontrol(test_clock=T0)
        self.addCleanup(self.tc.cleanup)
        self.tc.start()
        self.tc.ctl("tenant", "add", 1, "Bear", "--connector", "0.0.0.0/0,mx.bear.example",
                    "--connector", "::/0,mx.bear.example")
        self.gw = Gateway(TESGATE, conf={
            "control_socket": self.tc.gw_sock,
            "follow_test_clock": "yes",
            "gateway_id": "gw-cert",
            "metrics_listen": "127.0.0.1:0",
            "tls_cert": self.certs.path("server.crt"),
            "tls_key": self.certs.path("server.key"),
            "tls_client_ca": self.certs.path("ca.crt"),
        })
        self.addCleanup(self.stop_gateway)
        self.wait_log(r"control: synchronised")
        self.msg = self.certs.path("msg.eml")
        with open(os.path.join(ch.SRCDIR, "tests", "data", "headers", "ex2016-tls.hdr"),
                  "rb") as f:
            with open(self.msg, "wb") as out:
                out.write(f.read() + b"Body of a simulated Exchange message.\r\n")

    def stop_gateway(self):
        sys.stderr.write("---- tesgate log ----\n" + self.gw.log_text()[-8000:])
        try:
            rc = self.gw.stop()
            log = self.gw.log_text()
            for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
                self.assertNotIn(bad, log)
            self.assertEqual(rc, 0, log[-5000:])
        finally:
            self.gw.close()

    def wait_log(self, pattern, count=1):
        deadline = time.monotonic() + PROPAGATION
        while time.monotonic() < deadline:
            if len(re.findall(pattern, self.gw.log_text())) >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"tesgate did not log {pattern!r}:\n{self.gw.log_text()[-5000:]}")

    def spooled(self):
        return len(self.gw.messages())

    def send(self, cert=None, tls=True):
        """swaks; ('250', spooled +1) or ('550 5.7.230', nothing spooled)."""
        before = self.spooled()
        rc, out = swaks(self.gw.port, self.msg, self.certs.pair(cert) if cert else None,
                        tls=tls)
        if BLOCK in out:
            self.assertEqual(self.spooled(), before, "refused, yet spooled")
            return BLOCK
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r"<[-~]  250 2\.0\.0 Ok: queued as \S+")
        self.assertTrue(self.gw.wait_for(lambda: self.spooled() == before + 1))
        return "250"

    def expect(self, want, what, **kw):
        """Once the gateway has applied everything tescontrol has said (its
        state generation), the first answer must be want."""
        self.gw.wait_generation(self.tc.generation())
        self.assertEqual(self.send(**kw), want, what)

    def sclient(self, cert):
        """openssl s_client: a whole message; BLOCK when refused with it (at
        MAIL FROM or at the end of data), '250' when spooled."""
        before = self.spooled()
        c = SClient("127.0.0.1", self.gw.port, self.certs.pair(cert) if cert else None)
        try:
            r = c.transaction(self.msg)
        finally:
            c.close()
        if r.startswith(BLOCK):
            self.assertEqual(self.spooled(), before, "refused, yet spooled")
            return BLOCK
        self.assertRegex(r, r"^250 2\.0\.0 Ok: queued as \S+")
        self.assertTrue(self.gw.wait_for(lambda: self.spooled() == before + 1))
        return "250"

    def test_only_the_verified_certificate_is_enforced(self):
        tc = self.tc
        # Day 0: the server sends over its certificate connector.
        self.assertEqual(self.send(cert="good"), "250")
        self.wait_log(r"client certificate verified: tenant=1")
        deadline = time.monotonic() + PROPAGATION
        while tc.server(1, SERVER) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        s = tc.server(1, SERVER)
        self.assertIsNotNone(s, "not detected over the certificate connector")
        self.assertEqual((s["status"], s["first_detected_unix"]), ("Reporting", T0))

        # Day 91: fully blocked; with its certificate, refused at MAIL FROM.
        tc.set_clock(T0 + 91 * DAY + 30 * 60)
        self.assertEqual(tc.server(1, SERVER)["status"], "Blocking")
        self.expect(BLOCK, "swaks, the verified certificate", cert="good")
        self.assertEqual(self.sclient("good"), BLOCK)

        # The same address without that verified certificate: not over the
        # connector, so not enforced.
        for cert, why in (("wrong", "unable to get local issuer certificate"),
                          ("expired", "certificate has expired")):
            self.assertEqual(self.send(cert=cert), "250", cert)
            self.wait_log(r"client certificate not verified: " + re.escape(why))
            self.assertEqual(self.sclient(cert), "250", cert)
        self.assertEqual(self.send(cert="owl"), "250", "verified, another name")
        self.assertEqual(self.sclient("owl"), "250")
        self.assertEqual(self.send(), "250", "TLS, no certificate")
        self.assertEqual(self.sclient(None), "250")
        self.assertEqual(self.send(tls=False), "250", "no TLS")
        # And the verified one is still refused after all that (at MAIL
        # FROM, or at the end of data where the source also carried the
        # unverified sessions' mail).
        self.assertEqual(self.send(cert="good"), BLOCK)
        self.assertEqual(self.sclient("good"), BLOCK)
        # Nothing from the unverified sessions reached tenant 1's record.
        s = tc.server(1, SERVER)
        self.assertEqual((s["status"], s["first_detected_unix"]), ("Blocking", T0))


if __name__ == "__main__":
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        TESGATE = sys.argv.pop(1)
    if TESGATE is None or SWAKS is None or OPENSSL is None:
        print("SKIP: needs TESGATE, swaks and openssl")
        sys.exit(77)
    unittest.main(verbosity=2)
