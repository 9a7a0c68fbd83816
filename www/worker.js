// Training runs here, off the main thread: the wasm module, the data and the model live in this
// worker; the page only draws what it is told.
// Two builds of one library: mnist7k.js (WebGPU, and the CPU on one thread) and, where the page is
// cross-origin isolated, mnist7k-threads.js (the CPU on every core: rayon on Web Workers that
// share its memory). The page says which to load.
const LIBRARIES = { single: '../mnist7k.js', threads: '../mnist7k-threads.js' };
let lib = null;

const CACHE = 'mnist7k-data-v1';

let app = null;
// Settles once the module is instantiated: network questions need only that, not the data.
let initialised = null;
let backend = 'cpu';
let stopRequested = false;
let training = false;

const post = (message, transfer) => self.postMessage(message, transfer ?? []);
let lastStatus = null;
const status = (state, text, kind) => {
  lastStatus = { state, text };
  post({ type: 'status', state, text, kind });
};
const messageOf = (error) => (error && error.message) || String(error);

// Yields to the event loop (a task, unlike a resolved promise) so Stop and predict get through.
function nextTask() {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => resolve();
    channel.port2.postMessage(null);
  });
}

// The Cache API, or null where the browser refuses it (private windows, some policies).
async function openCache(name = CACHE) {
  if (!('caches' in self)) return null;
  try {
    return await caches.open(name);
  } catch (error) {
    storageNotice(error);
    return null;
  }
}

let storageWarned = false;
function storageNotice(error) {
  if (storageWarned) return;
  storageWarned = true;
  post({ type: 'notice', kind: 'storage', text: `The browser refused to keep the data (${messageOf(error)}): it will be downloaded again next visit.` });
}

async function download(url, name) {
  let response;
  try {
    response = await fetch(url);
  } catch (error) {
    throw Object.assign(new Error(`${name}.gz could not be downloaded (${messageOf(error)})`), { kind: 'data' });
  }
  if (!response.ok) {
    throw Object.assign(new Error(`${name}.gz could not be downloaded (HTTP ${response.status}); run the set-up so that data/ holds the MNIST files`), { kind: 'data' });
  }
  return new Uint8Array(await response.arrayBuffer());
}

// The four data files, from the cache where it holds them (`useCache`), else from the network.
async function fetchAll(base, cache, useCache) {
  const files = [];
  for (const [i, name] of lib.dataFiles().entries()) {
    status('loading', `Loading ${name} (${i + 1}/4)…`);
    const url = new URL(`${base}${name}.gz`, self.location.href).href;
    const hit = useCache && cache ? await cache.match(url) : undefined;
    const bytes = hit ? new Uint8Array(await hit.arrayBuffer()) : await download(url, name);
    files.push({ url, bytes, cached: Boolean(hit) });
  }
  return files;
}

// Only data that passed the checks is cached; a cached copy that fails them is evicted and the
// files are fetched again, so one bad response cannot break later visits.
async function loadData(base) {
  let cache = await openCache();
  let files = await fetchAll(base, cache, true);
  const check = () => {
    status('loading', 'Checking the data…');
    return app.loadData(...files.map((f) => f.bytes));
  };
  let summary;
  try {
    summary = check();
  } catch (error) {
    if (!files.some((f) => f.cached)) throw error;
    // A deleted cache's handle writes nowhere: open the cache afresh for the checked files.
    await caches.delete(CACHE).catch(() => {});
    cache = await openCache();
    status('loading', 'The stored data was damaged: downloading it again…');
    files = await fetchAll(base, null, false);
    summary = check();
  }
  const fresh = files.filter((f) => !f.cached);
  if (cache && fresh.length > 0) {
    try {
      await Promise.all(fresh.map((f) => cache.put(f.url, new Response(f.bytes))));
    } catch (error) {
      storageNotice(error);
    }
  }
  return { ...summary, cached: fresh.length === 0 };
}

// Picks the backend: WebGPU when asked for (or auto) and an adapter exists, the CPU otherwise,
// always with the reason shown to the person. Null: another worker carries on (auto's timing
// of the CPU on every core, or WebGPU after it lost).
async function chooseBackend(choice, cpuThreads, gpuTimed) {
  if (gpuTimed) return cpuAgainst(gpuTimed, false);
  if (choice === 'cpu') return { name: 'cpu', reason: 'chosen in the settings' };
  if (!('gpu' in navigator) || !navigator.gpu) {
    return { name: 'cpu', reason: 'this browser has no WebGPU' };
  }
  let adapter = null;
  try {
    adapter = await navigator.gpu.requestAdapter();
  } catch (error) {
    return { name: 'cpu', reason: `WebGPU adapter request failed: ${messageOf(error)}` };
  }
  if (!adapter) return { name: 'cpu', reason: 'WebGPU found no adapter' };
  try {
    await app.useBackend('webgpu');
  } catch (error) {
    return { name: 'cpu', reason: `WebGPU failed to start: ${messageOf(error)}` };
  }
  const info = adapter.info || {};
  const what = [info.vendor, info.architecture, info.device].filter(Boolean).join(' ') || 'adapter found';
  if (choice === 'webgpu') return { name: 'webgpu', reason: `chosen in the settings (${what})`, gpu: true };
  return fasterOfBoth(what, cpuThreads);
}

