#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""The fleet's figures (docs/benchmarks.md "The fleet"), on this machine's
loopback: a 3-member etcd cluster and three appliances (tescontrol with
store = etcd, tesgate on kernel sockets), made by tests/fleet/fleet_harness.py
(ports and data directories of their own, stopped by PID), on tescontrol's
test clock.  Each run starts a fresh fleet and measures:

1. propagation: a first detection on A (one SMTP message through A's
   tesgate, the clock of A at day 0) until B's tesgate refuses the server by
   it (B's clock at day 91 of that date: blocked 60 min/h).  Two times, from
   the start of A's SMTP transaction: until B's tescontrol pushes the server
   to its gateways (an observer connected to B's gateway socket, as a second
   tesgate would be), and until one SMTP message through B's tesgate is
   refused 550 (the first such message after the push; counted when one was
   still accepted);
2. sustained first detections: for S seconds, each appliance's gateway socket
   gets sightings of new names from a client speaking the control protocol
   (ctl_harness.FakeGateway, 64 sightings in flight each), which bypasses
   tesgate's own budget of new names (128 per tenant, worker and second);
   first detections acknowledged per second, per appliance and for the
   fleet, then the time until every appliance holds all of them;
3. steady state: N servers known to the fleet, each seen by every appliance
   once per 10 minutes of the test clock, which moves 120 s per step of at
   least 0.5 s real (etcd_flush_seconds 1: a compressed hour still spans
   15 flushes, as 60 flushes of 60 s span a real one); every
   etcd event under the prefix counted by key (an `etcdctl watch`, checked
   to count the N first detections exactly) over H hours of the test clock
   after a warm-up hour, each hour followed by one flush interval of real
   time so that the writes it made are in.  Server writes per hour of the clock (the
   coalesced last-seen writes, one per server and seen granularity for the
   fleet); the appliances' own records are written per flush_seconds of real
   time and are given per real second.

Usage: fleet_bench.py TESGATE [--runs R] [--n N] [--seconds S] [--servers N]
       [--hours H] [--flush F]   (TESCONTROL, TESCTL, TES_SRCDIR in the environment)
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "fleet"))
import fleet_harness as fh  # noqa: E402
import ctl_harness as ch  # noqa: E402
from etcd_harness import ETCDCTL  # noqa: E402
from fleet_harness import BLOCK60, DAY, OK, OLD, T0  # noqa: E402


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def ms(x):
    return f"{x * 1000:.1f} ms"


def propagation(fleet, n):
    A, B = fleet["A"], fleet["B"]
    t = T0 + 3600
    A.set_clock(t)
    B.set_clock(t + 91 * DAY + 1800)
    A.sync()
    B.sync()
    obs_a = ch.FakeGateway(A.tc.gw_sock, name="bench-observer-a")
    obs = ch.FakeGateway(B.tc.gw_sock, name="bench-observer-b")
    at_a, pushed, refused, late = [], [], [], 0
    rnd = random.Random(n)
    try:
        for i in range(n):
            name = f"p{i:05d}.contoso.local"
            k = obs.key(1, name)
            # Mail arrives at any moment of the gateway's control thread's
            # poll (100 ms while idle): one detection right after the last
            # would always find it just asleep.
            time.sleep(rnd.uniform(0, 0.1))
            t0 = time.monotonic()
            if A.send(name) != OK:
                raise AssertionError(f"A did not accept {name}")
            obs_a.wait_until(lambda: k in obs_a.servers, timeout=20, what=name)
            ta = time.monotonic()
            obs.wait_until(lambda: k in obs.servers, timeout=20, what=name)
            t1 = time.monotonic()
            for _ in range(400):
                r = B.send(name)
                if r == BLOCK60:
                    break
                late += 1
            else:
                raise AssertionError(f"B never refused {name}: {r}")
            t2 = time.monotonic()
            at_a.append(ta - t0)
            pushed.append(t1 - t0)
            refused.append(t2 - t0)
    finally:
        obs.close()
        obs_a.close()
    return at_a, pushed, refused, late


