#!/usr/bin/env bash
# `make dist`: the app as a folder for any static file server (dist/, or the folder given), with
# the module stripped of its name section (Trunk.toml's hook) and pre-compressed copies of the
# module and scripts. The end-to-end tests build into a folder of their own while `trunk serve`
# keeps dist/.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dist}"
bash scripts/setup.sh
trunk build --release --dist "$out"
node scripts/compress.mjs "$out"
printf '\n== %s/ is ready: serve it from any static host (see the README), e.g.\n   cd %s && python3 -m http.server 8080\n' "$out" "$out"
