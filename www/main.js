// Wires the page: the training worker, the settings, the network designer, the views. Holds the
// latest checkpoint so that a failing WebGPU run carries on on the CPU without losing finished
// epochs.
import { createControls } from './controls.js';
import { createNetworkEditor } from './network.js';
import { createChart } from './charts.js';
import { createProgress } from './progress.js';
import { createPad } from './pad.js';
import { createInside } from './inside.js';
import { showMetrics, showClassCounts } from './metrics.js';
import { createRuns } from './runs.js';

const $ = (id) => document.getElementById(id);
const testid = (id) => document.querySelector(`[data-testid="${id}"]`);

// A host that sends no isolation headers gets them from a service worker (isolation-sw.js), which
// takes over the page from its next load: the page reloads once, at most once per tab session.
async function isolateThroughServiceWorker() {
  if (self.crossOriginIsolated || !window.isSecureContext || !('serviceWorker' in navigator)) return false;
  const ISOLATING = 'mnist7k-isolating';
  try {
    if (navigator.serviceWorker.controller || sessionStorage.getItem(ISOLATING)) return false;
    await navigator.serviceWorker.register(new URL('isolation-sw.js', document.baseURI).href);
    await navigator.serviceWorker.ready;
    sessionStorage.setItem(ISOLATING, '1');
  } catch {
    // Storage or service workers refused (private windows, policies): one thread, said below.
    return false;
  }
  window.location.reload();
  return true;
}
if (await isolateThroughServiceWorker()) await new Promise(() => {});

// The CPU trains on every core in the all-cores module (rayon on Web Workers that share its
// memory), which needs a cross-origin isolated page; elsewhere, and for WebGPU, on one thread in
// the other module. The thread count defaults to the cores the browser reports.
const CORES = Math.max(1, navigator.hardwareConcurrency || 1);
const SHARED_MEMORY = self.crossOriginIsolated === true && typeof SharedArrayBuffer === 'function';
const threadsField = testid('threads');
threadsField.max = String(4 * CORES);
threadsField.defaultValue = String(SHARED_MEMORY ? CORES : 1);
threadsField.title = SHARED_MEMORY
  ? `Threads for CPU training (this browser reports ${CORES} cores); a new count restarts the worker`
  : 'One thread: training on several needs a cross-origin isolated page (shared memory)';
const controls = createControls($('config'));
if (!SHARED_MEMORY) threadsField.value = '1';
const progress = createProgress({
  status: testid('status'),
  backend: testid('backend-active'),
  notice: $('notice'),
  bar: $('progress'),
  text: $('progress-text'),
  epochTime: testid('epoch-time'),
  bench: testid('bench-result'),
});
const lossChart = createChart($('chart-loss'), { title: 'loss (cross-entropy)', digits: 2, log: true });
// The report's test accuracy: the bar a network designed here sets out to pass.
const accuracyChart = createChart($('chart-accuracy'), { title: 'accuracy', digits: 3, accuracy: true, reference: { label: "the report's test accuracy (99.1%)", value: 0.991 } });
const buttons = {
  train: $('train'), stop: $('stop'), bench: $('bench'), save: $('save-weights'), load: $('load-weights'),
};

// Every edit is summarised by the worker; Train waits for a network it accepted. The link keeps
// the worker's text of the network (`net`), except for the report's, which needs none.
let networkState = { accepted: false, refusal: null };
const editor = createNetworkEditor({
  preset: testid('preset'),
  layers: $('layers'),
  output: $('network-output'),
  addType: testid('layer-type'),
  add: testid('add-layer'),
  budget: testid('budget'),
  error: testid('budget-error'),
  summary: testid('network-summary'),
  total: testid('param-total'),
  budgetShown: $('budget-shown'),
  meter: $('budget-meter'),
}, {
  send: (message) => worker?.postMessage(message),
  onChange: ({ accepted, refusal, text, preset }) => {
    networkState = { accepted, refusal };
    if (text !== null) {
      controls.setLinked('net', preset === editor.defaultPreset ? null : text);
      controls.setLinked('preset', null);
    }
    setRunning(running !== null);
  },
  onUnreadable: (text, message) => progress.addNotice(`The link's network "${text}" could not be read (${message}): showing the report's network.`),
  onPresetChosen: ({ name, settings, recipe }) => {
    controls.applyRecipe(settings);
    $('preset-recipe').textContent = `${name}: ${recipe}.`;
  },
});
let editorStarted = false;

