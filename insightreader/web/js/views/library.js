// The home view: a form to save an article, and the list of saved articles, each
// with its analysis (or its live "Analysing…" state).

import { api, serverNow } from '../api.js';
import { h, hostOf, randomId, replace, setText } from '../dom.js';
import { duration, t, when } from '../i18n.js';
import { describeError, describeTaskError } from '../messages.js';
import {
  analysisTask, emit, fetchTask, isActive, loadArticles, loadTags, matchesFilter, noteArticleSaved, on, refreshTask, state,
} from '../store.js';
import { busy, spinner, toast } from '../ui.js';
import { retryTask } from '../actions.js';
import { articleTools, filterBar } from './tags.js';

/** The analysis of an article, or where it stands (shared with the reader). */
export function analysisBlock(article, task, { full = false } = {}) {
  const analysis = article.analysis;
  if (analysis && typeof analysis === 'object') {
    const topics = (Array.isArray(analysis.topics) ? analysis.topics : []).filter((x) => typeof x === 'string');
    const points = (Array.isArray(analysis.key_points) ? analysis.key_points : []).filter((x) => typeof x === 'string');
    return h('div', { class: 'analysis', dataset: { state: 'ready' } },
      typeof analysis.summary === 'string' ? h('p', { class: full ? 'summary' : 'summary clamp' }, analysis.summary) : null,
      full && points.length ? [h('h3', null, t('Key points')), h('ul', { class: 'key-points' }, points.map((p) => h('li', null, p)))] : null,
      topics.length ? h('ul', { class: 'topics', 'aria-label': t('Topics') }, topics.map((topic) => h('li', { class: 'topic' }, topic))) : null);
  }
  if (task && isActive(task)) {
    const since = Date.parse(task.started_at || task.created_at);
    return h('p', { class: 'analysing', dataset: { state: 'analysing' } }, spinner(),
      h('span', null, task.status === 'pending' ? t('Queued for analysis… ') : t('Analysing… ')),
      h('span', { class: 'elapsed' }, Number.isNaN(since) ? '' : duration(serverNow() - since)));
  }
  if (task && (task.status === 'failed' || task.status === 'cancelled')) {
    const message = task.status === 'failed' ? t('Analysis failed: {why} ', { why: describeTaskError(task.error) }) : t('Analysis cancelled. ');
    return h('p', { class: 'analysis-problem', dataset: { state: task.status } },
      h('span', { class: task.status === 'failed' ? 'error-text' : 'muted' }, message),
      h('button', { type: 'button', class: 'link-button raised', onclick: (e) => busy(e.currentTarget, () => retryTask(task.task_id)) }, t('Try again')));
  }
  if (task && task.status === 'completed') {
    return h('p', { class: 'analysing', dataset: { state: 'loading' } }, spinner(), t('Loading the analysis…'));
  }
  return h('p', { class: 'muted', dataset: { state: 'none' } }, t('No analysis yet.'));
}

/** An article saved from a link whose page has not arrived: fetching, or why not
 * (shared with the reader). */
export function fetchBlock(article, task) {
  if (article.fetch_status === 'failed') {
    const why = task && task.error ? describeTaskError(task.error) : t('The page could not be fetched.');
    return h('p', { class: 'analysis-problem', dataset: { state: 'fetch-failed' } },
      h('span', { class: 'error-text' }, t('Could not fetch the page: {why} ', { why })),
      task ? h('button', { type: 'button', class: 'link-button raised', onclick: (e) => busy(e.currentTarget, () => retryTask(task.task_id)) }, t('Try again')) : null);
  }
  return h('p', { class: 'analysing', dataset: { state: 'fetching' } }, spinner(), h('span', null, t('Fetching the page…')));
}

/** The page's bookmarklet: opens this server's page with the current tab's link and
 * title, which saves it (see app.js, "#/save"). */
function bookmarklet() {
  const target = `${location.origin}${location.pathname}#/save?url=`;
  const code = `javascript:void(window.open(${JSON.stringify(target)}+encodeURIComponent(location.href)+'&title='+encodeURIComponent(document.title)))`;
  return h('p', { class: 'hint bookmarklet-row' },
    t('From any page: drag '),
    h('a', {
      class: 'bookmarklet', id: 'bookmarklet', href: code,
      onclick: (event) => { event.preventDefault(); toast(t('Drag this link to your bookmarks bar, then click it on the page you want to save.'), { kind: 'info' }); },
    }, t('Save to InsightReader')),
    t(' to your bookmarks bar.'));
}

