// Conversations on a passage: a selection asks for an insight; once it is written,
// follow-up buttons are asked for (with the insight and the earlier turns); clicking
// one asks the next insight. Threads live in memory.js, texts in the task store.

import { api } from './api.js';
import { randomId } from './dom.js';
import * as memory from './memory.js';
import { describeError } from './messages.js';
import { emit, noteSubmitted, on, state } from './store.js';

export const MAX_SELECTION = 20_000;
const MAX_TURN_CHARS = 20_000;
const MAX_HISTORY = 50;

/** Insights asked on this page (since it loaded): their text is shown as it flows in. */
export const freshTurns = new Set();

/** Thread ids whose follow-up request is in flight, and the error of a failed one. */
const asking = new Set();
export const buttonErrors = new Map();

/** Start a conversation about ``selection``; ``highlightId``: the highlight it is, so
 * the server keeps the insights with it. */
export async function startThread(articleId, selection, highlightId = null) {
  const thread = { id: randomId(), selection, created_at: new Date().toISOString(), turns: [] };
  if (highlightId) thread.highlight_id = highlightId;
  const answer = await submitInsight(articleId, thread, {});
  memory.addThread(articleId, thread);
  addTurn(articleId, thread, answer, {});
  return thread;
}

/** Ask the next question in ``thread`` (a follow-up button, or the reader's own). */
export async function askNext(articleId, thread, { label = null, question = null, intent = null }) {
  const answer = await submitInsight(articleId, thread, { question, intent });
  addTurn(articleId, thread, answer, { label, question, intent });
}

function submitInsight(articleId, thread, { question, intent }) {
  const body = { selected_text: thread.selection, article_id: articleId };
  if (thread.highlight_id) body.highlight_id = thread.highlight_id;
  if (intent) body.intent = intent;
  if (question) body.question = question.slice(0, 2000);
  return api('POST', '/insights/generate', body, { headers: { 'Idempotency-Key': randomId() } });
}

function addTurn(articleId, thread, answer, { label = null, question = null, intent = null }) {
  freshTurns.add(answer.task_id);
  thread.turns.push({ task_id: answer.task_id, label, question, intent, buttons_task_id: null });
  memory.touch();
  noteSubmitted(answer, 'insight_generation', articleId);
  emit('threads', articleId);
  ensureButtons(articleId, thread);
}

function history(thread) {
  const turns = [];
  for (const turn of thread.turns.slice(0, -1)) {
    const task = state.tasks.get(turn.task_id);
    if (!task || task.status !== 'completed' || !task.text) continue;
    turns.push({ role: 'user', content: (turn.question || turn.label || 'What does this passage mean?').slice(0, MAX_TURN_CHARS) });
    turns.push({ role: 'assistant', content: task.text.slice(0, MAX_TURN_CHARS) });
  }
  return turns.slice(-MAX_HISTORY);
}

/** Ask for follow-up buttons once the thread's last insight is written. */
export async function ensureButtons(articleId, thread) {
  const last = thread.turns[thread.turns.length - 1];
  if (!last || last.buttons_task_id || asking.has(thread.id)) return;
  const task = state.tasks.get(last.task_id);
  if (!task || task.status !== 'completed' || !task.text) return;
  asking.add(thread.id);
  buttonErrors.delete(thread.id);
  emit('threads', articleId);
  const body = { selected_text: thread.selection, insight: task.text.slice(0, MAX_TURN_CHARS), conversation_history: history(thread) };
  if (last.intent) body.intent = last.intent;
  try {
    const answer = await api('POST', '/insights/generate-buttons', body, { headers: { 'Idempotency-Key': randomId() } });
    last.buttons_task_id = answer.task_id;
    memory.touch();
    noteSubmitted(answer, 'button_generation');
  } catch (err) {
    buttonErrors.set(thread.id, describeError(err));
  } finally {
    asking.delete(thread.id);
    emit('threads', articleId);
  }
}

export function isAskingButtons(thread) {
  return asking.has(thread.id);
}

// An insight written while the article was not on screen still gets its buttons.
on('task', (task) => {
  if (task.task_type !== 'insight_generation' || task.status !== 'completed') return;
  const found = memory.findTurn(task.task_id);
  if (found && found.last) ensureButtons(found.articleId, found.thread);
});
