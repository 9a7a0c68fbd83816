// Learning curves, drawn by uPlot (vendored from npm at set-up): the run on screen (live while it
// trains, with its running batch values) and any kept runs chosen for comparison, one colour per
// run, validation dashed. uPlot draws for the screen's pixel ratio and shows the values under
// the cursor in its legend; the charts follow the page's width; the loss can use a log scale;
// each chart carries a visually hidden table of its per-epoch values. A chart may carry a
// reference line (the report's test accuracy), drawn across the epochs on screen.
// An accuracy chart's log scale is the error's (1 - accuracy), labelled in accuracy: on a plain
// scale the first batches (10%) squeeze 99% to 99.5% into a few pixels at the top, where the
// runs worth comparing differ; with it 90%, 99% and 99.9% lie equally far apart. It is on by
// default.
import uPlot from './vendor/uPlot.esm.js';
import { element } from './dom.js';

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];
const HEIGHT = 260;
const KINDS = [['train', []], ['validation', [6, 4]]];
// A batch's running accuracy can be exactly 1: drawn as 99.99%.
const SMALLEST_ERROR = 1e-4;
const toNines = (accuracy) => -Math.log10(Math.max(1 - accuracy, SMALLEST_ERROR));
const fromNines = (nines) => 1 - 10 ** -nines;
// The accuracies the error scale marks, as far as the curves reach.
const NINES_TICKS = [0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9999].map(toNines);
const percent = (accuracy) => `${(100 * accuracy).toFixed(2).replace(/\.?0+$/, '')}%`;

