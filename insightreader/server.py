"""Runs the server: services, app and Hypercorn on one asyncio loop."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig
from hypercorn.logging import Logger as HypercornLogger
from hypercorn.typing import ResponseSummary, WWWScope
from quart import Quart

from . import logs
from .api.asgi import ASGIApp
from .api.middleware import REQUEST_ID_HEADER, SCOPE_REQUEST_ID, SCOPE_STATUS
from .app import create_app
from .accounts import load_secret
from .config import Settings
from .engine import TaskType
from .errors import BackgroundFailure
from .llm import LLMClient
from .services import Services

log = logging.getLogger(__name__)

#: Hypercorn's own grace after the engine drained and the streams ended: only
#: short requests can still be in flight by then.
HTTP_GRACE = 0.5
#: After that, connections to clients that stopped reading are given up on.
STUCK_GRACE = 0.25
#: Seconds an idle connection is kept open for its next request (Hypercorn's default),
#: unless ``server.read_timeout`` is shorter.
KEEP_ALIVE = 5.0
_REQUEST_ID_HEADER = REQUEST_ID_HEADER.lower().encode()
#: How long a thread holds the GIL while another waits for it (CPython's default is
#: 5 ms). CPU work runs in worker threads (the offline model, chunking, hashing), and
#: every time the loop's thread blocks on a socket it has to win the GIL back: at 5 ms
#: a request of a few dozen such steps waited 150 ms behind one offline analysis; at
#: 1 ms, 25–55 ms (tests/test_text_limits.py, docs/design.md "Text work").
SWITCH_INTERVAL = 0.001
#: Tracked objects allocated (net) before a collection of the youngest generation
#: (CPython's default is 700). Every request leaves a few reference cycles behind in
#: the libraries (werkzeug's route match, Hypercorn's stream of a request with a body),
#: so at 700 the collector ran every few requests and walked every in-flight request's
#: objects each time; at 10,000 the closed-loop submit's loop lag p99 fell by 1.9 to
#: 4.4 ms in three sets of runs (docs/benchmarks.md, "midday"). The older generations
#: keep their defaults.
GC_YOUNG_THRESHOLD = 10_000


class AccessLogger(HypercornLogger):
    """Hypercorn's logger, but an access line is written already formatted, as
    ``HOST:PORT "METHOD PATH HTTP/VERSION" STATUS LENGTH DURATIONus``: the query string
    is left out (it may hold a token or ticket), and the record never holds the
    request's headers (``Authorization`` included) nor the environment. Hypercorn's own
    atoms copy every header and environment variable for every request, whether the
    line is written or not; this costs nothing when the access log is off. The line
    names the request id the app answered with. A response the client left before its
    end (an event stream) is logged with the status the app gave, ``disconnected``."""

    async def access(self, request: WWWScope, response: ResponseSummary | None, request_time: float) -> None:
        if self.access_logger is None or not self.access_logger.isEnabledFor(logging.INFO):
            return
        extra: dict[str, object] = {}
        if response is None and isinstance(request.get(SCOPE_STATUS), int):
            response = {"status": request[SCOPE_STATUS], "headers": []}  # type: ignore[typeddict-item]
            extra["disconnected"] = True
        headers = dict(response.get("headers", ())) if response is not None else {}  # type: ignore[call-overload]
        request_id = headers.get(_REQUEST_ID_HEADER, b"").decode("latin1") or request.get(SCOPE_REQUEST_ID)
        if request_id:
            extra["request_id"] = request_id
        client = request.get("client")
        host = f"{client[0]}:{client[1]}" if client and len(client) == 2 else "-"
        method = request["method"] if request["type"] == "http" else "GET"  # type: ignore[typeddict-item]
        status = response["status"] if response is not None else "-"
        length = headers.get(b"content-length", b"-").decode("latin1")
        self.access_logger.info(
            '%s "%s %s %s" %s %s %dus', host, method, request["path"], request.get("http_version", "ws"),
            status, length, int(request_time * 1_000_000), extra=extra,
        )


#: Runs ``app`` on ``settings.server.bind`` until the trigger returns: Hypercorn
#: (:func:`run_hypercorn`), or another ASGI server that the benchmarks compare it with.
HttpServer = Callable[[ASGIApp, Settings, Callable[[], Awaitable[None]]], Awaitable[None]]


def hypercorn_config(settings: Settings) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [settings.server.bind]
    config.graceful_timeout = HTTP_GRACE
    # Hypercorn's keep-alive timer runs from a connection's start (or the end of its
    # last answer) until a request's headers are complete: the headers' deadline.
    # The body's is api/asgi.py's, Hypercorn's own read_timeout stays off (it would
    # cut every event stream, whose client sends nothing once connected).
    config.keep_alive_timeout = min(KEEP_ALIVE, settings.server.read_timeout)
    config.accesslog = logging.getLogger("hypercorn.access")
    config.errorlog = logging.getLogger("hypercorn.error")
    config.logger_class = AccessLogger
    return config


async def run_hypercorn(app: ASGIApp, settings: Settings, shutdown_trigger: Callable[[], Awaitable[None]]) -> None:
    await hypercorn_serve(app, hypercorn_config(settings), shutdown_trigger=shutdown_trigger)  # type: ignore[arg-type]


async def _warm_up(llm: LLMClient) -> None:
    """Load the LLM SDK and its client once the server listens, then freeze what that
    made, as start-up's own objects are (out of every later collection), and turn the
    collector on: `insightreader serve` loads every module with it off, the SDK's too
    (collections during its ~500 modules found nothing to free and cost 0.03 s of the
    0.33 s), with :data:`GC_YOUNG_THRESHOLD`."""
    try:
        await llm.warm_up()
    finally:
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        gc.enable()


async def serve(
    settings: Settings,
    task_types: Mapping[str, TaskType],
    *,
    configure: Callable[[Quart], None] | None = None,
    http: HttpServer = run_hypercorn,
) -> None:
    """Serve until SIGTERM or SIGINT, then drain: submits get 503, running tasks get
    ``server.graceful_timeout`` seconds, streams end, the rest stays pending.

    A background part that dies starts the same drain, and then
    :class:`BackgroundFailure` is raised (the process exits non-zero, to be restarted).
    """
    sys.setswitchinterval(SWITCH_INTERVAL)
    logs.add_secret(settings.llm.api_key)
    logs.add_secret(settings.server.metrics_token)
    services = await Services.open(settings, task_types)
    logs.add_secret(load_secret(settings.auth, settings.database.path))
    app = create_app(services)
    # What start-up made lives as long as the process: out of every later collection.
    # No gc.collect() first: start-up leaves next to no garbage (it found none), and a
    # full collection of the ~115,000 objects imports make held the loop 25-40 ms.
    gc.freeze()
    if configure is not None:
        configure(app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    supervisor = services.supervisor
    supervisor.on_failure(stop.set)

    drained = asyncio.Event()

    async def shutdown_trigger() -> None:
        await stop.wait()
        supervisor.shutdown()
        log.info("shutting down: draining tasks for up to %gs", settings.server.graceful_timeout)
        await services.engine.drain(settings.server.graceful_timeout)
        await services.bus.stop()
        drained.set()

    serving = asyncio.create_task(http(app, settings, shutdown_trigger))
    supervisor.start(_warm_up(services.llm), name="llm-warm-up", until_stopped=False)
    stuck = False
    try:
        waiting = asyncio.create_task(drained.wait())
        await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if not serving.done():
            # Hypercorn waits without a limit for a socket whose client stopped reading
            # (asyncio closes it only once its buffer is flushed): give it its grace and
            # a moment more, then stop regardless.
            done, _ = await asyncio.wait({serving}, timeout=HTTP_GRACE + STUCK_GRACE)
            stuck = not done
        if serving.done():
            serving.result()
    finally:
        await services.close()
        log.info("stopped")
    if stuck:
        log.warning("connections to clients that stopped reading were still open; exiting anyway")
        if supervisor.failed:
            log.error("exiting with status 1: %s", "; ".join(supervisor.failures))
        logging.shutdown()
        # Everything is committed and closed; only those sockets remain, and the loop
        # could not finish cancelling the task that waits on them.
        os._exit(1 if supervisor.failed else 0)
    if supervisor.failed:
        raise BackgroundFailure("; ".join(supervisor.failures))
