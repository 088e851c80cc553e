"""Imports: another reader's export file (or this server's own) into a user's library,
as bulk work (docs/import-export.md).

A request parses the file off the loop (an unreadable one is a ``400 bad_import`` and
creates nothing), stores its items as a batch (:mod:`insightreader.store`, tables
``batches`` and ``batch_items``) and answers at once. The :class:`Importer` then turns the
items into articles one write each, taking the open imports in turn, so an import of
thousands of links never holds the writer for long, and each item is consumed in the
same transaction that saves it: after a crash the import goes on exactly where it
stopped, and nothing is imported twice.

An item becomes an article with its tags, reading states, saved time and highlights;
with the text the file carries (its analysis queued), or else saved from its URL with
a ``page_fetch`` (which then queues the analysis); no analysis when the reader turned
``auto_analyze`` off. Those tasks run at priority
:data:`PRIORITY`, below everything a reader waits for, and an import leaves
:data:`HEADROOM` of the user's ``tasks.max_pending_per_user`` free for the reader's
own work: while the user has more unfinished tasks than that allows, the import waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from . import highlights, importers, library, tagnames, text, urls, user_settings
from .analyses import article as article_analysis
from .config import LibrarySettings, TaskSettings
from .engine import Engine, Submission
from .errors import ApiError, StorageQuotaExceeded
from .events import EventBus
from .importers import ImportedHighlight, ImportItem
from .records import Article, Batch, utcnow
from .store import Store, Tx
from .supervisor import Supervisor

log = logging.getLogger(__name__)

KIND = "import"
#: Priority of the tasks an import submits: below every task type's default.
PRIORITY = -5
#: Unfinished tasks an import leaves free for the reader's own work.
HEADROOM = 10
#: Items stored per write while a request stages its file.
STAGE_CHUNK = 500
#: Items of one import done before the next import gets its turn.
TURN = 20
#: Seconds between two ``import_progress`` events of one import.
PROGRESS_EVERY = 0.5
#: Seconds an import waiting for room under the pending-task limit waits before it looks again.
BLOCKED_WAIT = 1.0
#: Seconds before the importer tries again after a write failed (a full disk).
FAILED_WAIT = 5.0


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


async def start(store: Store, importer: Importer, user_id: str, fmt: str, data: bytes) -> Batch:
    """Read ``data`` as ``fmt`` and store it as an import of the user's; the batch as
    the request answers it (``running``, or ``finished`` when the file held nothing new)."""
    parsed = await asyncio.to_thread(importers.parse, fmt, data)
    distinct = await asyncio.to_thread(_distinct, parsed.items)
    now = utcnow()
    total = len(parsed.items)
    batch = Batch(
        id=str(uuid.uuid4()), user_id=user_id, kind=KIND, format=fmt,
        status="staging" if distinct else "finished", total=total, done=0, failed=0,
        duplicates=total - len(distinct), last_error=None, created_at=now,
        finished_at=None if distinct else now,
    )
    rows = [(position, _encode(item)) for position, item in enumerate(distinct)]
    chunks = [rows[i : i + STAGE_CHUNK] for i in range(0, len(rows), STAGE_CHUNK)] or [[]]

    def first(tx: Tx) -> None:
        tx.insert_batch(batch)
        tx.stage_batch_items(batch.id, chunks[0])

    await store.write(first)
    for chunk in chunks[1:]:
        await store.write(lambda tx, chunk=chunk: tx.stage_batch_items(batch.id, chunk))
    if distinct:
        await store.write(lambda tx: tx.set_batch_status(batch.id, "running"))
        importer.wake()
    return dataclasses.replace(batch, status="running" if distinct else "finished")


@dataclass(frozen=True)
class _Prepared:
    """An item with what is computed off the writer's thread: its text's tokens."""

    position: int
    item: ImportItem
    tokens: int


class Importer:
    """Does the items of every running import, taking the imports in turn."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        engine: Engine,
        limits: LibrarySettings,
        tasks: TaskSettings,
        *,
        supervisor: Supervisor,
    ) -> None:
        self._store = store
        self._bus = bus
        self._engine = engine
        self._limits = limits
        self._room = max(1, tasks.max_pending_per_user - HEADROOM)
        self._supervisor = supervisor
        self._wake = asyncio.Event()
        self._last_progress: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = self._supervisor.start(self._run(), name="importer")

    async def stop(self) -> None:
        """Stop between two items (an item's write is done or not done at all)."""
        await self._supervisor.stop(self._task)
        self._task = None

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        dropped = await self._store.write(lambda tx: tx.drop_staging_batches())
        if dropped:
            log.info("dropped %d imports whose request ended while storing them", dropped)
        while True:
            self._wake.clear()
            batches = await self._store.read.running_batches(KIND)
            progressed = False
            for batch in batches:
                progressed |= await self._turn(batch)
            if batches and progressed:
                continue
            wait = BLOCKED_WAIT if batches else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def _turn(self, batch: Batch) -> bool:
        """Up to :data:`TURN` items of ``batch``; whether any was done."""
        progressed = False
        for _ in range(TURN):
            try:
                outcome = await self._next(batch)
            except Exception:
                log.exception("import %s: an item could not be recorded; trying again shortly", batch.id)
                await asyncio.sleep(FAILED_WAIT)
                return progressed
            if outcome is None:
                return progressed
            progressed = True
            if outcome.status == "finished":
                self._last_progress.pop(batch.id, None)
                log.info("import %s finished: %s", batch.id, outcome.progress())
                return progressed
        return progressed

    async def _next(self, batch: Batch) -> Batch | None:
        """Do the batch's next item; the batch after it, or None when there is none or
        the user has no room for more tasks now."""
        staged = await self._store.read.next_batch_item(batch.id)
        if staged is None:
            return None
        position, raw = staged
        item = _decode(raw)
        tokens = 0 if item.content is None else await asyncio.to_thread(text.estimate_tokens, item.content)
        prepared = _Prepared(position, item, tokens)
        try:
            return await self._store.write(lambda tx: self._do(tx, batch, prepared))
        except ApiError as refused:  # the submit or a quota refused it: nothing of it was kept
            reason = refused.message
        return await self._store.write(lambda tx: self._record(tx, batch, position, "failed", reason))

    def _do(self, tx: Tx, batch: Batch, prepared: _Prepared) -> Batch | None:
        if tx.count_unfinished(batch.user_id) >= self._room:
            return None
        outcome, error = self._save(tx, batch.user_id, prepared.item, prepared.tokens)
        return self._record(tx, batch, prepared.position, outcome, error)

    def _record(self, tx: Tx, batch: Batch, position: int, outcome: str, error: str | None) -> Batch:
        now = utcnow()
        after = tx.finish_batch_item(batch.id, position, outcome, error, now)
        if after.status == "finished":
            self._bus.publish(batch.user_id, "import_finished", after.progress(), tx=tx)
            return after
        moment = time.monotonic()
        if moment - self._last_progress.get(batch.id, 0.0) >= PROGRESS_EVERY:
            self._last_progress[batch.id] = moment
            self._bus.publish(batch.user_id, "import_progress", after.progress(), tx=tx)
        return after

    def _save(self, tx: Tx, user_id: str, item: ImportItem, tokens: int) -> tuple[str, str | None]:
        """The item as an article of the user's: the counter it adds to (``done``,
        ``duplicates``, ``failed``) and, for a failure, why. Raises when a submit is
        refused (the job then keeps nothing)."""
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
                id=str(uuid.uuid4()), seq=0, user_id=user_id, title=(title or url_key)[: library.TITLE_CHARS],
                content="", url=url_key, content_hash=library.url_hash(url_key), analysis=None,
                meta_analysis=None, lenses={}, created_at=saved, updated_at=now, fetch_status="fetching",
            )
        else:
            content = item.content
            first_line = next((line.strip() for line in content.splitlines() if line.strip()), "Untitled")
            article = Article(
                id=str(uuid.uuid4()), seq=0, user_id=user_id, title=(title or first_line)[: library.TITLE_CHARS],
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
                                   priority=PRIORITY)
        else:
            tx.insert_article(article, url_key)
            if analyze:
                self._engine.submit_in(tx, user_id, article_analysis.NAME, Submission(
                    {"article_id": article.id, "content_hash": article.content_hash,
                     "existing_tags": tx.tag_names(user_id, article_analysis.EXISTING_TAGS)},
                    article.title, article.id,
                ), priority=PRIORITY)
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
