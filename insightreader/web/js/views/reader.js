// The article view: its text, its analysis, perspectives (meta analysis and the
// thinking lenses) and, beside the text, the notes: highlights with the reader's notes,
// and the insights asked about selected passages.

import { api, serverNow } from '../api.js';
import { MAX_SELECTION, startThread } from '../conversation.js';
import { h, hostOf, randomId, replace, safeLink, setText } from '../dom.js';
import { duration, number, t, when } from '../i18n.js';
import * as memory from '../memory.js';
import { describeError, describeTaskError } from '../messages.js';
import {
  analysisTask, fetchTask, forgetArticle, isActive, loadArticle, noteSubmitted, on, state,
} from '../store.js';
import { busy, spinner, toast } from '../ui.js';
import { analysisBlock, fetchBlock } from './library.js';
import { retryTask } from '../actions.js';
import { mountHighlights } from './highlights.js';
import { mountNotes } from './notes.js';

const META = { key: 'meta', name: t('Meta perspective'), description: t('How the article argues: the author’s stance, assumptions, rhetorical devices and what is missing.') };

function paragraphs(text) {
  return text.replace(/\r\n?/g, '\n').split(/\n\s*\n/).map((p) => p.trim()).filter(Boolean)
    .map((p) => h('p', null, p));
}

function list(items) {
  const valid = (Array.isArray(items) ? items : []).filter((x) => typeof x === 'string' && x.trim());
  return valid.length ? h('ul', null, valid.map((x) => h('li', null, x))) : null;
}

function field(label, content) {
  if (content == null || content === '' || (Array.isArray(content) && !content.length)) return null;
  return h('div', { class: 'field' }, h('h4', null, label), typeof content === 'string' ? h('p', null, content) : content);
}

function metaResult(meta) {
  return [
    field(t('Author’s stance'), meta.author_stance),
    field(t('Tone'), meta.tone),
    field(t('Assumptions'), list(meta.assumptions)),
    field(t('Rhetorical devices'), list(meta.rhetorical_devices)),
    field(t('Missing perspectives'), list(meta.missing_perspectives)),
    field(t('Questions to ask'), list(meta.questions_to_ask)),
  ];
}

function lensResult(lens) {
  const points = (Array.isArray(lens.points) ? lens.points : []).filter((p) => p && typeof p === 'object');
  return [
    typeof lens.title === 'string' ? h('p', { class: 'lens-title' }, lens.title) : null,
    typeof lens.summary === 'string' ? h('p', null, lens.summary) : null,
    points.length ? h('dl', { class: 'points' }, points.map((p) => [
      h('dt', null, String(p.heading ?? '')), h('dd', null, String(p.detail ?? '')),
    ])) : null,
    field(t('Questions for you'), list(lens.questions)),
  ];
}

