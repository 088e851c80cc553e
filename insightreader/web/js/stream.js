// The live event stream, with the ticket flow of the API:
//
//   POST /api/v1/sse/ticket → new EventSource(url?ticket=…&last_event_id=N)
//
// A browser's EventSource gives up for good on a non-200 answer and would reuse a
// spent ticket, so the page reconnects by itself: on an error it closes the stream,
// gets a new ticket and reopens after the last id it saw, with exponential backoff
// (capped, with jitter). On `closed` it reconnects at once; on `reset` (the events it
// missed are gone) and on a fresh start it resyncs with GET /tasks.

import { api, getSession } from './api.js';

const STREAM_PATH = '/api/v1/sse/analysis-notifications';
const TASK_EVENTS = ['task_queued', 'task_started', 'task_progress', 'task_completed', 'task_failed', 'task_cancelled', 'import_progress', 'import_finished', 'batch_progress', 'batch_finished'];
const BACKOFF_FIRST_MS = 500;
const BACKOFF_CAP_MS = 10_000;
/** Failures in a row after which the indicator says "offline" rather than "reconnecting". */
const OFFLINE_AFTER = 4;
/** No message at all (heartbeats included) for this long: the connection is dead. */
const SILENCE_MS = 65_000;

export class EventStream {
  /**
   * onEvent(name, data, id): a task event; onResync(reason): the page must reload its
   * state (fresh stream or reset); onStatus(state, detail): connecting | connected |
   * reconnecting | offline | stopped.
   */
  constructor({ onEvent, onResync, onStatus }) {
    this.onEvent = onEvent;
    this.onResync = onResync;
    this.onStatus = onStatus;
    this.lastId = null;
    /** Streams opened so far (a ticket's stream ends when the ticket expires). */
    this.connections = 0;
    this.source = null;
    this.failures = 0;
    this.generation = 0;
    this.retryTimer = null;
    this.silenceTimer = null;
    this.running = false;
    this.state = 'stopped';
    this.retryAt = null;
    this.nudge = () => { if (this.running && this.state !== 'connected') this.connect(); };
    this.wentOffline = () => { if (this.running && this.state !== 'connected') this.setState('offline'); };
    this.onVisible = () => { if (document.visibilityState === 'visible') this.nudge(); };
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.lastId = null; // a new page state: start fresh (the server replays in-flight text)
    window.addEventListener('online', this.nudge);
    window.addEventListener('offline', this.wentOffline);
    document.addEventListener('visibilitychange', this.onVisible);
    this.setState('connecting');
    this.connect();
  }

  stop() {
    this.running = false;
    this.generation += 1;
    this.closeSource();
    clearTimeout(this.retryTimer);
    window.removeEventListener('online', this.nudge);
    window.removeEventListener('offline', this.wentOffline);
    document.removeEventListener('visibilitychange', this.onVisible);
    this.setState('stopped');
  }

  /** Try now (e.g. the user clicked the indicator). */
  retryNow() {
    if (!this.running || this.state === 'connected') return;
    this.failures = Math.min(this.failures, 1);
    this.connect();
  }

  setState(state, detail = {}) {
    this.state = state;
    this.retryAt = detail.retryAt ?? null;
    this.onStatus(state, detail);
  }

  closeSource() {
    clearTimeout(this.silenceTimer);
    if (this.source) {
      this.source.close();
      this.source = null;
    }
  }

  async connect() {
    clearTimeout(this.retryTimer);
    const generation = ++this.generation;
    this.closeSource();
    let ticket;
    try {
      ({ ticket } = await api('POST', '/sse/ticket'));
    } catch (err) {
      if (generation !== this.generation || !this.running) return;
      if (err.status === 401 && !getSession()) return; // signed out: app.js stops us
      this.retryLater();
      return;
    }
    if (generation !== this.generation || !this.running) return;
    const query = new URLSearchParams({ ticket });
    if (this.lastId != null) query.set('last_event_id', String(this.lastId));
    const source = new EventSource(`${STREAM_PATH}?${query}`);
    this.source = source;
    const current = () => generation === this.generation && this.source === source;

    source.addEventListener('connected', (event) => {
      if (!current()) return;
      const data = parse(event);
      const resumed = this.lastId != null;
      if (data && Number.isInteger(data.last_event_id)) this.lastId = data.last_event_id;
      this.failures = 0;
      this.connections += 1;
      this.heard();
      this.setState('connected');
      if (!resumed) this.onResync('fresh');
    });
    for (const name of TASK_EVENTS) {
      source.addEventListener(name, (event) => {
        if (!current()) return;
        this.heard();
        const id = event.lastEventId ? Number(event.lastEventId) : null;
        if (id != null && Number.isFinite(id)) this.lastId = Math.max(this.lastId ?? 0, id);
        const data = parse(event);
        if (data) this.onEvent(name, data, id);
      });
    }
    source.addEventListener('heartbeat', () => { if (current()) this.heard(); });
    source.addEventListener('reset', () => {
      if (!current()) return;
      this.heard();
      this.onResync('reset');
    });
    source.addEventListener('closed', (event) => {
      // The server ended the stream: its credentials expired (a ticket lasts a minute),
      // it fell behind, or the server is shutting down. Resume now; nothing is lost.
      // Only a shutdown is worth showing: the next attempt is likely to fail.
      if (!current()) return;
      this.closeSource();
      const data = parse(event);
      if (data && data.reason === 'shutdown') this.setState('reconnecting');
      this.retryTimer = setTimeout(() => this.connect(), 100 + Math.random() * 400);
    });
    source.onerror = () => {
      if (!current()) return;
      this.closeSource();
      this.retryLater();
    };
  }

  heard() {
    clearTimeout(this.silenceTimer);
    this.silenceTimer = setTimeout(() => {
      this.closeSource();
      this.retryLater();
    }, SILENCE_MS);
  }

  retryLater() {
    if (!this.running) return;
    this.failures += 1;
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_FIRST_MS * 2 ** (this.failures - 1));
    const delay = ceiling / 2 + Math.random() * (ceiling / 2); // "equal jitter"
    const offline = navigator.onLine === false || this.failures >= OFFLINE_AFTER;
    this.setState(offline ? 'offline' : 'reconnecting', { retryAt: Date.now() + delay });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }
}

function parse(event) {
  try {
    const data = JSON.parse(event.data);
    return data && typeof data === 'object' ? data : null;
  } catch {
    return null;
  }
}
