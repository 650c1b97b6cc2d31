# SPDX-License-Identifier: BSD-3-Clause
"""tesgate's Prometheus endpoint: scraped directly after known traffic
(exact counter values, bytes included; `promtool check metrics` on the
text), and scraped by a real Prometheus server whose HTTP API must show the
counters moved exactly as the traffic says.

Usage: test_gateway_metrics.py PATH-TO-TESGATE.  Exit 77 (skipped) when the
prometheus binary is missing and everything else passed; the promtool check
is skipped without promtool."""
import os
import shutil
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_harness import Client, Gateway, run  # noqa: E402
from prom_harness import (PROMETHEUS, PROMTOOL, WAIT, RealPrometheusMixin,  # noqa: E402
                          free_port, http_get, parse_metrics)

HERE = os.path.dirname(os.path.abspath(__file__))
EX2016 = os.path.join(HERE, "..", "data", "headers", "ex2016-tls.hdr")
PLAIN = 3       # plain messages, one session
PER_SOURCE = 3  # max_connections_per_source: the next one is refused


class Counted(Client):
    """A raw client that counts the octets each way, so the test knows
    exactly what the gateway's byte counters must say."""

    def __init__(self, port):
        super().__init__(port)
        self.sent = 0
        self.got = 0

    def send(self, data):
        self.sent += len(data)
        super().send(data)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; have %r" % self.buf)
            self.got += len(chunk)
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line.decode("utf-8", "replace")

    def cmd(self, line):
        self.send(line.encode() + b"\r\n")
        return self.reply()[0]

    def drain(self):
        """Read to EOF (the gateway closed), counting what arrives."""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return
            self.got += len(chunk)


