# SPDX-License-Identifier: BSD-3-Clause
"""Notices before enforcement, end to end, on tescontrol's test clock.

A local HTTP receiver (the tenants' webhook) and a temporary Postfix (the
SMTP relay, delivering to a Maildir) stand in for the tenants' contacts.

- exact notices on exact days: a server first seen on 2024-01-01 is
  throttled from 2024-01-31 and blocked from 2024-03-01; with 7 days'
  notice the webhook and the mail get the throttle notice on day 23 and
  not before, the block notice on day 53 and not before, and the
  resolution when a compliant build is seen; the body's fields, its
  HMAC-SHA256 signature, the id in the header, the body and the mail;
- a receiver that is down then up: the notice is tried again with backoff
  and delivered once it is back, also when tescontrol is killed (-9) and
  restarted in between (the journal is durable), with the id it had;
- a receiver that takes the notice but answers too late: it gets it again,
  with the same id and the same body (at least once, duplicates marked).

Usage: test_notices.py  (TESCONTROL, TESCTL, TES_SRCDIR in the environment).
The mail test needs root and postfix (skipped otherwise).
"""
import email
import email.policy
import hashlib
import hmac
import http.server
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ctl_harness as ch  # noqa: E402
import postfix_harness as ph  # noqa: E402

DAY = ch.DAY
T0 = ch.T0
SECRET = "s3cret, never shown"
WAIT = 30.0


