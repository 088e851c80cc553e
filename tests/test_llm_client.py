"""LLMClient against a real OpenAI-compatible server on loopback, through the real
``openai`` client: retries, error codes, structured-output negotiation, streaming,
rate limiting and the circuit breaker."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from tests.fake_upstream import (
    DEFAULT_TEXT,
    MODELS_PATH,
    FakeUpstream,
    Hang,
    RawReply,
    Reply,
    broken_stream,
    context_length_exceeded,
    empty,
    garbage,
    insufficient_quota,
    rate_limited,
    refusal,
    server_error,
    truncated,
    unknown_model,
)
from insightreader.config import LLMSettings
from insightreader.errors import TaskDeferred, TaskError
from insightreader.llm import ClientTuning, LLMClient, Usage, estimate_text_tokens
from insightreader.llm.admission import CircuitBreaker, TokenBucket, parse_duration, parse_retry_after

API_KEY = "sk-test-0123456789abcdef-SECRET"
FAST = ClientTuning(
    backoff_base=0.01,
    backoff_max=0.05,
    max_retry_after=5.0,
    breaker_threshold=5,
    probe_initial=0.05,
    probe_max=0.1,
    probe_timeout=1.0,
)
MESSAGES = [
    {"role": "system", "content": "You summarise articles. Answer in JSON."},
    {"role": "user", "content": "Summarise: the quick brown fox jumps over the lazy dog."},
]


class Summary(BaseModel):
    summary: str
    key_points: list[str]


GOOD: dict[str, Any] = {"summary": "A fox jumps.", "key_points": ["fox", "dog"]}

MakeClient = Callable[..., LLMClient]


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
async def make_client(fake: FakeUpstream) -> AsyncIterator[MakeClient]:
    clients: list[LLMClient] = []

    def make(*, tuning: ClientTuning = FAST, **overrides: Any) -> LLMClient:
        values: dict[str, Any] = {
            "base_url": fake.base_url,
            "api_key": API_KEY,
            "model": fake.model,
            "timeout": 5.0,
            "max_retries": 2,
            **overrides,
        }
        client = LLMClient(LLMSettings(**values), tuning=tuning)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def summarise(client: LLMClient, **kwargs: Any) -> Any:
    return await client.complete_json(MESSAGES, Summary, schema_name="summary", **kwargs)


# -- JSON results ---------------------------------------------------------------------


async def test_json_result_is_validated(fake: FakeUpstream, make_client: MakeClient) -> None:
    fake.reply = lambda body: json.dumps(GOOD)
    fake.usage = (31, 12)
    client = make_client()

    result = await summarise(client, max_tokens=200)

    assert result.value == Summary(**GOOD)
    assert result.usage == Usage(31, 12)
    assert result.model == fake.model
    [request] = fake.chat_requests()
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.body["model"] == fake.model
    assert request.body["max_tokens"] == 200
    assert request.body["messages"] == MESSAGES
    fmt = request.body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "summary"
    assert fmt["json_schema"]["schema"] == Summary.model_json_schema()
    assert fmt["json_schema"]["strict"] is False


async def test_callers_at_once_before_the_sdk_client_exists_share_the_one_made(
    fake: FakeUpstream, make_client: MakeClient
) -> None:
    client = make_client()
    # the client is made on a worker thread: callers arriving meanwhile wait for it
    made = await asyncio.gather(*(client._provider() for _ in range(5)))
    assert all(provider is made[0] for provider in made)
    assert all(isinstance(r.value, Summary) for r in await asyncio.gather(*(summarise(client) for _ in range(3))))


async def test_default_fake_answer_fits_the_schema(fake: FakeUpstream, make_client: MakeClient) -> None:
    result = await summarise(make_client())
    assert isinstance(result.value, Summary)


async def test_text_mode_strips_code_fences(fake: FakeUpstream, make_client: MakeClient) -> None:
    fake.reply = "```json\n" + json.dumps(GOOD) + "\n```"
    client = make_client(structured_output="text")

    result = await summarise(client)

    assert result.value == Summary(**GOOD)
    assert "response_format" not in fake.chat_requests()[0].body


async def test_garbage_gets_exactly_one_repair_then_fails(fake: FakeUpstream, make_client: MakeClient) -> None:
    fake.default = garbage("Here you go: the fox jumps!")
    client = make_client()

    with pytest.raises(TaskError) as caught:
        await summarise(client)

    assert caught.value.code == "invalid_model_output"
    first, repair = fake.chat_requests()
    assert repair.messages[: len(MESSAGES)] == MESSAGES
    assert repair.messages[-2] == {"role": "assistant", "content": "Here you go: the fox jumps!"}
    assert repair.messages[-1]["role"] == "user"
    assert "not valid JSON" in repair.messages[-1]["content"]
    assert repair.response_format_type == first.response_format_type == "json_schema"


async def test_schema_error_is_repaired_and_usage_summed(fake: FakeUpstream, make_client: MakeClient) -> None:
    fake.script(
        Reply(content=json.dumps({"summary": "no key points"}), usage=(100, 10)),
        Reply(content=json.dumps(GOOD), usage=(150, 20)),
    )
    client = make_client()

    result = await summarise(client)

    assert result.value == Summary(**GOOD)
    assert result.usage == Usage(250, 30)
    assert "key_points" in fake.chat_requests()[1].messages[-1]["content"]


# -- structured-output negotiation -----------------------------------------------------


async def test_json_schema_rejected_falls_back_and_is_remembered(
    fake: FakeUpstream, make_client: MakeClient
) -> None:
    fake.reject_json_schema = True
    fake.reply = lambda body: json.dumps(GOOD)
    client = make_client()

    await summarise(client)
    assert [r.response_format_type for r in fake.chat_requests()] == ["json_schema", "json_object"]

    await summarise(client)
    assert [r.response_format_type for r in fake.chat_requests()] == ["json_schema", "json_object", "json_object"]
    negotiated = client.status()["structured_output"]["negotiated"]  # type: ignore[index]
    assert negotiated == [{"base_url": fake.base_url, "model": fake.model, "mode": "json_object"}]


async def test_both_json_modes_rejected_falls_back_to_text(fake: FakeUpstream, make_client: MakeClient) -> None:
    fake.reject_json_schema = fake.reject_json_object = True
    fake.reply = lambda body: "Sure:\n```json\n" + json.dumps(GOOD) + "\n```"
    client = make_client()

    assert (await summarise(client)).value == Summary(**GOOD)
    await summarise(client)

    assert [r.response_format_type for r in fake.chat_requests()] == ["json_schema", "json_object", None, None]


async def test_explicit_mode_does_not_fall_back(fake: FakeUpstream, make_client: MakeClient) -> None:
    fake.reject_json_schema = True
    client = make_client(structured_output="json_schema")

    with pytest.raises(TaskError) as caught:
        await summarise(client)

    assert (caught.value.code, caught.value.retryable) == ("upstream_rejected", False)
    assert "structured_output" in caught.value.message
    assert len(fake.chat_requests()) == 1


async def test_max_tokens_renamed_when_the_provider_asks(fake: FakeUpstream, make_client: MakeClient) -> None:
    fake.reject_max_tokens = True
    client = make_client()

    await summarise(client, max_tokens=100)
    await summarise(client, max_tokens=100)

    bodies = [r.body for r in fake.chat_requests()]
    assert ["max_tokens" in b for b in bodies] == [True, False, False]
    assert [b.get("max_completion_tokens") for b in bodies] == [None, 100, 100]


# -- retries and error codes -----------------------------------------------------------


async def test_429_waits_for_retry_after(fake: FakeUpstream, make_client: MakeClient) -> None:
    fake.script(rate_limited(retry_after=1))
    client = make_client()

    await summarise(client)

    first, second = fake.chat_requests()
    assert 0.95 <= second.time - first.time < 3.0


async def test_permanent_500_is_upstream_unavailable(fake: FakeUpstream, make_client: MakeClient) -> None:
    fake.default = server_error(500)
    client = make_client(max_retries=2)

    with pytest.raises(TaskError) as caught:
        await summarise(client)

    assert (caught.value.code, caught.value.retryable) == ("upstream_unavailable", True)
    assert len(fake.chat_requests()) == 3


async def test_transient_503_then_success(fake: FakeUpstream, make_client: MakeClient) -> None:
    fake.script(server_error(503))
    result = await summarise(make_client())
    assert isinstance(result.value, Summary)
    assert len(fake.chat_requests()) == 2


async def test_non_json_body_is_retried(fake: FakeUpstream, make_client: MakeClient) -> None:
    fake.script(RawReply())
    result = await summarise(make_client())
    assert isinstance(result.value, Summary)
    assert len(fake.chat_requests()) == 2


async def test_hang_is_upstream_timeout(fake: FakeUpstream, make_client: MakeClient) -> None:
    fake.default = Hang()
    client = make_client(timeout=0.3, max_retries=1)

    with pytest.raises(TaskError) as caught:
        await summarise(client)

    assert (caught.value.code, caught.value.retryable) == ("upstream_timeout", True)
    assert len(fake.chat_requests()) == 2


async def test_persistent_429_is_upstream_rate_limited(fake: FakeUpstream, make_client: MakeClient) -> None:
    fake.default = rate_limited(retry_after=None)
    with pytest.raises(TaskError) as caught:
        await summarise(make_client(max_retries=1))
    assert (caught.value.code, caught.value.retryable) == ("upstream_rate_limited", True)
    assert len(fake.chat_requests()) == 2


async def test_retry_after_beyond_the_cap_fails_at_once(fake: FakeUpstream, make_client: MakeClient) -> None:
    fake.default = rate_limited(retry_after=3600)
    with pytest.raises(TaskError) as caught:
        await summarise(make_client())
    assert (caught.value.code, caught.value.retryable) == ("upstream_rate_limited", True)
    assert "3600" in caught.value.message
    assert len(fake.chat_requests()) == 1


@pytest.mark.parametrize(
    ("action", "code"),
    [
        (refusal(), "model_refused"),
        (truncated(), "content_too_long"),
        (empty(), "empty_output"),
        (context_length_exceeded(), "content_too_long"),
        (unknown_model(), "upstream_rejected"),
        (insufficient_quota(), "quota_exceeded"),
    ],
)
async def test_failures_with_their_own_codes_are_not_retried(
    fake: FakeUpstream, make_client: MakeClient, action: Any, code: str
) -> None:
    fake.default = action
    with pytest.raises(TaskError) as caught:
        await summarise(make_client())
    assert caught.value.code == code
    assert len(fake.chat_requests()) == 1


async def test_api_key_never_in_messages_or_logs(
    fake: FakeUpstream, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    fake.require_api_key = "sk-the-right-one"
    caplog.set_level(logging.DEBUG, logger="insightreader")

    with pytest.raises(TaskError) as caught:
        await summarise(make_client())

    assert caught.value.code == "upstream_rejected"
    assert "Incorrect API key" in caught.value.message
    assert API_KEY not in caught.value.message
    assert API_KEY not in caplog.text


# -- streaming -------------------------------------------------------------------------


async def test_stream_deltas_concatenate_and_usage_is_the_providers(
    fake: FakeUpstream, make_client: MakeClient
) -> None:
    fake.reply = "Reading slowly is a skill. " * 4
    fake.usage = (42, 24)
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    result = await make_client().stream_text(MESSAGES, on_delta, max_tokens=300)

    assert len(deltas) > 3
    assert "".join(deltas) == result.value == fake.reply
    assert result.usage == Usage(42, 24)
    [request] = fake.chat_requests()
    assert request.body["stream"] is True
    assert request.body["stream_options"] == {"include_usage": True}
    assert request.body["messages"] == MESSAGES
    assert request.body["max_tokens"] == 300


async def test_stream_without_usage_is_estimated(fake: FakeUpstream, make_client: MakeClient) -> None:
    fake.reply = "読書は楽しい。 Reading is fun."
    fake.stream_usage = False

    async def on_delta(text: str) -> None:
        return None

    result = await make_client().stream_text(MESSAGES, on_delta)

    assert result.usage.completion_tokens == estimate_text_tokens(fake.reply) == 7 + 4
    assert result.usage.prompt_tokens > 0


async def test_stream_broken_after_deltas_is_not_retried(fake: FakeUpstream, make_client: MakeClient) -> None:
    fake.script(broken_stream(after=2))
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    with pytest.raises(TaskError) as caught:
        await make_client().stream_text(MESSAGES, on_delta)

    assert (caught.value.code, caught.value.retryable) == ("upstream_stream_broken", True)
    assert len(deltas) == 2
    assert len(fake.chat_requests()) == 1


async def test_stream_broken_before_any_delta_is_retried(fake: FakeUpstream, make_client: MakeClient) -> None:
    fake.script(broken_stream(after=0))
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    result = await make_client().stream_text(MESSAGES, on_delta)

    assert "".join(deltas) == result.value
    assert len(fake.chat_requests()) == 2


async def test_stream_length_and_refusal(fake: FakeUpstream, make_client: MakeClient) -> None:
    fake.script(truncated("An answer that stops"), refusal())
    client = make_client()

    async def on_delta(text: str) -> None:
        return None

    for code in ("content_too_long", "model_refused"):
        with pytest.raises(TaskError) as caught:
            await client.stream_text(MESSAGES, on_delta)
        assert caught.value.code == code


# -- admission control -----------------------------------------------------------------


async def test_requests_per_minute_spreads_requests(fake: FakeUpstream, make_client: MakeClient) -> None:
    client = make_client(requests_per_minute=120)

    await asyncio.gather(*(summarise(client) for _ in range(4)))

    times = sorted(r.time for r in fake.chat_requests())
    assert all(later - earlier >= 0.45 for earlier, later in zip(times, times[1:]))


async def test_ratelimit_headers_pause_the_next_request(fake: FakeUpstream, make_client: MakeClient) -> None:
    fake.response_headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "600ms"}
    client = make_client()

    await summarise(client)
    await summarise(client)

    first, second = fake.chat_requests()
    assert second.time - first.time >= 0.55


async def test_circuit_breaker_defers_while_down_and_recovers(
    fake: FakeUpstream, make_client: MakeClient
) -> None:
    client = make_client(max_retries=1, tuning=replace(FAST, breaker_threshold=3))
    await summarise(client)
    await fake.down()

    with pytest.raises(TaskError) as caught:
        await summarise(client)  # two connection failures: still closed
    assert caught.value.code == "upstream_unavailable"
    with pytest.raises(TaskDeferred):
        await summarise(client)  # the third failure opens the circuit; the retry is deferred
    assert client.status()["circuit"]["state"] == "open"  # type: ignore[index]
    with pytest.raises(TaskDeferred):
        await summarise(client)

    waiter = asyncio.ensure_future(client.wait_available())
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(waiter), 0.3)

    await fake.up()
    await fake.wait_for_requests(1, path=MODELS_PATH)  # the probe asks GET /models
    await asyncio.wait_for(waiter, 5.0)
    assert client.status()["circuit"]["state"] == "half_open"  # type: ignore[index]

    result = await summarise(client)
    assert isinstance(result.value, Summary)
    assert client.status()["circuit"]["state"] == "closed"  # type: ignore[index]
    await asyncio.wait_for(client.wait_available(), 0.1)


# -- the fake from other processes ----------------------------------------------------

SCRIPT = '''
import asyncio, sys
from insightreader.config import LLMSettings
from insightreader.llm import LLMClient
from tests.fake_upstream import FakeUpstream

async def main() -> None:
    async with FakeUpstream() as own:
        for base_url, model in ((own.base_url, own.model), (sys.argv[1], sys.argv[2])):
            settings = LLMSettings(base_url=base_url, api_key="sk-sub", model=model, max_retries=0)
            async with LLMClient(settings) as client:
                async def ignore(text: str) -> None:
                    return None
                print((await client.stream_text([{"role": "user", "content": "hi"}], ignore)).value)

asyncio.run(main())
'''


async def test_fake_serves_another_process_and_runs_under_asyncio_run(fake: FakeUpstream) -> None:
    fake.reply = "answer from the parent's fake"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SCRIPT, fake.base_url, fake.model,
        cwd=Path(__file__).resolve().parent.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)

    assert process.returncode == 0, stderr.decode()
    assert stdout.decode().splitlines() == [DEFAULT_TEXT, "answer from the parent's fake"]
    assert fake.chat_requests()[0].headers["authorization"] == "Bearer sk-sub"


# -- units -----------------------------------------------------------------------------


async def test_half_open_admits_a_single_trial() -> None:
    probe_result = asyncio.Event()

    async def probe() -> bool:
        await probe_result.wait()
        return True

    breaker = CircuitBreaker(threshold=2, probe=probe, probe_initial=0.0, probe_max=0.0)
    try:
        breaker.record(breaker.admit(), "failure", "boom")
        breaker.record(breaker.admit(), "failure", "boom")
        assert breaker.status()["state"] == "open"
        with pytest.raises(TaskDeferred):
            breaker.admit()

        probe_result.set()
        await asyncio.wait_for(breaker.wait_available(), 1.0)
        assert breaker.status()["state"] == "half_open"
        trial = breaker.admit()
        assert trial is True
        with pytest.raises(TaskDeferred):
            breaker.admit()
        with pytest.raises(TimeoutError):  # blocked while the trial is in flight
            await asyncio.wait_for(breaker.wait_available(), 0.05)

        breaker.record(trial, "success")
        assert breaker.status()["state"] == "closed"
        await asyncio.wait_for(breaker.wait_available(), 0.1)
    finally:
        await breaker.aclose()


def test_token_bucket_spaces_and_carries_debt() -> None:
    now = [0.0]
    requests = TokenBucket(60, 1.0, clock=lambda: now[0])
    assert requests.wait_time(1) == 0
    requests.take(1)
    assert requests.wait_time(1) == pytest.approx(1.0)
    now[0] = 0.5
    assert requests.wait_time(1) == pytest.approx(0.5)

    tokens = TokenBucket(6000, 100.0, clock=lambda: now[0])  # 100 tokens/s
    assert tokens.wait_time(500) == 0  # bigger than the capacity: admitted when full
    tokens.take(500)
    assert tokens.wait_time(10) == pytest.approx(4.1)  # the 400-token debt, then 10 more
    tokens.give_back(300)  # the provider billed 200, not 500
    assert tokens.wait_time(10) == pytest.approx(1.1)


def test_parse_rate_limit_headers() -> None:
    assert parse_duration("20ms") == pytest.approx(0.02)
    assert parse_duration("6m0s") == 360
    assert parse_duration("1h2m3.5s") == pytest.approx(3723.5)
    assert parse_duration("1.5") == 1.5
    assert parse_duration("soon") is None
    assert parse_retry_after({"retry-after": "2"}) == 2
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    date = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (parse_retry_after({"retry-after": date}) or 0) <= 30
    assert parse_retry_after({}) is None


async def test_offline_client_from_settings() -> None:
    offline = pytest.importorskip("insightreader.llm.offline")
    client = LLMClient.from_settings(LLMSettings.model_validate({}))
    try:
        assert client.offline
        assert client.model == offline.OFFLINE_MODEL
        assert client.status()["offline"] is True
    finally:
        await client.aclose()


async def test_openai_is_refused_before_it_is_loaded() -> None:
    from insightreader.llm import sdk

    fresh = sdk._Deferred()
    with pytest.raises(RuntimeError, match="before"):
        fresh.AsyncOpenAI  # noqa: B018
