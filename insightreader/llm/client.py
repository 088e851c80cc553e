"""The one gateway to the LLM provider (any OpenAI-compatible ``base_url``).

Every call goes: circuit breaker (raise :class:`TaskDeferred` while the provider is
down) → rate limiter (wait for our turn) → one HTTP request through the official
``AsyncOpenAI`` client (its own retries off) → tenacity decides whether to try
again (429, 5xx, timeouts, connection errors; full-jitter exponential backoff, never
shorter than the provider's ``Retry-After``). Whatever still fails becomes a
:class:`TaskError` with a stable code; a 200 becomes a result only after its content
is checked (refusal, truncation, emptiness, and for JSON the pydantic model).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import httpx2
from pydantic import BaseModel
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from insightreader.config import LLMSettings
from insightreader.errors import TaskError
from insightreader.llm import sdk
from insightreader.llm.admission import CircuitBreaker, Outcome, RateLimiter, parse_retry_after
from insightreader.llm.result import Completion, Usage
from insightreader.llm.structured import (
    InvalidOutput,
    ModeMemory,
    StructuredMode,
    is_response_format_rejection,
    parse_output,
    repair_messages,
    response_format,
)
from insightreader.llm.sdk import openai
from insightreader.llm.tokens import (
    DEFAULT_COMPLETION_ESTIMATE,
    estimate_prompt_tokens,
    estimate_request_tokens,
    estimate_text_tokens,
)
from insightreader.supervisor import Supervisor

log = logging.getLogger("insightreader.llm")

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")

OFFLINE_API_KEY = "offline"
_DETAIL_LIMIT = 300


class LLMObserver(Protocol):
    """What the client reports, for metrics (plain calls; implementations must not raise).

    ``status`` is the HTTP status of an answer (``"200"``, ``"429"``…) or what happened
    instead: ``timeout``, ``connection_error``, ``stream_interrupted``, ``bad_response``,
    ``cancelled``, ``error``.
    """

    def request_finished(self, kind: str, status: str, seconds: float) -> None:
        """One request to the provider ended (``kind``: ``complete`` or ``stream``);
        ``seconds`` from sending to the end of the answer (a stream's last chunk)."""

    def retry_scheduled(self, reason: str) -> None:
        """A failed request will be sent again; ``reason`` as ``status`` above."""

    def tokens_used(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        """A call succeeded and used these tokens (as billed, or estimated)."""


@dataclass(frozen=True)
class ClientTuning:
    """Timings that are engineering choices rather than configuration; tests shrink them.

    ``backoff_*``: full-jitter exponential backoff between attempts (seconds).
    ``max_retry_after``: the longest provider-requested wait we sit out inside a call;
    a longer ``Retry-After`` fails the call at once (retryable) instead of holding a
    task slot. ``breaker_threshold``: consecutive outage failures that open the circuit.
    ``probe_*``: the open circuit's ``GET /models`` probe backoff and its timeout.
    """

    backoff_base: float = 0.5
    backoff_max: float = 20.0
    max_retry_after: float = 60.0
    breaker_threshold: int = 5
    probe_initial: float = 1.0
    probe_max: float = 30.0
    probe_timeout: float = 10.0


class _BadResponse(Exception):
    """A 2xx whose body is not a chat completion (a proxy's HTML page, a truncated body)."""


class _StreamInterrupted(Exception):
    """A stream that failed or ended without a ``finish_reason``."""

    def __init__(self, cause: Exception | None, *, delivered: bool) -> None:
        super().__init__(str(cause) if cause else "the stream ended without a finish_reason")
        self.cause = cause
        self.delivered = delivered


class _FormatRejected(Exception):
    """``auto`` mode: the provider answered 400 to this ``response_format``; try the next."""


@dataclass(frozen=True)
class _Streamed:
    finish_reason: str
    usage: Usage | None
    refusal: str


def _retryable_status(status: int) -> bool:
    return status in (408, 409, 429) or status >= 500


def _provider_message(exc: openai.APIError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    if isinstance(body, str) and body:
        return body
    return exc.message


def _is_quota(exc: openai.APIStatusError) -> bool:
    return "insufficient_quota" in (exc.code, exc.type)


def _is_context_length(exc: openai.APIStatusError) -> bool:
    if exc.code == "context_length_exceeded":
        return True
    text = _provider_message(exc).lower()
    return any(
        marker in text
        for marker in ("context length", "context_length", "maximum context", "context window", "too many tokens")
    )


def _rejects_max_tokens(exc: openai.BadRequestError) -> bool:
    return exc.param == "max_tokens" or "max_completion_tokens" in _provider_message(exc)


def _breaker_outcome(exc: BaseException) -> Outcome:
    """What an exception says about the provider's health (see CircuitBreaker.record)."""
    if isinstance(exc, openai.APIStatusError):
        return "failure" if exc.status_code >= 500 else "success"
    if isinstance(exc, (openai.APIConnectionError, _StreamInterrupted)):
        return "failure"
    if isinstance(exc, (_BadResponse, _FormatRejected)):
        return "success"
    return "neutral"


def _status_label(exc: BaseException) -> str:
    """How a failed request ended, for :class:`LLMObserver`."""
    if isinstance(exc, _FormatRejected) and isinstance(exc.__cause__, openai.APIStatusError):
        exc = exc.__cause__
    if isinstance(exc, openai.APIStatusError):
        return str(exc.status_code)
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection_error"
    if isinstance(exc, _StreamInterrupted):
        return "stream_interrupted"
    if isinstance(exc, _BadResponse):
        return "bad_response"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return "error"


def _public_url(url: str) -> str:
    """``base_url`` without credentials, query or trailing slash (for keys and status)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def _usage(reported: openai.types.CompletionUsage | None, messages: list[dict[str, str]], text: str) -> Usage:
    if reported is not None:
        return Usage(reported.prompt_tokens, reported.completion_tokens)
    return Usage(estimate_prompt_tokens(messages), estimate_text_tokens(text))


def _as_built(messages: list[dict[str, str]], response_format: dict[str, Any] | None = None) -> dict[str, Any]:
    """The request's ``messages`` (and ``response_format``) as the SDK's ``extra_body``,
    which goes into the JSON as it is, while the parameter of that name gets ``()``.

    Given as parameters, both are walked on every request against the SDK's parameter
    types (every message against the union of six message types, a JSON Schema against
    the ``response_format`` types) to rename and reformat fields, and nothing in a
    text message or a schema is renamed or reformatted. The messages took 0.62 of the
    2.30 ms of CPU a call cost, the schema 0.2 ms (docs/benchmarks.md, 2026-12-06,
    afternoon and late morning). The SDK checks that ``messages`` is given, not what it
    holds; one that refused ``()`` would fail the request tests in
    ``tests/test_llm_client.py``, which read the body on the wire.
    """
    body: dict[str, Any] = {"messages": messages}
    if response_format is not None:
        body["response_format"] = response_format
    return body


def _checked_text(finish_reason: str | None, content: str | None, refusal: str | None) -> str:
    """A 200 is not yet a result: refusals, truncation and empty answers are failures."""
    if refusal:
        raise TaskError("model_refused", f"the model refused: {refusal[:_DETAIL_LIMIT]}")
    if finish_reason == "content_filter":
        raise TaskError("model_refused", "the provider's content filter stopped the answer")
    if finish_reason == "length":
        raise TaskError(
            "content_too_long", "the answer reached the output token limit before it was complete"
        )
    if not content or not content.strip():
        raise TaskError("empty_output", "the model returned an empty answer", retryable=True)
    return content


def served_model(settings: LLMSettings) -> str:
    """The model name answers (and dedup keys) carry: the offline model's without an API key."""
    if settings.offline:
        from insightreader.llm.offline.request import OFFLINE_MODEL

        return OFFLINE_MODEL
    return settings.model


class LLMClient:
    """Chat completions with retries, admission control and checked results.

    One instance per process: it owns the HTTP connection pool, the rate buckets,
    the circuit breaker (and its probe task) and the negotiated structured modes.
    """

    def __init__(
        self,
        settings: LLMSettings,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
        tuning: ClientTuning | None = None,
        observer: LLMObserver | None = None,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._settings = settings
        #: Told about every request, retry and token count (metrics); may be set later.
        self.observer = observer
        self._tuning = tuning or ClientTuning()
        self.offline = settings.offline
        self.model = served_model(settings)
        api_key = settings.api_key
        if self.offline:
            from insightreader.llm.offline import OfflineTransport

            api_key = OFFLINE_API_KEY
            transport = transport or OfflineTransport()
        self._secret = settings.api_key
        self._base_url = "offline" if self.offline else _public_url(settings.base_url)
        self._api_key = api_key
        self._transport = transport
        #: The SDK's client, made on first use (see :meth:`_provider`).
        self._openai: openai.AsyncOpenAI | None = None
        self._making = asyncio.Lock()
        self._limiter = RateLimiter(
            0 if self.offline else settings.requests_per_minute,
            0 if self.offline else settings.tokens_per_minute,
            max_pause=self._tuning.max_retry_after,
        )
        self._breaker = CircuitBreaker(
            threshold=self._tuning.breaker_threshold,
            probe=self._probe,
            probe_initial=self._tuning.probe_initial,
            probe_max=self._tuning.probe_max,
            supervisor=supervisor,
        )
        self._modes = ModeMemory(settings.structured_output)
        self._token_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
        if self.offline:
            log.warning("no LLM API key configured: using the built-in offline model %s", self.model)

    @classmethod
    def from_settings(
        cls,
        settings: LLMSettings,
        *,
        observer: LLMObserver | None = None,
        supervisor: Supervisor | None = None,
    ) -> LLMClient:
        """The client for ``settings``: the provider, or the offline model without an API key."""
        return cls(settings, observer=observer, supervisor=supervisor)

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- public calls -------------------------------------------------------------------

    async def complete_json(
        self,
        messages: list[dict[str, str]],
        result_model: type[M],
        *,
        schema_name: str,
        max_tokens: int | None = None,
    ) -> Completion[M]:
        """Ask for a JSON answer and validate it as ``result_model``.

        An answer that is not valid JSON or does not fit the model gets exactly one
        repair request (the conversation, the bad answer, the validation error); a
        second failure is ``invalid_model_output``. Usage covers both requests.
        """
        limit = max_tokens or DEFAULT_COMPLETION_ESTIMATE
        text, usage, mode = await self._negotiate(messages, result_model, schema_name, limit)
        try:
            value = parse_output(text, result_model)
        except InvalidOutput as first:
            log.info("LLM answer for %s is invalid (%s); asking for a repair", schema_name, first.detail)
            repair = repair_messages(messages, text, first.detail, result_model)
            text, more = await self._complete(
                repair, response_format(mode, schema_name, result_model), limit
            )
            usage = usage + more
            try:
                value = parse_output(text, result_model)
            except InvalidOutput as second:
                raise TaskError(
                    "invalid_model_output",
                    f"the model's answer for {schema_name} is still invalid after a repair request: "
                    f"{second.detail[:_DETAIL_LIMIT]}",
                ) from None
        return Completion(value=value, usage=usage, model=self.model)

    async def stream_text(
        self,
        messages: list[dict[str, str]],
        on_delta: Callable[[str], Awaitable[None]],
        *,
        max_tokens: int | None = None,
    ) -> Completion[str]:
        """Stream a text answer, calling ``on_delta`` for each piece of content.

        The request is retried only while nothing has been delivered; a stream that
        breaks after the first delta is ``upstream_stream_broken`` (retryable), since
        the caller has already published part of the text.
        """
        limit = max_tokens or DEFAULT_COMPLETION_ESTIMATE
        estimate = estimate_request_tokens(messages, limit)
        parts: list[str] = []

        async def open_stream(limit: dict[str, int]) -> openai.AsyncStream[openai.types.chat.ChatCompletionChunk]:
            raw = await (await self._provider()).chat.completions.with_raw_response.create(
                model=self.model,
                messages=(),
                stream=True,
                stream_options={"include_usage": True},
                max_tokens=limit.get("max_tokens", openai.omit),
                max_completion_tokens=limit.get("max_completion_tokens", openai.omit),
                extra_body=_as_built(messages),
            )
            self._limiter.observe(raw.headers)
            return raw.parse()

        async def send() -> _Streamed:
            stream = await self._with_token_limit(open_stream, limit)
            return await self._consume(stream, on_delta, parts)

        streamed = await self._call(send, estimate, kind="stream")
        text = "".join(parts)
        usage = streamed.usage or Usage(estimate_prompt_tokens(messages), estimate_text_tokens(text))
        self._limiter.settle(estimate, usage.total_tokens)
        self._notify("tokens_used", self.model, usage.prompt_tokens, usage.completion_tokens)
        return Completion(
            value=_checked_text(streamed.finish_reason, text, streamed.refusal),
            usage=usage,
            model=self.model,
        )

    def available(self) -> bool:
        """Whether :meth:`wait_available` would return at once."""
        return self._breaker.available()

    async def wait_available(self) -> None:
        """Return at once while the circuit is closed; otherwise once a probe succeeded
        (and no half-open trial call is in flight)."""
        await self._breaker.wait_available()

    def waiting_reason(self) -> str | None:
        """Why LLM tasks are held back now, in words for a reader; None when they are not."""
        if self._breaker.state != "closed":
            return "the AI provider is unavailable; the task runs when it is back"
        return None

    def status(self) -> dict[str, object]:
        """JSON-able state for ``/readyz`` and ``/metrics``."""
        return {
            "model": self.model,
            "offline": self.offline,
            "base_url": self._base_url,
            # "loading" for the first moments after start-up: requests then wait for it.
            "sdk": "loaded" if self._openai is not None else "loading",
            "circuit": self._breaker.status(),
            "structured_output": self._modes.status(),
            "limiter": self._limiter.status(),
        }

    async def aclose(self) -> None:
        await self._breaker.aclose()
        if self._openai is not None:
            await self._openai.close()

    async def warm_up(self) -> None:
        """Load the SDK and make its client now (at start-up) rather than at the first
        request, which would wait for both."""
        await self._provider()

    async def _provider(self) -> openai.AsyncOpenAI:
        """The SDK's client, made on first use, off the loop like ``openai``'s import
        (:mod:`insightreader.llm.sdk`), so a server listens before it is loaded: making
        it imports the HTTP client's transport and loads the CA certificates, and its
        ``chat.completions`` imports their modules on first use, 65 and 25–45 ms that
        held the loop at start-up and at the first call."""
        if self._openai is None:
            async with self._making:
                if self._openai is None:  # not made by another caller meanwhile
                    await sdk.load()
                    self._openai = await asyncio.to_thread(self._make_provider)
        return self._openai

    def _make_provider(self) -> openai.AsyncOpenAI:
        provider = openai.AsyncOpenAI(
            base_url=self._settings.base_url,
            api_key=self._api_key,
            timeout=self._settings.timeout,
            max_retries=0,
            http_client=(
                openai.DefaultAsyncHttpx2Client(transport=self._transport) if self._transport is not None else None
            ),
        )
        provider.chat.completions  # noqa: B018 (loads the resource's modules here, off the loop)
        return provider

    # -- structured output --------------------------------------------------------------

    async def _negotiate(
        self,
        messages: list[dict[str, str]],
        result_model: type[BaseModel],
        schema_name: str,
        max_tokens: int,
    ) -> tuple[str, Usage, StructuredMode]:
        """The first answer, trying structured modes in order until one is accepted.

        Every mode but the last may be rejected (a 400 about ``response_format``) and
        fall through; the last one is final: plain text in ``auto`` mode (which sends no
        ``response_format``), or the explicitly configured mode.
        """
        *fallible, final = self._modes.candidates(self._base_url, self.model)
        for mode in fallible:
            try:
                text, usage = await self._complete(
                    messages, response_format(mode, schema_name, result_model), max_tokens, fallback=True
                )
            except _FormatRejected:
                log.warning(
                    "LLM provider %s rejected response_format %s for %s; falling back",
                    self._base_url,
                    mode,
                    self.model,
                )
                continue
            self._modes.remember(self._base_url, self.model, mode)
            return text, usage, mode
        text, usage = await self._complete(messages, response_format(final, schema_name, result_model), max_tokens)
        if self._modes.negotiating:
            self._modes.remember(self._base_url, self.model, final)
        return text, usage, final

    async def _complete(
        self,
        messages: list[dict[str, str]],
        fmt: dict[str, Any] | None,
        max_tokens: int,
        *,
        fallback: bool = False,
    ) -> tuple[str, Usage]:
        """One non-streaming completion (with retries) → its checked text and usage."""
        estimate = estimate_request_tokens(messages, max_tokens)

        async def create(limit: dict[str, int]) -> openai.types.chat.ChatCompletion:
            raw = await (await self._provider()).chat.completions.with_raw_response.create(
                model=self.model,
                messages=(),
                max_tokens=limit.get("max_tokens", openai.omit),
                max_completion_tokens=limit.get("max_completion_tokens", openai.omit),
                extra_body=_as_built(messages, response_format=fmt),
            )
            self._limiter.observe(raw.headers)
            try:
                completion = raw.parse()
            except ValueError as exc:
                raise _BadResponse(f"the LLM provider answered {raw.status_code} with a body that is not JSON") from exc
            if not isinstance(completion, openai.types.chat.ChatCompletion) or not getattr(completion, "choices", None):
                raise _BadResponse(f"the LLM provider answered {raw.status_code} without a chat completion")
            return completion

        async def send() -> openai.types.chat.ChatCompletion:
            try:
                return await self._with_token_limit(create, max_tokens)
            except openai.BadRequestError as exc:
                if fallback and is_response_format_rejection(exc):
                    raise _FormatRejected() from exc
                raise

        completion = await self._call(send, estimate)
        choice = completion.choices[0]
        content = choice.message.content if choice.message else None
        usage = _usage(completion.usage, messages, content or "")
        self._limiter.settle(estimate, usage.total_tokens)
        self._notify("tokens_used", self.model, usage.prompt_tokens, usage.completion_tokens)
        refusal = choice.message.refusal if choice.message else None
        return _checked_text(choice.finish_reason, content, refusal), usage

    async def _with_token_limit(
        self, send: Callable[[dict[str, int]], Awaitable[R]], max_tokens: int
    ) -> R:
        """Send with the output limit under the parameter name the provider accepts.

        Older OpenAI-compatible servers know only ``max_tokens``; OpenAI's reasoning
        models reject it in favour of ``max_completion_tokens``. The first rejection
        switches this client over for good.
        """
        try:
            return await send({self._token_param: max_tokens})
        except openai.BadRequestError as exc:
            if self._token_param != "max_tokens" or not _rejects_max_tokens(exc):
                raise
            log.info("LLM provider %s wants max_completion_tokens; switching", self._base_url)
            self._token_param = "max_completion_tokens"
            return await send({self._token_param: max_tokens})

    # -- streaming ----------------------------------------------------------------------

    @staticmethod
    async def _consume(
        stream: openai.AsyncStream[openai.types.chat.ChatCompletionChunk],
        on_delta: Callable[[str], Awaitable[None]],
        parts: list[str],
    ) -> _Streamed:
        finish_reason: str | None = None
        usage: Usage | None = None
        refusal: list[str] = []
        # openai.AsyncStream.__aiter__ is an async generator; close it with the stream.
        iterator = cast(AsyncGenerator[openai.types.chat.ChatCompletionChunk, None], aiter(stream))
        async with stream, contextlib.aclosing(iterator) as chunks:
            while True:
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except (openai.APIError, ValueError) as exc:
                    raise _StreamInterrupted(exc, delivered=bool(parts)) from exc
                if chunk.usage is not None:
                    usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                for choice in getattr(chunk, "choices", None) or []:
                    delta = getattr(choice, "delta", None)
                    if delta is not None and delta.refusal:
                        refusal.append(delta.refusal)
                    if delta is not None and delta.content:
                        parts.append(delta.content)
                        await on_delta(delta.content)
                    if choice.finish_reason:
                        finish_reason = choice.finish_reason
        if finish_reason is None:
            raise _StreamInterrupted(None, delivered=bool(parts))
        return _Streamed(finish_reason=finish_reason, usage=usage, refusal="".join(refusal))

    # -- retries, admission, errors -----------------------------------------------------

    def _notify(self, event: str, *args: Any) -> None:
        """Tell the observer (a failing observer never fails a call)."""
        if self.observer is None:
            return
        try:
            getattr(self.observer, event)(*args)
        except Exception:
            log.exception("LLM observer failed on %s", event)

    async def _call(self, send: Callable[[], Awaitable[R]], estimate: int, *, kind: str = "complete") -> R:
        """``send`` under admission control, retried on transient failures."""
        # The SDK (the failure handling below tells its errors apart) and its client,
        # before admission: an admitted request is sent at once, so the rate limits
        # space the requests themselves, the first after a start too.
        await self._provider()
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._settings.max_retries + 1),
            wait=self._backoff,
            retry=retry_if_exception(self._should_retry),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return await retrying(self._admitted, send, estimate, kind)
        except (openai.APIError, _BadResponse, _StreamInterrupted) as exc:
            error = self._translate(exc, int(retrying.statistics.get("attempt_number", 1)))
            log.warning("LLM call failed: %s (%s)", error.code, error.message)
            raise error from None

    async def _admitted(self, send: Callable[[], Awaitable[R]], estimate: int, kind: str) -> R:
        trial = self._breaker.admit()
        sent: float | None = None
        try:
            await self._limiter.acquire(estimate)
            sent = time.monotonic()
            result = await send()
        except BaseException as exc:
            if sent is not None:
                self._notify("request_finished", kind, _status_label(exc), time.monotonic() - sent)
            if isinstance(exc, openai.APIStatusError):
                self._limiter.observe(exc.response.headers)
            self._breaker.record(trial, _breaker_outcome(exc), self._describe(exc))
            raise
        self._notify("request_finished", kind, "200", time.monotonic() - sent)
        self._breaker.record(trial, "success")
        return result

    def _should_retry(self, exc: BaseException) -> bool:
        if isinstance(exc, _StreamInterrupted):
            return not exc.delivered
        if isinstance(exc, _BadResponse):
            return True
        if isinstance(exc, openai.APIStatusError):
            if not _retryable_status(exc.status_code) or _is_quota(exc):
                return False
            hint = parse_retry_after(exc.response.headers)
            return hint is None or hint <= self._tuning.max_retry_after
        return isinstance(exc, openai.APIConnectionError)

    def _backoff(self, state: RetryCallState) -> float:
        """Full jitter, ``uniform(0, min(max, base · 2^n))``, but never below ``Retry-After``."""
        ceiling = min(self._tuning.backoff_max, self._tuning.backoff_base * 2 ** (state.attempt_number - 1))
        delay = random.uniform(0, ceiling)
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, openai.APIStatusError):
            hint = parse_retry_after(exc.response.headers)
            if hint is not None:
                delay = max(delay, hint)
        return delay

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        self._notify("retry_scheduled", _status_label(exc) if exc is not None else "error")
        log.warning(
            "LLM request failed (%s); retry %d of %d in %.2f s",
            self._describe(exc) if exc is not None else "unknown",
            state.attempt_number,
            self._settings.max_retries,
            state.next_action.sleep if state.next_action is not None else 0.0,
        )

    def _redact(self, text: str) -> str:
        if self._secret:
            text = text.replace(self._secret, "***")
        return text[:_DETAIL_LIMIT]

    def _describe(self, exc: BaseException) -> str:
        """A short, key-free description of a failure for logs and error messages."""
        if isinstance(exc, openai.APIStatusError):
            return self._redact(f"HTTP {exc.status_code}: {_provider_message(exc)}")
        if isinstance(exc, openai.APITimeoutError):
            return f"no answer within {self._settings.timeout:g} s"
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__
            return self._redact(f"connection failed ({type(cause).__name__ if cause else exc.message})")
        if isinstance(exc, _StreamInterrupted):
            cause_text = self._describe(exc.cause) if exc.cause is not None else str(exc)
            return f"stream interrupted: {cause_text}"
        return self._redact(str(exc) or type(exc).__name__)

    def _translate(self, exc: openai.APIError | _BadResponse | _StreamInterrupted, attempts: int) -> TaskError:
        tries = f"after {attempts} attempt{'s' if attempts != 1 else ''}"
        detail = self._describe(exc)
        if isinstance(exc, _StreamInterrupted):
            if exc.delivered:
                return TaskError(
                    "upstream_stream_broken", f"the answer stream broke part-way ({detail})", retryable=True
                )
            if isinstance(exc.cause, openai.APITimeoutError):
                return TaskError("upstream_timeout", f"the answer stream stalled {tries} ({detail})", retryable=True)
            return TaskError("upstream_stream_broken", f"the answer stream failed {tries} ({detail})", retryable=True)
        if isinstance(exc, openai.RateLimitError):
            if _is_quota(exc):
                return TaskError("quota_exceeded", f"the LLM provider account is out of quota ({detail})")
            hint = parse_retry_after(exc.response.headers)
            if hint is not None and hint > self._tuning.max_retry_after:
                return TaskError(
                    "upstream_rate_limited",
                    f"the LLM provider asked to wait {hint:.0f} s before retrying ({detail})",
                    retryable=True,
                )
            return TaskError("upstream_rate_limited", f"the LLM provider kept rate-limiting {tries} ({detail})", retryable=True)
        if isinstance(exc, openai.APITimeoutError):
            return TaskError("upstream_timeout", f"the LLM provider did not answer {tries} ({detail})", retryable=True)
        if isinstance(exc, openai.APIConnectionError):
            return TaskError(
                "upstream_unavailable", f"cannot reach the LLM provider at {self._base_url} {tries} ({detail})", retryable=True
            )
        if isinstance(exc, openai.APIStatusError):
            if _retryable_status(exc.status_code):
                return TaskError("upstream_unavailable", f"the LLM provider kept failing {tries} ({detail})", retryable=True)
            if exc.status_code == 413 or (exc.status_code == 400 and _is_context_length(exc)):
                return TaskError("content_too_long", f"the input is too long for the model ({detail})")
            if isinstance(exc, openai.BadRequestError) and is_response_format_rejection(exc):
                return TaskError(
                    "upstream_rejected",
                    f"the LLM provider rejected the structured output mode "
                    f"(llm.structured_output = {self._modes.configured!r}; 'auto' negotiates one) ({detail})",
                )
            return TaskError("upstream_rejected", f"the LLM provider rejected the request ({detail})")
        if isinstance(exc, _BadResponse):
            return TaskError("upstream_bad_response", f"{detail} {tries}", retryable=True)
        return TaskError("upstream_unavailable", f"the LLM provider failed {tries} ({detail})", retryable=True)

    async def _probe(self) -> bool:
        """Whether the provider answers at all (any status below 500 counts)."""
        provider = await self._provider()
        try:
            await provider.models.with_raw_response.list(
                timeout=min(self._tuning.probe_timeout, self._settings.timeout)
            )
        except openai.APIStatusError as exc:
            return exc.status_code < 500
        except openai.APIConnectionError:
            return False
        return True
