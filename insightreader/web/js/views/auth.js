// Sign in / create an account.

import { register, signIn } from '../api.js';
import { h, setText } from '../dom.js';
import { t } from '../i18n.js';
import { mountLanguageSwitch } from '../language.js';
import { describeError } from '../messages.js';
import { busy } from '../ui.js';

export function mountAuth(main, notice = '') {
  let mode = 'signin';
  const signInTab = h('button', { type: 'button', class: 'segment', 'aria-pressed': 'true' }, t('Sign in'));
  const registerTab = h('button', { type: 'button', class: 'segment', 'aria-pressed': 'false' }, t('Create account'));
  const username = h('input', {
    id: 'username', name: 'username', required: true, minlength: '3', maxlength: '32',
    pattern: '[A-Za-z0-9_.\\-]+', autocomplete: 'username', autocapitalize: 'none', spellcheck: 'false',
  });
  const password = h('input', { id: 'password', name: 'password', type: 'password', required: true, maxlength: '1024', autocomplete: 'current-password' });
  const usernameHint = h('p', { class: 'field-hint', id: 'username-hint', hidden: true }, t('3–32 characters: letters, digits and . _ -'));
  const passwordHint = h('p', { class: 'field-hint', id: 'password-hint', hidden: true }, t('At least 10 characters, not your username, not a common password.'));
  const error = h('p', { class: 'form-error', role: 'alert' }, notice);
  const languageSlot = h('span', { class: 'language-switch' });
  mountLanguageSwitch(languageSlot);
  const submit = h('button', { type: 'submit', class: 'button primary wide' }, t('Sign in'));
  const heading = h('h1', { tabindex: '-1' }, t('Welcome back'));
  const form = h('form', { class: 'auth-form', 'aria-labelledby': 'auth-title' },
    h('div', { class: 'field-row' }, h('label', { for: 'username' }, t('Username')), username, usernameHint),
    h('div', { class: 'field-row' }, h('label', { for: 'password' }, t('Password')), password, passwordHint),
    error, submit);
  heading.id = 'auth-title';

  function setMode(next) {
    mode = next;
    const creating = mode === 'register';
    signInTab.setAttribute('aria-pressed', String(!creating));
    registerTab.setAttribute('aria-pressed', String(creating));
    setText(heading, creating ? t('Create your account') : t('Welcome back'));
    setText(submit, creating ? t('Create account') : t('Sign in'));
    password.setAttribute('autocomplete', creating ? 'new-password' : 'current-password');
    if (creating) password.setAttribute('minlength', '10');
    else password.removeAttribute('minlength');
    usernameHint.hidden = !creating;
    passwordHint.hidden = !creating;
    username.setAttribute('aria-describedby', creating ? 'username-hint' : '');
    password.setAttribute('aria-describedby', creating ? 'password-hint' : '');
    setText(error, '');
  }
  signInTab.addEventListener('click', () => setMode('signin'));
  registerTab.addEventListener('click', () => setMode('register'));

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    setText(error, '');
    const name = username.value.trim();
    busy(submit, async () => {
      try {
        if (mode === 'register') await register(name, password.value);
        else await signIn(name, password.value);
      } catch (err) {
        setText(error, describeError(err, mode === 'register' ? 'register' : 'login'));
        password.select();
      }
    });
  });

  main.replaceChildren(h('div', { class: 'auth' },
    h('div', { class: 'auth-intro' },
      h('p', { class: 'brand big' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }), t('InsightReader')),
      h('p', { class: 'tagline' }, t('Read closely, with a companion. Save an article, select a passage, and let insights and follow-up questions come to you.'))),
    h('div', { class: 'card auth-card' },
      h('div', { class: 'segmented', role: 'group', 'aria-label': t('Sign in or create an account') }, signInTab, registerTab),
      heading, form,
      h('div', { class: 'auth-language' }, languageSlot))));
  document.title = t('Sign in · InsightReader');
  username.focus();
  return { unmount() {}, escape: () => false };
}
