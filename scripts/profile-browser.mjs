// Where the all-cores module's training time goes, in Chromium: the page from dist/ (build it
// first: `trunk build`) with the all-cores module rebuilt beside it keeping its function names,
// each worker sampled by DevTools' profiler while "Measure speed" runs, self time per function.
// `node scripts/profile-browser.mjs [THREADS]` (default 2). A pool thread blocked in
// `Atomics.wait` may not answer the profiler; it is then reported as such.
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { extname, join, normalize } from 'node:path';
import puppeteer from 'puppeteer-core';

const THREADS = Number(process.argv[2] ?? 2);
const TOP = 12;
const named = mkdtempSync(join(tmpdir(), 'mnist7k-profile-'));
execFileSync('bash', ['scripts/build-threads.sh', named], { stdio: 'inherit' });

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css' };
const server = createServer(async (request, response) => {
  const path = normalize(decodeURIComponent(new URL(request.url, 'http://x').pathname)).replace(/^\/+/, '') || 'index.html';
  try {
    const body = await readFile(join(path.startsWith('mnist7k-threads') ? named : 'dist', path));
    response.writeHead(200, {
      'Content-Type': TYPES[extname(path)] ?? 'application/octet-stream',
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
    });
    response.end(body);
  } catch {
    response.writeHead(404);
    response.end();
  }
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));

const browser = await puppeteer.launch({
  browser: 'chrome', executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-blink-features=WebGPU'],
});
const within = (promise, ms) => Promise.race([promise, new Promise((resolve) => setTimeout(() => resolve(null), ms))]);
try {
  const page = await browser.newPage();
  const workers = [];
  page.on('workercreated', (worker) => workers.push(worker));
  await page.goto(`http://127.0.0.1:${server.address().port}/?backend=cpu&threads=${THREADS}`);
  const ready = () => document.querySelector('[data-testid="status"]')?.dataset.state === 'idle';
  await page.waitForFunction(ready, { timeout: 120_000, polling: 200 });
  for (const worker of workers) {
    await worker.client.send('Profiler.enable');
    await worker.client.send('Profiler.setSamplingInterval', { interval: 200 });
    await worker.client.send('Profiler.start');
  }
  await page.click('[data-testid="bench"]');
  await page.waitForFunction(() => !document.querySelector('[data-testid="bench"]').disabled
    && !document.querySelector('[data-testid="bench-result"]').hidden, { timeout: 300_000, polling: 300 });
  console.log(await page.$eval('[data-testid="bench-result"]', (e) => e.textContent));
  for (const worker of workers) {
    const what = worker.url().endsWith('worker.js') ? 'the training worker' : `a pool thread (${worker.url()})`;
    const stopped = await within(worker.client.send('Profiler.stop'), 10_000);
    if (!stopped) {
      console.log(`\n${what}: no answer from its profiler`);
      continue;
    }
    const { nodes, samples, timeDeltas } = stopped.profile;
    const byId = new Map(nodes.map((node) => [node.id, node.callFrame.functionName || '(anonymous)']));
    const self = new Map();
    let total = 0;
    samples.forEach((id, i) => {
      const name = byId.get(id);
      self.set(name, (self.get(name) ?? 0) + timeDeltas[i]);
      total += timeDeltas[i];
    });
    console.log(`\n${what}: ${Math.round(total / 1000)} ms sampled`);
    for (const [name, micros] of [...self].sort((a, b) => b[1] - a[1]).slice(0, TOP)) {
      console.log(`${(100 * micros / total).toFixed(1).padStart(5)}%  ${name.slice(0, 140)}`);
    }
  }
} finally {
  await browser.close();
  server.close();
}
