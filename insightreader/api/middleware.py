"""Per-request plumbing: request ids (on every log line, echoed to the client, kept
for the access log), no redirects, and a JSON parser that refuses over-deep nesting."""

from __future__ import annotations

import itertools
import re
import secrets
from typing import Any

from quart import Quart, Response, g, request
from werkzeug.exceptions import NotFound
from werkzeug.routing import RequestRedirect

from .. import logs

REQUEST_ID_HEADER = "X-Request-ID"
#: Kept in the ASGI scope for the access log, which Hypercorn writes without a response
#: when the client left before the end (an event stream, typically).
SCOPE_REQUEST_ID = "insightreader.request_id"
SCOPE_STATUS = "insightreader.status"
#: An incoming request id is kept when it looks like one (a UUID, a ULID, a trace id…).
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=+/@-]{0,127}")
#: Fresh request ids: a random prefix per process and a counter. Unique like a UUID4
#: for what they are for (finding a request's lines), without a system call for
#: randomness per request, which on a busy loop means waiting for the GIL each time.
_ID_PREFIX = secrets.token_hex(8)
_ID_COUNTER = itertools.count(1)


def bounded_json(app: Quart) -> None:
    """Make a request body nested deeper than Python's recursion limit invalid JSON (a
    400), not a RecursionError (a 500). Wraps the provider QuartSchema installed."""
    base = type(app.json)

    class JSONProvider(base):  # type: ignore[valid-type,misc]
        def loads(self, s: str | bytes, **kwargs: Any) -> Any:
            try:
                return super().loads(s, **kwargs)
            except RecursionError:
                raise ValueError("JSON nested too deeply") from None

    app.json = JSONProvider(app)


async def no_redirects() -> None:
    """Runs first: a path the router would redirect (``/api/v1//tasks`` to
    ``/api/v1/tasks``, a missing trailing slash) is a 404 instead. Werkzeug builds
    such a redirect as an absolute URL from the ``Host`` header, which the client
    controls (and a merged ``//host/...`` would be an open redirect): the API
    answers only the paths it documents."""
    if isinstance(request.routing_exception, RequestRedirect):
        request.routing_exception = NotFound()


def request_id_for(incoming: str | None) -> str:
    """The client's ``X-Request-ID`` when it is sane (and holds nothing the log would
    redact), else a fresh one."""
    if incoming and _SANE_REQUEST_ID.fullmatch(incoming) and logs.redact(incoming) == incoming:
        return incoming
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


async def assign_request_id() -> None:
    """Runs first for every request: every log line of the request names its id."""
    g.request_id = request_id_for(request.headers.get(REQUEST_ID_HEADER))
    logs.request_id.set(g.request_id)
    request.scope[SCOPE_REQUEST_ID] = g.request_id  # type: ignore[literal-required]
    task_id = (request.view_args or {}).get("task_id")
    if isinstance(task_id, str):  # GET /tasks/{task_id}, cancel, retry: about that task
        logs.task_id.set(task_id)


async def echo_request_id(response: Response) -> Response:
    request_id = g.get("request_id")
    if request_id:
        response.headers[REQUEST_ID_HEADER] = request_id
    request.scope[SCOPE_STATUS] = response.status_code  # type: ignore[literal-required]
    return response
