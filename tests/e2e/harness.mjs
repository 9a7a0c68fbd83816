// The app as users run it (`trunk serve`) and headless Debian Chromium driven by playwright-core:
// shared by the end-to-end tests and the browser half of the benchmark (scripts/bench-browser.mjs).
import { spawn } from 'node:child_process';
import { chromium } from 'playwright-core';

export const MINUTE = 60_000;
const PORT = Number(process.env.E2E_PORT ?? 8123);
// E2E_BASE points at an already running server instead of starting `trunk serve`.
const BASE = process.env.E2E_BASE ?? `http://127.0.0.1:${PORT}/`;
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
// --disable-dev-shm-usage: a CI container's /dev/shm can be too small for the 24 MB module.
const BASE_ARGS = ['--no-sandbox', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-quic', '--disable-dev-shm-usage'];
export const WEBGPU_ARGS = ['--enable-unsafe-webgpu'];
export const NO_WEBGPU_ARGS = ['--disable-blink-features=WebGPU', '--disable-gpu'];

// Resolves once the server answers; rejects at the deadline or as soon as `exited` settles
// (trunk stops at once on a bad Trunk.toml or a failed build: no point waiting 30 minutes).
async function waitForServer(deadline, exited) {
  let gone = null;
  exited?.then((reason) => { gone = reason; });
  while (Date.now() < deadline && gone === null) {
    try {
      const response = await fetch(BASE);
      if (response.ok) return;
    } catch { /* not up yet */ }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  throw new Error(`trunk serve did not answer on ${BASE}${gone ? `: it ${gone}` : ''}`);
}

// Starts `trunk serve` (unless E2E_BASE is set) and returns a function that stops it.
export async function serveApp() {
  if (process.env.E2E_BASE) return () => {};
  const server = spawn('trunk', ['serve', '--port', String(PORT), '--no-autoreload'], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const exited = new Promise((resolve) => {
    server.on('error', (error) => resolve(`could not start (${error.message})`));
    server.on('exit', (code, signal) => resolve(`exited with ${signal ?? `code ${code}`}`));
  });
  const stop = () => server.kill();
  // The first build of the app compiles the whole crate for wasm32.
  await waitForServer(Date.now() + 30 * MINUTE, exited).catch((error) => {
    stop();
    throw error;
  });
  return stop;
}

// What went wrong in each page (uncaught errors, console errors, failed requests), for messages.
const pageErrors = new WeakMap();

export async function openPage(args, query) {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...BASE_ARGS, ...args] });
  const context = await browser.newContext();
  const page = await context.newPage();
  // Main-thread tasks over 50 ms, as Chromium reports them, for longestTaskSince().
  await page.addInitScript(() => {
    window.longTasks = [];
    new PerformanceObserver((list) => window.longTasks.push(...list.getEntries().map((e) => [e.startTime, e.duration])))
      .observe({ type: 'longtask', buffered: true });
  });
  const errors = [];
  page.on('pageerror', (error) => errors.push(String(error)));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`${message.text()} (${message.location().url})`);
  });
  // A network failure ("Failed to fetch" in the page) names its URL and Chromium's reason here.
  page.on('requestfailed', (request) => errors.push(`request failed: ${request.url()} (${request.failure()?.errorText})`));
  pageErrors.set(page, errors);
  return { browser, context, page, errors, open: () => page.goto(`${BASE}${query}`) };
}

// The longest main-thread task (ms) that started after `since` (the page's performance.now()).
export async function longestTaskSince(page, since) {
  return page.evaluate((t0) => Math.max(0, ...window.longTasks.filter(([start]) => start >= t0).map(([, d]) => d)), since);
}

export const byId = (page, id) => page.locator(`[data-testid="${id}"]`);

// Waits for the status to reach `state`; reaching the error state instead ends the wait at once.
export async function waitForState(page, state, timeout) {
  const status = byId(page, 'status');
  const settled = state === 'error' ? `[data-state="error"]` : `[data-state="${state}"], [data-state="error"]`;
  const describe = async () => `${await status.getAttribute('data-state')} "${await status.textContent()}"; page errors: ${JSON.stringify(pageErrors.get(page) ?? [])}`;
  await status.and(page.locator(settled)).waitFor({ timeout }).catch(async (error) => {
    throw new Error(`status never reached ${state} (${error.message}): ${await describe()}`);
  });
  if (await status.getAttribute('data-state') !== state) {
    throw new Error(`status became error while waiting for ${state}: ${await describe()}`);
  }
}

// Presses "Measure speed" and returns the benchmark result the page shows (data-result).
export async function measureSpeed(page, timeout) {
  await byId(page, 'bench').click();
  await page.waitForFunction(() => {
    const button = document.querySelector('[data-testid="bench"]');
    return !button.disabled && !document.querySelector('[data-testid="bench-result"]').hidden;
  }, null, { timeout });
  const output = byId(page, 'bench-result');
  const json = await output.getAttribute('data-result');
  if (!json) throw new Error(`the speed test failed: ${await output.textContent()}`);
  return JSON.parse(json);
}
