// The app as users run it (`trunk serve`) in headless Debian Chromium and Firefox ESR, both driven
// by puppeteer-core (Chromium over CDP, Firefox over WebDriver BiDi; no browser is downloaded).
// Shared by the end-to-end tests and the browser half of the benchmark (scripts/bench-browser.mjs).
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import puppeteer from 'puppeteer-core';

export const MINUTE = 60_000;
const PORT = Number(process.env.E2E_PORT ?? 8123);
// E2E_BASE points at an already running server instead of starting `trunk serve`.
export const BASE = process.env.E2E_BASE ?? `http://127.0.0.1:${PORT}/`;

// The engines the suites run in; E2E_BROWSERS=chromium (or firefox) narrows it.
export const BROWSERS = (process.env.E2E_BROWSERS ?? 'chromium,firefox').split(',').filter(Boolean);

const EXECUTABLES = {
  chromium: process.env.CHROMIUM ?? '/usr/bin/chromium',
  firefox: process.env.FIREFOX ?? '/usr/bin/firefox-esr',
};
// --disable-dev-shm-usage: a CI container's /dev/shm can be too small for the 24 MB module.
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-quic', '--disable-dev-shm-usage'];
const CHROMIUM_WEBGPU = { true: ['--enable-unsafe-webgpu'], false: ['--disable-blink-features=WebGPU', '--disable-gpu'] };
// Firefox's WebGPU runs on lavapipe (mesa-vulkan-drivers) once the blocklist is ignored.
const firefoxPrefs = (webgpu) => ({
  'dom.webgpu.enabled': webgpu,
  'gfx.webgpu.ignore-blocklist': webgpu,
  'browser.shell.checkDefaultBrowser': false,
});

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

// Recorded in every page before its scripts run: long main-thread tasks (Chromium only), the
// status line's texts and Content-Security-Policy violations (which also go to the console,
// hence to `errors`).
function instrument() {
  // Keeps entries of `type` as `record` maps them, in window[name]: null where the browser has
  // no such entries. window.flushTimings() takes those not yet delivered, before a reading.
  const flushes = [];
  window.flushTimings = () => flushes.forEach((flush) => flush());
  const keep = (name, type, record) => {
    window[name] = PerformanceObserver.supportedEntryTypes?.includes(type) ? [] : null;
    if (window[name] === null) return;
    const observer = new PerformanceObserver((list) => window[name].push(...list.getEntries().map(record)));
    observer.observe({ type, buffered: true });
    flushes.push(() => window[name].push(...observer.takeRecords().map(record)));
  };
  // Firefox accepts the observer but never reports long tasks: null says "not measured".
  keep('longTasks', 'longtask', (e) => [e.startTime, e.duration]);
  // Chromium's long animation frames say what a long task ran (scripts, style and layout), so
  // that a failed check names its culprit.
  keep('longFrames', 'long-animation-frame', (e) => ({
    start: e.startTime,
    end: e.startTime + e.duration,
    text: [`frame of ${Math.round(e.duration)} ms (blocking ${Math.round(e.blockingDuration)} ms`,
      `style and layout ${e.styleAndLayoutStart ? Math.round(e.startTime + e.duration - e.styleAndLayoutStart) : 0} ms)`,
      ...e.scripts.map((script) => `${script.invoker} ${script.sourceFunctionName || ''} ${Math.round(script.duration)} ms`)].join('; '),
  }));
  // Every text the status line shows, in order: a passing message can be replaced before a poll
  // sees it (a retried start's notice, when the fresh worker answers at once).
  window.statusTexts = [];
  new MutationObserver(() => {
    const shown = document.querySelector('[data-testid="status"]')?.textContent;
    if (shown && shown !== window.statusTexts.at(-1)) window.statusTexts.push(shown);
  }).observe(document, { subtree: true, childList: true, characterData: true });
  document.addEventListener('securitypolicyviolation', (e) => {
    console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI}`);
  });
}

// What went wrong in each page (uncaught errors, console errors, failed requests), for messages.
const pageErrors = new WeakMap();

// Requests a test answers itself go through this proxy in front of the app (the same for both
// browsers, and for the requests of the page's worker, which browser-side interception misses).
let proxy = null;
let proxyRoutes = [];
async function proxyBase() {
  if (!proxy) {
    proxy = http.createServer(async (request, response) => {
      const url = new URL(request.url, BASE).href;
      const route = proxyRoutes.find(([matches]) => matches(url));
      try {
        const { status = 200, body, contentType } = route
          ? await route[1](url)
          : await fetch(url).then(async (r) => ({ status: r.status, body: Buffer.from(await r.arrayBuffer()), contentType: r.headers.get('content-type') }));
        // The isolation headers trunk serve sends, so that pages behind the proxy are the same.
        response.writeHead(status, {
          ...(contentType ? { 'Content-Type': contentType } : {}),
          'Cross-Origin-Opener-Policy': 'same-origin',
          'Cross-Origin-Embedder-Policy': 'require-corp',
          // A route may answer the same URL differently each time.
          'Cache-Control': 'no-store',
        });
        response.end(body);
      } catch (error) {
        response.writeHead(502);
        response.end(String(error));
      }
    });
    await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    proxy.unref();
  }
  return `http://127.0.0.1:${proxy.address().port}/`;
}

// A browser with one page. `routes` answer matching requests instead of the app:
// [[test(url) -> bool, async (url) -> { status, body, contentType }], ...].
export async function openPage({ engine = 'chromium', webgpu = false, query = '', routes = [] } = {}) {
  const browser = await puppeteer.launch({
    browser: engine === 'firefox' ? 'firefox' : 'chrome',
    executablePath: EXECUTABLES[engine],
    headless: true,
    args: engine === 'firefox' ? [] : [...CHROMIUM_ARGS, ...CHROMIUM_WEBGPU[Boolean(webgpu)]],
    extraPrefsFirefox: firefoxPrefs(Boolean(webgpu)),
    protocolTimeout: 30 * MINUTE,
  });
  const page = await browser.newPage();
  page.setDefaultTimeout(5 * MINUTE);
  await page.evaluateOnNewDocument(instrument);
  const errors = [];
  page.on('pageerror', (error) => errors.push(String(error)));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(message.text());
  });
  // A network failure ("Failed to fetch" in the page) names its URL and the browser's reason here.
  page.on('requestfailed', (request) => errors.push(`request failed: ${request.url()} (${request.failure()?.errorText})`));
  pageErrors.set(page, errors);
  proxyRoutes = routes;
  const base = routes.length > 0 ? await proxyBase() : BASE;
  return { browser, page, errors, engine, base, open: () => page.goto(`${base}${query}`) };
}

