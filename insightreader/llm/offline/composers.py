"""The composers: one per task, each turning the data blocks into the task's
answer, and :func:`answer`, which picks the composer a request asks for."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from insightreader.text import (
    Document,
    Sentence,
    detect_language,
    has_cjk,
    reading_time_minutes,
    shorten,
    terms,
    trim_sentence,
)

from .reading import CUES, ArticleReading, is_question
from .request import (
    INTENTS,
    LENS_TYPES,
    SYSTEM_ROLES,
    OfflineRequestError,
    content_text,
    data_blocks,
    requested_language,
    snake,
    task_of,
)
from .wording import Writer, translation_notice


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _summary_and_points(article: ArticleReading, max_points: int = 6) -> tuple[str, list[str]]:
    """2-3 summary sentences and 3-6 further key sentences, in document order."""
    w, doc = article.w, article.doc
    if article.empty:
        return w("empty_summary"), [w("empty_point"), w("short_add"), w("empty_follow")]
    body = article.body
    summary = doc.pick(3 if len(body) >= 8 else min(2, len(body)))
    wanted = _clamp(round(len(body) / 6), 3, max_points)
    points = doc.pick(wanted, exclude=summary)
    if len(points) < 3:  # a short text: its key points are its sentences
        points = sorted({s.index: s for s in [*points, *summary]}.values(), key=lambda s: s.index)[:wanted]
    limit = 120 if w.zh else 300
    key_points = list(dict.fromkeys(trim_sentence(s.text, limit) for s in points))
    fillers = [w("short_point", t=t) for t in doc.keywords(2)] + [w("short_more"), w("short_add")]
    for filler in fillers:
        if len(key_points) >= 3:
            break
        key_points.append(filler)
    return w.join([trim_sentence(s.text, limit) for s in summary]), key_points


def _reader_questions(article: ArticleReading, topics: list[str]) -> list[str]:
    w = article.w
    questions = [w("q_evidence", t=topics[0]), w("q_relation", a=topics[1], b=topics[2])]
    own = [s for s in article.body if is_question(s.text) and len(s.text) <= (60 if w.zh else 160)]
    if own:
        questions.append(w("q_author", q=w.quote(article.best(own).text)))  # type: ignore[union-attr]
    else:
        questions.append(w("q_critic", t=topics[-1]))
    return questions


def _existing_tags(blocks: dict[str, str]) -> list[str]:
    """The reader's tags from the ``<tags>`` block (a JSON array of names)."""
    try:
        names = json.loads(blocks.get("tags", "[]"))
    except ValueError:
        return []
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def _suggested_tags(article: ArticleReading, existing: list[str], count: int = 5) -> list[str]:
    """Existing tags whose words all occur in the text (in the order given: most used
    first), then the text's keywords not covered by those, ``count`` at most and
    three at least."""
    occurring = [
        name for name in existing
        if (keys := terms(name)) and all(k in article.doc.weight for k in keys)
    ]
    chosen = list(dict.fromkeys(occurring[:count]))
    taken = {k for name in chosen for k in terms(name)}
    topics = article.topics(count)
    for topic in topics:
        if len(chosen) < count and not set(terms(topic)) <= taken:
            chosen.append(topic)
            taken.update(terms(topic))
    # A short text: its topics overlap, and the fallbacks fill up to three.
    for topic in [*topics, *article.w("fallback_topics").split("|")]:
        if len(chosen) < 3 and topic not in chosen:
            chosen.append(topic)
    return chosen


def _article_analysis(blocks: dict[str, str]) -> dict[str, Any]:
    article = ArticleReading(blocks)
    summary, key_points = _summary_and_points(article)
    topics = article.topics(5 if len(article.body) >= 8 else 3)
    return {
        "summary": summary,
        "key_points": key_points,
        "topics": topics,
        "reading_time_minutes": reading_time_minutes(article.raw),
        "language": article.w.language,
        "questions": _reader_questions(article, topics),
        "suggested_tags": _suggested_tags(article, _existing_tags(blocks)),
    }


