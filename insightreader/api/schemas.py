"""Wire models: what requests carry and responses show (and what /openapi.json describes)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_validator

from .. import search, webhooks
from ..accounts.api_tokens import EXPIRES_IN_DAYS_MAX, NAME_MAX
from ..accounts.passwords import MAX_LENGTH, USERNAME_MAX, USERNAME_MIN, USERNAME_PATTERN
from ..tagnames import MAX_LENGTH as TAG_MAX_LENGTH
from ..tagnames import MAX_PER_ARTICLE, REFUSED
from ..languages import TAG_PATTERN
from ..user_settings import INSTRUCTION_CHARS


def _encodable(value: str) -> str:
    """Reject lone surrogates ("\\ud800"): they parse as JSON but cannot be stored."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains characters that are not valid Unicode (lone surrogates)") from None
    return value


def _json_integer(value: Any) -> Any:
    """A JSON number with no fraction (``7.0``) is an integer, as JSON Schema says
    (``"type": "integer"``); strict pydantic would refuse it."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: An integer as JSON Schema means it: ``7`` or ``7.0``, never ``"7"`` or ``true``.
#: (Constraints go before the validator: ``Annotated[Integer, Field(ge=…)]`` would put
#: ``ge``/``le`` into the JSON schema instead of ``minimum``/``maximum``.)
JsonInteger = BeforeValidator(_json_integer)


#: White space and invisible format characters (zero-width space and joiners, word
#: joiner, BOM, soft hyphen, bidi controls), spelled out for the reason ``_NOT_IN_URL``
#: gives, so that the schema and the server agree on what blank text is.
_INVISIBLE = (
    r"\t-\r\x1C-\x20\x85\xA0\xAD\u1680\u180E\u2000-\u200F\u2028-\u202F"
    r"\u205F-\u2064\u2066-\u2069\u3000\uFEFF"
)
#: Text a reader can see: at least one character that is none of those (a pattern
#: matches anywhere, in JSON Schema and in pydantic alike: one linear scan).
VISIBLE = rf"[^{_INVISIBLE}]"


Text = Annotated[str, AfterValidator(_encodable)]
NonEmptyText = Annotated[str, StringConstraints(min_length=1, strip_whitespace=False), AfterValidator(_encodable)]
Username = Annotated[
    str, StringConstraints(min_length=USERNAME_MIN, max_length=USERNAME_MAX, pattern=USERNAME_PATTERN)
]
#: Any non-empty password: the rules of a new one (``accounts.passwords``) answer
#: ``422 weak_password``, and logins check none (accounts older than them still work).
Password = Annotated[str, StringConstraints(min_length=1, max_length=MAX_LENGTH), AfterValidator(_encodable)]
Priority = Annotated[int, Field(ge=-10, le=10), JsonInteger]


class Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _examples(*values: dict[str, Any]) -> ConfigDict:
    """Examples shown in /openapi.json and /docs."""
    return ConfigDict(json_schema_extra={"examples": list(values)})


class Credentials(Wire):
    model_config = _examples({"username": "ada", "password": "correct horse battery"})

    username: Username
    password: Password


class PasswordChange(Wire):
    model_config = _examples({"current_password": "correct horse battery", "new_password": "a new and longer passphrase"})

    current_password: Password
    new_password: Password


class SessionOut(BaseModel):
    session_id: str
    created_at: str
    #: Sign-in or the last token refresh.
    last_used_at: str
    user_agent: str
    address: str
    #: The session of the request's own access token.
    current: bool


class SessionList(BaseModel):
    model_config = _examples(
        {
            "sessions": [
                {
                    "session_id": "5d0c6f1e2a3b4c5d6e7f8091a2b3c4d5",
                    "created_at": "2026-11-27T18:00:00.000Z",
                    "last_used_at": "2026-11-27T18:14:00.000Z",
                    "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0",
                    "address": "203.0.113.7",
                    "current": True,
                }
            ]
        }
    )

    sessions: list[SessionOut]


class RefreshRequest(Wire):
    model_config = _examples({"refresh_token": "eyJhbGciOiJIUzI1NiIs…"})

    refresh_token: NonEmptyText


class ErrorBody(BaseModel):
    code: str = Field(examples=["validation_error"])
    message: str = Field(examples=["title: Field required"])


class ErrorResponse(BaseModel):
    """An error: a stable `code` to act on and a `message` for people."""

    model_config = _examples({"error": {"code": "not_found", "message": "no such task"}})

    error: ErrorBody


class UserOut(BaseModel):
    model_config = _examples(
        {"user_id": "4f1c2d3e-5b6a-4c7d-8e9f-0a1b2c3d4e5f", "username": "ada", "created_at": "2026-11-27T18:00:00.000Z"}
    )

    user_id: str
    username: str
    created_at: str | None = None


class TokenOut(BaseModel):
    model_config = _examples(
        {
            "access_token": "eyJhbGciOiJIUzI1NiIs…",
            "refresh_token": "eyJhbGciOiJIUzI1NiIs…",
            "token_type": "bearer",
            "expires_in": 900,
        }
    )

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class TokenCreate(Wire):
    model_config = _examples({"name": "nightly import", "scope": "write", "expires_in_days": 90})

    name: Annotated[str, StringConstraints(min_length=1, max_length=NAME_MAX, pattern=VISIBLE), AfterValidator(_encodable)]
    scope: Literal["read", "write"]
    #: Left out or null: the token does not expire.
    expires_in_days: Annotated[int, Field(ge=1, le=EXPIRES_IN_DAYS_MAX), JsonInteger] | None = None


class ApiTokenOut(BaseModel):
    token_id: str
    name: str
    scope: Literal["read", "write"]
    created_at: str
    #: Written from memory every `auth.token_use_flush_interval` seconds (null: never used).
    last_used_at: str | None
    #: Null: the token does not expire.
    expires_at: str | None


class ApiTokenCreated(ApiTokenOut):
    model_config = _examples(
        {
            "token_id": "0b8f3c2a9d5e4f6a8b7c1d2e3f4a5b6c",
            "token": "irt_4q2JtW0m3sXkq9yLr8Hn1VZc6pBfGdEoTaUiKjYxRws",
            "name": "nightly import",
            "scope": "write",
            "created_at": "2026-12-05T08:00:00.000Z",
            "last_used_at": None,
            "expires_at": "2027-03-05T08:00:00.000Z",
        }
    )

    #: The secret, shown only in this answer.
    token: str


class ApiTokenList(BaseModel):
    tokens: list[ApiTokenOut]


class WebhookCreate(Wire):
    model_config = _examples({"url": "https://example.org/hooks/insightreader", "events": ["task_completed", "article_saved"]})

    url: Annotated[str, StringConstraints(min_length=1, max_length=2048)] = Field(
        description="Where to POST (http or https), behind the fetch address guard."
    )
    events: list[Literal["task_completed", "task_failed", "task_cancelled", "article_saved", "import_finished"]] = Field(
        min_length=1, max_length=5
    )
    secret: Annotated[str, StringConstraints(pattern=webhooks.SECRET_PATTERN)] | None = Field(
        None, description="`whsec_` + the base64 of a 24–64 byte key; left out, one is made."
    )


class WebhookOut(BaseModel):
    webhook_id: str
    url: str
    events: list[str]
    enabled: bool
    disabled_reason: str | None = Field(description="Why it was disabled (a 410 answer, 24 hours of failures).")
    failing_since: str | None = Field(description="Since when its deliveries fail (null while they succeed).")
    created_at: str


class WebhookCreated(WebhookOut):
    secret: str = Field(description="The signing secret (Standard Webhooks), shown in this answer only.")


class WebhookList(BaseModel):
    items: list[WebhookOut]


class DeliveryOut(BaseModel):
    delivery_id: str = Field(description="The `webhook-id` header, the same on every attempt.")
    event: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    next_attempt_at: str | None
    last_status: int | None = Field(description="The receiver's last HTTP status (null: no answer).")
    last_error: str | None
    created_at: str
    finished_at: str | None


class DeliveryList(BaseModel):
    items: list[DeliveryOut]


class TicketOut(BaseModel):
    model_config = _examples({"ticket": "eyJhbGciOiJIUzI1NiIs…", "expires_in": 60})

    ticket: str
    expires_in: int


class TaskError(BaseModel):
    code: str
    message: str
    retryable: bool
    #: Shown as stored and as `task_failed` sends it: no `fallback` key when there is none.
    fallback: dict[str, Any] | None = Field(
        None,
        exclude_if=lambda value: value is None,
        description="What a client may still show although the task failed"
        ' (follow-up buttons: `{"buttons": [...]}`, the defaults); absent otherwise.',
    )


class TokenUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


_TASK_EXAMPLE: dict[str, Any] = {
    "task_id": "9b2f6c1e-2d4a-4f8b-9c3d-5e6f7a8b9c0d",
    "task_type": "insight_generation",
    "status": "completed",
    "priority": 5,
    "attempts": 1,
    "input_hash": "sha256:3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b",
    "article_id": None,
    "metadata": {"preview": "Street trees cool the air around them by shading"},
    "result": {"insight": "Shade matters more than the trees' evaporation…"},
    "error": None,
    "model": "gpt-4o-mini",
    "usage": {"prompt_tokens": 412, "completion_tokens": 96},
    "created_at": "2026-11-27T18:00:00.000Z",
    "started_at": "2026-11-27T18:00:00.120Z",
    "finished_at": "2026-11-27T18:00:07.480Z",
}


class TaskOut(BaseModel):
    model_config = _examples(_TASK_EXAMPLE)

    task_id: str
    task_type: str
    status: Literal["pending", "running", "completed", "failed", "cancelled"]
    priority: int
    attempts: int
    input_hash: str
    article_id: str | None
    metadata: dict[str, Any]
    result: dict[str, Any] | None
    error: TaskError | None
    model: str | None
    usage: TokenUsage
    created_at: str
    started_at: str | None
    finished_at: str | None
    #: Why a pending task is not running yet (e.g. the LLM provider is unavailable).
    waiting_reason: str | None = None


class TaskList(BaseModel):
    model_config = _examples({"items": [_TASK_EXAMPLE], "next_cursor": "czQy"})

    items: list[TaskOut]
    next_cursor: str | None


class TaskQuery(BaseModel):
    status: Literal["pending", "running", "completed", "failed", "cancelled"] | None = None
    task_type: str | None = None
    limit: int = 20
    cursor: str | None = None


class SubmitOut(BaseModel):
    """A submit's answer: 202 while the task is unfinished, 200 with the result on a dedup hit."""

    model_config = _examples(
        {"status": "pending", "task_id": "9b2f6c1e-2d4a-4f8b-9c3d-5e6f7a8b9c0d"},
        {
            "status": "completed",
            "task_id": "9b2f6c1e-2d4a-4f8b-9c3d-5e6f7a8b9c0d",
            "result": {"buttons": [{"label": "Why shade?", "prompt": "Why does shade matter more?", "intent": "explain"}]},
            "error": None,
            "deduplicated": True,
        },
    )

    status: Literal["pending", "running", "completed", "failed", "cancelled"]
    task_id: str
    article_id: str | None = None
    result: dict[str, Any] | None = None
    error: TaskError | None = None
    deduplicated: bool = False


