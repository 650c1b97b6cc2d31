# SPDX-License-Identifier: BSD-3-Clause
"""libtesetcd when the endpoints are not a healthy etcd: nothing listening,
a member that accepts connections and never answers (a loopback relay made
into a black hole), and HTTP servers that are not etcd (garbage, 404, JSON
of another kind).  Every error names the call, the key and the endpoints;
reads move on to the next endpoint, writes only when they certainly were not
applied; nothing hangs (each wait here is bounded)."""
import base64
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from etcd_harness import (EtcdCluster, NotEtcd, ScriptedEtcd, TcpProxy,  # noqa: E402
                          free_ports, have_etcd)
from etcd_tool import Tool  # noqa: E402


class Unreachable(unittest.TestCase):
    def test_nothing_listens(self):
        eps = [f"http://127.0.0.1:{p}" for p in free_ports(2)]
        t = Tool(eps, timeout_ms=1000)
        self.addCleanup(t.close)
        for cmd in ("get", "put", "create", "delete"):
            r = t.cmd(cmd, key="/u/k", value="v")
            self.assertEqual((r["ok"], r["kind"]), (False, "unavailable"), r)
            self.assertIn("no endpoint answered (2 tried)", r["error"])
            self.assertIn(f"{eps[0]}: Failed to connect", r["error"])
            self.assertIn(f"{eps[1]}: Failed to connect", r["error"])
        r = t.cmd("lease_grant", ttl=10)
        self.assertIn("etcd lease grant (TTL 10 s): no endpoint answered", r["error"])
        s = t.ok("stats")
        self.assertEqual((s["requests"], s["failovers"]), (10, 5))
        # A watch keeps trying, endpoint after endpoint, and says so.
        t.ok("watch", watch="w", key="/u/", prefix=True)
        seen = [t.watch_update("w") for _ in range(4)]
        self.assertEqual([u["kind"] for u in seen], ["disconnected"] * 4)
        self.assertEqual([u["endpoint"] for u in seen], eps + eps)
        self.assertIn("Failed to connect", seen[0]["message"])
        self.assertGreaterEqual(t.ok("watch_info", watch="w")["reconnects"], 4)


