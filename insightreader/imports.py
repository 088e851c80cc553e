"""Imports: another reader's export file (or this server's own) into a user's library,
as bulk work (docs/import-export.md).

A request parses the file off the loop (an unreadable one is a ``400 bad_import`` and
creates nothing), stores its items as a batch and answers at once; the
:class:`~insightreader.batches.BatchRunner` then turns the items into articles one
write each (:class:`ImportItems`), at bulk priority and leaving room for the reader's
own work (:mod:`insightreader.batches`).

An item becomes an article with its tags, reading states, saved time and highlights;
with the text the file carries (its analysis queued), or else saved from its URL with
a ``page_fetch`` (which then queues the analysis); no analysis when the reader turned
``auto_analyze`` off.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from . import batches, highlights, importers, library, tagnames, text, urls, user_settings
from .analyses import article as article_analysis
from .batches import PRIORITY, BatchRunner
from .config import LibrarySettings
from .engine import Engine, Submission
from .errors import StorageQuotaExceeded
from .events import EventBus
from .ids import new_id
from .importers import ImportedHighlight, ImportItem
from .records import Article, Batch, utcnow
from .store import Store, Tx

KIND = "import"


def _identity(item: ImportItem) -> str:
    """Two items of one file with the same identity are one article."""
    if item.url:
        return "url:" + urls.normalise(item.url)
    assert item.content is not None
    return library.content_hash(item.content)


def _distinct(items: tuple[ImportItem, ...]) -> list[ImportItem]:
    seen: set[str] = set()
    kept = []
    for item in items:
        key = _identity(item)
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return kept


def _encode(item: ImportItem) -> str:
    return json.dumps(dataclasses.asdict(item), ensure_ascii=False)


def _decode(raw: str) -> ImportItem:
    fields: dict[str, Any] = json.loads(raw)
    marks = tuple(ImportedHighlight(**h) for h in fields.pop("highlights", ()))
    return ImportItem(**{**fields, "tags": tuple(fields.get("tags", ())), "highlights": marks})


async def start(store: Store, runner: BatchRunner, user_id: str, fmt: str, data: bytes) -> Batch:
    """Read ``data`` as ``fmt`` and store it as an import of the user's; the batch as
    the request answers it (``running``, or ``finished`` when the file held nothing new)."""
    parsed = await asyncio.to_thread(importers.parse, fmt, data)
    distinct = await asyncio.to_thread(_distinct, parsed.items)
    now = utcnow()
    total = len(parsed.items)
    batch = Batch(
        id=new_id(), user_id=user_id, kind=KIND, format=fmt,
        status="staging" if distinct else "finished", total=total, done=0, failed=0,
        duplicates=total - len(distinct), last_error=None, created_at=now,
        finished_at=None if distinct else now,
    )
    items = [(position, _encode(item)) for position, item in enumerate(distinct)]
    return await batches.stage(store, batch, items, wake=runner.wake)


@dataclass(frozen=True)
class _Prepared:
    """An item with what is computed off the writer's thread: its text's tokens."""

    item: ImportItem
    tokens: int


class ImportItems:
    """The items of an import (a :class:`~insightreader.batches.BatchKind`)."""

    kind = KIND
    progress_event = "import_progress"
    finished_event = "import_finished"

    def __init__(self, engine: Engine, bus: EventBus, limits: LibrarySettings) -> None:
        self._engine = engine
        self._bus = bus
        self._limits = limits

    async def prepare(self, raw: str) -> _Prepared:
        item = _decode(raw)
        tokens = 0 if item.content is None else await asyncio.to_thread(text.estimate_tokens, item.content)
        return _Prepared(item, tokens)

    def do(self, tx: Tx, batch: Batch, prepared: _Prepared) -> tuple[str, str | None]:
        """The item as an article of the user's: the counter it adds to (``done``,
        ``duplicates``, ``failed``) and, for a failure, why. Raises when a submit is
        refused (the job then keeps nothing)."""
        item, tokens, user_id = prepared.item, prepared.tokens, batch.user_id
        url_key = urls.normalise(item.url) if item.url else None
        if url_key is not None and tx.article_ref_by_url(user_id, url_key) is not None:
            return "duplicates", None
        if item.content is None:
            assert url_key is not None
            if not url_key.startswith(("http://", "https://")):
                return "failed", f"{url_key[:100]!r} is not a web address (http or https)"
        else:
            if tx.article_ref_by_hash(user_id, library.content_hash(item.content)) is not None:
                return "duplicates", None
        now = utcnow()
        saved = item.saved_at or now
        title = (item.title or "").strip()
        if item.content is None:
            assert url_key is not None
            article = Article(
                id=new_id(), seq=0, user_id=user_id, title=(title or url_key)[: library.TITLE_CHARS],
                content="", url=url_key, content_hash=library.url_hash(url_key), analysis=None,
                meta_analysis=None, lenses={}, created_at=saved, updated_at=now, fetch_status="fetching",
            )
        else:
            content = item.content
            first_line = next((line.strip() for line in content.splitlines() if line.strip()), "Untitled")
            article = Article(
                id=new_id(), seq=0, user_id=user_id, title=(title or first_line)[: library.TITLE_CHARS],
                content=content, url=item.url, content_hash=library.content_hash(content), analysis=None,
                meta_analysis=None, lenses={}, created_at=saved, updated_at=now,
                excerpt=library.excerpt(content), tokens=tokens,
            )
        try:
            library.check_quota(tx, user_id, library.stored_bytes(article.title, article.content), self._limits)
        except StorageQuotaExceeded as exc:
            return "failed", exc.message
        analyze = user_settings.read_in(tx, user_id).auto_analyze
        if item.content is None:
            assert url_key is not None
            tx.insert_url_article(article, url_key)
            fetch = {"article_id": article.id, "url": url_key} | ({} if analyze else {"analyze": False})
            self._engine.submit_in(tx, user_id, library.PAGE_FETCH, Submission(fetch, article.title, article.id),
                                   priority=PRIORITY, batch_id=batch.id)
        else:
            tx.insert_article(article, url_key)
            if analyze:
                self._engine.submit_in(tx, user_id, article_analysis.NAME, Submission(
                    {"article_id": article.id, "content_hash": article.content_hash,
                     "existing_tags": tx.tag_names(user_id, article_analysis.EXISTING_TAGS)},
                    article.title, article.id,
                ), priority=PRIORITY, batch_id=batch.id)
            self._add_highlights(tx, article, item.highlights, now)
        library.publish_saved(self._bus, tx, article)
        names = tagnames.clean_set(item.tags)
        if names:
            tx.set_article_tags(article.id, user_id, [(tagnames.key(name), name) for name in names], now)
        if item.archived or item.favorite:
            tx.update_article(article.id, user_id, title=None, archived=item.archived or None,
                              favorite=item.favorite or None, now=now)
        return "done", None

    @staticmethod
    def _add_highlights(tx: Tx, article: Article, marks: tuple[ImportedHighlight, ...], now: str) -> None:
        """The item's highlights that can be found in its text (others are left out)."""
        for mark in marks:
            found = highlights.locate(
                article.content, mark.quote,
                (mark.prefix or "")[-highlights.CONTEXT_CHARS :], (mark.suffix or "")[: highlights.CONTEXT_CHARS],
            )
            if found is None:
                continue
            position, quote = found
            tx.insert_highlight(highlights.placed(article, quote, position, mark.note or "", now))
