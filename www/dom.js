// DOM helpers the views share. An element with properties and children (text stays text: no
// HTML is ever parsed from data).
export function element(tag, props = {}, children = []) {
  const e = document.createElement(tag);
  Object.assign(e, props);
  e.append(...children);
  return e;
}

// Paints a width x height image: `rgb(i, data, j)` writes pixel i's red, green and blue at
// data[j..j + 3], opaque. Byte by byte, no array per pixel: the pad's preview and the network's
// maps repaint with every stroke, the gallery holds 48 digits.
export function paintPixels(ctx, width, height, rgb) {
  const image = ctx.createImageData(width, height);
  const { data } = image;
  for (let i = 0, j = 0; j < data.length; i += 1, j += 4) {
    rgb(i, data, j);
    data[j + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
}

// A 28x28 digit, ink dark on white; `ink(i)` is pixel i's ink, 0 to 255.
export function paintDigit(ctx, ink) {
  paintPixels(ctx, 28, 28, (i, data, j) => data.fill(255 - ink(i), j, j + 3));
}