class Traffic:
    """Known traffic and what it must leave in the counters."""

    def __init__(self, port):
        self.port = port
        self.sent = 0
        self.got = 0

    def done(self, c):
        c.drain()
        c.close()
        self.sent += c.sent
        self.got += c.got

    def message(self, c, body):
        self.testcase.assertEqual(c.cmd("MAIL FROM:<a@example.org>"), 250)
        self.testcase.assertEqual(c.cmd("RCPT TO:<b@example.net>"), 250)
        self.testcase.assertEqual(c.cmd("DATA"), 354)
        c.send(body + b".\r\n")
        self.testcase.assertEqual(c.reply()[0], 250)

    def run(self, testcase):
        self.testcase = testcase
        # PLAIN plain messages in one session.
        c = Counted(self.port)
        testcase.assertEqual(c.reply()[0], 220)
        testcase.assertEqual(c.cmd("EHLO client.example.org"), 250)
        for i in range(PLAIN):
            self.message(c, b"From: a@example.org\r\nSubject: plain %d\r\n\r\nbody\r\n" % i)
        testcase.assertEqual(c.cmd("QUIT"), 221)
        self.done(c)
        # One Exchange 2016 message.
        with open(EX2016, "rb") as f:
            hdr = f.read()
        c = Counted(self.port)
        testcase.assertEqual(c.reply()[0], 220)
        testcase.assertEqual(c.cmd("EHLO ex16.contoso.com"), 250)
        self.message(c, hdr + b"Body of a simulated Exchange message.\r\n")
        testcase.assertEqual(c.cmd("QUIT"), 221)
        self.done(c)
        # A refused command: no message, no verdict, only its octets.
        c = Counted(self.port)
        testcase.assertEqual(c.reply()[0], 220)
        testcase.assertEqual(c.cmd("FROB the gateway"), 500)
        testcase.assertEqual(c.cmd("QUIT"), 221)
        self.done(c)
        # PER_SOURCE connections held open; one more is refused by source.
        held = []
        for _ in range(PER_SOURCE):
            h = Counted(self.port)
            testcase.assertEqual(h.reply()[0], 220)
            held.append(h)
        r = Counted(self.port)
        code, _ = r.reply()
        testcase.assertEqual(code, 421)
        # The refusal line is written before the connection exists for the
        # byte counters: it is not counted.
        r.drain()
        r.close()
        for h in held:
            testcase.assertEqual(h.cmd("QUIT"), 221)
            self.done(h)

    def expected(self):
        sessions = 3 + PER_SOURCE
        return {
            "tes_connections_accepted_total": sessions,
            'tes_connections_refused_total{reason="global"}': 0,
            'tes_connections_refused_total{reason="source"}': 1,
            'tes_connections_refused_total{reason="app"}': 0,
            "tes_connections_early_dropped_total": 0,
            "tes_connections_open": 0,
            "tes_smtp_sessions_total": sessions,
            # EHLO, MAIL/RCPT/DATA per message, QUIT; EHLO MAIL RCPT DATA QUIT;
            # FROB QUIT; QUIT on each held connection
            "tes_smtp_commands_total": (2 + 3 * PLAIN) + 5 + 2 + PER_SOURCE,
            # greetings and the 2xx above; 354 per DATA; the FROB's 500
            'tes_smtp_replies_total{class="2xx"}': (3 + 3 * PLAIN) + 6 + 2 + 2 * PER_SOURCE,
            'tes_smtp_replies_total{class="3xx"}': PLAIN + 1,
            'tes_smtp_replies_total{class="4xx"}': 0,
            'tes_smtp_replies_total{class="5xx"}': 1,
            'tes_messages_total{outcome="accepted"}': PLAIN + 1,
            'tes_messages_total{outcome="refused"}': 0,
            'tes_exchange_messages_total{family="2016"}': 1,
            'tes_exchange_messages_total{family="2019"}': 0,
            "tes_non_exchange_messages_total": PLAIN,
            # No control plane: nothing is decided.
            'tes_enforcement_verdicts_total{at="mail",action="accept"}': 0,
            'tes_enforcement_verdicts_total{at="headers",action="block"}': 0,
            'tes_deliveries_total{backend="spool",outcome="stored"}': PLAIN + 1,
            'tes_deliveries_total{backend="spool",outcome="failed"}': 0,
            'tes_delivery_duration_seconds_bucket{le="+Inf"}': PLAIN + 1,
            "tes_delivery_duration_seconds_count": PLAIN + 1,
            'tes_tls_handshakes_total{result="full"}': 0,
            "tes_control_connected": 0,
            "tes_sightings_sent_total": 0,
            "tes_sightings_coalesced_total": 0,
            "tes_sightings_dropped_total": 0,
            'tes_enforcement_table_entries{table="servers"}': 0,
            "tes_received_bytes_total": self.sent,
            "tes_sent_bytes_total": self.got,
        }


class MetricsCase(unittest.TestCase):
    binary = None

    def setUp(self):
        self.port = free_port()
        self.gw = Gateway(self.binary, conf={
            "metrics_listen": f"127.0.0.1:{self.port}",
            "control_socket": "",
            "max_connections_per_source": str(PER_SOURCE),
        })
        self.addCleanup(self._cleanup)
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        self.assertTrue(self.gw.wait_for(lambda: "metrics: http://" in self.gw.log_text()),
                        self.gw.log_text())

    def _cleanup(self):
        rc = self.gw.stop()
        log = self.gw.log_text()
        self.gw.close()
        self.assertEqual(rc, 0, log)
        for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            self.assertNotIn(bad, log)

    def scrape(self):
        status, ctype, text = http_get(self.url)
        self.assertEqual(status, 200)
        self.assertEqual(ctype, "text/plain; version=0.0.4; charset=utf-8")
        return text

    def wait_metric(self, key, want):
        deadline = time.monotonic() + WAIT
        got = None
        while time.monotonic() < deadline:
            got = parse_metrics(self.scrape()).get(key)
            if got == want:
                return
            time.sleep(0.05)
        self.fail(f"{key} is {got}, want {want}")


