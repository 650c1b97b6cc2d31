#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""tescontrol with XDP, started as root with user = nobody (issue 14, item 4):
once the program is loaded and attached it keeps only what the XDP work
needs at run time, measured on this kernel: CAP_NET_ADMIN (an operator's
detach of its own program), and CAP_BPF too where the kernel lets only
CAP_BPF use BPF maps (it then says so in its log).  Every thread shows that
set and nothing else, runs as nobody, with no_new_privs; and the XDP work
goes on: the sync passes without errors, `tesctl xdp deny` writes the map,
`xdp status` tells the attachment and the protected ports, `xdp detach`
detaches.  (tescontrol without XDP keeps nothing at all:
tests/integration/test_privileges.py.)

A veth pair in a network namespace this test creates, the maps on a BPF
filesystem mounted on a temporary directory; all removed whatever happens.
Exit 77 without root, ip(8) or BPF.

Usage: test_xdp_privileges.py TES_XDP   (TESCONTROL, TESCTL, TES_SRCDIR in env)
"""
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "integration"))
import ctl_harness as ch  # noqa: E402
from proc_harness import proc_tasks  # noqa: E402

SKIP = 77
CAP_NET_ADMIN = 1 << 12
CAP_BPF = 1 << 39
WAIT = 20


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)
    print("ok:", what, flush=True)




def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    if os.geteuid() != 0:
        print("SKIP: needs root (a network namespace, a BPF filesystem, XDP)")
        return SKIP
    if not shutil.which("ip"):
        print("SKIP: ip(8) is not installed")
        return SKIP
    p = subprocess.run([sys.argv[1], "probe"], capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        print("SKIP: BPF is not permitted here: " + p.stderr.strip())
        return SKIP
    tag = str(os.getpid() % 100000)
    ns, ifa, ifb = "tesxpriv-" + tag, "txpa" + tag, "txpb" + tag
    tmp = tempfile.mkdtemp(prefix="tesxdp-priv-")
    bpffs = os.path.join(tmp, "bpffs")
    mounted = made = False
    tc = None
    nobody = pwd.getpwnam("nobody")
    try:
        os.mkdir(bpffs, 0o700)
        subprocess.run(["mount", "-t", "bpf", "-o", "mode=0700", "bpf", bpffs], check=True,
                       timeout=30)
        mounted = True
        subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
        made = True
        subprocess.run(["ip", "-n", ns, "link", "add", ifa, "type", "veth", "peer", "name",
                        ifb], check=True, timeout=30)
        for dev in (ifa, ifb, "lo"):
            subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True, timeout=30)
        wrapper = os.path.join(tmp, "tescontrol-in-ns")
        with open(wrapper, "w") as f:
            f.write('#!/bin/sh\nexec ip netns exec %s %s "$@"\n' % (ns, ch.TESCONTROL))
        os.chmod(wrapper, 0o755)
        ch.TESCONTROL = wrapper
        tc = ch.Tescontrol(conf={
            "user": "nobody", "xdp_interfaces": ifa, "xdp_required": "yes",
            "xdp_pin_root": os.path.join(bpffs, "tesgate"), "xdp_ports": "2525, 587",
            # its thread is made after the drop and inherits the kept set
            "metrics_listen": "127.0.0.1:0"})
        # the state directory inside must be reachable by the user it becomes
        os.chmod(tc.dir, 0o755)
        tc.start()
        log = tc.log_text()
        check("privileges: now user nobody" in log, "tescontrol became nobody")
        keep = CAP_NET_ADMIN
        if "lets only CAP_BPF use BPF maps" in log:
            keep |= CAP_BPF
        print("kept: %#x (%s)" % (keep, "CAP_NET_ADMIN" + (", CAP_BPF" if keep & CAP_BPF
                                                            else "")))
        ts = proc_tasks(tc.proc.pid)
        check(len(ts) >= 2, "%d threads (the metrics thread included)" % len(ts))
        for tid, f in ts.items():
            what = "thread %s (%s)" % (tid, f.get("Name"))
            check(f["Uid"].split() == [str(nobody.pw_uid)] * 4, what + ": uid nobody")
            check(int(f["CapEff"], 16) == keep and int(f["CapPrm"], 16) == keep,
                  what + ": effective %s permitted %s" % (f["CapEff"], f["CapPrm"]))
            check(int(f["CapInh"], 16) == 0 and int(f["CapAmb"], 16) == 0,
                  what + ": nothing inheritable or ambient")
            check(f["NoNewPrivs"] == "1", what + ": no_new_privs")

        # the XDP work after the drop
        tc.ctl("xdp", "deny", "198.18.77.7")
        entries = [e["address"] for e in tc.ctl("xdp", "list")["entries"]]
        check("198.18.77.7" in entries, "xdp deny wrote the map as nobody")
        st = tc.ctl("xdp", "status")
        check([f["mode"] for f in st["interfaces"]] in (["native"], ["generic"]),
              "xdp status tells the attachment: %s" % st["interfaces"])
        check(st["ports"] == [587, 2525], "protected ports %s" % st["ports"])
        syncs = st["syncs"]
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and tc.ctl("xdp", "status")["syncs"] < syncs + 2:
            time.sleep(0.2)
        st = tc.ctl("xdp", "status")
        check(st["syncs"] >= syncs + 2 and st["sync_errors"] == 0,
              "the sync goes on without errors (%d passes, %d errors)" %
              (st["syncs"], st["sync_errors"]))
        tc.ctl("xdp", "detach", ifa)
        st = tc.ctl("xdp", "status")
        check([f["mode"] for f in st["interfaces"]] == ["none"], "xdp detach, as nobody")
        check(not re.search(r"warn: xdp|error: xdp", tc.log_text()), "no XDP warning logged")
        tc.stop()
        print("PASS")
        return 0
    except (Failure, ch.CtlError, RuntimeError, subprocess.CalledProcessError) as e:
        print("FAIL:", e, flush=True)
        if tc:
            print("--- tescontrol log\n" + tc.log_text()[-5000:])
        return 1
    finally:
        if tc:
            tc.cleanup()
        if made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        if mounted:
            subprocess.run(["umount", "-l", bpffs], capture_output=True, timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
