"""The domain side of an event stream (no Quart here): what one SSE connection sends,
in what order, and how it is written on the wire. ``api/events.py`` adapts it to HTTP.

A stream, in order:

1. ``retry: 3000`` — the reconnection hint, sent at once as the first body bytes;
2. ``connected`` ``{user_id, last_event_id}``, without ``id:``. ``last_event_id`` is
   the id the stream continues after: the ``Last-Event-ID`` the client sent, or (for
   a fresh stream, or after a reset) the id of the last event delivered before it
   subscribed. Every event with a larger id follows on this stream, so it is a safe
   point to resume from even before the first event arrives;
3. the backlog. Resuming from ``Last-Event-ID: N``: every stored event of the user
   with an id above N, merged in id order with the deltas so far of the user's
   tasks still being written (``EventBus.progress_so_far``) above N. When events
   after N may have been pruned (``N < oldest kept id - 1``), or N was never handed
   out (``N > EventBus.issued_id()``, e.g. an id from another database), one ``reset``
   ``{reason}`` (no ``id:``) instead, and the stream goes on like a fresh one. A
   fresh stream gets only the deltas so far (their original ids and indexes);
4. live events, each once, in id order; ``heartbeat`` ``{}`` (no ``id:``) after
   ``sse.heartbeat`` seconds without a message;
5. ``closed`` ``{reason}`` (no ``id:``) when the subscription ends: ``overflow`` (the
   client fell ``sse.queue_size`` events behind), ``shutdown``, or
   ``session_expired`` (the access token it was opened with expired; for a ticket,
   the token that asked for the ticket). The client
   reconnects with the last id it received and loses nothing.

No gap, no duplicate: the subscription is taken first, together with the id of the
last event delivered before it (the *horizon*). Every later delivery reaches the
subscription and has a larger id; every stored event up to the horizon is committed,
so the reader sees it. The backlog covers ids in (N, horizon], the live part the ids
above — and anything at or below the last id sent is skipped.

A stream never holds up the publisher: the bus puts events into a bounded buffer and
closes the subscription when it is full. A timer ends the stream when its session
expires, and another cancels the request task if a closed stream has not finished
within ``close_grace`` seconds (a client that stopped reading blocks the write of
the final message), so a stuck client cannot hold its subscription or a shutdown.
An idle stream is its subscription, a pending future and a timer; its body is sent
outside Quart's request cycle, from the connection's own task, with one small task
waiting for the client to leave (``api/asgi.py``, ``StreamHandoff``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import re
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import InvalidLastEventId, TooManyStreams
from .events import EventBus, Subscription
from .records import Event, format_time
from .store import Store, Tx
from .supervisor import Supervisor

log = logging.getLogger(__name__)

#: Reconnection delay hint for EventSource, in milliseconds.
RETRY_MS = 3000
#: Stored events read per query while replaying.
REPLAY_PAGE = 500
#: Bytes of live events a stream writes at once, at most (a larger event goes alone):
#: small enough that a client that stops reading holds little beyond its buffer.
WRITE_SIZE = 16 * 1024
#: Seconds a closed stream gets to send its final message before its request is cancelled.
CLOSE_GRACE = 2.0
#: Seconds between two prunings of the event log (the contract asks for at least one a minute).
PRUNE_INTERVAL = 30.0

_ID = re.compile(r"[0-9]{1,100}")
#: Around an id, only what HTTP calls optional white space is ignored (what the
#: OpenAPI description of the parameter says, too).
_BLANK = " \t"
RETRY = f"retry: {RETRY_MS}\n\n".encode()


# -- wire --------------------------------------------------------------------


def parse_last_event_id(header: str | None, query: str | None) -> int | None:
    """The id to resume after, or None for a fresh stream.

    The ``Last-Event-ID`` header (sent by EventSource when it reconnects by itself)
    wins over the ``last_event_id`` query parameter (set by a page that reconnects
    itself). An empty value counts as absent; anything else that is not a
    non-negative decimal integer (spaces and tabs around it aside) is
    :class:`InvalidLastEventId` (400), in either place, even when the other one wins.
    """
    found: list[int] = []
    for name, raw in (("Last-Event-ID", header), ("last_event_id", query)):
        value = None if raw is None else raw.strip(_BLANK)
        if not value:
            continue
        if not _ID.fullmatch(value):
            raise InvalidLastEventId(f"{name} must be a non-negative integer (an event id)")
        found.append(int(value))
    return found[0] if found else None


async def wire(stream: EventStream) -> AsyncGenerator[bytes, None]:
    """``stream`` as ``text/event-stream`` bytes.

    The first step opens the stream (raising :class:`TooManyStreams`) and yields
    ``b""``: run it (``await anext(body)``) before the response starts, so the limit
    answers 429 and the subscription exists before anything is read. If the body is
    then never iterated, asyncio's async-generator finalizer closes it, which closes
    the stream. A client disconnect arrives as ``CancelledError`` and propagates.
    """
    stream.open()
    try:
        yield b""
        yield RETRY
        async with contextlib.aclosing(stream.batches()) as batches:
            async for batch in batches:
                yield b"".join(event.message for event in batch)
    finally:
        stream.close()


# -- one stream --------------------------------------------------------------


def _control(user_id: str, name: str, data: dict[str, Any]) -> Event:
    """A message that is not resumed (no ``id:``): connected, reset, heartbeat, closed."""
    return Event(None, user_id, name, data)


class EventStream:
    """One client's stream: :meth:`open` (synchronous) checks the user's stream limit
    and subscribes, :meth:`events` yields what to send, :meth:`close` frees everything
    (any number of times)."""

    def __init__(
        self,
        bus: EventBus,
        store: Store,
        user_id: str,
        *,
        last_event_id: int | None,
        heartbeat: float,
        max_streams: int,
        expires_at: float | None = None,
        close_grace: float = CLOSE_GRACE,
    ) -> None:
        self._bus = bus
        self._store = store
        self.user_id = user_id
        self._resume = last_event_id
        self._heartbeat = heartbeat
        self._max_streams = max_streams
        #: Unix time at which the credentials that opened the stream expire.
        self._expires_at = expires_at
        self._close_grace = close_grace
        self._sub: Subscription | None = None
        self._horizon = 0
        self._progress: list[Event] = []
        #: The session's expiry, then the grace after a close: timers, not tasks.
        self._timers: list[asyncio.TimerHandle] = []
        self._owner: asyncio.Task[Any] | None = None

    def open(self) -> None:
        """Subscribe, unless the user has ``max_streams`` open already. Synchronous, so
        no two concurrent opens can both pass the limit, and the subscription, the
        horizon and the deltas so far are taken at one instant.

        The task that iterates :meth:`events` is the stream's owner: if the stream has
        closed and that task has not finished ``close_grace`` seconds later (its client
        takes no data, so the final write blocks), it is cancelled."""
        if self._bus.subscriber_count(self.user_id) >= self._max_streams:
            raise TooManyStreams(
                f"you already have {self._max_streams} open event streams; close one first"
            )
        loop = asyncio.get_running_loop()
        sub = self._sub = self._bus.subscribe(self.user_id)
        self._horizon = self._bus.delivered_id
        self._progress = self._bus.progress_so_far(self.user_id)

        def closed() -> None:
            self._timers.append(loop.call_later(self._close_grace, self._end))

        sub.on_close = closed
        if self._expires_at is not None:
            at = loop.time() + max(0.0, self._expires_at - time.time())
            # In a context of its own: this runs in the request's handler, and a timer
            # keeps its context (the request, its body) alive until it fires.
            self._timers.append(loop.call_at(at, sub.close, "session_expired", context=contextvars.Context()))

    @property
    def overflowed(self) -> bool:
        """Whether the stream was closed because its client fell too far behind: the
        adapter then ends the connection too (a client that stopped reading would
        otherwise keep it, with everything written to it, for as long as it lives)."""
        return self._sub is not None and self._sub.reason == "overflow"

    def close(self) -> None:
        """Unsubscribe and cancel the timers (any number of times)."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._sub is not None:
            self._sub.on_close = None
            self._bus.unsubscribe(self._sub)

    def _end(self) -> None:
        owner = self._owner
        if owner is not None and not owner.done():
            assert self._sub is not None
            log.info(
                "ending a stream whose client takes no data (closed: %s)",
                self._sub.reason,
                extra={"user_id": self.user_id},
            )
            owner.cancel()

    async def batches(self) -> AsyncIterator[list[Event]]:
        """What to send, from ``connected`` to ``closed`` (see the module docstring),
        in batches: the live events waiting together go out in one write of at most
        ``WRITE_SIZE`` bytes (a task's ``task_queued`` and ``task_started`` often
        arrive together: at a thousand streams, a thousand writes fewer). What the
        stream holds beyond its subscription's buffer stays one write."""
        sub = self._sub
        assert sub is not None, "open() first"
        self._owner = asyncio.current_task()
        user_id = self.user_id
        resume = self._resume
        reset = None if resume is None else await self._reset_reason(resume)
        replay_after = resume if reset is None else None
        position = self._horizon if replay_after is None else replay_after
        yield [_control(user_id, "connected", {"user_id": user_id, "last_event_id": position})]
        if reset is not None:
            yield [_control(user_id, "reset", {"reason": reset})]

        # Live events at or below this id are not sent: the backlog covered them, or
        # the client has them already.
        floor = max(self._horizon, replay_after or 0)
        async with contextlib.aclosing(self._backlog(replay_after)) as backlog:
            async for event in backlog:
                if sub.closed:
                    break
                yield [event]

        loop = asyncio.get_running_loop()
        idle_until = loop.time() + self._heartbeat
        while True:
            if sub.closed:
                yield [_control(user_id, "closed", {"reason": sub.reason})]
                return
            batch = []
            for event in sub.take(WRITE_SIZE):
                if event.id is not None and event.id > floor:
                    floor = event.id
                    batch.append(event)
            if not batch:
                if loop.time() < idle_until:
                    await sub.wait(idle_until)
                    continue
                batch.append(_control(user_id, "heartbeat", {}))
            yield batch
            idle_until = loop.time() + self._heartbeat

    async def _reset_reason(self, resume: int) -> str | None:
        """Why the client cannot resume after ``resume`` (None when it can)."""
        if resume > await self._bus.issued_id():
            return "unknown_event_id"
        reader = self._store.read
        oldest = await reader.oldest_event_id()
        if oldest is None:  # everything ever stored was pruned
            return "events_pruned" if resume < await reader.last_event_id() else None
        return "events_pruned" if resume < oldest - 1 else None

    async def _backlog(self, after: int | None) -> AsyncIterator[Event]:
        """Stored events in (after, horizon] merged in id order with the deltas so far
        above ``after``; only the deltas so far when ``after`` is None."""
        progress = deque(e for e in self._progress if after is None or (e.id or 0) > after)
        self._progress = []
        if after is not None:
            reader = self._store.read
            cursor = after
            done = cursor >= self._horizon
            while not done:
                page = await reader.events_after(self.user_id, cursor, REPLAY_PAGE)
                for row in page:
                    if row.id > self._horizon:
                        done = True
                        break
                    while progress and (progress[0].id or 0) < row.id:
                        yield progress.popleft()
                    yield Event(row.id, row.user_id, row.event, row.data)
                if len(page) < REPLAY_PAGE:
                    done = True
                elif page:
                    cursor = page[-1].id
        while progress:
            yield progress.popleft()


# -- retention of the event log ------------------------------------------------


class EventPruner:
    """Deletes stored events older than ``sse.retention`` seconds: once at start, then
    every ``interval`` seconds in a task that logs a failure and tries again next
    time. Event ids are never reused (the table is ``AUTOINCREMENT``)."""

    def __init__(
        self,
        store: Store,
        retention: float,
        interval: float = PRUNE_INTERVAL,
        *,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._store = store
        self._supervisor = supervisor or Supervisor()
        self._retention = retention
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def prune(self) -> int:
        """Delete the events older than the retention; how many were deleted."""
        cutoff = format_time(datetime.now(UTC) - timedelta(seconds=self._retention))

        def job(tx: Tx) -> int:
            return tx.prune_events(cutoff)

        removed = await self._store.write(job)
        if removed:
            log.info("pruned %d stored events older than %s", removed, cutoff)
        return removed

    async def _prune_logged(self) -> None:
        try:
            await self.prune()
        except Exception:
            log.exception("could not prune old events; trying again in %gs", self._interval)

    async def start(self) -> None:
        await self._prune_logged()
        self._task = self._supervisor.start(self._run(), name="event-pruner")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._prune_logged()

    async def stop(self) -> None:
        await self._supervisor.stop(self._task)
        self._task = None
