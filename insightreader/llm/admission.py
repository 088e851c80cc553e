"""Admission control in front of the LLM provider.

Two independent mechanisms:

* :class:`RateLimiter` keeps us under the provider's requests- and tokens-per-minute
  limits *before* sending, so tasks wait their turn instead of collecting 429s. It
  starts from the configured limits and tightens itself from what the provider
  says (``x-ratelimit-remaining-*`` / ``x-ratelimit-reset-*`` / ``Retry-After``).
* :class:`CircuitBreaker` notices that the provider is down (consecutive connection
  errors, timeouts or 5xx) and stops dispatch: calls raise :class:`TaskDeferred` at
  once, so queued tasks go back to pending instead of burning their retries, while
  one background probe (``GET /models``) waits for the provider to come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Literal

from insightreader.errors import TaskDeferred
from insightreader.supervisor import Supervisor

log = logging.getLogger("insightreader.llm")

Clock = Callable[[], float]

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(value: str) -> float | None:
    """Seconds in a rate-limit reset header: ``"1.5"``, ``"20ms"``, ``"6m0s"``, ``"1h2m3.5s"``."""
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        parts = _DURATION_PART.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            return None
        scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
        seconds = sum(float(number) * scale[unit] for number, unit in parts)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the provider asks us to wait: ``retry-after-ms``, or ``Retry-After`` in
    seconds or as an HTTP date. ``None`` when absent or unreadable."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        with contextlib.suppress(ValueError):
            value = float(millis) / 1000
            if math.isfinite(value) and value >= 0:
                return value
    raw = headers.get("retry-after")
    if raw is None:
        return None
    seconds = parse_duration(raw)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class TokenBucket:
    """A bucket refilled continuously at ``per_minute / 60`` units per second.

    A take larger than what is in the bucket waits until the bucket holds
    ``min(amount, capacity)`` and may then leave it in debt: a request bigger than the
    capacity is never starved, and the long-run rate still holds because the next
    request waits for the debt to be repaid.
    """

    def __init__(self, per_minute: int, capacity: float, *, clock: Clock = time.monotonic) -> None:
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self.capacity = capacity
        self._clock = clock
        self._level = capacity
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._stamp) * self.rate)
        self._stamp = now

    @property
    def level(self) -> float:
        self._refill()
        return self._level

    def wait_time(self, amount: float) -> float:
        """Seconds until ``amount`` may be taken; 0 when it may be taken now."""
        self._refill()
        return max(0.0, (min(amount, self.capacity) - self._level) / self.rate)

    def take(self, amount: float) -> None:
        self._refill()
        self._level -= amount

    def give_back(self, amount: float) -> None:
        """Correct an estimate afterwards (negative ``amount`` charges more)."""
        self._refill()
        self._level = min(self.capacity, self._level + amount)

    def clamp(self, at_most: float) -> None:
        """Never hold more than the provider says is left."""
        self._refill()
        self._level = min(self._level, at_most)


class RateLimiter:
    """Requests- and tokens-per-minute buckets plus a provider-imposed pause.

    The requests bucket holds one request, so requests are spaced ``60 / rpm`` seconds
    apart rather than sent in bursts; the tokens bucket holds one second of budget.
    Waiters are served first come, first served (one lock), so a large request is not
    overtaken forever by small ones. Every wait is bounded: a bucket refills within
    ``amount / rate`` seconds and a provider pause is capped at ``max_pause``.
    """

    def __init__(
        self,
        requests_per_minute: int,
        tokens_per_minute: int,
        *,
        max_pause: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self._clock = clock
        self._max_pause = max_pause
        self._requests = TokenBucket(requests_per_minute, 1.0, clock=clock) if requests_per_minute else None
        self._tokens = (
            TokenBucket(tokens_per_minute, max(1.0, tokens_per_minute / 60.0), clock=clock)
            if tokens_per_minute
            else None
        )
        self._not_before = 0.0
        self._lock = asyncio.Lock()
        self._waiting = 0

    def _delay(self, tokens: int) -> float:
        delay = self._not_before - self._clock()
        if self._requests is not None:
            delay = max(delay, self._requests.wait_time(1))
        if self._tokens is not None:
            delay = max(delay, self._tokens.wait_time(tokens))
        return delay

    async def acquire(self, tokens: int) -> None:
        """Wait until a request estimated at ``tokens`` tokens may be sent, and book it."""
        self._waiting += 1
        try:
            async with self._lock:
                while (delay := self._delay(tokens)) > 0:
                    await asyncio.sleep(delay)
                if self._requests is not None:
                    self._requests.take(1)
                if self._tokens is not None:
                    self._tokens.take(tokens)
        finally:
            self._waiting -= 1

    def settle(self, estimated: int, actual: int) -> None:
        """Replace a request's estimated token cost by what the provider billed."""
        if self._tokens is not None:
            self._tokens.give_back(estimated - actual)

    def pause(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (capped at ``max_pause``)."""
        until = self._clock() + min(seconds, self._max_pause)
        if until > self._not_before:
            self._not_before = until
            log.info("LLM admission paused for %.2f s by the provider", until - self._clock())

    def observe(self, headers: Mapping[str, str]) -> None:
        """Tighten from the provider's rate-limit headers (any response, errors included)."""
        retry_after = parse_retry_after(headers)
        if retry_after is not None and retry_after > 0:
            self.pause(retry_after)
        for kind, bucket in (("requests", self._requests), ("tokens", self._tokens)):
            raw_remaining = headers.get(f"x-ratelimit-remaining-{kind}")
            if raw_remaining is None:
                continue
            try:
                remaining = float(raw_remaining)
            except ValueError:
                continue
            if remaining <= 0:
                reset = parse_duration(headers.get(f"x-ratelimit-reset-{kind}", ""))
                if reset:
                    self.pause(reset)
            elif bucket is not None:
                bucket.clamp(remaining)

    def status(self) -> dict[str, object]:
        return {
            "requests_per_minute": self._requests.per_minute if self._requests else 0,
            "tokens_per_minute": self._tokens.per_minute if self._tokens else 0,
            "requests_available": round(self._requests.level, 3) if self._requests else None,
            "tokens_available": round(self._tokens.level, 1) if self._tokens else None,
            "paused_for": round(max(0.0, self._not_before - self._clock()), 3),
            "waiting": self._waiting,
        }


CircuitState = Literal["closed", "open", "half_open"]
Outcome = Literal["success", "failure", "neutral"]


class CircuitBreaker:
    """Closed → open after ``threshold`` consecutive outage failures; open → half-open
    when the background probe gets an answer; half-open admits one trial call, whose
    success closes the circuit and whose failure opens it again.

    The probe backs off from ``probe_initial`` to ``probe_max`` seconds and keeps its
    delay across a failed trial (a provider whose ``/models`` answers while completions
    fail is not hammered); it starts over once the circuit closes.
    """

    def __init__(
        self,
        *,
        threshold: int,
        probe: Callable[[], Awaitable[bool]],
        probe_initial: float,
        probe_max: float,
        clock: Clock = time.monotonic,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._supervisor = supervisor or Supervisor()
        self._threshold = threshold
        self._probe = probe
        self._probe_initial = probe_initial
        self._probe_max = probe_max
        self._probe_delay = probe_initial
        self._clock = clock
        self.state: CircuitState = "closed"
        self._failures = 0
        self._trial_in_flight = False
        self._opened_at: float | None = None
        self._last_failure: str | None = None
        self._probes = 0
        self._available = asyncio.Event()
        self._available.set()
        self._probe_task: asyncio.Task[None] | None = None

    def admit(self) -> bool:
        """Let a call through, or raise :class:`TaskDeferred`. Returns whether the call is
        the half-open trial (the caller passes that back to :meth:`record`)."""
        if self.state == "open" or (self.state == "half_open" and self._trial_in_flight):
            raise TaskDeferred("the LLM provider is unavailable (circuit open); the task will run later")
        if self.state == "half_open":
            self._trial_in_flight = True
            self._available.clear()
            return True
        return False

    def record(self, trial: bool, outcome: Outcome, reason: str = "") -> None:
        """Account for a call admitted by :meth:`admit`.

        ``success`` means the provider answered (any HTTP status below 500),
        ``failure`` an outage symptom, ``neutral`` says nothing about the provider
        (the call was cancelled, or failed before sending).
        """
        if outcome == "success":
            self._failures = 0
            if self.state != "closed":
                self._close()
        elif outcome == "failure":
            self._failures += 1
            self._last_failure = reason
            if trial or (self.state == "closed" and self._failures >= self._threshold):
                self._open()
        elif trial:
            self._trial_in_flight = False
            if self.state == "half_open":
                self._available.set()

    def available(self) -> bool:
        """Whether a call would be admitted now."""
        return self._available.is_set()

    async def wait_available(self) -> None:
        """Return once a call would be admitted: at once when closed."""
        await self._available.wait()

    def _open(self) -> None:
        self.state = "open"
        self._trial_in_flight = False
        self._opened_at = self._clock()
        self._available.clear()
        log.warning(
            "LLM circuit opened after %d consecutive failures (last: %s); probing the provider",
            self._failures,
            self._last_failure,
        )
        if self._probe_task is None or self._probe_task.done():
            # It ends once the circuit is no longer open. Supervised parts start in a fresh
            # context: its log lines are about the provider, not about the task whose call
            # happened to open the circuit.
            self._probe_task = self._supervisor.start(
                self._probe_loop(), name="llm-circuit-probe", until_stopped=False
            )

    def _close(self) -> None:
        self.state = "closed"
        self._trial_in_flight = False
        self._opened_at = None
        self._probe_delay = self._probe_initial
        self._available.set()
        if self._probe_task is not None and not self._probe_task.done():
            self._probe_task.cancel()
        log.warning("LLM circuit closed: the provider answers again")

    async def _probe_loop(self) -> None:
        while self.state == "open":
            await asyncio.sleep(self._probe_delay)
            self._probe_delay = min(self._probe_max, self._probe_delay * 2)
            self._probes += 1
            try:
                answered = await self._probe()
            except Exception:
                log.exception("LLM circuit probe crashed")
                answered = False
            if answered and self.state == "open":
                self.state = "half_open"
                self._available.set()
                log.info("LLM circuit half-open: the provider answered a probe; trying one call")

    async def aclose(self) -> None:
        """Stop probing and release everyone blocked in :meth:`wait_available`."""
        task, self._probe_task = self._probe_task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        self._available.set()

    def status(self) -> dict[str, object]:
        return {
            "state": self.state,
            "consecutive_failures": self._failures,
            "threshold": self._threshold,
            "open_for": round(self._clock() - self._opened_at, 3) if self._opened_at is not None else None,
            "last_failure": self._last_failure,
            "probes": self._probes,
        }
