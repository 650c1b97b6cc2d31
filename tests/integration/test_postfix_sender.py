#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""A real Postfix as the SENDING MTA relaying through tesgate.

A temporary Postfix instance (its own config, queue and data directories,
smtpd on a free loopback port, relayhost = tesgate, short retry times) sends
a simulated Exchange 2016 message (tests/data/headers/ex2016-tls.hdr) through
tesgate, which follows tescontrol's test clock:

- stage 1 (report only): Postfix delivers it into tesgate's spool;
- a throttle window (day 30+, minute 0-4): tesgate answers 450, the message
  stays in Postfix's queue; once the clock leaves the window a forced retry
  (postqueue -f) delivers it into the spool;
- stage 8 (day 90+): tesgate answers 550 5.7.230; Postfix bounces the message
  (status=bounced) and its DSN reaches the sender's local mailbox.

Postfix adds its own Received line on top of the Exchange hops; detection
skips that non-Microsoft hop and still finds the Exchange server.

Skipped (exit 77) without Postfix or without root.
usage: test_postfix_sender.py TESGATE  (TESCONTROL, TESCTL, TES_SRCDIR in env)
"""
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ctl_harness as ch  # noqa: E402
from gateway_harness import Gateway, run  # noqa: E402
from postfix_harness import IS_ROOT, POSTFIX, TempPostfix, run_quiet  # noqa: E402

SENDMAIL = "/usr/sbin/sendmail"
POSTQUEUE = shutil.which("postqueue") or "/usr/sbin/postqueue"

DAY = ch.DAY
MIN = 60
T0 = ch.T0
TENANT = 1
SERVER = "ex16-02.contoso.local"
HEADERS = os.path.join(ch.SRCDIR, "tests", "data", "headers")
WAIT = 40.0  # bounded wait for a queue run / retry

THROTTLE = "450 4.7.230 Connecting Exchange server version is out-of-date"
BLOCK = "550 5.7.230 Connecting Exchange server version is out-of-date"


def exchange_message(tag):
    with open(os.path.join(HEADERS, "ex2016-tls.hdr"), "rb") as f:
        hdr = f.read()
    # a unique Message-ID per message so the spool copies can be told apart
    hdr = re.sub(rb"Message-ID: <[^>]*>", b"Message-ID: <" + tag + b"@EX16-01.contoso.local>",
                 hdr, count=1)
    return hdr.replace(b"\r\n", b"\n") + b"Body of " + tag + b".\n"


class SendingPostfix(TempPostfix):
    """Postfix of its own: relays everything to [127.0.0.1]:relay_port; the
    sender's domain (sender.test) is delivered locally (virtual agent, a
    Maildir) so that bounces stay on this machine."""

    def __init__(self, relay_port):
        super().__init__("tesgate-pfsend-", "sender.test", "sender.test", f"""mydomain = sender.test