class Health(BaseModel):
    model_config = _examples({"status": "ok"})

    status: str


class Ready(BaseModel):
    """Ready: the engine takes submits and the database answers."""

    model_config = _examples(
        {
            "status": "ready",
            "engine": {"accepting": True, "running": 1, "ready": 0, "ready_by_priority": {}},
            "llm": {"model": "gpt-4o-mini", "offline": False, "sdk": "loaded", "circuit": {"state": "closed"}},
        }
    )

    status: str
    engine: dict[str, Any]
    llm: dict[str, Any]


Title = Annotated[
    str, StringConstraints(min_length=1, max_length=500, pattern=VISIBLE), AfterValidator(_encodable)
]
#: An article's text: something to read, not only white space.
Prose = Annotated[str, StringConstraints(min_length=1, pattern=VISIBLE), AfterValidator(_encodable)]
#: Characters no URL holds: controls and white space. Spelled out, because ``\s`` means
#: different sets in JSON Schema's regular expressions (ECMA-262: U+FEFF yes, U+0085 no)
#: and in pydantic's (Rust: Unicode White_Space, the other way round), and the schema
#: must accept exactly what the server does.
_NOT_IN_URL = r"\x00-\x20\x7F-\x9F\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\uFEFF"
Url = Annotated[
    str, StringConstraints(max_length=2048, pattern=rf"^https?://[^{_NOT_IN_URL}]+$"), AfterValidator(_encodable)
]
Selection = Annotated[
    str, StringConstraints(min_length=1, max_length=20_000, pattern=VISIBLE), AfterValidator(_encodable)
]
Short = Annotated[str, StringConstraints(max_length=500), AfterValidator(_encodable)]


