"""Soak: a bounded mixed load on a real server, and its resources stay flat.

For ``SOAK_SECONDS`` (default 30; the 10-minute run in docs/guarantees.md is
``SOAK_SECONDS=600`` by hand) the test keeps up:

- submits from a fixed pool of test ``echo`` bodies: a first pass creates the tasks,
  then every submit is a duplicate answered from the completed one;
- insight submits (the real task type against the fake upstream), also from a pool;
- cancel cycles: a ``gate`` task (it never finishes by itself) is cancelled, retried
  and cancelled again, so rows are reused and events keep flowing;
- event-stream clients that connect, read a few events slowly, and drop (the socket
  is aborted), two or three at a time;

and samples the server once a second: resident memory, open file descriptors
(``/proc/<pid>/fd``), asyncio tasks (the ``insightreader_asyncio_tasks`` gauge of
``/metrics``) and the database size (file + WAL). After warm-up nothing may grow:
the second half's maximum stays within a tolerance of the first half's. A leak per
request, stream or task (a subscription, a socket, a task never collected) shows
as a climb in the second half. The name is not an ``INSIGHTREADER_*`` variable: the
server refuses unknown variables of its own prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fake_upstream import FakeUpstream, Reply
from tests.support.client import Api, register
from tests.support.process import ServerProcess
from tests.support.sse import RawStream

StartServer = Callable[..., ServerProcess]

SECONDS = float(os.environ.get("SOAK_SECONDS", "30"))
SAMPLE_EVERY = 1.0
ECHO_POOL = 120
INSIGHT_POOL = 20
GATE_POOL = 6
_TASKS_LINE = re.compile(r"^insightreader_asyncio_tasks (\S+)$", re.M)

#: What "flat" allows: the second half's max over the first half's max.
TOLERANCE = {
    "rss_mib": lambda first: first * 1.10 + 8,
    "open_fds": lambda first: first + 12,
    "asyncio_tasks": lambda first: first + 25,
    "db_mib": lambda first: first * 1.10 + 1.5,
}


@dataclass(frozen=True)
class Sample:
    at: float
    rss_mib: float
    open_fds: int
    asyncio_tasks: int
    db_mib: float


def _rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    [kib] = re.findall(r"^VmRSS:\s+(\d+) kB$", status, re.M)
    return int(kib) / 1024


def _db_mib(database: Path) -> float:
    total = 0
    for path in (database, database.with_name(database.name + "-wal")):
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
    return total / 2**20


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(chunk_size=16) as upstream:
        upstream.default = Reply(chunk_delay=0.01)
        yield upstream


async def _until(deadline: float, pause: float, body: Callable[[int], object]) -> None:
    """Call ``body(n)`` (awaiting it when it is a coroutine) every ``pause`` seconds
    until ``deadline``; the pacing of one load generator."""
    n = 0
    while time.monotonic() < deadline:
        result = body(n)
        if asyncio.iscoroutine(result):
            await result
        n += 1
        await asyncio.sleep(pause)


async def _echo_submits(api: Api, deadline: float) -> None:
    async def one(n: int) -> None:
        response = await api.submit("echo", {"pool": n % ECHO_POOL})
        assert response.status_code in (200, 202), response.text

    await _until(deadline, 0.08, one)


async def _insight_submits(api: Api, deadline: float) -> None:
    async def one(n: int) -> None:
        body = {"selected_text": f"Soak passage {n % INSIGHT_POOL}: the river carries silt to the sea."}
        response = await api.post("/api/v1/insights/generate", body)
        assert response.status_code in (200, 202), response.text

    await _until(deadline, 0.5, one)


async def _cancel_cycles(api: Api, deadline: float) -> None:
    ids: dict[int, str] = {}

    async def one(n: int) -> None:
        slot = n % GATE_POOL
        if slot not in ids:
            ids[slot] = await api.submit_id("gate", {"gate": f"never-{slot}"})
        else:
            response = await api.post(f"/api/v1/tasks/{ids[slot]}/retry")
            assert response.status_code == 202, response.text
        response = await api.post(f"/api/v1/tasks/{ids[slot]}/cancel")
        assert response.status_code == 200, response.text

    await _until(deadline, 0.4, one)


async def _stream_clients(server: ServerProcess, token: str, deadline: float, rng: random.Random) -> None:
    async def client() -> None:
        stream = await RawStream.open(server.url, token=token, stuck=rng.random() < 0.5)
        try:
            assert stream.status == 200, stream.status
            with contextlib.suppress(TimeoutError, EOFError):
                for _ in range(rng.randint(1, 6)):
                    await stream.events.next(timeout=2)
                    await asyncio.sleep(rng.uniform(0.05, 0.3))  # a slow reader
        finally:
            stream.close()

    running: set[asyncio.Task[None]] = set()

    def spawn(n: int) -> None:
        if len(running) < 3:
            task = asyncio.create_task(client())
            running.add(task)
            task.add_done_callback(running.discard)

    await _until(deadline, 0.3, spawn)
    await asyncio.gather(*running)


async def _sampler(server: ServerProcess, api: Api, database: Path, deadline: float) -> list[Sample]:
    assert server.proc is not None
    pid = server.proc.pid
    started = time.monotonic()
    samples: list[Sample] = []

    async def one(n: int) -> None:
        scrape = await api.http.get("/metrics")
        [tasks] = _TASKS_LINE.findall(scrape.text)
        samples.append(
            Sample(
                at=time.monotonic() - started,
                rss_mib=_rss_mib(pid),
                open_fds=len(os.listdir(f"/proc/{pid}/fd")),
                asyncio_tasks=int(float(tasks)),
                db_mib=_db_mib(database),
            )
        )

    await _until(deadline, SAMPLE_EVERY, one)
    return samples


@pytest.mark.timeout(SECONDS + 120)
async def test_resources_stay_flat_under_a_mixed_load(
    start_server: StartServer, fake: FakeUpstream, tmp_path: Path
) -> None:
    server = start_server(
        llm={"base_url": fake.base_url, "api_key": "sk-test-key-0123456789", "model": fake.model},
        tasks={"max_concurrency": 4},
        sse={"heartbeat": 1.0, "retention": 60},
    )
    database = tmp_path / "data" / "test.db"
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = await register(http)
        deadline = time.monotonic() + SECONDS
        samples, *_ = await asyncio.gather(
            _sampler(server, api, database, deadline),
            _echo_submits(api, deadline),
            _insight_submits(api, deadline),
            _cancel_cycles(api, deadline),
            _stream_clients(server, api.token, deadline, random.Random(9)),
        )
        assert (await http.get("/readyz")).status_code == 200

    half = SECONDS / 2
    first = [s for s in samples if s.at < half]
    second = [s for s in samples if s.at >= half]
    assert len(first) >= 5 and len(second) >= 5, samples
    lines = [f"soak {SECONDS:g}s, {len(samples)} samples: metric first-half max -> second-half max (allowed)"]
    grown = []
    for name, allowed in TOLERANCE.items():
        before = max(getattr(s, name) for s in first)
        after = max(getattr(s, name) for s in second)
        lines.append(f"  {name}: {before:.1f} -> {after:.1f} (<= {allowed(before):.1f})")
        if after > allowed(before):
            grown.append(name)
    print("\n".join(lines))
    assert not grown, "\n".join(lines)
    assert server.terminate() == 0
