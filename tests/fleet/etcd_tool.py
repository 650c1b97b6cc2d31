# SPDX-License-Identifier: BSD-3-Clause
"""Drive tests/fleet/etcd_tool (libtesetcd behind a JSON-lines REPL).

    t = Tool(endpoints, timeout_ms=2000)
    t.cmd("put", key="/a", value="1")       -> {"ok": True, "revision": 2}
    t.send("put", ...); t.reply()           # pipelined
    t.watch_update("w", kinds={"events"})   # the next update of watch w

A reader thread sorts the tool's output into command answers (in order) and
watch updates (per watch).  Every wait is bounded; close() checks the
tool's exit status (under AddressSanitizer a leak makes it non-zero).
"""
import json
import os
import queue
import subprocess
import threading
import time

TOOL = os.environ.get("TES_ETCD_TOOL", "etcd_tool")
WAIT = 60.0


class ToolError(Exception):
    pass


class Tool:
    def __init__(self, endpoints, timeout_ms=None, connect_timeout_ms=None, max_response=None,
                 watch_max_batch=None, cacert=None, cert=None, key=None, insecure=False,
                 user=None, password=None, expect_ready=True):
        args = [TOOL, "--endpoints", ",".join(endpoints)]
        for flag, v in (("--timeout-ms", timeout_ms), ("--connect-timeout-ms", connect_timeout_ms),
                        ("--max-response", max_response), ("--watch-max-batch", watch_max_batch),
                        ("--cacert", cacert), ("--cert", cert), ("--key", key),
                        ("--user", user), ("--password", password)):
            if v is not None:
                args += [flag, str(v)]
        if insecure:
            args.append("--insecure")
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.answers = queue.Queue()
        self.updates = {}
        self.lock = threading.Lock()
        self.stderr = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.err_reader = threading.Thread(target=self._read_err, daemon=True)
        self.err_reader.start()
        self.closed = False
        first = self.reply()
        if expect_ready and not first.get("ok"):
            self.close(check=False)
            raise ToolError(f"etcd_tool did not start: {first}")
        self.ready = first

    def _read(self):
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                msg = {"ok": False, "error": f"tool printed non-JSON: {line!r}"}
            if "watch" in msg and "ok" not in msg:
                self._watch_queue(msg["watch"]).put(msg)
            else:
                self.answers.put(msg)
        self.answers.put(None)

    def _read_err(self):
        for line in self.proc.stderr:
            self.stderr.append(line)

    def _watch_queue(self, name):
        with self.lock:
            return self.updates.setdefault(name, queue.Queue())

    def send(self, cmd, **kw):
        kw["cmd"] = cmd
        self.proc.stdin.write(json.dumps(kw) + "\n")
        self.proc.stdin.flush()

    def reply(self, timeout=WAIT):
        try:
            msg = self.answers.get(timeout=timeout)
        except queue.Empty:
            raise ToolError(f"no answer from etcd_tool within {timeout} s") from None
        if msg is None:
            raise ToolError(f"etcd_tool exited ({self.proc.poll()}): {''.join(self.stderr)}")
        return msg

    def cmd(self, cmd, **kw):
        self.send(cmd, **kw)
        return self.reply()

    def ok(self, cmd, **kw):
        r = self.cmd(cmd, **kw)
        if not r.get("ok"):
            raise ToolError(f"{cmd} {kw}: {r}")
        return r

    def watch_update(self, name, kinds=None, timeout=WAIT):
        """The next update of watch name; with kinds, the next one of those
        kinds (updates of other kinds before it are dropped)."""
        q = self._watch_queue(name)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ToolError(f"watch {name}: no {kinds or 'update'} within {timeout} s")
            try:
                u = q.get(timeout=left)
            except queue.Empty:
                continue
            if kinds is None or u["kind"] in kinds:
                return u

    def watch_pending(self, name):
        """Updates of watch name received so far (without waiting)."""
        q = self._watch_queue(name)
        out = []
        while True:
            try:
                out.append(q.get_nowait())
            except queue.Empty:
                return out

    def close(self, check=True):
        if self.closed:
            return None
        self.closed = True
        try:
            self.send("quit")
        except (BrokenPipeError, OSError):
            pass
        try:
            rc = self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(timeout=WAIT)
        self.reader.join(timeout=WAIT)
        self.err_reader.join(timeout=WAIT)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass
        if check and rc != 0:
            raise ToolError(f"etcd_tool exited {rc}: {''.join(self.stderr)[-4000:]}")
        return rc
