// The article's highlights in the notes column: each quote with its note (edited in
// place, saved when the field is left) and a delete button. Highlights live on the
// server (GET/POST /articles/{id}/highlights, PATCH/DELETE /highlights/{id}).

import { api } from '../api.js';
import { h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { describeError } from '../messages.js';
import { busy, toast } from '../ui.js';

export function mountHighlights(container, articleId, { onChange }) {
  const list = h('ol', { class: 'highlight-list', id: 'highlight-list', 'aria-label': t('Highlights') });
  const section = h('section', { class: 'highlights', hidden: true }, h('h3', { class: 'notes-subtitle' }, t('Highlights')), list);
  container.append(section);
  let items = [];
  let alive = true;

  function item(highlight) {
    const note = h('textarea', {
      class: 'highlight-note', rows: '2', maxlength: '10000', placeholder: t('Add a note…'),
      'aria-label': t('Note on this highlight'),
    });
    note.value = highlight.note;
    note.addEventListener('change', async () => {
      try {
        const saved = await api('PATCH', `/highlights/${encodeURIComponent(highlight.highlight_id)}`, { note: note.value });
        highlight.note = saved.note;
      } catch (err) {
        toast(describeError(err));
      }
    });
    const remove = h('button', { type: 'button', class: 'link-button danger small', dataset: { action: 'delete-highlight' } }, t('Delete'));
    remove.addEventListener('click', () => busy(remove, async () => {
      try {
        await api('DELETE', `/highlights/${encodeURIComponent(highlight.highlight_id)}`);
        items = items.filter((other) => other.highlight_id !== highlight.highlight_id);
        render();
      } catch (err) {
        toast(describeError(err));
      }
    }));
    return h('li', { class: 'card highlight', dataset: { highlightId: highlight.highlight_id } },
      h('blockquote', { class: 'highlight-quote' }, highlight.quote), note, h('div', { class: 'highlight-actions' }, remove));
  }

  function render() {
    section.hidden = items.length === 0;
    replace(list, ...items.map(item));
    onChange(items);
  }

  async function load() {
    try {
      const answer = await api('GET', `/articles/${encodeURIComponent(articleId)}/highlights`);
      if (!alive) return;
      items = answer.items;
      render();
    } catch (err) {
      if (alive && err.status !== 404) toast(describeError(err));
    }
  }

  load();
  return {
    /** Highlight ``quote`` (with the text around it in the page) and show it. */
    async add(quote, prefix, suffix) {
      const made = await api('POST', `/articles/${encodeURIComponent(articleId)}/highlights`, { quote, prefix, suffix });
      items = [...items, made].sort((a, b) => a.position - b.position);
      render();
      const shown = list.querySelector(`[data-highlight-id="${CSS.escape(made.highlight_id)}"]`);
      if (shown) {
        shown.scrollIntoView({ behavior: 'smooth', block: 'nearest' });
        shown.querySelector('textarea').focus({ preventScroll: true });
      }
      return made;
    },
    show(highlightId) {
      const shown = list.querySelector(`[data-highlight-id="${CSS.escape(highlightId)}"]`);
      if (shown) shown.scrollIntoView({ behavior: 'smooth', block: 'nearest' });
      return Boolean(shown);
    },
    count: () => items.length,
    items: () => items,
    unmount() { alive = false; },
  };
}
