# SPDX-License-Identifier: BSD-3-Clause
"""Helpers for the DPDK tests that put a net_tap port in front of the Linux
kernel (Python 3 stdlib only): skipping where the machine cannot run them,
the `ip` command for the kernel side of the tap, bounded waits."""
import subprocess
import sys
import time

SKIP = 77


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(SKIP)


def hugepages_free():
    """Free 2 MB hugepages: the tap PMD does not work under --no-huge here."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("HugePages_Free:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, timeout=10,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def iface_exists(name):
    return ip("link", "show", "dev", name, check=False).returncode == 0


def wait_for(pred, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def verdict(failed):
    """The test's exit status, after listing what failed (or PASS)."""
    for f in failed:
        print("FAIL:", f)
    if failed:
        return 1
    print("PASS")
    return 0
