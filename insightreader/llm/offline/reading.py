"""Reading an article for the meta analysis and the lenses: quotations, hedges,
claims and the other cues, found in time linear in the text."""

from __future__ import annotations

import re

from insightreader.text import Document, Sentence, detect_language, terms

from .wording import Writer


class Quoted:
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


CUES: dict[str, dict[str, re.Pattern[str] | Quoted]] = {
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
        "quote": Quoted(r"[\"\u201c][^\"\u201d]{12}", "\"\u201d", r"\b(said|says|told|according to|wrote|put it)\b"),
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
        "quote": Quoted(r"(?:指出|说|表示|写道|认为)[：:]?\u201c[^\u201d]{8}", "\u201d"),
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


def is_question(sentence: str) -> bool:
    return sentence.rstrip("\"'\u201d\u2019)\uff09").endswith(("?", "\uff1f"))


class ArticleReading:
    """A document plus the cue-tagged sentences the compositions draw on."""

    def __init__(self, blocks: dict[str, str]) -> None:
        self.raw = blocks.get("article", "")
        self.title = blocks.get("title", "")
        self.doc = Document(self.raw, self.title)
        language = self.doc.language if self.raw.strip() else detect_language(self.title)
        self.w = Writer(language)
        self.cues = CUES[language]
        self.body = self.doc.body
        self._cue_cache: dict[str, list[Sentence]] = {}

    @property
    def empty(self) -> bool:
        """No words at all (punctuation alone counts as empty)."""
        return not any(s.terms or re.search(r"[^\W\d_]", s.text) for s in self.body)

    def with_cue(self, cue: str) -> list[Sentence]:
        """Body sentences matching one of the :data:`CUES`."""
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
        opinions = [s for s in self.with_cue("opinion") if not is_question(s.text)]
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
        conceding = [s for s in self.with_cue("objection") if not is_question(s.text)]
        return self.best(conceding, exclude) or self.best(self.with_cue("contrast"), exclude)

    def assumptions(self, count: int, exclude: list[Sentence]) -> list[Sentence]:
        """Sentences taking something for granted ("clearly", "of course"
        first, then "because"), in document order."""
        strong = self.doc.pick(count, self.with_cue("strong_assumption"), exclude, in_order=False)
        weak = self.doc.pick(count - len(strong), self.with_cue("assumption"), exclude + strong, in_order=False)
        return sorted(strong + weak, key=lambda s: s.index)
