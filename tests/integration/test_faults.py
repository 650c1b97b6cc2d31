#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""kill -9 of tesgate under load: nothing that got 250 is lost or altered.

Several concurrent smtplib clients send distinct messages (unique
Message-IDs, sizes from 1 KB to ~200 KB) in a loop; tesgate is killed with
SIGKILL mid-way.  Then:

- delivery = spool: every message whose client got 250 is in the spool's
  new/ directory, byte-identical to what was sent, with its envelope; every
  .eml in new/ is a complete message that some client sent (nothing partial).
- delivery = smtp to Postfix's smtp-sink (-d dump directory): every message
  whose client got 250 is at the backend, exactly as sent.

Backend down, slow and refusing are covered by test_relay.py (RelayFull,
RelayDown); client gone mid-DATA by test_gateway.py and test_relay.py.

usage: test_faults.py PATH-TO-TESGATE
"""
import os
import pwd
import random
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_harness import Gateway, run  # noqa: E402

SMTP_SINK = shutil.which("smtp-sink") or ("/usr/sbin/smtp-sink"
                                          if os.access("/usr/sbin/smtp-sink", os.X_OK) else None)
IS_ROOT = os.geteuid() == 0
CLIENTS = 8
KILL_AFTER = 250  # messages acknowledged before the kill (bounded by LOAD_TIME)
LOAD_TIME = 20.0
MID_RE = re.compile(rb"Message-ID: <([^>]+)>")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def make_message(client, seq, rnd):
    mid = b"fault-%d-%d-%08x@load.example.com" % (client, seq, rnd.getrandbits(32))
    head = (b"From: Load <load%d@example.com>\r\n" % client +
            b"To: Rcpt <rcpt@example.net>\r\n"
            b"Subject: load %d/%d\r\n" % (client, seq) +
            b"Message-ID: <" + mid + b">\r\n\r\n")
    nlines = rnd.choice((10, 40, 400, 3000))
    body = b"".join(b"line %06d of message %d/%d: %s\r\n" % (
        i, client, seq, bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(20)))
        for i in range(nlines))
    return mid, head + body


class Load:
    """CLIENTS threads sending in a loop until stopped; acked[mid] = bytes
    for every message that got 250, sent[mid] = bytes for every attempt."""

    def __init__(self, port):
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked = {}
        self.sent = {}
        self.errors = 0
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True)
                        for i in range(CLIENTS)]
        for t in self.threads:
            t.start()

    def _client(self, n):
        rnd = random.Random(n)
        seq = 0
        while not self.stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as s:
                    s.ehlo("load%d.example.org" % n)
                    for _ in range(5):
                        if self.stop.is_set():
                            break
                        seq += 1
                        mid, msg = make_message(n, seq, rnd)
                        with self.lock:
                            self.sent[mid] = msg
                        s.sendmail("load%d@example.com" % n, ["rcpt@example.net"], msg)
                        with self.lock:
                            self.acked[mid] = msg
            except (OSError, smtplib.SMTPException):
                with self.lock:
                    self.errors += 1
                time.sleep(0.05)

    def count(self):
        with self.lock:
            return len(self.acked)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
            if t.is_alive():
                raise AssertionError("a load client did not finish")


class KillUnderLoad:
    def run_load_and_kill(self, gw):
        load = Load(gw.port)
        deadline = time.monotonic() + LOAD_TIME
        while load.count() < KILL_AFTER and time.monotonic() < deadline:
            time.sleep(0.01)
        gw.signal(signal.SIGKILL)  # only our gateway, by its pid
        gw.proc.wait(timeout=10)
        load.finish()
        self.assertGreater(len(load.acked), 20, "too little load before the kill")
        self.assertGreater(len(load.sent), len(load.acked), "the kill landed between messages")
        return load


class FaultsSpool(KillUnderLoad, unittest.TestCase):
    binary = None

    def test_kill9_spool(self):
        gw = Gateway(self.binary, {"workers": "2", "max_connections_per_source": "0"})
        try:
            load = self.run_load_and_kill(gw)
            new = os.path.join(gw.spool, "new")
            names = os.listdir(new) if os.path.isdir(new) else []
            emls = [n for n in names if n.endswith(".eml")]
            found = {}
            for name in emls:
                with open(os.path.join(new, name), "rb") as f:
                    data = f.read()
                m = MID_RE.search(data)
                self.assertIsNotNone(m, "a spooled message without its Message-ID: %r" % data[:200])
                mid = m.group(1)
                # nothing partial in new/: each .eml is a whole message that was sent
                self.assertIn(mid, load.sent)
                self.assertEqual(data, load.sent[mid], "spooled copy differs: %r" % mid)
                self.assertTrue(os.path.exists(os.path.join(new, name[:-4] + ".env")),
                                "an .eml in new/ without its envelope")
                found[mid] = data
            lost = [mid for mid in load.acked if mid not in found]
            self.assertEqual(lost, [], "messages that got 250 are missing from the spool")
            print("  spool: %d sent, %d got 250, %d in new/, %d client errors" % (
                len(load.sent), len(load.acked), len(found), load.errors))
        finally:
            gw.close()


@unittest.skipIf(SMTP_SINK is None, "Postfix's smtp-sink is not installed (apt-get install "
                 "postfix)")
@unittest.skipIf(not IS_ROOT, "smtp-sink drops privileges and needs root to start")
class FaultsSmtpSink(KillUnderLoad, unittest.TestCase):
    binary = None

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="tesgate-faults-")
        os.chmod(self.dir, 0o755)
        self.dump = os.path.join(self.dir, "dump")
        os.mkdir(self.dump)
        nobody = pwd.getpwnam("nobody")
        os.chown(self.dump, nobody.pw_uid, nobody.pw_gid)
        self.port = free_port()
        self.log = open(os.path.join(self.dir, "sink.log"), "wb")
        self.sink = subprocess.Popen([SMTP_SINK, "-u", "nobody", "-d", self.dump + "/%H%M%S.",
                                      "127.0.0.1:%d" % self.port, "256"],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.sink.poll() is not None:
                    raise RuntimeError("smtp-sink did not start")
                time.sleep(0.05)

    def tearDown(self):
        if self.sink.poll() is None:
            self.sink.terminate()
            self.sink.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def dumps(self):
        """{message-id: content} of the dump files (content after smtp-sink's
        own Received header, line ends LF)."""
        out = {}
        for name in os.listdir(self.dump):
            with open(os.path.join(self.dump, name), "rb") as f:
                data = f.read()
            lines = data.split(b"\n")
            try:
                i = next(k for k, ln in enumerate(lines) if ln.startswith(b"Received: ")) + 1
            except StopIteration:
                continue
            while i < len(lines) and lines[i].startswith(b"\t"):
                i += 1
            content = b"\n".join(lines[i:])
            m = MID_RE.search(content)
            if m:
                out.setdefault(m.group(1), []).append(content)
        return out

    def test_kill9_relay_to_smtp_sink(self):
        gw = Gateway(self.binary, {"workers": "2", "max_connections_per_source": "0",
                                   "delivery": "smtp", "relay_host": "127.0.0.1",
                                   "relay_port": str(self.port)})
        try:
            load = self.run_load_and_kill(gw)
            # the 250 came after the backend's 250: the dump is (being) written
            deadline = time.monotonic() + 15
            while True:
                got = self.dumps()
                lost = [mid for mid in load.acked if mid not in got]
                if not lost or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            self.assertEqual(lost, [], "messages that got 250 are missing at the backend")
            for mid, msg in load.acked.items():
                want = msg.replace(b"\r\n", b"\n") + b"\n"
                self.assertIn(want, got[mid], "backend copy differs: %r" % mid)
            print("  smtp-sink: %d sent, %d got 250, %d at the backend, %d client errors" % (
                len(load.sent), len(load.acked), len(got), load.errors))
        finally:
            gw.close()


if __name__ == "__main__":
    sys.exit(run(sys.argv, [FaultsSpool, FaultsSmtpSink]))
