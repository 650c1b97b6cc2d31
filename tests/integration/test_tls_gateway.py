#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""STARTTLS in tesgate on kernel sockets, against Python's ssl module,
`openssl s_client` and (when installed) testssl.sh.

Every gateway gets throwaway self-signed certificates made with the openssl
CLI in a temporary directory.  Loopback only; every wait is bounded; only
the gateway started here is signalled, by its PID.

usage: test_tls_gateway.py PATH-TO-TESGATE
"""
import hashlib
import os
import re
import select
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_harness import IO_TIMEOUT, Client, Gateway, run  # noqa: E402

TESTSSL_TIMEOUT = 240


def make_cert(d, name, cn):
    """A self-signed ECDSA P-256 pair in d: (cert path, key path)."""
    cert = os.path.join(d, name + ".crt")
    key = os.path.join(d, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-sha256", "-subj", "/CN=" + cn,
                    "-addext", "subjectAltName=DNS:" + cn],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def pem_fingerprint(path):
    with open(path) as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


def client_ctx(version=None):
    """A client that trusts anything (the certificates are self-signed):
    these tests are about the gateway's TLS, not the client's checks."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if version is not None:
        ctx.minimum_version = version
        ctx.maximum_version = version
    return ctx


def message(subject, body_lines):
    head = (b"From: Sender <sender@example.com>\r\n"
            b"To: Rcpt <rcpt@example.net>\r\n"
            b"Subject: " + subject + b"\r\n"
            b"Message-ID: <" + subject.replace(b" ", b".") + b"@example.com>\r\n\r\n")
    return head + b"".join(line + b"\r\n" for line in body_lines)


def plain_to_starttls(port, pipelined=b""):
    """A raw client up to the 220 to STARTTLS (with pipelined bytes sent in
    the same segment as the command)."""
    c = Client(port)
    code, _ = c.reply()
    assert code == 220, code
    c.send(b"EHLO tls.example.org\r\n")
    code, lines = c.reply()
    assert code == 250, lines
    c.ehlo_plain = lines
    c.send(b"STARTTLS\r\n" + pipelined)
    code, lines = c.reply()
    assert code == 220, lines
    return c


class TlsClient:
    """SMTP over STARTTLS on a raw socket: for what smtplib cannot do (TLS
    sessions, versions, certificates, pipelining)."""

    def __init__(self, port, ctx=None, session=None, ehlo=True):
        self.c = plain_to_starttls(port)
        self.ehlo_plain = self.c.ehlo_plain
        # ragged EOFs raise: a clean end must come with close_notify
        self.sock = (ctx or client_ctx()).wrap_socket(self.c.sock, session=session,
                                                      suppress_ragged_eofs=False)
        self.c.sock = self.sock  # the line reader now reads decrypted bytes
        self.ehlo_tls = None
        if ehlo:
            self.c.send(b"EHLO tls.example.org\r\n")
            code, self.ehlo_tls = self.c.reply()
            assert code == 250, self.ehlo_tls

    def cmd(self, line):
        self.c.send(line + b"\r\n")
        return self.c.reply()

    def send_message(self, content, sender=b"s@example.com", rcpt=b"r@example.net"):
        assert self.cmd(b"MAIL FROM:<" + sender + b">")[0] == 250
        assert self.cmd(b"RCPT TO:<" + rcpt + b">")[0] == 250
        assert self.cmd(b"DATA")[0] == 354
        stuffed = b"".join((b"." + ln if ln.startswith(b".") else ln)
                           for ln in content.splitlines(keepends=True))
        self.c.send(stuffed + b".\r\n")
        return self.c.reply()

    def peer_fingerprint(self):
        return hashlib.sha256(self.sock.getpeercert(binary_form=True)).hexdigest()

    def quit(self):
        try:
            code, _ = self.cmd(b"QUIT")
            return code
        finally:
            self.close()

    def close(self):
        self.sock.close()


def server_rx_queue(port, client_port):
    """Octets the kernel holds for the gateway's end of one connection,
    unread by it (/proc/net/tcp): how a paused reader shows."""
    want_local = ":%04X" % port
    want_remote = ":%04X" % client_port
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1].endswith(want_local) and fields[2].endswith(want_remote):
                return int(fields[4].split(":")[1], 16)
    return None


