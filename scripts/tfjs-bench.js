// The report's network trained by TensorFlow.js on its wasm backend, in the page that
// scripts/bench-browser.mjs opens beside the app's, so that both are timed in one run on one
// machine and browser. The same batches as the app's benchmark (128 images of the first 48,000,
// Adam 1e-3, cross-entropy), timed the same way: 8 warm-up batches, then the median of 5 windows
// of 16 (bench-browser.mjs checks them against the app's). TF.js is asked for as many threads as
// the browser reports cores, as the app's all-cores module uses (the page is cross-origin
// isolated, as the app's), and says how many it took: one on a 2-core machine.
/* global tf */

const BATCH = 128;
const TRAIN_IMAGES = 48_000;
const WARMUP = 8;
const WINDOWS = 5;
const PER_WINDOW = 16;

async function idx(name, header) {
  const response = await fetch(`/data/${name}.gz`);
  if (!response.ok) throw new Error(`${name}.gz: HTTP ${response.status}`);
  const raw = await new Response(response.body.pipeThrough(new DecompressionStream('gzip'))).arrayBuffer();
  return new Uint8Array(raw, header);
}

// tfjs-backend-wasm has no Conv2DBackpropFilter kernel, which a convolution's weight gradient
// needs. For this network's convolutions (stride 1, no padding, NHWC) that gradient is itself a
// convolution, of the input with the output's gradient over the batch, which the wasm backend
// has: dW[kh, kw, ci, co] = sum over b, h, w of x[b, h + kh, w + kw, ci] * dy[b, h, w, co].
function convolutionGradientOnWasm() {
  tf.registerGradient({
    kernelName: 'Conv2D',
    inputsToSave: ['x', 'filter'],
    gradFunc: (dy, [x, filter], { strides, pad, dilations }) => {
      if (pad !== 'valid' || [strides, dilations].flat().some((v) => v !== 1)) throw new Error(`only stride-1 valid convolutions (${pad}, ${strides})`);
      return {
        x: () => tf.conv2dTranspose(dy, filter, x.shape, 1, 'valid'),
        filter: () => tf.tidy(() => tf.transpose(tf.conv2d(tf.transpose(x, [3, 1, 2, 0]), tf.transpose(dy, [1, 2, 0, 3]), 1, 'valid'), [1, 2, 0, 3])),
      };
    },
  });
}

// The largest difference between a convolution's weight gradient on the CPU backend (TF.js's own
// kernel) and on wasm (the convolution above), on the shapes of this network's second layer.
async function gradientCheck() {
  const filterGradient = async (backend) => {
    await tf.setBackend(backend);
    const x = tf.randomUniform([4, 26, 26, 8], -1, 1, 'float32', 1);
    const filter = tf.randomUniform([3, 3, 8, 8], -1, 1, 'float32', 2);
    const dy = tf.randomUniform([4, 24, 24, 8], -1, 1, 'float32', 3);
    const grad = tf.grad((f) => tf.sum(tf.mul(tf.conv2d(x, f, 1, 'valid'), dy)))(filter);
    return grad.data();
  };
  const cpu = await filterGradient('cpu');
  convolutionGradientOnWasm();
  const wasm = await filterGradient('wasm');
  return cpu.reduce((worst, v, i) => Math.max(worst, Math.abs(v - wasm[i])), 0);
}

function network() {
  const conv = (filters, extra = {}) => tf.layers.conv2d({ filters, kernelSize: 3, activation: 'relu', ...extra });
  const model = tf.sequential({
    layers: [
      conv(8, { inputShape: [28, 28, 1] }), conv(8), tf.layers.maxPooling2d({ poolSize: 2 }),
      conv(16), conv(16), tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.flatten(), tf.layers.dropout({ rate: 0.3 }), tf.layers.dense({ units: 10, activation: 'softmax' }),
    ],
  });
  model.compile({ optimizer: tf.train.adam(1e-3), loss: 'categoricalCrossentropy' });
  return model;
}

// A fixed pseudo-random order (the batches' contents do not change the speed).
function* batches(images, labels) {
  let state = 1;
  const next = () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state % TRAIN_IMAGES;
  };
  for (;;) {
    const pixels = new Float32Array(BATCH * 784);
    const targets = new Int32Array(BATCH);
    for (let i = 0; i < BATCH; i += 1) {
      const at = next();
      for (let p = 0; p < 784; p += 1) pixels[i * 784 + p] = images[at * 784 + p] / 255;
      targets[i] = labels[at];
    }
    yield [pixels, targets];
  }
}

export async function bench() {
  tf.wasm.setWasmPaths('/node_modules/@tensorflow/tfjs-backend-wasm/dist/');
  tf.wasm.setThreadsCount(navigator.hardwareConcurrency);
  await tf.setBackend('wasm');
  await tf.ready();
  const check = await gradientCheck();
  const [images, labels] = await Promise.all([idx('train-images-idx3-ubyte', 16), idx('train-labels-idx1-ubyte', 8)]);
  const model = network();
  const source = batches(images, labels);
  let loss = NaN;
  const step = async () => {
    const [pixels, targets] = source.next().value;
    const [x, y] = tf.tidy(() => [tf.tensor4d(pixels, [BATCH, 28, 28, 1]), tf.oneHot(tf.tensor1d(targets, 'int32'), 10)]);
    loss = await model.trainOnBatch(x, y);
    tf.dispose([x, y]);
  };
  for (let i = 0; i < WARMUP; i += 1) await step();
  const windows = [];
  for (let w = 0; w < WINDOWS; w += 1) {
    const start = performance.now();
    for (let i = 0; i < PER_WINDOW; i += 1) await step();
    windows.push((PER_WINDOW * BATCH) / ((performance.now() - start) / 1000));
  }
  const sorted = [...windows].sort((a, b) => a - b);
  return {
    backend: 'tfjs-wasm',
    tfjs: tf.version_core,
    gradient_check: check,
    params: model.countParams(),
    threads: tf.wasm.getThreadsCount(),
    simd: await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'),
    batch_size: BATCH,
    batches: WARMUP + WINDOWS * PER_WINDOW,
    samples_per_second: sorted[Math.floor(WINDOWS / 2)],
    window_samples_per_second: windows,
    final_loss: loss,
  };
}