// The page's errors other than those a test provoked on purpose (a 404 it served, say).
export const unexpected = (errors, ...allowed) => errors.filter((e) => !allowed.some((pattern) => pattern.test(e)));

// The longest main-thread task that started after `since` (the page's performance.now()):
// { ms, what } (what the long animation frames around it ran, where the browser says), or null
// where the browser does not report long tasks (Firefox).
export async function longestTaskSince(page, since) {
  return page.evaluate((t0) => {
    if (window.longTasks === null) return null;
    window.flushTimings();
    const [start, ms] = window.longTasks.filter(([s]) => s >= t0).reduce((a, b) => (b[1] > a[1] ? b : a), [t0, 0]);
    if (ms === 0) return { ms, what: 'none' };
    const what = (window.longFrames ?? []).filter((f) => f.start <= start + ms && f.end >= start).map((f) => f.text);
    return { ms, what: what.join(' | ') || 'not attributed' };
  }, since);
}

// Whether the long-task observer sees a 150 ms task in this page (null where the browser has no
// such observer): so that "no long task while training" means that none happened.
export async function longTaskObserverWorks(page) {
  const since = await page.evaluate(() => performance.now());
  // A task of the page's own (a timer), not the driver's evaluation, which is not reported.
  await page.evaluate(() => new Promise((resolve) => {
    setTimeout(() => {
      const end = performance.now() + 150;
      while (performance.now() < end) { /* busy */ }
      resolve();
    }, 0);
  }));
  await new Promise((resolve) => setTimeout(resolve, 300));
  const longest = await longestTaskSince(page, since);
  return longest === null ? null : longest.ms >= 100;
}

const selector = (id) => `[data-testid="${id}"]`;
export const text = (page, id) => page.$eval(selector(id), (e) => e.textContent);
export const attr = (page, id, name) => page.$eval(selector(id), (e, n) => e.getAttribute(n), name);
export const disabled = (page, id) => page.$eval(selector(id), (e) => e.disabled);
export const count = (page, css) => page.$$eval(css, (list) => list.length);
// Clicks as a person would: once the control is enabled (Train waits, for instance, for the
// worker's verdict on the network, which a loaded machine can delay by seconds).
export async function click(page, id, timeout = MINUTE) {
  try {
    await page.waitForFunction((css) => {
      const element = document.querySelector(css);
      return element && !element.disabled;
    }, { timeout, polling: 100 }, selector(id));
  } catch (error) {
    const state = await status(page).catch(() => ({}));
    throw new Error(`${id} never became clickable (${error.message}): status ${state.state} "${state.text}"; page errors: ${JSON.stringify(pageErrors.get(page) ?? [])}`);
  }
  await page.$eval(selector(id), (e) => e.click());
}
export const noticeText = (page) => page.$eval('#notice', (e) => (e.hidden ? '' : e.textContent));

