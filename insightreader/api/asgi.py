"""ASGI middleware under Quart: what must hold for every connection and every answer,
whichever route (or none) handled the request.

- **Exposure headers.** Every answer carries ``X-Content-Type-Options: nosniff``;
  every answer under ``/api/v1`` carries ``Cache-Control: no-store`` (tokens travel
  in them), the event stream included: no-store is stronger than the no-cache it
  sent before (nothing is kept at all), and proxy buffering is turned off by
  ``X-Accel-Buffering: no``, not by ``Cache-Control``.
- **Read deadline.** Hypercorn closes a connection whose request headers are not
  complete within its keep-alive timeout (``server.hypercorn_config`` keeps that
  within ``server.read_timeout``), but it has no limit on how long a body may take: a
  client trickling a byte at a time holds the connection for ever. Here the whole
  body must have arrived ``server.read_timeout`` seconds after the headers did, else
  the answer is ``408 request_timeout`` and the connection is closed. Hypercorn's own
  ``read_timeout`` is not used: it is a limit on idleness between two reads of the
  connection, which a trickle defeats, and which would cut every event stream
  (its client sends nothing once the request is made).
- **Ending a connection.** asyncio closes a transport only once its buffer is
  flushed, so a connection to a client that stopped reading stays open after its
  answer ended, for as long as the client lives. Hypercorn has no API to abort one;
  :func:`transport_of` finds the transport behind the ``send`` callable Hypercorn
  hands the app, and :func:`end_connection` aborts it (TCP reset, with whatever is
  unsent). That happens to a connection whose answer was cut short (the app was
  cancelled mid-answer: a stream whose client takes no data, Quart's response
  timeout), and ``grace`` seconds after an answer that asked for it
  (:data:`SCOPE_END_CONNECTION`: an event stream closed for overflow; every event
  stream says ``Connection: close``, so no client reuses the connection after it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, MutableMapping
from typing import Any

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Hypercorn's own ``send`` for the connection (:class:`ConnectionGuard` sets it): the
#: way to the connection's writer under the middleware's own ``send`` wrappers.
SCOPE_SERVER_SEND = "insightreader.server_send"
#: A scope key an app sets, before its answer starts, to a callable: when it returns
#: True once the answer has ended, the connection is aborted ``grace`` seconds later.
#: The answer carries ``Connection: close`` (HTTP/1), so the connection is never
#: reused after it whatever the callable says.
SCOPE_END_CONNECTION = "insightreader.end_connection"
API_PREFIX = "/api/v1"
_NOSNIFF = (b"x-content-type-options", b"nosniff")
_NO_STORE = (b"cache-control", b"no-store")
_CLOSE = (b"connection", b"close")
#: SO_LINGER on, with a zero timeout: closing the socket sends a reset and drops
#: what is unsent, instead of leaving the kernel to deliver it to a client that
#: does not read.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


def exposure_headers(path: str, headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` with ``nosniff`` added, and ``Cache-Control: no-store`` in place of
    any ``Cache-Control`` under ``/api/v1``."""
    api = path == API_PREFIX or path.startswith(API_PREFIX + "/")
    replaced = {_NOSNIFF[0], _NO_STORE[0]} if api else {_NOSNIFF[0]}
    kept = [(name, value) for name, value in headers if name.lower() not in replaced]
    return [*kept, _NOSNIFF, *([_NO_STORE] if api else [])]


class ExposureHeaders:
    """Adds :func:`exposure_headers` to every answer of the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": exposure_headers(path, message.get("headers", ()))}
            await send(message)

        await self.app(scope, receive, send_with_headers)


# -- event streams, outside Quart's request cycle ------------------------------------

#: A scope key a route sets, before it answers ``200``, to the async iterator of the
#: answer's body: :class:`StreamHandoff` sends that body once Quart is done with the
#: request (the route's answer must have an empty body).
SCOPE_STREAM_BODY = "insightreader.stream_body"


class StreamHandoff:
    """Serves an event stream's body after Quart has finished its request.

    Quart keeps, for every request until its answer ends, the request object, its
    contexts and two tasks (one reads the connection, one runs the handler): an event
    stream lives for hours, and that was a quarter of what an idle one cost. So the
    stream's route does everything a request does through Quart (authentication,
    errors, request id, the stream limit, the subscription) and answers with its headers
    and an empty body, leaving the body in the scope (:data:`SCOPE_STREAM_BODY`). Here
    the answer's end is held back, Quart's request finishes and is freed, and the body is
    sent from the connection's own task, while one small task waits for the client to
    disconnect and then ends the stream (as Quart did, by cancelling the sender).

    Over HTTP/1 the body's pieces are written to the connection directly
    (:class:`DirectBody`), its end still through the server.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        handed_off = False

        async def send_or_hold(message: Message) -> None:
            nonlocal handed_off
            if message["type"] == "http.response.start":
                handed_off = SCOPE_STREAM_BODY in scope and message["status"] == 200
                if handed_off:  # the length of the empty body Quart answered is not the stream's
                    headers = [(n, v) for n, v in message.get("headers", ()) if n.lower() != b"content-length"]
                    message = {**message, "headers": headers}
            elif handed_off and message["type"] == "http.response.body" and not message.get("more_body", False):
                return  # the stream's body follows
            await send(message)

        try:
            await self.app(scope, receive, send_or_hold)
        finally:
            body: AsyncIterator[bytes] | None = scope.pop(SCOPE_STREAM_BODY, None)
            if body is not None and not handed_off:
                await body.aclose()  # type: ignore[attr-defined]
        if body is not None and handed_off:
            await _send_stream(body, receive, send, DirectBody.of(scope))


