"""The task store: the only module with SQL.

:class:`Store` is the whole storage interface; the engine, auth and web layers
use nothing else. It holds two aiosqlite connections to one WAL-mode SQLite file:

- a **writer**, owned by one coroutine that runs write jobs in arrival order
  and *group-commits* them: every job queued while a commit is under way joins
  the next transaction, each inside its own savepoint (a failing job rolls back
  alone), and every caller is answered only after the shared ``COMMIT``
  returned. With ``synchronous=FULL`` that one commit is one fsync for the
  whole batch.
- a **reader** (``query_only``) for everything else; in WAL mode it never waits
  for the writer and only ever sees committed data.

A write job is an ``async def job(tx: Tx) -> T``; :class:`Tx` offers the write
operations, and ``tx.after_commit`` / ``tx.on_rollback`` callbacks let the event
bus release an event only once the change it describes is durable. A PostgreSQL
backend would implement the same ``Store`` and ``Tx`` methods.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import aiosqlite

from . import migrate
from .config import DatabaseSettings
from .errors import StorageBusy, StorageFull
from .records import Article, ArticleItem, NewTask, Task, TaskStatus, User, to_json

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
    "seq, id, user_id, title, url, content_hash, excerpt, analysis, meta_analysis,"
    " created_at, updated_at"
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


def _article(row: sqlite3.Row, lenses: dict[str, dict[str, Any]]) -> Article:
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
    )


def _article_item(row: sqlite3.Row) -> ArticleItem:
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
    )


@dataclass(frozen=True)
class StoredEvent:
    id: int
    user_id: str
    event: str
    data: dict[str, Any]
    created_at: str


class _Queries:
    """Reads shared by the reader connection and write transactions."""

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

    async def task(self, task_id: str, user_id: str | None = None) -> Task | None:
        """The task, or None; with ``user_id``, only when it is that user's."""
        if user_id is None:
            row = await self._one("SELECT * FROM tasks WHERE id = ?", (task_id,))
        else:
            row = await self._one(
                "SELECT * FROM tasks WHERE id = ? AND user_id = ?", (task_id, user_id)
            )
        return _task(row) if row else None

    async def idempotency_key(self, user_id: str, key: str) -> tuple[str, Task] | None:
        """The input hash a key was first used with, and the task that answered it."""
        row = await self._one(
            "SELECT k.input_hash AS key_hash, t.* FROM idempotency_keys k"
            " JOIN tasks t ON t.id = k.task_id WHERE k.user_id = ? AND k.key = ?",
            (user_id, key),
        )
        return None if row is None else (row["key_hash"], _task(row))

    async def completed_task(self, user_id: str, input_hash: str, since: str) -> Task | None:
        """The newest completed task with this hash finished at or after ``since``."""
        row = await self._one(
            "SELECT * FROM tasks WHERE user_id = ? AND input_hash = ? AND status = 'completed'"
            " AND finished_at >= ? ORDER BY finished_at DESC LIMIT 1",
            (user_id, input_hash, since),
        )
        return _task(row) if row else None

    async def active_task(self, user_id: str, input_hash: str) -> Task | None:
        row = await self._one(
            "SELECT * FROM tasks WHERE user_id = ? AND input_hash = ?"
            " AND status IN ('pending', 'running')",
            (user_id, input_hash),
        )
        return _task(row) if row else None

    async def article(self, article_id: str, user_id: str) -> Article | None:
        """The user's article with its analyses and lens results, or None."""
        row = await self._one(
            "SELECT * FROM articles WHERE id = ? AND user_id = ?", (article_id, user_id)
        )
        if row is None:
            return None
        lenses = {
            r["lens_type"]: _loads(r["result"])
            for r in await self._all(
                "SELECT lens_type, result FROM article_lenses WHERE article_id = ?"
                " ORDER BY lens_type",
                (article_id,),
            )
        }
        return _article(row, lenses)

    async def article_tokens(self, article_id: str) -> int | None:
        """An article's estimated size in tokens (without reading its text)."""
        row = await self._one("SELECT tokens FROM articles WHERE id = ?", (article_id,))
        return None if row is None else int(row[0])

    async def article_ref_by_hash(self, user_id: str, content_hash: str) -> tuple[str, str] | None:
        """The id and title of the user's article with this content, if saved."""
        row = await self._one(
            "SELECT id, title FROM articles WHERE user_id = ? AND content_hash = ?",
            (user_id, content_hash),
        )
        return None if row is None else (str(row[0]), str(row[1]))

    async def library_usage(self, user_id: str) -> tuple[int, int]:
        """The user's stored articles and their bytes (title and text, UTF-8)."""
        row = await self._one(
            "SELECT articles, bytes FROM library_usage WHERE user_id = ?", (user_id,)
        )
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    async def unfinished_reservations(self, user_id: str) -> dict[str, int]:
        """Tokens reserved by each of the user's unfinished tasks, by task id."""
        rows = await self._all(
            "SELECT id, reserved_tokens FROM tasks"
            " WHERE user_id = ? AND status IN ('pending', 'running')",
            (user_id,),
        )
        return {str(r[0]): int(r[1]) for r in rows}

    async def count_unfinished(self, user_id: str) -> int:
        row = await self._one(
            "SELECT count(*) FROM tasks WHERE user_id = ? AND status IN ('pending', 'running')",
            (user_id,),
        )
        assert row is not None
        return int(row[0])

    async def tokens_used(self, user_id: str, day: str) -> int:
        row = await self._one(
            "SELECT coalesce(sum(prompt_tokens + completion_tokens), 0) FROM usage"
            " WHERE user_id = ? AND day = ?",
            (user_id, day),
        )
        assert row is not None
        return int(row[0])


