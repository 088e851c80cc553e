"""``page_fetch``: fetch the page of an article saved from its URL, extract its text and
metadata, fill the article and queue its ``article_analysis``, all in the transaction
that completes the task. Not an LLM task: it spends no tokens."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from . import library, text
from .analyses import article as article_analysis
from .analyses.common import load_article
from .config import LibrarySettings
from .engine import Submission, TaskContext
from .errors import StorageQuotaExceeded, TaskError
from .records import Task, utcnow
from .store import Tx

if TYPE_CHECKING:
    from .fetching import Page

NAME = library.PAGE_FETCH
PROMPT_VERSION = "1"
#: Fetches within one run for a failure marked retryable (429, 5xx, a timeout, a
#: connection that failed), with full-jitter exponential backoff between them (the
#: one retry layer for fetching; the run then fails, still retryable by the user).
FETCH_ATTEMPTS = 3
BACKOFF_BASE = 0.5
BACKOFF_MAX = 8.0


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, TaskError) and exc.retryable


async def _fetch(url: str, settings: LibrarySettings) -> Page:
    # httpx and httpcore load with the first fetch, not at every start (test_smoke).
    from . import fetching

    rules = fetching.FetchRules(
        allow_private=settings.fetch_allow_private,
        timeout=settings.fetch_timeout,
        max_bytes=settings.fetch_max_bytes,
    )
    retrying = AsyncRetrying(
        stop=stop_after_attempt(FETCH_ATTEMPTS),
        wait=wait_random_exponential(multiplier=BACKOFF_BASE, max=BACKOFF_MAX),
        retry=retry_if_exception(_retryable),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await fetching.fetch(url, rules)
    raise AssertionError("tenacity ends with a result or the last error")


def unfinished(tx: Tx, task: Task) -> None:
    """A fetch that failed or was cancelled leaves its article ``failed``, not
    ``fetching`` for ever (saving the URL again, or retrying the task, fetches again)."""
    if task.article_id is not None:
        tx.set_fetch_status(task.article_id, "failed", utcnow(), only_from="fetching")


async def run(ctx: TaskContext, *, settings: LibrarySettings) -> dict[str, Any]:
    article = await load_article(ctx)
    if article.fetch_status == "fetched":
        return {"article_id": article.id, "title": article.title, "fetched": False}

    if article.fetch_status == "failed":  # a retry: fetching again
        await ctx.store.write(lambda tx: tx.set_fetch_status(article.id, "fetching", utcnow()))
    page = await _fetch(ctx.task.input["url"], settings)
    from . import extraction  # after fetching, which it imports

    found = await asyncio.to_thread(extraction.extract, page)
    filled = replace(
        article,
        title=found.title[: library.TITLE_CHARS],
        content=found.text,
        excerpt=library.excerpt(found.text),
        tokens=await asyncio.to_thread(text.estimate_tokens, found.text),
        page_meta=found.metadata(),
        updated_at=utcnow(),
    )

    def room(tx: Tx) -> None:
        size = library.stored_bytes(filled.title, filled.content) - library.stored_bytes(article.title, "")
        try:
            library.check_quota(tx, article.user_id, size, settings, new_article=False)
        except StorageQuotaExceeded as exc:
            raise TaskError("storage_quota_exceeded", exc.message) from exc

    await ctx.store.write(room)

    def store(tx: Tx, result: dict[str, Any]) -> None:
        tx.fill_fetched_article(filled)

    ctx.on_complete(store)
    if ctx.task.input.get("analyze", True):  # False: imported while the reader's auto_analyze is off
        ctx.then_submit(
            article_analysis.NAME,
            Submission({"article_id": article.id, "content_hash": article.content_hash}, filled.title, article.id),
        )
    return {"article_id": article.id, "title": filled.title, "url": page.url, "page": filled.page_meta, "fetched": True}
