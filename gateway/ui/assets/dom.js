// Building the DOM without HTML strings: every text goes in as a Text node or an
// attribute value, never parsed as markup. Markup exists only inside the
// sanitiser (preview.js), whose output is a DocumentFragment appended as nodes.

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// Paths of the browser's own pages; every segment is percent-encoded.
export function uiPath(...segments) {
  return '/ui/' + segments.map((s) => encodeURIComponent(String(s))).join('/');
}

export function link(href, ...children) {
  return h('a', { href }, ...children);
}
