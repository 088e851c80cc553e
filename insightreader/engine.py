"""The task engine: submit, dispatch, run, cancel, retry, recover. No web imports.

Runs on the server's one loop. A dispatcher takes the next ready task (highest
priority first; round-robin across users within a priority; oldest first per
user) whenever one of ``tasks.max_concurrency`` slots is free, and runs it as a
child of one ``asyncio.TaskGroup``; a run ending while tasks wait hands its slot
straight to the next (:meth:`Engine._pass_slot`). Every state change is one store
write that also publishes its lifecycle event, so the database and the event log
never disagree.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .config import TaskSettings
from .errors import (
    STORAGE_UNAVAILABLE,
    Conflict,
    NotFound,
    QuotaExceeded,
    ShuttingDown,
    TaskDeferred,
    TaskError,
    TooManyPending,
)
from .events import EventBus
from .ids import new_id
from .logs import task_id as task_id_context
from .records import NewTask, QueuedTask, Task, TaskStatus, format_time, utcnow
from .store import Store, Tx
from .store.channels import CANCEL, TASKS
from .supervisor import Supervisor

if TYPE_CHECKING:
    from .llm import LLMClient

log = logging.getLogger(__name__)

CANCEL_WAIT = 5.0
#: Seconds before a task whose start could not be written is tried again.
RETRY_START_AFTER = 1.0
#: Recovered tasks queued per turn of the loop at start.
RECOVERY_BATCH = 1_000
#: Sharing the database: seconds before a task another process queued joins this
#: process's queue (that process tries first), and how many claims are remembered.
CLAIM_COURTESY = 0.02
CLAIMS_REMEMBERED = 10_000


@dataclass(frozen=True)
class TaskType:
    """A kind of task: how to run it and how it is scheduled and hashed."""

    name: str
    run: Callable[[TaskContext], Awaitable[dict[str, Any]]]
    #: Default priority (−10…10, higher first); interactive types rank above bulk ones.
    priority: int = 0
    #: Part of the dedup hash: a new prompt version never answers from an old result.
    prompt_version: str = "1"
    #: The most tokens a run may spend, from its input (read in the submit's
    #: transaction): reserved against ``tasks.daily_token_budget`` while unfinished.
    estimate: Callable[[Tx, Mapping[str, Any]], int] | None = None
    #: Called in the transaction that records a task of this type failed or cancelled,
    #: whatever ended it (a failed run, a cancel, a start refused): what it leaves undone.
    on_unfinished: Callable[[Tx, Task], None] | None = None


@dataclass(frozen=True)
class Submission:
    """What one submit asks for; built by a ``prepare`` step inside the submit's write
    transaction when it depends on other writes (saving an article and analysing it)."""

    payload: dict[str, Any]
    preview: str
    article_id: str | None = None


@dataclass(frozen=True)
class SubmitOutcome:
    task: Task
    #: True when this submit created the task (False: joined or answered from another).
    created: bool
    #: True when answered with an earlier task's result (a completed dedup hit).
    deduplicated: bool


@dataclass
class TaskContext:
    """What a running task sees: its row, the services, and progress/usage reporting."""

    task: Task
    store: Store
    llm: LLMClient | None
    _bus: EventBus
    _index: int = 0
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    _on_complete: list[Callable[[Tx, dict[str, Any]], None]] = field(
        default_factory=list
    )
    _follow_ups: list[tuple[str, Submission]] = field(default_factory=list)
    #: Tokens the user may still spend beyond this run's own (None: no budget).
    _budget_left: Callable[[], Awaitable[int | None]] | None = None

    @property
    def attempt(self) -> int:
        return self.task.attempts

    @property
    def spent(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    async def ensure_budget(self, upcoming: int) -> None:
        """Fail the run (``quota_exceeded``, retryable) if spending ``upcoming`` more
        tokens would take the user past ``tasks.daily_token_budget``. Called before a
        run's next requests, so use never passes the budget by more than a request."""
        if self._budget_left is None:
            return
        left = await self._budget_left()
        if left is not None and self.spent + upcoming > left:
            raise TaskError(
                "quota_exceeded",
                f"today's token budget does not cover the rest of this task (about {upcoming}"
                " more tokens); retry it tomorrow or when other tasks have finished",
                retryable=True,
            )

    async def progress(self, delta: str) -> None:
        """Publish a ``task_progress`` delta (indexes restart at 0 with each attempt)."""
        self._bus.publish(
            self.task.user_id,
            "task_progress",
            {
                "task_id": self.task.id,
                "task_type": self.task.task_type,
                "attempt": self.attempt,
                "index": self._index,
                "delta": delta,
            },
        )
        self._index += 1

    def record_usage(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        self.model = model
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens

    def on_complete(self, fn: Callable[[Tx, dict[str, Any]], None]) -> None:
        """Run ``fn(tx, result)`` in the transaction that marks the task completed
        (e.g. to store an analysis on its article atomically with the result)."""
        self._on_complete.append(fn)

    def then_submit(self, task_type: str, submission: Submission) -> None:
        """Submit a task of ``task_type`` for this task's user in the transaction that
        marks this one completed (after the ``on_complete`` functions ran)."""
        self._follow_ups.append((task_type, submission))


class ReadyQueue:
    """Pending task ids: priority first, then round-robin over users, FIFO per user.
    An id is in it once; one taken out by :meth:`discard` (another process started
    it) is skipped when its turn comes."""

    def __init__(self) -> None:
        self._levels: dict[int, OrderedDict[str, deque[str]]] = {}
        self._ids: set[str] = set()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, task_id: str) -> bool:
        return task_id in self._ids

    def push(self, task: Task | QueuedTask) -> None:
        if task.id in self._ids:
            return
        self._ids.add(task.id)
        users = self._levels.setdefault(task.priority, OrderedDict())
        users.setdefault(task.user_id, deque()).append(task.id)

    def discard(self, task_id: str) -> None:
        self._ids.discard(task_id)

    def pop(self) -> str | None:
        while self._levels:
            priority = max(self._levels)
            users = self._levels[priority]
            user_id, ids = next(iter(users.items()))
            task_id = ids.popleft()
            if ids:
                users.move_to_end(user_id)
            else:
                del users[user_id]
                if not users:
                    del self._levels[priority]
            if task_id in self._ids:
                self._ids.remove(task_id)
                return task_id
        return None

    def depth_by_priority(self) -> dict[int, int]:
        return {
            p: sum(1 for ids in users.values() for i in ids if i in self._ids) for p, users in self._levels.items()
        }


