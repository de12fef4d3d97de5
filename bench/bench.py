#!/usr/bin/env python3
"""rgunicorn beside nginx, gunicorn and granian on the same machine (issue 6).

Run through bench/run.sh, which installs wrk/nginx, the venv and builds rgunicorn first.
Everything binds to 127.0.0.1 only; every run is bounded in time (wrk -d, subprocess
timeouts) and count (fixed scenario list); every process started here is stopped on exit,
including on SIGINT/SIGTERM.

Scenarios (see issue 6):
  1 plain   HTTP/1.1 keep-alive, concurrency sweep
  2 tls     HTTPS keep-alive end to end (TLS 1.3, one ECDSA P-256 cert for every server)
  3 churn   a new connection per request (Connection: close), plain and TLS
  4 memory  RSS/PSS of every process: idle, under load, holding N idle keep-alive connections
  5 cpu     server CPU per request from /proc (utime+stime of the whole process tree), every run
  6 python  Python WSGI apps (issue 9): the plain WSGI and Flask apps under rgunicorn, granian
            and gunicorn gthread; the reference stack rebuilt over HTTPS (front + workers +
            Flask) against nginx -> gunicorn sync -> Flask; RSS per worker with Flask; (6b)
            the same stacks while one slow request is always in flight: the others' p99
  7 metrics rgunicorn with --metrics-bind (shared counters on, scraped every second) against
            the same server without it: CPU per request, interleaved (issue 13's target <= 1.03x)
  8 handshake full TLS handshakes (openssl s_time -new), the front against nginx, ECDSA P-256
            and RSA 2048: server CPU per handshake (issue 12's target <= 0.4x); handshakes.py
Runs are interleaved (round-robin over servers, order rotated every round) and reported as
medians over the rounds.
"""

import argparse
import atexit
import datetime as dt
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time

import handshakes

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = os.path.join(HERE, "work")
RUN = os.path.join(WORK, "run")
RESULTS = os.path.join(HERE, "results")
APPS = os.path.join(HERE, "apps")
VENV_BIN = os.path.join(WORK, "venv", "bin")
RGUNICORN = os.path.join(ROOT, "target", "release", "rgunicorn")
# The README's default build (no Python support), kept aside by run.sh for the idle-memory row.
RGUNICORN_DEFAULT = os.path.join(WORK, "default-build", "rgunicorn")

PATH = "/api/v1/welcome/get_welcome_data"
BODY = b'{"code": "SUCCESS", "data": {"title": "Welcome to HUO Ke Website"}}'
CTYPE = "application/json; charset=utf-8"
NCPU = os.cpu_count() or 1
ALL_SCENARIOS = "plain,tls,churn,memory,python,metrics,handshake"
CLK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


T0 = time.monotonic()


def log(*a):
    print(f"[{time.monotonic() - T0:6.1f}s]", *a, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- /proc helpers

def _stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    rest = s[s.rindex(")") + 2:].split()
    comm = s[s.index("(") + 1:s.rindex(")")]
    # rest[0]=state rest[1]=ppid ... utime=rest[11] stime=rest[12] cutime=rest[13] cstime=rest[14]
    return comm, int(rest[1]), int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])


def all_procs():
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                out[int(d)] = _stat(d)
            except (OSError, ValueError, IndexError):
                pass
    return out


def tree(roots):
    """pids of roots and all their descendants -> (comm, ticks)."""
    procs = all_procs()
    kids = {}
    for pid, (_, ppid, _) in procs.items():
        kids.setdefault(ppid, []).append(pid)
    seen, stack = {}, [r for r in roots if r in procs]
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen[p] = (procs[p][0], procs[p][2])
        stack.extend(kids.get(p, []))
    return seen


def cpu_ticks(roots):
    return sum(t for _, t in tree(roots).values())


def ctx_switches(roots):
    """voluntary + involuntary context switches of every thread of the tree."""
    n = 0
    for pid in tree(roots):
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    for line in f:
                        if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                            n += int(line.split()[1])
        except OSError:
            pass
    return n


PRETTY = {"rgunicorn: mast": "master", "rgunicorn: work": "workers", "rgunicorn: fron": "front"}


def cpu_by_comm(roots):
    """ticks per process name (rgunicorn's titles shortened: master, workers, front) of the tree."""
    out = {}
    for comm, t in tree(roots).values():
        comm = PRETTY.get(comm, comm)
        out[comm] = out.get(comm, 0) + t
    return out


def mem(roots):
    """[(pid, comm, rss_kb, pss_kb)] for every process of the tree."""
    out = []
    for pid, (comm, _) in sorted(tree(roots).items()):
        rss = pss = 0
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1])
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss = int(line.split()[1])
        except OSError:
            continue
        out.append({"pid": pid, "comm": comm, "rss_kb": rss, "pss_kb": pss})
    return out


def mem_total(procs):
    return {"rss_kb": sum(p["rss_kb"] for p in procs), "pss_kb": sum(p["pss_kb"] for p in procs),
            "processes": len(procs)}


def busy_processes(seconds=1.0):
    """Names of processes using CPU now (noise: others compile on the same cores)."""
    a = all_procs()
    time.sleep(seconds)
    b = all_procs()
    me = os.getpid()
    busy = []
    for pid, (comm, _, t) in b.items():
        if pid == me or pid not in a:
            continue
        d = (t - a[pid][2]) / CLK / seconds
        if d >= 0.05:
            busy.append({"comm": comm, "cpu": round(d, 2)})
    return sorted(busy, key=lambda x: -x["cpu"])[:8]