// What "auto" times on each backend: ten batches of 64 of the report's network, the first two
// (shader compilation on WebGPU) not counted. For networks this small, dispatch overhead can make
// a GPU slower than the CPU (software adapters are 15-30x slower): only a measurement tells.
const PROBE = { batch_size: 64, warmup_batches: 2, windows: 1, batches_per_window: 8 };
const perSecond = (value) => Math.round(value).toLocaleString('en');

// auto's verdict per adapter, kept a week: on a slow adapter the timing takes ~20 s, too long
// to repeat on every visit. Choosing webgpu or cpu in the settings overrides it.
const AUTO_CACHE = 'mnist7k-auto-v1';
const REMEMBERED_MS = 7 * 24 * 3600 * 1000;
// The CPU's figure depends on its thread count, so the verdict is kept per adapter and count.
const autoKey = (adapter, cpuThreads) => new URL(`auto-backend/${encodeURIComponent(adapter)}/${cpuThreads}`, self.location.href).href;

async function rememberedVerdict(adapter, cpuThreads) {
  const cache = await openCache(AUTO_CACHE);
  const response = await cache?.match(autoKey(adapter, cpuThreads)).catch(() => undefined);
  const verdict = await response?.json().catch(() => null);
  const fresh = verdict && Date.now() - verdict.at < REMEMBERED_MS && Number.isFinite(verdict.gpu + verdict.cpu);
  return fresh ? verdict : null;
}

async function rememberVerdict(adapter, cpuThreads, figures) {
  const cache = await openCache(AUTO_CACHE);
  await cache?.put(autoKey(adapter, cpuThreads), new Response(JSON.stringify({ ...figures, at: Date.now() }))).catch(() => {});
}

function verdictOf({ gpu, cpu, perStep }, adapter, remembered) {
  const figures = `webgpu ${perSecond(gpu)} samples/s, cpu ${perSecond(cpu)} samples/s`;
  const name = cpu >= gpu ? 'cpu' : 'webgpu';
  const how = remembered ? 'timed on an earlier visit' : 'just timed';
  const cost = perStep ? `; webgpu: ${Math.round(perStep.dispatches)} dispatches and ${perStep.reads.toFixed(1)} reads per step` : '';
  return { name, reason: `${figures} (${how}): using ${name} (${adapter}${cost})`, gpu: name === 'webgpu', figures: { gpu, cpu } };
}

// WebGPU is the selected backend when this starts. The CPU is timed on the threads it will train
// on: here (this module's one), or in the all-cores module, where the page takes WebGPU's figure.
async function fasterOfBoth(adapter, cpuThreads) {
  const known = await rememberedVerdict(adapter, cpuThreads ?? threads);
  if (known) {
    const verdict = verdictOf(known, adapter, true);
    if (verdict.name === 'cpu') await app.useBackend('cpu');
    return verdict;
  }
  status('loading', 'Timing a few training batches on WebGPU and on the CPU to pick the faster…');
  let gpu;
  let perStep;
  try {
    const probe = await timed(PROBE);
    gpu = probe.samples_per_second;
    perStep = { dispatches: probe.dispatches_per_step, reads: probe.reads_per_step };
  } catch (error) {
    await app.useBackend('cpu');
    return { name: 'cpu', reason: `WebGPU failed while being timed: ${messageOf(error)}` };
  }
  if (cpuThreads && cpuThreads !== threads) {
    post({ type: 'gpu-timed', adapter, gpu, perStep });
    return null;
  }
  const verdict = await cpuAgainst({ adapter, gpu, perStep }, true);
  if (verdict.name === 'webgpu') await app.useBackend('webgpu');
  return verdict;
}

// The CPU timed against WebGPU's figure, and the verdict kept. Where WebGPU wins in a worker
// that did not start it (the all-cores module has none), the page starts one that does.
async function cpuAgainst({ adapter, gpu, perStep }, gpuStarted) {
  status('loading', `Timing a few training batches on the CPU (${threads} thread${threads === 1 ? '' : 's'})…`);
  await app.useBackend('cpu');
  const cpu = (await app.bench(PROBE)).samples_per_second;
  await rememberVerdict(adapter, threads, { gpu, cpu, perStep });
  const verdict = verdictOf({ gpu, cpu, perStep }, adapter, false);
  if (verdict.name === 'webgpu' && !gpuStarted) {
    post({ type: 'prefer-webgpu', reason: verdict.reason });
    return null;
  }
  return verdict;
}

