// DOM helpers the views share. An element with properties and children (text stays text: no
// HTML is ever parsed from data).
export function element(tag, props = {}, children = []) {
  const e = document.createElement(tag);
  Object.assign(e, props);
  e.append(...children);
  return e;
}

// A 28x28 digit, ink dark on white; `ink(i)` is pixel i's ink, 0 to 255. Written byte by byte:
// no array per pixel (the pad's preview repaints with every stroke, the gallery holds 48).
export function paintDigit(ctx, ink) {
  const image = ctx.createImageData(28, 28);
  const { data } = image;
  for (let i = 0; i < 784; i += 1) {
    data.fill(255 - ink(i), i * 4, i * 4 + 3);
    data[i * 4 + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
}