def system_busy_ticks():
    """All CPUs' non-idle ticks since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4]  # minus idle and iowait


def children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


# ----------------------------------------------------------------------------- processes

class Proc:
    """One started process (own session/process group), stopped on exit."""
    ALL = []

    def __init__(self, name, cmd, cwd=None, env=None, stop_sig=signal.SIGINT):
        self.name, self.cmd, self.stop_sig = name, cmd, stop_sig
        self.logpath = os.path.join(RUN, f"{name}.log")
        self.logf = open(self.logpath, "ab")
        e = dict(os.environ)
        e.update(env or {})
        self.p = subprocess.Popen(cmd, cwd=cwd or RUN, env=e, stdout=self.logf, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.p.pid
        Proc.ALL.append(self)

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        if self.p.poll() is None:
            try:
                os.kill(self.pid, self.stop_sig)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=6)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of the group (workers of a master that died) goes too.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            time.sleep(0.3)
        try:
            self.p.wait(timeout=3)
        except subprocess.TimeoutExpired:
            pass
        self.logf.close()
        if self in Proc.ALL:
            Proc.ALL.remove(self)

    def tail(self, n=8):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace").strip().splitlines()[-n:]
        except OSError:
            return []


def stop_all():
    for p in list(reversed(Proc.ALL)):
        try:
            p.stop()
        except Exception as e:  # keep stopping the others
            log(f"stop {p.name}: {e}")


def _on_signal(signum, _frame):
    log(f"bench: signal {signum}, stopping every server it started")
    stop_all()
    sys.exit(128 + signum)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def fetch(port, tls, timeout=2.0, close=False):
    """One GET of the welcome path -> (status, headers dict lower-cased, body, tls info)."""
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    else:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", PATH, headers={"Connection": "close"} if close else {})
        r = c.getresponse()
        body = r.read()
        info = {}
        if tls and c.sock is not None:
            info = {"version": c.sock.version(), "cipher": c.sock.cipher()[0]}
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body, info
    finally:
        c.close()


class Server:
    """A server under test: one or more Procs, a port, a scheme."""

    def __init__(self, key, label, port, tls=False, group="python"):
        self.key, self.label, self.port, self.tls, self.group = key, label, port, tls, group
        self.procs = []
        self.info = {}
        self.error = None

    @property
    def roots(self):
        return [p.pid for p in self.procs]

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{PATH}"

    def wait_ready(self, timeout=15.0):
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            for p in self.procs:
                if not p.alive():
                    self.error = f"{p.name} exited with {p.p.returncode}: " + " | ".join(p.tail(4))
                    return False
            try:
                st, hdr, body, tinfo = fetch(self.port, self.tls)
                if st == 200 and body == BODY and hdr.get("content-type") == CTYPE:
                    self.info = {"server_header": hdr.get("server"), "headers": sorted(hdr), **tinfo}
                    return True
                last = f"wrong answer: {st} {hdr.get('content-type')!r} {body[:80]!r}"
            except (OSError, http.client.HTTPException) as e:
                last = f"{type(e).__name__}: {e}"
            time.sleep(0.2)
        self.error = f"not ready in {timeout:.0f}s ({last})"
        return False

    def stop(self):
        for p in reversed(self.procs):
            p.stop()


# ----------------------------------------------------------------------------- configs

def gen_cert():
    key, crt = os.path.join(RUN, "key.pem"), os.path.join(RUN, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout", key, "-out", crt,
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=30)
    return crt, key


def nginx_conf(name, port, tls=None, upstream=None, keepalive=0, access_log=False):
    """nginx with `return 200` (the ceiling) or proxying to a unix socket: the reference stack
    (plain proxy_pass, a connection per request), or with `keepalive` upstream connections
    and the headers the front sets (nginx as the front's competitor)."""
    d = os.path.join(RUN, name)
    os.makedirs(d, exist_ok=True)
    upstream_block = ""
    if upstream and keepalive:
        upstream_block = (f"upstream workers {{ server unix:{upstream}; keepalive {keepalive}; "
                          "keepalive_requests 1000000; keepalive_timeout 60s; }")
        loc = ("location / { proxy_pass http://workers; proxy_http_version 1.1; "
               "proxy_set_header Connection \"\"; proxy_set_header Host $host; "
               "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; "
               "proxy_set_header X-Forwarded-Proto $scheme; proxy_set_header X-Forwarded-Host $host; "
               "proxy_set_header X-Real-IP $remote_addr; }")
    elif upstream:
        # The reference deployment's shape: plain proxy_pass, nginx defaults otherwise.
        loc = (f"location / {{ proxy_pass http://unix:{upstream}; proxy_set_header Host $host; "
               "proxy_set_header X-Forwarded-For $remote_addr; proxy_set_header X-Forwarded-Proto $scheme; }")
    else:
        body = BODY.decode()
        loc = (f"location = {PATH} {{ default_type \"{CTYPE}\"; return 200 '{body}'; }}\n"
               "        location / { return 404; }")
    ssl_lines = ""
    if tls:
        crt, key = tls
        ssl_lines = (f"ssl_certificate {crt}; ssl_certificate_key {key}; ssl_protocols TLSv1.3; "
                     "ssl_session_cache shared:SSL:10m; ssl_session_timeout 10m;")
    access = (f"access_log {d}/access.log combined buffer=64k flush=1s;" if access_log else "access_log off;")
    conf = f"""
user root;
worker_processes {NCPU};
worker_rlimit_nofile 40000;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
daemon off;
events {{ worker_connections 20000; }}
http {{
    {access}
    {upstream_block}
    keepalive_timeout 300s;
    keepalive_requests 1000000;
    client_body_temp_path {d}/tmp_body;
    proxy_temp_path {d}/tmp_proxy;
    fastcgi_temp_path {d}/tmp_fcgi;
    uwsgi_temp_path {d}/tmp_uwsgi;
    scgi_temp_path {d}/tmp_scgi;
    server {{
        listen 127.0.0.1:{port} {'ssl ' if tls else ''}backlog=4096;
        server_name localhost;
        {ssl_lines}
        {loc}
    }}
}}
"""
    path = os.path.join(d, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    return ["nginx", "-e", os.path.join(d, "error.log"), "-p", d, "-c", path]


def rgunicorn_help():
    try:
        return subprocess.run([RGUNICORN, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def rgunicorn_front_conf(port, sock, crt, key, name="rgunicorn-front", extra=""):
    path = os.path.join(RUN, f"{name}.toml")
    with open(path, "w") as f:
        f.write(f"""# generated by bench/bench.py
bind = ["unix:{sock}"]
workers = {NCPU}
{extra}

[front]
listen = "127.0.0.1:{port}"
certfile = "{crt}"
keyfile = "{key}"
upstream = "unix:{sock}"
# the access log on, as nginx's default (nginx as a proxy logs too, buffered); room for
# the idle-connection test
access_log = "{os.path.join(RUN, 'rgunicorn-front-access.log')}"
worker_connections = 20000
""")
    return path


# ----------------------------------------------------------------------------- servers

def start(server, procs_spec, ready_timeout=15.0):
    """procs_spec: [(name, cmd, env)]; started in order (upstreams first)."""
    for name, cmd, env in procs_spec:
        server.procs.append(Proc(name, cmd, env=env))
        time.sleep(0.1)
    if not server.wait_ready(ready_timeout):
        log(f"SKIP {server.label}: {server.error}")
        server.stop()
        return False
    log(f"  up: {server.label:34s} :{server.port}  server={server.info.get('server_header')!r}"
        + (f" {server.info.get('version')} {server.info.get('cipher')}" if server.tls else ""))
    return True


def py(name):
    return os.path.join(VENV_BIN, name)


def gunicorn_cmd(bind, worker, app, extra=()):
    cmd = [py("gunicorn"), "-w", str(NCPU), "-b", bind, "--chdir", APPS, "--log-level", "warning"]
    if worker == "gthread":
        cmd += ["-k", "gthread", "--threads", "4"]
    return cmd + list(extra) + [app]


def define_plain_servers(have_rg):
    """(key, label, group, spec_fn(port) -> [(name, cmd, env)]) for scenario 1."""
    out = []
    if have_rg:
        out.append(("rgunicorn", f"rgunicorn (built-in app, -w {NCPU})", "rgunicorn",
                    lambda p: [("rgunicorn", [RGUNICORN, "-w", str(NCPU), "-b", f"127.0.0.1:{p}"], None)]))
    out.append(("nginx", "nginx return 200", "nginx",
                lambda p: [("nginx", nginx_conf("nginx-plain", p), None)]))
    for worker in ("sync", "gthread"):
        for app, mod in (("wsgi", "wsgi_app:application"), ("flask", "flask_app:app")):
            out.append((f"gunicorn-{worker}-{app}", f"gunicorn {worker} + {'WSGI' if app == 'wsgi' else 'Flask'}",
                        "python",
                        (lambda w, m: lambda p: [(f"gunicorn-{w}-{m.split('_')[0]}",
                                                  gunicorn_cmd(f"127.0.0.1:{p}", w, m), None)])(worker, mod)))
    out.append(("granian-wsgi", "granian WSGI", "python",
                lambda p: [("granian", [py("granian"), "--interface", "wsgi", "--workers", str(NCPU),
                                        "--host", "127.0.0.1", "--port", str(p), "--no-ws",
                                        "--http", "1", "--http1-header-read-timeout", "60000",
                                        "--log-level", "warning", "--working-dir", APPS,
                                        "wsgi_app:application"], None)]))
    return out


def define_tls_servers(have_rg_front, cert):
    crt, key = cert
    out = []
    if have_rg_front:
        def rg_front(p):
            sock = os.path.join(RUN, "rgunicorn-front-upstream.sock")
            return [("rgunicorn-front", [RGUNICORN, "-c", rgunicorn_front_conf(p, sock, crt, key)], None)]
        out.append(("rgunicorn-front", "rgunicorn front + workers (TLS)", "rgunicorn", rg_front))
    if have_rg_front:
        # nginx doing the front's job over the same workers: TLS, keep-alive to the
        # workers' unix socket, the same forwarded headers, an access log (buffered).
        def nginx_proxy(p):
            sock = os.path.join(RUN, "rgunicorn-for-nginx.sock")
            return [("rgunicorn-workers", [RGUNICORN, "-w", str(NCPU), "-b", f"unix:{sock}"], None),
                    ("nginx-proxy", nginx_conf("nginx-proxy", p, tls=cert, upstream=sock, keepalive=64,
                                               access_log=True), None)]
        out.append(("nginx-proxy", "nginx TLS proxy (keepalive 64) -> rgunicorn workers", "nginx", nginx_proxy))
    out.append(("nginx-tls", "nginx TLS return 200", "nginx",
                lambda p: [("nginx-tls", nginx_conf("nginx-tls", p, tls=cert), None)]))

    out.append(("reference", "nginx TLS -> gunicorn sync + Flask (unix)", "reference", reference_stack("ref", cert)))
    return out


def reference_stack(tag, cert):
    """The stack rgunicorn replaces: nginx TLS -> gunicorn sync + Flask over a unix socket."""
    def spec(p):
        sock = os.path.join(RUN, f"gunicorn-{tag}.sock")
        return [(f"gunicorn-{tag}", gunicorn_cmd(f"unix:{sock}", "sync", "flask_app:app"), None),
                (f"nginx-{tag}", nginx_conf(f"nginx-{tag}", p, tls=cert, upstream=sock), None)]
    return spec


def rgunicorn_has_python():
    """The release binary was built with --features python (bench/run.sh does)."""
    try:
        r = subprocess.run([RGUNICORN, "--check-config", "--chdir", APPS, "wsgi_app:application"],
                           capture_output=True, text=True, timeout=30, env=PY_ENV)
        return r.returncode == 0, (r.stderr.strip().splitlines() or [""])[-1]
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)


# rgunicorn runs the Python apps with the bench venv (flask), as an activated venv would.
PY_ENV = {"VIRTUAL_ENV": os.path.dirname(VENV_BIN), "PATH": VENV_BIN + os.pathsep + os.environ.get("PATH", "")}


def granian_cmd(port, app, extra=()):
    return [py("granian"), "--interface", "wsgi", "--workers", str(NCPU), "--host", "127.0.0.1", "--port", str(port),
            "--no-ws", "--http", "1", "--http1-header-read-timeout", "60000", "--log-level", "warning",
            "--working-dir", APPS] + list(extra) + [app]


def define_python_servers(have_rg_py):
    """Scenario 6, plain HTTP: the same app files under each server, NCPU workers each:
    rgunicorn with its default one app thread per worker (as gunicorn sync), granian with its
    defaults, gunicorn gthread with 4 threads as in scenario 1."""
    out = []
    for app, mod, name in (("wsgi", "wsgi_app:application", "WSGI"), ("flask", "flask_app:app", "Flask")):
        if have_rg_py:
            out.append((f"py-rgunicorn-{app}", f"rgunicorn + {name} (-w {NCPU})", "rgunicorn",
                        (lambda m, a: lambda p: [(f"rgunicorn-{a}", [RGUNICORN, "-w", str(NCPU), "-b", f"127.0.0.1:{p}",
                                                                     "--chdir", APPS, m], PY_ENV)])(mod, app)))
        out.append((f"py-granian-{app}", f"granian + {name}", "python",
                    (lambda m, a: lambda p: [(f"granian-{a}", granian_cmd(p, m), None)])(mod, app)))
    out.append(("py-gunicorn-gthread-flask", "gunicorn gthread + Flask", "python",
                lambda p: [("gunicorn-gthread-flask", gunicorn_cmd(f"127.0.0.1:{p}", "gthread", "flask_app:app"), None)]))
    return out


def define_python_tls_servers(have_rg_py, cert):
    """Scenario 6, HTTPS: the reference stack rebuilt (front + workers + the Flask app) against
    the reference (nginx TLS -> gunicorn sync -> Flask over a unix socket). The stack runs
    twice, with rgunicorn's default threads (one per worker, as gunicorn sync) and with four,
    interleaved, so the default can be judged in one run."""
    crt, key = cert
    out = []
    if have_rg_py:
        def rg_with(threads):
            def rg(p):
                name = "rgunicorn-front-flask" + ("" if threads is None else f"-t{threads}")
                sock = os.path.join(RUN, f"{name}-upstream.sock")
                extra = f'chdir = "{APPS}"\nwsgi_app = "flask_app:app"'
                if threads is not None:
                    extra += f"\nthreads = {threads}"
                conf = rgunicorn_front_conf(p, sock, crt, key, name=name, extra=extra)
                return [(name, [RGUNICORN, "-c", conf], PY_ENV)]
            return rg
        out.append(("py-rgunicorn-front-flask", "rgunicorn front + workers + Flask (TLS)", "rgunicorn",
                    rg_with(None)))
        out.append(("py-rgunicorn-front-flask-t4", "the same, --threads 4", "rgunicorn", rg_with(4)))
    out.append(("py-reference", "nginx TLS -> gunicorn sync + Flask (reference)", "reference",
                reference_stack("ref-py", cert)))
    return out


# The Flask app called in a loop in one Python process: no server, no socket, hot caches. What
# no server can go below; a server's CPU per request minus this is what the server adds.
FLASK_ALONE = r"""
import io, statistics, sys, time
sys.path.insert(0, sys.argv[1])
from flask_app import app
base = {"REQUEST_METHOD": "GET", "PATH_INFO": "/api/v1/welcome/get_welcome_data", "QUERY_STRING": "",
        "SCRIPT_NAME": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "443", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1", "wsgi.version": (1, 0), "wsgi.url_scheme": "https",
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False}
def start_response(status, headers, exc_info=None):
    pass
def call():
    environ = dict(base)
    environ["wsgi.input"] = io.BytesIO(b"")
    body = app(environ, start_response)
    b"".join(body)
    getattr(body, "close", lambda: None)()
for _ in range(3000):
    call()
per_call = []
for _ in range(7):
    t = time.perf_counter()
    for _ in range(3000):
        call()
    per_call.append((time.perf_counter() - t) / 3000 * 1e6)
print(round(statistics.median(per_call), 1))
"""


def flask_alone():
    """µs per call of the bench's Flask app, called directly in a loop (median of 7 x 3000)."""
    try:
        r = subprocess.run([py("python"), "-c", FLASK_ALONE, APPS], capture_output=True, text=True, timeout=120)
        return {"us_per_call": float(r.stdout.strip())} if r.returncode == 0 else {"error": r.stderr.strip()[-300:]}
    except (OSError, ValueError, subprocess.TimeoutExpired) as e:
        return {"error": str(e)}


def worker_rss(server, procs):
    """Median RSS (KB) of a server's worker processes: every process of its tree but the root(s)."""
    ws = [p["rss_kb"] for p in procs or [] if p["pid"] not in server.roots and "nginx" not in p["comm"]]
    return statistics.median(ws) if ws else None


def md_flask_alone(res):
    """What each HTTPS stack adds to the Flask app's own cost, per request (server CPU, c=64)."""
    alone = res.get("flask_alone", {}).get("us_per_call")
    tls = res.get("python_tls", {})
    if not alone:
        return []
    L = [f"The Flask app alone, called in a loop in one Python process (no server, hot caches): "
         f"**{alone:.0f} µs per call**. Server CPU per request at c=64, and what each stack adds to that:", ""]
    for key, label in (("py-rgunicorn-front-flask", "rgunicorn front + workers"), ("py-reference", "nginx + gunicorn sync")):
        med = tls.get(key, {}).get("64", {}).get("median", {})
        cpu = med.get("server_cpu_us_per_req")
        if cpu:
            L.append(f"- {label}: {cpu:.0f} µs, of which {cpu - alone:.0f} µs beyond the app; load generator "
                     f"{med['wrk_cpu_cores'] * 1e6 / med['rps']:.0f} µs/req on the same cores"
                     if med.get("wrk_cpu_cores") and med.get("rps") else f"- {label}: {cpu:.0f} µs")
    return L + [""]


def md_threads(res):
    """The HTTPS Flask stack with its default one app thread per worker against four, round by round."""
    tls = res.get("python_tls", {})
    pair = ("py-rgunicorn-front-flask", "py-rgunicorn-front-flask-t4")
    raw = {k: {c: d.get("runs", []) for c, d in tls.get(k, {}).items()} for k in pair}
    concs = sorted(set(raw[pair[0]]) & set(raw[pair[1]]), key=int)
    L = []
    for c, p in paired_ratios(raw, pair, concs).items():
        L.append(f"- c={c}: req/s {', '.join(f'{x:.2f}x' for x in p['rps_ratio_per_round'])} "
                 f"(median {p['rps_ratio_median']:.2f}x); "
                 f"p99 {', '.join(f'{x:.0f}/{y:.0f}' for x, y in p['p99_ms_per_round'])} ms")
    if not L:
        return []
    return ["The default one thread against `--threads 4`, the same stack, per round "
            "(req/s ratio; p99 with one thread / with four):", ""] + L + [""]


def python_targets(res):
    """Targets of issue 9, as measured in this run: (target, measured, verdict)."""
    out = []
    py_res, tls = res.get("python", {}), res.get("python_tls", {})

    def med(d, key, c):
        return d.get(key, {}).get(c, {}).get("median", {})

    def vs(label, d, a, b, c, want):
        ma, mb = med(d, a, c), med(d, b, c)
        if not (ma.get("rps") and mb.get("rps")):
            out.append((label, "not measured", None))
            return
        r = ma["rps"] / mb["rps"]
        cpu = (f"; CPU/req {ma['server_cpu_us_per_req']:.0f} vs {mb['server_cpu_us_per_req']:.0f} µs"
               if ma.get("server_cpu_us_per_req") and mb.get("server_cpu_us_per_req") else "")
        out.append((label, f"{fmt_rps(ma['rps'])} vs {fmt_rps(mb['rps'])} req/s = {r:.2f}x{cpu}", r >= want))
    for c in ("64", "256"):
        vs(f"plain WSGI c={c}: rgunicorn >= 1.2x granian", py_res, "py-rgunicorn-wsgi", "py-granian-wsgi", c, 1.2)
        vs(f"Flask c={c}: rgunicorn >= 1.2x granian", py_res, "py-rgunicorn-flask", "py-granian-flask", c, 1.2)
        vs(f"Flask c={c}: rgunicorn >= 2x gunicorn gthread", py_res, "py-rgunicorn-flask", "py-gunicorn-gthread-flask", c, 2.0)
    for c in sorted({c for k, d in tls.items() if not k.startswith("_") for c in d}, key=int):
        vs(f"HTTPS + Flask c={c}: rgunicorn front + workers >= 3x the reference stack", tls,
           "py-rgunicorn-front-flask", "py-reference", c, 3.0)
    memr = res.get("memory", {})
    cells = []
    for key, label in (("py-rgunicorn-flask", "rgunicorn"), ("py-granian-flask", "granian"),
                       ("py-gunicorn-gthread-flask", "gunicorn gthread")):
        w = memr.get("worker_rss", {}).get(key)
        if w:
            cells.append(f"{label} {w['idle_kb'] / 1024:.1f} MB idle"
                         + (f", {w['load_kb'] / 1024:.1f} MB under load" if w.get("load_kb") else ""))
    out.append(("RSS per worker with the Flask app (reported beside gunicorn's and granian's)",
                "; ".join(cells) or "not measured", None))
    return out


# ----------------------------------------------------------------------------- wrk

WRK_LUA = os.path.join(HERE, "wrk_report.lua")


def wrk(server, conc, duration, close=False, sample_mem=False):
    threads = max(1, min(NCPU, conc))
    cmd = ["wrk", "-t", str(threads), "-c", str(conc), "-d", f"{int(duration)}s", "--timeout", "5s",
           "-s", WRK_LUA]
    if close:
        cmd += ["-H", "Connection: close"]
    cmd.append(server.url)
    memsample = {}

    def sampler():
        time.sleep(duration * 0.6)
        memsample["procs"] = mem(server.roots)

    th = threading.Thread(target=sampler, daemon=True) if sample_mem else None
    cs0 = ctx_switches(server.roots)
    bc0 = cpu_by_comm(server.roots)
    t0 = sum(bc0.values())
    sys0, ch0 = system_busy_ticks(), children_cpu_s()
    w0 = time.monotonic()
    if th:
        th.start()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30)
        out = r.stdout
    except subprocess.TimeoutExpired:
        return {"error": "wrk timed out"}
    wall = time.monotonic() - w0
    bc1 = cpu_by_comm(server.roots)
    t1 = sum(bc1.values())
    cs1 = ctx_switches(server.roots)
    sys1, ch1 = system_busy_ticks(), children_cpu_s()
    if th:
        th.join(timeout=duration + 5)
    m = re.search(r"^WRKJSON (\{.*\})$", out, re.M)
    if not m:
        return {"error": "wrk: " + (r.stderr.strip() or out.strip())[-300:]}
    res = json.loads(m.group(1))
    secs = res["duration_us"] / 1e6
    errors = res["err_connect"] + res["err_read"] + res["err_write"] + res["err_status"] + res["err_timeout"]
    good = max(res["requests"] - res["err_status"], 0)
    cpu_s = (t1 - t0) / CLK
    res.update({
        "rps": round(good / secs, 1) if secs else 0.0,
        "errors": errors,
        "server_cpu_s": round(cpu_s, 3),
        "server_cpu_us_per_req": round(cpu_s * 1e6 / good, 2) if good else None,
        "server_cpu_cores": round(cpu_s / wall, 3) if wall else None,
        "server_ctx_switches_per_req": round((cs1 - cs0) / good, 2) if good else None,
        "server_cpu_us_per_req_by_process": {k: round((bc1[k] - bc0.get(k, 0)) / CLK * 1e6 / good, 2)
                                             for k in bc1} if good else {},
        "wrk_cpu_cores": round((ch1 - ch0) / wall, 3) if wall else None,
        # noise: CPU that neither the server nor wrk used during the run (others' compiles...)
        "other_cpu_cores": round(max(0.0, (sys1 - sys0) / CLK - cpu_s - (ch1 - ch0)) / wall, 3) if wall else None,
    })
    if sample_mem and "procs" in memsample:
        res["mem_under_load"] = mem_total(memsample["procs"])
        res["mem_under_load_procs"] = memsample["procs"]
    return res


# Where a process's CPU goes, from `perf report` symbols (self time): the categories the
# front's cost is discussed in (issue 12). The first pattern that matches wins.
SPLIT = [
    ("wake-ups and switches", r"\[k\] .*(schedule|switch_to|finish_task_switch|try_to_wake_up|ttwu|"
                               r"pick_next|enqueue_|dequeue_|__wake_up|update_curr|update_load|select_task|"
                               r"futex|ep_poll|psi_)"),
    ("syscalls and network stack", r"\[k\] "),
    ("allocation", r"(malloc|free|realloc|calloc|_int_|tcache|alloc::|__rust_alloc|__rust_dealloc|"
                   r"sdallocx|mallocx)"),
    ("memcpy and memset", r"(memcpy|memmove|memset|__memcpy|__memset)"),
    ("crypto", r"(ring::|ring_core|aes|gcm|chacha|poly1305|sha256|sha512|ecp_nistz|GFp|p256)"),
    ("TLS (rustls)", r"rustls::"),
    ("HTTP parsing", r"(httparse|parse_request_head|parse_response_head|rgunicorn_workers::http|rgunicorn_http)"),
    ("the front's own code", r"rgunicorn::front"),
    ("other", r""),
]


def profile_split(server, comm_prefixes, conc, duration):
    """One extra run (not a timed one) with `perf record` on the processes whose name starts with
    one of comm_prefixes: percent of their CPU samples per SPLIT category."""
    perf = shutil.which("perf")
    pids = [pid for pid, (comm, _) in tree(server.roots).items() if comm.startswith(tuple(comm_prefixes))]
    if not perf or not pids:
        return {"error": "perf not installed" if not perf else f"no process named {comm_prefixes}"}
    data = os.path.join(RUN, f"{server.key}.perf")
    rec = subprocess.Popen([perf, "record", "-q", "-F", "1999", "-o", data, "-p", ",".join(map(str, pids)),
                            "--", "sleep", str(duration)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = wrk(server, conc, duration)
    try:
        rec.wait(timeout=duration + 30)
        rep = subprocess.run([perf, "report", "-i", data, "--stdio", "--sort", "sym", "--percent-limit", "0"],
                             capture_output=True, text=True, timeout=180).stdout
    except subprocess.TimeoutExpired:
        rec.kill()
        return {"error": "perf timed out"}
    split = {name: 0.0 for name, _ in SPLIT}
    for line in rep.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\[[k.]\].*)$", line)
        if not m:
            continue
        pct, sym = float(m.group(1)), m.group(2)
        for name, pat in SPLIT:
            if re.search(pat, sym):
                split[name] += pct
                break
    total = sum(split.values())
    if not total:
        return {"error": "perf recorded nothing (perf_event_paranoid?)"}
    return {"split_pct": {k: round(v * 100 / total, 1) for k, v in split.items()},
            "rps": run.get("rps"), "cpu_us_per_req_by_process": run.get("server_cpu_us_per_req_by_process")}


def median_of(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def summarize(runs):
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[0].get("error") if runs else "no run"}
    s = {k: median_of(ok, k) for k in ("rps", "lat_p50_us", "lat_p99_us", "server_cpu_us_per_req",
                                       "server_cpu_cores", "wrk_cpu_cores", "other_cpu_cores", "errors",
                                       "server_ctx_switches_per_req")}
    s["runs"] = len(ok)
    s["rps_all"] = [r["rps"] for r in ok]
    keys = {k for r in ok for k in r.get("server_cpu_us_per_req_by_process", {})}
    s["cpu_us_per_req_by_process"] = {
        k: round(statistics.median([r["server_cpu_us_per_req_by_process"].get(k, 0.0) for r in ok]), 1) for k in sorted(keys)}
    loads = [r for r in ok if "mem_under_load" in r]
    if loads:
        top = max(loads, key=lambda r: r["mem_under_load"]["rss_kb"])
        s["mem_under_load"] = top["mem_under_load"]
        s["mem_under_load_procs"] = top.get("mem_under_load_procs")
    for r in runs:  # keep the JSON small: per-process lists once, in the median
        r.pop("mem_under_load_procs", None)
    return s


def round_order(servers, rnd, pair):
    """Every server once; the pair compared by the targets runs back to back (which one first
    alternates per round), the others rotate around it, so slow drifts in background load hit
    the pair alike."""
    ps = [s for k in pair for s in servers if s.key == k]
    rest = [s for s in servers if s not in ps]
    if rnd % 2:
        ps = ps[::-1]
    if rest:
        k = rnd % len(rest)
        rest = rest[k:] + rest[:k]
    pos = rnd % (len(rest) + 1)
    return rest[:pos] + ps + rest[pos:]


def paired_ratios(raw, pair, concs):
    """rps(A)/rps(B) per round and concurrency for the pair (A, B), the median per concurrency,
    and both p99s (ms) per round."""
    a, b = pair
    out = {}
    if a not in raw or b not in raw:
        return out
    for c in concs:
        ra = {r["round"]: r for r in raw[a][c] if "error" not in r}
        rb = {r["round"]: r for r in raw[b][c] if "error" not in r}
        rounds = [k for k in ra if k in rb and rb[k]["rps"]]
        rs = [ra[k]["rps"] / rb[k]["rps"] for k in rounds]
        cpu = [rb[k]["server_cpu_us_per_req"] / ra[k]["server_cpu_us_per_req"] for k in rounds
               if ra[k].get("server_cpu_us_per_req") and rb[k].get("server_cpu_us_per_req")]
        if rs:
            out[str(c)] = {"rps_ratio_per_round": [round(x, 3) for x in rs],
                           "rps_ratio_median": round(statistics.median(rs), 3),
                           "cpu_advantage_median": round(statistics.median(cpu), 3) if cpu else None,
                           "p99_ms_per_round": [[round(ra[k]["lat_p99_us"] / 1000, 2),
                                                 round(rb[k]["lat_p99_us"] / 1000, 2)] for k in rounds]}
    return out


def sweep(servers, concs, reps, duration, close=False, tag="", pair=(), pair_extra=0, pair_concs=(64, 256)):
    """Interleaved: for each round, each concurrency, every server (order rotated per round).
    Then pair_extra more rounds of the pair alone (back to back, alternating) at pair_concs, so
    the medians the targets compare rest on reps + pair_extra runs."""
    raw = {s.key: {c: [] for c in concs} for s in servers}
    plan = [(rnd, concs, round_order(servers, rnd, pair)) for rnd in range(reps)]
    ps = [s for k in pair for s in servers if s.key == k]
    if len(ps) == 2:
        extra_concs = [c for c in concs if c in pair_concs]
        plan += [(rnd, extra_concs, ps if rnd % 2 == 0 else ps[::-1]) for rnd in range(reps, reps + pair_extra)]
    for rnd, rconcs, order in plan:
        for c in rconcs:
            for s in order:
                if not all(p.alive() for p in s.procs):
                    raw[s.key][c].append({"error": f"{s.label} died: " + " | ".join(s.procs[0].tail(3))})
                    continue
                r = wrk(s, c, duration, close=close, sample_mem=(c == max(concs)))
                r["round"] = rnd
                raw[s.key][c].append(r)
                if "error" in r:
                    log(f"  {tag} r{rnd} c={c:<5d} {s.key:24s} ERROR {r['error']}")
                else:
                    log(f"  {tag} r{rnd} c={c:<5d} {s.key:24s} {r['rps']:>10.0f} req/s  p99 "
                        f"{r['lat_p99_us'] / 1000:7.2f} ms  cpu {r['server_cpu_us_per_req'] or 0:6.1f} us/req"
                        f"  cs/req {r['server_ctx_switches_per_req'] or 0:.2f}  other {r['other_cpu_cores']:.2f} cores"
                        + (f"  errors {r['errors']}" if r["errors"] else ""))
    res = {k: {str(c): {"median": summarize(v), "runs": v} for c, v in d.items()} for k, d in raw.items()}
    if len(pair) == 2:
        res["_pair"] = {"pair": list(pair), "by_conc": paired_ratios(raw, pair, concs)}
    return res


def slow_route_rounds(servers, reps, duration, conc=64, slow_ms=1000):
    """Scenario 6b: while one client asks for the Flask app's slow route again and again (one
    request of slow_ms always in flight), wrk asks for the welcome route at conc: its p99 and
    max say whether the slow request holds up others (it should hold up only itself, as with
    gunicorn sync, where a busy worker takes no connection). Interleaved, order rotated."""
    raw = {s.key: [] for s in servers}
    for rnd in range(reps):
        for s in round_order(servers, rnd, ()):
            if not all(p.alive() for p in s.procs):
                raw[s.key].append({"error": f"{s.label} died"})
                continue
            stop = threading.Event()
            slow = {"n": 0, "bad": 0}

            def slow_client(s=s, stop=stop, slow=slow):
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                while not stop.is_set():
                    try:
                        c = http.client.HTTPSConnection("127.0.0.1", s.port, timeout=slow_ms / 1000 + 10, context=ctx)
                        c.request("GET", f"/api/v1/slow?ms={slow_ms}")
                        ok = c.getresponse().status == 200
                        c.close()
                    except OSError:
                        ok = False
                    slow["n" if ok else "bad"] += 1

            t = threading.Thread(target=slow_client, daemon=True)
            t.start()
            time.sleep(0.3)
            r = wrk(s, conc, duration)
            stop.set()
            t.join(timeout=slow_ms / 1000 + 15)
            r.update({"round": rnd, "slow_ok": slow["n"], "slow_failed": slow["bad"]})
            raw[s.key].append(r)
            if "error" in r:
                log(f"  slow-route r{rnd} {s.key:28s} ERROR {r['error']}")
            else:
                log(f"  slow-route r{rnd} {s.key:28s} {r['rps']:>8.0f} req/s  p50 {r['lat_p50_us'] / 1000:7.2f} ms  "
                    f"p99 {r['lat_p99_us'] / 1000:7.2f} ms  max {r['lat_max_us'] / 1000:7.1f} ms  slow {slow['n']} ok"
                    + (f", {slow['bad']} failed" if slow["bad"] else "") + (f"  errors {r['errors']}" if r["errors"] else ""))
    out = {}
    for k, runs in raw.items():
        good = [r for r in runs if "error" not in r]
        med = lambda f: statistics.median([r[f] for r in good]) if good else None  # noqa: E731
        out[k] = {"runs": runs, "median": {"rps": med("rps"), "lat_p50_us": med("lat_p50_us"),
                                           "lat_p99_us": med("lat_p99_us"), "lat_max_us": med("lat_max_us"),
                                           "errors": sum(r["errors"] for r in good),
                                           "slow_failed": sum(r["slow_failed"] for r in good)}}
    return {"conc": conc, "slow_ms": slow_ms, "servers": out}


def md_slow_route(res, servers):
    sr = res.get("slow_route")
    if not sr:
        return []
    L = [f"#### 6b. One slow request always in flight (the Flask app's {sr['slow_ms']} ms route, asked for again "
         f"and again) while wrk asks for the welcome route at c={sr['conc']}: medians over the rounds",
         "", "| stack | req/s | p50 | p99 | max | errors | slow requests failed |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in servers:
        m = sr["servers"].get(s.key, {}).get("median")
        if not m or m["rps"] is None:
            continue
        L.append(f"| {s.label} | {fmt_rps(m['rps'])} | {m['lat_p50_us'] / 1000:.1f} ms | {m['lat_p99_us'] / 1000:.1f} ms | "
                 f"{m['lat_max_us'] / 1000:.0f} ms | {m['errors']} | {m['slow_failed']} |")
    return L + [""]


def hold_conns(server, n, timeout):
    """Open n idle keep-alive connections (each served one request), sample memory, release."""
    before = mem(server.roots)
    cmd = [sys.executable, os.path.join(HERE, "holdconns.py"), "--port", str(server.port), "-n", str(n),
           "--open-timeout", str(timeout), "--hold", str(timeout + 30)]
    if server.tls:
        cmd.append("--tls")
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        ready = json.loads(p.stdout.readline() or "{}")
        time.sleep(0.5)
        held = mem(server.roots)
        p.stdin.write("check\n")
        p.stdin.flush()
        check = json.loads(p.stdout.readline() or "{}")
        p.wait(timeout=30)
    except (ValueError, subprocess.TimeoutExpired, BrokenPipeError) as e:
        p.kill()
        return {"error": f"holdconns: {e}"}
    finally:
        if p.poll() is None:
            p.kill()
    time.sleep(1.0)
    after = mem(server.roots)
    b, h = mem_total(before), mem_total(held)
    still = check.get("still_open", 0)
    enough = still >= n // 2  # fewer held: the delta is mostly noise, report no per-connection cost
    per = (h["rss_kb"] - b["rss_kb"]) * 1024 / still if enough else None
    per_pss = (h["pss_kb"] - b["pss_kb"]) * 1024 / still if enough else None
    extra = {} if enough else {"error": f"held only {still} of {n} (answered {ready.get('answered')})"}
    return {**extra, "n": n, "ready": ready, "still_open": still, "before": b, "held": h, "held_procs": held,
            "after": mem_total(after),
            "per_conn_bytes_rss": round(per) if per is not None else None,
            "per_conn_bytes_pss": round(per_pss) if per_pss is not None else None}


# ----------------------------------------------------------------------------- report

def fmt_rps(v):
    return "-" if v is None else (f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}")


def fmt_ms(us):
    return "-" if us is None else f"{us / 1000:.2f}"


def md_sweep(title, sweep_res, servers, concs, note=""):
    if not servers:
        return []  # not run (--only)
    lines = [f"### {title}", ""]
    if note:
        lines += [note, ""]
    lines.append("| server | " + " | ".join(f"c={c}" for c in concs) + " |")
    lines.append("| --- | " + " | ".join("---:" for _ in concs) + " |")
    for s in servers:
        cells = []
        for c in concs:
            m = sweep_res.get(s.key, {}).get(str(c), {}).get("median", {})
            if "error" in m or not m:
                cells.append("error")
            else:
                e = f", {m['errors']:.0f} err" if m.get("errors") else ""
                cells.append(f"{fmt_rps(m['rps'])} req/s, p99 {fmt_ms(m['lat_p99_us'])} ms, "
                             f"{m['server_cpu_us_per_req'] or 0:.1f} µs CPU/req{e}")
        lines.append(f"| {s.label} | " + " | ".join(cells) + " |")
    return lines + [""]


def ratio(a, b):
    return a / b if a and b else None


def targets(res):
    """Targets of issue 6, as measured in this run: (target, measured, verdict)."""
    out = []
    plain = res.get("plain", {})

    def paired(scn, c):
        p = res.get(scn, {}).get("_pair", {}).get("by_conc", {}).get(c)
        return f" (back-to-back pairs: median {p['rps_ratio_median']:.2f}x over {len(p['rps_ratio_per_round'])})" if p else ""
    for c in ("64", "256"):
        rg = plain.get("rgunicorn", {}).get(c, {}).get("median", {})
        ng = plain.get("nginx", {}).get(c, {}).get("median", {})
        if rg.get("rps") and ng.get("rps"):
            r = rg["rps"] / ng["rps"]
            out.append((f"plain c={c}: rgunicorn throughput >= nginx return 200",
                        f"{fmt_rps(rg['rps'])} vs {fmt_rps(ng['rps'])} req/s = {r:.2f}x" + paired("plain", c), r >= 1.0))
            out.append((f"plain c={c}: rgunicorn p99 <= nginx p99",
                        f"{fmt_ms(rg['lat_p99_us'])} vs {fmt_ms(ng['lat_p99_us'])} ms",
                        rg["lat_p99_us"] <= ng["lat_p99_us"]))
            if rg.get("server_cpu_us_per_req") and ng.get("server_cpu_us_per_req"):
                # Issue 12: the workers' CPU per request at most 0.8x nginx `return 200`'s.
                cpu = rg["server_cpu_us_per_req"] / ng["server_cpu_us_per_req"]
                out.append((f"plain c={c}: rgunicorn CPU/request <= 0.8x nginx",
                            f"{rg['server_cpu_us_per_req']:.1f} vs {ng['server_cpu_us_per_req']:.1f} µs = {cpu:.2f}x",
                            cpu <= 0.8))
        else:
            out.append((f"plain c={c}: rgunicorn vs nginx", "not measured (rgunicorn not runnable)", None))
    tls = res.get("tls", {})
    tconcs = sorted({c for k, d in tls.items() if not k.startswith("_") for c in d}, key=int)
    for c in tconcs:
        rg = tls.get("rgunicorn-front", {}).get(c, {}).get("median", {})
        ng = tls.get("nginx-tls", {}).get(c, {}).get("median", {})
        px = tls.get("nginx-proxy", {}).get(c, {}).get("median", {})
        ref = tls.get("reference", {}).get(c, {}).get("median", {})
        if not rg.get("rps"):
            continue
        r0 = ratio(rg["rps"], px.get("rps"))
        if r0:
            out.append((f"TLS c={c}: rgunicorn front >= 1.5x nginx as TLS proxy over the same workers (issue 12)",
                        f"{fmt_rps(rg['rps'])} vs {fmt_rps(px['rps'])} = {r0:.2f}x" + paired("tls", c), r0 >= 1.5))
            out.append((f"TLS c={c}: front p99 <= nginx proxy p99",
                        f"{fmt_ms(rg['lat_p99_us'])} vs {fmt_ms(px['lat_p99_us'])} ms",
                        rg["lat_p99_us"] <= px["lat_p99_us"]))
        split = rg.get("cpu_us_per_req_by_process", {})
        if c == "64" and split.get("front") is not None:
            both = split.get("front", 0) + split.get("workers", 0)
            out.append(("TLS c=64: front CPU <= 25 µs/req, front + workers <= 40 µs/req (issue 12)",
                        f"front {split['front']:.1f} + workers {split.get('workers', 0):.1f} = {both:.1f} µs"
                        + (f"; nginx proxy {px['cpu_us_per_req_by_process'].get('nginx', 0):.1f} + workers "
                           f"{px['cpu_us_per_req_by_process'].get('workers', 0):.1f} µs" if px.get("cpu_us_per_req_by_process") else ""),
                        split["front"] <= 25 and both <= 40))
        r1, r2 = ratio(rg["rps"], ng.get("rps")), ratio(rg["rps"], ref.get("rps"))
        if r1:
            out.append((f"TLS c={c}: the whole stack >= 0.7x nginx TLS return 200 (issue 12)",
                        f"{fmt_rps(rg['rps'])} vs {fmt_rps(ng['rps'])} = {r1:.2f}x", r1 >= 0.7))
        if r2:
            out.append((f"TLS c={c}: rgunicorn front >= 15x the reference stack",
                        f"{fmt_rps(rg['rps'])} vs {fmt_rps(ref['rps'])} = {r2:.1f}x; CPU/req "
                        f"{rg['server_cpu_us_per_req']:.0f} vs {ref['server_cpu_us_per_req']:.0f} µs = "
                        f"{ref['server_cpu_us_per_req'] / rg['server_cpu_us_per_req']:.1f}x less", r2 >= 15))
    if not any(r[0].startswith("TLS") for r in out):
        out.append(("TLS: rgunicorn front vs nginx / reference", "not measured (front not runnable)", None))
    memr = res.get("memory", {})
    idles = memr.get("idle", {})
    idle = idles.get("rgunicorn-front-default") or idles.get("rgunicorn-front") or idles.get("rgunicorn")
    if idle:
        which = "master + workers + front" if (idles.get("rgunicorn-front-default") or idles.get("rgunicorn-front")) \
            else "master + workers (no front)"
        mb = idle["rss_kb"] / 1024
        got = f"{mb:.1f} MB RSS sum ({idle['pss_kb'] / 1024:.1f} MB PSS), {idle['processes']} processes"
        py = idles.get("rgunicorn-front")
        if idles.get("rgunicorn-front-default") and py:
            which += ", the README's default build"
            got += (f"; built with --features python: {py['rss_kb'] / 1024:.1f} MB RSS "
                    f"({py['pss_kb'] / 1024:.1f} MB PSS), libpython mapped in every process")
        out.append((f"idle RSS, {which} < 20 MB", got, mb < 20))
    else:
        out.append(("idle RSS < 20 MB", "not measured", None))
    for c, v in sorted(res.get("metrics_cost", {}).items(), key=lambda kv: int(kv[0])):
        out.append((f"metrics c={c}: CPU/request with --metrics-bind <= 1.03x without (issue 13)",
                    f"{v['cpu_ratio_median']:.3f}x, median of {len(v['cpu_ratio_per_round'])} back-to-back pairs",
                    v["cpu_ratio_median"] <= 1.03))
    h = memr.get("held", {}).get("rgunicorn")
    if h and h.get("per_conn_bytes_rss") is not None:
        out.append((f"idle keep-alive connection < 2 KB (plain, {h['still_open']} held)",
                    f"{h['per_conn_bytes_rss']} B RSS/conn ({h['per_conn_bytes_pss']} B PSS)",
                    h["per_conn_bytes_rss"] < 2048))
    else:
        out.append(("idle keep-alive connection < 2 KB", "not measured", None))
    if "python" in res or "python_tls" in res:
        out += python_targets(res)
    out += handshakes.targets(res.get("handshake", {}))
    return out


def define_metrics_servers():
    """Scenario 6: the same rgunicorn with and without the shared counters."""
    base = lambda p: [RGUNICORN, "-w", str(NCPU), "-b", f"127.0.0.1:{p}"]
    return [
        ("rgunicorn-off", f"rgunicorn (built-in app, -w {NCPU}), metrics off", "rgunicorn",
         lambda p: [("rgunicorn", base(p), None)]),
        ("rgunicorn-metrics", f"rgunicorn (built-in app, -w {NCPU}), --metrics-bind", "rgunicorn",
         lambda p: [("rgunicorn-metrics", base(p) + ["--metrics-bind", f"127.0.0.1:{free_port()}"], None)]),
    ]


def scrape_every_second(server, stop):
    """What Prometheus does, faster: GET /metrics once a second while the runs go on."""
    port = None
    for line in server.procs[0].tail(50):
        m = re.search(r"Serving metrics at: http://127\.0\.0\.1:(\d+)/metrics", line)
        if m:
            port = int(m.group(1))
    while port and not stop.wait(1.0):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/metrics")
            c.getresponse().read()
            c.close()
        except OSError:
            pass


def metrics_cost(sweep_res):
    """Per round and concurrency: CPU/req with metrics on ÷ off (the pair ran back to back)."""
    out = {}
    on, off = sweep_res.get("rgunicorn-metrics", {}), sweep_res.get("rgunicorn-off", {})
    for c in on:
        a = {r["round"]: r for r in on[c]["runs"] if r.get("server_cpu_us_per_req")}
        b = {r["round"]: r for r in off.get(c, {}).get("runs", []) if r.get("server_cpu_us_per_req")}
        rs = [a[k]["server_cpu_us_per_req"] / b[k]["server_cpu_us_per_req"] for k in a if k in b]
        if rs:
            out[c] = {"cpu_ratio_per_round": [round(x, 3) for x in rs],
                      "cpu_ratio_median": round(statistics.median(rs), 3),
                      "rps_on": on[c]["median"].get("rps"), "rps_off": off[c]["median"].get("rps")}
    return out


def markdown(res, servers_by_scn):
    m = res["meta"]
    L = [f"## Benchmark {m['date']} ({m.get('mode', 'full')} run)", "",
         f"Machine: {m['machine']['cpu']}, {m['machine']['cores']} cores, {m['machine']['mem_gb']} GB, "
         f"Linux {m['machine']['kernel']}. Load average at start {m['load_start']}, at end {m['load_end']}.",
         "Busy processes at start (noise): " + (", ".join(f"{b['comm']} {b['cpu']}" for b in m["busy_start"]) or "none") + ".",
         f"Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
         f"Load generator: wrk on the same {m['machine']['cores']} cores; {m['duration_s']} s per run, "
         f"{m['reps']} interleaved round(s), medians shown"
         + (f" (rgunicorn and nginx, the front and nginx as TLS proxy: {m['reps'] + m['pair_extra']} runs at c=64 and c=256, "
            f"{m['pair_extra']} extra rounds of each pair alone, back to back)" if m.get("pair_extra") else "")
         + ". CPU/req = user+sys of the server's whole process tree (/proc) ÷ requests answered.",
         (f"Noise: during the runs, processes other than the server and wrk used a median of "
          f"{m['noise_other_cpu_cores']['median']} cores (max {m['noise_other_cpu_cores']['max']}) of {m['machine']['cores']}."
          if m.get("noise_other_cpu_cores") else ""), ""]
    for line in m.get("skipped", []):
        L.append(f"- SKIPPED: {line}")
    if m.get("skipped"):
        L.append("")
    L += md_sweep("1. Plain HTTP/1.1, keep-alive", res.get("plain", {}), servers_by_scn["plain"], m["concs_plain"])
    L += md_sweep("2. HTTPS keep-alive (TLS 1.3, ECDSA P-256)", res.get("tls", {}), servers_by_scn["tls"], m["concs_tls"])
    L += md_sweep("3. Connection churn (Connection: close, new connection per request)",
                  {**res.get("churn", {}), **res.get("churn_tls", {})},
                  servers_by_scn["churn"] + servers_by_scn["churn_tls"], m["concs_churn"],
                  note="req/s here = connections (TLS: handshakes) per second.")
    if servers_by_scn.get("python") or servers_by_scn.get("python_tls"):
        L += md_sweep("6. Python WSGI apps (issue 9), plain HTTP keep-alive: the same app files, "
                      f"{m['machine']['cores']} workers each", res.get("python", {}), servers_by_scn["python"], m["concs_python"])
        L += md_sweep("6. Python, HTTPS: the reference stack rebuilt against the reference", res.get("python_tls", {}),
                      servers_by_scn["python_tls"], m["concs_python"])
        L += md_flask_alone(res)
        L += md_threads(res)
        L += md_slow_route(res, servers_by_scn["python_tls"])
    if res.get("metrics_cost"):
        L += ["### 7. Metrics on against off (same binary, interleaved pairs)", "",
              "| concurrency | CPU/req on ÷ off, median | per round | req/s on | req/s off |",
              "| ---: | ---: | --- | ---: | ---: |"]
        for c, v in sorted(res["metrics_cost"].items(), key=lambda kv: int(kv[0])):
            L.append(f"| {c} | {v['cpu_ratio_median']:.3f}x | {', '.join(f'{x:.3f}' for x in v['cpu_ratio_per_round'])} "
                     f"| {fmt_rps(v['rps_on'])} | {fmt_rps(v['rps_off'])} |")
        L.append("")
    if not any(servers_by_scn.get(k) for k in ("plain", "tls", "churn", "churn_tls")):
        L += handshakes.markdown(res.get("handshake", {}))
        return "\n".join(L + targets_md(res))
    L += ["### Where the CPU goes (c=64, medians): per request, by process name, and context switches", "",
          "| scenario | server | CPU µs/req by process | context switches/req |", "| --- | --- | --- | ---: |"]
    for scn, title in (("plain", "plain"), ("tls", "TLS"), ("churn", "churn"), ("churn_tls", "churn TLS")):
        for s in servers_by_scn.get(scn, []):
            if s.group == "python":
                continue
            med = res.get(scn, {}).get(s.key, {}).get("64", {}).get("median", {})
            if not med or "error" in med:
                continue
            split = ", ".join(f"{k} {v:.1f}" for k, v in med.get("cpu_us_per_req_by_process", {}).items() if v >= 0.05)
            cs = med.get("server_ctx_switches_per_req")
            L.append(f"| {title} | {s.label} | {split} | {'-' if cs is None else f'{cs:.2f}'} |")
    L.append("")
    splits = res.get("tls_split", {})
    if splits:
        names = [n for n, _ in SPLIT]
        L += ["### Where the front's CPU goes (perf, c=64, one extra run beside the timed ones; % of its samples)", "",
              "| process | " + " | ".join(names) + " |", "| --- | " + " | ".join("---:" for _ in names) + " |"]
        for key, r in splits.items():
            label = {"rgunicorn-front": "rgunicorn front", "nginx-proxy": "nginx as TLS proxy"}.get(key, key)
            if "split_pct" in r:
                L.append(f"| {label} | " + " | ".join(f"{r['split_pct'][n]:.1f}" for n in names) + " |")
            else:
                L.append(f"| {label} | {r.get('error')} |" + " |" * (len(names) - 1))
        L.append("")
    memr = res.get("memory", {})
    L += ["### 4. Memory (sum over every process of the server; RSS counts shared pages per process, PSS splits them)",
          "", f"Idle connections: each opened, sent one request, got its answer, then held ({m['hold_n']} plain, "
          f"{min(m['hold_n'], 2000)} TLS); per connection = (RSS holding them - RSS just before) / connections still open. "
          "rgunicorn, gunicorn gthread and granian hold them on instances with a longer keep-alive and more "
          "worker connections than their defaults; nginx's configs here set worker_connections 20000 "
          "(preallocated per worker: part of its idle RSS).", "", "| server | processes | idle RSS | idle PSS | under load RSS (max conc) | idle keep-alive conns held | RSS with them | per connection |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in servers_by_scn["all"]:
        i = memr.get("idle", {}).get(s.key)
        if not i:
            continue
        load = memr.get("load", {}).get(s.key)
        h = memr.get("held", {}).get(s.key) or {}
        per = h.get("per_conn_bytes_rss")
        cells = [s.label, str(i["processes"]), f"{i['rss_kb'] / 1024:.1f} MB", f"{i['pss_kb'] / 1024:.1f} MB",
                 f"{load['rss_kb'] / 1024:.1f} MB" if load else "-"]
        if per is not None:
            cells += [f"{h['still_open']} of {h['n']}", f"{h['held']['rss_kb'] / 1024:.1f} MB", f"{per / 1024:.2f} KB"]
        else:
            cells += [h.get("error", "-"), "-", "-"]
        L.append("| " + " | ".join(cells) + " |")
    L.append("")
    for s in servers_by_scn["all"]:
        procs = memr.get("idle_procs", {}).get(s.key)
        if procs and s.group in ("rgunicorn", "nginx", "reference"):
            L.append(f"- idle, per process, {s.label}: " + ", ".join(
                f"{PRETTY.get(p['comm'], p['comm']).replace('workers', 'worker')} {p['rss_kb'] / 1024:.1f} MB" for p in procs))
    L.append("")
    L += handshakes.markdown(res.get("handshake", {}))
    return "\n".join(L + targets_md(res))


def targets_md(res):
    L = ["### Targets (issues 6, 9, 12 and 13), as measured in this run", "", "| target | measured | met |", "| --- | --- | :---: |"]
    for t, meas, ok in res["targets"]:
        L.append(f"| {t} | {meas} | {'yes' if ok else ('no' if ok is False else 'n/a')} |")
    L.append("")
    return L


def plot(res, servers_by_scn, path):
    if not servers_by_scn["plain"] and not servers_by_scn["tls"]:
        return False  # nothing to draw (--only without plain or tls)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing: no plot")
        return False
    rows = [("plain", "Plain HTTP keep-alive"), ("tls", "HTTPS keep-alive")]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    for r, (scn, title) in enumerate(rows):
        for s in servers_by_scn[scn]:
            d = res.get(scn, {}).get(s.key, {})
            xs, rps, p99 = [], [], []
            for c in sorted(d, key=int):
                m = d[c]["median"]
                if m.get("rps"):
                    xs.append(int(c))
                    rps.append(m["rps"])
                    p99.append(m["lat_p99_us"] / 1000)
            if xs:
                axes[r][0].plot(xs, rps, marker="o", label=s.label)
                axes[r][1].plot(xs, p99, marker="o", label=s.label)
        concs = res["meta"]["concs_plain" if scn == "plain" else "concs_tls"]
        for ax, yl in ((axes[r][0], "requests/s (median, log)"), (axes[r][1], "p99 latency, ms (median, log)")):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xticks(concs)
            ax.set_xticklabels([str(c) for c in concs])
            ax.set_xlabel("concurrent connections")
            ax.set_ylabel(yl)
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
        if axes[r][0].get_legend_handles_labels()[0]:
            axes[r][0].legend(fontsize=8)
    m = res["meta"]
    fig.suptitle(f"rgunicorn bench {m['date']} ({m.get('mode', 'full')} run): {m['machine']['cores']} cores, "
                 f"wrk on the same cores, load at start {m['load_start'][0]}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------- meta

def versions():
    def run(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            return None
    v = {}
    v["rgunicorn"] = run(["git", "-C", ROOT, "log", "-1", "--format=%h %cI"])
    # A run of uncommitted code says so: the commit alone would name code that was not run.
    dirty = subprocess.run(["git", "-C", ROOT, "diff", "--quiet", "HEAD", "--", "src", "workers",
                            "http", "metrics", "process", "Cargo.toml", "Cargo.lock"],
                           capture_output=True, timeout=10).returncode
    if v["rgunicorn"] and dirty == 1:
        v["rgunicorn"] += " with uncommitted changes"
    v["rustc"] = run(["rustc", "--version"])
    v["nginx"] = (run(["nginx", "-v"]) or "").replace("nginx version: ", "")
    v["wrk"] = (run(["wrk", "--version"]) or "").split(" [")[0]
    v["openssl"] = run(["openssl", "version"])
    v["python"] = platform.python_version()
    for pkg in ("gunicorn", "flask", "granian", "matplotlib"):
        try:
            from importlib.metadata import version
            v[pkg] = version(pkg)
        except Exception:
            v[pkg] = None
    return v


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        memkb = int(f.readline().split()[1])
    return {"cpu": cpu, "cores": NCPU, "mem_gb": round(memkb / 1048576, 1), "kernel": platform.release()}


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="about one minute: fewer points, one round")
    ap.add_argument("--reps", type=int, help="interleaved rounds (default 3; quick 1)")
    ap.add_argument("--duration", type=int, help="seconds per wrk run (default 3; quick 1)")
    ap.add_argument("--pair-extra", type=int, help="extra rounds of the target pairs alone at c=64/256 (default 4; quick 0)")
    ap.add_argument("--hold", type=int, help="idle keep-alive connections to hold (default 10000; quick 2000)")
    ap.add_argument("--only", default=ALL_SCENARIOS,
                    help="comma list of scenarios (python is python-plain and python-tls)")
    a = ap.parse_args()
    quick = a.quick
    reps = a.reps or (1 if quick else 3)
    dur = a.duration or (1 if quick else 3)
    nhold = a.hold or (2000 if quick else 10000)
    pair_extra = a.pair_extra if a.pair_extra is not None else (0 if quick else 4)
    concs_plain = [64, 256] if quick else [1, 16, 64, 256, 1024]
    concs_tls = [64] if quick else [16, 64, 256]
    concs_churn = [64]
    concs_python = [64, 256]
    only = set(a.only.split(","))

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    atexit.register(stop_all)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < nhold + 1000:
        nhold = max(100, hard - 1000)
        log(f"note: RLIMIT_NOFILE hard limit {hard}: holding {nhold} connections")

    shutil.rmtree(RUN, ignore_errors=True)
    os.makedirs(RUN)
    os.makedirs(RESULTS, exist_ok=True)
    now = dt.datetime.now()
    custom = bool(a.reps or a.duration or a.hold or a.pair_extra is not None or a.only != ALL_SCENARIOS)
    mode = "quick" if quick else ("custom" if custom else "full")
    stamp = now.strftime("%Y-%m-%d_%H%M") + ("" if mode == "full" else "_" + mode)
    meta = {"date": now.strftime("%Y-%m-%d %H:%M"), "quick": quick, "mode": mode, "argv": sys.argv[1:], "reps": reps, "duration_s": dur,
            "hold_n": nhold, "pair_extra": pair_extra, "concs_plain": concs_plain, "concs_tls": concs_tls, "concs_churn": concs_churn,
            "concs_python": concs_python,
            "machine": machine(), "versions": versions(), "load_start": loadavg(), "skipped": []}
    log(f"bench: {'quick' if quick else 'full'} run, {reps} round(s) x {dur}s, load {meta['load_start']}")
    meta["busy_start"] = busy_processes()
    if meta["busy_start"]:
        log("bench: busy processes now (noise): " + ", ".join(f"{b['comm']} {b['cpu']}" for b in meta["busy_start"]))
    cert = gen_cert()

    # rgunicorn availability
    have_rg = os.access(RGUNICORN, os.X_OK)
    if not have_rg:
        meta["skipped"].append(f"rgunicorn: {RGUNICORN} not built (cargo build --release failed or not run)")
        log("SKIP rgunicorn scenarios: " + meta["skipped"][-1])
    rg_help = rgunicorn_help() if have_rg else ""

    res = {"meta": meta}
    servers_by_scn = {"plain": [], "tls": [], "churn": [], "churn_tls": [], "python": [], "python_tls": [], "all": []}
    memr = res.setdefault("memory", {"idle": {}, "load": {}, "held": {}, "idle_procs": {}, "held_procs": {},
                                     "worker_rss": {}})

    def bring_up(defs, scn):
        up = []
        for key, label, group, spec in defs:
            s = Server(key, label, free_port(), tls=(scn == "tls"), group=group)
            if start(s, spec(s.port)):
                up.append(s)
            else:
                meta["skipped"].append(f"{label}: {s.error}")
        for s in up:
            # warm-up: 1 s at c=16, not recorded; then idle memory
            wrk(s, 16, 1)
            time.sleep(0.5)
            procs = mem(s.roots)
            memr["idle"][s.key] = mem_total(procs)
            memr["idle_procs"][s.key] = procs
        return up

    def record_load(sweep_res, servers, conc):
        for s in servers:
            m = sweep_res.get(s.key, {}).get(str(conc), {}).get("median", {})
            if m.get("mem_under_load"):
                memr["load"][s.key] = m["mem_under_load"]

    t_start = time.monotonic()
    # ---- scenario 1 (+3 plain, +4 plain): all plain servers up together, interleaved
    if only & {"plain", "churn", "memory"}:
        log("== plain servers")
        plain = bring_up(define_plain_servers(have_rg), "plain")
        servers_by_scn["plain"] = plain
        servers_by_scn["all"] += plain
        if "plain" in only:
            log("== scenario 1: plain keep-alive")
            res["plain"] = sweep(plain, concs_plain, reps, dur, tag="plain", pair=("rgunicorn", "nginx"),
                                 pair_extra=pair_extra)
            record_load(res["plain"], plain, max(concs_plain))
        if "churn" in only:
            log("== scenario 3: connection churn, plain")
            churners = [s for s in plain if s.key in ("rgunicorn", "nginx", "gunicorn-sync-wsgi",
                                                      "gunicorn-sync-flask", "granian-wsgi")]
            servers_by_scn["churn"] = churners
            res["churn"] = sweep(churners, concs_churn, reps, dur, close=True, tag="churn", pair=("rgunicorn", "nginx"))
        if "memory" in only:
            log(f"== scenario 4: {nhold} idle keep-alive connections")
            holders = [s for s in plain if s.key == "nginx"]
            for s in holders:
                memr["held"][s.key] = h = hold_conns(s, nhold, timeout=40)
                log(f"  held {s.key}: {h.get('still_open')} open, {h.get('per_conn_bytes_rss')} B/conn")
        for s in plain:
            s.stop()
        # rgunicorn and gunicorn gthread keep idle connections only with settings above their
        # defaults (gunicorn's keepalive=2 s, worker_connections=1000): dedicated instances.
        if "memory" in only:
            extra = []
            if have_rg:
                flags = []
                if "--keep-alive" in rg_help:
                    flags += ["--keep-alive", "300"]
                if "--worker-connections" in rg_help:
                    flags += ["--worker-connections", str(nhold + 1000)]
                extra.append(("rgunicorn", f"rgunicorn (built-in app, -w {NCPU})", "rgunicorn",
                              lambda p, f=flags: [("rgunicorn-hold", [RGUNICORN, "-w", str(NCPU), "-b", f"127.0.0.1:{p}"] + f, None)]))
            extra.append(("gunicorn-gthread-wsgi", "gunicorn gthread + WSGI", "python",
                          lambda p: [("gunicorn-gthread-hold", gunicorn_cmd(f"127.0.0.1:{p}", "gthread", "wsgi_app:application",
                                      ["--keep-alive", "300", "--worker-connections", str(nhold + 1000)]), None)]))
            extra.append(("granian-wsgi", "granian WSGI", "python",
                          lambda p: [("granian-hold", [py("granian"), "--interface", "wsgi", "--workers", str(NCPU),
                                      "--host", "127.0.0.1", "--port", str(p), "--no-ws", "--http", "1",
                                      "--http1-header-read-timeout", "60000", "--backlog", "4096",
                                      "--backpressure", str(nhold + 1000), "--log-level", "warning",
                                      "--working-dir", APPS, "wsgi_app:application"], None)]))
            for key, label, group, spec in extra:
                s = Server(key, label, free_port(), group=group)
                if not start(s, spec(s.port)):
                    memr["held"][key] = {"error": s.error}
                    continue
                wrk(s, 16, 1)
                memr["held"][key] = h = hold_conns(s, nhold, timeout=40)
                log(f"  held {key}: {h.get('still_open')} open, {h.get('per_conn_bytes_rss')} B/conn")
                s.stop()

    # ---- scenario 2 (+3 TLS, +4 TLS)
    if only & {"tls", "churn", "memory"}:
        log("== TLS servers")
        tls = bring_up(define_tls_servers(have_rg, cert), "tls")
        servers_by_scn["tls"] = tls
        servers_by_scn["all"] += tls
        if "tls" in only:
            log("== scenario 2: HTTPS keep-alive")
            res["tls"] = sweep(tls, concs_tls, reps, dur, tag="tls", pair=("rgunicorn-front", "nginx-proxy"),
                               pair_extra=pair_extra)
            record_load(res["tls"], tls, max(concs_tls))
            res["tls_split"] = {}
            for s in tls:
                names = {"rgunicorn-front": ["rgunicorn: fron"], "nginx-proxy": ["nginx"]}.get(s.key)
                if names:
                    res["tls_split"][s.key] = r = profile_split(s, names, 64, dur)
                    log(f"  perf {s.key}: {r.get('split_pct') or r.get('error')}")
        if "churn" in only:
            log("== scenario 3: connection churn, TLS (handshakes)")
            servers_by_scn["churn_tls"] = tls
            res["churn_tls"] = sweep(tls, concs_churn, reps, dur, close=True, tag="churn-tls",
                                     pair=("rgunicorn-front", "nginx-tls"))
        if "memory" in only:
            ntls = min(nhold, 2000)
            log(f"== scenario 4: {ntls} idle TLS keep-alive connections")
            for s in tls:
                if s.key in ("rgunicorn-front", "reference"):
                    memr["held"][s.key] = h = hold_conns(s, ntls, timeout=40)
                    log(f"  held {s.key}: {h.get('still_open')} open, {h.get('per_conn_bytes_rss')} B/conn")
        for s in tls:
            s.stop()
        if "memory" in only and os.access(RGUNICORN_DEFAULT, os.X_OK):
            # The same stack from the binary the README's run command builds: a binary built
            # with Python support maps libpython even when it serves a built-in app.
            log("== scenario 4: idle memory of the default build (no Python support)")
            crt, key = cert

            def rg_default(p):
                sock = os.path.join(RUN, "rgunicorn-default-upstream.sock")
                conf = rgunicorn_front_conf(p, sock, crt, key, name="rgunicorn-front-default")
                return [("rgunicorn-front-default", [RGUNICORN_DEFAULT, "-c", conf], None)]
            default = bring_up([("rgunicorn-front-default", "rgunicorn front + workers (TLS), default build",
                                 "rgunicorn", rg_default)], "tls")
            servers_by_scn["all"] += default
            for s in default:
                s.stop()

    # ---- scenario 6: Python WSGI apps (plain, then HTTPS), each pair interleaved
    if only & {"python", "python-plain", "python-tls"}:
        have_rg_py, why = rgunicorn_has_python() if have_rg else (False, "rgunicorn not built")
        if not have_rg_py:
            meta["skipped"].append(f"rgunicorn Python scenarios: no Python support ({why})")
            log("SKIP rgunicorn Python scenarios: " + meta["skipped"][-1])
        if only & {"python", "python-plain"}:
            log("== scenario 6: Python WSGI apps, plain")
            pys = bring_up(define_python_servers(have_rg_py), "python")
            servers_by_scn["python"] = pys
            servers_by_scn["all"] += pys
            res["python"] = sweep(pys, concs_python, reps, dur, tag="python", pair=("py-rgunicorn-flask", "py-granian-flask"),
                                  pair_extra=pair_extra // 2)
            record_load(res["python"], pys, max(concs_python))
            for s in pys:
                load = res["python"].get(s.key, {}).get(str(max(concs_python)), {}).get("median", {})
                memr["worker_rss"][s.key] = {"idle_kb": worker_rss(s, memr["idle_procs"].get(s.key)),
                                             "load_kb": worker_rss(s, load.get("mem_under_load_procs"))}
                s.stop()
        if only & {"python", "python-tls"}:
            log("== scenario 6: Python, HTTPS")
            pytls = bring_up(define_python_tls_servers(have_rg_py, cert), "tls")
            servers_by_scn["python_tls"] = pytls
            servers_by_scn["all"] += pytls
            res["python_tls"] = sweep(pytls, concs_python, reps, dur, tag="python-tls",
                                      pair=("py-rgunicorn-front-flask", "py-reference"),
                                      pair_extra=pair_extra // 2)
            record_load(res["python_tls"], pytls, max(concs_python))
            log("== scenario 6b: one slow request always in flight, HTTPS")
            res["slow_route"] = slow_route_rounds(pytls, reps, dur + 1)
            for s in pytls:
                s.stop()
            res["flask_alone"] = flask_alone()
            log(f"  the Flask app alone: {res['flask_alone']}")

    # ---- scenario 7: the shared counters' cost
    if "metrics" in only and have_rg:
        log("== scenario 7: metrics on against off")
        pair = bring_up(define_metrics_servers(), "metrics")
        stop = threading.Event()
        scrapers = [threading.Thread(target=scrape_every_second, args=(s, stop), daemon=True)
                    for s in pair if s.key == "rgunicorn-metrics"]
        for t in scrapers:
            t.start()
        res["metrics"] = sweep(pair, [64, 256], reps, dur, tag="metrics", pair=("rgunicorn-metrics", "rgunicorn-off"),
                               pair_extra=pair_extra)
        stop.set()
        res["metrics_cost"] = metrics_cost(res["metrics"])
        for c, v in res["metrics_cost"].items():
            log(f"  metrics c={c}: CPU/req on/off median {v['cpu_ratio_median']:.3f}x, per round {v['cpu_ratio_per_round']}")
        for s in pair:
            s.stop()

    # ---- scenario 8: full TLS handshakes, the front against nginx
    if "handshake" in only:
        log("== scenario 8: full TLS handshakes (openssl s_time -new)")
        res["handshake"] = handshakes.run(sys.modules[__name__], reps, max(dur, 3))

    others = [r["other_cpu_cores"] for scn in ("plain", "tls", "churn", "churn_tls", "python", "python_tls", "metrics")
              for k, d in res.get(scn, {}).items() if not k.startswith("_") for c in d.values() for r in c["runs"]
              if r.get("other_cpu_cores") is not None]
    if others:
        meta["noise_other_cpu_cores"] = {"median": round(statistics.median(others), 2), "max": round(max(others), 2)}
    meta["elapsed_s"] = round(time.monotonic() - t_start, 1)
    meta["load_end"] = loadavg()
    meta["server_info"] = {s.key: s.info for s in servers_by_scn["all"]}
    res["targets"] = targets(res)
    md = markdown(res, servers_by_scn)
    base = os.path.join(RESULTS, stamp)
    with open(base + ".json", "w") as f:
        json.dump(res, f, indent=1, default=str)
    with open(base + ".md", "w") as f:
        f.write(md + "\n")
    png = plot(res, servers_by_scn, base + ".png")
    print(md)
    log(f"bench: wrote {base}.json, {base}.md" + (f", {base}.png" if png else "") + f" in {meta['elapsed_s']} s")


if __name__ == "__main__":
    main()
