"""A WSGI app exercising PEP 3333 from the app's side, for tests/python_wsgi.rs.

`application` is wrapped in wsgiref.validate.validator, which raises (or, for an
iterable never closed, prints "Exception ignored") on any server-side violation;
`raw` is the same app unwrapped, for what the validator forbids (read() without a size)
or hides (wsgi.file_wrapper, which it wraps in its own iterator).
"""

import hashlib
import io
import json
import os
import sys
import threading
import time
from urllib.parse import parse_qs
from wsgiref.validate import validator

TEXT = [("Content-Type", "text/plain; charset=utf-8")]
MARKERS = os.environ.get("RG_MARKERS", "")


def mark(name):
    """Leave a file behind, so the test can see that something ran (close(), atexit)."""
    if MARKERS:
        with open(os.path.join(MARKERS, name), "w") as f:
            f.write(str(os.getpid()))


class Stream:
    """A response iterable with close(): n chunks of `size` bytes, byte i % 251."""

    def __init__(self, n, size, token, fail_at=None):
        self.n, self.size, self.token, self.fail_at = n, size, token, fail_at
        self.i = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.i == self.fail_at:
            raise RuntimeError("failed while streaming, on purpose")
        if self.i >= self.n:
            raise StopIteration
        self.i += 1
        return chunk(self.i, self.size)

    def close(self):
        mark("closed-" + self.token)


def chunk(i, size):
    """Chunk number i (1-based) of `size` bytes, as Stream yields it."""
    return bytes((i + k) % 251 for k in range(256)) * (size // 256)


def progress(token, count):
    """Say how many write() calls have returned so far (replaced whole, never half-written)."""
    if MARKERS:
        path = os.path.join(MARKERS, "written-" + token)
        with open(path + ".tmp", "w") as f:
            f.write(str(count))
        os.replace(path + ".tmp", path)


def wait_for(name, within=30):
    """Wait until the test leaves the marker `name` (the test's turn came)."""
    path = os.path.join(MARKERS, name)
    deadline = time.time() + within
    while not os.path.exists(path) and time.time() < deadline:
        time.sleep(0.01)


def read_all(stream, how):
    if how == "read":
        return stream.read()
    if how == "read_none":
        return stream.read(None)
    if how == "read_n":
        parts = []
        while True:
            part = stream.read(1000)
            if not part:
                return b"".join(parts)
            parts.append(part)
    if how == "readline":
        parts = []
        while True:
            line = stream.readline()
            if not line:
                return b"".join(parts)
            parts.append(line)
    if how == "readline_n":
        parts = []
        while True:
            line = stream.readline(100)
            if not line:
                return b"".join(parts)
            assert len(line) <= 100
            parts.append(line)
    if how == "readlines":
        return b"".join(stream.readlines())
    if how == "iter":
        return b"".join(line for line in stream)
    raise ValueError(how)


def raw(environ, start_response):
    path = environ["PATH_INFO"]
    query = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}

    if path == "/environ":
        seen = {
            k: [type(v).__name__, v if isinstance(v, (str, bool, int, tuple)) else None]
            for k, v in environ.items()
        }
        body = json.dumps(seen, sort_keys=True).encode()
        start_response("200 OK", TEXT + [("Content-Length", str(len(body)))])
        return [body]

    if path.startswith("/upload/"):
        data = read_all(environ["wsgi.input"], path.rsplit("/", 1)[1])
        more = environ["wsgi.input"].read(10)
        body = ("%d %s %d" % (len(data), hashlib.sha256(data).hexdigest(), len(more))).encode()
        start_response("200 OK", TEXT)
        return [body]

    if path == "/stream":
        start_response("200 OK", TEXT)
        return Stream(int(query["n"]), int(query["size"]), query.get("token", "x"),
                      int(query["fail_at"]) if "fail_at" in query else None)

    if path == "/stream-length":
        n, size = int(query["n"]), int(query["size"])
        declared = int(query.get("declared", n * size))
        start_response("200 OK", TEXT + [("Content-Length", str(declared))])
        return Stream(n, size, query.get("token", "x"))

    if path == "/short":
        start_response("200 OK", TEXT + [("Content-Length", "100")])
        return [b"only this"]

    if path == "/file":
        f = open(os.environ["RG_FILE"], "rb")
        f.read(int(query.get("skip", "0")))
        start_response("200 OK", TEXT)
        return environ["wsgi.file_wrapper"](f, 4096)

    if path == "/bytesio":
        start_response("200 OK", TEXT)
        return environ["wsgi.file_wrapper"](io.BytesIO(b"x" * 10000), 1000)

    if path == "/error/before":
        raise ValueError("raised before start_response, on purpose")

    if path == "/error/started":
        start_response("200 OK", TEXT)
        raise ValueError("raised after start_response, before the body, on purpose")

    if path == "/exc_info":
        start_response("200 OK", TEXT)
        try:
            raise KeyError("handled")
        except KeyError:
            start_response("503 Service Unavailable", TEXT, sys.exc_info())
        return [b"replaced"]

    if path == "/write":
        write = start_response("200 OK", TEXT)
        write(b"written, ")
        return [b"then returned"]

    if path == "/write-wait":
        # write() must have sent its bytes before it returns: the test reads them, then
        # lets the app go on.
        write = start_response("299 Written Early", TEXT)
        write(b"first,")
        wait_for("go-" + query["token"])
        return [b"rest"]

    if path == "/write-many":
        # n chunks through write(), each counted once write() returned.
        n, size, token = int(query["n"]), int(query["size"]), query["token"]
        headers = TEXT + ([("Content-Length", query["declared"])] if "declared" in query else [])
        write = start_response("200 OK", headers)
        try:
            for i in range(1, n + 1):
                write(chunk(i, size))
                progress(token, i)
        except OSError:
            mark("write-failed-" + token)
            raise
        mark("write-done-" + token)
        return [query.get("tail", "").encode()]

    if path == "/reason":
        start_response(query["status"], TEXT)
        return [b"reason"]

    if path == "/head":
        start_response("200 OK", TEXT + [("Content-Length", "5")])
        return [b"hello"]

    if path.startswith("/status/"):
        code = path.rsplit("/", 1)[1]
        start_response(code + " Whatever", [] if code in ("204", "304") else TEXT)
        return [] if code in ("204", "304") else [b"body"]

    if path == "/print":
        print("printed by request", query.get("n", "?"))
        start_response("200 OK", TEXT)
        return [b"printed"]

    if path == "/work":
        # Some Python work, some waiting without the GIL: what a threaded app does.
        ms = int(query.get("ms", "0"))
        total = sum(i * i for i in range(2000))
        if ms:
            time.sleep(ms / 1000)
        body = ("%d %d %d" % (os.getpid(), threading.get_ident(), total)).encode()
        start_response("200 OK", TEXT)
        return [body]

    start_response("404 Not Found", TEXT)
    return [b"not found"]


application = validator(raw)

if os.environ.get("RG_ATEXIT"):
    import atexit

    atexit.register(lambda: print("atexit ran in", os.getpid()))
