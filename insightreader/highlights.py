"""Highlights: a quote of an article's text, kept with a little of the text before and
after it (as the W3C Web Annotation ``TextQuoteSelector`` does) so that it is found
again in the text, and the reader's note. No web imports; the API calls these.

A highlight is saved only when its quote occurs in the article's text (exactly, or but
for white space: a browser's selection collapses line breaks), and is kept as it stands
there; where it occurs more than once, the occurrence whose surroundings agree best
with ``prefix`` and ``suffix`` wins, and its position is kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from .errors import NotFound, QuoteNotFound
from .ids import new_id
from .records import Article, Highlight, User, utcnow
from .store import Store, Tx

#: Characters of context kept on either side of a quote.
CONTEXT_CHARS = 200


def _agreement(content: str, at: int, quote: str, prefix: str, suffix: str) -> int:
    """How many characters of ``prefix`` (from its end) and ``suffix`` (from its start)
    the text around the occurrence at ``at`` agrees with."""
    before = content[max(0, at - len(prefix)) : at]
    after = content[at + len(quote) : at + len(quote) + len(suffix)]
    score = 0
    for a, b in zip(reversed(before), reversed(prefix)):
        if a != b:
            break
        score += 1
    for a, b in zip(after, suffix):
        if a != b:
            break
        score += 1
    return score


def _occurrences(content: str, quote: str) -> Iterator[tuple[int, str]]:
    """Where ``quote`` stands in ``content``, as it stands there: exactly, or else with
    any run of white space for each of the quote's (a selection in a browser collapses
    line breaks and indentation into single spaces)."""
    at = content.find(quote)
    if at != -1:
        while at != -1:
            yield at, quote
            at = content.find(quote, at + 1)
        return
    words = quote.split()
    if words:
        for match in re.finditer(r"\s+".join(map(re.escape, words)), content):
            yield match.start(), match.group()


def locate(content: str, quote: str, prefix: str = "", suffix: str = "") -> tuple[int, str] | None:
    """Where ``quote`` stands in ``content`` and its text there: the occurrence whose
    surroundings agree best with the context (the first among equals), or None. Linear
    in the text (each occurrence is compared over at most the context's length, and the
    search stops once the context agrees entirely)."""
    best, best_score = None, -1
    whole = len(prefix) + len(suffix)
    for at, text in _occurrences(content, quote):
        score = _agreement(content, at, text, prefix, suffix)
        if score > best_score:
            best, best_score = (at, text), score
            if score == whole:
                break
    return best


def placed(article: Article, quote: str, position: int, note: str, now: str) -> Highlight:
    """A new highlight of ``quote``, found at ``position`` of the article's text (by
    :func:`locate`), with the text around it as it stands there."""
    return Highlight(
        id=new_id(), user_id=article.user_id, article_id=article.id, quote=quote,
        prefix=article.content[max(0, position - CONTEXT_CHARS) : position],
        suffix=article.content[position + len(quote) : position + len(quote) + CONTEXT_CHARS],
        position=position, note=note, created_at=now, updated_at=now,
    )


async def add(
    store: Store, user: User, article_id: str, *, quote: str, prefix: str, suffix: str, note: str
) -> Highlight:
    article = await store.read.article(article_id, user.id)
    if article is None:
        raise NotFound("no such article")
    found = locate(article.content, quote, prefix[-CONTEXT_CHARS:], suffix[:CONTEXT_CHARS])
    if found is None:
        raise QuoteNotFound("quote: it does not occur in the article's text")
    position, quote = found
    highlight = placed(article, quote, position, note, utcnow())

    def job(tx: Tx) -> None:
        if not tx.article_exists(article.id, user.id):
            raise NotFound("no such article")
        tx.insert_highlight(highlight)

    await store.write(job)
    return highlight


async def set_note(store: Store, user: User, highlight_id: str, note: str) -> Highlight:
    def job(tx: Tx) -> Highlight | None:
        return tx.set_highlight_note(highlight_id, user.id, note, utcnow())

    found = await store.write(job)
    if found is None:
        raise NotFound("no such highlight")
    return found


async def remove(store: Store, user: User, highlight_id: str) -> None:
    def job(tx: Tx) -> bool:
        return tx.delete_highlight(highlight_id, user.id)

    if not await store.write(job):
        raise NotFound("no such highlight")
