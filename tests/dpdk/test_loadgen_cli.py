#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""tes-loadgen's command line, without starting an EAL: --help, the usage
errors a user gets (exit 2, a message naming the option), the --no-pci
guard, and the message it builds (--print-message): exact size, the
Received: fields of --header-file and nothing else from it, CRLF lines, and
lines that need dot-stuffing."""
import os
import subprocess
import sys
import tempfile

SRC = os.path.dirname(os.path.abspath(__file__))
HDR = os.path.join(SRC, "..", "data", "headers", "ex2016-tls.hdr")
failed = []


def run(prog, *args):
    p = subprocess.run([prog, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def expect_usage_error(prog, args, needle):
    rc, out, err = run(prog, *args)
    if rc != 2 or needle not in err:
        failed.append(f"{args}: exit {rc}, stderr {err!r} (wanted exit 2 and {needle!r})")


def main():
    prog = sys.argv[1]
    rc, out, err = run(prog, "--help")
    text = out.decode()
    if rc != 0:
        failed.append(f"--help: exit {rc}")
    for opt in ("--sessions", "--messages-per-conn", "--size", "--count", "--duration",
                "--starttls", "--rate", "--server", "--addr", "--mail-from", "--rcpt",
                "--header-file", "--eal", "--json", "--timeout", "--allow-code",
                "--no-pci", "Exit status"):
        if opt not in text:
            failed.append(f"--help does not mention {opt}")

    base = ["--server", "198.18.32.1", "--addr", "198.18.32.2/24"]
    expect_usage_error(prog, base + ["--eal", "-l 1 --vdev=net_ring0"], "--no-pci")
    expect_usage_error(prog, base, "required")
    expect_usage_error(prog, base + ["--eal", "--no-pci", "--size", "12q"], "--size")
    expect_usage_error(prog, base + ["--eal", "--no-pci", "--size", "100"], "smaller than")
    expect_usage_error(prog, base + ["--eal", "--no-pci", "--size", "65M"], "--size")
    expect_usage_error(prog, base + ["--eal", "--no-pci", "--sessions", "0"], "--sessions")
    expect_usage_error(prog, base + ["--eal", "--no-pci", "--sessions", "5000"], "--sessions")
    expect_usage_error(prog, base + ["--eal", "--no-pci", "--count", "5", "--duration", "2"],
                       "not both")
    expect_usage_error(prog, ["--server", "198.18.33.1", "--addr", "198.18.32.2/24",
                              "--eal", "--no-pci"], "prefix")
    expect_usage_error(prog, base + ["--eal", "--no-pci", "--mail-from", "a b@c"], "--mail-from")
    expect_usage_error(prog, base + ["--eal", "--no-pci", "--allow-code", "99"], "--allow-code")
    expect_usage_error(prog, ["--server", "198.18.32.1:70000", "--addr", "198.18.32.2/24"],
                       "--server")
    expect_usage_error(prog, ["--bogus"], "bogus")
    expect_usage_error(prog, base + ["--eal", "--no-pci", "--header-file", "/nonexistent/x"],
                       "/nonexistent/x")
    with tempfile.NamedTemporaryFile("w", suffix=".hdr") as f:
        f.write("From: a@b\r\nSubject: no received here\r\n\r\nbody\r\n")
        f.flush()
        expect_usage_error(prog, ["--print-message", "--header-file", f.name], "no Received")

    for size, want in (("2k", 2048), ("64k", 65536), ("700", 700), ("1M", 1 << 20)):
        rc, msg, err = run(prog, "--print-message", "--size", size, "--header-file", HDR,
                           "--mail-from", "s@contoso.com", "--rcpt", "r@example.net")
        if rc != 0:
            failed.append(f"--print-message --size {size}: exit {rc}: {err}")
            continue
        if len(msg) != want:
            failed.append(f"--size {size}: message is {len(msg)} bytes, not {want}")
        head, sep, body = msg.partition(b"\r\n\r\n")
        if not sep or not msg.endswith(b"\r\n") or b"\n" in msg.replace(b"\r\n", b""):
            failed.append(f"--size {size}: not CRLF text with a header section")
        with open(HDR, "rb") as f:
            fixture = f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        received = fixture.split(b"\r\nFrom:")[0] + b"\r\n"
        if not head.startswith(received) or head.count(b"Received:") != 2:
            failed.append(f"--size {size}: the fixture's Received: fields are not at the top")
        if b"Thread-Topic" in head:
            failed.append(f"--size {size}: non-Received fields copied from --header-file")
        if b"From: <s@contoso.com>" not in head or b"To: <r@example.net>" not in head:
            failed.append(f"--size {size}: From/To do not follow --mail-from/--rcpt")
        if b"Message-ID: <lg000000000000@loadgen.invalid>" not in head:
            failed.append(f"--size {size}: no transaction number in Message-ID")
        if want >= 2048:
            lines = body.split(b"\r\n")
            if b"." not in lines or not any(ln.startswith(b".") and len(ln) > 1 for ln in lines):
                failed.append(f"--size {size}: no lines that need dot-stuffing")

    for f in failed:
        print("FAIL:", f)
    if failed:
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
