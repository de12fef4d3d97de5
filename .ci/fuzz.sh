#!/usr/bin/env bash
# Fuzz rgunicorn-http (issue 11) for a bounded time per target, on the stable toolchain.
#
# cargo-fuzz needs nightly only for sanitizers and -Zbuild-std; with `--sanitizer none`
# every flag it passes (-Cpasses=sancov-module, -Cllvm-args=..., --cfg fuzzing) is
# stable, so no RUSTC_BOOTSTRAP. The crate has no unsafe code but one checked ASCII cast;
# httparse's own unsafe code (SIMD, unchecked slicing) is fuzzed by its maintainers. So
# panics, overflow (debug assertions, and overflow-checks in fuzz/Cargo.toml) and the
# properties in fuzz/checks.rs are what fail a run here.
#
# A crash fails the run and names its input; keep it forever with
#   cp fuzz/artifacts/TARGET/crash-* fuzz/regressions/TARGET/
# (http/tests/fuzz_regressions.rs replays it in every `cargo test`), and, when it is a
# request, add it to workers/tests/fixtures/requests/generate.py too.
#
# Seconds per target: FUZZ_SECONDS, else 30 in CI (CI=true; four targets then cost about
# two minutes of its 30-minute budget, plus the instrumented build), else 60.
#
#   FUZZ_SECONDS=60 bash .ci/fuzz.sh [TARGET...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO_FUZZ_VERSION=0.13.2
if [ "${CI:-}" = true ]; then default_seconds=30; else default_seconds=60; fi
seconds=${FUZZ_SECONDS:-$default_seconds}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request_head chunked response_head framing)

# Installed once per machine: skipped when the right version is there.
if ! cargo fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $CARGO_FUZZ_VERSION"; then
  cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
cargo fuzz build --sanitizer none

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in "${targets[@]}"; do
  seeds=(workers/tests/fixtures/requests)
  for dir in "fuzz/seeds/$target" "fuzz/regressions/$target"; do
    [ -d "$dir" ] && seeds+=("$dir")
  done
  mkdir -p "$work/$target"
  # The first directory is where new inputs go (thrown away); the others are seeds.
  if ! cargo fuzz run --sanitizer none "$target" "$work/$target" "${seeds[@]}" -- \
    -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=1024 \
    >"$work/$target.log" 2>&1; then
    tail -n 40 "$work/$target.log"
    echo "fuzz: $target failed; keep its input forever:"
    ls fuzz/artifacts/"$target"/ 2>/dev/null | sed "s|^|  cp fuzz/artifacts/$target/|; s|$| fuzz/regressions/$target/|"
    exit 1
  fi
  grep -E '^Done [0-9]+ runs' "$work/$target.log" | sed "s/^/fuzz: $target: /"
done
