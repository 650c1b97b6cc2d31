# SPDX-License-Identifier: BSD-3-Clause
"""libtesetcd's watch against a real 3-member etcd cluster: events in order
(live and replayed from a past revision), progress notifications, a
compacted start revision reported as such (also when the compaction happens
while the watch is away), a watch that survives kill -9 of the member it is
attached to (a follower, then the leader) without losing or repeating an
event, a member that loses its leader, and the batch cap."""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from etcd_harness import EtcdCluster, TcpProxy, have_etcd  # noqa: E402
from etcd_tool import Tool  # noqa: E402


def updates_until(tool, name, kind, timeout=60):
    """Every update of watch name up to and including the first of kind."""
    out = []
    while not out or out[-1]["kind"] != kind:
        out.append(tool.watch_update(name, timeout=timeout))
    return out


def collect_events(tool, name, until_rev, timeout=60):
    """Every update of watch name until an event at until_rev; returns
    (events, updates)."""
    events, updates = [], []
    deadline = time.monotonic() + timeout
    while not events or events[-1]["mod_revision"] < until_rev:
        u = tool.watch_update(name, timeout=max(0.1, deadline - time.monotonic()))
        updates.append(u)
        if u["kind"] == "events":
            events.extend(u["events"])
        elif u["kind"] in ("failed", "compacted"):
            raise AssertionError(f"watch {name} stopped: {u}")
    return events, updates


class WatchBasics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = EtcdCluster(
            members=3, extra_flags=["--experimental-watch-progress-notify-interval", "300ms"]
        ).start()

    @classmethod
    def tearDownClass(cls):
        cls.cluster.cleanup()

    def setUp(self):
        self.t = Tool(self.cluster.endpoints)
        self.addCleanup(self.t.close)

    def test_events_in_order(self):
        t = self.t
        t.ok("watch", watch="w", key="/wo/", prefix=True, prev_kv=True)
        created = t.watch_update("w")
        self.assertEqual(created["kind"], "created")
        self.assertEqual(created["endpoint"], self.cluster.endpoints[0])
        start = created["revision"]
        want = []  # (type, key, value, revision)
        t.ok("put", key="/wo-not-in-prefix", value="x")
        for i in range(30):
            r = t.ok("put", key=f"/wo/{i % 7}", value=f"v{i}")
            want.append(("PUT", f"/wo/{i % 7}", f"v{i}", r["revision"]))
            if i % 5 == 4:
                d = t.ok("delete", key=f"/wo/{(i + 3) % 7}")
                if d["deleted"]:
                    want.append(("DELETE", f"/wo/{(i + 3) % 7}", "", d["revision"]))
        # One transaction: several events at one revision, in request order.
        x = t.ok("txn", compare=[], success=[{"type": "put", "key": "/wo/t1", "value": "a"},
                                             {"type": "put", "key": "/wo/t0", "value": "b"},
                                             {"type": "delete", "key": "/wo/0"}])
        want += [("PUT", "/wo/t1", "a", x["revision"]), ("PUT", "/wo/t0", "b", x["revision"]),
                 ("DELETE", "/wo/0", "", x["revision"])]
        events, _ = collect_events(t, "w", x["revision"])
        got = [(e["type"], e["key"], e["value"], e["mod_revision"]) for e in events]
        self.assertEqual(got, want)
        # prev_kv: the value each event replaced.
        self.assertEqual(events[-1]["prev"]["value"], "v28")
        self.assertNotIn("prev", events[0])
        info = t.ok("watch_stop", watch="w")
        self.assertEqual(info["next_revision"], x["revision"] + 1)
        self.assertEqual((info["reconnects"], info["duplicates"]), (0, 0))
        # The same history, replayed from the revision the watch began at.
        t.ok("watch", watch="replay", key="/wo/", prefix=True, start_revision=start + 1)
        self.assertEqual(t.watch_update("replay")["kind"], "created")
        events, _ = collect_events(t, "replay", x["revision"])
        self.assertEqual([(e["type"], e["key"], e["value"], e["mod_revision"]) for e in events],
                         want)
        t.ok("watch_stop", watch="replay")

    def test_progress_notifications(self):
        t = self.t
        r = t.ok("put", key="/prog/a", value="1")
        t.ok("watch", watch="p", key="/prog/", prefix=True, progress_notify=True)
        self.assertEqual(t.watch_update("p")["kind"], "created")
        # Changes elsewhere move the revision; the watch is told it has
        # seen everything up to it.
        last = t.ok("put", key="/elsewhere", value="x")["revision"]
        u = t.watch_update("p", kinds={"progress"})
        while u["revision"] < last:
            u = t.watch_update("p", kinds={"progress"})
        self.assertGreater(last, r["revision"])
        info = t.ok("watch_info", watch="p")
        self.assertGreaterEqual(info["next_revision"], last + 1)
        self.assertEqual(info["next_revision"], u["revision"] + 1)
        t.ok("watch_stop", watch="p")

    def test_compacted_start_revision(self):
        t = self.t
        revs = [t.ok("put", key="/wc/k", value=str(i))["revision"] for i in range(5)]
        t.ok("compact", revision=revs[3])
        t.ok("watch", watch="c", key="/wc/", prefix=True, start_revision=revs[1])
        # etcd creates the watch, then cancels it: no event in between.
        self.assertEqual(t.watch_update("c")["kind"], "created")
        u = t.watch_update("c")
        self.assertEqual(u["kind"], "compacted")
        self.assertEqual(u["compact_revision"], revs[3])
        # Stopped: nothing more comes; the caller re-reads and watches on.
        t.ok("put", key="/wc/k", value="after")
        g = t.ok("get", key="/wc/", prefix=True)
        self.assertEqual(g["kvs"][0]["value"], "after")
        t.ok("watch", watch="c2", key="/wc/", prefix=True, start_revision=g["revision"] + 1)
        self.assertEqual(t.watch_update("c2")["kind"], "created")
        p = t.ok("put", key="/wc/k", value="next")
        events, _ = collect_events(t, "c2", p["revision"])
        self.assertEqual([e["value"] for e in events], ["next"])
        self.assertEqual(t.watch_pending("c"), [])
        t.ok("watch_stop", watch="c")
        t.ok("watch_stop", watch="c2")

    def test_batch_cap(self):
        small = Tool(self.cluster.endpoints, watch_max_batch=4096)
        self.addCleanup(small.close)
        small.ok("watch", watch="b", key="/big/", prefix=True)
        self.assertEqual(small.watch_update("b")["kind"], "created")
        small.ok("put", key="/big/ok", value="x" * 100)
        events, _ = collect_events(small, "b", 0)
        self.assertEqual(events[0]["value"], "x" * 100)
        small.ok("put", key="/big/huge", value="y" * 8000)
        u = small.watch_update("b", kinds={"failed", "disconnected"})
        self.assertEqual(u["kind"], "failed")
        self.assertIn("larger than 4096 bytes", u["message"])
        self.assertIn("watch prefix '/big/'", u["message"])


