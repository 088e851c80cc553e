// The "API tokens" card of #/account: create one (name, scope, expiry), show its secret
// once with a copy button, list the tokens, revoke one. The secret lives only in the
// card's DOM until the card is left or another token is created.

import { api } from '../api.js';
import { h, replace, setText } from '../dom.js';
import { t, when } from '../i18n.js';
import { describeError } from '../messages.js';
import { busy, spinner, toast } from '../ui.js';

const SCOPES = { read: t('Read: look only (GET)'), write: t('Write: submit and change articles') };
const EXPIRIES = [['30', t('{count} days', { count: 30 })], ['90', t('{count} days', { count: 90 })], ['365', t('A year')], ['', t('Never')]];

export function tokensCard() {
  const name = h('input', { id: 'token-name', type: 'text', required: true, maxlength: '100', placeholder: t('e.g. nightly import'), autocomplete: 'off' });
  const scope = h('select', { id: 'token-scope' }, ...Object.entries(SCOPES).map(([value, label]) => h('option', { value }, label)));
  const expiry = h('select', { id: 'token-expiry' }, ...EXPIRIES.map(([value, label]) => h('option', { value, selected: value === '90' }, label)));
  const error = h('p', { class: 'form-error', role: 'alert' });
  const create = h('button', { type: 'submit', class: 'button primary' }, t('Create token'));
  const shown = h('div', { class: 'token-secret', id: 'token-secret', hidden: true, role: 'status' });
  const list = h('ul', { class: 'session-list', id: 'token-list', 'aria-label': t('API tokens') });
  const form = h('form', { class: 'token-form', id: 'token-form', 'aria-labelledby': 'tokens-title' },
    h('div', { class: 'token-fields' },
      h('div', { class: 'field-row' }, h('label', { for: 'token-name' }, t('Name')), name),
      h('div', { class: 'field-row' }, h('label', { for: 'token-scope' }, t('Scope')), scope),
      h('div', { class: 'field-row' }, h('label', { for: 'token-expiry' }, t('Expires')), expiry)),
    error, h('div', { class: 'form-actions' }, create));
  const element = h('section', { class: 'card account-card', id: 'tokens', 'aria-labelledby': 'tokens-title' },
    h('h2', { id: 'tokens-title' }, t('API tokens')),
    h('p', { class: 'muted field-hint' }, t('For scripts and cron jobs: send one as Authorization: Bearer irt_…, or set INSIGHTREADER_TOKEN for the insightreader command. A token keeps working after a password change; revoke it when it leaks.')),
    form, shown, list);
  let alive = true;

  async function load() {
    replace(list, h('li', { class: 'muted' }, spinner(), t('Loading…')));
    try {
      const answer = await api('GET', '/tokens');
      if (!alive) return;
      replace(list, ...(answer.tokens.length ? answer.tokens.map(row) : [h('li', { class: 'muted' }, t('No tokens yet.'))]));
    } catch (err) {
      if (alive) replace(list, h('li', { class: 'error-text' }, describeError(err)));
    }
  }

  function row(token) {
    const revoke = h('button', { type: 'button', class: 'button small', dataset: { action: 'revoke-token' } }, t('Revoke'));
    revoke.addEventListener('click', () => busy(revoke, async () => {
      try {
        await api('DELETE', `/tokens/${encodeURIComponent(token.token_id)}`);
        await load();
      } catch (err) {
        toast(describeError(err));
      }
    }));
    const expired = token.expires_at && token.expires_at <= new Date().toISOString();
    const meta = [
      t('created {when}', { when: when(token.created_at) }),
      token.last_used_at ? t('last used {when}', { when: when(token.last_used_at) }) : t('never used'),
      token.expires_at
        ? (expired ? t('expired {when}', { when: when(token.expires_at) }) : t('expires {when}', { when: when(token.expires_at) }))
        : t('never expires'),
    ];
    return h('li', { class: 'session-row token-row', dataset: { tokenId: token.token_id, scope: token.scope } },
      h('div', null,
        h('p', { class: 'session-device' }, token.name, h('span', { class: 'chip' }, token.scope === 'read' ? t('read') : t('write'))),
        h('p', { class: 'muted session-meta' }, meta.join(' · '))),
      revoke);
  }

  function reveal(created) {
    const value = h('input', { id: 'token-value', type: 'text', readonly: true, value: created.token, 'aria-label': t('The new token'), spellcheck: 'false' });
    const copy = h('button', { type: 'button', class: 'button small', id: 'token-copy' }, t('Copy'));
    copy.addEventListener('click', async () => {
      value.select();
      try {
        await navigator.clipboard.writeText(created.token);
        setText(copy, t('Copied'));
      } catch {
        toast(t('Copy it from the field: the browser did not allow copying.'), { kind: 'info' });
      }
    });
    replace(shown,
      h('p', null, h('strong', null, t('Token “{name}” created.', { name: created.name })), t(' Copy it now: it is not shown again.')),
      h('div', { class: 'token-value-row' }, value, copy));
    shown.hidden = false;
    value.focus();
    value.select();
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    setText(error, '');
    busy(create, async () => {
      try {
        const body = { name: name.value.trim(), scope: scope.value };
        if (expiry.value) body.expires_in_days = Number(expiry.value);
        const created = await api('POST', '/tokens', body);
        form.reset();
        expiry.value = '90';
        reveal(created);
        await load();
      } catch (err) {
        setText(error, describeError(err));
      }
    });
  });

  return { element, load, unmount() { alive = false; replace(shown); } };
}
