# SPDX-License-Identifier: BSD-3-Clause
"""Issue 13, item 2: untrusted detections are bounded.

One client loops MAIL / RCPT / BDAT <a forged Received header naming a new
FQDN with an out-of-date build> / RSET: 10 000 rounds over one session (cut
at max_messages: aborted transactions count) and 10 000 over 100 sessions.
Meanwhile another tenant's connector carries a legitimate first detection.
Three ways, each on its own pair of daemons:

- scope = connectors, the flood over no connector: the gateway only counts
  it; tescontrol stores, pushes and commits nothing of it;
- scope = all, the flood over no connector from five /24 prefixes: the
  bounded table keeps 16 per prefix and 64 in all, least recently seen
  evicted, with no synchronous write per name;
- the flood over a tenant's own connector: that tenant's cap (50) fills,
  every further name is counted and not tracked, nothing it sends is
  refused for it, and other tenants are untouched.

In each, exact counts: store rows, the gateway's enforcement tables,
tescontrol's commits; and the other tenant's server is committed with the
time of its message and throttled on day 30.

Usage: test_untrusted_bound.py TESGATE  (TESCONTROL, TESCTL, TES_SRCDIR in env)
"""
import os
import socket
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import issue13_harness as h  # noqa: E402
from issue13_harness import DAY, T0  # noqa: E402

ROUNDS = 10000
MAX_MESSAGES = 100  # the gateway's default max_messages_per_connection
LEGIT_TENANT = 2
LEGIT_SOURCE = "127.0.0.2"
LEGIT_SERVER = "ex16.fabrikam.local"
COMMITS = "tes_store_commit_duration_seconds_count"


def forged_round(tag):
    chunk = (f"Received: from x (10.9.9.9) by {tag}.evil.example (10.9.9.10) with"
             f" Microsoft SMTP Server (TLS) id {h.OLD_2016}; Thu, 6 Jun 2024 16:59:04"
             f" -0500\r\nFrom: <a@evil.example>\r\n\r\nx\r\n").encode()
    return (b"MAIL FROM:<a@evil.example>\r\nRCPT TO:<b@example.net>\r\n"
            + f"BDAT {len(chunk)}\r\n".encode() + chunk + b"RSET\r\n")


def flood_session(port, source, tag, rounds, batch=25):
    """Up to `rounds` forged rounds, pipelined `batch` at a time, on one
    connection; the rounds that got their four 250s, and whether the
    gateway ended the session with 421."""
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(h.WAIT)
    s.connect(("127.0.0.1", port))
    f = s.makefile("rb")
    done, closed_421 = 0, False
    try:
        assert f.readline().startswith(b"220")
        s.sendall(b"EHLO flood.evil.example\r\n")
        while True:
            line = f.readline()
            assert line.startswith(b"250"), line
            if line[3:4] == b" ":
                break
        while done < rounds:
            n = min(batch, rounds - done)
            try:
                s.sendall(b"".join(forged_round(f"{tag}-{done + i}") for i in range(n)))
            except (BrokenPipeError, ConnectionResetError):
                break
            replies = []
            for _ in range(4 * n):
                line = f.readline()
                if not line:
                    break
                replies.append(line[:3])
                if line[:3] == b"421":
                    closed_421 = True
                    break
            for i in range(0, len(replies) - 3, 4):
                if replies[i:i + 4] == [b"250"] * 4:
                    done += 1
            if closed_421 or len(replies) < 4 * n:
                break
    finally:
        f.close()
        s.close()
    return done, closed_421