class Scrape(MetricsCase):
    def test_exact_values_and_format(self):
        before = parse_metrics(self.scrape())
        for key, value in before.items():
            if key.startswith("tes_tesgate_build_info"):
                self.assertEqual(value, 1)
            else:
                self.assertEqual(value, 0, key)
        t = Traffic(self.gw.port)
        t.run(self)
        # Closes are counted on the worker after the client saw EOF.
        self.wait_metric("tes_connections_open", 0)
        text = self.scrape()
        got = parse_metrics(text)
        for key, want in t.expected().items():
            self.assertEqual(got.get(key), want, key)
        self.assertEqual(len(self.gw.messages()), PLAIN + 1)
        # Every spooled message's latency is in some bucket, and the buckets
        # are cumulative.
        buckets = [(k, v) for k, v in got.items()
                   if k.startswith("tes_delivery_duration_seconds_bucket")]
        self.assertEqual(len(buckets), 15)
        self.assertEqual([v for _, v in buckets], sorted(v for _, v in buckets))
        self.assertGreater(got["tes_delivery_duration_seconds_sum"], 0)

        status = None
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/nope", timeout=5)
        except urllib.error.HTTPError as e:
            status = e.code
        self.assertEqual(status, 404)

        if not PROMTOOL:
            sys.stderr.write("promtool not found: format check skipped\n")
            return
        p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_port_in_use_runs_without_metrics(self):
        g2 = Gateway(self.binary, conf={"metrics_listen": f"127.0.0.1:{self.port}",
                                        "control_socket": ""})
        try:
            self.assertTrue(g2.wait_for(lambda: "running without metrics" in g2.log_text()),
                            g2.log_text())
            c = Client(g2.port)
            self.assertEqual(c.reply()[0], 220)
            c.close()
            self.assertEqual(g2.stop(), 0)
        finally:
            g2.close()


class RealPrometheus(RealPrometheusMixin, MetricsCase):
    def setUp(self):
        super().setUp()
        self.start_prometheus("tesgate", self.port)

    def test_prometheus_sees_the_traffic(self):
        self.wait_value('up{job="tesgate"}', 1)
        self.wait_value("tes_smtp_sessions_total", 0)
        t = Traffic(self.gw.port)
        t.run(self)
        self.wait_metric("tes_connections_open", 0)
        for key, want in t.expected().items():
            self.wait_value(key, want)
        # The increase Prometheus computes over the test's window is the
        # traffic itself (the counters started at 0 inside that window).
        res = self.query("max_over_time(tes_messages_total{outcome=\"accepted\"}[5m])"
                         " - min_over_time(tes_messages_total{outcome=\"accepted\"}[5m])")
        self.assertEqual([v for _, v in res], [PLAIN + 1])