// The first network shown: the link's (`net`, else `preset`), else the report's.
function startEditor() {
  editorStarted = true;
  const net = controls.linked('net');
  const preset = controls.linked('preset');
  if (net !== null) {
    editor.askText(net);
    return;
  }
  if (preset !== null && !editor.hasPreset(preset)) {
    progress.addNotice(`The link's preset "${preset}" is not one of ${editor.presetIds().join(', ')}: using ${editor.defaultPreset}.`);
  }
  editor.choose(preset ?? editor.defaultPreset);
}

// The module is compiled once here (streaming, off the main thread) and handed to every worker,
// a CPU fallback included. A dropped connection is retried (the dev server may be rebuilding);
// what finally fails names the file and the reason.
async function fetchWasm(url, attempts = 3) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      const response = await fetch(url);
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      return response;
    } catch (error) {
      if (attempt >= attempts) throw new Error(`${url}: ${error.message} (after ${attempts} attempts)`);
      await new Promise((resolve) => setTimeout(resolve, 1000 * attempt));
    }
  }
}

async function compileWasm(name) {
  const response = await fetchWasm(new URL(name, document.baseURI).href);
  // Streaming compilation needs `application/wasm`; deciding up front avoids cloning the
  // response, which would hold a second copy of the 24 MB body until it is collected.
  if (response.headers.get('Content-Type')?.startsWith('application/wasm')) {
    return WebAssembly.compileStreaming(response);
  }
  return WebAssembly.compile(await response.arrayBuffer());
}

// Each module is downloaded and compiled at most once, when first needed.
const modules = {};
const wasmModule = (variant) => {
  modules[variant] ??= compileWasm(variant === 'threads' ? 'mnist7k-threads_bg.wasm' : 'mnist7k_bg.wasm');
  return modules[variant];
};
// Why the all-cores module is not used, once that is known (a host without it, a failed start).
let singleThreadReason = SHARED_MEMORY ? null : 'the page is not cross-origin isolated';

// Each run is kept (runs.js): written after every epoch, offered for resuming after a reload.
// Run files are checked by Rust in the worker before they are kept.
const pendingReads = new Map();
let nextRead = 0;
const runs = await createRuns({
  table: testid('runs'),
  resume: testid('resume'),
  exportTable: $('runs-csv'),
  importFile: testid('run-import'),
}, {
  onProblem: (text) => progress.addNotice(text),
  readRun: (json) => new Promise((resolve, reject) => {
    if (!worker) {
      reject(new Error('the app is still starting'));
      return;
    }
    nextRead += 1;
    pendingReads.set(nextRead, { resolve, reject });
    worker.postMessage({ type: 'read-run', id: nextRead, json });
  }),
  // A kept run's best weights (metrics and drawing use them) and its curves.
  onLoad: (run) => {
    if (running) return;
    series = emptySeries();
    for (const record of run.checkpoint.history) onEpoch(record);
    redraw();
    worker?.postMessage({ type: 'load-weights', json: JSON.stringify(run.checkpoint.best_weights), origin: 'file' });
  },
  onTrainAgain: (run) => {
    showSettings(run.settings);
    progress.showNotice(`The settings of "${run.name}" are in the form: press Train to run them again.`);
  },
  onResume: (run) => resumeRun(run),
  onCompare: () => redraw(),
});

// A kept run's network and every setting into the editor and the form.
function showSettings(settings) {
  editor.setNetwork(settings.network);
  controls.applyRecipe(settings, { everything: true });
}

let worker = null;
let backendName = null;
let running = null; // { config, checkpoint } while a run is in progress
let benching = false;
let latestWeights = null;
let series = emptySeries();

function emptySeries() {
  return {
    loss: { train: [], validation: [], batch: [] },
    accuracy: { train: [], validation: [], batch: [] },
  };
}

