// The bad-input catalogue, in Chromium and Firefox: every case ends in a clear message in the
// page, of the right kind (the status line's data-kind), with no hang, and keeps whatever was
// trained. Bad data is served by intercepting requests; WebGPU failures are simulated by
// serving the worker with a prelude that breaks the GPU API the way a real failure would.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BASE, BROWSERS, MINUTE, click, disabled, noticeText, openPage, serveApp, status, text, typeInto,
  unexpected, waitForState,
} from './harness.mjs';

let stopServer = () => {};
before(async () => { stopServer = await serveApp(); });
after(() => stopServer());

const endsWith = (name) => (url) => new URL(url).pathname.endsWith(name);
const served = async (path) => Buffer.from(await (await fetch(new URL(path, BASE))).arrayBuffer());

// An IDX header (magic, count) followed by `bytes` bytes of payload.
function idx(magic, count, bytes) {
  const header = Buffer.alloc(8);
  header.writeUInt32BE(magic, 0);
  header.writeUInt32BE(count, 4);
  return Buffer.concat([header, Buffer.alloc(bytes)]);
}

const DATA_CASES = [
  {
    name: 'a missing data file (HTTP 404)',
    file: 't10k-labels-idx1-ubyte.gz',
    respond: async () => ({ status: 404, body: 'not found' }),
    message: /t10k-labels-idx1-ubyte\.gz could not be downloaded \(HTTP 404\)/,
    allowed: [/404/],
  },
  {
    name: 'a truncated file',
    file: 'train-labels-idx1-ubyte.gz',
    respond: async () => ({ body: idx(0x801, 60_000, 92) }),
    message: /train-labels-idx1-ubyte is truncated: it should hold 60008 bytes but has 100/,
  },
  {
    name: 'a file with the wrong magic number',
    file: 't10k-labels-idx1-ubyte.gz',
    respond: async () => ({ body: 'not an idx file' }),
    message: /t10k-labels-idx1-ubyte is not an MNIST labels file: magic number 0x6e6f7420/,
  },
  {
    name: 'swapped image and label files',
    file: 'train-labels-idx1-ubyte.gz',
    respond: async () => ({ body: await served('data/train-images-idx3-ubyte.gz') }),
    message: /train-labels-idx1-ubyte is not an MNIST labels file: magic number 0x00000803, expected 0x00000801/,
  },
  {
    name: 'a corrupt gzip file',
    file: 't10k-images-idx3-ubyte.gz',
    respond: async () => ({ body: Buffer.from([0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]) }),
    message: /t10k-images-idx3-ubyte could not be decompressed/,
  },
];

// The worker script with `prelude` run first (module imports are hoisted above it, which is
// fine: importing mnist7k.js touches no GPU).
function workerWith(prelude) {
  return [endsWith('/www/worker.js'), async () => ({
    body: `${prelude}\n${(await served('www/worker.js')).toString()}`,
    contentType: 'text/javascript',
  })];
}

const waitForStatusText = (page, pattern, timeout = 5 * MINUTE) => page.waitForFunction(
  (source) => new RegExp(source).test(document.querySelector('[data-testid="status"]').textContent),
  { timeout, polling: 200 }, pattern.source,
);


