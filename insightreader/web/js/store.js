// What the page knows: the user's tasks and articles, kept current by the event
// stream, plus a tiny publish/subscribe bus the views listen to.
//
// Topics: 'task' (one task changed), 'tasks' (the list changed), 'article' (one
// article changed), 'articles' (the list changed), 'tags' (the user's tags changed),
// 'tick' (a second passed), 'import' (an import moved on: its progress), 'batch' (a
// re-analysis moved on).

import { api, serverNow } from './api.js';

const subscribers = new Map();

export function on(topic, fn) {
  if (!subscribers.has(topic)) subscribers.set(topic, new Set());
  subscribers.get(topic).add(fn);
  return () => subscribers.get(topic).delete(fn);
}

export function emit(topic, payload) {
  for (const fn of [...(subscribers.get(topic) || [])]) {
    try {
      fn(payload);
    } catch (err) {
      console.error(err); // one broken view must not stop the others
    }
  }
}

export const state = {
  tasks: new Map(),
  tasksCursor: null,
  tasksLoaded: false,
  articles: new Map(),
  articleOrder: [],
  articlesCursor: null,
  articlesLoaded: false,
  lenses: [],
  /** The library's filter: a tag name and the states ('' = either way). */
  filter: { tag: '', archived: '', favorite: '' },
  /** The user's tags: [{name, count}]. */
  tags: [],
};

/** The id of the last event the stream delivered (its source is set by app.js). */
let eventIdSource = () => null;
export function setEventIdSource(fn) {
  eventIdSource = fn;
}
export function currentEventId() {
  return eventIdSource();
}

export function clear() {
  state.tasks.clear();
  state.tasksCursor = null;
  state.tasksLoaded = false;
  state.articles.clear();
  state.articleOrder = [];
  state.articlesCursor = null;
  state.articlesLoaded = false;
  state.filter = { tag: '', archived: '', favorite: '' };
  state.tags = [];
}

const nowIso = () => new Date(serverNow()).toISOString();
const FINISHED = new Set(['completed', 'failed', 'cancelled']);
export const isFinished = (task) => FINISHED.has(task.status);
export const isActive = (task) => task.status === 'pending' || task.status === 'running';

// -- tasks -----------------------------------------------------------------------------

function blankTask(id, type) {
  return {
    task_id: id, task_type: type || 'task', status: 'pending', priority: 0, attempts: 0,
    article_id: null, metadata: {}, result: null, error: null, model: null,
    usage: { prompt_tokens: 0, completion_tokens: 0 },
    created_at: nowIso(), started_at: null, finished_at: null,
    // Streamed text of the current attempt: deltas by index, merged in order.
    attempt: 0, deltas: new Map(), next: 0, text: '',
    // Id of the last event applied (to tell it from an older snapshot), and
    // whether the server's full record was ever seen.
    eventId: null, partial: true,
  };
}

function task(id, type) {
  let found = state.tasks.get(id);
  if (!found) {
    found = blankTask(id, type);
    state.tasks.set(id, found);
    emit('tasks');
  }
  return found;
}

function restartText(t, attempt) {
  t.attempt = attempt;
  t.deltas = new Map();
  t.next = 0;
  t.text = '';
}

const SERVER_FIELDS = [
  'task_type', 'status', 'priority', 'attempts', 'article_id', 'metadata', 'result', 'error',
  'model', 'usage', 'created_at', 'started_at', 'finished_at',
];

/** Merge the server's record of a task, read when the stream's last id was ``mark``
 * (null: before any event). A task that had a later event meanwhile keeps the state
 * that event gave it: the record may predate it. */
export function mergeServerTask(record, mark) {
  const t = task(record.task_id, record.task_type);
  const newer = t.eventId != null && (mark == null || t.eventId > mark);
  if (newer) {
    for (const key of ['priority', 'article_id', 'created_at', 'model', 'usage']) t[key] = record[key];
    if (!t.metadata || !Object.keys(t.metadata).length) t.metadata = record.metadata;
  } else {
    for (const key of SERVER_FIELDS) t[key] = record[key];
    if (t.status === 'running' && record.attempts > t.attempt) restartText(t, record.attempts);
    if (isFinished(t)) finishText(t);
  }
  t.partial = false;
  applyResult(t);
  emit('task', t);
  return t;
}

function finishText(t) {
  const insight = t.result && typeof t.result.insight === 'string' ? t.result.insight : null;
  if (insight != null) t.text = insight;
  t.deltas = new Map();
}

const toFetch = new Map();

