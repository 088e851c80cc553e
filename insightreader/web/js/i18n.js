// The page's language: English or Simplified Chinese. Messages are written in English
// in the code and looked up as they are (as gettext does with its msgids):
// i18n/zh-CN.js translates each one, i18n/en.js holds only English plural forms.
// `{name}` in a message is filled from `params`; a message with a `count` parameter
// may have plural forms ({one, other}), picked with Intl.PluralRules.
//
// The language is the reader's choice (remembered in localStorage, and as the
// `ui_language` setting once signed in), else the first of the browser's languages
// the page speaks. Changing it reloads the page, so that every view renders in it.

import en from './i18n/en.js';
import zhCN from './i18n/zh-CN.js';

export const LANGUAGES = { en: 'English', 'zh-CN': '简体中文' };
const CATALOGUES = { en, 'zh-CN': zhCN };
const STORAGE_KEY = 'insightreader.language';

function browserLanguage() {
  const tags = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || 'en'];
  for (const tag of tags) {
    const lower = String(tag).toLowerCase();
    if (lower.startsWith('zh')) return 'zh-CN';
    if (lower.startsWith('en')) return 'en';
  }
  return 'en';
}

/** The language the reader chose in this browser (null: none yet). */
export function chosenLanguage() {
  try {
    const value = localStorage.getItem(STORAGE_KEY);
    return Object.hasOwn(CATALOGUES, value) ? value : null;
  } catch {
    return null;
  }
}

const language = chosenLanguage() || browserLanguage();
const plurals = new Intl.PluralRules(language);
document.documentElement.lang = language;

export function currentLanguage() {
  return language;
}

/** Remember ``lang`` as the reader's choice; reload into it when it is not the current one. */
export function chooseLanguage(lang) {
  if (!Object.hasOwn(CATALOGUES, lang)) return;
  try { localStorage.setItem(STORAGE_KEY, lang); } catch { /* private mode: this page only */ }
  if (lang !== language) location.reload();
}

/** ``message`` in the page's language, with ``{name}`` filled from ``params``. */
export function t(message, params) {
  let text = Object.hasOwn(CATALOGUES[language], message) ? CATALOGUES[language][message] : message;
  if (text && typeof text === 'object') {
    text = text[plurals.select(Number(params && params.count))] || text.other;
  }
  if (!params) return text;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (Object.hasOwn(params, name) ? String(params[name]) : whole));
}

/** Fill the static page's texts: ``data-i18n`` (text), ``data-i18n-placeholder``,
 * ``data-i18n-title`` and ``data-i18n-aria-label`` hold the English messages. */
export function translateStatic(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const [attribute, key] of [['placeholder', 'i18nPlaceholder'], ['title', 'i18nTitle'], ['aria-label', 'i18nAriaLabel']]) {
    for (const el of root.querySelectorAll(`[data-i18n-${attribute}]`)) el.setAttribute(attribute, t(el.dataset[key]));
  }
}

const dayFormat = new Intl.DateTimeFormat(language, { day: 'numeric', month: 'short' });
const timeFormat = new Intl.DateTimeFormat(language, { hour: '2-digit', minute: '2-digit' });
const numberFormat = new Intl.NumberFormat(language);

/** "today 14:05" or "5 Dec" (in the page's language). */
export function when(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  if (date.toDateString() === new Date().toDateString()) return t('today {time}', { time: timeFormat.format(date) });
  return dayFormat.format(date);
}

export function number(n) {
  return numberFormat.format(n);
}

/** A duration in milliseconds as "4.2 s", "3 min 05 s", "1 h 02 min". */
export function duration(ms) {
  if (!Number.isFinite(ms) || ms < 0) ms = 0;
  if (ms < 10_000) return t('{s} s', { s: (Math.floor(ms / 100) / 10).toFixed(1) });
  const s = Math.floor(ms / 1000);
  if (s < 60) return t('{s} s', { s });
  const m = Math.floor(s / 60);
  if (m < 60) return t('{m} min {s} s', { m, s: String(s % 60).padStart(2, '0') });
  return t('{h} h {m} min', { h: Math.floor(m / 60), m: String(m % 60).padStart(2, '0') });
}
