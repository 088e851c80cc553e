"""Bulk work a user started, done in the background one item per write: imports
(:mod:`insightreader.imports`) and re-analyses (:mod:`insightreader.reanalysis`).

A batch's items are stored with it (tables ``batches`` and ``batch_items``) and the
:class:`BatchRunner` does them one write transaction each, taking the running batches
in turn (:data:`TURN` items each), so a batch of thousands never holds the single
writer for long, and each item is taken in the same transaction that does it: after a
crash a batch goes on exactly where it stopped, and nothing is done twice.

The tasks a batch submits run at :data:`PRIORITY`, below everything a reader waits
for, carry the batch's id, and a batch leaves :data:`HEADROOM` of the user's
``tasks.max_pending_per_user`` free for the reader's own work: while the user has more
unfinished tasks than that allows, the batch waits. Cancelling a batch drops the items
still to do and cancels its unfinished tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from .engine import Engine
from .errors import ApiError, NotFound
from .events import EventBus
from .records import Batch, Task, format_time, utcnow
from .store import Store, Tx
from .supervisor import Supervisor

log = logging.getLogger(__name__)

#: Priority of the tasks a batch submits: below every task type's default.
PRIORITY = -5
#: Unfinished tasks a batch leaves free for the reader's own work.
HEADROOM = 10
#: Items stored per write while a batch is staged.
STAGE_CHUNK = 500
#: Items of one batch done before the next batch gets its turn.
TURN = 20
#: Seconds between two progress events of one batch.
PROGRESS_EVERY = 0.5
#: Seconds a batch waiting for room under the pending-task limit waits before it looks
#: again, unless a task's end wakes it first.
BLOCKED_WAIT = 1.0
#: Seconds before the runner tries again after a write failed (a full disk).
FAILED_WAIT = 5.0
#: With other processes on the database (PostgreSQL): seconds an idle runner waits
#: before it looks for batches again (one whose process stopped is carried on by the
#: others), and the age after which a batch still being stored is taken for one whose
#: request died (a younger one may be another process's, being stored now).
SHARED_LOOK = 5.0
STAGING_ABANDONED = 3600.0


class BatchKind(Protocol):
    """What one kind of batch does with its items."""

    #: ``batches.kind``.
    kind: str
    #: The events of its progress (at most every :data:`PROGRESS_EVERY` seconds) and of its end.
    progress_event: str
    finished_event: str

    async def prepare(self, raw: str) -> Any:
        """An item's JSON read, with what is computed off the writer's thread."""

    def do(self, tx: Tx, batch: Batch, item: Any) -> tuple[str, str | None]:
        """Do the item in the runner's write: the counter it adds to (``done``,
        ``duplicates``, ``failed``) and, for a failure, why. Raises an
        :class:`ApiError` when a submit is refused (the job then keeps nothing, and the
        item is counted failed with the reason)."""


async def stage(
    store: Store, batch: Batch, items: list[tuple[int, str]], *, wake: Callable[[], None] | None
) -> Batch:
    """Store ``batch`` with its (position, item JSON) items, a write per
    :data:`STAGE_CHUNK`, then ``wake`` the runner (None: no server runs; the next one's
    runner starts it); the batch as the request answers it (``running``, or
    ``finished`` when it has no item)."""
    chunks = [items[i : i + STAGE_CHUNK] for i in range(0, len(items), STAGE_CHUNK)] or [[]]

    def first(tx: Tx) -> None:
        tx.insert_batch(batch)
        tx.stage_batch_items(batch.id, chunks[0])

    await store.write(first)
    for chunk in chunks[1:]:
        await store.write(lambda tx, chunk=chunk: tx.stage_batch_items(batch.id, chunk))
    if batch.status == "staging":
        await store.write(lambda tx: tx.set_batch_status(batch.id, "running"))
        if wake is not None:
            wake()
        return dataclasses.replace(batch, status="running")
    return batch


async def cancel(store: Store, bus: EventBus, engine: Engine, kinds: Mapping[str, BatchKind], user_id: str,
                 batch_id: str) -> Batch:
    """Cancel the user's batch: its items still to do are dropped and its unfinished
    tasks cancelled. A batch that ended already is answered as it is."""

    def job(tx: Tx) -> Batch | None:
        found = tx.cancel_batch(batch_id, user_id, utcnow())
        if found is None:
            return None
        after, cancelled = found
        if cancelled:
            bus.publish(user_id, kinds[after.kind].finished_event, after.progress(), tx=tx)
        return after

    found = await store.write(job)
    if found is None:
        raise NotFound("no such batch")
    await engine.cancel_each(user_id, await store.read.unfinished_batch_tasks(batch_id))
    return found


class BatchRunner:
    """Does the items of every running batch, taking the batches in turn."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        kinds: list[BatchKind],
        *,
        max_pending_per_user: int,
        supervisor: Supervisor,
    ) -> None:
        self._store = store
        self._bus = bus
        self.kinds = {kind.kind: kind for kind in kinds}
        self._room = max(1, max_pending_per_user - HEADROOM)
        self._supervisor = supervisor
        self._shared = store.channels.shared
        self._wake = asyncio.Event()
        self._last_progress: dict[str, float] = {}
        #: A batch waits for its user's unfinished tasks to leave room: a task's end wakes the runner.
        self._waiting_for_room = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = self._supervisor.start(self._run(), name="batches")

    async def stop(self) -> None:
        """Stop between two items (an item's write is done or not done at all)."""
        await self._supervisor.stop(self._task)
        self._task = None

    def wake(self) -> None:
        self._wake.set()

    def task_changed(self, event: str, task: Task) -> None:
        """An engine observer: a task that ended may leave room for a waiting batch's next item."""
        if self._waiting_for_room and task.status.finished:
            self._waiting_for_room = False
            self._wake.set()

    async def _run(self) -> None:
        before = format_time(datetime.now(UTC) - timedelta(seconds=STAGING_ABANDONED)) if self._shared else None
        dropped = await self._store.write(lambda tx: tx.drop_staging_batches(before))
        if dropped:
            log.info("dropped %d batches whose request ended while storing them", dropped)
        while True:
            self._wake.clear()
            batches = await self._store.read.running_batches()
            progressed = False
            for batch in batches:
                progressed |= await self._turn(batch)
            if batches and progressed:
                continue
            self._waiting_for_room = bool(batches)
            wait = BLOCKED_WAIT if batches else SHARED_LOOK if self._shared else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def _turn(self, batch: Batch) -> bool:
        """Up to :data:`TURN` items of ``batch``; whether any was done."""
        progressed = False
        for _ in range(TURN):
            try:
                outcome = await self._next(batch)
            except Exception:
                log.exception("%s %s: an item could not be recorded; trying again shortly", batch.kind, batch.id)
                await asyncio.sleep(FAILED_WAIT)
                return progressed
            if outcome is None:
                return progressed
            progressed = True
            if outcome.status != "running":
                self._last_progress.pop(batch.id, None)
                log.info("%s %s %s: %s", batch.kind, batch.id, outcome.status, outcome.progress())
                return progressed
        return progressed

    async def _next(self, batch: Batch) -> Batch | None:
        """Do the batch's next item; the batch after it, or None when there is none
        (or it was cancelled meanwhile) or the user has no room for more tasks now."""
        staged = await self._store.read.next_batch_item(batch.id)
        if staged is None:
            return None
        position, raw = staged
        kind = self.kinds[batch.kind]
        item = await kind.prepare(raw)
        try:
            return await self._store.write(lambda tx: self._do(tx, kind, batch, position, item))
        except ApiError as refused:  # the submit or a quota refused it: nothing of it was kept
            reason = refused.message
        return await self._store.write(lambda tx: self._record(tx, kind, batch, position, "failed", reason))

    def _do(self, tx: Tx, kind: BatchKind, batch: Batch, position: int, item: Any) -> Batch | None:
        if tx.count_unfinished(batch.user_id) >= self._room or not tx.take_batch_item(batch.id, position):
            return None
        outcome, error = kind.do(tx, batch, item)
        return self._count(tx, kind, batch, outcome, error)

    def _record(self, tx: Tx, kind: BatchKind, batch: Batch, position: int, outcome: str,
                error: str | None) -> Batch | None:
        if not tx.take_batch_item(batch.id, position):
            return None
        return self._count(tx, kind, batch, outcome, error)

    def _count(self, tx: Tx, kind: BatchKind, batch: Batch, outcome: str, error: str | None) -> Batch:
        after = tx.count_batch_item(batch.id, outcome, error, utcnow())
        if after.status == "finished":
            self._bus.publish(batch.user_id, kind.finished_event, after.progress(), tx=tx)
            return after
        moment = time.monotonic()
        if moment - self._last_progress.get(batch.id, 0.0) >= PROGRESS_EVERY:
            self._last_progress[batch.id] = moment
            self._bus.publish(batch.user_id, kind.progress_event, after.progress(), tx=tx)
        return after
