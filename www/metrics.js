// Classification reports, the confusion matrix and the gallery of misclassified test images.
// Everything is built with DOM nodes and textContent: no HTML strings from data.
import { paintDigit } from './dom.js';

function pct(value) {
  return `${(value * 100).toFixed(2)}%`;
}

function reportTable(title, loss, report) {
  const line = (name, s) => `${name.padStart(12)} ${s.precision.toFixed(4).padStart(9)} ${s.recall.toFixed(4).padStart(9)} ${s.f1.toFixed(4).padStart(9)} ${String(s.support).padStart(7)}`;
  return [
    `${title}: loss ${loss.toFixed(4)}, accuracy ${pct(report.accuracy)}`,
    '',
    `${''.padStart(12)} precision    recall  f1-score support`,
    ...report.classes.map((s, digit) => line(String(digit), s)),
    '',
    `${'accuracy'.padStart(12)} ${''.padStart(19)} ${report.accuracy.toFixed(4).padStart(9)} ${String(report.micro_avg.support).padStart(7)}`,
    line('micro avg', report.micro_avg),
    line('macro avg', report.macro_avg),
    line('weighted avg', report.weighted_avg),
  ].join('\n');
}

function confusionTable(table, counts) {
  table.replaceChildren();
  const max = Math.max(...counts.flat());
  const head = table.insertRow();
  head.append(document.createElement('th'));
  for (let p = 0; p < 10; p += 1) {
    const th = document.createElement('th');
    th.textContent = String(p);
    head.append(th);
  }
  counts.forEach((row, truth) => {
    const tr = table.insertRow();
    const th = document.createElement('th');
    th.textContent = String(truth);
    tr.append(th);
    row.forEach((count, predicted) => {
      const cell = tr.insertCell();
      cell.textContent = String(count);
      const strength = count === 0 ? 0 : 0.15 + 0.85 * Math.sqrt(count / max);
      const hue = truth === predicted ? '31,119,180' : '214,39,40';
      cell.style.background = `rgba(${hue},${strength.toFixed(3)})`;
      if (strength > 0.6) cell.style.color = '#fff';
      cell.title = `true ${truth}, predicted ${predicted}: ${count}`;
    });
  });
}

function galleryItem({ pixels, truth, predicted, index }) {
  const figure = document.createElement('figure');
  const canvas = document.createElement('canvas');
  canvas.width = 28;
  canvas.height = 28;
  paintDigit(canvas.getContext('2d'), (i) => pixels[i]);
  const caption = document.createElement('figcaption');
  caption.textContent = `true ${truth} → ${predicted}`;
  figure.title = `test image ${index}`;
  figure.append(canvas, caption);
  return figure;
}

// "3 epochs trained: 1 on webgpu, 2 on cpu" (a run that fell back to the CPU says so).
function epochsLine(history) {
  if (history.length === 0) return 'No finished epoch.';
  const perBackend = new Map();
  for (const { backend } of history) perBackend.set(backend, (perBackend.get(backend) ?? 0) + 1);
  const parts = [...perBackend].map(([backend, n]) => `${n} on ${backend}`).join(', ');
  return `${history.length} epoch${history.length === 1 ? '' : 's'} trained: ${parts}.`;
}

export function showMetrics(elements, { metrics, gallery, weightsFrom }) {
  elements.origin.textContent = `Weights of ${weightsFrom}. ${epochsLine(metrics.history)} Training file: all ${metrics.train_report.micro_avg.support} training images (fitted and held out); test set: ${metrics.test_report.micro_avg.support} images. ${metrics.misclassified.length} test images misclassified.`;
  elements.train.textContent = reportTable('training file', metrics.train_loss, metrics.train_report);
  elements.test.textContent = reportTable('test set', metrics.test_loss, metrics.test_report);
  confusionTable(elements.confusion, metrics.test_confusion.counts);
  elements.gallery.replaceChildren(...gallery.map(galleryItem));
}

export function showClassCounts(container, counts) {
  const max = Math.max(...counts);
  container.replaceChildren(...counts.map((count, digit) => {
    const row = document.createElement('div');
    const label = document.createElement('span');
    label.textContent = String(digit);
    const bar = document.createElement('span');
    bar.className = 'bar';
    bar.style.width = `${((count / max) * 100).toFixed(1)}%`;
    const value = document.createElement('span');
    value.textContent = String(count);
    row.append(label, bar, value);
    return row;
  }));
}
