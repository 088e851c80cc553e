"""Clients that stop reading, and clients that send slowly, against a real server.

Connections are counted from the server's side of the kernel (``/proc/net/tcp``):
an answer that ended is not enough, the socket itself must be gone.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import base_config
from tests.support.client import POLL, register
from tests.support.process import ServerProcess, write_config
from tests.support.sse import RawStream

#: Every TCP state but TIME_WAIT (06) and CLOSE (07): a connection still held.
_HELD = {"01", "02", "03", "04", "05", "08", "09", "0B"}


def connections(port: int) -> dict[int, str]:
    """The connections to local ``port`` the kernel still holds on the server's side:
    the client's port → the TCP state (``01`` ESTABLISHED, ``04`` FIN_WAIT1, …)."""
    held = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if state in _HELD and int(local.rsplit(":", 1)[1], 16) == port:
                held[int(remote.rsplit(":", 1)[1], 16)] = state
    return held


def port_of(server: ServerProcess) -> int:
    return int(server.url.rsplit(":", 1)[1])


async def until(check: Callable[[], bool], what: str, timeout: float) -> float:
    """Poll ``check`` until it is true; how long that took (AssertionError after ``timeout``)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(POLL)
    return time.monotonic() - started


@pytest.fixture
def sse_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """``sse_server(**sections)``: ``tests.support.sse_server`` (the test server plus a
    ``stream`` task type that sends one delta per loop turn), stopped at teardown."""
    started: list[ServerProcess] = []

    def start(**sections: dict[str, Any]) -> ServerProcess:
        path = write_config(tmp_path / "config.toml", base_config(tmp_path, **sections))
        argv = [sys.executable, "-m", "tests.support.sse_server", "--config", str(path)]
        server = ServerProcess(path, argv=argv).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
        print(f"--- server log ({server.url}) ---\n" + "\n".join(server.logs[-60:]))


# -- slow consumers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("delta", "count"),
    [(100, 1500), (8_000, 75)],
    ids=["many-small-events", "few-large-events"],
)
async def test_streams_closed_for_overflow_are_aborted_at_the_connection(
    sse_server: Callable[..., ServerProcess], delta: int, count: int
) -> None:
    """50 clients that never read (a tiny receive buffer) fall behind a stream of
    events, one per loop turn: their streams are closed for overflow, and the server
    drops the connections too (a reset), although what it wrote was never read.
    Before, the answer ended but the connections stayed ESTABLISHED as long as the
    clients lived."""
    clients = 50
    server = sse_server(sse={"queue_size": 32, "max_connections_per_user": clients + 5, "heartbeat": 60.0})
    port = port_of(server)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = await register(http)
        opening = asyncio.Semaphore(25)

        async def stuck() -> RawStream:
            async with opening:
                stream = await RawStream.open(server.url, token=api.token, stuck=True)
                assert (await stream.events.next()).event == "connected"
                return stream

        streams = await asyncio.gather(*(stuck() for _ in range(clients)))
        try:
            ports = {s.writer.get_extra_info("sockname")[1] for s in streams}
            assert ports <= set(connections(port))
            task_id = await api.submit_id("stream", {"gate": "flow", "after": ["x" * delta] * count})
            await api.wait_status(task_id, "running")
            await api.open_gate("flow")
            await api.wait_status(task_id, "completed")
            try:
                took = await until(lambda: not ports & set(connections(port)), "the connections to go", timeout=10)
            except AssertionError:
                held = Counter(state for peer, state in connections(port).items() if peer in ports)
                raise AssertionError(f"of {clients} stalled connections, still held by TCP state: {dict(held)}") from None
            print(f"{clients} stalled streams ({count} events of {delta} B): connections gone {took:.2f}s after")
            # The server is fine: a new stream opens and gets its events.
            healthy = await RawStream.open(server.url, token=api.token)
            try:
                assert (await healthy.events.next()).event == "connected"
                echo = await api.submit_id("echo", {})
                assert (await healthy.events.until(lambda m: m.event == "task_completed")).pop().data["task_id"] == echo
            finally:
                healthy.close()
        finally:
            for stream in streams:
                stream.close()


# -- slow requests -------------------------------------------------------------------

READ_TIMEOUT = 1.0
#: How much later than ``server.read_timeout`` the close may come (a loaded machine).
MARGIN = 1.5


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the slow-request tests: a read timeout of 1 s, quick heartbeats."""
    directory = tmp_path_factory.mktemp("slow-requests")
    config = base_config(directory, server={"read_timeout": READ_TIMEOUT}, sse={"heartbeat": 0.2})
    server = ServerProcess(write_config(directory / "config.toml", config)).start()
    yield server
    server.stop()
    print(f"--- server log ({server.url}) ---\n" + "\n".join(server.logs[-60:]))


