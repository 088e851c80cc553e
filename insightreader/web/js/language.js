// The language switch, and the reader's choice kept as their `ui_language` setting so
// that it follows them to another browser once they sign in.

import { api, getSession } from './api.js';
import { h } from './dom.js';
import { chooseLanguage, chosenLanguage, currentLanguage, LANGUAGES, t } from './i18n.js';

/** A select of the page's languages, each named in itself, in ``slot`` (``id``: its id). */
export function mountLanguageSwitch(slot, id = null) {
  if (!slot) return;
  const select = h('select', { class: 'language-select', id, 'aria-label': t('Language of the page') },
    Object.entries(LANGUAGES).map(([tag, name]) => h('option', { value: tag, lang: tag, selected: tag === currentLanguage() }, name)));
  select.addEventListener('change', async () => {
    const lang = select.value;
    if (getSession()) {
      try { await api('PATCH', '/settings', { ui_language: lang }); } catch { /* kept in this browser anyway */ }
    }
    chooseLanguage(lang);
  });
  slot.replaceChildren(select);
}

/** Once signed in: the language stored with the account wins (a reload into it when
 * it is not this page's); a choice made in this browser before signing in is stored. */
export async function syncLanguage() {
  let settings;
  try {
    settings = await api('GET', '/settings');
  } catch {
    return;
  }
  if (settings.ui_language && settings.ui_language !== currentLanguage()) {
    chooseLanguage(settings.ui_language);
  } else if (!settings.ui_language && chosenLanguage()) {
    try { await api('PATCH', '/settings', { ui_language: chosenLanguage() }); } catch { /* next sign-in tries again */ }
  }
}