def sustained(fleet, seconds, window=64, run=0):
    apps = list(fleet.apps.values())
    for a in apps:
        a.set_clock(T0 + 2 * 3600)
    before = count_servers(apps[0])
    fakes = [ch.FakeGateway(a.tc.gw_sock, name=f"bench-{a.name}") for a in apps]
    firsts = [0] * len(apps)
    other = [0] * len(apps)
    start = time.monotonic()
    deadline = start + seconds

    def drive(k):
        g = fakes[k]
        sent = done = 0
        while time.monotonic() < deadline:
            while sent - done < window:
                name = f"r{run}-{apps[k].name}-{sent:06d}.contoso.local"
                g.sighting(1, name, OLD, wait=False)
                sent += 1
            g.pump(0.01)
            for seq in list(g.acks):
                a = g.acks.pop(seq)
                done += 1
                if a.get("ok") and a.get("change") == "first":
                    firsts[k] += 1
                else:
                    other[k] += 1
            g.msgs.clear()
            g.servers.clear()
        return sent

    threads = [threading.Thread(target=drive, args=(k,)) for k in range(len(apps))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.monotonic() - start
    for g in fakes:
        g.close()
    total = sum(firsts)
    t_conv0 = time.monotonic()
    want = before + total
    fleet.wait_all(lambda a: count_servers(a) >= want, f"{total} first detections",
                   timeout=300)
    conv = time.monotonic() - t_conv0
    return [f / elapsed for f in firsts], other, elapsed, conv


def count_servers(a):
    return len(a.tc.report()["servers"])


class Watch:
    """etcdctl watch on the fleet's prefix: events counted by key kind."""

    def __init__(self, cluster, prefix):
        cmd = [ETCDCTL, "--endpoints", ",".join(cluster.endpoints), "watch", "--prefix",
               prefix + "/", "-w", "json"]
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  env=dict(os.environ, ETCDCTL_API="3"), text=True)
        self.counts = {}
        self.lock = threading.Lock()
        self.th = threading.Thread(target=self.read, daemon=True)
        self.th.start()

    def read(self):
        import base64
        for line in self.p.stdout:
            try:
                m = json.loads(line)
            except ValueError:
                continue
            for ev in m.get("Events") or []:
                key = base64.b64decode(ev["kv"]["key"]).decode(errors="replace")
                kind = key.split("/v1/", 1)[-1].split("/", 1)[0]
                with self.lock:
                    self.counts[kind] = self.counts.get(kind, 0) + 1

    def snapshot(self):
        with self.lock:
            return dict(self.counts)

    def close(self):
        fh.stop_by_pid(self.p)


