// Cancel and retry, shared by the task panel and the views that show a task; saving a
// link that arrived from the bookmarklet or the share sheet.

import { api } from './api.js';
import { randomId } from './dom.js';
import { t } from './i18n.js';
import { describeError } from './messages.js';
import { currentEventId, isActive, mergeServerTask, noteArticleSaved, refreshTask, state } from './store.js';
import { toast } from './ui.js';

export async function cancelTask(id) {
  try {
    const mark = currentEventId();
    mergeServerTask(await api('POST', `/tasks/${encodeURIComponent(id)}/cancel`), mark);
  } catch (err) {
    toast(describeError(err, 'task'));
    refreshTask(id, 0);
  }
}

export async function retryTask(id) {
  try {
    await api('POST', `/tasks/${encodeURIComponent(id)}/retry`);
    const task = state.tasks.get(id);
    if (task && !isActive(task)) {
      task.status = 'pending';
      task.error = null;
      task.finished_at = null;
    }
    refreshTask(id, 0);
  } catch (err) {
    toast(describeError(err, 'task'));
    refreshTask(id, 0);
  }
}

/** The link a share or the bookmarklet brought: ``url``, or the first http(s) link in
 * ``text`` (Android's share sheet often sends the link there); null when none. */
export function sharedLink(params) {
  const direct = (params.get('url') || '').trim();
  const inText = (params.get('text') || '').match(/https?:\/\/\S+/);
  const url = /^https?:\/\//i.test(direct) ? direct : inText ? inText[0] : '';
  if (!url) return null;
  return { url, title: (params.get('title') || '').trim().slice(0, 500) };
}

/** Save a link: the article shows at once as "Fetching the page…". */
export async function saveLink({ url, title }) {
  const body = title ? { url, title } : { url };
  try {
    const answer = await api('POST', '/articles/save-with-analysis', body, { headers: { 'Idempotency-Key': randomId() } });
    noteArticleSaved(answer, { url, title, content: '' });
    toast(t('Saved. Fetching the page…'), { kind: 'info' });
  } catch (err) {
    toast(describeError(err));
  }
}
