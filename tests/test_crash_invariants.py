"""Crash invariants under seeded random interleavings.

Each seed drives a real server (insight tasks against the fake upstream) through a
random sequence of submits, duplicate submits, idempotent resubmits, cancels,
retries, upstream failures and slow-downs, and SIGKILL + restart (with submits in
flight), while one client follows the event stream, resuming with
``Last-Event-ID`` after every disconnect and every restart. Then it lets the work
settle and checks:

- every acknowledged task exists after the restarts; an idempotent resubmit always
  names the first task;
- each task reaches exactly one terminal event on the resumed stream (one more per
  accepted retry), and its last one matches its final status;
- event ids strictly increase over the whole recording (no duplicate, no reset);
- ``tasks.max_concurrency`` is never exceeded: within each process's life (its
  ids start after the block the previous one reserved, read from the database
  between kill and restart), no more tasks are between ``task_started`` and their
  end (a terminal event, or ``task_queued`` when put back) than that. The slot is
  taken before the start commits and freed after the end commits, and ids follow
  commit order, so this is exact. (The fake upstream's count of requests at once
  is printed, not asserted: a cancelled request may still be draining there.)

``CRASH_SEEDS=7,8,9`` runs other seeds; a failure names its seed (not an
``INSIGHTREADER_*`` name: the server refuses unknown variables of its own prefix).
The default seeds take a few seconds each. Seed 1 takes a minute: its scripted
provider failures keep failing the circuit's half-open trials, so the probe backs
off to its 30 s maximum before the provider is tried again (a slow run, not a
failing one).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fake_upstream import FakeUpstream, Reply, server_error
from tests.support import db
from tests.support.client import POLL, Api, register
from tests.support.process import ServerProcess
from tests.support.sse import Message, open_stream

StartServer = Callable[..., ServerProcess]

SEEDS = [int(s) for s in os.environ.get("CRASH_SEEDS", "2,3,4,5").split(",") if s.strip()]
STEPS = 24
MAX_RESTARTS = 2
MAX_CONCURRENCY = 2
TERMINAL = ("task_completed", "task_failed", "task_cancelled")
GONE = (httpx.TransportError,)
FAST = Reply(chunk_delay=0.005)
SLOW = Reply(chunk_delay=0.05)
SETTLE = 120.0


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(chunk_size=16) as upstream:
        upstream.default = FAST
        yield upstream


class Recorder:
    """Follows one user's stream across disconnects and restarts, resuming after the
    last id it got; keeps every message that has an id, and any reset."""

    def __init__(self, server: ServerProcess, token: str) -> None:
        self.server = server
        self.token = token
        self.messages: list[Message] = []
        self.resets: list[Message] = []
        self.connections = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def last_id(self) -> int | None:
        return self.messages[-1].id if self.messages else None

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _follow(self) -> None:
        while True:
            url = self.server.url if self.server.alive else ""
            if url:
                with contextlib.suppress(EOFError, TimeoutError, *GONE):
                    await self._read(url)
            await asyncio.sleep(POLL)

    async def _read(self, url: str) -> None:
        headers = {} if self.last_id is None else {"Last-Event-ID": str(self.last_id)}
        async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(10, read=None)) as http:
            async with open_stream(http, self.token, headers=headers) as stream:
                if stream.response.status_code != 200:
                    return
                self.connections += 1
                while True:
                    message = await stream.events.next(timeout=10)
                    if message.event == "reset":
                        self.resets.append(message)
                    elif message.id is not None:
                        self.messages.append(message)

    def events_of(self, task_id: str) -> list[str]:
        return [m.event for m in self.messages if m.data.get("task_id") == task_id]


@dataclass
class Run:
    """What the client was told, to check against the end state."""

    seed: int
    acknowledged: set[str] = field(default_factory=set)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    keys: dict[str, tuple[dict[str, Any], str]] = field(default_factory=dict)
    retries: Counter[str] = field(default_factory=Counter)
    restarts: int = 0
    #: For each restart: the largest event id the killed process could have used.
    boundaries: list[int] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def note(self, what: str) -> None:
        self.log.append(what)

    def fail(self, message: str) -> str:
        return f"seed {self.seed}: {message}\nsteps: {', '.join(self.log)}"


async def submit(api: Api, run: Run, body: dict[str, Any], key: str | None = None) -> str:
    headers = {"Idempotency-Key": key} if key else None
    response = await api.post("/api/v1/insights/generate", body, headers=headers)
    assert response.status_code in (200, 202), run.fail(response.text)
    task_id = str(response.json()["task_id"])
    run.acknowledged.add(task_id)
    return task_id


async def step(op: str, rng: random.Random, api: Api, run: Run, fake: FakeUpstream, n: int) -> None:
    if op == "submit":
        body = {"selected_text": f"Seed {run.seed} passage {n}: trees shade the street and cool it."}
        run.bodies.append(body)
        if rng.random() < 0.5:
            key = f"key-{run.seed}-{n}"
            run.keys[key] = (body, await submit(api, run, body, key))
        else:
            await submit(api, run, body)
    elif op == "duplicate" and run.bodies:
        await submit(api, run, rng.choice(run.bodies))
    elif op == "resubmit" and run.keys:
        key = rng.choice(sorted(run.keys))
        body, first = run.keys[key]
        again = await submit(api, run, body, key)
        assert again == first, run.fail(f"Idempotency-Key {key} named {again}, first {first}")
    elif op in ("cancel", "retry") and run.acknowledged:
        task_id = rng.choice(sorted(run.acknowledged))
        response = await api.post(f"/api/v1/tasks/{task_id}/{op}")
        assert response.status_code in ((200, 409) if op == "cancel" else (202, 409)), run.fail(response.text)
        if op == "retry" and response.status_code == 202:
            run.retries[task_id] += 1
    elif op == "fail":
        fake.script(*[server_error(503)] * rng.randint(1, 4))
    elif op == "slow":
        fake.default = SLOW if fake.default is FAST else FAST


async def kill_and_restart(
    api: Api, run: Run, server: ServerProcess, fake: FakeUpstream, database: Path, n: int
) -> Api:
    """SIGKILL with submits in flight (whatever was acknowledged must survive), wait for
    the dead process's upstream requests to end, start again on the same database."""
    acked_before = len(run.acknowledged)

    async def burst(k: int) -> None:
        with contextlib.suppress(*GONE):
            body = {"selected_text": f"Seed {run.seed} burst {n}.{k}: a sentence about rivers."}
            await submit(api, run, body)

    pending = [asyncio.create_task(burst(k)) for k in range(4)]
    deadline = time.monotonic() + 10
    while len(run.acknowledged) == acked_before and time.monotonic() < deadline:
        await asyncio.sleep(POLL / 4)
    server.kill()
    await asyncio.gather(*pending)
    deadline = time.monotonic() + 15
    while fake.chat_in_flight:
        assert time.monotonic() < deadline, run.fail("the killed server's upstream requests never ended")
        await asyncio.sleep(POLL)
    with closing(db.connect(database)) as conn:
        [reserved] = conn.execute("SELECT value FROM meta WHERE key = 'event_id_reserved'").fetchone()
    run.boundaries.append(int(reserved))
    server.start()
    run.restarts += 1
    http = httpx.AsyncClient(base_url=server.url, timeout=30)
    await api.http.aclose()
    return api.on(http)


