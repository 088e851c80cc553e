"""The task engine through real HTTP against a real server process.

Tasks are the test-only types of ``tests/support/tasktypes.py``: ``echo``
completes at once, ``gate`` waits until the test opens its gate, ``fail``
always fails, ``flaky`` fails on its first attempt, ``disk_full`` completes
into a transaction that fails. ``/api/v1/test/stats``
reports which runs started, in what order, and how many ran at once.
Restarts, crashes, drain and backup are in ``test_recovery.py``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from insightreader.config import DatabaseSettings, TaskSettings
from insightreader.engine import Engine, TaskContext, TaskType
from insightreader.events import EventBus
from insightreader.records import TaskStatus, User, utcnow
from insightreader.store import Store, Tx
from tests.support import db
from tests.support.client import POLL, Api, register
from tests.support.process import ServerProcess

#: Every server test here runs on SQLite and on PostgreSQL (tests/conftest.py).
BOTH_DATABASES = True

Connect = Callable[[ServerProcess], httpx.AsyncClient]
StartServer = Callable[..., ServerProcess]


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


async def wait_until(check: Callable[[], Any], what: str, timeout: float = 20) -> None:
    """Poll the async ``check`` until it returns something true (bounded)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(POLL)


async def user_on(start_server: StartServer, connect: Connect, **sections: dict[str, Any]) -> Api:
    """A server with the given settings, and one registered user on it."""
    return await register(connect(start_server(**sections)))


# -- lifecycle and listing -----------------------------------------------------


async def test_submit_runs_to_completed_and_records_its_lifecycle(api: Api, tmp_path: Path, database_at: Path | str) -> None:
    response = await api.submit("echo", {"x": 1})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "pending"
    task_id = body["task_id"]

    task = await api.wait_status(task_id, "completed")
    assert task["task_type"] == "echo"
    assert task["result"] == {"echo": {"x": 1}, "attempt": 1}
    assert task["error"] is None
    assert task["attempts"] == 1
    assert task["input_hash"].startswith("sha256:")
    # ISO-8601 UTC strings with milliseconds sort like the moments they name.
    assert task["created_at"] <= task["started_at"] <= task["finished_at"]

    listed = (await api.get("/api/v1/tasks")).json()
    assert [t["task_id"] for t in listed["items"]] == [task_id]
    assert listed["items"][0] == task
    assert listed["next_cursor"] is None
    # Every transition was stored as a lifecycle event, in order (WAL: readable live).
    assert db.task_events(database_at)[task_id] == [
        "task_queued",
        "task_started",
        "task_completed",
    ]


async def test_a_failing_task_records_its_error(api: Api, tmp_path: Path, database_at: Path | str) -> None:
    task_id = await api.submit_id("fail", {"code": "boom"})
    task = await api.wait_status(task_id, "failed")
    assert task["error"] == {"code": "boom", "message": "failed on purpose", "retryable": True}
    assert task["result"] is None
    assert task["attempts"] == 1
    assert task["created_at"] <= task["started_at"] <= task["finished_at"]
    assert db.task_events(database_at)[task_id] == ["task_queued", "task_started", "task_failed"]


