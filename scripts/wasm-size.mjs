// What a shipped module is made of, and whether wasm-opt would make it smaller over the wire
// (README, "Putting it online"). After `make dist`:
//   node scripts/wasm-size.mjs [MODULE.wasm ...]   (default: dist/mnist7k-threads_bg.wasm)
// For each module: its size raw / gzip / brotli as shipped and after binaryen 132's wasm-opt at
// -O2, -Os and -Oz (with the time each took); then `twiggy top` of the library as rustc wrote it
// (function names kept), summed by crate. binaryen (npm) and twiggy (crates.io) are installed
// once into ~/.cache/mnist7k/size-tools, outside the repository: only this measurement needs them.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { compressed } from './compress.mjs';

const tools = join(homedir(), '.cache/mnist7k/size-tools');
const wasmOpt = join(tools, 'node_modules/.bin/wasm-opt');
const twiggy = join(tools, 'bin/twiggy');
const run = (cmd, args) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 30 }).toString();

if (!existsSync(wasmOpt)) run('npm', ['install', '--prefix', tools, '--no-save', '--no-audit', '--no-fund', 'binaryen@132']);
if (!existsSync(twiggy)) run('cargo', ['install', '--locked', '--root', tools, 'twiggy', '--version', '0.8.0']);

const mb = (n) => (n / 1e6).toFixed(3);
function line(what, bytes, seconds) {
  const { gz, br } = compressed(bytes);
  const time = seconds === undefined ? '' : ` (${seconds.toFixed(0)} s)`;
  console.log(`  ${what.padEnd(9)} ${mb(bytes.length)} MB, gzip ${mb(gz.length)} MB, brotli ${mb(br.length)} MB${time}`);
}

// Every feature the modules use (SIMD128, threads in the all-cores one); wasm-opt refuses
// instructions of features it was not told about.
const FEATURES = ['--enable-simd', '--enable-bulk-memory', '--enable-nontrapping-float-to-int',
  '--enable-sign-ext', '--enable-mutable-globals', '--enable-reference-types', '--enable-multivalue',
  '--enable-threads'];
const scratch = mkdtempSync(join(tmpdir(), 'wasm-size-'));
const modules = process.argv.length > 2 ? process.argv.slice(2) : ['dist/mnist7k-threads_bg.wasm'];
for (const module of modules) {
  console.log(module);
  line('shipped', readFileSync(module));
  for (const level of ['O2', 'Os', 'Oz']) {
    const out = join(scratch, `${level}.wasm`);
    const start = performance.now();
    run(wasmOpt, [`-${level}`, ...FEATURES, module, '-o', out]);
    line(`-${level}`, readFileSync(out), (performance.now() - start) / 1000);
  }
}

// The library before wasm-bindgen and the name-stripping hook, so that functions have names.
const target = process.env.CARGO_TARGET_DIR ?? 'target';
const library = join(target, 'threads/wasm32-unknown-unknown/release/mnist7k.wasm');
if (existsSync(library)) {
  const total = statSync(library).size;
  const byCrate = new Map();
  const rows = run(twiggy, ['top', '-n', '1000000', '-f', 'csv', library]).trim().split('\n').slice(1);
  for (const row of rows) {
    const [, name, size] = row.match(/^"?(.*?)"?,(\d+),/) ?? [];
    if (name === undefined) continue;
    // A generic function counts for the crate that names it first (`<burn_flex::Flex as ..>`).
    const crate = name.match(/([a-z_][a-z0-9_]*)\[[0-9a-f]{16}\]/)?.[1]
      ?? (/function names|custom section|data segment/.test(name) ? name.replaceAll('"', '') : 'unnamed');
    byCrate.set(crate, (byCrate.get(crate) ?? 0) + Number(size));
  }
  console.log(`${library} (${mb(total)} MB, names kept), by crate:`);
  for (const [crate, size] of [...byCrate].sort((a, b) => b[1] - a[1]).slice(0, 12)) {
    console.log(`  ${mb(size)} MB ${(100 * size / total).toFixed(1).padStart(5)}%  ${crate}`);
  }
} else {
  console.log(`(no ${library}: build the all-cores module first for twiggy's breakdown)`);
}
