#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Find skipped tests in a meson test log, and fail on them where none may skip.

Usage: tests/check-skips.py BUILDDIR [--strict]

Reads BUILDDIR/meson-logs/testlog.json (the last `meson test` run there) and
lists every test that was skipped, wholly (exit 77: meson's SKIP) or in part
(a unittest case skipped inside a passing program, a cmocka skip()), each with
the reason the test printed.  meson counts a skip as a pass, so without this a
green run can hide that the DPDK, XDP or tap tests never ran.

--strict (tests/run-all.sh sets it when it runs as root after tools/setup.sh,
as CI does): any skip is an error, exit 1.  Without it the list is printed for
information and the exit status is 0: on a developer's unprivileged machine a
skip is legitimate, and the reason says what is missing.
"""
import json
import os
import re
import sys

# What a skip looks like in a test's output, and the line that says why.
PARTIAL = [
    re.compile(r"^(.*) \.\.\. skipped '(.*)'$", re.M),  # unittest, verbosity 2
    re.compile(r"^\[  SKIPPED \] (?!\d+ test\(s\))(.*)$()", re.M),  # cmocka
]
WHY = re.compile(r"^(?:SKIP|skip|skipped)\b[: ]\s*(.*)$", re.M)


def findings(log):
    out = []
    with open(log) as f:
        for line in f:
            t = json.loads(line)
            text = (t.get("stdout") or "") + "\n" + (t.get("stderr") or "")
            if t.get("result") == "SKIP":
                why = WHY.findall(text)
                out.append((t["name"], "skipped", why[-1] if why else "(no reason printed)"))
                continue
            seen = set()
            for pat in PARTIAL:
                for case, why in pat.findall(text):
                    if case in seen:  # cmocka lists each skip twice
                        continue
                    seen.add(case)
                    out.append((t["name"], "skipped in part", f"{case}: {why}".rstrip(": ")))
    return out


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(argv) >= 2 else 2
    strict = "--strict" in argv[2:]
    log = os.path.join(argv[1], "meson-logs", "testlog.json")
    if not os.path.exists(log):
        print(f"check-skips: {log} does not exist (no meson test run in {argv[1]})",
              file=sys.stderr)
        return 2
    found = findings(log)
    for name, how, why in found:
        print(f"check-skips: {name}: {how}: {why}")
    if not found:
        print(f"check-skips: {argv[1]}: no test skipped")
        return 0
    if strict:
        print(f"check-skips: FAIL: {len(found)} skip(s) where every test must run "
              "(root, after tools/setup.sh): fix the cause above", file=sys.stderr)
        return 1
    print(f"check-skips: {len(found)} skip(s), allowed here (not root, or no setup)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
