"""A real OpenAI-compatible HTTP server on loopback, scripted by tests.

It speaks plain HTTP/1.1 over asyncio streams (keep-alive, chunked streaming), so
it can misbehave in ways a framework would not allow: hang, drop the connection
mid-stream, send garbage, or stop listening altogether. Start it in-process::

    async with FakeUpstream() as fake:
        settings = LLMSettings(base_url=fake.base_url, api_key="sk-test", model=fake.model)
        fake.reply = lambda body: '{"summary": "ok"}'      # content per request body
        fake.script(rate_limited(retry_after=1), Reply())  # the next two chat answers
        fake.default = server_error(503)                   # every chat answer after those
        await fake.wait_for_requests(3)
        fake.requests                                       # what it received, with times

A server subprocess reaches it at ``fake.base_url`` as long as the event loop that
started it keeps running. ``python -m tests.fake_upstream --port 8001`` serves the
default behaviour until interrupted (for trying the server by hand).

Chat answers, in order of precedence: a capability rejection (``reject_json_schema``,
``reject_json_object``, ``reject_max_tokens``, ``require_api_key``), then the next
scripted action, then ``default``. ``GET /v1/models`` always answers while the fake
is up; ``down()`` / ``up()`` stop and restart listening on the same port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
DEFAULT_TEXT = "This is a reply from the fake upstream. It has several words in it."

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    408: "Request Timeout",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    headers: Mapping[str, str]
    """Header names lower-cased."""
    body: Any
    """Parsed JSON, the raw text when it is not JSON, ``None`` when empty."""
    time: float
    """``time.monotonic()`` when the request was complete."""

    @property
    def response_format_type(self) -> str | None:
        fmt = self.body.get("response_format") if isinstance(self.body, dict) else None
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        return kind if isinstance(kind, str) else None

    @property
    def stream(self) -> bool:
        return isinstance(self.body, dict) and bool(self.body.get("stream"))

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", [])) if isinstance(self.body, dict) else []


# -- actions: what to answer to one chat request ---------------------------------------


@dataclass(frozen=True)
class Reply:
    """A 200 chat completion (JSON, or SSE chunks when the request streams)."""

    content: str | None = None
    """``None``: ask ``fake.reply``."""
    finish_reason: str = "stop"
    refusal: str | None = None
    """A refusal message (the content is then ``None``)."""
    usage: tuple[int, int] | None = None
    """(prompt_tokens, completion_tokens); ``None``: ``fake.usage`` or an estimate."""
    delay: float = 0.0
    """Seconds before the response starts."""
    chunk_delay: float = 0.0
    """Seconds slept before each streamed content chunk (paces a stream)."""
    break_after: int | None = None
    """Drop the connection after this many content chunks (streaming) or halfway
    through the body (non-streaming)."""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ErrorReply:
    """An OpenAI-style error: ``{"error": {message, type, param, code}}``."""

    status: int
    message: str = "The server had an error while processing your request."
    type: str = "server_error"
    code: str | None = None
    param: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class RawReply:
    """Any bytes with any status (e.g. an HTML page where JSON was expected)."""

    status: int = 200
    body: bytes = b"<html><body>Bad gateway, try later</body></html>"
    content_type: str = "text/html"


@dataclass(frozen=True)
class Hang:
    """Read the request and never answer (until the client gives up or the fake stops)."""


@dataclass(frozen=True)
class Drop:
    """Close the connection without answering."""


Action = Reply | ErrorReply | RawReply | Hang | Drop


def rate_limited(retry_after: float | str | None = 1, *, headers: Mapping[str, str] | None = None) -> ErrorReply:
    extra = dict(headers or {})
    if retry_after is not None:
        extra["retry-after"] = str(retry_after)
    return ErrorReply(
        429, "Rate limit reached for requests. Please try again later.", "requests", "rate_limit_exceeded", headers=extra
    )


def insufficient_quota() -> ErrorReply:
    return ErrorReply(
        429, "You exceeded your current quota, please check your plan and billing details.",
        "insufficient_quota", "insufficient_quota",
    )


def server_error(status: int = 500) -> ErrorReply:
    return ErrorReply(status)


def context_length_exceeded() -> ErrorReply:
    return ErrorReply(
        400,
        "This model's maximum context length is 16385 tokens. However, your messages resulted in 20000 tokens.",
        "invalid_request_error",
        "context_length_exceeded",
        "messages",
    )


def unknown_model(model: str = "no-such-model") -> ErrorReply:
    return ErrorReply(404, f"The model `{model}` does not exist or you do not have access to it.",
                      "invalid_request_error", "model_not_found")


def garbage(text: str = "Sure! Here is what you asked for, in prose rather than JSON.") -> Reply:
    return Reply(content=text)


def refusal(text: str = "I'm sorry, but I can't help with that.") -> Reply:
    return Reply(refusal=text)


def truncated(content: str = '{"summary": "This answer was cut') -> Reply:
    return Reply(content=content, finish_reason="length")


def empty() -> Reply:
    return Reply(content="")


def broken_stream(after: int = 2) -> Reply:
    return Reply(break_after=after)


# -- default answers -------------------------------------------------------------------


def sample_instance(schema: Mapping[str, Any], defs: Mapping[str, Any] | None = None) -> Any:
    """A small value valid for a (pydantic-generated) JSON Schema."""
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return sample_instance(defs[str(schema["$ref"]).rsplit("/", 1)[-1]], defs)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
            return sample_instance(options[0], defs)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: sample_instance(sub, defs) for name, sub in properties.items()}
    if kind == "array":
        return [sample_instance(schema.get("items", {"type": "string"}), defs)] * max(1, schema.get("minItems", 1))
    if kind == "string":
        return "example"[: schema.get("maxLength", 7)].ljust(schema.get("minLength", 0), "x")
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        return float(max(1, schema.get("minimum", 1)))
    if kind == "boolean":
        return True
    return None


def default_reply(body: Mapping[str, Any]) -> str:
    """An answer that fits the request: a schema instance, a JSON object, or prose."""
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return json.dumps(sample_instance(response_format["json_schema"]["schema"]))
    if response_format.get("type") == "json_object":
        return json.dumps({"result": "ok"})
    return DEFAULT_TEXT


def _estimate(text: str) -> int:
    return max(1, len(text) // 4)


class FakeUpstream:
    """An OpenAI-compatible server on 127.0.0.1 (see the module docstring)."""

    def __init__(self, *, model: str = "fake-model-1", host: str = "127.0.0.1", port: int = 0,
                 chunk_size: int = 8) -> None:
        self.model = model
        self.host = host
        self.port = port
        self.chunk_size = chunk_size
        self.reply: str | Callable[[Mapping[str, Any]], str] = default_reply
        self.usage: tuple[int, int] | None = None
        self.default: Action = Reply()
        self.response_headers: dict[str, str] = {}
        self.stream_usage = True
        """Send the final usage chunk when the request asks for it (some servers never do)."""
        self.reject_json_schema = False
        self.reject_json_object = False
        self.reject_max_tokens = False
        self.require_api_key: str | None = None
        self.requests: list[RecordedRequest] = []
        #: Chat requests being answered now, and the most at once so far.
        self.chat_in_flight = 0
        self.max_chat_in_flight = 0
        self._script: deque[Action] = deque()
        self._arrived = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def is_up(self) -> bool:
        return self._server is not None

    async def __aenter__(self) -> FakeUpstream:
        await self.up()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.down()

    async def up(self) -> None:
        """Listen (again, on the same port once one was chosen)."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._serve_connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        """Stop listening and cut every open connection: clients now get 'connection refused'."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers)
        if server is not None:
            await server.wait_closed()

    # -- scripting and inspection ------------------------------------------------------

    def script(self, *actions: Action) -> None:
        """Queue answers for the next chat requests, in order (then ``default`` applies)."""
        self._script.extend(actions)

    @property
    def pending_script(self) -> int:
        return len(self._script)

    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == CHAT_PATH]

    def model_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == MODELS_PATH]

    async def wait_for_requests(self, count: int, *, path: str = CHAT_PATH, timeout: float = 5.0) -> list[RecordedRequest]:
        """Wait until ``count`` requests to ``path`` have arrived; return them."""

        def matching() -> list[RecordedRequest]:
            return [r for r in self.requests if r.path == path]

        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: len(matching()) >= count), timeout)
        return matching()

    # -- HTTP ----------------------------------------------------------------------------

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    break
                await self._record(request)
                if not await self._respond(request, reader, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)
            writer.transport.abort()

    async def _read_request(self, reader: asyncio.StreamReader) -> RecordedRequest | None:
        line = await reader.readline()
        if not line.strip():
            return None
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            raw = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            raw = b""
            while size := int((await reader.readline()).split(b";")[0], 16):
                raw += await reader.readexactly(size)
                await reader.readline()
            await reader.readline()
        else:
            raw = b""
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        return RecordedRequest(method, target.split("?", 1)[0], headers, body, time.monotonic())

    async def _record(self, request: RecordedRequest) -> None:
        async with self._arrived:
            self.requests.append(request)
            self._arrived.notify_all()

    async def _respond(self, request: RecordedRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; return whether the connection stays usable."""
        if request.method == "GET" and request.path == MODELS_PATH:
            listing = {"object": "list", "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": "fake"}]}
            return await self._send_json(writer, 200, listing)
        if request.method != "POST" or request.path != CHAT_PATH:
            return await self._send_error(writer, ErrorReply(404, f"Unknown route {request.method} {request.path}",
                                                             "invalid_request_error"))
        self.chat_in_flight += 1
        self.max_chat_in_flight = max(self.max_chat_in_flight, self.chat_in_flight)
        try:
            return await self._answer_chat(request, reader, writer)
        finally:
            self.chat_in_flight -= 1

    async def _answer_chat(self, request: RecordedRequest, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> bool:
        body = request.body if isinstance(request.body, dict) else {}
        rejection = self._rejection(request, body)
        action = rejection or (self._script.popleft() if self._script else self.default)
        if isinstance(action, Hang):
            while await reader.read(65536):
                pass
            return False
        if isinstance(action, Drop):
            return False
        if isinstance(action, RawReply):
            return await self._send(writer, action.status, {"content-type": action.content_type}, action.body)
        if action.delay:
            await self._delay(request, action.delay)
        if isinstance(action, ErrorReply):
            return await self._send_error(writer, action)
        if body.get("stream"):
            return await self._stream(writer, body, action)
        return await self._complete(writer, body, action)

    async def _delay(self, request: RecordedRequest, seconds: float) -> None:
        """Wait before answering ``request`` (``bench/upstream.py`` waits more exactly)."""
        await asyncio.sleep(seconds)

    def _rejection(self, request: RecordedRequest, body: Mapping[str, Any]) -> ErrorReply | None:
        if self.require_api_key is not None:
            given = request.headers.get("authorization", "").removeprefix("Bearer ")
            if given != self.require_api_key:
                return ErrorReply(401, f"Incorrect API key provided: {given}.", "invalid_request_error",
                                  "invalid_api_key")
        kind = (body.get("response_format") or {}).get("type")
        if (kind == "json_schema" and self.reject_json_schema) or (kind == "json_object" and self.reject_json_object):
            return ErrorReply(400, f"Invalid parameter: 'response_format' of type '{kind}' is not supported with this model.",
                              "invalid_request_error", None, "response_format")
        if self.reject_max_tokens and "max_tokens" in body:
            return ErrorReply(400, "Unsupported parameter: 'max_tokens' is not supported with this model. "
                                   "Use 'max_completion_tokens' instead.",
                              "invalid_request_error", "unsupported_parameter", "max_tokens")
        return None

    def _content(self, body: Mapping[str, Any], reply: Reply) -> str | None:
        if reply.refusal is not None:
            return None
        if reply.content is not None:
            return reply.content
        return self.reply(body) if callable(self.reply) else self.reply

    def _usage(self, body: Mapping[str, Any], reply: Reply, content: str) -> dict[str, int]:
        if reply.usage is not None or self.usage is not None:
            prompt, completion = reply.usage or self.usage  # type: ignore[misc]
        else:
            prompt = sum(_estimate(str(m.get("content", ""))) for m in body.get("messages", []))
            completion = _estimate(content)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _base(self, body: Mapping[str, Any], kind: str) -> dict[str, Any]:
        return {"id": f"chatcmpl-fake-{next(self._ids)}", "object": kind, "created": int(time.time()),
                "model": body.get("model", self.model)}

    async def _complete(self, writer: asyncio.StreamWriter, body: Mapping[str, Any], reply: Reply) -> bool:
        content = self._content(body, reply)
        message = {"role": "assistant", "content": content, "refusal": reply.refusal}
        payload = {
            **self._base(body, "chat.completion"),
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason, "logprobs": None}],
            "usage": self._usage(body, reply, content or reply.refusal or ""),
        }
        data = json.dumps(payload).encode()
        if reply.break_after is not None:
            headers = self._headers({"content-type": "application/json", "content-length": str(len(data))}, reply.headers)
            writer.write(self._head(200, headers) + data[: len(data) // 2])
            await writer.drain()
            return False
        return await self._send_json(writer, 200, payload, reply.headers)

    async def _stream(self, writer: asyncio.StreamWriter, body: Mapping[str, Any], reply: Reply) -> bool:
        content = self._content(body, reply) or ""
        headers = self._headers({"content-type": "text/event-stream", "transfer-encoding": "chunked",
                                 "cache-control": "no-cache"}, reply.headers)
        writer.write(self._head(200, headers))
        base = self._base(body, "chat.completion.chunk")
        include_usage = self.stream_usage and bool((body.get("stream_options") or {}).get("include_usage"))

        async def event(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> None:
            chunk = {**base, "choices": choices}
            if include_usage:
                chunk["usage"] = usage
            await self._chunk(writer, f"data: {json.dumps(chunk)}\n\n".encode())

        await event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        if reply.refusal is not None:
            await event([{"index": 0, "delta": {"refusal": reply.refusal}, "finish_reason": None}])
        pieces = [content[i : i + self.chunk_size] for i in range(0, len(content), self.chunk_size)]
        for sent, piece in enumerate(pieces):
            if reply.break_after is not None and sent >= reply.break_after:
                writer.transport.abort()
                return False
            if reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)
            await event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        if reply.break_after is not None:
            writer.transport.abort()
            return False
        await event([{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}])
        if include_usage:
            await event([], self._usage(body, reply, content or reply.refusal or ""))
        await self._chunk(writer, b"data: [DONE]\n\n")
        await self._chunk(writer, b"")
        return True

    @staticmethod
    async def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        await writer.drain()

    def _headers(self, base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
        return {**base, "x-request-id": f"req_fake_{next(self._ids)}", **self.response_headers, **extra}

    @staticmethod
    def _head(status: int, headers: Mapping[str, str]) -> bytes:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _send(self, writer: asyncio.StreamWriter, status: int, headers: Mapping[str, str], data: bytes,
                    extra: Mapping[str, str] | None = None) -> bool:
        writer.write(self._head(status, self._headers({**headers, "content-length": str(len(data))}, extra or {})) + data)
        await writer.drain()
        return True

    async def _send_json(self, writer: asyncio.StreamWriter, status: int, payload: Any,
                         extra: Mapping[str, str] | None = None) -> bool:
        return await self._send(writer, status, {"content-type": "application/json"}, json.dumps(payload).encode(), extra)

    async def _send_error(self, writer: asyncio.StreamWriter, error: ErrorReply) -> bool:
        payload = {"error": {"message": error.message, "type": error.type, "param": error.param, "code": error.code}}
        return await self._send_json(writer, error.status, payload, error.headers)


async def _serve_forever(port: int, model: str, hang: bool) -> None:
    async with FakeUpstream(port=port, model=model) as fake:
        if hang:
            fake.default = Hang()
        print(f"fake upstream at {fake.base_url} (model {fake.model})", flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Serve the fake OpenAI-compatible upstream.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model", default="fake-model-1")
    parser.add_argument("--hang", action="store_true", help="never answer a chat request")
    arguments = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(arguments.port, arguments.model, arguments.hang))
