// The module stripper on a hand-built module: the dropped sections go, everything else stays
// byte for byte, and the result is still a valid module that runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stripWasm } from '../../scripts/strip-wasm.mjs';

const utf8 = (text) => [...new TextEncoder().encode(text)];
// Sizes here stay below 128, so each LEB128 number is one byte.
const section = (id, payload) => [id, payload.length, ...payload];
const custom = (name, data) => section(0, [name.length, ...utf8(name), ...data]);

// (func (export "answer") (result i32) i32.const 42)
const MODULE = [
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  ...section(1, [1, 0x60, 0, 1, 0x7f]),
  ...custom('name', [1, 2, 3, 4, 5]),
  ...section(3, [1, 0]),
  ...section(7, [1, 6, ...utf8('answer'), 0x00, 0]),
  ...section(10, [1, 4, 0, 0x41, 42, 0x0b]),
  ...custom('producers', [9, 9]),
  ...custom('keep.me', [7]),
];

test('drops the name and producers sections and keeps the rest', async () => {
  const input = new Uint8Array(MODULE);
  assert.ok(WebAssembly.validate(input));
  const { bytes, dropped } = stripWasm(input);
  assert.deepEqual(dropped.map((d) => d.name), ['name', 'producers']);
  const withoutDropped = [...MODULE];
  const cut = (name) => {
    const needle = custom(name, name === 'name' ? [1, 2, 3, 4, 5] : [9, 9]);
    const at = withoutDropped.findIndex((_, i) => needle.every((b, j) => withoutDropped[i + j] === b));
    withoutDropped.splice(at, needle.length);
  };
  cut('name');
  cut('producers');
  assert.deepEqual([...bytes], withoutDropped);
  const { instance } = await WebAssembly.instantiate(bytes);
  assert.equal(instance.exports.answer(), 42);
});

test('refuses what is not a module or is cut short', () => {
  assert.throws(() => stripWasm(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])), /not a WebAssembly module/);
  assert.throws(() => stripWasm(new Uint8Array(MODULE.slice(0, 12))), /runs past the end/);
});
