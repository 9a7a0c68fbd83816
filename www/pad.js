// The drawing pad: pointer events (mouse, touch, pen), no page scroll while drawing, a 28x28
// preview of the network's input and ten probability bars that follow the pen.
import { paintDigit } from './dom.js';

const LINE_WIDTH = 22;

export function createPad({ canvas, preview, clear, prediction, bars }, requestPrediction) {
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const previewCtx = preview.getContext('2d');
  let drawing = false;
  let last = null;
  let inFlight = false;
  let dirty = false;

  const rows = [];
  for (let digit = 0; digit < 10; digit += 1) {
    const item = document.createElement('li');
    const label = document.createElement('span');
    label.textContent = String(digit);
    const bar = document.createElement('span');
    bar.className = 'bar';
    const value = document.createElement('span');
    value.className = 'value';
    item.append(label, bar, value);
    bars.append(item);
    rows.push({ item, bar, value });
  }

  function point(event) {
    const rect = canvas.getBoundingClientRect();
    return [
      ((event.clientX - rect.left) * canvas.width) / rect.width,
      ((event.clientY - rect.top) * canvas.height) / rect.height,
    ];
  }

  function stroke(to) {
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    ctx.lineWidth = LINE_WIDTH;
    ctx.strokeStyle = '#000';
    ctx.beginPath();
    ctx.moveTo(...(last ?? to));
    ctx.lineTo(...to);
    ctx.stroke();
    last = to;
  }

  // Ink is the canvas alpha, so the background colour never leaks into the input.
  function ink() {
    const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const out = new Float32Array(canvas.width * canvas.height);
    for (let i = 0; i < out.length; i += 1) out[i] = data[i * 4 + 3] / 255;
    return out;
  }

  // One prediction in flight at a time; the newest drawing wins.
  function predictNow() {
    if (inFlight) {
      dirty = true;
      return;
    }
    inFlight = true;
    dirty = false;
    requestPrediction({ ink: ink(), width: canvas.width, height: canvas.height });
  }

  function showPreview(pixels) {
    paintDigit(previewCtx, (i) => (pixels ? Math.round(pixels[i] * 255) : 0));
  }

  function showProbabilities(probabilities) {
    const top = probabilities ? probabilities.indexOf(Math.max(...probabilities)) : -1;
    rows.forEach(({ item, bar, value }, digit) => {
      const p = probabilities ? probabilities[digit] : 0;
      bar.style.width = `${(p * 100).toFixed(1)}%`;
      value.textContent = probabilities ? `${(p * 100).toFixed(1)}%` : '';
      item.classList.toggle('top', digit === top);
    });
    prediction.textContent = top >= 0 ? String(top) : '–';
  }

  function reset() {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    showPreview(null);
    showProbabilities(null);
  }

  canvas.addEventListener('pointerdown', (event) => {
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    drawing = true;
    last = null;
    stroke(point(event));
    predictNow();
  });
  canvas.addEventListener('pointermove', (event) => {
    if (!drawing) return;
    event.preventDefault();
    for (const e of event.getCoalescedEvents ? event.getCoalescedEvents() : [event]) stroke(point(e));
    predictNow();
  });
  for (const type of ['pointerup', 'pointercancel']) {
    canvas.addEventListener(type, () => {
      drawing = false;
      last = null;
      predictNow();
    });
  }
  clear.addEventListener('click', () => {
    reset();
    predictNow();
  });
  reset();

  return {
    // The worker answered: show it, then send the drawing again if it changed meanwhile.
    answered({ preview: pixels, probabilities, error }) {
      inFlight = false;
      if (error) {
        prediction.textContent = '–';
        prediction.title = error;
      } else {
        prediction.title = '';
        showPreview(pixels);
        showProbabilities(probabilities);
      }
      if (dirty) predictNow();
    },
    refresh: predictNow,
  };
}
