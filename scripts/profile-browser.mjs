// Where the all-cores module's training time goes, in Chromium: the app as `trunk serve` builds
// it, its all-cores module answered instead by a build that keeps its function names, each
// worker sampled by DevTools' profiler while "Measure speed" runs, self time per function, and on
// two threads what each pool thread runs while the other has nothing to do.
// `node scripts/profile-browser.mjs [THREADS]` (default 2). A pool thread blocked in
// `Atomics.wait` may not answer the profiler; it is then reported as such. PROFILE_TOP=N lists N
// functions per worker (default 12).
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { MINUTE, measureSpeed, openPage, serveApp, waitForState } from '../tests/e2e/harness.mjs';

const THREADS = Number(process.argv[2] ?? 2);
const TOP = Number(process.env.PROFILE_TOP ?? 12);
const named = mkdtempSync(join(tmpdir(), 'mnist7k-profile-'));
execFileSync('bash', ['scripts/build-threads.sh', named], { stdio: 'inherit' });
const withNames = [(url) => basename(new URL(url).pathname).startsWith('mnist7k-threads'), async (url) => {
  const name = basename(new URL(url).pathname);
  return { body: await readFile(join(named, name)), contentType: name.endsWith('.wasm') ? 'application/wasm' : 'text/javascript' };
}];

// A pool thread's samples as [time, leaf function, the innermost frame of our own crate or burn's].
function timeline({ nodes, samples, timeDeltas, startTime }) {
  const byId = new Map(nodes.map((node) => [node.id, node]));
  const parent = new Map(nodes.flatMap((node) => (node.children ?? []).map((child) => [child, node.id])));
  const ours = (id) => {
    for (let at = id; at !== undefined; at = parent.get(at)) {
      const name = byId.get(at).callFrame.functionName;
      if (/^<?(mnist7k|burn_\w+)\[/.test(name)) return name;
    }
    return '(none)';
  };
  let time = startTime;
  return samples.map((id, i) => {
    time += timeDeltas[i];
    return [time, byId.get(id).callFrame.functionName || '(anonymous)', ours(id)];
  });
}

// Rayon looking for work, or asleep: a thread with nothing to do.
const WAITING = /steal|find_work|keep_busy|yield_now|take_local_job|spawn_broadcast|Condvar.*wait|wait_until|\(idle\)/;

// While one pool thread has nothing to do, what the other runs: the work that keeps a step
// from using both, tallied by the other's innermost frame of our crate or burn's.
function overlap(a, b) {
  const busy = new Map();
  let j = 0;
  let waiting = 0;
  for (const [time, leaf] of a) {
    if (!WAITING.test(leaf)) continue;
    while (j + 1 < b.length && b[j + 1][0] <= time) j += 1;
    const [, otherLeaf, otherOurs] = b[j];
    if (WAITING.test(otherLeaf)) continue;
    waiting += 1;
    busy.set(otherOurs, (busy.get(otherOurs) ?? 0) + 1);
  }
  return { waiting, of: a.length, busy };
}

const within = (promise, ms) => Promise.race([promise, new Promise((resolve) => setTimeout(() => resolve(null), ms))]);
const stopServer = await serveApp();
const { browser, page, open } = await openPage({ query: `?backend=cpu&threads=${THREADS}`, routes: [withNames] });
try {
  const workers = [];
  const pool = [];
  page.on('workercreated', (worker) => workers.push(worker));
  await open();
  await waitForState(page, 'idle', 5 * MINUTE);
  for (const worker of workers) {
    await worker.client.send('Profiler.enable');
    await worker.client.send('Profiler.setSamplingInterval', { interval: 200 });
    await worker.client.send('Profiler.start');
  }
  const speed = await measureSpeed(page, 5 * MINUTE);
  console.log(`Measure speed, profiled: ${Math.round(speed.samples_per_second)} samples/s on ${speed.threads} threads`);
  for (const worker of workers) {
    const what = worker.url().endsWith('worker.js') ? 'the training worker' : `a pool thread (${worker.url()})`;
    const stopped = await within(worker.client.send('Profiler.stop'), 10_000);
    if (!stopped) {
      console.log(`\n${what}: no answer from its profiler`);
      continue;
    }
    const { nodes, samples, timeDeltas } = stopped.profile;
    const byId = new Map(nodes.map((node) => [node.id, node.callFrame.functionName || '(anonymous)']));
    if (!worker.url().endsWith('worker.js')) pool.push(timeline(stopped.profile));
    const self = new Map();
    let total = 0;
    samples.forEach((id, i) => {
      const name = byId.get(id);
      self.set(name, (self.get(name) ?? 0) + timeDeltas[i]);
      total += timeDeltas[i];
    });
    console.log(`\n${what}: ${Math.round(total / 1000)} ms sampled`);
    for (const [name, micros] of [...self].sort((a, b) => b[1] - a[1]).slice(0, TOP)) {
      console.log(`${(100 * micros / total).toFixed(1).padStart(5)}%  ${name.slice(0, 140)}`);
    }
  }
  if (pool.length === 2) {
    for (const [a, b] of [[0, 1], [1, 0]]) {
      const { waiting, of, busy } = overlap(pool[a], pool[b]);
      console.log(`\npool thread ${a + 1} had nothing to do in ${(100 * waiting / of).toFixed(1)}% of its samples while pool thread ${b + 1} worked in:`);
      for (const [name, count] of [...busy].sort((x, y) => y[1] - x[1]).slice(0, TOP)) {
        console.log(`${(100 * count / of).toFixed(1).padStart(5)}%  ${name.slice(0, 140)}`);
      }
    }
  }
} finally {
  await browser.close();
  stopServer();
}
