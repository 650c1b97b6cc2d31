# SPDX-License-Identifier: BSD-3-Clause
"""A page as a person sees it: Debian's headless Chromium loads a URL and
gives back the DOM it built (--dump-dom) or a screenshot (Python 3 stdlib
only).  Each run gets its own empty profile in a temporary directory and the
flags that keep Chromium from reaching out to the network on its own.  The
DOM comes back parsed into a small tree with lookups by id, class and
attribute, so a test asserts on what the browser made of the page, not on
the bytes the server sent."""
import html.parser
import os
import shutil
import subprocess
import tempfile

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TIMEOUT = 90

FLAGS = ["--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--hide-scrollbars", "--mute-audio"]
if os.geteuid() == 0:
    FLAGS.append("--no-sandbox")  # Chromium's sandbox refuses to run as root


def _run(extra, url):
    if not CHROMIUM:
        raise RuntimeError("chromium is not installed (Debian package chromium)")
    profile = tempfile.mkdtemp(prefix="tes-chromium-")
    try:
        p = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, url],
                           capture_output=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if p.returncode != 0:
        raise RuntimeError(f"chromium exited {p.returncode}: {p.stderr.decode()[-2000:]}")
    return p


def dump_dom(url):
    """The DOM Chromium built from url, as a Node tree."""
    return parse(_run(["--dump-dom"], url).stdout.decode("utf-8"))


def screenshot(url, path, width=1400, height=2600):
    _run([f"--screenshot={path}", f"--window-size={width},{height}"], url)
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        raise RuntimeError(f"chromium made no screenshot at {path}")
    return path


class Node:
    def __init__(self, tag, attrs, parent=None):
        self.tag = tag
        self.attrs = dict(attrs)
        self.parent = parent
        self.children = []

    def text(self):
        out = []
        for c in self.children:
            out.append(c if isinstance(c, str) else c.text())
        return "".join(out)

    def classes(self):
        return (self.attrs.get("class") or "").split()

    def walk(self):
        for c in self.children:
            if isinstance(c, Node):
                yield c
                yield from c.walk()

    def find_all(self, tag=None, cls=None, **attrs):
        for n in self.walk():
            if tag and n.tag != tag:
                continue
            if cls and cls not in n.classes():
                continue
            if any(n.attrs.get(k.replace("_", "-")) != v for k, v in attrs.items()):
                continue
            yield n

    def find(self, tag=None, cls=None, **attrs):
        for n in self.find_all(tag, cls, **attrs):
            return n
        return None

    def by_id(self, ident):
        return self.find(id=ident)

    def cell(self, cls):
        """The text of the first descendant with this class."""
        n = self.find(cls=cls)
        if n is None:
            raise AssertionError(f"no element of class {cls!r} in <{self.tag}>")
        return n.text()


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


class _Builder(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.cur = self.root

    def handle_starttag(self, tag, attrs):
        n = Node(tag, attrs, self.cur)
        self.cur.children.append(n)
        if tag not in VOID:
            self.cur = n

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(Node(tag, attrs, self.cur))

    def handle_endtag(self, tag):
        n = self.cur
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:
            self.cur = n.parent

    def handle_data(self, data):
        self.cur.children.append(data)


def parse(text):
    b = _Builder()
    b.feed(text)
    b.close()
    return b.root
