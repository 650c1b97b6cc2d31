# SPDX-License-Identifier: BSD-3-Clause
"""Shared by the issue-13 integration tests (shared sources, untrusted
detections, ageing, the probe): a tescontrol on the test clock and a tesgate
following it, Exchange messages naming any server and build, and a fence that
waits until the gateway has applied everything tescontrol sent before it.

The fence: tescontrol sends each gateway its messages in order, so after any
change (a clock move and the stage changes it causes) the test adds a tenant
and waits until the gateway's /metrics counts it.  Every wait is bounded; only
processes started here are signalled, by PID.
"""
import os
import smtplib
import sqlite3
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ctl_harness as ch  # noqa: E402
from gateway_harness import Gateway  # noqa: E402
from prom_harness import free_port, http_get, parse_metrics  # noqa: E402

DAY = ch.DAY
MIN = 60
T0 = ch.T0  # 2024-01-01T00:00:00Z, the start of a clock hour
WAIT = 15.0
OLD_2016 = "15.1.2507.35"  # 2016 CU23 before its last update: out of date
NEW_2016 = "15.1.2507.61"  # compliant under COMPLIANCE below

# The compliance policy these tests run with: plain rules (no dates), so the
# tests do not depend on the shipped file's dated rules or on the test
# clock's year.
COMPLIANCE = """2007 never
2010 never
2013 never
2016 CU23 from 15.1.2507.61
2019 CU15 from 15.2.1748.39
2019 CU14 from 15.2.1544.36
SE RTM from 15.2.2562.29
"""

THROTTLE = "4.7.230 Connecting Exchange server version is out-of-date; connection to " \
           "Exchange Online throttled for {} mins/hr."
BLOCK = "5.7.230 Connecting Exchange server version is out-of-date; connection to " \
        "Exchange Online blocked for {} mins/hr."

# The default stage table: (start day, throttled, blocked minutes per hour).
STAGES = [(0, 0, 0), (30, 5, 0), (40, 10, 0), (50, 20, 0), (60, 30, 5), (70, 0, 10),
          (80, 0, 20), (90, 0, 60)]


def stage_at(elapsed):
    s = 1
    for i, (day, _, _) in enumerate(STAGES):
        if elapsed >= day * DAY:
            s = i + 1
    return s


def expected(elapsed, minute):
    """(code, text) the schedule gives a server whose clock reads elapsed, at
    a minute of the hour (window offset 0): blocked minutes first, then
    throttled ones."""
    _, thr, blk = STAGES[stage_at(elapsed) - 1]
    if minute < blk:
        return "550", BLOCK.format(blk)
    if minute < blk + thr:
        return "450", THROTTLE.format(thr)
    return "250", ""


def exchange_message(server, build, sender="grace.okafor@contoso.com"):
    """A message whose top Received header is the on-premises server's own
    hop, stamping build."""
    return (f"Received: from EX16-01.contoso.local (10.1.1.41) by {server}\r\n"
            f" (10.1.1.42) with Microsoft SMTP Server (version=TLS1_2,\r\n"
            f" cipher=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)\r\n"
            f" id {build}; Thu, 6 Jun 2024 16:59:04 -0500\r\n"
            f"From: <{sender}>\r\nTo: <ian.hughes@example.net>\r\n"
            f"Subject: issue 13\r\nMessage-ID: <{time.monotonic_ns()}@{server}>\r\n"
            f"\r\nBody of a simulated Exchange message.\r\n").encode()


