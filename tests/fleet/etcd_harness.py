# SPDX-License-Identifier: BSD-3-Clause
"""Run a real etcd cluster (Debian etcd-server 3.4) for tests and benchmarks.

Python 3 stdlib only.  Every member listens on loopback ports picked here,
keeps its data directory under a temporary directory of its own, and is
started, killed and stopped by its PID: nothing here ever talks to an etcd it
did not start (the members are named after a random cluster token, and
wait_healthy() checks that every port answers with exactly those members).

    with EtcdCluster(members=3, tls=True, auth=True) as c:
        c.endpoints          # ['https://127.0.0.1:PORT', ...]
        c.leader()           # index of the current leader
        c.kill9(i); c.restart(i)

TLS (tls=True): a CA, a server certificate for 127.0.0.1/localhost, a client
certificate and a second, unrelated CA (for "wrong CA" tests) are made with
openssl in the cluster's directory; client URLs become https.  Peer traffic
stays plain HTTP on loopback.

Auth (auth=True): users root (role root) and app (role app: read-write on the
prefix APP_PREFIX) are created and authentication is enabled, with etcdctl.

Command line (for bench scripts):
    etcd_harness.py run [--members N] [--keep] -- COMMAND ARGS...
starts a cluster, runs COMMAND with TES_ETCD_ENDPOINTS=URL,URL,...,
TES_ETCD_MEMBERS=PID,PID,... and TES_ETCD_LEADER=INDEX (into those lists) in
its environment, stops the cluster and exits with COMMAND's status.
"""
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ETCD = os.environ.get("TES_ETCD", "etcd")
ETCDCTL = os.environ.get("TES_ETCDCTL", "etcdctl")

START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
HTTP_TIMEOUT = 3.0

ROOT_PASSWORD = "root-pw-7c1e"
APP_USER = "app"
APP_PASSWORD = "app-pw-51f0"
APP_PREFIX = "/app/"


class EtcdError(Exception):
    pass


def have_etcd():
    return shutil.which(ETCD) is not None and shutil.which(ETCDCTL) is not None


