// Cancel and retry, shared by the task panel and the views that show a task.

import { api } from './api.js';
import { describeError } from './messages.js';
import { currentEventId, isActive, mergeServerTask, refreshTask, state } from './store.js';
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
