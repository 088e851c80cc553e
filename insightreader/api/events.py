"""/api/v1/sse/analysis-notifications (and its alias /api/v1/events): the event stream.

The stream itself (order, resumption, heartbeats, ends) is ``insightreader.sse``;
this module only turns a request into one. Authentication (Bearer header, or
``?ticket=`` / ``?token=`` for EventSource) happened in ``deps.authenticate_request``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints
from pydantic.json_schema import SkipJsonSchema
from quart import Blueprint, Response, g, request
from quart_schema import document_headers, document_querystring

from .. import sse
from .asgi import SCOPE_END_CONNECTION, SCOPE_STREAM_BODY
from .deps import current_user, services
from .openapi import errors, event_message_schema, event_stream_docs, raw_response

bp = Blueprint("events", __name__, url_prefix="/api/v1")


#: What ``sse.parse_last_event_id`` takes: a decimal event id (or nothing).
EventId = Annotated[str, StringConstraints(pattern=r"^[ \t]*[0-9]{0,100}[ \t]*$")]


class StreamQuery(BaseModel):
    last_event_id: EventId | SkipJsonSchema[None] = Field(
        None, description="Resume after this event id (the Last-Event-ID header wins)."
    )
    ticket: str | None = Field(None, description="A single-use ticket from POST /api/v1/sse/ticket.")
    token: str | None = Field(None, description="An access token (for clients that cannot send headers).")


class StreamHeaders(BaseModel):
    last_event_id: EventId | SkipJsonSchema[None] = Field(None, description="Resume after this event id.")


STREAM_EXAMPLE = (
    "retry: 3000\n\n"
    "event: connected\n"
    'data: {"user_id":"4f1c2d3e-5b6a-4c7d-8e9f-0a1b2c3d4e5f","last_event_id":41}\n\n'
    "id: 42\n"
    "event: task_started\n"
    'data: {"task_id":"9b2f6c1e-2d4a-4f8b-9c3d-5e6f7a8b9c0d","task_type":"insight_generation",'
    '"metadata":{"preview":"Street trees cool the air"},"attempt":1}\n\n'
    "id: 43\n"
    "event: task_progress\n"
    'data: {"task_id":"9b2f6c1e-2d4a-4f8b-9c3d-5e6f7a8b9c0d","task_type":"insight_generation",'
    '"attempt":1,"index":0,"delta":"Shade matters"}\n\n'
    "event: heartbeat\n"
    "data: {}\n\n"
)
_STREAM_DOCS = (
    raw_response(
        200,
        "text/event-stream",
        "Server-Sent Events, one message per event: `id:` (on stored and progress events), "
        "`event:` (the type) and one line of JSON `data:`; the data schema of each event type "
        "is under `x-events`. The stream stays open until the client leaves, the credentials "
        "expire, the client falls too far behind, or the server shuts down (then a `closed` "
        "event says why).",
        schema=event_message_schema(),
        example=STREAM_EXAMPLE,
        extensions=event_stream_docs(),
    ),
    errors(
        (400, "`Last-Event-ID` / `last_event_id` is not a non-negative integer.", "invalid_last_event_id"),
        (401, "Missing, expired or invalid credentials (Bearer header, `?ticket=` or `?token=`).", "unauthorized"),
        (429, "The user has `sse.max_connections_per_user` streams open already.", "too_many_streams"),
    ),
)


def _stream_docs(func):  # type: ignore[no-untyped-def]
    for document in _STREAM_DOCS:
        func = document(func)
    return func


async def _open() -> Response:
    svc = services()
    last_event_id = sse.parse_last_event_id(
        request.headers.get("Last-Event-ID"), request.args.get("last_event_id")
    )
    # Cache-Control: no-store is added to every /api/v1 answer (api/asgi.py).
    headers = {"X-Accel-Buffering": "no"}
    if request.method == "HEAD":  # headers only: no subscription for a body never sent
        return Response(b"", status=200, content_type="text/event-stream", headers=headers)
    settings = svc.settings.sse
    expires = g.get("session_expires")
    stream = sse.EventStream(
        svc.bus,
        svc.store,
        current_user().id,
        last_event_id=last_event_id,
        heartbeat=settings.heartbeat,
        max_streams=settings.max_connections_per_user,
        expires_at=None if expires is None else float(expires),
    )
    body = sse.wire(stream)
    await anext(body)  # subscribes now, or raises TooManyStreams (429)
    # A client that fell too far behind loses the connection too, not just the stream.
    request.scope[SCOPE_END_CONNECTION] = lambda: stream.overflowed  # type: ignore[literal-required]
    # The body is sent outside Quart's request cycle (api/asgi.py, StreamHandoff).
    request.scope[SCOPE_STREAM_BODY] = body  # type: ignore[literal-required]
    return Response(b"", status=200, content_type="text/event-stream", headers=headers)


@bp.get("/sse/analysis-notifications")
@document_querystring(StreamQuery)
@document_headers(StreamHeaders)
@_stream_docs
async def stream() -> Response:
    """`text/event-stream` of the caller's task events.

    Messages: `connected`, `task_queued`, `task_started`, `task_progress`,
    `task_completed`, `task_failed`, `task_cancelled`, `reset`, `heartbeat`, `closed`;
    each is `id:` (not on connected, reset, heartbeat, closed), `event:` and one line of
    JSON `data:`. Resume with `Last-Event-ID` or `?last_event_id=`. Answers
    `400 invalid_last_event_id` for an id that is not a non-negative integer and
    `429 too_many_streams` over `sse.max_connections_per_user`. See docs/events.md.
    """
    return await _open()


@bp.get("/events")
@document_querystring(StreamQuery)
@document_headers(StreamHeaders)
@_stream_docs
async def stream_alias() -> Response:
    """The same stream as `/api/v1/sse/analysis-notifications`."""
    return await _open()