async def test_list_filters_and_cursor_pagination(api: Api) -> None:
    echoes = [await api.submit_id("echo", {"n": n}) for n in range(25)]
    failures = [await api.submit_id("fail", {"n": n}) for n in range(3)]
    for task_id in echoes:
        await api.wait_status(task_id, "completed")
    for task_id in failures:
        await api.wait_status(task_id, "failed")

    async def ids(**params: Any) -> list[str]:
        return [t["task_id"] for t in await api.all_tasks(**params)]

    assert await ids(task_type="echo") == echoes[::-1]  # newest first
    assert await ids(task_type="fail") == failures[::-1]
    assert await ids(status="failed") == failures[::-1]
    assert await ids(status="completed", task_type="echo") == echoes[::-1]
    assert await ids(status="completed", task_type="fail") == []
    assert await ids(status="pending") == []

    # limit=10 over 25: pages of 10, 10, 5, the last without a cursor. A task
    # submitted between pages does not shift them (the cursor is a position, not an offset).
    pages: list[list[str]] = []
    cursor: str | None = None
    for _ in range(10):
        params = {"task_type": "echo", "limit": 10, **({"cursor": cursor} if cursor else {})}
        response = await api.get("/api/v1/tasks", params=params)
        assert response.status_code == 200, response.text
        pages.append([t["task_id"] for t in response.json()["items"]])
        cursor = response.json()["next_cursor"]
        if len(pages) == 1:
            await api.wait_status(await api.submit_id("echo", {"n": "late"}), "completed")
        if cursor is None:
            break
    assert [len(p) for p in pages] == [10, 10, 5]
    assert sum(pages, []) == echoes[::-1]  # no duplicates, no gaps

    # A page that ends exactly at the last task has no next cursor (no empty extra page).
    response = await api.get("/api/v1/tasks", params={"task_type": "fail", "limit": 3})
    assert len(response.json()["items"]) == 3
    assert response.json()["next_cursor"] is None

    # limit is clamped to 1…100 (the upper clamp is shown in test_group_commit_…).
    for limit in (0, -5):
        response = await api.get("/api/v1/tasks", params={"limit": limit})
        assert response.status_code == 200, response.text
        assert len(response.json()["items"]) == 1
        assert response.json()["next_cursor"] is not None


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


async def test_bad_list_parameters_are_4xx_json(api: Api) -> None:
    await api.wait_status(await api.submit_id("echo", {}), "completed")
    bad = [
        {"cursor": "not-a-cursor!"},
        {"cursor": ""},
        {"cursor": "%%%"},
        {"cursor": base64.urlsafe_b64encode(b"s\xff\xfe").decode()},  # not UTF-8
        # well-formed base64 of a number SQLite cannot hold
        {"cursor": _b64("s" + "9" * 40)},
        {"cursor": _b64("t" + "9" * 40)},
        {"cursor": _b64("s-1")},
        {"cursor": _b64("s²")},
        {"limit": "ten"},
        {"status": "finished"},
    ]
    for params in bad:
        response = await api.get("/api/v1/tasks", params=params)
        assert 400 <= response.status_code < 500, (params, response.status_code, response.text)
        assert set(response.json()["error"]) >= {"code", "message"}, (params, response.text)


# -- dedup ----------------------------------------------------------------------


