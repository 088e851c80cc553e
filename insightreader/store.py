"""The task store: the only module with SQL.

:class:`Store` is the whole storage interface; the engine, auth and web layers
use nothing else. It holds two connections to one WAL-mode SQLite file:

- a **writer**: a plain ``sqlite3`` connection owned by one thread. A coroutine
  takes write jobs in arrival order and *group-commits* them: every job queued
  while a commit is under way joins the next batch, and the whole batch (BEGIN,
  each job inside its own savepoint so a failing job rolls back alone, COMMIT)
  runs on the writer's thread in **one hop** from the loop. Every caller is
  answered only after the shared ``COMMIT`` returned; with ``synchronous=FULL``
  that one commit is one fsync for the whole batch. (Through aiosqlite each
  statement was its own hop, and under load each hop waited for a turn of the
  busy loop: that, not SQLite, was the submit path's limit — docs/benchmarks.md.)
- a **reader** (aiosqlite, ``query_only``) for everything else; in WAL mode it
  never waits for the writer and only ever sees committed data.

A write job is a plain function ``def job(tx: Tx) -> T``: it runs on the writer's
thread, so it may only call :class:`Tx` methods and compute (no awaiting, no loop
objects). ``tx.after_commit`` / ``tx.on_rollback`` callbacks run on the loop once
the batch ended, which lets the event bus release an event only once the change it
describes is durable. A PostgreSQL backend would implement the same ``Store`` and
``Tx`` methods.
"""
from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, TypeVar, cast

import aiosqlite

from . import migrate, search
from .config import ConfigError, DatabaseSettings
from .errors import AlreadyRunning, ShuttingDown, StorageBusy, StorageFull
from .records import (
    AnalysisRun,
    ApiTokenRecord,
    Article,
    ArticleItem,
    Batch,
    Delivery,
    Highlight,
    NewTask,
    QueuedTask,
    SessionRecord,
    Task,
    TaskStatus,
    User,
    Webhook,
    to_json,
)
from .supervisor import Supervisor

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BATCH = 256
UNFINISHED = ("pending", "running")
#: What a task list reads: every column but ``input`` (up to a request body's size,
#: and never shown by the API).
_TASK_LIST_COLUMNS = (
    "seq, id, user_id, task_type, status, priority, attempts, attempts_excused, input_hash,"
    " article_id, metadata, result, error, model, prompt_tokens, completion_tokens,"
    " created_at, started_at, finished_at, reserved_tokens"
)
#: What an article list reads: no ``content``.
_ARTICLE_LIST_COLUMNS = (
    "seq", "id", "user_id", "title", "url", "content_hash", "excerpt", "analysis", "meta_analysis",
    "created_at", "updated_at", "archived", "favorite", "fetch_status", "page_meta",
)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def translate(exc: sqlite3.Error) -> Exception:
    """Map SQLite's busy and full conditions to the API errors that describe them."""
    name = getattr(exc, "sqlite_errorname", "")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc):
        return StorageBusy("the database is busy; try again")
    if name.startswith("SQLITE_FULL") or "full" in str(exc):
        return StorageFull("the database cannot grow: the disk is full")
    return exc