function articleCard(article) {
  const link = h('a', { href: `#/article/${encodeURIComponent(article.article_id)}`, class: 'card-link' });
  const meta = h('p', { class: 'article-card-meta' });
  const body = h('div', { class: 'article-card-body' });
  const tools = articleTools(article.article_id);
  const el = h('li', { class: 'card article-card', dataset: { articleId: article.article_id } },
    h('h2', { class: 'article-card-title' }, link), meta, body, tools.el);
  let key = null;

  function update() {
    const current = state.articles.get(article.article_id) || article;
    setText(link, current.title);
    const minutes = current.analysis && current.analysis.reading_time_minutes;
    const bits = [t('Saved {when}', { when: when(current.created_at) })];
    if (Number.isFinite(minutes)) bits.push(t('{count} min read', { count: Math.max(1, minutes) }));
    if (current.url && hostOf(current.url)) bits.push(hostOf(current.url));
    setText(meta, bits.join(' · '));
    const fetching = current.fetch_status === 'fetching' || current.fetch_status === 'failed';
    const task = fetching ? fetchTask(current.article_id) : analysisTask(current.article_id);
    if (!current.analysis && task && task.partial) refreshTask(task.task_id);
    const next = `${current.fetch_status || ''}|${current.analysis ? 'a' : ''}|${task ? task.status : ''}|${task && task.error ? task.error.code : ''}`;
    if (next !== key) {
      key = next;
      replace(body, fetching ? fetchBlock(current, task) : analysisBlock(current, task));
      el.dataset.state = body.firstElementChild ? body.firstElementChild.dataset.state : '';
    }
    tools.update();
    tick();
  }

  function tick() {
    const task = analysisTask(article.article_id);
    const elapsed = body.querySelector('.elapsed');
    if (elapsed && task) setText(elapsed, duration(serverNow() - Date.parse(task.started_at || task.created_at)));
  }

  update();
  return { el, update, tick };
}

function newArticleForm(onSaved) {
  const titleInput = h('input', { id: 'new-title', name: 'title', maxlength: '500', autocomplete: 'off' });
  const urlInput = h('input', { id: 'new-url', name: 'url', type: 'url', maxlength: '2048', pattern: 'https?://\\S+', placeholder: 'https://…', autocomplete: 'off' });
  const contentInput = h('textarea', { id: 'new-content', name: 'content', rows: '9', placeholder: t('Paste the article text here, or leave it empty to fetch the page from the link') });
  const error = h('p', { class: 'form-error', role: 'alert' });
  const save = h('button', { type: 'submit', class: 'button primary' }, t('Save and analyse'));
  const form = h('form', { class: 'card new-article', id: 'new-article', 'aria-labelledby': 'new-article-title', novalidate: false },
    h('h2', { id: 'new-article-title' }, t('Add an article')),
    h('div', { class: 'field-row' },
      h('label', { for: 'new-url' }, t('Link')), urlInput),
    h('div', { class: 'field-row' },
      h('label', { for: 'new-title' }, t('Title '), h('span', { class: 'optional' }, t('(with the text)'))), titleInput),
    h('div', { class: 'field-row' },
      h('label', { for: 'new-content' }, t('Text '), h('span', { class: 'optional' }, t('(optional with a link: the page is fetched)'))), contentInput),
    error,
    h('div', { class: 'form-actions' }, save, h('span', { class: 'hint' }, t('Ctrl+Enter saves from the text box'))),
    bookmarklet());

  contentInput.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    setText(error, '');
    const fields = { title: titleInput.value.trim(), content: contentInput.value, url: urlInput.value.trim() || null };
    if (!fields.content.trim()) fields.content = '';
    if (!fields.content && !fields.url) {
      setText(error, t('Give a link to fetch the page from, or a title and the article text.'));
      urlInput.focus();
      return;
    }
    if (fields.content && !fields.title) {
      setText(error, t('A title is needed with the text.'));
      titleInput.focus();
      return;
    }
    const body = fields.content ? { title: fields.title, content: fields.content } : {};
    if (fields.url) body.url = fields.url;
    if (!fields.content && fields.title) body.title = fields.title;
    busy(save, async () => {
      try {
        const answer = await api('POST', '/articles/save-with-analysis', body, { headers: { 'Idempotency-Key': randomId() } });
        form.reset();
        noteArticleSaved(answer, fields);
        onSaved(answer.article_id);
      } catch (err) {
        setText(error, describeError(err));
      }
    });
  });
  return { form, focus: () => urlInput.focus() };
}

