// The benchmark in the browsers, through the app as users get it: `trunk serve` (release build),
// training in the page's worker, the "Measure speed" button pressed by puppeteer-core, as the
// end-to-end tests drive the page. The CPU (flex, SIMD128) on one thread and on every core (the
// all-cores module) in Chromium and Firefox, and WebGPU in Chromium (SwiftShader here). Prints one
// `BENCH_JSON {...}` line per backend, thread count and browser, as tests/bench.rs does.
import { readFile } from 'node:fs/promises';
import {
  MINUTE, attr, click, measureWarmSpeed, openPage, serveApp, typeInto, waitForState,
} from '../tests/e2e/harness.mjs';

const ENGINES = ['chromium', 'firefox'];
const wanted = (backend) => !process.env.BENCH_BACKENDS || process.env.BENCH_BACKENDS.split(',').includes(backend);
// BENCH_BACKENDS=cpu skips WebGPU (two presses of 88 batches on a software adapter take minutes).
const WEBGPU = wanted('webgpu') ? [{ engine: 'chromium', backend: 'webgpu', webgpu: true }] : [];
// This machine's speed drifts by tens of percent within minutes, so one page per thread count
// gives a ratio that is mostly drift. The CPU's one-thread and all-cores pages alternate instead,
// BENCH_ROUNDS rounds (default 3) in turn-about order, and the ratio is taken within each round.
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

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

// One page: its speed (the second of two presses of Measure speed), and on the first round its
// time to idle and, on the CPU's default (all cores), one epoch's split.
async function measure({ engine, backend, webgpu = false, threads }, first) {
  const query = `?backend=${backend}${threads ? `&threads=${threads}` : ''}`;
  const { browser, page, errors, open } = await openPage({ engine, webgpu, query });
  try {
    const idle = first ? await timeToIdle(page, open) : await open().then(() => waitForState(page, 'idle', 5 * MINUTE));
    const active = await attr(page, 'backend-active', 'data-backend');
    if (active !== backend) throw new Error(`asked for ${backend}, the page runs ${active}`);
    const result = await measureWarmSpeed(page, 20 * MINUTE);
    // A full epoch elsewhere (one thread, WebGPU) takes minutes.
    const epoch = first && backend === 'cpu' && !threads ? await oneEpoch(page) : null;
    const userAgent = await page.evaluate(() => navigator.userAgent);
    return { user_agent: userAgent, result: first ? { ...result, open_to_idle_seconds: idle, epoch } : result };
  } catch (error) {
    throw new Error(`${engine} ${query}: ${error.message} ${errors.join(' | ')}`);
  } finally {
    await browser.close();
  }
}

// TensorFlow.js's page (scripts/tfjs-bench.js): its scripts from node_modules, beside the app
// (whose server answers the data), cross-origin isolated like the app's pages.
const TFJS_SCRIPTS = ['tfjs-core/dist/tf-core.min.js', 'tfjs-backend-cpu/dist/tf-backend-cpu.min.js',
  'tfjs-layers/dist/tf-layers.min.js', 'tfjs-backend-wasm/dist/tf-backend-wasm.min.js'];
const TFJS_PAGE = `<!doctype html><meta charset="utf-8"><title>TensorFlow.js benchmark</title>
${TFJS_SCRIPTS.map((file) => `<script src="/node_modules/@tensorflow/${file}"></script>`).join('\n')}
<script type="module">import { bench } from '/tfjs-bench.js'; window.benchResult = bench();</script>`;
const TFJS_ROUTES = [[(url) => /^\/(tfjs\/$|tfjs-bench\.js$|node_modules\/@tensorflow\/)/.test(new URL(url).pathname), async (url) => {
  const path = new URL(url).pathname;
  if (path === '/tfjs/') return { body: TFJS_PAGE, contentType: 'text/html' };
  const file = path === '/tfjs-bench.js' ? 'scripts/tfjs-bench.js' : path.slice(1);
  const contentType = file.endsWith('.wasm') ? 'application/wasm' : 'text/javascript';
  return { body: await readFile(file), contentType };
}]];