class Reader(_Queries):
    """Read-only queries on committed data."""

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
        self, user_id: str, *, limit: int, before_seq: int | None
    ) -> list[ArticleItem]:
        """The user's articles, newest first: excerpts, not texts."""
        sql = f"SELECT {_ARTICLE_LIST_COLUMNS} FROM articles WHERE user_id = ?"
        params: list[Any] = [user_id]
        if before_seq is not None:
            sql += " AND seq < ?"
            params.append(before_seq)
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(limit)
        return [_article_item(row) for row in await self._all(sql, params)]

    async def unfinished_article_tasks(self, user_id: str, article_id: str) -> list[Task]:
        rows = await self._all(
            "SELECT * FROM tasks WHERE user_id = ? AND article_id = ?"
            " AND status IN ('pending', 'running')",
            (user_id, article_id),
        )
        return [_task(row) for row in rows]

    async def unfinished_tasks(self) -> list[Task]:
        """Every pending or running task, oldest first (for recovery at start)."""
        rows = await self._all(
            "SELECT * FROM tasks WHERE status IN ('pending', 'running') ORDER BY seq"
        )
        return [_task(row) for row in rows]

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
class Tx(_Queries):
    """One write job's view of the open transaction."""

    _conn: aiosqlite.Connection
    _committed: list[Callable[[], None]] = field(default_factory=list)
    _rolled_back: list[Callable[[], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self._conn)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` (synchronously, on the loop) once this job is durable."""
        self._committed.append(callback)

    def on_rollback(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` if this job's changes are rolled back."""
        self._rolled_back.append(callback)

    async def _execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        cursor = await self._conn.execute(sql, tuple(params))
        return cursor.rowcount

    async def insert_user(self, user: User) -> bool:
        """Insert a user; False when the name (case-insensitively) is taken."""
        return (
            await self._execute(
                "INSERT INTO users (id, username, password_hash, is_admin, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (user.id, user.username, user.password_hash, int(user.is_admin), user.created_at),
            )
            == 1
        )

    async def insert_task(self, task: NewTask) -> Task | None:
        """Insert a pending task; None when an unfinished task with the same hash exists."""
        row = await self._one(
            "INSERT INTO tasks (id, user_id, task_type, status, priority, input, input_hash,"
            " article_id, metadata, created_at, reserved_tokens)"
            " VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING *",
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
            ),
        )
        return _task(row) if row else None

    async def record_idempotency_key(
        self, user_id: str, key: str, input_hash: str, task_id: str, now: str
    ) -> None:
        await self._execute(
            "INSERT INTO idempotency_keys (user_id, key, input_hash, task_id, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (user_id, key, input_hash, task_id, now),
        )

    async def _update_task(self, sql: str, params: Iterable[Any]) -> Task | None:
        row = await self._one(sql + " RETURNING *", params)
        return _task(row) if row else None

    async def start_task(self, task_id: str, now: str) -> Task | None:
        """pending → running with ``attempts`` raised; None unless it was pending."""
        return await self._update_task(
            "UPDATE tasks SET status = 'running', attempts = attempts + 1, started_at = ?,"
            " finished_at = NULL WHERE id = ? AND status = 'pending'",
            (now, task_id),
        )

    async def finish_task(
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
        return await self._update_task(
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

    async def requeue_task(self, task_id: str, *, excuse: bool) -> Task | None:
        """running → pending (interrupted by shutdown, deferral, or found running at start).
        ``excuse`` keeps the interrupted run from counting against ``max_attempts``."""
        return await self._update_task(
            "UPDATE tasks SET status = 'pending', started_at = NULL,"
            " attempts_excused = attempts_excused + ? WHERE id = ? AND status = 'running'",
            (int(excuse), task_id),
        )

    async def retry_task(self, task_id: str, user_id: str) -> Task | None:
        """failed/cancelled → pending, its past runs excused; None if not allowed (also
        when an identical task is unfinished: OR IGNORE skips the unique-index clash)."""
        return await self._update_task(
            "UPDATE OR IGNORE tasks SET status = 'pending', attempts_excused = attempts, result = NULL,"
            " error = NULL, started_at = NULL, finished_at = NULL"
            " WHERE id = ? AND user_id = ? AND status IN ('failed', 'cancelled')",
            (task_id, user_id),
        )

    async def requeue_interrupted(self) -> int:
        """At start: tasks left running by a dead process go back to pending (their
        attempt stays counted, so a task that kills the process cannot loop)."""
        return await self._execute(
            "UPDATE tasks SET status = 'pending', started_at = NULL WHERE status = 'running'"
        )

    async def insert_article(self, article: Article) -> bool:
        """Insert an article; False when the user already saved this content."""
        return (
            await self._execute(
                "INSERT INTO articles (id, user_id, title, content, url, content_hash,"
                " excerpt, tokens, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
                ),
            )
            == 1
        )

    async def set_article_analysis(
        self, article_id: str, field: str, value: dict[str, Any], now: str
    ) -> None:
        """Store an article's ``analysis`` or ``meta_analysis``."""
        column = {"analysis": "analysis", "meta_analysis": "meta_analysis"}[field]
        await self._execute(
            f"UPDATE articles SET {column} = ?, updated_at = ? WHERE id = ?",
            (to_json(value), now, article_id),
        )

    async def set_article_lens(
        self, article_id: str, lens_type: str, result: dict[str, Any], now: str
    ) -> None:
        """Store a lens result on its article (nothing when the article was deleted)."""
        await self._execute(
            "INSERT INTO article_lenses (article_id, lens_type, result, updated_at)"
            " SELECT id, ?, ?, ? FROM articles WHERE id = ?"
            " ON CONFLICT (article_id, lens_type) DO UPDATE SET"
            " result = excluded.result, updated_at = excluded.updated_at",
            (lens_type, to_json(result), now, article_id),
        )

    async def delete_article(self, article_id: str, user_id: str) -> bool:
        return (
            await self._execute(
                "DELETE FROM articles WHERE id = ? AND user_id = ?", (article_id, user_id)
            )
            == 1
        )

    async def add_usage(
        self, user_id: str, day: str, model: str, prompt_tokens: int, completion_tokens: int
    ) -> None:
        await self._execute(
            "INSERT INTO usage (user_id, day, model, prompt_tokens, completion_tokens, tasks)"
            " VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (user_id, day, model) DO UPDATE SET"
            " prompt_tokens = prompt_tokens + excluded.prompt_tokens,"
            " completion_tokens = completion_tokens + excluded.completion_tokens,"
            " tasks = tasks + 1",
            (user_id, day, model, prompt_tokens, completion_tokens),
        )

    async def insert_event(
        self, event_id: int, user_id: str, event: str, data: dict[str, Any], now: str
    ) -> None:
        await self._execute(
            "INSERT INTO events (id, user_id, event, data, created_at) VALUES (?, ?, ?, ?, ?)",
            (event_id, user_id, event, to_json(data), now),
        )

    async def prune_events(self, before: str) -> int:
        return await self._execute("DELETE FROM events WHERE created_at < ?", (before,))

    async def set_meta(self, key: str, value: str) -> None:
        await self._execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


@dataclass
class _Job(Generic[T]):
    fn: Callable[[Tx], Awaitable[T]]
    future: asyncio.Future[T]


async def _connect(path: Path, settings: DatabaseSettings, *, query_only: bool) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    await conn.execute(f"PRAGMA busy_timeout = {int(settings.busy_timeout * 1000)}")
    await conn.execute(f"PRAGMA synchronous = {settings.synchronous}")
    await conn.execute("PRAGMA foreign_keys = ON")
    if query_only:
        await conn.execute("PRAGMA query_only = ON")
    return conn


class Store:
    """The storage interface. Open with :meth:`open`, close with :meth:`close`."""

    def __init__(self, settings: DatabaseSettings) -> None:
        self.settings = settings
        self.path = settings.path
        self._writer: aiosqlite.Connection | None = None
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
        """Open both connections, switch to WAL, apply pending migrations."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = await _connect(self.path, self.settings, query_only=False)
        try:
            async with self._writer.execute("PRAGMA journal_mode = WAL") as cur:
                row = await cur.fetchone()
            if row is None or str(row[0]).lower() != "wal":
                raise RuntimeError(f"could not switch {self.path} to WAL mode")
            applied = await migrate.apply(self._writer)
            for migration in applied:
                log.info("applied migration %04d_%s", migration.version, migration.name)
            self._reader = await _connect(self.path, self.settings, query_only=True)
        except BaseException:
            await self.close()
            raise
        self._writer_task = asyncio.create_task(self._write_loop(), name="store-writer")

    async def close(self) -> None:
        """Finish queued writes, then close both connections."""
        if self._writer_task is not None:
            await self._queue.join()
            self._writer_task.cancel()
            try:
                await self._writer_task
            except asyncio.CancelledError:
                pass
            self._writer_task = None
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    async def write(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``fn`` in a write transaction; return once it is committed.

        The job runs on the writer coroutine even if the caller is cancelled
        meanwhile, so an accepted write is never half done.
        """
        if self._writer_task is None:
            raise RuntimeError("store is not open")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(fn, future))
        return await asyncio.shield(future)

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._run_batch(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _run_batch(self, batch: list[_Job[Any]]) -> None:
        conn = self._writer
        assert conn is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            error = translate(exc)
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        # A job alone in its batch needs no savepoint: its failure rolls back the
        # transaction (two statements fewer on the common, unloaded path).
        isolated = len(batch) > 1
        outcomes: list[tuple[_Job[Any], Tx, Any, BaseException | None]] = []
        for job in batch:
            tx = Tx(conn)
            if isolated:
                await conn.execute("SAVEPOINT job")
            try:
                value = await job.fn(tx)
            except Exception as exc:  # one job's failure is its own; the batch goes on
                await conn.execute("ROLLBACK TO job" if isolated else "ROLLBACK")
                if isolated:
                    await conn.execute("RELEASE job")
                for callback in tx._rolled_back:
                    callback()
                outcomes.append((job, tx, None, translate(exc) if isinstance(exc, sqlite3.Error) else exc))
            else:
                if isolated:
                    await conn.execute("RELEASE job")
                outcomes.append((job, tx, value, None))
        try:
            if conn.in_transaction:
                await conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("commit of %d write jobs failed: %s", len(batch), exc)
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
            error = translate(exc)
            for job, tx, _, failure in outcomes:
                if failure is None:
                    for callback in tx._rolled_back:
                        callback()
                if not job.future.done():
                    job.future.set_exception(failure or error)
            return
        if self.on_commit is not None:
            self.on_commit(len(batch), loop.time() - started)
        for job, tx, value, failure in outcomes:
            if failure is None:
                for callback in tx._committed:
                    callback()
            if job.future.done():
                continue
            if failure is None:
                job.future.set_result(value)
            else:
                job.future.set_exception(failure)


async def backup(database: Path, target: Path) -> None:
    """Write a consistent copy of ``database`` to ``target`` while it may be in use.

    ``VACUUM INTO`` reads one snapshot (a plain file copy would race with the WAL)
    and writes a compact database that opens on its own.
    """
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    async with aiosqlite.connect(f"file:{database}?mode=ro", uri=True) as conn:
        await conn.execute("VACUUM INTO ?", (str(target),))


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
