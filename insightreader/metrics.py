"""Prometheus metrics of one server process.

The only module that imports ``prometheus_client``. The domain modules know nothing
of it: they call plain hooks (``Engine.observe``, ``EventBus.on_deliver`` /
``on_overflow``, ``Store.on_commit``) and the LLM client reports to an
:class:`~insightreader.llm.LLMObserver`; :meth:`Metrics.bind` connects them all to
one :class:`Metrics`, which keeps its own ``CollectorRegistry`` (one per app, never
the global one). Gauges of current state (queue depth, running tasks, open
streams, circuit state) are read from the services when ``/metrics`` is scraped.

Every name and label is listed in docs/monitoring.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from .supervisor import Supervisor

if TYPE_CHECKING:
    from .records import Event, Task
    from .services import Services

log = logging.getLogger(__name__)

# No ``*_created`` series: they double the exposition and Prometheus needs none of them.
disable_created_metrics()

PREFIX = "insightreader"
#: Seconds between two event-loop lag measurements.
LAG_INTERVAL = 0.5
#: Seconds before a crashed lag measurement starts again.
LAG_RESTART = 1.0

FINISHED = ("completed", "failed", "cancelled")
CIRCUIT_STATES = ("closed", "open", "half_open")

_WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
_RUN_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 120, 180, 300, 600)
_LLM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 90, 120, 180)
_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

F = TypeVar("F", bound=Callable[..., None])


def _chain(previous: Callable[..., None] | None, hook: F) -> F | Callable[..., None]:
    """``hook``, then whatever was hooked in before (tests observe the same hooks)."""
    if previous is None:
        return hook

    def both(*args: Any) -> None:
        hook(*args)
        previous(*args)

    return both


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        return max(0.0, (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())
    except ValueError:
        return None


class LoopLagMonitor:
    """Measures how late the event loop runs a timer: sleeps ``interval`` seconds and
    reports how much longer than that it took (a blocked loop delays every request
    and stream). A failed measurement is logged and starts again; the task runs under
    the server's :class:`Supervisor` (set by :meth:`Metrics.bind`)."""

    def __init__(
        self, observe: Callable[[float], None], *, interval: float = LAG_INTERVAL, restart: float = LAG_RESTART
    ) -> None:
        self._observe = observe
        self._interval = interval
        self._restart = restart
        self._task: asyncio.Task[None] | None = None
        self.supervisor = Supervisor()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = self.supervisor.start(self._supervise(), name="loop-lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])

    async def _supervise(self) -> None:
        while True:
            try:
                await self._measure()
            except Exception:
                log.exception("event loop lag measurement failed; restarting it in %gs", self._restart)
                await asyncio.sleep(self._restart)

    async def _measure(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self._interval)
            self._observe(max(0.0, loop.time() - before - self._interval))


class _StateCollector:
    """Gauges read from the services at scrape time."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def collect(self) -> Iterable[Metric]:
        engine = self._services.engine.status()
        queued = GaugeMetricFamily(
            f"{PREFIX}_tasks_queued",
            "Tasks waiting for a slot, by priority.",
            labels=["priority"],
        )
        for priority, depth in sorted(engine["ready_by_priority"].items()):
            queued.add_metric([str(priority)], depth)
        yield queued
        yield GaugeMetricFamily(f"{PREFIX}_tasks_running", "Tasks running now.", value=engine["running"])
        yield GaugeMetricFamily(
            f"{PREFIX}_engine_accepting",
            "1 while submits are accepted, 0 while the server drains.",
            value=1 if engine["accepting"] else 0,
        )
        llm = self._services.llm.status()
        circuit = llm["circuit"] if isinstance(llm.get("circuit"), dict) else {}
        state = GaugeMetricFamily(
            f"{PREFIX}_llm_circuit_state",
            "The LLM circuit breaker's state: 1 for the current one.",
            labels=["state"],
        )
        for name in CIRCUIT_STATES:
            state.add_metric([name], 1 if circuit.get("state") == name else 0)
        yield state
        limiter = llm["limiter"] if isinstance(llm.get("limiter"), dict) else {}
        yield GaugeMetricFamily(
            f"{PREFIX}_llm_rate_limit_waiting",
            "LLM requests waiting for the rate limiter.",
            value=int(limiter.get("waiting", 0)),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_sse_connections",
            "Open event streams.",
            value=self._services.bus.subscriber_count(),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_asyncio_tasks",
            "asyncio tasks alive on the server's loop (requests, streams, task runs, background parts).",
            value=len(asyncio.all_tasks()),
        )


class Metrics:
    """The metrics of one app: a registry, the hook targets, the loop lag monitor."""

    def __init__(self, *, lag_interval: float = LAG_INTERVAL) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        p = PREFIX
        # tasks
        self.tasks_submitted = Counter(f"{p}_tasks_submitted", "Tasks created by a submit.", ["task_type"], registry=r)
        self.tasks_deduplicated = Counter(
            f"{p}_tasks_deduplicated",
            "Submits answered at once with an earlier task's result (dedup hits).",
            ["task_type"],
            registry=r,
        )
        self.tasks_started = Counter(f"{p}_tasks_started", "Task runs started (each attempt).", ["task_type"], registry=r)
        self.tasks_finished = Counter(
            f"{p}_tasks_finished", "Tasks that ended, by final status.", ["task_type", "status"], registry=r
        )
        self.task_failures = Counter(
            f"{p}_task_failures", "Failed tasks, by error code.", ["task_type", "code"], registry=r
        )
        self.queue_wait = Histogram(
            f"{p}_task_queue_wait_seconds",
            "Seconds from being queued to starting, per run.",
            ["task_type"],
            buckets=_WAIT_BUCKETS,
            registry=r,
        )
        self.run_time = Histogram(
            f"{p}_task_run_seconds",
            "Seconds from start to end of a run that finished the task.",
            ["task_type"],
            buckets=_RUN_BUCKETS,
            registry=r,
        )
        # LLM
        self.llm_requests = Counter(
            f"{p}_llm_requests",
            "Requests to the LLM provider, by HTTP status (or timeout, connection_error…).",
            ["kind", "status"],
            registry=r,
        )
        self.llm_latency = Histogram(
            f"{p}_llm_request_duration_seconds",
            "Seconds from sending a request to the end of its answer.",
            ["kind"],
            buckets=_LLM_BUCKETS,
            registry=r,
        )
        self.llm_retries = Counter(f"{p}_llm_retries", "LLM requests sent again, by what failed.", ["reason"], registry=r)
        self.llm_tokens = Counter(f"{p}_llm_tokens", "Tokens used, by model and type.", ["model", "type"], registry=r)
        # events and streams
        self.events = Counter(f"{p}_events_published", "Events delivered to streams, by type.", ["event"], registry=r)
        self.overflows = Counter(
            f"{p}_sse_overflow_closes", "Streams closed because their client fell too far behind.", registry=r
        )
        # loop and database
        self.loop_lag = Histogram(
            f"{p}_event_loop_lag_seconds",
            "How late the event loop ran a timer.",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.loop_lag_last = Gauge(f"{p}_event_loop_lag_last_seconds", "The latest event loop lag.", registry=r)
        self.commit_time = Histogram(
            f"{p}_db_commit_seconds",
            "Seconds of one write transaction (group commit), from BEGIN to COMMIT.",
            buckets=_COMMIT_BUCKETS,
            registry=r,
        )
        self.commit_batch = Histogram(
            f"{p}_db_commit_batch_size",
            "Write jobs committed together in one transaction.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        # HTTP
        self.http_requests = Counter(
            f"{p}_http_requests", "HTTP requests answered.", ["method", "route", "status"], registry=r
        )
        self.http_latency = Histogram(
            f"{p}_http_request_duration_seconds",
            "Seconds until the response started (a stream's whole life is not counted).",
            ["method", "route"],
            buckets=_HTTP_BUCKETS,
            registry=r,
        )
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)

        self._queued_at: dict[str, float] = {}
        self._started_at: dict[str, float] = {}
        self.lag = LoopLagMonitor(self._observe_lag, interval=lag_interval)

    # -- wiring ------------------------------------------------------------------------

    def bind(self, services: Services) -> None:
        """Hook into the services (keeping any hook already there) and collect their state."""
        engine, bus, store = services.engine, services.bus, services.store
        engine.observe(self.task_changed)
        bus.on_deliver = _chain(bus.on_deliver, self.event_delivered)
        bus.on_overflow = _chain(bus.on_overflow, self.stream_overflowed)
        store.on_commit = _chain(store.on_commit, self.committed)
        services.llm.observer = self
        self.lag.supervisor = services.supervisor
        self.registry.register(_StateCollector(services))
        for task_type in engine.task_types:
            self.tasks_submitted.labels(task_type)
            self.tasks_deduplicated.labels(task_type)
            self.tasks_started.labels(task_type)
            for status in FINISHED:
                self.tasks_finished.labels(task_type, status)

    async def start(self) -> None:
        self.lag.start()

    async def stop(self) -> None:
        await self.lag.stop()

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The body and content type of a scrape (Prometheus text, or OpenMetrics when asked)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    # -- hooks -------------------------------------------------------------------------

    def task_changed(self, event: str, task: Task) -> None:
        kind = task.task_type
        now = time.monotonic()
        if event == "submitted":
            self.tasks_submitted.labels(kind).inc()
        elif event == "deduplicated":
            self.tasks_deduplicated.labels(kind).inc()
        elif event == "task_queued":
            self._queued_at[task.id] = now
            self._started_at.pop(task.id, None)  # a run put back (shutdown, circuit open)
        elif event == "task_started":
            self.tasks_started.labels(kind).inc()
            queued = self._queued_at.pop(task.id, None)
            if queued is not None:
                self.queue_wait.labels(kind).observe(now - queued)
            elif task.attempts == 1:  # queued before this process started: since it was created
                waited = _seconds_between(task.created_at, task.started_at)
                if waited is not None:
                    self.queue_wait.labels(kind).observe(waited)
            self._started_at[task.id] = now
        elif event.startswith("task_") and (status := event.removeprefix("task_")) in FINISHED:
            self.tasks_finished.labels(kind, status).inc()
            self._queued_at.pop(task.id, None)
            started = self._started_at.pop(task.id, None)
            if started is not None:
                self.run_time.labels(kind).observe(now - started)
            if status == "failed":
                code = (task.error or {}).get("code") or "unknown"
                self.task_failures.labels(kind, str(code)).inc()

    def event_delivered(self, event: Event) -> None:
        self.events.labels(event.event).inc()

    def stream_overflowed(self) -> None:
        self.overflows.inc()

    def committed(self, batch_size: int, seconds: float) -> None:
        self.commit_batch.observe(batch_size)
        self.commit_time.observe(seconds)

    def _observe_lag(self, seconds: float) -> None:
        self.loop_lag.observe(seconds)
        self.loop_lag_last.set(seconds)

    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_latency.labels(method, route).observe(seconds)

    # -- LLMObserver ---------------------------------------------------------------------

    def request_finished(self, kind: str, status: str, seconds: float) -> None:
        self.llm_requests.labels(kind, status).inc()
        if status != "cancelled":
            self.llm_latency.labels(kind).observe(seconds)

    def retry_scheduled(self, reason: str) -> None:
        self.llm_retries.labels(reason).inc()

    def tokens_used(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        self.llm_tokens.labels(model, "prompt").inc(prompt_tokens)
        self.llm_tokens.labels(model, "completion").inc(completion_tokens)