// The all-cores module's thread count: rayon's pool is built once per instance, so a new count
// takes a new worker (the page starts one).
let threads = 1;

async function instantiate(variant, module, wanted) {
  lib = await import(LIBRARIES[variant]);
  await lib.default({ module_or_path: module });
  if (variant === 'threads') {
    // The page gives up on a start that never answers (its watchdog names this stage).
    status('loading', `Starting ${wanted} threads…`);
    // Meanwhile this thread only waits, and its beats tell the page it is not stuck: in Firefox it
    // sometimes blocks for good inside wasm-bindgen-rayon's `new Worker` (main.js).
    post({ type: 'threads-beat' });
    const beat = setInterval(() => post({ type: 'threads-beat' }), 1000);
    try {
      await lib.initThreadPool(wanted);
    } finally {
      clearInterval(beat);
    }
    threads = wanted;
  }
}

async function start({ module, variant, threads: wanted, backendChoice, cpuThreads, gpuTimed, dataBase }) {
  initialised = instantiate(variant, module, wanted);
  try {
    await initialised;
  } catch (error) {
    // The page decides: the all-cores module falls back to the other, the other is an error.
    post({ type: 'module-failed', variant, message: messageOf(error) });
    return;
  }
  try {
    post({ type: 'settings', bounds: lib.settingsBounds(), choices: lib.settingsChoices(), presets: lib.presets() });
    app = new lib.Mnist7k();
    const data = await loadData(dataBase);
    post({ type: 'data', summary: data });
    const chosen = await chooseBackend(backendChoice, cpuThreads, gpuTimed);
    if (!chosen) return;
    if (chosen.name === 'cpu') await app.useBackend('cpu');
    backend = chosen.name;
    post({ type: 'backend', name: chosen.name, reason: chosen.reason, figures: chosen.figures ?? null, threads });
    status('idle', 'Ready to train');
  } catch (error) {
    status('error', messageOf(error), error?.kind ?? 'data');
  }
}

// A failure as the page needs it: what happened and whether the CPU can carry on.
function failure(error) {
  return {
    backend,
    kind: error?.kind ?? 'device',
    recovery: error?.recovery ?? (backend === 'webgpu' ? 'fall_back_to_cpu' : 'report'),
    message: messageOf(error),
  };
}

async function train({ config, resume }) {
  stopRequested = false;
  training = true;
  status('training', resume ? `Resuming on ${backend} after epoch ${resume.history.length}…` : 'Training…');
  try {
    const summary = await app.train(config, resume ?? null, async (event) => {
      post({ type: 'event', event });
      if (event.type === 'epoch') post({ type: 'checkpoint', checkpoint: app.checkpoint() });
      await nextTask();
      return !stopRequested;
    });
    training = false;
    post({ type: 'trained', summary, checkpoint: app.checkpoint() });
    await sendMetrics();
  } catch (error) {
    training = false;
    // The finished epochs' best weights stay loaded here (drawing works) and go to the page.
    post({ type: 'train-failed', ...failure(error), checkpoint: app.checkpoint(), weights: app.weightsJson() ?? null });
  }
}

async function sendMetrics() {
  status('training', 'Computing metrics on the training file and the test set…');
  try {
    // Each chunk waits for a task turn, so drawing predictions are answered in between.
    const metrics = await app.metrics((done, total) => {
      post({ type: 'metrics-progress', done, total });
      return nextTask();
    });
    const gallery = metrics.misclassified.slice(0, 48).map((m) => ({ ...m, pixels: app.testImage(m.index) }));
    post({ type: 'metrics', metrics, gallery, weights: app.weightsJson() });
    status('done', `Done: test accuracy ${(metrics.test_accuracy * 100).toFixed(2)}%`);
  } catch (error) {
    status('error', `Metrics failed: ${messageOf(error)}`, error?.kind);
  }
}

async function predict({ ink, width, height, id }) {
  try {
    const pixels = app.preprocess(ink, width, height);
    if (!pixels) {
      post({ type: 'prediction', id, preview: null, probabilities: null, ...look(null) });
      return;
    }
    const probabilities = await app.predict(pixels);
    post({ type: 'prediction', id, preview: pixels, probabilities, ...look(pixels) });
  } catch (error) {
    post({ type: 'prediction', id, error: messageOf(error) });
  }
}

// The filters and, for a drawing, the activation maps of the weights metrics use (their filters
// alone while the pad is empty).
function look(pixels) {
  try {
    const inside = app.inside(pixels ?? new Float32Array(784));
    if (!pixels) inside.activations = [];
    return { inside, insideNote: pixels ? '' : 'Draw a digit to see what each convolution makes of it.' };
  } catch (error) {
    return { inside: null, insideNote: `Nothing to show: ${messageOf(error)}.` };
  }
}

