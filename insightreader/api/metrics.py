"""``GET /metrics`` (Prometheus text; a Bearer token when ``server.metrics_token`` is
set) and the per-request HTTP metrics."""

from __future__ import annotations

import hmac
import time

from quart import Blueprint, Quart, Response, current_app, g, request

from ..errors import Unauthorized
from ..metrics import Metrics
from .openapi import errors, raw_response

bp = Blueprint("metrics", __name__)

EXTENSION = "insightreader.metrics"
TOKEN = "insightreader.metrics_token"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

EXAMPLE = """\
# HELP insightreader_tasks_submitted_total Tasks created by a submit.
# TYPE insightreader_tasks_submitted_total counter
insightreader_tasks_submitted_total{task_type="insight_generation"} 42.0
# HELP insightreader_tasks_queued Tasks waiting for a slot, by priority.
# TYPE insightreader_tasks_queued gauge
insightreader_tasks_queued{priority="5"} 1.0
"""


def metrics() -> Metrics:
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]


@bp.get("/metrics")
@raw_response(
    200,
    "text/plain; version=0.0.4; charset=utf-8",
    "Prometheus text exposition (OpenMetrics when the Accept header asks for it). "
    "Every metric is described in docs/monitoring.md.",
    example=EXAMPLE,
)
@errors((401, "`server.metrics_token` is set and the request does not carry it as a Bearer token.", "unauthorized"))
async def scrape() -> Response:
    """Metrics of this process, for Prometheus.

    Tasks (submitted, deduplicated, started, finished by status, failures by code, queue
    depth by priority, running, queue wait and run time by type), the LLM provider
    (requests by status, latency, retries, tokens, circuit breaker state), event
    streams (open connections, events published, overflow closes), event-loop lag,
    database commits (latency, batch size), HTTP requests, and the process. When
    `server.metrics_token` is set it needs `Authorization: Bearer <metrics_token>`;
    either way, keep it where only your Prometheus can reach it (docs/monitoring.md).
    """
    _check_token(current_app.extensions[TOKEN], request.headers.get("Authorization", ""))
    body, content_type = metrics().exposition(request.headers.get("Accept"))
    return Response(body, status=200, content_type=content_type, headers={"Cache-Control": "no-store"})


def _check_token(expected: str, header: str) -> None:
    """Unauthorized unless ``header`` is ``Bearer <expected>`` (no token expected: pass).
    Compared in constant time, so the answer's timing says nothing of the token."""
    if not expected:
        return
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise Unauthorized("/metrics needs an Authorization: Bearer <server.metrics_token> header")


async def _request_started() -> None:
    g.metrics_started = time.perf_counter()


async def _request_finished(response: Response) -> Response:
    started = g.get("metrics_started")
    if started is not None:
        # Labels stay few whatever clients send: route templates, known methods.
        rule = request.url_rule
        route = rule.rule if rule is not None else "unmatched"
        method = request.method if request.method in METHODS else "other"
        metrics().http_request(method, route, response.status_code, time.perf_counter() - started)
    return response


def install(app: Quart, collected: Metrics, *, token: str = "") -> None:
    """Serve ``collected`` on ``/metrics`` (to holders of ``token`` when set), count
    every request, and run the loop lag monitor while the app serves."""
    app.extensions[EXTENSION] = collected
    app.extensions[TOKEN] = token
    app.before_request(_request_started)
    app.after_request(_request_finished)
    app.before_serving(collected.start)
    app.after_serving(collected.stop)
    app.register_blueprint(bp)
