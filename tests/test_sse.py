"""The event stream over real HTTP against real server processes.

Servers run ``tests.support.sse_server``: the test server plus a ``stream`` task
type whose deltas come in two parts around a gate. Messages are read with the
parser of ``tests/support/sse.py``, which keeps whether a message had an ``id:``
line. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import base_config
from tests.support.client import Api, register, wait_for
from tests.support.process import ServerProcess, write_config
from tests.support.sse import ALIAS_PATH, Message, RawStream, open_stream, refused

#: Every server test here runs on SQLite and on PostgreSQL (tests/conftest.py).
BOTH_DATABASES = True

LIFECYCLE = ("task_queued", "task_started", "task_completed", "task_failed", "task_cancelled")
SECRET = base_config(Path("/unused"))["auth"]["secret"]


# -- servers ------------------------------------------------------------------


def launch(directory: Path, **sections: dict[str, Any]) -> ServerProcess:
    path = write_config(directory / "config.toml", base_config(directory, **sections))
    argv = [sys.executable, "-m", "tests.support.sse_server", "--config", str(path)]
    return ServerProcess(path, argv=argv).start()


def show_log(server: ServerProcess) -> None:
    # Shown by pytest only when a test failed.
    print(f"--- server log ({server.url}) ---\n" + "\n".join(server.logs[-60:]))


@pytest.fixture(scope="module")
def main_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Shared by the tests that need no settings of their own: quick heartbeats,
    short tickets, the default queue and 10 streams per user."""
    server = launch(
        tmp_path_factory.mktemp("sse-main"),
        sse={"heartbeat": 0.2, "max_connections_per_user": 10},
        auth={"ticket_lifetime": 5},
    )
    yield server
    server.stop()
    show_log(server)


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """``launcher(name, **sections)``: a server of the test's own (stopped at teardown)."""
    started: list[ServerProcess] = []

    def start(name: str = "srv", **sections: dict[str, Any]) -> ServerProcess:
        directory = tmp_path / name
        directory.mkdir(exist_ok=True)
        server = launch(directory, **sections)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
        show_log(server)


@pytest.fixture
async def client(main_server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=main_server.url, timeout=30) as http:
        yield http


# -- helpers -------------------------------------------------------------------


async def user_id(api: Api) -> str:
    return str((await api.get("/api/v1/auth/me")).json()["user_id"])


def of_task(messages: list[Message], task_id: str) -> list[Message]:
    return [m for m in messages if isinstance(m.data, dict) and m.data.get("task_id") == task_id]


def names(messages: list[Message]) -> list[str]:
    return [m.event for m in messages]


def ids(messages: list[Message]) -> list[int | None]:
    return [m.id for m in messages]


def increasing(values: list[int | None]) -> bool:
    return all(isinstance(v, int) for v in values) and all(
        a < b for a, b in zip(values, values[1:])  # type: ignore[operator]
    )


def completed(task_id: str) -> Callable[[Message], bool]:
    return lambda m: m.event == "task_completed" and m.data["task_id"] == task_id


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


# -- the stream ------------------------------------------------------------------


async def test_connected_then_a_tasks_lifecycle_in_order_and_heartbeats(client: httpx.AsyncClient) -> None:
    api = await register(client)
    async with open_stream(client, api.token) as stream:
        response = stream.response
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"  # stronger than no-cache: nothing kept at all
        assert response.headers["x-accel-buffering"] == "no"
        assert "content-encoding" not in response.headers
        connected = await stream.events.next()
        assert connected.event == "connected" and connected.id is None
        assert connected.data["user_id"] == await user_id(api)
        assert isinstance(connected.data["last_event_id"], int)
        assert stream.events.parser.retries == [(3000, 0)]  # before the first message

        task_id = await api.submit_id("gate", {"gate": "lifecycle", "deltas": ["Hel", "lo", " world"]})
        await api.wait_status(task_id, "running")
        await api.open_gate("lifecycle")
        got = await stream.events.until(completed(task_id))
        assert names(got) == ["task_queued", "task_started"] + ["task_progress"] * 3 + ["task_completed"]
        assert increasing(ids(got))
        assert [m.data["index"] for m in got if m.event == "task_progress"] == [0, 1, 2]
        assert got[1].data["attempt"] == 1
        assert got[-1].data["result"] == {"gate": "lifecycle", "attempt": 1}

        beats = await stream.events.until(lambda m: m.event == "heartbeat", timeout=3, heartbeats=True)
        assert beats[-1].id is None and beats[-1].data == {}

    async with open_stream(client, api.token, path=ALIAS_PATH) as alias:
        assert alias.response.status_code == 200
        assert (await alias.events.next()).event == "connected"


