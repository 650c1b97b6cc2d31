#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""tesgate with io = dpdk gives up root after the EAL and its port are set up
(issue 14, item 4), and what DPDK does at run time still works:

  tap    (net_tap, the kernel as client) started as root with user = nobody:
         every thread, the EAL's own (interrupt, telemetry, lcores) included,
         runs as nobody/nogroup with no capability and no_new_privs; mail
         over STARTTLS is spooled as nobody's files; the DPDK telemetry socket
         answers DPDK's and tesgate's commands; the tap taken down and up
         again by the kernel side (the PMD's link-state work) and mail still
         flows; a SIGHUP reloads the TLS files; SIGTERM exits 0 and the tap
         goes with the process.
  memif  (net_memif server, tes-loadgen the client) started as root with
         user = nobody: the memif peer connects only after the drop, so the
         PMD's interrupt thread makes its shared regions as nobody; 200
         messages spooled, none lost.

Needs root and free hugepages: exits 77 otherwise.  Every wait is bounded;
the interfaces, directories and processes made here are removed whatever
happens.

Usage: test_privileges_dpdk.py TESGATE
"""
import grp
import json
import os
import pwd
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap_harness import hugepages_free, iface_exists, ip, skip, verdict, wait_for  # noqa: E402
import test_tesgate_dpdk as td  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from proc_harness import proc_tasks  # noqa: E402

IO_TIMEOUT = 60.0




def dropped(pid, uid, gid):
    """None when every thread is uid/gid with nothing, else what is not."""
    tasks = proc_tasks(pid)
    for tid, f in tasks.items():
        name = f.get("Name")
        if f["Uid"].split() != [str(uid)] * 4 or f["Gid"].split() != [str(gid)] * 4:
            return f"thread {tid} ({name}) runs as uid {f['Uid']} gid {f['Gid']}"
        for cap in ("CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd"):
            if int(f[cap], 16):
                return f"thread {tid} ({name}) has {cap} {f[cap]}"
        if f["NoNewPrivs"] != "1":
            return f"thread {tid} ({name}) lacks no_new_privs"
    return None if len(tasks) > 2 else f"only {len(tasks)} threads"


class Telemetry:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.s.settimeout(30)
        self.s.connect(path)
        hello = json.loads(self.s.recv(16384).decode())
        self.max_len = int(hello["max_output_len"])

    def query(self, cmd):
        self.s.send(cmd.encode())
        return json.loads(self.s.recv(self.max_len).decode())[cmd.split(",")[0]]

    def close(self):
        self.s.close()


def make_cert(d, name, gid):
    cert, key = os.path.join(d, name + ".crt"), os.path.join(d, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=" + name], check=True, capture_output=True,
                   timeout=60)
    os.chown(key, 0, gid)
    os.chmod(key, 0o640)
    return cert, key


def scenario_tap(prog, failed):
    nobody = pwd.getpwnam("nobody")
    uid, gid = nobody.pw_uid, nobody.pw_gid
    prefix = "tgpriv%d" % (os.getpid() % 100000)
    certdir = tempfile.mkdtemp(prefix="tesgate-priv-tls-")
    os.chmod(certdir, 0o755)
    cert1, key1 = make_cert(certdir, "one", gid)
    cert2, key2 = make_cert(certdir, "two", gid)
    cert, key = os.path.join(certdir, "tls.crt"), os.path.join(certdir, "tls.key")
    shutil.copy(cert1, cert)
    shutil.copy(key1, key)
    os.chown(key, 0, gid)
    os.chmod(key, 0o640)
    gw = td.Gateway(prog, 7, lcores=f"-l 0-1 --file-prefix={prefix}",
                    extra=f"user = nobody\ntls_cert = {cert}\ntls_key = {key}\n")
    tel = None
    try:
        gw.start()
        text = gw.text()
        td.check("privileges: now user nobody" in text, "tesgate says it became nobody")
        why = dropped(gw.proc.pid, uid, gid)
        td.check(why is None, f"every thread is nobody with nothing ({why})")
        # mail over STARTTLS, spooled as nobody's files
        msgs = [td.make_message(7000 + i, 3000 + i) for i in range(5)]
        td.send_smtplib(gw.ip, msgs, starttls=True)
        gw.wait_spooled(5)
        td.check(sorted(gw.spooled()) == sorted(msgs), "5 messages spooled byte-identical")
        owners = {(os.stat(p).st_uid, os.stat(p).st_gid)
                  for p in td.glob.glob(os.path.join(gw.spool, "new", "*"))}
        td.check(owners == {(uid, gid)}, f"the spool files are nobody's: {owners}")
        # the telemetry socket, served by an EAL thread that is nobody now
        tel = Telemetry(os.path.join("/var/run/dpdk", prefix, "dpdk_telemetry.v2"))
        td.check(tel.query("/ethdev/list") == [0], "telemetry: /ethdev/list")
        st = tel.query("/tesgate/stats")
        td.check(isinstance(st, dict) and st, "telemetry: /tesgate/stats answers")
        # the tap's link goes down and up on the kernel side: the PMD's
        # link-state work runs in its interrupt thread, as nobody
        ip("link", "set", "dev", gw.iface, "down")
        ip("link", "set", "dev", gw.iface, "up")
        wait_for(lambda: "UP" in ip("link", "show", "dev", gw.iface).stdout, 10, "link up")
        more = [td.make_message(7100, 2000)]
        wait_for(lambda: _try_send(gw, more), 30, "mail after the link came back")
        gw.wait_spooled(6)
        td.check(len(gw.spooled()) == 6, "mail flows after the tap went down and up")
        # SIGHUP: the TLS files read again as nobody
        shutil.copy(cert2, cert)
        shutil.copy(key2, key)
        gw.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "tls certificate reloaded" in gw.text(), 20, "the TLS reload")
        ctx = td.tls_ctx()
        with socket.create_connection((gw.ip, td.PORT), timeout=IO_TIMEOUT) as raw:
            f = raw.makefile("rwb")
            f.readline()
            f.write(b"EHLO x\r\nSTARTTLS\r\n")
            f.flush()
            while not f.readline().startswith(b"220 "):
                pass
            with ctx.wrap_socket(raw, server_hostname="two") as t:
                der = t.getpeercert(binary_form=True)
        with open(cert2) as f2:
            td.check(der == ssl.PEM_cert_to_DER_cert(f2.read()),
                     "the reloaded certificate is served")
        tel.close()
        tel = None
        rc = gw.stop()
        td.check(rc == 0, f"SIGTERM: exit status {rc}")
        wait_for(lambda: not iface_exists(gw.iface), 10, "the tap to go with the process")
        td.check(not iface_exists(gw.iface), "the tap went with the process")
    except (td.Failure, RuntimeError, OSError, smtplib.SMTPException) as e:
        failed.append(f"tap: {e}")
    finally:
        if tel:
            tel.close()
        gw.cleanup()
        shutil.rmtree(os.path.join("/var/run/dpdk", prefix), ignore_errors=True)
        shutil.rmtree(certdir, ignore_errors=True)


def _try_send(gw, msgs):
    try:
        td.send_smtplib(gw.ip, msgs)
        return True
    except (OSError, smtplib.SMTPException):
        return False


def scenario_memif(prog, failed):
    lg = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(prog))), "bench",
                      "loadgen", "tes-loadgen")
    if not os.access(lg, os.X_OK):
        print(f"memif: skipped, no tes-loadgen at {lg}")
        return
    import test_loadgen_memif as lm
    nobody = pwd.getpwnam("nobody")
    work = tempfile.mkdtemp(prefix="tes-priv-memif-")
    gw = None
    try:
        gw = lm.Gateway(prog, work, "priv", extra="user = nobody\n")
        if not gw.wait_listening():
            raise RuntimeError("tesgate exited early:\n" + gw.text()[-3000:])
        why = dropped(gw.proc.pid, nobody.pw_uid, nobody.pw_gid)
        td.check(why is None, f"memif: every thread is nobody with nothing ({why})")
        src = os.path.dirname(os.path.abspath(__file__))
        hdr = os.path.join(src, "..", "data", "headers", "ex2016-tls.hdr")
        rc, s, err = lm.run_loadgen(lg, gw, "p", ["--header-file", hdr, "--size", "2k",
                                                  "--sessions", "10", "--messages-per-conn",
                                                  "10", "--count", "200"])
        td.check(rc == 0 and s and s["transactions"]["ok"] == 200,
                 f"memif: 200 transactions after the drop (exit {rc}) {err[-500:]}")
        wait_for(lambda: len(gw.spooled()) >= 200, 30, "200 messages in the spool")
        td.check(len(gw.spooled()) == 200, "memif: 200 messages spooled")
        gw.stop()
        td.check(gw.proc.returncode == 0, f"memif: exit status {gw.proc.returncode}")
    except (td.Failure, RuntimeError, OSError) as e:
        failed.append(f"memif: {e}")
        if gw:
            print(gw.text()[-4000:])
    finally:
        if gw and gw.proc.poll() is None:
            gw.proc.kill()
            gw.proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    if os.geteuid() != 0:
        skip("needs root (tap, hugepages)")
    if hugepages_free() < 160:
        skip("needs 160 free 2 MB hugepages (tools/setup.sh reserves them)")
    grp.getgrgid(pwd.getpwnam("nobody").pw_gid)
    failed = []
    scenario_tap(sys.argv[1], failed)
    scenario_memif(sys.argv[1], failed)
    return verdict(failed)


if __name__ == "__main__":
    sys.exit(main())
