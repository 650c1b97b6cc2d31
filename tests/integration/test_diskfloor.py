#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""The free-space floor (spool_min_free) on a spool that lives on a small
tmpfs this test mounts (issue 14, item 6):

- with room above the floor, messages get 250;
- a MAIL FROM whose declared SIZE would cross the floor gets 452 4.3.1;
- a message whose content crosses the floor gets 452 4.3.1 at its end, and
  nothing of it stays in the spool;
- below the floor every MAIL FROM gets 452 4.3.1;
- every message acknowledged before is in new/, byte for byte;
- once space is freed, mail is taken again.
The same for the smtp relay's spill files (relay_memory_per_message = 0, so
every message spills into spool_dir/tmp on the tmpfs).

Needs root (mount); exit 77 without.  Every wait is bounded (the floor's
watcher reads the file system every 200 ms; the test polls for the reply it
expects); the mount is removed whatever happens.

usage: test_diskfloor.py PATH-TO-TESGATE
"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_harness import Client, Gateway, run  # noqa: E402
from test_relay import FakeBackend  # noqa: E402

MB = 1024 * 1024
FLOOR = 4 * MB
WAIT = 20.0


def body(tag, size):
    """A message of about size octets, every line distinct, CRLF lines."""
    head = (b"From: a@example.com\r\nTo: b@example.net\r\nSubject: " + tag +
            b"\r\nMessage-ID: <" + tag + b"@example.com>\r\n\r\n")
    lines, n, i = [head], len(head), 0
    while n < size:
        line = b"%s line %08d " % (tag, i) + b"x" * 60 + b"\r\n"
        lines.append(line)
        n += len(line)
        i += 1
    return b"".join(lines)


class FloorBase(unittest.TestCase):
    binary = None

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to mount a tmpfs")
        self.mnt = tempfile.mkdtemp(prefix="tesgate-floor-")
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs",
                        self.mnt], check=True, timeout=30)
        self.filler = os.path.join(self.mnt, "filler")
        self.gw = None
        self.backend = None

    def tearDown(self):
        try:
            if self.gw:
                self.gw.stop_clean()
        finally:
            if self.gw:
                self.gw.close()
            if self.backend:
                self.backend.close()
            subprocess.run(["umount", "-l", self.mnt], timeout=30)
            shutil.rmtree(self.mnt, ignore_errors=True)

    def free(self):
        st = os.statvfs(self.mnt)
        return st.f_bavail * st.f_frsize

    def fill_to(self, left):
        """Grow or shrink the filler so that about `left` octets stay free."""
        cur = os.path.getsize(self.filler) if os.path.exists(self.filler) else 0
        want = cur + self.free() - left
        self.assertGreaterEqual(want, 0)
        with open(self.filler, "ab") as f:
            f.truncate(0)
            f.write(b"\0" * want)  # written, not sparse: tmpfs counts pages
            f.flush()
            os.fsync(f.fileno())

    def session(self):
        c = Client(self.gw.port, timeout=WAIT)
        self.assertEqual(c.reply()[0], 220)
        c.send(b"EHLO floor.example.org\r\n")
        self.assertEqual(c.reply()[0], 250)
        return c

    def mail_from(self, c, size=None):
        c.send(b"MAIL FROM:<a@example.com>" + (b" SIZE=%d" % size if size else b"") + b"\r\n")
        return c.reply()

    def send(self, msg, size=None):
        """A whole transaction on a new connection: the final reply (or the
        MAIL FROM refusal)."""
        c = self.session()
        try:
            code, lines = self.mail_from(c, size)
            if code != 250:
                return code, lines
            c.send(b"RCPT TO:<b@example.net>\r\nDATA\r\n")
            self.assertEqual(c.reply()[0], 250)
            self.assertEqual(c.reply()[0], 354)
            c.send(msg.replace(b"\r\n.", b"\r\n..") + b".\r\n")
            return c.reply()
        finally:
            c.close()

    def wait_mail_reply(self, code, size=None):
        """MAIL FROM until it gets `code` (the watcher's next read); bounded."""
        last = []

        def ok():
            c = self.session()
            try:
                got, lines = self.mail_from(c, size)
                last[:] = [got, lines]
                return got == code
            finally:
                c.close()
        self.assertTrue(self.gw.wait_for(ok, WAIT), "MAIL FROM never got %d: %r" % (code, last))
        return last[1]


