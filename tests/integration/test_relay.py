#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""tesgate's smtp delivery backend (delivery = smtp) against backends.

- FakeBackend: a scripted SMTP server in this file (deterministic replies,
  delays, refusals; it records every connection, every segment it read and
  every message it committed).
- Postfix's smtp-sink, and a complete temporary Postfix instance (its own
  config, queue and data directories, listening on a free loopback port,
  delivering with the virtual agent to a Maildir).  Those tests are skipped
  when Postfix is not installed (Debian package postfix) or when not root
  (Postfix starts as root).

usage: test_relay.py PATH-TO-TESGATE
"""
import os
import pwd
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_harness import IO_TIMEOUT, Client, Gateway, run  # noqa: E402
from postfix_harness import IS_ROOT, POSTFIX, TempPostfix  # noqa: E402

SMTP_SINK = shutil.which("smtp-sink") or ("/usr/sbin/smtp-sink"
                                          if os.access("/usr/sbin/smtp-sink", os.X_OK) else None)

FULL_EXT = ["PIPELINING", "CHUNKING", "8BITMIME", "SIZE 52428800", "ENHANCEDSTATUSCODES",
            "SMTPUTF8"]


def message(subject, body_lines=(b"Hello.",)):
    head = (b"From: Sender <sender@example.com>\r\n"
            b"To: Rcpt <rcpt@example.net>\r\n"
            b"Subject: " + subject + b"\r\n"
            b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
            b"Message-ID: <" + subject.replace(b" ", b".") + b"@example.com>\r\n\r\n")
    return head + b"".join(line + b"\r\n" for line in body_lines)


DOTTY = [b"Hello.", b".A line that starts with a dot", b"..two dots", b".", b"",
         b"8-bit: \xc3\xa9t\xc3\xa9", b"last line"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class ConnRecord:
    def __init__(self):
        self.segments = []  # every recv() result, in order
        self.commands = []  # command lines
        self.quit = False
        self.closed = False
        self.txns = 0


class FakeBackend:
    """A deterministic SMTP server on 127.0.0.1.  Behaviour is set through
    attributes, any time (they are read per command):
      ext            EHLO keywords
      greeting       the first line (220 ..., or a refusal)
      mail_reply     f(conn_record) -> reply line for MAIL
      rcpt_reply     f(address) -> reply line for RCPT
      final_reply    f(data) -> reply line at the end of data
      final_delay    seconds to wait before the final reply
      hold           a threading.Event: when set to one, the final reply waits
                     until the test sets it (bounded), so a test can see what
                     happens while the backend has not answered, by order of
                     events rather than by time
    """

    def __init__(self, ext=None, port=0, unix_path=None):
        self.ext = list(FULL_EXT if ext is None else ext)
        self.greeting = "220 fake.test ESMTP"
        self.mail_reply = lambda rec: "250 2.1.0 Ok"
        self.rcpt_reply = lambda addr: "250 2.1.5 Ok"
        self.final_reply = lambda data: "250 2.0.0 Ok: queued as FAKE%d" % len(self.messages)
        self.final_delay = 0.0
        self.hold = None
        self.ehlo_ok = True
        self.lock = threading.Lock()
        self.conns = []
        self.messages = []
        self.data_arrived = threading.Event()  # content read, final reply pending
        self.socks = []
        self.stopping = False
        if unix_path:
            self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.lsock.bind(unix_path)
            self.port = None
        else:
            self.lsock = socket.socket()
            self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.lsock.bind(("127.0.0.1", port))
            self.port = self.lsock.getsockname()[1]
        self.lsock.listen(64)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def close(self):
        self.stopping = True
        self.thread.join(timeout=5)
        self.lsock.close()
        with self.lock:
            for s in self.socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def _accept(self):
        # closing a socket does not wake a thread blocked in accept: poll
        self.lsock.settimeout(0.1)
        while not self.stopping:
            try:
                s, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            s.settimeout(None)
            rec = ConnRecord()
            with self.lock:
                self.conns.append(rec)
                self.socks.append(s)
            threading.Thread(target=self._serve, args=(s, rec), daemon=True).start()

    def wait_for(self, pred, timeout=IO_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if pred():
                    return True
            time.sleep(0.02)
        with self.lock:
            return pred()

    def all_commands(self):
        with self.lock:
            return [c for rec in self.conns for c in rec.commands]

    def _serve(self, s, rec):
        buf = bytearray()

        def more():
            d = s.recv(65536)
            if not d:
                raise EOFError
            with self.lock:
                rec.segments.append(d)
            buf.extend(d)

        def line():
            while True:
                i = buf.find(b"\r\n")
                if i >= 0:
                    out = bytes(buf[:i])
                    del buf[:i + 2]
                    return out
                more()

        def exact(n):
            while len(buf) < n:
                more()
            out = bytes(buf[:n])
            del buf[:n]
            return out

        def say(text):
            s.sendall(text.encode() + b"\r\n")
            if text.startswith("421"):
                raise EOFError

        mail, rcpts, chunks = None, [], []
        try:
            say(self.greeting)
            if not self.greeting.startswith("220"):
                return
            while True:
                cmd = line()
                with self.lock:
                    rec.commands.append(cmd)
                verb = cmd[:4].upper()
                if verb == b"EHLO" and not self.ehlo_ok:
                    say("502 5.5.2 Error: command not recognized")
                elif verb == b"EHLO":
                    lines = ["fake.test"] + self.ext
                    say("\r\n".join("250%s%s" % ("-" if i < len(lines) - 1 else " ", x)
                                    for i, x in enumerate(lines)))
                elif verb == b"HELO":
                    say("250 fake.test")
                elif verb == b"MAIL":
                    r = self.mail_reply(rec)
                    if r.startswith("2"):
                        mail, rcpts, chunks = cmd, [], []
                    say(r)
                elif verb == b"RCPT":
                    addr = cmd.split(b"<", 1)[1].split(b">", 1)[0].decode()
                    r = self.rcpt_reply(addr)
                    if r.startswith("2") and mail:
                        rcpts.append(addr)
                    say(r)
                elif verb == b"DATA":
                    if not mail or not rcpts:
                        say("554 5.5.1 No valid recipients")
                        continue
                    say("354 End data with <CR><LF>.<CR><LF>")
                    lines = []
                    while True:
                        ln = line()
                        if ln == b".":
                            break
                        lines.append(ln[1:] if ln.startswith(b".") else ln)
                    self._final(say, rec, mail, rcpts, b"".join(x + b"\r\n" for x in lines),
                                "DATA")
                    mail, rcpts = None, []
                elif verb == b"BDAT":
                    parts = cmd.split()
                    n = int(parts[1])
                    last = len(parts) > 2 and parts[2].upper() == b"LAST"
                    chunks.append(exact(n))
                    if not mail or not rcpts:
                        say("503 5.5.1 Error: send MAIL and RCPT first")
                        chunks = []
                        continue
                    if not last:
                        say("250 2.0.0 %d octets received" % n)
                        continue
                    self._final(say, rec, mail, rcpts, b"".join(chunks), "BDAT")
                    mail, rcpts, chunks = None, [], []
                elif verb == b"RSET":
                    mail, rcpts, chunks = None, [], []
                    say("250 2.0.0 Ok")
                elif verb == b"NOOP":
                    say("250 2.0.0 Ok")
                elif verb == b"QUIT":
                    with self.lock:
                        rec.quit = True
                    say("221 2.0.0 Bye")
                    return
                else:
                    say("502 5.5.2 Error: command not recognized")
        except (EOFError, OSError):
            pass
        finally:
            with self.lock:
                rec.closed = True
            try:
                s.close()
            except OSError:
                pass

    def _final(self, say, rec, mail, rcpts, data, method):
        self.data_arrived.set()
        if self.final_delay:
            time.sleep(self.final_delay)
        if self.hold is not None:
            self.hold.wait(4 * IO_TIMEOUT)
        r = self.final_reply(data)
        if r.startswith("2"):
            with self.lock:
                rec.txns += 1
                self.messages.append({"mail": mail, "rcpts": list(rcpts), "data": data,
                                      "method": method})
        say(r)


class RelayBase(unittest.TestCase):
    binary = None
    backend_ext = None  # None: FULL_EXT

    def setUp(self):
        self.backend = FakeBackend(ext=self.backend_ext)
        self.gw = None

    def start(self, **conf):
        settings = {"delivery": "smtp", "relay_host": "127.0.0.1",
                    "relay_port": str(self.backend.port), "log_level": "debug"}
        settings.update({k: str(v) for k, v in conf.items()})
        self.gw = Gateway(self.binary, settings)
        # the start-up probe's connection is not the pool's
        self.assertTrue(self.backend.wait_for(lambda: all(c.closed for c in self.backend.conns)))
        self.probe_conns = len(self.backend.conns)
        return self.gw

    def tearDown(self):
        try:
            if self.gw:
                self.gw.stop_clean(earlier_exit_ok=True)
        finally:
            if self.gw:
                self.gw.close()
            self.backend.close()

    def smtp(self):
        return smtplib.SMTP("127.0.0.1", self.gw.port, timeout=IO_TIMEOUT)

    def send(self, msg, rcpts=("rcpt@example.net",), sender="sender@example.com"):
        """Returns (code, text) of the final reply."""
        with self.smtp() as s:
            s.ehlo("client.example.org")
            try:
                refused = s.sendmail(sender, list(rcpts), msg)
                self.assertEqual(refused, {})
                return 250, ""
            except smtplib.SMTPDataError as e:
                return e.smtp_code, e.smtp_error.decode("utf-8", "replace")

    def bdat_raw(self, content, rcpt="rcpt@example.net"):
        c = Client(self.gw.port)
        try:
            self.assertEqual(c.reply()[0], 220)
            c.send(b"EHLO client.example.org\r\n")
            self.assertEqual(c.reply()[0], 250)
            c.send(b"MAIL FROM:<sender@example.com>\r\nRCPT TO:<" + rcpt.encode() + b">\r\n" +
                   b"BDAT %d LAST\r\n" % len(content) + content)
            self.assertEqual(c.reply()[0], 250)
            self.assertEqual(c.reply()[0], 250)
            code, lines = c.reply()
            c.send(b"QUIT\r\n")
            c.reply()
            return code, lines[-1]
        finally:
            c.close()

    def pool_conns(self):
        return self.backend.conns[self.probe_conns:]


class RelayFull(RelayBase):
    """Backend with PIPELINING and CHUNKING."""

    def test_bdat_byte_identical(self):
        self.start()
        msg = message(b"bdat identical", DOTTY)
        self.assertEqual(self.send(msg, ["a@example.net", "b@example.net"]), (250, ""))
        [m] = self.backend.messages
        self.assertEqual(m["method"], "BDAT")
        self.assertEqual(m["data"], msg)
        self.assertEqual(m["rcpts"], ["a@example.net", "b@example.net"])
        self.assertIn(b"SIZE=%d" % len(msg), m["mail"])
        # a BDAT message that does not end in CRLF is relayed as sent
        code, _ = self.bdat_raw(b"Subject: raw\r\n\r\nno line end at the end")
        self.assertEqual(code, 250)
        self.assertEqual(self.backend.messages[1]["data"],
                         b"Subject: raw\r\n\r\nno line end at the end")

    def test_body_8bitmime_and_reply_text(self):
        self.start()
        msg = message(b"eight bit", [b"caf\xc3\xa9"])
        with self.smtp() as s:
            s.ehlo("client.example.org")
            s.mail("sender@example.com", ["BODY=8BITMIME"])
            s.rcpt("rcpt@example.net")
            code, text = s.data(msg)
        self.assertEqual(code, 250)
        self.assertIn(b"Ok: relayed (backend: \"250 2.0.0 Ok: queued as FAKE0\")", text)
        self.assertIn(b"BODY=8BITMIME", self.backend.messages[0]["mail"])

    def test_pipelining_one_segment(self):
        self.start()
        self.assertEqual(self.send(message(b"pipelined"), ["a@example.net", "b@example.net"]),
                         (250, ""))
        [conn] = self.pool_conns()
        self.assertTrue(any(b"MAIL FROM:" in seg and b"RCPT TO:<a@" in seg and
                            b"RCPT TO:<b@" in seg and b"BDAT " in seg
                            for seg in conn.segments), conn.segments)

    def test_connections_reused(self):
        self.start()
        for i in range(5):
            self.assertEqual(self.send(message(b"reuse %d" % i)), (250, ""))
        self.assertEqual(len(self.backend.messages), 5)
        self.assertEqual(len(self.pool_conns()), 1)
        # one connection, five transactions, no RSET needed between good ones
        cmds = self.pool_conns()[0].commands
        self.assertEqual(sum(c.startswith(b"MAIL") for c in cmds), 5)

    def test_idle_connection_gets_quit(self):
        self.start(relay_idle_timeout=1)
        self.assertEqual(self.send(message(b"idle")), (250, ""))
        [conn] = self.pool_conns()
        self.assertTrue(self.backend.wait_for(lambda: conn.quit and conn.closed, timeout=5))

    def test_backend_4xx_gives_451(self):
        self.start()
        self.backend.final_reply = lambda d: "452 4.3.1 Insufficient system storage"
        code, text = self.send(message(b"4xx"))
        self.assertEqual(code, 451)
        self.assertIn('4.3.1 Backend refused the message (backend: "452 4.3.1 Insufficient '
                      'system storage"); try again later', text)
        self.assertEqual(self.backend.messages, [])

    def test_backend_5xx_gives_554(self):
        self.start()
        self.backend.final_reply = lambda d: "550 5.7.1 Message rejected as spam"
        code, text = self.send(message(b"5xx"))
        self.assertEqual(code, 554)
        self.assertIn('5.7.1 Backend refused the message (backend: "550 5.7.1 Message '
                      'rejected as spam")', text)
        # the connection was reset and is reused for the next message (once
        # the backend has the RSET: a message sent before the relay has its
        # reply would rightly get a second connection)
        self.backend.final_reply = lambda d: "250 2.0.0 Ok"
        self.assertTrue(self.backend.wait_for(
            lambda: self.pool_conns() and b"RSET" in self.pool_conns()[0].commands))
        self.assertEqual(self.send(message(b"after 5xx")), (250, ""))
        self.assertEqual(len(self.pool_conns()), 1)
        self.assertIn(b"RSET", self.pool_conns()[0].commands)

    def test_partial_rcpt_failure_fails_whole_message(self):
        self.start()
        self.backend.rcpt_reply = (lambda a: "550 5.1.1 <%s>: Recipient address rejected" % a
                                   if a.startswith("bad") else "250 2.1.5 Ok")
        code, text = self.send(message(b"partial"),
                               ["good@example.net", "bad@example.net", "good2@example.net"])
        self.assertEqual(code, 554)
        self.assertIn("5.1.1 Backend refused 1 of 3 recipients (relayed to none)", text)
        self.assertEqual(self.backend.messages, [])  # nothing committed for the good ones
        # with a 4xx among the refusals: 451
        self.backend.rcpt_reply = (lambda a: "450 4.2.0 <%s>: greylisted" % a
                                   if a.startswith("bad") else "250 2.1.5 Ok")
        code, text = self.send(message(b"partial 4xx"), ["good@example.net", "bad@example.net"])
        self.assertEqual(code, 451)
        self.assertEqual(self.backend.messages, [])

    def test_backend_timeout_gives_451(self):
        self.start(relay_data_timeout=1, relay_command_timeout=1)
        self.backend.hold = threading.Event()
        try:
            code, text = self.send(message(b"slow"))
            # the 451 came while the backend still held its answer
            self.assertFalse(self.backend.hold.is_set())
            self.assertEqual(code, 451)
            self.assertIn("4.4.2 Backend did not answer in time", text)
        finally:
            self.backend.hold.set()

    def test_backend_refuses_connections(self):
        self.backend.greeting = "554 5.3.2 fake.test not accepting mail"
        self.start()
        self.assertIn("relay: backend not reachable at start", self.gw.log_text())
        code, text = self.send(message(b"refused"))
        self.assertEqual(code, 451)
        self.assertIn('4.4.1 Backend not available at greeting (backend: "554 5.3.2 fake.test '
                      'not accepting mail")', text)

    def test_stale_connection_is_retried(self):
        self.start()
        self.assertEqual(self.send(message(b"first")), (250, ""))
        # the backend now says 421 to a second transaction on a connection
        self.backend.mail_reply = (lambda rec: "421 4.4.2 fake.test closing"
                                   if rec.txns >= 1 else "250 2.1.0 Ok")
        self.assertEqual(self.send(message(b"second")), (250, ""))
        self.assertEqual([m["data"] for m in self.backend.messages],
                         [message(b"first"), message(b"second")])
        self.assertEqual(len(self.pool_conns()), 2)

    def test_slow_backend_does_not_block_other_sessions(self):
        self.start(workers=1, relay_data_timeout=60)
        self.backend.hold = threading.Event()
        result = {}

        def slow():
            result["r"] = self.send(message(b"slow one"))

        t = threading.Thread(target=slow)
        t.start()
        try:
            self.assertTrue(self.backend.data_arrived.wait(IO_TIMEOUT))
            c = Client(self.gw.port)
            self.assertEqual(c.reply()[0], 220)
            c.send(b"EHLO other.example\r\n")
            self.assertEqual(c.reply()[0], 250)
            # the backend holds the first message's answer until the end of
            # this block: a worker blocked on it would answer no NOOP
            for _ in range(10):
                c.send(b"NOOP\r\n")
                self.assertEqual(c.reply()[0], 250)
            c.send(b"QUIT\r\n")
            c.reply()
            c.close()
            self.assertIsNone(result.get("r"))  # the first is still waiting
        finally:
            self.backend.hold.set()
            t.join(timeout=IO_TIMEOUT)
        self.assertEqual(result["r"], (250, ""))

    def test_client_gone_mid_data_relays_nothing(self):
        self.start(workers=1)
        c = Client(self.gw.port)
        self.assertEqual(c.reply()[0], 220)
        c.send(b"EHLO client.example.org\r\nMAIL FROM:<s@example.com>\r\n"
               b"RCPT TO:<r@example.net>\r\nDATA\r\n")
        for want in (250, 250, 250, 354):
            self.assertEqual(c.reply()[0], want)
        c.send(b"Subject: cut\r\n\r\nhalf a message")
        c.close()
        # one worker, one backend connection at a time: once a later
        # message is through, anything of the cut one would be there first
        self.assertEqual(self.send(message(b"afterwards")), (250, ""))
        self.assertEqual([m["data"] for m in self.backend.messages], [message(b"afterwards")])
        self.assertEqual(sum(cmd.startswith(b"MAIL") for cmd in self.backend.all_commands()), 1)

    def test_queue_full_gives_451_at_once(self):
        self.start(relay_max_queue=1, relay_data_timeout=60)
        self.backend.hold = threading.Event()
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("r", self.send(message(b"a"))))
        t.start()
        try:
            self.assertTrue(self.backend.data_arrived.wait(IO_TIMEOUT))
            code, text = self.send(message(b"b"))
            # refused while the first still waits for the backend: at once,
            # not when the queue drains
            self.assertIsNone(result.get("r"))
            self.assertEqual(code, 451)
            self.assertIn("4.3.0 Too many messages waiting for the backend", text)
        finally:
            self.backend.hold.set()
            t.join(timeout=IO_TIMEOUT)
        self.assertEqual(result["r"], (250, ""))

    def test_large_message_spills_to_a_file(self):
        self.start(relay_memory_per_message="64K")
        body = [b"%06d " % i + b"x" * 90 for i in range(30000)]  # about 3 MB
        msg = message(b"large", body)
        self.assertEqual(self.send(msg), (250, ""))
        self.assertEqual(self.backend.messages[0]["data"], msg)
        self.assertEqual(self.gw.stop(), 0)
        self.assertRegex(self.gw.log_text(), r"stats relay relayed=1 .*spilled=1 ")
        self.assertEqual(os.listdir(os.path.join(self.gw.spool, "tmp")), [])

    def test_concurrent_clients_workers_and_threads(self):
        self.start(workers=2, relay_threads=2, relay_max_connections=2)
        self.backend.final_delay = 0.05
        errors = []
        sent = []
        lock = threading.Lock()

        def client(i):
            try:
                with self.smtp() as s:
                    for j in range(5):
                        m = message(b"c%d m%d" % (i, j), DOTTY + [b"x" * 100] * (i * 37 % 200))
                        self.assertEqual(s.sendmail("s@example.com", ["r%d@example.net" % i],
                                                    m), {})
                        with lock:
                            sent.append(m)
            except Exception as e:  # reported below, in the main thread
                errors.append(repr(e))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        self.assertEqual(errors, [])
        self.assertEqual(sorted(m["data"] for m in self.backend.messages), sorted(sent))
        self.assertEqual(len(sent), 60)
        # at most relay_max_connections per relay thread
        self.assertLessEqual(len(self.pool_conns()), 4)

    def test_smtputf8_offered_when_backend_offers(self):
        self.start()
        with self.smtp() as s:
            s.ehlo("client.example.org")
            self.assertTrue(s.has_extn("smtputf8"))
            refused = s.sendmail("s\u00e9nder@example.com", ["r\u00e9@example.net"],
                                 message(b"utf8"), mail_options=["SMTPUTF8"])
            self.assertEqual(refused, {})
        self.assertIn(b"SMTPUTF8", self.backend.messages[0]["mail"])
        self.assertEqual(self.backend.messages[0]["rcpts"], ["r\u00e9@example.net"])


class RelayNoChunking(RelayBase):
    """Backend with PIPELINING but without CHUNKING or SMTPUTF8: DATA."""
    backend_ext = ["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"]

    def test_data_dot_stuffing_byte_identical(self):
        self.start()
        msg = message(b"data identical", DOTTY)
        self.assertEqual(self.send(msg), (250, ""))
        [m] = self.backend.messages
        self.assertEqual(m["method"], "DATA")
        self.assertEqual(m["data"], msg)
        seg = b"".join(self.pool_conns()[0].segments)
        self.assertIn(b"\r\n..A line that starts with a dot\r\n...two dots\r\n..\r\n", seg)
        # content that ends inside a line (BDAT from the client) gets CRLF:
        # DATA cannot carry it otherwise
        code, _ = self.bdat_raw(b"Subject: raw\r\n\r\n.no line end")
        self.assertEqual(code, 250)
        self.assertEqual(self.backend.messages[1]["data"], b"Subject: raw\r\n\r\n.no line end\r\n")

    def test_pipelined_data(self):
        self.start()
        self.assertEqual(self.send(message(b"p")), (250, ""))
        [conn] = self.pool_conns()
        self.assertTrue(any(b"MAIL FROM:" in seg and b"RCPT TO:" in seg and b"DATA\r\n" in seg
                            for seg in conn.segments), conn.segments)

    def test_smtputf8_not_offered(self):
        self.start()
        with self.smtp() as s:
            s.ehlo("client.example.org")
            self.assertFalse(s.has_extn("smtputf8"))
        self.assertIn("SMTPUTF8 not offered to clients", self.gw.log_text())


class RelayLockstep(RelayBase):
    """Backend without PIPELINING: one command at a time."""
    backend_ext = ["8BITMIME", "CHUNKING"]

    def test_one_command_at_a_time(self):
        self.start()
        msg = message(b"lockstep", DOTTY)
        self.assertEqual(self.send(msg, ["a@example.net", "b@example.net"]), (250, ""))
        self.assertEqual(self.backend.messages[0]["data"], msg)
        [conn] = self.pool_conns()
        for seg in conn.segments:
            self.assertLessEqual(sum(seg.count(v) for v in (b"MAIL ", b"RCPT ", b"BDAT ")), 1,
                                 seg)
        self.assertIn(b"BDAT %d LAST" % len(msg), conn.commands)

    def test_helo_fallback(self):
        self.backend.ehlo_ok = False
        self.start()
        msg = message(b"plain", DOTTY)
        self.assertEqual(self.send(msg), (250, ""))
        [m] = self.backend.messages
        self.assertEqual((m["method"], m["data"]), ("DATA", msg))
        cmds = self.pool_conns()[0].commands
        self.assertEqual([c.split()[0] for c in cmds[:5]],
                         [b"EHLO", b"HELO", b"MAIL", b"RCPT", b"DATA"])
        self.assertEqual(m["mail"], b"MAIL FROM:<sender@example.com>")  # no parameters


class RelayDown(unittest.TestCase):
    binary = None

    def test_unix_socket_backend(self):
        d = tempfile.mkdtemp(prefix="tesgate-it-")
        path = os.path.join(d, "backend.sock")
        backend = FakeBackend(unix_path=path)
        gw = Gateway(self.binary, {"delivery": "smtp", "relay_socket": path})
        try:
            self.assertIn("delivery smtp to unix:" + path, gw.log_text())
            with smtplib.SMTP("127.0.0.1", gw.port, timeout=IO_TIMEOUT) as s:
                self.assertEqual(s.sendmail("a@example.com", ["b@example.net"],
                                            message(b"unix", DOTTY)), {})
            self.assertEqual(backend.messages[0]["data"], message(b"unix", DOTTY))
            self.assertEqual(gw.stop(), 0)
        finally:
            gw.close()
            backend.close()
            shutil.rmtree(d, ignore_errors=True)

    def test_backend_down_then_up(self):
        port = free_port()
        gw = Gateway(self.binary, {"delivery": "smtp", "relay_host": "127.0.0.1",
                                   "relay_port": str(port), "log_level": "debug"})
        backend = None
        try:
            self.assertIn("relay: backend not reachable at start", gw.log_text())
            with smtplib.SMTP("127.0.0.1", gw.port, timeout=IO_TIMEOUT) as s:
                s.ehlo("client.example.org")
                self.assertFalse(s.has_extn("smtputf8"))
                with self.assertRaises(smtplib.SMTPDataError) as cm:
                    s.sendmail("a@example.com", ["b@example.net"], message(b"down"))
                self.assertEqual(cm.exception.smtp_code, 451)
                self.assertIn(b"4.4.1 Backend not reachable (connect: Connection refused)",
                              cm.exception.smtp_error)
                backend = FakeBackend(port=port)
                time.sleep(0.3)  # past the reconnection back-off
                self.assertEqual(s.sendmail("a@example.com", ["b@example.net"],
                                            message(b"up")), {})
            self.assertEqual(backend.messages[0]["data"], message(b"up"))
            self.assertEqual(gw.stop(), 0)
            self.assertIn("is usable again", gw.log_text())
        finally:
            gw.close()
            if backend:
                backend.close()

    def test_config_checks(self):
        d = tempfile.mkdtemp(prefix="tesgate-it-")
        try:
            def check(conf):
                path = os.path.join(d, "t.conf")
                with open(path, "w") as f:
                    f.write(conf)
                return subprocess.run([self.binary, "-c", path, "--check-config"],
                                      capture_output=True, text=True, timeout=30)
            p = check("delivery = smtp\n")
            self.assertEqual(p.returncode, 1)
            self.assertIn("needs relay_host or relay_socket", p.stderr)
            p = check("delivery = discard\n")
            self.assertEqual(p.returncode, 1)
            self.assertIn("i_understand_discard_loses_mail = yes", p.stderr)
            p = check("delivery = smtp\nrelay_host = 127.0.0.1\nrelay_data_timeout = 600\n")
            self.assertEqual(p.returncode, 1)
            self.assertIn("below idle_timeout", p.stderr)
            p = check("delivery = smtp\nrelay_host = ::1\nrelay_port = 2526\n")
            self.assertEqual(p.returncode, 0, p.stderr)
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_discard_backend(self):
        gw = Gateway(self.binary, {"delivery": "discard", "i_understand_discard_loses_mail": "yes"})
        try:
            with smtplib.SMTP("127.0.0.1", gw.port, timeout=IO_TIMEOUT) as s:
                self.assertEqual(s.sendmail("a@example.com", ["b@example.net"],
                                            message(b"gone")), {})
            self.assertEqual(gw.stop(), 0)
            log = gw.log_text()
            self.assertIn("DISCARD BACKEND: every message gets 250 and is THROWN AWAY", log)
            self.assertIn("stats DISCARD BACKEND threw away 1 messages", log)
            self.assertEqual(gw.files("new"), [])
        finally:
            gw.close()


# ---- real Postfix ----

@unittest.skipIf(SMTP_SINK is None, "Postfix's smtp-sink is not installed (apt-get install "
                 "postfix)")
@unittest.skipIf(not IS_ROOT, "smtp-sink drops privileges and needs root to start")
class RelaySmtpSink(unittest.TestCase):
    """smtp-sink offers PIPELINING but not CHUNKING: DATA with dot-stuffing,
    and its dump shows what it received (line ends as LF)."""
    binary = None

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="tesgate-sink-")
        os.chmod(self.dir, 0o755)
        self.dump = os.path.join(self.dir, "dump")
        os.mkdir(self.dump)
        user = "nobody"
        os.chown(self.dump, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
        self.port = free_port()
        self.log = open(os.path.join(self.dir, "sink.log"), "wb")
        self.sink = subprocess.Popen([SMTP_SINK, "-u", user, "-d", self.dump + "/%H%M%S.",
                                      "127.0.0.1:%d" % self.port, "100"],
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
        self.gw = Gateway(self.binary, {"delivery": "smtp", "relay_host": "127.0.0.1",
                                        "relay_port": str(self.port)})

    def tearDown(self):
        try:
            self.assertEqual(self.gw.stop(), 0)
        finally:
            self.gw.close()
            if self.sink.poll() is None:
                self.sink.terminate()
                self.sink.wait(timeout=10)
            self.log.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def dumps(self):
        out = []
        for name in sorted(os.listdir(self.dump)):
            with open(os.path.join(self.dump, name), "rb") as f:
                data = f.read()
            # smtp-sink's own lines first (X-... and its Received header)
            lines = data.split(b"\n")
            i = next(k for k, ln in enumerate(lines) if ln.startswith(b"Received: "))
            i += 1
            while lines[i].startswith(b"\t"):
                i += 1
            out.append(b"\n".join(lines[i:]))
        return out

    def test_byte_identical_through_smtp_sink(self):
        msgs = [message(b"sink %d" % i, DOTTY) for i in range(3)]
        with smtplib.SMTP("127.0.0.1", self.gw.port, timeout=IO_TIMEOUT) as s:
            for m in msgs:
                self.assertEqual(s.sendmail("a@example.com", ["b@example.net"], m), {})
        got = []
        deadline = time.monotonic() + IO_TIMEOUT
        while len(got) < 3 and time.monotonic() < deadline:
            got = self.dumps()
            time.sleep(0.05)
        # the dump holds the unstuffed content with LF line ends, then a blank line
        self.assertEqual(sorted(got), sorted(m.replace(b"\r\n", b"\n") + b"\n" for m in msgs))
        self.assertRegex(self.gw.log_text(), r"offers PIPELINING")


class PostfixInstance(TempPostfix):
    """example.net delivered to the Maildir, everything else refused at RCPT."""

    def __init__(self):
        super().__init__("tesgate-postfix-", "backend.test", "example.net", """mynetworks =
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions =
local_header_rewrite_clients =
default_transport = error:no outside delivery in tests
relay_transport = error:no outside delivery in tests
smtputf8_enable = yes
""")

    def delivered(self):
        return self.messages(("new",))


@unittest.skipIf(POSTFIX is None, "Postfix is not installed (apt-get install postfix)")
@unittest.skipIf(not IS_ROOT, "a Postfix instance starts as root")
class RelayPostfix(unittest.TestCase):
    """A real Postfix as the backend: CHUNKING, PIPELINING, SMTPUTF8; the
    message reaches a Maildir exactly as sent, after Postfix's own headers."""
    binary = None

    def setUp(self):
        self.pf = PostfixInstance()
        try:
            self.gw = Gateway(self.binary, {"delivery": "smtp", "relay_host": "127.0.0.1",
                                            "relay_port": str(self.pf.port)})
        except Exception:
            self.pf.stop()
            raise

    def tearDown(self):
        try:
            self.gw.stop_clean()
        finally:
            self.gw.close()
            self.pf.stop()

    def wait_delivered(self, n):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = self.pf.delivered()
            if len(got) >= n:
                return got
            time.sleep(0.1)
        self.fail("Postfix delivered %d of %d messages:\n%s" % (len(self.pf.delivered()), n,
                                                                self.pf.log()[-3000:]))

    def test_delivered_to_mailbox_byte_identical(self):
        self.assertRegex(self.gw.log_text(), r"offers PIPELINING CHUNKING 8BITMIME SMTPUTF8")
        msgs = [message(b"postfix %d" % i, DOTTY) for i in range(2)]
        with smtplib.SMTP("127.0.0.1", self.gw.port, timeout=IO_TIMEOUT) as s:
            s.ehlo("client.example.org")
            self.assertTrue(s.has_extn("smtputf8"))
            for m in msgs:
                self.assertEqual(s.sendmail("a@example.com", ["user@example.net"], m,
                                            mail_options=["BODY=8BITMIME"]), {})
        got = self.wait_delivered(2)
        for m in msgs:
            lf = m.replace(b"\r\n", b"\n")
            # Postfix puts Return-Path, Delivered-To and its Received in front
            self.assertTrue(any(g.endswith(lf) and b"\nReceived: from " in g[:len(g) - len(lf)]
                                for g in got), (lf, got))
        self.assertIn("status=sent (delivered to maildir)", self.pf.log())

    def test_postfix_refusal_reaches_the_client(self):
        with smtplib.SMTP("127.0.0.1", self.gw.port, timeout=IO_TIMEOUT) as s:
            with self.assertRaises(smtplib.SMTPDataError) as cm:
                s.sendmail("a@example.com", ["someone@elsewhere.example"], message(b"relay"))
        self.assertEqual(cm.exception.smtp_code, 554)
        self.assertIn(b"5.7.1 Backend refused the recipient", cm.exception.smtp_error)
        self.assertIn(b"Relay access denied", cm.exception.smtp_error)
        self.assertEqual(self.pf.delivered(), [])


if __name__ == "__main__":
    sys.exit(run(sys.argv, [RelayFull, RelayNoChunking, RelayLockstep, RelayDown, RelaySmtpSink,
                            RelayPostfix]))