class Submit(Wire):
    model_config = _examples({"priority": 5})

    priority: Priority | None = None


class SaveArticle(Submit):
    """Either the article's text (``content``, with its ``title``; ``url`` only stored),
    or only a ``url``: the server fetches the page and extracts its text."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "title": "Street trees",
                    "content": "Street trees cool the air around them by shading the pavement…",
                    "url": "https://example.com/street-trees",
                },
                {"url": "https://example.com/street-trees"},
            ],
            "anyOf": [
                {"required": ["content"], "properties": {"content": {"type": "string"}}},
                {"required": ["url"], "properties": {"url": {"type": "string"}}},
            ],
        }
    )

    title: Title | None = Field(None, description="Required with `content`; with only a `url`, shown until the page arrives.")
    content: Prose | None = Field(None, description="The text. Without it, `url` is fetched (a `page_fetch` task).")
    url: Url | None = None

    @model_validator(mode="after")
    def _content_or_url(self) -> SaveArticle:
        if self.content is None and self.url is None:
            raise ValueError("give the article's `content`, or a `url` to fetch it from")
        return self


class MetaAnalysisRequest(Submit):
    model_config = _examples({"article_id": "4f1c2d3e-5b6a-4c7d-8e9f-0a1b2c3d4e5f"})

    article_id: NonEmptyText


class Turn(Wire):
    role: Literal["user", "assistant"]
    content: Annotated[str, StringConstraints(max_length=20_000), AfterValidator(_encodable)]


class ButtonsRequest(Submit):
    model_config = _examples(
        {"selected_text": "Street trees cool the air around them by shading the pavement.", "intent": "understand"}
    )

    selected_text: Selection
    insight: Annotated[str, StringConstraints(max_length=20_000), AfterValidator(_encodable)] | None = None
    intent: Short | None = None
    conversation_history: Annotated[list[Turn], Field(max_length=50)] = []


class InsightRequest(Submit):
    model_config = _examples(
        {
            "selected_text": "Street trees cool the air around them by shading the pavement.",
            "intent": "explain",
            "article_id": "4f1c2d3e-5b6a-4c7d-8e9f-0a1b2c3d4e5f",
        }
    )

    selected_text: Selection
    intent: Short | None = None
    article_id: NonEmptyText | None = None
    question: Annotated[str, StringConstraints(max_length=2000), AfterValidator(_encodable)] | None = None
    highlight_id: NonEmptyText | None = Field(
        None, description="The highlight the passage is (of `article_id`): the insight is kept with it."
    )


class ArticleOut(BaseModel):
    article_id: str
    title: str
    url: str | None
    content_hash: str
    excerpt: str = Field(description="The start of the text, at most 300 characters (lists show this, not `content`).")
    content: str | None = Field(None, description="The full text (`GET /articles/{article_id}` only).")
    analysis: dict[str, Any] | None
    meta_analysis: dict[str, Any] | None
    lenses: dict[str, dict[str, Any]]
    fetch_status: Literal["fetching", "fetched", "failed"] | None = Field(
        None, description="Saved from a URL: whether its page has arrived; null when saved with its text."
    )
    page: dict[str, str] = Field(
        default_factory=dict, description="What a fetched page said of itself: `author`, `site_name`, `published`, `language`."
    )
    tags: list[str] = Field(description="Tag names, sorted case-insensitively.")
    archived: bool
    favorite: bool
    created_at: str
    updated_at: str


class ArticleList(BaseModel):
    items: list[ArticleOut]
    next_cursor: str | None


class PageQuery(BaseModel):
    limit: int = 20
    cursor: str | None = None


Quote = Annotated[str, StringConstraints(min_length=1, max_length=10_000), AfterValidator(_encodable)]
Context = Annotated[str, StringConstraints(max_length=2_000), AfterValidator(_encodable)]
Note = Annotated[str, StringConstraints(max_length=10_000), AfterValidator(_encodable)]


class NewHighlight(Wire):
    model_config = _examples({
        "quote": "Shade lowers the temperature of the pavement",
        "prefix": "On a summer afternoon, ",
        "suffix": " by several degrees.",
        "note": "Compare with the council's heat map.",
    })

    quote: Quote = Field(description="Text of the article, exactly as it stands there.")
    prefix: Context = Field("", description="Text just before the quote (finds the right one of several).")
    suffix: Context = Field("", description="Text just after the quote.")
    note: Note = ""


class HighlightChange(Wire):
    model_config = _examples({"note": "Compare with the council's heat map."})

    note: Note


class HighlightOut(BaseModel):
    highlight_id: str
    article_id: str
    quote: str
    prefix: str
    suffix: str
    position: int = Field(description="Where the quote starts in the article's text (characters).")
    note: str
    created_at: str
    updated_at: str


class HighlightList(BaseModel):
    items: list[HighlightOut]


class SearchQuery(BaseModel):
    q: str = Field(
        min_length=1,
        max_length=search.MAX_QUERY_CHARS,
        description="Words, \"a phrase\", or Chinese (城市); every part must match."
        " A `q` without a letter or digit finds nothing.",
    )
    limit: int = 20
    cursor: str | None = None


class SearchHit(BaseModel):
    article_id: str
    title: str
    snippet: str = Field(description="The text around the best match, as plain text.")
    score: float = Field(description="BM25 relevance: higher is better.")


class SearchResults(BaseModel):
    model_config = _examples(
        {
            "items": [
                {
                    "article_id": "5d1b7c2a-9e4f-4a3b-8c6d-2f1e0a9b8c7d",
                    "title": "Street trees cool the city",
                    "snippet": "…a row of street trees lowers the air temperature by two degrees…",
                    "score": 7.42,
                }
            ],
            "next_cursor": None,
        }
    )

    items: list[SearchHit]
    next_cursor: str | None
#: A tag name as sent: something visible, nothing ``tagnames.REFUSED``, at most 64
#: characters (white space is then trimmed and collapsed).
TagName = Annotated[
    str,
    StringConstraints(max_length=TAG_MAX_LENGTH, pattern=rf"^[^{REFUSED}]*[^{REFUSED}{_INVISIBLE}][^{REFUSED}]*$"),
    AfterValidator(_encodable),
]


class ArticleQuery(PageQuery):
    tag: TagName | None = Field(None, description="Only articles with this tag (any spelling of it).")
    archived: bool | None = Field(None, description="Only archived (`true`) or only unarchived (`false`) articles.")
    favorite: bool | None = Field(None, description="Only favourites (`true`) or only the others (`false`).")


class ArticleChange(Wire):
    """What `PATCH /articles/{article_id}` changes; a field left out (or `null`) stays."""

    model_config = _examples({"archived": True}, {"favorite": True, "title": "Street trees, again"})

    archived: bool | None = None
    favorite: bool | None = None
    title: Title | None = None


class TagsIn(Wire):
    model_config = _examples({"tags": ["cities", "Climate"]})

    tags: list[TagName] = Field(max_length=MAX_PER_ARTICLE, description="The article's whole set of tags.")


class TagsOut(BaseModel):
    model_config = _examples({"tags": ["Climate", "cities"]})

    tags: list[str]


class TagOut(BaseModel):
    name: str
    count: int = Field(description="How many of the user's articles carry the tag.")


class TagList(BaseModel):
    model_config = _examples({"items": [{"name": "Climate", "count": 3}, {"name": "cities", "count": 1}]})

    items: list[TagOut]


class LensOut(BaseModel):
    type: str
    name: str
    description: str


class LensList(BaseModel):
    lenses: list[LensOut]


class UsageDay(BaseModel):
    day: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    tasks: int


class TaskCount(BaseModel):
    day: str
    task_type: str
    status: str
    count: int


class Budget(BaseModel):
    daily_token_budget: int
    used_today: int
    remaining_today: int | None


class UsageReport(BaseModel):
    days: list[UsageDay]
    tasks: list[TaskCount]
    budget: Budget


# -- event stream payloads ---------------------------------------------------------------
# The stream is text/event-stream, which quart-schema cannot describe; these models give
# the `data:` JSON of each event in /openapi.json (components, and `x-events` on the
# stream's media type). See docs/events.md.


class EventConnected(BaseModel):
    """First message of every stream (no `id:`)."""

    user_id: str
    last_event_id: int


class EventTaskQueued(BaseModel):
    task_id: str
    task_type: str
    metadata: dict[str, Any]
    reason: str | None = Field(None, description="Why a task went back to the queue (`shutdown`, `deferred`).")


class EventTaskStarted(BaseModel):
    task_id: str
    task_type: str
    metadata: dict[str, Any]
    attempt: int


class EventTaskProgress(BaseModel):
    """A piece of an insight being written (not stored; `index` restarts with each attempt)."""

    task_id: str
    task_type: str
    attempt: int
    index: int
    delta: str


class EventTaskCompleted(BaseModel):
    task_id: str
    task_type: str
    result: dict[str, Any]
    metadata: dict[str, Any]


class EventTaskFailed(BaseModel):
    task_id: str
    task_type: str
    error: TaskError
    metadata: dict[str, Any]


class EventTaskCancelled(BaseModel):
    task_id: str
    task_type: str
    metadata: dict[str, Any]


class EventReset(BaseModel):
    """The requested Last-Event-ID is older than the oldest kept event: resync with GET /tasks."""

    reason: str


class EventHeartbeat(BaseModel):
    """Sent after `sse.heartbeat` seconds without a message (no `id:`)."""


class EventClosed(BaseModel):
    """The stream ends (no `id:`); reconnect with the last id received."""

    reason: Literal["overflow", "shutdown", "session_expired", "closed"]


class ImportProgress(BaseModel):
    """Where an import stands: `done` + `failed` + `duplicates` reach `total` when it
    has finished (docs/import-export.md)."""

    import_id: str
    status: Literal["running", "finished"]
    total: int = Field(description="Items the file held (items with neither a URL nor text are not counted).")
    done: int = Field(description="Items saved as articles (their fetch or analysis queued).")
    failed: int = Field(description="Items that could not be saved (a quota, an address that is not a web page).")
    duplicates: int = Field(description="Items already in the library, or earlier in the same file.")


class EventArticleSaved(BaseModel):
    """A new article is in the library (saved with its text or from a URL, or imported)."""

    article_id: str
    title: str
    url: str | None


class EventImportProgress(ImportProgress):
    """An import moved on (at most every half second per import)."""


class EventImportFinished(ImportProgress):
    """An import's last item is done."""