/** Mount the reader for ``articleId`` into ``main``; returns {unmount, escape}. */
export function mountReader(main, articleId) {
  const offs = [];
  let article = state.articles.get(articleId) || null;
  let destroyed = false;

  const title = h('h1', { id: 'article-title', tabindex: '-1' }, article ? article.title : t('Loading…'));
  const meta = h('p', { class: 'reader-meta' });
  const glance = h('div', { class: 'glance-body' });
  const glanceSection = h('section', { class: 'card glance', 'aria-labelledby': 'glance-title' },
    h('h2', { id: 'glance-title' }, t('At a glance')), glance);
  const perspectiveButtons = h('div', { class: 'perspective-buttons', role: 'group', 'aria-label': t('Perspectives') });
  const perspectiveResults = h('div', { class: 'perspective-results' });
  const perspectives = h('section', { class: 'perspectives', 'aria-labelledby': 'perspectives-title' },
    h('h2', { id: 'perspectives-title' }, t('Perspectives')),
    h('p', { class: 'hint' }, t('Look at the article another way. Each takes a little while; you can keep reading.')),
    perspectiveButtons, perspectiveResults);
  const text = h('div', { class: 'article-text', id: 'article-text' });
  const askButton = h('button', { type: 'button', class: 'button primary small' }, t('✦ Ask about this passage'));
  const highlightButton = h('button', { type: 'button', class: 'button small', dataset: { action: 'highlight' } }, t('Highlight'));
  const popover = h('div', { class: 'selection-popover', hidden: true }, askButton, highlightButton);
  const body = h('section', { class: 'article-body', 'aria-labelledby': 'text-title' },
    h('h2', { id: 'text-title', class: 'section-title' }, t('The article')),
    h('p', { class: 'hint select-hint' }, t('Select a passage to highlight it or ask about it.')),
    text, popover);
  const notesClose = h('button', { type: 'button', class: 'icon-button notes-close', 'aria-label': t('Close notes') }, '×');
  const notes = h('aside', { class: 'notes', id: 'notes', 'aria-labelledby': 'notes-title' },
    h('div', { class: 'notes-head' }, h('h2', { id: 'notes-title' }, t('Notes')), notesClose));
  const notesToggle = h('button', { type: 'button', class: 'button notes-toggle', 'aria-controls': 'notes', 'aria-expanded': 'false' }, t('Notes'));
  const reader = h('article', { class: 'reader', 'aria-labelledby': 'article-title' },
    h('nav', { class: 'crumbs', 'aria-label': t('Breadcrumb') }, h('a', { href: '#/' }, t('← All articles'))),
    h('header', { class: 'reader-head' }, title, meta),
    glanceSection, perspectives, body);
  const layout = h('div', { class: 'reader-layout' }, reader, notes, notesToggle);
  main.replaceChildren(layout);

  // -- notes (mobile: a bottom sheet) -------------------------------------------------
  const highlightsView = mountHighlights(notes, articleId, {
    onChange: () => { updateToggle(); markHighlights(); },
  });
  offs.push(highlightsView.unmount);
  const notesView = mountNotes(notes, articleId);
  offs.push(notesView.unmount);
  const setNotesOpen = (open) => {
    notes.classList.toggle('open', open);
    notesToggle.setAttribute('aria-expanded', String(open));
  };
  function updateToggle() {
    const count = notesView.count() + highlightsView.count();
    setText(notesToggle, count ? t('Notes ({count})', { count }) : t('Notes'));
    notesToggle.hidden = count === 0;
  }
  updateToggle();
  notesToggle.addEventListener('click', () => setNotesOpen(!notes.classList.contains('open')));
  notesClose.addEventListener('click', () => { setNotesOpen(false); notesToggle.focus(); });
  offs.push(on('threads', (id) => {
    if (id !== articleId) return;
    updateToggle();
    if (text.childElementCount && text.querySelectorAll('mark.passage').length !== memory.threadsOf(articleId).length) markPassages();
  }));

  // -- header and analysis --------------------------------------------------------------
  let confirmTimer = null;
  const deleteButton = h('button', { type: 'button', class: 'link-button danger' }, t('Delete'));
  deleteButton.addEventListener('click', () => {
    if (deleteButton.dataset.confirm !== 'yes') {
      deleteButton.dataset.confirm = 'yes';
      setText(deleteButton, t('Click again to delete'));
      confirmTimer = setTimeout(() => { delete deleteButton.dataset.confirm; setText(deleteButton, t('Delete')); }, 4000);
      return;
    }
    clearTimeout(confirmTimer);
    busy(deleteButton, async () => {
      try {
        await api('DELETE', `/articles/${encodeURIComponent(articleId)}`);
        memory.forgetArticleMemory(articleId);
        forgetArticle(articleId);
        toast(t('Article deleted.'), { kind: 'info', timeout: 4000 });
        location.hash = '#/';
      } catch (err) {
        toast(describeError(err));
      }
    });
  });

  function renderHead() {
    if (!article) return;
    setText(title, article.title);
    document.title = t('{title} · InsightReader', { title: article.title });
    const minutes = article.analysis && article.analysis.reading_time_minutes;
    replace(meta,
      h('span', null, t('Saved {when}', { when: when(article.created_at) })),
      Number.isFinite(minutes) ? h('span', null, t('{count} min read', { count: Math.max(1, minutes) })) : null,
      article.url ? h('span', null, safeLink(article.url, hostOf(article.url) || 'source')) : null,
      h('span', null, deleteButton));
  }

  let glanceKey = null;
  function renderGlance() {
    if (!article) return;
    const fetching = article.fetch_status === 'fetching' || article.fetch_status === 'failed';
    const task = fetching ? fetchTask(articleId) : analysisTask(articleId);
    const key = `${article.fetch_status || ''}|${article.analysis ? 'a' : ''}|${task ? task.status : ''}|${task && task.error ? task.error.code : ''}`;
    if (key !== glanceKey) {
      glanceKey = key;
      replace(glance, fetching ? fetchBlock(article, task) : analysisBlock(article, task, { full: true }));
    }
    const elapsed = glance.querySelector('.elapsed');
    if (elapsed && task) setText(elapsed, duration(serverNow() - Date.parse(task.started_at || task.created_at)));
  }

  function renderText() {
    if (article && typeof article.content === 'string' && !text.childElementCount) {
      replace(text, paragraphs(article.content));
      markHighlights();
      markPassages();
    }
  }

  // Highlights and the passages the reader asked about are marked in the text; a mark
  // leads to its notes.
  function unmark(selector) {
    for (const mark of text.querySelectorAll(selector)) mark.replaceWith(...mark.childNodes);
    text.normalize();
  }

  function markHighlights() {
    if (!text.childElementCount) return;
    unmark('mark.highlight');
    for (const highlight of highlightsView.items()) {
      markText(highlight.quote.replace(/\s+/g, ' ').trim(), () => h('mark', {
        class: 'highlight', tabindex: '0', role: 'button', title: t('Show this highlight and its note'),
        dataset: { highlightId: highlight.highlight_id },
      }));
    }
  }

  function markPassages() {
    unmark('mark.passage');
    for (const thread of [...memory.threadsOf(articleId)].reverse()) {
      markText(thread.selection, () => h('mark', {
        class: 'passage', tabindex: '0', role: 'button', title: t('Show the notes on this passage'),
        dataset: { threadId: thread.id },
      }));
    }
  }

  /** Wrap the first place ``selection`` (white space collapsed) stands within one text node. */
  function markText(selection, makeMark) {
    for (const paragraph of text.children) {
      // The paragraph's text with white space collapsed (as selections are), and where
      // each of its characters comes from.
      const walker = document.createTreeWalker(paragraph, NodeFilter.SHOW_TEXT);
      let flat = '';
      const origin = [];
      let space = true;
      for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        for (let i = 0; i < node.data.length; i += 1) {
          if (/\s/.test(node.data[i])) {
            if (space) continue;
            flat += ' ';
            space = true;
          } else {
            flat += node.data[i];
            space = false;
          }
          origin.push([node, i]);
        }
      }
      const at = flat.indexOf(selection);
      if (at < 0 || !selection) continue;
      const [startNode, startOffset] = origin[at];
      const [endNode, endOffset] = origin[at + selection.length - 1];
      if (startNode !== endNode || startNode.parentElement.closest('mark')) return; // overlaps another mark
      const range = document.createRange();
      range.setStart(startNode, startOffset);
      range.setEnd(endNode, endOffset + 1);
      range.surroundContents(makeMark());
      return;
    }
  }

  function showThread(threadId) {
    const item = notes.querySelector(`.thread[data-thread-id="${CSS.escape(threadId)}"]`);
    if (!item) return;
    setNotesOpen(true);
    item.scrollIntoView({ behavior: 'smooth', block: 'nearest' });
    item.classList.remove('flash');
    void item.offsetWidth; // restart the animation
    item.classList.add('flash');
  }
  function showMark(mark) {
    if (mark.classList.contains('passage')) {
      showThread(mark.dataset.threadId);
    } else {
      setNotesOpen(true);
      highlightsView.show(mark.dataset.highlightId);
    }
  }
  text.addEventListener('click', (event) => {
    const mark = event.target.closest('mark.passage, mark.highlight');
    if (mark && document.getSelection().isCollapsed) showMark(mark);
  });
  text.addEventListener('keydown', (event) => {
    const mark = event.target.closest('mark.passage, mark.highlight');
    if (mark && (event.key === 'Enter' || event.key === ' ')) {
      event.preventDefault();
      showMark(mark);
    }
  });

  // -- perspectives -----------------------------------------------------------------------
  const perspectiveViews = new Map();

  function stored(key) {
    if (!article) return null;
    if (key === 'meta') return article.meta_analysis || null;
    return (article.lenses || {})[key] || null;
  }

  function perspectiveView(def) {
    const icon = h('span', { class: 'p-icon', 'aria-hidden': 'true' });
    const label = h('span', { class: 'p-label' }, def.name);
    const button = h('button', { type: 'button', class: 'perspective', title: def.description, dataset: { key: def.key } }, icon, label);
    const toggle = h('button', { type: 'button', class: 'p-toggle', 'aria-expanded': 'true', 'aria-controls': `perspective-${def.key}-body` },
      h('span', { class: 'p-chevron', 'aria-hidden': 'true' }), def.name);
    const heading = h('h3', null, toggle);
    const cardStatus = h('div', { class: 'p-status' });
    const cardBody = h('div', { class: 'p-body' });
    const inner = h('div', { id: `perspective-${def.key}-body` }, cardStatus, cardBody);
    const card = h('section', { class: 'card perspective-card', id: `perspective-${def.key}`, dataset: { key: def.key }, hidden: true },
      h('div', { class: 'p-card-head' }, heading, h('p', { class: 'p-description' }, def.description)), inner);
    let shown = null;
    const expand = (open) => {
      toggle.setAttribute('aria-expanded', String(open));
      inner.hidden = !open;
      card.classList.toggle('collapsed', !open);
    };
    toggle.addEventListener('click', () => expand(inner.hidden));

    button.addEventListener('click', () => {
      const task = currentTask();
      if (stored(def.key) || (task && isActive(task))) {
        card.hidden = false;
        expand(true);
        card.scrollIntoView({ behavior: 'smooth', block: 'nearest' });
        toggle.focus({ preventScroll: true });
        return;
      }
      if (task && (task.status === 'failed' || task.status === 'cancelled')) {
        busy(button, () => retryTask(task.task_id));
        return;
      }
      busy(button, async () => {
        try {
          const path = def.key === 'meta' ? '/meta-analysis/analyze' : `/articles/${encodeURIComponent(articleId)}/thinking-lens/${encodeURIComponent(def.key)}`;
          const answer = await api('POST', path, def.key === 'meta' ? { article_id: articleId } : undefined,
            { headers: { 'Idempotency-Key': randomId() } });
          memory.setPerspectiveTask(articleId, def.key, answer.task_id);
          noteSubmitted(answer, def.key === 'meta' ? 'meta_analysis' : 'thinking_lens', articleId);
          update();
          card.hidden = false;
        } catch (err) {
          toast(describeError(err));
        }
      });
    });

    function currentTask() {
      const id = memory.perspectiveTask(articleId, def.key);
      return id ? state.tasks.get(id) || null : null;
    }

    function update() {
      const result = stored(def.key);
      const task = currentTask();
      const status = result ? 'done' : task ? task.status : 'idle';
      button.dataset.state = status;
      button.setAttribute('aria-describedby', card.id);
      const key = `${status}|${result ? 1 : 0}|${task && task.error ? task.error.code : ''}`;
      if (key === shown) return tick();
      shown = key;
      replace(icon, status === 'pending' || status === 'running' ? spinner() : status === 'done' ? '✓' : status === 'failed' || status === 'cancelled' ? '!' : '+');
      card.dataset.state = status;
      if (result) {
        card.hidden = false;
        cardStatus.replaceChildren();
        replace(cardBody, def.key === 'meta' ? metaResult(result) : lensResult(result));
      } else if (task) {
        card.hidden = false;
        cardBody.replaceChildren();
        if (isActive(task)) {
          replace(cardStatus, spinner(), h('span', null, task.status === 'pending' ? t('Queued… ') : t('Thinking… ')), h('span', { class: 'elapsed' }));
        } else if (task.status === 'failed') {
          replace(cardStatus, h('span', { class: 'error-text' }, `${describeTaskError(task.error)} `),
            h('button', { type: 'button', class: 'link-button', onclick: (e) => busy(e.currentTarget, () => retryTask(task.task_id)) }, t('Try again')));
        } else if (task.status === 'cancelled') {
          replace(cardStatus, h('span', { class: 'muted' }, t('Cancelled. ')),
            h('button', { type: 'button', class: 'link-button', onclick: (e) => busy(e.currentTarget, () => retryTask(task.task_id)) }, t('Try again')));
        } else {
          replace(cardStatus, spinner(), t('Loading the result…'));
          loadArticle(articleId).catch(() => {});
        }
      } else {
        card.hidden = true;
      }
      tick();
    }

    function tick() {
      const task = currentTask();
      const elapsed = cardStatus.querySelector('.elapsed');
      if (elapsed && task) setText(elapsed, duration(serverNow() - Date.parse(task.started_at || task.created_at)));
    }

    function concerns(taskId) {
      return memory.perspectiveTask(articleId, def.key) === taskId;
    }
    return { button, card, update, tick, concerns };
  }

  function renderPerspectives() {
    const defs = [META, ...state.lenses.map((lens) => ({ key: lens.type, name: t(lens.name), description: t(lens.description) }))];
    for (const def of defs) {
      if (!perspectiveViews.has(def.key)) {
        const view = perspectiveView(def);
        perspectiveViews.set(def.key, view);
        perspectiveButtons.append(view.button);
        perspectiveResults.append(view.card);
      }
    }
    for (const view of perspectiveViews.values()) view.update();
  }

  // -- selection → insight ------------------------------------------------------------------
  let selected = '';
  /** The selection as the text has it, and the text just before and after it. */
  let selectedExactly = null;
  const CONTEXT_CHARS = 120;

  function hidePopover() {
    popover.hidden = true;
    selected = '';
    selectedExactly = null;
  }

  function exactly(range) {
    const before = document.createRange();
    before.setStart(text, 0);
    before.setEnd(range.startContainer, range.startOffset);
    const after = document.createRange();
    after.setStart(range.endContainer, range.endOffset);
    after.setEnd(text, text.childNodes.length);
    return {
      quote: range.toString().trim(),
      prefix: before.toString().slice(-CONTEXT_CHARS),
      suffix: after.toString().slice(0, CONTEXT_CHARS),
    };
  }

  function onSelection() {
    const selection = document.getSelection();
    if (!selection || selection.isCollapsed || !selection.rangeCount) {
      if (!popover.contains(document.activeElement)) hidePopover();
      return;
    }
    const range = selection.getRangeAt(0);
    if (!text.contains(range.commonAncestorContainer)) {
      hidePopover();
      return;
    }
    const value = selection.toString().replace(/\s+/g, ' ').trim();
    if (value.length < 3) {
      hidePopover();
      return;
    }
    selected = value;
    selectedExactly = exactly(range);
    const box = range.getBoundingClientRect();
    const frame = body.getBoundingClientRect();
    popover.hidden = false;
    const width = popover.offsetWidth;
    const left = Math.min(Math.max(0, box.left - frame.left + box.width / 2 - width / 2), Math.max(0, frame.width - width));
    popover.style.left = `${left}px`;
    popover.style.top = `${box.bottom - frame.top + 8}px`;
  }

  let selectionTimer = null;
  const onSelectionChange = () => {
    clearTimeout(selectionTimer);
    selectionTimer = setTimeout(onSelection, 120);
  };
  document.addEventListener('selectionchange', onSelectionChange);
  offs.push(() => document.removeEventListener('selectionchange', onSelectionChange));

  askButton.addEventListener('click', () => {
    const passage = selected;
    if (!passage) return;
    if (passage.length > MAX_SELECTION) {
      toast(t('That selection is too long ({length} characters). Select at most {most}.', { length: number(passage.length), most: number(MAX_SELECTION) }));
      return;
    }
    busy(askButton, async () => {
      try {
        // A passage that is one of the article's highlights: the insight is kept with it.
        const same = highlightsView.items().find((hl) => hl.quote.replace(/\s+/g, ' ').trim() === passage);
        await startThread(articleId, passage, same ? same.highlight_id : null);
        document.getSelection()?.removeAllRanges();
        hidePopover();
        setNotesOpen(true);
        const first = notesView.first();
        if (first) first.scrollIntoView({ behavior: 'smooth', block: 'nearest' });
      } catch (err) {
        toast(describeError(err));
      }
    });
  });

  highlightButton.addEventListener('click', () => {
    const chosen = selectedExactly;
    if (!chosen) return;
    busy(highlightButton, async () => {
      try {
        await highlightsView.add(chosen.quote, chosen.prefix, chosen.suffix);
        document.getSelection()?.removeAllRanges();
        hidePopover();
        setNotesOpen(true);
      } catch (err) {
        toast(describeError(err));
      }
    });
  });

  // -- wiring -------------------------------------------------------------------------------
  function renderAll() {
    renderHead();
    renderGlance();
    renderText();
    renderPerspectives();
  }

  offs.push(on('article', (changed) => {
    if (changed.article_id !== articleId) return;
    article = changed;
    renderAll();
  }));
  offs.push(on('task', (task) => {
    if (task.article_id === articleId && (task.task_type === 'article_analysis' || task.task_type === 'page_fetch')) renderGlance();
    for (const view of perspectiveViews.values()) if (view.concerns(task.task_id)) view.update();
  }));
  offs.push(on('tasks', () => { renderGlance(); renderPerspectives(); }));
  offs.push(on('lenses', renderPerspectives));
  offs.push(on('tick', () => {
    renderGlance();
    for (const view of perspectiveViews.values()) view.tick();
  }));

  renderAll();
  title.focus({ preventScroll: true });
  loadArticle(articleId).then((loaded) => {
    if (destroyed) return;
    article = loaded;
    renderAll();
    title.focus({ preventScroll: true });
  }).catch((err) => {
    if (destroyed) return;
    if (err.status === 404) {
      replace(reader, h('nav', { class: 'crumbs' }, h('a', { href: '#/' }, t('← All articles'))),
        h('h1', { tabindex: '-1' }, t('Article not found')),
        h('p', null, t('It may have been deleted, or it belongs to another account.')));
      forgetArticle(articleId);
    } else {
      toast(describeError(err));
    }
  });

  return {
    /** Reload the article (after the stream missed events it could not replay). */
    refresh() {
      loadArticle(articleId).catch(() => {});
    },
    unmount() {
      destroyed = true;
      clearTimeout(selectionTimer);
      offs.forEach((off) => off());
      document.title = t('InsightReader');
    },
    /** Escape: the selection popover first, then the notes sheet. */
    escape() {
      if (!popover.hidden) {
        hidePopover();
        return true;
      }
      if (notes.classList.contains('open') && getComputedStyle(notesToggle).display !== 'none') {
        setNotesOpen(false);
        notesToggle.focus();
        return true;
      }
      return false;
    },
  };
}
