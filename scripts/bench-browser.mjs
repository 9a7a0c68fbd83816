// The benchmark in Chromium, through the app as users get it: `trunk serve` (release build),
// training in the page's worker, the "Measure speed" button pressed by puppeteer-core, as the
// end-to-end tests drive the page. Once on the CPU (flex, SIMD128) and once on WebGPU
// (SwiftShader here). Prints one `BENCH_JSON {...}` line per run, as tests/bench.rs does.
import { MINUTE, attr, measureSpeed, openPage, serveApp, waitForState } from '../tests/e2e/harness.mjs';

const RUNS = [
  { backend: 'cpu', webgpu: false },
  { backend: 'webgpu', webgpu: true },
];

async function measure({ backend, webgpu }) {
  const { browser, page, errors, open } = await openPage({ engine: 'chromium', webgpu, query: `?backend=${backend}` });
  try {
    await open();
    await waitForState(page, 'idle', 5 * MINUTE);
    const active = await attr(page, 'backend-active', 'data-backend');
    if (active !== backend) throw new Error(`asked for ${backend}, the page runs ${active}`);
    const result = await measureSpeed(page, 20 * MINUTE);
    const userAgent = await page.evaluate(() => navigator.userAgent);
    console.log(`BENCH_JSON ${JSON.stringify({ where: 'browser', user_agent: userAgent, result })}`);
  } catch (error) {
    throw new Error(`${backend}: ${error.message} ${errors.join(' | ')}`);
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
