"""Task types and a submit route that exist only in tests, to drive the engine.

``python -m tests.support.server`` serves the product with these added. A test
controls a running task through ``/api/v1/test/...``: tasks of type ``gate``
wait until their gate is opened, so a test decides when they finish without
sleeping.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import threading
from dataclasses import dataclass, field
from typing import Any

from quart import Blueprint, Quart, request

from insightreader.api.deps import current_user, services
from insightreader.api.tasks import idempotency_key, submit_answer
from insightreader.engine import TaskContext, TaskType
from insightreader.errors import ShuttingDown, StorageFull, TaskError

_gates: dict[str, asyncio.Event] = {}
_holds: dict[str, _Hold] = {}
_stats: dict[str, Any] = {"current": 0, "max": 0, "started": []}
#: Group commit as the store reports it: committed batches and their sizes.
_commits: dict[str, int] = {"batches": 0, "jobs": 0, "largest": 0}


def _gate(name: str) -> asyncio.Event:
    return _gates.setdefault(name, asyncio.Event())


@dataclass
class _Hold:
    """Holds the writer's thread inside a write job (threading events: set across threads)."""

    entered: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)


def _hold(name: str) -> _Hold:
    return _holds.setdefault(name, _Hold())


async def _tracked(ctx: TaskContext, body: Any) -> dict[str, Any]:
    _stats["current"] += 1
    _stats["max"] = max(_stats["max"], _stats["current"])
    _stats["started"].append(ctx.task.id)
    try:
        return await body
    finally:
        _stats["current"] -= 1


async def run_echo(ctx: TaskContext) -> dict[str, Any]:
    async def body() -> dict[str, Any]:
        return {"echo": ctx.task.input, "attempt": ctx.attempt}

    return await _tracked(ctx, body())


async def run_gate(ctx: TaskContext) -> dict[str, Any]:
    async def body() -> dict[str, Any]:
        for delta in ctx.task.input.get("deltas", []):
            await ctx.progress(delta)
        await _gate(ctx.task.input["gate"]).wait()
        ctx.record_usage("test-model", 10, 5)
        return {"gate": ctx.task.input["gate"], "attempt": ctx.attempt}

    return await _tracked(ctx, body())


async def run_fail(ctx: TaskContext) -> dict[str, Any]:
    raise TaskError(ctx.task.input.get("code", "test_failure"), "failed on purpose", retryable=True)


async def run_flaky(ctx: TaskContext) -> dict[str, Any]:
    """Fails (retryable) on attempts before ``input["succeed_on"]`` (default 2), then completes."""

    async def body() -> dict[str, Any]:
        if ctx.attempt < ctx.task.input.get("succeed_on", 2):
            raise TaskError("flaky", f"failed on attempt {ctx.attempt}", retryable=True)
        return {"attempt": ctx.attempt}

    return await _tracked(ctx, body())


async def run_disk_full(ctx: TaskContext) -> dict[str, Any]:
    """Completes, but the transaction recording that fails as on a full disk."""

    async def body() -> dict[str, Any]:
        def full(tx: Any, result: dict[str, Any]) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        ctx.on_complete(full)
        return {"stored": False}

    return await _tracked(ctx, body())


async def run_bad_callback(ctx: TaskContext) -> dict[str, Any]:
    """Completes; an after-commit callback of the transaction recording that raises."""

    async def body() -> dict[str, Any]:
        def explode() -> None:
            raise RuntimeError("this after-commit callback fails on purpose")

        def register(tx: Any, result: dict[str, Any]) -> None:
            tx.after_commit(explode)

        ctx.on_complete(register)
        return {"callback": "fails"}

    return await _tracked(ctx, body())


async def run_held_outcome(ctx: TaskContext) -> dict[str, Any]:
    """Completes once its gate opens; the write recording that holds the writer's
    thread until the test releases ``input["hold"]`` (``/api/v1/test/holds/<name>``)."""

    async def body() -> dict[str, Any]:
        hold = _hold(ctx.task.input["hold"])
        await _gate(ctx.task.input["gate"]).wait()

        def wait(tx: Any, result: dict[str, Any]) -> None:
            hold.entered.set()
            if not hold.released.wait(timeout=30):
                raise AssertionError("the test never released the writer")

        ctx.on_complete(wait)
        return {"held": True}

    return await _tracked(ctx, body())


