// An article's tags and states on its card: favourite and archive toggles, the tags
// with a remove button each, a field to add one, and the analysis's suggested tags as
// one-click chips.

import { h, replace, setText } from '../dom.js';
import { t } from '../i18n.js';
import { describeError } from '../messages.js';
import { changeArticle, setArticleTags, state } from '../store.js';
import { busy, toast } from '../ui.js';

const same = (a, b) => a.toLocaleLowerCase() === b.toLocaleLowerCase();

/** The tools of one article; ``update()`` redraws them from the store. */
export function articleTools(articleId) {
  const favorite = h('button', { type: 'button', class: 'toggle raised', 'aria-pressed': 'false' });
  const archive = h('button', { type: 'button', class: 'toggle raised', 'aria-pressed': 'false' });
  const tagList = h('ul', { class: 'tag-list', 'aria-label': t('Tags') });
  const input = h('input', {
    class: 'tag-input raised', name: 'tag', maxlength: '64', autocomplete: 'off',
    placeholder: t('Add a tag'), 'aria-label': t('Add a tag'), list: 'known-tags',
  });
  const form = h('form', { class: 'tag-form' }, input);
  const suggested = h('p', { class: 'suggested-tags', hidden: true });
  const el = h('div', { class: 'article-tools' },
    h('div', { class: 'tool-row' }, favorite, archive, tagList, form), suggested);

  const current = () => state.articles.get(articleId) || { tags: [] };
  const tagsOf = () => current().tags || [];

  function saveTags(tags, control) {
    return busy(control, () => setArticleTags(articleId, tags).then(() => true, (err) => {
      toast(describeError(err));
      return false;
    }));
  }

  favorite.addEventListener('click', () => busy(favorite, () => changeArticle(articleId, { favorite: !current().favorite })
    .catch((err) => toast(describeError(err)))));
  archive.addEventListener('click', () => busy(archive, () => changeArticle(articleId, { archived: !current().archived })
    .catch((err) => toast(describeError(err)))));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const name = input.value.trim();
    if (!name) return;
    if (tagsOf().some((tag) => same(tag, name))) {
      input.value = '';
      return;
    }
    saveTags([...tagsOf(), name], input).then((saved) => { if (saved) input.value = ''; });
  });

  function update() {
    const article = current();
    setText(favorite, article.favorite ? t('★ Favourite') : t('☆ Favourite'));
    favorite.setAttribute('aria-pressed', String(Boolean(article.favorite)));
    setText(archive, article.archived ? t('Archived') : t('Archive'));
    archive.setAttribute('aria-pressed', String(Boolean(article.archived)));
    const tags = tagsOf();
    replace(tagList, tags.map((name) => h('li', { class: 'tag' }, name,
      h('button', {
        type: 'button', class: 'tag-remove raised', 'aria-label': t('Remove tag {name}', { name }),
        onclick: (e) => saveTags(tags.filter((tag) => tag !== name), e.currentTarget),
      }, '×'))));
    const analysis = article.analysis && typeof article.analysis === 'object' ? article.analysis : {};
    const offers = (Array.isArray(analysis.suggested_tags) ? analysis.suggested_tags : [])
      .filter((name) => typeof name === 'string' && !tags.some((tag) => same(tag, name)));
    suggested.hidden = offers.length === 0;
    replace(suggested, offers.length ? h('span', { class: 'muted' }, t('Suggested: ')) : null,
      offers.map((name) => h('button', {
        type: 'button', class: 'suggested-tag raised', title: t('Add the tag {name}', { name }),
        onclick: (e) => saveTags([...tagsOf(), name], e.currentTarget),
      }, `+ ${name}`)));
  }

  update();
  return { el, update };
}

/** The library's filter bar: a state and a tag; ``onChange()`` reloads the list. */
export function filterBar(onChange) {
  const stateSelect = h('select', { id: 'filter-state', 'aria-label': t('Show') },
    h('option', { value: '' }, t('All articles')),
    h('option', { value: 'archived=false' }, t('Not archived')),
    h('option', { value: 'favorite=true' }, t('Favourites')),
    h('option', { value: 'archived=true' }, t('Archived')));
  const tagSelect = h('select', { id: 'filter-tag', 'aria-label': t('Tag') });
  const known = h('datalist', { id: 'known-tags' });
  const el = h('div', { class: 'filter-bar' },
    h('label', { for: 'filter-state' }, t('Show')), stateSelect,
    h('label', { for: 'filter-tag' }, t('Tag')), tagSelect, known);

  function update() {
    const chosen = state.filter.tag;
    replace(tagSelect, h('option', { value: '' }, t('Any tag')),
      state.tags.map((tag) => h('option', { value: tag.name, selected: same(tag.name, chosen) }, `${tag.name} (${tag.count})`)));
    if (chosen && !state.tags.some((tag) => same(tag.name, chosen))) tagSelect.append(h('option', { value: chosen, selected: true }, chosen));
    replace(known, state.tags.map((tag) => h('option', { value: tag.name })));
  }

  stateSelect.addEventListener('change', () => {
    const [key, value] = stateSelect.value.split('=');
    state.filter = { ...state.filter, archived: '', favorite: '', ...(key ? { [key]: value } : {}) };
    onChange();
  });
  tagSelect.addEventListener('change', () => {
    state.filter = { ...state.filter, tag: tagSelect.value };
    onChange();
  });
  update();
  return { el, update };
}