class SpoolFloor(FloorBase):
    def test_floor(self):
        spool = os.path.join(self.mnt, "spool")
        self.gw = GatewayAt(self.binary, spool, {"spool_min_free": str(FLOOR),
                                                 "control_socket": "",
                                                 "max_message_size": "16M"})
        accepted = {}

        a = body(b"msg-a", 256 * 1024)
        code, lines = self.send(a)
        self.assertEqual(code, 250, lines)
        accepted[b"msg-a"] = a

        # 1.5 MB above the floor
        self.fill_to(FLOOR + 3 * MB // 2)
        lines = self.wait_mail_reply(452, size=2 * MB)
        self.assertIn("452 4.3.1", lines[-1])
        self.assertIn("Insufficient system storage", lines[-1])

        b = body(b"msg-b", 512 * 1024)
        code, lines = self.send(b)
        self.assertEqual(code, 250, lines)
        accepted[b"msg-b"] = b

        # 1.5 MB of content into the last 1 MB: refused at its end
        c_msg = body(b"msg-c", 3 * MB // 2)
        code, lines = self.send(c_msg)
        self.assertEqual(code, 452, lines)
        self.assertIn("4.3.1", lines[-1])
        self.assertTrue(self.gw.wait_for(lambda: self.gw.files("tmp") == []),
                        "the refused message left %r in tmp/" % self.gw.files("tmp"))

        # below the floor: every new message is refused at MAIL FROM
        self.fill_to(FLOOR - MB)
        lines = self.wait_mail_reply(452)
        self.assertIn("452 4.3.1", lines[-1])

        # what was acknowledged is all there, byte for byte, and only that
        got = {m[1].split(b"Subject: ")[1].split(b"\r\n")[0]: m[1] for m in self.gw.messages()}
        self.assertEqual(sorted(got), sorted(accepted))
        for tag, msg in accepted.items():
            self.assertEqual(got[tag], msg, tag)

        # space freed: mail is taken again
        os.unlink(self.filler)
        self.wait_mail_reply(250, size=2 * MB)
        d = body(b"msg-d", 2 * MB)
        code, lines = self.send(d, size=len(d))
        self.assertEqual(code, 250, lines)
        accepted[b"msg-d"] = d
        got = {m[1].split(b"Subject: ")[1].split(b"\r\n")[0]: m[1] for m in self.gw.messages()}
        self.assertEqual(sorted(got), sorted(accepted))
        for tag, msg in accepted.items():
            self.assertEqual(got[tag], msg, tag)
        self.assertIn("below the floor", self.gw.log_text())


class RelayFloor(FloorBase):
    def test_spill_floor(self):
        self.backend = FakeBackend()
        spool = os.path.join(self.mnt, "spool")
        self.gw = GatewayAt(self.binary, spool, {
            "spool_min_free": str(FLOOR), "control_socket": "", "max_message_size": "16M",
            "delivery": "smtp", "relay_host": "127.0.0.1", "relay_port": str(self.backend.port),
            "relay_memory_per_message": "0"})
        a = body(b"relay-a", 256 * 1024)
        code, lines = self.send(a)
        self.assertEqual(code, 250, lines)
        self.fill_to(FLOOR + MB)
        # a declared size beyond the memory bound needs the disk
        lines = self.wait_mail_reply(452, size=2 * MB)
        self.assertIn("452 4.3.1", lines[-1])
        big = body(b"relay-big", 2 * MB)
        code, lines = self.send(big)
        self.assertEqual(code, 452, lines)
        self.assertIn("4.3.1", lines[-1])
        os.unlink(self.filler)
        self.wait_mail_reply(250, size=2 * MB)
        code, lines = self.send(big)
        self.assertEqual(code, 250, lines)
        self.assertTrue(self.backend.wait_for(lambda: len(self.backend.messages) == 2))
        self.assertEqual([m["data"] for m in self.backend.messages], [a, big])


class GatewayAt(Gateway):
    """A Gateway whose spool is the given directory (the harness puts it in
    its own temporary directory and passes --spool)."""

    def __init__(self, binary, spool, conf):
        import gateway_harness as gh
        self.dir = gh.tempfile.mkdtemp(prefix="tesgate-it-")
        self.spool = spool
        self.log_path = os.path.join(self.dir, "tesgate.log")
        self.conf_path = os.path.join(self.dir, "tesgate.conf")
        settings = {"log_level": "info", "shutdown_grace": "10", "metrics_listen": ""}
        settings.update(conf)
        with open(self.conf_path, "w") as f:
            for k, v in settings.items():
                f.write(f"{k} = {v}\n")
        self.log = open(self.log_path, "wb")
        self.proc = gh.subprocess.Popen(
            [binary, "-c", self.conf_path, "--listen", "127.0.0.1:0", "--spool", spool],
            stdin=gh.subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        self.port = self._wait_port()


if __name__ == "__main__":
    sys.exit(run(sys.argv, [SpoolFloor, RelayFloor]))