async def run_crash(ctx: TaskContext) -> dict[str, Any]:
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


TEST_TASK_TYPES = {
    t.name: t
    for t in (
        TaskType("echo", run_echo),
        TaskType("gate", run_gate),
        TaskType("fail", run_fail),
        TaskType("flaky", run_flaky),
        TaskType("disk_full", run_disk_full),
        TaskType("bad_callback", run_bad_callback),
        TaskType("held_outcome", run_held_outcome),
        TaskType("crash", run_crash),
    )
}

bp = Blueprint("testing", __name__, url_prefix="/api/v1/test")


@bp.post("/tasks/<task_type>")
async def submit(task_type: str) -> tuple[dict[str, Any], int]:
    body = await request.get_json()
    outcome = await services().engine.submit(
        current_user().id,
        task_type,
        body.get("input", {}),
        preview=str(body.get("input", ""))[:50],
        priority=body.get("priority"),
        idempotency_key=idempotency_key(),
        # A test seam for the dispatcher: priorities as given (the clamp for
        # non-administrators is tested through the product's routes).
        privileged=True,
    )
    return submit_answer(outcome)


@bp.post("/gates/<name>")
async def open_gate(name: str) -> dict[str, Any]:
    _gate(name).set()
    return {"opened": name}


@bp.get("/holds/<name>")
async def hold_state(name: str) -> dict[str, Any]:
    return {"entered": _hold(name).entered.is_set()}


@bp.post("/holds/<name>")
async def release_hold(name: str) -> dict[str, Any]:
    _hold(name).released.set()
    return {"released": name}


class Unforeseen(BaseException):
    """What no guard expects: ``except Exception`` does not catch it."""


@bp.post("/break/<part>")
async def break_part(part: str) -> tuple[dict[str, Any], int]:
    """Make one background part fail, as a bug would:

    - ``commit-observer``: the store's commit hook raises once (guarded: logged);
    - ``transaction``: a write job whose transaction SQLite ended by itself (as on a
      full disk or an I/O error) before the job failed (guarded: that job fails);
    - ``writer``: a write job raises :class:`Unforeseen` inside the writer (it dies);
    - ``dispatcher``: the dispatcher's next wait for the LLM raises (the engine dies).
    """
    svc = services()
    if part == "commit-observer":
        chained = svc.store.on_commit
        state = {"failed": False}

        def on_commit(jobs: int, seconds: float) -> None:
            if not state["failed"]:
                state["failed"] = True
                raise RuntimeError("this commit observer fails on purpose")
            if chained is not None:
                chained(jobs, seconds)

        svc.store.on_commit = on_commit
    elif part == "transaction":

        def lost(tx: Any) -> None:
            tx._conn.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")

        try:
            await svc.store.write(lost)
        except StorageFull:
            pass
        else:
            raise AssertionError("the job should have failed")
    elif part == "writer":

        def job(tx: Any) -> None:
            raise Unforeseen("the writer meets what nobody foresaw")

        try:
            await svc.store.write(job)
        except ShuttingDown:
            pass
    elif part == "dispatcher":

        async def wait_available() -> None:
            raise RuntimeError("the dispatcher fails on purpose")

        svc.llm.wait_available = wait_available  # type: ignore[method-assign]
    else:
        return {"error": {"code": "not_found", "message": f"no part {part!r}"}}, 404
    return {"broken": part}, 200


@bp.get("/stats")
async def stats() -> dict[str, Any]:
    return {
        "max_concurrent": _stats["max"],
        "current": _stats["current"],
        "started": _stats["started"],
        "running": sorted(name for name, gate in _gates.items() if not gate.is_set()),
        "commits": dict(_commits),
    }


def _count_commits(app: Quart) -> None:
    store = app.extensions["insightreader"].store
    chained = store.on_commit

    def on_commit(jobs: int, seconds: float) -> None:
        _commits["batches"] += 1
        _commits["jobs"] += jobs
        _commits["largest"] = max(_commits["largest"], jobs)
        if chained is not None:
            chained(jobs, seconds)

    store.on_commit = on_commit


def configure(app: Quart) -> None:
    app.register_blueprint(bp)
    _count_commits(app)
