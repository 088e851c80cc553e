// The task panel: every task of the user with its live status, progress and elapsed
// time; cancel for pending and running ones, retry for failed and cancelled ones.

import { serverNow } from '../api.js';
import { cancelTask, retryTask } from '../actions.js';
import { h, replace, setText, words } from '../dom.js';
import { duration, t, when } from '../i18n.js';
import { describeError, describeTaskError, taskLabel } from '../messages.js';
import { perspectiveKeyOf } from '../memory.js';
import { isActive, isFinished, loadTasks, on, sortedTasks, state } from '../store.js';
import { busy, statusChip, toast, updateChip } from '../ui.js';

function elapsed(task) {
  const start = Date.parse(task.started_at || '');
  if (Number.isNaN(start)) {
    const queued = Date.parse(task.created_at || '');
    return task.status === 'pending' && !Number.isNaN(queued) ? t('waiting {time}', { time: duration(serverNow() - queued) }) : '';
  }
  const end = isFinished(task) ? Date.parse(task.finished_at || '') : serverNow();
  return duration((Number.isNaN(end) ? serverNow() : end) - start);
}

function subject(task) {
  if (task.task_type !== 'thinking_lens') return taskLabel(task.task_type);
  const result = task.result && typeof task.result === 'object' ? task.result : {};
  const type = result.lens_type || perspectiveKeyOf(task.task_id);
  const lens = state.lenses.find((l) => l.type === type);
  const name = lens ? lens.name : typeof result.lens_name === 'string' ? result.lens_name : null;
  return name ? t('Lens: {name}', { name: t(name) }) : taskLabel(task.task_type);
}

function progressText(task) {
  if (task.task_type === 'insight_generation' && task.text) return t('{count} words written', { count: words(task.text) });
  if (task.status === 'pending') return t('Queued');
  if (task.status === 'running') return t('Working');
  return '';
}

function taskRow(id) {
  const type = h('span', { class: 'task-type' });
  const chip = statusChip('pending');
  const preview = h('p', { class: 'task-preview' });
  const meta = h('p', { class: 'task-meta' });
  const bar = h('div', { class: 'bar', 'aria-hidden': 'true' }, h('span'));
  const error = h('p', { class: 'task-error error-text' });
  const cancel = h('button', { type: 'button', class: 'button small', dataset: { action: 'cancel' } }, t('Cancel'));
  const retry = h('button', { type: 'button', class: 'button small', dataset: { action: 'retry' } }, t('Retry'));
  const open = h('a', { class: 'task-open', hidden: true }, t('Open article'));
  const actions = h('div', { class: 'task-actions' }, open, cancel, retry);
  const el = h('li', { class: 'task-row', dataset: { taskId: id } },
    h('div', { class: 'task-head' }, type, chip), preview, meta, bar, error, actions);

  cancel.addEventListener('click', () => busy(cancel, () => cancelTask(id)));
  retry.addEventListener('click', () => busy(retry, () => retryTask(id)));

  function update() {
    const task = state.tasks.get(id);
    if (!task) return;
    el.dataset.status = task.status;
    setText(type, subject(task));
    updateChip(chip, task.status);
    const text = task.metadata && typeof task.metadata.preview === 'string' ? task.metadata.preview : '';
    setText(preview, text);
    preview.hidden = !text;
    bar.hidden = !isActive(task);
    bar.classList.toggle('indeterminate', task.status === 'running');
    setText(error, task.status === 'failed' ? describeTaskError(task.error) : '');
    error.hidden = task.status !== 'failed';
    cancel.hidden = !isActive(task);
    retry.hidden = !(task.status === 'failed' || task.status === 'cancelled');
    if (task.article_id) {
      open.href = `#/article/${encodeURIComponent(task.article_id)}`;
      open.hidden = false;
    }
    tick();
  }

  function tick() {
    const task = state.tasks.get(id);
    if (!task) return;
    const bits = [when(task.created_at)];
    const time = elapsed(task);
    if (time) bits.push(time);
    const progress = progressText(task);
    if (progress) bits.push(progress);
    if (task.attempts > 1) bits.push(t('attempt {n}', { n: task.attempts }));
    if (task.status === 'completed' && task.model) bits.push(task.model);
    setText(meta, bits.filter(Boolean).join(' · '));
  }

  update();
  return { el, update, tick };
}

/** Wire the static drawer of index.html; returns {open, close, isOpen, unmount}. */
export function mountTaskPanel() {
  const panel = document.getElementById('task-panel');
  const list = document.getElementById('task-list');
  const summary = document.getElementById('task-summary');
  const more = document.getElementById('tasks-more');
  const toggle = document.getElementById('tasks-toggle');
  const badge = document.getElementById('tasks-badge');
  const close = document.getElementById('task-panel-close');
  const rows = new Map();
  let renderQueued = false;

  function render() {
    renderQueued = false;
    const tasks = sortedTasks();
    const active = tasks.filter(isActive).length;
    setText(badge, String(active));
    badge.hidden = active === 0;
    toggle.setAttribute('aria-label', active ? t('Tasks, {count} in progress', { count: active }) : t('Tasks'));
    if (panel.hidden) return;
    const failed = tasks.filter((task) => task.status === 'failed').length;
    setText(summary, tasks.length
      ? [active ? t('{count} in progress', { count: active }) : t('Nothing in progress'), failed ? t('{count} failed', { count: failed }) : ''].filter(Boolean).join(' · ')
      : t('No tasks yet. Saving an article, asking for a perspective or selecting a passage starts one.'));
    tasks.forEach((task, index) => {
      let row = rows.get(task.task_id);
      if (!row) {
        row = taskRow(task.task_id);
        rows.set(task.task_id, row);
      }
      if (list.children[index] !== row.el) list.insertBefore(row.el, list.children[index] || null);
    });
    more.hidden = !state.tasksCursor;
  }

  function scheduleRender() {
    if (!renderQueued) {
      renderQueued = true;
      queueMicrotask(render);
    }
  }

  function open() {
    panel.hidden = false;
    toggle.setAttribute('aria-expanded', 'true');
    document.body.classList.add('drawer-open');
    render();
    for (const row of rows.values()) row.update();
    close.focus();
  }

  function hide({ restoreFocus = true } = {}) {
    if (panel.hidden) return false;
    panel.hidden = true;
    toggle.setAttribute('aria-expanded', 'false');
    document.body.classList.remove('drawer-open');
    if (restoreFocus) toggle.focus();
    return true;
  }

  const onToggle = () => (panel.hidden ? open() : hide());
  const onClose = () => hide();
  const onMore = () => busy(more, () => loadTasks({ more: true }).catch((err) => toast(describeError(err))));
  toggle.addEventListener('click', onToggle);
  close.addEventListener('click', onClose);
  more.addEventListener('click', onMore);

  const offs = [
    on('tasks', scheduleRender),
    on('task', (task) => {
      const row = rows.get(task.task_id);
      if (row && !panel.hidden) row.update();
      scheduleRender();
    }),
    on('tick', () => {
      if (panel.hidden) return;
      for (const row of rows.values()) {
        const task = state.tasks.get(row.el.dataset.taskId);
        if (task && isActive(task)) row.tick();
      }
    }),
  ];
  render();

  return {
    open,
    close: hide,
    isOpen: () => !panel.hidden,
    unmount() {
      hide({ restoreFocus: false });
      offs.forEach((off) => off());
      toggle.removeEventListener('click', onToggle);
      close.removeEventListener('click', onClose);
      more.removeEventListener('click', onMore);
      list.replaceChildren();
      rows.clear();
      replace(summary);
    },
  };
}
