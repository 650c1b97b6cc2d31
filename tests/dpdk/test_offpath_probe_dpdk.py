#!/usr/bin/env python3
"""The challenge-ACK side channel of blind in-window attacks
(CVE-2016-5696), probed off-path against tesgate (io = dpdk) over net_tap.

A victim session (the Linux kernel's TCP) is open to tesgate.  An attacker
holds a connection of its own, made from raw frames on the tap (its own
address and MAC, so it sees what tesgate answers it).  Each round the
attacker guesses a tuple (the victim's address and a port): it sends 1100
spoofed SYNs "from" that tuple to tesgate (to an existing connection each
draws a challenge ACK; to no connection, a SYN-ACK to the spoofed source,
which the attacker does not see), then 10 in-window RSTs on its own
connection, and records the answers it gets there: how many, their flags,
IP ID and DF.  With a challenge-ACK budget shared by the stack (before the
fix: 1000 a second), the SYNs to an existing tuple spend it and the
attacker's own RSTs go unanswered; to a tuple that does not exist they
spend nothing: the tuple's existence leaks, then its sequence numbers.

Passes when the attacker's answers are the same whether the guessed tuple
exists or not (three rounds each, alternating), every answer has IP ID 0
with DF, and the victim session still works afterwards.

Needs root and free hugepages: exits 77 otherwise.

Usage: test_offpath_probe_dpdk.py TESGATE
"""
import os
import random
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hostile_net import (ETH_P_IP, MSS_1460, PORT, TH_ACK, TH_RST, TH_SYN,  # noqa: E402
                         Failure, Gateway, RawPort, check, mac_bytes, read_reply,
                         resolve, tcp_frame)
from tap_harness import hugepages_free, skip, verdict  # noqa: E402

ATT_MAC = mac_bytes("02:a7:00:00:00:01")
SPOOF_MAC = mac_bytes("02:a7:00:00:00:02")
ATT_PORT = 41000
SYNS = 1100
RSTS = 10


class Attacker:
    """A TCP connection of raw frames: just enough to hold it open."""

    def __init__(self, port, gw, gw_mac, att_ip):
        self.port, self.gw, self.gw_mac, self.ip = port, gw, gw_mac, att_ip
        self.iss = random.getrandbits(32)
        self.snd_nxt = self.iss + 1

    def mine(self, p):
        return (p.get("type") == ETH_P_IP and p.get("proto") == 6 and p["dst"] == self.ip
                and p["dmac"] == ATT_MAC and p["sport"] == PORT and p["dport"] == ATT_PORT)

    def send(self, seq, ack, flags, data=b""):
        self.port.send(tcp_frame(self.gw_mac, ATT_MAC, self.ip, self.gw.ip, ATT_PORT, PORT, seq,
                                 ack, flags, data=data))

    def connect(self):
        self.port.drain()
        self.port.send(tcp_frame(self.gw_mac, ATT_MAC, self.ip, self.gw.ip, ATT_PORT, PORT,
                                 self.iss, 0, TH_SYN, opts=MSS_1460))
        sa = self.port.recv_until(lambda p: self.mine(p) and p["flags"] == TH_SYN | TH_ACK, 5)
        check(sa is not None and sa["ack"] == (self.iss + 1) & 0xFFFFFFFF,
              "the attacker's own connection: SYN-ACK")
        self.rcv_nxt = (sa["seq"] + 1) & 0xFFFFFFFF
        self.send(self.snd_nxt, self.rcv_nxt, TH_ACK)
        banner = self.port.recv_until(lambda p: self.mine(p) and len(p["data"]) > 0, 5)
        check(banner is not None and banner["data"].startswith(b"220 "),
              "the attacker's own connection: greeted")
        self.rcv_nxt = (banner["seq"] + len(banner["data"])) & 0xFFFFFFFF
        self.send(self.snd_nxt, self.rcv_nxt, TH_ACK)

    def probe(self, victim_ip, guess_port):
        """Spoofed SYNs to the guessed tuple, then in-window RSTs on our own
        connection: the answers we see, as (count, sorted signatures)."""
        self.port.drain()
        rng = random.Random(guess_port)
        for _ in range(SYNS):
            self.port.send(tcp_frame(self.gw_mac, SPOOF_MAC, victim_ip, self.gw.ip, guess_port,
                                     PORT, rng.getrandbits(32), 0, TH_SYN, opts=MSS_1460))
        for k in range(RSTS):
            # in the window, never at its left edge (that one would end it)
            self.send(self.snd_nxt + 100 + k, 0, TH_RST)
        got = self.port.collect(self.mine, 0.5)
        sig = sorted((p["flags"], p["ipid"], p["ipflags"], p["seq"], p["ack"]) for p in got)
        return len(got), sig


def run(prog):
    gw = Gateway(prog, "tgpr", 62)
    port = None
    victim = None
    try:
        gw.start()
        port = RawPort(gw.iface)
        gw_mac = resolve(port, ATT_MAC, "198.18.62.77", gw.ip)
        victim = socket.create_connection((gw.ip, PORT), timeout=10)
        vf = victim.makefile("rb")
        check(read_reply(vf)[0] == 220, "the victim session is greeted")
        victim.sendall(b"EHLO victim.example.org\r\n")
        check(read_reply(vf)[0] == 250, "the victim session's EHLO")
        vport = victim.getsockname()[1]
        absent = vport + 1 if vport < 65535 else vport - 1

        att = Attacker(port, gw, gw_mac, "198.18.62.77")
        att.connect()
        results = {True: [], False: []}
        for rnd in range(3):
            for exists in (True, False):
                time.sleep(1.5)  # every per-second budget starts afresh
                n, sig = att.probe(gw.kernel_ip, vport if exists else absent)
                print(f"round {rnd}: guessed tuple {'exists' if exists else 'absent'}: "
                      f"{n} answers {sig[:3]}{'...' if len(sig) > 3 else ''}", flush=True)
                results[exists].append((n, sig))
        all_answers = [s for v in results.values() for _, sig in v for s in sig]
        check(all(r == results[True][0] for v in results.values() for r in v),
              "the attacker's answers are the same whether the guessed tuple exists or not "
              f"(exists: {[n for n, _ in results[True]]}, "
              f"absent: {[n for n, _ in results[False]]})")
        check(results[True][0][0] > 0, "its in-window RSTs draw challenge ACKs at all")
        check(all(s[0] == TH_ACK and s[1] == 0 and s[2] == 0x4000 for s in all_answers),
              "every answer is an ACK with IP ID 0 and DF")
        victim.sendall(b"NOOP\r\n")
        check(read_reply(vf)[0] == 250, "the victim session still works")
        victim.sendall(b"QUIT\r\n")
        check(read_reply(vf)[0] == 221, "the victim session's QUIT")
        st = gw.stack()
        print(f"stack: challenge_acks {st.get('challenge_acks')} "
              f"limited {st.get('challenge_acks_limited')}", flush=True)
        att.send(att.snd_nxt, 0, TH_RST)
    finally:
        if victim is not None:
            victim.close()
        if port is not None:
            port.close()
        gw.cleanup()


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    if os.geteuid() != 0:
        skip("needs root (tap device, AF_PACKET)")
    if hugepages_free() < 128:
        skip("needs free 2 MB hugepages (tools/setup.sh reserves them)")
    try:
        run(sys.argv[1])
    except Failure as e:
        return verdict([str(e)])
    return verdict([])


if __name__ == "__main__":
    sys.exit(main())
