"""Three server processes on one PostgreSQL database (docs/scale-out.md): any process
accepts any request and any may run the task; a stream on one process gets the
events of tasks another runs and resumes on a third; a task whose process is killed
runs again elsewhere once its lease ran out, and ends once (one that stalled past
its lease stops its run when it wakes); a cancel reaches the
process running the task; a webhook made on one process is used by all, and each
delivery, retries included, is sent by one process.

Each process is a real server started by ``start_server`` on the same configuration
(so the same database, signing secret and ``tasks.lease`` of 2 s). Which process runs
a task is read from each one's ``/api/v1/test/stats`` (the test task types count
their runs per process).
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from psycopg import errors

from insightreader.errors import StorageBusy
from insightreader.store.postgresql import translate
from tests.support import db
from tests.support.client import Api, register, wait_for
from tests.support.postgres import needs_postgres
from tests.support.process import ServerProcess
from tests.support.receiver import receiving
from tests.support.sse import Message, open_stream

pytestmark = needs_postgres

Connect = Callable[[ServerProcess], httpx.AsyncClient]
StartServer = Callable[..., ServerProcess]


@pytest.fixture
def database() -> str:
    """Every server here runs on PostgreSQL (tests/conftest.py)."""
    return "postgresql"


async def _started(api: Api) -> list[str]:
    return list((await api.stats())["started"])


async def _busy(start_server: StartServer, connect: Connect, gate: str,
                **sections: dict[str, Any]) -> tuple[ServerProcess, Api, str]:
    """A first process, a user registered there, and a ``gate`` task running on it."""
    server = start_server(**sections)
    api = await register(connect(server))
    task_id = await api.submit_id("gate", {"gate": gate})
    await api.wait_running(1)
    return server, api, task_id


async def test_a_task_submitted_to_one_process_runs_on_another(
    start_server: StartServer, connect: Connect, database_at: str
) -> None:
    # A runs one task at a time and is kept busy: what it accepts runs elsewhere.
    _, on_a, busy = await _busy(start_server, connect, "busy", tasks={"max_concurrency": 1})
    b, c = start_server(), start_server()
    on_b, on_c = on_a.on(connect(b)), on_a.on(connect(c))

    submitted = [await on_a.submit_id("echo", {"n": n}) for n in range(6)]
    for task_id in submitted:
        done = await on_a.wait_status(task_id, "completed")
        assert done["result"]["echo"] == {"n": submitted.index(task_id)}
    elsewhere = await _started(on_b) + await _started(on_c)
    assert sorted(elsewhere) == sorted(submitted)  # each ran once, none on A
    assert await _started(on_a) == [busy]

    # Dedup holds across processes: the same input on C is answered from B's or C's run.
    again = await on_c.submit("echo", {"n": 0})
    assert again.status_code == 200, again.text
    assert again.json()["task_id"] == submitted[0]

    await on_a.open_gate("busy")
    await on_b.wait_status(busy, "completed")
    counts = db.terminal_counts(database_at)
    assert {counts[t] for t in [busy, *submitted]} == {1}


async def test_priority_and_users_in_turn_hold_for_tasks_another_process_queued(
    start_server: StartServer, connect: Connect
) -> None:
    # A and B each run one task at a time and are busy; everything is submitted to B,
    # then A frees its slot: A runs B's tasks by priority, then the users in turn.
    _, first, busy_a = await _busy(start_server, connect, "busy-a", tasks={"max_concurrency": 1})
    b = start_server(tasks={"max_concurrency": 1})
    on_b = first.on(connect(b))
    await on_b.submit_id("gate", {"gate": "busy-b"})
    await on_b.wait_running(1)
    other = await register(connect(b))
    bulk = [await on_b.submit_id("echo", {"bulk": n}, priority=-5) for n in range(3)]
    theirs = await other.submit_id("echo", {"bulk": "other"}, priority=-5)
    urgent = await other.submit_id("echo", {"urgent": True}, priority=5)

    async def all_queued_on_a() -> bool:
        return bool((await first.http.get("/readyz")).json()["engine"]["ready"] == 5)

    await wait_for(all_queued_on_a, "A to queue the five tasks B accepted", timeout=20)
    await first.open_gate("busy-a")
    for api, task_id in [*((on_b, t) for t in bulk), (other, theirs), (other, urgent)]:
        await api.wait_status(task_id, "completed")
    runs = await _started(first)
    assert runs[0] == busy_a
    assert runs[1:] == [urgent, bulk[0], theirs, bulk[1], bulk[2]]
    await on_b.open_gate("busy-b")


def _ids(messages: list[Message]) -> list[int]:
    return [m.id for m in messages if m.id is not None]


async def test_a_stream_gets_another_process_s_events_and_resumes_on_a_third(
    start_server: StartServer, connect: Connect, database_at: str
) -> None:
    a, b, c = start_server(), start_server(), start_server()
    on_a = await register(connect(a))
    on_b, on_c = on_a.on(connect(b)), on_a.on(connect(c))
    clients = (on_a, on_b, on_c)

    async with open_stream(on_a.http, on_a.token) as stream:
        assert stream.response.status_code == 200
        await stream.events.until(lambda m: m.event == "connected")
        writing = await on_b.submit_id("gate", {"gate": "w", "deltas": ["one ", "two ", "three"]})
        seen = await stream.events.until(lambda m: m.event == "task_progress" and "three" in m.data["delta"])
        progress = [m for m in seen if m.event == "task_progress"]
        text = "".join(m.data["delta"] for m in progress)
        assert text == "one two three"
        # Deltas may travel together, but their indexes stay consecutive from 0.
        assert [m.data["index"] for m in progress] == list(range(len(progress)))
        assert [m.event for m in seen if m.event != "task_progress"] == ["task_queued", "task_started"]
        resume_after = _ids(seen)[-1]
        assert _ids(seen) == sorted(set(_ids(seen)))

    for api in clients:  # the gate is in whichever process runs the task
        await api.open_gate("w")
    await on_a.wait_status(writing, "completed")
    echo = await on_b.submit_id("echo", {"after": "resume"})
    await on_b.wait_status(echo, "completed")

    async with open_stream(on_c.http, on_c.token, headers={"Last-Event-ID": str(resume_after)}) as stream:
        assert stream.response.status_code == 200
        resumed = await stream.events.until(lambda m: m.event == "task_completed" and m.data["task_id"] == echo)
    # The test's database has this one user.
    stored = db.rows(database_at, f"SELECT id, event FROM events WHERE id > {resume_after} ORDER BY id")
    # Everything stored after the id it resumed from, in order, once: nothing lost on
    # the way from B (or whichever ran them) to C.
    assert [(m.id, m.event) for m in resumed if m.id is not None] == [(r["id"], r["event"]) for r in stored]
    assert [r["event"] for r in stored] == [
        "task_completed", "task_queued", "task_started", "task_completed"
    ]


async def test_a_killed_process_s_task_finishes_on_another_after_its_lease(
    start_server: StartServer, connect: Connect, database_at: str
) -> None:
    a, on_a, task_id = await _busy(start_server, connect, "k")
    b, c = start_server(), start_server()
    on_b, on_c = on_a.on(connect(b)), on_a.on(connect(c))
    a.kill()

    async def rerun() -> dict[str, Any] | None:
        task = await on_b.task(task_id)
        return task if task["status"] == "running" and task["attempts"] == 2 else None

    # The lease is 2 s (tests/conftest.py): B or C takes the task back and runs it again.
    await wait_for(rerun, "the killed process's task to run again elsewhere", timeout=20)
    for api in (on_b, on_c):
        await api.open_gate("k")
    done = await on_c.wait_status(task_id, "completed")
    assert done["attempts"] == 2
    assert db.terminal_counts(database_at)[task_id] == 1
    assert db.task_events(database_at)[task_id] == [
        "task_queued", "task_started", "task_queued", "task_started", "task_completed"
    ]
    assert await _started(on_b) + await _started(on_c) == [task_id]


async def test_a_process_stalled_past_its_lease_gives_the_task_up(
    start_server: StartServer, connect: Connect, database_at: str
) -> None:
    a, on_a, task_id = await _busy(start_server, connect, "stall")
    on_b = on_a.on(connect(start_server()))

    async def rerun() -> dict[str, Any] | None:
        task = await on_b.task(task_id)
        return task if task["status"] == "running" and task["attempts"] == 2 else None

    a.send(signal.SIGSTOP)  # A neither renews nor answers
    try:
        await wait_for(rerun, "B to take the stalled process's task", timeout=20)
    finally:
        a.send(signal.SIGCONT)

    async def stopped_on_a() -> bool:
        return (await on_a.stats())["current"] == 0

    # A's next renewal finds the lease gone: it stops its run and records nothing.
    await wait_for(stopped_on_a, "A to stop running a task it no longer holds", timeout=20)
    for api in (on_a, on_b):
        await api.open_gate("stall")
    done = await on_b.wait_status(task_id, "completed")
    assert (done["attempts"], done["result"]["attempt"]) == (2, 2)
    assert db.task_events(database_at)[task_id] == [
        "task_queued", "task_started", "task_queued", "task_started", "task_completed"
    ]


async def test_a_process_stalled_inside_a_write_holds_up_no_other_process(
    start_server: StartServer, connect: Connect
) -> None:
    # Every write transaction holds the one write lock; A stops inside one.
    a = start_server(database={"busy_timeout": 1.0})
    on_a = await register(connect(a))
    held = await on_a.submit_id("held_outcome", {"gate": "done", "hold": "writer"})
    await on_a.wait_status(held, "running")
    on_b = on_a.on(connect(start_server(database={"busy_timeout": 1.0})))
    await on_a.open_gate("done")

    async def writer_held() -> bool:
        return bool((await on_a.get("/api/v1/test/holds/writer")).json()["entered"])

    await wait_for(writer_held, "A's writer inside the held outcome's transaction")
    a.send(signal.SIGSTOP)
    try:
        # The server ends A's idle transaction after database.busy_timeout; B writes.
        async with asyncio.timeout(15):
            answer = await on_b.submit("echo", {"n": 1})
        assert answer.status_code == 202, answer.text
        await on_b.wait_status(answer.json()["task_id"], "completed")
    finally:
        a.send(signal.SIGCONT)
    assert (await on_a.post("/api/v1/test/holds/writer")).status_code == 200
    # A's writer finds its transaction ended, and writes again on a new connection.
    again = await on_a.submit_id("echo", {"n": 2})
    await on_a.wait_status(again, "completed")


def test_a_write_the_database_ended_for_idling_fails_as_busy() -> None:
    """What the stalled process's jobs fail with when it wakes: try again (503), not a 500."""
    ended = errors.IdleInTransactionSessionTimeout("terminating connection due to idle-in-transaction timeout")
    assert isinstance(translate(ended), StorageBusy)