@pytest.mark.parametrize("http_version", ["1.1", "1.0"])
async def test_the_body_is_framed_for_the_clients_http_version(
    client: httpx.AsyncClient, main_server: ServerProcess, http_version: str
) -> None:
    """The stream's pieces are written to the connection directly (api/asgi.py,
    DirectBody): chunked to an HTTP/1.1 client, bare to an HTTP/1.0 one, which reads to
    the close; every message arrives whole in either."""
    api = await register(client)
    stream = await RawStream.open(main_server.url, token=api.token, http_version=http_version)
    try:
        assert stream.status == 200
        chunked = stream.headers.get("transfer-encoding", "").lower() == "chunked"
        assert chunked == (http_version == "1.1"), stream.headers
        assert "content-length" not in stream.headers
        assert (await stream.events.next()).event == "connected"
        task_id = await api.submit_id("gate", {"gate": f"framing-{http_version}", "deltas": ["a", "b"]})
        await api.wait_status(task_id, "running")
        await api.open_gate(f"framing-{http_version}")
        got = await stream.events.until(completed(task_id))
        assert names(got) == ["task_queued", "task_started", "task_progress", "task_progress", "task_completed"]
        await stream.events.until(lambda m: m.event == "heartbeat", timeout=3, heartbeats=True)
        assert stream.body.startswith(b"retry: 3000\n\nevent: connected\n"), bytes(stream.body[:80])
        assert b"\r" not in stream.body and b"\n\n\n" not in stream.body
    finally:
        stream.close()


async def test_events_committed_together_go_out_in_one_write(launcher: Callable[..., ServerProcess]) -> None:
    """A finishing run hands its one slot to the next task in its outcome's commit:
    that task_completed and the next task_started reach the stream in one turn, and
    the stream writes them as one chunk (at a thousand streams, a thousand writes
    fewer), the events still whole and in order."""
    server = launcher("together", tasks={"max_concurrency": 1})
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = await register(http)
        stream = await RawStream.open(server.url, token=api.token)
        try:
            assert (await stream.events.next()).event == "connected"
            first = await api.submit_id("gate", {"gate": "together"})
            await api.wait_status(first, "running")
            second = await api.submit_id("echo", {})
            await stream.events.until(lambda m: m.event == "task_queued" and m.data["task_id"] == second)
            await api.open_gate("together")
            got = await stream.events.until(completed(second))
        finally:
            stream.close()
    assert [(m.event, m.data["task_id"]) for m in got] == [
        ("task_completed", first), ("task_started", second), ("task_completed", second),
    ]
    together = [chunk for chunk in stream.chunks if f'"task_id":"{first}"'.encode() in chunk
                and b"event: task_completed" in chunk]
    assert len(together) == 1, stream.chunks
    chunk = together[0]
    assert b"event: task_started" in chunk and f'"task_id":"{second}"'.encode() in chunk, stream.chunks
    assert chunk.index(b"event: task_completed") < chunk.index(b"event: task_started"), chunk


