// The account page's settings card (GET/PATCH /settings: the language results are
// written in, analysing imports, the reader's own instructions per task type) and its
// re-analysis card (POST /articles/reanalyze, progress from GET /batches/{id} and the
// batch events).

import { api } from '../api.js';
import { h, replace, setText } from '../dom.js';
import { t } from '../i18n.js';
import { describeError, taskLabel } from '../messages.js';
import { on } from '../store.js';
import { busy, toast } from '../ui.js';

/** The languages offered, each named in itself; `auto` is named in the page's language. */
const OUTPUT_LANGUAGES = [
  ['auto', t('The text’s own language')], ['en', 'English'], ['zh-CN', '简体中文'], ['ja', '日本語'],
  ['de', 'Deutsch'], ['fr', 'Français'], ['es', 'Español'],
];
const PROMPTED = ['article_analysis', 'meta_analysis', 'thinking_lens', 'button_generation', 'insight_generation'];
const MAX_INSTRUCTIONS = 2000;

export function settingsCard() {
  const language = h('select', { id: 'output-language' },
    OUTPUT_LANGUAGES.map(([value, name]) => h('option', { value, lang: value === 'auto' ? null : value }, name)));
  const auto = h('input', { id: 'auto-analyze', type: 'checkbox' });
  const areas = Object.fromEntries(PROMPTED.map((type) => [type, h('textarea', {
    id: `instructions-${type}`, rows: '2', maxlength: String(MAX_INSTRUCTIONS), dataset: { taskType: type },
  })]));
  const counts = Object.fromEntries(PROMPTED.map((type) => [type, h('span', { class: 'hint char-count', id: `instructions-${type}-count` })]));
  const error = h('p', { class: 'form-error', role: 'alert', id: 'settings-error' });
  const save = h('button', { type: 'submit', class: 'button primary', id: 'settings-save' }, t('Save settings'));
  const form = h('form', { class: 'token-form', id: 'settings-form', 'aria-labelledby': 'settings-title' },
    h('div', { class: 'field-row' }, h('label', { for: 'output-language' }, t('Write results in')), language),
    h('div', { class: 'field-row checkbox-row' }, auto, h('label', { for: 'auto-analyze' }, t('Analyse the articles an import brings in'))),
    h('fieldset', { class: 'instructions' }, h('legend', null, t('Your own instructions')),
      h('p', { class: 'hint' }, t('Added to the AI’s instructions for each kind of task, for example “Keep summaries under 60 words”. They cannot change what the task answers with.')),
      PROMPTED.map((type) => h('div', { class: 'field-row' },
        h('label', { for: `instructions-${type}` }, taskLabel(type), ' ', counts[type]), areas[type]))),
    error, h('div', { class: 'form-actions' }, save));
  const element = h('section', { class: 'card account-card', id: 'settings', 'aria-labelledby': 'settings-title' },
    h('h2', { id: 'settings-title' }, t('Results and instructions')), form);
  let shown = null;

  function count(type) {
    setText(counts[type], t('{used} / {most}', { used: areas[type].value.length, most: MAX_INSTRUCTIONS }));
  }
  function fill(settings) {
    shown = settings;
    language.value = settings.output_language;
    if (language.value !== settings.output_language) {  // a tag set through the API
      language.append(h('option', { value: settings.output_language }, settings.output_language));
      language.value = settings.output_language;
    }
    auto.checked = settings.auto_analyze;
    for (const type of PROMPTED) {
      areas[type].value = settings.instructions[type] || '';
      count(type);
    }
  }
  for (const type of PROMPTED) areas[type].addEventListener('input', () => count(type));

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    setText(error, '');
    const changes = {};
    if (language.value !== shown.output_language) changes.output_language = language.value;
    if (auto.checked !== shown.auto_analyze) changes.auto_analyze = auto.checked;
    const instructions = {};
    for (const type of PROMPTED) {
      if (areas[type].value !== (shown.instructions[type] || '')) instructions[type] = areas[type].value;
    }
    if (Object.keys(instructions).length) changes.instructions = instructions;
    busy(save, async () => {
      try {
        fill(await api('PATCH', '/settings', changes));
        toast(t('Settings saved. They apply to what you ask from now on; redo earlier results below.'), { kind: 'info' });
      } catch (err) {
        setText(error, describeError(err));
      }
    });
  });

  async function load() {
    try {
      fill(await api('GET', '/settings'));
    } catch (err) {
      setText(error, describeError(err));
    }
  }
  return { element, load };
}

