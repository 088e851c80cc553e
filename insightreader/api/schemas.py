"""Wire models: what requests carry and responses show (and what /openapi.json describes)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints


def _encodable(value: str) -> str:
    """Reject lone surrogates ("\\ud800"): they parse as JSON but cannot be stored."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains characters that are not valid Unicode (lone surrogates)") from None
    return value


Text = Annotated[str, AfterValidator(_encodable)]
NonEmptyText = Annotated[str, StringConstraints(min_length=1, strip_whitespace=False), AfterValidator(_encodable)]
Username = Annotated[
    str, StringConstraints(min_length=3, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")
]
Password = Annotated[str, StringConstraints(min_length=8, max_length=1024), AfterValidator(_encodable)]
Priority = Annotated[int, Field(ge=-10, le=10)]


class Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Credentials(Wire):
    username: Username
    password: Password


class RefreshRequest(Wire):
    refresh_token: NonEmptyText


class ErrorBody(BaseModel):
    code: str = Field(examples=["validation_error"])
    message: str = Field(examples=["title: Field required"])


class ErrorResponse(BaseModel):
    error: ErrorBody


class UserOut(BaseModel):
    user_id: str
    username: str
    created_at: str | None = None


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class TicketOut(BaseModel):
    ticket: str
    expires_in: int


class TaskError(BaseModel):
    code: str
    message: str
    retryable: bool


class TokenUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class TaskOut(BaseModel):
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


class TaskList(BaseModel):
    items: list[TaskOut]
    next_cursor: str | None


class TaskQuery(BaseModel):
    status: Literal["pending", "running", "completed", "failed", "cancelled"] | None = None
    task_type: str | None = None
    limit: int = 20
    cursor: str | None = None


class SubmitOut(BaseModel):
    """A submit's answer: 202 while the task is unfinished, 200 with the result on a dedup hit."""

    status: Literal["pending", "running", "completed", "failed", "cancelled"]
    task_id: str
    article_id: str | None = None
    result: dict[str, Any] | None = None
    error: TaskError | None = None
    deduplicated: bool = False


class Health(BaseModel):
    status: str


Title = Annotated[str, StringConstraints(min_length=1, max_length=500), AfterValidator(_encodable)]
Url = Annotated[
    str, StringConstraints(max_length=2048, pattern=r"^https?://\S+$"), AfterValidator(_encodable)
]
Selection = Annotated[str, StringConstraints(min_length=1, max_length=20_000), AfterValidator(_encodable)]
Short = Annotated[str, StringConstraints(max_length=500), AfterValidator(_encodable)]


class Submit(Wire):
    priority: Priority | None = None


class SaveArticle(Submit):
    title: Title
    content: NonEmptyText
    url: Url | None = None


class MetaAnalysisRequest(Submit):
    article_id: NonEmptyText


class Turn(Wire):
    role: Literal["user", "assistant"]
    content: Annotated[str, StringConstraints(max_length=20_000), AfterValidator(_encodable)]


class ButtonsRequest(Submit):
    selected_text: Selection
    insight: Annotated[str, StringConstraints(max_length=20_000), AfterValidator(_encodable)] | None = None
    intent: Short | None = None
    conversation_history: Annotated[list[Turn], Field(max_length=50)] = []


class InsightRequest(Submit):
    selected_text: Selection
    intent: Short | None = None
    article_id: NonEmptyText | None = None
    question: Annotated[str, StringConstraints(max_length=2000), AfterValidator(_encodable)] | None = None


class ArticleOut(BaseModel):
    article_id: str
    title: str
    url: str | None
    content_hash: str
    content: str | None = None
    analysis: dict[str, Any] | None
    meta_analysis: dict[str, Any] | None
    lenses: dict[str, dict[str, Any]]
    created_at: str
    updated_at: str


class ArticleList(BaseModel):
    items: list[ArticleOut]
    next_cursor: str | None


class PageQuery(BaseModel):
    limit: int = 20
    cursor: str | None = None


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