async def test_resume_with_the_header_or_the_query_gets_exactly_what_was_missed(
    client: httpx.AsyncClient,
) -> None:
    api = await register(client)
    async with open_stream(client, api.token) as reference:
        assert (await reference.events.next()).event == "connected"
        async with open_stream(client, api.token) as first:
            assert (await first.events.next()).event == "connected"
            t1 = await api.submit_id("echo", {"n": 1})
            seen = await first.events.until(lambda m: m.event == "task_queued")
        resume_after = seen[-1].id
        assert resume_after is not None
        # Missed while disconnected: the rest of t1, all of t2, and a task being written.
        await api.wait_status(t1, "completed")
        t2 = await api.submit_id("echo", {"n": 2})
        await api.wait_status(t2, "completed")
        g = await api.submit_id("gate", {"gate": "resume-query", "deltas": ["a", "b"]})
        everything = await reference.events.until(
            lambda m: m.event == "task_progress" and m.data["index"] == 1
        )
        expected = [(m.id, m.event) for m in everything if m.id is not None and m.id > resume_after]
        assert names(of_task(everything, t1))[1:] == ["task_started", "task_completed"]

        async with open_stream(client, api.token, headers={"Last-Event-ID": str(resume_after)}) as by_header:
            connected = await by_header.events.next()
            assert connected.data["last_event_id"] == resume_after
            replayed = await by_header.events.take(len(expected))
            assert [(m.id, m.event) for m in replayed] == expected
            quiet = await by_header.events.until(lambda m: m.event == "heartbeat", timeout=3, heartbeats=True)
            assert names(quiet) == ["heartbeat"]  # nothing more: no duplicate

        async with open_stream(client, api.token, params={"last_event_id": resume_after}) as by_query:
            connected = await by_query.events.next()
            assert connected.data["last_event_id"] == resume_after
            replayed = await by_query.events.take(len(expected))
            assert [(m.id, m.event) for m in replayed] == expected
            await api.open_gate("resume-query")
            live = await by_query.events.until(completed(g))  # then live, once
            assert names(live) == ["task_completed"]
            assert increasing([expected[-1][0], live[0].id])
        assert (await reference.events.until(completed(g)))[-1].id == live[0].id


async def test_resume_after_sigkill_and_restart(launcher: Callable[..., ServerProcess]) -> None:
    server = launcher()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = await register(http)
        async with open_stream(http, api.token) as reference:
            await reference.events.next()
            async with open_stream(http, api.token) as first:
                await first.events.next()
                t1 = await api.submit_id("echo", {"n": 1})
                resume_after = (await first.events.until(completed(t1)))[-1].id
            t2 = await api.submit_id("echo", {"n": 2})
            t3 = await api.submit_id("echo", {"n": 3})
            before_kill = await reference.events.until(
                lambda m: _count(reference.events.received, "task_completed") == 3
            )
    assert resume_after is not None
    missed = [(m.id, m.event, m.data["task_id"]) for m in before_kill if m.id is not None and m.id > resume_after]
    assert sorted(name for _, name, _ in missed) == sorted(["task_queued", "task_started", "task_completed"] * 2)
    assert {task for _, _, task in missed} == {t2, t3}

    server.kill()
    server.start()  # same config, same database
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = api.on(http)
        async with open_stream(http, api.token, headers={"Last-Event-ID": str(resume_after)}) as again:
            connected = await again.events.next()
            assert connected.data["last_event_id"] == resume_after
            replayed = await again.events.take(len(missed))
            assert [(m.id, m.event, m.data["task_id"]) for m in replayed] == missed
            t4 = await api.submit_id("echo", {"n": 4})
            live = await again.events.until(completed(t4))
            assert names(live) == ["task_queued", "task_started", "task_completed"]
            assert increasing([missed[-1][0], *ids(live)])  # ids keep growing across the restart


async def test_reset_when_missed_events_were_pruned(launcher: Callable[..., ServerProcess]) -> None:
    server = launcher()
    database = Path(server.config_path).parent / "data" / "test.db"
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = await register(http)
        async with open_stream(http, api.token) as stream:
            await stream.events.next()
            for n in range(3):
                await api.submit_id("echo", {"n": n})
            got = await stream.events.until(lambda m: _count(stream.events.received, "task_completed") == 3)
    stored = [m.id for m in got if m.event in LIFECYCLE]
    assert len(stored) == 9 and increasing(stored)
    assert server.terminate() == 0
    # As pruning would leave it: the first six events gone, and one more so old
    # that the server prunes it when it starts.
    with closing(sqlite3.connect(database)) as conn:
        conn.execute("DELETE FROM events WHERE id <= ?", (stored[5],))
        conn.execute("UPDATE events SET created_at = '2000-01-01T00:00:00.000Z' WHERE id = ?", (stored[6],))
        conn.commit()
    server.start()
    with closing(sqlite3.connect(database)) as conn:
        kept = [row[0] for row in conn.execute("SELECT id FROM events ORDER BY id")]
    assert kept == stored[7:]  # pruned at start

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = api.on(http)
        for too_old in (0, stored[2], stored[5]):
            async with open_stream(http, api.token, params={"last_event_id": too_old}) as stream:
                head = await stream.events.take(2)
                assert names(head) == ["connected", "reset"]
                assert head[1].id is None and head[1].data == {"reason": "events_pruned"}
                assert head[0].data["last_event_id"] >= stored[-1]
                t = await api.submit_id("echo", {"after": too_old})
                live = await stream.events.until(completed(t))  # and it goes on live
                assert names(live) == ["task_queued", "task_started", "task_completed"]
        async with open_stream(http, api.token, params={"last_event_id": stored[6]}) as stream:
            head = await stream.events.take(3)  # nothing after stored[6] is missing
            assert names(head) == ["connected", *names(got[7:])]
            assert ids(head[1:]) == stored[7:]