class Enforcement(unittest.TestCase):
    """With tescontrol (test clock): the control-plane gauges, sightings,
    table sizes and the verdict counters, for one out-of-date Exchange 2016
    server sending one message over its tenant's connector."""
    binary = None

    def setUp(self):
        import ctl_harness as ch
        if not os.access(ch.TESCONTROL, os.X_OK) and not shutil.which(ch.TESCONTROL):
            self.skipTest("TESCONTROL is not set to a tescontrol binary")
        os.environ["TES_ALLOW_TEST_CLOCK"] = "1"
        self.tc = ch.Tescontrol(test_clock=ch.T0, conf={"metrics_listen": ""}).start()
        self.addCleanup(self.tc.cleanup)
        self.tc.ctl("tenant", "add", 1, "Contoso", "--connector", "127.0.0.0/8")
        self.port = free_port()
        self.gw = Gateway(self.binary, conf={
            "control_socket": self.tc.gw_sock,
            "follow_test_clock": "yes",
            "metrics_listen": f"127.0.0.1:{self.port}",
        })
        self.addCleanup(self._cleanup)
        self.assertTrue(self.gw.wait_for(lambda: "control: synchronised" in self.gw.log_text()),
                        self.gw.log_text())

    def _cleanup(self):
        rc = self.gw.stop()
        log = self.gw.log_text()
        self.gw.close()
        self.assertEqual(rc, 0, log)
        for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            self.assertNotIn(bad, log)

    def metrics(self):
        return parse_metrics(http_get(f"http://127.0.0.1:{self.port}/metrics")[2])

    def wait_metric(self, key, want):
        deadline = time.monotonic() + WAIT
        got = None
        while time.monotonic() < deadline:
            got = self.metrics().get(key)
            if got == want:
                return
            time.sleep(0.05)
        self.fail(f"{key} is {got}, want {want}\n{self.gw.log_text()[-4000:]}")

    def send_exchange(self, n):
        """n messages from the out-of-date Exchange 2016 server on one
        connection, each accepted (Traffic checks the replies)."""
        with open(EX2016, "rb") as f:
            msg = f.read() + b"Body of a simulated Exchange message.\r\n"
        c = Counted(self.gw.port)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.cmd("EHLO ex16-02.contoso.local"), 250)
        t = Traffic(self.gw.port)
        t.testcase = self
        for _ in range(n):
            t.message(c, msg)
        self.assertEqual(c.cmd("QUIT"), 221)
        t.done(c)

    def test_verdicts_and_control_plane(self):
        m = self.metrics()
        self.assertEqual(m["tes_control_configured"], 1)
        self.assertEqual(m["tes_control_connected"], 1)
        self.assertEqual(m["tes_control_synced"], 1)
        self.assertEqual(m['tes_enforcement_table_entries{table="tenants"}'], 1)
        self.send_exchange(1)
        # Reporting stage: the message is accepted, and its sighting makes
        # tescontrol send the server back into the gateway's table.
        self.wait_metric("tes_sightings_sent_total", 1)
        self.wait_metric('tes_enforcement_table_entries{table="servers"}', 1)
        m = self.metrics()
        self.assertEqual(m['tes_enforcement_verdicts_total{at="headers",action="accept"}'], 1)
        for a in ("throttle", "block", "drop"):
            self.assertEqual(m['tes_enforcement_verdicts_total{at="headers",action="%s"}' % a], 0)
            self.assertEqual(m['tes_enforcement_verdicts_total{at="mail",action="%s"}' % a], 0)
        self.assertEqual(m['tes_exchange_messages_total{family="2016"}'], 1)
        self.assertEqual(m['tes_messages_total{outcome="accepted"}'], 1)
        self.assertEqual(m["tes_sightings_dropped_total"], 0)
        self.assertEqual(m["tes_control_connects_total"], 1)

    def test_sightings_coalesced_and_every_message_counted(self):
        """Identical sightings within a second go to tescontrol as one with a
        count: the gateway sends fewer than it saw, and tescontrol still
        counts every message."""
        n = 30
        self.send_exchange(n)
        deadline = time.monotonic() + WAIT
        counted = None
        while time.monotonic() < deadline:
            counted = self.tc.ctl("status")["counts"]["sightings"]
            if counted == n:
                break
            time.sleep(0.1)
        self.assertEqual(counted, n, self.gw.log_text()[-4000:])
        m = self.metrics()
        self.assertEqual(m['tes_exchange_messages_total{family="2016"}'], n)
        sent, held = m["tes_sightings_sent_total"], m["tes_sightings_coalesced_total"]
        self.assertEqual(m["tes_sightings_dropped_total"], 0)
        # every message was either sent or counted into one that was
        self.assertGreaterEqual(sent, 1)
        self.assertGreater(held, 0, f"sent {sent}, coalesced {held}")
        self.assertLess(sent, n)
        # tescontrol heard of the server at the first message, not a second later
        self.assertEqual(self.tc.ctl("status")["counts"]["first_detections"], 1)


if __name__ == "__main__":
    rc = run(sys.argv, [Scrape, Enforcement, RealPrometheus])
    if rc == 0 and not PROMETHEUS:
        print("SKIP: the prometheus binary is missing (apt-get install prometheus); the"
              " real-Prometheus test did not run")
        rc = 77
    sys.exit(rc)
