// The one DOM helper the views share: an element with properties and children (text stays text:
// no HTML is ever parsed from data).
export function element(tag, props = {}, children = []) {
  const e = document.createElement(tag);
  Object.assign(e, props);
  e.append(...children);
  return e;
}
