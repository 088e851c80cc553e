// The "Webhooks" card of #/account: add one (URL and events; its signing secret shown
// once), list them with their state, send a test, see the last deliveries, delete.

import { api } from '../api.js';
import { h, replace, setText } from '../dom.js';
import { t, when } from '../i18n.js';

const DELIVERY_STATUS = { pending: 'pending', succeeded: 'succeeded', failed: 'failed' };
import { describeError } from '../messages.js';
import { busy, spinner, toast } from '../ui.js';

const EVENTS = [
  ['task_completed', t('A task completed')],
  ['task_failed', t('A task failed')],
  ['task_cancelled', t('A task was cancelled')],
  ['article_saved', t('An article was saved')],
  ['import_finished', t('An import finished')],
];

export function webhooksCard() {
  const url = h('input', { id: 'webhook-url', type: 'url', required: true, maxlength: '2048', placeholder: 'https://hooks.example.org/insightreader', autocomplete: 'off' });
  const boxes = EVENTS.map(([value, label]) => {
    const box = h('input', { type: 'checkbox', value, checked: value === 'task_completed', id: `webhook-event-${value}` });
    return { box, row: h('label', { class: 'webhook-event', for: `webhook-event-${value}` }, box, label) };
  });
  const error = h('p', { class: 'form-error', role: 'alert' });
  const add = h('button', { type: 'submit', class: 'button primary' }, t('Add webhook'));
  const shown = h('div', { class: 'token-secret', id: 'webhook-secret', hidden: true, role: 'status' });
  const list = h('ul', { class: 'session-list', id: 'webhook-list', 'aria-label': t('Webhooks') });
  const form = h('form', { class: 'token-form', id: 'webhook-form', 'aria-labelledby': 'webhooks-title' },
    h('div', { class: 'field-row' }, h('label', { for: 'webhook-url' }, t('URL')), url),
    h('fieldset', { class: 'webhook-events' }, h('legend', null, t('Send')), ...boxes.map((b) => b.row)),
    error, h('div', { class: 'form-actions' }, add));
  const element = h('section', { class: 'card account-card', id: 'webhooks', 'aria-labelledby': 'webhooks-title' },
    h('h2', { id: 'webhooks-title' }, t('Webhooks')),
    h('p', { class: 'muted field-hint' }, t('Your events POSTed to another service, signed as Standard Webhooks (verify them with its libraries). Failed deliveries are retried for an hour.')),
    form, shown, list);
  let alive = true;

  async function load() {
    replace(list, h('li', { class: 'muted' }, spinner(), t('Loading…')));
    try {
      const answer = await api('GET', '/webhooks');
      if (!alive) return;
      replace(list, ...(answer.items.length ? answer.items.map(row) : [h('li', { class: 'muted' }, t('No webhooks yet.'))]));
    } catch (err) {
      if (alive) replace(list, h('li', { class: 'error-text' }, describeError(err)));
    }
  }

  function deliveryLine(d) {
    const answer = d.last_status ? `HTTP ${d.last_status}` : (d.last_error || t('not sent yet'));
    return h('li', { class: 'delivery', dataset: { status: d.status } },
      [d.event, t(DELIVERY_STATUS[d.status] || d.status), t('{count} attempts', { count: d.attempts }), answer, when(d.created_at)].join(' · '));
  }

  function row(hook) {
    const log = h('ul', { class: 'delivery-log muted', hidden: true, 'aria-label': t('Deliveries') });
    const test = h('button', { type: 'button', class: 'button small', dataset: { action: 'test-webhook' } }, t('Send test'));
    const show = h('button', { type: 'button', class: 'button small', dataset: { action: 'show-deliveries' } }, t('Deliveries'));
    const remove = h('button', { type: 'button', class: 'button small', dataset: { action: 'delete-webhook' } }, t('Delete'));
    async function loadLog() {
      const answer = await api('GET', `/webhooks/${encodeURIComponent(hook.webhook_id)}/deliveries`);
      replace(log, ...(answer.items.length ? answer.items.map(deliveryLine) : [h('li', null, t('Nothing sent yet.'))]));
      log.hidden = false;
    }
    test.addEventListener('click', () => busy(test, async () => {
      try {
        await api('POST', `/webhooks/${encodeURIComponent(hook.webhook_id)}/test`);
        toast(t('Test sent: see its delivery below.'), { kind: 'info' });
        await loadLog();
      } catch (err) {
        toast(describeError(err));
      }
    }));
    show.addEventListener('click', () => busy(show, async () => {
      try { await loadLog(); } catch (err) { toast(describeError(err)); }
    }));
    remove.addEventListener('click', () => busy(remove, async () => {
      try {
        await api('DELETE', `/webhooks/${encodeURIComponent(hook.webhook_id)}`);
        await load();
      } catch (err) {
        toast(describeError(err));
      }
    }));
    const state = hook.enabled
      ? (hook.failing_since ? t('failing since {when}', { when: when(hook.failing_since) }) : t('active'))
      : t('disabled: {reason}', { reason: hook.disabled_reason });
    return h('li', { class: 'session-row webhook-row', dataset: { webhookId: hook.webhook_id, enabled: String(hook.enabled) } },
      h('div', { class: 'webhook-main' },
        h('p', { class: 'session-device webhook-url' }, hook.url),
        h('p', { class: 'muted session-meta' }, [hook.events.join(', '), state, t('added {when}', { when: when(hook.created_at) })].join(' · ')),
        log),
      h('div', { class: 'webhook-actions' }, test, show, remove));
  }

  function reveal(created) {
    const value = h('input', { id: 'webhook-secret-value', type: 'text', readonly: true, value: created.secret, 'aria-label': t('The signing secret'), spellcheck: 'false' });
    replace(shown,
      h('p', null, h('strong', null, t('Webhook added.')), t(' Its signing secret is shown only now: give it to the receiver.')),
      h('div', { class: 'token-value-row' }, value));
    shown.hidden = false;
    value.select();
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    setText(error, '');
    const events = boxes.filter((b) => b.box.checked).map((b) => b.box.value);
    if (!events.length) {
      setText(error, t('Choose at least one event.'));
      return;
    }
    busy(add, async () => {
      try {
        const created = await api('POST', '/webhooks', { url: url.value.trim(), events });
        form.reset();
        reveal(created);
        await load();
      } catch (err) {
        setText(error, describeError(err));
      }
    });
  });

  return { element, load, unmount() { alive = false; replace(shown); } };
}