class Misbehaving(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = EtcdCluster(members=3).start()

    @classmethod
    def tearDownClass(cls):
        cls.cluster.cleanup()

    def server(self, **kw):
        s = NotEtcd(**kw)
        self.addCleanup(s.close)
        return s

    def tool(self, eps, **kw):
        t = Tool(eps, **kw)
        self.addCleanup(t.close)
        return t

    def test_garbage_answers(self):
        real = self.cluster.endpoints[0]
        g = self.server()
        t = self.tool([g.url])
        r = t.cmd("get", key="/ne/k")
        self.assertEqual(r["kind"], "unavailable")
        self.assertIn(f"get key '/ne/k': no endpoint answered (1 tried): {g.url}: "
                      "not an etcd answer (HTTP 200, 'hello, this is not etcd\\x0a')", r["error"])
        # A read moves on to the next endpoint.
        t = self.tool([g.url, real])
        self.assertEqual(t.ok("get", key="/ne/k")["kvs"], [])
        self.assertEqual(t.ok("stats")["failovers"], 1)
        # A write does not: garbage after the request was sent leaves its
        # outcome unknown.  The next call starts on the next endpoint.
        t = self.tool([g.url, real])
        r = t.cmd("put", key="/ne/k", value="v1")
        self.assertEqual(r["kind"], "unknown-outcome")
        self.assertIn(f"put key '/ne/k' at {g.url}: not an etcd answer", r["error"])
        self.assertIn("may or may not have been applied", r["error"])
        self.assertEqual(t.ok("stats")["endpoint"], real)
        self.assertTrue(t.ok("put", key="/ne/k", value="v2")["ok"])
        # JSON that is not etcd's is no better.
        j = self.server(body=b'{"status":"ok"}', content_type="application/json")
        r = self.tool([j.url]).cmd("get", key="/ne/k")
        self.assertIn("JSON without a header", r["error"])
        # A watch on it reports what it met, and tries again.
        w = self.tool([g.url])
        w.ok("watch", watch="w", key="/ne/", prefix=True)
        u = w.watch_update("w")
        self.assertEqual((u["kind"], u["endpoint"]), ("disconnected", g.url))
        self.assertIn("not an etcd watch stream", u["message"])
        self.assertEqual(w.watch_update("w")["kind"], "disconnected")

    def test_not_found_is_safe_for_writes(self):
        real = self.cluster.endpoints[1]
        nf = self.server(status=404, body=b"404 page not found\n")
        t = self.tool([nf.url, real])
        r = t.ok("put", key="/nf/k", value="v")
        self.assertEqual(t.ok("get", key="/nf/k")["kvs"][0]["mod_revision"], r["revision"])
        s = t.ok("stats")
        self.assertEqual((s["failovers"], s["endpoint"]), (1, real))
        r = self.tool([nf.url]).cmd("create", key="/nf/k2", value="v")
        self.assertEqual(r["kind"], "unavailable")
        self.assertIn("not an etcd answer (HTTP 404, '404 page not found\\x0a')", r["error"])

    def test_member_that_never_answers(self):
        real = self.cluster.endpoints[2]
        bh = TcpProxy(self.cluster.members[2].client_port)
        self.addCleanup(bh.close)
        bh.blackhole()
        t = self.tool([bh.url, real], timeout_ms=500)
        # A read waits its timeout there, then the next member answers.
        self.assertEqual(t.ok("get", key="/bh/k")["kvs"], [])
        self.assertEqual(t.ok("stats")["failovers"], 1)
        # A write sent there has an unknown outcome; the next goes on.
        t = self.tool([bh.url, real], timeout_ms=500)
        r = t.cmd("put", key="/bh/k", value="v")
        self.assertEqual(r["kind"], "unknown-outcome")
        self.assertIn(f"put key '/bh/k' at {bh.url}: Operation timed out after", r["error"])
        self.assertTrue(t.ok("put", key="/bh/k", value="v")["ok"])
        # Every member silent: a bounded failure naming each.
        bh2 = TcpProxy(self.cluster.members[1].client_port)
        self.addCleanup(bh2.close)
        bh2.blackhole()
        t = self.tool([bh.url, bh2.url], timeout_ms=300)
        r = t.cmd("get", key="/bh/k")
        self.assertEqual(r["kind"], "unavailable")
        self.assertIn(f"{bh.url}: Operation timed out", r["error"])
        self.assertIn(f"{bh2.url}: Operation timed out", r["error"])
        # A watch does not wait forever for its "created" either.
        w = self.tool([bh.url, real], timeout_ms=500)
        w.ok("watch", watch="w", key="/bh/", prefix=True)
        u = w.watch_update("w")
        self.assertEqual((u["kind"], u["endpoint"]), ("disconnected", bh.url))
        self.assertIn("no answer within 500 ms", u["message"])
        u = w.watch_update("w")
        self.assertEqual((u["kind"], u["endpoint"]), ("created", real))


def b64(s):
    return base64.b64encode(s.encode()).decode()


class ScriptedMember(unittest.TestCase):
    """A member that resends what the watch already has, and what the
    watch asks for when it resumes."""

    def test_resume_and_duplicates(self):
        def created(rev):
            return {"result": {"header": {"revision": str(rev)}, "created": True}}

        def events(*revs):
            return {"result": {"header": {"revision": str(revs[-1])}, "events": [
                {"kv": {"key": b64(f"/s/{r}"), "mod_revision": str(r), "value": b64(f"v{r}")}}
                for r in revs]}}

        def progress(rev):
            return {"result": {"header": {"revision": str(rev)}}}
        srv = ScriptedEtcd([
            [created(6), events(5, 6)],
            [created(7), events(5, 6, 7), progress(9)],
            [created(9)],
        ])
        self.addCleanup(srv.close)
        t = Tool([srv.url])
        self.addCleanup(t.close)
        t.ok("watch", watch="w", key="/s/", prefix=True, start_revision=5)
        seen = []
        while len(seen) < 7:
            u = t.watch_update("w")
            seen.append((u["kind"], [e["mod_revision"] for e in u.get("events", [])]
                         or u["revision"]))
        self.assertEqual(seen, [("created", 6), ("events", [5, 6]), ("disconnected", 0),
                                ("created", 7), ("events", [7]), ("progress", 9),
                                ("disconnected", 0)])
        self.assertEqual(t.watch_update("w")["kind"], "created")
        info = t.ok("watch_info", watch="w")
        self.assertEqual((info["duplicates"], info["next_revision"]), (2, 10))
        asked = [r[2]["create_request"] for r in srv.requests]
        self.assertEqual([a.get("start_revision") for a in asked], ["5", "7", "10"])
        self.assertEqual({(a["key"], a["range_end"]) for a in asked}, {(b64("/s/"), b64("/s0"))})
        self.assertTrue(all(r[0] == "POST /v3/watch HTTP/1.1" for r in srv.requests))
        self.assertTrue(all(r[1].get("grpc-metadata-hasleader") == "true"
                            for r in srv.requests))


if __name__ == "__main__":
    if not have_etcd():
        print("SKIP: etcd or etcdctl not installed (tools/setup.sh installs etcd-server, "
              "etcd-client)")
        sys.exit(77)
    unittest.main(verbosity=2)