// curves: [{ label, train: [[epoch, value]], validation: [...], batch: [[fractional epoch, value]] }]
export function createChart(container, { title: initialTitle, digits, log: offerLog = false, accuracy = false, reference = null }) {
  let title = initialTitle;
  let curves = [];
  let plot = null;
  let shape = ''; // the series' labels and the scale the plot was built for
  let pending = false;

  const heading = element('span', { className: 'chart-title', textContent: title });
  const logBox = element('input', { type: 'checkbox' });
  const bar = element('div', { className: 'chart-bar' }, [heading]);
  if (accuracy) {
    logBox.checked = true;
    bar.append(element('label', { title: 'the error (1 - accuracy) on a log scale: 90%, 99% and 99.9% equally far apart' }, [logBox, ' log scale of the error']));
  } else if (offerLog) {
    bar.append(element('label', {}, [logBox, ' log scale']));
  }
  const area = element('div', { className: 'chart-area' });
  const table = element('table', { className: 'visually-hidden' });
  container.replaceChildren(bar, area, table);
  logBox.addEventListener('change', () => schedule());

  // Every curve's series: [label, points, stroke, dash, width, epoch-level].
  function seriesOf() {
    const out = [];
    curves.forEach((curve, i) => {
      const color = PALETTE[i % PALETTE.length];
      for (const [kind, dash] of KINDS) out.push([`${curve.label} ${kind}`, curve[kind], color, dash, 2, true]);
      if (curve.batch.length > 0) out.push([`${curve.label} batches`, curve.batch, `${color}66`, [], 1, false]);
    });
    if (reference) {
      let [first, last] = [Infinity, -Infinity];
      for (const [, points] of out) {
        if (points.length > 0) [first, last] = [Math.min(first, points[0][0]), Math.max(last, points.at(-1)[0])];
      }
      if (first <= last) out.push([reference.label, [[first, reference.value], [last, reference.value]], '#888', [2, 4], 1, false]);
    }
    return out;
  }

  // How the y axis shows a value: as it is, on a log scale, or by its error's nines (the data
  // drawn is then toNines of each value).
  function yScale(log) {
    if (accuracy && log) {
      return {
        scale: { distr: 1 },
        // The marked accuracies in range; where fewer than two are (curves within 99.0-99.5%),
        // uPlot's evenly spaced ticks.
        splits: (u, axis, min, max, step) => {
          const marked = NINES_TICKS.filter((v) => v >= min && v <= max);
          if (marked.length >= 2 || !(step > 0)) return marked;
          const even = [];
          for (let v = Math.ceil(min / step) * step; v <= max; v += step) even.push(v);
          return even;
        },
        tick: (v) => percent(fromNines(v)),
        shown: (v) => fromNines(v).toFixed(digits + 1),
        drawn: toNines,
      };
    }
    return {
      scale: { distr: log ? 3 : 1 },
      tick: (v) => v.toFixed(digits),
      shown: (v) => v.toFixed(digits + 1),
      drawn: (v) => v,
    };
  }

  function build(series, y) {
    plot?.destroy();
    const opts = {
      width: Math.max(280, area.clientWidth),
      height: HEIGHT,
      scales: { x: { time: false }, y: y.scale },
      axes: [
        { label: 'epoch' },
        {
          ...(y.splits && { splits: y.splits }),
          // The labels are also left on the container, for a test to read.
          values: (u, ticks) => {
            const labels = ticks.map(y.tick);
            container.dataset.ticks = labels.join(' ');
            return labels;
          },
          size: 56,
        },
      ],
      series: [
        { label: 'epoch', value: (u, v) => (v === null ? '–' : v.toFixed(2)) },
        ...series.map(([label, , stroke, dash, width, epochs]) => ({
          label,
          stroke,
          dash,
          width,
          spanGaps: true,
          points: { show: epochs },
          value: (u, v) => (v === null ? '–' : y.shown(v)),
        })),
      ],
    };
    plot = new uPlot(opts, aligned(series, y), area);
  }

  // One x array for all series (uPlot's join), nulls where a series has no point.
  function aligned(series, y) {
    if (series.length === 0) return [[]];
    const tables = series.map(([, points]) => [points.map(([x]) => x), points.map(([, v]) => (v === null ? null : y.drawn(v)))]);
    return uPlot.join(tables);
  }

  function fillTable(series) {
    const epochLevel = series.filter(([, , , , , epochs]) => epochs);
    const epochs = [...new Set(epochLevel.flatMap(([, points]) => points.map(([x]) => x)))].sort((a, b) => a - b);
    const head = element('tr', {}, [element('th', { textContent: 'epoch', scope: 'col' }),
      ...epochLevel.map(([label]) => element('th', { textContent: label, scope: 'col' }))]);
    const rows = epochs.map((epoch) => element('tr', {}, [element('th', { textContent: String(epoch), scope: 'row' }),
      ...epochLevel.map(([, points]) => {
        const found = points.find(([x]) => x === epoch);
        return element('td', { textContent: found ? found[1].toFixed(digits + 2) : '' });
      })]));
    table.replaceChildren(element('caption', { textContent: reference ? `${title}; a grey line marks ${reference.label}` : title }), element('thead', {}, [head]), element('tbody', {}, rows));
  }

  function render() {
    pending = false;
    heading.textContent = title;
    const series = seriesOf();
    const log = logBox.checked;
    const y = yScale(log);
    const wanted = JSON.stringify([series.map(([label]) => label), log]);
    if (wanted !== shape) {
      shape = wanted;
      build(series, y);
    } else {
      plot.setData(aligned(series, y));
    }
    fillTable(series);
    container.dataset.points = String(series.reduce((sum, [, points]) => sum + points.length, 0));
  }

  // Redraws at most once per frame however fast events arrive.
  function schedule() {
    if (!pending) {
      pending = true;
      requestAnimationFrame(render);
    }
  }

  new ResizeObserver(() => {
    if (plot && area.clientWidth > 0 && Math.abs(plot.width - area.clientWidth) > 1) {
      plot.setSize({ width: Math.max(280, area.clientWidth), height: HEIGHT });
    }
  }).observe(area);

  return {
    // The loss chart names the loss being trained.
    setTitle(text) {
      title = text;
      schedule();
    },
    update(next) {
      curves = next;
      schedule();
    },
  };
}
