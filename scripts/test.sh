#!/usr/bin/env bash
# Sets everything up, then runs every test: native unit and training tests, the browser tests
# in headless Firefox and Chromium (CPU and WebGPU), and the end-to-end test of the app.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

# The browser tests' timeout and build settings live in .cargo/config.toml ([env]), so that the
# plain commands below are the ones the README promises.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
step() { printf '\n== %s\n' "$*"; }
failed=()
run() {
  local name=$1
  shift
  step "$name"
  local log
  log=$(mktemp)
  if "$@" 2>&1 | tee "$log"; then
    echo "-- $name: passed"
  else
    failed+=("$name")
    echo "-- $name: FAILED"
  fi
  printf '\n-- %s, closing lines:\n' "$name"
  tail -n 6 "$log"
  rm -f "$log"
}

run "format" cargo fmt --check
# Native and wasm builds can live in separate target directories (CI caches both), so that one
# does not wait on the other's lock.
run "native tests" env CARGO_TARGET_DIR="${NATIVE_TARGET_DIR:-${CARGO_TARGET_DIR:-target}}" cargo test --profile quick
run "browser tests, Firefox" wasm-pack test --headless --firefox
run "browser tests, Chromium" wasm-pack test --headless --chrome
# One file at a time: each starts its own `trunk serve` on the same port.
run "build tools" node --test --test-reporter=spec tests/tools/
run "end-to-end, Chromium and Firefox" node --test --test-reporter=spec --test-concurrency=1 tests/e2e/

if [ ${#failed[@]} -gt 0 ]; then
  printf '\nFAILED: %s\n' "${failed[*]}"
  exit 1
fi
printf '\nall tests passed\n'
