"""Read-only queries, the same on both databases (placeholders ``?``; the
PostgreSQL connection translates)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

from .. import search
from ..records import (
    AnalysisRun,
    ApiTokenRecord,
    Article,
    ArticleItem,
    Batch,
    Delivery,
    Highlight,
    QueuedTask,
    SessionRecord,
    Task,
    User,
    Webhook,
)
from .rows import (
    API_TOKEN_COLUMNS,
    ARTICLE_LIST_COLUMNS,
    HAS_TEXT,
    TASK_LIST_COLUMNS,
    TOKENS_USED,
    ArticleFilter,
    Row,
    StoredEvent,
    loads,
    task_query,
    to_api_token,
    to_article,
    to_article_item,
    to_batch,
    to_delivery,
    to_highlight,
    to_session,
    to_stored_event,
    to_task,
    to_user,
    to_webhook,
)

R = TypeVar("R")


class FullText(Protocol):
    """A database's search statements: a page of (seq, rank) with lower ranks better,
    then (seq, id, title, snippet) of those articles."""

    def page_sql(self, query: search.Query, user_id: str, limit: int, offset: int) -> tuple[str, list[Any]]: ...

    def shown_sql(self, query: search.Query, seqs: list[int]) -> tuple[str, list[Any]]: ...


class Reads(Protocol):
    """A database's read side (:mod:`.sqlite`, :mod:`.postgresql`)."""

    full_text: FullText

    async def fetchall(self, sql: str, params: tuple[Any, ...]) -> list[Row]: ...

    async def fetch_records(self, sql: str, params: tuple[Any, ...], make: Callable[..., R]) -> list[R]:
        """Each row as ``make(*row)``, made where the rows are read."""
        ...

    async def last_event_id(self) -> int:
        """The largest event id ever given (pruned ones included)."""
        ...

    async def close(self) -> None: ...


