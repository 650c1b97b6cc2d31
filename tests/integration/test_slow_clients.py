#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Slow clients and many sources on kernel sockets (issue 14, item 6):

- twenty sources that each open every connection they may cannot take every
  slot: max_connections 100, max_connections_per_source 5 (twenty times five
  would be all of them); once half the table is in use each source's share
  shrinks, so some of their connections are refused ("from your address")
  and a twenty-first source is still served and delivers a message;
- a client that sends a command a byte at a time, slower than
  min_data_rate over min_data_rate_window, gets 421 4.4.2 "Connection too
  slow" and is closed, while another client is served.

No wall-clock threshold: the trickling client is waited for with a bounded
wait; the share is counted, not timed.

usage: test_slow_clients.py PATH-TO-TESGATE
"""
import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_harness import Client, Gateway, run  # noqa: E402
from test_abuse import AbuseBase  # noqa: E402

WAIT = 20.0


class Base(AbuseBase):
    """The abuse tests' base (tearDown, legit()), with this file's wait."""

    def legit(self, tag, source=None):
        super().legit(tag, source, timeout=WAIT)


class ManySources(Base):
    def test_twenty_sources_cannot_take_every_slot(self):
        self.gw = Gateway(self.binary, {"max_connections": "100",
                                        "max_connections_per_source": "5",
                                        "control_socket": ""})
        held, refused = [], {}
        try:
            # round after round, as twenty sources opening connections at once
            for _ in range(5):
                for i in range(1, 21):
                    src = "127.0.1.%d" % i
                    s = socket.create_connection(("127.0.0.1", self.gw.port), timeout=WAIT,
                                                 source_address=(src, 0))
                    line = b""
                    while b"\r\n" not in line:
                        chunk = s.recv(512)
                        if not chunk:
                            break
                        line += chunk
                    if line.startswith(b"220 "):
                        held.append(s)
                        continue
                    self.assertTrue(line.startswith(b"421 "), line)
                    # a source refused is refused for itself, never globally
                    self.assertIn(b"Too many connections from your address", line)
                    refused[src] = refused.get(src, 0) + 1
                    s.close()
            self.assertLess(len(held), 100, "twenty sources hold every slot")
            self.assertGreater(len(refused), 0)
            print("  twenty sources hold %d of 100 slots; %d connections refused" %
                  (len(held), sum(refused.values())))
            # another source is still served
            self.legit(b"twenty-first-source", source="127.0.2.1")
        finally:
            for s in held:
                s.close()


class SlowClient(Base):
    def test_trickle_is_cut(self):
        self.gw = Gateway(self.binary, {"min_data_rate": "100", "min_data_rate_window": "1",
                                        "control_socket": ""})
        c = Client(self.gw.port, timeout=WAIT)
        stop = threading.Event()

        def trickle():
            for b in b"EHLO a-slowly-typed-name.example.org\r\n" * 4:
                if stop.is_set():
                    return
                try:
                    c.send(bytes([b]))
                except OSError:
                    return
                time.sleep(0.2)

        try:
            self.assertEqual(c.reply()[0], 220)
            t = threading.Thread(target=trickle, daemon=True)
            t.start()
            # meanwhile a client at a normal pace is served
            self.legit(b"served-beside-a-slow-one")
            code, lines = c.reply()
            while code == 250:  # an EHLO that made it through, in case
                code, lines = c.reply()
            self.assertEqual(code, 421, lines)
            self.assertIn("4.4.2", lines[-1])
            self.assertIn("Connection too slow", lines[-1])
            self.assertTrue(c.closed())
            self.assertIn("below min_data_rate", self.gw.log_text())
        finally:
            stop.set()
            c.close()


if __name__ == "__main__":
    sys.exit(run(sys.argv, [ManySources, SlowClient]))
