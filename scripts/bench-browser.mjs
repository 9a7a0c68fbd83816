// The benchmark in the browsers, through the app as users get it: `trunk serve` (release build),
// training in the page's worker, the "Measure speed" button pressed by puppeteer-core, as the
// end-to-end tests drive the page. The CPU (flex, SIMD128) on one thread and on every core (the
// all-cores module) in Chromium and Firefox, and WebGPU in Chromium (SwiftShader here). Prints one
// `BENCH_JSON {...}` line per run, as tests/bench.rs does.
import {
  MINUTE, attr, click, measureSpeed, openPage, serveApp, typeInto, waitForState,
} from '../tests/e2e/harness.mjs';

const RUNS = [
  ...['chromium', 'firefox'].flatMap((engine) => [
    { engine, backend: 'cpu', threads: 1 },
    { engine, backend: 'cpu', threads: null },
  ]),
  { engine: 'chromium', backend: 'webgpu', webgpu: true },
// BENCH_BACKENDS=cpu skips WebGPU (two presses of 88 batches on a software adapter take minutes).
].filter((run) => !process.env.BENCH_BACKENDS || process.env.BENCH_BACKENDS.split(',').includes(run.backend));

// The time from opening the page to "Ready to train": a first visit (fresh profile: module and
// data downloaded, data checked and cached) and a reload (data from the Cache API).
async function timeToIdle(page, open) {
  const first = Date.now();
  await open();
  await waitForState(page, 'idle', 5 * MINUTE);
  const uncached = (Date.now() - first) / 1000;
  const again = Date.now();
  await page.reload();
  await waitForState(page, 'idle', 5 * MINUTE);
  return { uncached, cached: (Date.now() - again) / 1000 };
}

// One full epoch (48,000 images) through the Train button: where its time went.
async function oneEpoch(page) {
  await typeInto(page, 'epochs', '1');
  await click(page, 'train');
  await page.waitForFunction(() => document.querySelector('[data-testid="epoch-time"]').dataset.epoch, { timeout: 20 * MINUTE, polling: 500 });
  const record = JSON.parse(await attr(page, 'epoch-time', 'data-epoch'));
  await waitForState(page, 'done', 10 * MINUTE);
  return record;
}

async function measure({ engine, backend, webgpu = false, threads }) {
  const query = `?backend=${backend}${threads ? `&threads=${threads}` : ''}`;
  const { browser, page, errors, open } = await openPage({ engine, webgpu, query });
  try {
    const idle = await timeToIdle(page, open);
    const active = await attr(page, 'backend-active', 'data-backend');
    if (active !== backend) throw new Error(`asked for ${backend}, the page runs ${active}`);
    // Counted on the second press: in Chromium the first runs largely before V8 has optimised
    // the module's hot functions (its windows climb from about 1,300 to 2,500 samples/s on two
    // threads), a start-up cost, kept beside the figure, not a training speed.
    const cold = await measureSpeed(page, 20 * MINUTE);
    const result = { ...await measureSpeed(page, 20 * MINUTE), first_press_samples_per_second: cold.samples_per_second };
    // The epoch's split on the CPU's default (all cores) only: a full epoch elsewhere is minutes.
    const epoch = backend === 'cpu' && !threads ? await oneEpoch(page) : null;
    const userAgent = await page.evaluate(() => navigator.userAgent);
    console.log(`BENCH_JSON ${JSON.stringify({ where: 'browser', user_agent: userAgent, result: { ...result, open_to_idle_seconds: idle, epoch } })}`);
  } catch (error) {
    throw new Error(`${engine} ${query}: ${error.message} ${errors.join(' | ')}`);
  } finally {
    await browser.close();
  }
}

const stopServer = await serveApp();
let failed = false;
for (const run of RUNS) {
  await measure(run).catch((error) => {
    console.error(`benchmark failed on ${error.message}`);
    failed = true;
  });
}
stopServer();
process.exitCode = failed ? 1 : 0;
