// What this tab remembers besides the session (sessionStorage, per user): the
// conversation threads on passages, and which task answers which perspective
// button. Task ids only; texts come from the server (or the live stream).

const KEY = 'insightreader.memory';
const MAX_THREADS_PER_ARTICLE = 50;

let memory = load();

function empty(userId = null) {
  return { user_id: userId, threads: {}, perspectives: {} };
}

function load() {
  try {
    const parsed = JSON.parse(sessionStorage.getItem(KEY) || 'null');
    if (parsed && typeof parsed === 'object' && parsed.threads && parsed.perspectives) return parsed;
  } catch { /* corrupt: start over */ }
  return empty();
}

function save() {
  try { sessionStorage.setItem(KEY, JSON.stringify(memory)); } catch { /* full: memory only */ }
}

/** Switch to ``userId``'s memory (another user's is dropped). */
export function useMemoryOf(userId) {
  if (memory.user_id !== userId) {
    memory = empty(userId);
    save();
  }
}

export function clearMemory() {
  memory = empty();
  try { sessionStorage.removeItem(KEY); } catch { /* ignore */ }
}

/** Threads on an article, newest first. */
export function threadsOf(articleId) {
  return memory.threads[articleId] || [];
}

export function addThread(articleId, thread) {
  const list = [thread, ...threadsOf(articleId)].slice(0, MAX_THREADS_PER_ARTICLE);
  memory.threads[articleId] = list;
  save();
  return thread;
}

export function findTurn(taskId) {
  for (const [articleId, threads] of Object.entries(memory.threads)) {
    for (const thread of threads) {
      const index = thread.turns.findIndex((turn) => turn.task_id === taskId);
      if (index >= 0) return { articleId, thread, turn: thread.turns[index], last: index === thread.turns.length - 1 };
    }
  }
  return null;
}

export function findButtons(taskId) {
  for (const [articleId, threads] of Object.entries(memory.threads)) {
    for (const thread of threads) {
      const turn = thread.turns.find((t) => t.buttons_task_id === taskId);
      if (turn) return { articleId, thread, turn };
    }
  }
  return null;
}

/** Save after changing a thread or turn in place. */
export function touch() {
  save();
}

export function perspectiveTask(articleId, key) {
  return (memory.perspectives[articleId] || {})[key] || null;
}

export function setPerspectiveTask(articleId, key, taskId) {
  memory.perspectives[articleId] = { ...(memory.perspectives[articleId] || {}), [key]: taskId };
  save();
}

/** Which perspective (``meta`` or a lens type) a task answers, if this tab asked for it. */
export function perspectiveKeyOf(taskId) {
  for (const keys of Object.values(memory.perspectives)) {
    for (const [key, id] of Object.entries(keys)) if (id === taskId) return key;
  }
  return null;
}

export function forgetArticleMemory(articleId) {
  delete memory.threads[articleId];
  delete memory.perspectives[articleId];
  save();
}
