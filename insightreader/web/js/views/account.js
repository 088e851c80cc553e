// #/account: change the password, the signed-in devices (sessions) with "Sign out
// this device" for each, the API tokens (views/tokens.js), the webhooks
// (views/webhooks.js), the library's import (views/imports.js) and export.

import { api, changePassword, signOut } from '../api.js';
import { h, replace, setText, when } from '../dom.js';
import { describeError } from '../messages.js';
import { busy, spinner, toast } from '../ui.js';
import { importCard } from './imports.js';
import { tokensCard } from './tokens.js';
import { webhooksCard } from './webhooks.js';

function deviceName(agent) {
  if (!agent) return 'Unknown device';
  const browser = (agent.match(/(Firefox|Edg|Chrome|Safari|curl|python-httpx|insightreader)[/\s]?[\d.]*/) || [])[0];
  const system = (agent.match(/(Windows|Android|iPhone|iPad|Mac OS X|Linux)/) || [])[0];
  return [browser ? browser.replace('Edg', 'Edge') : agent.slice(0, 40), system].filter(Boolean).join(' on ');
}

function exportButton(format, label) {
  const button = h('button', { type: 'button', class: 'button', dataset: { format } }, label);
  button.addEventListener('click', () => busy(button, async () => {
    try {
      const file = await api('GET', `/export?format=${format}`, undefined, { blob: true });
      const link = h('a', { href: URL.createObjectURL(file), download: `insightreader-${new Date().toISOString().slice(0, 10)}.${format === 'json' ? 'json' : 'zip'}` });
      link.click();
      setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
    } catch (err) {
      toast(describeError(err));
    }
  }));
  return button;
}

export function mountAccount(main) {
  const heading = h('h1', { tabindex: '-1' }, 'Your account');
  const current = h('input', { id: 'current-password', type: 'password', required: true, autocomplete: 'current-password', maxlength: '1024' });
  const next = h('input', { id: 'new-password', type: 'password', required: true, minlength: '10', maxlength: '1024', autocomplete: 'new-password', 'aria-describedby': 'new-password-hint' });
  const error = h('p', { class: 'form-error', role: 'alert' });
  const save = h('button', { type: 'submit', class: 'button primary' }, 'Change password');
  const form = h('form', { class: 'card account-card', id: 'password-form', 'aria-labelledby': 'password-title' },
    h('h2', { id: 'password-title' }, 'Change password'),
    h('div', { class: 'field-row' }, h('label', { for: 'current-password' }, 'Current password'), current),
    h('div', { class: 'field-row' }, h('label', { for: 'new-password' }, 'New password'), next,
      h('p', { class: 'field-hint', id: 'new-password-hint' }, 'At least 10 characters, not your username, not a common password. Your other devices will be signed out.')),
    error, h('div', { class: 'form-actions' }, save));
  const exports = h('section', { class: 'card account-card', id: 'export', 'aria-labelledby': 'export-title' },
    h('h2', { id: 'export-title' }, 'Take your library with you'),
    h('p', { class: 'muted' }, 'Every article with its analyses, highlights and insights: as Markdown notes (a zip that opens as an Obsidian vault), or as one JSON file with everything (its format is in docs/import-export.md).'),
    h('div', { class: 'form-actions' },
      exportButton('markdown', 'Download Markdown (.zip)'), exportButton('json', 'Download JSON')));
  const list = h('ul', { class: 'session-list', id: 'session-list', 'aria-label': 'Signed-in devices' });
  const devices = h('section', { class: 'card account-card', 'aria-labelledby': 'devices-title' },
    h('h2', { id: 'devices-title' }, 'Signed-in devices'), list);
  const tokens = tokensCard();
  const imports = importCard();
  const hooks = webhooksCard();
  let alive = true;

  async function loadSessions() {
    replace(list, h('li', { class: 'muted' }, spinner(), 'Loading…'));
    try {
      const answer = await api('GET', '/auth/sessions');
      if (!alive) return;
      replace(list, ...answer.sessions.map(row));
    } catch (err) {
      if (alive) replace(list, h('li', { class: 'error-text' }, describeError(err)));
    }
  }

  function row(session) {
    const end = h('button', { type: 'button', class: 'button small', dataset: { action: 'end-session' } },
      session.current ? 'Sign out' : 'Sign out this device');
    end.addEventListener('click', () => busy(end, async () => {
      try {
        await api('DELETE', `/auth/sessions/${encodeURIComponent(session.session_id)}`);
        if (session.current) signOut('signout');
        else await loadSessions();
      } catch (err) {
        toast(describeError(err));
      }
    }));
    return h('li', { class: 'session-row', dataset: { sessionId: session.session_id, current: String(session.current) } },
      h('div', null,
        h('p', { class: 'session-device' }, deviceName(session.user_agent), session.current ? h('span', { class: 'chip' }, 'This device') : null),
        h('p', { class: 'muted session-meta' },
          [session.address, `signed in ${when(session.created_at)}`, `last active ${when(session.last_used_at)}`].filter(Boolean).join(' · '))),
      end);
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    setText(error, '');
    busy(save, async () => {
      try {
        await changePassword(current.value, next.value);
        form.reset();
        toast('Password changed. Your other devices were signed out.', { kind: 'info' });
        await loadSessions();
      } catch (err) {
        setText(error, describeError(err, 'password'));
      }
    });
  });

  main.replaceChildren(h('div', { class: 'library account' },
    h('div', { class: 'library-head' }, heading, h('a', { class: 'button ghost', href: '#/' }, 'Back to your reading')),
    devices, form, tokens.element, hooks.element, imports.element, exports));
  document.title = 'Your account · InsightReader';
  heading.focus();
  loadSessions();
  tokens.load();
  hooks.load();
  return { unmount() { alive = false; tokens.unmount(); hooks.unmount(); imports.unmount(); }, escape: () => false };
}