class TlsTest(unittest.TestCase):
    binary = None
    conf = {}
    certs = None  # made once per class

    @classmethod
    def setUpClass(cls):
        cls.certs = tempfile.mkdtemp(prefix="tesgate-tls-certs-")
        cls.cert1, cls.key1 = make_cert(cls.certs, "one", "tesgate-test-one")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.certs, ignore_errors=True)

    def setUp(self):
        # Each test gets its own copies: the reload tests replace them.
        self.tdir = tempfile.mkdtemp(prefix="tesgate-tls-")
        self.cert = os.path.join(self.tdir, "cert.pem")
        self.key = os.path.join(self.tdir, "key.pem")
        shutil.copy(self.cert1, self.cert)
        shutil.copy(self.key1, self.key)
        conf = {"control_socket": "", "tls_cert": self.cert, "tls_key": self.key}
        conf.update(self.conf)
        self.gw = Gateway(self.binary, conf)

    def tearDown(self):
        try:
            self.gw.stop_clean(earlier_exit_ok=True)
        finally:
            self.gw.close()
            shutil.rmtree(self.tdir, ignore_errors=True)

    def wait_messages(self, n):
        self.assertTrue(self.gw.wait_for(lambda: len(self.gw.messages()) >= n),
                        "expected %d messages in new/" % n)
        return self.gw.messages()

    def wait_log(self, pattern):
        ok = self.gw.wait_for(lambda: re.search(pattern, self.gw.log_text()) is not None)
        self.assertTrue(ok, "log has no %r:\n%s" % (pattern, self.gw.log_text()[-3000:]))

    def stop_stats(self):
        """Stop the gateway and return its final counters as a dict."""
        self.assertEqual(self.gw.stop(), 0)
        m = re.search(r"info  stats (.*)", self.gw.log_text())
        self.assertIsNotNone(m, self.gw.log_text()[-3000:])
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}

    def assert_serving(self):
        """A normal STARTTLS session still works."""
        t = TlsClient(self.gw.port)
        self.assertEqual(t.cmd(b"NOOP")[0], 250)
        self.assertEqual(t.quit(), 221)

    def replace_file(self, path, data):
        tmp = path + ".new"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)