_CHANGE_LEVELS = {"task_queued": logging.DEBUG}


def _log_change(event: str, task: Task) -> None:
    """One line per lifecycle change, naming the task (``task_id``) and what changed."""
    what = event.removeprefix("task_")
    extra: dict[str, Any] = {"task_id": task.id, "task_type": task.task_type}
    if what == "submitted":
        extra["priority"] = task.priority
    elif what == "started":
        extra["attempt"] = task.attempts
    if what == "failed" and task.error:
        extra["error_code"] = task.error.get("code")
    log.log(_CHANGE_LEVELS.get(event, logging.INFO), "task %s", what, extra=extra)


def _uncancel() -> None:
    """The current run's cancellation was handled: it ends normally."""
    current = asyncio.current_task()
    if current is not None:
        current.uncancel()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def input_hash(task_type: TaskType, model: str, payload: Mapping[str, Any]) -> str:
    """The dedup key: task type, model, prompt version and canonical input."""
    material = canonical_json(
        {
            "task_type": task_type.name,
            "model": model,
            "prompt_version": task_type.prompt_version,
            "input": payload,
        }
    )
    return "sha256:" + hashlib.sha256(material.encode()).hexdigest()


class _SlotClaim:
    """One of the engine's run slots, taken on the loop for a submit whose task may
    start in the submit's own transaction. A run that starts on it takes it over;
    otherwise it goes back once the submit's write has ended, whichever way."""

    def __init__(self, slots: asyncio.Semaphore, in_flight: set[_SlotClaim]) -> None:
        self._slots = slots
        self._in_flight = in_flight
        self._held = False
        #: Set once the submit's write has ended (and its run, if any, was launched).
        self.settled = asyncio.Event()

    async def take(self) -> None:
        await self._slots.acquire()  # free (checked just before): returns at once
        self._held = True
        self._in_flight.add(self)

    def taken(self) -> None:
        """A run holds the slot now (and releases it when it ends)."""
        self._held = False

    def settle(self) -> None:
        if self._held:
            self._held = False
            self._slots.release()
        self._in_flight.discard(self)
        self.settled.set()


