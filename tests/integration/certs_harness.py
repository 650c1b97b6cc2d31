# SPDX-License-Identifier: BSD-3-Clause
"""Certificates for the client-certificate tests, made with the openssl
command line in a temporary directory, and the two clients that present
them: swaks and openssl s_client (-starttls smtp, driven line by line over
pipes, every read bounded).

- ca.crt: the CA tesgate trusts (tls_client_ca); other-ca.crt: one it does not
- server.crt: tesgate's own certificate
- good: CN exch01.bear.test, SAN DNS:mx.bear.example, from ca.crt
- owl: CN exch01.owl.test, SAN DNS:mx.owl.example, from ca.crt (verified, but
  no connector has its name)
- wrong: the same names as good, from other-ca.crt
- expired: the same names as good, from ca.crt, notAfter before notBefore
"""
import os
import select
import shutil
import subprocess
import tempfile
import time

OPENSSL = shutil.which("openssl")
SWAKS = shutil.which("swaks")
IO_TIMEOUT = 15.0


def _run(*args, cwd):
    p = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {p.stderr}")


class Certs:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tes-certs-", dir="/tmp")
        d = self.dir
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        for ca in ("ca", "other-ca"):
            _run(OPENSSL, "req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.crt",
                 "-days", "3", "-subj", f"/CN=tesgate test {ca}", cwd=d)
        _run(OPENSSL, "req", "-x509", *ec, "-keyout", "server.key", "-out", "server.crt",
             "-days", "3", "-subj", "/CN=gw.tesgate.test",
             "-addext", "subjectAltName=DNS:gw.tesgate.test", cwd=d)
        specs = [("good", "exch01.bear.test", "mx.bear.example", "ca", "3"),
                 ("owl", "exch01.owl.test", "mx.owl.example", "ca", "3"),
                 ("wrong", "exch01.bear.test", "mx.bear.example", "other-ca", "3"),
                 ("expired", "exch01.bear.test", "mx.bear.example", "ca", "-1")]
        for name, cn, san, ca, days in specs:
            with open(os.path.join(d, name + ".ext"), "w") as f:
                f.write(f"subjectAltName=DNS:{san}\nextendedKeyUsage=serverAuth\n")
            _run(OPENSSL, "req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={cn}", cwd=d)
            _run(OPENSSL, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey",
                 f"{ca}.key", "-CAcreateserial", "-out", f"{name}.crt", "-days", days,
                 "-extfile", f"{name}.ext", cwd=d)

    def path(self, name):
        return os.path.join(self.dir, name)

    def pair(self, name):
        return self.path(name + ".crt"), self.path(name + ".key")

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def swaks(port, msg_path, cert=None, server="127.0.0.1", tls=True):
    """One message with swaks; returns (exit status, transcript)."""
    args = [SWAKS, "--server", server, "--port", str(port), "--timeout", "15",
            "--from", "grace.okafor@contoso.com", "--to", "ian.hughes@example.net",
            "--helo", "ex16-02.contoso.local", "--data", "@" + msg_path]
    if tls:
        args.append("--tls")
    if cert:
        args += ["--tls-cert", cert[0], "--tls-key", cert[1]]
    p = subprocess.run(args, capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout + p.stderr


class SClient:
    """openssl s_client -starttls smtp with a client certificate; the SMTP
    dialogue after the handshake goes through its pipes."""

    def __init__(self, host, port, cert=None):
        args = [OPENSSL, "s_client", "-connect", f"{host}:{port}", "-starttls", "smtp",
                "-quiet", "-crlf"]
        if cert:
            args += ["-cert", cert[0], "-key", cert[1]]
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        self.buf = b""

    def line(self):
        deadline = time.monotonic() + IO_TIMEOUT
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"s_client: no line; so far {self.buf!r}")
            r, _, _ = select.select([self.p.stdout], [], [], left)
            if r:
                chunk = os.read(self.p.stdout.fileno(), 4096)
                if not chunk:
                    raise EOFError(f"s_client ended; so far {self.buf!r}; "
                                   f"{self.p.stderr.read().decode(errors='replace')}")
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode()

    def reply(self):
        """The last line of a (multi-line) reply."""
        while True:
            ln = self.line()
            if len(ln) < 4 or ln[3] != "-":
                return ln

    def cmd(self, text):
        self.p.stdin.write(text.encode() + b"\n")
        self.p.stdin.flush()
        return self.reply()

    def mail_from(self):
        """EHLO again (inside TLS), then MAIL FROM: its reply line."""
        self.cmd("EHLO ex16-02.contoso.local")
        return self.cmd("MAIL FROM:<grace.okafor@contoso.com>")

    def transaction(self, msg_path):
        """A whole message: the first reply that is not a success (MAIL,
        RCPT, DATA or the end of data), or the final 250."""
        r = self.mail_from()
        if not r.startswith("250"):
            return r
        r = self.cmd("RCPT TO:<ian.hughes@example.net>")
        if not r.startswith("250"):
            return r
        r = self.cmd("DATA")
        if not r.startswith("354"):
            return r
        with open(msg_path, "rb") as f:
            lines = f.read().replace(b"\r\n", b"\n").split(b"\n")
        for ln in lines[:-1] if lines and lines[-1] == b"" else lines:
            self.p.stdin.write((b"." + ln if ln.startswith(b".") else ln) + b"\n")
        return self.cmd(".")

    def close(self):
        try:
            self.cmd("QUIT")
        except (OSError, EOFError, TimeoutError):
            pass
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            self.p.wait(timeout=IO_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.p.stdout.close()
        self.p.stderr.close()
