// Trains a preset to its end in headless Chromium on the CPU, through the page as a person would
// (choose the preset, press Train), and reports each epoch's time, the total time and the test
// accuracy, from the run the page keeps. With `--compare reports/best-under-7k.json` it also
// says whether the tab reached the test accuracy of the native final run of the same seed.
//   node scripts/preset-in-browser.mjs [--preset best7k] [--seed 1] [--compare FILE] [--out FILE]
import { readFileSync, writeFileSync } from 'node:fs';
import {
  MINUTE, downloaded, openPage, scriptFlags, serveApp, typeInto, waitForState,
} from '../tests/e2e/harness.mjs';

const args = scriptFlags();
const preset = args.preset ?? 'best7k';
const seed = Number(args.seed ?? 1);

const stopServer = await serveApp();
const { browser, page, errors, open } = await openPage({ engine: 'chromium', query: `?backend=cpu&seed=${seed}` });
let failed = false;
try {
  await open();
  await waitForState(page, 'idle', 5 * MINUTE);
  await typeInto(page, 'preset', preset);
  await page.waitForFunction(() => document.querySelector('#preset-recipe').textContent !== '', { timeout: MINUTE });
  const recipe = await page.$eval('#preset-recipe', (e) => e.textContent);
  const userAgent = await page.evaluate(() => navigator.userAgent);
  // Train is enabled once Rust has accepted the preset's network.
  await page.waitForFunction(() => !document.querySelector('[data-testid="train"]').disabled, { timeout: MINUTE });
  const start = Date.now();
  await page.$eval('[data-testid="train"]', (b) => b.click());
  await waitForState(page, 'training', MINUTE);
  await waitForState(page, 'done', 180 * MINUTE);
  const total = (Date.now() - start) / 1000;
  const run = JSON.parse(await downloaded(page, '[data-testid="run"] [data-testid="run-export"]'));
  const history = run.checkpoint.history;
  const epochSeconds = history.map((r) => r.seconds);
  const result = {
    preset,
    seed,
    recipe,
    user_agent: userAgent,
    epochs: history.length,
    epoch_seconds: epochSeconds,
    mean_epoch_seconds: epochSeconds.reduce((a, b) => a + b, 0) / epochSeconds.length,
    total_seconds: total,
    kept_epoch: run.checkpoint.best_epoch,
    test_accuracy: run.metrics.test_accuracy,
  };
  if (args.compare) {
    const native = JSON.parse(readFileSync(args.compare, 'utf8')).runs.find((r) => r.seed === seed);
    result.native_test_accuracy = native?.test_accuracy ?? null;
    result.same_as_native = native ? native.test_accuracy === result.test_accuracy : null;
  }
  console.log(`${preset}, seed ${seed} in Chromium on the CPU: ${history.length} epochs, ${result.mean_epoch_seconds.toFixed(1)} s per epoch, ${(total / 60).toFixed(1)} minutes from Train to done, test accuracy ${(100 * result.test_accuracy).toFixed(2)}%`
    + (args.compare ? ` (native run of the same seed: ${result.native_test_accuracy === null ? 'none' : `${(100 * result.native_test_accuracy).toFixed(2)}%`}, the same: ${result.same_as_native})` : ''));
  console.log(`PRESET_JSON ${JSON.stringify(result)}`);
  if (args.out) writeFileSync(args.out, `${JSON.stringify(result, null, 2)}\n`);
  if (errors.length > 0) throw new Error(`page errors: ${errors.join(' | ')}`);
  if (result.same_as_native === false) failed = true;
} catch (error) {
  console.error(`the preset run failed: ${error.message}`);
  failed = true;
} finally {
  await browser.close();
  stopServer();
}
process.exitCode = failed ? 1 : 0;