class Starttls(TlsTest):
    def test_smtplib_starttls_delivers_byte_identical(self):
        body = [b"Hello over TLS.", b".a dot line", b"..two dots", b"", b"last"]
        msg = message(b"tls test", body)
        with smtplib.SMTP("127.0.0.1", self.gw.port, timeout=IO_TIMEOUT) as s:
            s.ehlo("client.example.org")
            self.assertTrue(s.has_extn("starttls"))
            code, _ = s.starttls(context=client_ctx())
            self.assertEqual(code, 220)
            s.ehlo("client.example.org")
            self.assertFalse(s.has_extn("starttls"), "STARTTLS offered inside TLS")
            self.assertEqual(s.sendmail("sender@example.com", ["rcpt@example.net"], msg), {})
        [(mid, eml, env)] = self.wait_messages(1)
        self.assertEqual(eml, msg)
        self.assertEqual(env["tls"], ["yes"])
        self.assertEqual(env["helo"], ["client.example.org"])
        self.assertEqual(env["mail-from"], ["<sender@example.com>"])
        log = self.gw.log_text()
        self.assertRegex(log, r"tls peer=127\.0\.0\.1:\d+ version=TLSv1\.3 "
                              r"cipher=TLS_AES_256_GCM_SHA384 bits=256 resumed=no")
        self.assertRegex(log, r"message peer=.*queued as %s.* tls=TLSv1\.3/" % re.escape(mid))
        st = self.stop_stats()
        self.assertEqual(st["starttls"], 1)
        self.assertEqual(st["tls_full"], 1)
        self.assertEqual(st["tls_failed"], 0)

    def test_ehlo_inside_tls_has_no_starttls_and_second_starttls_refused(self):
        t = TlsClient(self.gw.port)
        self.assertTrue(any("STARTTLS" in ln for ln in t.ehlo_plain), t.ehlo_plain)
        self.assertFalse(any("STARTTLS" in ln for ln in t.ehlo_tls), t.ehlo_tls)
        code, lines = t.cmd(b"STARTTLS")
        self.assertEqual(code, 503, lines)
        self.assertEqual(t.quit(), 221)

    def test_session_starts_over_after_tls(self):
        c = plain_to_starttls(self.gw.port)
        t = client_ctx().wrap_socket(c.sock)
        c.sock = t
        # RFC 3207 4.2: the client must EHLO again
        c.send(b"MAIL FROM:<a@example.com>\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 503, lines)
        t.close()

    def test_pipelined_command_after_starttls_is_not_executed(self):
        # RFC 3207 4.2, the STARTTLS command injection: what the client sent
        # behind STARTTLS must be dropped, neither answered in plaintext nor
        # run inside TLS.
        c = plain_to_starttls(self.gw.port, pipelined=b"MAIL FROM:<x@y>\r\n")
        self.assertEqual(c.buf, b"", "a reply to the injected command in plaintext")
        t = client_ctx().wrap_socket(c.sock)  # would fail on a plaintext 250
        c.sock = t
        # Had MAIL FROM run inside TLS, RCPT would be accepted.
        c.send(b"RCPT TO:<a@example.net>\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 503, lines)
        c.send(b"EHLO x.example.org\r\nRCPT TO:<a@example.net>\r\nQUIT\r\n")
        self.assertEqual(c.reply()[0], 250)
        code, lines = c.reply()
        self.assertEqual(code, 503, lines)
        self.assertEqual(c.reply()[0], 221)
        t.close()
        self.assertNotIn("handshake failed", self.gw.log_text())

    def test_pipelining_and_bdat_inside_tls(self):
        t = TlsClient(self.gw.port)
        part1 = b"Subject: bdat in tls\r\n\r\n.dot line\r\n"
        part2 = b"chunk line\r\n" * 5000
        t.c.send(b"MAIL FROM:<p@example.com>\r\nRCPT TO:<a@example.net>\r\n"
                 b"BDAT %d\r\n" % len(part1) + part1 +
                 b"BDAT %d LAST\r\n" % len(part2) + part2 + b"QUIT\r\n")
        codes = [t.c.reply()[0] for _ in range(5)]
        self.assertEqual(codes, [250, 250, 250, 250, 221])
        t.close()
        [(_, eml, env)] = self.wait_messages(1)
        self.assertEqual(eml, part1 + part2)
        self.assertEqual(env["tls"], ["yes"])
        self.assertEqual(env["transfer"], ["BDAT"])

    def test_sigterm_421_inside_tls(self):
        t = TlsClient(self.gw.port)
        self.gw.signal(signal.SIGTERM)
        code, lines = t.c.reply()
        self.assertEqual(code, 421, lines)
        self.assertIn("4.3.2", lines[0])
        t.sock.settimeout(IO_TIMEOUT)
        try:
            self.assertEqual(t.sock.recv(100), b"")  # close_notify, then the close
        except ssl.SSLEOFError:
            self.fail("closed without close_notify")
        t.close()
        self.assertEqual(self.gw.wait(), 0)

    def test_20mb_message_inside_tls(self):
        line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        msg = message(b"big tls", [line + b" %07d" % i for i in range(20 * 1024 * 1024 // 82)])
        with smtplib.SMTP("127.0.0.1", self.gw.port, timeout=60) as s:
            s.starttls(context=client_ctx())
            self.assertEqual(s.sendmail("s@example.com", ["r@example.net"], msg), {})
        [(_, eml, env)] = self.wait_messages(1)
        self.assertEqual(hashlib.sha256(eml).hexdigest(), hashlib.sha256(msg).hexdigest())
        self.assertEqual(env["tls"], ["yes"])


class Versions(TlsTest):
    def test_tls12_and_tls13(self):
        for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
                              (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
            t = TlsClient(self.gw.port, client_ctx(version))
            self.assertEqual(t.sock.version(), name)
            cipher = t.sock.cipher()[0]
            self.assertRegex(cipher, r"GCM|CHACHA20", cipher)
            code, lines = t.send_message(message(name.encode(), [b"over " + name.encode()]))
            self.assertEqual(code, 250, lines)
            self.assertEqual(t.quit(), 221)
        msgs = self.wait_messages(2)
        self.assertEqual(sorted(m[2]["tls"][0] for m in msgs), ["yes", "yes"])
        log = self.gw.log_text()
        self.assertIn("version=TLSv1.2 cipher=ECDHE-ECDSA-AES256-GCM-SHA384", log)
        self.assertIn("version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384", log)

    def test_tls11_refused(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # that is the point
            ctx = client_ctx(ssl.TLSVersion.TLSv1_1)
        ctx.set_ciphers("DEFAULT@SECLEVEL=0")  # let this client offer TLS 1.1 at all
        with self.assertRaises(ssl.SSLError) as cm:
            TlsClient(self.gw.port, ctx)
        # the gateway refused it, the client did not give up on its own
        self.assertIn("PROTOCOL_VERSION", str(cm.exception).upper())
        self.wait_log(r"handshake failed: unsupported protocol \(client offered TLSv1\.1\)")
        self.assert_serving()
        st = self.stop_stats()
        self.assertEqual(st["tls_failed"], 1)
        self.assertEqual(st["tls_full"], 1)

    def test_weak_cipher_refused(self):
        ctx = client_ctx(ssl.TLSVersion.TLSv1_2)
        ctx.set_ciphers("AES128-SHA:ECDHE-ECDSA-AES128-SHA")
        with self.assertRaises(ssl.SSLError):
            TlsClient(self.gw.port, ctx)
        self.wait_log(r"handshake failed: no shared cipher")
        self.assert_serving()

    def test_openssl_s_client(self):
        p = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect",
                            "127.0.0.1:%d" % self.gw.port, "-brief", "-ign_eof"],
                           input=b"QUIT\r\n", capture_output=True, timeout=60)
        out = p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, out)
        self.assertIn("CONNECTION ESTABLISHED", out)
        self.assertIn("Protocol version: TLSv1.3", out)
        self.assertIn("Peer certificate: CN = tesgate-test-one", out)
        self.assertIn("221 2.0.0", out)


class Resumption(TlsTest):
    def test_session_resumption_tls13_and_tls12(self):
        for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            ctx = client_ctx(version)
            first = TlsClient(self.gw.port, ctx)
            self.assertFalse(first.sock.session_reused)
            # TLS 1.3 tickets come after the handshake: the EHLO reply was
            # read after it, so the session holds one by now.
            session = first.sock.session
            self.assertTrue(session.has_ticket, version)
            self.assertEqual(first.quit(), 221)
            second = TlsClient(self.gw.port, ctx, session=session)
            self.assertTrue(second.sock.session_reused, version)
            self.assertEqual(second.quit(), 221)
        self.wait_log(r"version=TLSv1\.3 .*resumed=yes")
        self.wait_log(r"version=TLSv1\.2 .*resumed=yes")
        st = self.stop_stats()
        self.assertEqual(st["tls_full"], 2)
        self.assertEqual(st["tls_resumed"], 2)


class NoTickets(TlsTest):
    conf = {"tls_ticket_lifetime": "0"}

    def test_no_resumption_without_tickets(self):
        ctx = client_ctx()
        first = TlsClient(self.gw.port, ctx)
        session = first.sock.session
        self.assertEqual(first.quit(), 221)
        second = TlsClient(self.gw.port, ctx, session=session)
        self.assertFalse(second.sock.session_reused)
        self.assertEqual(second.quit(), 221)


class TicketRotation(TlsTest):
    conf = {"tls_ticket_lifetime": "1"}

    def test_main_loop_rotates_ticket_keys(self):
        # the main loop ticks the key ring; a one-second lifetime shows it
        self.wait_log(r"tls session-ticket key rotated")
        self.assert_serving()


class Reload(TlsTest):
    def test_sighup_new_certificate_old_connection_keeps_working(self):
        old_fp = pem_fingerprint(self.cert)
        before = TlsClient(self.gw.port)
        self.assertEqual(before.peer_fingerprint(), old_fp)

        cert2, key2 = make_cert(self.tdir, "two", "tesgate-test-two")
        with open(cert2, "rb") as f:
            self.replace_file(self.cert, f.read())
        with open(key2, "rb") as f:
            self.replace_file(self.key, f.read())
        self.gw.signal(signal.SIGHUP)
        self.wait_log(r"SIGHUP: tls certificate reloaded \(generation 1\): "
                      r"subject=/CN=tesgate-test-two")

        after = TlsClient(self.gw.port)
        self.assertEqual(after.peer_fingerprint(), pem_fingerprint(cert2))
        self.assertNotEqual(after.peer_fingerprint(), old_fp)
        self.assertEqual(after.quit(), 221)

        # the connection from before the reload goes on with the old one
        code, lines = before.send_message(message(b"after reload", [b"still here"]))
        self.assertEqual(code, 250, lines)
        self.assertEqual(before.peer_fingerprint(), old_fp)
        self.assertEqual(before.quit(), 221)
        self.wait_messages(1)

    def test_sighup_broken_key_keeps_old_certificate(self):
        old_fp = pem_fingerprint(self.cert)
        self.replace_file(self.key, b"-----BEGIN PRIVATE KEY-----\nnot a key\n"
                                    b"-----END PRIVATE KEY-----\n")
        self.gw.signal(signal.SIGHUP)
        self.wait_log(r"error SIGHUP: TLS reload failed: .*key.*; still serving "
                      r"subject=/CN=tesgate-test-one")
        t = TlsClient(self.gw.port)
        self.assertEqual(t.peer_fingerprint(), old_fp)
        self.assertEqual(t.quit(), 221)

    def test_sighup_mismatched_key_keeps_old_certificate(self):
        old_fp = pem_fingerprint(self.cert)
        _, key2 = make_cert(self.tdir, "other", "other")
        with open(key2, "rb") as f:
            self.replace_file(self.key, f.read())
        self.gw.signal(signal.SIGHUP)
        self.wait_log(r"SIGHUP: TLS reload failed: .*does not match")
        t = TlsClient(self.gw.port)
        self.assertEqual(t.peer_fingerprint(), old_fp)
        self.assertEqual(t.quit(), 221)


class Abuse(TlsTest):
    conf = {"metrics_listen": "127.0.0.1:0"}

    def test_garbage_mid_handshake_disconnected_and_counted(self):
        c = plain_to_starttls(self.gw.port)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = client_ctx().wrap_bio(incoming, outgoing)
        with self.assertRaises(ssl.SSLWantReadError):
            obj.do_handshake()
        c.send(outgoing.read())  # a real ClientHello
        first = c.sock.recv(65536)
        self.assertTrue(first and first[0] == 0x16, first[:16])  # the server's flight
        # then, instead of the client's Finished, junk
        c.send(b"\x17\x03\x03\x00\x40" + os.urandom(64) + b"this is not TLS\r\n" * 4)
        deadline = time.monotonic() + IO_TIMEOUT
        closed = False
        while time.monotonic() < deadline:
            try:
                if c.sock.recv(65536) == b"":
                    closed = True
                    break
            except ConnectionResetError:
                closed = True
                break
        self.assertTrue(closed, "the gateway kept the connection open")
        c.close()
        self.wait_log(r"tls peer=127\.0\.0\.1:\d+ handshake failed: ")
        self.assert_serving()
        st = self.stop_stats()
        self.assertEqual(st["tls_failed"], 1)
        self.assertEqual(st["tls_full"], 1)

    def test_not_tls_at_all_after_starttls(self):
        c = plain_to_starttls(self.gw.port)
        c.send(b"MAIL FROM:<plain@example.com>\r\n")
        c.sock.settimeout(IO_TIMEOUT)
        data = b""
        try:
            while True:
                chunk = c.sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
        self.assertNotIn(b"250", data)  # at most a TLS alert, never an SMTP reply
        c.close()
        self.wait_log(r"handshake failed: ")
        self.assert_serving()

    def test_client_gone_mid_handshake(self):
        c = plain_to_starttls(self.gw.port)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = client_ctx().wrap_bio(incoming, outgoing)
        with self.assertRaises(ssl.SSLWantReadError):
            obj.do_handshake()
        hello = outgoing.read()
        c.send(hello[:len(hello) // 2])
        c.close()
        self.assert_serving()
        st = self.stop_stats()
        self.assertEqual(st["tls_failed"], 1)

    def test_client_that_reads_late_inside_tls(self):
        """Back-pressure through TLS: more replies than the socket buffers
        hold.  The gateway must stop reading (its unread input piles up in
        the kernel), lose nothing, not spin, and go on as the client drains."""
        n = 400000  # about 6 MB of replies: more than the 4 MB a send buffer grows to
        sock = socket.socket()
        # a small fixed receive buffer, so the replies back up quickly
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.settimeout(IO_TIMEOUT)
        sock.connect(("127.0.0.1", self.gw.port))
        c = Client.__new__(Client)
        c.sock, c.buf = sock, b""
        self.assertEqual(c.reply()[0], 220)
        c.send(b"EHLO late.example.org\r\n")
        self.assertEqual(c.reply()[0], 250)
        c.send(b"STARTTLS\r\n")
        self.assertEqual(c.reply()[0], 220)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = client_ctx().wrap_bio(incoming, outgoing)
        sock.setblocking(False)
        deadline = time.monotonic() + 120

        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            self._send_all(sock, outgoing.read(), deadline)
            r, _, _ = select.select([sock], [], [], max(0, deadline - time.monotonic()))
            self.assertTrue(r, "handshake timed out")
            chunk = sock.recv(65536)
            self.assertNotEqual(chunk, b"")
            incoming.write(chunk)
        self._send_all(sock, outgoing.read(), deadline)

        obj.write(b"EHLO late.example.org\r\n" +
                  b"".join(b"NOOP %d\r\n" % i for i in range(n)) + b"QUIT\r\n")
        pending = outgoing.read()

        # Send without reading a single reply, until the gateway's unread
        # input stops moving.
        client_port = sock.getsockname()[1]
        last, steady_since = None, None
        while time.monotonic() < deadline:
            _, w, _ = select.select([], [sock] if pending else [], [], 0.1)
            if w:
                try:
                    pending = pending[sock.send(pending):]
                except BlockingIOError:
                    pass
            rx = server_rx_queue(self.gw.port, client_port)
            if rx != last:
                last, steady_since = rx, time.monotonic()
            elif time.monotonic() - steady_since > 1.0:
                break
        self.assertTrue(last, "the gateway read everything without its replies being "
                              "read: no back-pressure (rx_queue %r)" % last)
        print("\n    paused: %d octets unread in the kernel" % last, end=" ", flush=True)
        # Nothing can move for this session now.  Count the workers' wakeups
        # while another client makes 22 round trips: it needs one or two per
        # command; a worker spinning on the paused session would add one per
        # pass of its loop, thousands in the same span.
        w0 = self.gw.metric("tes_io_wakeups_total")
        other = Client(self.gw.port)
        self.assertEqual(other.reply()[0], 220)
        other.send(b"EHLO other.example.org\r\n")
        self.assertEqual(other.reply()[0], 250)
        for _ in range(20):
            other.send(b"NOOP\r\n")
            self.assertEqual(other.reply()[0], 250)
        other.send(b"QUIT\r\n")
        self.assertEqual(other.reply()[0], 221)
        other.close()
        woke = self.gw.metric("tes_io_wakeups_total") - w0
        self.assertLessEqual(woke, 4 * 22 + 10,
                             "the gateway spins while the client does not read")
        self.assertEqual(server_rx_queue(self.gw.port, client_port), last)

        plain = bytearray()
        while time.monotonic() < deadline:
            r, w, _ = select.select([sock], [sock] if pending else [], [], 1.0)
            if w:
                try:
                    pending = pending[sock.send(pending):]
                except BlockingIOError:
                    pass
            if r:
                chunk = sock.recv(1 << 20)
                if chunk == b"":
                    break
                incoming.write(chunk)
                while True:
                    try:
                        data = obj.read(1 << 20)
                    except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                        break
                    if not data:
                        break
                    plain += data
            if plain.endswith(b"\r\n") and b"\r\n221 " in plain[-200:]:
                break
        sock.close()
        lines = bytes(plain).split(b"\r\n")
        self.assertTrue(lines[0].startswith(b"250-"), lines[:3])  # the EHLO reply first
        noops = sum(1 for ln in lines if ln.startswith(b"250 2.0.0"))
        self.assertEqual(noops, n, bytes(plain[-300:]))
        self.assertTrue(lines[-2].startswith(b"221 "), bytes(plain[-300:]))  # QUIT's last

    @staticmethod
    def _send_all(sock, data, deadline):
        while data:
            if time.monotonic() > deadline:
                raise TimeoutError("send")
            _, w, _ = select.select([], [sock], [], 1.0)
            if w:
                try:
                    data = data[sock.send(data):]
                except BlockingIOError:
                    pass


class IdleInsideTls(TlsTest):
    conf = {"idle_timeout": "2"}

    def test_idle_timeout_421_inside_tls(self):
        t = TlsClient(self.gw.port)
        code, lines = t.c.reply()  # nothing sent: the gateway speaks first
        self.assertEqual(code, 421, lines)
        self.assertIn("4.4.2", lines[0])
        t.close()

    def test_idle_mid_handshake_closed(self):
        c = plain_to_starttls(self.gw.port)
        c.sock.settimeout(10)
        self.assertEqual(c.sock.recv(100), b"")  # closed, nothing said in plaintext
        c.close()


class ClientCert(TlsTest):
    conf = {"tls_request_client_cert": "yes"}

    def test_client_certificate_names_logged(self):
        ccert, ckey = make_cert(self.certs, "client", "client.tenant.example")
        ctx = client_ctx()
        ctx.load_cert_chain(ccert, ckey)
        t = TlsClient(self.gw.port, ctx)
        self.assertEqual(t.quit(), 221)
        self.wait_log(r'tls peer=.* client_cn="client\.tenant\.example" '
                      r'client_san=client\.tenant\.example')
        # and without one the handshake goes on all the same
        self.assert_serving()


class NoTls(unittest.TestCase):
    binary = None

    def test_starttls_not_offered_without_certificate(self):
        gw = Gateway(self.binary, {"control_socket": ""})
        try:
            c = Client(gw.port)
            self.assertEqual(c.reply()[0], 220)
            c.send(b"EHLO x.example.org\r\n")
            code, lines = c.reply()
            self.assertFalse(any("STARTTLS" in ln for ln in lines), lines)
            c.send(b"STARTTLS\r\n")
            self.assertEqual(c.reply()[0], 502)
            c.close()
            self.assertIn("starttls off", gw.log_text())
        finally:
            self.assertEqual(gw.stop(), 0)
            gw.close()

    def check(self, conf, args=()):
        with tempfile.TemporaryDirectory(prefix="tesgate-tls-conf-") as d:
            path = os.path.join(d, "tesgate.conf")
            with open(path, "w") as f:
                for k, v in conf.items():
                    f.write("%s = %s\n" % (k, v.replace("@D@", d)))
            make_cert(d, "c", "check.example")  # c.crt, c.key
            make_cert(d, "o", "other.example")  # o.key does not match c.crt
            argv = [self.binary, "-c", path, "--check-config"]
            argv += [a.replace("@D@", d) for a in args]
            return subprocess.run(argv, capture_output=True, text=True, timeout=30)

    def test_cert_without_key_names_the_key(self):
        p = self.check({"tls_cert": "@D@/c.crt"})
        self.assertEqual(p.returncode, 1)
        self.assertIn("tls_key is empty while tls_cert is set", p.stderr)
        p = self.check({"tls_key": "@D@/c.key"})
        self.assertEqual(p.returncode, 1)
        self.assertIn("tls_cert is empty while tls_key is set", p.stderr)

    def test_bad_pairs_stop_start_up(self):
        p = self.check({"tls_cert": "@D@/missing.crt", "tls_key": "@D@/c.key"})
        self.assertEqual(p.returncode, 1)
        self.assertIn("missing.crt", p.stderr)
        p = self.check({"tls_cert": "@D@/c.crt", "tls_key": "@D@/o.key"})
        self.assertEqual(p.returncode, 1)
        self.assertIn("does not match", p.stderr)
        p = self.check({"tls_cert": "@D@/c.crt", "tls_key": "@D@/c.key"})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("TLS certificate loads", p.stdout)
        # the command-line options do the same as the keys
        p = self.check({}, ["--tls-cert", "@D@/c.crt", "--tls-key", "@D@/c.key"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("TLS certificate loads", p.stdout)

    def test_bad_certificate_stops_the_gateway(self):
        with tempfile.TemporaryDirectory(prefix="tesgate-tls-") as d:
            bad = os.path.join(d, "bad.pem")
            with open(bad, "w") as f:
                f.write("not a certificate\n")
            p = subprocess.run([self.binary, "--listen", "127.0.0.1:0", "--spool",
                                os.path.join(d, "spool"), "--tls-cert", bad, "--tls-key", bad],
                               capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("tesgate: tls_cert/tls_key: ", p.stderr)
        self.assertNotIn("listening on", p.stderr)


class TestSsl(TlsTest):
    """testssl.sh (Debian package testssl.sh, command `testssl`)."""

    def test_testssl_no_weak_protocol_or_cipher(self):
        tool = shutil.which("testssl") or shutil.which("testssl.sh")
        if not tool:
            self.skipTest("testssl.sh is not installed (apt-get install testssl.sh)")
        # testssl 3.0 has no --ciphers: --std checks the cipher categories,
        # -E lists every suite offered per protocol, --fs forward secrecy.
        argv = [tool, "-t", "smtp", "--protocols", "--std", "--fs", "-E", "--quiet",
                "--color", "0", "--warnings", "off", "127.0.0.1:%d" % self.gw.port]
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=TESTSSL_TIMEOUT,
                               stdin=subprocess.DEVNULL, cwd=self.tdir)
        except subprocess.TimeoutExpired:
            self.fail("testssl.sh did not finish within %d s" % TESTSSL_TIMEOUT)
        out = p.stdout + p.stderr
        self.assertEqual(p.returncode, 0, out[-3000:])

        def status(label):
            m = re.search(r"^\s*" + re.escape(label) + r"\s{2,}(.+)$", out, re.M)
            self.assertIsNotNone(m, "testssl.sh said nothing about %r:\n%s" % (label, out))
            return m.group(1).strip()

        # Conservative: every line must be there and say exactly this much.
        for proto in ("SSLv2", "SSLv3", "TLS 1", "TLS 1.1"):
            self.assertTrue(status(proto).startswith("not offered"), (proto, status(proto)))
        for proto in ("TLS 1.2", "TLS 1.3"):
            self.assertTrue(status(proto).startswith("offered"), (proto, status(proto)))
        for cat in ("NULL ciphers (no encryption)", "Anonymous NULL Ciphers (no authentication)",
                    "Export ciphers (w/o ADH+NULL)", "LOW: 64 Bit + DES, RC[2,4] (w/o export)",
                    "Triple DES Ciphers / IDEA", "Obsolete CBC ciphers (AES, ARIA etc.)"):
            self.assertTrue(status(cat).startswith("not offered"), (cat, status(cat)))
        self.assertTrue(status("Strong encryption (AEAD ciphers)").startswith("offered"))
        self.assertRegex(out, r"(?:PFS|FS) is offered \(OK\)")

        # -E: suites listed under each protocol heading
        per_proto = {}
        current = None
        for line in out.splitlines():
            head = re.match(r"^(SSLv2|SSLv3|TLS 1|TLS 1\.1|TLS 1\.2|TLS 1\.3)\s*$", line)
            if head:
                current = head.group(1)
                per_proto[current] = []
            elif current and re.match(r"^\s*x[0-9a-f]{2,6}\s", line):
                per_proto[current].append(line.split()[1])
            elif current and line.strip().startswith("Done"):
                current = None
        self.assertEqual(set(per_proto), {"SSLv2", "SSLv3", "TLS 1", "TLS 1.1", "TLS 1.2",
                                          "TLS 1.3"}, out)
        for proto in ("SSLv2", "SSLv3", "TLS 1", "TLS 1.1"):
            self.assertEqual(per_proto[proto], [], proto)
        self.assertTrue(per_proto["TLS 1.2"] and per_proto["TLS 1.3"], per_proto)
        for name in per_proto["TLS 1.2"]:
            self.assertRegex(name, r"^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|"
                                   r"CHACHA20-POLY1305)$")
        for name in per_proto["TLS 1.3"]:
            self.assertIn(name, ("TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
                                 "TLS_AES_128_GCM_SHA256"))
        self.assert_serving()
        print("\n    testssl.sh: TLS 1.2 %s; TLS 1.3 %s" % (
            ",".join(per_proto["TLS 1.2"]), ",".join(per_proto["TLS 1.3"])), end=" ", flush=True)


if __name__ == "__main__":
    sys.exit(run(sys.argv, [Starttls, Versions, Resumption, NoTickets, TicketRotation, Reload,
                            Abuse, IdleInsideTls, ClientCert, NoTls, TestSsl]))