// WebGPU's cost per training step, as the browser sees it: compute dispatches and buffer maps
// (GPU-to-CPU reads). wgpu's calls go through these prototypes, which are patched once to count.
const gpuCalls = { dispatches: 0, reads: 0 };
if (self.GPUComputePassEncoder && self.GPUBuffer) {
  const counted = (proto, name, key) => {
    const original = proto[name];
    if (!original) return;
    proto[name] = function count(...args) {
      gpuCalls[key] += 1;
      return original.apply(this, args);
    };
  };
  counted(GPUComputePassEncoder.prototype, 'dispatchWorkgroups', 'dispatches');
  counted(GPUComputePassEncoder.prototype, 'dispatchWorkgroupsIndirect', 'dispatches');
  counted(GPUBuffer.prototype, 'mapAsync', 'reads');
}

// A benchmark's result, with WebGPU's dispatches and reads per training step when it ran there.
async function timed(config) {
  const before = { ...gpuCalls };
  const result = await app.bench(config);
  if (result.backend === 'webgpu') {
    result.dispatches_per_step = (gpuCalls.dispatches - before.dispatches) / result.batches;
    result.reads_per_step = (gpuCalls.reads - before.reads) / result.batches;
  }
  return result;
}

// The speed test trains its own fresh model, so the status it interrupts comes back after it.
async function bench({ config }) {
  const before = lastStatus;
  status('training', `Measuring the training speed on ${backend}…`);
  try {
    post({ type: 'bench', result: await timed(config ?? null) });
  } catch (error) {
    post({ type: 'bench', error: messageOf(error) });
  }
  status(before.state, before.text);
}

// `origin` comes back unchanged: the page shows a file's network in the editor, but not that of
// the weights it restores into a fresh worker.
function loadWeights({ json, origin }) {
  try {
    const network = app.loadWeights(json);
    post({ type: 'weights-loaded', network: network ?? null, origin: origin ?? null });
    if (!training) sendMetrics();
  } catch (error) {
    post({ type: 'notice', kind: error?.kind ?? 'weights', text: `Could not load the weights file: ${messageOf(error)}` });
  }
}

// The designer's question: the network (or a link's text of one) checked against the budget,
// with its summary. Answered from the moment the module is up, before the data has loaded;
// `id` comes back so that the page can drop answers to edits it has since superseded.
async function describeNetwork({ id, network, text, budget }) {
  // A module that failed to start has already said so in the status line.
  if (!(await initialised?.then(() => true, () => false))) return;
  let parsed = network ?? null;
  if (typeof text === 'string') {
    try {
      parsed = lib.networkFromText(text);
    } catch (error) {
      post({ type: 'network', id, network: null, text, summary: null, error: { message: messageOf(error), layer: null } });
      return;
    }
  }
  try {
    // No summary: the object is not a network (error says why) and has no text either.
    const { summary, error } = lib.networkSummary(parsed, budget);
    post({ type: 'network', id, network: parsed, text: summary ? lib.networkToText(parsed) : null, summary, error: error ?? null });
  } catch (error) {
    post({ type: 'network', id, network: parsed, text: null, summary: null, error: { message: messageOf(error), layer: null } });
  }
}

// An imported run file, checked by Rust (format, settings, weights against the network).
async function checkRun({ id, json }) {
  if (!(await initialised?.then(() => true, () => false))) {
    post({ type: 'run-read', id, error: 'the app could not start' });
    return;
  }
  try {
    post({ type: 'run-read', id, run: lib.readRun(json) });
  } catch (error) {
    post({ type: 'run-read', id, error: messageOf(error) });
  }
}

self.onmessage = ({ data }) => {
  switch (data.type) {
    case 'start': return start(data);
    case 'train': return train(data);
    case 'stop': stopRequested = true; return undefined;
    case 'predict': return predict(data);
    case 'bench': return bench(data);
    case 'load-weights': return loadWeights(data);
    case 'network': return describeNetwork(data);
    case 'read-run': return checkRun(data);
    default: return undefined;
  }
};

// A trap inside wasm (for example a lost GPU device) lands here: the instance is dead, so the
// page restarts on the CPU from the checkpoint it holds. Handled here only (preventDefault), so
// that the page hears of it once.
let crashed = false;
function crash(message) {
  if (crashed) return;
  crashed = true;
  const kind = backend === 'webgpu' ? 'device' : 'crash';
  post({ type: 'train-failed', ...failure({ kind, message: `the worker crashed: ${message}` }), checkpoint: null, weights: null });
}
self.addEventListener('error', (event) => {
  event.preventDefault();
  crash(event.message || 'unknown error');
});
self.addEventListener('unhandledrejection', (event) => {
  event.preventDefault();
  crash(messageOf(event.reason));
});