async def test_completed_duplicate_answers_at_once_without_running(api: Api) -> None:
    first = await api.submit_id("echo", {"text": "same"})
    done = await api.wait_status(first, "completed")
    runs = len((await api.stats())["started"])

    response = await api.submit("echo", {"text": "same"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "completed"
    assert body["deduplicated"] is True
    assert body["task_id"] == first
    assert body["result"] == done["result"]
    assert len((await api.stats())["started"]) == runs  # nothing ran again
    assert [t["task_id"] for t in await api.all_tasks()] == [first]

    # A different input is a different task.
    other = await api.submit_id("echo", {"text": "other"})
    assert other != first


async def test_duplicate_of_an_unfinished_task_joins_it(api: Api) -> None:
    running = await api.submit_id("gate", {"gate": "join"})
    await api.wait_status(running, "running")
    response = await api.submit("gate", {"gate": "join"})
    assert response.status_code == 202, response.text
    assert response.json()["task_id"] == running
    assert response.json()["status"] == "running"

    # Many identical submits at once: one task, every answer names it.
    answers = await asyncio.gather(*(api.submit("gate", {"gate": "burst"}) for _ in range(10)))
    assert {r.status_code for r in answers} == {202}
    assert len({r.json()["task_id"] for r in answers}) == 1
    burst = answers[0].json()["task_id"]
    assert {t["task_id"] for t in await api.all_tasks(task_type="gate")} == {running, burst}

    for gate, task_id in (("join", running), ("burst", burst)):
        await api.open_gate(gate)
        assert (await api.wait_status(task_id, "completed"))["attempts"] == 1
    started = (await api.stats())["started"]
    assert sorted(started) == sorted([running, burst])  # each ran once


async def test_idempotency_key(api: Api) -> None:
    key = {"Idempotency-Key": "order-1"}
    response = await api.submit("gate", {"gate": "idem"}, headers=key)
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]

    again = await api.submit("gate", {"gate": "idem"}, headers=key)
    assert again.status_code == 202, again.text
    assert again.json()["task_id"] == task_id

    assert_error(await api.submit("gate", {"gate": "something else"}, headers=key), 409, "conflict")
    assert_error(await api.submit("echo", {"gate": "idem"}, headers=key), 409, "conflict")

    await api.open_gate("idem")
    await api.wait_status(task_id, "completed")
    # After it finished the key still names the same task, now with its result.
    done = await api.submit("gate", {"gate": "idem"}, headers=key)
    assert done.status_code == 200, done.text
    assert done.json()["task_id"] == task_id
    assert done.json()["result"] == {"gate": "idem", "attempt": 1}
    assert_error(await api.submit("gate", {"gate": "changed"}, headers=key), 409, "conflict")

    # Another key with another body is another task.
    other = await api.submit_id("gate", {"gate": "idem-2"}, headers={"Idempotency-Key": "order-2"})
    assert other != task_id
    assert len(await api.all_tasks()) == 2
    await api.open_gate("idem-2")


async def test_idempotency_key_first_used_on_a_dedup_hit(api: Api) -> None:
    done = await api.submit_id("echo", {"text": "known"})
    await api.wait_status(done, "completed")
    key = {"Idempotency-Key": "order-9"}
    hit = await api.submit("echo", {"text": "known"}, headers=key)
    assert hit.status_code == 200, hit.text
    assert hit.json()["task_id"] == done
    assert_error(await api.submit("echo", {"text": "different"}, headers=key), 409, "conflict")


async def test_dedup_is_per_user(api: Api) -> None:
    alice = api
    bob = await register(api.http)
    first = await alice.submit_id("echo", {"text": "shared"})
    await alice.wait_status(first, "completed")
    running = await alice.submit_id("gate", {"gate": "shared"})
    await alice.wait_status(running, "running")
    keyed = await alice.submit_id("echo", {"k": 1}, headers={"Idempotency-Key": "shared-key"})

    # Bob's identical submits create his own tasks, which run.
    bobs = await bob.submit_id("echo", {"text": "shared"})
    assert bobs != first
    assert (await bob.wait_status(bobs, "completed"))["result"] == {"echo": {"text": "shared"}, "attempt": 1}
    bobs_gate = await bob.submit_id("gate", {"gate": "shared"})
    assert bobs_gate != running
    # The same Idempotency-Key with another body is no conflict for another user.
    bobs_keyed = await bob.submit_id("echo", {"k": 2}, headers={"Idempotency-Key": "shared-key"})
    assert bobs_keyed != keyed

    started = (await bob.stats())["started"]
    assert bobs in started
    assert [t["task_id"] for t in await bob.all_tasks()] == [bobs_keyed, bobs_gate, bobs]
    await api.open_gate("shared")
    await alice.wait_status(running, "completed")
    await bob.wait_status(bobs_gate, "completed")


# -- cancel and retry ----------------------------------------------------------------


async def test_cancel_pending_and_running(start_server: StartServer, connect: Connect, tmp_path: Path, database_at: Path | str) -> None:
    api = await user_on(start_server, connect, tasks={"max_concurrency": 1})
    blocker = await api.submit_id("gate", {"gate": "never"})
    await api.wait_status(blocker, "running")
    pending = await api.submit_id("echo", {"n": "pending"})
    later = await api.submit_id("echo", {"n": "later"})

    response = await api.post(f"/api/v1/tasks/{pending}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert response.json()["finished_at"] is not None
    assert response.json()["attempts"] == 0

    response = await api.post(f"/api/v1/tasks/{blocker}/cancel")
    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["attempts"] == 1
    assert cancelled["result"] is None

    # The slot it held is free: the next task runs; the cancelled pending one never does.
    done = await api.wait_status(later, "completed")
    stats = await api.stats()
    assert stats["started"] == [blocker, later]
    assert stats["running"] == ["never"]  # the blocker ended without its gate opening
    assert stats["current"] == 0
    assert (await api.task(pending))["status"] == "cancelled"

    # Cancelling a finished task is a conflict, except that cancelling a cancelled
    # one again answers like the first time (a retried POST does no harm).
    assert done["status"] == "completed"
    assert_error(await api.post(f"/api/v1/tasks/{later}/cancel"), 409, "conflict")
    for task_id in (pending, blocker):
        response = await api.post(f"/api/v1/tasks/{task_id}/cancel")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelled"

    events = db.task_events(database_at)
    assert events[pending] == ["task_queued", "task_cancelled"]
    assert events[blocker] == ["task_queued", "task_started", "task_cancelled"]
    assert events[later] == ["task_queued", "task_started", "task_completed"]


async def test_retry(api: Api) -> None:
    flaky = await api.submit_id("flaky", {"k": 1})
    failed = await api.wait_status(flaky, "failed")
    assert failed["attempts"] == 1
    assert failed["error"]["code"] == "flaky"

    response = await api.post(f"/api/v1/tasks/{flaky}/retry")
    assert response.status_code == 202, response.text
    assert response.json()["task_id"] == flaky
    assert response.json()["status"] == "pending"
    done = await api.wait_status(flaky, "completed")
    assert done["attempts"] == 2
    assert done["result"] == {"attempt": 2}
    assert done["error"] is None
    assert done["created_at"] == failed["created_at"]
    assert failed["finished_at"] <= done["started_at"] <= done["finished_at"]
    assert_error(await api.post(f"/api/v1/tasks/{flaky}/retry"), 409, "conflict")

    # A running (or pending) task cannot be retried; a cancelled one can.
    gate = await api.submit_id("gate", {"gate": "retry"})
    await api.wait_status(gate, "running")
    assert_error(await api.post(f"/api/v1/tasks/{gate}/retry"), 409, "conflict")
    assert (await api.post(f"/api/v1/tasks/{gate}/cancel")).json()["status"] == "cancelled"
    response = await api.post(f"/api/v1/tasks/{gate}/retry")
    assert response.status_code == 202, response.text
    await api.wait_status(gate, "running")
    await api.open_gate("retry")
    assert (await api.wait_status(gate, "completed"))["attempts"] == 2


async def test_retry_while_an_identical_task_is_unfinished_is_a_conflict(api: Api) -> None:
    old = await api.submit_id("gate", {"gate": "again"})
    await api.wait_status(old, "running")
    assert (await api.post(f"/api/v1/tasks/{old}/cancel")).json()["status"] == "cancelled"
    new = await api.submit_id("gate", {"gate": "again"})  # resubmitted: a new task
    assert new != old
    await api.wait_status(new, "running")

    assert_error(await api.post(f"/api/v1/tasks/{old}/retry"), 409, "conflict")
    assert (await api.task(old))["status"] == "cancelled"

    await api.open_gate("again")
    await api.wait_status(new, "completed")
    # Once the other one is finished, the old one can be retried: retry re-runs that
    # task, it is not a submit answered from the other one's result.
    response = await api.post(f"/api/v1/tasks/{old}/retry")
    assert response.status_code == 202, response.text
    assert (await api.wait_status(old, "completed"))["attempts"] == 2


async def test_other_users_tasks_are_not_found(api: Api) -> None:
    alice = api
    mallory = await register(api.http)
    running = await alice.submit_id("gate", {"gate": "private"})
    failed = await alice.submit_id("fail", {})
    await alice.wait_status(running, "running")
    await alice.wait_status(failed, "failed")

    for task_id in (running, failed, "no-such-task"):
        assert_error(await mallory.get(f"/api/v1/tasks/{task_id}"), 404, "not_found")
        assert_error(await mallory.post(f"/api/v1/tasks/{task_id}/cancel"), 404, "not_found")
        assert_error(await mallory.post(f"/api/v1/tasks/{task_id}/retry"), 404, "not_found")
    assert await mallory.all_tasks() == []
    # Nothing happened to them.
    assert (await alice.task(running))["status"] == "running"
    assert (await alice.task(failed))["status"] == "failed"
    await alice.open_gate("private")
    await alice.wait_status(running, "completed")


# -- scheduling ----------------------------------------------------------------------


async def test_priority_then_round_robin_across_users(start_server: StartServer, connect: Connect) -> None:
    server = start_server(tasks={"max_concurrency": 1})
    http = connect(server)
    alice, bob = await register(http), await register(http)
    blocker = await alice.submit_id("gate", {"gate": "slot"})
    await alice.wait_status(blocker, "running")

    # Alice queues a bulk import of 5, then Bob one task; then one urgent and one
    # low-priority task arrive last.
    imports = [await alice.submit_id("echo", {"article": n}) for n in range(5)]
    bobs = await bob.submit_id("echo", {"article": "bob"})
    urgent = await alice.submit_id("echo", {"urgent": True}, priority=5)
    low = await bob.submit_id("echo", {"low": True}, priority=-5)
    for task_id in (*imports, urgent):
        assert (await alice.task(task_id))["status"] == "pending"

    await alice.open_gate("slot")
    await bob.wait_status(low, "completed")
    started = (await alice.stats())["started"]
    # Highest priority first; within a priority users alternate (Bob's one task runs
    # second, not after Alice's whole import); each user's own tasks in order.
    assert started == [blocker, urgent, imports[0], bobs, *imports[1:], low]
    assert (await alice.task(urgent))["priority"] == 5
    assert (await bob.task(low))["priority"] == -5


async def test_max_concurrency_is_never_exceeded(start_server: StartServer, connect: Connect) -> None:
    api = await user_on(start_server, connect, tasks={"max_concurrency": 3})
    gates = {await api.submit_id("gate", {"gate": f"c{n}"}): f"c{n}" for n in range(10)}

    stats = await api.wait_running(3)
    assert stats["current"] == 3
    assert len(await api.all_tasks(status="running")) == 3
    assert len(await api.all_tasks(status="pending")) == 7

    finished: set[str] = set()
    for step in range(10):
        # Open the gate of one task that is running now.
        stats = await api.stats()
        running = [t for t in stats["started"] if t not in finished]
        assert len(running) == min(3, 10 - step), stats
        victim = running[0]
        await api.open_gate(gates[victim])
        await api.wait_status(victim, "completed")
        finished.add(victim)
        expected = min(3, 10 - len(finished))
        stats = await api.wait_running(expected)
        assert stats["current"] == expected
        assert stats["max_concurrent"] == 3
    stats = await api.stats()
    assert sorted(stats["started"]) == sorted(gates)
    assert stats["max_concurrent"] == 3
    assert stats["current"] == 0


async def test_a_finishing_run_passes_its_slot_on_in_its_outcome_s_commit(
    start_server: StartServer, connect: Connect
) -> None:
    # On PostgreSQL the leases are renewed in writes of their own every third of
    # tasks.lease: an hour keeps those out of the commits counted here.
    api = await user_on(start_server, connect, tasks={"max_concurrency": 1, "lease": 3600.0})
    blocker = await api.submit_id("gate", {"gate": "hold"})
    await api.wait_status(blocker, "running")
    queued = [await api.submit_id("echo", {"n": n}) for n in range(8)]
    before = (await api.stats())["commits"]

    await api.open_gate("hold")
    await api.wait_status(queued[-1], "completed")
    stats = await api.stats()
    assert stats["started"] == [blocker, *queued]
    assert stats["max_concurrent"] == 1
    # Each outcome commits together with the next task's start: 9 commits for 9
    # outcomes and 8 starts (17 one after another if each start waited for the slot).
    commits = stats["commits"]
    assert commits["jobs"] - before["jobs"] == 17, commits
    assert commits["batches"] - before["batches"] == 9, commits


@pytest.mark.sqlite_only  # processes sharing a PostgreSQL queue start tasks in writes of their own
async def test_a_task_submitted_with_a_slot_free_starts_in_its_submit_s_commit(
    start_server: StartServer, connect: Connect
) -> None:
    api = await user_on(start_server, connect, tasks={"max_concurrency": 2})
    before = (await api.stats())["commits"]
    first = await api.submit_id("gate", {"gate": "first"})
    await api.wait_running(1)
    commits = (await api.stats())["commits"]
    # Queued and started in one job: one commit before its run, not two.
    assert (commits["jobs"] - before["jobs"], commits["batches"] - before["batches"]) == (1, 1), commits
    # The dispatcher waits holding the other slot, so the next task starts on its own.
    second = await api.submit_id("gate", {"gate": "second"})
    await api.wait_running(2)
    after = (await api.stats())["commits"]
    assert after["jobs"] - commits["jobs"] == 2, after
    for gate, task_id in (("first", first), ("second", second)):
        await api.open_gate(gate)
        done = await api.wait_status(task_id, "completed")
        assert done["attempts"] == 1


@contextlib.asynccontextmanager
async def writer_held(store: Store) -> AsyncIterator[None]:
    """The store's writer held inside a job for the block: writes queued meanwhile wait
    behind it and commit once the block ends."""
    entered, release = threading.Event(), threading.Event()

    def hold(tx: Tx) -> None:
        entered.set()
        release.wait(10)

    holding = store.write(hold)
    assert await asyncio.to_thread(entered.wait, 10)
    try:
        yield
    finally:
        release.set()
        await holding


async def test_a_drain_waits_for_a_submit_that_starts_its_task_and_puts_the_task_back(tmp_path: Path) -> None:
    """A submit takes its slot on the loop and its write commits later: when the engine
    begins to drain in between, the run that commit starts is drained like any other
    (here, with no grace, at once back to pending, its attempt excused)."""
    store = Store(DatabaseSettings(path=tmp_path / "engine.db"))
    await store.open()
    bus = EventBus(store, queue_size=100)
    await bus.start()
    runs: list[str] = []
    forever = asyncio.Event()

    async def run(ctx: TaskContext) -> dict[str, Any]:
        runs.append(ctx.task.id)
        await forever.wait()
        return {}

    engine = Engine(store, bus, TaskSettings(max_concurrency=2), {"wait": TaskType("wait", run)})
    try:
        await store.write(lambda tx: tx.insert_user(User("u1", "reader", "-", False, utcnow())))
        await engine.start()
        async with writer_held(store):
            submit = asyncio.create_task(engine.submit("u1", "wait", {"n": 1}, preview="n"))
            await asyncio.sleep(0)  # its job is queued behind the hold, its slot taken
            assert engine.accepting
            drain = asyncio.create_task(engine.drain(0.0))
            await asyncio.sleep(0)
            assert not engine.accepting
        outcome = await asyncio.wait_for(submit, 10)
        await asyncio.wait_for(drain, 10)
        assert runs == [outcome.task.id]  # it ran: started in its submit's commit
        task = await store.read.task(outcome.task.id)
        assert task is not None and task.status is TaskStatus.PENDING
        assert (task.attempts, task.attempts_excused) == (1, 1)
    finally:
        await bus.stop()
        await store.close()


async def test_a_write_whose_caller_is_cancelled_still_commits(tmp_path: Path) -> None:
    """Cancelling the coroutine that awaits a write cancels only its wait: the job was
    queued by the call, so it runs in its batch and commits, and its ``settled``
    callback is called (the engine gives a submit's slot back there)."""
    store = Store(DatabaseSettings(path=tmp_path / "engine.db"))
    await store.open()
    try:
        settled = asyncio.Event()

        async def caller() -> None:
            await store.write(lambda tx: tx.insert_user(User("u1", "reader", "-", False, utcnow())),
                              settled=settled.set)

        async with writer_held(store):
            waiting = asyncio.create_task(caller())
            await asyncio.sleep(0)  # its job is queued behind the hold
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert not settled.is_set()
        await asyncio.wait_for(settled.wait(), 10)
        assert await store.read.user("u1") is not None
    finally:
        await store.close()


async def test_a_submit_answers_with_the_task_as_stored(tmp_path: Path) -> None:
    """The task a submit answers with (and publishes in its ``task_queued``) is built
    from what its insert wrote, not read back: it must equal the stored row, field by
    field, both when it starts in its submit's commit and when it waits."""
    store = Store(DatabaseSettings(path=tmp_path / "engine.db"))
    await store.open()
    bus = EventBus(store, queue_size=100)
    await bus.start()
    forever = asyncio.Event()

    async def run(ctx: TaskContext) -> dict[str, Any]:
        await forever.wait()
        return {}

    kind = TaskType("wait", run, priority=2, estimate=lambda tx, payload: 100 * payload["n"])
    engine = Engine(store, bus, TaskSettings(max_concurrency=1), {"wait": kind})
    try:
        await store.write(lambda tx: tx.insert_user(User("u1", "reader", "-", False, utcnow())))
        await engine.start()
        started = await engine.submit("u1", "wait", {"n": 1, "text": "ü"}, preview="first", priority=3)
        waiting = await engine.submit("u1", "wait", {"n": 2, "nested": {"a": [1, None]}}, preview="second")
        assert started.created and waiting.created
        assert uuid.UUID(waiting.task.id).version == 7  # a row id: time first (insightreader/ids.py)
        stored = await store.read.task(waiting.task.id)
        assert stored is not None and stored.status is TaskStatus.PENDING
        assert waiting.task == stored
        first = await store.read.task(started.task.id)
        assert first is not None and first.status is TaskStatus.RUNNING
        assert started.task == dataclasses.replace(first, status=TaskStatus.PENDING, attempts=0, started_at=None)
    finally:
        await engine.drain(0.0)
        await bus.stop()
        await store.close()


async def test_a_run_that_passed_its_slot_on_no_longer_counts_as_running(
    start_server: StartServer, connect: Connect
) -> None:
    api = await user_on(start_server, connect, tasks={"max_concurrency": 1})
    held = await api.submit_id("held_outcome", {"gate": "done", "hold": "writer"})
    await api.wait_status(held, "running")
    waiting = await api.submit_id("echo", {"behind": "held"})
    await api.open_gate("done")

    async def writer_held() -> bool:
        return bool((await api.get("/api/v1/test/holds/writer")).json()["entered"])

    # The held run queued its outcome and gave its slot on (the next start is queued
    # behind the outcome); the writer is inside that outcome's job.
    await wait_until(writer_held, "the held outcome's write")
    ready = (await api.http.get("/readyz")).json()
    # The waiting task took the slot (none ready); one run counts, not both.
    assert (ready["engine"]["ready"], ready["engine"]["running"]) == (0, 1), ready
    assert (await api.post("/api/v1/test/holds/writer")).status_code == 200
    await api.wait_status(waiting, "completed")
    assert (await api.task(held))["status"] == "completed"
    assert (await api.http.get("/readyz")).json()["engine"]["running"] == 0


async def test_too_many_pending_counts_pending_and_running(start_server: StartServer, connect: Connect) -> None:
    server = start_server(tasks={"max_concurrency": 1, "max_pending_per_user": 3})
    http = connect(server)
    api, other = await register(http), await register(http)
    running = await api.submit_id("gate", {"gate": "p0"})
    await api.wait_status(running, "running")
    queued = [await api.submit_id("gate", {"gate": f"p{n}"}) for n in (1, 2)]
    # 1 running + 2 pending = 3 unfinished: the fourth is refused.
    response = await api.submit("gate", {"gate": "p3"})
    assert_error(response, 429, "too_many_pending")
    assert "3" in response.json()["error"]["message"]
    assert len(await api.all_tasks()) == 3  # the refused one left no row
    # A duplicate of an unfinished task joins it instead of being refused.
    again = await api.submit("gate", {"gate": "p1"})
    assert again.status_code == 202, again.text
    assert again.json()["task_id"] == queued[0]
    # The limit is per user, and exact under concurrent submits.
    answers = await asyncio.gather(*(other.submit("gate", {"gate": f"q{n}"}) for n in range(10)))
    assert sorted(r.status_code for r in answers) == [202] * 3 + [429] * 7
    assert len(await other.all_tasks()) == 3

    await api.open_gate("p0")
    await api.wait_status(running, "completed")
    fourth = await api.submit_id("gate", {"gate": "p3"})
    assert_error(await api.submit("gate", {"gate": "p4"}), 429, "too_many_pending")
    for name in [*(f"p{n}" for n in range(4)), *(f"q{n}" for n in range(10))]:
        await api.open_gate(name)
    for task_id in (*queued, fourth):
        await api.wait_status(task_id, "completed")
    for task in await other.all_tasks():
        await other.wait_status(task["task_id"], "completed")


async def test_group_commit_of_concurrent_submits(start_server: StartServer, connect: Connect) -> None:
    api = await user_on(start_server, connect, tasks={"max_pending_per_user": 1000})
    before = (await api.stats())["commits"]
    answers = await asyncio.gather(*(api.submit("echo", {"n": n}) for n in range(200)))
    assert [r.status_code for r in answers] == [202] * 200, {r.status_code for r in answers}
    acknowledged = {r.json()["task_id"] for r in answers}
    assert len(acknowledged) == 200

    assert {t["task_id"] for t in await api.all_tasks()} == acknowledged

    async def all_completed() -> bool:
        return len(await api.all_tasks(status="completed")) == 200

    await wait_until(all_completed, "200 tasks to complete", timeout=60)
    stats = await api.stats()
    assert sorted(stats["started"]) == sorted(acknowledged)
    # Writes queued while a commit is under way share the next one.
    commits = stats["commits"]
    batches = commits["batches"] - before["batches"]
    jobs = commits["jobs"] - before["jobs"]
    # A submit and a finish per task, and a start of its own for each that did not
    # start in its submit's transaction (only those that found a slot free did).
    assert jobs > 400
    assert batches < jobs and commits["largest"] > 1, commits

    # The upper clamp of limit: 1000 → 100.
    page = (await api.get("/api/v1/tasks", params={"limit": 1000})).json()
    assert len(page["items"]) == 100
    assert page["next_cursor"] is not None


# -- limits and failures of the engine itself -------------------------------------------


async def test_per_task_timeout(start_server: StartServer, connect: Connect) -> None:
    api = await user_on(start_server, connect, tasks={"timeout": 0.5})
    task_id = await api.submit_id("gate", {"gate": "never"})
    failed = await api.wait_status(task_id, "failed")
    assert failed["error"]["code"] == "timeout"
    assert failed["error"]["retryable"] is True
    assert (await api.stats())["current"] == 0
    # The slot is free again.
    await api.wait_status(await api.submit_id("echo", {}), "completed")


async def test_result_ttl_zero_turns_off_answers_from_completed_tasks(
    start_server: StartServer, connect: Connect
) -> None:
    api = await user_on(start_server, connect, tasks={"result_ttl": 0})
    first = await api.submit_id("echo", {"x": 1})
    await api.wait_status(first, "completed")
    second = await api.submit_id("echo", {"x": 1})
    assert second != first
    await api.wait_status(second, "completed")
    assert sorted((await api.stats())["started"]) == sorted([first, second])


async def test_an_outcome_that_cannot_be_stored_fails_that_task_only(api: Api) -> None:
    """A failed write of one task's outcome (here: the disk is full as it completes)
    must not take the dispatcher and the other runs down."""
    bystander = await api.submit_id("gate", {"gate": "bystander"})
    await api.wait_status(bystander, "running")
    broken = await api.submit_id("disk_full", {})
    failed = await api.wait_status(broken, "failed")
    assert failed["error"]["code"] == "internal_error"
    assert failed["result"] is None
    # The engine still runs new tasks, and the one that was running is untouched.
    await api.wait_status(await api.submit_id("echo", {"after": "broken"}), "completed")
    assert (await api.task(bystander))["status"] == "running"
    assert (await api.task(bystander))["attempts"] == 1
    await api.open_gate("bystander")
    await api.wait_status(bystander, "completed")
