// Shared bits of interface: toasts, spinners, status chips, busy buttons.

import { h, setText } from './dom.js';
import { t } from './i18n.js';
import { STATUS_LABELS } from './messages.js';

const TOAST_MS = 9000;

/** A message in the corner: kind 'error' (role=alert) or 'info'. */
export function toast(message, { kind = 'error', timeout = TOAST_MS } = {}) {
  const region = document.getElementById('toasts');
  if (!region) return;
  for (const existing of region.children) {
    if (existing.dataset.message === message) existing.remove(); // no stacks of one message
  }
  const close = h('button', { type: 'button', class: 'icon-button', 'aria-label': t('Dismiss') }, '×');
  const item = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status', dataset: { message } },
    h('p', null, message), close);
  const remove = () => item.remove();
  close.addEventListener('click', remove);
  region.append(item);
  if (timeout) setTimeout(remove, timeout);
}

export function dismissToasts() {
  const region = document.getElementById('toasts');
  if (region && region.children.length) {
    region.replaceChildren();
    return true;
  }
  return false;
}

/** Say ``message`` to screen readers (a polite live region; nothing visible). */
export function announce(message) {
  let region = document.getElementById('announcer');
  if (!region) {
    region = h('div', { id: 'announcer', class: 'visually-hidden', role: 'status', 'aria-live': 'polite' });
    document.body.append(region);
  }
  region.textContent = '';
  setTimeout(() => { region.textContent = message; }, 50);
}

export function spinner() {
  return h('span', { class: 'spinner', 'aria-hidden': 'true' });
}

export function statusChip(status) {
  return h('span', { class: `chip status status-${status}` }, t(STATUS_LABELS[status] || status));
}

export function updateChip(chip, status) {
  chip.className = `chip status status-${status}`;
  setText(chip, t(STATUS_LABELS[status] || status));
}

/** Run ``work`` with ``button`` disabled and marked busy; returns its result. */
export async function busy(button, work) {
  if (button.disabled) return undefined;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}
