"""Rows to records, and the SQL fragments the queries share (both databases)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from ..records import (
    ApiTokenRecord,
    Article,
    ArticleItem,
    Batch,
    Delivery,
    Highlight,
    SessionRecord,
    Task,
    TaskStatus,
    User,
    Webhook,
)


class Row(Protocol):
    """A result row by position or by column name (``sqlite3.Row``, and
    :class:`insightreader.store.postgresql.Row`)."""

    def __getitem__(self, key: int | str) -> Any: ...

    def keys(self) -> list[str]: ...


UNFINISHED = ("pending", "running")
#: What a task list reads: every column but ``input`` (up to a request body's size,
#: and never shown by the API).
TASK_LIST_COLUMNS = (
    "seq, id, user_id, task_type, status, priority, attempts, attempts_excused, input_hash,"
    " article_id, metadata, result, error, model, prompt_tokens, completion_tokens,"
    " created_at, started_at, finished_at, reserved_tokens"
)
#: What an article list reads: no ``content``.
ARTICLE_LIST_COLUMNS = (
    "seq", "id", "user_id", "title", "url", "content_hash", "excerpt", "analysis", "meta_analysis",
    "created_at", "updated_at", "archived", "favorite", "fetch_status", "page_meta",
)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def to_highlight(row: Row) -> Highlight:
    return Highlight(
        id=row["id"], user_id=row["user_id"], article_id=row["article_id"], quote=row["quote"],
        prefix=row["prefix"], suffix=row["suffix"], position=row["position"], note=row["note"],
        created_at=row["created_at"], updated_at=row["updated_at"],
    )


def to_task(row: Row) -> Task:
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
        input=loads(row["input"]) if "input" in row.keys() else {},
        input_hash=row["input_hash"],
        article_id=row["article_id"],
        metadata=loads(row["metadata"]),
        result=loads(row["result"]),
        error=loads(row["error"]),
        model=row["model"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        reserved_tokens=row["reserved_tokens"],
    )


def to_user(row: Row) -> User:
    return User(
        id=row["id"],
        username=row["username"],
        password_hash=row["password_hash"],
        is_admin=bool(row["is_admin"]),
        created_at=row["created_at"],
    )


def to_session(row: Row) -> SessionRecord:
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


def to_api_token(row: Row) -> ApiTokenRecord:
    return ApiTokenRecord(
        id=row["token_id"],
        user_id=row["user_id"],
        name=row["name"],
        scope=row["scope"],
        created_at=row["token_created_at"],
        last_used_at=row["last_used_at"],
        expires_at=row["expires_at"],
    )


def to_batch(row: Row) -> Batch:
    return Batch(
        id=row["id"], user_id=row["user_id"], kind=row["kind"], format=row["format"], status=row["status"],
        total=row["total"], done=row["done"], failed=row["failed"], duplicates=row["duplicates"],
        last_error=row["last_error"], created_at=row["created_at"], finished_at=row["finished_at"],
        options=loads(row["options"]),
    )


def to_webhook(row: Row) -> Webhook:
    return Webhook(
        id=row["id"], user_id=row["user_id"], url=row["url"], events=tuple(json.loads(row["events"])),
        secret=row["secret"], enabled=bool(row["enabled"]), disabled_reason=row["disabled_reason"],
        failing_since=row["failing_since"], created_at=row["created_at"],
    )


def to_delivery(row: Row) -> Delivery:
    return Delivery(
        id=row["id"], webhook_id=row["webhook_id"], event=row["event"], payload=row["payload"],
        status=row["status"], attempts=row["attempts"], next_attempt_at=row["next_attempt_at"],
        last_status=row["last_status"], last_error=row["last_error"], created_at=row["created_at"],
        finished_at=row["finished_at"],
    )


API_TOKEN_COLUMNS = (
    "t.id AS token_id, t.user_id, t.name, t.scope, t.created_at AS token_created_at, t.last_used_at, t.expires_at"
)


def to_article(row: Row, lenses: dict[str, dict[str, Any]], tags: list[str]) -> Article:
    return Article(
        id=row["id"],
        seq=row["seq"],
        user_id=row["user_id"],
        title=row["title"],
        content=row["content"],
        url=row["url"],
        content_hash=row["content_hash"],
        analysis=loads(row["analysis"]),
        meta_analysis=loads(row["meta_analysis"]),
        lenses=lenses,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        excerpt=row["excerpt"],
        tokens=row["tokens"],
        fetch_status=row["fetch_status"],
        page_meta=loads(row["page_meta"]),
        tags=tuple(tags),
        archived=bool(row["archived"]),
        favorite=bool(row["favorite"]),
    )


def to_article_item(row: Row, tags: list[str]) -> ArticleItem:
    return ArticleItem(
        id=row["id"],
        seq=row["seq"],
        user_id=row["user_id"],
        title=row["title"],
        url=row["url"],
        content_hash=row["content_hash"],
        excerpt=row["excerpt"],
        analysis=loads(row["analysis"]),
        meta_analysis=loads(row["meta_analysis"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        fetch_status=row["fetch_status"],
        page_meta=loads(row["page_meta"]),
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


def to_stored_event(row: Row) -> StoredEvent:
    return StoredEvent(row["id"], row["user_id"], row["event"], loads(row["data"]), row["created_at"])


#: An article with text to analyse: saved with it, or its page fetched.
HAS_TEXT = "(fetch_status IS NULL OR fetch_status = 'fetched')"


def task_query(task_id: str, user_id: str | None) -> tuple[str, tuple[Any, ...]]:
    if user_id is None:
        return "SELECT * FROM tasks WHERE id = ?", (task_id,)
    return "SELECT * FROM tasks WHERE id = ? AND user_id = ?", (task_id, user_id)


TOKENS_USED = (
    "SELECT coalesce(sum(prompt_tokens + completion_tokens), 0) FROM usage"
    " WHERE user_id = ? AND day = ?"
)
