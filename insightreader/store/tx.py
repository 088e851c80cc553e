"""Writes (and reads inside a write transaction), the same on both databases
(placeholders ``?``; the PostgreSQL connection translates)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..records import (
    ApiTokenRecord,
    Article,
    Batch,
    Delivery,
    Highlight,
    NewTask,
    SessionRecord,
    Task,
    TaskStatus,
    User,
    Webhook,
    to_json,
)
from .rows import (
    HAS_TEXT,
    TOKENS_USED,
    Row,
    task_query,
    to_batch,
    to_highlight,
    to_session,
    to_task,
)


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Writes(Protocol):
    """A database's write connection, used from the writer's thread only
    (:mod:`.sqlite`, :mod:`.postgresql`)."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> Cursor: ...

    def begin(self) -> None: ...

    def commit(self) -> None:
        """Finish what the batch's changes imply (the search index) and commit."""
        ...

    def rollback(self) -> None: ...

    @property
    def in_transaction(self) -> bool: ...

    def translate(self, exc: BaseException) -> BaseException | None:
        """The error a database failure means to a caller (busy, full, …); None when
        ``exc`` is not the database's."""
        ...

    def index_search_backlog(self, limit: int) -> int: ...

    #: Appended to a SELECT that claims rows another process may be claiming:
    #: PostgreSQL's `` FOR UPDATE SKIP LOCKED``, nothing on SQLite (one writer).
    skip_locked: str

    def notify(self, channel: str, payload: str) -> None:
        """Tell every process listening on ``channel`` (:mod:`insightreader.cluster`)
        once this transaction commits; nothing on SQLite, where one process serves."""
        ...

    def event_ids(self, count: int) -> list[int]:
        """``count`` new event ids, in commit order: larger than any id of an event
        committed before this transaction and smaller than any committed after it."""
        ...

    def close(self) -> None: ...


