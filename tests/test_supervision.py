"""Supervision: a bug in a background part never leaves a server that looks ready
and hangs. A guarded failure (an after-commit callback, the commit observer) is
logged and the writer goes on; a part that dies anyway (the store writer, the
engine's dispatcher) is logged with its traceback, ``/readyz`` answers 503, and the
process drains and exits non-zero so that its service manager restarts it.

The faults are injected through the test-only routes of ``tests/support/tasktypes.py``
(``POST /api/v1/test/break/<part>``, the ``bad_callback`` task type).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support import db
from tests.support.client import POLL, Api, register
from tests.support.process import ServerProcess
from tests.support.sse import open_stream

Connect = Callable[[ServerProcess], httpx.AsyncClient]
StartServer = Callable[..., ServerProcess]

#: Seconds a server whose part died may take to drain and exit.
EXIT_BOUND = 30.0
GONE = (httpx.TransportError,)


async def break_part(api: Api, part: str) -> None:
    response = await api.post(f"/api/v1/test/break/{part}")
    assert response.status_code == 200, response.text


async def wait_unready(http: httpx.AsyncClient, timeout: float = 10) -> httpx.Response:
    """Poll ``/readyz`` until it answers 503 (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        response = await http.get("/readyz")
        if response.status_code == 503:
            return response
        assert time.monotonic() < deadline, f"/readyz still answers {response.status_code}"
        await asyncio.sleep(POLL)


def logged_with_traceback(log: str, what: str, message: str) -> None:
    """A log line says ``what`` and carries a traceback that ends with ``message``."""
    lines = [line for line in log.splitlines() if what in line]
    assert lines, log[-3000:]
    assert any("Traceback (most recent call last)" in line and message in line for line in lines), lines


async def test_failing_callbacks_and_a_lost_transaction_are_logged_and_the_writer_goes_on(
    start_server: StartServer, connect: Connect
) -> None:
    server = start_server()
    api = await register(connect(server))
    await break_part(api, "transaction")
    await break_part(api, "commit-observer")
    async with open_stream(api.http, api.token) as stream:
        assert stream.response.status_code == 200
        assert (await stream.events.next()).event == "connected"
        task_id = await api.submit_id("bad_callback", {})
        # The caller of the write is answered (the task is completed) and the callbacks
        # after the failing one still ran (its event reached the stream).
        assert (await api.wait_status(task_id, "completed"))["result"] == {"callback": "fails"}
        events = await stream.events.until(
            lambda m: m.event == "task_completed" and m.data["task_id"] == task_id
        )
        assert [m.event for m in events if m.data.get("task_id") == task_id] == [
            "task_queued", "task_started", "task_completed",
        ]
        # Every later write goes through.
        for n in range(3):
            await api.wait_status(await api.submit_id("echo", {"n": n}), "completed", timeout=10)

    ready = await api.http.get("/readyz")
    assert ready.status_code == 200, ready.text
    log = server.log_text
    logged_with_traceback(log, "an after-commit callback failed", "this after-commit callback fails on purpose")
    logged_with_traceback(log, "the commit observer failed", "this commit observer fails on purpose")
    assert "background part" not in log
    assert server.terminate() == 0


async def test_a_dead_writer_turns_unready_then_the_server_drains_and_exits_nonzero(
    start_server: StartServer, connect: Connect, tmp_path: Path
) -> None:
    server = start_server(server={"graceful_timeout": 20.0})
    api = await register(connect(server))
    held = await api.submit_id("gate", {"gate": "held"})
    await api.wait_running(1)

    await break_part(api, "writer")
    ready = await wait_unready(api.http)
    assert ready.json()["error"]["code"] == "shutting_down"
    assert "store-writer" in ready.json()["error"]["message"]
    # A write never waits for the dead writer: submits answer 503 at once.
    started = time.monotonic()
    refused = await api.submit("echo", {"after": "death"})
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "shutting_down"
    assert time.monotonic() - started < 5
    logged_with_traceback(
        server.log_text, "background part store-writer died", "the writer meets what nobody foresaw"
    )

    # The drain gives the running task its grace; its outcome cannot be stored now.
    await api.open_gate("held")
    code = server.wait(EXIT_BOUND)
    assert code != 0, server.log_text[-3000:]
    assert db.tasks(tmp_path / "data" / "test.db")[held]["status"] == "running"

    # A fresh process runs it again.
    server.start()
    api = api.on(connect(server))
    await api.wait_running(1)
    await api.open_gate("held")
    assert (await api.wait_status(held, "completed"))["attempts"] == 2
    assert (await api.http.get("/readyz")).status_code == 200
    assert server.terminate() == 0


async def test_a_dead_dispatcher_is_logged_and_the_server_exits_nonzero_keeping_its_tasks(
    start_server: StartServer, connect: Connect, tmp_path: Path
) -> None:
    # One slot, which the waiting dispatcher holds: a submit cannot start its task
    # itself (docs/design.md, "Dispatch"), so it wakes the dispatcher.
    server = start_server(tasks={"max_concurrency": 1})
    api = await register(connect(server))
    await api.wait_status(await api.submit_id("echo", {"before": "death"}), "completed")

    await break_part(api, "dispatcher")
    try:  # the dispatcher dies as this submit wakes it: its answer may not arrive
        await api.submit("echo", {"after": "death"})
    except GONE:
        pass
    code = server.wait(EXIT_BOUND)
    assert code != 0, server.log_text[-3000:]
    logged_with_traceback(server.log_text, "background part engine died", "the dispatcher fails on purpose")

    rows = db.tasks(tmp_path / "data" / "test.db")
    [accepted] = [t for t, row in rows.items() if json.loads(row["input"]) == {"after": "death"}]
    assert rows[accepted]["status"] == "pending"
    server.start()
    api = api.on(connect(server))
    assert (await api.wait_status(accepted, "completed"))["attempts"] == 1
    assert server.terminate() == 0
