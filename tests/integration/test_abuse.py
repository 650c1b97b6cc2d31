#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Abuse against tesgate: a legitimate client still gets through.

- 10 000 idle connections (max_connections 20000, no per-source limit):
  every one gets its banner, and a legitimate client's message is accepted.
- slowloris: a command line sent one byte per second, and a DATA trickled a
  line per second, are cut by the session timeout with 421; another client
  is served meanwhile.  A silent client is cut by the idle timeout with 421.
- an oversized command line gets 500 5.5.2, an oversized message 552 5.3.4.
- a flood of connections from one source hits max_connections_per_source
  (421 ... from your address) while a client from another loopback address
  (127.0.0.2) still gets through.

usage: test_abuse.py PATH-TO-TESGATE
"""
import os
import resource
import selectors
import smtplib
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_harness import Client, Gateway, run  # noqa: E402

IDLE_CONNS = 10000
IDLE_BUDGET = 120.0  # seconds for opening them and reading all banners


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def legit_message(tag):
    return (b"From: Legit <legit@example.com>\r\nTo: <rcpt@example.net>\r\n"
            b"Subject: " + tag + b"\r\nMessage-ID: <" + tag + b"@legit.example.com>\r\n\r\n"
            b"A legitimate message.\r\n")


class AbuseBase(unittest.TestCase):
    binary = None

    def tearDown(self):
        gw = getattr(self, "gw", None)
        if gw:
            try:
                gw.stop_clean()
            finally:
                gw.close()

    def legit(self, tag, source=None, timeout=15):
        """A complete transaction; asserts the message reaches the spool."""
        kw = {"source_address": (source, 0)} if source else {}
        with smtplib.SMTP("127.0.0.1", self.gw.port, timeout=timeout, **kw) as s:
            s.ehlo("legit.example.org")
            self.assertEqual(s.sendmail("legit@example.com", ["rcpt@example.net"],
                                        legit_message(tag)), {})
        self.assertTrue(self.gw.wait_for(lambda: any(
            b"<" + tag + b"@legit.example.com>" in eml for _, eml, _ in self.gw.messages())))


class IdleConnections(AbuseBase):
    def test_10k_idle_connections(self):
        limit = raise_nofile()
        if limit < IDLE_CONNS + 200:
            self.skipTest("RLIMIT_NOFILE hard limit %d is below %d" % (limit, IDLE_CONNS + 200))
        self.gw = Gateway(self.binary, {"max_connections": "20000",
                                        "max_connections_per_source": "0",
                                        "workers": "2", "idle_timeout": "600"},
                          preexec_fn=raise_nofile)
        sel = selectors.DefaultSelector()
        socks = []
        start = time.monotonic()
        deadline = start + IDLE_BUDGET
        try:
            for i in range(IDLE_CONNS):
                s = socket.socket()
                s.settimeout(10)
                s.connect(("127.0.0.1", self.gw.port))
                s.setblocking(False)
                socks.append(s)
                sel.register(s, selectors.EVENT_READ)
                self.assertLess(time.monotonic(), deadline, "connecting took too long")
            opened = time.monotonic() - start
            # every connection is served: each reads its 220 banner
            banners = 0
            pending = {s.fileno() for s in socks}
            while pending and time.monotonic() < deadline:
                for key, _ in sel.select(timeout=1.0):
                    data = key.fileobj.recv(512)
                    self.assertTrue(data.startswith(b"220 "), data)
                    sel.unregister(key.fileobj)
                    pending.discard(key.fileobj.fileno())
                    banners += 1
            self.assertEqual(banners, IDLE_CONNS, "not every idle connection got its banner")
            # with 10 000 idle connections open, a legitimate client gets through
            t0 = time.monotonic()
            self.legit(b"legit-10k")
            print("  %d connections opened in %.1f s, banners read by %.1f s, legit "
                  "transaction in %.3f s" % (IDLE_CONNS, opened, time.monotonic() - start,
                                             time.monotonic() - t0))
        finally:
            sel.close()
            for s in socks:
                s.close()


class Slow(AbuseBase):
    def setUp(self):
        self.gw = Gateway(self.binary, {"idle_timeout": "3", "session_timeout": "6",
                                        "max_message_size": "100000"})

    def read_421(self, c, budget):
        """Reads replies until a 421 (bounded); returns its line."""
        deadline = time.monotonic() + budget
        c.sock.settimeout(1.0)
        while time.monotonic() < deadline:
            try:
                code, lines = c.reply()
            except socket.timeout:
                continue
            if code == 421:
                return lines[-1]
        self.fail("no 421 within %.0f s" % budget)

    def trickle(self, c, data, stop):
        for b in data:
            if stop.is_set():
                return
            try:
                c.send(bytes([b]))
            except OSError:
                return
            time.sleep(1.0)

    def test_slowloris_command_line(self):
        c = Client(self.gw.port)
        stop = threading.Event()
        try:
            self.assertEqual(c.reply()[0], 220)
            t = threading.Thread(target=self.trickle, args=(
                c, b"EHLO a-very-long-and-slowly-typed-name.example.org\r\n", stop), daemon=True)
            t.start()
            # others are served meanwhile
            self.legit(b"legit-during-slowloris")
            line = self.read_421(c, 15)
            # the session limit cut it, not the idle one (each byte renews that)
            self.assertIn("4.4.2", line)
            self.assertIn("Session time limit reached", line)
        finally:
            stop.set()
            c.close()

    def test_slowloris_data(self):
        c = Client(self.gw.port)
        stop = threading.Event()
        try:
            self.assertEqual(c.reply()[0], 220)
            c.send(b"EHLO slow.example.org\r\n")
            self.assertEqual(c.reply()[0], 250)
            c.send(b"MAIL FROM:<slow@example.com>\r\n")
            self.assertEqual(c.reply()[0], 250)
            c.send(b"RCPT TO:<rcpt@example.net>\r\n")
            self.assertEqual(c.reply()[0], 250)
            c.send(b"DATA\r\n")
            self.assertEqual(c.reply()[0], 354)
            body = b"Subject: slow\r\n\r\n" + b"x\r\n" * 100
            t = threading.Thread(target=self.trickle, args=(c, body, stop), daemon=True)
            t.start()
            self.legit(b"legit-during-slow-data")
            line = self.read_421(c, 15)
            self.assertIn("Session time limit reached", line)
            # nothing of the trickled message is delivered
            self.assertFalse(any(b"Subject: slow" in eml for _, eml, _ in self.gw.messages()))
        finally:
            stop.set()
            c.close()

    def test_silent_client_idle_timeout(self):
        c = Client(self.gw.port)
        try:
            self.assertEqual(c.reply()[0], 220)
            c.send(b"EHLO quiet.example.org\r\n")
            self.assertEqual(c.reply()[0], 250)
            line = self.read_421(c, 10)
            self.assertIn("4.4.2", line)
            self.assertIn("Idle timeout", line)
            self.legit(b"legit-after-idle")
        finally:
            c.close()

    def test_oversized_line_and_message(self):
        c = Client(self.gw.port)
        try:
            self.assertEqual(c.reply()[0], 220)
            c.send(b"EHLO " + b"a" * 2000 + b"\r\n")
            code, lines = c.reply()
            self.assertEqual(code, 500)
            self.assertIn("5.5.2 Line too long", lines[-1])
            # the session goes on
            c.send(b"NOOP\r\n")
            self.assertEqual(c.reply()[0], 250)
            c.send(b"QUIT\r\n")
            c.reply()
        finally:
            c.close()
        big = (b"Subject: big\r\n\r\n" + (b"y" * 78 + b"\r\n") * 3000)  # ~240 KB
        with smtplib.SMTP("127.0.0.1", self.gw.port, timeout=15) as s:
            s.ehlo("big.example.org")
            # no SIZE= parameter: the limit is enforced on the content itself
            s.mail("big@example.com")
            s.rcpt("rcpt@example.net")
            code, text = s.data(big)  # smtplib returns the final reply
            self.assertEqual(code, 552)
            self.assertIn(b"5.3.4", text)
        with smtplib.SMTP("127.0.0.1", self.gw.port, timeout=15) as s:
            s.ehlo("big.example.org")
            with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
                s.sendmail("big@example.com", ["rcpt@example.net"], big)  # SIZE= declared
            self.assertEqual(cm.exception.smtp_code, 552)
        self.assertFalse(any(b"Subject: big" in eml for _, eml, _ in self.gw.messages()))
        self.legit(b"legit-after-big")


class Flood(AbuseBase):
    def test_flood_from_one_source(self):
        self.gw = Gateway(self.binary, {"max_connections_per_source": "20",
                                        "max_connections": "1000"})
        socks, refused = [], 0
        try:
            for _ in range(200):
                s = socket.create_connection(("127.0.0.1", self.gw.port), timeout=10,
                                             source_address=("127.0.0.1", 0))
                socks.append(s)
            for s in socks:
                data = b""
                while b"\r\n" not in data:
                    chunk = s.recv(512)
                    if not chunk:
                        break
                    data += chunk
                if data.startswith(b"421 "):
                    self.assertIn(b"Too many connections from your address", data)
                    refused += 1
                else:
                    self.assertTrue(data.startswith(b"220 "), data)
            self.assertEqual(refused, 200 - 20)
            # 127.0.0.1 is at its limit; another source still gets through
            self.legit(b"legit-other-source", source="127.0.0.2")
            with self.assertRaises(smtplib.SMTPConnectError) as cm:
                smtplib.SMTP("127.0.0.1", self.gw.port, timeout=10)
            self.assertEqual(cm.exception.smtp_code, 421)
        finally:
            for s in socks:
                s.close()


if __name__ == "__main__":
    sys.exit(run(sys.argv, [IdleConnections, Slow, Flood]))