async def test_a_malformed_id_is_400_and_a_future_id_resets(client: httpx.AsyncClient) -> None:
    api = await register(client)
    bad = ["abc", "-1", "1.5", "12x", "0x10", "1e3", "1" * 101]
    cases: list[dict[str, Any]] = [{"headers": {"Last-Event-ID": b}} for b in bad]
    cases += [{"params": {"last_event_id": b}} for b in [*bad, "٣"]]  # a non-ASCII digit too
    for kw in cases:
        status, body = await refused(client, api.token, **kw)
        assert status == 400, kw
        assert body["error"]["code"] == "invalid_last_event_id"

    async with open_stream(client, api.token, headers={"Last-Event-ID": str(10**30)}) as stream:
        head = await stream.events.take(2)
        assert names(head) == ["connected", "reset"]
        assert head[1].data == {"reason": "unknown_event_id"} and head[1].id is None
        assert head[0].data["last_event_id"] < 10**30
        t = await api.submit_id("echo", {"future": True})
        assert names(await stream.events.until(completed(t))) == ["task_queued", "task_started", "task_completed"]


async def test_a_user_never_sees_another_users_events(client: httpx.AsyncClient) -> None:
    alice, bob = await register(client), await register(client)
    async with open_stream(client, alice.token) as a, open_stream(client, bob.token) as b:
        await a.events.next()
        await b.events.next()
        for n in range(3):
            await alice.submit_id("echo", {"n": n})
        bobs = [await bob.submit_id("echo", {"n": n}) for n in range(2)]
        await a.events.until(lambda m: _count(a.events.received, "task_completed") == 3)
        got = await b.events.until(lambda m: _count(b.events.received, "task_completed") == 2)
        # One more task of Alice's, then one of Bob's: Bob's stream goes from his to his.
        last_alice = await alice.submit_id("echo", {"n": 9})
        await alice.wait_status(last_alice, "completed")
        last_bob = await bob.submit_id("echo", {"n": 9})
        got += await b.events.until(completed(last_bob))
    assert {m.data["task_id"] for m in got} == {*bobs, last_bob}
    assert len(got) == 9

    async with open_stream(client, bob.token, params={"last_event_id": 0}) as replay:
        assert (await replay.events.next()).data["last_event_id"] == 0
        replayed = await replay.events.take(9)
        assert [(m.id, m.event) for m in replayed] == [(m.id, m.event) for m in got]
        beat = await replay.events.until(lambda m: m.event == "heartbeat", timeout=3, heartbeats=True)
        assert names(beat) == ["heartbeat"]  # and nothing of Alice's


def _count(messages: list[Message], event: str) -> int:
    return sum(m.event == event for m in messages)


