#!/usr/bin/env bash
# rgunicorn benchmark (issue 6): rgunicorn beside nginx, gunicorn and granian on this machine.
#
#   bench/run.sh            # full run (~13 min on 2 cores): every scenario, 3 interleaved rounds
#   bench/run.sh --only python    # the Python WSGI scenario (issue 9) alone (python-plain, python-tls: one half)
#   bench/run.sh --quick    # about a minute: fewer points, one round
#   bench/run.sh --only plain,tls --reps 5 --duration 5    # any bench.py option passes through
#
# Installs what it needs (wrk, nginx, h2load from Debian; gunicorn, flask, granian, matplotlib
# into a venv under bench/work/), builds rgunicorn with `cargo build --release` (kept aside for
# the idle-memory row) and with `--features python`, then runs
# bench/bench.py, which prints a markdown table and writes bench/results/<date>.{json,md,png}.
# Binds to 127.0.0.1 only; every process it starts is stopped on exit.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
WORK="$BENCH/work"
VENV="$WORK/venv"
mkdir -p "$WORK" "$BENCH/results"

say() { printf 'bench: %s\n' "$*" >&2; }

# --- system packages (Debian) ---
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v openssl >/dev/null || need+=(openssl)
if ((${#need[@]})); then
    say "installing ${need[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's nginx package may start a system nginx; the bench runs its own and never touches it.

# --- Python servers in a venv under bench/work (never the project's test path) ---
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import gunicorn, flask, granian, matplotlib' 2>/dev/null; then
    say "installing gunicorn flask granian matplotlib into the venv"
    "$VENV/bin/pip" install -q --disable-pip-version-check gunicorn flask granian matplotlib
fi

# --- rgunicorn ---
if [ -z "${BENCH_NO_BUILD:-}" ]; then
    # The binary the README's run command builds (no Python support): the idle-memory row is
    # measured with it too, since a Python-enabled binary maps libpython even for a built-in
    # app. Kept aside, as the next build replaces target/release/rgunicorn.
    say "cargo build --release (the default build, kept in $WORK/default-build)"
    if (cd "$ROOT" && cargo build --release 2>"$WORK/cargo-build-default.log"); then
        mkdir -p "$WORK/default-build"
        cp "$ROOT/target/release/rgunicorn" "$WORK/default-build/rgunicorn"
    else
        rm -rf "$WORK/default-build"
        say "cargo build --release failed (see $WORK/cargo-build-default.log): the default build's idle memory is not measured"
    fi
    # With Python support (scenario 6), built against the python3 the venv above comes from.
    say "cargo build --release --features python"
    if ! (cd "$ROOT" && cargo build --release --features python 2>"$WORK/cargo-build.log"); then
        say "cargo build --release --features python failed (see $WORK/cargo-build.log): rgunicorn scenarios use the last binary if any, or are skipped"
    fi
fi

# --- run (bench.py stops every server it started, also on Ctrl-C; the trap is a backstop) ---
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
pid=""
# shellcheck disable=SC2317  # invoked by the trap
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; true; }
trap cleanup EXIT INT TERM
"$VENV/bin/python" "$BENCH/bench.py" "$@" &
pid=$!
rc=0
wait "$pid" || rc=$?
pid=""
exit $rc