myorigin = sender.test
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{relay_port}
smtp_tls_security_level = none
smtp_connect_timeout = 3s
smtp_helo_timeout = 10s
smtp_connection_cache_on_demand = no
queue_run_delay = 2s
minimal_backoff_time = 2s
maximal_backoff_time = 4s
maximal_queue_lifetime = 1h
bounce_queue_lifetime = 1h
smtputf8_enable = no
""", pickup_wakeup=1)

    def sendmail(self, msg, sender="grace@sender.test", rcpt="ian.hughes@example.net"):
        p = run_quiet([SENDMAIL, "-C", self.etc, "-f", sender, "-i", rcpt], data=msg)
        if p.returncode != 0:
            raise RuntimeError("sendmail failed: %r %r" % (p.stdout, p.stderr))

    def queue(self):
        """[queue entry dict] from postqueue -j."""
        p = run_quiet([POSTQUEUE, "-c", self.etc, "-j"])
        out = []
        for line in p.stdout.decode("utf-8", "replace").splitlines():
            line = line.strip()
            if line:
                out.append(json.loads(line))
        return out

    def flush(self):
        run_quiet([POSTQUEUE, "-c", self.etc, "-f"])

    def mailbox(self):
        return self.messages(("new", "cur"))


@unittest.skipIf(POSTFIX is None, "Postfix is not installed (apt-get install postfix)")
@unittest.skipIf(not IS_ROOT, "a Postfix instance starts as root")
class PostfixSender(unittest.TestCase):
    binary = None

    def setUp(self):
        os.environ["TES_ALLOW_TEST_CLOCK"] = "1"
        self.tc = ch.Tescontrol(test_clock=T0).start()
        self.gw = None
        self.pf = None
        try:
            self.tc.ctl("tenant", "add", TENANT, "Contoso", "--connector", "127.0.0.0/8")
            self.gw = Gateway(self.binary, conf={
                "control_socket": self.tc.gw_sock,
                "follow_test_clock": "yes",
                "gateway_id": "gw-postfix-sender",
                "metrics_listen": "127.0.0.1:0",
            })
            self.wait_until(lambda: "control: synchronised" in self.gw.log_text(), 15,
                            "tesgate did not synchronise with tescontrol")
            self.pf = SendingPostfix(self.gw.port)
        except Exception:
            self.tearDown()
            raise

    def tearDown(self):
        try:
            if self.gw:
                rc = self.gw.stop()
                log = self.gw.log_text()
                for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
                    self.assertNotIn(bad, log, log[-5000:])
                self.assertEqual(rc, 0, log[-5000:])
        finally:
            if self.pf:
                self.pf.stop()
            if self.gw:
                self.gw.close()
            self.tc.cleanup()

    def wait_until(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.1)
        if not pred():
            self.fail(what + "\n--- postfix log:\n" + (self.pf.log()[-4000:] if self.pf else "") +
                      "\n--- tesgate log:\n" + self.gw.log_text()[-4000:])

    def spooled(self, tag):
        """Spool copies whose Message-ID carries tag."""
        return [eml for _, eml, _ in self.gw.messages()
                if b"<" + tag + b"@EX16-01.contoso.local>" in eml]

    def test_queue_retry_meets_enforcement(self):
        pf = self.pf
        # (a) stage 1: report only; delivered, Exchange server detected behind
        # Postfix's own Received line
        t1 = T0 + 3 * MIN
        self.tc.set_clock(t1)
        pf.sendmail(exchange_message(b"stage1"))
        self.wait_until(lambda: self.spooled(b"stage1"), WAIT, "stage 1 message not delivered")
        [eml] = self.spooled(b"stage1")
        # Postfix's own hop on top (sendmail injection), then the Exchange hops
        self.assertTrue(eml.startswith(b"Received: by sender.test (Postfix"), eml[:400])
        self.assertIn(b"id 15.1.2507.35;", eml)
        self.wait_until(lambda: self.tc.server(TENANT, SERVER) is not None, 15,
                        "Exchange server behind Postfix not detected")
        self.assertEqual(self.tc.server(TENANT, SERVER)["build"], "15.1.2507.35")
        self.assertIn("status=sent", pf.log())

        # (b) a throttle window: 450, the message stays queued in Postfix
        hour30 = T0 + 30 * DAY + 3600
        self.tc.set_clock(hour30 + 1 * MIN)
        self.gw.wait_generation(self.tc.generation())  # the clock reached the gateway
        pf.sendmail(exchange_message(b"throttled"))
        self.wait_until(lambda: THROTTLE in pf.log(), WAIT, "no 450 from tesgate in Postfix's log")
        self.wait_until(lambda: any(r.get("delay_reason") and "4.7.230" in r["delay_reason"]
                                    for q in pf.queue() for r in q.get("recipients", [])),
                        WAIT, "the throttled message is not deferred in Postfix's queue")
        self.assertEqual(self.spooled(b"throttled"), [])
        self.assertRegex(pf.log(), r"status=deferred \(host 127\.0\.0\.1\[127\.0\.0\.1\] "
                                   r"said: 450 4\.7\.230 ")
        # out of the window: Postfix's retry (forced) delivers it
        self.tc.set_clock(hour30 + 6 * MIN)
        self.gw.wait_generation(self.tc.generation())
        pf.flush()
        self.wait_until(lambda: self.spooled(b"throttled"), WAIT,
                        "the deferred message was not delivered on retry")
        self.wait_until(lambda: pf.queue() == [], WAIT, "Postfix's queue did not drain")

        # (c) stage 8 (day 90 on): 550 5.7.230, Postfix bounces with a DSN
        self.tc.set_clock(T0 + 91 * DAY + 10 * MIN)
        self.gw.wait_generation(self.tc.generation())
        pf.sendmail(exchange_message(b"blocked"))
        self.wait_until(lambda: re.search(r"status=bounced \(host 127\.0\.0\.1\[127\.0\.0\.1\] "
                                          r"said: 550 5\.7\.230 ", pf.log()), WAIT,
                        "Postfix did not bounce the blocked message")
        self.assertIn(BLOCK, pf.log())
        self.assertIn("sender non-delivery notification", pf.log())
        self.wait_until(lambda: any(b"5.7.230" in m for m in pf.mailbox()), WAIT,
                        "the DSN did not reach the sender's mailbox")
        [dsn] = [m for m in pf.mailbox() if b"5.7.230" in m]
        self.assertIn(b"Undelivered Mail Returned to Sender", dsn)
        self.assertIn(b"Status: 5.7.230", dsn)
        self.assertEqual(self.spooled(b"blocked"), [])
        self.wait_until(lambda: pf.queue() == [], WAIT, "Postfix's queue did not drain")


if __name__ == "__main__":
    if POSTFIX is None or not IS_ROOT:
        print("SKIP: " + ("Postfix is not installed" if POSTFIX is None else "not root"))
        sys.exit(77)
    sys.exit(run(sys.argv, [PostfixSender]))