class Receiver:
    """A webhook: records every POST; down() closes its port (connections
    refused), up() opens it again; slow_once makes it take the next POST and
    answer only after `delay` seconds."""

    def __init__(self):
        self.port = ph.free_port()
        self.posts = []
        self.lock = threading.RLock()
        self.slow_once = False
        self.delay = 0.0
        self.server = None
        self.thread = None
        self.up()

    def up(self):
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with rec.lock:
                    rec.posts.append((self.path, dict(self.headers), body))
                    slow, rec.slow_once = rec.slow_once, False
                if slow:
                    time.sleep(rec.delay)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def down(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
        # nothing listens now: a connection is refused
        with self.assertion_socket() as s:
            assert s.connect_ex(("127.0.0.1", self.port)) != 0

    @staticmethod
    def assertion_socket():
        s = socket.socket()
        s.settimeout(2)
        return s

    def bodies(self):
        with self.lock:
            return [(h, json.loads(b), b) for _, h, b in self.posts]

    def wait(self, n, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.posts) >= n:
                    return self.bodies()
            time.sleep(0.05)
        raise AssertionError(f"the webhook got {len(self.posts)} notices, not {n}")

    def close(self):
        if self.server:
            try:
                self.server.shutdown()
                self.server.server_close()
            except OSError:
                pass


def header(h, name):
    for k, v in h.items():
        if k.lower() == name.lower():
            return v
    return None


class Notices(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="tes-notices-")
        self.secret_file = os.path.join(self.tmp, "secret")
        with open(self.secret_file, "w") as f:
            f.write(SECRET + "\n")
        self.hook = Receiver()
        self.postfix = None
        self.tc = None

    def tearDown(self):
        try:
            if self.tc:
                self.tc.cleanup()
        finally:
            self.hook.close()
            if self.postfix:
                self.postfix.stop()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self, **conf):
        settings = {"notice_retry_min": 1, "notice_retry_max": 2, "notice_timeout": 2,
                    "notice_mail_from": "tescontrol@gw.tesgate.test"}
        settings.update(conf)
        self.tc = ch.Tescontrol(test_clock=T0, conf=settings).start()
        self.gw = ch.FakeGateway(self.tc.gw_sock)
        return self.tc

    def journal(self, tenant=None):
        args = ["notice", "list"] + (["--tenant", tenant] if tenant else [])
        return self.tc.ctl(*args)["notices"]

    def check_notice(self, h, body, raw, kind, tenant, name, server, date, due):
        self.assertEqual(body["kind"], kind)
        self.assertEqual(body["tenant"], tenant)
        self.assertEqual(body["tenant_name"], name)
        self.assertEqual(body["server"], server)
        self.assertEqual(body["date"], date + "T00:00:00Z")
        self.assertEqual(body["due"], due + "T00:00:00Z")
        self.assertEqual(header(h, "X-Tesgate-Notice-Id"), body["id"])
        self.assertEqual(header(h, "X-Tesgate-Notice-Kind"), kind)
        self.assertEqual(header(h, "Content-Type"), "application/json")
        want = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
        self.assertEqual(header(h, "X-Tesgate-Signature-256"), "sha256=" + want)

    def test_exact_days_webhook_and_mail(self):
        if not (ph.IS_ROOT and ph.POSTFIX):
            self.skipTest("SKIP: needs root and postfix (a temporary Postfix relay)")
        self.postfix = ph.TempPostfix("tes-notice-pf-", "relay.tesgate.test", "bear.test", "")
        tc = self.start(notice_smtp_relay=f"127.0.0.1:{self.postfix.port}")
        tc.ctl("tenant", "add", 7, "Bear", "--connector", "198.18.7.0/24")
        c = tc.ctl("notice", "set", 7, "--days", 7, "--webhook",
                   f"http://127.0.0.1:{self.hook.port}/hook", "--secret-file",
                   self.secret_file, "--mail", "it@bear.test")
        self.assertEqual(c["days_before"], 7)
        self.assertNotIn(SECRET, json.dumps(tc.ctl("notice", "show", 7)))
        self.gw.sighting(7, "EX1.bear.local", "15.1.2507.35", source="198.18.7.10")

        tc.set_clock(T0 + 23 * DAY - 1)
        self.assertEqual(self.journal(), [])
        tc.set_clock(T0 + 23 * DAY)
        got = self.hook.wait(1)
        self.check_notice(*got[0], "throttle", 7, "Bear", "EX1.bear.local", "2024-01-31",
                          "2024-01-24")
        self.assertEqual(got[0][1]["days_before"], 7)
        self.assertEqual(got[0][1]["status"], "Reporting")
        throttle_id = got[0][1]["id"]
        j = self.journal()
        self.assertEqual([(n["kind"], n["date"][:10], n["due"][:10]) for n in j],
                         [("throttle", "2024-01-31", "2024-01-24")])
        self.assertEqual(j[0]["id"], throttle_id)

        # the mail through the relay: the same notice
        deadline = time.monotonic() + WAIT
        while not self.postfix.messages() and time.monotonic() < deadline:
            time.sleep(0.1)
        mails = self.postfix.messages()
        self.assertEqual(len(mails), 1, self.postfix.log()[-3000:])
        m = email.message_from_bytes(mails[0], policy=email.policy.default)
        self.assertEqual(m["X-Tesgate-Notice-Id"], throttle_id)
        self.assertEqual(m["To"], "it@bear.test")
        self.assertEqual(m["Subject"],
                         "[tesgate] EX1.bear.local: will be throttled from 2024-01-31")
        self.assertEqual(m["Message-ID"], f"<{throttle_id}@gw.tesgate.test>")
        text = m.get_content()
        self.assertIn("its mail will be throttled from 2024-01-31 unless it is updated", text)
        self.assertIn(f'"id": "{throttle_id}"', text)
        self.wait_delivered(throttle_id, 2)

        # nothing more until day 53: the block notice is the next one
        tc.set_clock(T0 + 53 * DAY - 1)
        self.assertEqual(len(self.journal()), 1)
        tc.set_clock(T0 + 53 * DAY)
        got = self.hook.wait(2)
        self.assertEqual(len(got), 2)
        self.check_notice(*got[1], "block", 7, "Bear", "EX1.bear.local", "2024-03-01",
                          "2024-02-23")

        # resolved: told at once
        tc.set_clock(T0 + 57 * DAY)
        self.gw.sighting(7, "EX1.bear.local", "15.1.2507.61", cls="compliant",
                         source="198.18.7.10")
        got = self.hook.wait(3)
        self.assertEqual(len(got), 3)
        self.check_notice(*got[2], "resolved", 7, "Bear", "EX1.bear.local", "2024-02-27",
                          "2024-02-27")
        self.assertNotIn("days_before", got[2][1])
        deadline = time.monotonic() + WAIT
        while len(self.postfix.messages()) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        ids = [email.message_from_bytes(x)["X-Tesgate-Notice-Id"]
               for x in self.postfix.messages()]
        self.assertEqual(sorted(ids), sorted(b["id"] for _, b, _ in got))
        # and nothing else came: three posts, three mails
        self.assertEqual(len(self.hook.posts), 3)

    def wait_delivered(self, nid, deliveries):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            n = [x for x in self.journal() if x["id"] == nid]
            if n and [d["state"] for d in n[0]["deliveries"]] == ["delivered"] * deliveries:
                return n[0]
            time.sleep(0.1)
        raise AssertionError(f"notice {nid} not delivered: {self.journal()}")

    def test_down_then_up_across_a_restart(self):
        tc = self.start()
        tc.ctl("tenant", "add", 8, "Fox", "--connector", "198.18.8.0/24")
        tc.ctl("notice", "set", 8, "--webhook", f"http://127.0.0.1:{self.hook.port}/fox",
               "--secret-file", self.secret_file)
        self.gw.sighting(8, "mx.fox.local", "15.1.2507.35", source="198.18.8.10")
        self.hook.down()
        tc.set_clock(T0 + 23 * DAY)
        # tried, refused, tried again with backoff
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            j = self.journal()
            if j and j[0]["deliveries"][0]["attempts"] >= 2:
                break
            time.sleep(0.1)
        d = j[0]["deliveries"][0]
        self.assertEqual(d["state"], "pending")
        self.assertGreaterEqual(d["attempts"], 2)
        self.assertIn("Could", d["last_error"])  # libcurl: "Couldn't connect"
        nid = j[0]["id"]
        self.assertEqual(self.journal(8)[0]["id"], nid)
        # tescontrol dies with the notice undelivered, and comes back
        tc.kill9()
        self.gw.close()
        tc.start()
        self.assertIn("notices: 1 tenant with contacts, 1 notice in the journal, 1 not "
                      "delivered yet", tc.log_text(since_start=True))
        self.hook.up()
        got = self.hook.wait(1)
        self.assertEqual(len(got), 1)
        self.check_notice(*got[0], "throttle", 8, "Fox", "mx.fox.local", "2024-01-31",
                          "2024-01-24")
        self.assertEqual(got[0][1]["id"], nid)
        self.assertEqual(self.wait_delivered(nid, 1)["deliveries"][0]["state"], "delivered")
        # no other notice came of it
        tc.set_clock(T0 + 53 * DAY)
        got = self.hook.wait(2)
        self.assertEqual([b["kind"] for _, b, _ in got], ["throttle", "block"])

    def test_late_answer_is_sent_again_with_the_same_id(self):
        tc = self.start()
        tc.ctl("tenant", "add", 9, "Owl", "--connector", "198.18.9.0/24")
        tc.ctl("notice", "set", 9, "--days", 3, "--webhook",
               f"http://127.0.0.1:{self.hook.port}/owl", "--secret-file", self.secret_file)
        self.gw.sighting(9, "ex.owl.local", "15.1.2507.35", source="198.18.9.10")
        # the receiver takes the first POST but answers after tescontrol's
        # time limit (notice_timeout 2): tescontrol cannot know it arrived
        self.hook.delay = 4.0
        self.hook.slow_once = True
        tc.set_clock(T0 + 27 * DAY)
        got = self.hook.wait(2)
        self.assertEqual(len(got), 2)
        (h1, b1, raw1), (h2, b2, raw2) = got
        self.assertEqual(b1["id"], b2["id"])
        self.assertEqual(raw1, raw2)
        self.assertEqual(header(h1, "X-Tesgate-Signature-256"),
                         header(h2, "X-Tesgate-Signature-256"))
        self.check_notice(h2, b2, raw2, "throttle", 9, "Owl", "ex.owl.local", "2024-01-31",
                          "2024-01-28")
        n = self.wait_delivered(b1["id"], 1)
        self.assertEqual(n["deliveries"][0]["attempts"], 2)


if __name__ == "__main__":
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(
        unittest.TestLoader().loadTestsFromTestCase(Notices))
    ran = result.testsRun - len(result.skipped)
    if result.testsRun and ran == 0:
        sys.exit(77)
    sys.exit(0 if result.wasSuccessful() else 1)
