# SPDX-License-Identifier: BSD-3-Clause
"""tescontrol with store = etcd against an etcd cluster that speaks TLS only
and has authentication on (user "app", read-write on /app/ only): the
settings etcd_ca_file, etcd_username, etcd_password_file.

- right CA, certificate, user and password: it starts, a first detection is
  in etcd under the prefix, `tesctl status` says connected;
- a wrong password, a CA that did not sign etcd's certificate, a prefix
  the user may not write: it refuses to start with the reason, and nothing
  is written.

Usage: test_fleet_security.py TESGATE  (TESCONTROL, TESCTL, TES_SRCDIR in env)
"""
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fleet_harness as fh  # noqa: E402
from fleet_harness import OLD, T0, ch  # noqa: E402
from etcd_harness import APP_PASSWORD, APP_USER, EtcdCluster  # noqa: E402


class Security(unittest.TestCase):
    tesgate = None

    @classmethod
    def setUpClass(cls):
        # No --client-cert-auth: with authentication on, etcd 3.4's JSON
        # gateway refuses a client certificate that carries a CommonName
        # ("CommonName of client sending a request against gateway will be
        # ignored"); client certificates are etcd_security's (the client's).
        cls.cluster = EtcdCluster(members=3, tls=True, auth=True).start()

    @classmethod
    def tearDownClass(cls):
        cls.cluster.cleanup()

    def conf(self, tc_dir, prefix="/app/fleet", password=APP_PASSWORD, ca=None):
        c = self.cluster
        pw = os.path.join(tc_dir, "etcd-password")
        with open(pw, "w") as f:
            f.write(password + "\n")
        os.chmod(pw, 0o600)
        conf = {"store": "etcd", "etcd_endpoints": ",".join(c.endpoints), "etcd_prefix": prefix,
                "appliance": "A", "etcd_ca_file": ca or c.ca, "etcd_username": APP_USER,
                "etcd_password_file": pw, "etcd_timeout_ms": "2000",
                "etcd_connect_timeout_ms": "1000"}
        return conf

    def tescontrol(self, **kw):
        # the password file lives in the tescontrol's own directory (removed
        # with it by cleanup)
        d = tempfile.mkdtemp(prefix="tc-", dir="/tmp")
        return ch.Tescontrol(test_clock=T0, conf=self.conf(d, **kw), keep_dir=d)

    def refused_start(self, **kw):
        tc = self.tescontrol(**kw)
        try:
            tc.start(wait_ready=False)
            rc = tc.proc.wait(timeout=60)
            log = tc.log_text()
            self.assertEqual(rc, 1, log)
            self.assertNotIn("info: ready:", log)
            return log
        finally:
            tc.cleanup()

    def keys(self, prefix):
        return self.cluster.etcdctl("get", "--prefix", "--keys-only", prefix).split()

    def test_tls_and_password(self):
        tc = self.tescontrol()
        try:
            tc.start()
            tc.ctl("tenant", "add", 1, "Contoso", "--connector", "127.0.0.0/24")
            gw = ch.FakeGateway(tc.gw_sock)
            try:
                a = gw.sighting(1, "tls.contoso.local", OLD, source="127.0.0.5")
                self.assertEqual(a.get("change"), "first", a)
            finally:
                gw.close()
            self.assertIn("/app/fleet/v1/servers/1/tls.contoso.local", self.keys("/app/fleet/"))
            text = tc.ctl("status", json_out=False)
            self.assertIn("connected to etcd at https://127.0.0.1:", text)
            tc.stop()
        finally:
            tc.cleanup()

    def test_wrong_password(self):
        log = self.refused_start(prefix="/app/wrongpw", password="not-the-password")
        self.assertIn("authentication failed", log)
        self.assertEqual(self.keys("/app/wrongpw"), [])

    def test_wrong_ca(self):
        log = self.refused_start(prefix="/app/wrongca", ca=self.cluster.wrong_ca)
        self.assertIn("certificate", log)
        self.assertEqual(self.keys("/app/wrongca"), [])

    def test_prefix_not_permitted(self):
        log = self.refused_start(prefix="/other/fleet")
        self.assertIn("permission denied", log)
        self.assertIn("/other/fleet/layout", log)
        self.assertEqual(self.keys("/other/"), [])


if __name__ == "__main__":
    sys.exit(fh.run(sys.argv, [Security]))
