// The HTTP side: the session (kept in sessionStorage, so it lives as long as the tab),
// token refresh (ahead of expiry, and once on a 401), and JSON calls to /api/v1.

const SESSION_KEY = 'insightreader.session';
/** Refresh this long before the access token expires (or at 80% of a short lifetime). */
const REFRESH_LEAD_MS = 60_000;

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message || code);
    this.status = status;
    this.code = code;
    this.serverMessage = message || '';
    this.retryAfter = retryAfter;
  }
}

const HTTP_CODES = {
  400: 'bad_request', 401: 'unauthorized', 403: 'forbidden', 404: 'not_found',
  409: 'conflict', 413: 'payload_too_large', 422: 'validation_error', 429: 'too_many_requests',
  500: 'internal_error', 502: 'bad_gateway', 503: 'unavailable', 504: 'gateway_timeout',
};

let session = loadSession();
let refreshTimer = null;
let refreshing = null;
let clockOffset = 0;
const listeners = new Set();

function loadSession() {
  try {
    const raw = sessionStorage.getItem(SESSION_KEY);
    const parsed = raw ? JSON.parse(raw) : null;
    return parsed && parsed.access_token && parsed.refresh_token ? parsed : null;
  } catch {
    return null;
  }
}

function saveSession(next, reason) {
  session = next;
  try {
    if (next) sessionStorage.setItem(SESSION_KEY, JSON.stringify(next));
    else sessionStorage.removeItem(SESSION_KEY);
  } catch { /* storage full or disabled: the session still lives in memory */ }
  scheduleRefresh();
  for (const listener of listeners) listener(next, reason);
}

export function getSession() {
  return session;
}

/** ``listener(session | null, reason)``; reason: signin, refresh, signout, expired. */
export function onSessionChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function fromTokens(tokens, user) {
  const lifetime = Math.max(1, Number(tokens.expires_in) || 900) * 1000;
  return {
    access_token: tokens.access_token,
    refresh_token: tokens.refresh_token,
    expires_at: Date.now() + lifetime,
    lifetime,
    user,
  };
}

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  if (!session) return;
  const lead = Math.min(REFRESH_LEAD_MS, session.lifetime * 0.2);
  const wait = Math.max(1000, session.expires_at - Date.now() - lead);
  refreshTimer = setTimeout(() => { refresh().catch(() => {}); }, wait);
}
scheduleRefresh();

/** The server's clock, estimated from the Date headers of its answers. */
export function serverNow() {
  return Date.now() + clockOffset;
}

function trackClock(response) {
  const header = response.headers.get('Date');
  const at = header ? Date.parse(header) : NaN;
  if (Number.isNaN(at)) return;
  const offset = at + 500 - Date.now(); // the header has whole seconds
  clockOffset = Math.abs(offset) > 2000 ? offset : 0;
}

async function call(method, path, body, { token, headers: extra, blob = false } = {}) {
  const headers = { Accept: 'application/json', ...(extra || {}) };
  const init = { method, headers, cache: 'no-store', credentials: 'omit' };
  if (body instanceof FormData) {
    init.body = body;  // a file upload: the browser sets the multipart Content-Type
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(`/api/v1${path}`, init);
  } catch {
    throw new ApiError(0, 'network', '');
  }
  trackClock(response);
  if (blob && response.ok) return response.blob();  // a download (an export)
  const text = await response.text().catch(() => '');
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!response.ok) {
    const error = (data && typeof data.error === 'object' && data.error) || {};
    throw new ApiError(
      response.status,
      typeof error.code === 'string' ? error.code : HTTP_CODES[response.status] || 'http_error',
      typeof error.message === 'string' ? error.message : '',
      response.headers.get('Retry-After'),
    );
  }
  return data;
}

export async function signIn(username, password) {
  const tokens = await call('POST', '/auth/login', { username, password });
  const me = await call('GET', '/auth/me', undefined, { token: tokens.access_token });
  saveSession(fromTokens(tokens, { user_id: me.user_id, username: me.username }), 'signin');
}

export async function register(username, password) {
  await call('POST', '/auth/register', { username, password });
  await signIn(username, password);
}

/** Forget the session here; on a sign-out by the user, end it on the server too (its
 * tokens stop working there), without waiting for the answer. */
export function signOut(reason = 'signout') {
  if (reason === 'signout' && session) {
    call('POST', '/auth/logout', undefined, { token: session.access_token }).catch(() => {});
  }
  saveSession(null, reason);
}

/** Change the password; the server ends every other session, this one goes on. */
export async function changePassword(currentPassword, newPassword) {
  await api('POST', '/auth/password', { current_password: currentPassword, new_password: newPassword });
}

/** Exchange the refresh token for a new pair (one exchange at a time). A refused
 * refresh token ends the session; a network failure does not. */
export function refresh() {
  if (!session) return Promise.reject(new ApiError(401, 'unauthorized', ''));
  if (!refreshing) {
    const used = session.refresh_token;
    refreshing = call('POST', '/auth/refresh', { refresh_token: used })
      .then((tokens) => {
        if (session && session.refresh_token === used) saveSession(fromTokens(tokens, session.user), 'refresh');
      })
      .catch((err) => {
        if (session && session.refresh_token === used && (err.status === 401 || err.status === 422)) {
          saveSession(null, 'expired');
        }
        throw err;
      })
      .finally(() => { refreshing = null; });
  }
  return refreshing;
}

/** A call with the access token: refreshed first when about to expire, and once more
 * after a 401. ``options.headers`` adds headers (e.g. Idempotency-Key). */
export async function api(method, path, body, options = {}) {
  if (!session) throw new ApiError(401, 'unauthorized', '');
  if (session.expires_at - Date.now() < 15_000) {
    try { await refresh(); } catch (err) { if (!session) throw err; }
  }
  try {
    return await call(method, path, body, { ...options, token: session.access_token });
  } catch (err) {
    if (err.status !== 401 || !session) throw err;
  }
  await refresh();
  try {
    return await call(method, path, body, { ...options, token: session.access_token });
  } catch (err) {
    if (err.status === 401) signOut('expired');
    throw err;
  }
}