@dataclass
class Tx:
    """One write job's view of the open transaction. Synchronous: a job runs on the
    writer's thread with the rest of its batch, so it may only use these methods (and
    plain computation); it cannot await anything."""

    _conn: Writes
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

    def _one(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        row: Row | None = self._conn.execute(sql, tuple(params)).fetchone()
        return row

    # -- reads inside the transaction -------------------------------------------

    def task(self, task_id: str, user_id: str | None = None) -> Task | None:
        row = self._one(*task_query(task_id, user_id))
        return to_task(row) if row else None

    def idempotency_key(self, user_id: str, key: str) -> tuple[str, Task] | None:
        """The input hash a key was first used with, and the task that answered it."""
        row = self._one(
            "SELECT k.input_hash AS key_hash, t.* FROM idempotency_keys k"
            " JOIN tasks t ON t.id = k.task_id WHERE k.user_id = ? AND k.key = ?",
            (user_id, key),
        )
        return None if row is None else (row["key_hash"], to_task(row))

    def completed_task(self, user_id: str, input_hash: str, since: str) -> Task | None:
        """The newest completed task with this hash finished at or after ``since``."""
        row = self._one(
            "SELECT * FROM tasks WHERE user_id = ? AND input_hash = ? AND status = 'completed'"
            " AND finished_at >= ? ORDER BY finished_at DESC LIMIT 1",
            (user_id, input_hash, since),
        )
        return to_task(row) if row else None

    def active_task(self, user_id: str, input_hash: str) -> Task | None:
        row = self._one(
            "SELECT * FROM tasks WHERE user_id = ? AND input_hash = ?"
            " AND status IN ('pending', 'running')",
            (user_id, input_hash),
        )
        return to_task(row) if row else None

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
        return to_session(row) if row else None

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
        return self._conn.index_search_backlog(limit)

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
        row = self._one(TOKENS_USED, (user_id, day))
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
        """Insert a pending task; None when an unfinished task with the same hash exists.
        Only its ``seq`` is read back: reading the whole row and parsing its JSON again
        was a third of the insert's cost (docs/benchmarks.md, "2026-12-06, late")."""
        row = self._one(
            "INSERT INTO tasks (id, user_id, task_type, status, priority, input, input_hash,"
            " article_id, metadata, created_at, reserved_tokens, batch_id)"
            " VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING seq",
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
        return task.inserted(row["seq"]) if row else None

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
        return to_task(row) if row else None

    def claim_task(self, task_id: str) -> Task | None:
        """The task if it is pending and no other transaction holds its row (another
        process starting it: PostgreSQL's ``FOR UPDATE SKIP LOCKED``), locked until
        this transaction ends; None otherwise."""
        row = self._one(
            "SELECT * FROM tasks WHERE id = ? AND status = 'pending'" + self._conn.skip_locked, (task_id,)
        )
        return to_task(row) if row else None

    def start_task(self, task_id: str, now: str, owner: str, lease_until: str) -> Task | None:
        """pending → running with ``attempts`` raised, leased to ``owner`` until
        ``lease_until``; None unless it was pending."""
        return self._update_task(
            "UPDATE tasks SET status = 'running', attempts = attempts + 1, started_at = ?,"
            " finished_at = NULL, lease_owner = ?, lease_until = ? WHERE id = ? AND status = 'pending'",
            (now, owner, lease_until, task_id),
        )

    def renew_leases(self, owner: str, task_ids: list[str], lease_until: str) -> set[str]:
        """Extend ``owner``'s leases on these running tasks; the ids it still holds."""
        return self._updated_ids(
            "UPDATE tasks SET lease_until = ? WHERE id = ? AND status = 'running' AND lease_owner = ? RETURNING id",
            [(lease_until, task_id, owner) for task_id in task_ids],
        )

    def _updated_ids(self, sql: str, each: list[tuple[Any, ...]]) -> set[str]:
        """Run ``sql`` (an ``UPDATE … RETURNING id``) once per parameter tuple; the ids updated."""
        return {row[0] for params in each if (row := self._one(sql, params)) is not None}

    def requeue_expired(self, now: str | None) -> list[Task]:
        """Running tasks whose lease ended before ``now`` (None: every running task, at
        the start of the only process) back to pending; their attempt stays counted, so
        a task that kills its process cannot loop."""
        expired = "" if now is None else " AND (lease_until IS NULL OR lease_until < ?)"
        rows = self._conn.execute(
            "UPDATE tasks SET status = 'pending', started_at = NULL, lease_owner = NULL,"
            f" lease_until = NULL WHERE status = 'running'{expired} RETURNING *",
            () if now is None else (now,),
        ).fetchall()
        return [to_task(row) for row in rows]

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
        owner: str | None = None,
    ) -> Task | None:
        """Move an unfinished task to a final status; None unless it was in
        ``from_statuses`` (and, when running, leased to ``owner`` if one is given)."""
        marks = ", ".join("?" for _ in from_statuses)
        leased = "" if owner is None else " AND (status <> 'running' OR lease_owner = ?)"
        return self._update_task(
            "UPDATE tasks SET status = ?, finished_at = ?, result = ?, error = ?,"
            " model = coalesce(?, model), prompt_tokens = prompt_tokens + ?,"
            " completion_tokens = completion_tokens + ?, lease_owner = NULL, lease_until = NULL"
            f" WHERE id = ? AND status IN ({marks}){leased}",
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
                *(() if owner is None else (owner,)),
            ),
        )

    def requeue_task(self, task_id: str, owner: str, *, excuse: bool) -> Task | None:
        """running (leased to ``owner``) → pending: interrupted by shutdown, or deferred.
        ``excuse`` keeps the interrupted run from counting against ``max_attempts``."""
        return self._update_task(
            "UPDATE tasks SET status = 'pending', started_at = NULL, lease_owner = NULL, lease_until = NULL,"
            " attempts_excused = attempts_excused + ? WHERE id = ? AND status = 'running' AND lease_owner = ?",
            (int(excuse), task_id, owner),
        )

    def retry_task(self, task_id: str, user_id: str) -> Task | None:
        """failed/cancelled → pending, its past runs excused; None if not allowed (also
        when an identical task is unfinished: the unique index allows one)."""
        return self._update_task(
            "UPDATE tasks SET status = 'pending', attempts_excused = attempts, result = NULL,"
            " error = NULL, started_at = NULL, finished_at = NULL"
            " WHERE id = ? AND user_id = ? AND status IN ('failed', 'cancelled')"
            " AND NOT EXISTS (SELECT 1 FROM tasks twin WHERE twin.user_id = tasks.user_id"
            " AND twin.input_hash = tasks.input_hash AND twin.status IN ('pending', 'running'))",
            (task_id, user_id),
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

    def claim_deliveries(self, delivery_ids: list[str], now: str, until: str) -> set[str]:
        """Take these deliveries for sending until ``until``: those still pending and due
        at ``now`` (another process took the others); their ids."""
        return self._updated_ids(
            "UPDATE webhook_deliveries SET next_attempt_at = ? WHERE id = ? AND status = 'pending'"
            " AND next_attempt_at <= ? RETURNING id",
            [(until, delivery_id, now) for delivery_id in delivery_ids],
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
            "UPDATE webhooks SET failing_since = CASE WHEN CAST(? AS TEXT) IS NULL THEN NULL ELSE coalesce(failing_since, ?) END"
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

    def drop_staging_batches(self, before: str | None) -> int:
        """Batches whose request died while storing their items (never answered):
        every one still being stored, or (``before``) those created before then."""
        if before is None:
            return self._execute("DELETE FROM batches WHERE status = 'staging'")
        return self._execute("DELETE FROM batches WHERE status = 'staging' AND created_at < ?", (before,))

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
        return to_batch(row)

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
            return None if found is None else (to_batch(found), False)
        self._execute("DELETE FROM batch_items WHERE batch_id = ?", (batch_id,))
        return to_batch(row), True

    def article_to_analyse(self, article_id: str, user_id: str) -> tuple[str, str] | None:
        """(content hash, title) of the user's article when it has text to analyse."""
        row = self._one(
            f"SELECT content_hash, title FROM articles WHERE id = ? AND user_id = ? AND {HAS_TEXT}",
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
            "UPDATE articles SET fetch_status = ?, updated_at = ? WHERE id = ? AND (CAST(? AS TEXT) IS NULL OR fetch_status = ?)",
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
        return None if row is None else to_highlight(row)

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
        kept = f" AND tag_id NOT IN ({', '.join('?' * len(tag_ids))})" if tag_ids else ""
        self._execute(f"DELETE FROM article_tags WHERE article_seq = ?{kept}", (seq, *tag_ids))
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
            " prompt_tokens = usage.prompt_tokens + excluded.prompt_tokens,"
            " completion_tokens = usage.completion_tokens + excluded.completion_tokens,"
            " tasks = usage.tasks + 1",
            (user_id, day, model, prompt_tokens, completion_tokens),
        )

    def insert_event(
        self, event_id: int | None, user_id: str, event: str, data: dict[str, Any], now: str
    ) -> int:
        """Store an event under ``event_id``, or (None) the next id of the events
        table's sequence; its id."""
        if event_id is not None:
            self._execute(
                "INSERT INTO events (id, user_id, event, data, created_at) VALUES (?, ?, ?, ?, ?)",
                (event_id, user_id, event, to_json(data), now),
            )
            return event_id
        row = self._one(
            "INSERT INTO events (user_id, event, data, created_at) VALUES (?, ?, ?, ?) RETURNING id",
            (user_id, event, to_json(data), now),
        )
        assert row is not None
        return int(row[0])

    def notify(self, channel: str, payload: str) -> None:
        """Tell the processes sharing the database, once this transaction commits
        (:mod:`.channels`; nothing on SQLite)."""
        self._conn.notify(channel, payload)

    def event_ids(self, count: int) -> list[int]:
        """``count`` ids of events that are not stored, in commit order (PostgreSQL)."""
        return self._conn.event_ids(count)

    def prune_events(self, before: str) -> int:
        return self._execute("DELETE FROM events WHERE created_at < ?", (before,))

    def set_meta(self, key: str, value: str) -> None:
        self._execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
