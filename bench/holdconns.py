#!/usr/bin/env python3
"""Open N keep-alive connections to HOST:PORT, send one request on each, read its answer, then
hold them all idle until told to stop (a line on stdin) or until --hold seconds pass.

Protocol with the caller (bench.py), one JSON object per line on stdout:
  {"phase": "ready", "opened": n, "answered": n, "failed": n, "seconds": s}
  ... caller samples the server's RSS, then writes "check\n" on stdin ...
  {"phase": "check", "still_open": n}
and the process closes everything and exits. Every step is bounded in time.

--tls wraps each connection in TLS (no verification: the bench's own throwaway cert).
Only loopback addresses are accepted.
"""

import argparse
import errno
import json
import os
import resource
import select
import socket
import ssl
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--path", default="/api/v1/welcome/get_welcome_data")
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--batch", type=int, default=256, help="connections in flight while opening")
    ap.add_argument("--open-timeout", type=float, default=60.0)
    ap.add_argument("--stall", type=float, default=5.0, help="give up opening after this long without progress")
    ap.add_argument("--hold", type=float, default=120.0, help="max seconds to hold before exiting")
    a = ap.parse_args()
    if not a.host.startswith("127.") and a.host not in ("localhost", "::1"):
        sys.exit("holdconns: loopback only")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, a.n + 100)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    n = min(a.n, want - 100)

    req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: holdconns\r\n\r\n" % (a.path, a.host, a.port)).encode()
    ctx = None
    if a.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE

    ep = select.epoll()
    conns = {}  # fd -> state dict
    done = []   # sockets that got a full answer
    failed = 0
    started = 0
    t0 = time.monotonic()
    deadline = t0 + a.open_timeout

    def start_one():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex((a.host, a.port))
        if err not in (0, errno.EINPROGRESS):
            s.close()
            return False
        st = {"sock": s, "stage": "connect", "buf": b"", "raw": s}
        conns[s.fileno()] = st
        ep.register(s.fileno(), select.EPOLLOUT)
        return True

    def finish(fd, ok):
        nonlocal failed
        st = conns.pop(fd)
        try:
            ep.unregister(fd)
        except OSError:
            pass
        if ok:
            done.append(st["sock"])
        else:
            failed += 1
            try:
                st["sock"].close()
            except OSError:
                pass

    def response_complete(buf):
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = buf[:end].decode("latin-1").lower()
        clen = 0
        for line in head.split("\r\n")[1:]:
            k, _, v = line.partition(":")
            if k.strip() == "content-length":
                clen = int(v.strip() or 0)
        return len(buf) >= end + 4 + clen

    progress = time.monotonic()
    stalled = False
    while (started < n or conns) and time.monotonic() < deadline:
        if time.monotonic() - progress > a.stall:
            stalled = True
            break
        while started < n and len(conns) < a.batch:
            started += 1
            if not start_one():
                failed += 1
        for fd, ev in ep.poll(0.5):
            st = conns.get(fd)
            if st is None:
                continue
            s = st["sock"]
            try:
                if st["stage"] == "connect":
                    err = st["raw"].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        finish(fd, False)
                        continue
                    if ctx is not None:
                        st["sock"] = s = ctx.wrap_socket(st["raw"], do_handshake_on_connect=False)
                        st["stage"] = "handshake"
                    else:
                        st["stage"] = "send"
                if st["stage"] == "handshake":
                    try:
                        s.do_handshake()
                        st["stage"] = "send"
                    except ssl.SSLWantReadError:
                        ep.modify(fd, select.EPOLLIN)
                        continue
                    except ssl.SSLWantWriteError:
                        ep.modify(fd, select.EPOLLOUT)
                        continue
                if st["stage"] == "send":
                    s.send(req)  # small: fits the socket buffer in one call
                    st["stage"] = "recv"
                    ep.modify(fd, select.EPOLLIN)
                    continue
                if st["stage"] == "recv":
                    try:
                        chunk = s.recv(65536)
                    except (ssl.SSLWantReadError, BlockingIOError):
                        continue
                    if not chunk:
                        finish(fd, False)
                        continue
                    st["buf"] += chunk
                    if response_complete(st["buf"]):
                        finish(fd, st["buf"].startswith(b"HTTP/1.1 200"))
                        progress = time.monotonic()
            except (OSError, ssl.SSLError):
                finish(fd, False)
    for fd in list(conns):
        finish(fd, False)
    ep.close()

    print(json.dumps({"phase": "ready", "opened": started, "answered": len(done), "failed": failed,
                      "stalled": stalled, "seconds": round(time.monotonic() - t0, 3)}), flush=True)

    # Hold until the caller says "check" (or the bound passes).
    r, _, _ = select.select([sys.stdin], [], [], a.hold)
    if r:
        sys.stdin.readline()
    still = 0
    for s in done:
        try:
            # MSG_PEEK on a dup of the fd (under TLS too): EOF (b"") means the server closed it.
            data = socket.socket(fileno=os.dup(s.fileno()))
            data.setblocking(False)
            try:
                got = data.recv(1, socket.MSG_PEEK)
                alive = len(got) > 0
            except BlockingIOError:
                alive = True
            except OSError:
                alive = False
            finally:
                data.close()
        except OSError:
            alive = False
        still += alive
    print(json.dumps({"phase": "check", "still_open": still}), flush=True)
    for s in done:
        try:
            s.close()
        except OSError:
            pass


if __name__ == "__main__":
    main()
