#!/usr/bin/env bash
# `make dist`: the app as a folder for any static file server (dist/), with the module stripped of
# its name section (Trunk.toml's hook) and pre-compressed copies of the module and scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
trunk build --release
node scripts/compress.mjs dist
printf '\n== dist/ is ready: serve it from any static host (see the README), e.g.\n   cd dist && python3 -m http.server 8080\n'
