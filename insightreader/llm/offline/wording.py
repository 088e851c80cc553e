"""Wording: every sentence the offline model writes itself, in English and Chinese,
with the same keys."""

from __future__ import annotations

import re

from insightreader import languages
from insightreader.text import Language, trim_sentence

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


class Writer:
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


_LANGUAGE_NAMES_ZH = {"en": "英语", "zh": "中文", "ja": "日语", "ko": "韩语", "de": "德语", "fr": "法语", "es": "西班牙语"}


def translation_notice(written_in: Language, requested: str) -> str | None:
    """The sentence saying plainly that the answer is not in the ``requested``
    language (a BCP 47 tag) because the offline model cannot translate; None when
    the text is already in it. In the requested language when it is English or
    Chinese, else in English."""
    primary = requested.split("-")[0].lower()
    if primary == written_in:
        return None
    if primary == "zh":
        return f"（离线模型不会翻译：以下仍用原文的语言（{_LANGUAGE_NAMES_ZH[written_in]}）写成，而不是中文。）"
    written = languages.name(written_in)
    return f"(The offline model cannot translate: this is written in {written}, the text's own language, not in {languages.name(requested)}.)"
