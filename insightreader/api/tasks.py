"""/api/v1/tasks: read, list, cancel, retry; and the answer every submit route gives."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, jsonify, request
from quart_schema import validate_querystring, validate_response

from ..engine import SubmitOutcome
from ..errors import NotFound, ValidationFailed
from ..records import Task, TaskStatus
from .deps import current_user, services
from .openapi import errors
from .paging import clamp_limit, decode_cursor, page
from .schemas import SubmitOut, TaskList, TaskOut, TaskQuery

bp = Blueprint("tasks", __name__, url_prefix="/api/v1")


def idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise ValidationFailed("Idempotency-Key must be 1 to 255 printable characters")
    return key


def submit_answer(outcome: SubmitOutcome, **extra: Any) -> tuple[Response, int]:
    """202 for an unfinished task, 200 with its result or error for a finished one.

    The body has exactly ``SubmitOut``'s fields, so the submit routes only document
    that schema (``document_response``) instead of validating every answer against it
    (a twelfth of the loop's time under load); tests/test_fuzz_api.py checks the
    answers against the schema. It is rendered here with ``jsonify``, as errors are
    (api/errors.py): given a dict, quart-schema first copies it through a pydantic
    ``TypeAdapter`` it builds anew for every answer (45 µs, a thirtieth of a submit)."""
    task = outcome.task
    body: dict[str, Any] = {"status": task.status.value, "task_id": task.id, **extra}
    if task.article_id is not None:
        body.setdefault("article_id", task.article_id)
    if not task.status.finished:
        return jsonify(body), 202
    body["result"] = task.result
    body["error"] = task.error
    body["deduplicated"] = outcome.deduplicated
    return jsonify(body), 200


def shown(task: Task) -> dict[str, Any]:
    """The task as the API shows it, saying why a pending task waits when it is not
    just its turn."""
    body = task.public()
    if task.status is TaskStatus.PENDING:
        body["waiting_reason"] = services().llm.waiting_reason()
    return body


@bp.get("/tasks")
@validate_querystring(TaskQuery)
@validate_response(TaskList)
@errors((422, "A query parameter is invalid (e.g. a cursor this server did not give out).", "validation_error"))
async def list_tasks(query_args: TaskQuery) -> dict[str, Any]:
    """The caller's tasks, newest first. `limit` is clamped to 1…100."""
    limit = clamp_limit(query_args.limit)
    tasks = await services().store.read.list_tasks(
        current_user().id,
        status=query_args.status,
        task_type=query_args.task_type,
        limit=limit + 1,
        before_seq=decode_cursor(query_args.cursor),
    )
    items, next_cursor = page(tasks, limit)
    return {"items": [shown(t) for t in items], "next_cursor": next_cursor}


@bp.get("/tasks/<task_id>")
@validate_response(TaskOut)
@errors(404)
async def get_task(task_id: str) -> dict[str, Any]:
    """One of the caller's tasks, with its result or error once finished."""
    task = await services().store.read.task(task_id, current_user().id)
    if task is None:
        raise NotFound("no such task")
    return shown(task)


@bp.post("/tasks/<task_id>/cancel")
@validate_response(TaskOut)
@errors(404, (409, "The task is already finished.", "conflict"))
async def cancel_task(task_id: str) -> dict[str, Any]:
    """Cancel a pending or running task (409 for a finished one)."""
    return (await services().engine.cancel(current_user().id, task_id)).public()


@bp.post("/tasks/<task_id>/retry")
@validate_response(SubmitOut, 202)
@errors(404, (409, "Only a failed or cancelled task can be retried.", "conflict"), (429, None, "too_many_pending", "quota_exceeded"), 503)
async def retry_task(task_id: str) -> tuple[dict[str, Any], int]:
    """Run a failed or cancelled task again: same `task_id`, `attempts` + 1."""
    task = await services().engine.retry(current_user().id, task_id)
    assert task.status is TaskStatus.PENDING
    return {"status": task.status.value, "task_id": task.id, "article_id": task.article_id}, 202
