// The notes column of the reader: one thread per selected passage, each a
// conversation of insights (streamed as they are written) and follow-up buttons.

import { serverNow } from '../api.js';
import { cancelTask, retryTask } from '../actions.js';
import { askNext, buttonErrors, ensureButtons, freshTurns, isAskingButtons } from '../conversation.js';
import { h, replace, setText } from '../dom.js';
import { duration, t } from '../i18n.js';
import * as memory from '../memory.js';
import { describeError, describeTaskError } from '../messages.js';
import { isActive, on, refreshTask, state } from '../store.js';
import { announce, busy, spinner, toast } from '../ui.js';

const QUOTE_CHARS = 220;

function clamp(text, limit) {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > limit ? `${flat.slice(0, limit - 1).trimEnd()}…` : flat;
}

function elapsedOf(task) {
  const since = Date.parse(task.started_at || task.created_at);
  return Number.isNaN(since) ? '' : duration(serverNow() - since);
}

const reducedMotion = window.matchMedia('(prefers-reduced-motion: reduce)');

/**
 * One insight of a thread. Its text is revealed smoothly: the server sends deltas in
 * batches (and a fast model may have written everything before the page even knows
 * the task id), so the shown text catches up with the written text a few characters
 * a frame, faster the further behind it is (under a second for a whole insight).
 * Turns restored from an earlier visit, and readers who prefer reduced motion, get
 * the text at once. ``onShown`` is called when the shown text has caught up with a
 * finished task.
 */
function turnView(turn, { fresh, onShown }) {
  const question = h('p', { class: 'turn-question' });
  const text = h('p', { class: 'insight-text', dataset: { taskId: turn.task_id } });
  const status = h('p', { class: 'turn-status' });
  const el = h('li', { class: 'turn', dataset: { taskId: turn.task_id } }, question, text, status);
  if (turn.label || turn.question) setText(question, turn.label || turn.question);
  else question.hidden = true;
  let shown = null;
  let target = '';
  let frame = 0;
  let animate = fresh;

  function caughtUp() {
    const task = state.tasks.get(turn.task_id);
    return Boolean(task) && !isActive(task) && text.textContent === target;
  }

  function settle() {
    const task = state.tasks.get(turn.task_id);
    const done = caughtUp();
    text.classList.toggle('streaming', Boolean(task) && (isActive(task) || !done));
    text.setAttribute('aria-busy', String(!done));
    el.dataset.shown = done ? 'all' : 'part';
    if (done) onShown();
  }

  function step() {
    frame = 0;
    const current = text.textContent;
    const behind = target.length - current.length;
    if (behind > 0) {
      text.textContent = target.slice(0, current.length + Math.max(3, Math.ceil(behind / 9)));
      frame = requestAnimationFrame(step);
    }
    settle();
  }

  function reveal(next) {
    target = next;
    if (!target.startsWith(text.textContent)) text.textContent = ''; // a new attempt
    if (!animate || reducedMotion.matches || document.hidden) {
      cancelAnimationFrame(frame);
      frame = 0;
      setText(text, target);
    } else if (!frame) {
      frame = requestAnimationFrame(step);
    }
    animate = true; // after the first render, new text always flows in
    settle();
  }

  function update() {
    const task = state.tasks.get(turn.task_id);
    if (!task) {
      refreshTask(turn.task_id, 0);
      return;
    }
    reveal(task.text);
    el.dataset.status = task.status;
    const key = `${task.status}|${task.text ? 1 : 0}|${task.error ? task.error.code : ''}`;
    if (key === shown) {
      tick();
      return;
    }
    if (shown && !shown.startsWith('completed') && task.status === 'completed') announce(t('The insight is ready.'));
    shown = key;
    const stop = () => h('button', { type: 'button', class: 'link-button', onclick: (e) => busy(e.currentTarget, () => cancelTask(task.task_id)) }, t('Stop'));
    const again = () => h('button', { type: 'button', class: 'link-button', onclick: (e) => busy(e.currentTarget, () => retryTask(task.task_id)) }, t('Try again'));
    if (task.status === 'pending') {
      replace(status, spinner(), h('span', null, t('Waiting for a free moment… ')), h('span', { class: 'elapsed' }), ' ', stop());
    } else if (task.status === 'running') {
      replace(status, spinner(), h('span', null, task.text ? t('Writing… ') : t('Thinking… ')), h('span', { class: 'elapsed' }), ' ', stop());
    } else if (task.status === 'failed') {
      replace(status, h('span', { class: 'error-text' }, describeTaskError(task.error), ' '), again());
    } else if (task.status === 'cancelled') {
      replace(status, h('span', { class: 'muted' }, t('Stopped. ')), again());
    } else {
      status.replaceChildren();
    }
    status.hidden = !status.childNodes.length;
    tick();
  }

  function tick() {
    const task = state.tasks.get(turn.task_id);
    const elapsed = status.querySelector('.elapsed');
    if (task && elapsed) setText(elapsed, elapsedOf(task));
  }

  return { el, update, tick, caughtUp };
}

