# SPDX-License-Identifier: BSD-3-Clause
"""Bad input on either socket (truncated frames, huge lengths, unknown
versions, garbage JSON, protocol violations): tescontrol logs one clear
line, disconnects that peer, and keeps serving everybody else."""
import os
import socket
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ctl_harness import (FakeGateway, Tescontrol, decode_frames, frame,  # noqa: E402
                         raw_connect, read_until_closed)

OLD_2016 = "15.1.2507.35"
HELLO = {"v": 1, "type": "hello", "gateway": "bad", "version": "x"}


def raw(payload):
    return struct.pack(">I", len(payload)) + payload


# (name, bytes to send, close our side after sending, expected log text)
FRAMING_CASES = [
    ("truncated payload", struct.pack(">I", 100) + b'{"v":1,"type"', True,
     "truncated frame: connection closed after 13 of 100 payload octets"),
    ("truncated length", b"\x00\x00", True,
     "truncated frame: connection closed after 2 of 4 length octets"),
    ("huge length", b"\xff\xff\xff\xff", False,
     "frame length 4294967295 exceeds the limit of 1048576 octets"),
    ("one over the limit", struct.pack(">I", 1024 * 1024 + 1), False,
     "frame length 1048577 exceeds the limit"),
    ("unknown version", raw(b'{"v":2,"type":"hello","gateway":"g","version":"x"}'), False,
     "unknown protocol version 2 (this side speaks 1)"),
    ("no version", raw(b'{"type":"hello"}'), False, 'no integer protocol version "v"'),
    ("garbage JSON", raw(b"{not json at all"), False, "invalid JSON in frame"),
    ("not an object", raw(b"[1,2,3]"), False, "frame is not a JSON object"),
    ("invalid UTF-8", raw(b'{"v":1,"type":"hello","gateway":"\xff\xfe"}'), False,
     "invalid JSON in frame"),
    ("empty frame", raw(b""), False, "empty frame"),
    ("trailing garbage", raw(b'{"v":1,"type":"hello"} trailing'), False,
     "invalid JSON in frame"),
]

GATEWAY_PROTOCOL_CASES = [
    ("sighting before hello",
     frame({"v": 1, "type": "sighting", "tenant": 1, "fqdn": "x", "build": OLD_2016,
            "family": "2016", "class": "vulnerable"}),
     "expected hello first"),
    ("no type", frame({"v": 1, "gateway": "g"}), 'frame without a "type"'),
    ("bad hello", frame({"v": 1, "type": "hello", "gateway": 5}), "bad hello"),
    ("unknown type", frame(HELLO) + frame({"v": 1, "type": "self-destruct"}),
     'unknown message type "self-destruct"'),
    ("second hello", frame(HELLO) + frame(HELLO), "a second hello"),
    ("bad build", frame(HELLO) + frame({"v": 1, "type": "sighting", "tenant": 1,
                                        "fqdn": "x", "build": "15.1", "family": "2016",
                                        "class": "vulnerable"}),
     'bad sighting: "build" = "15.1" is not a build'),
    ("bad counters", frame(HELLO) + frame({"v": 1, "type": "counters",
                                           "counters": {"x": -1}}), "bad counters"),
]