class DirectBody:
    """Writes the pieces of an answer's body straight to an HTTP/1 connection, framed
    as the server's h11 frames them (chunked to an HTTP/1.1 client, bare to an HTTP/1.0
    one, which reads to the close), with the same flow control (``drain``).

    One event to a thousand streams is a thousand writes: through Hypercorn each went
    through its stream, its protocol, h11 and a lock, 90 µs apiece on a slow core. The
    answer's start and end still go through the server, which keeps its state right:
    h11 ends a chunked body with the last chunk, and nothing else writes to an HTTP/1
    connection while its answer is being sent.
    """

    __slots__ = ("_chunked", "_writer")

    def __init__(self, writer: asyncio.StreamWriter, *, chunked: bool) -> None:
        self._writer = writer
        self._chunked = chunked

    @classmethod
    def of(cls, scope: Scope) -> DirectBody | None:
        """The direct writer for this answer, or None (HTTP/2, another server)."""
        version = scope.get("http_version")
        server_send = scope.get(SCOPE_SERVER_SEND)
        if version not in ("1.0", "1.1") or server_send is None:
            return None
        writer = writer_of(server_send)
        return None if writer is None else cls(writer, chunked=version == "1.1")

    async def write(self, piece: bytes) -> None:
        """Raises ConnectionError once the connection is lost."""
        if not piece:  # an empty chunk would end a chunked body
            return
        self._writer.write(b"%x\r\n%b\r\n" % (len(piece), piece) if self._chunked else piece)
        await self._writer.drain()


async def _send_stream(body: AsyncIterator[bytes], receive: Receive, send: Send, direct: DirectBody | None) -> None:
    """Send ``body`` (its pieces through ``direct`` when given); the client leaving ends
    it quietly. Any other cancellation (the server stopping, the stream's own end for a
    client that takes no data) goes on up."""
    sender = asyncio.current_task()
    assert sender is not None
    left = False

    async def until_disconnect() -> None:
        nonlocal left
        while (await receive())["type"] != "http.disconnect":
            pass
        left = True
        sender.cancel()

    watcher = asyncio.get_running_loop().create_task(until_disconnect(), name="stream-disconnect")
    try:
        async for chunk in body:
            if direct is None:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            else:
                await direct.write(chunk)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except ConnectionError:
        return  # the client is gone (the answer is unfinished: the connection is aborted)
    except asyncio.CancelledError:
        if not left or sender.uncancel() > 0:
            raise
    finally:
        watcher.cancel()
        await body.aclose()  # type: ignore[attr-defined]


# -- the connection -------------------------------------------------------------


def transport_of(send: Send) -> asyncio.BaseTransport | None:
    """The transport of the connection Hypercorn's ``send`` answers on, or None."""
    writer = writer_of(send)
    return None if writer is None else writer.transport


def writer_of(send: Send) -> asyncio.StreamWriter | None:
    """The writer of the connection Hypercorn's ``send`` answers on, or None.

    Hypercorn hands the app a bound method of its HTTP stream, whose ``send`` is a
    bound method of its HTTP/1 or HTTP/2 protocol, whose ``send`` is a bound method
    of its TCP server, which holds the connection's ``asyncio.StreamWriter``. This
    follows that chain (Hypercorn 0.18) without importing any of it; under another
    server, or a test client, it finds nothing and connections are left as they are.
    """
    owner = getattr(send, "__self__", None)
    for _ in range(4):
        if owner is None:
            return None
        writer = getattr(owner, "writer", None)
        if isinstance(writer, asyncio.StreamWriter):
            return writer
        owner = getattr(getattr(owner, "send", None), "__self__", None)
    return None


