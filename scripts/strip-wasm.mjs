// Drops the wasm module's `name` and `producers` custom sections: function names for stack
// traces (about a sixth of the module) and toolchain telemetry, which users download for nothing.
// Trunk runs it after every build (Trunk.toml, post_build hook) on the staged modules; it also
// takes paths as arguments. Every other section is copied byte for byte.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const DROPPED = new Set(['name', 'producers']);

// An unsigned LEB128 number at `offset`: [value, offset after it].
function leb128(bytes, offset) {
  let value = 0;
  let shift = 0;
  for (;;) {
    if (offset >= bytes.length) throw new Error('truncated LEB128 number');
    const byte = bytes[offset++];
    value += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return [value, offset];
    shift += 7;
  }
}

// The module without the dropped custom sections, and the names of what was dropped.
export function stripWasm(bytes) {
  const magic = [0x00, 0x61, 0x73, 0x6d];
  if (bytes.length < 8 || magic.some((b, i) => bytes[i] !== b)) throw new Error('not a WebAssembly module');
  const kept = [bytes.subarray(0, 8)];
  const dropped = [];
  let offset = 8;
  while (offset < bytes.length) {
    const start = offset;
    const id = bytes[offset++];
    const [size, payload] = leb128(bytes, offset);
    const end = payload + size;
    if (end > bytes.length) throw new Error(`section ${id} at byte ${start} runs past the end`);
    let name = null;
    if (id === 0) {
      const [length, at] = leb128(bytes, payload);
      name = new TextDecoder().decode(bytes.subarray(at, at + length));
    }
    if (name !== null && DROPPED.has(name)) dropped.push({ name, bytes: end - start });
    else kept.push(bytes.subarray(start, end));
    offset = end;
  }
  const out = new Uint8Array(kept.reduce((n, part) => n + part.length, 0));
  let at = 0;
  for (const part of kept) {
    out.set(part, at);
    at += part.length;
  }
  return { bytes: out, dropped };
}

function stripFile(path) {
  const before = readFileSync(path);
  const { bytes, dropped } = stripWasm(new Uint8Array(before));
  writeFileSync(path, bytes);
  const mb = (n) => (n / 1e6).toFixed(1);
  const what = dropped.map((d) => `${d.name} ${mb(d.bytes)} MB`).join(', ') || 'nothing to drop';
  console.log(`strip-wasm: ${path}: ${mb(before.length)} -> ${mb(bytes.length)} MB (${what})`);
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const staged = (name) => join(process.env.TRUNK_STAGING_DIR ?? 'dist', name);
  const paths = process.argv.length > 2 ? process.argv.slice(2)
    : [staged('mnist7k_bg.wasm'), staged('mnist7k-threads_bg.wasm')];
  for (const path of paths) stripFile(path);
}
