"""Events on a database several processes share (PostgreSQL): numbered and delivered
through the database, so a stream on any process gets every event of its user and
``Last-Event-ID`` resumes on any process.

- **Ids in commit order.** A stored event takes its id from the events table's
  sequence inside its write transaction, and every write transaction holds one lock
  from its BEGIN to its end (:mod:`insightreader.store.postgresql`): an event with a
  smaller id was committed before (or with) one with a larger id. A ``task_progress``
  event is not stored, but its id comes from the same sequence in a write transaction
  too, so it has its place in the same order.
- **Delivery.** A transaction that stored events notifies :data:`~.channels.EVENTS`;
  each process's relay (this process's own commits included: one path, one order) then
  reads the events after the last it delivered and hands them to its streams. A
  ``task_progress`` event travels in its notification (:data:`~.channels.PROGRESS`);
  the relay first delivers any stored event with a smaller id it has not delivered.
- **Bounded traffic.** A running task's deltas are gathered for :data:`PROGRESS_EVERY`
  seconds and sent as one event per task (indexes stay consecutive per attempt); a
  lifecycle event of the task sends what was gathered first, in its own transaction,
  so the deltas always precede the task's end.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from .errors import STORAGE_UNAVAILABLE
from .records import PROGRESS_RESETS, Event, utcnow
from .store import Store, Tx
from .store.channels import EVENTS, PROGRESS
from .supervisor import Supervisor

log = logging.getLogger(__name__)

#: Seconds a running task's deltas are gathered before they are sent.
PROGRESS_EVERY = 0.05
#: Characters of a delta per notification: PostgreSQL's payload is at most 8,000
#: bytes, and 1,000 characters stay under it however JSON escapes them.
PIECE = 1000
#: Stored events read per query when catching up.
PAGE = 500
#: Seconds before reading again after the database could not be read.
RETRY_WAIT = 1.0

_Key = tuple[str, int]


class Relay:
    def __init__(self, store: Store, deliver: Callable[[Event], None], supervisor: Supervisor) -> None:
        self._store = store
        self._deliver = deliver
        self._supervisor = supervisor
        #: Guards the two dicts below: stored events are published on the writer's
        #: thread, deltas on the loop.
        self._lock = threading.Lock()
        #: (task id, attempt) → (user id, the first delta's data, the deltas): not sent yet.
        self._gathered: dict[_Key, tuple[str, dict[str, Any], list[str]]] = {}
        #: (task id, attempt) → the index of its next progress event.
        self._indexes: dict[_Key, int] = {}
        self._gathering = asyncio.Event()
        #: Progress events to deliver, in the order received; None: read the stored ones.
        self._inbox: asyncio.Queue[Event | None] = asyncio.Queue()
        self._reading_queued = False
        #: The id of the last event delivered.
        self.last = 0
        self._parts: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        channels = self._store.channels
        channels.listen(EVENTS, lambda _payload: self.wake())
        channels.listen(PROGRESS, self._arrived)
        channels.on_reconnect(self.wake)
        self.last = await self._store.read.newest_event_id()
        self._parts = [
            self._supervisor.start(self._relay(), name="event-relay"),
            self._supervisor.start(self._send_gathered(), name="progress-sender"),
        ]

    async def stop(self) -> None:
        for part in self._parts:
            await self._supervisor.stop(part)
        self._parts = []

    # -- publishing -------------------------------------------------------------------

    def store(self, tx: Tx, user_id: str, event: str, data: dict[str, Any]) -> Event:
        """Store an event in ``tx`` (on the writer's thread), after the deltas gathered
        for its task."""
        task_id = data.get("task_id")
        if task_id is not None:
            self._send(tx, self._take(task_id, restart=event in PROGRESS_RESETS))
        event_id = tx.insert_event(None, user_id, event, data, utcnow())
        tx.notify(EVENTS, "")
        tx.after_commit(self.wake)
        return Event(event_id, user_id, event, data)

    def gather(self, user_id: str, data: dict[str, Any]) -> Event:
        """A ``task_progress`` delta (on the loop): sent with the others of its task
        within :data:`PROGRESS_EVERY` seconds."""
        key = (data["task_id"], data["attempt"])
        with self._lock:
            gathered = self._gathered.get(key)
            if gathered is None:
                self._gathered[key] = (user_id, data, [data["delta"]])
            else:
                gathered[2].append(data["delta"])
        self._gathering.set()
        return Event(None, user_id, "task_progress", data)

    def _take(self, task_id: str | None, *, restart: bool = False) -> list[tuple[str, dict[str, Any]]]:
        """The gathered deltas of one task (None: of all), as the events to send."""
        with self._lock:
            keys = [k for k in self._gathered if task_id is None or k[0] == task_id]
            events = []
            for key in keys:
                user_id, first, deltas = self._gathered.pop(key)
                text = "".join(deltas)
                for start in range(0, max(len(text), 1), PIECE):
                    index = self._indexes.get(key, 0)
                    self._indexes[key] = index + 1
                    events.append((user_id, {**first, "index": index, "delta": text[start : start + PIECE]}))
            if restart and task_id is not None:
                for key in [k for k in self._indexes if k[0] == task_id]:
                    del self._indexes[key]
        return events

    @staticmethod
    def _send(tx: Tx, events: list[tuple[str, dict[str, Any]]]) -> None:
        if not events:
            return
        for event_id, (user_id, data) in zip(tx.event_ids(len(events)), events, strict=True):
            note = {"id": event_id, "user_id": user_id, "data": data}
            tx.notify(PROGRESS, json.dumps(note, ensure_ascii=False, separators=(",", ":")))

    async def _send_gathered(self) -> None:
        while True:
            await self._gathering.wait()
            await asyncio.sleep(PROGRESS_EVERY)
            self._gathering.clear()
            try:
                await self._store.write(lambda tx: self._send(tx, self._take(None)))
            except STORAGE_UNAVAILABLE as exc:
                # Deltas are not kept anyway: a stream that missed them gets the result.
                log.warning("task progress could not be sent (%s); the results will follow", exc)

    # -- delivering -------------------------------------------------------------------

    def wake(self) -> None:
        """Read the stored events committed after the last delivered."""
        if not self._reading_queued:
            self._reading_queued = True
            self._inbox.put_nowait(None)

    def _arrived(self, payload: str) -> None:
        note = json.loads(payload)
        self._inbox.put_nowait(Event(note["id"], note["user_id"], "task_progress", note["data"]))

    async def _relay(self) -> None:
        while True:
            item = await self._inbox.get()
            if item is None:
                self._reading_queued = False
            while True:
                try:
                    await self._catch_up(None if item is None else item.id)
                    break
                except STORAGE_UNAVAILABLE as exc:
                    log.warning("cannot read new events (%s); trying again in %gs", exc, RETRY_WAIT)
                    await asyncio.sleep(RETRY_WAIT)
            if item is not None and item.id is not None and item.id > self.last:
                self.last = item.id
                self._deliver(item)

    async def _catch_up(self, before: int | None) -> None:
        """Deliver the stored events after the last delivered (and below ``before``)."""
        while True:
            page = await self._store.read.all_events_between(self.last, before, PAGE)
            for row in page:
                self.last = row.id
                self._deliver(Event(row.id, row.user_id, row.event, row.data))
            if len(page) < PAGE:
                return