def _chunk_notes(blocks: dict[str, str]) -> dict[str, Any]:
    article = ArticleReading(blocks)
    summary, key_points = _summary_and_points(article)
    return {"summary": summary, "key_points": key_points}


def _meta_analysis(blocks: dict[str, str]) -> dict[str, Any]:
    article = ArticleReading(blocks)
    w, doc = article.w, article.doc
    topics = article.topics(4)
    if article.empty:
        return {
            "author_stance": w("stance_empty"),
            "tone": w("tone_empty"),
            "assumptions": [w("empty_assume"), w("short_add")],
            "rhetorical_devices": [w("dev_plain")],
            "missing_perspectives": [w("empty_missing"), w("short_add")],
            "questions_to_ask": [w("empty_ask_about"), w("empty_ask_want")],
        }

    opinions = [s for s in article.with_cue("opinion") if not is_question(s.text)]
    claim = article.best(opinions)
    if claim is not None:
        stance = w("stance", s=w.quote(claim.text))
        late = [s for s in opinions if s.paragraph >= max(1, doc.paragraph_count - 2) and s.index != claim.index]
        closing = article.best(late, [claim])
        if closing is not None:
            stance += w("stance_close", s=w.quote(closing.text))
    else:
        stance = w("stance_neutral", s=article.text_of(article.best(article.body)))

    counts = {
        cue: len(article.with_cue(cue)) for cue in ("opinion", "number", "hedge", "urgent", "first_person", "contrast")
    }
    questions = [s for s in article.body if is_question(s.text)]
    descriptors = [w("argumentative") if counts["opinion"] >= 2 else w("explanatory")]
    if counts["number"] >= 3:
        descriptors.append(w("evidence"))
    if counts["contrast"] >= 3 and counts["opinion"] >= 2:
        descriptors.append(w("balanced"))
    if counts["urgent"] >= 2:
        descriptors.append(w("urgent"))
    if counts["hedge"] >= 3:
        descriptors.append(w("cautious"))
    if counts["first_person"] >= 4:
        descriptors.append(w("personal"))
    if len(questions) >= 2:
        descriptors.append(w("questioning"))
    desc = w.words["list_sep"].join(descriptors[:3])
    tone = w(
        "tone",
        desc=desc[:1].upper() + desc[1:],
        op=str(counts["opinion"]),
        num=str(counts["number"]),
        q=str(len(questions)),
    )

    assumptions = [w("assume_cue", s=w.quote(s.text)) for s in article.assumptions(3, [])]
    if len(assumptions) < 2 and claim is not None:
        assumptions.append(w("assume_opinion", s=w.quote(claim.text)))
    for line in (w("assume_trend", t=topics[0]), w("assume_values", t=topics[1])):
        if len(assumptions) >= 2:
            break
        assumptions.append(line)

    devices: list[str] = []
    shown: list[Sentence] = []  # each example sentence illustrates one device
    for cue, key in (
        ("question", "dev_question"),
        ("number", "dev_numbers"),
        ("quote", "dev_quote"),
        ("list", "dev_list"),
        ("contrast", "dev_contrast"),
    ):
        found = questions if cue == "question" else article.with_cue(cue)
        if cue == "list":
            if len(found) >= 2:
                devices.append(w(key))
            continue
        if cue == "number":  # real figures before "twice" or "dozens"
            found = [s for s in found if re.search(r"\d", s.text)] or found
        example = article.best(found, shown)
        if example is not None:
            shown.append(example)
            devices.append(w(key, s=w.quote(example.text, 90 if w.zh else 180)))
    devices = devices[:4] or [w("dev_plain")]

    missing = [
        w("miss_affected", t=topics[0]),
        w("miss_cost", t=topics[1]),
        w("miss_dissent", t=topics[2]),
    ]
    if len(topics) >= 4:
        missing.append(w("miss_context", t=topics[3]))

    to_ask = [w("ask_mind", t=topics[0]), w("ask_gain", t=topics[1])]
    numbered = article.with_cue("number")
    figures = article.best([s for s in numbered if re.search(r"\d", s.text)] or numbered)
    if figures is not None:
        to_ask.append(w("ask_figures", s=w.quote(figures.text, 60 if w.zh else 140)))
    else:
        to_ask.append(w("ask_scope", t=topics[2]))

    return {
        "author_stance": stance,
        "tone": tone,
        "assumptions": assumptions[:4],
        "rhetorical_devices": devices,
        "missing_perspectives": missing,
        "questions_to_ask": to_ask,
    }


