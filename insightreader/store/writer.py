"""The store: one interface over SQLite (the default) and PostgreSQL.

:class:`Store` is the whole storage interface; the engine, auth and web layers use
nothing else. Writes go through **one writer per process**: a connection owned by
one thread. A coroutine takes write jobs in arrival order and *group-commits* them:
every job queued while a commit is under way joins the next batch, and the whole
batch (BEGIN, each job inside its own savepoint so a failing job rolls back alone,
COMMIT) runs on the writer's thread in **one hop** from the loop. Every caller is
answered only after the shared ``COMMIT`` returned; on SQLite with
``synchronous=FULL`` that one commit is one fsync for the whole batch. (Through
aiosqlite each statement was its own hop, and under load each hop waited for a turn
of the busy loop: that, not SQLite, was the submit path's limit —
docs/benchmarks.md.) Reads go through a separate read side that only ever sees
committed data.

A write job is a plain function ``def job(tx: Tx) -> T``: it runs on the writer's
thread, so it may only call :class:`Tx` methods and compute (no awaiting, no loop
objects). ``tx.after_commit`` / ``tx.on_rollback`` callbacks run on the loop once
the batch ended, which lets the event bus release an event only once the change it
describes is durable.

The queries (:mod:`.reader`, :mod:`.tx`) are one set for both databases; what differs
(connections, transactions, errors, the search index, the process lock) lives in
:mod:`.sqlite` and :mod:`.postgresql`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from ..config import DatabaseSettings
from ..errors import ShuttingDown, StorageBusy, StorageFull
from ..migrate import Migration
from ..supervisor import Supervisor
from .channels import Channels
from .reader import Reader, Reads
from .tx import Tx, Writes

log = logging.getLogger("insightreader.store")

T = TypeVar("T")
MAX_BATCH = 256


class Database(Protocol):
    """What one kind of database gives the store."""

    async def prepare(self) -> list[Migration]:
        """Create or upgrade the schema; the migrations applied."""
        ...

    def connect_writer(self) -> Writes:
        """The writer's connection (called on the writer's thread)."""
        ...

    async def connect_reader(self) -> Reads: ...

    def hold(self, *, shared: bool) -> Held:
        """Hold the database for a process's life (see :func:`hold`)."""
        ...

    def channels(self, supervisor: Supervisor) -> Channels:
        """How processes sharing the database tell each other (:mod:`.channels`)."""
        ...

    def open_reader(self) -> AbstractAsyncContextManager[Reader]:
        """A read-only reader for operator commands (see :func:`open_reader`)."""
        ...


class Held(Protocol):
    def close(self) -> None: ...


def hold(settings: DatabaseSettings, *, shared: bool = False) -> Held:
    """Hold the database for this process's life: AlreadyRunning when another process
    holds it. SQLite: a lock file beside it, one process at a time. PostgreSQL: an
    advisory lock, ``shared`` by serving processes (any number), exclusive for an
    operator command that writes behind their backs."""
    return _database(settings).hold(shared=shared)


def open_reader(settings: DatabaseSettings) -> AbstractAsyncContextManager[Reader]:
    """A read-only :class:`Reader` for operator commands that may run beside a server;
    the database must exist and be migrated (this creates and changes nothing)."""
    return _database(settings).open_reader()


def _database(settings: DatabaseSettings) -> Database:
    if settings.url:
        from .postgresql import PostgreSQL

        return PostgreSQL(settings)
    from .sqlite import SQLite

    return SQLite(settings)


@dataclass
class _Job(Generic[T]):
    fn: Callable[[Tx], T]
    future: asyncio.Future[T]
    #: Called (on the loop) once the job has ended, whichever way: committed, failed,
    #: rolled back with its batch, never run.
    settled: Callable[[], None] | None = None


@dataclass
class _Run:
    """One job's run inside a batch: its transaction view and outcome."""

    job: _Job[Any]
    tx: Tx
    value: Any = None
    failure: BaseException | None = None


@dataclass
class _Batch:
    """What the writer's thread did with a batch."""

    jobs: list[_Job[Any]]
    runs: list[_Run]
    #: Set when the transaction itself failed (BEGIN, a savepoint, COMMIT): every job
    #: of the batch is undone.
    error: BaseException | None = None
    seconds: float = 0.0


def _run_batch(conn: Writes, jobs: list[_Job[Any]]) -> _Batch:
    """On the writer thread: one transaction for the batch. A failing job rolls back
    alone (to its savepoint); a failure of the transaction itself fails the whole
    batch, and the writer goes on with the next one."""
    started = time.perf_counter()
    # A job alone in its batch needs no savepoint: its failure rolls back the
    # transaction (two statements fewer on the common, unloaded path).
    isolated = len(jobs) > 1
    runs: list[_Run] = []
    try:
        conn.begin()
        for job in jobs:
            run = _Run(job, Tx(conn))
            runs.append(run)
            if isolated:
                conn.execute("SAVEPOINT job")
            try:
                run.value = job.fn(run.tx)
            except Exception as exc:  # one job's failure is its own; the batch goes on
                run.failure = conn.translate(exc) or exc
                if isolated:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                elif conn.in_transaction:
                    conn.rollback()
            else:
                if isolated:
                    conn.execute("RELEASE job")
        if conn.in_transaction:
            conn.commit()
    except Exception as exc:
        translated = conn.translate(exc)
        if translated is None:
            raise
        if runs:
            log.error("a transaction of %d write jobs failed: %s", len(jobs), exc)
        if conn.in_transaction:
            conn.rollback()
        # The database may have rolled back by itself (a full disk, I/O error): the
        # batch fails with the storage error a job met, if one did.
        error = next(
            (r.failure for r in runs if isinstance(r.failure, (StorageBusy, StorageFull))), None
        ) or translated
        return _Batch(jobs, runs, error)
    return _Batch(jobs, runs, seconds=time.perf_counter() - started)


