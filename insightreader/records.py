"""Values that cross module boundaries: rows as the domain sees them, events in flight."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from functools import cached_property
from datetime import UTC, datetime
from typing import Any


def to_json(value: Any) -> str:
    """Compact JSON that UTF-8 can carry: readable text, or ASCII escapes when the value
    holds lone surrogates (from an upstream answer, say), which SQLite could not store
    as text nor a stream send."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":"))
    return text


def utcnow() -> str:
    """Now as stored and shown: ISO-8601 UTC with milliseconds and a ``Z``."""
    return format_time(datetime.now(UTC))


def format_time(moment: datetime) -> str:
    # isoformat, not strftime: "%Y" drops a year's leading zeros, so Go's zero time
    # (0001-01-01) in an import became "1-01-01T…", not ISO 8601, and a year 999
    # sorted after 2026.
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").removesuffix("+00:00") + "Z"


class TaskStatus(str, enum.Enum):
    PENDING = "pending"  #: accepted, waiting for a slot
    RUNNING = "running"  #: a run is under way
    COMPLETED = "completed"  #: finished with a result
    FAILED = "failed"  #: finished with an error
    CANCELLED = "cancelled"  #: cancelled by its user

    @property
    def finished(self) -> bool:
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


@dataclass(frozen=True)
class User:
    id: str
    username: str
    password_hash: str
    is_admin: bool
    created_at: str


@dataclass(frozen=True)
class SessionRecord:
    """A sign-in session (``sessions`` table)."""

    id: str
    user_id: str
    created_at: str
    last_used_at: str
    user_agent: str
    address: str
    refresh_digest: str
    expires_at: str


@dataclass(frozen=True)
class ApiTokenRecord:
    """A personal API token (``api_tokens`` table); the secret itself is never kept."""

    id: str
    user_id: str
    name: str
    scope: str
    created_at: str
    last_used_at: str | None
    expires_at: str | None


