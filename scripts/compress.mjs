// Pre-compressed copies for a static host: next to each compressible file of a directory, a
// `.gz` (gzip -9) and a `.br` (brotli, best quality) that servers such as nginx
// (`gzip_static on; brotli_static on;`) or Caddy (`precompressed br gzip`) send as they are.
// The data files are gzip already and stay as they are.
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';

const COMPRESSIBLE = new Set(['.wasm', '.js', '.html', '.css', '.json']);

function* files(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* files(path);
    else if (COMPRESSIBLE.has(extname(name))) yield path;
  }
}

// `raw` as gzip -9 and as brotli at its best quality (scripts/wasm-size.mjs measures with it too).
export function compressed(raw) {
  const gz = gzipSync(raw, { level: 9 });
  const br = brotliCompressSync(raw, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: constants.BROTLI_MAX_QUALITY,
      [constants.BROTLI_PARAM_SIZE_HINT]: raw.length,
    },
  });
  return { gz, br };
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const dir = process.argv[2] ?? 'dist';
  const mb = (n) => (n / 1e6).toFixed(2);
  for (const path of files(dir)) {
    const raw = readFileSync(path);
    const { gz, br } = compressed(raw);
    writeFileSync(`${path}.gz`, gz);
    writeFileSync(`${path}.br`, br);
    if (raw.length > 100_000) console.log(`${path}: ${mb(raw.length)} MB, gzip ${mb(gz.length)} MB, brotli ${mb(br.length)} MB`);
  }
}