ReanalysisKind = Literal["article_analysis", "meta_analysis", "thinking_lens"]


class BatchProgress(BaseModel):
    """Where a re-analysis stands: `done` + `failed` reach `total` when every item was
    handed to the queue (or could not be); `tasks` counts its tasks by status."""

    batch_id: str
    kind: Literal["reanalysis"]
    status: Literal["running", "finished", "cancelled"]
    total: int = Field(description="Results to redo.")
    done: int = Field(description="Items whose task is queued (or has run).")
    failed: int = Field(description="Items that could not be queued (the article was deleted; a refused submit).")
    duplicates: int


class EventBatchProgress(BatchProgress):
    """A re-analysis moved on (at most every half second per batch)."""


class EventBatchFinished(BatchProgress):
    """A re-analysis queued its last item, or was cancelled."""


EVENT_MODELS: dict[str, type[BaseModel]] = {
    "connected": EventConnected,
    "task_queued": EventTaskQueued,
    "task_started": EventTaskStarted,
    "task_progress": EventTaskProgress,
    "task_completed": EventTaskCompleted,
    "task_failed": EventTaskFailed,
    "task_cancelled": EventTaskCancelled,
    "reset": EventReset,
    "heartbeat": EventHeartbeat,
    "closed": EventClosed,
    "article_saved": EventArticleSaved,
    "import_progress": EventImportProgress,
    "import_finished": EventImportFinished,
    "batch_progress": EventBatchProgress,
    "batch_finished": EventBatchFinished,
}


