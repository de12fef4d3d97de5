#!/usr/bin/env bash
# The container entrypoint: check the certificate, turn the reference deployment's
# environment overrides into rgunicorn flags, then `exec rgunicorn` so that the master is
# the container's PID 1 and gets its signals (TERM drains, HUP reloads, INT stops fast).
#
#   docker run -d -p 5000:443 web_backend:v1                 # the image's CMD: bash ./start.sh
#   docker run -it -d -p 5000:443 web_backend:v1 bash ./start.sh
#   bash ./start.sh [RGUNICORN OPTION...]                     # extra options go to rgunicorn
#   bash ./start.sh healthcheck                               # the image's HEALTHCHECK
#
# Environment (all optional; unset means "as conf/container.toml says"):
#   WORKERS             worker processes (-w); WEB_CONCURRENCY is used when WORKERS is unset
#   THREADS             app threads per worker (--threads)
#   WORKER_CONNECTIONS  connections per worker (--worker-connections)
#   TIMEOUT             worker timeout, seconds (-t)
#   BIND                the workers' TCP address(es), e.g. 0.0.0.0:5000 (-b; several may be
#                       separated by spaces or commas); the front's unix socket is kept
#   APP                 the app: a built-in name, welcome (default) or echo, or a Python
#                       WSGI module:callable from the project built into the image (Dockerfile's
#                       PROJECT); unset: the config file's wsgi_app, else welcome
#   PROJECT_DIR         the Python project, where the app runs from (--chdir; default
#                       /app/project beside this script, used when it is not empty)
#   CERTFILE, KEYFILE   the front's certificate chain and key (default: the config's,
#                       /etc/rgunicorn/cert/server.pem and server.key)
#   HTTPS_PORT          the port clients use for https, for the :80 redirect's Location
#                       (front.https_port; e.g. 5000 with -p 5000:443 -p 80:80)
#   FRONT_LISTEN, FRONT_REDIRECT_HTTP   the front's https and http addresses (front.listen,
#                       front.redirect_http; default 0.0.0.0:443 and 0.0.0.0:80), e.g. for
#                       --network host on a machine where 443 or 80 is taken
#   REQUIRE_CERT=1      refuse to start without a certificate instead of making a self-signed one
#   RGUNICORN_CONF      config file (default conf/container.toml beside this script)
#   RGUNICORN_CMD_ARGS  more flags, read by rgunicorn itself (gunicorn's GUNICORN_CMD_ARGS)
#   HEALTHCHECK_PORT, HEALTHCHECK_PATH   what `healthcheck` asks (default: the port of
#                       FRONT_LISTEN, else 443; the welcome URL)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
conf=${RGUNICORN_CONF:-$here/conf/container.toml}
rgunicorn_bin=${RGUNICORN_BIN:-rgunicorn}

