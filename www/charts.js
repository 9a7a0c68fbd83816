// Line charts on a canvas: per-epoch train/validation curves plus the running batch loss.

const COLORS = { train: '#1f77b4', validation: '#d62728', batch: 'rgba(31,119,180,0.35)' };
const PAD = { left: 48, right: 12, top: 24, bottom: 28 };

function drawAxes(ctx, width, height, x, y, title) {
  ctx.clearRect(0, 0, width, height);
  ctx.fillStyle = '#222';
  ctx.font = '12px system-ui, sans-serif';
  ctx.fillText(title, PAD.left, 14);
  ctx.strokeStyle = '#ccc';
  ctx.beginPath();
  for (let i = 0; i <= 4; i += 1) {
    const value = y.min + ((y.max - y.min) * i) / 4;
    const py = y.to(value);
    ctx.moveTo(PAD.left, py);
    ctx.lineTo(width - PAD.right, py);
    ctx.fillText(value.toFixed(y.digits), 4, py + 4);
  }
  ctx.stroke();
  ctx.fillText('epoch', width - PAD.right - 34, height - 8);
  for (let e = 0; e <= x.max; e += Math.max(1, Math.ceil(x.max / 10))) {
    ctx.fillText(String(e), x.to(e) - 3, height - PAD.bottom + 14);
  }
}

function drawSeries(ctx, points, x, y, color, width) {
  if (points.length === 0) return;
  ctx.strokeStyle = color;
  ctx.fillStyle = color;
  ctx.lineWidth = width;
  ctx.beginPath();
  points.forEach(([px, py], i) => (i === 0 ? ctx.moveTo(x.to(px), y.to(py)) : ctx.lineTo(x.to(px), y.to(py))));
  ctx.stroke();
  if (width > 1) points.forEach(([px, py]) => ctx.fillRect(x.to(px) - 2, y.to(py) - 2, 4, 4));
  ctx.lineWidth = 1;
}

function legend(ctx, width, entries) {
  let left = width - PAD.right - 210;
  for (const [label, color] of entries) {
    ctx.fillStyle = color;
    ctx.fillRect(left, 6, 10, 10);
    ctx.fillStyle = '#222';
    ctx.fillText(label, left + 14, 15);
    left += 14 + ctx.measureText(label).width + 12;
  }
}

// series: { train: [[epoch, value]], validation: [...], batch: [...] }
export function createChart(canvas, { title: initialTitle, digits, fixedRange }) {
  let title = initialTitle;
  const ctx = canvas.getContext('2d');
  let pending = false;
  let latest = null;

  function render() {
    pending = false;
    const { width, height } = canvas;
    const all = [...latest.train, ...latest.validation, ...latest.batch];
    const maxEpoch = Math.max(1, ...all.map(([e]) => Math.ceil(e)));
    const values = all.map(([, v]) => v).filter(Number.isFinite);
    const [min, max] = fixedRange ?? [0, Math.max(0.1, ...values) * 1.05];
    const x = { max: maxEpoch, to: (e) => PAD.left + (e / maxEpoch) * (width - PAD.left - PAD.right) };
    const y = { min, max, digits, to: (v) => height - PAD.bottom - ((v - min) / (max - min)) * (height - PAD.top - PAD.bottom) };
    drawAxes(ctx, width, height, x, y, title);
    drawSeries(ctx, latest.batch, x, y, COLORS.batch, 1);
    drawSeries(ctx, latest.train, x, y, COLORS.train, 2);
    drawSeries(ctx, latest.validation, x, y, COLORS.validation, 2);
    legend(ctx, width, [['train', COLORS.train], ['validation', COLORS.validation], ['batches', COLORS.batch]]);
    canvas.dataset.points = String(latest.train.length + latest.validation.length + latest.batch.length);
  }

  // Redraws at most once per frame however fast events arrive.
  return {
    // The loss chart names the loss being trained.
    setTitle(text) {
      title = text;
    },
    update(series) {
      latest = series;
      if (!pending) {
        pending = true;
        requestAnimationFrame(render);
      }
    },
  };
}
