#!/usr/bin/env bash
# Sets everything up, then builds and serves the app: open http://127.0.0.1:8080
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
printf '\n== trunk serve: the first build of burn for wasm takes ~10 min; then open http://127.0.0.1:8080\n'
exec trunk serve "$@"
