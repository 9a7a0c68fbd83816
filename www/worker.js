// Training runs here, off the main thread: the wasm module, the data and the model live in this
// worker; the page only draws what it is told.
import init, { Mnist7k } from '../mnist7k.js';

const DATA_FILES = [
  'train-images-idx3-ubyte', 'train-labels-idx1-ubyte',
  't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte',
];
const CACHE = 'mnist7k-data-v1';

let app = null;
let backend = 'cpu';
let stopRequested = false;
let training = false;

const post = (message, transfer) => self.postMessage(message, transfer ?? []);
let lastStatus = null;
const status = (state, text) => {
  lastStatus = { state, text };
  post({ type: 'status', state, text });
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

// Fetches a data file once; later visits read it from the Cache API, not the network.
async function fetchCached(base, name) {
  const url = new URL(`${base}${name}.gz`, self.location.href).href;
  const cache = 'caches' in self ? await caches.open(CACHE).catch(() => null) : null;
  let response = cache ? await cache.match(url) : undefined;
  const cached = Boolean(response);
  if (!response) {
    response = await fetch(url);
    if (!response.ok) {
      throw new Error(`${name}.gz could not be downloaded (HTTP ${response.status}); run the set-up so that data/ holds the MNIST files`);
    }
    if (cache) await cache.put(url, response.clone()).catch(() => {});
  }
  return { bytes: new Uint8Array(await response.arrayBuffer()), cached };
}

async function loadData(base) {
  const files = [];
  let cachedCount = 0;
  for (const [i, name] of DATA_FILES.entries()) {
    status('loading', `Loading ${name} (${i + 1}/4)…`);
    const { bytes, cached } = await fetchCached(base, name);
    cachedCount += cached ? 1 : 0;
    files.push(bytes);
  }
  status('loading', 'Checking the data…');
  const summary = app.loadData(files[0], files[1], files[2], files[3]);
  return { ...summary, cached: cachedCount === DATA_FILES.length };
}

// Picks the backend: WebGPU when asked for (or auto) and an adapter exists, the CPU otherwise,
// always with the reason shown to the person.
async function chooseBackend(choice) {
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
  const what = [info.vendor, info.architecture, info.device].filter(Boolean).join(' ');
  return { name: 'webgpu', reason: what ? `adapter: ${what}` : 'adapter found', gpu: true };
}

async function start({ module, backendChoice, dataBase }) {
  try {
    await init({ module_or_path: module });
    app = new Mnist7k();
    const data = await loadData(dataBase);
    post({ type: 'data', summary: data });
    const chosen = await chooseBackend(backendChoice);
    if (chosen.name === 'cpu') await app.useBackend('cpu');
    backend = chosen.name;
    post({ type: 'backend', name: chosen.name, reason: chosen.reason });
    status('idle', 'Ready to train');
  } catch (error) {
    status('error', messageOf(error));
  }
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
    post({ type: 'train-failed', backend, message: messageOf(error) });
  }
}

async function sendMetrics() {
  status('training', 'Computing metrics on the training file and the test set…');
  try {
    const metrics = await app.metrics((done, total) => post({ type: 'metrics-progress', done, total }));
    const gallery = metrics.misclassified.slice(0, 48).map((m) => ({ ...m, pixels: app.testImage(m.index) }));
    post({ type: 'metrics', metrics, gallery, weights: app.weightsJson() });
    status('done', `Done: test accuracy ${(metrics.test_accuracy * 100).toFixed(2)}%`);
  } catch (error) {
    status('error', `Metrics failed: ${messageOf(error)}`);
  }
}

async function predict({ ink, width, height, id }) {
  try {
    const pixels = app.preprocess(ink, width, height);
    if (!pixels) {
      post({ type: 'prediction', id, preview: null, probabilities: null });
      return;
    }
    const probabilities = await app.predict(pixels);
    post({ type: 'prediction', id, preview: pixels, probabilities });
  } catch (error) {
    post({ type: 'prediction', id, error: messageOf(error) });
  }
}

// The speed test trains its own fresh model, so the status it interrupts comes back after it.
async function bench({ config }) {
  const before = lastStatus;
  status('training', `Measuring the training speed on ${backend}…`);
  try {
    post({ type: 'bench', result: await app.bench(config ?? null) });
  } catch (error) {
    post({ type: 'bench', error: messageOf(error) });
  }
  status(before.state, before.text);
}

function loadWeights({ json }) {
  try {
    app.loadWeights(json);
    post({ type: 'weights-loaded' });
    if (!training) sendMetrics();
  } catch (error) {
    post({ type: 'notice', text: `Could not load the weights file: ${messageOf(error)}` });
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
    default: return undefined;
  }
};

// A trap inside wasm (for example a lost GPU device) lands here; the page restarts on the CPU.
self.addEventListener('error', (event) => {
  post({ type: 'train-failed', backend, message: event.message || 'the worker crashed' });
});
self.addEventListener('unhandledrejection', (event) => {
  post({ type: 'train-failed', backend, message: messageOf(event.reason) });
});