def _points(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"heading": heading, "detail": detail} for heading, detail in pairs[:5]]


def _thinking_lens(blocks: dict[str, str]) -> dict[str, Any]:
    article = ArticleReading(blocks)
    lens = snake(blocks.get("lens", "")) or "argument_map"
    if lens not in LENS_TYPES:
        lens = "argument_map"
    w, doc = article.w, article.doc
    topics = article.topics(4)
    t0, t1 = topics[0], topics[1]
    text = article.text_of
    short = 60 if w.zh else 160

    # The parts every lens draws on, each a different sentence.
    claim = article.claim()
    used: list[Sentence] = [claim] if claim else []
    evidence = article.evidence(2, used)
    used += evidence
    objection = article.objection(used)
    used += [objection] if objection else []
    late = [s for s in article.body if s.paragraph >= doc.paragraph_count - 2 and not is_question(s.text)]
    conclusion = article.best(late, used)
    used += [conclusion] if conclusion else []

    def numbered(heading: str, sentences: list[Sentence]) -> list[tuple[str, str]]:
        if len(sentences) == 1:
            return [(heading, text(sentences[0]))]
        return [(f"{heading} {i + 1}", text(s)) for i, s in enumerate(sentences)] or [(heading, text(None))]

    if lens == "argument_map":
        title = w("am_title", t=t0 if w.zh else t0[:1].upper() + t0[1:])
        summary = w("am_summary", s=text(claim, short))
        pairs = [(w("am_claim"), text(claim)), *numbered(w("am_evidence"), evidence)]
        if objection:
            pairs.append((w("am_objection"), text(objection)))
        pairs.append((w("am_conclusion"), text(conclusion)))
        questions = [w("am_q1"), w("am_q2", t=t0), w("am_q3")]
    elif lens == "first_principles":
        opinions = article.with_cue("opinion")
        opinion_indexes = {s.index for s in opinions}
        facts_pool = [
            s
            for s in article.body
            if s.index not in opinion_indexes
            and not is_question(s.text)
            and (article.cues["number"].search(s.text) or article.cues["fact"].search(s.text))
        ]
        facts = doc.pick(2, [s for s in facts_pool if article.cues["evidence"].search(s.text)] or facts_pool)
        assumptions = article.assumptions(2, facts) or doc.pick(1, opinions, facts)
        title = w("fp_title", t=t0)
        summary = w("fp_summary")
        pairs = [*numbered(w("fp_fact"), facts), *numbered(w("fp_assumption"), assumptions)]
        pairs.append((w("fp_rebuild"), w("fp_rebuild_detail", a=t0, b=t1)))
        questions = [w("fp_q1"), w("fp_q2", t=t1), w("fp_q3")]
    elif lens == "systems_thinking":
        parts = w.listing(topics[:4])
        causal = doc.pick(3, article.with_cue("causal"), [claim] if claim else [], in_order=False)
        lever = article.best([s for s in article.with_cue("opinion") if not is_question(s.text)], causal)
        loop = causal[2] if len(causal) > 2 else article.best(article.body, causal + ([lever] if lever else []))
        title = w("st_title", t=t0)
        summary = w("st_summary", parts=parts)
        pairs = [(w("st_actors"), w("st_actors_detail", parts=parts)), *numbered(w("st_cause"), causal[:2])]
        pairs.append((w("st_loop"), w("st_loop_detail", a=t0, b=t1, s=text(loop, short))))
        pairs.append((w("st_lever"), text(lever)))
        questions = [w("st_q1", t=t0), w("st_q2"), w("st_q3")]
    elif lens == "counterfactual":
        pillars = doc.pick(3, exclude=[claim] if claim else [], in_order=False)
        pillars = ([claim] if claim else []) + pillars[: 3 - (1 if claim else 0)]
        title = w("cf_title")
        summary = w("cf_summary")
        pairs = []
        named: list[str] = []
        for i, s in enumerate(pillars):
            keyword = article.sentence_keyword(s, avoid=named) or topics[i % len(topics)]
            named.append(keyword)
            pairs.append((w("cf_heading", t=keyword), w(f"cf_detail{i + 1}", s=text(s))))
        while len(pairs) < 3:
            pairs.append((w("cf_heading", t=topics[len(pairs) % len(topics)]), text(None)))
        questions = [w("cf_q1", t=t0), w("cf_q2"), w("cf_q3")]
    elif lens == "socratic":
        keys = terms(t0)
        defining = article.best([s for s in article.body if keys and all(k in s.terms for k in keys)])
        assumption = next(iter(article.assumptions(1, used)), None)
        title = w("so_title", t=t0)
        summary = w("so_summary")
        pairs = [
            (w("so_meaning", t=t0), w("so_meaning_detail", s=text(defining))),
            (w("so_know"), w("so_know_detail", s=text(evidence[0])) if evidence else text(None)),
            (w("so_assume"), text(assumption)),
            (w("so_follow"), text(conclusion or claim)),
        ]
        if objection:
            pairs.append((w("so_objection"), text(objection)))
        questions = [w("so_q1"), w("so_q2", t=t0), w("so_q3")]
    else:  # steelman
        scope_keys = terms(t1)
        scope = article.best([s for s in article.body if any(k in s.terms for k in scope_keys)], used)
        title = w("sm_title")
        summary = w("sm_summary", s=text(claim, short))
        pairs = [(w("sm_claim"), text(claim)), *numbered(w("sm_evidence"), evidence)]
        pairs.append((w("sm_reply"), text(objection)))
        pairs.append((w("sm_scope"), w("sm_scope_detail", a=t0, b=t1, s=text(scope, short))))
        questions = [w("sm_q1"), w("sm_q2", t=t0), w("sm_q3")]

    return {
        "lens_type": lens,
        "title": title,
        "summary": summary,
        "points": _points(pairs),
        "questions": questions[:3],
    }