async def test_a_cancel_on_one_process_stops_the_run_on_another(
    start_server: StartServer, connect: Connect, database_at: str
) -> None:
    _, on_a, task_id = await _busy(start_server, connect, "never")
    c = start_server()
    on_c = on_a.on(connect(c))

    response = await on_c.post(f"/api/v1/tasks/{task_id}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert (await on_a.stats())["current"] == 0  # the run on A was stopped
    assert db.terminal_counts(database_at)[task_id] == 1
    assert db.task_events(database_at)[task_id][-1] == "task_cancelled"


async def test_a_webhook_made_on_one_process_serves_them_all_each_delivery_sent_once(
    start_server: StartServer, connect: Connect
) -> None:
    sections = {"library": {"fetch_allow_private": True},
                "webhooks": {"retry_initial": 0.05, "retry_for": 60, "timeout": 2}}
    async with receiving() as receiver:
        receiver.answers = [500, 503, 500]  # three failed attempts among the deliveries
        _, on_a, first = await _busy(start_server, connect, "hook-0", tasks={"max_concurrency": 1}, **sections)
        gates = [first]
        b, c = start_server(**sections), start_server(**sections)
        on_b, on_c = on_a.on(connect(b)), on_a.on(connect(c))
        # Made on C once A and B run: they hear of it from C.
        made = await on_c.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["task_completed"]})
        assert made.status_code == 201, made.text
        hook = made.json()["webhook_id"]
        gates += [await on_a.submit_id("gate", {"gate": f"hook-{n}"}) for n in (1, 2)]
        await wait_for(lambda: _running_elsewhere(on_b, on_c, 2), "the other gates to start on B and C", timeout=20)
        for api in (on_a, on_b, on_c):
            for n in range(3):
                await api.open_gate(f"hook-{n}")

        async def all_delivered() -> list[dict[str, Any]] | None:
            items = (await on_b.get(f"/api/v1/webhooks/{hook}/deliveries")).json()["items"]
            return items if len(items) >= 3 and {d["status"] for d in items} == {"succeeded"} else None

        delivered = await wait_for(all_delivered, "the three deliveries to succeed", timeout=20)
        assert len(delivered) == 3, delivered  # one per event, whichever process stored it
        # Each attempt was made by one process: as many requests as attempts recorded,
        # one 2xx per delivery.
        assert sum(d["attempts"] for d in delivered) == len(receiver.requests) == 6
        sent = [h["webhook-id"] for h, _ in receiver.requests]
        assert sorted(set(sent)) == sorted(d["delivery_id"] for d in delivered)
        tasks = {json.loads(body)["data"]["task_id"] for _, body in receiver.requests}
        assert tasks == set(gates)


async def _running_elsewhere(on_b: Api, on_c: Api, count: int) -> bool:
    return (await on_b.stats())["current"] + (await on_c.stats())["current"] >= count
