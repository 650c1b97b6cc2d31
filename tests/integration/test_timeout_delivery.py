#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""A timeout while a message is being delivered, on kernel sockets: the
reply still goes out (issue 14, item 5).

tesgate relays to a scripted backend (test_relay.FakeBackend) that holds its
final reply until tesgate has logged the session timeout of the client's
connection; only then does it answer 250.  (The idle timeout cannot fire
there: relay_data_timeout must be below idle_timeout, so the verdict always
comes first.)  The client must receive that 250, exactly once, and then the
connection closes.  A client that gets no reply does what an MTA does: it
sends the message again on a new connection; so the backend holding more
than one copy is the duplicate this is about.

No wall-clock threshold: the backend waits for tesgate's own log line, and
every wait is bounded.

usage: test_timeout_delivery.py PATH-TO-TESGATE
"""
import os
import re
import socket
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_harness import Client, Gateway, run  # noqa: E402
from test_relay import FakeBackend, message  # noqa: E402

WAIT = 30.0


class TimeoutDuringDelivery(unittest.TestCase):
    binary = None

    def setUp(self):
        self.backend = FakeBackend()
        self.release = threading.Event()
        self.backend.final_reply = self.held_reply
        self.gw = None

    def held_reply(self, data):
        # Called on the backend's thread with the content read: hold the
        # 250 until the test saw the timeout happen (bounded).
        self.release.wait(WAIT)
        return "250 2.0.0 Ok: queued as FAKE%d" % (len(self.backend.messages) + 1)

    def tearDown(self):
        self.release.set()
        try:
            if self.gw:
                self.gw.stop_clean()
        finally:
            if self.gw:
                self.gw.close()
            self.backend.close()

    def start(self, **conf):
        settings = {"delivery": "smtp", "relay_host": "127.0.0.1",
                    "relay_port": str(self.backend.port), "log_level": "debug",
                    "control_socket": ""}
        settings.update(conf)
        self.gw = Gateway(self.binary, settings)

    def send_once(self, msg):
        """One attempt, as an MTA makes it: the final reply, or None when
        the connection ended without one."""
        c = Client(self.gw.port, timeout=WAIT)
        try:
            self.assertEqual(c.reply()[0], 220)
            c.send(b"EHLO mta.example.org\r\n")
            self.assertEqual(c.reply()[0], 250)
            c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
            self.assertEqual(c.reply()[0], 250)
            self.assertEqual(c.reply()[0], 250)
            self.assertEqual(c.reply()[0], 354)
            c.send(msg.replace(b"\r\n.", b"\r\n..") + b".\r\n")
            port = c.sock.getsockname()[1]
            # the backend holds the 250 until tesgate timed the session out
            self.assertTrue(self.gw.wait_for(lambda: self.backend.data_arrived.is_set(), WAIT),
                            "the backend never got the content")
            pat = re.compile(r"timeout peer=127\.0\.0\.1:%d %s" % (port, self.kind))
            self.assertTrue(self.gw.wait_for(lambda: pat.search(self.gw.log_text()), WAIT),
                            "no %s timeout logged:\n%s" % (self.kind, self.gw.log_text()[-3000:]))
            self.release.set()
            try:
                code, lines = c.reply()
            except (EOFError, ConnectionResetError, socket.timeout):
                return None
            # nothing after it but the close
            self.assertTrue(c.closed(), "the connection stayed open after the verdict")
            return code, lines
        finally:
            c.close()

    def deliver_like_an_mta(self, msg):
        """Send until a final reply comes (at most twice); the replies."""
        replies = []
        for attempt in range(2):
            r = self.send_once(msg)
            if r is not None:
                replies.append(r)
                break
            self.backend.data_arrived.clear()
            self.release.clear()
        return replies

    def check_once(self, tag):
        msg = message(tag.encode())
        replies = self.deliver_like_an_mta(msg)
        self.assertEqual(len(replies), 1, "no final reply on the first try")
        code, lines = replies[0]
        self.assertEqual(code, 250, lines)
        self.assertIn("queued as FAKE1", lines[-1])
        self.assertTrue(self.backend.wait_for(lambda: len(self.backend.messages) >= 1))
        self.assertEqual(len(self.backend.messages), 1, "the message was relayed twice")
        self.assertEqual(self.backend.messages[0]["data"], msg)

    def test_session_timeout_during_delivery(self):
        self.kind = "session"
        self.start(session_timeout="2", idle_timeout="90", relay_data_timeout="30")
        self.check_once("session-timeout")


if __name__ == "__main__":
    sys.exit(run(sys.argv, [TimeoutDuringDelivery]))