// Types a value into a settings field as a person would (select all, type, leave the field).
export async function typeInto(page, id, value) {
  await page.$eval(selector(id), (e, v) => {
    e.value = v;
    e.dispatchEvent(new Event('input', { bubbles: true }));
    e.dispatchEvent(new Event('change', { bubbles: true }));
  }, value);
}

// The value of a form control (an input or a select).
export const valueOf = (page, id) => page.$eval(selector(id), (e) => e.value);
export const isHidden = (page, id) => page.$eval(selector(id), (e) => e.hidden);

// Sets the control named `name` (filters, kernel, units…) in the designer's `index`-th layer
// (from 0) as a person would, as typeInto does.
export async function setLayerField(page, index, name, value) {
  const found = await page.$$eval(selector('layer'), (layers, i, n, v) => {
    const control = layers[i]?.querySelector(`[name="${n}"]`);
    if (!control) return false;
    control.value = v;
    control.dispatchEvent(new Event('input', { bubbles: true }));
    control.dispatchEvent(new Event('change', { bubbles: true }));
    return true;
  }, index, name, value);
  if (!found) throw new Error(`layer ${index} has no ${name} field`);
}

// Waits for an element's text to be `expected` (a string, the whole text) or to match it (a
// RegExp); the message says what it read instead.
const escapeRegExp = (string) => string.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
export async function waitForText(page, id, expected, timeout = MINUTE) {
  const source = expected instanceof RegExp ? expected.source : `^${escapeRegExp(expected)}$`;
  try {
    await page.waitForFunction((css, pattern) => new RegExp(pattern).test(document.querySelector(css)?.textContent ?? ''),
      { timeout, polling: 200 }, selector(id), source);
  } catch (error) {
    const now = await text(page, id).catch(() => '(no such element)');
    throw new Error(`${id} never read ${expected} (${error.message}): it reads "${now}"; page errors: ${JSON.stringify(pageErrors.get(page) ?? [])}`);
  }
}

// The status line: { state, kind (of a failure), text }.
export async function status(page) {
  return page.$eval(selector('status'), (e) => ({ state: e.dataset.state, kind: e.dataset.kind ?? null, text: e.textContent }));
}

// Waits for the status to reach `state`; reaching the error state instead ends the wait at once.
// Returns { state, kind, text }.
export async function waitForState(page, state, timeout) {
  try {
    await page.waitForFunction((wanted) => {
      const s = document.querySelector('[data-testid="status"]')?.dataset.state;
      return s === wanted || s === 'error';
    }, { timeout, polling: 200 }, state);
  } catch (error) {
    const now = await status(page).catch(() => ({}));
    throw new Error(`status never reached ${state} (${error.message}): ${now.state} "${now.text}"; page errors: ${JSON.stringify(pageErrors.get(page) ?? [])}`);
  }
  const now = await status(page);
  if (now.state !== state) {
    throw new Error(`status became error while waiting for ${state}: "${now.text}"; page errors: ${JSON.stringify(pageErrors.get(page) ?? [])}`);
  }
  return now;
}

// Presses "Measure speed" and returns the benchmark result the page shows (data-result).
export async function measureSpeed(page, timeout) {
  await click(page, 'bench');
  await page.waitForFunction(() => {
    const button = document.querySelector('[data-testid="bench"]');
    return !button.disabled && !document.querySelector('[data-testid="bench-result"]').hidden;
  }, { timeout, polling: 500 });
  const json = await attr(page, 'bench-result', 'data-result');
  if (!json) throw new Error(`the speed test failed: ${await text(page, 'bench-result')}`);
  return JSON.parse(json);
}

// "Measure speed" pressed twice, the second result returned with the first's speed beside it
// (`first_press_samples_per_second`): in Chromium a first press on a fresh page runs largely
// before V8 has optimised the module's hot functions (its windows climb from about 1,300 to 2,500
// samples/s on two threads), a start-up cost rather than a training speed.
export async function measureWarmSpeed(page, timeout) {
  const cold = await measureSpeed(page, timeout);
  return { ...await measureSpeed(page, timeout), first_press_samples_per_second: cold.samples_per_second };
}

