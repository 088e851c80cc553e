"""A user's library of saved articles: saving one together with its analysis, within
the storage quotas; its tags and reading states (archived, favourite). No web imports;
the API and any other caller use these functions.

A save and the submit of its analysis are one write transaction: when the submit is
refused (too many pending tasks, the token budget, a storage quota, shutting down),
nothing of the save is kept.
"""

from __future__ import annotations

import asyncio
import logging
import hashlib

from . import search, tagnames, text, urls
from .analyses import article as article_analysis
from .config import LibrarySettings
from .engine import Engine, SubmitOutcome, Submission
from .events import EventBus
from .errors import NotFound, StorageQuotaExceeded
from .ids import new_id
from .records import Article, ArticleItem, User, utcnow
from .store import ArticleFilter, Store, Tx

log = logging.getLogger(__name__)

#: The task type that fetches an article saved from its URL (``page_fetch.py``).
PAGE_FETCH = "page_fetch"
#: Characters of a title (the API's limit).
TITLE_CHARS = 500
#: Characters of an article's text that lists show.
EXCERPT_CHARS = 300
#: Articles indexed per write while the search index catches up after its migration.
SEARCH_BACKLOG_BATCH = 100


def content_hash(content: str) -> str:
    """Saving the same content twice gives the same article (line endings and
    surrounding white space don't count)."""
    normalised = content.replace("\r\n", "\n").strip()
    return "sha256:" + hashlib.sha256(normalised.encode()).hexdigest()


def excerpt(content: str) -> str:
    """The start of the text with its white space collapsed, at most ``EXCERPT_CHARS``
    characters (read from a bounded slice, whatever the text's length)."""
    return " ".join(content.lstrip()[: EXCERPT_CHARS * 4].split())[:EXCERPT_CHARS]


def stored_bytes(title: str, content: str) -> int:
    """What an article counts against ``library.max_bytes_per_user``."""
    return len(title.encode()) + len(content.encode())


def publish_saved(bus: EventBus, tx: Tx, article: Article) -> None:
    """``article_saved`` on the user's stream (and to their webhooks), in the transaction
    that saved the article."""
    bus.publish(article.user_id, "article_saved", {"article_id": article.id, "title": article.title, "url": article.url}, tx=tx)


def check_quota(tx: Tx, user_id: str, size: int, limits: LibrarySettings, *, new_article: bool = True) -> None:
    """Raise ``StorageQuotaExceeded`` unless ``size`` more bytes (and, when
    ``new_article``, one more article) fit in the user's library."""
    articles, used = tx.library_usage(user_id)
    if new_article and articles >= limits.max_articles_per_user:
        raise StorageQuotaExceeded(
            f"your library holds {articles} articles, the most this server allows"
            f" (library.max_articles_per_user); delete some to save more"
        )
    if used + size > limits.max_bytes_per_user:
        raise StorageQuotaExceeded(
            f"this article ({size} bytes) does not fit: your library holds {used} of"
            f" {limits.max_bytes_per_user} bytes (library.max_bytes_per_user)"
        )


async def save_article(
    engine: Engine,
    limits: LibrarySettings,
    user: User,
    *,
    title: str | None,
    content: str,
    url: str | None,
    priority: int | None,
    idempotency_key: str | None,
) -> SubmitOutcome:
    """Save an article (or find the one with the same content) and submit its
    analysis, in one transaction. Without a ``title``, its text's first line is one."""
    now = utcnow()
    title = title or next((line.strip() for line in content.splitlines() if line.strip()), "Untitled")[:TITLE_CHARS]
    digest = content_hash(content)
    fresh = Article(
        id=new_id(), seq=0, user_id=user.id, title=title.strip(), content=content,
        url=url, content_hash=digest, analysis=None, meta_analysis=None, lenses={},
        created_at=now, updated_at=now, excerpt=excerpt(content),
        # A full pass over up to server.max_body_bytes of text: off the loop.
        tokens=await asyncio.to_thread(text.estimate_tokens, content),
    )
    size = stored_bytes(fresh.title, content)

    def prepare(tx: Tx) -> Submission:
        found = tx.article_ref_by_hash(user.id, digest)
        if found is None:
            check_quota(tx, user.id, size, limits)
            tx.insert_article(fresh)
            publish_saved(engine.bus, tx, fresh)
            found = (fresh.id, fresh.title)
        article_id, saved_title = found
        payload = {
            "article_id": article_id,
            "content_hash": digest,
            # In the prompt, and so in the dedup key: suggestions depend on them.
            "existing_tags": tx.tag_names(user.id, article_analysis.EXISTING_TAGS),
        }
        return Submission(payload, saved_title, article_id)

    return await engine.submit_prepared(
        user.id,
        article_analysis.NAME,
        prepare,
        priority=priority,
        idempotency_key=idempotency_key,
        privileged=user.is_admin,
    )