class BadInput(unittest.TestCase):
    def setUp(self):
        self.tc = Tescontrol()
        self.addCleanup(self._cleanup)
        self.tc.start()
        self.tc.ctl("tenant", "add", 1, "Bear")
        self.good = FakeGateway(self.tc.gw_sock, "good")
        self.addCleanup(self.good.close)
        self.n = 0

    def _cleanup(self):
        sys.stderr.write("---- tescontrol log ----\n" + self.tc.log_text()[-20000:])
        self.tc.cleanup()

    def still_serving(self, gateways=1):
        """The good gateway and the admin socket are unaffected."""
        self.n += 1
        ack = self.good.sighting(1, f"ok{self.n}.bear.local", OLD_2016)
        self.assertTrue(ack["ok"])
        self.assertFalse(self.good.closed)
        st = self.tc.ctl("status")
        self.assertEqual(st["gateways_connected"], gateways)
        self.assertIsNotNone(self.tc.server(1, f"ok{self.n}.bear.local"))

    def expect_rejected(self, path, data, close_after, text, sock_label):
        before = self.tc.log_text().count("bad input")
        s = raw_connect(path)
        try:
            s.sendall(data)
            if close_after:
                s.shutdown(socket.SHUT_WR)
            got = read_until_closed(s)
        finally:
            s.close()
        self.tc.wait_log(r"bad input", count=before + 1)
        lines = [ln for ln in self.tc.log_text().splitlines() if "bad input" in ln]
        self.assertIn(text, lines[-1], f"{sock_label}: log line {lines[-1]!r}")
        self.assertIn(sock_label, lines[-1])
        self.assertTrue(lines[-1].endswith("disconnecting it"), lines[-1])
        # The peer is told why, where the connection still allows it.
        for m in decode_frames(got):
            msg = m.get("message") or m.get("error") or ""
            self.assertIn(text.split(" (")[0][:20], msg)

    def test_gateway_socket_framing(self):
        for name, data, close_after, text in FRAMING_CASES:
            with self.subTest(name):
                self.expect_rejected(self.tc.gw_sock, data, close_after, text, "gateway #")
                self.still_serving()

    def test_gateway_protocol_violations(self):
        for name, data, text in GATEWAY_PROTOCOL_CASES:
            with self.subTest(name):
                self.expect_rejected(self.tc.gw_sock, data, False, text, "gateway #")
                self.still_serving()

    def test_admin_socket_framing(self):
        for name, data, close_after, text in FRAMING_CASES:
            with self.subTest(name):
                self.expect_rejected(self.tc.admin_sock, data, close_after, text, "admin #")
                self.still_serving()

    def test_admin_bad_requests_keep_the_connection(self):
        # A well-formed request that cannot be done is an error reply, not
        # a disconnect.
        s = raw_connect(self.tc.admin_sock)
        self.addCleanup(s.close)
        for req, err in [
            ({"v": 1, "cmd": "launch", "args": {}}, 'unknown command "launch"'),
            ({"v": 1, "cmd": "pause.add", "args": {"tenant": 1}}, 'missing argument "days"'),
            ({"v": 1, "cmd": "report", "args": {"limit": "x"}}, '"limit" must be'),
            ({"v": 1, "cmd": "tenant.add", "args": {"id": 1, "name": "dup"}},
             "tenant 1 already exists"),
        ]:
            s.sendall(frame(req))
            resp = self._read_one(s)
            self.assertFalse(resp["ok"])
            self.assertIn(err, resp["error"])
        s.sendall(frame({"v": 1, "cmd": "status"}))
        self.assertTrue(self._read_one(s)["ok"])
        # A frame without "cmd" breaks the protocol: disconnected.
        self.expect_rejected(self.tc.admin_sock, frame({"v": 1, "args": {}}), False,
                             'missing "cmd"', "admin #")
        self.still_serving()

    @staticmethod
    def _read_one(s):
        data = b""
        while True:
            frames = decode_frames(data)
            if frames:
                return frames[0]
            chunk = s.recv(65536)
            if not chunk:
                raise AssertionError("closed")
            data += chunk

    def test_split_frames_are_fine(self):
        # Byte-at-a-time delivery is not bad input.
        s = raw_connect(self.tc.gw_sock)
        self.addCleanup(s.close)
        data = frame(HELLO)
        for i in range(len(data)):
            s.send(data[i:i + 1])
        got = b""
        while not any(m["type"] == "sync-end" for m in decode_frames(got)):
            chunk = s.recv(65536)
            self.assertTrue(chunk, "closed")
            got += chunk
        self.assertEqual(decode_frames(got)[0]["type"], "sync-begin")
        self.still_serving(gateways=2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