class Engine:
    def __init__(
        self,
        store: Store,
        bus: EventBus,
        settings: TaskSettings,
        task_types: Mapping[str, TaskType],
        *,
        llm: LLMClient | None = None,
        model: str = "",
        supervisor: Supervisor | None = None,
        shape: Callable[[Tx, str, str, dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self._store = store
        #: ``shape(tx, user_id, task_type, payload)``: the payload with what else shapes
        #: the task's prompt (the reader's settings), read in the submit's transaction.
        self._shape = shape
        self._supervisor = supervisor or Supervisor()
        self._bus = bus
        self.settings = settings
        self.task_types = dict(task_types)
        self._llm = llm
        #: The model name that goes into every input hash.
        self.model = model
        self._ready = ReadyQueue()
        #: This process's name on the leases of the tasks it runs (new at each start).
        self.owner = uuid.uuid4().hex
        #: Whether other processes share the queue (PostgreSQL): leases are renewed and
        #: expired ones taken back, queued and started tasks are announced, cancels relayed.
        self._shared = store.channels.shared
        #: Runs stopped because their lease was lost (another process may run them now).
        self._lease_lost: set[str] = set()
        #: Tasks other processes claimed lately, when (loop time), oldest first (see :meth:`_announced`).
        self._claimed_elsewhere: OrderedDict[str, float] = OrderedDict()
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        #: Slots taken by submits whose write has not ended yet (see :meth:`_claim_slot`).
        self._claims: set[_SlotClaim] = set()
        self._running: dict[str, asyncio.Task[None]] = {}
        #: Runs in ``_running`` that gave their slot on and wait for their outcome's commit.
        self._handed_over = 0
        #: The contexts of running tasks: what each has spent so far (not yet in usage).
        self._contexts: dict[str, TaskContext] = {}
        self._cancel_requested: set[str] = set()
        self._draining = asyncio.Event()
        self._accepting = False
        self._main: asyncio.Task[None] | None = None
        #: The task group the runs are children of (set while the engine runs).
        self._group: asyncio.TaskGroup | None = None
        self._grace = 0.0
        #: Told (event name, task) after each lifecycle change commits: metrics, the batch runner.
        self._observers: list[Callable[[str, Task], None]] = []

    # -- life cycle ---------------------------------------------------------

    async def start(self) -> None:
        """Requeue what a previous process left unfinished, then start dispatching.

        Alone on its database (SQLite) every running task was left by a dead process;
        sharing it (PostgreSQL), only those whose lease ran out were."""
        if self._shared:
            channels = self._store.channels
            channels.listen(TASKS, self._announced)
            channels.listen(CANCEL, self._cancel_asked)
            channels.on_reconnect(lambda: self._supervisor.start(
                self._load_pending(), name="engine-reload", until_stopped=False))
        interrupted = await self._store.write(functools.partial(self._requeue_expired, now=utcnow() if self._shared else None))
        pending = await self._load_pending()
        if pending:
            log.info("recovered %d unfinished tasks (%d were interrupted)", pending, interrupted)
        self._accepting = True
        self._main = self._supervisor.start(self._run_all(), name="engine")

    async def _load_pending(self) -> int:
        """Queue every pending task (the ones queued already or running here aside)."""
        pending = await self._store.read.pending_tasks()
        for start in range(0, len(pending), RECOVERY_BATCH):
            for task in pending[start : start + RECOVERY_BATCH]:
                if task.id not in self._running:
                    self._ready.push(task)
            await asyncio.sleep(0)  # 10,000 pushes in one go held the loop ~10 ms
        if pending:
            self._wakeup.set()
        return len(pending)

    def _requeue_expired(self, tx: Tx, now: str | None) -> int:
        """Running tasks whose lease ended before ``now`` (None: every running task)
        back to pending, announced as queued again."""
        expired = tx.requeue_expired(now)
        for task in expired:
            self._publish(tx, "task_queued", task, reason="interrupted")
            self._queue(tx, task)
        return len(expired)

    async def _keep_leases(self) -> None:
        """Renew the leases of this process's running tasks every third of
        ``tasks.lease``, stop the runs whose lease was lost, and take back other
        processes' tasks whose lease ran out."""
        every = self.settings.lease / 3
        while True:
            await asyncio.sleep(every)
            try:
                await self._renew_leases()
                await self._store.write(functools.partial(self._requeue_expired, now=utcnow()))
            except STORAGE_UNAVAILABLE as exc:
                log.warning("could not renew task leases (%s); trying again in %gs", exc, every)

    async def _renew_leases(self) -> None:
        running = list(self._running)
        if not running:
            return
        until = self._lease_until()
        kept = await self._store.write(lambda tx: tx.renew_leases(self.owner, running, until))
        for task_id in running:
            run = self._running.get(task_id)
            if task_id not in kept and run is not None:
                log.warning("lost the lease of a running task; stopping it here", extra={"task_id": task_id})
                self._lease_lost.add(task_id)
                run.cancel()

    def _lease_until(self) -> str:
        return format_time(datetime.now(UTC) + timedelta(seconds=self.settings.lease))

    def _queue(self, tx: Tx, task: Task) -> None:
        """Queue a task that became pending in ``tx``, here and (announced) everywhere."""
        tx.after_commit(lambda: self._enqueue(task))
        tx.notify(TASKS, f"{self.owner} {task.id} {task.priority} {task.user_id}")

    def _announced(self, payload: str) -> None:
        """A task another process queued, or (``claimed <owner> <id>``) started. One
        queued elsewhere joins this queue :data:`CLAIM_COURTESY` seconds later, unless
        its process (which queued it at once) claimed it meanwhile: otherwise, with
        room everywhere, every process would try to start every task."""
        sender, task_id, *rest = payload.split(" ")
        if sender == "claimed":
            claimer, task_id = task_id, rest[0]
            if claimer == self.owner:
                return
            if task_id in self._ready:
                self._ready.discard(task_id)
            else:  # claimed before it joined this queue (or not announced here)
                self._claimed_elsewhere[task_id] = asyncio.get_running_loop().time()
                if len(self._claimed_elsewhere) > CLAIMS_REMEMBERED:
                    self._claimed_elsewhere.popitem(last=False)
        elif sender != self.owner and not self._draining.is_set():
            priority, user_id = rest
            queued = QueuedTask(task_id, user_id, int(priority))
            asyncio.get_running_loop().call_later(CLAIM_COURTESY, self._join, queued)

    def _join(self, task: QueuedTask) -> None:
        claimed_at = self._claimed_elsewhere.pop(task.id, None)
        if claimed_at is not None and asyncio.get_running_loop().time() - claimed_at < 2 * CLAIM_COURTESY:
            return  # claimed after this announcement, not before an earlier one
        if task.id not in self._running and not self._draining.is_set():
            self._enqueue(task)

    def _cancel_asked(self, task_id: str) -> None:
        run = self._running.get(task_id)
        if run is not None:
            self._cancel_requested.add(task_id)
            run.cancel()

    async def drain(self, grace: float) -> None:
        """Stop taking submits and starting tasks; give running ones ``grace`` seconds,
        then cancel them back to pending (their run not counted)."""
        self._accepting = False
        self._grace = grace
        self._draining.set()
        if self._main is not None:
            # Waited for, not awaited: an engine that died was reported by the supervisor.
            await asyncio.wait([self._main])
            self._main = None

    @property
    def accepting(self) -> bool:
        return self._accepting

    @property
    def bus(self) -> EventBus:
        """Where the engine publishes: callers that save more in a submit's transaction
        publish their own events there."""
        return self._bus

    def status(self) -> dict[str, Any]:
        return {
            "accepting": self._accepting,
            "running": len(self._running) - self._handed_over,
            "ready": len(self._ready),
            "ready_by_priority": self._ready.depth_by_priority(),
        }

    async def _run_all(self) -> None:
        async with asyncio.TaskGroup() as group:
            self._group = group
            dispatcher = group.create_task(self._dispatch(), name="dispatcher")
            leases = group.create_task(self._keep_leases(), name="leases") if self._shared else None
            await self._draining.wait()
            dispatcher.cancel()
            # Submits written meanwhile may start their tasks at their commit: those
            # runs are drained like the others.
            for claim in list(self._claims):
                await claim.settled.wait()
            running = list(self._running.values())
            if running:
                _, late = await asyncio.wait(running, timeout=self._grace)
                for run in late:
                    run.cancel()
                if late:
                    await asyncio.wait(late)  # each puts its task back, under its lease
            if leases is not None:
                leases.cancel()

    async def _dispatch(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                while not self._ready:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                if self._llm is not None:
                    await self._llm.wait_available()
                task_id = self._ready.pop()
            except BaseException:
                self._slots.release()
                raise
            assert task_id is not None
            self._launch(task_id)

    def _launch(self, task_id: str, started: Task | None = None) -> None:
        """Run ``task_id`` on a slot taken for it; its start is queued at once, unless
        it is ``started`` already (in its submit's transaction)."""
        assert self._group is not None
        if started is None:
            starting = self._start(task_id)
        else:
            starting = asyncio.get_running_loop().create_future()
            starting.set_result(started)
        self._running[task_id] = self._group.create_task(self._run(task_id, starting), name=f"task-{task_id}")

    def _claim_slot(self) -> _SlotClaim | None:
        """A slot for a submit's task to start in the submit's own transaction (one
        commit before its run instead of two), when one is free and nothing waits for
        it: no task ready here, the engine not draining, the provider available. Not
        when other processes share the queue: their announcements and claims stay as
        they are."""
        if self._shared or self._group is None or self._ready or self._slots.locked() or not self._may_start():
            return None
        return _SlotClaim(self._slots, self._claims)

    def _may_start(self) -> bool:
        """Whether a task may start now without the dispatcher: not while draining or
        while the provider is unavailable (the dispatcher waits for it then)."""
        return not self._draining.is_set() and (self._llm is None or self._llm.available())

    def _run_started(self, task: Task | None, claim: _SlotClaim) -> None:
        """After the commit of a submit that started its task: run it on the claimed
        slot (a drain that began meanwhile waits for this, see :meth:`_run_all`)."""
        if task is None:  # failed at its start, in the same commit
            return
        claim.taken()
        self._launch(task.id, started=task)

    def _pass_slot(self) -> bool:
        """Give the slot of a run whose outcome was just queued to the next ready task.

        Its start is queued right behind that outcome, so both commit together (or the
        start after): the next run waits for one commit instead of two in a row, the
        outcome's and then its own. False when no task may start now (none ready, the
        engine draining, the provider unavailable): the run frees its slot as usual.
        """
        if not self._ready or not self._may_start():
            return False
        task_id = self._ready.pop()
        assert task_id is not None
        self._launch(task_id)
        return True

    def _enqueue(self, task: Task | QueuedTask) -> None:
        self._ready.push(task)
        self._wakeup.set()

    def observe(self, observer: Callable[[str, Task], None]) -> None:
        """Call ``observer(event, task)`` after each lifecycle change commits."""
        self._observers.append(observer)

    def _changed(self, event: str, task: Task) -> None:
        _log_change(event, task)
        for observer in self._observers:
            observer(event, task)

    # -- submit / cancel / retry ---------------------------------------------

    async def submit(
        self,
        user_id: str,
        task_type: str,
        payload: dict[str, Any],
        *,
        preview: str,
        priority: int | None = None,
        idempotency_key: str | None = None,
        article_id: str | None = None,
        privileged: bool = False,
    ) -> SubmitOutcome:
        fixed = Submission(payload, preview, article_id)

        def prepare(tx: Tx) -> Submission:
            return fixed

        return await self.submit_prepared(
            user_id,
            task_type,
            prepare,
            priority=priority,
            idempotency_key=idempotency_key,
            privileged=privileged,
        )

    def effective_priority(self, task_type: str, priority: int | None, *, privileged: bool) -> int:
        """The type's default, or the requested one: lower only, unless ``privileged``
        (an administrator), so no user can push everyone else's work back."""
        default = self.task_types[task_type].priority
        if priority is None:
            return default
        return priority if privileged else min(priority, default)

    async def submit_prepared(
        self,
        user_id: str,
        task_type: str,
        prepare: Callable[[Tx], Submission],
        *,
        priority: int | None = None,
        idempotency_key: str | None = None,
        privileged: bool = False,
    ) -> SubmitOutcome:
        """Submit what ``prepare(tx)`` returns, in the same write transaction as
        whatever ``prepare`` wrote: a refused submit (any error) keeps none of it."""
        if not self._accepting:
            raise ShuttingDown("the server is shutting down; submit again shortly")
        kind = self.task_types[task_type]
        rank = self.effective_priority(task_type, priority, privileged=privileged)
        now = datetime.now(UTC)
        claim = self._claim_slot()
        if claim is not None:
            await claim.take()

        def answer(tx: Tx, spec: Submission, digest: str) -> SubmitOutcome:
            return self._answer(tx, user_id, kind, spec, digest, rank, now, start=claim)

        def job(tx: Tx) -> SubmitOutcome:
            asked = prepare(tx)
            spec = self._shaped(tx, user_id, kind, asked)
            digest = input_hash(kind, self.model, spec.payload)
            if idempotency_key is None:
                return answer(tx, spec, digest)
            # The key stands for the request as sent: a setting changed since does not
            # make its retry a different request.
            request_digest = digest if spec is asked else input_hash(kind, self.model, asked.payload)
            earlier = tx.idempotency_key(user_id, idempotency_key)
            if earlier is not None:
                first_hash, task = earlier
                if first_hash != request_digest:
                    raise Conflict("this Idempotency-Key was used with a different request")
                return SubmitOutcome(task, created=False, deduplicated=False)
            outcome = answer(tx, spec, digest)
            tx.record_idempotency_key(user_id, idempotency_key, request_digest, outcome.task.id, format_time(now))
            return outcome

        outcome = await self._store.write(job, settled=claim.settle if claim is not None else None)
        if outcome.created:
            self._changed("submitted", outcome.task)
        elif outcome.deduplicated:
            self._changed("deduplicated", outcome.task)
        return outcome

    def _shaped(self, tx: Tx, user_id: str, kind: TaskType, spec: Submission) -> Submission:
        """``spec`` itself when nothing shapes its prompt."""
        if self._shape is None:
            return spec
        payload = self._shape(tx, user_id, kind.name, spec.payload)
        return spec if payload is spec.payload else replace(spec, payload=payload)

    def _answer(
        self,
        tx: Tx,
        user_id: str,
        kind: TaskType,
        spec: Submission,
        digest: str,
        rank: int,
        now: datetime,
        batch_id: str | None = None,
        *,
        start: _SlotClaim | None = None,
    ) -> SubmitOutcome:
        """Within a write: an earlier task's result, the identical unfinished task, or a
        new task once admitted (raising when it is not); a new one started at once on
        the ``start`` slot, or queued."""
        created_at = format_time(now)
        if self.settings.result_ttl:
            since = format_time(now - timedelta(seconds=self.settings.result_ttl))
            done = tx.completed_task(user_id, digest, since)
            if done is not None:
                return SubmitOutcome(done, created=False, deduplicated=True)
        active = tx.active_task(user_id, digest)
        if active is not None:
            return SubmitOutcome(active, created=False, deduplicated=False)
        estimate = 0 if kind.estimate is None else kind.estimate(tx, spec.payload)
        self._check_admission(tx, user_id, created_at[:10], estimate)
        fresh = NewTask(
            id=new_id(),
            user_id=user_id,
            task_type=kind.name,
            priority=rank,
            input=spec.payload,
            input_hash=digest,
            article_id=spec.article_id,
            metadata={"preview": spec.preview[:50]},
            created_at=created_at,
            reserved_tokens=estimate,
            batch_id=batch_id,
        )
        task = tx.insert_task(fresh)
        if task is None:
            raise Conflict("an identical task was created meanwhile")
        self._publish(tx, "task_queued", task)
        if start is None:
            self._queue(tx, task)
        else:
            started = self._begin(tx, task.id, created_at)
            tx.after_commit(lambda: self._run_started(started, start))
        return SubmitOutcome(task, created=True, deduplicated=False)

    def submit_in(
        self,
        tx: Tx,
        user_id: str,
        task_type: str,
        spec: Submission,
        *,
        priority: int | None = None,
        batch_id: str | None = None,
    ) -> SubmitOutcome:
        """Submit within a write job that writes more (a completing run's follow-up, an
        imported article's fetch): refused as any submit is (raising), and then the
        job's failure keeps none of what it wrote. ``priority`` as given (bulk work
        asks for less than its type's default); ``batch_id``: the batch submitting it."""
        kind = self.task_types[task_type]
        spec = self._shaped(tx, user_id, kind, spec)
        digest = input_hash(kind, self.model, spec.payload)
        rank = kind.priority if priority is None else priority
        outcome = self._answer(tx, user_id, kind, spec, digest, rank, datetime.now(UTC), batch_id)
        if outcome.created:
            tx.after_commit(lambda: self._changed("submitted", outcome.task))
        return outcome

    def _submit_follow_up(self, tx: Tx, user_id: str, task_type: str, spec: Submission) -> None:
        """Submit a task a completing run asked for, in its completing transaction. A
        refused one (too many pending, the token budget) is logged and left out: the
        run's own result stands, and the user can ask for the follow-up again. One about
        an article deleted meanwhile is left out too."""
        if spec.article_id is not None and tx.article_tokens(spec.article_id) is None:
            return
        try:
            self.submit_in(tx, user_id, task_type, spec)
        except (TooManyPending, QuotaExceeded) as exc:
            log.warning("follow-up %s not submitted: %s", task_type, exc.message, extra={"error_code": exc.code})

    def _budget_left(
        self, tx: Tx, user_id: str, today: str, *, excluding: str | None = None
    ) -> int | None:
        """What is left of the user's ``tasks.daily_token_budget`` today: the budget less
        the tokens used and those reserved by unfinished tasks (each counted at no less
        than it has spent so far), ``excluding`` one of them; None without a budget."""
        budget = self.settings.daily_token_budget
        if not budget:
            return None
        used = tx.tokens_used(user_id, today)
        held = 0
        for task_id, reserved in tx.unfinished_reservations(user_id).items():
            if task_id != excluding:
                running = self._contexts.get(task_id)
                held += max(reserved, running.spent if running else 0)
        return budget - used - held

    def _check_admission(self, tx: Tx, user_id: str, today: str, estimate: int) -> None:
        if tx.count_unfinished(user_id) >= self.settings.max_pending_per_user:
            raise TooManyPending(
                f"you already have {self.settings.max_pending_per_user} unfinished tasks"
            )
        left = self._budget_left(tx, user_id, today)
        if left is not None and (left <= 0 or estimate > left):
            raise QuotaExceeded(
                f"this task may need about {estimate} tokens and {max(left, 0)} of today's"
                f" budget of {self.settings.daily_token_budget} are left"
                " (tokens used plus those reserved by unfinished tasks)"
            )

    async def cancel(self, user_id: str, task_id: str) -> Task:
        task = await self._store.read.task(task_id, user_id)
        if task is None:
            raise NotFound("no such task")
        if task.status is TaskStatus.PENDING:
            cancelled = await self._finish(
                task, TaskStatus.CANCELLED, "task_cancelled", from_statuses=("pending",)
            )
            if cancelled is not None:
                return cancelled
        run = self._running.get(task_id)
        if run is not None:
            self._cancel_requested.add(task_id)
            run.cancel()
            await asyncio.wait([run], timeout=CANCEL_WAIT)
        elif self._shared and task.status is TaskStatus.RUNNING:
            # Running in another process: it stops the run when told, and its end
            # reaches this process as an event.
            ended = self._bus.ended(task_id)
            try:
                await self._store.write(lambda tx: tx.notify(CANCEL, task_id))
                await asyncio.wait([ended], timeout=CANCEL_WAIT)
            finally:
                ended.cancel()
        current = await self._store.read.task(task_id, user_id)
        assert current is not None
        if current.status is not TaskStatus.CANCELLED:
            raise Conflict(f"a {current.status.value} task cannot be cancelled")
        return current

    async def cancel_each(self, user_id: str, task_ids: list[str]) -> None:
        """Cancel each of the user's tasks still unfinished (one that ended or went
        meanwhile is left as it is)."""
        for task_id in task_ids:
            with contextlib.suppress(NotFound, Conflict):
                await self.cancel(user_id, task_id)

    async def retry(self, user_id: str, task_id: str) -> Task:
        if not self._accepting:
            raise ShuttingDown("the server is shutting down; retry again shortly")
        today = utcnow()[:10]

        def job(tx: Tx) -> Task:
            existing = tx.task(task_id, user_id)
            if existing is None:
                raise NotFound("no such task")
            if existing.status not in (TaskStatus.FAILED, TaskStatus.CANCELLED):
                raise Conflict(f"a {existing.status.value} task cannot be retried")
            self._check_admission(tx, user_id, today, existing.reserved_tokens)
            task = tx.retry_task(task_id, user_id)
            if task is None:
                raise Conflict("the task can no longer be retried (an identical task is unfinished)")
            self._publish(tx, "task_queued", task)
            self._queue(tx, task)
            return task

        return await self._store.write(job)

    # -- running ------------------------------------------------------------

    def _publish(self, tx: Tx, event: str, task: Task, **extra: Any) -> None:
        data: dict[str, Any] = {
            "task_id": task.id,
            "task_type": task.task_type,
            "metadata": task.metadata,
            **extra,
        }
        self._bus.publish(task.user_id, event, data, tx=tx)
        tx.after_commit(lambda: self._changed(event, task))

    def _finish(
        self,
        task: Task,
        status: TaskStatus,
        event: str,
        *,
        ctx: TaskContext | None = None,
        result: dict[str, Any] | None = None,
        error: TaskError | None = None,
        from_statuses: tuple[str, ...] = ("running",),
    ) -> Awaitable[Task | None]:
        """Queue the task's end (see :meth:`Store.write`)."""
        now = utcnow()

        def job(tx: Tx) -> Task | None:
            done = tx.finish_task(
                task.id,
                status,
                now,
                result=result,
                error=None if error is None else error.as_dict(),
                model=ctx.model if ctx else None,
                prompt_tokens=ctx.prompt_tokens if ctx else 0,
                completion_tokens=ctx.completion_tokens if ctx else 0,
                from_statuses=from_statuses,
                owner=self.owner,
            )
            if done is None:
                return None
            if ctx is not None and ctx.model is not None:
                tx.add_usage(
                    task.user_id, now[:10], ctx.model, ctx.prompt_tokens, ctx.completion_tokens
                )
            if status is TaskStatus.COMPLETED and ctx is not None:
                assert result is not None
                for fn in ctx._on_complete:
                    fn(tx, result)
                for task_type, spec in ctx._follow_ups:
                    self._submit_follow_up(tx, task.user_id, task_type, spec)
            if status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
                self._unfinished(tx, done)
            extra: dict[str, Any] = {}
            if status is TaskStatus.COMPLETED:
                extra["result"] = result
            elif status is TaskStatus.FAILED:
                assert error is not None
                extra["error"] = error.as_dict()
            self._publish(tx, event, done, **extra)
            return done

        return self._store.write(job)

    def _start(self, task_id: str) -> Awaitable[Task | None]:
        """Queue the task's start (:meth:`_begin`)."""
        now = utcnow()
        return self._store.write(lambda tx: self._begin(tx, task_id, now))

    def _begin(self, tx: Tx, task_id: str, now: str) -> Task | None:
        """Within a write: pending → running (publishing task_started), or failed when
        its runs are spent or today's token budget no longer covers its reservation
        (then None, as when it is no longer pending)."""
        task = tx.claim_task(task_id)
        if task is None:
            return None  # cancelled, deleted, or started by another process meanwhile
        limit = self.settings.max_attempts
        if task.attempts - task.attempts_excused >= limit:
            error = TaskError(
                "too_many_attempts",
                f"the task was interrupted {limit} times without finishing; retry it to run again",
            )
            return self._fail_pending(tx, task_id, now, error)
        left = self._budget_left(tx, task.user_id, now[:10], excluding=task_id)
        if left is not None and task.reserved_tokens > left:
            error = TaskError(
                "quota_exceeded",
                f"today's token budget no longer covers this task (about {task.reserved_tokens}"
                f" tokens, {max(left, 0)} left); retry it tomorrow or when other tasks have finished",
                retryable=True,
            )
            return self._fail_pending(tx, task_id, now, error)
        started = tx.start_task(task_id, now, self.owner, self._lease_until())
        assert started is not None
        tx.notify(TASKS, f"claimed {self.owner} {task_id}")
        self._publish(tx, "task_started", started, attempt=started.attempts)
        return started

    def _fail_pending(self, tx: Tx, task_id: str, now: str, error: TaskError) -> None:
        failed = tx.finish_task(
            task_id, TaskStatus.FAILED, now, error=error.as_dict(), from_statuses=("pending",)
        )
        assert failed is not None
        self._unfinished(tx, failed)
        self._publish(tx, "task_failed", failed, error=error.as_dict())

    def _unfinished(self, tx: Tx, task: Task) -> None:
        kind = self.task_types.get(task.task_type)
        if kind is not None and kind.on_unfinished is not None:
            kind.on_unfinished(tx, task)

    def _requeue(self, task: Task, *, reason: str) -> Awaitable[None]:
        def job(tx: Tx) -> None:
            again = tx.requeue_task(task.id, self.owner, excuse=True)
            if again is not None:
                self._publish(tx, "task_queued", again, reason=reason)
                self._queue(tx, again)

        return self._store.write(job)

    async def _run(self, task_id: str, starting: Awaitable[Task | None]) -> None:
        # Every line logged during the run names the task. The run is an asyncio task
        # of its own (a copy of the launcher's context), so the setting ends with it.
        task_id_context.set(task_id)
        task: Task | None = None
        slot_passed = False
        try:
            task = await starting
            if task is None:
                return
            kind = self.task_types.get(task.task_type)
            if kind is None:
                await self._finish(
                    task, TaskStatus.FAILED, "task_failed",
                    error=TaskError("unknown_task_type", f"no task type {task.task_type!r} here"),
                )
                return
            ctx = TaskContext(task=task, store=self._store, llm=self._llm, _bus=self._bus)
            user_id = task.user_id

            async def budget_left() -> int | None:
                # Read in a write job: the reservations it sums are the ones admission sees.
                return await self._store.write(
                    lambda tx: self._budget_left(tx, user_id, utcnow()[:10], excluding=task_id)
                )

            ctx._budget_left = budget_left
            self._contexts[task_id] = ctx
            outcome: Awaitable[object]
            try:
                async with asyncio.timeout(self.settings.timeout):
                    result = await kind.run(ctx)
            except TaskError as exc:
                outcome = self._finish(task, TaskStatus.FAILED, "task_failed", ctx=ctx, error=exc)
            except TaskDeferred:
                outcome = self._requeue(task, reason="deferred")
            except TimeoutError:
                error = TaskError(
                    "timeout", f"the task took longer than {self.settings.timeout:g} s", retryable=True
                )
                outcome = self._finish(task, TaskStatus.FAILED, "task_failed", ctx=ctx, error=error)
            except Exception:
                log.exception("task %s (%s) crashed", task.id, task.task_type)
                error = TaskError("internal_error", "the task failed unexpectedly", retryable=True)
                outcome = self._finish(task, TaskStatus.FAILED, "task_failed", ctx=ctx, error=error)
            else:
                outcome = self._finish(task, TaskStatus.COMPLETED, "task_completed", ctx=ctx, result=result)
            slot_passed = self._pass_slot()
            if slot_passed:
                self._handed_over += 1
            await outcome
        except asyncio.CancelledError:
            if task_id in self._lease_lost:
                # Another process may run it now: nothing of this run is recorded.
                self._lease_lost.discard(task_id)
                _uncancel()
                return
            await self._interrupted(task_id, task)
            if task_id not in self._cancel_requested:
                raise
            _uncancel()
        except Exception:
            # Recording the outcome failed (a full disk, a failing on_complete write).
            # Never let it reach the task group: that would stop the dispatcher and
            # cancel every other run, while submits were still being accepted.
            log.exception("task %s: its outcome could not be recorded", task_id)
            await self._fail_unrecorded(task_id)
        finally:
            self._cancel_requested.discard(task_id)
            self._contexts.pop(task_id, None)
            self._running.pop(task_id, None)
            if slot_passed:
                self._handed_over -= 1
            else:
                self._slots.release()

    async def _fail_unrecorded(self, task_id: str) -> None:
        """Best effort after a failed write: a running task is failed; a task whose start
        could not be written (still pending) is queued again after a pause."""
        error = TaskError("internal_error", "the task's outcome could not be stored", retryable=True)
        try:
            current = await self._store.read.task(task_id)
            if current is not None and current.status is TaskStatus.RUNNING:
                await self._finish(current, TaskStatus.FAILED, "task_failed", error=error)
            elif current is not None and current.status is TaskStatus.PENDING:
                asyncio.get_running_loop().call_later(RETRY_START_AFTER, self._enqueue, current)
        except Exception:
            log.exception("task %s: its failure could not be recorded either", task_id)

    async def _interrupted(self, task_id: str, task: Task | None) -> None:
        """A run was cancelled: by its user (→ cancelled) or by shutdown (→ pending)."""
        current = task or await self._store.read.task(task_id)
        if current is None:
            return
        if task_id in self._cancel_requested:
            await self._finish(
                current, TaskStatus.CANCELLED, "task_cancelled", from_statuses=("pending", "running")
            )
        else:
            await self._requeue(current, reason="shutdown")