for (const engine of BROWSERS) {
  for (const c of DATA_CASES) {
    test(`${engine}: ${c.name} is named in the page`, { timeout: 10 * MINUTE }, async () => {
      const { browser, page, errors, open } = await openPage({ engine, query: '?backend=cpu', routes: [[endsWith(`/data/${c.file}`), c.respond]] });
      try {
        await open();
        await waitForState(page, 'error', 5 * MINUTE);
        const now = await status(page);
        assert.match(now.text, c.message);
        assert.equal(now.kind, 'data');
        assert.equal(await disabled(page, 'train'), true, 'nothing to train on');
        assert.deepEqual(unexpected(errors, ...(c.allowed ?? [])), []);
      } finally {
        await browser.close();
      }
    });
  }

  test(`${engine}: a poisoned cache entry is evicted and fetched again`, { timeout: 10 * MINUTE }, async () => {
    const { browser, page, errors, open } = await openPage({ engine, query: '?backend=cpu' });
    try {
      await open();
      await waitForState(page, 'idle', 5 * MINUTE);
      const url = new URL('data/t10k-labels-idx1-ubyte.gz', page.url()).href;
      const sizeInCache = () => page.evaluate(async (u) => {
        const hit = await (await caches.open('mnist7k-data-v1')).match(u);
        return hit ? (await hit.arrayBuffer()).byteLength : null;
      }, url);
      const good = await sizeInCache();
      assert.ok(good > 1000, `the checked file was cached (${good} bytes)`);
      await page.evaluate(async (u) => (await caches.open('mnist7k-data-v1')).put(u, new Response('poison')), url);
      await page.reload();
      await waitForState(page, 'idle', 5 * MINUTE);
      assert.equal(await sizeInCache(), good, 'the poisoned entry was replaced by the real file');
      assert.match(await text(page, 'class-counts'), /5923/);
      assert.deepEqual(unexpected(errors), []);
    } finally {
      await browser.close();
    }
  });

  test(`${engine}: storage the browser refuses is said, and the app still works`, { timeout: 10 * MINUTE }, async () => {
    // As in a private window where the Cache API throws.
    const prelude = `self.caches.open = () => Promise.reject(new DOMException('The operation is insecure.', 'SecurityError'));`;
    const { browser, page, errors, open } = await openPage({ engine, query: '?backend=cpu', routes: [workerWith(prelude)] });
    try {
      await open();
      await waitForState(page, 'idle', 5 * MINUTE);
      assert.match(await noticeText(page), /The browser refused to keep the data \(The operation is insecure\.\): it will be downloaded again next visit\./);
      assert.match(await text(page, 'class-counts'), /5923/);
      assert.deepEqual(unexpected(errors), []);
    } finally {
      await browser.close();
    }
  });

  test(`${engine}: invalid settings from the link and the form are refused with their names`, { timeout: 10 * MINUTE }, async () => {
    const { browser, page, errors, open } = await openPage({ engine, query: '?lr=abc&backend=foo' });
    try {
      await open();
      await waitForState(page, 'idle', 5 * MINUTE);
      assert.match(await noticeText(page), /The link's backend "foo" is not one of auto, webgpu, cpu: using auto\./);
      await click(page, 'train');
      await waitForStatusText(page, /Learning rate: "abc" is not a number/);
      assert.equal((await status(page)).kind, 'config');
      await typeInto(page, 'lr', '0.001');
      for (const [id, value, message] of [
        ['batch', '0', /batch size must be at least 1 and at most 4096, got 0/],
        ['epochs', '-1', /epochs must be at least 1 and at most 1000, got -1/],
        ['eps', '0', /Adam's epsilon must be greater than 0 and at most 1, got 0/],
      ]) {
        const before = await page.$eval(`[data-testid="${id}"]`, (e) => e.value);
        await typeInto(page, id, value);
        await click(page, 'train');
        await waitForStatusText(page, message);
        const now = await status(page);
        assert.equal(now.state, 'error');
        assert.equal(now.kind, 'config', now.text);
        // A bad setting is not a device failure: no CPU fallback, and Train stays available.
        assert.doesNotMatch(await text(page, 'backend-active'), /WebGPU failed/);
        assert.equal(await disabled(page, 'train'), false);
        await typeInto(page, id, before);
      }
      assert.deepEqual(unexpected(errors), []);
    } finally {
      await browser.close();
    }
  });

  test(`${engine}: bad weights files are refused and the trained weights stay`, { timeout: 15 * MINUTE }, async () => {
    const { browser, page, errors, open } = await openPage({ engine, query: '?backend=cpu&epochs=1&limit=512' });
    const dir = mkdtempSync(join(tmpdir(), 'mnist7k-weights-'));
    try {
      await open();
      await waitForState(page, 'idle', 5 * MINUTE);
      await click(page, 'train');
      await waitForState(page, 'training', MINUTE);
      await waitForState(page, 'done', 10 * MINUTE);
      const origin = () => page.$eval('#metrics-origin', (e) => e.textContent);
      assert.match(await origin(), /^Weights of epoch 1 \(lowest validation loss\)/);
      const files = [
        ['not-json.json', 'hello', /Could not load the weights file: not an mnist7k weights file: expected value/],
        ['other-network.json', JSON.stringify({ format: 'mnist7k-weights-v1', tensors: [{ name: 'conv1.weight', shape: [4, 1, 3, 3], values: new Array(36).fill(0) }] }),
          /weights file should hold 10 tensors, it holds 1/],
        ['nan.json', JSON.stringify({ format: 'mnist7k-weights-v1', tensors: [{ name: 'conv1.weight', shape: [1], values: [NaN] }] }),
          /not an mnist7k weights file: invalid type: null, expected f32/],
        ['huge.json', `{"format": "${'x'.repeat(50_000_000)}"}`, /the weights file is 50\.0 MB/],
      ];
      for (const [name, contents, message] of files) {
        const path = join(dir, name);
        writeFileSync(path, contents);
        const input = await page.$('#load-weights');
        await input.uploadFile(path);
        await page.waitForFunction((source) => new RegExp(source).test(document.querySelector('#notice').textContent), { timeout: 2 * MINUTE, polling: 200 }, message.source)
          .catch(async (error) => { throw new Error(`${name}: notice "${await noticeText(page)}" (${error.message})`); });
        // The trained weights are still the ones in use and can still be saved.
        assert.match(await origin(), /^Weights of epoch 1 /, name);
        assert.equal(await page.$eval('#save-weights', (e) => e.disabled), false, name);
      }
      assert.deepEqual(unexpected(errors), []);
    } finally {
      await browser.close();
    }
  });

  test(`${engine}: a failing WebGPU adapter request falls back to the CPU with the reason`, { timeout: 10 * MINUTE }, async () => {
    const prelude = `if (self.navigator.gpu) Object.getPrototypeOf(self.navigator.gpu).requestAdapter = () => Promise.reject(new Error('simulated adapter failure'));`;
    const { browser, page, errors, open } = await openPage({ engine, webgpu: true, routes: [workerWith(prelude)] });
    try {
      await open();
      await waitForState(page, 'idle', 5 * MINUTE);
      assert.match(await text(page, 'backend-active'), /^cpu — WebGPU adapter request failed: simulated adapter failure/);
      assert.deepEqual(unexpected(errors), []);
    } finally {
      await browser.close();
    }
  });

  test(`${engine}: the GPU lost in the second epoch: the run finishes on the CPU from epoch 1`, { timeout: 30 * MINUTE }, async () => {
    // Once the worker has reported epoch 1's checkpoint, the next GPU submission throws, as a
    // lost device does inside wgpu: the wasm instance traps and the worker is dead.
    const prelude = `
      const realPost = self.postMessage.bind(self);
      let armed = false;
      self.postMessage = (message, transfer) => { if (message?.type === 'checkpoint') armed = true; return realPost(message, transfer); };
      if (self.GPUQueue) {
        const submit = GPUQueue.prototype.submit;
        GPUQueue.prototype.submit = function (...args) { if (armed) throw new Error('simulated device loss'); return submit.apply(this, args); };
      }`;
    const { browser, page, errors, open } = await openPage({
      engine, webgpu: true, query: '?backend=webgpu&epochs=2&limit=256&batch=64', routes: [workerWith(prelude)],
    });
    try {
      await open();
      await waitForState(page, 'idle', 5 * MINUTE);
      assert.match(await text(page, 'backend-active'), /^webgpu/);
      await click(page, 'train');
      await waitForState(page, 'done', 25 * MINUTE);
      assert.match(await noticeText(page), /WebGPU failed \(.*simulated device loss.*\)\. Training continues on the CPU from epoch 1's weights\./);
      assert.match(await text(page, 'backend-active'), /^cpu — WebGPU failed during training/);
      assert.match(await page.$eval('#metrics-origin', (e) => e.textContent), /2 epochs trained: 1 on webgpu, 1 on cpu\./);
      // The crash itself is the provoked failure; nothing else went wrong.
      assert.deepEqual(unexpected(errors, /simulated device loss/), []);
    } finally {
      await browser.close();
    }
  });

  // A worker lost mid-run on the CPU: a trap (its error event), or silence (a dead thread of the
  // all-cores module leaves the others waiting forever). The page replaces the worker, keeps the
  // finished epoch's weights, offers the run for resuming, and the resumed run finishes.
  const LOST = [
    ['crashes', 'self.dispatchEvent(new ErrorEvent(\'error\', { message: \'simulated trap\' }))',
      /^Training stopped: the worker crashed: simulated trap\. The finished epoch is kept: the best one's weights are in use, and the run can be resumed from epoch 1\.$/],
    ['goes silent', 'self.postMessage = () => {}',
      /^Training stopped: the training worker stopped answering \(nothing for 120 s\)\. The finished epoch is kept: the best one's weights are in use, and the run can be resumed from epoch 1\.$/],
  ];
  for (const [how, act, notice] of LOST) {
    if (how === 'goes silent' && engine !== 'chromium') continue; // page logic alone: one browser
    test(`${engine}: a CPU worker that ${how} mid-run is replaced, and the run resumes from its last epoch`, { timeout: 15 * MINUTE }, async () => {
      // The first worker to checkpoint an epoch misbehaves, once: every worker asks the test
      // (not a count of loads: a worker may also be replaced before training, when the all-cores
      // module falls back to one thread).
      const prelude = `
        const realPost = self.postMessage.bind(self);
        self.postMessage = (message, transfer) => {
          realPost(message, transfer);
          if (message?.type === 'checkpoint') {
            fetch('/misbehave-once').then((r) => r.text()).then((answer) => { if (answer === 'yes') { ${act}; } });
          }
        };`;
      let workers = 0;
      let workersBefore = null;
      const routes = [
        [endsWith('/www/worker.js'), async () => {
          workers += 1;
          return { body: `${prelude}\n${(await served('www/worker.js')).toString()}`, contentType: 'text/javascript' };
        }],
        [endsWith('/misbehave-once'), async () => {
          const first = workersBefore === null;
          if (first) workersBefore = workers;
          return { body: first ? 'yes' : 'no', contentType: 'text/plain' };
        }],
      ];
      const { browser, page, errors, open } = await openPage({ engine, query: '?backend=cpu&epochs=2&limit=1024&batch=64', routes });
      try {
        await open();
        await waitForState(page, 'idle', 5 * MINUTE);
        console.log(`${engine} worker ${how}, training on: ${await text(page, 'backend-active')}`);
        await click(page, 'train');
        await page.waitForFunction(() => /^Training stopped/.test(document.querySelector('#notice').textContent), { timeout: 5 * MINUTE, polling: 500 });
        // The new worker shows the kept weights' metrics.
        await waitForState(page, 'done', 5 * MINUTE);
        const said = await noticeText(page);
        console.log(`${engine} worker ${how}: ${said}`);
        assert.match(said, notice);
        assert.equal(await page.$eval('[data-testid="resume"]', (e) => e.hidden), false, 'the run is offered for resuming');
        assert.match(await text(page, 'resume'), /from epoch 1 \(of 2\)/);
        assert.equal(await page.$eval('#save-weights', (e) => e.disabled), false, 'the kept weights can be saved');
        assert.equal(workers, workersBefore + 1, 'one replacement worker');
        await page.$eval('[data-testid="resume"] button', (b) => b.click());
        await page.waitForFunction(() => / 2 epochs trained: 2 on cpu\./.test(document.querySelector('#metrics-origin').textContent), { timeout: 10 * MINUTE, polling: 500 });
        await waitForState(page, 'done', MINUTE);
        assert.deepEqual(unexpected(errors, /simulated trap/), []);
      } finally {
        await browser.close();
      }
    });
  }

  test(`${engine}: a diverging run is reported as divergence, not as a device failure`, { timeout: 10 * MINUTE }, async () => {
    const { browser, page, errors, open } = await openPage({ engine, query: '?backend=cpu&lr=0.9&epochs=2&limit=2048' });
    try {
      await open();
      await waitForState(page, 'idle', 5 * MINUTE);
      await click(page, 'train');
      await waitForState(page, 'error', 5 * MINUTE);
      const now = await status(page);
      assert.equal(now.kind, 'divergence', now.text);
      assert.match(now.text, /training diverged: the running loss reached .* far above the 2\.30 of guessing; try a lower learning rate than 0\.9/);
      assert.match(await text(page, 'backend-active'), /^cpu/);
      assert.equal(await disabled(page, 'train'), false);
      assert.deepEqual(unexpected(errors), []);
    } finally {
      await browser.close();
    }
  });
}
