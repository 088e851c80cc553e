// Errors in plain words. The server's codes are mapped to sentences a reader can act
// on; its own messages are only shown for validation errors (made friendlier) and
// for codes this page does not know (short plain text, never a trace). The sentences
// here are messages of i18n.js, translated where they are shown.

import { currentLanguage, t } from './i18n.js';

const REQUEST_ERRORS = {
  network: 'Cannot reach the server. Check your connection and try again.',
  unauthorized: 'Please sign in again.',
  forbidden: 'You are not allowed to do that on this server.',
  not_found: 'That is no longer there: it may have been deleted.',
  conflict: 'That cannot be done in its current state.',
  bad_request: 'The server could not understand that request.',
  invalid_json: 'The server could not understand that request.',
  payload_too_large: 'That is too much text to send at once. Try a shorter article.',
  too_many_requests: 'Too many requests at once. Wait a moment and try again.',
  registration_closed: 'Registration is closed on this server. Ask its owner for an account.',
  wrong_password: 'The current password is wrong.',
  too_many_attempts: 'Too many failed attempts. Wait a while, then try again.',
  busy: 'The server is busy right now. Try again in a moment.',
  too_many_pending: 'You already have many tasks waiting. Let some finish (or cancel a few), then try again.',
  too_many_streams: 'Too many open tabs are following live updates. Close one and try again.',
  quota_exceeded: 'You have used today’s AI budget on this server. It resets at midnight (UTC).',
  shutting_down: 'The server is restarting. Try again in a moment.',
  storage_busy: 'The server is busy right now. Try again in a moment.',
  storage_full: 'The server has run out of storage space. Tell whoever runs it.',
  unavailable: 'The server is unavailable right now. Try again in a moment.',
  bad_gateway: 'The server is unavailable right now. Try again in a moment.',
  gateway_timeout: 'The server took too long to answer. Try again in a moment.',
  internal_error: 'Something went wrong on the server. Try again; if it keeps happening, tell whoever runs it.',
};

const TASK_ERRORS = {
  upstream_rate_limited: 'The AI provider is rate-limiting requests. Try again in a minute.',
  upstream_unavailable: 'The AI provider is down or unreachable at the moment. Try again later.',
  upstream_timeout: 'The AI provider took too long to answer.',
  upstream_stream_broken: 'The AI provider cut the answer off halfway.',
  upstream_bad_response: 'The AI provider sent an answer that could not be used.',
  upstream_rejected: 'The AI provider refused this request.',
  quota_exceeded: 'The AI provider account has run out of quota.',
  model_refused: 'The model declined to answer this one.',
  empty_output: 'The model returned an empty answer.',
  content_too_long: 'This text is too long for the model.',
  article_deleted: 'The article was deleted.',
  too_many_attempts: 'This kept failing, so it was stopped.',
  timeout: 'This took too long and was stopped.',
  internal_error: 'Something went wrong on the server while doing this.',
  unknown_task_type: 'This server cannot run this kind of task.',
  fetch_forbidden_address: 'This server does not fetch pages from private or local network addresses.',
  fetch_http_error: 'The site did not give the page.',
  fetch_timeout: 'The site took too long to send the page.',
  fetch_unsupported_type: 'This link is not a web page or plain text (a PDF, an image, a download…).',
  fetch_too_large: 'The page is too large to save.',
  fetch_no_content: 'No readable text was found on the page.',
  storage_quota_exceeded: 'Your library is full.',
};

const FIELDS = {
  title: 'Title', content: 'Text', url: 'Link', username: 'Username', password: 'Password',
  selected_text: 'Selection', question: 'Question', intent: 'Intent', refresh_token: 'Session',
  output_language: 'Write results in', article_analysis: 'Article analysis', meta_analysis: 'Meta perspective',
  thinking_lens: 'Thinking lens', button_generation: 'Follow-up questions', insight_generation: 'Insight',
};

