"""Tag names: what a valid one is, the key that makes it unique, and near-duplicates.

Rules (docs/design.md, "Tags and states"): surrounding white space is trimmed and
runs of white space inside become one space; the result is 1 to ``MAX_LENGTH``
characters with no control or invisible format characters (``REFUSED``) and valid
Unicode. Two names are the same tag when their keys (NFKC, case-folded) are equal;
the first spelling is kept.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from .errors import ValidationFailed

#: The most characters a tag name may have.
MAX_LENGTH = 64
#: The most tags one article may carry.
MAX_PER_ARTICLE = 50

_SPACE = re.compile(r"\s+")
#: Characters no tag name holds, as a regular-expression class (the API schema says
#: the same): controls that are not white space, and invisible format characters
#: (soft hyphen, zero-width spaces and joiners, bidi controls, word joiner, BOM).
REFUSED = (
    r"\x00-\x08\x0E-\x1B\x7F-\x84\x86-\x9F\xAD\u180E\u200B-\u200F\u202A-\u202E"
    r"\u2060-\u2064\u2066-\u2069\uFEFF"
)
_REFUSED = re.compile(f"[{REFUSED}]")
_SEPARATORS = re.compile(r"[\s_\-]+")


def clean(name: str) -> str:
    """The tag name as stored, or :class:`ValidationFailed` saying what is wrong."""
    cleaned = _SPACE.sub(" ", name).strip()
    if not cleaned:
        raise ValidationFailed("tags: a tag name must not be empty")
    if len(cleaned) > MAX_LENGTH:
        raise ValidationFailed(f"tags: {cleaned[:20]!r}… is longer than {MAX_LENGTH} characters")
    if _REFUSED.search(cleaned) or any(unicodedata.category(c) == "Cs" for c in cleaned):
        raise ValidationFailed(f"tags: {cleaned!r} holds control or invisible characters")
    return cleaned


def key(name: str) -> str:
    """What makes two names one tag: the NFKC form, case-folded."""
    return unicodedata.normalize("NFKC", name).casefold()


def clean_set(names: Iterable[str]) -> list[str]:
    """Valid, distinct names (the first spelling of each key), at most
    ``MAX_PER_ARTICLE`` of them, in the order given."""
    chosen: dict[str, str] = {}
    for name in names:
        cleaned = clean(name)
        chosen.setdefault(key(cleaned), cleaned)
    if len(chosen) > MAX_PER_ARTICLE:
        raise ValidationFailed(f"tags: at most {MAX_PER_ARTICLE} tags per article, not {len(chosen)}")
    return list(chosen.values())


#: Plural endings and what replaces them ("cities" -> "city", "boxes" -> "box").
_PLURALS = (("ies", "y"), ("sses", "ss"), ("ches", "ch"), ("shes", "sh"), ("xes", "x"), ("s", ""))
#: Words ending so are not plurals ("glass", "analysis", "status").
_NOT_PLURAL = ("ss", "is", "us")


def _singular(word: str) -> str:
    if len(word) <= 3 or word.endswith(_NOT_PLURAL):
        return word
    for ending, replacement in _PLURALS:
        if word.endswith(ending):
            return word[: -len(ending)] + replacement
    return word


def loose_key(name: str) -> str:
    """A key under which near-duplicates meet: case, diacritics, hyphens, spaces and
    underscores, and a plural ``s``/``es`` ending on any word do not count."""
    decomposed = unicodedata.normalize("NFKD", key(name))
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_singular(word) for word in _SEPARATORS.split(bare) if word)


def prefer_existing(suggested: Iterable[str], existing: Iterable[str], limit: int) -> list[str]:
    """Suggestions with each near-duplicate of an existing tag replaced by that tag
    (its spelling), invalid names dropped, duplicates removed, at most ``limit``."""
    known = {}
    for name in existing:
        known.setdefault(loose_key(name), name)
    chosen: dict[str, str] = {}
    for name in suggested:
        try:
            cleaned = clean(name)
        except ValidationFailed:
            continue
        loose = loose_key(cleaned)
        if loose:
            chosen.setdefault(loose, known.get(loose, cleaned))
    return list(chosen.values())[:limit]
