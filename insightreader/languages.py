"""Language tags (BCP 47) as readers give them, and their names in a prompt."""

from __future__ import annotations

import re

from .errors import ValidationFailed

#: ``output_language``'s value for "the text's own language".
AUTO = "auto"
#: A language, then optional script, region or variant subtags.
TAG_PATTERN = r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}"
_TAG = re.compile(TAG_PATTERN)
#: Names of the languages readers ask for most; the others go by their tag.
NAMES = {
    "en": "English",
    "zh": "Chinese",
    "zh-CN": "Simplified Chinese",
    "zh-Hans": "Simplified Chinese",
    "zh-TW": "Traditional Chinese",
    "zh-Hant": "Traditional Chinese",
    "ja": "Japanese",
    "ko": "Korean",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "it": "Italian",
    "pt": "Portuguese",
    "ru": "Russian",
}


def name(tag: str) -> str:
    return NAMES.get(tag) or NAMES.get(tag.split("-")[0]) or tag


def canonical(tag: str) -> str:
    """``tag`` checked and cased as BCP 47 writes it (``zh-cn`` → ``zh-CN``)."""
    if tag == AUTO:
        return tag
    if not _TAG.fullmatch(tag):
        raise ValidationFailed(
            f"output_language must be {AUTO!r} or a BCP 47 language tag such as 'en' or 'zh-CN', not {tag[:40]!r}"
        )
    first, *rest = tag.split("-")
    cased = [first.lower()]
    for sub in rest:
        cased.append(sub.upper() if len(sub) == 2 else sub.title() if len(sub) == 4 else sub.lower())
    return "-".join(cased)
