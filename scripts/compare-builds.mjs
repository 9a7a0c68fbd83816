// Two builds of the app side by side in one run, where this machine's speed drifts too much for
// runs minutes apart to compare: `node scripts/compare-builds.mjs BEFORE_DIST AFTER_DIST`, each a
// `make dist` output (copy dist/ away between builds). Each is served by `python3 -m http.server`
// (its service worker brings cross-origin isolation); per round and browser, Measure speed on two
// threads for both builds, in alternating order, then on one thread for the second build. Each
// figure is a page's second press (a first press in Chromium runs before V8 has optimised the
// module). COMPARE_ROUNDS (default 3) and COMPARE_ENGINES (default chromium,firefox).
import { spawn } from 'node:child_process';
import { MINUTE, measureWarmSpeed, openPage, waitForState } from '../tests/e2e/harness.mjs';

const dirs = process.argv.slice(2, 4);
if (dirs.length !== 2) throw new Error('usage: node scripts/compare-builds.mjs BEFORE_DIST AFTER_DIST');
const rounds = Number(process.env.COMPARE_ROUNDS ?? 3);
const engines = (process.env.COMPARE_ENGINES ?? 'chromium,firefox').split(',');

const servers = [];
const builds = {};
for (const [name, dir, port] of [['before', dirs[0], 8201], ['after', dirs[1], 8202]]) {
  servers.push(spawn('python3', ['-m', 'http.server', String(port), '--bind', '127.0.0.1'], { cwd: dir, stdio: 'ignore' }));
  builds[name] = `http://127.0.0.1:${port}/`;
}
await new Promise((resolve) => setTimeout(resolve, 1000));

const rows = [];
async function measure(engine, build, threads) {
  const { browser, page } = await openPage({ engine });
  try {
    await page.goto(`${builds[build]}?backend=cpu&threads=${threads}`);
    await waitForState(page, 'idle', 5 * MINUTE);
    const { samples_per_second: speed, final_loss: loss } = await measureWarmSpeed(page, 10 * MINUTE);
    const row = { engine, build, threads, samples_per_second: Math.round(speed), loss };
    console.log(JSON.stringify(row));
    rows.push(row);
  } catch (error) {
    console.log(`${engine} ${build} ${threads} thread(s) failed: ${error.message.slice(0, 300)}`);
  } finally {
    await browser.close();
  }
}

try {
  for (let round = 0; round < rounds; round += 1) {
    for (const engine of engines) {
      for (const build of round % 2 ? ['after', 'before'] : ['before', 'after']) await measure(engine, build, 2);
      await measure(engine, 'after', 1);
    }
  }
} finally {
  servers.forEach((server) => server.kill());
}

const mean = (list) => list.reduce((a, b) => a + b, 0) / list.length;
for (const engine of engines) {
  const speeds = (build, threads) => rows.filter((r) => r.engine === engine && r.build === build && r.threads === threads).map((r) => r.samples_per_second);
  const one = speeds('after', 1);
  if (one.length === 0) continue;
  const line = (build) => {
    const list = speeds(build, 2);
    return `${build} ${Math.round(mean(list))} (${Math.min(...list)}–${Math.max(...list)}, x${(mean(list) / mean(one)).toFixed(2)})`;
  };
  console.log(`${engine}: 1 thread ${Math.round(mean(one))} (${Math.min(...one)}–${Math.max(...one)}); 2 threads ${line('before')}, ${line('after')}`);
}