// The run on screen, then the kept runs ticked for comparison (their finished epochs).
function redraw() {
  const compared = runs.compared().filter((run) => run !== runs.current());
  const curve = (key, label, kept) => ({
    label,
    train: kept.map((r) => [r.epoch, r[`train_${key}`]]),
    validation: kept.map((r) => [r.epoch, r[`val_${key}`]]),
    batch: [],
  });
  for (const [chart, key] of [[lossChart, 'loss'], [accuracyChart, 'accuracy']]) {
    chart.update([
      { label: 'this run', ...series[key] },
      ...compared.map((run) => curve(key, run.name, run.checkpoint?.history ?? [])),
    ]);
  }
}

function setRunning(isRunning) {
  const busy = isRunning || benching || backendName === null;
  buttons.train.disabled = busy || !networkState.accepted;
  buttons.train.title = networkState.refusal ? `The network is refused: ${networkState.refusal.message}` : '';
  buttons.bench.disabled = busy;
  buttons.stop.disabled = !isRunning;
  controls.setEnabled(!isRunning && !benching);
  editor.setEnabled(!isRunning && !benching);
}

const pad = createPad({
  canvas: testid('pad'),
  preview: testid('pad-preview'),
  clear: testid('pad-clear'),
  prediction: testid('prediction'),
  bars: testid('probabilities'),
}, (request) => worker?.postMessage({ type: 'predict', ...request }, [request.ink.buffer]));

const inside = createInside({ filters: testid('filters'), activations: testid('activations'), note: $('inside-note') });

function onEvent(event) {
  if (event.type === 'batch') {
    progress.batch(event, running.config.epochs);
    if (event.loss !== null) {
      const x = event.epoch - 1 + event.batch / event.batches;
      series.loss.batch.push([x, event.loss]);
      series.accuracy.batch.push([x, event.accuracy]);
    }
  } else if (event.type === 'epoch') {
    onEpoch(event);
    progress.epoch(event);
  }
  redraw();
}

function onEpoch(record) {
  series.loss.train.push([record.epoch, record.train_loss]);
  series.loss.validation.push([record.epoch, record.val_loss]);
  series.accuracy.train.push([record.epoch, record.train_accuracy]);
  series.accuracy.validation.push([record.epoch, record.val_accuracy]);
}

// The worker trains; the page keeps the time it last heard from it.
let lastHeard = 0;
function train(config, resume) {
  lastHeard = Date.now();
  worker.postMessage({ type: 'train', config, resume });
}

// A CPU training worker silent this long is lost: a batch takes well under a second, and every
// epoch, validation pass and chunk of metrics posts something. (A thread of the all-cores module
// that traps leaves the others waiting for it forever, in silence.) WebGPU is left out: its first
// batch compiles shaders, minutes on a software adapter.
const SILENT_MS = 120_000;
setInterval(() => {
  if (running && backendName === 'cpu' && Date.now() - lastHeard > SILENT_MS) {
    workerLost(`the training worker stopped answering (nothing for ${SILENT_MS / 1000} s)`);
  }
}, 5_000);

// A worker lost mid-run (a crash, or silence) is replaced, and nothing trained is lost: the best
// weights of the finished epochs go to the new worker (drawing and Save use them), and the run
// stays in the table as interrupted, offered for resuming from its last finished epoch.
function workerLost(message) {
  const kept = running?.checkpoint ?? null;
  const epochs = kept?.history.length ?? 0;
  if (running) runs.release();
  running = null;
  if (epochs > 0) {
    latestWeights = JSON.stringify(kept.best_weights);
    buttons.save.disabled = false;
  }
  progress.showNotice(epochs > 0
    ? `Training stopped: ${message}. ${epochs === 1 ? 'The finished epoch is' : `The ${epochs} finished epochs are`} kept: the best one's weights are in use, and the run can be resumed from epoch ${epochs}.`
    : `Training stopped: ${message}. No epoch had finished: train again to start over.`);
  startWorker(controls.backendChoice(), null, () => {
    if (epochs > 0) worker.postMessage({ type: 'load-weights', json: latestWeights, origin: 'restore' });
  });
}