@dataclass(frozen=True)
class Webhook:
    """A user's receiver of events (``webhooks`` table)."""

    id: str
    user_id: str
    url: str
    events: tuple[str, ...]
    secret: str
    enabled: bool
    disabled_reason: str | None
    failing_since: str | None
    created_at: str

    def public(self) -> dict[str, Any]:
        """As the API lists it: never the secret."""
        return {
            "webhook_id": self.id,
            "url": self.url,
            "events": list(self.events),
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "failing_since": self.failing_since,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class Delivery:
    """One event for one webhook (``webhook_deliveries`` table), its id kept across retries."""

    id: str
    webhook_id: str
    event: str
    payload: str
    status: str
    attempts: int
    next_attempt_at: str | None
    last_status: int | None
    last_error: str | None
    created_at: str
    finished_at: str | None

    def public(self) -> dict[str, Any]:
        return {
            "delivery_id": self.id,
            "event": self.event,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
        }


@dataclass(frozen=True)
class AnalysisRun:
    """A finished run of an analysis of an article: what a re-analysis looks at."""

    article_id: str
    task_type: str
    status: str
    input: dict[str, Any]
    input_hash: str


@dataclass(frozen=True)
class Batch:
    """Bulk work a user started (``batches`` table): an import, with its progress."""

    id: str
    user_id: str
    kind: str
    format: str | None
    status: str
    total: int
    done: int
    failed: int
    duplicates: int
    last_error: str | None
    created_at: str
    finished_at: str | None
    #: What a re-analysis was asked for: ``{"scope", "kinds"}``.
    options: dict[str, Any] | None = None

    def progress(self) -> dict[str, Any]:
        """What the events and the API show of where it stands (an import by its
        ``import_id``, as its API names it; other batches by ``batch_id``)."""
        ident = {"import_id": self.id} if self.kind == "import" else {"batch_id": self.id, "kind": self.kind}
        return {
            **ident,
            "status": self.status,
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "duplicates": self.duplicates,
        }

    def public(self) -> dict[str, Any]:
        described = {"format": self.format} if self.kind == "import" else dict(self.options or {})
        return {
            **self.progress(),
            **described,
            "last_error": self.last_error,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
        }


@dataclass(frozen=True)
class Task:
    id: str
    seq: int
    user_id: str
    task_type: str
    status: TaskStatus
    priority: int
    attempts: int
    attempts_excused: int
    input: dict[str, Any]
    input_hash: str
    article_id: str | None
    metadata: dict[str, Any]
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    model: str | None
    prompt_tokens: int
    completion_tokens: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    #: Tokens set aside for this task while it is unfinished (tasks.daily_token_budget).
    reserved_tokens: int = 0

    def public(self) -> dict[str, Any]:
        """The task as the API shows it."""
        return {
            "task_id": self.id,
            "task_type": self.task_type,
            "status": self.status.value,
            "priority": self.priority,
            "attempts": self.attempts,
            "input_hash": self.input_hash,
            "article_id": self.article_id,
            "metadata": self.metadata,
            "result": self.result,
            "error": self.error,
            "model": self.model,
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
            },
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


@dataclass(frozen=True)
class QueuedTask:
    """What the scheduler needs of a pending task (recovery loads only this)."""

    id: str
    user_id: str
    priority: int


@dataclass(frozen=True)
class NewTask:
    """A task about to be inserted."""

    id: str
    user_id: str
    task_type: str
    priority: int
    input: dict[str, Any]
    input_hash: str
    article_id: str | None
    metadata: dict[str, Any]
    created_at: str
    reserved_tokens: int = 0
    #: The batch (an import, a re-analysis) that submitted it.
    batch_id: str | None = None

    def inserted(self, seq: int) -> Task:
        """The task as its insert stored it, numbered ``seq`` by the database."""
        return Task(
            id=self.id,
            seq=seq,
            user_id=self.user_id,
            task_type=self.task_type,
            status=TaskStatus.PENDING,
            priority=self.priority,
            attempts=0,
            attempts_excused=0,
            input=self.input,
            input_hash=self.input_hash,
            article_id=self.article_id,
            metadata=self.metadata,
            result=None,
            error=None,
            model=None,
            prompt_tokens=0,
            completion_tokens=0,
            created_at=self.created_at,
            started_at=None,
            finished_at=None,
            reserved_tokens=self.reserved_tokens,
        )


#: The events that end a task, and those after which its progress so far no longer
#: stands (it ended, or a new attempt is queued or started).
TASK_ENDS = frozenset({"task_completed", "task_failed", "task_cancelled"})
PROGRESS_RESETS = TASK_ENDS | {"task_queued", "task_started"}


@dataclass(frozen=True)
class Event:
    """One server-sent event. ``id`` is None for events that are never stored
    or resumed (``connected``, ``heartbeat``, ``reset``)."""

    id: int | None
    user_id: str
    event: str
    data: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def message(self) -> bytes:
        """The event as one SSE message: ``id:`` (only for events that have one),
        ``event:``, and the data as one line of JSON (``to_json``: no text can break
        the stream). Cached: one event goes to every open stream of its user."""
        head = "" if self.id is None else f"id: {self.id}\n"
        return f"{head}event: {self.event}\ndata: {to_json(self.data)}\n\n".encode()


@dataclass(frozen=True)
class ArticleItem:
    """An article as a list shows it: its excerpt, never its text."""

    id: str
    seq: int
    user_id: str
    title: str
    url: str | None
    content_hash: str
    excerpt: str
    analysis: dict[str, Any] | None
    meta_analysis: dict[str, Any] | None
    created_at: str
    updated_at: str
    fetch_status: str | None = None
    page_meta: dict[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    archived: bool = False
    favorite: bool = False

    def public(self) -> dict[str, Any]:
        return {
            "article_id": self.id,
            "title": self.title,
            "url": self.url,
            "content_hash": self.content_hash,
            "excerpt": self.excerpt,
            "analysis": self.analysis,
            "meta_analysis": self.meta_analysis,
            "lenses": {},
            "fetch_status": self.fetch_status,
            "page": self.page_meta,
            "tags": list(self.tags),
            "archived": self.archived,
            "favorite": self.favorite,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class Article:
    id: str
    seq: int
    user_id: str
    title: str
    content: str
    url: str | None
    content_hash: str
    analysis: dict[str, Any] | None
    meta_analysis: dict[str, Any] | None
    lenses: dict[str, dict[str, Any]]
    created_at: str
    updated_at: str
    excerpt: str = ""
    #: The text's estimated size in tokens (``text.estimate_tokens``), set at save time.
    tokens: int = 0
    #: Saved from a URL: ``fetching``, ``fetched`` or ``failed``; None when saved with its text.
    fetch_status: str | None = None
    #: What a fetched page said of itself: ``author``, ``site_name``, ``published``, ``language``.
    page_meta: dict[str, str] = field(default_factory=dict)
    #: Tag names, sorted by their keys.
    tags: tuple[str, ...] = ()
    archived: bool = False
    favorite: bool = False

    def public(self) -> dict[str, Any]:
        """The article as the API shows it, with its text."""
        return {
            "article_id": self.id,
            "title": self.title,
            "url": self.url,
            "content_hash": self.content_hash,
            "excerpt": self.excerpt,
            "content": self.content,
            "analysis": self.analysis,
            "meta_analysis": self.meta_analysis,
            "lenses": self.lenses,
            "tags": list(self.tags),
            "archived": self.archived,
            "favorite": self.favorite,
            "fetch_status": self.fetch_status,
            "page": self.page_meta,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class Highlight:
    """A quote of an article's text with its context and the reader's note."""

    id: str
    user_id: str
    article_id: str
    quote: str
    prefix: str
    suffix: str
    position: int
    note: str
    created_at: str
    updated_at: str

    def public(self) -> dict[str, Any]:
        return {
            "highlight_id": self.id,
            "article_id": self.article_id,
            "quote": self.quote,
            "prefix": self.prefix,
            "suffix": self.suffix,
            "position": self.position,
            "note": self.note,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