async function measureTfjs(engine) {
  const { browser, page, errors, open } = await openPage({ engine, query: 'tfjs/', routes: TFJS_ROUTES });
  try {
    await open();
    await page.waitForFunction(() => window.benchResult, { timeout: MINUTE });
    const result = await page.evaluate(() => window.benchResult);
    // The same network, and a weight gradient that agrees with TF.js's own to rounding.
    if (result.params !== 6722 || !(result.gradient_check < 1e-3)) throw new Error(`not the comparison intended: ${JSON.stringify(result)}`);
    return { user_agent: await page.evaluate(() => navigator.userAgent), result };
  } catch (error) {
    throw new Error(`${engine} TensorFlow.js: ${error.message} ${errors.join(' | ')}`);
  } finally {
    await browser.close();
  }
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const report = (line) => console.log(`BENCH_JSON ${JSON.stringify({ where: 'browser', ...line })}`);

// One engine's CPU rows: each thread count's first-round page, its speed replaced by the median
// over the rounds (each round's figure beside it); the all-cores row also carries the ratio to
// one thread and to TensorFlow.js's wasm backend within each round, and their medians.
async function cpuRounds(engine) {
  const runs = [
    (first) => measure({ engine, backend: 'cpu', threads: 1 }, first),
    (first) => measure({ engine, backend: 'cpu', threads: null }, first),
    () => measureTfjs(engine),
  ];
  const pages = runs.map(() => []);
  for (let round = 0; round < ROUNDS; round += 1) {
    const order = runs.map((_, i) => i);
    if (round % 2) order.reverse();
    for (const i of order) pages[i].push(await runs[i](round === 0));
  }
  // TF.js's page states its batches and windows itself (scripts/tfjs-bench.js): they must be the
  // app's, or the ratio compares different work.
  const [app, tfjs] = [pages[1][0].result, pages[2][0].result];
  if (app.batches !== tfjs.batches || app.batch_size !== tfjs.batch_size || app.window_samples_per_second.length !== tfjs.window_samples_per_second.length) {
    throw new Error(`TensorFlow.js timed other batches than the app: ${tfjs.batches} of ${tfjs.batch_size} in ${tfjs.window_samples_per_second.length} windows against ${app.batches} of ${app.batch_size} in ${app.window_samples_per_second.length}`);
  }
  const speeds = pages.map((list) => list.map((p) => p.result.samples_per_second));
  const byRound = (of, to) => speeds[of].map((speed, round) => speed / speeds[to][round]);
  const [ratios, againstTfjs] = [byRound(1, 0), byRound(1, 2)];
  const said = (list) => `${list.map((r) => `x${r.toFixed(2)}`).join(', ')} (median x${median(list).toFixed(2)})`;
  console.log(`${engine}: all cores against one thread by round ${said(ratios)}`);
  const tfjsThreads = pages[2][0].result.threads;
  console.log(`${engine}: all cores against TensorFlow.js (wasm, ${tfjsThreads} thread${tfjsThreads === 1 ? '' : 's'}) by round ${said(againstTfjs)}`);
  pages.forEach((list, i) => {
    const { result } = list[0];
    const rounds = {
      samples_per_second: median(speeds[i]),
      ms_per_batch: 1000 * result.batch_size / median(speeds[i]),
      round_samples_per_second: speeds[i],
    };
    if (result.gflops) rounds.gflops = result.gflops * median(speeds[i]) / result.samples_per_second;
    if (i === 1) {
      Object.assign(rounds, {
        ratio_to_one_thread_by_round: ratios,
        ratio_to_one_thread: median(ratios),
        ratio_to_tfjs_by_round: againstTfjs,
        ratio_to_tfjs: median(againstTfjs),
      });
    }
    report({ user_agent: list[0].user_agent, result: { ...result, ...rounds } });
  });
}

const stopServer = await serveApp();
let failed = false;
const attempt = (label, work) => work().catch((error) => {
  console.error(`benchmark failed on ${label}: ${error.message}`);
  failed = true;
});
if (wanted('cpu')) {
  for (const engine of ENGINES) await attempt(`${engine} cpu`, () => cpuRounds(engine));
}
for (const run of WEBGPU) await attempt(`${run.engine} ${run.backend}`, async () => report(await measure(run, true)));
stopServer();
process.exitCode = failed ? 1 : 0;