// WebGPU failed (a device error or a trapped wasm instance): a fresh worker on the CPU resumes
// from the last finished epoch.
function fallBackToCpu(message) {
  const resume = running?.checkpoint ?? null;
  const epochs = resume ? resume.history.length : 0;
  progress.showNotice(`WebGPU failed (${message}). Training continues on the CPU from ${epochs ? `epoch ${epochs}'s weights` : 'the start'}.`);
  startWorker('cpu', 'WebGPU failed during training', () => {
    train(running.config, resume);
  });
}

function trainingFailed({ kind, recovery, message, checkpoint, weights }) {
  benching = false;
  if (running && recovery === 'fall_back_to_cpu') {
    fallBackToCpu(message);
    return;
  }
  if (running && kind === 'crash') {
    workerLost(message);
    return;
  }
  const kept = checkpoint ?? running?.checkpoint ?? null;
  if (running) {
    runs.ended('failed');
    runs.release();
  }
  running = null;
  setRunning(false);
  progress.setStatus('error', `Training failed: ${message}`);
  progress.setKind(kind);
  if (weights) {
    latestWeights = weights;
    buttons.save.disabled = false;
  }
  if (kept && kept.history.length > 0) {
    progress.showNotice(`The weights of epoch ${kept.best_epoch} (lowest validation loss of the ${kept.history.length} finished epochs) are kept: draw a digit or save them.`);
  }
}

const handlers = {
  status: ({ state, text, kind }) => {
    progress.setStatus(state, text);
    if (kind) progress.setKind(kind);
  },
  data: ({ summary }) => showClassCounts(testid('class-counts'), summary.class_counts),
  backend: ({ name, reason }) => {
    backendName = name;
    progress.setBackend(name, reason);
    setRunning(running !== null);
  },
  event: ({ event }) => onEvent(event),
  checkpoint: ({ checkpoint }) => {
    if (!running) return;
    running.checkpoint = checkpoint;
    runs.checkpoint(checkpoint, backendName);
  },
  'run-read': ({ id, run, error }) => {
    const pending = pendingReads.get(id);
    pendingReads.delete(id);
    if (error) pending?.reject(new Error(error));
    else pending?.resolve(run);
  },
  trained: ({ summary }) => {
    runs.ended(summary.stopped ? 'stopped' : summary.early_stopped ? 'early_stopped' : 'finished');
    if (summary.stopped) progress.showNotice('Stopped: metrics and predictions use the weights trained so far.');
    else if (summary.early_stopped) progress.showNotice(`Early stopping after epoch ${summary.epochs}: validation loss stopped improving; the best epoch's weights are used.`);
    running = null;
    setRunning(false);
  },
  'train-failed': trainingFailed,
  settings: ({ bounds, choices, presets }) => {
    controls.applyBounds(bounds);
    for (const problem of controls.applyChoices(choices ?? [])) progress.addNotice(problem);
    editor.setPresets(presets ?? []);
    // A replaced worker (another backend) lost any question in flight: ask it again.
    if (editorStarted) editor.resend();
    else startEditor();
  },
  network: (reply) => editor.answered(reply),
  metrics: ({ metrics, gallery, weights }) => {
    runs.metrics(metrics);
    latestWeights = weights;
    buttons.save.disabled = !weights;
    showMetrics({
      origin: $('metrics-origin'),
      train: testid('report-train'),
      test: testid('report-test'),
      confusion: testid('confusion'),
      gallery: testid('misclassified'),
    }, { metrics, gallery, weightsFrom: metrics.weights_from });
    pad.refresh();
  },
  bench: (reply) => {
    benching = false;
    setRunning(running !== null);
    progress.showBench(backendName, reply);
  },
  'metrics-progress': ({ done, total }) => progress.evaluation(done, total),
  prediction: (reply) => {
    pad.answered(reply);
    if (!reply.error) inside.show(reply.inside, reply.insideNote);
  },
  notice: ({ text }) => progress.showNotice(text),
  // A file brings its architecture; weights restored into a fresh worker leave the editor alone
  // (it may have been edited since they were trained).
  'weights-loaded': ({ network, origin }) => {
    if (origin === 'file') progress.showNotice('Weights loaded.');
    if (network && origin === 'file') editor.setNetwork(network);
  },
};

// Instantiating the module and starting its threads takes a second or two; a worker that never
// answers (a thread that never starts, a request the server holds) must not leave the page
// loading in silence: past this, it is a failed start (the all-cores module falls back to one
// thread, with the reason).
const MODULE_START_MS = 60_000;
// While the all-cores worker starts its threads, its own thread beats once a second. In Firefox
// that thread sometimes blocks for good inside `new Worker` (here about one start in 25, with or
// without the service worker); a fresh worker gets past it. Silence this long is such a start.
const THREADS_SILENCE_MS = 10_000;
const STUCK_STARTS = 3;
let stuckStarts = 0;

// The CPU goes to the all-cores module; WebGPU (and "auto", which times it) to the other, which
// hands over to the all-cores module when the CPU wins. Auto times the CPU where it would train:
// the other module passes WebGPU's figure (`gpuTimed`) to the all-cores one, which times its
// threads against it and hands back when WebGPU wins.
function startWorker(choice, reason, onReady, gpuTimed = null) {
  worker?.terminate();
  backendName = null;
  benching = false;
  setRunning(running !== null);
  const threads = Math.max(1, parseInt(threadsField.value, 10) || 1);
  const variant = singleThreadReason === null && (choice === 'cpu' || !('gpu' in navigator)) ? 'threads' : 'single';
  const current = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  worker = current;
  // A replaced worker may still have messages in flight: only the current one is heard.
  current.onmessage = ({ data }) => {
    if (worker !== current) return;
    lastHeard = Date.now();
    if (data.type === 'backend' && data.name === 'cpu' && variant === 'single' && singleThreadReason === null) {
      startWorker('cpu', reason ?? data.reason, onReady);
      return;
    }
    if (data.type === 'gpu-timed') {
      startWorker('cpu', null, onReady, data);
      return;
    }
    if (data.type === 'prefer-webgpu') {
      startWorker('webgpu', data.reason, onReady);
      return;
    }
    if (data.type === 'module-failed') {
      moduleFailed(data.message);
      return;
    }
    if (data.type === 'threads-beat') {
      clearTimeout(stall);
      stall = setTimeout(stuck, THREADS_SILENCE_MS);
      return;
    }
    if (data.type === 'status') stage = data.text;
    if (data.type === 'settings') {
      quiet();
      stuckStarts = 0;
    }
    if (data.type === 'backend') {
      const cores = data.name !== 'cpu' ? ''
        : `; ${data.threads} thread${data.threads === 1 ? '' : 's'}${singleThreadReason ? ` (${singleThreadReason})` : ''}`;
      data.reason = `${reason && data.name === choice ? reason : data.reason}${cores}`;
    }
    handlers[data.type]?.(data);
    if (data.type === 'backend') onReady?.();
  };
  current.onerror = (event) => {
    event.preventDefault();
    if (worker !== current) return;
    quiet();
    trainingFailed({ kind: 'crash', recovery: 'report', message: event.message || 'the worker could not start' });
  };
  // A browser without wasm threads, say: one thread in the other module.
  const moduleFailed = (message) => {
    quiet();
    if (variant !== 'threads') {
      progress.setStatus('error', `The WebAssembly module could not start: ${message}`);
      return;
    }
    singleThreadReason = `the all-cores module could not start: ${message}`;
    startWorker(choice, reason, onReady, gpuTimed);
  };
  let stage = variant === 'threads' ? `Loading the all-cores WebAssembly module (${threads} threads)…` : 'Loading the WebAssembly module…';
  let watchdog;
  let stall;
  const quiet = () => {
    clearTimeout(watchdog);
    clearTimeout(stall);
  };
  const stuck = () => {
    if (worker !== current) return;
    quiet();
    current.terminate();
    stuckStarts += 1;
    if (stuckStarts < STUCK_STARTS) {
      startWorker(choice, reason, onReady, gpuTimed);
      progress.setStatus('loading', `The all-cores module stopped answering while starting ${threads} threads: trying again in a fresh worker (${stuckStarts + 1} of ${STUCK_STARTS})…`);
      return;
    }
    stuckStarts = 0;
    moduleFailed(`it stopped answering while starting its threads, ${STUCK_STARTS} times`);
  };
  progress.setStatus('loading', stage);
  wasmModule(variant).then(
    (module) => {
      if (worker !== current) return;
      const cpuThreads = singleThreadReason === null ? threads : null;
      current.postMessage({ type: 'start', module, variant, threads, cpuThreads, gpuTimed, backendChoice: choice, dataBase: new URL('data/', document.baseURI).href });
      watchdog = setTimeout(() => {
        if (worker !== current) return;
        current.terminate();
        moduleFailed(`no answer within ${MODULE_START_MS / 1000} s (at "${stage}")`);
      }, MODULE_START_MS);
    },
    (error) => {
      if (variant === 'threads') {
        singleThreadReason = `the all-cores module could not be loaded: ${error.message}`;
        startWorker(choice, reason, onReady, gpuTimed);
        return;
      }
      progress.setStatus('error', `The WebAssembly module could not be loaded: ${error.message}`);
    },
  );
}

buttons.train.addEventListener('click', () => {
  let config;
  try {
    config = { ...controls.config(), network: editor.network() };
  } catch (error) {
    progress.setStatus('error', `Invalid setting: ${error.message}`);
    progress.setKind('config');
    return;
  }
  progress.showNotice(null);
  lossChart.setTitle(`loss (${(config.loss ?? 'cross_entropy').replaceAll('_', '-')})`);
  series = emptySeries();
  redraw();
  running = { config, checkpoint: null };
  const preset = testid('preset');
  runs.started({
    config,
    backend: backendName,
    params: Number(testid('param-total').textContent),
    name: `${preset.selectedOptions[0]?.textContent ?? 'network'}, ${new Date().toLocaleTimeString('en-GB')}`,
  });
  setRunning(true);
  train(config, null);
});

// Carries on a run a reload interrupted, from its last finished epoch (weights and optimizer
// state), with its own settings; its curves start with the epochs already trained.
function resumeRun(run) {
  if (running || backendName === null) {
    progress.showNotice(running ? 'A run is in progress: stop it first.' : 'The app is still starting: try again in a moment.');
    return;
  }
  showSettings(run.settings);
  series = emptySeries();
  for (const record of run.checkpoint.history) onEpoch(record);
  redraw();
  running = { config: run.settings, checkpoint: run.checkpoint };
  runs.started({ run });
  setRunning(true);
  progress.showNotice(null);
  train(run.settings, run.checkpoint);
}

buttons.bench.addEventListener('click', () => {
  benching = true;
  setRunning(false);
  // The network in the editor is the one timed (Rust refuses one it cannot build).
  worker.postMessage({ type: 'bench', config: { network: editor.network() } });
});

buttons.stop.addEventListener('click', () => {
  worker.postMessage({ type: 'stop' });
  buttons.stop.disabled = true;
});

buttons.save.addEventListener('click', () => {
  const link = document.createElement('a');
  link.href = URL.createObjectURL(new Blob([latestWeights], { type: 'application/json' }));
  link.download = 'mnist7k-weights.json';
  link.click();
  URL.revokeObjectURL(link.href);
});

buttons.load.addEventListener('change', async () => {
  const file = buttons.load.files[0];
  if (file) worker.postMessage({ type: 'load-weights', json: await file.text(), origin: 'file' });
  buttons.load.value = '';
});

// A new backend or thread count takes a fresh worker; the weights in use come along.
const restartWorker = () => {
  startWorker(controls.backendChoice(), null, () => {
    if (latestWeights) worker.postMessage({ type: 'load-weights', json: latestWeights, origin: 'restore' });
  });
};
controls.onBackendChange(restartWorker);
threadsField.addEventListener('change', () => {
  if (singleThreadReason === null && (parseInt(threadsField.value, 10) || 0) >= 1) restartWorker();
});

if (!window.Worker || !window.WebAssembly) {
  progress.setStatus('error', 'This browser cannot run mnist7k: it needs Web Workers and WebAssembly.');
} else {
  redraw();
  const problems = controls.linkProblems();
  if (problems.length > 0) progress.showNotice(problems.join(' '));
  startWorker(controls.backendChoice(), null);
}
