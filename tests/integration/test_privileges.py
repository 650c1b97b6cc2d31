#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Giving up privileges, on kernel sockets (issue 14, item 4; the DPDK path is
tests/dpdk/test_privileges_dpdk.py, tescontrol with XDP tests/xdp/
test_xdp_privileges.py):

- tesgate started as root with user = nobody: every thread of it runs as
  nobody/nogroup with no capability in any set (effective, permitted,
  inheritable, ambient, bounding) and no_new_privs, as /proc says; and what
  must still work does: spool writes (the files are nobody's), a SIGHUP
  reload of the TLS files, the verdict log reopened after rotation, the
  connection to tescontrol (also after tescontrol restarts), the relay;
- tescontrol started as root with user = nobody and no XDP: the same, no
  capability at all, and it serves tesctl and the gateway;
- started as root with no user, tesgate says so loudly (three warnings) and
  keeps root;
- started unprivileged with CAP_NET_BIND_SERVICE in its ambient set (as the
  shipped tesgate.service does) to listen on a port below 1024: once bound,
  no thread holds any capability.

Needs root; exit 77 without.  Every wait is bounded.

usage: test_privileges.py PATH-TO-TESGATE   (TESCONTROL, TESCTL, TES_SRCDIR in env)
"""
import grp
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ctl_harness as ch  # noqa: E402
from gateway_harness import Gateway, run  # noqa: E402
from proc_harness import proc_tasks  # noqa: E402
from test_relay import FakeBackend, message  # noqa: E402

WAIT = 20.0


def wait_for(pred, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()




def make_cert(d, name, group):
    cert, key = os.path.join(d, name + ".crt"), os.path.join(d, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=" + name], check=True, capture_output=True,
                   timeout=60)
    os.chown(key, 0, group)
    os.chmod(key, 0o640)
    os.chmod(cert, 0o644)
    return cert, key


class PrivBase(unittest.TestCase):
    binary = None

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")
        self.nobody = pwd.getpwnam("nobody")
        self.gid = self.nobody.pw_gid
        self.grname = grp.getgrgid(self.gid).gr_name
        self.dir = tempfile.mkdtemp(prefix="tesgate-priv-")
        os.chmod(self.dir, 0o755)
        self.gw = self.tc = self.backend = None

    def tearDown(self):
        try:
            if self.gw:
                self.gw.stop_clean()
        finally:
            if self.gw:
                self.gw.close()
            if self.tc:
                self.tc.cleanup()
            if self.backend:
                self.backend.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def assert_dropped(self, pid, uid, gid, keep=0):
        tasks = proc_tasks(pid)
        self.assertGreater(len(tasks), 0)
        for tid, f in tasks.items():
            what = "thread %s (%s)" % (tid, f.get("Name"))
            self.assertEqual(f["Uid"].split(), [str(uid)] * 4, what)
            self.assertEqual(f["Gid"].split(), [str(gid)] * 4, what)
            self.assertEqual(int(f["CapEff"], 16), keep, what)
            self.assertEqual(int(f["CapPrm"], 16), keep, what)
            self.assertEqual(int(f["CapInh"], 16), 0, what)
            self.assertEqual(int(f["CapAmb"], 16), 0, what)
            self.assertEqual(f["NoNewPrivs"], "1", what)
        return tasks

    def start_tescontrol(self, **conf):
        tcdir = tempfile.mkdtemp(prefix="tc-", dir="/tmp")
        os.chmod(tcdir, 0o755)  # the gateway, as nobody, must reach the socket
        # metrics on: its thread is made after the drop and must inherit it
        settings = {"user": "nobody", "gateway_group": self.grname,
                    "metrics_listen": "127.0.0.1:0"}
        settings.update(conf)
        self.tc = ch.Tescontrol(conf=settings, keep_dir=tcdir)
        self.tc.start()
        return self.tc


class KernelPath(PrivBase):
    def test_tesgate_and_tescontrol_as_nobody(self):
        tc = self.start_tescontrol()
        self.assertGreater(len(self.assert_dropped(tc.proc.pid, self.nobody.pw_uid, self.gid)),
                           1)
        self.assertIn("privileges: now user nobody", tc.log_text())

        cert1, key1 = make_cert(self.dir, "one", self.gid)
        cert2, key2 = make_cert(self.dir, "two", self.gid)
        cert, key = os.path.join(self.dir, "tls.crt"), os.path.join(self.dir, "tls.key")
        shutil.copy(cert1, cert)
        shutil.copy(key1, key)
        os.chown(key, 0, self.gid)
        os.chmod(key, 0o640)
        logdir = os.path.join(self.dir, "log")
        os.mkdir(logdir)
        os.chown(logdir, self.nobody.pw_uid, self.gid)
        vlog = os.path.join(logdir, "verdicts.log")
        self.gw = Gateway(self.binary, {
            "user": "nobody", "tls_cert": cert, "tls_key": key, "verdict_log": vlog,
            "control_socket": tc.gw_sock, "log_level": "debug"})
        log = self.gw.log_text()
        self.assertIn("privileges: now user nobody", log)
        self.assertNotIn("RUNNING AS ROOT", log)
        self.assert_dropped(self.gw.proc.pid, self.nobody.pw_uid, self.gid)
        for tid, f in proc_tasks(self.gw.proc.pid).items():
            self.assertEqual(int(f["CapBnd"], 16), 0, tid)

        # spool writes, made by nobody
        with smtplib.SMTP("127.0.0.1", self.gw.port, timeout=WAIT) as s:
            s.starttls(context=ssl._create_unverified_context())
            s.ehlo("priv.example.org")
            self.assertEqual(s.sendmail("a@example.com", ["b@example.net"],
                                        message(b"after-the-drop")), {})
        msgs = self.gw.messages()
        self.assertEqual(len(msgs), 1)
        st = os.stat(os.path.join(self.gw.spool, "new", msgs[0][0] + ".eml"))
        self.assertEqual((st.st_uid, st.st_gid), (self.nobody.pw_uid, self.gid))

        # SIGHUP: the TLS files read again as nobody; the verdict log reopened
        shutil.copy(cert2, cert)
        shutil.copy(key2, key)
        os.rename(vlog, vlog + ".1")
        self.gw.signal(signal.SIGHUP)
        self.assertTrue(self.gw.wait_for(lambda: "tls certificate reloaded" in
                                         self.gw.log_text()), self.gw.log_text()[-3000:])
        self.assertTrue(self.gw.wait_for(lambda: os.path.exists(vlog)))
        self.assertIn("verdict_log %s reopened" % vlog, self.gw.log_text())
        self.assertNotIn("cannot reopen", self.gw.log_text())
        ctx = ssl._create_unverified_context()
        with socket.create_connection(("127.0.0.1", self.gw.port), timeout=WAIT) as raw:
            f = raw.makefile("rwb")
            f.readline()
            f.write(b"EHLO x\r\nSTARTTLS\r\n")
            f.flush()
            while not f.readline().startswith(b"220 "):
                pass
            with ctx.wrap_socket(raw, server_hostname="two") as t:
                der = t.getpeercert(binary_form=True)
        with open(cert2) as f2:
            self.assertEqual(der, ssl.PEM_cert_to_DER_cert(f2.read()))

        # the control socket, as nobody, also after tescontrol restarts
        def connected():
            return tc.ctl("status").get("gateways_connected") == 1
        self.assertTrue(self.gw.wait_for(connected, WAIT))
        tc.stop()
        tc.start()
        self.assert_dropped(tc.proc.pid, self.nobody.pw_uid, self.gid)
        self.assertTrue(self.gw.wait_for(connected, WAIT), self.gw.log_text()[-2000:])

    def test_relay_as_nobody(self):
        self.backend = FakeBackend()
        self.gw = Gateway(self.binary, {
            "user": "nobody", "control_socket": "", "delivery": "smtp",
            "relay_host": "127.0.0.1", "relay_port": str(self.backend.port),
            "relay_memory_per_message": "0"})
        self.assert_dropped(self.gw.proc.pid, self.nobody.pw_uid, self.gid)
        msg = message(b"relayed-as-nobody")
        with smtplib.SMTP("127.0.0.1", self.gw.port, timeout=WAIT) as s:
            self.assertEqual(s.sendmail("a@example.com", ["b@example.net"], msg), {})
        self.assertTrue(self.backend.wait_for(lambda: len(self.backend.messages) == 1))
        self.assertEqual(self.backend.messages[0]["data"], msg)


class RootWithoutUser(PrivBase):
    def test_loud(self):
        self.gw = Gateway(self.binary, {"control_socket": ""})
        log = self.gw.log_text()
        self.assertEqual(log.count("RUNNING AS ROOT"), 3, log)
        f = proc_tasks(self.gw.proc.pid)
        self.assertTrue(all(t["Uid"].split()[1] == "0" for t in f.values()))


class UnprivilegedWithCapability(PrivBase):
    def test_port_below_1024_then_nothing(self):
        if not shutil.which("setpriv"):
            self.skipTest("setpriv (util-linux) is not installed")
        spool = os.path.join(self.dir, "spool")
        os.mkdir(spool)
        os.chown(spool, self.nobody.pw_uid, self.gid)
        conf = os.path.join(self.dir, "gw.conf")
        with open(conf, "w") as f:
            f.write("control_socket =\nmetrics_listen =\nuser = nobody\n")
        logpath = os.path.join(self.dir, "gw.log")
        # a privileged port on an address of its own, so nothing else holds it
        port = None
        for cand in (25, 587, 465, 999, 998, 997):
            s = socket.socket()
            try:
                s.bind(("127.88.0.1", cand))
                port = cand
                break
            except OSError:
                continue
            finally:
                s.close()
        self.assertIsNotNone(port)
        with open(logpath, "wb") as log:
            p = subprocess.Popen(
                ["setpriv", "--reuid=nobody", "--regid=%d" % self.gid, "--clear-groups",
                 "--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service", "--",
                 self.binary, "-c", conf, "--listen", "127.88.0.1:%d" % port, "--spool", spool],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            def text():
                with open(logpath, "rb") as f:
                    return f.read().decode("utf-8", "replace")
            ok = wait_for(lambda: "listening on" in text() or p.poll() is not None)
            self.assertTrue(ok and p.poll() is None, text())
            self.assert_dropped(p.pid, self.nobody.pw_uid, self.gid)
            self.assertIn("capabilities effective=none permitted=none", text())
            with smtplib.SMTP("127.88.0.1", port, timeout=WAIT) as s:
                self.assertEqual(s.sendmail("a@example.com", ["b@example.net"],
                                            message(b"low-port")), {})
            self.assertEqual(len(os.listdir(os.path.join(spool, "new"))), 2)
        finally:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


if __name__ == "__main__":
    sys.exit(run(sys.argv, [KernelPath, RootWithoutUser, UnprivilegedWithCapability]))