class ExportedInsight(BaseModel):
    selected_text: str | None
    question: str | None
    highlight_id: str | None
    insight: str | None
    created_at: str


class ExportedArticle(BaseModel):
    article_id: str
    url: str | None
    title: str
    content: str
    tags: list[str]
    archived: bool
    favorite: bool
    saved_at: str
    updated_at: str
    highlights: list[HighlightOut]
    analysis: dict[str, Any] | None
    meta_analysis: dict[str, Any] | None
    lenses: dict[str, dict[str, Any]]
    insights: list[ExportedInsight]


class ExportDocument(BaseModel):
    """``GET /export?format=json``: everything a user owns (docs/import-export.md)."""

    format: Literal["insightreader"]
    version: int
    exported_at: str
    username: str
    articles: list[ExportedArticle]


#: Models the spec lists among its components without a route returning them as JSON.
DOCUMENT_MODELS: tuple[type[BaseModel], ...] = (ExportDocument,)


class ImportQuery(BaseModel):
    format: Literal["netscape", "pocket_csv", "instapaper_csv", "omnivore", "wallabag", "readwise_csv", "insightreader"] = Field(
        description="The file's format (docs/import-export.md)."
    )


class ImportStarted(BaseModel):
    import_id: str
    status: Literal["running", "finished"]
    total: int
    duplicates: int = Field(description="Items that repeat an earlier item of the same file.")


