#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""tesgate on kernel sockets against Python's smtplib and raw sockets.

usage: test_gateway.py PATH-TO-TESGATE
"""
import hashlib
import os
import re
import signal
import smtplib
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_harness import IO_TIMEOUT, Client, Gateway, run  # noqa: E402

HDR_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "headers")


def message(subject, body_lines, extra_headers=b""):
    head = (b"From: Sender <sender@example.com>\r\n"
            b"To: Rcpt <rcpt@example.net>\r\n"
            b"Subject: " + subject + b"\r\n"
            b"Message-ID: <" + subject.replace(b" ", b".") + b"@example.com>\r\n" +
            extra_headers + b"\r\n")
    return head + b"".join(line + b"\r\n" for line in body_lines)


class GatewayTest(unittest.TestCase):
    binary = None
    conf = {}

    def setUp(self):
        self.gw = Gateway(self.binary, self.conf_for_test())

    def tearDown(self):
        try:
            self.gw.stop_clean(earlier_exit_ok=True)
        finally:
            self.gw.close()

    def conf_for_test(self):
        return dict(self.conf)

    def smtp(self):
        return smtplib.SMTP("127.0.0.1", self.gw.port, timeout=IO_TIMEOUT)

    def wait_messages(self, n):
        self.assertTrue(self.gw.wait_for(lambda: len(self.gw.messages()) >= n),
                        "expected %d messages in new/" % n)
        return self.gw.messages()


class Delivery(GatewayTest):
    def test_plain_byte_identical(self):
        body = [b"Hello.", b".A line that starts with a dot", b"..two dots", b".",
                b"", b"last line"]
        msg = message(b"plain test", body)
        with self.smtp() as s:
            code, text = s.ehlo("client.example.org")
            self.assertEqual(code, 250)
            # the client's address literal, bracketed once (RFC 5321 4.1.3)
            self.assertIn(b"Hello client.example.org [127.0.0.1]", text.splitlines()[0])
            refused = s.sendmail("sender@example.com", ["rcpt@example.net"], msg)
            self.assertEqual(refused, {})
        [(mid, eml, env)] = self.wait_messages(1)
        self.assertEqual(eml, msg)  # smtplib stuffs dots; the spool has them unstuffed
        self.assertEqual(env["id"], [mid])
        self.assertEqual(env["mail-from"], ["<sender@example.com>"])
        self.assertEqual(env["rcpt"], ["<rcpt@example.net>"])
        self.assertEqual(env["helo"], ["client.example.org"])
        self.assertEqual(env["size"], [str(len(msg))])
        self.assertEqual(env["tls"], ["no"])
        self.assertEqual(env["transfer"], ["DATA"])
        self.assertTrue(env["peer"][0].startswith("127.0.0.1:"))
        self.assertEqual(self.gw.files("tmp"), [])

    def test_exchange_detection_logged(self):
        with open(os.path.join(HDR_DIR, "ex2016-tls.hdr"), "rb") as f:
            hdr = f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        msg = hdr + b"Body.\r\n"
        with self.smtp() as s:
            s.sendmail("grace.okafor@contoso.com", ["ian.hughes@example.net"], msg)
        [(_, eml, _)] = self.wait_messages(1)
        self.assertEqual(eml, msg)
        log = self.gw.log_text()
        self.assertRegex(log, r"detect peer=127\.0\.0\.1:\d+ .*server=ex16-02\.contoso\.local "
                              r"build=15\.1\.2507\.35 family=2016")

    def test_pipelining_whole_transaction_in_one_segment(self):
        c = Client(self.gw.port)
        self.assertEqual(c.reply()[0], 220)
        c.send(b"EHLO pipe.example.org\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 250)
        self.assertTrue(any("PIPELINING" in line for line in lines), lines)
        content = b"Subject: pipelined\r\n\r\nbody\r\n..stuffed\r\n"
        c.send(b"MAIL FROM:<p@example.com>\r\nRCPT TO:<a@example.net>\r\n"
               b"RCPT TO:<b@example.net>\r\nDATA\r\n" + content + b".\r\nQUIT\r\n")
        codes = [c.reply()[0] for _ in range(6)]
        self.assertEqual(codes, [250, 250, 250, 354, 250, 221])
        self.assertTrue(c.closed())
        c.close()
        [(_, eml, env)] = self.wait_messages(1)
        self.assertEqual(eml, b"Subject: pipelined\r\n\r\nbody\r\n.stuffed\r\n")
        self.assertEqual(env["rcpt"], ["<a@example.net>", "<b@example.net>"])

    def test_bdat(self):
        c = Client(self.gw.port)
        self.assertEqual(c.reply()[0], 220)
        c.send(b"EHLO bdat.example.org\r\n")
        code, lines = c.reply()
        self.assertTrue(any("CHUNKING" in line for line in lines), lines)
        part1 = b"Subject: bdat\r\n\r\n.a dot line stays as it is in BDAT\r\n"
        part2 = b"second chunk\r\n" * 1000
        c.send(b"MAIL FROM:<x@example.com>\r\nRCPT TO:<y@example.net>\r\n")
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(c.reply()[0], 250)
        c.send(b"BDAT %d\r\n" % len(part1) + part1)
        self.assertEqual(c.reply()[0], 250)
        c.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
        code, lines = c.reply()
        self.assertEqual(code, 250, lines)
        c.send(b"QUIT\r\n")
        self.assertEqual(c.reply()[0], 221)
        c.close()
        [(_, eml, env)] = self.wait_messages(1)
        self.assertEqual(eml, part1 + part2)
        self.assertEqual(env["transfer"], ["BDAT"])

    def test_8bitmime(self):
        msg = message(b"8bit", ["Grüße aus Zürich, ça va?".encode("utf-8"), b"\xe2\x82\xac 10"],
                      b"Content-Type: text/plain; charset=utf-8\r\n"
                      b"Content-Transfer-Encoding: 8bit\r\n")
        with self.smtp() as s:
            s.ehlo()
            self.assertTrue(s.has_extn("8bitmime"))
            s.sendmail("s@example.com", ["r@example.net"], msg, mail_options=["BODY=8BITMIME"])
        [(_, eml, env)] = self.wait_messages(1)
        self.assertEqual(eml, msg)
        self.assertEqual(env["body"], ["8BITMIME"])

    def test_100_recipients_and_the_101st(self):
        rcpts = ["user%03d@example.net" % i for i in range(101)]
        with self.smtp() as s:
            refused = s.sendmail("s@example.com", rcpts, message(b"many", [b"hi"]))
        self.assertEqual(list(refused), [rcpts[100]])
        self.assertEqual(refused[rcpts[100]][0], 452)
        [(_, _, env)] = self.wait_messages(1)
        self.assertEqual(env["rcpt"], ["<%s>" % r for r in rcpts[:100]])

    def test_messages_per_connection_and_rset(self):
        with self.smtp() as s:
            for i in range(5):
                s.sendmail("s@example.com", ["r@example.net"], message(b"n%d" % i, [b"x"]))
            s.mail("s@example.com")
            s.rcpt("r@example.net")
            self.assertEqual(s.rset()[0], 250)
        self.assertEqual(len(self.wait_messages(5)), 5)


class SizeLimit(GatewayTest):
    conf = {"max_message_size": "100000"}

    def test_over_limit_refused_552(self):
        with self.smtp() as s:
            s.ehlo()
            self.assertEqual(s.esmtp_features.get("size"), "100000")
            # Declared too big: refused at MAIL.
            code, _ = s.mail("s@example.com", ["SIZE=200000"])
            self.assertEqual(code, 552)
            # Also refused by smtplib's own SIZE= before any content.
            big = message(b"big", [b"x" * 70] * 2000)
            with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
                s.sendmail("s@example.com", ["r@example.net"], big)
            self.assertEqual(cm.exception.smtp_code, 552)
            # Not declared: refused at the end of data, after reading it all.
            self.assertEqual(s.mail("s@example.com")[0], 250)
            self.assertEqual(s.rcpt("r@example.net")[0], 250)
            code, text = s.data(big)
            self.assertEqual(code, 552, text)
            # The session goes on.
            s.sendmail("s@example.com", ["r@example.net"], message(b"small", [b"ok"]))
            # a later message: once it is in, anything the refused ones left
            # would be too (one worker, one session, in order)
            s.sendmail("s@example.com", ["r@example.net"], message(b"later", [b"ok"]))
        msgs = self.wait_messages(2)
        subjects = sorted(re.search(rb"^Subject: (.*?)\r$", m[1], re.M).group(1) for m in msgs)
        self.assertEqual(subjects, [b"later", b"small"])
        self.assertEqual(self.gw.files("tmp"), [])


class BigMessage(GatewayTest):
    conf = {"max_message_size": "25M"}

    def test_20mb_intact(self):
        line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,;:-_+=!?"
        lines = [b"%08d " % i + line for i in range(20 * 1024 * 1024 // (len(line) + 11))]
        msg = message(b"twenty", lines)
        self.assertGreater(len(msg), 20 * 1000 * 1000)
        t0 = time.monotonic()
        with smtplib.SMTP("127.0.0.1", self.gw.port, timeout=60) as s:
            s.sendmail("s@example.com", ["r@example.net"], msg)
        took = time.monotonic() - t0
        [(_, eml, env)] = self.wait_messages(1)
        self.assertEqual(len(eml), len(msg))
        self.assertEqual(hashlib.sha256(eml).hexdigest(), hashlib.sha256(msg).hexdigest())
        self.assertEqual(env["size"], [str(len(msg))])
        print("\n    20 MB message: %.2f s, %.1f MB/s" % (took, len(msg) / took / 1e6),
              end=" ", flush=True)


class ConnectionLimits(GatewayTest):
    conf = {"max_connections_per_source": "3", "max_connections": "10"}

    def test_per_source_limit_421(self):
        held = [Client(self.gw.port) for _ in range(3)]
        for c in held:
            self.assertEqual(c.reply()[0], 220)
        extra = Client(self.gw.port)
        line = extra.line()
        self.assertTrue(line.startswith("421 4.7.0 "), line)
        self.assertIn("Too many connections from your address", line)
        self.assertTrue(extra.closed())
        extra.close()
        # A slot comes back when a connection ends.
        held[0].send(b"QUIT\r\n")
        self.assertEqual(held[0].reply()[0], 221)
        held[0].close()
        ok = False
        deadline = time.monotonic() + IO_TIMEOUT
        while not ok and time.monotonic() < deadline:
            c = Client(self.gw.port)
            ok = c.line().startswith("220 ")
            c.close()
            if not ok:
                time.sleep(0.05)
        self.assertTrue(ok, "no slot after a connection closed")
        for c in held[1:]:
            c.close()


class GlobalLimit(GatewayTest):
    conf = {"max_connections_per_source": "0", "max_connections": "2"}

    def test_global_limit_421(self):
        held = [Client(self.gw.port) for _ in range(2)]
        for c in held:
            self.assertEqual(c.reply()[0], 220)
        extra = Client(self.gw.port)
        line = extra.line()
        self.assertTrue(line.startswith("421 4.7.0 "), line)
        extra.close()
        for c in held:
            c.close()


class ClientGone(GatewayTest):
    def test_disconnect_mid_data_leaves_nothing(self):
        for size in (1000, 300 * 1000):  # within the stage, and spilled to tmp/
            c = Client(self.gw.port)
            self.assertEqual(c.reply()[0], 220)
            c.send(b"EHLO gone.example.org\r\n")
            c.reply()
            c.send(b"MAIL FROM:<g@example.com>\r\nRCPT TO:<h@example.net>\r\nDATA\r\n")
            self.assertEqual([c.reply()[0] for _ in range(3)], [250, 250, 354])
            c.send(b"Subject: gone\r\n\r\n" + (b"y" * 98 + b"\r\n") * (size // 100))
            time.sleep(0.2)
            c.sock.close()
        self.assertTrue(self.gw.wait_for(lambda: self.gw.files("tmp") == []),
                        self.gw.files("tmp"))
        self.assertEqual(self.gw.files("new"), [])
        # Still serving.
        with self.smtp() as s:
            s.sendmail("s@example.com", ["r@example.net"], message(b"after", [b"ok"]))
        self.assertEqual(len(self.wait_messages(1)), 1)


def limit_file_size():
    """In the child before exec: files may not grow past 1 MiB, and the
    signal for trying stays ignored across exec, so write() fails (EFBIG)."""
    import resource
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


class SpoolWriteError(GatewayTest):
    def setUp(self):
        self.gw = Gateway(self.binary, self.conf_for_test(), preexec_fn=limit_file_size)

    def test_write_error_451_and_nothing_visible(self):
        big = message(b"too big for the disk", [b"z" * 70] * 40000)  # ~2.8 MB
        with self.smtp() as s:
            s.ehlo()
            self.assertEqual(s.mail("s@example.com")[0], 250)
            self.assertEqual(s.rcpt("r@example.net")[0], 250)
            code, text = s.data(big)
            self.assertEqual(code, 451, text)
            self.assertIn(b"4.3.0", text)
            # The same session still delivers what fits.
            s.sendmail("s@example.com", ["r@example.net"], message(b"fits", [b"ok"]))
        msgs = self.wait_messages(1)
        self.assertEqual(len(msgs), 1)
        self.assertIn(b"Subject: fits", msgs[0][1])
        self.assertEqual(self.gw.files("tmp"), [])


class Shutdown(GatewayTest):
    def test_sigterm_421_to_idle_sessions(self):
        clients = [Client(self.gw.port) for _ in range(3)]
        for c in clients:
            self.assertEqual(c.reply()[0], 220)
            c.send(b"EHLO idle.example.org\r\n")
            self.assertEqual(c.reply()[0], 250)
        self.gw.signal(signal.SIGTERM)
        for c in clients:
            code, lines = c.reply()
            self.assertEqual(code, 421, lines)
            self.assertTrue(lines[0].startswith("421 4.3.2"), lines)
            self.assertTrue(c.closed())
            c.close()
        self.assertEqual(self.gw.wait(), 0)
        self.assertIn("stopped", self.gw.log_text())

    def test_sigterm_finishes_message_in_flight(self):
        c = Client(self.gw.port)
        self.assertEqual(c.reply()[0], 220)
        c.send(b"EHLO busy.example.org\r\nMAIL FROM:<b@example.com>\r\n"
               b"RCPT TO:<c@example.net>\r\nDATA\r\n")
        self.assertEqual([c.reply()[0] for _ in range(4)], [250, 250, 250, 354])
        c.send(b"Subject: in flight\r\n\r\nfirst half\r\n")
        self.gw.signal(signal.SIGTERM)
        # it has begun to shut down, and waits for the message in flight
        self.assertTrue(self.gw.wait_for(lambda: "shutting down" in self.gw.log_text()),
                        self.gw.log_text())
        self.assertIsNone(self.gw.proc.poll(), "exited with a message in flight")
        c.send(b"second half\r\n.\r\n")
        self.assertEqual(c.reply()[0], 250)
        code, lines = c.reply()
        self.assertEqual(code, 421, lines)
        self.assertTrue(c.closed())
        c.close()
        self.assertEqual(self.gw.wait(), 0)
        [(_, eml, _)] = self.gw.messages()
        self.assertEqual(eml, b"Subject: in flight\r\n\r\nfirst half\r\nsecond half\r\n")


class Timeouts(GatewayTest):
    conf = {"idle_timeout": "1", "session_timeout": "3"}

    def test_idle_timeout_421(self):
        c = Client(self.gw.port)
        self.assertEqual(c.reply()[0], 220)
        # nothing sent: the next thing the client hears is the idle 421
        code, lines = c.reply()
        self.assertEqual(code, 421, lines)
        self.assertIn("4.4.2", lines[0])
        self.assertIn("Idle timeout", lines[0])
        self.assertTrue(c.closed())
        c.close()

    def test_session_timeout_421_however_busy(self):
        c = Client(self.gw.port)
        self.assertEqual(c.reply()[0], 220)
        noops = 0
        for _ in range(100):  # 30 s of NOOPs at most; the limit is 3 s
            c.send(b"NOOP\r\n")
            code, lines = c.reply()
            if code != 250:
                break
            noops += 1
            time.sleep(0.3)
        # a busy session (never idle for the 1 s idle timeout) is cut by the
        # session limit, with its own text
        self.assertEqual(code, 421, lines)
        self.assertIn("4.4.2", lines[0])
        self.assertIn("Session time limit reached", lines[0])
        self.assertGreater(noops, 0)
        self.assertTrue(c.closed())
        c.close()


class Workers(GatewayTest):
    conf = {"workers": "2", "max_connections_per_source": "40"}

    def test_parallel_clients_on_two_workers(self):
        import threading
        errors = []

        def client(n):
            try:
                with self.smtp() as s:
                    for i in range(5):
                        s.sendmail("s@example.com", ["r@example.net"],
                                   message(b"c%d m%d" % (n, i), [b"x" * 60] * (50 * (i + 1))))
            except Exception as e:  # reported below, with the thread's number
                errors.append((n, repr(e)))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        msgs = self.wait_messages(100)
        self.assertEqual(len(msgs), 100)
        self.assertEqual(len({m[0] for m in msgs}), 100)
        self.assertEqual(len({m[1] for m in msgs}), 100)  # each message its own content
        # a spool id names the worker that took the message: both served
        workers = {m[0].split("W")[1].split("C")[0] for m in msgs}
        self.assertEqual(len(workers), 2, sorted(m[0] for m in msgs))


class BackPressure(GatewayTest):
    def test_client_that_reads_late_gets_every_reply_in_order(self):
        import threading
        n = 100000
        c = Client(self.gw.port, timeout=60)
        self.assertEqual(c.reply()[0], 220)
        # Far more replies than the socket buffers hold: the gateway must stop
        # reading, keep what it has, and go on as the client drains.
        cmds = b"".join(b"NOOP %d\r\n" % i for i in range(n)) + b"QUIT\r\n"
        sender = threading.Thread(target=c.send, args=(cmds,))
        sender.start()
        time.sleep(1.0)
        got = 0
        for _ in range(n):
            code, _ = c.reply()
            self.assertEqual(code, 250)
            got += 1
        self.assertEqual(c.reply()[0], 221)
        sender.join(60)
        self.assertEqual(got, n)
        c.close()


class Config(unittest.TestCase):
    binary = None

    def test_bad_value_names_file_line_key(self):
        import subprocess
        import tempfile
        with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
            f.write("# comment\nworkers = 1\n\nmax_recipients = lots\n")
            f.flush()
            p = subprocess.run([self.binary, "-c", f.name, "--check-config"],
                               capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("%s:4: max_recipients:" % f.name, p.stderr)

    def test_unknown_key_and_check_config(self):
        import subprocess
        import tempfile
        with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
            f.write("listen = 127.0.0.1:2525\nno_such_key = 1\n")
            f.flush()
            p = subprocess.run([self.binary, "-c", f.name, "--check-config"],
                               capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn(":2: no_such_key: unknown key", p.stderr)
        p = subprocess.run([self.binary, "--check-config"], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("configuration OK", p.stdout)

    def test_example_file_has_every_key_and_checks(self):
        import subprocess
        import tempfile
        here = os.path.dirname(os.path.abspath(__file__))
        example = os.path.join(here, "..", "..", "etc", "tesgate.conf.example")
        with open(example) as f:
            lines = [line[1:] for line in f if re.match(r"#[a-z_]+ =", line)]
        keys = sorted(line.split("=")[0].strip() for line in lines)
        p = subprocess.run([self.binary, "--print-defaults"], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 0)
        defaults = sorted(re.findall(r"^([a-z_]+) =", p.stdout, re.M))
        self.assertEqual(keys, defaults)
        with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
            f.writelines(lines)
            f.flush()
            p = subprocess.run([self.binary, "-c", f.name, "--check-config"],
                               capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_port_in_use(self):
        import shutil
        import subprocess
        import tempfile
        d = tempfile.mkdtemp(prefix="tesgate-it-")
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        try:
            p = subprocess.run([self.binary, "--listen", "127.0.0.1:%d" % port, "--spool",
                                os.path.join(d, "spool")], capture_output=True, text=True,
                               timeout=30)
        finally:
            s.close()
            shutil.rmtree(d, ignore_errors=True)
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot listen on 127.0.0.1:%d" % port, p.stderr)


if __name__ == "__main__":
    sys.exit(run(sys.argv, [Delivery, SizeLimit, BigMessage, ConnectionLimits, GlobalLimit,
                            ClientGone, SpoolWriteError, Shutdown, Timeouts, Workers,
                            BackPressure,
                            Config]))