def _answer(job: _Job[Any], value: Any = None, failure: BaseException | None = None) -> None:
    """Settle a caller's future unless it is settled already (cancelled, say)."""
    if job.settled is not None:
        settled, job.settled = job.settled, None
        _call_each([settled], "on-settled")
    if job.future.done():
        return
    if failure is None:
        job.future.set_result(value)
    else:
        job.future.set_exception(failure)


def _call_each(callbacks: Iterable[Callable[[], None]], when: str) -> None:
    """Run transaction callbacks; one that raises is logged and the rest still run, so
    a bug in a callback never stops the writer (every later write would wait)."""
    for callback in callbacks:
        try:
            callback()
        except Exception:
            log.exception("an %s callback failed; the write stands and the writer goes on", when)


def _writer_gone() -> ShuttingDown:
    return ShuttingDown("the database writer stopped; the server is restarting, try again shortly")


class Store:
    """The storage interface. Open with :meth:`open`, close with :meth:`close`."""

    def __init__(self, settings: DatabaseSettings, *, supervisor: Supervisor | None = None) -> None:
        self.settings = settings
        self._database = _database(settings)
        self._supervisor = supervisor or Supervisor()
        #: How this process and others on the same database tell each other.
        self.channels = self._database.channels(self._supervisor)
        self._thread: ThreadPoolExecutor | None = None
        self._writer: Writes | None = None
        self._reader: Reads | None = None
        self._queue: asyncio.Queue[_Job[Any]] = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None
        #: Observed for metrics: size of each committed batch and its commit time.
        self.on_commit: Callable[[int, float], None] | None = None

    @property
    def read(self) -> Reader:
        """Queries on committed data (never blocked by writes)."""
        assert self._reader is not None, "store is not open"
        return Reader(self._reader)

    async def open(self) -> None:
        """Apply pending migrations, open the writer and the reader."""
        try:
            for migration in await self._database.prepare():
                log.info("applied migration %04d_%s", migration.version, migration.name)
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
            self._writer = await self._on_writer_thread(self._database.connect_writer)
            self._reader = await self._database.connect_reader()
            await self.channels.start()
        except BaseException:
            await self.close()
            raise
        self._writer_task = self._supervisor.start(self._write_loop(), name="store-writer")

    async def _on_writer_thread(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._thread is not None
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def close(self) -> None:
        """Stop listening, finish queued writes, then close both connections."""
        await self.channels.stop()
        if self._writer_task is not None:
            await self._queue.join()
            self._writer_task.cancel()
            # Waited for, not awaited: a writer that died was reported by the supervisor.
            await asyncio.wait([self._writer_task])
            self._writer_task = None
        if self._reader is not None:
            await self._reader.close()
        if self._writer is not None:
            await self._on_writer_thread(self._writer.close)
        if self._thread is not None:
            self._thread.shutdown()
        self._reader = self._writer = self._thread = None

    def write(self, fn: Callable[[Tx], T], *, settled: Callable[[], None] | None = None) -> Awaitable[T]:
        """Queue ``fn`` to run in a write transaction on the writer's thread; awaited,
        its result once it is committed.

        The job is queued by the call itself: jobs queued one after another commit in
        that order, those queued in one turn of the loop in one batch (unless it is
        full). The job runs even if the caller is cancelled meanwhile, so an accepted
        write is never half done: cancelling the caller cancels the future it awaits,
        which the writer then leaves unanswered (no ``asyncio.shield``, which cost
        every write a second future and a turn of the loop before its caller resumed).
        A write that cannot be queued fails when awaited.
        ``settled`` is called on the loop once the job has ended, whichever way (after
        its ``after_commit`` or ``on_rollback`` callbacks, if it ran), even when the
        caller was cancelled: what the caller took for the job can be given back there.
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        job = _Job(fn, future, settled)
        if self._writer_task is None:
            _answer(job, failure=RuntimeError("store is not open"))
        elif self._writer_task.done():
            _answer(job, failure=_writer_gone())
        else:
            self._queue.put_nowait(job)
        return future

    async def _write_loop(self) -> None:
        conn = self._writer
        assert conn is not None
        try:
            while True:
                jobs = [await self._queue.get()]
                while len(jobs) < MAX_BATCH and not self._queue.empty():
                    jobs.append(self._queue.get_nowait())
                try:
                    self._settle(await self._on_writer_thread(_run_batch, conn, jobs))
                except BaseException:
                    for job in jobs:
                        _answer(job, failure=_writer_gone())
                    raise
                finally:
                    for _ in jobs:
                        self._queue.task_done()
        finally:
            # The writer ends only when closed (the queue is empty then) or when it died:
            # no write may wait for it any longer.
            while not self._queue.empty():
                _answer(self._queue.get_nowait(), failure=_writer_gone())
                self._queue.task_done()

    def _settle(self, batch: _Batch) -> None:
        """On the loop, once the batch's transaction ended: callbacks, then answers."""
        if batch.error is None and self.on_commit is not None:
            try:
                self.on_commit(len(batch.jobs), batch.seconds)
            except Exception:
                log.exception("the commit observer failed; the writer goes on")
        runs = {id(run.job): run for run in batch.runs}
        for job in batch.jobs:
            run = runs.get(id(job))
            if run is None:  # BEGIN failed before it ran
                _answer(job, failure=batch.error)
            elif batch.error is None and run.failure is None:
                _call_each(run.tx._committed, "after-commit")
                _answer(job, run.value)
            else:
                _call_each(run.tx._rolled_back, "on-rollback")
                _answer(job, failure=run.failure or batch.error)