/** GET /tasks/{id} soon (a few events of one task share one request). */
export function refreshTask(id, delay = 150) {
  if (toFetch.has(id)) return toFetch.get(id);
  const promise = new Promise((resolve) => setTimeout(resolve, delay))
    .then(() => {
      toFetch.delete(id);
      const mark = currentEventId();
      return api('GET', `/tasks/${encodeURIComponent(id)}`).then((record) => mergeServerTask(record, mark));
    })
    .catch(() => { toFetch.delete(id); });
  toFetch.set(id, promise);
  return promise;
}

/** Apply one event from the stream. */
export function applyEvent(name, data, id) {
  if (name.startsWith('import_')) {
    if (data && typeof data.import_id === 'string') emit('import', data);
    return;
  }
  if (name.startsWith('batch_')) {
    if (data && typeof data.batch_id === 'string') emit('batch', data);
    return;
  }
  if (!data || typeof data.task_id !== 'string') return;
  const t = task(data.task_id, data.task_type);
  if (data.task_type) t.task_type = data.task_type;
  if (data.metadata && typeof data.metadata === 'object') t.metadata = data.metadata;
  if (id != null) t.eventId = Math.max(t.eventId ?? 0, id);
  switch (name) {
    case 'task_queued':
      t.status = 'pending';
      t.result = null;
      t.error = null;
      t.started_at = null;
      t.finished_at = null;
      break;
    case 'task_started':
      t.status = 'running';
      t.error = null;
      t.finished_at = null;
      t.started_at = nowIso();
      if (Number.isInteger(data.attempt)) {
        t.attempts = data.attempt;
        if (data.attempt > t.attempt) restartText(t, data.attempt);
      }
      break;
    case 'task_progress': {
      const { attempt, index, delta } = data;
      if (!Number.isInteger(attempt) || !Number.isInteger(index) || typeof delta !== 'string') return;
      if (attempt < t.attempt) return; // text of an earlier attempt: dropped
      if (attempt > t.attempt) restartText(t, attempt);
      if (isFinished(t)) return;
      if (t.status === 'pending') t.status = 'running';
      if (index >= t.next && !t.deltas.has(index)) t.deltas.set(index, delta);
      while (t.deltas.has(t.next)) {
        t.text += t.deltas.get(t.next);
        t.deltas.delete(t.next);
        t.next += 1;
      }
      break;
    }
    case 'task_completed':
      t.status = 'completed';
      t.result = data.result ?? null;
      t.error = null;
      t.finished_at = nowIso();
      finishText(t);
      applyResult(t);
      break;
    case 'task_failed':
      t.status = 'failed';
      t.error = data.error ?? { code: 'internal_error', message: '', retryable: true };
      t.finished_at = nowIso();
      break;
    case 'task_cancelled':
      t.status = 'cancelled';
      t.finished_at = nowIso();
      break;
    default:
      return;
  }
  emit('task', t);
  // Exact timestamps, usage and anything the event does not carry.
  if (name !== 'task_progress' && (isFinished(t) || t.partial)) refreshTask(t.task_id);
}

/** What a submit answered: 202 {status, task_id} or 200 with the result (dedup). */
export function noteSubmitted(answer, type, articleId = null) {
  const t = task(answer.task_id, type);
  t.article_id = answer.article_id ?? articleId ?? t.article_id;
  if (answer.status && isFinished(answer) && !isFinished(t)) {
    t.status = answer.status;
    t.result = answer.result ?? null;
    t.error = answer.error ?? null;
    finishText(t);
    applyResult(t);
  }
  emit('task', t);
  if (t.partial) refreshTask(t.task_id, 50);
  return t;
}

/** GET /tasks (the first page, or the next one). */
export async function loadTasks({ more = false } = {}) {
  const mark = currentEventId();
  const query = new URLSearchParams({ limit: '50' });
  if (more && state.tasksCursor) query.set('cursor', state.tasksCursor);
  const page = await api('GET', `/tasks?${query}`);
  for (const record of page.items) mergeServerTask(record, mark);
  if (!more || state.tasksCursor) state.tasksCursor = page.next_cursor;
  state.tasksLoaded = true;
  emit('tasks');
}

export function sortedTasks() {
  return [...state.tasks.values()].sort((a, b) => (b.created_at || '').localeCompare(a.created_at || ''));
}

export function tasksOfArticle(articleId, type) {
  return sortedTasks().filter((t) => t.article_id === articleId && (!type || t.task_type === type));
}

// -- articles ------------------------------------------------------------------------

function mergeArticle(record) {
  const known = state.articles.get(record.article_id);
  const merged = { lenses: {}, ...(known || {}), ...record };
  if (record.content == null && known && known.content != null) merged.content = known.content;
  state.articles.set(record.article_id, merged);
  return merged;
}

/** A page_fetch's outcome on its article: failed, or fetched (then the article's text
 * and title are read again). */