def most_running(messages: list[Message], boundaries: list[int]) -> int:
    """The most tasks between their start and their end at once, per process life."""
    most = 0
    running: set[str] = set()
    edges = iter(sorted(boundaries))
    edge = next(edges, None)
    for message in messages:
        assert message.id is not None
        while edge is not None and message.id > edge:  # a new process: nothing runs yet
            running.clear()
            edge = next(edges, None)
        task_id = message.data.get("task_id")
        if message.event == "task_started":
            running.add(task_id)
        elif message.event in TERMINAL or message.event == "task_queued":
            running.discard(task_id)
        most = max(most, len(running))
    return most


async def settle(api: Api, run: Run, recorder: Recorder) -> list[dict[str, Any]]:
    """Wait (bounded) until no task is unfinished and the stream has every terminal event."""
    deadline = time.monotonic() + SETTLE
    while True:
        tasks = await api.all_tasks()
        unfinished = [t["task_id"] for t in tasks if t["status"] in ("pending", "running")]
        heard = Counter(m.data["task_id"] for m in recorder.messages if m.event in TERMINAL)
        behind = [t["task_id"] for t in tasks if heard[t["task_id"]] < 1 + run.retries[t["task_id"]]]
        if not unfinished and not behind:
            return tasks
        assert time.monotonic() < deadline, run.fail(f"unfinished {unfinished}, stream behind on {behind}")
        await asyncio.sleep(POLL * 5)


