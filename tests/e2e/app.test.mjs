// End-to-end: the app as users run it (`trunk serve`), driven through its data-testid hooks in
// real headless Chromium: with WebGPU (SwiftShader), without WebGPU, and with a corrupt data file.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  MINUTE, NO_WEBGPU_ARGS, WEBGPU_ARGS, byId, longestTaskSince, measureSpeed, openPage, serveApp,
  waitForState,
} from './harness.mjs';

let stopServer = () => {};
before(async () => { stopServer = await serveApp(); });
after(() => stopServer());

// Draws a "1" then a "7"-like stroke with real pointer events and returns the shown prediction.
async function drawDigit(page) {
  const pad = byId(page, 'pad');
  await pad.scrollIntoViewIfNeeded();
  const box = await pad.boundingBox();
  const at = (fx, fy) => [box.x + box.width * fx, box.y + box.height * fy];
  await page.mouse.move(...at(0.3, 0.2));
  await page.mouse.down();
  for (let i = 0; i <= 10; i += 1) await page.mouse.move(...at(0.3 + 0.4 * (i / 10), 0.2));
  for (let i = 0; i <= 12; i += 1) await page.mouse.move(...at(0.7 - 0.25 * (i / 12), 0.2 + 0.65 * (i / 12)));
  await page.mouse.up();
  await page.waitForFunction(() => /^[0-9]$/.test(document.querySelector('[data-testid="prediction"]').textContent), null, { timeout: MINUTE })
    .catch(async (error) => {
      throw new Error(`no prediction shown (${await byId(page, 'prediction').getAttribute('title')}): ${error.message}`);
    });
  return byId(page, 'prediction').textContent();
}

async function trainShortRun(page, minAccuracy) {
  await waitForState(page, 'idle', 5 * MINUTE);
  const counts = await byId(page, 'class-counts').textContent();
  assert.match(counts, /5923/, 'class counts of the training file are shown');
  const since = await page.evaluate(() => performance.now());
  await byId(page, 'train').click();
  await waitForState(page, 'training', MINUTE);
  await waitForState(page, 'done', 15 * MINUTE);
  // Training and metrics run in the worker: the page never freezes.
  const longest = await longestTaskSince(page, since);
  console.log(`longest main-thread task while training: ${longest.toFixed(0)} ms`);
  assert.ok(longest < 100, `a main-thread task took ${longest} ms while training`);
  const points = Number(await byId(page, 'chart-loss').getAttribute('data-points'));
  assert.ok(points >= 2, `the loss chart has points (${points})`);
  const report = await byId(page, 'report-test').textContent();
  const accuracy = Number(report.match(/accuracy\s+([0-9.]+)%/)[1]);
  assert.ok(accuracy > minAccuracy, `a short run learns: test accuracy ${accuracy}% (floor ${minAccuracy}%)`);
  assert.match(await byId(page, 'report-train').textContent(), /weighted avg/);
  assert.equal(await byId(page, 'confusion').locator('tr').count(), 11);
  assert.ok(await byId(page, 'misclassified').locator('figure').count() > 0);
  assert.match(await drawDigit(page), /^[0-9]$/);
  return accuracy;
}

test('trains on WebGPU in Chromium, shows metrics and recognises a drawing', { timeout: 40 * MINUTE }, async () => {
  const { browser, page, errors, open } = await openPage(WEBGPU_ARGS, '?epochs=1&limit=1024&batch=64&lr=0.003');
  try {
    await open();
    await waitForState(page, 'idle', 5 * MINUTE);
    assert.match(await byId(page, 'backend-active').textContent(), /^webgpu/);
    // 16 small steps on a software adapter: clearly above chance (10%) is the point here.
    const accuracy = await trainShortRun(page, 30);
    console.log(`webgpu e2e: test accuracy ${accuracy}%`);
    assert.deepEqual(errors.filter((e) => !/favicon/.test(e)), []);
  } finally {
    await browser.close();
  }
});

test('falls back to the CPU where WebGPU is unavailable, and says so', { timeout: 20 * MINUTE }, async () => {
  const { browser, page, open } = await openPage(NO_WEBGPU_ARGS, '?epochs=2&limit=3000&lr=0.003');
  try {
    await open();
    await waitForState(page, 'idle', 5 * MINUTE);
    const label = await byId(page, 'backend-active').textContent();
    assert.match(label, /^cpu — (this browser has no WebGPU|WebGPU found no adapter)/);
    const accuracy = await trainShortRun(page, 70);
    console.log(`cpu fallback e2e: test accuracy ${accuracy}%`);
    // The speed test trains a fresh model of its own and gives the finished run its status back.
    const speed = await measureSpeed(page, 5 * MINUTE);
    assert.equal(speed.backend, 'cpu');
    assert.ok(speed.samples_per_second > 0 && speed.final_loss < 2.0, JSON.stringify(speed));
    await waitForState(page, 'done', MINUTE);
    console.log(`cpu fallback e2e: speed test ${Math.round(speed.samples_per_second)} samples/s`);
  } finally {
    await browser.close();
  }
});

test('a corrupt data file gives a clear message, not a hang', { timeout: 10 * MINUTE }, async () => {
  const { browser, context, page, open } = await openPage([], '?backend=cpu');
  try {
    await context.route('**/data/t10k-labels-idx1-ubyte.gz', (route) => route.fulfill({ status: 200, body: 'not an idx file' }));
    await open();
    await waitForState(page, 'error', 5 * MINUTE);
    assert.match(await byId(page, 'status').textContent(), /t10k-labels-idx1-ubyte.*(magic|truncated|MNIST)/);
    assert.equal(await byId(page, 'train').isDisabled(), true);
  } finally {
    await browser.close();
  }
});