_ZH_CONNECTIVES = ("但是", "然而", "而且", "因为", "所以", "因此", "并且", "如果", "那么", "而", "但", "却")
_CLAUSE_SPLIT_RE = re.compile(r"[\s，。；：！？、,.;:!?\u201c\u201d\u2018\u2019\u300c\u300d\uff08\uff09()]+")


def _passage_clauses(passage: str, doc: Document, count: int) -> list[str]:
    """Clauses of a Chinese passage to focus a question on (when no keyword
    of the article occurs in it): rich in content terms, at most 18
    characters, best first."""
    scored = []
    for position, part in enumerate(_CLAUSE_SPLIT_RE.split(passage)):
        for connective in _ZH_CONNECTIVES:
            if part.startswith(connective) and len(part) - len(connective) >= 4:
                part = part[len(connective) :]
                break
        if len(part) < 4:
            continue
        part = shorten(part, 18)
        keys = terms(part)
        score = sum(doc.weight.get(k, 0.0) for k in keys) + len(keys)
        scored.append((-score, position, part))
    return list(dict.fromkeys(part for _, _, part in sorted(scored)))[:count]


def _fit(template: str, keyword: str, limit: int) -> str:
    """``template`` filled with ``keyword``, shortened to keep within ``limit`` characters."""
    room = limit - len(template.replace("{t}", ""))
    if len(keyword) > room:
        keyword = shorten(keyword, max(room, 4))
    return template.replace("{t}", keyword)


