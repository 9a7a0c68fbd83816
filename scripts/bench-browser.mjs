// The benchmark in Chromium, through the app as users get it: `trunk serve` (release build),
// training in the page's worker, the "Measure speed" button pressed by playwright-core, as the
// end-to-end tests drive the page. Once on the CPU (flex, SIMD128) and once on WebGPU
// (SwiftShader here). Prints one `BENCH_JSON {...}` line per run, as tests/bench.rs does.
import { MINUTE, WEBGPU_ARGS, byId, measureSpeed, openPage, serveApp, waitForState } from '../tests/e2e/harness.mjs';

const RUNS = [
  { backend: 'cpu', args: [] },
  { backend: 'webgpu', args: WEBGPU_ARGS },
];

async function measure({ backend, args }) {
  const { browser, page, errors, open } = await openPage(args, `?backend=${backend}`);
  try {
    await open();
    await waitForState(page, 'idle', 5 * MINUTE);
    const active = await byId(page, 'backend-active').getAttribute('data-backend');
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
