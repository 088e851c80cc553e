// #/account: change the password, the signed-in devices (sessions) with "Sign out
// this device" for each, the API tokens (views/tokens.js), the webhooks
// (views/webhooks.js), the library's import (views/imports.js) and export.

import { api, changePassword, signOut } from '../api.js';
import { h, replace, setText } from '../dom.js';
import { t, when } from '../i18n.js';
import { mountLanguageSwitch } from '../language.js';
import { describeError } from '../messages.js';
import { busy, spinner, toast } from '../ui.js';
import { importCard } from './imports.js';
import { reanalysisCard, settingsCard } from './settings.js';
import { tokensCard } from './tokens.js';
import { webhooksCard } from './webhooks.js';

function deviceName(agent) {
  if (!agent) return t('Unknown device');
  const browser = (agent.match(/(Firefox|Edg|Chrome|Safari|curl|python-httpx|insightreader)[/\s]?[\d.]*/) || [])[0];
  const system = (agent.match(/(Windows|Android|iPhone|iPad|Mac OS X|Linux)/) || [])[0];
  return [browser ? browser.replace('Edg', 'Edge') : agent.slice(0, 40), system].filter(Boolean).join(t(' on '));
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
  const heading = h('h1', { tabindex: '-1' }, t('Your account'));
  const current = h('input', { id: 'current-password', type: 'password', required: true, autocomplete: 'current-password', maxlength: '1024' });
  const next = h('input', { id: 'new-password', type: 'password', required: true, minlength: '10', maxlength: '1024', autocomplete: 'new-password', 'aria-describedby': 'new-password-hint' });
  const error = h('p', { class: 'form-error', role: 'alert' });
  const save = h('button', { type: 'submit', class: 'button primary' }, t('Change password'));
  const form = h('form', { class: 'card account-card', id: 'password-form', 'aria-labelledby': 'password-title' },
    h('h2', { id: 'password-title' }, t('Change password')),
    h('div', { class: 'field-row' }, h('label', { for: 'current-password' }, t('Current password')), current),
    h('div', { class: 'field-row' }, h('label', { for: 'new-password' }, t('New password')), next,
      h('p', { class: 'field-hint', id: 'new-password-hint' }, t('At least 10 characters, not your username, not a common password. Your other devices will be signed out.'))),
    error, h('div', { class: 'form-actions' }, save));
  const exports = h('section', { class: 'card account-card', id: 'export', 'aria-labelledby': 'export-title' },
    h('h2', { id: 'export-title' }, t('Take your library with you')),
    h('p', { class: 'muted' }, t('Every article with its analyses, highlights and insights: as Markdown notes (a zip that opens as an Obsidian vault), or as one JSON file with everything (its format is in docs/import-export.md).')),
    h('div', { class: 'form-actions' },
      exportButton('markdown', t('Download Markdown (.zip)')), exportButton('json', t('Download JSON'))));
  const list = h('ul', { class: 'session-list', id: 'session-list', 'aria-label': t('Signed-in devices') });
  const devices = h('section', { class: 'card account-card', 'aria-labelledby': 'devices-title' },
    h('h2', { id: 'devices-title' }, t('Signed-in devices')), list);
  const tokens = tokensCard();
  const imports = importCard();
  const hooks = webhooksCard();
  const settings = settingsCard();
  const languageSlot = h('span', { class: 'language-switch' });
  mountLanguageSwitch(languageSlot, 'account-language');
  const reanalysis = reanalysisCard();
  let alive = true;

  async function loadSessions() {
    replace(list, h('li', { class: 'muted' }, spinner(), t('Loading…')));
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
      session.current ? t('Sign out') : t('Sign out this device'));
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
        h('p', { class: 'session-device' }, deviceName(session.user_agent), session.current ? h('span', { class: 'chip' }, t('This device')) : null),
        h('p', { class: 'muted session-meta' },
          [session.address, t('signed in {when}', { when: when(session.created_at) }), t('last active {when}', { when: when(session.last_used_at) })].filter(Boolean).join(' · '))),
      end);
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    setText(error, '');
    busy(save, async () => {
      try {
        await changePassword(current.value, next.value);
        form.reset();
        toast(t('Password changed. Your other devices were signed out.'), { kind: 'info' });
        await loadSessions();
      } catch (err) {
        setText(error, describeError(err, 'password'));
      }
    });
  });

  main.replaceChildren(h('div', { class: 'library account' },
    h('div', { class: 'library-head' }, heading, h('a', { class: 'button ghost', href: '#/' }, t('Back to your reading'))),
    h('p', { class: 'account-language' }, h('label', { for: 'account-language' }, t('Language of the page')), ' ', languageSlot),
    settings.element, reanalysis.element, devices, form, tokens.element, hooks.element, imports.element, exports));
  document.title = t('Your account · InsightReader');
  heading.focus();
  loadSessions();
  tokens.load();
  hooks.load();
  settings.load();
  return { unmount() { alive = false; tokens.unmount(); hooks.unmount(); imports.unmount(); reanalysis.unmount(); }, escape: () => false };
}