// The text of the file that clicking `css` downloads, read from the Blob the page hands to its
// link; the link's click is held back, so no download is started in either browser.
export function downloaded(page, css) {
  return page.evaluate((target) => new Promise((resolve, reject) => {
    const create = URL.createObjectURL;
    const follow = HTMLAnchorElement.prototype.click;
    URL.createObjectURL = (blob) => {
      URL.createObjectURL = create;
      blob.text().then(resolve, reject);
      return create.call(URL, blob);
    };
    HTMLAnchorElement.prototype.click = function held() { HTMLAnchorElement.prototype.click = follow; };
    document.querySelector(target).click();
  }), css);
}

// Draws a "7" (a bar across the top, then a stroke down to the lower left) with real pointer
// events and returns the prediction the page shows.
export async function drawSeven(page) {
  const pad = await page.$(selector('pad'));
  // The pad is brought to a whole-pixel position in the viewport: pages laid out differently above
  // it leave it at different fractions of a pixel (0.2 px apart in Firefox between a trained and
  // a restored page), the pointer's positions are rounded, and the same 7 then inks differently.
  await page.$eval(selector('pad'), (e) => {
    e.scrollIntoView({ block: 'center', behavior: 'instant' });
    const { top, left } = e.getBoundingClientRect();
    window.scrollBy({ top: top - Math.round(top), left: left - Math.round(left), behavior: 'instant' });
  });
  await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
  const box = await pad.boundingBox();
  const at = (fx, fy) => [box.x + box.width * fx, box.y + box.height * fy];
  await page.mouse.move(...at(0.3, 0.2));
  await page.mouse.down();
  for (let i = 0; i <= 10; i += 1) await page.mouse.move(...at(0.3 + 0.4 * (i / 10), 0.2));
  for (let i = 0; i <= 12; i += 1) await page.mouse.move(...at(0.7 - 0.25 * (i / 12), 0.2 + 0.65 * (i / 12)));
  await page.mouse.up();
  try {
    await page.waitForFunction(() => /^[0-9]$/.test(document.querySelector('[data-testid="prediction"]').textContent), { timeout: MINUTE, polling: 200 });
  } catch (error) {
    throw new Error(`no prediction shown (${await attr(page, 'prediction', 'title')}): ${error.message}`);
  }
  return text(page, 'prediction');
}

// The native twin's run of the same settings on the CPU (`mnist7k train ... --json`), as the run
// file it writes: the CPU path adds in one order on every machine and in both browsers, so a tab's
// run must end where this one does. NATIVE_TARGET_DIR is where CI keeps the native build (the
// native tests build this binary first); elsewhere cargo's own target directory.
export function nativeRun(args) {
  const dir = mkdtempSync(join(tmpdir(), 'mnist7k-native-'));
  const file = join(dir, 'run.json');
  const targetDir = process.env.NATIVE_TARGET_DIR ?? process.env.CARGO_TARGET_DIR ?? 'target';
  try {
    execFileSync('cargo', ['run', '--profile', 'quick', '--quiet', '--bin', 'mnist7k', '--', 'train', '--data', 'data',
      '--backend', 'cpu', ...args, '--json', file], { env: { ...process.env, CARGO_TARGET_DIR: targetDir }, stdio: ['ignore', 'ignore', 'inherit'] });
    return JSON.parse(readFileSync(file, 'utf8'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// A script's `--name value` pairs as an object (scripts/preset-in-browser.mjs, norm-images.mjs).
export function scriptFlags(argv = process.argv.slice(2)) {
  return Object.fromEntries(argv.reduce((pairs, arg, i, all) => (
    arg.startsWith('--') ? [...pairs, [arg.slice(2), all[i + 1]]] : pairs), []));
}

// A test report as the page shows it (www/metrics.js) and the CLI prints it: the loss, then
// each digit's precision, recall and F1 to four places.
export function reportFigures(loss, report) {
  return [loss.toFixed(4), ...report.classes.flatMap((c) => [c.precision, c.recall, c.f1].map((v) => v.toFixed(4)))];
}

// The same figures read from the page's test report (`data-testid="report-test"`).
export const shownFigures = (reportText) => [reportText.match(/loss ([\d.]+),/)[1],
  ...reportText.split('\n').slice(3, 13).flatMap((line) => line.trim().split(/\s+/).slice(1, 4))];