const SCOPES = [
  ['stale', 'Results made with another model or other settings'],
  ['failed', 'Analyses that failed'],
  ['all', 'Every article'],
];

export function reanalysisCard() {
  const scope = h('select', { id: 'reanalyze-scope' }, SCOPES.map(([value, label]) => h('option', { value }, t(label))));
  const kinds = ['article_analysis', 'meta_analysis', 'thinking_lens'].map((kind) => {
    const box = h('input', { type: 'checkbox', id: `reanalyze-${kind}`, value: kind, checked: kind === 'article_analysis' });
    return { box, row: h('label', { class: 'checkbox-row' }, box, ' ', taskLabel(kind)) };
  });
  const start = h('button', { type: 'submit', class: 'button primary', id: 'reanalyze-start' }, t('Analyse again'));
  const cancel = h('button', { type: 'button', class: 'button', id: 'reanalyze-cancel', hidden: true }, t('Stop'));
  const bar = h('progress', { id: 'reanalyze-progress', max: '1', value: '0', hidden: true });
  const status = h('p', { class: 'muted', id: 'reanalyze-status', role: 'status' });
  const error = h('p', { class: 'form-error', role: 'alert' });
  const form = h('form', { class: 'token-form', id: 'reanalyze-form', 'aria-labelledby': 'reanalyze-title' },
    h('div', { class: 'field-row' }, h('label', { for: 'reanalyze-scope' }, t('Which')), scope),
    h('fieldset', { class: 'webhook-events' }, h('legend', null, t('What')), kinds.map((k) => k.row)),
    error, h('div', { class: 'form-actions' }, start, cancel));
  const element = h('section', { class: 'card account-card', id: 'reanalyze', 'aria-labelledby': 'reanalyze-title' },
    h('h2', { id: 'reanalyze-title' }, t('Analyse your library again')),
    h('p', { class: 'muted field-hint' }, t('After changing the settings above (or the server’s model), earlier results stay as they were. This runs them again in the background, after your own work.')),
    form, bar, status);
  let current = null;

  function show(batch) {
    if (!current || batch.batch_id !== current) return;
    const completed = batch.tasks ? batch.tasks.completed || 0 : null;
    bar.hidden = !batch.total;
    bar.max = Math.max(batch.total, 1);
    bar.value = completed ?? batch.done;
    cancel.hidden = batch.status !== 'running' && !(batch.tasks && (batch.tasks.pending || batch.tasks.running));
    if (!batch.total) setText(status, t('Nothing to do: every result is up to date.'));
    else if (batch.status === 'cancelled') setText(status, t('Stopped.'));
    else setText(status, t('{done} of {total} done', { done: completed ?? 0, total: batch.total }));
  }
  let ended = false;
  let fetching = null;
  let again = false;
  async function refresh() {
    if (!current) return;
    const batch = await api('GET', `/batches/${encodeURIComponent(current)}`);
    ended = batch.status !== 'running' && !batch.tasks.pending && !batch.tasks.running;
    show(batch);
  }
  /** One request at a time, and one more after it when events came meanwhile: a task
   * ending sends several events, and a large batch many tasks. */
  function refreshSoon() {
    if (fetching) {
      again = true;
      return;
    }
    fetching = refresh().catch(() => {}).finally(() => {
      fetching = null;
      if (again) {
        again = false;
        refreshSoon();
      }
    });
  }
  const off = on('batch', (batch) => { if (batch.batch_id === current) refreshSoon(); });
  const offTask = on('task', (task) => {
    if (current && !ended && task && (task.status === 'completed' || task.status === 'failed')) refreshSoon();
  });

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    setText(error, '');
    const chosen = kinds.filter((k) => k.box.checked).map((k) => k.box.value);
    if (!chosen.length) {
      setText(error, t('Choose at least one kind of result.'));
      return;
    }
    busy(start, async () => {
      try {
        const started = await api('POST', '/articles/reanalyze', { scope: scope.value, kinds: chosen });
        current = started.batch_id;
        await refresh();
      } catch (err) {
        setText(error, describeError(err));
      }
    });
  });
  cancel.addEventListener('click', () => busy(cancel, async () => {
    try {
      show(await api('POST', `/batches/${encodeURIComponent(current)}/cancel`));
    } catch (err) {
      toast(describeError(err));
    }
  }));
  return { element, unmount() { off(); offTask(); } };
}
