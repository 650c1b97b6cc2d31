#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""tescontrol's admin output queue is bounded (issue 14, item 7): a client
that sends request after request and never reads a reply is disconnected
with a log line once its unread replies pass the bound, tescontrol's memory
stays bounded (its peak resident size grows by far less than the replies
asked for), and other admin clients are served meanwhile and after.

Each request is `catalog show` (about 2 KB of reply for 60 octets asked);
the client asks for up to 60 000 of them, about 120 MB of replies, and is
cut off long before.

usage: test_admin_queue.py   (TESCONTROL, TESCTL, TES_SRCDIR in the environment)
"""
import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ctl_harness as ch  # noqa: E402

REQUESTS = 60000
MB = 1024 * 1024


def vm_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (field, pid))


class AdminQueue(unittest.TestCase):
    def setUp(self):
        # Under AddressSanitizer freed memory waits in a quarantine (256 MB by
        # default) and would count as growth: keep it small for this one.
        if os.environ.get("ASAN_OPTIONS") is not None:
            os.environ["ASAN_OPTIONS"] += ":quarantine_size_mb=1"
        self.tc = ch.Tescontrol().start()

    def tearDown(self):
        self.tc.cleanup()

    def test_client_that_never_reads(self):
        pid = self.tc.proc.pid
        # the size of one reply, asked for the normal way
        one = len(self.tc.ctl_raw("catalog", "show").stdout)
        self.assertGreater(one, 1000)
        hwm0 = vm_kb(pid, "VmHWM")
        req = ch.frame({"v": 1, "cmd": "catalog.show"})
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.tc.admin_sock)
        # never read: requests only, until tescontrol cuts the connection
        sent = [0]

        def flood():
            try:
                for _ in range(REQUESTS):
                    s.sendall(req)
                    sent[0] += 1
            except OSError:
                pass

        t = threading.Thread(target=flood, daemon=True)
        t.start()
        try:
            self.tc.wait_log(r"does not read them; disconnecting it", timeout=60)
            # others are served while it is cut off and after
            self.assertIn("tescontrol", self.tc.ctl_raw("status", json_out=False).stdout)
            t.join(60)
            self.assertFalse(t.is_alive(), "the flooding client is still writing")
        finally:
            s.close()
        asked_kb = sent[0] * one // 1024
        grew_kb = vm_kb(pid, "VmHWM") - hwm0
        print("  %d requests sent (%d MB of replies asked for); peak RSS grew by %d MB" %
              (sent[0], asked_kb // 1024, grew_kb // 1024))
        # bound 4 MB plus one reply and the read buffer: far below what was asked
        self.assertLess(grew_kb, 32 * 1024)
        st = self.tc.ctl("status")
        self.assertTrue(st)
        self.assertEqual(self.tc.proc.poll(), None)


if __name__ == "__main__":
    unittest.main(verbosity=2)