/** Mount the library into ``main``; returns {unmount, escape}. */
export function mountLibrary(main) {
  const heading = h('h1', { tabindex: '-1' }, t('Your reading'));
  const toggle = h('button', { type: 'button', class: 'button primary', 'aria-expanded': 'false', 'aria-controls': 'new-article' }, t('Add an article'));
  const list = h('ol', { class: 'article-list', 'aria-label': t('Saved articles') });
  const noMatch = h('p', { class: 'empty card muted', hidden: true }, t('No articles match this filter.'));
  const empty = h('div', { class: 'empty card', hidden: true },
    h('h2', null, t('Nothing saved yet')),
    h('p', null, t('Paste an article above. You will get a summary, key points and topics in a few seconds, and can then read it with an AI companion: select any passage to ask about it.')));
  const more = h('button', { type: 'button', class: 'button ghost', hidden: true }, t('Show older articles'));
  const loading = h('p', { class: 'muted loading-line' }, spinner(), t('Loading your articles…'));
  const cards = new Map();
  const filters = filterBar(() => {
    loadArticles().catch((err) => toast(describeError(err)));
  });

  const { form, focus } = newArticleForm((id) => {
    setFormOpen(false);
    const card = cards.get(id);
    if (card) card.el.scrollIntoView({ behavior: 'smooth', block: 'nearest' });
  });
  function setFormOpen(open) {
    form.hidden = !open;
    toggle.setAttribute('aria-expanded', String(open));
    setText(toggle, open ? t('Close') : t('Add an article'));
    if (open) focus();
  }
  toggle.addEventListener('click', () => setFormOpen(form.hidden));
  setFormOpen(false);

  main.replaceChildren(h('div', { class: 'library' },
    h('div', { class: 'library-head' }, h('div', null, heading, h('p', { class: 'lede' }, t('Save what you want to read closely. Analyses arrive by themselves.'))), toggle),
    form, filters.el, loading, empty, noMatch, list, h('div', { class: 'more-row' }, more)));

  function render() {
    if (!state.articlesLoaded) return;
    loading.hidden = true;
    const filtered = Object.values(state.filter).some(Boolean);
    empty.hidden = filtered || state.articleOrder.length > 0;
    noMatch.hidden = !filtered || state.articleOrder.length > 0;
    if (!filtered && !state.articleOrder.length && form.hidden && !render.opened) {
      render.opened = true;
      setFormOpen(true);
    }
    state.articleOrder.forEach((id, index) => {
      const article = state.articles.get(id);
      if (!article) return;
      let card = cards.get(id);
      if (!card) {
        card = articleCard(article);
        cards.set(id, card);
      } else {
        card.update();
      }
      if (list.children[index] !== card.el) list.insertBefore(card.el, list.children[index] || null);
    });
    for (const [id, card] of cards) {
      if (!state.articleOrder.includes(id)) {
        card.el.remove();
        cards.delete(id);
      }
    }
    more.hidden = !state.articlesCursor;
  }

  more.addEventListener('click', () => busy(more, () => loadArticles({ more: true }).catch((err) => toast(describeError(err)))));

  const offs = [
    on('articles', render),
    on('article', (article) => {
      if (!matchesFilter(article) && state.articleOrder.includes(article.article_id)) {
        state.articleOrder = state.articleOrder.filter((id) => id !== article.article_id);
        emit('articles');
      } else {
        cards.get(article.article_id)?.update();
      }
    }),
    on('tags', () => filters.update()),
    on('task', (task) => { if (task.task_type === 'article_analysis' && task.article_id) cards.get(task.article_id)?.update(); }),
    on('tasks', () => { for (const card of cards.values()) card.update(); }),
    on('tick', () => { for (const card of cards.values()) card.tick(); }),
  ];
  render();
  heading.focus({ preventScroll: true });
  document.title = t('InsightReader');
  loadArticles().catch((err) => {
    setText(loading, describeError(err));
  });
  loadTags().catch((err) => toast(describeError(err)));

  return {
    unmount: () => offs.forEach((off) => off()),
    escape() {
      if (!form.hidden && state.articleOrder.length) {
        setFormOpen(false);
        toggle.focus();
        return true;
      }
      return false;
    },
  };
}
