# SPDX-License-Identifier: BSD-3-Clause
"""libtesetcd's key-value calls against a real 3-member etcd cluster: put,
get, delete, byte keys and prefix ends, pagination over more keys than a
page, create-if-absent raced by two clients, compare-and-swap on
mod_revision (and version, value), leases (keepalive, expiry, revoke),
compaction, and the response cap."""
import base64
import os
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from etcd_harness import EtcdCluster, have_etcd  # noqa: E402
from etcd_tool import Tool  # noqa: E402


def b64(b):
    return base64.b64encode(b).decode()


class KV(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = EtcdCluster(members=3).start()

    @classmethod
    def tearDownClass(cls):
        cls.cluster.cleanup()

    def setUp(self):
        self.t = Tool(self.cluster.endpoints)
        self.addCleanup(self.t.close)

    def test_put_get_delete(self):
        t = self.t
        r1 = t.ok("put", key="/kv/a", value="one")
        got = t.ok("get", key="/kv/a")
        self.assertEqual(len(got["kvs"]), 1)
        kv = got["kvs"][0]
        self.assertEqual((kv["key"], kv["value"], kv["version"]), ("/kv/a", "one", 1))
        self.assertEqual((kv["create_revision"], kv["mod_revision"]), (r1["revision"],) * 2)
        r2 = t.ok("put", key="/kv/a", value="two", prev_kv=True)
        self.assertEqual(r2["revision"], r1["revision"] + 1)
        self.assertEqual(r2["prev"]["value"], "one")
        kv = t.ok("get", key="/kv/a")["kvs"][0]
        self.assertEqual((kv["value"], kv["version"], kv["mod_revision"]),
                         ("two", 2, r2["revision"]))
        self.assertEqual(kv["create_revision"], r1["revision"])
        # An absent key is an empty answer, not an error.
        self.assertEqual(t.ok("get", key="/kv/absent")["kvs"], [])
        d = t.ok("delete", key="/kv/a", prev_kv=True)
        self.assertEqual(d["deleted"], 1)
        self.assertEqual(d["prev_kvs"][0]["value"], "two")
        self.assertEqual(t.ok("get", key="/kv/a")["kvs"], [])
        self.assertEqual(t.ok("delete", key="/kv/a")["deleted"], 0)
        # What one member acknowledged, every member serves (a read
        # pinned to each in turn).
        for i in range(3):
            o = Tool([self.cluster.client_url(i)])
            try:
                self.assertEqual(o.ok("get", key="/kv/a", revision=r2["revision"])["kvs"][0]
                                 ["value"], "two")
            finally:
                o.close()

    def test_byte_keys_and_prefix_ends(self):
        t = self.t
        keys = [b"\xff\xfe", b"\xff\xff", b"\xff\xff\x00", b"\xff\xff\x01\x00\xff",
                b"\xff\xff\xff", b"\x00bin", b"\x00bin\xff"]
        for i, k in enumerate(keys):
            t.ok("put", key_b64=b64(k), value_b64=b64(bytes([i, 0, 255])))
        kv = t.ok("get", key_b64=b64(b"\x00bin"))["kvs"][0]
        self.assertEqual(base64.b64decode(kv["value_b64"]), bytes([5, 0, 255]))

        def prefix(p):
            r = t.ok("get", key_b64=b64(p), prefix=True)
            return [base64.b64decode(x["key_b64"]) for x in r["kvs"]]
        # A prefix ending in 0xff: the end increments the last byte below
        # 0xff and drops the rest, so keys after the prefix stay out.
        self.assertEqual(prefix(b"\xff\xff"),
                         [b"\xff\xff", b"\xff\xff\x00", b"\xff\xff\x01\x00\xff", b"\xff\xff\xff"])
        self.assertEqual(prefix(b"\xff\xff\x01"), [b"\xff\xff\x01\x00\xff"])
        self.assertEqual(prefix(b"\x00bin"), [b"\x00bin", b"\x00bin\xff"])
        # All 0xff: every key from there on.
        self.assertEqual(prefix(b"\xff\xff\xff"), [b"\xff\xff\xff"])
        t.ok("delete", key_b64=b64(b"\xff"), prefix=True)
        t.ok("delete", key_b64=b64(b"\x00bin"), prefix=True)

    def test_pagination_over_a_prefix(self):
        t = self.t
        n = 250
        # Neighbours that a wrong range_end would take in.
        t.ok("put", key="/pag", value="outside")
        t.ok("put", key="/pag0", value="outside")
        t.ok("put", key="/paf/z", value="outside")
        t.ok("put", key="/pag/", value="the prefix itself")
        for i in range(n):
            t.send("put", key=f"/pag/{i:04d}", value=f"v{i}")
        for i in range(n):
            self.assertTrue(t.reply()["ok"])
        want = ["/pag/"] + [f"/pag/{i:04d}" for i in range(n)]
        page = t.ok("get", key="/pag/", prefix=True, limit=100)
        self.assertEqual([k["key"] for k in page["kvs"]], want[:100])
        self.assertTrue(page["more"])
        self.assertEqual(page["count"], n + 1)
        r = t.ok("range_each", key="/pag/", prefix=True, page=100)
        self.assertEqual([k["key"] for k in r["kvs"]], want)
        self.assertEqual(r["requests"], 3)
        snapshot = r["revision"]
        # Pages read at one revision: deleting keys afterwards does not
        # change what a read at that revision sees.
        for i in range(0, 20):
            t.ok("delete", key=f"/pag/{i:04d}")
        r = t.ok("range_each", key="/pag/", prefix=True, page=7, revision=snapshot)
        self.assertEqual([k["key"] for k in r["kvs"]], want)
        self.assertEqual(r["requests"], (n + 1 + 6) // 7)
        r = t.ok("range_each", key="/pag/", prefix=True, page=100)
        self.assertEqual([k["key"] for k in r["kvs"]], want[:1] + want[21:])
        self.assertEqual(t.ok("get", key="/pag/", prefix=True, count_only=True)["count"],
                         n + 1 - 20)
        t.ok("delete", key="/pag", prefix=True)

    def test_create_if_absent_race(self):
        # Two clients (two processes, each starting on a different member)
        # create the same keys at the same time: exactly one wins each key
        # and the loser is shown the winner's value.
        eps = self.cluster.endpoints
        a = Tool(eps)
        b = Tool(eps[1:] + eps[:1])
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        n = 100
        results = {}

        def run(tool, name):
            for i in range(n):
                tool.send("create", key=f"/race/{i}", value=f"{name}-{i}")
            results[name] = [tool.reply() for _ in range(n)]
        ta = threading.Thread(target=run, args=(a, "a"))
        tb = threading.Thread(target=run, args=(b, "b"))
        ta.start()
        tb.start()
        ta.join(120)
        tb.join(120)
        self.assertEqual(set(results), {"a", "b"})
        wins = {"a": 0, "b": 0}
        for i in range(n):
            ra, rb = results["a"][i], results["b"][i]
            self.assertTrue(ra["ok"] and rb["ok"], (ra, rb))
            self.assertNotEqual(ra["created"], rb["created"], f"key {i}: {ra} {rb}")
            win, lose = (ra, rb) if ra["created"] else (rb, ra)
            winner = "a" if ra["created"] else "b"
            wins[winner] += 1
            self.assertEqual(lose["existing"]["value"], f"{winner}-{i}")
            self.assertEqual(lose["existing"]["mod_revision"], win["revision"])
            self.assertEqual(self.t.ok("get", key=f"/race/{i}")["kvs"][0]["value"],
                             f"{winner}-{i}")
        self.assertEqual(wins["a"] + wins["b"], n)
        self.t.ok("delete", key="/race/", prefix=True)

    def test_compare_and_swap(self):
        t = self.t
        r = t.ok("put", key="/cas/q", value="10")

        def cas(rev, value):
            return t.ok("txn", compare=[{"key": "/cas/q", "target": "mod", "result": "=",
                                         "number": rev}],
                        success=[{"type": "put", "key": "/cas/q", "value": value}],
                        failure=[{"type": "range", "key": "/cas/q"}])
        first = cas(r["revision"], "9")
        self.assertTrue(first["succeeded"])
        self.assertEqual(first["responses"][0]["type"], "put")
        # A second writer that read the same revision loses, and the
        # failure branch shows what won.
        second = cas(r["revision"], "8")
        self.assertFalse(second["succeeded"])
        now = second["responses"][0]
        self.assertEqual(now["type"], "range")
        self.assertEqual((now["kvs"][0]["value"], now["kvs"][0]["mod_revision"]),
                         ("9", first["revision"]))
        self.assertEqual(t.ok("get", key="/cas/q")["kvs"][0]["value"], "9")
        # version and value compares; several operations in one branch.
        v = t.ok("txn", compare=[{"key": "/cas/q", "target": "version", "result": "=",
                                  "number": 2},
                                 {"key": "/cas/q", "target": "value", "result": "=",
                                  "value": "9"}],
                 success=[{"type": "put", "key": "/cas/r", "value": "x"},
                          {"type": "delete", "key": "/cas/q", "prev_kv": True},
                          {"type": "range", "key": "/cas/", "prefix": True}],
                 failure=[])
        self.assertTrue(v["succeeded"])
        self.assertEqual([x["type"] for x in v["responses"]], ["put", "delete", "range"])
        self.assertEqual(v["responses"][1]["deleted"], 1)
        self.assertEqual(v["responses"][1]["kvs"][0]["value"], "9")
        self.assertEqual([k["key"] for k in v["responses"][2]["kvs"]], ["/cas/r"])
        no = t.ok("txn", compare=[{"key": "/cas/r", "target": "value", "result": "!=",
                                   "value": "x"}],
                  success=[{"type": "put", "key": "/cas/r", "value": "y"}], failure=[])
        self.assertFalse(no["succeeded"])
        self.assertEqual(no["responses"], [])
        self.assertEqual(t.ok("get", key="/cas/r")["kvs"][0]["value"], "x")
        # etcd's own refusal: two writes of one key in one branch.
        bad = t.cmd("txn", compare=[], success=[{"type": "put", "key": "/cas/d", "value": "1"},
                                                {"type": "put", "key": "/cas/d", "value": "2"}])
        self.assertFalse(bad["ok"])
        self.assertEqual(bad["kind"], "refused")
        self.assertIn("duplicate key", bad["error"])
        self.assertIn("txn key '/cas/d' at http://127.0.0.1:", bad["error"])
        t.ok("delete", key="/cas/", prefix=True)

    def test_lease_keepalive_and_expiry(self):
        t = self.t
        g = t.ok("lease_grant", ttl=5)
        lease = g["lease_id"]
        self.assertEqual(g["ttl"], 5)
        t.ok("put", key="/lease/alive", value="x", lease=lease)
        self.assertEqual(t.ok("get", key="/lease/alive")["kvs"][0]["lease"], lease)
        t.ok("watch", watch="lw", key="/lease/alive")
        t.watch_update("lw", kinds={"created"})
        # Renewed past its TTL several times, the key stays.
        for _ in range(14):  # 7 s: past the 5 s TTL, renewed every 0.5 s
            self.assertEqual(t.ok("lease_keepalive", lease_id=lease)["ttl"], 5)
            self.assertEqual(len(t.ok("get", key="/lease/alive")["kvs"]), 1)
            threading.Event().wait(0.5)
        self.assertEqual(t.watch_pending("lw"), [])
        # Left alone it expires: the key goes with it.
        u = t.watch_update("lw", kinds={"events"}, timeout=60)
        self.assertEqual([(e["type"], e["key"]) for e in u["events"]],
                         [("DELETE", "/lease/alive")])
        self.assertEqual(t.ok("get", key="/lease/alive")["kvs"], [])
        r = t.cmd("lease_keepalive", lease_id=lease)
        self.assertEqual(r["kind"], "not-found")
        self.assertIn("does not exist", r["error"])
        # Revoke takes the keys at once; a second revoke is not-found.
        l2 = t.ok("lease_grant", ttl=60)["lease_id"]
        t.ok("put", key="/lease/r", value="x", lease=l2)
        t.ok("lease_revoke", lease_id=l2)
        self.assertEqual(t.ok("get", key="/lease/r")["kvs"], [])
        r = t.cmd("lease_revoke", lease_id=l2)
        self.assertEqual((r["kind"], r["code"]), ("not-found", 5))
        # A put on a lease that does not exist is refused.
        r = t.cmd("put", key="/lease/x", value="x", lease=l2)
        self.assertEqual(r["kind"], "not-found")
        self.assertIn("requested lease not found", r["error"])
        t.ok("watch_stop", watch="lw")

    def test_compaction(self):
        t = self.t
        revs = [t.ok("put", key="/cmp/k", value=str(i))["revision"] for i in range(5)]
        self.assertEqual(t.ok("get", key="/cmp/k", revision=revs[1])["kvs"][0]["value"], "1")
        t.ok("compact", revision=revs[3], physical=True)
        r = t.cmd("get", key="/cmp/k", revision=revs[1])
        self.assertEqual((r["ok"], r["kind"], r["code"]), (False, "compacted", 11))
        self.assertIn("required revision has been compacted", r["error"])
        self.assertEqual(t.ok("get", key="/cmp/k", revision=revs[3])["kvs"][0]["value"], "3")
        r = t.cmd("compact", revision=revs[2])
        self.assertEqual(r["kind"], "compacted")

    def test_response_cap(self):
        t = self.t
        for i in range(20):
            t.ok("put", key=f"/cap/{i:02d}", value="x" * 200)
        small = Tool(self.cluster.endpoints, max_response=2000)
        self.addCleanup(small.close)
        r = small.cmd("get", key="/cap/", prefix=True)
        self.assertEqual(r["kind"], "protocol")
        self.assertIn("larger than 2000 bytes", r["error"])
        self.assertIn("range key '/cap/'", r["error"])
        # Paginated, the same range fits.
        r = small.ok("range_each", key="/cap/", prefix=True, page=3)
        self.assertEqual(len(r["kvs"]), 20)
        t.ok("delete", key="/cap/", prefix=True)

    def test_usage_errors(self):
        t = self.t
        r = t.cmd("put", key="", value="x")
        self.assertEqual(r["kind"], "usage")
        r = t.cmd("lease_grant", ttl=0)
        self.assertEqual(r["kind"], "usage")
        self.assertEqual(t.ok("stats")["requests"], 0)
        bad = Tool(["ftp://127.0.0.1:1"], expect_ready=False)
        self.assertIn("not an http:// or https:// URL", bad.ready["error"])
        self.assertEqual(bad.close(check=False), 1)
        bad = Tool(["http://127.0.0.1:2379/some/path"], expect_ready=False)
        self.assertIn("has a path", bad.ready["error"])
        self.assertEqual(bad.close(check=False), 1)


if __name__ == "__main__":
    if not have_etcd():
        print("SKIP: etcd or etcdctl not installed (tools/setup.sh installs etcd-server, "
              "etcd-client)")
        sys.exit(77)
    unittest.main(verbosity=2)
