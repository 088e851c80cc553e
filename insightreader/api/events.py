"""/api/v1/sse/analysis-notifications (and its alias /api/v1/events): the event stream.

The stream itself (order, resumption, heartbeats, ends) is ``insightreader.sse``;
this module only turns a request into one. Authentication (Bearer header, or
``?ticket=`` / ``?token=`` for EventSource) happened in ``deps.authenticate_request``.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from quart import Blueprint, Response, g, request
from quart_schema import document_headers, document_querystring

from .. import sse
from .deps import current_user, services

bp = Blueprint("events", __name__, url_prefix="/api/v1")


class StreamQuery(BaseModel):
    last_event_id: str | None = Field(
        None, description="Resume after this event id (the Last-Event-ID header wins)."
    )
    ticket: str | None = Field(None, description="A single-use ticket from POST /api/v1/sse/ticket.")
    token: str | None = Field(None, description="An access token (for clients that cannot send headers).")


class StreamHeaders(BaseModel):
    last_event_id: str | None = Field(None, description="Resume after this event id.")


async def _open() -> Response:
    svc = services()
    last_event_id = sse.parse_last_event_id(
        request.headers.get("Last-Event-ID"), request.args.get("last_event_id")
    )
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
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
    response = Response(body, status=200, content_type="text/event-stream", headers=headers)
    # Quart ends every response after RESPONSE_TIMEOUT; a stream ends on its own
    # (disconnect, overflow, shutdown, session expiry).
    response.timeout = None
    return response


@bp.get("/sse/analysis-notifications")
@document_querystring(StreamQuery)
@document_headers(StreamHeaders)
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
async def stream_alias() -> Response:
    """The same stream as `/api/v1/sse/analysis-notifications`."""
    return await _open()