def reset_on_close(transport: asyncio.BaseTransport) -> None:
    """Make any later close of the connection a TCP reset that drops what is unsent
    (whoever closes it: Hypercorn does, after an answer that said Connection: close)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed: the reset is moot
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)


def abort(transport: asyncio.BaseTransport) -> None:
    """Close the connection now with a TCP reset, whatever is still unsent."""
    reset_on_close(transport)
    transport.abort()


def end_connection(transport: asyncio.BaseTransport, grace: float = 0.0) -> None:
    """Read no further request from the connection, and abort it after ``grace``
    seconds (at once for 0): a client that reads what it was sent has it by then;
    one that does not read is not waited for."""
    if isinstance(transport, asyncio.ReadTransport):
        transport.pause_reading()
    reset_on_close(transport)
    if grace <= 0:
        abort(transport)
    else:
        asyncio.get_running_loop().call_later(grace, abort, transport)


class _Exchange:
    """One request and its answer, as the connection sees them."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, read_timeout: float) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self._deadline = asyncio.get_running_loop().time() + read_timeout
        self._read_timeout = read_timeout
        self.body_received = False
        self.started = False
        self.finished = False
        self.timed_out = False

    async def receive(self) -> Message:
        if self.body_received:
            return await self._receive()
        try:
            async with asyncio.timeout_at(self._deadline):
                message = await self._receive()
        except TimeoutError:
            await self._time_out()
            return {"type": "http.disconnect"}
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.body_received = True
        return message

    async def send(self, message: Message) -> None:
        if self.timed_out:
            return  # the 408 was the answer
        if message["type"] == "http.response.start":
            self.started = True
            if SCOPE_END_CONNECTION in self.scope and self.scope["http_version"] < "2":
                # Said up front, so that no client sends its next request on it.
                message = {**message, "headers": [*message.get("headers", ()), _CLOSE]}
        last = message["type"] == "http.response.body" and not message.get("more_body", False)
        if last and self._ends_connection():
            # Before the last bytes go: Hypercorn closes the connection right after
            # them, and a plain close would leave the kernel holding what the client
            # never reads (FIN_WAIT1) instead of ending it.
            transport = transport_of(self._send)
            if transport is not None:
                reset_on_close(transport)
        await self._send(message)
        if last:
            self.finished = True

    def _ends_connection(self) -> bool:
        asked = self.scope.get(SCOPE_END_CONNECTION)
        return asked is not None and self.scope["http_version"] < "2" and bool(asked())

    async def _time_out(self) -> None:
        """The body is late: answer 408 unless an answer has begun. Quart then cancels
        the request (``http.disconnect``), and the connection is ended."""
        self.timed_out = True
        log.info("request body not received within %gs: closing the connection", self._read_timeout)
        if self.started:
            return
        self.started = True
        body = json.dumps(
            {"error": {"code": "request_timeout", "message": f"the request body did not arrive within {self._read_timeout:g}s"}}
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), _CLOSE]
        await self._send({"type": "http.response.start", "status": 408, "headers": exposure_headers(self.scope["path"], headers)})
        await self._send({"type": "http.response.body", "body": body, "more_body": False})
        self.finished = True

    def end_after(self, grace: float) -> float | None:
        """Seconds after which the connection is to be ended once the app returned
        (None: it is kept): at once when the answer was cut short or the body was
        late, ``grace`` when the app asked."""
        if self.timed_out or (self.started and not self.finished):
            return 0.0
        return grace if self._ends_connection() else None


class ConnectionGuard:
    """The read deadline, and ending connections (see the module docstring). Wrap it
    around everything else: it needs Hypercorn's own ``send``."""

    def __init__(self, app: ASGIApp, *, read_timeout: float, end_grace: float) -> None:
        self.app = app
        self.read_timeout = read_timeout
        self.end_grace = end_grace

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[SCOPE_SERVER_SEND] = send
        exchange = _Exchange(scope, receive, send, self.read_timeout)
        try:
            await self.app(scope, exchange.receive, exchange.send)
        finally:
            after = exchange.end_after(self.end_grace)
            # Over HTTP/2 the connection carries other streams: Hypercorn ends the one.
            transport = None if after is None or scope["http_version"] >= "2" else transport_of(send)
            if transport is not None:
                end_connection(transport, after)