class WatchFailover(unittest.TestCase):
    def setUp(self):
        self.cluster = EtcdCluster(members=3).start()
        self.addCleanup(self.cluster.cleanup)

    def url(self, i):
        return self.cluster.client_url(i)

    def tool(self, idx, **kw):
        t = Tool([self.url(i) for i in idx], **kw)
        self.addCleanup(t.close)
        return t

    def test_kill_follower_it_is_attached_to(self):
        c = self.cluster
        leader = c.leader()
        x = (leader + 1) % 3
        y = (leader + 2) % 3
        # The watch's second endpoint is a relay to y, cut for now: after x
        # dies the watch cannot come back until the test has written more,
        # so what it missed must come from resuming, not from luck.
        relay = TcpProxy(c.members[y].client_port)
        self.addCleanup(relay.close)
        relay.cut()
        watcher = Tool([self.url(x), relay.url])
        self.addCleanup(watcher.close)
        watcher.ok("watch", watch="w", key="/wf/", prefix=True)
        self.assertEqual(watcher.watch_update("w")["endpoint"], self.url(x))
        writer = self.tool([leader, y])
        acked = []

        def write(lo, hi):
            for i in range(lo, hi):
                r = writer.ok("put", key=f"/wf/{i}", value=f"v{i}")
                acked.append((f"/wf/{i}", r["revision"]))
        write(0, 100)
        c.kill9(x)
        before = updates_until(watcher, "w", "disconnected")
        self.assertEqual(before[-1]["endpoint"], self.url(x))
        write(100, 200)
        relay.restore()
        events, updates = collect_events(watcher, "w", acked[-1][1])
        events = [e for u in before if u["kind"] == "events" for e in u["events"]] + events
        self.assertEqual([(e["key"], e["mod_revision"]) for e in events], acked)
        self.assertEqual([e["value"] for e in events], [f"v{i}" for i in range(200)])
        kinds = [(u["kind"], u["endpoint"]) for u in updates if u["kind"] != "events"]
        self.assertEqual(kinds[-1], ("created", relay.url))
        info = watcher.ok("watch_info", watch="w")
        self.assertEqual(info["duplicates"], 0)
        self.assertEqual(info["next_revision"], acked[-1][1] + 1)
        c.restart(x)

    def test_kill_leader_it_is_attached_to(self):
        c = self.cluster
        leader = c.leader()
        others = [i for i in range(3) if i != leader]
        watcher = self.tool([leader] + others)
        watcher.ok("watch", watch="w", key="/wl/", prefix=True)
        self.assertEqual(watcher.watch_update("w")["endpoint"], self.url(leader))
        writer = self.tool(others, timeout_ms=3000)
        acked, attempted, uncertain = [], set(), 0
        for i in range(150):
            if i == 50:
                c.kill9(leader)
            attempted.add(f"/wl/{i}")
            r = writer.cmd("put", key=f"/wl/{i}", value=f"v{i}")
            if r["ok"]:
                acked.append((f"/wl/{i}", r["revision"]))
            else:
                # While the two survivors elect a new leader a write is
                # either refused outright or has an unknown outcome.
                self.assertIn(r["kind"], ("unknown-outcome", "unavailable"), r)
                uncertain += r["kind"] == "unknown-outcome"
        self.assertGreater(len(acked), 100)
        events, updates = collect_events(watcher, "w", acked[-1][1])
        seen = [(e["key"], e["mod_revision"]) for e in events]
        revs = [r for _, r in seen]
        self.assertEqual(revs, sorted(set(revs)), "events repeated or out of order")
        self.assertTrue(set(acked) <= set(seen), sorted(set(acked) - set(seen))[:5])
        self.assertTrue({k for k, _ in seen} <= attempted)
        # Only writes with an unknown outcome may show up unacknowledged.
        self.assertLessEqual(len(seen) - len(acked), uncertain)
        self.assertIn("disconnected", [u["kind"] for u in updates])
        self.assertEqual(watcher.ok("watch_info", watch="w")["duplicates"], 0)
        c.restart(leader)

    def test_compaction_while_away(self):
        c = self.cluster
        proxy = TcpProxy(c.members[0].client_port)
        self.addCleanup(proxy.close)
        watcher = Tool([proxy.url])
        self.addCleanup(watcher.close)
        writer = self.tool([1, 2])
        watcher.ok("watch", watch="w", key="/wa/", prefix=True)
        self.assertEqual(watcher.watch_update("w")["kind"], "created")
        r = writer.ok("put", key="/wa/1", value="seen")
        events, _ = collect_events(watcher, "w", r["revision"])
        self.assertEqual([e["value"] for e in events], ["seen"])
        proxy.cut()
        u = watcher.watch_update("w")
        self.assertEqual(u["kind"], "disconnected")
        self.assertIn(f"resuming from revision {r['revision'] + 1}", u["message"])
        for i in range(5):
            last = writer.ok("put", key="/wa/2", value=f"missed{i}")["revision"]
        writer.ok("compact", revision=last)
        # Member 0 itself has applied the compaction before the watch may
        # come back (a serializable read answers from its own state).
        m0 = self.tool([0])
        deadline = time.monotonic() + 60
        while m0.cmd("get", key="/wa/1", revision=r["revision"],
                     serializable=True).get("kind") != "compacted":
            self.assertLess(time.monotonic(), deadline, "member 0 never applied the compaction")
            time.sleep(0.05)
        proxy.restore()
        u = watcher.watch_update("w", kinds={"compacted"})
        self.assertEqual(u["compact_revision"], last)
        self.assertEqual(u["endpoint"], proxy.url)

    def test_member_without_leader(self):
        c = self.cluster
        leader = c.leader()
        x = (leader + 1) % 3
        watcher = self.tool([x])
        watcher.ok("watch", watch="w", key="/wn/", prefix=True)
        self.assertEqual(watcher.watch_update("w")["kind"], "created")
        rest = [i for i in range(3) if i != x]
        for i in rest:
            c.kill9(i)
        # The member is alive but cut off from any majority: it ends the
        # stream (the watch asked for a leader) instead of going silent.
        u = watcher.watch_update("w", kinds={"disconnected"})
        self.assertIn("no leader", u["message"])
        self.assertIn(self.url(x), u["message"])
        # A write there fails at once as unavailable (never applied), and
        # names the member.
        r = watcher.cmd("put", key="/wn/a", value="x")
        self.assertEqual(r["kind"], "unavailable")
        self.assertIn("etcdserver: no leader", r["error"])
        # A serializable read still answers from the member's own state.
        self.assertTrue(watcher.ok("get", key="/wn/", prefix=True, serializable=True)["ok"])
        for i in rest:
            c.restart(i, wait=False)
        c.wait_healthy()
        u = watcher.watch_update("w", kinds={"created"})
        self.assertEqual(u["endpoint"], self.url(x))
        p = watcher.ok("put", key="/wn/b", value="back")
        events, _ = collect_events(watcher, "w", p["revision"])
        self.assertEqual([e["value"] for e in events], ["back"])


if __name__ == "__main__":
    if not have_etcd():
        print("SKIP: etcd or etcdctl not installed (tools/setup.sh installs etcd-server, "
              "etcd-client)")
        sys.exit(77)
    unittest.main(verbosity=2)
