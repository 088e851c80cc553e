"""What survives the process: SIGKILL and restart, crash loops, SIGTERM drain, backup.

Each test restarts the real server on the same config file (so the same
database) and reads the SQLite file directly once the server is stopped, to
check that every accepted task ended exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import db
from tests.support.client import POLL, Api, register
from tests.support.process import REPO, ServerProcess

#: Every server test here runs on SQLite and on PostgreSQL (tests/conftest.py).
BOTH_DATABASES = True

Connect = Callable[[ServerProcess], httpx.AsyncClient]
StartServer = Callable[..., ServerProcess]

#: What a request to a server that is being killed can raise.
GONE = (httpx.TransportError,)


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


def assert_ended_once(where: Path | str, task_ids: set[str] | None = None) -> dict[str, dict[str, Any]]:
    """Every task (or those given) is finished and has exactly one terminal event;
    the task rows by id."""
    rows = db.tasks(where)
    ids = set(rows) if task_ids is None else task_ids
    assert ids <= set(rows), ids - set(rows)
    terminal = db.terminal_counts(where)
    for task_id in ids:
        assert rows[task_id]["status"] in ("completed", "failed", "cancelled"), rows[task_id]
        assert terminal[task_id] == 1, (task_id, db.task_events(where).get(task_id))
    return rows


async def test_sigkill_then_restart_runs_every_accepted_task_exactly_once(
    start_server: StartServer, connect: Connect, tmp_path: Path, database_at: Path | str
) -> None:
    server = start_server(tasks={"max_concurrency": 2, "max_attempts": 3, "max_pending_per_user": 1000})
    api = await register(connect(server))
    running = [await api.submit_id("gate", {"gate": f"k{n}"}) for n in range(2)]
    await api.wait_running(2)
    waiting = [await api.submit_id("echo", {"n": n}) for n in range(3)]
    cancelled = await api.submit_id("gate", {"gate": "cancelled"})
    assert (await api.post(f"/api/v1/tasks/{cancelled}/cancel")).json()["status"] == "cancelled"

    # A burst of submits is in flight when the process is killed: whatever was
    # acknowledged must survive.
    acknowledged: set[str] = set()

    async def submit(n: int) -> None:
        response = await api.submit("echo", {"burst": n})
        assert response.status_code == 202, response.text
        acknowledged.add(response.json()["task_id"])

    burst = [asyncio.create_task(submit(n)) for n in range(60)]
    deadline = time.monotonic() + 20
    while len(acknowledged) < 10 and time.monotonic() < deadline:
        await asyncio.sleep(POLL / 4)
    server.kill()
    outcomes = await asyncio.gather(*burst, return_exceptions=True)
    for outcome in outcomes:
        assert outcome is None or isinstance(outcome, GONE), repr(outcome)
    assert len(acknowledged) >= 10

    rows = db.tasks(database_at)
    assert acknowledged <= set(rows)
    assert {rows[t]["status"] for t in running} == {"running"}

    server.start()  # same config, same database
    api = api.on(connect(server))
    # The interrupted runs start again (on PostgreSQL, once their lease ran out), their
    # attempt counted.
    await api.wait_running(2)
    for task_id in running:
        assert (await api.task(task_id))["attempts"] == 2
    for n in range(2):
        await api.open_gate(f"k{n}")
    for task_id in [*running, *waiting, *acknowledged]:
        await api.wait_status(task_id, "completed")
    # Submits whose answer the kill swallowed may have been committed: they run too.
    deadline = time.monotonic() + 20
    while await api.all_tasks(status="pending") or await api.all_tasks(status="running"):
        assert time.monotonic() < deadline, "tasks left unfinished after the restart"
        await asyncio.sleep(POLL)
    assert (await api.task(cancelled))["status"] == "cancelled"
    started = (await api.stats())["started"]
    assert cancelled not in started
    assert len(started) == len(set(started))  # nothing ran twice in this process
    assert server.terminate() == 0

    # Every task the database holds (acknowledged or not) ended exactly once.
    rows = assert_ended_once(database_at)
    assert {rows[t]["attempts"] for t in running} == {2}
    assert {rows[t]["attempts"] for t in waiting} == {1}
    assert rows[cancelled]["status"] == "cancelled"
    assert {rows[t]["status"] for t in rows if t != cancelled} == {"completed"}


async def _running_or_dead(api: Api, server: ServerProcess, task_id: str, timeout: float = 15) -> dict[str, Any] | None:
    """Poll until the task is failed (its row) or the server process died (None)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            task = await api.task(task_id)
        except GONE:
            task = None
        if task is not None and task["status"] == "failed":
            return task
        if not server.alive:
            return None
        await asyncio.sleep(POLL)
    raise AssertionError(f"task {task_id} neither failed nor killed the server")


async def test_a_task_that_kills_the_process_fails_after_max_attempts(
    start_server: StartServer, connect: Connect, tmp_path: Path, database_at: Path | str
) -> None:
    server = start_server(tasks={"max_attempts": 2})
    api = await register(connect(server))
    try:
        await api.submit("crash", {})  # the answer may or may not arrive before the kill
    except GONE:
        pass
    server.wait(10)
    [task_id] = [t for t, row in db.tasks(database_at).items() if row["task_type"] == "crash"]

    crashes = 1
    failed = None
    for _ in range(6):
        if not server.try_start():  # killed during start-up
            crashes += 1
            continue
        failed = await _running_or_dead(api.on(connect(server)), server, task_id)
        if failed is not None:
            break
        server.wait(10)
        crashes += 1
    assert failed is not None, server.log_text[-3000:]
    assert crashes == 2
    assert failed["attempts"] == 2
    assert failed["error"]["code"] == "too_many_attempts"

    # The server stays up and works.
    api = api.on(connect(server))
    assert (await api.http.get("/healthz")).status_code == 200
    await api.wait_status(await api.submit_id("echo", {"after": "crash"}), "completed")
    assert server.terminate() == 0
    assert_ended_once(database_at)
    assert db.task_events(database_at)[task_id][-1] == "task_failed"

    # A retry gives it max_attempts fresh runs (and here it crashes again).
    server.start()
    api = api.on(connect(server))
    try:  # the answer may or may not arrive before the kill
        response = await api.post(f"/api/v1/tasks/{task_id}/retry")
        assert response.status_code == 202, response.text
    except GONE:
        pass
    server.wait(10)
    assert db.tasks(database_at)[task_id]["attempts"] == 3


