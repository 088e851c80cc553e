// InsightReader's reading page: start-up, routing (#/, #/article/<id>, #/search?q=,
// #/account), the header (search box, connection indicator, task panel, account, sign
// out) and the live event stream.

import { saveLink, sharedLink } from './actions.js';
import { api, getSession, onSessionChange, signOut } from './api.js';
import './conversation.js';
import { setText } from './dom.js';
import { t, translateStatic } from './i18n.js';
import { mountLanguageSwitch, syncLanguage } from './language.js';
import { clearMemory, useMemoryOf } from './memory.js';
import { describeError } from './messages.js';
import * as store from './store.js';
import { EventStream } from './stream.js';
import { dismissToasts, toast } from './ui.js';
import { mountAccount } from './views/account.js';
import { mountAuth } from './views/auth.js';
import { mountLibrary } from './views/library.js';
import { mountReader } from './views/reader.js';
import { mountSearch } from './views/search.js';
import { mountTaskPanel } from './views/tasks.js';

const main = document.getElementById('main');
const topbar = document.getElementById('topbar');
const indicator = document.getElementById('connection');
const indicatorText = indicator.querySelector('.connection-text');
const who = document.getElementById('who');
const searchBox = document.getElementById('search-input');
/** Milliseconds of quiet typing before the results follow the search box. */
const SEARCH_DEBOUNCE_MS = 250;

let view = null;
let taskPanel = null;
let ticker = null;
let running = false;

translateStatic();
mountLanguageSwitch(document.getElementById('language-switch'));

const CONNECTION_TEXT = {
  connecting: 'Connecting…',
  connected: 'Live',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
  stopped: 'Not connected',
  retrying: 'Offline · retrying',
};
const CONNECTION_TITLE = {
  connected: 'Live updates are on.',
  offline: 'The server cannot be reached. Click to try again now.',
  connecting: 'Connecting to live updates…',
};

const stream = new EventStream({
  onEvent: (name, data, id) => store.applyEvent(name, data, id),
  onResync: (reason) => resync(reason),
  onStatus: (state, detail) => showConnection(state, detail),
});
store.setEventIdSource(() => stream.lastId);

function showConnection(state, detail = {}) {
  indicator.dataset.state = state;
  const text = state === 'offline' && detail.retryAt ? CONNECTION_TEXT.retrying : CONNECTION_TEXT[state];
  setText(indicatorText, text ? t(text) : state);
  indicator.title = t(CONNECTION_TITLE[state] || CONNECTION_TITLE.connecting);
}
indicator.addEventListener('click', () => stream.retryNow());

async function resync(reason) {
  // A fresh stream (or one whose missed events are gone): reload what may have changed.
  try {
    await Promise.all([
      store.loadTasks(),
      reason === 'reset' || store.state.articlesLoaded ? store.loadArticles() : null,
    ]);
    if (reason === 'reset' && view && view.refresh) view.refresh();
  } catch (err) {
    if (getSession()) toast(describeError(err));
  }
}

// -- routing ------------------------------------------------------------------------------

/** A link to save, from the share target (``/?url=&title=&text=``) or the bookmarklet
 * (``#/save?url=&title=``); the address is then cleaned so a reload saves nothing. */
function takeSharedLink() {
  const hash = location.hash.match(/^#\/save\?(.*)$/);
  const link = sharedLink(new URLSearchParams(hash ? hash[1] : location.search));
  if (hash || location.search) history.replaceState(null, '', `${location.pathname}${hash ? '#/' : location.hash}`);
  return link;
}

function searchQuery() {
  const match = location.hash.match(/^#\/search(?:\?(.*))?$/);
  return match ? new URLSearchParams(match[1] || '').get('q') || '' : null;
}

function route() {
  if (!running) return;
  const link = takeSharedLink();
  if (link) {
    // Saved first, so the library that mounts next lists it (as "Fetching the page…").
    saveLink(link).finally(route);
    return;
  }
  const match = location.hash.match(/^#\/article\/([^/?#]+)$/);
  const query = searchQuery();
  if (view) view.unmount();
  window.scrollTo(0, 0);
  if (location.hash === '#/account') view = mountAccount(main);
  else if (query !== null) view = mountSearch(main, query);
  else view = match ? mountReader(main, decodeURIComponent(match[1])) : mountLibrary(main);
  if (query === null) searchBox.value = '';
  else if (searchBox.value.trim() !== query.trim()) searchBox.value = query;
}

let searchTimer = null;
searchBox.addEventListener('input', () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => {
    const q = searchBox.value;
    const hash = `#/search?q=${encodeURIComponent(q)}`;
    if (searchQuery() !== null && view && view.search) {
      history.replaceState(null, '', hash);  // the results follow the typing, not the history
      view.search(q);
    } else if (q.trim()) {
      location.hash = hash;
    }
  }, SEARCH_DEBOUNCE_MS);
});
document.getElementById('search-form').addEventListener('submit', (event) => event.preventDefault());

// -- signed in / out ----------------------------------------------------------------------

function startApp() {
  const session = getSession();
  running = true;
  useMemoryOf(session.user && session.user.user_id);
  topbar.hidden = false;
  setText(who, session.user ? session.user.username : '');
  taskPanel = mountTaskPanel();
  stream.start();
  ticker = setInterval(() => store.emit('tick'), 1000);
  api('GET', '/thinking-lenses')
    .then((answer) => {
      store.state.lenses = Array.isArray(answer.lenses) ? answer.lenses : [];
      store.emit('lenses');
    })
    .catch((err) => toast(describeError(err)));
  route();
  syncLanguage();
}

function stopApp() {
  running = false;
  stream.stop();
  clearInterval(ticker);
  if (taskPanel) taskPanel.unmount();
  taskPanel = null;
  if (view) view.unmount();
  view = null;
  store.clear();
  topbar.hidden = true;
}

function showAuth(notice = '') {
  if (view) view.unmount();
  view = mountAuth(main, notice);
}

onSessionChange((session, reason) => {
  if (!session) {
    const notice = reason === 'expired' ? t('Your session has ended. Please sign in again.') : '';
    stopApp();
    if (reason === 'signout') clearMemory();
    showAuth(notice);
    if (reason === 'signout') history.replaceState(null, '', location.pathname);
  } else if (reason === 'signin') {
    startApp();
  }
});

document.getElementById('sign-out').addEventListener('click', () => signOut('signout'));
window.addEventListener('hashchange', route);

document.addEventListener('keydown', (event) => {
  if (event.key !== 'Escape' || event.defaultPrevented) return;
  if ((taskPanel && taskPanel.close()) || (view && view.escape && view.escape()) || dismissToasts()) {
    event.preventDefault();
  }
});

if (getSession()) startApp();
else showAuth();

// Tests and curious readers: a small read-only view of the page's state.
Object.defineProperty(window, 'insightReader', {
  value: Object.freeze({
    connection: () => indicator.dataset.state,
    lastEventId: () => stream.lastId,
    connections: () => stream.connections,
    task: (id) => {
      const t = store.state.tasks.get(id);
      return t ? { task_id: t.task_id, status: t.status, text: t.text, attempt: t.attempt } : null;
    },
  }),
});
