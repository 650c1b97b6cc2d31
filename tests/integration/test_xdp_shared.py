#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Issue 13 on the XDP side: tescontrol drops at the packet level only a
source that fronts blocked servers alone.

The world of test_xdp_sync.py (a veth pair between two namespaces, tescontrol
attaching tes_xdp with full_block = drop, tesgate behind it).  198.18.1.1
carries two servers of one tenant, one out of date and one compliant;
198.18.1.3 carries only the out-of-date one.  91 days on, the out-of-date
server blocks all hour: 198.18.1.3 joins the drop list once its probe was
made, 198.18.1.1 never does (the compliant server's mail keeps arriving;
the out-of-date one's is refused at the end of its data).

Usage: test_xdp_shared.py TESGATE  (TESCONTROL, TESCTL, TES_SRCDIR, TES_XDP in env)
Exit 77 (skipped) as test_xdp_sync.py.  Run under the shared lock.
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ctl_harness as ch  # noqa: E402
import issue13_harness as h  # noqa: E402
import test_xdp_sync as xs  # noqa: E402

check = xs.check
SHARED = xs.EXCH     # 198.18.1.1
ALONE = xs.OTHER     # 198.18.1.3
OLD = "ex16-old.contoso.local"
NEW = "ex16-new.contoso.local"


class SharedWorld(xs.World):
    def start_tescontrol(self):
        comp = os.path.join(self.tmp, "compliance.conf")
        with open(comp, "w") as f:
            f.write(h.COMPLIANCE)
        real = ch.Tescontrol
        ch.Tescontrol = lambda **kw: real(**dict(kw, conf=dict(kw["conf"],
                                                              compliance_file=comp)))
        try:
            super().start_tescontrol()
        finally:
            ch.Tescontrol = real

    def send(self, src, server, build):
        """The client's exit code: 0 delivered, 3 refused, 1 timed out."""
        self.msg = os.path.join(self.tmp, f"{server}-{build}.eml")
        with open(self.msg, "wb") as f:
            f.write(h.exchange_message(server, build))
        return self.client(src, smtp=True)

    def scenario(self):
        self.ctl("tenant", "add", xs.TENANT, "Contoso", "--connector", "198.18.1.0/24")
        self.start_tesgate()
        check(self.send(SHARED, OLD, h.OLD_2016) == 0, "day 0: the old server from the shared"
              " address")
        check(self.send(SHARED, NEW, h.NEW_2016) == 0, "day 0: the compliant one, same address")
        check(self.send(ALONE, OLD, h.OLD_2016) == 0, "day 0: the old server from its own")
        deadline = time.monotonic() + 10
        while (self.tc.server(xs.TENANT, OLD) is None
               or len(self.tc.ctl("server", "show", xs.TENANT, OLD)["sources"]) < 2
               or self.tc.ctl("report", "--all")["servers"].__len__() < 2):
            check(time.monotonic() < deadline, "tescontrol tracks both servers")
            time.sleep(0.05)

        self.tc.advance(91 * xs.DAY)
        # the address only the blocked server uses: listed once its probe
        # was made (the probe's 550 at the end of the data)
        self.check_entry(ALONE, False, "a probe is due from the lone address")
        self.gw_synced()
        check(self.send(ALONE, OLD, h.OLD_2016) == 3,
              "the probe from the lone address is refused at the end of its data")
        self.check_entry(ALONE, True, "the blocked server's lone address, after its probe")
        check(self.client(ALONE) == 1, f"{ALONE}: its connect times out")
        # the shared address: the compliant server's mail keeps arriving, the
        # old one's is read to its headers and refused there; never listed
        for i in range(3):
            check(self.send(SHARED, NEW, h.NEW_2016) == 0, f"shared, compliant, round {i}")
            check(self.send(SHARED, OLD, h.OLD_2016) == 3, f"shared, out of date, round {i}")
            self.check_entry(SHARED, False, f"shared address, round {i}")


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    if os.geteuid() != 0:
        print("SKIP: needs root (network namespaces, a BPF filesystem, XDP)")
        return xs.SKIP
    tes_xdp = os.environ.get("TES_XDP")
    if tes_xdp:
        p = xs.subprocess.run([tes_xdp, "probe"], capture_output=True, text=True,
                              timeout=xs.CMD_TIMEOUT)
        if p.returncode != 0:
            print("SKIP: BPF is not permitted here: " + (p.stderr or p.stdout).strip())
            return xs.SKIP

    def on_signal(signum, frame):
        raise SystemExit("killed by signal %d" % signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    os.environ["TES_ALLOW_TEST_CLOCK"] = "1"
    w = SharedWorld(sys.argv[1])
    try:
        w.setup()
        w.start_tescontrol()
        w.scenario()
    except xs.Failure as e:
        print("FAIL:", e, flush=True)
        print(w.gw_text()[-4000:])
        return 1
    finally:
        w.cleanup()
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
