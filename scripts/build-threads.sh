#!/bin/bash
# The all-cores CPU module, mnist7k-threads.{js,wasm}: the library built with wasm atomics so that
# rayon runs on Web Workers sharing its memory (wasm-bindgen-rayon). Rust's prebuilt std for
# wasm32 has no atomics, so std is rebuilt (`-Z build-std`, allowed on the pinned stable toolchain
# by RUSTC_BOOTSTRAP=1; rust-src comes from the set-up). It lives in its own target directory:
# other flags, another std. Trunk runs this before each build (Trunk.toml); by hand:
# `bash scripts/build-threads.sh OUT_DIR`.
set -euo pipefail
out="${1:-${TRUNK_STAGING_DIR:?give an output directory}}"
target="${CARGO_TARGET_DIR:-$(dirname "$0")/../target}/threads"
profile=release
[ "${TRUNK_PROFILE:-release}" = debug ] && profile=dev
# 4 GiB: the most a wasm32 memory can hold; shared memory must declare its maximum up front.
RUSTC_BOOTSTRAP=1 RUSTFLAGS="-C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128 -C link-arg=--max-memory=4294967296" \
  cargo build --lib --target wasm32-unknown-unknown --no-default-features --profile "$profile" \
  --target-dir "$target" -Z build-std=panic_abort,std
dir=$([ "$profile" = dev ] && echo debug || echo release)
wasm-bindgen --target web --out-dir "$out" --out-name mnist7k-threads \
  "$target/wasm32-unknown-unknown/$dir/mnist7k.wasm"