async def connect(server: ServerProcess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


async def until_closed(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (EOF or a reset);
    AssertionError if it is still open after ``timeout`` seconds."""
    received = b""
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                received += chunk
    except ConnectionError:
        pass
    except TimeoutError:
        raise AssertionError(f"the connection is still open after {timeout}s; got {received[:200]!r}") from None
    return received


def head(path: str, *lines: str) -> bytes:
    return ("\r\n".join([f"POST {path} HTTP/1.1", "Host: test", *lines]) + "\r\n").encode()


async def test_stalled_headers_close_the_connection(slow_server: ServerProcess) -> None:
    reader, writer = await connect(slow_server)
    try:
        started = time.monotonic()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")  # the blank line never comes
        await until_closed(reader, READ_TIMEOUT + MARGIN)
        print(f"stalled headers: closed after {time.monotonic() - started:.2f}s")
    finally:
        writer.close()


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/v1/articles"], ids=["public", "needs-a-token"])
async def test_a_stalled_body_gets_408_and_the_connection_closed(slow_server: ServerProcess, path: str) -> None:
    """Half a body, then nothing: unauthenticated (a 401 route waits for the body
    too) or not, the answer is 408 within the read timeout and the connection ends."""
    reader, writer = await connect(slow_server)
    try:
        started = time.monotonic()
        writer.write(head(path, "Content-Type: application/json", "Content-Length: 100", "") + b'{"username"')
        received = await until_closed(reader, READ_TIMEOUT + MARGIN)
        took = time.monotonic() - started
    finally:
        writer.close()
    print(f"stalled body on {path}: closed after {took:.2f}s")
    status_line, _, rest = received.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), received[:300]
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"connection: close" in headers.lower()
    assert b'"code": "request_timeout"' in body or b'"code":"request_timeout"' in body
    assert took >= READ_TIMEOUT - 0.1


async def test_a_trickled_body_is_cut_at_the_read_timeout(slow_server: ServerProcess) -> None:
    """One byte every 0.3 s keeps the connection busy but never finishes: an idle
    timeout would never fire, the deadline on the whole body does."""
    reader, writer = await connect(slow_server)
    body = b'{"username": "' + b"u" * 200 + b'"}'
    closed = asyncio.create_task(until_closed(reader, READ_TIMEOUT + MARGIN))
    try:
        started = time.monotonic()
        writer.write(head("/api/v1/auth/login", "Content-Type: application/json", f"Content-Length: {len(body)}", ""))
        for byte in body:
            if closed.done():
                break
            writer.write(bytes([byte]))
            try:
                await writer.drain()
            except ConnectionError:
                break
            await asyncio.wait({closed}, timeout=0.3)  # the trickle's pace
        received = await closed
        took = time.monotonic() - started
    finally:
        closed.cancel()
        writer.close()
    print(f"trickled body: closed after {took:.2f}s")
    assert received.startswith(b"HTTP/1.1 408"), received[:300]


async def test_a_slow_complete_body_within_the_timeout_is_answered(slow_server: ServerProcess) -> None:
    """A body sent in pieces over half the read timeout is a request like any other,
    and its connection stays open for the next one."""
    reader, writer = await connect(slow_server)
    body = b'{"username": "nobody-here", "password": "not the password"}'
    try:
        writer.write(head("/api/v1/auth/login", "Content-Type: application/json", f"Content-Length: {len(body)}", ""))
        for piece in (body[:10], body[10:30], body[30:]):
            await asyncio.sleep(READ_TIMEOUT / 6)  # the slow client's pace
            writer.write(piece)
        async with asyncio.timeout(10):
            status_line = await reader.readuntil(b"\r\n")
            headers = await reader.readuntil(b"\r\n\r\n")
            length = int(next(h for h in headers.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1])
            await reader.readexactly(length)
        assert status_line.startswith(b"HTTP/1.1 401"), status_line
        # Same connection, next request.
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        async with asyncio.timeout(10):
            assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
    finally:
        writer.close()


async def test_an_event_stream_outlives_the_read_timeout(slow_server: ServerProcess) -> None:
    """Its client sends nothing after the request, for much longer than the read
    timeout: the stream goes on (heartbeats every 0.2 s)."""
    async with httpx.AsyncClient(base_url=slow_server.url, timeout=30) as http:
        api = await register(http)
    stream = await RawStream.open(slow_server.url, token=api.token)
    try:
        assert (await stream.events.next()).event == "connected"
        started = time.monotonic()
        while time.monotonic() - started < 3 * READ_TIMEOUT:
            assert (await stream.events.next(timeout=2)).event == "heartbeat"
    finally:
        stream.close()
