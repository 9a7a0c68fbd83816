// A look inside the network: the first convolution's filters and every convolution's activation
// maps for the digit on the pad, redrawn with each prediction. The canvases are built once per
// network shape and repainted in place, so drawing does not churn the page.
import { element, paintPixels } from './dom.js';

// Colours write one pixel's red, green and blue at `j` of an ImageData's bytes (paintPixels).
// Filters are signed: blue below zero, red above, white at zero; one scale for all of them so
// that strong and weak filters can be told apart.
function signedColour(v, data, j) {
  const fade = Math.round(255 * (1 - Math.min(1, Math.abs(v))));
  data[j] = v < 0 ? fade : 255;
  data[j + 1] = fade;
  data[j + 2] = v < 0 ? 255 : fade;
}

// Activations after ReLU are dark where the unit fires; maps that can go negative (no activation)
// use the signed colours.
function inkColour(v, data, j) {
  const shade = Math.round(255 * (1 - Math.min(1, v)));
  data[j] = shade;
  data[j + 1] = shade;
  data[j + 2] = shade;
}

function paint(canvas, values, offset, scale, colour) {
  paintPixels(canvas.getContext('2d'), canvas.width, canvas.height, (i, data, j) => colour(values[offset + i] / scale, data, j));
}

const largest = (values) => values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

// One figure per map set: a caption and a canvas per map.
function mapFigure(maps, label) {
  const canvases = Array.from({ length: maps.count }, (_, i) => element('canvas', {
    width: maps.width, height: maps.height, title: `${maps.layer} #${i + 1}`,
  }));
  const figure = element('figure', { className: 'maps' }, [
    element('figcaption', { textContent: label }),
    element('div', { className: 'map-row' }, canvases),
  ]);
  figure.dataset.layer = maps.layer;
  figure.dataset.count = String(maps.count);
  return { figure, canvases };
}

function paintAll(canvases, maps, colour) {
  const max = largest(maps.values);
  const size = maps.width * maps.height;
  canvases.forEach((canvas, i) => paint(canvas, maps.values, i * size, max || 1, colour));
  return max;
}

export function createInside({ filters, activations, note }) {
  let shape = '';
  let views = { filters: null, activations: [] };

  function build(inside) {
    filters.replaceChildren();
    activations.replaceChildren();
    views = { filters: null, activations: [] };
    if (inside.filters) {
      const f = inside.filters;
      views.filters = mapFigure(f, `${f.layer}: ${f.count} filters of ${f.height}x${f.width}`);
      filters.append(views.filters.figure);
    }
    for (const maps of inside.activations) {
      const view = mapFigure(maps, `${maps.layer}: ${maps.count} maps of ${maps.height}x${maps.width}`);
      views.activations.push(view);
      activations.append(view.figure);
    }
  }

  return {
    // `inside` is the worker's { filters, activations } or null, with `message` saying why.
    show(inside, message) {
      note.textContent = message;
      if (!inside) {
        shape = '';
        filters.replaceChildren();
        activations.replaceChildren();
        return;
      }
      const next = JSON.stringify([inside.filters, ...inside.activations].map((m) => m && [m.layer, m.count, m.height, m.width]));
      if (next !== shape) build(inside);
      shape = next;
      if (inside.filters) paintAll(views.filters.canvases, inside.filters, signedColour);
      inside.activations.forEach((maps, i) => {
        const signed = maps.values.some((v) => v < 0);
        const max = paintAll(views.activations[i].canvases, maps, signed ? signedColour : inkColour);
        views.activations[i].figure.dataset.largest = String(max);
      });
    },
  };
}