async def test_credentials(client: httpx.AsyncClient, main_server: ServerProcess) -> None:
    api = await register(client)
    uid = await user_id(api)
    now = int(time.time())

    session = jwt.decode(api.token, options={"verify_signature": False})["sid"]

    def token(secret: str = SECRET, **claims: Any) -> str:
        return jwt.encode(
            {"sub": uid, "sid": session, "typ": "access", "iat": now, "exp": now + 60, **claims}, secret, "HS256"
        )

    refresh = (await client.post(
        "/api/v1/auth/login", json={"username": api.username, "password": "correct horse battery"}
    )).json()["refresh_token"]
    for kw in (
        {},
        {"params": {"token": token(exp=now - 10, iat=now - 100)}},
        {"params": {"token": token(secret="another-secret-" + "y" * 40)}},
        {"params": {"token": refresh}},
        {"params": {"ticket": api.token}},
        {"headers": {"Authorization": f"Bearer {token(exp=now - 10, iat=now - 100)}"}},
        {"headers": {"Authorization": "Bearer not-a-token"}},
    ):
        status, body = await refused(client, **kw)  # type: ignore[arg-type]
        assert status == 401, kw
        assert body["error"]["code"] == "unauthorized"

    async with open_stream(client, params={"token": api.token}) as stream:
        assert stream.response.status_code == 200
        assert (await stream.events.next()).data["user_id"] == uid

    # A ticket asked for with an access token that expires in 7 s (the ticket itself
    # lives 5 s on this server): the stream it opens lasts as long as that token.
    short = token(exp=int(time.time()) + 7)
    asked = await client.post("/api/v1/sse/ticket", headers={"Authorization": f"Bearer {short}"})
    ticket = asked.json()["ticket"]
    async with open_stream(client, params={"ticket": ticket}) as stream:
        opened = time.monotonic()
        assert stream.response.status_code == 200
        assert (await stream.events.next()).data["user_id"] == uid
        status, body = await refused(client, params={"ticket": ticket})  # used once already
        assert status == 401 and body["error"]["code"] == "unauthorized"
        ending = await stream.events.until(lambda m: m.event == "closed", timeout=12)
        assert ending[-1].data == {"reason": "session_expired"} and ending[-1].id is None
        assert time.monotonic() - opened > 5  # outlived the ticket
        assert await stream.events.to_end(timeout=3) == []

    # Query strings never reach the log: wait until the log has the lines of the
    # requests above, then look for the secrets.
    marker = f"/healthz-{uid}"
    await client.get(marker)
    await wait_for(lambda: _logged(main_server, marker), "the access log line")
    assert api.token not in main_server.log_text
    assert ticket not in main_server.log_text
    assert "?token=" not in main_server.log_text and "?ticket=" not in main_server.log_text


async def _logged(server: ServerProcess, text: str) -> bool:
    return text in server.log_text


async def test_streams_per_user_are_limited_and_a_disconnect_frees_one_at_once(
    client: httpx.AsyncClient, main_server: ServerProcess
) -> None:
    api = await register(client)
    streams = []
    try:
        for _ in range(10):
            stream = await RawStream.open(main_server.url, token=api.token)
            assert stream.status == 200
            assert (await stream.events.next()).event == "connected"
            streams.append(stream)
        status, body = await refused(client, api.token)
        assert status == 429 and body["error"]["code"] == "too_many_streams"
        other = await register(client)  # the limit is per user
        async with open_stream(client, other.token) as stream:
            assert stream.response.status_code == 200

        streams.pop().close()
        started = time.monotonic()
        await wait_for(lambda: _opens(client, api.token), "a free stream slot", timeout=3)
        assert time.monotonic() - started < 2
    finally:
        for stream in streams:
            stream.close()


async def _opens(client: httpx.AsyncClient, token: str) -> bool:
    status, _ = await refused(client, token)
    return status == 200


async def test_reconnect_while_an_insight_is_written_gets_the_text_so_far_then_live(
    client: httpx.AsyncClient,
) -> None:
    api = await register(client)
    before, after = ["Once ", "upon ", "a "], ["time, ", "the ", "end."]
    async with open_stream(client, api.token) as first:
        await first.events.next()
        task_id = await api.submit_id("stream", {"gate": "insight", "before": before, "after": after})
        seen = await first.events.until(lambda m: m.event == "task_progress" and m.data["index"] == 2)
    deltas_seen = [m for m in seen if m.event == "task_progress"][:2]  # the client kept two
    async with open_stream(client, api.token, headers={"Last-Event-ID": str(deltas_seen[-1].id)}) as resumed, \
            open_stream(client, api.token) as fresh:
        assert (await resumed.events.next()).event == "connected"
        assert (await fresh.events.next()).event == "connected"
        so_far = await fresh.events.take(3)
        assert [(m.data["index"], m.data["delta"]) for m in so_far] == list(enumerate(before))
        assert ids(so_far) == ids([m for m in seen if m.event == "task_progress"])  # original ids
        resumed_so_far = await resumed.events.take(1)
        assert [m.data["index"] for m in resumed_so_far] == [2]

        await api.open_gate("insight")
        for stream, kept in ((fresh, so_far), (resumed, deltas_seen + resumed_so_far)):
            rest = await stream.events.until(completed(task_id))
            progress = kept + [m for m in rest if m.event == "task_progress"]
            assert increasing(ids(progress))
            by_index = {(m.data["attempt"], m.data["index"]): m.data["delta"] for m in progress}
            assert sorted(by_index) == [(1, i) for i in range(6)]
            text = "".join(by_index[key] for key in sorted(by_index))
            assert text == rest[-1].data["result"]["text"] == "".join(before + after)


