# SPDX-License-Identifier: BSD-3-Clause
"""libtesetcd with etcd authentication and TLS, against real 3-member
clusters: the right and a wrong password, no user while auth is on, a
permission etcd refuses, an expired token renewed on the fly (for calls and
for a watch), TLS with the right CA, a wrong CA, no CA, plain HTTP to a TLS
port, and client certificates (etcd --client-cert-auth)."""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from etcd_harness import (APP_PASSWORD, APP_USER, ROOT_PASSWORD, EtcdCluster,  # noqa: E402
                          have_etcd)
from etcd_tool import Tool  # noqa: E402


class Auth(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = EtcdCluster(members=3, auth=True).start()

    @classmethod
    def tearDownClass(cls):
        cls.cluster.cleanup()

    def tool(self, **kw):
        t = Tool(self.cluster.endpoints, **kw)
        self.addCleanup(t.close)
        return t

    def test_right_password(self):
        t = self.tool(user=APP_USER, password=APP_PASSWORD)
        revs = [t.ok("put", key=f"/app/a{i}", value=str(i))["revision"] for i in range(5)]
        self.assertEqual(revs, list(range(revs[0], revs[0] + 5)))
        self.assertEqual(t.ok("get", key="/app/a3")["kvs"][0]["value"], "3")
        t.ok("watch", watch="w", key="/app/", prefix=True, start_revision=revs[0])
        u = t.watch_update("w", kinds={"events"})
        self.assertEqual([e["key"] for e in u["events"]], [f"/app/a{i}" for i in range(5)])
        s = t.ok("stats")
        # One token for every call (and the watch took a copy of it).
        self.assertEqual(s["authenticates"], 1)
        self.assertEqual(s["requests"], 1 + 5 + 1)

    def test_wrong_password(self):
        t = self.tool(user=APP_USER, password="not-" + APP_PASSWORD)
        r = t.cmd("put", key="/app/x", value="x")
        self.assertEqual((r["ok"], r["kind"]), (False, "auth"))
        self.assertIn("authenticate user 'app' at http://127.0.0.1:", r["error"])
        self.assertIn("authentication failed, invalid user ID or password", r["error"])
        self.assertEqual(t.ok("stats")["authenticates"], 0)
        t.ok("watch", watch="w", key="/app/", prefix=True)
        u = t.watch_update("w")
        self.assertEqual(u["kind"], "failed")
        self.assertIn("authentication failed", u["message"])

    def test_no_user_while_auth_is_on(self):
        t = self.tool()
        r = t.cmd("get", key="/app/x")
        self.assertEqual(r["kind"], "auth")
        self.assertIn("user name is empty", r["error"])
        self.assertIn("configure a username and password", r["error"])
        t.ok("watch", watch="w", key="/app/", prefix=True)
        u = t.watch_update("w", kinds={"failed"})
        self.assertIn("user name is empty", u["message"])

    def test_permission_denied(self):
        t = self.tool(user=APP_USER, password=APP_PASSWORD)
        r = t.cmd("put", key="/other/x", value="x")
        self.assertEqual((r["kind"], r["code"]), ("refused", 7))
        self.assertIn("put key '/other/x' at http://127.0.0.1:", r["error"])
        self.assertIn("etcdserver: permission denied", r["error"])
        t.ok("watch", watch="w", key="/other/", prefix=True)
        u = t.watch_update("w", kinds={"failed"})
        self.assertIn("permission denied", u["message"])
        # root may.
        root = self.tool(user="root", password=ROOT_PASSWORD)
        root.ok("put", key="/other/x", value="x")


class TokenExpiry(unittest.TestCase):
    """etcd's simple tokens expire after --auth-token-ttl seconds unused."""

    def setUp(self):
        self.cluster = EtcdCluster(members=3, auth=True, auth_token_ttl=1).start()
        self.addCleanup(self.cluster.cleanup)

    def deleted_tokens(self):
        log = self.cluster.log_text(0)
        return sum(1 for line in log.splitlines()
                   if "deleted a simple token" in line and f'"user-name":"{APP_USER}"' in line)

    def wait_expired(self, before):
        """Until member 0 (the one the tool talks to) says it dropped one
        more of app's tokens."""
        deadline = time.monotonic() + 60
        while self.deleted_tokens() <= before:
            self.assertLess(time.monotonic(), deadline, "no token expired")
            time.sleep(0.1)

    def test_expired_token_is_renewed(self):
        t = Tool(self.cluster.endpoints, user=APP_USER, password=APP_PASSWORD)
        self.addCleanup(t.close)
        before = self.deleted_tokens()
        t.ok("put", key="/app/k", value="1")
        self.assertEqual(t.ok("stats")["authenticates"], 1)
        self.wait_expired(before)
        # The call meets "invalid auth token", authenticates once more and
        # goes through.
        self.assertEqual(t.ok("get", key="/app/k")["kvs"][0]["value"], "1")
        s = t.ok("stats")
        self.assertEqual((s["authenticates"], s["requests"]), (2, 5))
        # A watch made with a stale token does the same on its own.
        before = self.deleted_tokens()
        self.wait_expired(before)
        t.ok("watch", watch="w", key="/app/", prefix=True)
        u = t.watch_update("w")
        self.assertEqual(u["kind"], "disconnected")
        self.assertIn("invalid auth token", u["message"])
        self.assertEqual(t.watch_update("w")["kind"], "created")
        r = t.ok("put", key="/app/k", value="2")
        u = t.watch_update("w", kinds={"events"})
        self.assertEqual([(e["value"], e["mod_revision"]) for e in u["events"]],
                         [("2", r["revision"])])


class Tls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = EtcdCluster(members=3, tls=True).start()

    @classmethod
    def tearDownClass(cls):
        cls.cluster.cleanup()

    def tool(self, endpoints=None, **kw):
        t = Tool(endpoints or self.cluster.endpoints, **kw)
        self.addCleanup(t.close)
        return t

    def test_right_ca(self):
        c = self.cluster
        self.assertTrue(all(e.startswith("https://") for e in c.endpoints))
        t = self.tool(cacert=c.ca)
        r = t.ok("put", key="/tls/a", value="secret")
        self.assertEqual(t.ok("get", key="/tls/a")["kvs"][0]["value"], "secret")
        t.ok("watch", watch="w", key="/tls/", prefix=True, start_revision=r["revision"])
        u = t.watch_update("w", kinds={"events"})
        self.assertEqual(u["events"][0]["value"], "secret")
        # The host name is checked too: localhost is in the certificate.
        port = c.members[1].client_port
        t2 = self.tool([f"https://localhost:{port}"], cacert=c.ca)
        self.assertEqual(t2.ok("get", key="/tls/a")["kvs"][0]["value"], "secret")

    def test_wrong_ca_refused(self):
        c = self.cluster
        for kw in ({"cacert": c.wrong_ca}, {}):
            t = self.tool(**kw)
            for cmd in ("get", "put"):
                r = t.cmd(cmd, key="/tls/b", value="x")
                self.assertEqual(r["kind"], "unavailable", r)
                self.assertIn("no endpoint answered (3 tried)", r["error"])
                self.assertIn("SSL certificate problem", r["error"])
                for e in c.endpoints:
                    self.assertIn(e, r["error"])
            t.ok("watch", watch="w", key="/tls/", prefix=True)
            u = t.watch_update("w")
            self.assertEqual(u["kind"], "disconnected")
            self.assertIn("SSL certificate problem", u["message"])
        # Nothing was written by the refused puts.
        ok = self.tool(cacert=c.ca)
        self.assertEqual(ok.ok("get", key="/tls/b")["kvs"], [])
        # Verification off (tests only) connects whatever the CA.
        t = self.tool(cacert=c.wrong_ca, insecure=True)
        self.assertEqual(t.ok("get", key="/tls/b")["kvs"], [])

    def test_plain_http_to_a_tls_port(self):
        c = self.cluster
        t = self.tool([e.replace("https://", "http://") for e in c.endpoints])
        r = t.cmd("get", key="/tls/a")
        # etcd 3.4 closes the connection without a word.
        self.assertEqual(r["kind"], "unavailable")
        self.assertIn("no endpoint answered (3 tried)", r["error"])
        self.assertIn(f"{t.ready['ready']}: Empty reply from server", r["error"])


class ClientCertificates(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = EtcdCluster(members=3, tls=True, client_cert_auth=True).start()

    @classmethod
    def tearDownClass(cls):
        cls.cluster.cleanup()

    def test_client_certificate(self):
        c = self.cluster
        t = Tool(c.endpoints, cacert=c.ca, cert=c.client_cert, key=c.client_key)
        self.addCleanup(t.close)
        t.ok("put", key="/mtls/a", value="1")
        self.assertEqual(t.ok("get", key="/mtls/a")["kvs"][0]["value"], "1")
        without = Tool(c.endpoints, cacert=c.ca)
        self.addCleanup(without.close)
        r = without.cmd("get", key="/mtls/a")
        self.assertEqual(r["kind"], "unavailable")
        self.assertIn("no endpoint answered (3 tried)", r["error"])
        self.assertIn("alert bad certificate", r["error"])


if __name__ == "__main__":
    if not have_etcd():
        print("SKIP: etcd or etcdctl not installed (tools/setup.sh installs etcd-server, "
              "etcd-client)")
        sys.exit(77)
    unittest.main(verbosity=2)
