#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Slow clients and many sources on the DPDK path (issue 14, item 6), as
tests/integration/test_slow_clients.py on kernel sockets:

- twenty sources (addresses on the kernel side of the tap) that each open
  every connection they may cannot take every slot: max_connections 100,
  max_connections_per_source 5; some of theirs are refused "from your
  address", and a twenty-first source still delivers a message;
- a client that sends a byte at a time, below min_data_rate over
  min_data_rate_window, gets 421 4.4.2 "Connection too slow" and is closed,
  while another client is served.

Needs root and free hugepages: exits 77 otherwise.  No wall-clock threshold:
every wait is bounded, and what is asserted is counted.

Usage: test_slow_clients_dpdk.py TESGATE
"""
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap_harness import hugepages_free, ip, skip, verdict  # noqa: E402
import test_tesgate_dpdk as td  # noqa: E402

IO = 30.0


def first_line(s):
    data = b""
    while b"\r\n" not in data:
        chunk = s.recv(512)
        if not chunk:
            break
        data += chunk
    return data


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    if os.geteuid() != 0:
        skip("needs root (tap, hugepages)")
    if hugepages_free() < 64:
        skip("needs free 2 MB hugepages (tools/setup.sh reserves them)")
    failed = []
    gw = td.Gateway(sys.argv[1], 8, extra="max_connections = 100\n"
                    "max_connections_per_source = 5\nmin_data_rate = 100\n"
                    "min_data_rate_window = 1\nidle_timeout = 60\n")
    held = []
    try:
        gw.start()
        net = gw.kernel_ip.rsplit(".", 1)[0]
        sources = ["%s.%d" % (net, 10 + i) for i in range(21)]
        for a in sources:
            ip("addr", "add", a + "/24", "dev", gw.iface)
        refused, odd = 0, []
        for _ in range(5):
            for a in sources[:20]:
                s = socket.create_connection((gw.ip, td.PORT), timeout=IO, source_address=(a, 0))
                line = first_line(s)
                if line.startswith(b"220 "):
                    held.append(s)
                    continue
                if not (line.startswith(b"421 ") and b"from your address" in line):
                    odd.append(line)
                refused += 1
                s.close()
        td.check(not odd, "every refused connection is told it is its source's: %r" % odd[:3])
        td.check(len(held) < 100, "twenty sources hold %d of 100 slots" % len(held))
        td.check(refused > 0, "%d of their connections refused" % refused)
        msg = td.make_message(8000, 1500)
        s = td.smtplib.SMTP(gw.ip, td.PORT, timeout=IO, source_address=(sources[20], 0))
        try:
            s.sendmail("a@example.org", ["b@example.net"], msg)
        finally:
            s.quit()
        gw.wait_spooled(1)
        td.check(gw.spooled() == [msg], "a twenty-first source delivers a message")
        for s in held:
            s.close()
        held = []

        # a trickle, cut for being slow, while another client is served
        c = socket.create_connection((gw.ip, td.PORT), timeout=IO)
        f = c.makefile("rb")
        td.check(f.readline().startswith(b"220 "), "the slow client's greeting")
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

        t = threading.Thread(target=trickle, daemon=True)
        t.start()
        other = td.make_message(8001, 1200)
        td.send_smtplib(gw.ip, [other])
        last = b""
        while True:
            line = f.readline()
            if not line:
                break
            last = line
            if line.startswith(b"421 "):
                break
        stop.set()
        td.check(last.startswith(b"421 4.4.2") and b"Connection too slow" in last,
                 "the slow client gets 421 4.4.2: %r" % last)
        td.check(f.readline() == b"", "and the close")
        c.close()
        gw.wait_spooled(2)
        td.check(other in gw.spooled(), "the other client was served meanwhile")
        rc = gw.stop()
        td.check(rc == 0, "exit status %d" % rc)
        td.check("slow_closed=1" in gw.text(), "counted in the stats line")
    except (td.Failure, RuntimeError, OSError, td.smtplib.SMTPException) as e:
        failed.append(str(e))
    finally:
        for s in held:
            s.close()
        gw.cleanup()
    return verdict(failed)


if __name__ == "__main__":
    sys.exit(main())