class Reader:
    """Read-only queries on committed data: one round trip each."""

    def __init__(self, conn: Reads) -> None:
        self._conn = conn

    async def _one(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        rows = await self._conn.fetchall(sql, tuple(params))
        return rows[0] if rows else None

    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        return await self._conn.fetchall(sql, tuple(params))

    async def _dicts(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        return [dict(row) for row in await self._all(sql, params)]

    async def user_by_name(self, username: str) -> User | None:
        row = await self._one("SELECT * FROM users WHERE username = ?", (username,))
        return to_user(row) if row else None

    async def user(self, user_id: str) -> User | None:
        row = await self._one("SELECT * FROM users WHERE id = ?", (user_id,))
        return to_user(row) if row else None

    async def users(self) -> list[User]:
        return [to_user(row) for row in await self._all("SELECT * FROM users ORDER BY created_at, id")]

    async def has_users(self) -> bool:
        return await self._one("SELECT 1 FROM users LIMIT 1") is not None

    async def session_user(self, session_id: str, user_id: str, now: str) -> tuple[User, str] | None:
        """The user of an open session and when the session expires (one query)."""
        row = await self._one(
            "SELECT u.*, s.expires_at AS session_expires_at FROM sessions s JOIN users u ON u.id = s.user_id"
            " WHERE s.id = ? AND s.user_id = ? AND s.expires_at > ?",
            (session_id, user_id, now),
        )
        return (to_user(row), row["session_expires_at"]) if row else None

    async def sessions(self, user_id: str, now: str) -> list[SessionRecord]:
        """The user's open sessions, most recently used first."""
        rows = await self._all(
            "SELECT * FROM sessions WHERE user_id = ? AND expires_at > ? ORDER BY last_used_at DESC, id",
            (user_id, now),
        )
        return [to_session(row) for row in rows]

    async def api_token_user(self, digest: str, now: str) -> tuple[ApiTokenRecord, User] | None:
        """The unexpired API token with this digest and its user (one query)."""
        row = await self._one(
            f"SELECT {API_TOKEN_COLUMNS}, u.* FROM api_tokens t JOIN users u ON u.id = t.user_id"
            " WHERE t.digest = ? AND (t.expires_at IS NULL OR t.expires_at > ?)",
            (digest, now),
        )
        return (to_api_token(row), to_user(row)) if row else None

    async def api_tokens(self, user_id: str) -> list[ApiTokenRecord]:
        """The user's API tokens (the expired ones too), newest first."""
        rows = await self._all(
            f"SELECT {API_TOKEN_COLUMNS} FROM api_tokens t WHERE t.user_id = ? ORDER BY t.created_at DESC, t.id",
            (user_id,),
        )
        return [to_api_token(row) for row in rows]

    async def user_settings(self, user_id: str) -> str | None:
        """The user's settings as stored (JSON; None: all defaults)."""
        row = await self._one("SELECT settings FROM user_settings WHERE user_id = ?", (user_id,))
        return None if row is None else str(row[0])

    async def batch(self, batch_id: str, user_id: str) -> Batch | None:
        row = await self._one("SELECT * FROM batches WHERE id = ? AND user_id = ? AND status != 'staging'",
                              (batch_id, user_id))
        return None if row is None else to_batch(row)

    async def batches(self, user_id: str, kind: str, limit: int) -> list[Batch]:
        """The user's batches of ``kind``, newest first."""
        rows = await self._all(
            "SELECT * FROM batches WHERE user_id = ? AND kind = ? AND status != 'staging'"
            " ORDER BY created_at DESC, id LIMIT ?",
            (user_id, kind, limit),
        )
        return [to_batch(row) for row in rows]

    async def enabled_webhooks(self) -> list[Webhook]:
        return [to_webhook(row) for row in await self._all("SELECT * FROM webhooks WHERE enabled = 1")]

    async def webhooks(self, user_id: str) -> list[Webhook]:
        rows = await self._all("SELECT * FROM webhooks WHERE user_id = ? ORDER BY created_at, id", (user_id,))
        return [to_webhook(row) for row in rows]

    async def webhook(self, webhook_id: str, user_id: str) -> Webhook | None:
        row = await self._one("SELECT * FROM webhooks WHERE id = ? AND user_id = ?", (webhook_id, user_id))
        return None if row is None else to_webhook(row)

    async def deliveries(self, webhook_id: str, limit: int) -> list[Delivery]:
        """The webhook's deliveries, newest first."""
        rows = await self._all(
            "SELECT * FROM webhook_deliveries WHERE webhook_id = ? ORDER BY created_at DESC, id LIMIT ?",
            (webhook_id, limit),
        )
        return [to_delivery(row) for row in rows]

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
                to_delivery(row),
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
        sql = "SELECT min(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending'"
        if excluding:  # an empty IN () is SQLite's extension, not SQL
            sql += f" AND id NOT IN ({', '.join('?' * len(excluding))})"
        row = await self._one(sql, excluding)
        return None if row is None else row[0]

    async def running_batches(self) -> list[Batch]:
        rows = await self._all("SELECT * FROM batches WHERE status = 'running' ORDER BY created_at, id")
        return [to_batch(row) for row in rows]

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
        return [AnalysisRun(row[0], row[1], row[2], loads(row[3]), row[4]) for row in rows]

    async def analysable_articles(self, user_id: str) -> list[str]:
        """The ids of the user's articles with text to analyse, oldest first."""
        rows = await self._all(
            f"SELECT id FROM articles WHERE user_id = ? AND {HAS_TEXT} ORDER BY seq",
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
        row = await self._one(*task_query(task_id, user_id))
        return to_task(row) if row else None

    async def search(self, user_id: str, query: search.Query, limit: int, offset: int) -> list[search.Hit]:
        """The user's articles matching ``query``, best first: a page of ranks, then
        the text shown for that page only."""
        full_text = self._conn.full_text
        sql, params = full_text.page_sql(query, user_id, limit, offset)
        page = [(row[0], row[1]) for row in await self._all(sql, params)]
        if not page:
            return []
        sql, params = full_text.shown_sql(query, [seq for seq, _ in page])
        rows = await self._all(sql, params)
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
            r["lens_type"]: loads(r["result"])
            for r in await self._all(
                "SELECT lens_type, result FROM article_lenses WHERE article_id = ?"
                " ORDER BY lens_type",
                (article_id,),
            )
        }
        return to_article(row, lenses, tags.get(row["seq"], []))

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
            lenses.setdefault(r["article_id"], {})[r["lens_type"]] = loads(r["result"])
        tags = await self._article_tags([row["seq"] for row in rows])
        return [to_article(row, lenses.get(row["id"], {}), tags.get(row["seq"], [])) for row in rows]

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
            found.setdefault(row["article_id"], []).append(to_highlight(row))
        return found

    async def highlight(self, highlight_id: str, user_id: str) -> Highlight | None:
        row = await self._one("SELECT * FROM highlights WHERE id = ? AND user_id = ?", (highlight_id, user_id))
        return None if row is None else to_highlight(row)

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
            asked, answer = loads(row["input"]) or {}, loads(row["result"]) or {}
            found.setdefault(row["article_id"], []).append({
                "selected_text": asked.get("selected_text"),
                "question": asked.get("question"),
                "highlight_id": asked.get("highlight_id"),
                "insight": answer.get("insight"),
                "created_at": row["created_at"],
            })
        return found

    async def tokens_used(self, user_id: str, day: str) -> int:
        row = await self._one(TOKENS_USED, (user_id, day))
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
        sql = f"SELECT {TASK_LIST_COLUMNS} FROM tasks WHERE user_id = ?"
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
        return [to_task(row) for row in await self._all(sql, params)]

    async def list_articles(
        self, user_id: str, *, limit: int, before_seq: int | None, only: ArticleFilter = ArticleFilter()
    ) -> list[ArticleItem]:
        """The user's articles, newest first: excerpts, not texts. With a tag, the list
        pages through that tag's links (``article_tags`` is keyed by tag and seq)."""
        columns = ", ".join(f"a.{c}" for c in ARTICLE_LIST_COLUMNS)
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
        return [to_article_item(row, tags.get(row["seq"], [])) for row in rows]

    async def unfinished_article_tasks(self, user_id: str, article_id: str) -> list[Task]:
        rows = await self._all(
            "SELECT * FROM tasks WHERE user_id = ? AND article_id = ?"
            " AND status IN ('pending', 'running')",
            (user_id, article_id),
        )
        return [to_task(row) for row in rows]

    async def pending_tasks(self) -> list[QueuedTask]:
        """Every pending task, oldest first (for recovery at start): only what the
        scheduler needs, through the index of unfinished tasks (its condition is
        repeated for the planner), so 10,000 of them with large inputs load in
        milliseconds. The records are made on the database's thread, not on the loop."""
        return await self._conn.fetch_records(
            "SELECT id, user_id, priority FROM tasks WHERE status IN ('pending', 'running')"
            " AND status = 'pending' ORDER BY seq",
            (),
            QueuedTask,
        )

    async def events_after(self, user_id: str, after_id: int, limit: int) -> list[StoredEvent]:
        rows = await self._all(
            "SELECT * FROM events WHERE user_id = ? AND id > ? ORDER BY id LIMIT ?",
            (user_id, after_id, limit),
        )
        return [to_stored_event(r) for r in rows]

    async def all_events_between(self, after_id: int, before_id: int | None, limit: int) -> list[StoredEvent]:
        """Every user's stored events with ids in (after_id, before_id), in id order
        (``before_id`` None: no upper bound)."""
        below = "" if before_id is None else " AND id < ?"
        rows = await self._all(
            f"SELECT * FROM events WHERE id > ?{below} ORDER BY id LIMIT ?",
            (after_id, limit) if before_id is None else (after_id, before_id, limit),
        )
        return [to_stored_event(r) for r in rows]

    async def newest_event_id(self) -> int:
        """The largest id of an event kept (committed and not pruned), 0 when none is."""
        row = await self._one("SELECT coalesce(max(id), 0) FROM events")
        return 0 if row is None else int(row[0])

    async def oldest_event_id(self) -> int | None:
        """The smallest event id still kept, or None when the log is empty."""
        row = await self._one("SELECT min(id) FROM events")
        return None if row is None else row[0]

    async def last_event_id(self) -> int:
        """The largest event id ever given (pruned ones included; on PostgreSQL, those
        of uncommitted events and of ``task_progress`` too)."""
        return await self._conn.last_event_id()

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
        return [to_task(row) for row in rows]