/** Pydantic's sentences this page puts in plain words (with the field's name). */
const VALIDATION = [
  [/^Field required$/, '{field} is required.'],
  [/^String should have at least 1 character$/, '{field} cannot be empty.'],
  [/^String should have at most (\d+) characters?$/, '{field} is too long.'],
  [/^Input should be a valid string$/, '{field} should be text.'],
  [/^Extra inputs are not permitted$/, '{field} is not expected.'],
];
const PATTERN_HINTS = {
  url: '{field} should be a web address starting with http:// or https://.',
  username: '{field} may only use letters, digits and . _ -.',
};

function plainServerText(message) {
  if (typeof message !== 'string') return '';
  const text = message.trim();
  if (!text || text.length > 240 || /Traceback|\n\s+at |File "/.test(text)) return '';
  return text[0].toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? '' : '.');
}

/** "title: String should have at least 1 character; url: …" → readable sentences. */
export function friendlyValidation(message) {
  if (typeof message !== 'string' || !message) return t('Please check the form and try again.');
  return message.split('; ').map((part) => {
    const match = part.match(/^([\w.[\]]+): (.*)$/);
    if (!match) return plainServerText(part);
    const key = match[1].split('.').pop();
    const field = FIELDS[key] ? t(FIELDS[key]) : key;
    const said = match[2].replace(/^Value error, /, '');
    const known = VALIDATION.find(([pattern]) => pattern.test(said));
    if (/pattern/.test(said) && PATTERN_HINTS[key]) return t(PATTERN_HINTS[key], { field });
    if (known) return t(known[1], { field });
    // Another check of the server's: its own words when the page speaks English.
    if (currentLanguage() === 'en') return `${field}: ${plainServerText(said)}`;
    return t('{field} is not valid.', { field });
  }).join(' ');
}

function retryHint(err) {
  const seconds = Number(err.retryAfter);
  return Number.isFinite(seconds) && seconds > 0 ? t(' (try again in {s} s)', { s: Math.ceil(seconds) }) : '';
}

/** An error from a request (ApiError) as a sentence. */
export function describeError(err, context = '') {
  if (!err || typeof err !== 'object') return t(REQUEST_ERRORS.internal_error);
  const code = err.code || 'internal_error';
  if (code === 'validation_error') return friendlyValidation(err.serverMessage);
  if (code === 'weak_password') {
    return (currentLanguage() === 'en' && plainServerText(err.serverMessage))
      || t('Choose a stronger password: at least 10 characters, not your username, not a common password.');
  }
  if (context === 'login' && code === 'unauthorized') return t('Wrong username or password.');
  if (context === 'register' && code === 'conflict') return t('That username is taken. Choose another one.');
  if (context === 'register' && code === 'forbidden') return t('Registration is closed on this server. Ask its owner for an account.');
  if (code === 'conflict' && context === 'task') return t('That task has changed state meanwhile; the list is up to date now.');
  const known = REQUEST_ERRORS[code];
  if (known) return t(known) + (err.status === 429 || err.status === 503 ? retryHint(err) : '');
  if (err.status >= 500) return t(REQUEST_ERRORS.internal_error);
  return currentLanguage() === 'en' ? plainServerText(err.serverMessage) || t('That did not work. Try again.') : t('That did not work. Try again.');
}

/** A task's ``error: {code, message, retryable}`` as a sentence. */
export function describeTaskError(error) {
  if (!error || typeof error !== 'object') return t('It failed.');
  if (TASK_ERRORS[error.code]) return t(TASK_ERRORS[error.code]);
  return (currentLanguage() === 'en' && plainServerText(error.message)) || t('It failed.');
}

export const TASK_LABELS = {
  article_analysis: 'Article analysis',
  meta_analysis: 'Meta perspective',
  thinking_lens: 'Thinking lens',
  button_generation: 'Follow-up questions',
  insight_generation: 'Insight',
  page_fetch: 'Fetching a page',
};

export const STATUS_LABELS = {
  pending: 'Queued',
  running: 'Running',
  completed: 'Done',
  failed: 'Failed',
  cancelled: 'Cancelled',
};

export function taskLabel(type) {
  return TASK_LABELS[type] ? t(TASK_LABELS[type]) : t('Task');
}