def flood(port, sources, tag):
    """10 000 rounds over one session, then 10 000 over 100 sessions (from
    the sources in turn); the rounds that went through."""
    total = 0
    done, c = flood_session(port, sources[0], f"{tag}-one", ROUNDS)
    assert (done, c) == (MAX_MESSAGES, True), (done, c)
    total += done
    for i in range(ROUNDS // MAX_MESSAGES):
        done, c = flood_session(port, sources[i % len(sources)], f"{tag}-s{i}", MAX_MESSAGES + 1)
        assert (done, c) == (MAX_MESSAGES, True), (i, done, c)
        total += done
    return total


class Bounded(unittest.TestCase):
    TESGATE = None

    def start(self, policy="", flood_tenant=None, tc_conf=None):
        self.p = h.Pair(self.TESGATE, policy=policy, tc_conf=tc_conf)
        self.p.tc.ctl("tenant", "add", LEGIT_TENANT, "Fabrikam", "--connector",
                      f"{LEGIT_SOURCE}/32")
        if flood_tenant:
            self.p.tc.ctl("tenant", "add", flood_tenant, "Flooder", "--connector",
                          "127.0.0.9/32")
        self.p.fence()
        self.p.at(T0)

    def run_flood(self, sources, tag):
        """The flood in a thread; the legitimate message once it is under
        way.  Returns the rounds that went through."""
        result = {}

        def go():
            try:
                result["rounds"] = flood(self.p.gw.port, sources, tag)
            except BaseException as e:  # reported below, in the test's thread
                result["error"] = e

        commits0 = self.p.tc_metric(COMMITS)
        self.fences0 = self.p.fences
        t = threading.Thread(target=go)
        t.start()
        try:
            self.p.wait(lambda: (self.p.gw_metric('tes_exchange_messages_total{family="2016"}')
                                 or 0) >= 500, "the flood to be under way")
            got = self.p.send(h.exchange_message(LEGIT_SERVER, h.OLD_2016), LEGIT_SOURCE)
            self.assertEqual(got, ("", "250", ""), "the legitimate first detection")
        finally:
            t.join(600)
        self.assertFalse(t.is_alive(), "the flood did not end")
        if "error" in result:
            raise result["error"]
        self.assertEqual(result["rounds"], ROUNDS + MAX_MESSAGES)
        self.p.settle()
        return commits0

    def commits_since(self, commits0):
        """Commits since commits0, less the fences' own (a tenant each)."""
        return self.p.tc_metric(COMMITS) - commits0 - (self.p.fences - self.fences0)

    def no_connector_sighting_lost(self):
        p = self.p
        self.assertEqual(p.gw_metric("tes_sightings_dropped_total")
                         - p.gw_metric("tes_sightings_untrusted_dropped_total"), 0)

    def legit_committed_and_enforced(self):
        s = self.p.tc.server(LEGIT_TENANT, LEGIT_SERVER)
        self.assertIsNotNone(s, "the legitimate first detection was not committed")
        self.assertEqual(s["first_detected_unix"], T0)
        self.assertEqual(s["status"], "Reporting")
        # on time: day 30, minute 0, throttled at MAIL FROM
        self.p.at(T0 + 30 * DAY)
        self.assertEqual(self.p.send(h.exchange_message(LEGIT_SERVER, h.OLD_2016), LEGIT_SOURCE),
                         ("mail", "450", h.THROTTLE.format(5)))

    def gw_servers(self):
        return self.p.gw_metric('tes_enforcement_table_entries{table="servers"}')

    def gw_sources(self):
        return self.p.gw_metric('tes_enforcement_table_entries{table="sources"}')

    def test_connectors_scope_over_no_connector(self):
        self.start()
        commits0 = self.run_flood(["127.0.0.9"], "c")
        p = self.p
        # the gateway counted every forged sighting and sent none
        self.assertEqual(p.gw_metric("tes_sightings_untrusted_total"), ROUNDS + MAX_MESSAGES)
        self.assertEqual((self.gw_servers(), self.gw_sources()), (1, 1))
        # tescontrol kept nothing of it: one commit, the legitimate one
        self.assertEqual(self.commits_since(commits0), 1)
        self.assertEqual(p.tc_metric("tes_first_detections_total"), 1)
        self.assertEqual(p.tc.ctl("status")["servers"]["total"], 1)
        self.no_connector_sighting_lost()
        self.legit_committed_and_enforced()
        rows = self.p.stop(count_rows=True)
        self.p = None
        self.assertEqual(rows, {LEGIT_TENANT: 1})

    def test_scope_all_bounded_table(self):
        policy = ("[enforcement]\nscope = all\n[limits]\nuntrusted_per_prefix = 16\n"
                  "untrusted_servers = 64\n")
        # flush_seconds long: the batch writes of the bounded table happen
        # at shutdown here, so every commit during the flood is counted
        self.start(policy, tc_conf={"flush_seconds": 3600})
        sources = [f"127.0.{k}.9" for k in range(1, 6)]  # five /24 prefixes
        commits0 = self.run_flood(sources, "a")
        p = self.p
        # no synchronous write per name: one commit, the legitimate one
        self.assertEqual(self.commits_since(commits0), 1)
        self.assertEqual(p.tc_metric("tes_untrusted_servers"), 64)
        # every forged sighting either reached tescontrol (and, past 64,
        # evicted the least recently seen) or was dropped at the gateway
        # when the untrusted queue was full: counted either way
        received = p.tc.ctl("status")["counts"]["sightings"] - 1
        self.assertEqual(received + p.gw_metric("tes_sightings_untrusted_dropped_total"),
                         ROUNDS + MAX_MESSAGES)
        self.assertEqual(p.tc_metric("tes_untrusted_evictions_total"), received - 64)
        self.assertEqual(len(p.tc.report(0)["servers"]), 64)
        # the least recently seen went: nothing of the first sessions is left
        names = {s["fqdn"] for s in p.tc.report(0)["servers"]}
        self.assertFalse({n for n in names if n.startswith("a-one-")
                          or int(n.split("-")[1][1:]) < 10}, names)
        # per prefix: the one flooded first, then left alone, kept 16
        by_prefix = {}
        for s in p.tc.report(0)["servers"]:
            src = p.tc.ctl("server", "show", 0, s["fqdn"])["sources"][0]
            by_prefix[src] = by_prefix.get(src, 0) + 1
        self.assertTrue(all(n <= 16 for n in by_prefix.values()), by_prefix)
        self.assertEqual(self.gw_servers(), 65)
        self.assertLessEqual(self.gw_sources(), 6)  # the five flooding addresses and the legit one
        self.no_connector_sighting_lost()
        self.legit_committed_and_enforced()
        rows = self.p.stop(count_rows=True)
        self.p = None
        self.assertEqual(rows, {0: 64, LEGIT_TENANT: 1})

    def test_own_connector_fills_only_its_cap(self):
        policy = "[limits]\nservers_per_tenant = 50\n"
        self.start(policy, flood_tenant=1)
        commits0 = self.run_flood(["127.0.0.9"], "t")
        p = self.p
        # one synchronous commit per name until the cap, then none
        self.assertEqual(self.commits_since(commits0), 50 + 1)
        self.assertEqual(p.tc_metric('tes_tenant_servers{tenant="1",tenant_name="Flooder"}'), 50)
        self.assertEqual(p.tc_metric("tes_tenant_server_cap"), 50)
        # every name past the cap counted once: by tescontrol until the
        # gateway heard of the cap, by the gateway after it, or as over the
        # tenant's budget of new names a second
        self.assertEqual(p.tc_metric("tes_servers_not_tracked_total")
                         + p.gw_metric("tes_sightings_capped_total")
                         + p.gw_metric("tes_sightings_limited_total"), ROUNDS + MAX_MESSAGES - 50)
        self.assertIn("tenant 1 (Flooder) reached its cap of 50 servers", p.tc.log_text())
        self.assertEqual((self.gw_servers(), self.gw_sources()), (51, 2))
        self.no_connector_sighting_lost()
        self.legit_committed_and_enforced()
        # a full cap refuses nothing the connector carries: a new server of
        # the tenant, and the tracked ones read at their headers
        p.at(T0 + 95 * DAY)
        capped = p.gw_metric("tes_sightings_capped_total")
        msg = h.exchange_message("new.flooder.example", h.OLD_2016)
        self.assertEqual(p.send(msg, "127.0.0.9"), ("", "250", ""))
        # the gateway knows the tenant is at its cap: it did not even send it
        self.assertEqual(p.gw_metric("tes_sightings_capped_total"), capped + 1)
        self.assertIsNone(p.tc.server(1, "new.flooder.example"))
        msg = h.exchange_message("t-one-0.evil.example", h.OLD_2016)
        self.assertEqual(p.send(msg, "127.0.0.9"), ("data", "550", h.BLOCK.format(60)))
        rows = self.p.stop(count_rows=True)
        self.p = None
        self.assertEqual(rows, {1: 50, LEGIT_TENANT: 1})

    def tearDown(self):
        if getattr(self, "p", None):
            self.p.stop()


if __name__ == "__main__":
    h.run([Bounded])
