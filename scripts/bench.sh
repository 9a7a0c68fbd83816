#!/usr/bin/env bash
# Training-speed benchmark: native (flex CPU, wgpu on whatever Vulkan adapter exists) and in
# headless Firefox and Chromium (CPU and WebGPU). Writes bench/results.json and prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-1200}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
# As in scripts/test.sh: the test macros read it at compile time, so builds are shared with the tests.
export WASM_BINDGEN_TEST_ONLY_WEB=1
mkdir -p bench
out=bench/results.json
tmp=$(mktemp -d)

echo "== native"
# The tests' profile and target directory (NATIVE_TARGET_DIR, as in scripts/test.sh): release
# optimisation without LTO, whose native link takes over 25 minutes on 2 cores.
CARGO_TARGET_DIR="${NATIVE_TARGET_DIR:-${CARGO_TARGET_DIR:-target}}" cargo run --profile quick --bin mnist7k -- bench --data data --backend "${NATIVE_BACKENDS:-cpu,wgpu}" --json "$tmp/native.json"

# Keeps the BENCH_JSON lines of a run's output as $tmp/NAME.jsonl; shows them and any failure.
collect() {
  tee "$tmp/$1.log" | grep -E 'BENCH_JSON|test result|panicked|failed' || true
  grep -o 'BENCH_JSON .*' "$tmp/$1.log" | sed 's/^BENCH_JSON //' >"$tmp/$1.jsonl" || true
}

echo "== firefox (wasm-pack)"
wasm-pack test --headless --firefox --release -- --features bench --test bench -- --nocapture 2>&1 | collect firefox || echo "-- the Firefox benchmark failed: its rows are missing"
echo "== chromium and firefox (the app, through puppeteer-core)"
node scripts/bench-browser.mjs 2>&1 | collect chrome || echo "-- a browser benchmark of the app failed: its rows are missing"

node - "$tmp" "$out" <<'NODE'
const fs = require('fs');
const [dir, out] = process.argv.slice(2);
const os = require('os');
const native = JSON.parse(fs.readFileSync(`${dir}/native.json`, 'utf8'));
const rows = native.results.map((r) => ({ where: `native (${native.threads} threads)`, ...r }));
for (const browser of ['firefox', 'chrome']) {
  const file = `${dir}/${browser}.jsonl`;
  if (!fs.existsSync(file)) continue;
  for (const line of fs.readFileSync(file, 'utf8').split('\n').filter(Boolean)) {
    const { user_agent, result } = JSON.parse(line);
    const name = /Firefox\/[\d.]+/.exec(user_agent)?.[0] ?? /Chrom(e|ium)\/[\d.]+/.exec(user_agent)?.[0] ?? browser;
    rows.push({ where: name, ...result });
  }
}
const machine = `${os.cpus().length} x ${os.cpus()[0].model}, ${Math.round(os.totalmem() / 2 ** 30)} GiB`;
// The modules the browser runs above (trunk serve's dist/), as a first visit downloads them.
const zlib = require('zlib');
const modules = ['mnist7k_bg.wasm', 'mnist7k-threads_bg.wasm'].filter((f) => fs.existsSync(`dist/${f}`)).map((file) => {
  const bytes = fs.readFileSync(`dist/${file}`);
  const brotli = zlib.brotliCompressSync(bytes, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11 } }).length;
  return { file, raw: bytes.length, gzip: zlib.gzipSync(bytes, { level: 9 }).length, brotli };
});
fs.writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), machine, rows, modules }, null, 2));
console.log(`\nmachine: ${machine}\n`);
console.log('| where | backend | threads | samples/s | ms/batch | GFLOP/s | first batch (s) | loss after | peak MiB |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(`| ${r.where} | ${r.backend} | ${r.backend === 'cpu' ? r.threads ?? 1 : '–'} | ${r.samples_per_second.toFixed(0)} | ${r.ms_per_batch.toFixed(1)} | ${r.gflops.toFixed(2)} | ${r.first_batch_seconds.toFixed(2)} | ${r.final_loss.toFixed(3)} | ${r.peak_memory_mib?.toFixed(0) ?? '–'} |`);
}
for (const r of rows.filter((row) => row.ratio_to_one_thread)) {
  const rounds = r.ratio_to_one_thread_by_round.map((x) => `x${x.toFixed(2)}`).join(', ');
  console.log(`\n${r.where}: ${r.threads} threads x${r.ratio_to_one_thread.toFixed(2)} one thread (median of rounds ${rounds}; samples/s above are medians of rounds)`);
}
const mb = (n) => (n / 1e6).toFixed(2);
for (const m of modules) console.log(`\n${m.file}: ${mb(m.raw)} MB, gzip ${mb(m.gzip)} MB, brotli ${mb(m.brotli)} MB`);
const timed = rows.filter((r) => r.open_to_idle_seconds);
if (timed.length > 0) {
  console.log('\n| where | backend | threads | first press (samples/s) | page to idle, first visit (s) | reload (s) | epoch before validation (s) | in steps | between steps | validation |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const r of timed) {
    const e = r.epoch;
    const split = e ? `${e.seconds.toFixed(1)} | ${e.step_seconds.toFixed(1)} | ${(e.seconds - e.step_seconds).toFixed(1)} | ${e.validation_seconds.toFixed(1)}` : '– | – | – | –';
    console.log(`| ${r.where} | ${r.backend} | ${r.backend === 'cpu' ? r.threads ?? 1 : '–'} | ${r.first_press_samples_per_second?.toFixed(0) ?? '–'} | ${r.open_to_idle_seconds.uncached.toFixed(1)} | ${r.open_to_idle_seconds.cached.toFixed(1)} | ${split} |`);
  }
}
NODE
rm -rf "$tmp"
