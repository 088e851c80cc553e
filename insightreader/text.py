"""Plain-text utilities: language detection, token estimation, sentence
splitting and keyword statistics, for English and Chinese.

Stdlib only and fully deterministic: the same input gives the same output in
every process (nothing depends on set or hash order; every ranking breaks
ties by position). The offline model is built on :class:`Document`; the
prompt code can use :func:`estimate_tokens` and :func:`split_sentences` to
size and chunk long articles.

Every function is linear in its input (an article can be 2 MiB of hostile
text): no regular expression that can backtrack over a run more than once,
no rescanning of a growing slice. A regular-expression or string call holds
the GIL for as long as it runs, so callers that move this work to a worker
thread still stall the event loop for the length of the longest single call:
whole-text scans therefore work on slices of at most :data:`_SLICE`
characters, and no sentence is longer than :data:`MAX_SENTENCE_CHARS`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from typing import Literal

Language = Literal["en", "zh"]

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef"
# Han, kana, hangul, CJK punctuation and full-width forms: one token each.
_CJK = _HAN + "\u3040-\u30ff\uac00-\ud7af\u3000-\u303f\uff00-\uffef"
_HAN_RE = re.compile(f"[{_HAN}]")
_CJK_RE = re.compile(f"[{_CJK}]")
_HAN_RUN_RE = re.compile(f"[{_HAN}]+")
_LATIN = "A-Za-z\u00c0-\u024f"
_WORD_RE = re.compile(f"[{_LATIN}]+(?:[-'\u2019][{_LATIN}]+)*")
_NUMBER_RE = re.compile(r"\d")
_SPACE_RE = re.compile(r"\s+")
_NOT_SPACE_RE = re.compile(r"\S")
_NOT_HAN_RE = re.compile(f"[^{_HAN}]")
# Counting what is left when Han (or CJK) characters are taken out goes run by
# run: several times faster on Chinese text than one substitution per character.
_NOT_HAN_RUN_RE = re.compile(f"[^{_HAN}]+")
_NOT_CJK_RUN_RE = re.compile(f"[^{_CJK}]+")

#: Characters given to one regular-expression call at most, when scanning a whole text.
_SLICE = 1 << 13
#: The longest sentence: a longer stretch without a sentence end is cut at spaces.
MAX_SENTENCE_CHARS = 2000


def _slices(text: str) -> Iterator[str]:
    """``text`` in consecutive pieces of at most :data:`_SLICE` characters, each
    cut just after a space or a line break when there is one in its second half,
    so that words do not straddle two pieces (only a longer word is cut)."""
    n = len(text)
    start = 0
    while start < n:
        end = start + _SLICE
        if end < n:
            cut = max(text.rfind(" ", start + _SLICE // 2, end), text.rfind("\n", start + _SLICE // 2, end))
            if cut >= 0:
                end = cut + 1
        yield text[start:end]
        start = end


def _search(pattern: re.Pattern[str], text: str, pos: int) -> int:
    """Where the single-character ``pattern`` first occurs in ``text`` from
    ``pos`` on (-1: nowhere), searched :data:`_SLICE` characters at a time."""
    n = len(text)
    while pos < n:
        end = min(n, pos + _SLICE)
        found = pattern.search(text, pos, end)
        if found is not None:
            return found.start()
        pos = end
    return -1


# --------------------------------------------------------------------------
# Stop words. Small on purpose: function words plus the vaguest content
# words, which never make a good keyword.

STOP_WORDS_EN = frozenset(
    """
    a about above across after again against all almost along already also although always am among an and
    another any anyone anything are around as at away back be became because become becomes been before
    being below between beyond both but by can cannot could did do does doing done down during each either
    else enough even ever every everyone everything few for from further get gets getting give given go goes
    going got had has have having he her here hers herself him himself his how however i if in into is it its
    itself just keep kind least less let like likely made make makes making many may maybe me might mine more
    most mostly much must my myself near need needs neither never new next no nobody none nor not nothing now
    of off often on once one ones only onto or other others otherwise our ours ourselves out over own per
    perhaps put quite rather really said same say says see seem seems seen several shall she should since so
    some someone something sometimes still such take taken than that the their theirs them themselves then
    there therefore these they thing things this those though through thus till to together too toward
    towards under unless until up upon us use used uses using very via was way ways we well were what whatever
    when where whether which while who whole whom whose why will with within without would yes yet you your
    yours yourself yourselves
    also lot lots fact first second third last year years time times day days people person part point
    percent cent instead whose across actually already around indeed simply
    mr mrs ms dr st etc eg ie vs
    one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen
    eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand million billion
    fourth fifth sixth seventh eighth ninth tenth dozen dozens hundreds thousands millions
    follow follows followed tend tends tended show shows showed shown help helps helped include includes
    included remain remains remained allow allows allowed provide provides provided require requires required
    bring brings brought begin begins began start starts started stop stops stopped continue continues
    continued happen happens happened mean means meant want wants wanted try tries tried know knows knew known
    think thinks thought feel feels felt look looks looked find finds found tell tells told ask asks asked call
    calls called turn turns turned seem seemed appear appears appeared lead leads led put puts
    come comes came went gone keep kept let lets become becomes became
    """.split()
)

# Multi-character Chinese function and filler words.
STOP_WORDS_ZH = frozenset(
    """
    我们 你们 他们 她们 它们 咱们 自己 大家 人们 这个 那个 这些 那些 这样 那样 这种 那种 一种 一个 一些 一样 一直 一定
    一起 一方面 另一方面 没有 可以 可能 因为 所以 但是 如果 虽然 然而 而且 并且 以及 或者 还是 已经 就是 只是 不是 还有
    什么 怎么 怎样 为什么 如何 为何 非常 其实 需要 应该 必须 认为 觉得 进行 通过 成为 时候 之后 之前 以后 以前 目前 现在
    今天 同时 其中 以上 以下 仍然 每个 任何 所有 许多 很多 更多 不会 不能 能够 甚至 并不 而是 只有 只要 由于 因此 于是
    例如 比如 包括 关于 对于 根据 各种 之间 这里 那里 哪里 这么 那么 多少 几乎 比较 相当 特别 越来越 不仅 而已 也许
    或许 当然 显然 总之 不过 然后 接着 最后 首先 其次 第一 第二 第三 这是 那是 就会 也是 都是 还会 也会 可是 即使 尽管
    无论 不管 之所以 看来 看到 知道 发现 开始 出现 带来 得到 来说 来看 方面 问题 事情 东西 情况 地方 时间 意思
    """.split()
)

# Characters that never start or end a Chinese keyword.
_ZH_EDGE_STOP = frozenset(
    "的了着是在和与及也都就而或被把这那个们之其于以为对从到让给向很更最还又再才已将要可一不有所如若但并且即吗呢吧啊呀么哦您我你他她它每些该此"
)
# Particles that never appear inside one.
_ZH_INNER_STOP = frozenset("的吗呢吧啊呀哦")

_ABBREVIATIONS = frozenset(
    """
    mr mrs ms dr prof sr jr st mt vs etc e.g i.e eg ie cf al inc ltd co corp dept est approx fig no nos vol
    jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k u.n a.m p.m ph.d
    """.split()
)


# --------------------------------------------------------------------------
# Language and size


def _without_cjk(piece: str) -> str:
    return piece if piece.isascii() else "".join(_NOT_CJK_RUN_RE.findall(piece))


def _count_han(piece: str) -> int:
    return len(piece) - sum(map(len, _NOT_HAN_RUN_RE.findall(piece)))


def count_cjk(text: str) -> int:
    """Characters counted as one token each (Han, kana, hangul, CJK punctuation)."""
    return sum(len(piece) - len(_without_cjk(piece)) for piece in _slices(text))


def has_cjk(text: str) -> bool:
    """Whether ``text`` holds any Chinese (Han) character."""
    return any(_HAN_RE.search(piece) is not None for piece in _slices(text) if not piece.isascii())


def detect_language(text: str) -> Language:
    """``"zh"`` when Chinese characters outnumber Latin words, else ``"en"``."""
    han = sum(_count_han(piece) for piece in _slices(text) if not piece.isascii())
    if han == 0:
        return "en"
    return "zh" if han >= sum(len(_WORD_RE.findall(piece)) for piece in _slices(text)) else "en"


def estimate_tokens(text: str) -> int:
    """Rough token count: one per CJK character, one per 4 other characters
    (runs of whitespace count as one character, leading and trailing ones as none)."""
    cjk = chars = words = 0
    in_word = False  # whether the text kept so far ends inside a word
    for piece in _slices(text):
        kept = _without_cjk(piece)
        cjk += len(piece) - len(kept)
        if not kept:
            continue
        parts = kept.split()
        chars += sum(map(len, parts))
        words += len(parts)
        if parts and in_word and not kept[0].isspace():
            words -= 1  # the word goes on from the previous piece
        in_word = not kept[-1].isspace()
    return cjk + math.ceil((chars + max(0, words - 1)) / 4)


def reading_time_minutes(text: str) -> int:
    """About 230 English words or 400 Chinese characters a minute; at least 1."""
    han = latin = 0
    for piece in _slices(text):
        if piece.isascii():
            latin += len(_WORD_RE.findall(piece))
            continue
        rest = _NOT_HAN_RUN_RE.findall(piece)
        han += len(piece) - sum(map(len, rest))
        latin += len(_WORD_RE.findall(" ".join(rest)))
    return max(1, math.ceil(han / 400 + latin / 230))


# --------------------------------------------------------------------------
# Sentences

_CLOSERS = "\"'\u201d\u2019)]}\u300d\u300f\uff09\u300b\u3011"
_OPENERS = "\"'\u201c\u2018([{\u300c\u300e\uff08\u300a\u3010"
_CJK_STOPS = "\u3002\uff01\uff1f\u2026"  # 。！？…
_LATIN_STOPS = ".!?"
_STOPS = _CJK_STOPS + _LATIN_STOPS
_STOP_RE = re.compile(f"[{re.escape(_STOPS)}]")
_BULLET_RE = re.compile(
    r"^\s*(?:[-*\u2022\u00b7]|\d{1,2}[.)\u3001]|[\uff08(]?[一二三四五六七八九十]+[\u3001.)\uff09])\s*"
)
#: Characters of a line the list-item check reads (a marker is a few characters long).
_BULLET_HEAD = 64
_ABBREVIATION_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.")


def _is_bullet(line: str) -> bool:
    return _BULLET_RE.match(line[:_BULLET_HEAD]) is not None


def _is_abbreviation(block: str, start: int, end: int) -> bool:
    """Whether ``block[start:end]`` (the text before a '.') ends with an
    abbreviation or an initial. Reads back over the last word only: callers
    ask about positions after a space, so each character is read once."""
    k = end
    while k > start and block[k - 1] in _ABBREVIATION_CHARS:
        k -= 1
    word = block[k:end].lstrip(".")
    if not word:
        return False
    if len(word) == 1 and word.isupper():  # an initial: "J. K. Rowling"
        return True
    return word.lower().rstrip(".") in _ABBREVIATIONS


def _capped(sentence: str) -> Iterator[str]:
    """``sentence``, or when it is longer than :data:`MAX_SENTENCE_CHARS`
    (a list without punctuation, a very long word), pieces of at most that
    length, cut at a space when there is one in the second half."""
    if len(sentence) <= MAX_SENTENCE_CHARS:
        yield sentence
        return
    n = len(sentence)
    pos = _search(_NOT_SPACE_RE, sentence, 0)
    while pos >= 0:
        end = pos + MAX_SENTENCE_CHARS
        if end >= n:
            yield sentence[pos:].rstrip()
            return
        cut = sentence.rfind(" ", pos + MAX_SENTENCE_CHARS // 2, end + 1)
        end = cut if cut >= 0 else end
        yield sentence[pos:end].rstrip()
        pos = _search(_NOT_SPACE_RE, sentence, end)


def _split_block(block: str) -> list[str]:
    out: list[str] = []

    def emit(piece: str) -> None:
        piece = piece.strip()
        if piece:
            out.extend(_capped(piece))

    start = 0
    n = len(block)
    i = _search(_STOP_RE, block, 0)
    while i >= 0:
        ch = block[i]
        j = i + 1
        while j < n and block[j] in _STOPS:
            j += 1
        while j < n and block[j] in _CLOSERS:
            j += 1
        if j >= n:
            break
        cjk_stop = ch in _CJK_STOPS or any(c in _CJK_STOPS for c in block[i:j])
        nxt = block[j]
        if cjk_stop:
            split_here = True
        elif nxt.isspace():
            k = _search(_NOT_SPACE_RE, block, j)
            following = block[k] if k >= 0 else ""
            split_here = not (
                (ch == "." and j == i + 1 and _is_abbreviation(block, start, i))
                or following.islower()
                or following in ",;:"
            )
        else:
            # "！" written as "!" in Chinese text: the next character is Han.
            split_here = bool(_HAN_RE.match(nxt)) or nxt in _OPENERS
        if split_here:
            emit(block[start:j])
            start = j
        i = _search(_STOP_RE, block, j)
    emit(block[start:])
    return out


def _lines(text: str) -> Iterator[str]:
    """``text.split("\\n")``, produced :data:`_SLICE` characters at a time."""
    n = len(text)
    start = 0
    while True:
        end = start + _SLICE
        if end >= n:
            yield from text[start:].split("\n")
            return
        cut = text.rfind("\n", start, end)
        if cut < 0:
            cut = text.find("\n", end)
            if cut < 0:
                yield text[start:]
                return
        lines = text[start:cut].split("\n")
        yield from lines
        start = cut + 1


def split_paragraphs(text: str) -> list[str]:
    """Paragraphs of ``text``: blank-line separated; hard-wrapped lines are joined,
    while headings, list items and lines ending a sentence keep their break."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    paragraphs: list[str] = []
    parts: list[str] = []  # the paragraph being joined: its lines and the separators
    head = ""  # its first characters, for the list-item check
    length = 0
    for raw in _lines(text):
        line = raw.strip()
        if not line:  # a blank line ends a paragraph
            if parts:
                paragraphs.append("".join(parts))
                parts = []
            continue
        if parts:
            prev_end = parts[-1][-1]
            ends_sentence = prev_end in _STOPS or prev_end in _CLOSERS + ":\uff1a"
            if not (ends_sentence or _is_bullet(line) or _is_bullet(head) or length < 30):
                separator = "" if _HAN_RE.match(prev_end) and _HAN_RE.match(line[0]) else " "
                if len(head) < _BULLET_HEAD:
                    head = (head + separator + line)[:_BULLET_HEAD]
                parts += [separator, line]
                length += len(separator) + len(line)
                continue
            paragraphs.append("".join(parts))
        parts, head, length = [line], line[:_BULLET_HEAD], len(line)
    if parts:
        paragraphs.append("".join(parts))
    return paragraphs


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` in order, for English and Chinese.

    Splits after ``. ! ? 。 ！ ？ …`` (and any closing quotes or brackets),
    not after abbreviations, initials or decimals, nor before a lower-case
    continuation; line breaks between paragraphs, headings and list items
    always end a sentence."""
    sentences: list[str] = []
    for paragraph in split_paragraphs(text):
        sentences.extend(_split_block(paragraph))
    return sentences


def trim_sentence(sentence: str, limit: int) -> str:
    """``sentence`` cut to at most ``limit`` characters at a clause or word
    boundary, ending with an ellipsis when cut."""
    sentence = sentence.strip()
    if len(sentence) <= limit:
        return sentence
    head = sentence[: limit - 1]
    cut = max(head.rfind(mark) for mark in (",", ";", ":", "\uff0c", "\uff1b", "\uff1a", "\u3001", " \u2014"))
    if cut < limit // 2:
        cut = head.rfind(" ")
        if cut < limit // 2:
            cut = len(head)
    return head[:cut].rstrip(" ,;:\uff0c\uff1b\uff1a\u3001\u2014-") + "\u2026"


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, cut at a word boundary to at most ``limit`` characters."""
    text = _SPACE_RE.sub(" ", text).strip()
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    space = head.rfind(" ")
    cut_inside_word = text[limit - 1] != " " and not _HAN_RE.match(head[-1])
    if cut_inside_word and space >= limit // 2:
        head = head[:space]
    return head.rstrip(" ,;:\uff0c\uff1b\uff1a\u3001") + "\u2026"


# --------------------------------------------------------------------------
# Terms


def _stem(word: str) -> str:
    """A light English stemmer: enough to match plurals with singulars."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is", "ous")):
        return word[:-1]
    return word


def _clean_word(surface: str) -> str:
    word = surface.lower().replace("\u2019", "'")
    if word.endswith("'s"):
        word = word[:-2]
    return word


def _is_content_word(word: str, surface: str) -> bool:
    if word in STOP_WORDS_EN:
        return False
    return len(word) >= 3 or (len(surface) >= 2 and surface.isupper())


@lru_cache(maxsize=65536)
def _zh_ok(gram: str) -> bool:
    """Whether a run of Han characters can be (part of) a keyword."""
    if gram[0] in _ZH_EDGE_STOP or gram[-1] in _ZH_EDGE_STOP:
        return False
    if any(c in _ZH_INNER_STOP for c in gram):
        return False
    size = len(gram)
    return not any(gram[i : i + n] in STOP_WORDS_ZH for n in range(2, size + 1) for i in range(size - n + 1))


def _zh_grams(run: str, n: int) -> list[str]:
    return [run[i : i + n] for i in range(len(run) - n + 1) if _zh_ok(run[i : i + n])]


@lru_cache(maxsize=65536)
def _word_info(surface: str) -> tuple[str, str, bool]:
    """(lower-case word, stem, is a content word) for one written word."""
    word = _clean_word(surface)
    return word, _stem(word), _is_content_word(word, surface)


@dataclass(frozen=True, slots=True)
class _Token:
    key: str  # the stem, lower case
    surface: str
    start: int
    end: int
    word: str  # lower case, without a possessive 's
    content: bool  # not a stop word


@lru_cache(maxsize=2048)
def _latin_tokens(text: str) -> tuple[_Token, ...]:
    tokens = []
    for match in _WORD_RE.finditer(text):
        surface = match.group(0)
        word, key, content = _word_info(surface)
        tokens.append(_Token(key, surface, match.start(), match.end(), word, content))
    return tuple(tokens)


def terms(text: str) -> list[str]:
    """Content-term keys of ``text`` in order, repeats kept: stemmed English
    content words and Chinese character bigrams (stop words dropped)."""
    out: list[str] = []
    for token in _latin_tokens(text):
        if token.content:
            out.append(token.key)
    for run in _HAN_RUN_RE.findall(text):
        out.extend(_zh_grams(run, 2))
    return out


# --------------------------------------------------------------------------
# Documents


@dataclass(frozen=True)
class Sentence:
    """One sentence of a :class:`Document`, with what ranking needs."""

    index: int  #: position in the document
    text: str
    paragraph: int  #: index of its paragraph
    first_in_paragraph: bool
    heading: bool  #: a short line without final punctuation
    terms: tuple[str, ...]  #: distinct term keys, in first-seen order
    length: int  #: words (English) or characters (Chinese)


def _jaccard(a: tuple[str, ...], b: tuple[str, ...]) -> float:
    sa, sb = set(a), set(b)
    if not sa or not sb:
        return 0.0
    return len(sa & sb) / len(sa | sb)


_DANGLING_EN = re.compile(
    r"^(?:but|and|so|or|this|that|these|those|it|they|he|she|such|however|yet|also|then|thus|still)\b", re.I
)
_DANGLING_ZH = re.compile(r"^(?:但|而|这|那|它|他们|她们|此|然而|因此|所以|于是|不过|同时|可是)")


class Document:
    """An article analysed for extractive work: sentences, term weights,
    sentence ranking, keywords, and similarity to other text."""

    def __init__(self, text: str, title: str = "") -> None:
        self.text = text
        self.title = title.strip()
        self.language: Language = detect_language(text if text.strip() else self.title)
        self.zh = self.language == "zh"
        sentences: list[Sentence] = []
        all_terms: list[list[str]] = []
        for p_index, paragraph in enumerate(split_paragraphs(text)):
            for s_index, sentence in enumerate(_split_block(paragraph)):
                heading = (
                    s_index == 0
                    and sentence == paragraph
                    and sentence[-1] not in _CJK_STOPS + _LATIN_STOPS + _CLOSERS + ":\uff1a"
                    and len(sentence) < (40 if has_cjk(sentence) else 90)
                )
                found = terms(sentence)
                all_terms.append(found)
                keys = tuple(dict.fromkeys(found))
                length = len(_HAN_RE.findall(sentence)) + len(_WORD_RE.findall(sentence))
                sentences.append(Sentence(len(sentences), sentence, p_index, s_index == 0, heading, keys, length))
        if sentences and all(s.heading for s in sentences):
            # Only short unpunctuated lines: they are the text, not headings.
            sentences = [replace(s, heading=False) for s in sentences]
        self.sentences = sentences
        self.paragraph_count = 1 + max((s.paragraph for s in sentences), default=-1)

        tf: Counter[str] = Counter()
        df: Counter[str] = Counter()
        for s, found in zip(sentences, all_terms, strict=True):
            tf.update(found)
            df.update(s.terms)
        self.tf = tf
        n = max(1, len(sentences))
        self.idf = {t: math.log(1.0 + n / df[t]) for t in df}
        title_terms = set(terms(self.title))
        self.weight = {t: tf[t] * self.idf[t] * (1.5 if t in title_terms else 1.0) for t in tf}
        self._scores = [self._score(s) for s in sentences]
        self._keyword_cache: dict[int, list[str]] = {}

    # -- ranking -----------------------------------------------------------

    def _score(self, s: Sentence) -> float:
        if s.heading or not s.terms:
            return 0.0
        score = sum(self.weight[t] for t in s.terms) / math.sqrt(len(s.terms))
        if s.index == 0 or (s.paragraph == 0 and s.first_in_paragraph):
            score *= 1.25
        elif s.first_in_paragraph:
            score *= 1.1
        if s.paragraph == self.paragraph_count - 1:
            score *= 1.05
        short, long = (12, 110) if self.zh else (7, 50)
        if s.length < short:
            score *= 0.4
        elif s.length > long:
            score *= 0.8
        if s.text.rstrip(_CLOSERS).endswith(("?", "\uff1f")):
            score *= 0.5
        if (_DANGLING_ZH if self.zh else _DANGLING_EN).match(s.text.lstrip(_OPENERS)):
            score *= 0.8
        return score

    def score(self, sentence: Sentence) -> float:
        return self._scores[sentence.index]

    @property
    def body(self) -> list[Sentence]:
        """Sentences that are not headings."""
        return [s for s in self.sentences if not s.heading]

    def ranked(self) -> list[Sentence]:
        """Body sentences, best first (ties: earlier first)."""
        return sorted(self.body, key=lambda s: (-self._scores[s.index], s.index))

    def pick(
        self,
        count: int,
        candidates: list[Sentence] | None = None,
        exclude: tuple[Sentence, ...] | list[Sentence] = (),
        in_order: bool = True,
        ranked: bool = False,
    ) -> list[Sentence]:
        """Up to ``count`` of the best ``candidates`` (default: all body
        sentences; taken as given, best first, when ``ranked``), skipping
        near-duplicates of each other and of ``exclude``; in document order
        when ``in_order``."""
        pool = candidates if candidates is not None else self.body
        if not ranked:
            pool = sorted(pool, key=lambda s: (-self._scores[s.index], s.index))
        chosen: list[Sentence] = []
        taken = {s.index for s in exclude}
        for s in pool:
            if len(chosen) >= count:
                break
            if s.index in taken:
                continue
            if any(_jaccard(s.terms, other.terms) >= 0.6 or s.text == other.text for other in (*chosen, *exclude)):
                continue
            chosen.append(s)
            taken.add(s.index)
        return sorted(chosen, key=lambda s: s.index) if in_order else chosen

    # -- similarity ----------------------------------------------------------

    def _term_weight(self, keys: set[str]) -> float:
        """The summed idf of ``keys`` (terms unknown here weigh as a term seen once)."""
        default = math.log(1.0 + max(1, len(self.sentences)))
        return sum(self.idf.get(t, default) for t in keys)

    def _similarity(self, sa: set[str], weight_a: float, b: tuple[str, ...]) -> float:
        """idf-weighted overlap (0…1) of the terms ``sa`` (summed weight ``weight_a``,
        worked out once by the caller) and the terms ``b``."""
        sb = set(b)
        if not sa or not sb:
            return 0.0
        norm = math.sqrt(weight_a * self._term_weight(sb))
        return self._term_weight(sa & sb) / norm if norm else 0.0

    def similar(self, text: str, count: int, exclude_text: str = "") -> list[Sentence]:
        """Body sentences most similar to ``text`` (best first), leaving out
        those contained in ``exclude_text`` (e.g. the selection itself).

        Keyword overlap decides, among full sentences; a sentence's own rank
        in the document breaks near ties."""
        wanted = set(terms(text))
        wanted_weight = self._term_weight(wanted)
        excluded = _SPACE_RE.sub(" ", exclude_text)
        top = max(self._scores, default=0.0) or 1.0
        minimum = 12 if self.zh else 7
        full = [s for s in self.body if s.length >= minimum] or self.body  # fragments only as a last resort
        scored = []
        for s in full:
            if excluded and _SPACE_RE.sub(" ", s.text) in excluded:
                continue
            sim = self._similarity(wanted, wanted_weight, s.terms)
            if sim > 0:
                scored.append((sim * (0.5 + 0.5 * self._scores[s.index] / top), s))
        scored.sort(key=lambda pair: (-pair[0], pair[1].index))
        return self.pick(count, [s for _, s in scored], in_order=False, ranked=True)

    # -- keywords ----------------------------------------------------------

    def keywords(self, count: int) -> list[str]:
        """Up to ``count`` keywords or keyphrases, most important first."""
        if count not in self._keyword_cache:
            if self.zh:
                found = self._keywords_zh(count)
                # Latin terms inside Chinese text ("AI", "TikTok") count too.
                found += [k for k in self._keywords_en(count) if k not in found]
            else:
                found = self._keywords_en(count)
            self._keyword_cache[count] = found[:count]
        return list(self._keyword_cache[count])

    def passage_keywords(self, passage: str, count: int) -> list[str]:
        """Up to ``count`` keywords of a short ``passage`` (a selection), read
        against this document: its keywords that occur in the passage, and
        (English) noun-phrase-like runs of the passage, ranked by their weight
        in this document. Chinese passages get only document keywords: without
        statistics, a Chinese passage cannot be cut into words reliably."""
        passage_keys = [t.key for t in _latin_tokens(passage)]
        candidates: list[tuple[float, int, tuple[str, ...], str]] = []
        # A document of a few sentences (the passage itself) has no reliable
        # keywords of its own; its word runs are judged directly.
        own_keywords = self.keywords(40) if len(self.sentences) > 3 else []
        lowered = passage.lower()
        for rank, keyword in enumerate(own_keywords):
            if has_cjk(keyword):
                if keyword in passage:
                    keys = tuple(dict.fromkeys(terms(keyword)))
                    candidates.append((1000.0 - rank, rank, keys, keyword))
                continue
            keys = tuple(t.key for t in _latin_tokens(keyword))
            if keys and _contains_run(passage_keys, keys):
                candidates.append((self._key_weight(keys), lowered.find(keyword.lower()), keys, keyword))
        candidates += self._passage_phrases(passage)
        candidates.sort(key=lambda item: (-item[0], item[1]))
        found: list[str] = []
        used: set[str] = set()
        for _, _, keys, display in candidates:
            if len(found) >= count:
                break
            if display not in found and not used.intersection(keys):
                found.append(display)
                used.update(keys)
        return found

    def _key_weight(self, keys: tuple[str, ...]) -> float:
        """Weight of a passage keyword: frequency damped, so that a term used
        all through the document does not outrank what the passage is about."""
        return sum(self.idf[k] * (1.0 + math.log(self.tf[k])) for k in keys if k in self.idf)

    def _passage_phrases(self, passage: str) -> list[tuple[float, int, tuple[str, ...], str]]:
        """Candidate English keyphrases of a passage: (score, position, stems, text)."""
        scored: list[tuple[float, int, tuple[str, ...], str]] = []
        tokens = _latin_tokens(passage)
        for i, token in enumerate(tokens):
            if not token.content:
                continue
            before = passage[tokens[i - 1].end : token.start] if i else passage[: token.start]
            prev = tokens[i - 1].word if i else ""
            # A noun phrase starts after punctuation, "the"/"of"/..., or a verb
            # in the past tense ("raised interest rates").
            opens = i == 0 or bool(before.strip(" -")) or prev in _PHRASE_OPENERS or prev.endswith("ed")
            after_number = bool(re.search(r"\d\s*$", before))
            spans = [(token,)]
            if i + 1 < len(tokens):
                nxt = tokens[i + 1]
                if passage[token.end : nxt.start] in (" ", "-") and nxt.content:
                    spans.append((token, nxt))
            for span in spans:
                keys = tuple(t.key for t in span)
                # Without weights here, guess: longer words, phrase starts
                # after "the"/"of"/punctuation, no "-ing"/"-ed"/"-ly" words.
                guess = sum(len(t.surface) for t in span) / 4 + (3 if opens else 0) + (2 if len(span) > 1 else 0)
                if any(t.word.endswith(("ing", "ed", "ly")) for t in span):
                    guess -= 4
                if after_number:  # a unit: "0.25 percentage points"
                    guess -= 3
                score = self._key_weight(keys) + guess / 100
                display = " ".join(self._cased(t.surface) for t in span)
                scored.append((score, token.start, keys, display))
        return scored

    @cached_property
    def _plain_forms(self) -> dict[str, str]:
        """How each English stem is written: the commonest form away from the
        start of a sentence (lower case when seen only there)."""
        return {key: seen.most_common(1)[0][0] for key, seen in self._surfaces.items()}

    def _cased(self, surface: str) -> str:
        """A word as written in running text: lower case unless this document
        (or the word itself, when unknown here) shows a name or an acronym."""
        surface = surface.replace("\u2019", "'")
        if surface.lower().endswith("'s"):
            surface = surface[:-2]
        known = self._plain_forms.get(_stem(surface.lower()))
        if known is not None:
            return surface if known != known.lower() else surface.lower()
        return surface if surface.isupper() and len(surface) > 1 else surface.lower()

    @cached_property
    def _forms(self) -> dict[str, str]:
        """Like :attr:`_plain_forms`, but in the plural when the text also uses
        the plural fairly often (the topic "cities", not "city")."""
        forms = dict(self._plain_forms)
        for key, seen in self._surfaces.items():
            ranked = seen.most_common()
            form, top = ranked[0]
            if form.lower() != key:
                continue
            for other, n in ranked[1:]:
                if other.lower() != key and other.lower().endswith("s") and n * 3 >= top:
                    forms[key] = other
                    break
        return forms

    @cached_property
    def _surfaces(self) -> dict[str, Counter[str]]:
        inner: dict[str, Counter[str]] = {}
        first: dict[str, Counter[str]] = {}
        for s in self.sentences:
            for position, token in enumerate(_latin_tokens(s.text)):
                surface = token.surface.replace("\u2019", "'")
                if surface.lower().endswith("'s"):
                    surface = surface[:-2]
                bucket = first if position == 0 else inner
                bucket.setdefault(token.key, Counter())[surface] += 1
        surfaces: dict[str, Counter[str]] = {}
        for key in {**first, **inner}:
            surfaces[key] = inner.get(key) or Counter(
                {f if f.isupper() and len(f) > 1 else f.lower(): n for f, n in first[key].items()}
            )
        return surfaces

    @cached_property
    def _phrases(self) -> tuple[Counter[tuple[str, ...]], dict[tuple[str, ...], Counter[tuple[str, ...]]]]:
        """Runs of 2-3 adjacent English content words (title included):
        counts by stem tuple, and how each is written."""
        counts: Counter[tuple[str, ...]] = Counter()
        surfaces: dict[tuple[str, ...], Counter[tuple[str, ...]]] = {}
        for text in [self.title, *(s.text for s in self.sentences)]:
            run: list[_Token] = []
            for token in [*_latin_tokens(text), None]:
                content = token is not None and token.content
                if token is not None and content and (not run or text[run[-1].end : token.start] in (" ", "-")):
                    run.append(token)
                    continue
                for size in (2, 3):
                    for i in range(len(run) - size + 1):
                        gram = run[i : i + size]
                        key = tuple(t.key for t in gram)
                        counts[key] += 1
                        surface = tuple(self._cased(t.surface) for t in gram)
                        surfaces.setdefault(key, Counter())[surface] += 1
                run = [token] if token is not None and content else []
        return counts, surfaces

    @cached_property
    def _phrases_by_key(self) -> dict[str, list[tuple[str, ...]]]:
        """The phrases of :attr:`_phrases` holding each stem, in the order first counted."""
        index: dict[str, list[tuple[str, ...]]] = {}
        for phrase in self._phrases[0]:
            for key in dict.fromkeys(phrase):
                index.setdefault(key, []).append(phrase)
        return index

    def _keywords_en(self, count: int) -> list[str]:
        order = {t: i for i, t in enumerate(self.weight)}
        words = [t for t in self.weight if not _HAN_RE.search(t)]
        if not words:
            return []
        forms = self._forms
        phrase_count, phrase_surface = self._phrases
        phrases_by_key = self._phrases_by_key
        ranked = sorted(words, key=lambda t: (-self.weight[t], order[t]))
        chosen: list[str] = []
        chosen_keys: list[tuple[str, ...]] = []
        used: set[str] = set()
        min_count = 2 if len(self.sentences) > 3 else 1
        for word in ranked:
            if len(chosen) >= count:
                break
            if word in used or not forms.get(word):
                continue
            singles = {picked[0] for picked in chosen_keys if len(picked) == 1}
            options = [
                (n, key)
                for key in phrases_by_key.get(word, ())
                if (n := phrase_count[key]) >= max(min_count, 0.25 * self.tf[word])
                and len(set(key)) == len(key)
                and not any(k in used and k not in singles for k in key)
            ]
            best: tuple[str, ...] | None = None
            if options:
                top = max(n for n, _ in options)
                # The longest phrase nearly as frequent as the most frequent one.
                best = sorted((k for n, k in options if n >= 0.8 * top), key=lambda k: (-len(k), -phrase_count[k], k))[
                    0
                ]
                # A phrase joining an earlier single-word pick replaces it
                # ("trees" + "street" -> "street trees").
                absorbed = [i for i, picked in enumerate(chosen_keys) if len(picked) == 1 and picked[0] in best]
                if len(absorbed) == 1:
                    chosen[absorbed[0]] = " ".join(phrase_surface[best].most_common(1)[0][0])
                    chosen_keys[absorbed[0]] = best
                    used.update(best)
                    continue
                if absorbed:
                    best = None
            if best is not None:
                chosen.append(" ".join(phrase_surface[best].most_common(1)[0][0]))
                chosen_keys.append(best)
                used.update(best)
            else:
                chosen.append(forms[word])
                chosen_keys.append((word,))
                used.add(word)
        return chosen

    @cached_property
    def _zh_candidates(self) -> dict[str, int]:
        """Chinese n-grams (2-5 characters) frequent enough to be keywords,
        without fragments of a longer one seen almost as often ("工智" in
        "人工智能")."""
        grams: Counter[str] = Counter()
        for s in self.sentences:
            grams.update(_zh_grams_all(s.text))
        grams.update(_zh_grams_all(self.title))
        min_count = 2 if len(self.sentences) > 3 else 1
        candidates = {g: c for g, c in grams.items() if c >= min_count}
        fragments = set()
        for gram, n in candidates.items():
            for size in range(2, len(gram)):
                for i in range(len(gram) - size + 1):
                    part = gram[i : i + size]
                    if part in candidates and n >= 0.7 * candidates[part]:
                        fragments.add(part)
        return {g: n for g, n in candidates.items() if g not in fragments}

    def _first_positions(self, grams: dict[str, int]) -> dict[str, int]:
        """Where each of ``grams`` (runs of Han characters) first occurs in the
        text, as ``text.find`` would say, for all of them in one pass."""
        found: dict[str, int] = {}
        sizes = sorted({len(g) for g in grams})
        text = self.text
        start = _search(_HAN_RE, text, 0)
        while start >= 0 and len(found) < len(grams):
            end = _search(_NOT_HAN_RE, text, start)
            end = len(text) if end < 0 else end
            for i in range(start, end):
                for size in sizes:
                    if i + size > end:
                        break
                    gram = text[i : i + size]
                    if gram in grams and gram not in found:
                        found[gram] = i
            start = _search(_HAN_RE, text, end)
        return found

    def _keywords_zh(self, count: int) -> list[str]:
        kept = self._zh_candidates
        title_grams = set(_zh_grams_all(self.title))
        score = {g: n * math.sqrt(len(g)) * (1.5 if g in title_grams else 1.0) for g, n in kept.items()}
        first = self._first_positions(kept)
        ranked = sorted(score, key=lambda g: (-score[g], first.get(g, -1), g))
        chosen: list[str] = []
        for gram in ranked:
            if len(chosen) >= count:
                break
            replace_at: int | None = None
            clash = False
            for i, other in enumerate(chosen):
                if other in gram and replace_at is None and kept[gram] >= 0.4 * kept[other]:
                    replace_at = i  # "阅读" becomes "深度阅读"
                elif _shares_bigram(gram, other):
                    clash = True
            if clash:
                continue
            if replace_at is not None:
                chosen[replace_at] = gram
            else:
                chosen.append(gram)
        return chosen


_PHRASE_OPENERS = frozenset(
    "the a an this that these those its their our his her my your of in on for with by from about into than as "
    "at and or no some many more most all every each such".split()
)


def _contains_run(haystack: list[str], needle: tuple[str, ...]) -> bool:
    size = len(needle)
    return any(tuple(haystack[i : i + size]) == needle for i in range(len(haystack) - size + 1))


def _zh_grams_all(text: str) -> list[str]:
    out = []
    for run in _HAN_RUN_RE.findall(text):
        for n in (2, 3, 4, 5):
            out.extend(_zh_grams(run, n))
    return out


def _shares_bigram(a: str, b: str) -> bool:
    """Whether two Chinese keywords share two characters in a row."""
    return any(a[i : i + 2] in b for i in range(len(a) - 1))
