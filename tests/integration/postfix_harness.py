# SPDX-License-Identifier: BSD-3-Clause
"""A complete temporary Postfix instance for integration tests (Python 3
stdlib only): its own config, queue and data directories in a temporary
directory, smtpd on a free loopback port, one virtual domain delivered to
<dir>/mail/inbox/ (a Maildir).  What differs between uses (the host name,
relaying, timers) is given as extra main.cf lines.  The system Postfix is
never touched; only this instance's master is signalled, by its PID.
Needs root (Postfix's master starts as root)."""
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

POSTFIX = shutil.which("postfix") or ("/usr/sbin/postfix"
                                      if os.access("/usr/sbin/postfix", os.X_OK) else None)
IS_ROOT = os.geteuid() == 0

# master.cf services besides smtpd and pickup (whose wakeup time differs)
SERVICES = ("cleanup unix n - n - 0 cleanup", "qmgr unix n - n 300 1 qmgr",
            "rewrite unix - - n - - trivial-rewrite", "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce", "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify", "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap", "smtp unix - - n - - smtp",
            "relay unix - - n - - smtp", "showq unix n - n - - showq",
            "error unix - - n - - error", "retry unix - - n - - error",
            "discard unix - - n - - discard", "virtual unix - n n - - virtual",
            "anvil unix - - n - 1 anvil", "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_quiet(argv, timeout=60, data=None):
    """Run argv; stdout and stderr captured as bytes."""
    return subprocess.run(argv, capture_output=True, timeout=timeout,
                          input=data if data is not None else b"")


class TempPostfix:
    def __init__(self, prefix, hostname, domain, main_cf_extra, pickup_wakeup=60):
        self.dir = tempfile.mkdtemp(prefix=prefix)
        os.chmod(self.dir, 0o755)  # postfix's daemons run as postfix
        d = self.dir
        self.etc = os.path.join(d, "etc")
        self.maildir = os.path.join(d, "mail", "inbox")
        for sub in ("etc", "queue", "data", "mail"):
            os.mkdir(os.path.join(d, sub))
        pf = pwd.getpwnam("postfix")
        os.chown(os.path.join(d, "data"), pf.pw_uid, pf.pw_gid)
        nobody = pwd.getpwnam("nobody")
        os.chown(os.path.join(d, "mail"), nobody.pw_uid, nobody.pw_gid)
        self.port = free_port()
        self.logfile = os.path.join(d, "postfix.log")
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(f"""compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = {self.logfile}
maillog_file_prefixes = {d}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = {hostname}
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
virtual_mailbox_domains = {domain}
virtual_mailbox_base = {d}/mail
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:{nobody.pw_uid}
virtual_gid_maps = static:{nobody.pw_gid}
biff = no
""" + main_cf_extra)
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(f"127.0.0.1:{self.port} inet n - n - - smtpd\n")
            f.write(f"pickup unix n - n {pickup_wakeup} 1 pickup\n")
            for line in SERVICES:
                f.write(line + "\n")
        # "check" creates the queue's subdirectories
        for cmd in ("check", "start"):
            p = run_quiet([POSTFIX, "-c", self.etc, cmd])
            if p.returncode != 0:
                self.stop()
                raise RuntimeError("postfix %s failed (%d): %r %r\n%s" % (
                    cmd, p.returncode, p.stdout, p.stderr, self.log()))
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("postfix did not listen:\n" + self.log())
                time.sleep(0.1)

    def log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def messages(self, subdirs=("new",)):
        """The Maildir's messages, as bytes, sorted by file name."""
        out = []
        for sub in subdirs:
            d = os.path.join(self.maildir, sub)
            if os.path.isdir(d):
                for name in sorted(os.listdir(d)):
                    with open(os.path.join(d, name), "rb") as f:
                        out.append(f.read())
        return out

    def master_pid(self):
        try:
            with open(os.path.join(self.dir, "queue", "pid", "master.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def stop(self):
        pid = self.master_pid()
        run_quiet([POSTFIX, "-c", self.etc, "stop"])
        if pid:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                try:
                    os.kill(pid, 9)  # only our own master, by its pid
                except ProcessLookupError:
                    pass
        shutil.rmtree(self.dir, ignore_errors=True)