function threadView(articleId, thread) {
  const quote = h('blockquote', { class: 'thread-quote' }, clamp(thread.selection, QUOTE_CHARS));
  const turnsEl = h('ol', { class: 'turns' });
  const followups = h('div', { class: 'followups', role: 'group', 'aria-label': t('Follow-up questions') });
  const input = h('input', { type: 'text', name: 'question', maxlength: '2000', placeholder: t('Ask your own question…'), autocomplete: 'off', 'aria-label': t('Your own question about this passage') });
  const askButton = h('button', { type: 'submit', class: 'button small' }, t('Ask'));
  const form = h('form', { class: 'ask-own' }, input, askButton);
  const el = h('li', { class: 'thread', dataset: { threadId: thread.id } }, quote, turnsEl, followups, form);
  const turns = new Map();
  let followupKey = null;

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const question = input.value.trim();
    if (!question) {
      input.focus();
      return;
    }
    busy(askButton, async () => {
      try {
        await askNext(articleId, thread, { label: question, question });
        input.value = '';
      } catch (err) {
        toast(describeError(err));
      }
    });
  });

  function choose(button, choice) {
    busy(button, async () => {
      try {
        await askNext(articleId, thread, { label: choice.label, question: choice.prompt, intent: choice.intent });
      } catch (err) {
        toast(describeError(err));
      }
    });
  }

  function renderFollowups() {
    const last = thread.turns[thread.turns.length - 1];
    const insight = last && state.tasks.get(last.task_id);
    const lastView = last && turns.get(last.task_id + (thread.turns.length - 1));
    const ready = insight && insight.status === 'completed' && lastView && lastView.caughtUp();
    form.hidden = !ready;
    if (!ready) {
      followupKey = 'none';
      followups.replaceChildren();
      followups.hidden = true;
      return;
    }
    const buttonsTask = last.buttons_task_id && state.tasks.get(last.buttons_task_id);
    if (last.buttons_task_id && !buttonsTask) refreshTask(last.buttons_task_id, 0);
    const error = buttonErrors.get(thread.id);
    const key = `${last.task_id}|${last.buttons_task_id}|${buttonsTask ? buttonsTask.status : ''}|${error || ''}|${isAskingButtons(thread)}`;
    if (key === followupKey) return;
    followupKey = key;
    followups.hidden = false;
    const offered = (list) => list
      .filter((b) => b && typeof b.label === 'string')
      .map((b) => h('button', {
        type: 'button', class: 'followup', title: typeof b.prompt === 'string' ? b.prompt : null,
        dataset: { intent: typeof b.intent === 'string' ? b.intent : '' },
        onclick: (e) => choose(e.currentTarget, b),
      }, b.label));
    // A failed button task may carry default buttons (error.fallback): offer them.
    const fallback = buttonsTask && buttonsTask.status === 'failed' && buttonsTask.error
      && buttonsTask.error.fallback && Array.isArray(buttonsTask.error.fallback.buttons)
      ? buttonsTask.error.fallback.buttons : null;
    if (buttonsTask && buttonsTask.status === 'completed' && buttonsTask.result && Array.isArray(buttonsTask.result.buttons)) {
      replace(followups, offered(buttonsTask.result.buttons));
    } else if (fallback) {
      replace(followups, ...offered(fallback), h('button', {
        type: 'button', class: 'link-button', title: t('Ask again for questions about this passage'),
        onclick: (e) => busy(e.currentTarget, () => retryTask(buttonsTask.task_id)),
      }, t('More specific questions')));
    } else if (buttonsTask && (buttonsTask.status === 'failed' || buttonsTask.status === 'cancelled')) {
      replace(followups, h('span', { class: 'muted' }, t('No follow-up questions this time. ')),
        h('button', { type: 'button', class: 'link-button', onclick: (e) => busy(e.currentTarget, () => retryTask(buttonsTask.task_id)) }, t('Try again')));
    } else if (error) {
      replace(followups, h('span', { class: 'error-text' }, `${error} `),
        h('button', { type: 'button', class: 'link-button', onclick: () => ensureButtons(articleId, thread) }, t('Try again')));
    } else {
      replace(followups, h('span', { class: 'followups-loading' }, spinner(), t('Finding follow-up questions…')));
      if (!last.buttons_task_id) ensureButtons(articleId, thread);
    }
  }

  function update() {
    thread.turns.forEach((turn, index) => {
      let view = turns.get(turn.task_id + index);
      if (!view) {
        view = turnView(turn, { fresh: freshTurns.has(turn.task_id), onShown: () => renderFollowups() });
        turns.set(turn.task_id + index, view);
        turnsEl.append(view.el);
      }
      view.update();
    });
    renderFollowups();
  }

  function concerns(taskId) {
    return thread.turns.some((turn) => turn.task_id === taskId || turn.buttons_task_id === taskId);
  }

  function tick() {
    for (const view of turns.values()) view.tick();
  }

  update();
  return { el, update, concerns, tick };
}

/** Mount the notes of ``articleId`` into ``container``; returns {unmount, count}. */
export function mountNotes(container, articleId) {
  const list = h('ol', { class: 'threads' });
  const empty = h('div', { class: 'notes-empty' },
    h('p', null, t('Select a passage in the text to highlight it or to ask about it (“Ask about this passage”).')),
    h('p', null, t('Insights are written here as they come, with follow-up questions to keep going.')));
  container.append(empty, list);
  const views = new Map();

  function render() {
    const threads = memory.threadsOf(articleId);
    empty.hidden = threads.length > 0;
    threads.forEach((thread, index) => {
      let view = views.get(thread.id);
      if (!view) {
        view = threadView(articleId, thread);
        views.set(thread.id, view);
      } else {
        view.update();
      }
      if (list.children[index] !== view.el) list.insertBefore(view.el, list.children[index] || null);
    });
  }

  render();
  const offs = [
    on('threads', (id) => { if (id === articleId) render(); }),
    on('task', (task) => {
      for (const view of views.values()) if (view.concerns(task.task_id)) view.update();
    }),
    on('tasks', () => { for (const view of views.values()) view.update(); }),
    on('tick', () => { for (const view of views.values()) view.tick(); }),
  ];
  return {
    unmount: () => offs.forEach((off) => off()),
    count: () => memory.threadsOf(articleId).length,
    first: () => list.firstElementChild,
  };
}