function applyFetch(t) {
  const article = t.article_id && state.articles.get(t.article_id);
  if (!article || !article.fetch_status) return;
  const next = t.status === 'completed' ? 'fetched' : t.status === 'failed' ? 'failed' : isActive(t) ? 'fetching' : null;
  if (!next || article.fetch_status === next) return;
  article.fetch_status = next;
  emit('article', article);
  if (next === 'fetched') loadArticle(article.article_id).catch(() => {});
}

/** A finished task's result, written into the article it belongs to. */
function applyResult(t) {
  if (t.task_type === 'page_fetch') {
    applyFetch(t);
    return;
  }
  if (t.status !== 'completed' || !t.result || typeof t.result !== 'object') return;
  const articleId = t.result.article_id || t.article_id;
  const article = articleId && state.articles.get(articleId);
  if (!article) return;
  if (t.task_type === 'article_analysis' && t.result.analysis) {
    if (article.analysis === t.result.analysis) return;
    article.analysis = t.result.analysis;
  } else if (t.task_type === 'meta_analysis' && t.result.meta_analysis) {
    if (article.meta_analysis === t.result.meta_analysis) return;
    article.meta_analysis = t.result.meta_analysis;
  } else if (t.task_type === 'thinking_lens' && t.result.lens_type) {
    if (article.lenses[t.result.lens_type] === t.result) return;
    article.lenses = { ...article.lenses, [t.result.lens_type]: t.result };
  } else {
    return;
  }
  emit('article', article);
}

export async function loadArticles({ more = false } = {}) {
  const query = new URLSearchParams({ limit: '30' });
  for (const [key, value] of Object.entries(state.filter)) if (value) query.set(key, value);
  if (more && state.articlesCursor) query.set('cursor', state.articlesCursor);
  const page = await api('GET', `/articles?${query}`);
  const ids = page.items.map((item) => mergeArticle(item).article_id);
  state.articleOrder = more ? [...state.articleOrder, ...ids.filter((id) => !state.articleOrder.includes(id))] : ids;
  state.articlesCursor = page.next_cursor;
  state.articlesLoaded = true;
  emit('articles');
}

/** Whether an article belongs in the list under the current filter. */
export function matchesFilter(article) {
  const { tag, archived, favorite } = state.filter;
  if (archived && String(Boolean(article.archived)) !== archived) return false;
  if (favorite && String(Boolean(article.favorite)) !== favorite) return false;
  return !tag || (article.tags || []).some((t) => t.toLocaleLowerCase() === tag.toLocaleLowerCase());
}

export async function loadTags() {
  state.tags = (await api('GET', '/tags')).items;
  emit('tags');
}

/** Replace an article's tags (the server answers the names it keeps). */
export async function setArticleTags(id, tags) {
  const answer = await api('PUT', `/articles/${encodeURIComponent(id)}/tags`, { tags });
  emit('article', mergeArticle({ article_id: id, tags: answer.tags }));
  await loadTags();
}

/** Archive, mark as favourite or rename an article. */
export async function changeArticle(id, change) {
  const changed = await api('PATCH', `/articles/${encodeURIComponent(id)}`, change);
  emit('article', mergeArticle(changed));
}

export async function loadArticle(id) {
  const article = mergeArticle(await api('GET', `/articles/${encodeURIComponent(id)}`));
  for (const t of state.tasks.values()) applyResult(t);
  emit('article', article);
  return article;
}

/** A save's answer: the article in the list at once (``fetching`` when saved from a
 * link alone, its task a page_fetch). */
export function noteArticleSaved(answer, fields) {
  const exists = state.articles.has(answer.article_id);
  const fromLink = !fields.content;
  const article = mergeArticle({
    article_id: answer.article_id,
    title: fields.title || fields.url,
    url: fields.url || null,
    fetch_status: fromLink ? 'fetching' : null,
    analysis: null,
    meta_analysis: null,
    lenses: {},
    created_at: nowIso(),
    ...(exists ? state.articles.get(answer.article_id) : {}),
  });
  state.articleOrder = [article.article_id, ...state.articleOrder.filter((id) => id !== article.article_id)];
  emit('articles');
  noteSubmitted(answer, fromLink ? 'page_fetch' : 'article_analysis', article.article_id);
  return article;
}

export function forgetArticle(id) {
  state.articles.delete(id);
  state.articleOrder = state.articleOrder.filter((x) => x !== id);
  emit('articles');
}

/** The newest page_fetch of an article saved from a link, if the page knows one. */
export function fetchTask(articleId) {
  return tasksOfArticle(articleId, 'page_fetch')[0] || null;
}

/** The newest analysis task of an article, if the page knows one. */
export function analysisTask(articleId) {
  return tasksOfArticle(articleId, 'article_analysis')[0] || null;
}
