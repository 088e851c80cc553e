"""The HTTP side: an httpx2 transport answering ``GET …/models`` and ``POST
…/chat/completions`` (plain or streamed), as an OpenAI-compatible server does."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx2

from insightreader.text import estimate_tokens

from .composers import answer
from .request import OFFLINE_MODEL, OfflineRequestError, content_text

_UNIT_RE = re.compile(
    "[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]|[^\\s\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]+\\s*|\\s+"
)
_CJK_UNIT_RE = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")


def stream_pieces(text: str, cjk_per_piece: int = 3) -> list[str]:
    """``text`` cut into stream deltas: a word (with its trailing space) at a
    time, or a few Chinese characters at a time. The pieces join to ``text``."""
    pieces: list[str] = []
    pending = ""
    for unit in _UNIT_RE.findall(text):
        if _CJK_UNIT_RE.fullmatch(unit):
            pending += unit
            if len(pending) >= cjk_per_piece:
                pieces.append(pending)
                pending = ""
            continue
        if pending:
            pieces.append(pending)
            pending = ""
        if unit.isspace() and pieces:
            pieces[-1] += unit
        else:
            pieces.append(unit)
    if pending:
        pieces.append(pending)
    return pieces


def _usage(body: dict[str, Any], content: str) -> dict[str, int]:
    messages = body.get("messages") or []
    prompt = sum(4 + estimate_tokens(content_text(m.get("content"))) for m in messages if isinstance(m, dict)) + 3
    completion = estimate_tokens(content)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _response_id(raw: bytes) -> str:
    return "chatcmpl-offline-" + hashlib.sha256(raw).hexdigest()[:24]


def _json_response(status: int, payload: Any, request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(
        status,
        headers={"content-type": "application/json"},
        content=json.dumps(payload, ensure_ascii=False).encode(),
        request=request,
    )


def _error_payload(status: int, message: str, code: str) -> dict[str, Any]:
    kind = "invalid_request_error" if status == 400 else "not_found_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _error(status: int, message: str, code: str, request: httpx2.Request) -> httpx2.Response:
    return _json_response(status, _error_payload(status, message, code), request)


class _EventStream(httpx2.AsyncByteStream):
    def __init__(self, events: list[bytes], delay: float) -> None:
        self._events = events
        self._delay = delay

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for event in self._events:
            # Yield to the loop between chunks, as a network stream would.
            await asyncio.sleep(self._delay)
            yield event


def _model_card() -> dict[str, Any]:
    return {"id": OFFLINE_MODEL, "object": "model", "created": 0, "owned_by": "insightreader"}


class OfflineTransport(httpx2.AsyncBaseTransport):
    """An in-process OpenAI-compatible server backed by the offline model.

    ``chunk_delay`` (seconds) is slept before each streamed chunk, to make a
    stream take time in tests; the content never depends on it."""

    def __init__(self, *, chunk_delay: float = 0.0) -> None:
        self.chunk_delay = chunk_delay

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        raw = await request.aread()
        path = request.url.path.rstrip("/")
        if request.method == "GET" and path.endswith("/models"):
            return _json_response(200, {"object": "list", "data": [_model_card()]}, request)
        if request.method == "GET" and "/models/" in path:
            if path.rsplit("/", 1)[1] == OFFLINE_MODEL:
                return _json_response(200, _model_card(), request)
            return _error(404, f"The model {path.rsplit('/', 1)[1]!r} does not exist", "model_not_found", request)
        if request.method == "POST" and path.endswith("/chat/completions"):
            return await self._chat(raw, request)
        return _error(404, f"{request.method} {path} is not served by the offline model", "not_found", request)

    async def _chat(self, raw: bytes, request: httpx2.Request) -> httpx2.Response:
        # Pure computation over the whole request (up to seconds for a long
        # article), kept off the event loop the way a remote model would be.
        reply = await asyncio.to_thread(_chat_reply, raw)
        if isinstance(reply, _Events):
            return httpx2.Response(
                200,
                headers={"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"},
                stream=_EventStream(reply.events, self.chunk_delay),
                request=request,
            )
        status, payload = reply
        return _json_response(status, payload, request)


@dataclass(frozen=True)
class _Events:
    """The encoded events of a streamed answer."""

    events: list[bytes]


def _chat_reply(raw: bytes) -> tuple[int, Any] | _Events:
    """The answer to a ``chat/completions`` request body: a status and its
    JSON payload, or the events of a stream."""
    try:
        body = json.loads(raw)
    except ValueError:
        return 400, _error_payload(400, "the request body is not valid JSON", "invalid_json")
    if not isinstance(body, dict):
        return 400, _error_payload(400, "the request body must be a JSON object", "invalid_json")
    try:
        content = answer(body)
    except OfflineRequestError as exc:
        return 400, _error_payload(400, str(exc), exc.code)
    response_id = _response_id(raw)
    usage = _usage(body, content)
    if not body.get("stream"):
        return 200, {
            "id": response_id,
            "object": "chat.completion",
            "created": 0,
            "model": OFFLINE_MODEL,
            "system_fingerprint": "offline",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    deltas += [{"content": piece} for piece in stream_pieces(content)]

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": response_id,
            "object": "chat.completion.chunk",
            "created": 0,
            "model": OFFLINE_MODEL,
            "system_fingerprint": "offline",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            data["usage"] = None
        return data

    chunks = [chunk(delta, None) for delta in deltas] + [chunk({}, "stop")]
    if include_usage:
        chunks.append({**chunk({}, None), "choices": [], "usage": usage})
    events = [f"data: {json.dumps(c, ensure_ascii=False)}\n\n".encode() for c in chunks]
    events.append(b"data: [DONE]\n\n")
    return _Events(events)