class ImportOut(ImportProgress):
    format: str
    last_error: str | None = Field(description="Why the last failed item failed.")
    created_at: str
    finished_at: str | None


class ImportList(BaseModel):
    items: list[ImportOut]


PromptedTaskType = Literal["article_analysis", "meta_analysis", "thinking_lens", "button_generation", "insight_generation"]
Instruction = Annotated[str, StringConstraints(max_length=INSTRUCTION_CHARS), AfterValidator(_encodable)]


class SettingsOut(BaseModel):
    model_config = _examples(
        {
            "output_language": "zh-CN",
            "auto_analyze": True,
            "instructions": {
                "article_analysis": "Keep the summary under 60 words; name the data sources.",
                "meta_analysis": "",
                "thinking_lens": "",
                "button_generation": "",
                "insight_generation": "",
            },
            "ui_language": "zh-CN",
        }
    )

    #: `auto`: results in the text's own language; or a BCP 47 tag.
    output_language: str
    auto_analyze: bool
    instructions: dict[PromptedTaskType, str]
    ui_language: Literal["en", "zh-CN"] | None


class SettingsChange(Wire):
    """What `PATCH /settings` changes; a field left out stays. An empty instruction
    removes that task type's."""

    model_config = _examples(
        {"output_language": "zh-CN"},
        {"instructions": {"article_analysis": "Keep the summary under 60 words."}, "auto_analyze": False},
    )

    output_language: Annotated[str, StringConstraints(pattern=rf"^(auto|{TAG_PATTERN})$")] = Field(
        "auto", description="`auto` (the text's own language) or a BCP 47 tag such as `en`, `zh-CN`, `ja`."
    )
    auto_analyze: bool = Field(True, description="Analyse the articles an import brings in.")
    instructions: dict[PromptedTaskType, Instruction] = Field(
        default_factory=dict,
        description=f"Task type → the reader's own instructions (at most {INSTRUCTION_CHARS} characters each).",
    )
    ui_language: Literal["en", "zh-CN"] | None = Field(None, description="The page's language (`null`: the browser's).")


class ReanalyzeIn(Wire):
    model_config = _examples({"scope": "stale", "kinds": ["article_analysis", "meta_analysis"]})

    scope: Literal["stale", "failed", "all"] = Field(
        description="`stale`: results made with another model, prompt version or prompt settings;"
        " `failed`: analyses whose last run failed; `all`: every article (and every lens it has)."
    )
    kinds: list[ReanalysisKind] = Field(["article_analysis"], min_length=1, max_length=3)


class BatchStarted(BaseModel):
    batch_id: str
    status: Literal["running", "finished"]
    total: int


class BatchOut(BatchProgress):
    scope: Literal["stale", "failed", "all"]
    kinds: list[ReanalysisKind]
    last_error: str | None = Field(description="Why the last failed item failed.")
    created_at: str
    finished_at: str | None
    tasks: dict[Literal["pending", "running", "completed", "failed", "cancelled"], int] = Field(
        description="The batch's tasks by status."
    )


class BatchList(BaseModel):
    items: list[BatchOut]