def _focus(text: str, doc: Document, count: int) -> tuple[list[str], bool]:
    """What a question about ``text`` should name: its keywords (read
    against the article), or for Chinese text without any, its clauses.
    The flag says clauses were returned."""
    if not text.strip():
        return [], False
    context = doc if doc.sentences else Document(text)
    if detect_language(text) == "zh" and len(context.sentences) <= 3:
        # A few Chinese sentences alone give no word statistics to cut them
        # into words: name a clause instead.
        return _passage_clauses(text, doc, count), True
    keywords = context.passage_keywords(text, count)
    if keywords or not has_cjk(text):
        return keywords, False
    return _passage_clauses(text, doc, count), True


def _button_generation(blocks: dict[str, str]) -> dict[str, Any]:
    selection = blocks.get("selection", "")
    insight = blocks.get("insight", "")
    w = Writer(detect_language(selection or insight or blocks.get("article", "") or blocks.get("question", "")))
    doc = Document(blocks.get("article", ""), blocks.get("title", ""))
    focus, clauses = _focus(selection or insight, doc, 3)
    if not focus:
        focus = [w("b_default_topic")]
    # A Chinese claim is challenged as a clause, not as a single word.
    challenge_clause = _passage_clauses(selection or insight, doc, 1) if w.zh and not clauses else []
    insight_focus = [k for k in _focus(insight, doc, 3)[0] if k not in focus] if selection else []

    order = ["deeper", "challenge", "connect"] if insight else ["explain", "example", "challenge"]
    intent = snake(blocks.get("intent", ""))
    if intent in INTENTS and intent not in order:
        order = [intent, *order[:2]]
    elif intent in INTENTS:
        order = [intent, *(i for i in order if i != intent)]

    passage = w.quote(selection or insight, 80 if w.zh else 200) if (selection or insight) else ""
    buttons = []
    for i, kind in enumerate(order):
        label_key = f"b_{kind}_label_clause" if clauses else f"b_{kind}_label"
        template = w.words[label_key]
        # This button's keyword, or the next one that fits the label whole.
        rotation = focus[i % len(focus) :] + focus[: i % len(focus)]
        keyword = next((k for k in rotation if len(template.replace("{t}", k)) <= 40), rotation[0])
        if kind == "challenge" and challenge_clause:
            keyword, label_key = challenge_clause[0], "b_challenge_label_clause"
        label = _fit(w.words[label_key], keyword, 40)
        extra = w("b_connect_extra", t=insight_focus[0]) if kind == "connect" and insight_focus else ""
        prompt = re.sub(r" {2,}", " ", w.words[f"b_{kind}_prompt"].format(t=keyword, s=passage, extra=extra)).strip()
        buttons.append({"label": label, "prompt": prompt, "intent": kind})
    return {"buttons": buttons}


