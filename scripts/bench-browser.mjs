// The benchmark in the browsers, through the app as users get it: `trunk serve` (release build),
// training in the page's worker, the "Measure speed" button pressed by puppeteer-core, as the
// end-to-end tests drive the page. The CPU (flex, SIMD128) on one thread and on every core (the
// all-cores module) in Chromium and Firefox, and WebGPU in Chromium (SwiftShader here). Prints one
// `BENCH_JSON {...}` line per run, as tests/bench.rs does.
import { MINUTE, attr, measureSpeed, openPage, serveApp, waitForState } from '../tests/e2e/harness.mjs';

const RUNS = [
  ...['chromium', 'firefox'].flatMap((engine) => [
    { engine, backend: 'cpu', threads: 1 },
    { engine, backend: 'cpu', threads: null },
  ]),
  { engine: 'chromium', backend: 'webgpu', webgpu: true },
];

async function measure({ engine, backend, webgpu = false, threads }) {
  const query = `?backend=${backend}${threads ? `&threads=${threads}` : ''}`;
  const { browser, page, errors, open } = await openPage({ engine, webgpu, query });
  try {
    await open();
    await waitForState(page, 'idle', 5 * MINUTE);
    const active = await attr(page, 'backend-active', 'data-backend');
    if (active !== backend) throw new Error(`asked for ${backend}, the page runs ${active}`);
    const result = await measureSpeed(page, 20 * MINUTE);
    const userAgent = await page.evaluate(() => navigator.userAgent);
    console.log(`BENCH_JSON ${JSON.stringify({ where: 'browser', user_agent: userAgent, result })}`);
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
