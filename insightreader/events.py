"""Events: ids, the one publish function, and the in-memory fan-out.

Every event gets its id from one counter at :meth:`EventBus.publish`; events are
handed to subscribers strictly in id order. A lifecycle event is published
inside the write transaction that makes the change it reports and is released
only after that transaction commits (so a client never hears of a change that a
crash could undo, and the log holds exactly what was sent). ``task_progress``
events are not stored: they wait in the same ordered outbox behind any
uncommitted event with a smaller id, and are also kept per running task so a
client that connects mid-stream gets the text so far.

Ids are never reused, even for events that were never stored: the counter runs
inside a block reserved in the ``meta`` table, and a restart starts after the
block.

That is SQLite's, where one process serves the database. On PostgreSQL, where several
may, ids come from the database and every event reaches the streams through it
(:mod:`.relay`); subscribing and delivering are the same.

A lifecycle event is published from a write job, which runs on the store's writer
thread; live events are published on the loop. The id counter and the outbox are
therefore shared by two threads, under one lock held only for a few dictionary
operations. Delivery to subscribers happens on the loop only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from .records import PROGRESS_RESETS, TASK_ENDS, Event, utcnow
from .relay import Relay
from .store import Store, Tx
from .supervisor import Supervisor

log = logging.getLogger(__name__)

ID_BLOCK = 100_000
#: Streams woken per turn of the event loop. Each woken stream writes its events in a
#: step of its own (about 30 µs through Quart and Hypercorn); waking all 1,000 streams
#: of a user at once held the loop for one long turn (34 ms p99 lag at fan-out), a
#: batch of this size holds it for about 4 ms, and the next batch follows on the next turn.
WAKE_BATCH = 128
_HWM_KEY = "event_id_reserved"


class Subscription:
    """One open stream's buffer of events: the bus puts events in (:meth:`put`), the
    stream takes them (:meth:`take`, :meth:`wait`). It is closed when it overflowed (more than
    ``limit`` events waiting), when the server shuts down, or by the stream (its
    session expired); the stream then ends and the client resumes from the log.

    No task and no queue per stream: a list, one timer and, while the stream waits, one
    future (thousands of idle streams are thousands of these; an empty list is a tenth
    of an empty deque, and the buffer is short, so taking from its front is cheap).

    :meth:`put` does not wake the stream: the bus wakes the streams an event reached
    a batch at a time (:meth:`needs_wake`, :meth:`wake`), see :class:`EventBus`."""

    __slots__ = ("user_id", "reason", "on_close", "_limit", "_items", "_waiter", "_wake_queued", "_timer")

    def __init__(self, user_id: str, limit: int) -> None:
        self.user_id = user_id
        #: Why it closed; empty while open.
        self.reason = ""
        #: Called once, when it closes.
        self.on_close: Callable[[], None] | None = None
        self._limit = limit
        self._items: list[Event] = []
        self._waiter: asyncio.Future[None] | None = None
        self._wake_queued = False
        self._timer: asyncio.TimerHandle | None = None

    @property
    def closed(self) -> bool:
        return bool(self.reason)

    def put(self, event: Event) -> bool:
        """Add ``event``; False (and nothing added) when ``limit`` events wait already."""
        if len(self._items) >= self._limit:
            return False
        self._items.append(event)
        return True

    def needs_wake(self) -> bool:
        """True when the stream waits and no wake is queued for it yet (the caller then
        queues one: :meth:`wake` comes later, whatever waiter is there by then)."""
        if self._waiter is None or self._wake_queued:
            return False
        self._wake_queued = True
        return True

    def wake(self) -> None:
        self._wake_queued = False
        if self._waiter is not None:
            _resolve(self._waiter)

    def take(self, size: int) -> list[Event]:
        """The oldest events waiting whose messages come to at most ``size`` bytes
        (at least one, however large; none when none waits)."""
        items = self._items
        count = total = 0
        for event in items:
            total += len(event.message)
            if count and total > size:
                break
            count += 1
        taken = items[:count]
        del items[:count]
        return taken

    def close(self, reason: str) -> None:
        if self.reason:
            return
        self.reason = reason
        self.wake()
        if self.on_close is not None:
            self.on_close()

    async def wait(self, deadline: float) -> None:
        """Until an event waits, the subscription closes, or the loop's clock reaches
        ``deadline``, whichever comes first; or earlier, so the caller checks the clock.

        The timer outlives the wait: a later deadline keeps the earlier timer, which
        wakes the stream early once, instead of a new timer on the loop's heap for
        every event (one event to 1,000 streams: the last arrives 43 ms after the
        first instead of 53, docs/benchmarks.md)."""
        if self._items or self.reason:
            return
        loop = asyncio.get_running_loop()
        if self._timer is None or self._timer.when() > deadline:
            self.cancel_timer()
            self._timer = loop.call_at(deadline, self._time_up)
        waiter = self._waiter = loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _time_up(self) -> None:
        self._timer = None
        if self._waiter is not None:
            _resolve(self._waiter)

    def cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class EventBus:
    def __init__(self, store: Store, *, queue_size: int, supervisor: Supervisor | None = None) -> None:
        self._store = store
        self._supervisor = supervisor or Supervisor()
        self._queue_size = queue_size
        self._next_id = 0
        self._reserved = 0
        self._delivered_id = 0
        self._reserving: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Guards ``_next_id`` and ``_outbox`` (see the module docstring).
        self._lock = threading.Lock()
        # id → (event, ready). Delivered from the front while the front is ready.
        self._outbox: OrderedDict[int, tuple[Event, bool]] = OrderedDict()
        #: On a database other processes may share, events go through it.
        self._relay = Relay(store, self._deliver, self._supervisor) if store.channels.shared else None
        #: task id → futures resolved when its end is delivered (:meth:`ended`).
        self._ending: dict[str, list[asyncio.Future[None]]] = {}
        self._subscribers: dict[str, set[Subscription]] = {}
        self._progress: dict[str, list[Event]] = {}
        self._to_wake: deque[Subscription] = deque()
        self._waking = False
        #: Observed for metrics: (event name) for each delivered event, and overflow closes.
        self.on_deliver: Callable[[Event], None] | None = None
        self.on_overflow: Callable[[], None] | None = None
        #: Called for every stored event, in the transaction that stores it (the
        #: webhooks' deliveries are made there): (tx, user id, event name, data).
        self.on_store: Callable[[Tx, str, str, dict[str, Any]], None] | None = None

    async def start(self) -> None:
        """Continue the id sequence after everything this database ever handed out."""
        self._loop = asyncio.get_running_loop()
        if self._relay is not None:
            await self._relay.start()
            self._delivered_id = self._relay.last
            return
        last_stored = await self._store.read.last_event_id()
        reserved = int(await self._store.read.meta(_HWM_KEY) or 0)
        self._next_id = max(last_stored, reserved) + 1
        self._reserved = self._next_id - 1
        self._delivered_id = self._next_id - 1
        await self._reserve()

    async def stop(self) -> None:
        if self._relay is not None:
            await self._relay.stop()
        if self._reserving is not None:
            await asyncio.wait([self._reserving])
        for subs in list(self._subscribers.values()):
            for sub in list(subs):
                sub.close("shutdown")

    async def issued_id(self) -> int:
        """The largest id handed out so far (on PostgreSQL, by any process)."""
        if self._relay is not None:
            return await self._store.read.last_event_id()
        return self._next_id - 1

    @property
    def delivered_id(self) -> int:
        """The id of the last event handed to subscribers: every later delivery has a
        larger id, and every stored event up to it is committed."""
        return self._delivered_id

    async def _reserve(self) -> None:
        upto = self._next_id + ID_BLOCK

        def job(tx: Tx) -> None:
            tx.set_meta(_HWM_KEY, str(upto))

        await self._store.write(job)
        self._reserved = upto

    def _allocate(self, event: str, user_id: str, data: dict[str, Any], *, ready: bool) -> Event:
        """A new id and its place in the outbox, taken together (under the lock), so
        the outbox stays in id order whichever thread publishes."""
        with self._lock:
            published = Event(self._next_id, user_id, event, data)
            self._next_id += 1
            self._outbox[self._next_id - 1] = (published, ready)
            extend = self._reserved - self._next_id < ID_BLOCK // 2
        if published.id > self._reserved:  # type: ignore[operator]
            # Only reachable if a whole block went by before the reservation
            # below committed; ids stay unique within this process regardless.
            log.warning("event id %d is beyond the reserved block %d", published.id, self._reserved)
        if extend:
            assert self._loop is not None, "start() first"
            self._loop.call_soon_threadsafe(self._start_extending)
        return published

    def _start_extending(self) -> None:
        if self._reserving is None and self._reserved - self._next_id < ID_BLOCK // 2:
            self._reserving = self._supervisor.start(
                self._extend(), name="event-id-reservation", until_stopped=False
            )

    async def _extend(self) -> None:
        try:
            await self._reserve()
        except Exception:
            log.exception("could not reserve event ids")
        finally:
            self._reserving = None

    def publish(
        self, user_id: str, event: str, data: dict[str, Any], *, tx: Tx | None = None
    ) -> Event:
        """The one way an event is sent.

        With ``tx`` (from a write job, on the writer's thread) the event is stored in
        that transaction and released after it commits (dropped if it rolls back);
        without (on the loop), it is live only.
        """
        if self._relay is not None:
            if tx is None:
                return self._relay.gather(user_id, data)
            stored = self._relay.store(tx, user_id, event, data)
            if self.on_store is not None:
                self.on_store(tx, user_id, event, data)
            return stored
        if tx is None:
            published = self._allocate(event, user_id, data, ready=True)
            self._flush()
            return published
        published = self._allocate(event, user_id, data, ready=False)
        tx.after_commit(lambda: self._release(published))
        tx.on_rollback(lambda: self._drop(published))
        assert published.id is not None
        tx.insert_event(published.id, user_id, event, data, utcnow())
        if self.on_store is not None:
            self.on_store(tx, user_id, event, data)
        return published

    def _release(self, event: Event) -> None:
        assert event.id is not None
        with self._lock:
            if event.id in self._outbox:
                self._outbox[event.id] = (event, True)
        self._flush()

    def _drop(self, event: Event) -> None:
        assert event.id is not None
        with self._lock:
            self._outbox.pop(event.id, None)
        self._flush()

    def _flush(self) -> None:
        """Deliver from the front of the outbox while the front is ready (on the loop)."""
        while True:
            with self._lock:
                if not self._outbox:
                    return
                event_id, (event, ready) = next(iter(self._outbox.items()))
                if not ready:
                    return
                del self._outbox[event_id]
            self._deliver(event)

    def _deliver(self, event: Event) -> None:
        assert event.id is not None
        self._delivered_id = event.id
        task_id = event.data.get("task_id")
        if event.event == "task_progress":
            self._progress.setdefault(task_id, []).append(event)
        elif event.event in PROGRESS_RESETS:
            self._progress.pop(task_id, None)
            if event.event in TASK_ENDS and task_id in self._ending:
                for waiter in self._ending.pop(task_id):
                    _resolve(waiter)
        if self.on_deliver is not None:
            self.on_deliver(event)
        for sub in list(self._subscribers.get(event.user_id, ())):
            if sub.closed:
                continue
            if not sub.put(event):
                sub.close("overflow")
                if self.on_overflow is not None:
                    self.on_overflow()
            elif sub.needs_wake():
                self._to_wake.append(sub)
        if self._to_wake and not self._waking:
            self._waking = True
            asyncio.get_running_loop().call_soon(self._wake_batch)

    def _wake_batch(self) -> None:
        """Wake :data:`WAKE_BATCH` streams, and come back on the next turn for the rest."""
        to_wake = self._to_wake
        for _ in range(min(WAKE_BATCH, len(to_wake))):
            to_wake.popleft().wake()
        if to_wake:
            asyncio.get_running_loop().call_soon(self._wake_batch)
        else:
            self._waking = False

    def ended(self, task_id: str) -> asyncio.Future[None]:
        """Resolved when an event that ends the task is delivered (a waiter that gives
        up cancels it)."""
        waiter = asyncio.get_running_loop().create_future()
        waiters = self._ending.setdefault(task_id, [])
        waiters.append(waiter)
        waiter.add_done_callback(lambda done: self._forget_waiter(task_id, done))
        return waiter

    def _forget_waiter(self, task_id: str, waiter: asyncio.Future[None]) -> None:
        waiters = self._ending.get(task_id)
        if waiters is not None and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._ending[task_id]

    def subscribe(self, user_id: str) -> Subscription:
        sub = Subscription(user_id, self._queue_size)
        self._subscribers.setdefault(user_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub.cancel_timer()
        subs = self._subscribers.get(sub.user_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subscribers[sub.user_id]

    def subscriber_count(self, user_id: str | None = None) -> int:
        if user_id is not None:
            return len(self._subscribers.get(user_id, ()))
        return sum(len(s) for s in self._subscribers.values())

    def progress_so_far(self, user_id: str) -> list[Event]:
        """``task_progress`` events of the user's tasks that are being written now."""
        return sorted(
            (e for events in self._progress.values() for e in events if e.user_id == user_id),
            key=lambda e: e.id or 0,
        )