def _insight(blocks: dict[str, str]) -> str:
    selection = blocks.get("selection", "") or blocks.get("insight", "")
    question = blocks.get("question", "")
    w = Writer(detect_language(selection or question or blocks.get("article", "")))
    if not selection.strip() and not question.strip():
        return w("i_empty")
    doc = Document(blocks.get("article", ""), blocks.get("title", ""))
    has_article = bool(doc.body)
    focus_text = selection or question
    keywords, clauses = _focus(focus_text, doc, 3)
    if clauses:
        keywords = []
    t0 = keywords[0] if keywords else (w("b_default_topic"))

    sentences: list[str] = []
    quoted: list[Sentence] = []  # article sentences already quoted, not to repeat

    def cite(sentence: Sentence) -> str:
        quoted.append(sentence)
        return w.quote(sentence.text)

    core = Document(focus_text).pick(1)
    core_text = core[0].text if core else focus_text
    if keywords:
        sentences.append(w("i_restate", t=w.listing(keywords[:2]), s=w.quote(core_text)))
    else:
        sentences.append(w("i_restate_plain", s=w.quote(core_text)))

    if question.strip():
        q = w.quote(question, 60 if w.zh else 120)
        answers = doc.similar(question, 1) if has_article else []
        sentences.append(w("i_question", q=q, s=cite(answers[0])) if answers else w("i_question_none", q=q))

    related = [s for s in doc.similar(focus_text, 3, exclude_text=selection) if s not in quoted] if has_article else []
    if related:
        sentences.append(w("i_matters", s=cite(related[0])))
        if len(related) > 1 and not question.strip():
            sentences.append(w("i_also", s=cite(related[1])))
    else:
        sentences.append(w("i_alone", t=t0))

    intent = snake(blocks.get("intent", ""))
    if intent == "explain":
        sentences.append(w("i_explain", t=t0))
    elif intent == "challenge":
        sentences.append(w("i_challenge", t=t0))
    elif intent == "example":
        numbers = CUES[w.language]["number"]
        cases = [
            s for s in doc.similar(focus_text, 8, exclude_text=selection) if numbers.search(s.text) and s not in quoted
        ]
        sentences.append(w("i_example", s=cite(cases[0])) if cases else w("i_example_none", t=t0))
    elif intent == "connect":
        claim = ArticleReading(blocks).claim() if has_article else None
        if claim is not None and claim not in quoted and claim.text not in selection:
            sentences.append(w("i_connect", s=cite(claim)))
    elif intent == "deeper":
        sentences.append(w("i_deeper", t=t0))
    elif len(keywords) >= 3 and len(sentences) < 4:
        sentences.append(w("i_terms", t=w.listing(keywords)))

    sentences = sentences[:5]
    sentences.append(w("i_consider", t=t0))
    return w.join(sentences)


_COMPOSERS: dict[str, Callable[[dict[str, str]], dict[str, Any]]] = {
    "article_analysis": _article_analysis,
    "chunk_notes": _chunk_notes,
    "meta_analysis": _meta_analysis,
    "thinking_lens": _thinking_lens,
    "button_generation": _button_generation,
}


def answer(body: dict[str, Any]) -> str:
    """The offline model's reply (message content) to a chat.completions body.

    Raises :class:`OfflineRequestError` for a request it cannot answer."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise OfflineRequestError("'messages' must be a non-empty list", "invalid_messages")
    system_text = "\n".join(
        content_text(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") in SYSTEM_ROLES
    )
    task = task_of(body, system_text)
    blocks = data_blocks(messages)
    untagged = blocks.pop("", None)
    if untagged is not None:
        blocks["selection" if task in (None, "insight", "button_generation") else "article"] = untagged
    requested = requested_language(system_text)
    notice = None if requested is None else translation_notice(detect_language(_main_text(blocks)), requested)
    if task is None or task == "insight":
        text = _insight(blocks) if notice is None else f"{notice}\n\n{_insight(blocks)}"
        response_format = body.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema"):
            return _dump({"insight": text})
        return text
    composed = _COMPOSERS[task](blocks)
    noticed = _NOTICED.get(task)
    if notice is not None and noticed is not None:
        composed[noticed] = f"{notice} {composed[noticed]}"
    return _dump(composed)


#: The field of each task's answer that starts with the notice that the offline model
#: could not write in the requested language (button labels are too short for it).
_NOTICED = {"article_analysis": "summary", "meta_analysis": "author_stance", "thinking_lens": "summary"}


def _main_text(blocks: dict[str, str]) -> str:
    """The text an answer is about, whose language it is written in."""
    return blocks.get("article") or blocks.get("selection") or blocks.get("question") or ""


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