# -- slow clients, many clients, shutdown -----------------------------------------------


@pytest.fixture(scope="module")
def small_queue_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = launch(
        tmp_path_factory.mktemp("sse-small-queue"),
        sse={"queue_size": 10, "max_connections_per_user": 300, "heartbeat": 30.0},
    )
    yield server
    server.stop()
    show_log(server)


async def test_a_stream_that_falls_behind_is_closed_and_resumes_from_the_log(
    small_queue_server: ServerProcess,
) -> None:
    async with httpx.AsyncClient(base_url=small_queue_server.url, timeout=30) as http:
        api = await register(http)
        async with open_stream(http, api.token) as stream:
            await stream.events.next()
            # Events with ids reach the client first (a task starting with its submit
            # publishes its start in the same turn as its first deltas).
            seen = await stream.events.until(completed(await api.submit_id("echo", {})))
            deltas = [f"d{i} " for i in range(15)]  # one burst, more than the queue holds
            task_id = await api.submit_id("gate", {"gate": "burst", "deltas": deltas})
            rest = await stream.events.to_end(timeout=10)
        assert rest[-1].event == "closed" and rest[-1].data == {"reason": "overflow"}
        assert rest[-1].id is None
        last = [m.id for m in seen + rest if m.id is not None][-1]
        async with open_stream(http, api.token, headers={"Last-Event-ID": str(last)}) as again:
            await again.events.next()
            await api.open_gate("burst")
            more = await again.events.until(completed(task_id))
        progress = [m for m in rest + more if m.event == "task_progress"]
        assert [m.data["index"] for m in progress] == list(range(15))
        assert "".join(m.data["delta"] for m in progress) == "".join(deltas)


async def test_stuck_clients_are_closed_and_memory_comes_back(small_queue_server: ServerProcess) -> None:
    """Waves of a few hundred clients that stop reading while big deltas flow: each is
    closed once its queue fills, the publisher never waits, and what they held is
    given back — the allocator keeps the freed pages for reuse, so RSS stays near the
    first wave's peak instead of returning to the start, but later waves reuse them
    (a leak would add the whole first-wave growth again with every wave)."""
    server = small_queue_server
    assert server.proc is not None
    pid = server.proc.pid
    stuck_count, delta = 300, "x" * 32_000
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        healthy = await register(http)
        samples: list[tuple[str, float]] = [("start", rss_mib(pid))]
        for wave in range(3):
            api = await register(http)
            opening = asyncio.Semaphore(50)

            async def stuck() -> RawStream:
                async with opening:
                    stream = await RawStream.open(server.url, token=api.token, stuck=True)
                    assert (await stream.events.next()).event == "connected"
                    return stream

            streams = await asyncio.gather(*(stuck() for _ in range(stuck_count)))
            try:
                status, _ = await refused(http, api.token)
                assert status == 429  # all of them are open
                for round_ in range(3):  # 256 KB per stream per round: more than the socket holds
                    gate = f"stuck-{wave}-{round_}"
                    started = time.monotonic()
                    task_id = await api.submit_id("gate", {"gate": gate, "deltas": [delta] * 8})
                    await api.wait_status(task_id, "running")
                    await api.open_gate(gate)
                    await api.wait_status(task_id, "completed")
                    assert time.monotonic() - started < 5  # the publisher never waited
                samples.append((f"wave {wave} peak", rss_mib(pid)))
                # Closed on the server while the clients still hold their sockets.
                await wait_for(lambda: _opens(http, api.token), "the stuck streams to be closed", timeout=10)
            finally:
                for stream in streams:
                    stream.close()
            await wait_for(lambda: _fds_below(pid, 60), "the server to drop the connections")
            # Still healthy: another user's stream works as ever.
            async with open_stream(http, healthy.token) as stream:
                await stream.events.next()
                t = await healthy.submit_id("echo", {"wave": wave})
                assert names(await stream.events.until(completed(t))) == [
                    "task_queued", "task_started", "task_completed"]
            samples.append((f"wave {wave} after", rss_mib(pid)))
    print("RSS MiB:", ", ".join(f"{name} {value:.0f}" for name, value in samples))
    start, after_first, after_last = samples[0][1], samples[2][1], samples[-1][1]
    assert after_first - start < 100  # bounded per stream (≈ 330 KiB each), whatever it was sent
    assert after_last - after_first < 60  # two more waves: nothing kept per closed stream