@pytest.mark.parametrize("seed", SEEDS)
async def test_random_interleavings_keep_the_crash_invariants(
    seed: int, start_server: StartServer, fake: FakeUpstream, tmp_path: Path
) -> None:
    rng = random.Random(seed)
    database = tmp_path / "data" / "test.db"
    run = Run(seed)
    server = start_server(
        llm={"base_url": fake.base_url, "api_key": "sk-test-key-0123456789", "model": fake.model, "max_retries": 1},
        tasks={"max_concurrency": MAX_CONCURRENCY, "max_attempts": 10, "max_pending_per_user": 1000},
        sse={"heartbeat": 1.0},
    )
    api = await register(httpx.AsyncClient(base_url=server.url, timeout=30))
    recorder = Recorder(server, api.token)
    recorder.start()
    ops = ["submit"] * 5 + ["duplicate"] * 2 + ["resubmit"] * 2 + ["cancel", "retry", "retry", "fail", "slow", "kill"]
    try:
        for n in range(STEPS):
            op = rng.choice(ops)
            run.note(op)
            if op == "kill":
                if run.restarts < MAX_RESTARTS:
                    api = await kill_and_restart(api, run, server, fake, database, n)
            else:
                await step(op, rng, api, run, fake, n)
            # The pending-task counter moves with every row, across kills too.
            assert not db.unfinished_count_drift(database), run.fail(f"counter drift after {op}")
        if run.restarts == 0:  # every seed crashes at least once
            run.note("kill")
            api = await kill_and_restart(api, run, server, fake, database, STEPS)
        fake.default = FAST
        tasks = await settle(api, run, recorder)
    finally:
        await recorder.stop()
        await api.http.aclose()

    by_id = {t["task_id"]: t for t in tasks}
    missing = run.acknowledged - set(by_id)
    assert not missing, run.fail(f"acknowledged tasks lost: {missing}")
    for task_id, task in by_id.items():
        events = recorder.events_of(task_id)
        terminal = [e for e in events if e in TERMINAL]
        assert len(terminal) == 1 + run.retries[task_id], run.fail(f"{task_id}: {events}")
        assert terminal[-1] == f"task_{task['status']}", run.fail(f"{task_id}: {events} vs {task['status']}")
        # Between two ends there is always the retry's task_queued.
        ends = [i for i, e in enumerate(events) if e in TERMINAL]
        for a, b in zip(ends, ends[1:]):
            assert "task_queued" in events[a + 1:b], run.fail(f"{task_id}: {events}")
    ids = [m.id for m in recorder.messages]
    assert all(a < b for a, b in zip(ids, ids[1:])), run.fail(f"event ids not increasing: {ids}")
    assert not recorder.resets, run.fail(f"resets: {recorder.resets}")
    assert not db.unfinished_count_drift(database), run.fail("counter drift at the end")
    most = most_running(recorder.messages, run.boundaries)
    assert 0 < most <= MAX_CONCURRENCY, run.fail(f"{most} tasks running at once")
    assert recorder.connections > run.restarts
    assert server.terminate() == 0
    print(
        f"seed {seed}: {len(by_id)} tasks, {sum(run.retries.values())} retries, {run.restarts} restarts, "
        f"{len(ids)} events over {recorder.connections} connections, "
        f"at most {most} tasks running at once ({fake.max_chat_in_flight} upstream requests);"
        f" steps: {', '.join(run.log)}"
    )