log() { printf 'start.sh: %s\n' "$*" >&2; }
die() { printf 'start.sh: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------
# healthcheck: one https request through the front to the workers. Uses openssl s_client
# (in the image for the self-signed fallback anyway), so no curl is needed; it does not
# verify the certificate, only that the whole path answers 200.
if [ "${1:-}" = healthcheck ]; then
  listen=${FRONT_LISTEN:-0.0.0.0:443}
  port=${HEALTHCHECK_PORT:-${listen##*:}}
  path=${HEALTHCHECK_PATH:-/api/v1/welcome/get_welcome_data}
  status=$(printf 'GET %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: healthcheck\r\nConnection: close\r\n\r\n' "$path" \
    | timeout 5 openssl s_client -connect "127.0.0.1:$port" -servername localhost -quiet 2>/dev/null \
    | head -n 1 | tr -d '\r') || true
  case $status in
    "HTTP/1."?" 200"*) exit 0 ;;
  esac
  echo "unhealthy: https://127.0.0.1:$port$path answered: ${status:-nothing}"
  exit 1
fi

[ -r "$conf" ] || die "config file $conf is not readable"

# A string setting of the config file (first match, double-quoted values only).
conf_value() {
  sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"\([^\"]*\)\".*/\1/p" "$conf" | head -n 1
}

# ---------------------------------------------------------------------------------------
# Flags from the environment.
need_uint() { # NAME VALUE MIN
  if ! [[ $2 =~ ^[0-9]+$ ]] || [ "$2" -lt "$3" ]; then
    die "$1 must be a whole number >= $3, got '$2'"
  fi
}
args=(-c "$conf")
workers=${WORKERS:-${WEB_CONCURRENCY:-}}
if [ -n "$workers" ]; then
  need_uint WORKERS "$workers" 1
  args+=(-w "$workers")
fi
if [ -n "${THREADS:-}" ]; then
  need_uint THREADS "$THREADS" 1
  args+=(--threads "$THREADS")
fi
if [ -n "${WORKER_CONNECTIONS:-}" ]; then
  need_uint WORKER_CONNECTIONS "$WORKER_CONNECTIONS" 1
  args+=(--worker-connections "$WORKER_CONNECTIONS")
fi
if [ -n "${TIMEOUT:-}" ]; then
  need_uint TIMEOUT "$TIMEOUT" 0
  args+=(-t "$TIMEOUT")
fi

has_front=0
grep -q '^[[:space:]]*\[front\]' "$conf" && has_front=1
upstream=$(conf_value upstream)

if [ -n "${BIND:-}" ]; then
  # -b replaces the config's whole bind list (gunicorn's precedence), so keep the socket
  # the front talks to.
  if [ "$has_front" = 1 ] && [[ $upstream == unix:* ]]; then
    args+=(-b "$upstream")
  fi
  read -r -a binds <<< "${BIND//,/ }"
  for b in "${binds[@]}"; do
    args+=(-b "$b")
  done
fi

# The socket's directory (/run/rgunicorn in the image) must exist and be ours.
if [[ $upstream == unix:* ]]; then
  sockdir=$(dirname "${upstream#unix:}")
  mkdir -p "$sockdir" 2>/dev/null || true
  if ! { [ -d "$sockdir" ] && [ -w "$sockdir" ]; }; then
    die "the workers' socket directory $sockdir is missing or not writable by uid $(id -u) (with docker run --read-only, add --tmpfs $sockdir:uid=$(id -u),gid=$(id -g))"
  fi
fi

# ---------------------------------------------------------------------------------------
# The front's certificate.
selfsigned_banner() {
  local fp
  fp=$(openssl x509 -in "$1" -noout -fingerprint -sha256 2>/dev/null | sed 's/.*=//')
  {
    printf '%s\n' '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!'
    printf '%s\n' '!!! NO TLS CERTIFICATE WAS PROVIDED: the front serves a SELF-SIGNED development'
    printf '%s\n' '!!! certificate. Browsers will warn and clients must skip verification (curl -k).'
    printf '!!!   %s (CN=localhost)\n' "$1"
    printf '!!!   SHA-256 %s\n' "$fp"
    printf '%s\n' '!!! For production mount a real certificate over /etc/rgunicorn/cert (or set'
    printf '%s\n' '!!! CERTFILE/KEYFILE) and set REQUIRE_CERT=1; see /etc/rgunicorn/cert/README.md.'
    printf '%s\n' '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!'
  } >&2
}

make_selfsigned() { # DIR -> DIR/server.pem, DIR/server.key, DIR/.self-signed
  local dir=$1 names
  command -v openssl >/dev/null || die "no certificate, and no openssl to make a self-signed one"
  names="DNS:localhost,IP:127.0.0.1,IP:::1"
  if [[ ${HOSTNAME:-} =~ ^[A-Za-z0-9.-]+$ ]]; then names="$names,DNS:$HOSTNAME"; fi
  log "making a self-signed certificate in $dir"
  (
    umask 077
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -days 365 \
      -subj "/O=rgunicorn self-signed/CN=localhost" -addext "subjectAltName=$names" \
      -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
      -keyout "$dir/server.key.tmp" -out "$dir/server.pem.tmp" 2>/dev/null
  ) || die "openssl could not make a self-signed certificate in $dir"
  chmod 0644 "$dir/server.pem.tmp"
  mv "$dir/server.key.tmp" "$dir/server.key"
  mv "$dir/server.pem.tmp" "$dir/server.pem"
  date -u +%Y-%m-%dT%H:%M:%SZ > "$dir/.self-signed"
}

if [ "$has_front" = 1 ]; then
  conf_cert=$(conf_value certfile)
  conf_key=$(conf_value keyfile)
  if [ -z "$conf_cert" ] || [ -z "$conf_key" ]; then
    die "[front] in $conf needs certfile and keyfile"
  fi
  certfile=${CERTFILE:-$conf_cert}
  keyfile=${KEYFILE:-$conf_key}
  if { [ -n "${CERTFILE:-}" ] && [ -z "${KEYFILE:-}" ]; } || { [ -z "${CERTFILE:-}" ] && [ -n "${KEYFILE:-}" ]; }; then
    die "set both CERTFILE and KEYFILE, or neither"
  fi
  certdir=$(dirname "$conf_cert")

  # Not the default names, but exactly one *.key and one *.pem beside them (a vendor's
  # "nginx" download, as the reference ssl_files/ had): use that pair.
  if [ -z "${CERTFILE:-}" ] && [ ! -e "$certfile" ] && [ ! -e "$keyfile" ]; then
    shopt -s nullglob
    keys=("$certdir"/*.key)
    pems=("$certdir"/*.pem)
    shopt -u nullglob
    if [ "${#keys[@]}" = 1 ] && [ "${#pems[@]}" = 1 ]; then
      certfile=${pems[0]}
      keyfile=${keys[0]}
      log "using the certificate pair found in $certdir: $(basename "$certfile"), $(basename "$keyfile")"
    fi
  fi

  if [ -z "${CERTFILE:-}" ] && [ -f "$certdir/.self-signed" ] && [ -r "$certfile" ] \
     && ! openssl x509 -in "$certfile" -noout -checkend 86400 >/dev/null 2>&1; then
    log "the self-signed certificate $certfile expires within a day: making a new one"
    make_selfsigned "$certdir"
  fi

  if [ -e "$certfile" ] || [ -e "$keyfile" ] || [ -n "${CERTFILE:-}" ]; then
    [ -r "$certfile" ] || die "certificate $certfile is missing or not readable by uid $(id -u) (see /etc/rgunicorn/cert/README.md)"
    [ -r "$keyfile" ] || die "private key $keyfile is missing or not readable by uid $(id -u) (chown 10001 it, or see /etc/rgunicorn/cert/README.md)"
    grep -q -- '-----BEGIN CERTIFICATE-----' "$certfile" || die "certificate $certfile holds no PEM certificate"
    grep -q -- '-----BEGIN .*PRIVATE KEY-----' "$keyfile" || die "private key $keyfile holds no PEM private key"
    if command -v openssl >/dev/null && ! openssl x509 -in "$certfile" -noout -checkend 0 >/dev/null 2>&1; then
      die "certificate $certfile has expired ($(openssl x509 -in "$certfile" -noout -enddate 2>/dev/null))"
    fi
  elif [ "${REQUIRE_CERT:-0}" = 1 ]; then
    die "no certificate at $certfile and $keyfile, and REQUIRE_CERT=1 (see /etc/rgunicorn/cert/README.md)"
  else
    gendir=$certdir
    if ! { [ -d "$gendir" ] && [ -w "$gendir" ]; }; then
      gendir=$(dirname "${upstream#unix:}")/cert
      mkdir -p "$gendir"
    fi
    make_selfsigned "$gendir"
    certfile=$gendir/server.pem
    keyfile=$gendir/server.key
  fi
  if [ -f "$(dirname "$certfile")/.self-signed" ]; then
    selfsigned_banner "$certfile"
  else
    log "certificate $certfile, key $keyfile"
  fi
fi

# ---------------------------------------------------------------------------------------
# Settings of [front] that have no flag (certfile, keyfile, https_port, listen,
# redirect_http): when the environment changes them, run a copy of the config file that
# says so (HUP re-reads that copy).
sed_args=()
appends=()
changes=()
front_set() { # KEY TOML-VALUE
  [ "$has_front" = 1 ] || die "front.$1 is set through the environment but $conf has no [front] table"
  case $2 in *'|'* | *'&'* | *\\*) die "front.$1 must not contain |, & or \\: $2" ;; esac
  if grep -q "^[[:space:]]*$1[[:space:]]*=" "$conf"; then
    sed_args+=(-e "s|^\([[:space:]]*$1[[:space:]]*=[[:space:]]*\).*|\1$2|")
  elif [ "$(grep '^[[:space:]]*\[' "$conf" | tail -n 1 | tr -d '[:space:]')" = "[front]" ]; then
    appends+=("$1 = $2")
  else
    die "cannot set front.$1: $conf has no $1 line and [front] is not its last table"
  fi
  changes+=("$1 = $2")
}
no_quote() { # NAME VALUE
  case $2 in *'"'*) die "$1 must not contain a double quote: $2" ;; esac
}
if [ "$has_front" = 1 ]; then
  if [ "$certfile" != "$conf_cert" ]; then no_quote CERTFILE "$certfile"; front_set certfile "\"$certfile\""; fi
  if [ "$keyfile" != "$conf_key" ]; then no_quote KEYFILE "$keyfile"; front_set keyfile "\"$keyfile\""; fi
fi
if [ -n "${HTTPS_PORT:-}" ]; then
  need_uint HTTPS_PORT "$HTTPS_PORT" 1
  [ "$HTTPS_PORT" -le 65535 ] || die "HTTPS_PORT must be a port number, got '$HTTPS_PORT'"
  front_set https_port "$HTTPS_PORT"
fi
if [ -n "${FRONT_LISTEN:-}" ]; then
  no_quote FRONT_LISTEN "$FRONT_LISTEN"
  front_set listen "\"$FRONT_LISTEN\""
fi
if [ -n "${FRONT_REDIRECT_HTTP:-}" ]; then
  no_quote FRONT_REDIRECT_HTTP "$FRONT_REDIRECT_HTTP"
  front_set redirect_http "\"$FRONT_REDIRECT_HTTP\""
fi
if [ "${#changes[@]}" -gt 0 ]; then
  rundir=${TMPDIR:-/tmp}
  [[ $upstream == unix:* ]] && rundir=$(dirname "${upstream#unix:}")
  runconf=$rundir/rgunicorn.toml
  {
    if [ "${#sed_args[@]}" -gt 0 ]; then sed "${sed_args[@]}" "$conf"; else cat "$conf"; fi
    if [ "${#appends[@]}" -gt 0 ]; then printf '\n# added by start.sh from the environment\n'; printf '%s\n' "${appends[@]}"; fi
  } > "$runconf.tmp"
  mv "$runconf.tmp" "$runconf"
  args[1]=$runconf
  summary=$(printf '%s, ' "${changes[@]}")
  log "running $runconf: $conf with [front] ${summary%, }"
fi

# A Python project runs from its folder, as the reference ran gunicorn from its own.
project=${PROJECT_DIR:-$here/project}
if [ -d "$project" ] && [ -n "$(ls -A "$project" 2>/dev/null)" ]; then
  args+=(--chdir "$project")
fi
args+=("$@")
if [ -n "${APP:-}" ]; then
  args+=("$APP")
fi
log "exec $rgunicorn_bin ${args[*]}"
exec "$rgunicorn_bin" "${args[@]}"
