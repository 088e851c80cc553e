// #/search?q=: the reader's articles matching what they type in the header's search
// box, best first, each with the text around the match. Typing updates the results in
// place (debounced by the box); an answer to an older query never replaces a newer one.

import { api } from '../api.js';
import { h, replace, setText } from '../dom.js';
import { t } from '../i18n.js';
import { describeError } from '../messages.js';
import { spinner } from '../ui.js';

const PAGE = 20;

function hitItem(hit) {
  return h('li', { class: 'card article-card search-hit', dataset: { articleId: hit.article_id } },
    h('h2', { class: 'article-card-title' },
      h('a', { class: 'card-link', href: `#/article/${encodeURIComponent(hit.article_id)}` }, hit.title)),
    h('p', { class: 'search-snippet' }, hit.snippet));
}

export function mountSearch(main, query) {
  const heading = h('h1', { tabindex: '-1' });
  const status = h('p', { class: 'muted search-status', role: 'status' });
  const list = h('ol', { class: 'article-list search-results', id: 'search-results' });
  const more = h('button', { type: 'button', class: 'button ghost', hidden: true }, t('More results'));
  let asked = 0;
  let alive = true;
  let current = '';
  let cursor = null;

  async function load(q, after) {
    const ticket = ++asked;
    if (!after) replace(status, spinner(), t('Searching…'));
    try {
      const params = new URLSearchParams({ q, limit: String(PAGE) });
      if (after) params.set('cursor', after);
      const answer = await api('GET', `/search?${params}`);
      if (!alive || ticket !== asked) return;  // a newer query was asked meanwhile
      if (!after) replace(list);
      list.append(...answer.items.map(hitItem));
      cursor = answer.next_cursor;
      more.hidden = !cursor;
      const shown = list.children.length;
      setText(status, shown ? '' : t('Nothing found. Try fewer words, or the start of a word.'));
    } catch (err) {
      if (alive && ticket === asked) setText(status, describeError(err));
    }
  }

  function search(q) {
    current = q.trim();
    setText(heading, current ? t('Results for “{query}”', { query: current }) : t('Search'));
    document.title = current ? t('{query} · Search · InsightReader', { query: current }) : t('Search · InsightReader');
    cursor = null;
    more.hidden = true;
    if (!current) {
      replace(list);
      setText(status, t('Type in the search box to find an article by what it says.'));
      return;
    }
    load(current, null);
  }

  more.addEventListener('click', () => { if (cursor) load(current, cursor); });
  main.replaceChildren(h('div', { class: 'library search' },
    h('div', { class: 'library-head' }, heading, h('a', { class: 'button ghost', href: '#/' }, t('Back to your reading'))),
    status, list, more));
  search(query);
  return { unmount() { alive = false; }, escape: () => false, search };
}