async def test_sigterm_drains_and_the_rest_runs_after_restart(
    start_server: StartServer, connect: Connect, tmp_path: Path, database_at: Path | str
) -> None:
    grace = 3.0
    # max_attempts = 1: the run cut short by the drain must not count, or the task
    # would fail with too_many_attempts after the restart.
    server = start_server(
        server={"graceful_timeout": grace}, tasks={"max_concurrency": 2, "max_attempts": 1}
    )
    api = await register(connect(server))
    finishing = await api.submit_id("gate", {"gate": "finishes-in-grace"})
    interrupted = await api.submit_id("gate", {"gate": "outlives-grace"})
    await api.wait_running(2)
    waiting = [await api.submit_id("echo", {"n": n}) for n in range(2)]

    sent = time.monotonic()
    server.send(signal.SIGTERM)
    deadline = sent + grace
    while (await api.http.get("/readyz")).status_code != 503:
        assert time.monotonic() < deadline, "/readyz never reported the drain"
        await asyncio.sleep(POLL)
    # Draining: no new submits, no retries; a running task may still finish.
    assert_error(await api.submit("echo", {"n": "late"}), 503, "shutting_down")
    assert_error(await api.post(f"/api/v1/tasks/{interrupted}/retry"), 503, "shutting_down")
    await api.open_gate("finishes-in-grace")
    assert (await api.wait_status(finishing, "completed", timeout=grace))["attempts"] == 1
    assert server.wait(grace + 5) == 0
    elapsed = time.monotonic() - sent
    assert grace <= elapsed <= grace + 2.0, elapsed

    rows = db.tasks(database_at)
    assert len(rows) == 4  # the refused submit left nothing
    assert rows[finishing]["status"] == "completed"
    assert rows[interrupted]["status"] == "pending"
    assert rows[interrupted]["attempts"] == 1
    assert {rows[t]["status"] for t in waiting} == {"pending"}  # never started
    assert {rows[t]["attempts"] for t in waiting} == {0}
    events = db.task_events(database_at)
    assert events[interrupted] == ["task_queued", "task_started", "task_queued"]

    server.start()
    api = api.on(connect(server))
    again = await api.wait_status(interrupted, "running")
    assert again["attempts"] == 2
    await api.open_gate("outlives-grace")
    for task_id in (interrupted, *waiting):
        await api.wait_status(task_id, "completed")
    assert (await api.task(interrupted))["result"] == {"gate": "outlives-grace", "attempt": 2}
    assert server.terminate() == 0
    assert_ended_once(database_at)


@pytest.mark.sqlite_only
async def test_backup_while_the_server_is_writing(
    start_server: StartServer, connect: Connect, tmp_path: Path
) -> None:
    server = start_server(tasks={"max_pending_per_user": 10_000})
    api = await register(connect(server))
    acknowledged: list[str] = []
    backup_done = asyncio.Event()

    async def submit(n: int) -> None:
        acknowledged.append(await api.submit_id("echo", {"n": n}))

    async def writer() -> None:
        """Bursts of 20 concurrent submits until the backup is done (bounded)."""
        for start in range(0, 5000, 20):
            if backup_done.is_set():
                return
            await asyncio.gather(*(submit(n) for n in range(start, start + 20)))
        raise AssertionError("the backup outlasted 5000 submits")

    writing = asyncio.create_task(writer())
    deadline = time.monotonic() + 20
    while len(acknowledged) < 40:
        assert time.monotonic() < deadline and not writing.done()
        await asyncio.sleep(POLL / 4)

    target = tmp_path / "backups" / "copy.db"
    before = set(acknowledged)  # acknowledged before the backup started
    backup = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "insightreader", "backup", str(target), "--config", str(server.config_path),
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(backup.communicate(), 30)
    during = len(acknowledged) - len(before)
    backup_done.set()
    await writing
    assert backup.returncode == 0, output.decode()
    assert during > 0, "no submit was acknowledged while the backup ran"

    with closing(sqlite3.connect(f"file:{target}?mode=ro", uri=True)) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        statuses = dict(copy.execute("SELECT id, status FROM tasks"))
        events: dict[str, list[str]] = {}
        for task_id, event in copy.execute(
            "SELECT json_extract(data, '$.task_id'), event FROM events ORDER BY id"
        ):
            events.setdefault(task_id, []).append(event)
    assert before <= set(statuses)
    # One snapshot: each task's row and its lifecycle events agree (they are
    # written in one transaction, so a torn copy would show a mismatch).
    expected = {
        "pending": ["task_queued"],
        "running": ["task_queued", "task_started"],
        "completed": ["task_queued", "task_started", "task_completed"],
    }
    for task_id, status in statuses.items():
        assert events.get(task_id) == expected[status], (task_id, status, events.get(task_id))
    assert set(events) - {None} <= set(statuses)