def url_hash(url_key: str) -> str:
    """The ``content_hash`` of an article saved from a URL: its (normalised) URL's, so
    its identity does not change when the text arrives."""
    return "url:sha256:" + hashlib.sha256(url_key.encode()).hexdigest()


async def save_url(
    engine: Engine,
    limits: LibrarySettings,
    user: User,
    *,
    url: str,
    title: str | None,
    priority: int | None,
    idempotency_key: str | None,
) -> SubmitOutcome:
    """Save an article from its URL (or find the one saved from the same normalised
    URL) and submit the ``page_fetch`` that fills it, in one transaction. Saving a URL
    whose fetch failed submits a new fetch."""
    key = urls.normalise(url)
    now = utcnow()
    fresh = Article(
        id=new_id(), seq=0, user_id=user.id, title=(title or "").strip() or key, content="",
        url=key, content_hash=url_hash(key), analysis=None, meta_analysis=None, lenses={},
        created_at=now, updated_at=now, fetch_status="fetching",
    )

    def prepare(tx: Tx) -> Submission:
        found = tx.article_ref_by_url(user.id, key)
        if found is None:
            check_quota(tx, user.id, stored_bytes(fresh.title, ""), limits)
            tx.insert_url_article(fresh, key)
            publish_saved(engine.bus, tx, fresh)
            article_id, saved_title = fresh.id, fresh.title
        else:
            article_id, saved_title, status = found
            if status == "failed":
                tx.set_fetch_status(article_id, "fetching", now)
        return Submission({"article_id": article_id, "url": key}, saved_title, article_id)

    return await engine.submit_prepared(
        user.id,
        PAGE_FETCH,
        prepare,
        priority=priority,
        idempotency_key=idempotency_key,
        privileged=user.is_admin,
    )


async def search_library(store: Store, user_id: str, query: str, *, limit: int, offset: int) -> list[search.Hit]:
    """The user's articles matching what they typed, best first (``search``)."""
    parsed = search.parse_query(query)
    return [] if parsed is None else await store.read.search(user_id, parsed, limit, offset)


async def index_search_backlog(store: Store) -> None:
    """Index the articles saved before the search index existed (migration 0007), a
    batch per write so that saves and submits go on meanwhile."""

    def batch(tx: Tx) -> int:
        return tx.index_search_backlog(SEARCH_BACKLOG_BATCH)

    try:
        left = await store.write(batch)
        if left:
            log.info("indexing about %d saved articles for search", left + SEARCH_BACKLOG_BATCH)
        while left:
            left = await store.write(batch)
            if not left:
                log.info("the search index holds every saved article")
    except Exception:  # search stays incomplete; the next start tries again
        log.exception("could not index the saved articles for search")


async def article(store: Store, user_id: str, article_id: str) -> Article:
    """The user's article, or :class:`NotFound` (another user's article is not found)."""
    found = await store.read.article(article_id, user_id)
    if found is None:
        raise NotFound("no such article")
    return found


async def list_articles(
    store: Store,
    user_id: str,
    *,
    limit: int,
    before_seq: int | None,
    tag: str | None = None,
    archived: bool | None = None,
    favorite: bool | None = None,
) -> list[ArticleItem]:
    """The user's articles, newest first, narrowed to a tag (any spelling of it) and
    to the states given."""
    only = ArticleFilter(
        tag_key=None if tag is None else tagnames.key(tagnames.clean(tag)),
        archived=archived,
        favorite=favorite,
    )
    return await store.read.list_articles(user_id, limit=limit, before_seq=before_seq, only=only)


async def set_tags(store: Store, user_id: str, article_id: str, names: list[str]) -> list[str]:
    """Replace the article's tags with ``names`` (see :mod:`insightreader.tagnames`);
    the tags it then carries. A name the user already has under another spelling
    takes that spelling."""
    chosen = [(tagnames.key(name), name) for name in tagnames.clean_set(names)]
    now = utcnow()

    def job(tx: Tx) -> list[str] | None:
        return tx.set_article_tags(article_id, user_id, chosen, now)

    tags = await store.write(job)
    if tags is None:
        raise NotFound("no such article")
    return tags


async def tags(store: Store, user_id: str) -> list[tuple[str, int]]:
    """The user's tags with how many articles carry each (a tag no article carries is gone)."""
    return await store.read.tags(user_id)


async def update_article(
    store: Store,
    user_id: str,
    article_id: str,
    *,
    title: str | None = None,
    archived: bool | None = None,
    favorite: bool | None = None,
) -> Article:
    """Rename, archive or unarchive, mark or unmark as favourite; the article after."""
    now = utcnow()
    new_title = None if title is None else title.strip()

    def job(tx: Tx) -> bool:
        return tx.update_article(
            article_id, user_id, title=new_title, archived=archived, favorite=favorite, now=now
        )

    if not await store.write(job):
        raise NotFound("no such article")
    return await article(store, user_id, article_id)
