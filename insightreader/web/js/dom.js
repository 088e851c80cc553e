// Small DOM helpers. Text always goes in as text nodes (never as HTML): the page's
// Content-Security-Policy requires Trusted Types, so any innerHTML write would throw.

/**
 * h('button', {class: 'x', type: 'button', onclick: fn}, 'Label', child, [more])
 * Props: class, dataset, text, on<event> (functions), true/false booleans, other attributes.
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) {
    for (const [key, value] of Object.entries(props)) {
      if (value == null || value === false) continue;
      if (key === 'class') el.className = value;
      else if (key === 'dataset') Object.assign(el.dataset, value);
      else if (key === 'text') el.textContent = value;
      else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
      else if (value === true) el.setAttribute(key, '');
      else el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child == null || child === false || child === '') continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Replace every child of ``el``. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** Set text only when it changed (keeps selection and avoids needless mutations). */
export function setText(el, text) {
  const value = text == null ? '' : String(text);
  if (el.textContent !== value) el.textContent = value;
}

export function show(el, visible) {
  el.hidden = !visible;
}

/** A link only for http(s) URLs; anything else is shown as text. */
export function safeLink(url, text) {
  try {
    const parsed = new URL(url);
    if (parsed.protocol === 'http:' || parsed.protocol === 'https:') {
      return h('a', { href: parsed.href, rel: 'noopener noreferrer', target: '_blank' }, text || parsed.host);
    }
  } catch { /* not a URL */ }
  return h('span', null, text || String(url));
}

export function hostOf(url) {
  try { return new URL(url).host.replace(/^www\./, ''); } catch { return ''; }
}

/** A short random id (works outside secure contexts, unlike crypto.randomUUID). */
export function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

// -- formatting ---------------------------------------------------------------------

export function words(text) {
  const latin = (text.match(/[\p{L}\p{N}'’-]+/gu) || []).length;
  return latin;
}