def steady(fleet, nservers, hours, flush, step=120, step_real=0.5):
    apps = list(fleet.apps.values())
    t = T0 + 4 * 3600
    fleet.set_clock(t)
    fakes = [ch.FakeGateway(a.tc.gw_sock, name=f"bench-{a.name}") for a in apps]
    names = [f"st{i:06d}.contoso.local" for i in range(nservers)]
    w = Watch(fleet.cluster, fh.PREFIX)
    time.sleep(1.0)  # the watch attached
    cs = w.snapshot()
    g = fakes[0]
    for i, name in enumerate(names):
        g.sighting(1, name, OLD, wait=False)
        if i % 64 == 63:
            g.wait_ack(g.seq, timeout=60)
    g.wait_ack(g.seq, timeout=60)
    fleet.wait_all(lambda a: count_servers(a) >= nservers, f"{nservers} servers", timeout=300)
    key = f"{fh.PREFIX}/v1/servers/1/p00000.contoso.local"  # seen through SMTP: a source
    value = fleet.cluster.etcdctl("get", key, "--print-value-only").rstrip("\n")
    print(f"  a server's record: key {len(key)} octets, value {len(value)} octets: {value}",
          flush=True)
    seeded = w.snapshot().get("servers", 0) - cs.get("servers", 0)
    if seeded != nservers:
        raise AssertionError(f"the watch counted {seeded} server writes for {nservers} first"
                             " detections")
    per_step = max(1, nservers * step // 600)  # each server once per 10 min
    pos = [0] * len(apps)

    def hours_of_clock(h):
        nonlocal t
        for _ in range(h * 3600 // step):
            # Each step lasts at least step_real seconds, so that an hour of
            # the clock spans many flush intervals (real time), as it does
            # in production (F = 60 s against G = 3600 s): a seen time is
            # then written soon after it crossed the granularity, not one
            # flush (a whole compressed hour) later.
            until = time.monotonic() + step_real
            t += step
            fleet.set_clock(t)
            for k, f in enumerate(fakes):
                for _ in range(per_step):
                    f.sighting(1, names[pos[k] % nservers], OLD, wait=False)
                    pos[k] += 1
                f.wait_ack(f.seq, timeout=60)
                f.msgs.clear()
            time.sleep(max(0.0, until - time.monotonic()))
        # the coalesced writes due: one flush interval (real time) and a bit
        time.sleep(flush + 1.5)

    hours_of_clock(1)  # warm-up: the first crossings of the seen granularity
    c0, r0 = w.snapshot(), time.monotonic()
    hours_of_clock(hours)
    c1, r1 = w.snapshot(), time.monotonic()
    w.close()
    for f in fakes:
        f.close()
    d = {k: c1.get(k, 0) - c0.get(k, 0) for k in set(c0) | set(c1)}
    st = json.loads(fleet.cluster.etcdctl("endpoint", "status", "-w", "json"))
    print(f"  etcd backend after it (no compaction): "
          f"{', '.join(str(m['Status']['dbSize']) for m in st)} octets per member,"
          f" revision {st[0]['Status']['header']['revision']}", flush=True)
    return d, hours * 3600, r1 - r0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tesgate")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--servers", type=int, default=1000)
    ap.add_argument("--hours", type=int, default=3)
    ap.add_argument("--flush", type=int, default=1)
    o = ap.parse_args()
    os.environ["TES_ALLOW_TEST_CLOCK"] = "1"
    if not fh.have_etcd():
        print("fleet_bench: etcd or etcdctl not installed", file=sys.stderr)
        return 1
    for run in range(1, o.runs + 1):
        fleet = fh.Fleet(os.path.abspath(o.tesgate),
                         conf={n: {"etcd_flush_seconds": str(o.flush)} for n in "ABC"})
        try:
            fleet.start()
            at_a, pushed, refused, late = propagation(fleet, o.n)
            fleet_part = [b - a for a, b in zip(at_a, pushed)]
            print(f"run {run}: propagation over {o.n} first detections on A:"
                  f" to A's tescontrol pushing it (written to etcd) p50 {ms(pct(at_a, 50))}"
                  f" p99 {ms(pct(at_a, 99))}; A's push to B's push p50"
                  f" {ms(pct(fleet_part, 50))} p99 {ms(pct(fleet_part, 99))};"
                  f" to B's tescontrol pushing it p50"
                  f" {ms(pct(pushed, 50))} p99"
                  f" {ms(pct(pushed, 99))}; to B's tesgate refusing 550 p50"
                  f" {ms(pct(refused, 50))} p99 {ms(pct(refused, 99))}"
                  f" (max {ms(max(refused))}, mean {ms(statistics.mean(refused))});"
                  f" B still accepted {late} messages after the push", flush=True)
            rates, other, elapsed, conv = sustained(fleet, o.seconds, run=run)
            print(f"run {run}: sustained first detections over {elapsed:.1f} s:"
                  f" {' + '.join(f'{r:.0f}' for r in rates)} = {sum(rates):.0f}/s"
                  f" (A + B + C); other acks {sum(other)}; every appliance held all of"
                  f" them {conv:.1f} s after the last", flush=True)
            d, sim_s, real_s = steady(fleet, o.servers, o.hours, o.flush)
            srv = d.get("servers", 0)
            print(f"run {run}: steady state, {o.servers} servers seen by 3 appliances each"
                  f" once per 10 min, etcd_flush_seconds {o.flush}, over {sim_s // 3600} h of"
                  f" the test clock after a warm-up hour"
                  f" ({real_s:.0f} s real): etcd events {json.dumps(d, sort_keys=True)};"
                  f" server writes {srv} = {srv / (sim_s / 3600):.0f}/h ="
                  f" {srv / sim_s * 1000 / o.servers:.3f}/s per 1000 servers;"
                  f" appliance records {d.get('appliances', 0) / real_s:.2f}/s real",
                  flush=True)
        finally:
            try:
                for a in fleet.apps.values():
                    a.stop()
            finally:
                fleet.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
