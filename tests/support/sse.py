"""Reading Server-Sent Events in tests: a parser that keeps what a generic client
hides (whether a message had an ``id:`` line), bounded waits, and two transports —
httpx for ordinary streams, raw asyncio sockets for many or deliberately slow ones."""

from __future__ import annotations

import asyncio
import codecs
import json
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

STREAM_PATH = "/api/v1/sse/analysis-notifications"
ALIAS_PATH = "/api/v1/events"


@dataclass(frozen=True)
class Message:
    event: str
    data: Any
    #: The ``id:`` line as an integer; None when the message had none.
    id: int | None


class Parser:
    """Incremental ``text/event-stream`` parser (fields ``id``, ``event``, ``data``,
    ``retry``; comments ignored). ``data`` is decoded as JSON."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._buffer = ""
        #: Every ``retry:`` value seen, in order, with the number of messages before it.
        self.retries: list[tuple[int, int]] = []
        self._count = 0

    def feed(self, chunk: bytes) -> list[Message]:
        self._buffer += self._decoder.decode(chunk).replace("\r\n", "\n")
        messages = []
        while "\n\n" in self._buffer:
            block, self._buffer = self._buffer.split("\n\n", 1)
            message = self._block(block)
            if message is not None:
                messages.append(message)
                self._count += 1
        return messages

    def _block(self, block: str) -> Message | None:
        event, event_id, data = "message", None, []
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                event_id = int(value)
            elif name == "retry":
                self.retries.append((int(value), self._count))
        if not data:
            return None
        return Message(event, json.loads("\n".join(data)), event_id)


class EventReader:
    """The messages of one open stream, with bounded waits."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self.parser = Parser()
        self._pending: deque[Message] = deque()
        #: Every message handed out so far.
        self.received: list[Message] = []
        self.eof = False

    async def next(self, timeout: float = 10.0) -> Message:
        """The next message; EOFError when the stream ended, TimeoutError after ``timeout``."""
        async with asyncio.timeout(timeout):
            while not self._pending:
                if self.eof:
                    raise EOFError("the stream ended")
                try:
                    chunk = await anext(self._chunks)
                except (StopAsyncIteration, httpx.RemoteProtocolError, httpx.ReadError):
                    self.eof = True
                    continue
                self._pending.extend(self.parser.feed(chunk))
        message = self._pending.popleft()
        self.received.append(message)
        return message

    async def until(
        self, done: Callable[[Message], bool], timeout: float = 10.0, *, heartbeats: bool = False
    ) -> list[Message]:
        """Messages up to and including the first for which ``done`` is true
        (heartbeats left out unless asked for)."""
        deadline = time.monotonic() + timeout
        out = []
        while True:
            message = await self.next(max(0.0, deadline - time.monotonic()))
            if heartbeats or message.event != "heartbeat":
                out.append(message)
            if done(message):
                return out

    async def take(self, count: int, timeout: float = 10.0) -> list[Message]:
        """The next ``count`` messages other than heartbeats."""
        deadline = time.monotonic() + timeout
        out: list[Message] = []
        while len(out) < count:
            message = await self.next(max(0.0, deadline - time.monotonic()))
            if message.event != "heartbeat":
                out.append(message)
        return out

    async def to_end(self, timeout: float = 10.0) -> list[Message]:
        """Every message until the stream ends (heartbeats left out)."""
        deadline = time.monotonic() + timeout
        out = []
        while True:
            try:
                message = await self.next(max(0.0, deadline - time.monotonic()))
            except EOFError:
                return out
            if message.event != "heartbeat":
                out.append(message)


@dataclass
class Stream:
    response: httpx.Response
    events: EventReader


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@asynccontextmanager
async def open_stream(
    http: httpx.AsyncClient,
    token: str | None = None,
    *,
    path: str = STREAM_PATH,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
) -> AsyncIterator[Stream]:
    """A stream over httpx (any status: check ``response.status_code``)."""
    all_headers = {"Accept": "text/event-stream", **auth_headers(token), **(headers or {})}
    async with http.stream("GET", path, headers=all_headers, params=params) as response:
        yield Stream(response, EventReader(response.aiter_raw()))


async def refused(
    http: httpx.AsyncClient,
    token: str | None = None,
    **kw: Any,
) -> tuple[int, dict[str, Any]]:
    """Open a stream that is expected to be refused: its status and JSON body."""
    async with open_stream(http, token, **kw) as stream:
        status = stream.response.status_code
        if status == 200:
            return status, {}
        await stream.response.aread()
        return status, stream.response.json()


class RawStream:
    """A stream over a plain socket: cheap enough for a thousand at once, and able to
    stop reading like a stuck client. ``stuck=True`` keeps what the kernels buffer for
    it small (receive buffer, and a small MSS, which keeps the server's send buffer
    from growing to megabytes on loopback) and pauses the reader after 2 KiB, so
    the server's writes block soon after the client stops calling ``next``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.headers: dict[str, str] = {}
        #: The body as received so far, unframed (chunk sizes removed).
        self.body = bytearray()
        #: The body's chunks as received so far (chunked answers: one per write).
        self.chunks: list[bytes] = []
        self.events = EventReader(self._body())

    @classmethod
    async def open(
        cls,
        base_url: str,
        path: str = STREAM_PATH,
        *,
        token: str | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        stuck: bool = False,
        timeout: float = 10.0,
        http_version: str = "1.1",
    ) -> RawStream:
        url = urlsplit(base_url)
        host, port = url.hostname or "127.0.0.1", url.port or 80
        async with asyncio.timeout(timeout):
            if not stuck:
                reader, writer = await asyncio.open_connection(host, port)
            else:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
                sock.setblocking(False)
                try:
                    await asyncio.get_running_loop().sock_connect(sock, (host, port))
                except BaseException:
                    sock.close()
                    raise
                reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
            stream = cls(reader, writer)
            target = path + ("?" + urlencode(params) if params else "")
            lines = [f"GET {target} HTTP/{http_version}", f"Host: {host}:{port}", "Accept: text/event-stream"]
            lines += [f"{k}: {v}" for k, v in {**auth_headers(token), **(headers or {})}.items()]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        stream.status = int(status_line.split()[1])
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                stream.headers[name.strip().lower()] = value.strip()
        return stream

    async def _body(self) -> AsyncIterator[bytes]:
        if self.headers.get("transfer-encoding", "").lower() != "chunked":
            if "content-length" in self.headers:
                yield await self.reader.readexactly(int(self.headers["content-length"]))
                return
            while data := await self.reader.read(65536):  # to the close (HTTP/1.0)
                self.body += data
                yield data
            return
        while True:
            try:
                size = int((await self.reader.readline()).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    return
                data = await self.reader.readexactly(size)
                await self.reader.readexactly(2)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            self.body += data
            self.chunks.append(data)
            yield data

    def close(self) -> None:
        """Close at once (a reset when data is still unread, as when a process dies)."""
        self.writer.transport.abort()