class Pair:
    """tescontrol (test clock) + tesgate (kernel sockets, spool, metrics)."""

    def __init__(self, tesgate, policy="", tc_conf=None, gw_conf=None):
        os.environ["TES_ALLOW_TEST_CLOCK"] = "1"
        self.tmp = tempfile.mkdtemp(prefix="i13-", dir="/tmp")
        self.policy_path = os.path.join(self.tmp, "policy.conf")
        with open(self.policy_path, "w") as f:
            f.write(policy)
        comp = os.path.join(self.tmp, "compliance.conf")
        with open(comp, "w") as f:
            f.write(COMPLIANCE)
        conf = {"policy_file": self.policy_path, "compliance_file": comp}
        self.tc_metrics = free_port()
        conf["metrics_listen"] = f"127.0.0.1:{self.tc_metrics}"
        conf.update(tc_conf or {})
        self.tc = ch.Tescontrol(test_clock=T0, conf=conf).start()
        self.gw_metrics = free_port()
        gconf = {"control_socket": self.tc.gw_sock, "follow_test_clock": "yes",
                 "gateway_id": "gw-i13", "metrics_listen": f"127.0.0.1:{self.gw_metrics}"}
        gconf.update(gw_conf or {})
        self.gw = Gateway(tesgate, conf=gconf)
        self.fences = 0
        self.wait(lambda: "control: synchronised" in self.gw.log_text(), "the first sync")

    def stop(self, count_rows=False):
        """Stop both; with count_rows, tescontrol is stopped cleanly first
        (its last batch written) and the store's server rows per tenant are
        returned."""
        rows = None
        try:
            rc = self.gw.stop()
            log = self.gw.log_text()
            for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
                assert bad not in log, f"tesgate: {bad}\n{log[-10000:]}"
            assert rc == 0, f"tesgate exited {rc}\n{log[-10000:]}"
            if count_rows:
                assert self.tc.stop() == 0, self.tc.log_text()[-5000:]
                db = sqlite3.connect(os.path.join(self.tc.state_dir, "tescontrol.db"))
                rows = dict(db.execute("SELECT tenant_id, count(*) FROM servers"
                                       " GROUP BY tenant_id").fetchall())
                db.close()
        finally:
            self.gw.close()
            self.tc.cleanup()
            for n in os.listdir(self.tmp):
                os.unlink(os.path.join(self.tmp, n))
            os.rmdir(self.tmp)
        return rows

    @staticmethod
    def wait(pred, what, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while True:
            if pred():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.02)

    # -- metrics ------------------------------------------------------------
    def gw_metric(self, key):
        return parse_metrics(http_get(f"http://127.0.0.1:{self.gw_metrics}/metrics")[2]).get(key)

    def tc_metrics_all(self):
        return parse_metrics(http_get(f"http://127.0.0.1:{self.tc_metrics}/metrics")[2])

    def tc_metric(self, key):
        return self.tc_metrics_fresh().get(key)

    def tc_metrics_fresh(self):
        """tescontrol's metrics once its text (rendered every second)
        shows the last fence: everything before that is in it."""
        n = len(self.tc.ctl("tenant", "list")["tenants"])
        self.wait(lambda: self.tc_metrics_all().get("tes_tenants") == n,
                  "tescontrol's metrics to catch up")
        return self.tc_metrics_all()

    # -- ordering -----------------------------------------------------------
    def fence(self):
        """Wait until the gateway has applied everything tescontrol sent so
        far: a new tenant, sent after it, shows in the gateway's tables."""
        self.fences += 1
        tid = 900000 + self.fences
        self.tc.ctl("tenant", "add", tid, f"fence-{self.fences}")
        want = len(self.tc.ctl("tenant", "list")["tenants"])
        key = 'tes_enforcement_table_entries{table="tenants"}'
        self.wait(lambda: self.gw_metric(key) == want, f"the gateway to count {want} tenants")

    def at(self, t):
        self.tc.set_clock(t)
        self.fence()

    def settle(self):
        """Wait until tescontrol has seen every sighting the gateway queued
        (coalesced ones come out at the latest a second later) and the
        gateway every update that followed."""
        def sent_all():
            m = parse_metrics(http_get(f"http://127.0.0.1:{self.gw_metrics}/metrics")[2])
            # tescontrol counts messages (a coalesced sighting counts all
            # it stands for); the gateway keeps some to itself by design
            got = self.tc.ctl("status")["counts"]["sightings"]
            want = sum(v for k, v in m.items()
                       if k.startswith("tes_exchange_messages_total"))
            kept = sum(m.get(k, 0) for k in ("tes_sightings_untrusted_total",
                                             "tes_sightings_capped_total",
                                             "tes_sightings_limited_total",
                                             "tes_sightings_dropped_total"))
            return got >= want - kept
        self.wait(sent_all, "tescontrol to have every sighting")
        self.fence()

    # -- SMTP ---------------------------------------------------------------
    def send(self, msg, source="127.0.0.1"):
        """One message; (where, code, text): where is 'mail' for a refusal at
        MAIL FROM, 'data' for one at the end of the data, '' for a 250."""
        before = self.spooled()
        try:
            with smtplib.SMTP("127.0.0.1", self.gw.port, timeout=15,
                              source_address=(source, 0)) as s:
                s.ehlo("ex.contoso.local")
                s.sendmail("grace.okafor@contoso.com", ["ian.hughes@example.net"], msg)
        except smtplib.SMTPSenderRefused as e:
            return "mail", str(e.smtp_code), e.smtp_error.decode()
        except smtplib.SMTPDataError as e:
            return "data", str(e.smtp_code), e.smtp_error.decode()
        assert self.spooled() == before + 1, "a 250 without a spooled message"
        return "", "250", ""

    def spooled(self):
        new = os.path.join(self.gw.spool, "new")
        return len([n for n in os.listdir(new) if n.endswith(".eml")]) \
            if os.path.isdir(new) else 0


def run(test_classes):
    if len(sys.argv) < 2:
        print(f"usage: {sys.argv[0]} TESGATE", file=sys.stderr)
        sys.exit(2)
    suite = unittest.TestSuite()
    for c in test_classes:
        c.TESGATE = sys.argv[1]
        suite.addTests(unittest.defaultTestLoader.loadTestsFromTestCase(c))
    ok = unittest.TextTestRunner(verbosity=2).run(suite).wasSuccessful()
    sys.exit(0 if ok else 1)
