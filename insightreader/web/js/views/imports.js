// The "Bring your library in" card of #/account: pick a format and a file, import it,
// and follow its progress (a bar fed by the stream's import events, and the answer of
// GET /imports/{id} for an import that finished before its events arrived).

import { api } from '../api.js';
import { h, setText } from '../dom.js';
import { t } from '../i18n.js';
import { describeError } from '../messages.js';
import { on } from '../store.js';
import { busy } from '../ui.js';

const FORMATS = [
  ['netscape', t('Bookmarks (HTML: browsers, Pocket, Karakeep, Linkwarden)')],
  ['pocket_csv', t('Pocket (CSV)')],
  ['instapaper_csv', t('Instapaper (CSV)')],
  ['readwise_csv', t('Readwise Reader (CSV)')],
  ['omnivore', t('Omnivore (zip)')],
  ['wallabag', t('wallabag (JSON)')],
  ['insightreader', t('InsightReader (JSON export)')],
];

function summary(progress) {
  const handled = progress.done + progress.failed + progress.duplicates;
  const parts = [t('{done} of {total}', { done: handled, total: progress.total })];
  if (progress.duplicates) parts.push(t('{count} already in your library', { count: progress.duplicates }));
  if (progress.failed) parts.push(t('{count} failed', { count: progress.failed }));
  return `${progress.status === 'finished' ? t('Finished: ') : t('Importing… ')}${parts.join(' · ')}`;
}

export function importCard() {
  const format = h('select', { id: 'import-format' }, ...FORMATS.map(([value, label]) => h('option', { value }, label)));
  const file = h('input', { id: 'import-file', type: 'file', required: true });
  const error = h('p', { class: 'form-error', role: 'alert' });
  const start = h('button', { type: 'submit', class: 'button primary' }, t('Import'));
  const bar = h('progress', { id: 'import-progress', max: '1', value: '0', hidden: true });
  const status = h('p', { class: 'muted', id: 'import-status', role: 'status' });
  const form = h('form', { class: 'token-form', id: 'import-form', 'aria-labelledby': 'import-title' },
    h('div', { class: 'token-fields' },
      h('div', { class: 'field-row' }, h('label', { for: 'import-format' }, t('Exported from')), format),
      h('div', { class: 'field-row' }, h('label', { for: 'import-file' }, t('File')), file)),
    error, h('div', { class: 'form-actions' }, start));
  const element = h('section', { class: 'card account-card', id: 'import', 'aria-labelledby': 'import-title' },
    h('h2', { id: 'import-title' }, t('Bring your library in')),
    h('p', { class: 'muted field-hint' }, t('Articles keep their tags, archived and favourite states and saved times; links are fetched and analysed in the background, after your own work.')),
    form, bar, status);
  let current = null;

  function show(progress) {
    if (!current || progress.import_id !== current) return;
    bar.hidden = false;
    bar.max = Math.max(progress.total, 1);
    bar.value = progress.done + progress.failed + progress.duplicates;
    setText(status, summary(progress));
  }

  const off = on('import', show);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    setText(error, '');
    const chosen = file.files[0];
    if (!chosen) return;
    busy(start, async () => {
      try {
        const body = new FormData();
        body.append('file', chosen);
        const started = await api('POST', `/imports?format=${encodeURIComponent(format.value)}`, body);
        current = started.import_id;
        show({ ...started, done: 0, failed: 0 });
        // Events after the answer carry the rest; an import may also be finished already.
        show(await api('GET', `/imports/${encodeURIComponent(current)}`));
        form.reset();
      } catch (err) {
        setText(error, describeError(err));
      }
    });
  });
  return { element, unmount: off };
}
