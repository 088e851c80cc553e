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

export function duration(ms) {
  if (!Number.isFinite(ms) || ms < 0) ms = 0;
  if (ms < 10_000) return `${(Math.floor(ms / 100) / 10).toFixed(1)} s`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

const dayFormat = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short' });
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });

export function when(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  const today = new Date();
  if (date.toDateString() === today.toDateString()) return `today ${timeFormat.format(date)}`;
  return dayFormat.format(date);
}

export function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

export function words(text) {
  const latin = (text.match(/[\p{L}\p{N}'’-]+/gu) || []).length;
  return latin;
}
