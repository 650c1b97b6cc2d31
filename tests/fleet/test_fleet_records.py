#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""With store = etcd, what tescontrol keeps beside the enforcement state
(report tokens, notice contacts and journal, refused counts, the stage
history: store.h's records) is each appliance's own, in its local database
(docs/fleet.md, "What is not shared"):

- tescontrol starts with the report page and notices on, and a tenant's
  token made on A opens that tenant's page on A, with the fleet's servers
  in it, also after A's tescontrol is restarted;
- the same token on B answers 403 and no data: tokens are not shared;
- notice contacts set on A are A's alone (B shows none).

Usage: test_fleet_records.py TESGATE  (TESCONTROL, TESCTL, TES_SRCDIR in env)
"""
import os
import sys
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fleet_harness as fh  # noqa: E402
from fleet_harness import OK, ch  # noqa: E402


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Records(unittest.TestCase):
    tesgate = None

    def setUp(self):
        self.fleet = fh.Fleet(self.tesgate, names=("A", "B"))
        try:
            self.fleet.start()
        except Exception:
            self.fleet.cleanup()
            raise
        self.A, self.B = self.fleet["A"], self.fleet["B"]

    def tearDown(self):
        try:
            for a in (self.A, self.B):
                a.stop()
        finally:
            self.fleet.cleanup()

    def page(self, a, token):
        return get(f"http://127.0.0.1:{a.metrics_port}/report/tenant/{token}")

    def test_tokens_and_contacts_are_the_appliances_own(self):
        # a server detected through B: the fleet's state, seen on A's page
        self.assertEqual(self.B.send("rec.contoso.local"), OK)
        self.fleet.wait_server("rec.contoso.local", apps=[self.A])
        tok = self.A.ctl("token", "create", 1)["token"]
        code, body = self.page(self.A, tok)
        self.assertEqual(code, 200, body[:2000])
        self.assertIn("rec.contoso.local", body)
        code, body = self.page(self.B, tok)
        self.assertEqual(code, 403, body[:2000])
        self.assertNotIn("rec.contoso.local", body)

        secret = os.path.join(self.A.tc.dir, "hook.secret")
        with open(secret, "w") as f:
            f.write("s3cret-for-the-test\n")
        self.A.ctl("notice", "set", 1, "--webhook", "http://127.0.0.1:9/hook",
                   "--secret-file", secret)
        self.assertTrue(self.A.ctl("notice", "show", 1).get("webhook"))
        with self.assertRaises(ch.CtlError) as cm:
            self.B.ctl("notice", "show", 1)
        self.assertIn("tenant 1 has no notice contacts", cm.exception.stderr)

        # kept across a restart of A's tescontrol (its local database)
        self.A.stop()
        self.A.start()
        code, body = self.page(self.A, tok)
        self.assertEqual(code, 200, body[:2000])
        self.assertIn("rec.contoso.local", body)
        self.assertTrue(self.A.ctl("notice", "show", 1).get("webhook"))


if __name__ == "__main__":
    sys.exit(fh.run(sys.argv, [Records]))
