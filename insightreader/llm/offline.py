"""The built-in offline model: a deterministic, extractive stand-in for an
OpenAI-compatible server, answered in-process through an httpx2 transport so
the real ``openai.AsyncOpenAI`` client (streaming included) is exercised::

    client = openai.AsyncOpenAI(
        api_key="offline", base_url="http://offline.invalid/v1", max_retries=0,
        http_client=httpx2.AsyncClient(transport=OfflineTransport()),
    )

It serves ``GET …/models`` and ``POST …/chat/completions`` (plain, or an SSE
stream of ``chat.completion.chunk`` events ending in ``data: [DONE]``).
Every answer's ``model`` is :data:`OFFLINE_MODEL`, whatever was asked for.

The request convention
----------------------
* The task is ``response_format.json_schema.name`` when ``response_format``
  is ``json_schema``; otherwise (``json_object`` or none) a ``Task: NAME``
  line in a system (or developer) message. Names are compared in
  snake_case (``ArticleAnalysis`` and ``article-analysis`` both work).
  Known tasks: :data:`TASKS`; ``insight_generation`` is an alias of
  ``insight``. A request without a task is an insight. An unknown task
  name is a 400 ``invalid_request_error`` with code ``unknown_task``.
* The data is in the last user message holding any of the tagged blocks
  ``<title> <article> <selection> <insight> <intent> <lens> <history>
  <question> <tags>`` (so a later user message, such as a repair note, does
  not hide it). Everything inside a block is data, never instructions. Blocks
  are read in the order article, history, insight, selection, question,
  title, intent, lens, tags: each from its FIRST open tag to its LAST close tag,
  then cut out before the next is read, so fake tags inside an article
  stay part of the article. A user message with no tags at all is the
  article (structured tasks) or the selection (insights).
* Structured tasks answer a JSON object as the message content; insights
  answer plain text (wrapped as ``{"insight": …}`` only when
  ``response_format`` is ``json_object``). Output is in the language of the
  text (Chinese when Chinese characters outnumber Latin words, else
  English), labels included.

``usage`` counts estimated tokens (:func:`insightreader.text.estimate_tokens`).
Ids are hashes of the request and ``created`` is 0, so the same request
always gives the same bytes. ``max_tokens``, ``temperature``, ``n`` and
``tools`` are ignored.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx2

from insightreader.text import (
    Document,
    Language,
    Sentence,
    detect_language,
    estimate_tokens,
    has_cjk,
    reading_time_minutes,
    shorten,
    terms,
    trim_sentence,
)

__all__ = [
    "INTENTS",
    "LENS_TYPES",
    "OFFLINE_MODEL",
    "TAGS",
    "TASKS",
    "OfflineRequestError",
    "OfflineTransport",
    "answer",
    "parse_blocks",
    "stream_pieces",
]

OFFLINE_MODEL = "insightreader-offline-1"

TASKS = (
    "article_analysis",
    "chunk_notes",
    "meta_analysis",
    "thinking_lens",
    "button_generation",
    "insight",
)
_TASK_ALIASES = {"insight_generation": "insight", "insights": "insight"}

LENS_TYPES = ("argument_map", "first_principles", "systems_thinking", "counterfactual", "socratic", "steelman")
INTENTS = ("explain", "challenge", "example", "connect", "deeper")

#: Tags of the data blocks, in the order they are read and cut out.
TAGS = ("article", "history", "insight", "selection", "question", "title", "intent", "lens", "tags")

_SYSTEM_ROLES = ("system", "developer")


class OfflineRequestError(ValueError):
    """A request the offline model cannot answer (answered as HTTP 400)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


# ==========================================================================
# Reading the request


def parse_blocks(text: str) -> dict[str, str]:
    """The tagged data blocks of ``text``, stripped, keyed by tag name.

    Each block runs from the first ``<tag>`` to the last ``</tag>`` (or to
    the end when unclosed) and is cut out before the next tag is looked for,
    in :data:`TAGS` order."""
    remaining = text
    blocks: dict[str, str] = {}
    for tag in TAGS:
        opening, closing = f"<{tag}>", f"</{tag}>"
        start = remaining.find(opening)
        if start < 0:
            continue
        body_start = start + len(opening)
        end = remaining.rfind(closing)
        if end < body_start:
            content, resume = remaining[body_start:], len(remaining)
        else:
            content, resume = remaining[body_start:end], end + len(closing)
        blocks[tag] = content.strip()
        remaining = remaining[:start] + "\n" + remaining[resume:]
    return blocks