async def _fds_below(pid: int, count: int) -> bool:
    return open_fds(pid) < count


async def test_a_thousand_streams_each_get_their_users_broadcast_once(
    launcher: Callable[..., ServerProcess],
) -> None:
    users, per_user = 10, 100
    server = launcher(sse={"max_connections_per_user": per_user, "heartbeat": 60.0})
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        hashing = asyncio.Semaphore(2)  # more sign-ins at once than the hasher queues get 503 busy

        async def sign_up() -> Api:
            async with hashing:
                return await register(http)

        apis = await asyncio.gather(*(sign_up() for _ in range(users)))
        opening = asyncio.Semaphore(100)

        async def connect(api: Api) -> RawStream:
            async with opening:
                stream = await RawStream.open(server.url, token=api.token)
                assert stream.status == 200
                assert (await stream.events.next()).event == "connected"
                return stream

        started = time.monotonic()
        streams = await asyncio.gather(*(connect(api) for api in apis for _ in range(per_user)))
        opened = time.monotonic() - started
        try:
            started = time.monotonic()
            tasks = await asyncio.gather(*(api.submit_id("echo", {"user": i}) for i, api in enumerate(apis)))
            got = await asyncio.gather(*(
                s.events.until(completed(tasks[n // per_user]), timeout=30) for n, s in enumerate(streams)
            ))
            delivered = time.monotonic() - started
        finally:
            for stream in streams:
                stream.close()
    print(f"1000 streams: opened in {opened:.2f}s, one broadcast each delivered in {delivered:.2f}s")
    for n, messages in enumerate(got):
        assert {m.data["task_id"] for m in messages} == {tasks[n // per_user]}
        assert names(messages) == ["task_queued", "task_started", "task_completed"]
        assert increasing(ids(messages))
    for user in range(users):  # every stream of a user saw the very same events
        assert len({tuple(ids(m)) for m in got[user * per_user:(user + 1) * per_user]}) == 1


async def test_sigterm_with_open_streams_exits_within_the_grace(launcher: Callable[..., ServerProcess]) -> None:
    grace = 2.0
    server = launcher(server={"graceful_timeout": grace}, sse={"max_connections_per_user": 100})
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = await register(http)
        streams = [await RawStream.open(server.url, token=api.token) for _ in range(100)]
        try:
            for stream in streams:
                assert (await stream.events.next()).event == "connected"
            running = await api.submit_id("gate", {"gate": "never-opened"})
            await api.wait_status(running, "running")
            started = time.monotonic()
            server.send(signal.SIGTERM)
            ends = await asyncio.gather(*(s.events.to_end(timeout=grace + 5) for s in streams))
            exit_code = await asyncio.to_thread(server.wait, grace + 5)
            took = time.monotonic() - started
        finally:
            for stream in streams:
                stream.close()
    print(f"SIGTERM with 100 streams and a running task: exited in {took:.2f}s (grace {grace}s)")
    assert exit_code == 0
    assert took < grace + 1
    for messages in ends:
        assert messages[-1].event == "closed" and messages[-1].data == {"reason": "shutdown"}
        # The interrupted task went back to pending, and the stream said so first.
        assert names(of_task(messages, running)) == ["task_queued", "task_started", "task_queued"]


async def test_sigterm_with_stuck_clients_exits_within_the_grace(
    launcher: Callable[..., ServerProcess],
) -> None:
    grace = 1.0
    server = launcher(server={"graceful_timeout": grace}, sse={"max_connections_per_user": 20})
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = await register(http)
        streams = [await RawStream.open(server.url, token=api.token, stuck=True) for _ in range(20)]
        try:
            for stream in streams:
                assert (await stream.events.next()).event == "connected"
            task_id = await api.submit_id("gate", {"gate": "stuck-term", "deltas": ["x" * 32_000] * 8})
            await api.wait_status(task_id, "running")
            await api.open_gate("stuck-term")
            await api.wait_status(task_id, "completed")
            started = time.monotonic()
            server.send(signal.SIGTERM)
            try:
                await asyncio.to_thread(server.wait, grace + 3)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"still running {time.monotonic() - started:.1f}s after SIGTERM") from None
            assert time.monotonic() - started < grace + 1
        finally:
            for stream in streams:
                stream.close()