def free_ports(n):
    """n distinct free loopback TCP ports.  They are held until all are
    chosen so the list has no duplicates; another process may still take one
    before etcd binds it, which start() notices and retries."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60, **kw)


def make_ca(d, name):
    """A self-signed CA (EC P-256) in d: name-ca.pem, name-ca.key."""
    key, crt = os.path.join(d, f"{name}-ca.key"), os.path.join(d, f"{name}-ca.pem")
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", key, "-out", crt, "-days", "2", "-sha256",
         "-subj", f"/CN=tesgate test {name} CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    return crt, key


def make_cert(d, name, ca_crt, ca_key, cn, san, usage):
    """A leaf certificate signed by the CA: name.pem, name.key."""
    key, csr, crt = (os.path.join(d, f"{name}.{x}") for x in ("key", "csr", "pem"))
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as f:
        f.write(f"subjectAltName={san}\nextendedKeyUsage={usage}\n"
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n")
    run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={cn}"])
    run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
         "-CAcreateserial", "-out", crt, "-days", "2", "-sha256", "-extfile", ext])
    return crt, key


class Member:
    def __init__(self, index, name, client_port, peer_port, data_dir, log_path):
        self.index = index
        self.name = name
        self.client_port = client_port
        self.peer_port = peer_port
        self.data_dir = data_dir
        self.log_path = log_path
        self.proc = None
        self.starts = 0

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None


class EtcdCluster:
    def __init__(self, members=3, tls=False, client_cert_auth=False, auth=False,
                 auth_token_ttl=None, extra_flags=None, base_dir=None):
        if not have_etcd():
            raise EtcdError(f"{ETCD} or {ETCDCTL} not found (tools/setup.sh installs etcd-server "
                            "and etcd-client)")
        self.n = members
        self.tls = tls
        self.client_cert_auth = client_cert_auth
        self.auth = auth
        self.auth_token_ttl = auth_token_ttl
        self.extra_flags = list(extra_flags or [])
        self.dir = tempfile.mkdtemp(prefix="etcd-", dir=base_dir or "/tmp")
        self.token = "tes-" + secrets.token_hex(6)
        self.members = []
        self.scheme = "https" if tls else "http"
        self.ca = self.ca_key = self.server_cert = self.server_key = None
        self.client_cert = self.client_key = self.wrong_ca = None
        if tls:
            self._make_tls()

    # --- set-up -------------------------------------------------------------

    def _make_tls(self):
        d = os.path.join(self.dir, "tls")
        os.makedirs(d)
        self.ca, self.ca_key = make_ca(d, "test")
        self.server_cert, self.server_key = make_cert(
            d, "server", self.ca, self.ca_key, "localhost", "IP:127.0.0.1,DNS:localhost",
            "serverAuth,clientAuth")
        self.client_cert, self.client_key = make_cert(
            d, "client", self.ca, self.ca_key, "tescontrol", "DNS:tescontrol", "clientAuth")
        self.wrong_ca, _ = make_ca(d, "other")

    def _layout(self):
        ports = free_ports(2 * self.n)
        self.members = []
        for i in range(self.n):
            name = f"{self.token}-{i}"
            mdir = os.path.join(self.dir, f"m{i}")
            os.makedirs(mdir, exist_ok=True)
            self.members.append(Member(i, name, ports[2 * i], ports[2 * i + 1],
                                       os.path.join(mdir, "data"), os.path.join(mdir, "etcd.log")))

    def client_url(self, i):
        return f"{self.scheme}://127.0.0.1:{self.members[i].client_port}"

    @property
    def endpoints(self):
        return [self.client_url(i) for i in range(self.n)]

    def _cmd(self, m):
        initial = ",".join(f"{x.name}=http://127.0.0.1:{x.peer_port}" for x in self.members)
        cmd = [ETCD, "--name", m.name, "--data-dir", m.data_dir,
               "--listen-client-urls", self.client_url(m.index),
               "--advertise-client-urls", self.client_url(m.index),
               "--listen-peer-urls", f"http://127.0.0.1:{m.peer_port}",
               "--initial-advertise-peer-urls", f"http://127.0.0.1:{m.peer_port}",
               "--initial-cluster", initial,
               "--initial-cluster-token", self.token,
               "--initial-cluster-state", "new",
               "--logger", "zap", "--log-outputs", "stderr"]
        if self.tls:
            cmd += ["--cert-file", self.server_cert, "--key-file", self.server_key]
            if self.client_cert_auth:
                cmd += ["--client-cert-auth", "--trusted-ca-file", self.ca]
        if self.auth_token_ttl is not None:
            cmd += ["--auth-token-ttl", str(self.auth_token_ttl)]
        return cmd + self.extra_flags

    def _spawn(self, m):
        log = open(m.log_path, "ab")
        try:
            m.proc = subprocess.Popen(self._cmd(m), stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        m.starts += 1

    def start(self, timeout=START_TIMEOUT):
        """Start every member of a new cluster and wait until it is healthy.
        A port taken by someone else between free_ports() and etcd's bind
        makes a member exit at once: the attempt is torn down and made again
        on new ports (3 tries)."""
        for attempt in range(3):
            self._layout()
            for m in self.members:
                self._spawn(m)
            try:
                self.wait_healthy(timeout)
                break
            except EtcdError:
                died = [m for m in self.members if not m.running()]
                in_use = any("address already in use" in self.log_text(m.index) for m in died)
                self.stop()
                if not (in_use and attempt < 2):
                    raise
                for m in self.members:
                    shutil.rmtree(os.path.dirname(m.data_dir), ignore_errors=True)
        if self.auth:
            self._enable_auth()
        return self

    def _enable_auth(self):
        ctl = self.etcdctl
        ctl("user", "add", "root", f"--new-user-password={ROOT_PASSWORD}", auth=False)
        ctl("role", "add", "root", auth=False)
        ctl("user", "grant-role", "root", "root", auth=False)
        ctl("role", "add", APP_USER, auth=False)
        ctl("role", "grant-permission", APP_USER, "--prefix=true", "readwrite", APP_PREFIX,
            auth=False)
        ctl("user", "add", APP_USER, f"--new-user-password={APP_PASSWORD}", auth=False)
        ctl("user", "grant-role", APP_USER, APP_USER, auth=False)
        ctl("auth", "enable", auth=False)

    # --- queries ------------------------------------------------------------

    def _ssl_context(self):
        if not self.tls:
            return None
        ctx = ssl.create_default_context(cafile=self.ca)
        if self.client_cert_auth:
            ctx.load_cert_chain(self.client_cert, self.client_key)
        return ctx

    def http(self, i, path, body=None, timeout=HTTP_TIMEOUT):
        """POST (or GET without body) to member i; the decoded JSON answer."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.client_url(i) + path, data=data,
                                     method="POST" if data is not None else "GET")
        with urllib.request.urlopen(req, timeout=timeout, context=self._ssl_context()) as r:
            return json.loads(r.read())

    def member_status(self, i):
        return self.http(i, "/v3/maintenance/status", {})

    def wait_healthy(self, timeout=START_TIMEOUT, members=None):
        """Every running member (or those listed) reports health true and
        the cluster's member list is exactly ours; raises EtcdError."""
        deadline = time.monotonic() + timeout
        want = sorted(m.name for m in self.members)
        idx = list(members) if members is not None else [m.index for m in self.members
                                                          if m.proc is not None]
        last = ""
        while time.monotonic() < deadline:
            for i in idx:
                if not self.members[i].running():
                    raise EtcdError(f"etcd member {i} exited with {self.members[i].proc.poll()}:\n"
                                    + self.log_text(i)[-3000:])
            try:
                ok = True
                for i in idx:
                    h = self.http(i, "/health")
                    if h.get("health") != "true":
                        ok, last = False, f"member {i}: {h}"
                        break
                    names = sorted(x.get("name", "") for x in
                                   self.http(i, "/v3/cluster/member/list", {})["members"])
                    if names != want:
                        raise EtcdError(f"member {i} at {self.client_url(i)} is not ours: "
                                        f"members {names}, want {want}")
                if ok:
                    return
            except (OSError, ValueError, KeyError) as e:
                last = str(e)
            time.sleep(0.1)
        raise EtcdError(f"etcd cluster not healthy after {timeout} s: {last}")

    def leader(self, timeout=START_TIMEOUT):
        """Index of the member every running member agrees is the leader."""
        deadline = time.monotonic() + timeout
        ids = {}
        while time.monotonic() < deadline:
            try:
                seen = set()
                for m in self.members:
                    if not m.running():
                        continue
                    st = self.member_status(m.index)
                    ids[int(st["header"]["member_id"])] = m.index
                    seen.add(int(st.get("leader", "0")))
                if len(seen) == 1:
                    lid = seen.pop()
                    if lid in ids:
                        return ids[lid]
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        raise EtcdError("no agreed leader")

    def etcdctl(self, *args, auth=True, endpoints=None, user=None, check=True):
        """etcdctl against this cluster only (its endpoints, its CA)."""
        cmd = [ETCDCTL, "--endpoints", ",".join(endpoints or self.endpoints),
               "--command-timeout", "10s", "--dial-timeout", "5s"]
        if self.tls:
            cmd += ["--cacert", self.ca]
            if self.client_cert_auth:
                cmd += ["--cert", self.client_cert, "--key", self.client_key]
        if auth and self.auth:
            cmd += ["--user", user or f"root:{ROOT_PASSWORD}"]
        env = dict(os.environ, ETCDCTL_API="3")
        r = subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True,
                           timeout=60, env=env)
        if check and r.returncode != 0:
            raise EtcdError(f"etcdctl {' '.join(map(str, args))}: exit {r.returncode}: "
                            f"{r.stderr.strip()}")
        return r.stdout

    def log_text(self, i):
        try:
            with open(self.members[i].log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # --- faults -------------------------------------------------------------

    def kill9(self, i):
        m = self.members[i]
        if not m.running():
            raise EtcdError(f"member {i} is not running")
        os.kill(m.proc.pid, signal.SIGKILL)
        m.proc.wait(timeout=STOP_TIMEOUT)

    def restart(self, i, wait=True):
        """Start member i again on its data directory and ports."""
        m = self.members[i]
        if m.running():
            raise EtcdError(f"member {i} is still running")
        self._spawn(m)
        if wait:
            self.wait_healthy(members=[i])

    def stop_member(self, i):
        m = self.members[i]
        if not m.running():
            return m.proc.returncode if m.proc else None
        os.kill(m.proc.pid, signal.SIGTERM)
        try:
            return m.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(m.proc.pid, signal.SIGKILL)
            return m.proc.wait(timeout=STOP_TIMEOUT)

    def stop(self):
        for m in self.members:
            if m.proc is not None:
                self.stop_member(m.index)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()


class TcpProxy:
    """A loopback TCP relay in front of one member, which a test can cut
    (open connections closed, new ones refused) and restore, or turn into
    a black hole (connections accepted, nothing answered): a member that
    vanishes from the network without dying, on loopback only."""

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.port = free_ports(1)[0]
        self.mode = "forward"
        self.conns = []
        self.lock = threading.Lock()
        self.lsock = None
        self.stopping = False
        self._listen()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def _listen(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        self.lsock = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, lsock):
        while True:
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(c)
                mode = self.mode
            if mode == "blackhole":
                continue  # held open, never answered
            try:
                u = socket.create_connection(self.target, timeout=5)
            except OSError:
                c.close()
                continue
            u.settimeout(None)
            with self.lock:
                self.conns.append(u)
            threading.Thread(target=self._pipe, args=(c, u), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _drop_all(self):
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def cut(self):
        """Close every connection and refuse new ones."""
        with self.lock:
            self.mode = "cut"
        if self.lsock:
            # shutdown wakes the thread blocked in accept(); close alone
            # would leave the socket listening until accept returned.
            try:
                self.lsock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.lsock.close()
            self.lsock = None
        self._drop_all()

    def blackhole(self):
        with self.lock:
            self.mode = "blackhole"
        self._drop_all()
        if not self.lsock:
            self._listen()

    def restore(self):
        with self.lock:
            self.mode = "forward"
        if not self.lsock:
            self._listen()

    def close(self):
        self.cut()


class NotEtcd:
    """An HTTP server on a loopback port that answers every request with a
    fixed status and body: an endpoint that is not etcd."""

    def __init__(self, status=200, body=b"hello, this is not etcd\n",
                 content_type="text/plain"):
        import http.server

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class ScriptedEtcd:
    """A loopback HTTP/1.1 server playing a scripted etcd: the n-th request
    gets the n-th entry of scripts, a list of JSON objects (or bytes) sent
    as chunks of a chunked answer; then the answer ends, except the last
    entry's, which is held open until close().  Every request is recorded
    as (request line, headers, decoded JSON body)."""

    def __init__(self, scripts):
        self.scripts = scripts
        self.requests = []
        self.lock = threading.Lock()
        self.held = []
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        data = b""
        while b"\r\n\r\n" not in data:
            d = c.recv(65536)
            if not d:
                c.close()
                return
            data += d
        head, body = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in
                   (h.split(":", 1) for h in lines[1:] if ":" in h)}
        n = int(headers.get("content-length", "0"))
        while len(body) < n:
            d = c.recv(65536)
            if not d:
                break
            body += d
        with self.lock:
            idx = len(self.requests)
            self.requests.append((lines[0], headers, json.loads(body or b"null")))
        if idx >= len(self.scripts):
            c.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
            c.close()
            return
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        for item in self.scripts[idx]:
            chunk = item if isinstance(item, bytes) else json.dumps(item).encode() + b"\n"
            c.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        if idx == len(self.scripts) - 1:
            with self.lock:
                self.held.append(c)
            return
        c.sendall(b"0\r\n\r\n")
        c.close()

    def close(self):
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.lsock.close()
        with self.lock:
            for c in self.held:
                c.close()


def _main(argv):
    import argparse
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run", help="start a cluster, run a command against it, stop it")
    r.add_argument("--members", type=int, default=3)
    r.add_argument("--keep", action="store_true", help="keep the data directories")
    r.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        p.error("no command")
    c = EtcdCluster(members=a.members)
    try:
        c.start()
        env = dict(os.environ, TES_ETCD_ENDPOINTS=",".join(c.endpoints),
                   TES_ETCD_MEMBERS=",".join(str(m.pid) for m in c.members),
                   TES_ETCD_LEADER=str(c.leader()))
        return subprocess.call(cmd, env=env)
    finally:
        if a.keep:
            c.stop()
            print(f"etcd data kept in {c.dir}", file=sys.stderr)
        else:
            c.cleanup()


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