def _content_text(content: Any) -> str:
    """A message's text, whether a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return ""


def _snake(name: str) -> str:
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name.strip())
    return re.sub(r"[\s\-]+", "_", name).lower()


def _task_of(body: dict[str, Any], system_text: str) -> str | None:
    """The task name the request asks for, normalised; ``None`` for an insight."""
    response_format = body.get("response_format")
    schema_name = None
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        schema = response_format.get("json_schema")
        if isinstance(schema, dict) and isinstance(schema.get("name"), str):
            schema_name = _snake(schema["name"])
    line = re.search(r"^[ \t#*>-]*Task:[ \t]*([A-Za-z][\w\-]*)", system_text, re.MULTILINE)
    named = _snake(line.group(1)) if line else None
    for candidate in (schema_name, named):
        if candidate is not None:
            candidate = _TASK_ALIASES.get(candidate, candidate)
            if candidate in TASKS:
                return candidate
    name = schema_name or named
    if name is not None:
        raise OfflineRequestError(
            f"the offline model has no task {name!r}; known tasks: {', '.join(TASKS)}", "unknown_task"
        )
    return None


def _data_blocks(messages: list[Any]) -> dict[str, str]:
    user_texts = [_content_text(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    for text in reversed(user_texts):
        if any(f"<{tag}>" in text for tag in TAGS):
            return parse_blocks(text)
    return {"": user_texts[-1].strip()} if user_texts else {}


def answer(body: dict[str, Any]) -> str:
    """The offline model's reply (message content) to a chat.completions body.

    Raises :class:`OfflineRequestError` for a request it cannot answer."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise OfflineRequestError("'messages' must be a non-empty list", "invalid_messages")
    system_text = "\n".join(
        _content_text(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") in _SYSTEM_ROLES
    )
    task = _task_of(body, system_text)
    blocks = _data_blocks(messages)
    untagged = blocks.pop("", None)
    if untagged is not None:
        blocks["selection" if task in (None, "insight", "button_generation") else "article"] = untagged
    if task is None or task == "insight":
        text = _insight(blocks)
        response_format = body.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema"):
            return _dump({"insight": text})
        return text
    return _dump(_COMPOSERS[task](blocks))


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# ==========================================================================
# Wording. Every sentence the model writes itself is here, in both
# languages, with the same keys.

_WORDING: dict[str, dict[str, str]] = {
    "en": {
        "join": " ",
        "list_sep": ", ",
        "list_last": " and ",
        "empty_summary": "The article has no text yet, so there is nothing to summarise.",
        "empty_point": "No text was provided to extract points from.",
        "empty_follow": "Summary, topics and questions will follow from the text.",
        "short_point": "The text centres on {t}.",
        "short_more": "The text is too short to yield more key points.",
        "short_add": "Add more of the article's text for a fuller analysis.",
        "fallback_topics": "reading|ideas|context",
        "q_evidence": "What evidence does the article give for its view on {t}?",
        "q_relation": "How are {a} and {b} connected, according to the article?",
        "q_critic": "What would a critic say about the article's argument on {t}?",
        "q_author": "The author asks: {q} How would you answer?",
        # meta analysis
        "stance": "The author takes a clear position and argues for it: {s}",
        "stance_close": " The closing paragraphs drive it home: {s}",
        "stance_neutral": "The author mostly explains rather than argues; the central point is: {s}",
        "stance_empty": "There is no text, so no stance can be identified.",
        "tone": "{desc} (opinion statements: {op}; sentences with figures: {num}; questions to the reader: {q}).",
        "tone_empty": "Neutral: there is no text to judge the tone from.",
        "empty_assume": "No assumptions can be identified without text.",
        "empty_missing": "No missing perspectives can be judged without text.",
        "empty_ask_about": "What is the article about?",
        "empty_ask_want": "What does the author want the reader to believe?",
        "argumentative": "argumentative",
        "explanatory": "explanatory",
        "evidence": "evidence-driven",
        "urgent": "urgent",
        "cautious": "cautious",
        "personal": "personal",
        "questioning": "questioning",
        "balanced": "acknowledges objections",
        "assume_cue": "Takes for granted: {s}",
        "assume_opinion": "Assumes the recommended course is workable and affordable: {s}",
        "assume_trend": "Assumes that what is true of {t} today will stay true.",
        "assume_values": "Assumes readers share the author's values about {t}.",
        "dev_question": "Rhetorical question: {s}",
        "dev_numbers": "Statistics and figures: {s}",
        "dev_quote": "Quotation: {s}",
        "dev_list": "Enumeration: the argument is laid out as a numbered sequence (first, second, third).",
        "dev_contrast": "Contrast: {s}",
        "dev_plain": "Plain exposition: the text states its points directly, without marked rhetorical devices.",
        "miss_affected": "{T}: the people most directly affected are talked about more than they are heard.",
        "miss_cost": "{T}: the costs and trade-offs of acting on the argument, and who would pay them.",
        "miss_dissent": "{T}: evidence or experts that reach a different conclusion.",
        "miss_context": "{T}: how the picture changes in other countries, periods or settings.",
        "ask_mind": "What evidence would change the author's mind about {t}?",
        "ask_gain": "Who gains and who loses if readers accept the argument on {t}?",
        "ask_figures": "How reliable and representative are the figures cited, such as {s}?",
        "ask_scope": "Where does the argument about {t} stop applying?",
        # lenses
        "no_text": "The article does not say this directly.",
        "am_title": "Argument map: {t}",
        "am_summary": (
            "The article's central claim is {s}; the map separates that claim from the evidence offered for it, the "
            "objection it answers and the conclusion it draws."
        ),
        "am_claim": "Claim",
        "am_evidence": "Evidence",
        "am_objection": "Objection addressed",
        "am_conclusion": "Conclusion",
        "am_q1": "Does the evidence support the whole claim, or only part of it?",
        "am_q2": "Which step between the evidence and the conclusion about {t} is weakest?",
        "am_q3": "What evidence would an opponent ask for that the article does not give?",
        "fp_title": "First principles: what is actually known about {t}",
        "fp_summary": (
            "Separates what the article establishes as fact from what it assumes, then asks what follows from the "
            "facts alone."
        ),
        "fp_fact": "Basic fact",
        "fp_assumption": "Assumption",
        "fp_rebuild": "Rebuilt from the facts",
        "fp_rebuild_detail": (
            "From the facts alone, a narrower conclusion follows: {a} and {b} are linked. How strongly to act on "
            "that depends on the assumptions above, not on the facts."
        ),
        "fp_q1": "Which of these facts could you check independently?",
        "fp_q2": "If the assumption about {t} were dropped, what would remain of the argument?",
        "fp_q3": "Is there a simpler explanation that fits the same facts?",
        "st_title": "Systems view: {t}",
        "st_summary": (
            "Reads the article as a system of interacting parts ({parts}) and traces cause and effect rather than "
            "single events."
        ),
        "st_actors": "Actors and parts",
        "st_actors_detail": "The system in this article involves {parts}.",
        "st_cause": "Cause and effect",
        "st_loop": "Feedback loop",
        "st_loop_detail": (
            "A change in {a} shifts {b}, which in turn changes the conditions for {a}. Watch for this loop in: {s}"
        ),
        "st_lever": "Leverage point",
        "st_q1": "Which actor has the most power to change the outcome for {t}?",
        "st_q2": "What delays or side effects could make a sensible intervention backfire?",
        "st_q3": "Which feedback would reinforce the problem, and which would balance it?",
        "cf_title": "Counterfactuals: what if the premises changed?",
        "cf_summary": (
            "Takes the article's load-bearing statements one at a time and asks what would follow if each were false."
        ),
        "cf_heading": "What if this were not true of {t}?",
        "cf_detail1": (
            "The article holds that {s} If this were false, its main recommendation would lose its starting point."
        ),
        "cf_detail2": (
            "The article holds that {s} Without this, the case would rest on the remaining evidence alone. Would "
            "that be enough?"
        ),
        "cf_detail3": "The article holds that {s} If the opposite were true, which of its conclusions would survive?",
        "cf_q1": "Which single premise, if false, would most change the conclusion about {t}?",
        "cf_q2": "Is there a real case where these conditions did not hold, and what happened there?",
        "cf_q3": "What would have to be true for the opposite conclusion to be right?",
        "so_title": "Socratic questions: {t}",
        "so_summary": (
            "Questions the article's terms, evidence, assumptions and consequences in turn, each tied to a sentence "
            "of the text."
        ),
        "so_meaning": "What exactly is meant by {t}?",
        "so_meaning_detail": "The article uses it here: {s}",
        "so_know": "How do we know this is true?",
        "so_know_detail": "{s} What is the source, and could it be measured differently?",
        "so_assume": "What is being taken for granted?",
        "so_follow": "What follows if the author is right?",
        "so_objection": "What is the strongest objection?",
        "so_q1": "Which of these questions does the article answer least well?",
        "so_q2": "How would you define {t} in your own words?",
        "so_q3": "What would you need to see to change your mind?",
        "sm_title": "Steelman: the strongest case for the article's claim",
        "sm_summary": (
            "The strongest version of the argument: {s} It is built from the article's best evidence and its own "
            "answer to critics."
        ),
        "sm_claim": "The claim at full strength",
        "sm_evidence": "Strongest evidence",
        "sm_reply": "Best answer to the obvious objection",
        "sm_scope": "Where it holds best",
        "sm_scope_detail": "The claim is most convincing where {a} and {b} meet, as here: {s}",
        "sm_q1": "What is the best argument against this strongest version?",
        "sm_q2": "Would you accept the claim about {t} if the evidence were half as strong?",
        "sm_q3": "Which part of the case would a fair critic concede?",
        # buttons
        "b_explain_label": "What role does {t} play here?",
        "b_explain_prompt": (
            "Explain this passage: {s} What is meant by {t} here, and why is it important to the article's argument?"
        ),
        "b_challenge_label": "Is the claim about {t} solid?",
        "b_challenge_prompt": (
            "Challenge this passage: {s} What evidence or counter-arguments would weaken the claim about {t}?"
        ),
        "b_example_label": "An example of {t}?",
        "b_example_prompt": "Give a concrete, real-world example of {t} as described in: {s}",
        "b_connect_label": "How does {t} connect?",
        "b_connect_prompt": "How does this passage connect to the rest of the article{extra}? {s}",
        "b_connect_extra": " and to the insight about {t}",
        "b_deeper_label": "Go deeper on {t}",
        "b_deeper_prompt": "Go deeper: what causes {t}, and what does it lead to over time? Passage: {s}",
        "b_default_topic": "this passage",
        # insights
        "i_restate": "In short, this passage is about {t}: {s}",
        "i_restate_plain": "In short, this passage says: {s}",
        "i_matters": "It matters to the article because it connects to a point made elsewhere: {s}",
        "i_also": "The article also says: {s}",
        "i_alone": (
            "Read on its own, its weight rests on {t}; the surrounding article would show how far the claim is meant "
            "to go."
        ),
        "i_terms": "The key terms to hold on to are {t}.",
        "i_explain": "Put simply, the author wants the reader to see why {t} matters, not just that it exists.",
        "i_challenge": (
            "A sceptical reader could push back: is the evidence for {t} strong enough, and what would the best "
            "counter-example be?"
        ),
        "i_example": "A concrete case from the article: {s}",
        "i_example_none": "To make it concrete, think of a real case of {t} you have seen yourself.",
        "i_connect": "This links to the article's wider argument: {s}",
        "i_deeper": "Going deeper, the real question is what causes {t} and what it leads to over time.",
        "i_question": "On your question ({q}): the closest answer in the article is {s}",
        "i_question_none": (
            "On your question ({q}): the article does not answer it directly, so treat any answer as your own "
            "inference."
        ),
        "i_consider": (
            "A question to consider: would the argument still hold if {t} turned out to be less important than the "
            "text suggests?"
        ),
        "i_empty": (
            "There is no selected text to comment on yet. Select a passage to get an insight about it. A question to "
            "consider: which part of the article surprised you most?"
        ),
    },
    "zh": {
        "join": "",
        "list_sep": "、",
        "list_last": "和",
        "empty_summary": "文章还没有正文，暂时无法生成摘要。",
        "empty_point": "没有可供提炼要点的正文。",
        "empty_follow": "有了正文，才能生成摘要、主题和问题。",
        "short_point": "文本的核心词是“{t}”。",
        "short_more": "文本较短，无法提炼更多要点。",
        "short_add": "补充更多正文，可以得到更完整的分析。",
        "fallback_topics": "阅读|观点|背景",
        "q_evidence": "文章关于“{t}”的主要论据是什么？",
        "q_relation": "“{a}”和“{b}”之间是什么关系？",
        "q_critic": "持不同意见的人会如何看待文章对“{t}”的论述？",
        "q_author": "作者问道：{q}你会怎样回答？",
        "stance": "作者立场鲜明，明确主张：{s}",
        "stance_close": "文章结尾再次强调：{s}",
        "stance_neutral": "作者以说明为主，没有直接表态，核心观点是：{s}",
        "stance_empty": "没有正文，无法判断作者立场。",
        "tone": "{desc}（表达立场的句子{op}句，引用数字的句子{num}句，向读者发问{q}句）。",
        "tone_empty": "中性：没有正文可供判断语气。",
        "empty_assume": "没有正文，无法识别其中的假设。",
        "empty_missing": "没有正文，无法判断缺少哪些视角。",
        "empty_ask_about": "这篇文章讲的是什么？",
        "empty_ask_want": "作者希望读者相信什么？",
        "argumentative": "论证性强",
        "explanatory": "以说明为主",
        "evidence": "重视数据和证据",
        "urgent": "带有紧迫感",
        "cautious": "措辞谨慎",
        "personal": "带有个人色彩",
        "questioning": "善用设问",
        "balanced": "兼顾反方意见",
        "assume_cue": "默认前提：{s}",
        "assume_opinion": "假设文中的建议切实可行、代价可以承受：{s}",
        "assume_trend": "默认“{t}”的现状和趋势会延续下去。",
        "assume_values": "假设读者与作者对“{t}”持有相同的价值判断。",
        "dev_question": "设问与反问：{s}",
        "dev_numbers": "数据与统计：{s}",
        "dev_quote": "引用：{s}",
        "dev_list": "分条列举：文章用“第一、第二、第三”分点展开论述。",
        "dev_contrast": "对比与转折：{s}",
        "dev_plain": "平铺直叙：文章直接陈述观点，没有明显的修辞手法。",
        "miss_affected": "受“{t}”影响最直接的人群的声音：文章更多是在谈论他们，而不是让他们发声。",
        "miss_cost": "围绕“{t}”采取行动的成本与代价，以及由谁来承担。",
        "miss_dissent": "对“{t}”得出不同结论的证据或专家观点。",
        "miss_context": "其他国家、时期或情境下的“{t}”是什么样子。",
        "ask_mind": "什么样的证据会让作者改变对“{t}”的看法？",
        "ask_gain": "如果读者接受关于“{t}”的论点，谁会受益，谁会受损？",
        "ask_figures": "文中引用的数据是否可靠、有代表性？例如：{s}",
        "ask_scope": "关于“{t}”的论点在什么情况下不再适用？",
        "no_text": "文章没有直接说明这一点。",
        "am_title": "论证地图：{t}",
        "am_summary": "文章的核心主张是{s}下面把这一主张与支撑它的证据、它回应的反对意见以及最终结论分开来看。",
        "am_claim": "主张",
        "am_evidence": "证据",
        "am_objection": "回应的反对意见",
        "am_conclusion": "结论",
        "am_q1": "这些证据支撑的是整个主张，还是只支撑了其中一部分？",
        "am_q2": "从证据到关于“{t}”的结论，哪一步最薄弱？",
        "am_q3": "反对者会要求哪些文章没有提供的证据？",
        "fp_title": "第一性原理：关于“{t}”我们确知什么",
        "fp_summary": "把文章确立的事实与它所依赖的假设分开，再追问：只凭这些事实能推出什么。",
        "fp_fact": "基本事实",
        "fp_assumption": "假设",
        "fp_rebuild": "从事实重建",
        "fp_rebuild_detail": (
            "只凭事实，能得出的结论更窄：“{a}”与“{b}”确有关联。"
            "至于应当采取多大力度的行动，取决于上面的假设，而不是事实本身。"
        ),
        "fp_q1": "这些事实中，哪些可以独立核实？",
        "fp_q2": "如果去掉关于“{t}”的假设，论证还剩下什么？",
        "fp_q3": "是否有更简单的解释同样符合这些事实？",
        "st_title": "系统思维：{t}",
        "st_summary": "把文章看作由相互作用的要素（{parts}）构成的系统，追踪因果链条，而不是孤立的事件。",
        "st_actors": "参与者与要素",
        "st_actors_detail": "这篇文章涉及的系统包括{parts}。",
        "st_cause": "因果关系",
        "st_loop": "反馈回路",
        "st_loop_detail": "“{a}”的变化影响“{b}”，而“{b}”又反过来改变“{a}”的条件。可以在这里看到这一回路：{s}",
        "st_lever": "关键着力点",
        "st_q1": "哪个参与者最有能力改变“{t}”的结果？",
        "st_q2": "哪些延迟或副作用可能让看似合理的干预适得其反？",
        "st_q3": "哪些反馈会放大问题，哪些会抑制问题？",
        "cf_title": "反事实思考：如果前提不成立？",
        "cf_summary": "逐一拿出文章中承重的论断，追问：如果它不成立，会发生什么。",
        "cf_heading": "如果关于“{t}”的这一点不成立？",
        "cf_detail1": "文章认为：{s}如果这一点不成立，文章的主要建议就失去了出发点。",
        "cf_detail2": "文章认为：{s}如果没有这一点，论证只能依靠其余证据，这样够吗？",
        "cf_detail3": "文章认为：{s}如果事实恰恰相反，文章的哪些结论还能成立？",
        "cf_q1": "哪一个前提一旦不成立，会最大程度地改变关于“{t}”的结论？",
        "cf_q2": "现实中是否有这些条件不成立的案例？结果如何？",
        "cf_q3": "要让相反的结论成立，需要哪些条件？",
        "so_title": "苏格拉底式追问：{t}",
        "so_summary": "依次追问文章的概念、证据、假设和推论，每个问题都对应原文中的一句话。",
        "so_meaning": "“{t}”究竟指什么？",
        "so_meaning_detail": "文章是这样使用它的：{s}",
        "so_know": "我们怎么知道这是真的？",
        "so_know_detail": "{s}来源是什么？换一种方法衡量，结果会不同吗？",
        "so_assume": "哪些东西被视为理所当然？",
        "so_follow": "如果作者是对的，会推出什么？",
        "so_objection": "最有力的反对意见是什么？",
        "so_q1": "这些问题中，文章回答得最不充分的是哪一个？",
        "so_q2": "你会如何用自己的话定义“{t}”？",
        "so_q3": "你需要看到什么，才会改变自己的看法？",
        "sm_title": "最强论证：为文章的主张做最有力的辩护",
        "sm_summary": "这一论证最有力的版本是：{s}它由文章最有力的证据和文章自己对批评的回应构成。",
        "sm_claim": "主张的最强表述",
        "sm_evidence": "最有力的证据",
        "sm_reply": "对明显反对意见的最佳回应",
        "sm_scope": "最适用的情形",
        "sm_scope_detail": "当“{a}”与“{b}”同时出现时，这一主张最有说服力，例如：{s}",
        "sm_q1": "针对这一最强版本，最好的反驳是什么？",
        "sm_q2": "如果证据只有现在一半有力，你还会接受关于“{t}”的主张吗？",
        "sm_q3": "公正的批评者会承认论证中的哪一部分？",
        "b_explain_label": "为什么“{t}”很重要？",
        "b_explain_prompt": "请解释这段话：{s}这里说的“{t}”是什么意思？它为什么对文章的论点重要？",
        "b_explain_label_clause": "为什么说“{t}”？",
        "b_challenge_label_clause": "“{t}”站得住吗？",
        "b_example_label_clause": "“{t}”有什么实例？",
        "b_connect_label_clause": "“{t}”与全文有何联系？",
        "b_deeper_label_clause": "深入追问：“{t}”",
        "b_challenge_label": "关于“{t}”的说法站得住吗？",
        "b_challenge_prompt": "请质疑这段话：{s}有哪些证据或反驳会削弱“{t}”这一说法？",
        "b_example_label": "能举一个“{t}”的例子吗？",
        "b_example_prompt": "请举一个现实中的具体例子，说明这段话中的“{t}”：{s}",
        "b_connect_label": "“{t}”和全文有什么联系？",
        "b_connect_prompt": "这段话与文章其他部分{extra}有什么联系？{s}",
        "b_connect_extra": "以及关于“{t}”的洞察",
        "b_deeper_label": "深入追问“{t}”",
        "b_deeper_prompt": "请深入分析：“{t}”的成因是什么？长期来看会带来什么？原文：{s}",
        "b_default_topic": "这段话",
        "i_restate": "简而言之，这段话谈的是{t}：{s}",
        "i_restate_plain": "简而言之，这段话说的是：{s}",
        "i_matters": "它在文中的分量在于，与另一处论述相呼应：{s}",
        "i_also": "文章还提到：{s}",
        "i_alone": "单独来看，这段话的重心在“{t}”上；结合上下文才能判断作者想把这一说法推到多远。",
        "i_terms": "值得把握的关键词是{t}。",
        "i_explain": "简单地说，作者希望读者明白“{t}”为什么重要，而不只是知道它存在。",
        "i_challenge": "持怀疑态度的读者可以追问：关于“{t}”的证据足够有力吗？最有力的反例是什么？",
        "i_example": "文中的一个具体例子是：{s}",
        "i_example_none": "为了更具体，可以想一想你亲身见过的“{t}”的实例。",
        "i_connect": "这与文章更大的论点相联系：{s}",
        "i_deeper": "再深入一步，真正的问题是：“{t}”由什么引起，长期来看又会带来什么？",
        "i_question": "关于你的问题（{q}）：文中最接近的回答是{s}",
        "i_question_none": "关于你的问题（{q}）：文章没有直接回答，任何答案都只能是你自己的推断。",
        "i_consider": "值得思考的问题是：如果“{t}”并不像看上去那么重要，这一论证还站得住吗？",
        "i_empty": "还没有选中的文本。选中一段文字即可获得洞察。值得思考的问题是：文章中哪一部分最让你意外？",
    },
}


_SENTENCE_ENDS = (".", "!", "?", "\u2026", "\u3002", "\uff01", "\uff1f")
_CLOSING = "\"'\u201d\u2019)\uff09\u300d\u300f"


class _Writer:
    """Fills the wording of one language."""

    def __init__(self, language: Language) -> None:
        self.language = language
        self.zh = language == "zh"
        self.words = _WORDING[language]
        self.quote_limit = 90 if self.zh else 220

    def __call__(self, key: str, **values: str) -> str:
        if "t" in values:  # {T}: the keyword starting a sentence
            values.setdefault("T", values["t"][:1].upper() + values["t"][1:])
        return self.words[key].format(**values)

    def quote(self, sentence: str, limit: int | None = None) -> str:
        """A sentence of the text, trimmed and in curly quotes (inner quotes made single)."""
        inner = trim_sentence(sentence, limit or self.quote_limit)
        if not inner.rstrip(_CLOSING).endswith(_SENTENCE_ENDS):
            inner += "\u3002" if self.zh else "."  # the quotation ends a sentence of ours
        inner = inner.replace("\u201c", "\u2018").replace("\u201d", "\u2019")
        inner = re.sub(r'"([^"]*)"', "\u2018\\1\u2019", inner).replace('"', "\u2019")
        return f"\u201c{inner}\u201d"

    def listing(self, items: list[str]) -> str:
        if self.zh:
            items = [f"\u201c{item}\u201d" for item in items]
        if len(items) <= 1:
            return "".join(items)
        return self.words["list_sep"].join(items[:-1]) + self.words["list_last"] + items[-1]

    def join(self, sentences: list[str]) -> str:
        return self.words["join"].join(s for s in sentences if s)


# ==========================================================================
# Cues for the meta analysis and the lenses


class _Quoted:
    """A quotation cue: what ``OPENING[^CLOSERS]{n,}[CLOSERS]|WORDS`` matches,
    found in time linear in the text. As a regular expression it is quadratic:
    every opening quote of a long unclosed run reads the rest of the run.
    ``opening`` matches the opening part and its first ``n`` characters; a
    closing quote anywhere after the first such match completes a quotation
    (the characters up to the first closing quote are not closing quotes)."""

    def __init__(self, opening: str, closers: str, words: str | None = None) -> None:
        self._opening = re.compile(opening)
        self._closers = closers
        self._words = re.compile(words) if words is not None else None

    def search(self, text: str) -> bool:
        found = self._opening.search(text)
        if found is not None and any(text.find(c, found.end()) >= 0 for c in self._closers):
            return True
        return self._words is not None and self._words.search(text) is not None


_CUES: dict[str, dict[str, re.Pattern[str] | _Quoted]] = {
    "en": {
        "opinion": re.compile(
            r"\b(should|must|ought to|needs? to|have to|has to|I believe|I think|we believe|in my view|I argue|"
            r"it is time|the answer is|is essential|is crucial|is vital|cannot afford|what has been missing|"
            r"arguments for|the (?:cheapest|best|only|real) \w+ is)\b",
            re.I,
        ),
        "assumption": re.compile(
            r"\b(because|since|clearly|obviously|of course|naturally|inevitably|given that|everyone knows|"
            r"it is clear|undoubtedly|surely|always|never)\b",
            re.I,
        ),
        "strong_assumption": re.compile(
            r"\b(clearly|obviously|of course|naturally|inevitably|everyone knows|it is clear|undoubtedly|surely)\b",
            re.I,
        ),
        "contrast": re.compile(
            r"\b(but|however|yet|although|though|whereas|instead|on the other hand|nevertheless|despite|critics)\b",
            re.I,
        ),
        "number": re.compile(
            r"\d|\b(half|twice|double|triple|a third|a quarter|dozens|hundreds|thousands|millions)\b", re.I
        ),
        "quote": _Quoted(r"[\"\u201c][^\"\u201d]{12}", "\"\u201d", r"\b(said|says|told|according to|wrote|put it)\b"),
        "list": re.compile(
            r"^(first|second|third|fourth|finally|firstly|secondly|lastly)\b|^\s*(?:[-*\u2022]|\d+[.)])\s", re.I
        ),
        "hedge": re.compile(r"\b(may|might|could|perhaps|possibly|likely|suggests?|appears?)\b", re.I),
        "first_person": re.compile(r"\b(I|we|our|us|my)\b"),
        "urgent": re.compile(r"\b(urgent|crisis|now|immediately|before it is too late|this year|cannot wait)\b", re.I),
        "causal": re.compile(
            r"\b(because|so that|leads? to|causes?|caused|results? in|therefore|means that|which means|drives?|"
            r"increases?|reduces?|raises?|lowers?|easing|rises?|depends on)\b",
            re.I,
        ),
        "fact": re.compile(r"\b(is|are|was|were|has|have|shows?|found|measured)\b", re.I),
        "evidence": re.compile(
            r"\b(shows?|showed|found|finds|study|studies|research|measured|measurements|data|survey|estimated|"
            r"according to|evidence|report|reports)\b",
            re.I,
        ),
        "objection": re.compile(
            r"\b(critics?|objections?|opponents?|sceptics?|skeptics?|some argue|admittedly|it is true that|"
            r"to be fair|problems are real|granted)\b",
            re.I,
        ),
    },
    "zh": {
        "opinion": re.compile(r"应该|应当|必须|我认为|我们认为|笔者认为|我相信|不应|务必|值得|关键在于|恰恰是|需要"),
        "assumption": re.compile(r"因为|由于|显然|当然|既然|毫无疑问|众所周知|必然|无疑|总是|从来|显而易见|换句话说"),
        "strong_assumption": re.compile(r"显然|当然|既然|毫无疑问|众所周知|必然|无疑|显而易见"),
        "contrast": re.compile(r"但是|然而|却|不过|虽然|尽管|而是|反而|相反|但"),
        # A run of numerals is tried from its first character only (the
        # lookbehind), and never given back (what follows it is no numeral):
        # linear, where a plain "[一二…]+成" rereads a long run from each character.
        "number": re.compile(
            r"\d|百分之|(?<![一二三四五六七八九十两])[一二三四五六七八九十两]++成"
            r"|(?<![一二三四五六七八九十两百千])[一二三四五六七八九十两百千]++(?:倍|万|亿|分钟|小时|秒|个百分点)"
            r"|(?<![二三四五六七八九十百千])[二三四五六七八九十百千]++[年次人字]"
        ),
        "quote": _Quoted(r"(?:指出|说|表示|写道|认为)[：:]?\u201c[^\u201d]{8}", "\u201d"),
        "list": re.compile(r"^(第[一二三四五六七八九十]|首先|其次|再次|最后)"),
        "hedge": re.compile(r"可能|或许|也许|似乎|大概|未必"),
        "first_person": re.compile(r"我们|我"),
        "urgent": re.compile(r"紧迫|危机|立刻|马上|刻不容缓|迫在眉睫|今晚|现在就"),
        "causal": re.compile(r"导致|因此|使得|所以|造成|带来|增加|减少|提高|降低|意味着|从而|就会|取决于|挤占"),
        "fact": re.compile(r"是|有|显示|表明|调查|研究|数据"),
        "evidence": re.compile(r"研究|调查|数据|显示|表明|发现|统计|根据|指出|报告"),
        "objection": re.compile(r"批评|反对|质疑|诚然|固然|不必|并非|不在于|有人认为|有人说"),
    },
}


def _is_question(sentence: str) -> bool:
    return sentence.rstrip("\"'\u201d\u2019)\uff09").endswith(("?", "\uff1f"))


class _Article:
    """A document plus the cue-tagged sentences the compositions draw on."""

    def __init__(self, blocks: dict[str, str]) -> None:
        self.raw = blocks.get("article", "")
        self.title = blocks.get("title", "")
        self.doc = Document(self.raw, self.title)
        language = self.doc.language if self.raw.strip() else detect_language(self.title)
        self.w = _Writer(language)
        self.cues = _CUES[language]
        self.body = self.doc.body
        self._cue_cache: dict[str, list[Sentence]] = {}

    @property
    def empty(self) -> bool:
        """No words at all (punctuation alone counts as empty)."""
        return not any(s.terms or re.search(r"[^\W\d_]", s.text) for s in self.body)

    def with_cue(self, cue: str) -> list[Sentence]:
        """Body sentences matching one of the :data:`_CUES`."""
        if cue not in self._cue_cache:
            pattern = self.cues[cue]
            self._cue_cache[cue] = [s for s in self.body if pattern.search(s.text)]
        return self._cue_cache[cue]

    def best(self, candidates: list[Sentence], exclude: list[Sentence] | None = None) -> Sentence | None:
        chosen = self.doc.pick(1, candidates, exclude or [])
        return chosen[0] if chosen else None

    def topics(self, count: int) -> list[str]:
        found = self.doc.keywords(count)
        for fallback in self.w("fallback_topics").split("|"):
            if len(found) >= min(3, count):
                break
            if fallback not in found:
                found.append(fallback)
        return found[:count]

    def claim(self) -> Sentence | None:
        opinions = [s for s in self.with_cue("opinion") if not _is_question(s.text)]
        return self.best(opinions) or self.best(self.body)

    def text_of(self, sentence: Sentence | None, limit: int | None = None) -> str:
        return self.w.quote(sentence.text, limit) if sentence else self.w("no_text")

    def sentence_keyword(self, sentence: Sentence, avoid: list[str]) -> str | None:
        """The document keyword that best represents one sentence, other than ``avoid``."""
        best, best_weight = None, 0.0
        for keyword in self.doc.keywords(12):
            keys = terms(keyword)
            if keyword in avoid or not keys or not all(k in sentence.terms for k in keys):
                continue
            weight = sum(self.doc.weight.get(k, 0.0) for k in keys)
            if weight > best_weight:
                best, best_weight = keyword, weight
        return best

    def evidence(self, count: int, exclude: list[Sentence]) -> list[Sentence]:
        """Sentences offering evidence: figures or quotations, those citing a
        study, a survey or a measurement first."""
        cues = self.cues
        pool = [s for s in self.body if cues["number"].search(s.text) or cues["quote"].search(s.text)]
        cited = [s for s in pool if cues["evidence"].search(s.text)]
        chosen = self.doc.pick(count, cited, exclude, in_order=False)
        chosen += self.doc.pick(count - len(chosen), pool, exclude + chosen, in_order=False)
        return chosen

    def objection(self, exclude: list[Sentence]) -> Sentence | None:
        """The sentence where the article meets an objection: one naming
        critics or conceding a point, else one turning on "but"."""
        conceding = [s for s in self.with_cue("objection") if not _is_question(s.text)]
        return self.best(conceding, exclude) or self.best(self.with_cue("contrast"), exclude)

    def assumptions(self, count: int, exclude: list[Sentence]) -> list[Sentence]:
        """Sentences taking something for granted ("clearly", "of course"
        first, then "because"), in document order."""
        strong = self.doc.pick(count, self.with_cue("strong_assumption"), exclude, in_order=False)
        weak = self.doc.pick(count - len(strong), self.with_cue("assumption"), exclude + strong, in_order=False)
        return sorted(strong + weak, key=lambda s: s.index)


# ==========================================================================
# Tasks


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _summary_and_points(article: _Article, max_points: int = 6) -> tuple[str, list[str]]:
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


def _reader_questions(article: _Article, topics: list[str]) -> list[str]:
    w = article.w
    questions = [w("q_evidence", t=topics[0]), w("q_relation", a=topics[1], b=topics[2])]
    own = [s for s in article.body if _is_question(s.text) and len(s.text) <= (60 if w.zh else 160)]
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


def _suggested_tags(article: _Article, existing: list[str], count: int = 5) -> list[str]:
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
    article = _Article(blocks)
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
    article = _Article(blocks)
    summary, key_points = _summary_and_points(article)
    return {"summary": summary, "key_points": key_points}


def _meta_analysis(blocks: dict[str, str]) -> dict[str, Any]:
    article = _Article(blocks)
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

    opinions = [s for s in article.with_cue("opinion") if not _is_question(s.text)]
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
    questions = [s for s in article.body if _is_question(s.text)]
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
    article = _Article(blocks)
    lens = _snake(blocks.get("lens", "")) or "argument_map"
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
    late = [s for s in article.body if s.paragraph >= doc.paragraph_count - 2 and not _is_question(s.text)]
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
            and not _is_question(s.text)
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
        lever = article.best([s for s in article.with_cue("opinion") if not _is_question(s.text)], causal)
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
    w = _Writer(detect_language(selection or insight or blocks.get("article", "") or blocks.get("question", "")))
    doc = Document(blocks.get("article", ""), blocks.get("title", ""))
    focus, clauses = _focus(selection or insight, doc, 3)
    if not focus:
        focus = [w("b_default_topic")]
    # A Chinese claim is challenged as a clause, not as a single word.
    challenge_clause = _passage_clauses(selection or insight, doc, 1) if w.zh and not clauses else []
    insight_focus = [k for k in _focus(insight, doc, 3)[0] if k not in focus] if selection else []

    order = ["deeper", "challenge", "connect"] if insight else ["explain", "example", "challenge"]
    intent = _snake(blocks.get("intent", ""))
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
    w = _Writer(detect_language(selection or question or blocks.get("article", "")))
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

    intent = _snake(blocks.get("intent", ""))
    if intent == "explain":
        sentences.append(w("i_explain", t=t0))
    elif intent == "challenge":
        sentences.append(w("i_challenge", t=t0))
    elif intent == "example":
        numbers = _CUES[w.language]["number"]
        cases = [
            s for s in doc.similar(focus_text, 8, exclude_text=selection) if numbers.search(s.text) and s not in quoted
        ]
        sentences.append(w("i_example", s=cite(cases[0])) if cases else w("i_example_none", t=t0))
    elif intent == "connect":
        claim = _Article(blocks).claim() if has_article else None
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


# ==========================================================================
# The HTTP side


_UNIT_RE = re.compile(
    "[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]|[^\\s\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]+\\s*|\\s+"
)
_CJK_UNIT_RE = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")


def stream_pieces(text: str, cjk_per_piece: int = 3) -> list[str]:
    """``text`` cut into stream deltas: a word (with its trailing space) at a
    time, or a few Chinese characters at a time. The pieces join to ``text``."""
    pieces: list[str] = []
    pending = ""
    for unit in _UNIT_RE.findall(text):
        if _CJK_UNIT_RE.fullmatch(unit):
            pending += unit
            if len(pending) >= cjk_per_piece:
                pieces.append(pending)
                pending = ""
            continue
        if pending:
            pieces.append(pending)
            pending = ""
        if unit.isspace() and pieces:
            pieces[-1] += unit
        else:
            pieces.append(unit)
    if pending:
        pieces.append(pending)
    return pieces


def _usage(body: dict[str, Any], content: str) -> dict[str, int]:
    messages = body.get("messages") or []
    prompt = sum(4 + estimate_tokens(_content_text(m.get("content"))) for m in messages if isinstance(m, dict)) + 3
    completion = estimate_tokens(content)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _response_id(raw: bytes) -> str:
    return "chatcmpl-offline-" + hashlib.sha256(raw).hexdigest()[:24]


def _json_response(status: int, payload: Any, request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(
        status,
        headers={"content-type": "application/json"},
        content=json.dumps(payload, ensure_ascii=False).encode(),
        request=request,
    )


def _error_payload(status: int, message: str, code: str) -> dict[str, Any]:
    kind = "invalid_request_error" if status == 400 else "not_found_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _error(status: int, message: str, code: str, request: httpx2.Request) -> httpx2.Response:
    return _json_response(status, _error_payload(status, message, code), request)


class _EventStream(httpx2.AsyncByteStream):
    def __init__(self, events: list[bytes], delay: float) -> None:
        self._events = events
        self._delay = delay

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for event in self._events:
            # Yield to the loop between chunks, as a network stream would.
            await asyncio.sleep(self._delay)
            yield event


def _model_card() -> dict[str, Any]:
    return {"id": OFFLINE_MODEL, "object": "model", "created": 0, "owned_by": "insightreader"}


class OfflineTransport(httpx2.AsyncBaseTransport):
    """An in-process OpenAI-compatible server backed by the offline model.

    ``chunk_delay`` (seconds) is slept before each streamed chunk, to make a
    stream take time in tests; the content never depends on it."""

    def __init__(self, *, chunk_delay: float = 0.0) -> None:
        self.chunk_delay = chunk_delay

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        raw = await request.aread()
        path = request.url.path.rstrip("/")
        if request.method == "GET" and path.endswith("/models"):
            return _json_response(200, {"object": "list", "data": [_model_card()]}, request)
        if request.method == "GET" and "/models/" in path:
            if path.rsplit("/", 1)[1] == OFFLINE_MODEL:
                return _json_response(200, _model_card(), request)
            return _error(404, f"The model {path.rsplit('/', 1)[1]!r} does not exist", "model_not_found", request)
        if request.method == "POST" and path.endswith("/chat/completions"):
            return await self._chat(raw, request)
        return _error(404, f"{request.method} {path} is not served by the offline model", "not_found", request)

    async def _chat(self, raw: bytes, request: httpx2.Request) -> httpx2.Response:
        # Pure computation over the whole request (up to seconds for a long
        # article), kept off the event loop the way a remote model would be.
        reply = await asyncio.to_thread(_chat_reply, raw)
        if isinstance(reply, _Events):
            return httpx2.Response(
                200,
                headers={"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"},
                stream=_EventStream(reply.events, self.chunk_delay),
                request=request,
            )
        status, payload = reply
        return _json_response(status, payload, request)


@dataclass(frozen=True)
class _Events:
    """The encoded events of a streamed answer."""

    events: list[bytes]


def _chat_reply(raw: bytes) -> tuple[int, Any] | _Events:
    """The answer to a ``chat/completions`` request body: a status and its
    JSON payload, or the events of a stream."""
    try:
        body = json.loads(raw)
    except ValueError:
        return 400, _error_payload(400, "the request body is not valid JSON", "invalid_json")
    if not isinstance(body, dict):
        return 400, _error_payload(400, "the request body must be a JSON object", "invalid_json")
    try:
        content = answer(body)
    except OfflineRequestError as exc:
        return 400, _error_payload(400, str(exc), exc.code)
    response_id = _response_id(raw)
    usage = _usage(body, content)
    if not body.get("stream"):
        return 200, {
            "id": response_id,
            "object": "chat.completion",
            "created": 0,
            "model": OFFLINE_MODEL,
            "system_fingerprint": "offline",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    deltas += [{"content": piece} for piece in stream_pieces(content)]

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": response_id,
            "object": "chat.completion.chunk",
            "created": 0,
            "model": OFFLINE_MODEL,
            "system_fingerprint": "offline",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            data["usage"] = None
        return data

    chunks = [chunk(delta, None) for delta in deltas] + [chunk({}, "stop")]
    if include_usage:
        chunks.append({**chunk({}, None), "choices": [], "usage": usage})
    events = [f"data: {json.dumps(c, ensure_ascii=False)}\n\n".encode() for c in chunks]
    events.append(b"data: [DONE]\n\n")
    return _Events(events)