def _queued_task(_cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> QueuedTask:
    return QueuedTask(*row)


def _highlight(row: sqlite3.Row) -> Highlight:
    return Highlight(
        id=row["id"], user_id=row["user_id"], article_id=row["article_id"], quote=row["quote"],
        prefix=row["prefix"], suffix=row["suffix"], position=row["position"], note=row["note"],
        created_at=row["created_at"], updated_at=row["updated_at"],
    )


def _task(row: sqlite3.Row) -> Task:
    """A task from its row; a list row (without ``input``) gets an empty input."""
    return Task(
        id=row["id"],
        seq=row["seq"],
        user_id=row["user_id"],
        task_type=row["task_type"],
        status=TaskStatus(row["status"]),
        priority=row["priority"],
        attempts=row["attempts"],
        attempts_excused=row["attempts_excused"],
        input=_loads(row["input"]) if "input" in row.keys() else {},
        input_hash=row["input_hash"],
        article_id=row["article_id"],
        metadata=_loads(row["metadata"]),
        result=_loads(row["result"]),
        error=_loads(row["error"]),
        model=row["model"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        reserved_tokens=row["reserved_tokens"],
    )


def _user(row: sqlite3.Row) -> User:
    return User(
        id=row["id"],
        username=row["username"],
        password_hash=row["password_hash"],
        is_admin=bool(row["is_admin"]),
        created_at=row["created_at"],
    )


def _session(row: sqlite3.Row) -> SessionRecord:
    return SessionRecord(
        id=row["id"],
        user_id=row["user_id"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        user_agent=row["user_agent"],
        address=row["address"],
        refresh_digest=row["refresh_digest"],
        expires_at=row["expires_at"],
    )


def _api_token(row: sqlite3.Row) -> ApiTokenRecord:
    return ApiTokenRecord(
        id=row["token_id"],
        user_id=row["user_id"],
        name=row["name"],
        scope=row["scope"],
        created_at=row["token_created_at"],
        last_used_at=row["last_used_at"],
        expires_at=row["expires_at"],
    )


def _batch(row: sqlite3.Row) -> Batch:
    return Batch(
        id=row["id"], user_id=row["user_id"], kind=row["kind"], format=row["format"], status=row["status"],
        total=row["total"], done=row["done"], failed=row["failed"], duplicates=row["duplicates"],
        last_error=row["last_error"], created_at=row["created_at"], finished_at=row["finished_at"],
        options=_loads(row["options"]),
    )


def _webhook(row: sqlite3.Row) -> Webhook:
    return Webhook(
        id=row["id"], user_id=row["user_id"], url=row["url"], events=tuple(json.loads(row["events"])),
        secret=row["secret"], enabled=bool(row["enabled"]), disabled_reason=row["disabled_reason"],
        failing_since=row["failing_since"], created_at=row["created_at"],
    )


def _delivery(row: sqlite3.Row) -> Delivery:
    return Delivery(
        id=row["id"], webhook_id=row["webhook_id"], event=row["event"], payload=row["payload"],
        status=row["status"], attempts=row["attempts"], next_attempt_at=row["next_attempt_at"],
        last_status=row["last_status"], last_error=row["last_error"], created_at=row["created_at"],
        finished_at=row["finished_at"],
    )


_API_TOKEN_COLUMNS = (
    "t.id AS token_id, t.user_id, t.name, t.scope, t.created_at AS token_created_at, t.last_used_at, t.expires_at"
)


def _article(row: sqlite3.Row, lenses: dict[str, dict[str, Any]], tags: list[str]) -> Article:
    return Article(
        id=row["id"],
        seq=row["seq"],
        user_id=row["user_id"],
        title=row["title"],
        content=row["content"],
        url=row["url"],
        content_hash=row["content_hash"],
        analysis=_loads(row["analysis"]),
        meta_analysis=_loads(row["meta_analysis"]),
        lenses=lenses,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        excerpt=row["excerpt"],
        tokens=row["tokens"],
        fetch_status=row["fetch_status"],
        page_meta=_loads(row["page_meta"]),
        tags=tuple(tags),
        archived=bool(row["archived"]),
        favorite=bool(row["favorite"]),
    )


def _article_item(row: sqlite3.Row, tags: list[str]) -> ArticleItem:
    return ArticleItem(
        id=row["id"],
        seq=row["seq"],
        user_id=row["user_id"],
        title=row["title"],
        url=row["url"],
        content_hash=row["content_hash"],
        excerpt=row["excerpt"],
        analysis=_loads(row["analysis"]),
        meta_analysis=_loads(row["meta_analysis"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        fetch_status=row["fetch_status"],
        page_meta=_loads(row["page_meta"]),
        tags=tuple(tags),
        archived=bool(row["archived"]),
        favorite=bool(row["favorite"]),
    )


@dataclass(frozen=True)
class ArticleFilter:
    """What a list of articles is narrowed to (``None``: either way)."""

    tag_key: str | None = None
    archived: bool | None = None
    favorite: bool | None = None


@dataclass(frozen=True)
class StoredEvent:
    id: int
    user_id: str
    event: str
    data: dict[str, Any]
    created_at: str


#: An article with text to analyse: saved with it, or its page fetched.
_HAS_TEXT = "(fetch_status IS NULL OR fetch_status = 'fetched')"


def _task_query(task_id: str, user_id: str | None) -> tuple[str, tuple[Any, ...]]:
    if user_id is None:
        return "SELECT * FROM tasks WHERE id = ?", (task_id,)
    return "SELECT * FROM tasks WHERE id = ? AND user_id = ?", (task_id, user_id)


_TOKENS_USED = (
    "SELECT coalesce(sum(prompt_tokens + completion_tokens), 0) FROM usage"
    " WHERE user_id = ? AND day = ?"
)


class Reader:
    """Read-only queries on committed data (aiosqlite: one round trip each)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    # One round trip to the connection's thread per statement: execute and fetch
    # happen there together.
    async def _one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        rows = list(await self._conn.execute_fetchall(sql, tuple(params)))
        return rows[0] if rows else None

    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return list(await self._conn.execute_fetchall(sql, tuple(params)))

    async def _dicts(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        return [dict(row) for row in await self._all(sql, params)]

    async def user_by_name(self, username: str) -> User | None:
        row = await self._one("SELECT * FROM users WHERE username = ?", (username,))
        return _user(row) if row else None

    async def user(self, user_id: str) -> User | None:
        row = await self._one("SELECT * FROM users WHERE id = ?", (user_id,))
        return _user(row) if row else None

    async def users(self) -> list[User]:
        return [_user(row) for row in await self._all("SELECT * FROM users ORDER BY created_at, id")]

    async def has_users(self) -> bool:
        return await self._one("SELECT 1 FROM users LIMIT 1") is not None

    async def session_user(self, session_id: str, user_id: str, now: str) -> tuple[User, str] | None:
        """The user of an open session and when the session expires (one query)."""
        row = await self._one(
            "SELECT u.*, s.expires_at AS session_expires_at FROM sessions s JOIN users u ON u.id = s.user_id"
            " WHERE s.id = ? AND s.user_id = ? AND s.expires_at > ?",
            (session_id, user_id, now),
        )
        return (_user(row), row["session_expires_at"]) if row else None

    async def sessions(self, user_id: str, now: str) -> list[SessionRecord]:
        """The user's open sessions, most recently used first."""
        rows = await self._all(
            "SELECT * FROM sessions WHERE user_id = ? AND expires_at > ? ORDER BY last_used_at DESC, id",
            (user_id, now),
        )
        return [_session(row) for row in rows]

    async def api_token_user(self, digest: str, now: str) -> tuple[ApiTokenRecord, User] | None:
        """The unexpired API token with this digest and its user (one query)."""
        row = await self._one(
            f"SELECT {_API_TOKEN_COLUMNS}, u.* FROM api_tokens t JOIN users u ON u.id = t.user_id"
            " WHERE t.digest = ? AND (t.expires_at IS NULL OR t.expires_at > ?)",
            (digest, now),
        )
        return (_api_token(row), _user(row)) if row else None

    async def api_tokens(self, user_id: str) -> list[ApiTokenRecord]:
        """The user's API tokens (the expired ones too), newest first."""
        rows = await self._all(
            f"SELECT {_API_TOKEN_COLUMNS} FROM api_tokens t WHERE t.user_id = ? ORDER BY t.created_at DESC, t.id",
            (user_id,),
        )
        return [_api_token(row) for row in rows]

    async def user_settings(self, user_id: str) -> str | None:
        """The user's settings as stored (JSON; None: all defaults)."""
        row = await self._one("SELECT settings FROM user_settings WHERE user_id = ?", (user_id,))
        return None if row is None else str(row[0])

    async def batch(self, batch_id: str, user_id: str) -> Batch | None:
        row = await self._one("SELECT * FROM batches WHERE id = ? AND user_id = ? AND status != 'staging'",
                              (batch_id, user_id))
        return None if row is None else _batch(row)

    async def batches(self, user_id: str, kind: str, limit: int) -> list[Batch]:
        """The user's batches of ``kind``, newest first."""
        rows = await self._all(
            "SELECT * FROM batches WHERE user_id = ? AND kind = ? AND status != 'staging'"
            " ORDER BY created_at DESC, id LIMIT ?",
            (user_id, kind, limit),
        )
        return [_batch(row) for row in rows]

    async def enabled_webhooks(self) -> list[Webhook]:
        return [_webhook(row) for row in await self._all("SELECT * FROM webhooks WHERE enabled = 1")]

    async def webhooks(self, user_id: str) -> list[Webhook]:
        rows = await self._all("SELECT * FROM webhooks WHERE user_id = ? ORDER BY created_at, id", (user_id,))
        return [_webhook(row) for row in rows]

    async def webhook(self, webhook_id: str, user_id: str) -> Webhook | None:
        row = await self._one("SELECT * FROM webhooks WHERE id = ? AND user_id = ?", (webhook_id, user_id))
        return None if row is None else _webhook(row)

    async def deliveries(self, webhook_id: str, limit: int) -> list[Delivery]:
        """The webhook's deliveries, newest first."""
        rows = await self._all(
            "SELECT * FROM webhook_deliveries WHERE webhook_id = ? ORDER BY created_at DESC, id LIMIT ?",
            (webhook_id, limit),
        )
        return [_delivery(row) for row in rows]

    async def due_deliveries(self, now: str, limit: int) -> list[tuple[Delivery, Webhook]]:
        """Pending deliveries whose attempt is due, oldest due first, with their webhook."""
        rows = await self._all(
            "SELECT d.*, w.id AS w_id, w.user_id, w.url, w.events, w.secret, w.enabled, w.disabled_reason,"
            " w.failing_since, w.created_at AS w_created_at"
            " FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id"
            " WHERE d.status = 'pending' AND d.next_attempt_at <= ? ORDER BY d.next_attempt_at LIMIT ?",
            (now, limit),
        )
        return [
            (
                _delivery(row),
                Webhook(
                    id=row["w_id"], user_id=row["user_id"], url=row["url"], events=tuple(json.loads(row["events"])),
                    secret=row["secret"], enabled=bool(row["enabled"]), disabled_reason=row["disabled_reason"],
                    failing_since=row["failing_since"], created_at=row["w_created_at"],
                ),
            )
            for row in rows
        ]

    async def next_delivery_due(self, excluding: list[str]) -> str | None:
        """When the next pending delivery not in ``excluding`` (those being sent) is due."""
        marks = ",".join("?" * len(excluding))
        row = await self._one(
            f"SELECT min(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending' AND id NOT IN ({marks})",
            excluding,
        )
        return None if row is None else row[0]

    async def running_batches(self) -> list[Batch]:
        rows = await self._all("SELECT * FROM batches WHERE status = 'running' ORDER BY created_at, id")
        return [_batch(row) for row in rows]

    async def batch_tasks(self, batch_id: str) -> dict[str, int]:
        """How many of the tasks the batch submitted are in each status."""
        rows = await self._all("SELECT status, count(*) FROM tasks WHERE batch_id = ? GROUP BY status", (batch_id,))
        return {str(row[0]): int(row[1]) for row in rows}

    async def unfinished_batch_tasks(self, batch_id: str) -> list[str]:
        rows = await self._all(
            "SELECT id FROM tasks WHERE batch_id = ? AND status IN ('pending', 'running')", (batch_id,)
        )
        return [str(row[0]) for row in rows]

    async def analysis_history(self, user_id: str, task_types: Sequence[str]) -> list[AnalysisRun]:
        """The user's finished (completed or failed) runs of ``task_types`` about articles
        still saved, oldest first."""
        marks = ", ".join("?" * len(task_types))
        rows = await self._all(
            "SELECT t.article_id, t.task_type, t.status, t.input, t.input_hash FROM tasks t"
            " JOIN articles a ON a.id = t.article_id"
            f" WHERE t.user_id = ? AND t.task_type IN ({marks}) AND t.status IN ('completed', 'failed')"
            " ORDER BY t.finished_at, t.seq",
            (user_id, *task_types),
        )
        return [AnalysisRun(row[0], row[1], row[2], _loads(row[3]), row[4]) for row in rows]

    async def analysable_articles(self, user_id: str) -> list[str]:
        """The ids of the user's articles with text to analyse, oldest first."""
        rows = await self._all(
            f"SELECT id FROM articles WHERE user_id = ? AND {_HAS_TEXT} ORDER BY seq",
            (user_id,),
        )
        return [str(row[0]) for row in rows]

    async def next_batch_item(self, batch_id: str) -> tuple[int, str] | None:
        """The first item still to do: (position, item JSON)."""
        row = await self._one(
            "SELECT position, item FROM batch_items WHERE batch_id = ? ORDER BY position LIMIT 1", (batch_id,)
        )
        return None if row is None else (int(row[0]), str(row[1]))

    async def task(self, task_id: str, user_id: str | None = None) -> Task | None:
        """The task, or None; with ``user_id``, only when it is that user's."""
        row = await self._one(*_task_query(task_id, user_id))
        return _task(row) if row else None

    async def search(self, user_id: str, query: search.Query, limit: int, offset: int) -> list[search.Hit]:
        """The user's articles matching ``query``, best first: a page of ranks, then
        the text shown for that page only."""
        sql, params = search.page_sql(query, user_id, limit, offset)
        page = [(row[0], row[1]) for row in await self._all(sql, params)]
        if not page:
            return []
        rowids = [rowid for rowid, _ in page]
        rows = await self._all(
            search.shown_sql(len(rowids)),
            (search.FALLBACK_SNIPPET_CHARS, search.SNIPPET_TOKENS, query.any_part, *rowids, *rowids),
        )
        return search.hits(page, {row[0]: (row[1], row[2], row[3]) for row in rows})

    async def article(self, article_id: str, user_id: str) -> Article | None:
        """The user's article with its analyses and lens results, or None."""
        row = await self._one(
            "SELECT * FROM articles WHERE id = ? AND user_id = ?", (article_id, user_id)
        )
        if row is None:
            return None
        tags = await self._article_tags([row["seq"]])
        lenses = {
            r["lens_type"]: _loads(r["result"])
            for r in await self._all(
                "SELECT lens_type, result FROM article_lenses WHERE article_id = ?"
                " ORDER BY lens_type",
                (article_id,),
            )
        }
        return _article(row, lenses, tags.get(row["seq"], []))

    async def _article_tags(self, seqs: list[int]) -> dict[int, list[str]]:
        """The tag names of these articles (by seq), each list sorted by key."""
        if not seqs:
            return {}
        marks = ", ".join("?" * len(seqs))
        found: dict[int, list[str]] = {}
        for row in await self._all(
            "SELECT at.article_seq, t.name FROM article_tags at JOIN tags t ON t.id = at.tag_id"
            f" WHERE at.article_seq IN ({marks}) ORDER BY t.key",
            seqs,
        ):
            found.setdefault(row[0], []).append(row[1])
        return found

    async def tags(self, user_id: str) -> list[tuple[str, int]]:
        """The user's tags and how many articles carry each, by key."""
        rows = await self._all(
            "SELECT name, articles FROM tags WHERE user_id = ? ORDER BY key", (user_id,)
        )
        return [(row[0], row[1]) for row in rows]

    async def articles_after(self, user_id: str, after_seq: int, limit: int) -> list[Article]:
        """The user's articles saved after ``after_seq``, oldest first, in full with
        their lens results: an export reads a library a page at a time."""
        rows = await self._all(
            "SELECT * FROM articles WHERE user_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (user_id, after_seq, limit),
        )
        if not rows:
            return []
        ids = [row["id"] for row in rows]
        lenses: dict[str, dict[str, Any]] = {}
        for r in await self._all(
            f"SELECT article_id, lens_type, result FROM article_lenses WHERE article_id IN ({','.join('?' * len(ids))})"
            " ORDER BY lens_type",
            ids,
        ):
            lenses.setdefault(r["article_id"], {})[r["lens_type"]] = _loads(r["result"])
        tags = await self._article_tags([row["seq"] for row in rows])
        return [_article(row, lenses.get(row["id"], {}), tags.get(row["seq"], [])) for row in rows]

    async def highlights_of(self, user_id: str, article_ids: list[str]) -> dict[str, list[Highlight]]:
        """The highlights of these articles of the user, in text order, by article."""
        if not article_ids:
            return {}
        found: dict[str, list[Highlight]] = {}
        for row in await self._all(
            f"SELECT * FROM highlights WHERE user_id = ? AND article_id IN ({','.join('?' * len(article_ids))})"
            " ORDER BY article_id, position, seq",
            (user_id, *article_ids),
        ):
            found.setdefault(row["article_id"], []).append(_highlight(row))
        return found

    async def highlight(self, highlight_id: str, user_id: str) -> Highlight | None:
        row = await self._one("SELECT * FROM highlights WHERE id = ? AND user_id = ?", (highlight_id, user_id))
        return None if row is None else _highlight(row)

    async def insights_about(self, user_id: str, article_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The completed insights asked about these articles, oldest first, by article:
        ``{selected_text, question, insight, created_at}``."""
        if not article_ids:
            return {}
        found: dict[str, list[dict[str, Any]]] = {}
        for row in await self._all(
            "SELECT article_id, input, result, created_at FROM tasks"
            f" WHERE user_id = ? AND article_id IN ({','.join('?' * len(article_ids))})"
            " AND task_type = 'insight_generation' AND status = 'completed' ORDER BY seq",
            (user_id, *article_ids),
        ):
            asked, answer = _loads(row["input"]) or {}, _loads(row["result"]) or {}
            found.setdefault(row["article_id"], []).append({
                "selected_text": asked.get("selected_text"),
                "question": asked.get("question"),
                "highlight_id": asked.get("highlight_id"),
                "insight": answer.get("insight"),
                "created_at": row["created_at"],
            })
        return found

    async def tokens_used(self, user_id: str, day: str) -> int:
        row = await self._one(_TOKENS_USED, (user_id, day))
        assert row is not None
        return int(row[0])

    async def list_tasks(
        self,
        user_id: str,
        *,
        status: str | None,
        task_type: str | None,
        limit: int,
        before_seq: int | None,
    ) -> list[Task]:
        """The user's tasks, newest first, ``limit`` of them below ``before_seq``
        (without their ``input``: a list never shows it)."""
        sql = f"SELECT {_TASK_LIST_COLUMNS} FROM tasks WHERE user_id = ?"
        params: list[Any] = [user_id]
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        if task_type is not None:
            sql += " AND task_type = ?"
            params.append(task_type)
        if before_seq is not None:
            sql += " AND seq < ?"
            params.append(before_seq)
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(limit)
        return [_task(row) for row in await self._all(sql, params)]

    async def list_articles(
        self, user_id: str, *, limit: int, before_seq: int | None, only: ArticleFilter = ArticleFilter()
    ) -> list[ArticleItem]:
        """The user's articles, newest first: excerpts, not texts. With a tag, the list
        pages through that tag's links (``article_tags`` is keyed by tag and seq)."""
        columns = ", ".join(f"a.{c}" for c in _ARTICLE_LIST_COLUMNS)
        params: list[Any] = []
        if only.tag_key is None:
            sql = f"SELECT {columns} FROM articles a WHERE a.user_id = ?"
            order = "a.seq"
        else:
            sql = (
                f"SELECT {columns} FROM article_tags at JOIN articles a ON a.seq = at.article_seq"
                " WHERE at.tag_id = (SELECT id FROM tags WHERE user_id = ? AND key = ?)"
            )
            params.append(user_id)
            params.append(only.tag_key)
            sql += " AND a.user_id = ?"
            order = "at.article_seq"
        params.append(user_id)
        for column, value in (("archived", only.archived), ("favorite", only.favorite)):
            if value is not None:
                sql += f" AND a.{column} = ?"
                params.append(int(value))
        if before_seq is not None:
            sql += f" AND {order} < ?"
            params.append(before_seq)
        sql += f" ORDER BY {order} DESC LIMIT ?"
        params.append(limit)
        rows = await self._all(sql, params)
        tags = await self._article_tags([row["seq"] for row in rows])
        return [_article_item(row, tags.get(row["seq"], [])) for row in rows]

    async def unfinished_article_tasks(self, user_id: str, article_id: str) -> list[Task]:
        rows = await self._all(
            "SELECT * FROM tasks WHERE user_id = ? AND article_id = ?"
            " AND status IN ('pending', 'running')",
            (user_id, article_id),
        )
        return [_task(row) for row in rows]

    async def unfinished_tasks(self) -> list[QueuedTask]:
        """Every pending or running task, oldest first (for recovery at start): only
        what the scheduler needs, through the index of unfinished tasks, so 10,000 of
        them with large inputs load in milliseconds. The records are made on the
        database's thread, not on the loop."""
        async with self._conn.execute(
            "SELECT id, user_id, priority FROM tasks WHERE status IN ('pending', 'running')"
            " ORDER BY seq"
        ) as cursor:
            cursor.row_factory = _queued_task
            return cast(list[QueuedTask], await cursor.fetchall())

    async def events_after(self, user_id: str, after_id: int, limit: int) -> list[StoredEvent]:
        rows = await self._all(
            "SELECT * FROM events WHERE user_id = ? AND id > ? ORDER BY id LIMIT ?",
            (user_id, after_id, limit),
        )
        return [
            StoredEvent(r["id"], r["user_id"], r["event"], _loads(r["data"]), r["created_at"])
            for r in rows
        ]

    async def oldest_event_id(self) -> int | None:
        """The smallest event id still kept, or None when the log is empty."""
        row = await self._one("SELECT min(id) FROM events")
        return None if row is None else row[0]

    async def last_event_id(self) -> int:
        """The largest event id ever stored (pruned ones included)."""
        row = await self._one("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
        return int(row[0]) if row else 0

    async def meta(self, key: str) -> str | None:
        row = await self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    async def usage(self, user_id: str, since_day: str) -> list[dict[str, Any]]:
        return await self._dicts(
            "SELECT day, model, prompt_tokens, completion_tokens, tasks FROM usage"
            " WHERE user_id = ? AND day >= ? ORDER BY day DESC, model",
            (user_id, since_day),
        )

    async def task_counts(self, user_id: str, since: str) -> list[dict[str, Any]]:
        """Tasks created since ``since`` per UTC day, type and status."""
        return await self._dicts(
            "SELECT substr(created_at, 1, 10) AS day, task_type, status, count(*) AS count"
            " FROM tasks WHERE user_id = ? AND created_at >= ?"
            " GROUP BY day, task_type, status ORDER BY day DESC, task_type, status",
            (user_id, since),
        )

    # -- operator queries (insightreader admin) -------------------------------------------

    async def queue_depth(self) -> dict[str, Any]:
        """Unfinished tasks of every user: pending and running counts, and when the
        oldest pending one was created."""
        row = await self._one(
            "SELECT count(*) FILTER (WHERE status = 'pending') AS pending,"
            " count(*) FILTER (WHERE status = 'running') AS running,"
            " min(created_at) FILTER (WHERE status = 'pending') AS oldest_pending_at"
            " FROM tasks WHERE status IN ('pending', 'running')"
        )
        assert row is not None
        return dict(row)

    async def task_counts_all(self, since: str) -> list[dict[str, Any]]:
        """Tasks of every user created at or after ``since``, per type and status."""
        return await self._dicts(
            "SELECT task_type, status, count(*) AS count FROM tasks WHERE created_at >= ?"
            " GROUP BY task_type, status ORDER BY task_type, status",
            (since,),
        )

    async def failure_counts(self, since: str) -> list[dict[str, Any]]:
        """Failed tasks finished at or after ``since``, per error code and task type."""
        return await self._dicts(
            "SELECT coalesce(json_extract(error, '$.code'), 'unknown') AS code, task_type,"
            " count(*) AS count FROM tasks WHERE status = 'failed' AND finished_at >= ?"
            " GROUP BY code, task_type ORDER BY count DESC, code, task_type",
            (since,),
        )

    async def usage_by_user(self, since_day: str) -> list[dict[str, Any]]:
        """Tokens and tasks from the usage ledger per user, UTC days from ``since_day``."""
        return await self._dicts(
            "SELECT u.user_id, users.username, sum(u.prompt_tokens) AS prompt_tokens,"
            " sum(u.completion_tokens) AS completion_tokens, sum(u.tasks) AS tasks"
            " FROM usage u LEFT JOIN users ON users.id = u.user_id WHERE u.day >= ?"
            " GROUP BY u.user_id"
            " ORDER BY sum(u.prompt_tokens + u.completion_tokens) DESC, users.username",
            (since_day,),
        )

    async def failed_tasks(self, since: str) -> list[Task]:
        """Failed tasks of every user finished at or after ``since``, oldest first."""
        rows = await self._all(
            "SELECT * FROM tasks WHERE status = 'failed' AND finished_at >= ? ORDER BY seq",
            (since,),
        )
        return [_task(row) for row in rows]


@dataclass
class Tx:
    """One write job's view of the open transaction. Synchronous: a job runs on the
    writer's thread with the rest of its batch, so it may only use these methods (and
    plain computation); it cannot await anything."""

    _conn: sqlite3.Connection
    _committed: list[Callable[[], None]] = field(default_factory=list)
    _rolled_back: list[Callable[[], None]] = field(default_factory=list)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` (synchronously, on the loop) once this job is durable."""
        self._committed.append(callback)

    def on_rollback(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` (on the loop) if this job's changes are rolled back."""
        self._rolled_back.append(callback)

    def _execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        return self._conn.execute(sql, tuple(params)).rowcount

    def _one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._conn.execute(sql, tuple(params)).fetchone()
        return row

    # -- reads inside the transaction -------------------------------------------

    def task(self, task_id: str, user_id: str | None = None) -> Task | None:
        row = self._one(*_task_query(task_id, user_id))
        return _task(row) if row else None

    def idempotency_key(self, user_id: str, key: str) -> tuple[str, Task] | None:
        """The input hash a key was first used with, and the task that answered it."""
        row = self._one(
            "SELECT k.input_hash AS key_hash, t.* FROM idempotency_keys k"
            " JOIN tasks t ON t.id = k.task_id WHERE k.user_id = ? AND k.key = ?",
            (user_id, key),
        )
        return None if row is None else (row["key_hash"], _task(row))

    def completed_task(self, user_id: str, input_hash: str, since: str) -> Task | None:
        """The newest completed task with this hash finished at or after ``since``."""
        row = self._one(
            "SELECT * FROM tasks WHERE user_id = ? AND input_hash = ? AND status = 'completed'"
            " AND finished_at >= ? ORDER BY finished_at DESC LIMIT 1",
            (user_id, input_hash, since),
        )
        return _task(row) if row else None

    def active_task(self, user_id: str, input_hash: str) -> Task | None:
        row = self._one(
            "SELECT * FROM tasks WHERE user_id = ? AND input_hash = ?"
            " AND status IN ('pending', 'running')",
            (user_id, input_hash),
        )
        return _task(row) if row else None

    def user_settings(self, user_id: str) -> str | None:
        row = self._one("SELECT settings FROM user_settings WHERE user_id = ?", (user_id,))
        return None if row is None else str(row[0])

    def set_user_settings(self, user_id: str, settings: str, now: str) -> None:
        self._execute(
            "INSERT INTO user_settings (user_id, settings, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (user_id) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at",
            (user_id, settings, now),
        )

    def has_users(self) -> bool:
        return self._one("SELECT 1 FROM users LIMIT 1") is not None

    def session(self, session_id: str, user_id: str) -> SessionRecord | None:
        row = self._one("SELECT * FROM sessions WHERE id = ? AND user_id = ?", (session_id, user_id))
        return _session(row) if row else None

    def article_tokens(self, article_id: str) -> int | None:
        """An article's estimated size in tokens (without reading its text)."""
        row = self._one("SELECT tokens FROM articles WHERE id = ?", (article_id,))
        return None if row is None else int(row[0])

    def article_exists(self, article_id: str, user_id: str) -> bool:
        return self._one("SELECT 1 FROM articles WHERE id = ? AND user_id = ?", (article_id, user_id)) is not None

    def article_ref_by_hash(self, user_id: str, content_hash: str) -> tuple[str, str] | None:
        """The id and title of the user's article with this content, if saved."""
        row = self._one(
            "SELECT id, title FROM articles WHERE user_id = ? AND content_hash = ?",
            (user_id, content_hash),
        )
        return None if row is None else (str(row[0]), str(row[1]))

    def article_ref_by_url(self, user_id: str, url_key: str) -> tuple[str, str, str | None] | None:
        """The id, title and fetch status of the user's article saved from this
        (normalised) URL, if saved."""
        row = self._one(
            "SELECT id, title, fetch_status FROM articles WHERE user_id = ? AND url_key = ?",
            (user_id, url_key),
        )
        return None if row is None else (str(row[0]), str(row[1]), row[2])

    def index_search_backlog(self, limit: int) -> int:
        """Index up to ``limit`` articles saved before the search index existed; how
        many are left."""
        return search.index_backlog(self._conn, limit)

    def tag_names(self, user_id: str, limit: int) -> list[str]:
        """The user's ``limit`` most used tag names (most used first, then by key)."""
        rows = self._conn.execute(
            "SELECT name FROM tags WHERE user_id = ? ORDER BY articles DESC, key LIMIT ?",
            (user_id, limit),
        ).fetchall()
        return [str(row[0]) for row in rows]

    def library_usage(self, user_id: str) -> tuple[int, int]:
        """The user's stored articles and their bytes (title and text, UTF-8)."""
        row = self._one(
            "SELECT articles, bytes FROM library_usage WHERE user_id = ?", (user_id,)
        )
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    def unfinished_reservations(self, user_id: str) -> dict[str, int]:
        """Tokens reserved by each of the user's unfinished tasks, by task id."""
        rows = self._conn.execute(
            "SELECT id, reserved_tokens FROM tasks"
            " WHERE user_id = ? AND status IN ('pending', 'running')",
            (user_id,),
        )
        return {str(r[0]): int(r[1]) for r in rows}

    def count_unfinished(self, user_id: str) -> int:
        """The user's pending and running tasks (a counter the triggers of migration
        0006 keep: one row, however long the queue)."""
        row = self._one("SELECT tasks FROM unfinished_counts WHERE user_id = ?", (user_id,))
        return 0 if row is None else int(row[0])

    def tokens_used(self, user_id: str, day: str) -> int:
        row = self._one(_TOKENS_USED, (user_id, day))
        assert row is not None
        return int(row[0])

    # -- writes --------------------------------------------------------------------

    def insert_user(self, user: User) -> bool:
        """Insert a user; False when the name (case-insensitively) is taken."""
        return (
            self._execute(
                "INSERT INTO users (id, username, password_hash, is_admin, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (user.id, user.username, user.password_hash, int(user.is_admin), user.created_at),
            )
            == 1
        )

    def set_password(self, user_id: str, password_hash: str) -> None:
        self._execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))

    def insert_session(self, session: SessionRecord, *, keep: int) -> None:
        """Open a session; drop the user's expired ones, and the least recently used
        beyond ``keep``."""
        self._execute(
            "INSERT INTO sessions (id, user_id, created_at, last_used_at, user_agent, address,"
            " refresh_digest, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                session.id,
                session.user_id,
                session.created_at,
                session.last_used_at,
                session.user_agent,
                session.address,
                session.refresh_digest,
                session.expires_at,
            ),
        )
        self._execute(
            "DELETE FROM sessions WHERE user_id = ? AND (expires_at <= ? OR id NOT IN"
            " (SELECT id FROM sessions WHERE user_id = ? ORDER BY last_used_at DESC, id LIMIT ?))",
            (session.user_id, session.created_at, session.user_id, keep),
        )

    def rotate_session(self, session_id: str, refresh_digest: str, expires_at: str, now: str) -> None:
        self._execute(
            "UPDATE sessions SET refresh_digest = ?, expires_at = ?, last_used_at = ? WHERE id = ?",
            (refresh_digest, expires_at, now, session_id),
        )

    def delete_session(self, session_id: str, user_id: str) -> bool:
        return self._execute("DELETE FROM sessions WHERE id = ? AND user_id = ?", (session_id, user_id)) == 1

    def delete_sessions_except(self, user_id: str, keep_id: str) -> int:
        return self._execute("DELETE FROM sessions WHERE user_id = ? AND id != ?", (user_id, keep_id))

    def count_api_tokens(self, user_id: str) -> int:
        row = self._one("SELECT count(*) AS n FROM api_tokens WHERE user_id = ?", (user_id,))
        return int(row["n"]) if row else 0

    def insert_api_token(self, token: ApiTokenRecord, digest: str) -> None:
        self._execute(
            "INSERT INTO api_tokens (id, user_id, name, scope, digest, created_at, last_used_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (token.id, token.user_id, token.name, token.scope, digest, token.created_at, token.last_used_at, token.expires_at),
        )

    def delete_api_token(self, token_id: str, user_id: str) -> bool:
        return self._execute("DELETE FROM api_tokens WHERE id = ? AND user_id = ?", (token_id, user_id)) == 1

    def touch_api_tokens(self, used: dict[str, str]) -> None:
        """Set ``last_used_at`` of each token id to its time (a revoked one is gone: no-op)."""
        for token_id, at in used.items():
            self._execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (at, token_id))

    def insert_task(self, task: NewTask) -> Task | None:
        """Insert a pending task; None when an unfinished task with the same hash exists."""
        row = self._one(
            "INSERT INTO tasks (id, user_id, task_type, status, priority, input, input_hash,"
            " article_id, metadata, created_at, reserved_tokens, batch_id)"
            " VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING *",
            (
                task.id,
                task.user_id,
                task.task_type,
                task.priority,
                to_json(task.input),
                task.input_hash,
                task.article_id,
                to_json(task.metadata),
                task.created_at,
                task.reserved_tokens,
                task.batch_id,
            ),
        )
        return _task(row) if row else None

    def record_idempotency_key(
        self, user_id: str, key: str, input_hash: str, task_id: str, now: str
    ) -> None:
        self._execute(
            "INSERT INTO idempotency_keys (user_id, key, input_hash, task_id, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (user_id, key, input_hash, task_id, now),
        )

    def _update_task(self, sql: str, params: Iterable[Any]) -> Task | None:
        row = self._one(sql + " RETURNING *", params)
        return _task(row) if row else None

    def start_task(self, task_id: str, now: str) -> Task | None:
        """pending → running with ``attempts`` raised; None unless it was pending."""
        return self._update_task(
            "UPDATE tasks SET status = 'running', attempts = attempts + 1, started_at = ?,"
            " finished_at = NULL WHERE id = ? AND status = 'pending'",
            (now, task_id),
        )

    def finish_task(
        self,
        task_id: str,
        status: TaskStatus,
        now: str,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        model: str | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        from_statuses: tuple[str, ...] = ("running",),
    ) -> Task | None:
        """Move an unfinished task to a final status; None unless it was in ``from_statuses``."""
        marks = ", ".join("?" for _ in from_statuses)
        return self._update_task(
            "UPDATE tasks SET status = ?, finished_at = ?, result = ?, error = ?,"
            " model = coalesce(?, model), prompt_tokens = prompt_tokens + ?,"
            " completion_tokens = completion_tokens + ?"
            f" WHERE id = ? AND status IN ({marks})",
            (
                status.value,
                now,
                None if result is None else to_json(result),
                None if error is None else to_json(error),
                model,
                prompt_tokens,
                completion_tokens,
                task_id,
                *from_statuses,
            ),
        )

    def requeue_task(self, task_id: str, *, excuse: bool) -> Task | None:
        """running → pending (interrupted by shutdown, deferral, or found running at start).
        ``excuse`` keeps the interrupted run from counting against ``max_attempts``."""
        return self._update_task(
            "UPDATE tasks SET status = 'pending', started_at = NULL,"
            " attempts_excused = attempts_excused + ? WHERE id = ? AND status = 'running'",
            (int(excuse), task_id),
        )

    def retry_task(self, task_id: str, user_id: str) -> Task | None:
        """failed/cancelled → pending, its past runs excused; None if not allowed (also
        when an identical task is unfinished: OR IGNORE skips the unique-index clash)."""
        return self._update_task(
            "UPDATE OR IGNORE tasks SET status = 'pending', attempts_excused = attempts, result = NULL,"
            " error = NULL, started_at = NULL, finished_at = NULL"
            " WHERE id = ? AND user_id = ? AND status IN ('failed', 'cancelled')",
            (task_id, user_id),
        )

    def requeue_interrupted(self) -> int:
        """At start: tasks left running by a dead process go back to pending (their
        attempt stays counted, so a task that kills the process cannot loop)."""
        return self._execute(
            "UPDATE tasks SET status = 'pending', started_at = NULL WHERE status = 'running'"
        )

    def insert_article(self, article: Article, url_key: str | None = None) -> bool:
        """Insert an article (with the normalised URL it came from, when known); False
        when the user already saved this content."""
        return (
            self._execute(
                "INSERT INTO articles (id, user_id, title, content, url, content_hash,"
                " excerpt, tokens, created_at, updated_at, url_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (user_id, content_hash) DO NOTHING",
                (
                    article.id,
                    article.user_id,
                    article.title,
                    article.content,
                    article.url,
                    article.content_hash,
                    article.excerpt,
                    article.tokens,
                    article.created_at,
                    article.updated_at,
                    url_key,
                ),
            )
            == 1
        )

    # -- webhooks -----------------------------------------------------------

    def count_webhooks(self, user_id: str) -> int:
        row = self._one("SELECT count(*) FROM webhooks WHERE user_id = ?", (user_id,))
        return 0 if row is None else int(row[0])

    def insert_webhook(self, webhook: Webhook) -> None:
        self._execute(
            "INSERT INTO webhooks (id, user_id, url, events, secret, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (webhook.id, webhook.user_id, webhook.url, json.dumps(list(webhook.events)), webhook.secret,
             webhook.created_at),
        )

    def delete_webhook(self, webhook_id: str, user_id: str) -> bool:
        return self._execute("DELETE FROM webhooks WHERE id = ? AND user_id = ?", (webhook_id, user_id)) == 1

    def insert_delivery(self, delivery: Delivery) -> None:
        self._execute(
            "INSERT INTO webhook_deliveries (id, webhook_id, event, payload, status, next_attempt_at, created_at)"
            " VALUES (?, ?, ?, ?, 'pending', ?, ?)",
            (delivery.id, delivery.webhook_id, delivery.event, delivery.payload, delivery.next_attempt_at,
             delivery.created_at),
        )

    def record_attempt(
        self, delivery_id: str, *, status: str, next_attempt_at: str | None, last_status: int | None,
        last_error: str | None, finished_at: str | None,
    ) -> None:
        self._execute(
            "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, next_attempt_at = ?,"
            " last_status = ?, last_error = ?, finished_at = ? WHERE id = ? AND status = 'pending'",
            (status, next_attempt_at, last_status, last_error, finished_at, delivery_id),
        )

    def set_webhook_failing(self, webhook_id: str, since: str | None) -> None:
        """Mark the webhook failing since ``since`` (kept if already failing), or healthy (None)."""
        self._execute(
            "UPDATE webhooks SET failing_since = CASE WHEN ? IS NULL THEN NULL ELSE coalesce(failing_since, ?) END"
            " WHERE id = ?",
            (since, since, webhook_id),
        )

    def disable_webhook(self, webhook_id: str, reason: str, now: str) -> None:
        """Disable the webhook; its pending deliveries fail with the reason."""
        self._execute("UPDATE webhooks SET enabled = 0, disabled_reason = ? WHERE id = ?", (reason, webhook_id))
        self._execute(
            "UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL, last_error = ?,"
            " finished_at = ? WHERE webhook_id = ? AND status = 'pending'",
            (reason, now, webhook_id),
        )

    def prune_deliveries(self, before: str) -> int:
        """Finished deliveries older than ``before``: the log does not grow without bound."""
        return self._execute(
            "DELETE FROM webhook_deliveries WHERE status != 'pending' AND finished_at < ?", (before,)
        )

    # -- batches ------------------------------------------------------------

    def insert_batch(self, batch: Batch) -> None:
        self._execute(
            "INSERT INTO batches (id, user_id, kind, format, options, status, total, duplicates, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (batch.id, batch.user_id, batch.kind, batch.format, None if batch.options is None else to_json(batch.options),
             batch.status, batch.total, batch.duplicates, batch.created_at),
        )

    def stage_batch_items(self, batch_id: str, items: list[tuple[int, str]]) -> None:
        """Add (position, item JSON) pairs to the batch's items to do."""
        self._conn.executemany(
            "INSERT INTO batch_items (batch_id, position, item) VALUES (?, ?, ?)",
            [(batch_id, position, item) for position, item in items],
        )

    def set_batch_status(self, batch_id: str, status: str) -> None:
        self._execute("UPDATE batches SET status = ? WHERE id = ?", (status, batch_id))

    def drop_staging_batches(self) -> int:
        """Batches whose request died while storing their items (never answered)."""
        return self._execute("DELETE FROM batches WHERE status = 'staging'")

    def take_batch_item(self, batch_id: str, position: int) -> bool:
        """Remove the item from the batch's items to do; False when it is not there (done
        meanwhile, or its batch cancelled): then nothing of it may be done."""
        return self._execute("DELETE FROM batch_items WHERE batch_id = ? AND position = ?", (batch_id, position)) == 1

    def count_batch_item(self, batch_id: str, outcome: str, error: str | None, now: str) -> Batch:
        """Count an item taken (``outcome``: ``done``, ``failed`` or ``duplicates``, the
        counter it adds to); the batch finished when it was the last one."""
        assert outcome in ("done", "failed", "duplicates")
        row = self._one(
            f"UPDATE batches SET {outcome} = {outcome} + 1, last_error = coalesce(?, last_error),"
            " status = CASE WHEN done + failed + duplicates + 1 >= total THEN 'finished' ELSE status END,"
            " finished_at = CASE WHEN done + failed + duplicates + 1 >= total THEN ? ELSE finished_at END"
            " WHERE id = ? RETURNING *",
            (error, now, batch_id),
        )
        assert row is not None
        return _batch(row)

    def cancel_batch(self, batch_id: str, user_id: str, now: str) -> tuple[Batch, bool] | None:
        """Drop the items still to do of the user's batch and mark it cancelled, unless it
        had ended (every item done and every task it queued ended): the batch after, and
        whether this cancelled it; None when the user has no such batch."""
        row = self._one(
            "UPDATE batches SET status = 'cancelled', finished_at = ? WHERE id = ? AND user_id = ?"
            " AND (status = 'running' OR status = 'finished' AND EXISTS (SELECT 1 FROM tasks"
            " WHERE batch_id = batches.id AND status IN ('pending', 'running'))) RETURNING *",
            (now, batch_id, user_id),
        )
        if row is None:
            found = self._one("SELECT * FROM batches WHERE id = ? AND user_id = ? AND status != 'staging'",
                              (batch_id, user_id))
            return None if found is None else (_batch(found), False)
        self._execute("DELETE FROM batch_items WHERE batch_id = ?", (batch_id,))
        return _batch(row), True

    def article_to_analyse(self, article_id: str, user_id: str) -> tuple[str, str] | None:
        """(content hash, title) of the user's article when it has text to analyse."""
        row = self._one(
            f"SELECT content_hash, title FROM articles WHERE id = ? AND user_id = ? AND {_HAS_TEXT}",
            (article_id, user_id),
        )
        return None if row is None else (str(row[0]), str(row[1]))

    def insert_url_article(self, article: Article, url_key: str) -> None:
        """Insert an article saved from a URL, still to be fetched (``fetch_status``
        ``fetching``, no text yet)."""
        self._execute(
            "INSERT INTO articles (id, user_id, title, content, url, content_hash, excerpt,"
            " tokens, created_at, updated_at, url_key, fetch_status)"
            " VALUES (?, ?, ?, '', ?, ?, '', 0, ?, ?, ?, 'fetching')",
            (
                article.id,
                article.user_id,
                article.title,
                article.url,
                article.content_hash,
                article.created_at,
                article.updated_at,
                url_key,
            ),
        )

    def set_fetch_status(self, article_id: str, status: str, now: str, *, only_from: str | None = None) -> None:
        """Set the article's fetch status (only when it is ``only_from``, if given)."""
        self._execute(
            "UPDATE articles SET fetch_status = ?, updated_at = ? WHERE id = ? AND (? IS NULL OR fetch_status = ?)",
            (status, now, article_id, only_from, only_from),
        )

    def fill_fetched_article(self, article: Article) -> bool:
        """Store what a fetch found on an article saved from its URL; False when the
        article was deleted meanwhile."""
        return (
            self._execute(
                "UPDATE articles SET title = ?, content = ?, excerpt = ?, tokens = ?,"
                " page_meta = ?, fetch_status = 'fetched', updated_at = ? WHERE id = ?",
                (
                    article.title,
                    article.content,
                    article.excerpt,
                    article.tokens,
                    to_json(article.page_meta),
                    article.updated_at,
                    article.id,
                ),
            )
            == 1
        )

    def set_article_analysis(
        self, article_id: str, field: str, value: dict[str, Any], now: str
    ) -> None:
        """Store an article's ``analysis`` or ``meta_analysis``."""
        column = {"analysis": "analysis", "meta_analysis": "meta_analysis"}[field]
        self._execute(
            f"UPDATE articles SET {column} = ?, updated_at = ? WHERE id = ?",
            (to_json(value), now, article_id),
        )

    def set_article_lens(
        self, article_id: str, lens_type: str, result: dict[str, Any], now: str
    ) -> None:
        """Store a lens result on its article (nothing when the article was deleted)."""
        self._execute(
            "INSERT INTO article_lenses (article_id, lens_type, result, updated_at)"
            " SELECT id, ?, ?, ? FROM articles WHERE id = ?"
            " ON CONFLICT (article_id, lens_type) DO UPDATE SET"
            " result = excluded.result, updated_at = excluded.updated_at",
            (lens_type, to_json(result), now, article_id),
        )

    def insert_highlight(self, highlight: Highlight) -> None:
        self._execute(
            "INSERT INTO highlights (id, user_id, article_id, quote, prefix, suffix, position, note,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (highlight.id, highlight.user_id, highlight.article_id, highlight.quote, highlight.prefix,
             highlight.suffix, highlight.position, highlight.note, highlight.created_at, highlight.updated_at),
        )

    def set_highlight_note(self, highlight_id: str, user_id: str, note: str, now: str) -> Highlight | None:
        row = self._one(
            "UPDATE highlights SET note = ?, updated_at = ? WHERE id = ? AND user_id = ? RETURNING *",
            (note, now, highlight_id, user_id),
        )
        return None if row is None else _highlight(row)

    def delete_highlight(self, highlight_id: str, user_id: str) -> bool:
        return self._execute("DELETE FROM highlights WHERE id = ? AND user_id = ?", (highlight_id, user_id)) == 1

    def set_article_tags(
        self, article_id: str, user_id: str, tags: list[tuple[str, str]], now: str
    ) -> list[str] | None:
        """Make ``tags`` ((key, name) pairs) the article's whole set of tags, creating
        the user's missing ones; the names it then carries, or None when the user has
        no such article. Links are added before the removed ones go, so a tag kept
        under another spelling keeps its first one."""
        row = self._one("SELECT seq FROM articles WHERE id = ? AND user_id = ?", (article_id, user_id))
        if row is None:
            return None
        seq = int(row[0])
        tag_ids: list[int] = []
        for key, name in tags:
            self._execute(
                "INSERT INTO tags (user_id, name, key, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (user_id, key) DO NOTHING",
                (user_id, name, key, now),
            )
            found = self._one("SELECT id FROM tags WHERE user_id = ? AND key = ?", (user_id, key))
            assert found is not None
            tag_ids.append(int(found[0]))
            self._execute(
                "INSERT INTO article_tags (tag_id, article_seq) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (tag_ids[-1], seq),
            )
        marks = ", ".join("?" * len(tag_ids))
        self._execute(
            f"DELETE FROM article_tags WHERE article_seq = ? AND tag_id NOT IN ({marks})",
            (seq, *tag_ids),
        )
        self._execute("UPDATE articles SET updated_at = ? WHERE seq = ?", (now, seq))
        rows = self._conn.execute(
            "SELECT t.name FROM article_tags at JOIN tags t ON t.id = at.tag_id"
            " WHERE at.article_seq = ? ORDER BY t.key",
            (seq,),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def update_article(
        self,
        article_id: str,
        user_id: str,
        *,
        title: str | None,
        archived: bool | None,
        favorite: bool | None,
        now: str,
    ) -> bool:
        """Change what is given (``None``: leave it); False when the user has no such article."""
        return (
            self._execute(
                "UPDATE articles SET title = coalesce(?, title),"
                " archived = coalesce(?, archived), favorite = coalesce(?, favorite),"
                " updated_at = ? WHERE id = ? AND user_id = ?",
                (
                    title,
                    None if archived is None else int(archived),
                    None if favorite is None else int(favorite),
                    now,
                    article_id,
                    user_id,
                ),
            )
            == 1
        )

    def delete_article(self, article_id: str, user_id: str) -> bool:
        return (
            self._execute(
                "DELETE FROM articles WHERE id = ? AND user_id = ?", (article_id, user_id)
            )
            == 1
        )

    def add_usage(
        self, user_id: str, day: str, model: str, prompt_tokens: int, completion_tokens: int
    ) -> None:
        self._execute(
            "INSERT INTO usage (user_id, day, model, prompt_tokens, completion_tokens, tasks)"
            " VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (user_id, day, model) DO UPDATE SET"
            " prompt_tokens = prompt_tokens + excluded.prompt_tokens,"
            " completion_tokens = completion_tokens + excluded.completion_tokens,"
            " tasks = tasks + 1",
            (user_id, day, model, prompt_tokens, completion_tokens),
        )

    def insert_event(
        self, event_id: int, user_id: str, event: str, data: dict[str, Any], now: str
    ) -> None:
        self._execute(
            "INSERT INTO events (id, user_id, event, data, created_at) VALUES (?, ?, ?, ?, ?)",
            (event_id, user_id, event, to_json(data), now),
        )

    def prune_events(self, before: str) -> int:
        return self._execute("DELETE FROM events WHERE created_at < ?", (before,))

    def set_meta(self, key: str, value: str) -> None:
        self._execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


@dataclass
class _Job(Generic[T]):
    fn: Callable[[Tx], T]
    future: asyncio.Future[T]


#: Files and folders the server creates are its owner's only, whatever the umask:
#: they hold every user's articles, password hashes and the token signing secret.
PRIVATE_FILE, PRIVATE_DIR = 0o600, 0o700


def private_dir(path: Path) -> None:
    """Create ``path`` and any missing parent with mode 0700 (existing ones are left
    as they are: their owner chose)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        os.chmod(folder, PRIVATE_DIR)


def private_file(path: Path) -> int:
    """Create ``path`` empty with mode 0600 and open it for writing (FileExistsError if
    it exists). SQLite gives a database's WAL and SHM files its database's mode."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    os.fchmod(fd, PRIVATE_FILE)
    return fd


@dataclass
class _Run:
    """One job's run inside a batch: its transaction view and outcome."""

    job: _Job[Any]
    tx: Tx
    value: Any = None
    failure: BaseException | None = None


@dataclass
class _Batch:
    """What the writer's thread did with a batch."""

    jobs: list[_Job[Any]]
    runs: list[_Run]
    #: Set when the transaction itself failed (BEGIN, a savepoint, COMMIT): every job
    #: of the batch is undone.
    error: BaseException | None = None
    seconds: float = 0.0


def _pragmas(settings: DatabaseSettings) -> list[str]:
    return [
        f"PRAGMA busy_timeout = {int(settings.busy_timeout * 1000)}",
        f"PRAGMA synchronous = {settings.synchronous}",
        "PRAGMA foreign_keys = ON",
    ]


async def _connect(path: Path, settings: DatabaseSettings, *, query_only: bool) -> aiosqlite.Connection:
    if not path.exists():
        os.close(private_file(path))  # an empty file is an empty database
    conn = await aiosqlite.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    for pragma in _pragmas(settings):
        await conn.execute(pragma)
    if query_only:
        await conn.execute("PRAGMA query_only = ON")
    return conn


def _connect_writer(path: Path, settings: DatabaseSettings) -> sqlite3.Connection:
    """The writer's connection, opened on (and only ever used from) the writer thread."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    for pragma in _pragmas(settings):
        conn.execute(pragma)
    return conn


def _run_batch(conn: sqlite3.Connection, jobs: list[_Job[Any]]) -> _Batch:
    """On the writer thread: one transaction for the batch. A failing job rolls back
    alone (to its savepoint); a failure of the transaction itself fails the whole
    batch, and the writer goes on with the next one."""
    started = time.perf_counter()
    # A job alone in its batch needs no savepoint: its failure rolls back the
    # transaction (two statements fewer on the common, unloaded path).
    isolated = len(jobs) > 1
    runs: list[_Run] = []
    try:
        conn.execute("BEGIN IMMEDIATE")
        for job in jobs:
            run = _Run(job, Tx(conn))
            runs.append(run)
            if isolated:
                conn.execute("SAVEPOINT job")
            try:
                run.value = job.fn(run.tx)
            except Exception as exc:  # one job's failure is its own; the batch goes on
                run.failure = translate(exc) if isinstance(exc, sqlite3.Error) else exc
                if isolated:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                elif conn.in_transaction:
                    conn.execute("ROLLBACK")
            else:
                if isolated:
                    conn.execute("RELEASE job")
        if conn.in_transaction:
            search.reindex_dirty(conn)  # what the batch changed, in its transaction
            conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if runs:
            log.error("a transaction of %d write jobs failed: %s", len(jobs), exc)
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        # SQLite may have rolled back by itself (a full disk, I/O error): the batch
        # fails with the storage error a job met, if one did.
        error = next(
            (r.failure for r in runs if isinstance(r.failure, (StorageBusy, StorageFull))), None
        ) or translate(exc)
        return _Batch(jobs, runs, error)
    return _Batch(jobs, runs, seconds=time.perf_counter() - started)


def _answer(job: _Job[Any], value: Any = None, failure: BaseException | None = None) -> None:
    """Settle a caller's future unless it is settled already (cancelled, say)."""
    if job.future.done():
        return
    if failure is None:
        job.future.set_result(value)
    else:
        job.future.set_exception(failure)


def _call_each(callbacks: Iterable[Callable[[], None]], when: str) -> None:
    """Run transaction callbacks; one that raises is logged and the rest still run, so
    a bug in a callback never stops the writer (every later write would wait)."""
    for callback in callbacks:
        try:
            callback()
        except Exception:
            log.exception("an %s callback failed; the write stands and the writer goes on", when)


def _writer_gone() -> ShuttingDown:
    return ShuttingDown("the database writer stopped; the server is restarting, try again shortly")


class Store:
    """The storage interface. Open with :meth:`open`, close with :meth:`close`."""

    def __init__(self, settings: DatabaseSettings, *, supervisor: Supervisor | None = None) -> None:
        if settings.url:
            raise ConfigError(
                "the server does not run on PostgreSQL yet: `insightreader migrate` prepares"
                " its schema, serving follows (docs/scale-out.md); leave database.url empty"
            )
        self.settings = settings
        self._supervisor = supervisor or Supervisor()
        self.path = settings.path
        self._thread: ThreadPoolExecutor | None = None
        self._writer: sqlite3.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._queue: asyncio.Queue[_Job[Any]] = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None
        #: Observed for metrics: size of each committed batch and its commit time.
        self.on_commit: Callable[[int, float], None] | None = None

    @property
    def read(self) -> Reader:
        """Queries on committed data (never blocked by writes)."""
        assert self._reader is not None, "store is not open"
        return Reader(self._reader)

    async def open(self) -> None:
        """Switch to WAL, apply pending migrations, open the writer and the reader."""
        try:
            setup = await _connect(self.path, self.settings, query_only=False)
            try:
                async with setup.execute("PRAGMA journal_mode = WAL") as cur:
                    row = await cur.fetchone()
                if row is None or str(row[0]).lower() != "wal":
                    raise RuntimeError(f"could not switch {self.path} to WAL mode")
                applied = await migrate.apply(setup)
                for statement in search.DEFER_DIRTY:
                    await setup.execute(statement)
            finally:
                await setup.close()
            for migration in applied:
                log.info("applied migration %04d_%s", migration.version, migration.name)
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
            self._writer = await self._on_writer_thread(_connect_writer, self.path, self.settings)
            self._reader = await _connect(self.path, self.settings, query_only=True)
        except BaseException:
            await self.close()
            raise
        self._writer_task = self._supervisor.start(self._write_loop(), name="store-writer")

    async def _on_writer_thread(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._thread is not None
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def close(self) -> None:
        """Finish queued writes, then close both connections."""
        if self._writer_task is not None:
            await self._queue.join()
            self._writer_task.cancel()
            # Waited for, not awaited: a writer that died was reported by the supervisor.
            await asyncio.wait([self._writer_task])
            self._writer_task = None
        if self._reader is not None:
            await self._reader.close()
        if self._writer is not None:
            await self._on_writer_thread(self._writer.close)
        if self._thread is not None:
            self._thread.shutdown()
        self._reader = self._writer = self._thread = None

    async def write(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in a write transaction on the writer's thread; return once it is
        committed.

        The job runs even if the caller is cancelled meanwhile, so an accepted write is
        never half done.
        """
        if self._writer_task is None:
            raise RuntimeError("store is not open")
        if self._writer_task.done():
            raise _writer_gone()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(fn, future))
        return await asyncio.shield(future)

    async def _write_loop(self) -> None:
        conn = self._writer
        assert conn is not None
        try:
            while True:
                jobs = [await self._queue.get()]
                while len(jobs) < MAX_BATCH and not self._queue.empty():
                    jobs.append(self._queue.get_nowait())
                try:
                    self._settle(await self._on_writer_thread(_run_batch, conn, jobs))
                except BaseException:
                    for job in jobs:
                        _answer(job, failure=_writer_gone())
                    raise
                finally:
                    for _ in jobs:
                        self._queue.task_done()
        finally:
            # The writer ends only when closed (the queue is empty then) or when it died:
            # no write may wait for it any longer.
            while not self._queue.empty():
                _answer(self._queue.get_nowait(), failure=_writer_gone())
                self._queue.task_done()

    def _settle(self, batch: _Batch) -> None:
        """On the loop, once the batch's transaction ended: callbacks, then answers."""
        if batch.error is None and self.on_commit is not None:
            try:
                self.on_commit(len(batch.jobs), batch.seconds)
            except Exception:
                log.exception("the commit observer failed; the writer goes on")
        runs = {id(run.job): run for run in batch.runs}
        for job in batch.jobs:
            run = runs.get(id(job))
            if run is None:  # BEGIN failed before it ran
                _answer(job, failure=batch.error)
            elif batch.error is None and run.failure is None:
                _call_each(run.tx._committed, "after-commit")
                _answer(job, run.value)
            else:
                _call_each(run.tx._rolled_back, "on-rollback")
                _answer(job, failure=run.failure or batch.error)


async def backup(database: Path, target: Path) -> None:
    """Write a consistent copy of ``database`` to ``target`` while it may be in use.

    ``VACUUM INTO`` reads one snapshot (a plain file copy would race with the WAL)
    and writes a compact database that opens on its own.
    """
    try:
        os.close(private_file(target))  # VACUUM INTO fills an empty file, keeping its mode
    except FileExistsError:
        raise FileExistsError(f"{target} already exists") from None
    try:
        async with aiosqlite.connect(f"file:{database}?mode=ro", uri=True) as conn:
            await conn.execute("VACUUM INTO ?", (str(target),))
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def lock_database(path: Path) -> IO[str]:
    """Hold ``<database>.lock`` for the life of the process (a server, or an operator
    command that writes); the kernel releases it when the process dies, SIGKILL included."""
    lock = path.with_name(path.name + ".lock")
    private_dir(lock.parent)
    handle = os.fdopen(os.open(lock, os.O_RDWR | os.O_CREAT, PRIVATE_FILE), "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise AlreadyRunning(f"another insightreader server is using {path}") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


@asynccontextmanager
async def open_reader(settings: DatabaseSettings) -> AsyncIterator[Reader]:
    """A read-only :class:`Reader` on the database, for operator commands that may run
    beside a server (in WAL mode a reader neither waits for it nor blocks it). The
    database must exist and be migrated: this never creates or changes anything."""
    path = settings.path
    if not path.exists():
        raise FileNotFoundError(f"no database at {path}")
    todo = await migrate.preview(path)
    if todo:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in todo)
        raise migrate.MigrationError(
            f"{path} has pending migrations ({names}): run insightreader migrate first"
        )
    conn = await aiosqlite.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        await conn.execute(f"PRAGMA busy_timeout = {int(settings.busy_timeout * 1000)}")
        await conn.execute("PRAGMA query_only = ON")
        yield Reader(conn)
    finally:
        await conn.close()
