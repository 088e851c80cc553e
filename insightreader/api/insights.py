"""/api/v1/insights (streamed insights, follow-up buttons) and /api/v1/usage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from quart import Blueprint, Response
from quart_schema import document_response, validate_request, validate_response

from ..analyses import buttons, insight
from ..errors import NotFound
from ..records import utcnow
from .deps import current_user, services
from .openapi import errors
from .schemas import ButtonsRequest, InsightRequest, SubmitOut, UsageReport
from .tasks import idempotency_key, submit_answer

bp = Blueprint("insights", __name__, url_prefix="/api/v1")

USAGE_DAYS = 30


@bp.post("/insights/generate-buttons")
@validate_request(ButtonsRequest)
@document_response(SubmitOut, 202)
@document_response(SubmitOut, 200)
@errors((409, "The `Idempotency-Key` was used with a different request.", "conflict"), (429, None, "too_many_pending", "quota_exceeded"), 503)
async def generate_buttons(data: ButtonsRequest) -> tuple[Response, int]:
    """Follow-up question buttons for a selection (and the insight shown for it)."""
    payload = data.model_dump(exclude={"priority"}, exclude_none=True)
    outcome = await services().engine.submit(
        current_user().id,
        buttons.NAME,
        payload,
        preview=data.selected_text,
        priority=data.priority,
        idempotency_key=idempotency_key(),
        privileged=current_user().is_admin,
    )
    return submit_answer(outcome)


@bp.post("/insights/generate")
@validate_request(InsightRequest)
@document_response(SubmitOut, 202)
@document_response(SubmitOut, 200)
@errors((404, "No such article (`article_id`) or highlight (`highlight_id`).", "not_found"), (409, "The `Idempotency-Key` was used with a different request.", "conflict"), (429, None, "too_many_pending", "quota_exceeded"), 503)
async def generate_insight(data: InsightRequest) -> tuple[Response, int]:
    """An insight on a selection; its text streams as `task_progress` events. With
    `highlight_id` (a highlight of `article_id`, which it implies), the insight is kept
    with that highlight."""
    reader = services().store.read
    if data.highlight_id is not None:
        highlight = await reader.highlight(data.highlight_id, current_user().id)
        if highlight is None or data.article_id not in (None, highlight.article_id):
            raise NotFound("no such highlight (of this article)")
        data = data.model_copy(update={"article_id": highlight.article_id})
    if data.article_id is not None:
        if await reader.article(data.article_id, current_user().id) is None:
            raise NotFound("no such article")
    outcome = await services().engine.submit(
        current_user().id,
        insight.NAME,
        data.model_dump(exclude={"priority"}, exclude_none=True),
        preview=data.selected_text,
        priority=data.priority,
        idempotency_key=idempotency_key(),
        article_id=data.article_id,
        privileged=current_user().is_admin,
    )
    return submit_answer(outcome)


@bp.get("/usage")
@validate_response(UsageReport)
async def usage() -> dict[str, Any]:
    """The caller's token use and task counts (last 30 days) and today's budget.

    Tokens per day and model, task counts per day, type and status."""
    user = current_user()
    read = services().store.read
    since = datetime.now(UTC) - timedelta(days=USAGE_DAYS)
    today = utcnow()[:10]
    used = await read.tokens_used(user.id, today)
    budget = services().settings.tasks.daily_token_budget
    return {
        "days": await read.usage(user.id, since.strftime("%Y-%m-%d")),
        "tasks": await read.task_counts(user.id, since.strftime("%Y-%m-%dT%H:%M:%S")),
        "budget": {
            "daily_token_budget": budget,
            "used_today": used,
            "remaining_today": max(0, budget - used) if budget else None,
        },
    }
