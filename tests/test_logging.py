"""Logs over a real server run: JSON lines that parse, request ids (echoed in
``X-Request-ID``) on a request's lines, task ids on a task's lines, and no token,
ticket, password or API key anywhere in the captured output."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from insightreader import logs
from tests.conftest import base_config
from tests.fake_upstream import FakeUpstream, Reply, rate_limited
from tests.support.cli import insightreader_argv
from tests.support.client import register
from tests.support.process import ServerProcess, write_config
from tests.support.sse import open_stream

API_KEY = "sk-Distinctive-Key-4b1e9f0c2a7d55e1"
PASSWORD = "Zebra-Passw0rd-Quokka-91"


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as upstream:
        yield upstream


def upstream(fake: FakeUpstream) -> dict[str, Any]:
    return {"base_url": fake.base_url, "api_key": API_KEY, "model": fake.model}


async def logged(server: ServerProcess, found: Callable[[list[str]], bool], what: str, timeout: float = 10.0) -> list[str]:
    """The server's log lines once ``found`` holds for them (bounded wait)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = list(server.logs)
        if found(lines):
            return lines
        if time.monotonic() > deadline:
            raise AssertionError(f"the log never showed {what}:\n" + "\n".join(lines[-30:]))
        await asyncio.sleep(0.05)


def entries(lines: list[str]) -> list[dict[str, Any]]:
    """Every line as a JSON object (fails on the first line that is not one)."""
    out = []
    for line in lines:
        entry = json.loads(line)
        assert isinstance(entry, dict), line
        assert {"ts", "level", "logger", "msg"} <= set(entry), line
        out.append(entry)
    return out


async def test_json_lines_carry_request_and_task_ids(
    start_server: Callable[..., ServerProcess], fake: FakeUpstream
) -> None:
    fake.script(rate_limited(retry_after=None), Reply())  # the run logs a retry
    server = start_server(log={"format": "json"}, llm=upstream(fake))
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = await register(http)
        submitted = await api.post(
            "/api/v1/insights/generate-buttons",
            {"selected_text": "Street trees cool the air."},
            headers={"X-Request-ID": "req-json-0001"},
        )
        assert submitted.status_code == 202, submitted.text
        assert submitted.headers["x-request-id"] == "req-json-0001"
        task_id = submitted.json()["task_id"]
        assert (await api.wait_status(task_id, "completed"))["status"] == "completed"
        # An id that is not sane is replaced; none sent, one is made.
        odd = await http.get("/healthz", headers={"X-Request-ID": "not a sane id <script>"})
        made = await http.get("/healthz")
        for response in (odd, made):
            assert len(response.headers["x-request-id"]) == 32 and response.headers["x-request-id"].isalnum()
        assert odd.headers["x-request-id"] != made.headers["x-request-id"]
        marker = await http.get("/healthz-json-marker", headers={"X-Request-ID": "req-json-marker"})
        assert marker.status_code == 404 and marker.headers["x-request-id"] == "req-json-marker"

    lines = await logged(
        server,
        lambda lines: any("/healthz-json-marker" in line for line in lines)
        and any('"task completed"' in line for line in lines),
        "the marker request and the task's end",
    )
    every = entries(lines)

    # The request's lines: the engine's "task submitted" (which also names the task) and
    # the access line, both with the id the response carried.
    mine = [e for e in every if e.get("request_id") == "req-json-0001"]
    assert {e["logger"] for e in mine} >= {"hypercorn.access", "insightreader.engine"}, mine
    access = next(e for e in mine if e["logger"] == "hypercorn.access")
    assert "POST /api/v1/insights/generate-buttons" in access["msg"]
    assert any(e["msg"] == "task submitted" and e["task_id"] == task_id for e in mine)
    generated = [e for e in every if e.get("request_id") == made.headers["x-request-id"]]
    assert len(generated) == 1 and "/healthz" in generated[0]["msg"]

    # The task's lines: lifecycle lines and the LLM retry inside its run, all naming it;
    # the run is not part of the request that submitted it.
    about = [e for e in every if e.get("task_id") == task_id]
    messages = [e["msg"] for e in about]
    assert "task submitted" in messages and "task started" in messages and "task completed" in messages
    retry = [e for e in about if e["logger"] == "insightreader.llm" and "retry" in e["msg"]]
    assert retry and "429" in retry[0]["msg"], messages
    assert all(e.get("request_id") is None for e in about if e["msg"] in ("task started", "task completed"))
    for entry in every:
        if task_id in entry["msg"]:
            assert entry.get("task_id") == task_id, entry


async def test_text_lines_carry_request_ids(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = await register(http)
        task_id = await api.submit_id("echo", {"n": 1}, headers={"X-Request-ID": "req-text-0001"})
        await api.wait_status(task_id, "completed")
    lines = await logged(
        server,
        lambda lines: any("/api/v1/test/tasks/echo" in line for line in lines)
        and any("task completed" in line for line in lines),
        "the submit's access line",
    )
    access = next(line for line in lines if "logger=hypercorn.access" in line and "/api/v1/test/tasks/echo" in line)
    assert 'request_id="req-text-0001"' in access
    assert any(
        'msg="task completed"' in line and f'task_id="{task_id}"' in line for line in lines
    ), "\n".join(lines[-20:])


async def test_serve_log_format_flag(tmp_path: Path) -> None:
    """``insightreader serve --log-format json`` wins over ``log.format`` in the file."""
    path = write_config(tmp_path / "config.toml", base_config(tmp_path, log={"format": "text"}))
    argv = [*insightreader_argv(), "serve", "--config", str(path), "--log-format", "json"]
    server = ServerProcess(path, argv=argv).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            response = await http.get("/healthz-flag-marker")
            assert response.status_code == 404
        lines = await logged(server, lambda lines: any("/healthz-flag-marker" in line for line in lines), "the request")
    finally:
        server.stop()
    marker = [e for e in entries(lines) if "/healthz-flag-marker" in e["msg"]]
    assert marker[0]["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_no_secret_reaches_the_log(
    start_server: Callable[..., ServerProcess], fake: FakeUpstream, log_format: str
) -> None:
    fake.require_api_key = "sk-not-the-configured-key-000000"  # a 401 that echoes our key
    server = start_server(log={"format": log_format}, llm=upstream(fake), sse={"heartbeat": 30.0})
    secrets: list[str] = [API_KEY, PASSWORD]
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = await register(http, password=PASSWORD)
        login = (await http.post("/api/v1/auth/login", json={"username": api.username, "password": PASSWORD})).json()
        refreshed = (await http.post("/api/v1/auth/refresh", json={"refresh_token": login["refresh_token"]})).json()
        secrets += [api.token, login["access_token"], login["refresh_token"], refreshed["access_token"], refreshed["refresh_token"]]
        wrong = await http.post("/api/v1/auth/login", json={"username": api.username, "password": PASSWORD + "x"})
        assert wrong.status_code == 401
        secrets.append(PASSWORD + "x")
        assert (await api.get("/api/v1/auth/me")).status_code == 200
        # A token offered as a request id is not taken (it would be logged).
        echoed = await http.get("/api/v1/auth/me", headers={**api.headers, "X-Request-ID": api.token})
        assert echoed.headers["x-request-id"] != api.token

        # Streams: with a ticket, a token in the query, a Bearer header.
        ticket = (await api.post("/api/v1/sse/ticket")).json()["ticket"]
        secrets.append(ticket)
        for params, token in (({"ticket": ticket}, None), ({"token": api.token}, None), (None, api.token)):
            async with open_stream(http, token, params=params) as stream:
                assert stream.response.status_code == 200
                assert (await stream.events.next()).event == "connected"
        assert (await http.get("/api/v1/tasks", params={"token": api.token})).status_code == 401

        # API tokens: created, used in a header and a stream's query, refused once revoked,
        # and offered where they do not belong (a request id, a path).
        created = (await api.post("/api/v1/tokens", {"name": "cron", "scope": "read"})).json()
        secrets.append(created["token"])
        bearer = {"Authorization": f"Bearer {created['token']}"}
        assert (await http.get("/api/v1/tasks", headers=bearer)).status_code == 200
        async with open_stream(http, None, params={"token": created["token"]}) as stream:
            assert (await stream.events.next()).event == "connected"
        await http.get("/api/v1/auth/me", headers={**bearer, "X-Request-ID": created["token"]})
        await http.get(f"/api/v1/tasks/{created['token']}", headers=api.headers)
        assert (await api.delete(f"/api/v1/tokens/{created['token_id']}")).status_code == 204
        assert (await http.get("/api/v1/tasks", headers=bearer)).status_code == 401

        # LLM calls: refused with our key echoed back, then accepted.
        failed = await api.post("/api/v1/insights/generate", {"selected_text": "Street trees cool the air."})
        task = await api.wait_status(failed.json()["task_id"], "completed", "failed")
        assert task["status"] == "failed" and task["error"]["code"] == "upstream_rejected", task
        assert API_KEY not in json.dumps(task)
        fake.require_api_key = API_KEY
        ok = await api.post("/api/v1/insights/generate", {"selected_text": "Street trees shade the pavement."})
        assert (await api.wait_status(ok.json()["task_id"], "completed"))["status"] == "completed"
        assert fake.chat_requests()[-1].headers["authorization"] == f"Bearer {API_KEY}"
        await http.get("/healthz-secrets-marker")

    lines = await logged(
        server,
        lambda lines: any("/healthz-secrets-marker" in line for line in lines),
        "the marker request",
    )
    text = "\n".join(lines)
    assert "HTTP 401" in text  # the refusal was logged, without the key it echoed
    for secret in secrets:
        assert secret not in text, f"a secret reached the log: {secret[:12]}…"
    assert "Bearer ey" not in text and "?token=" not in text and "?ticket=" not in text
    if log_format == "json":
        entries(lines)


def test_redaction() -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    logs.add_secret("a-literal-secret-value")
    cases = {
        f"Authorization: Bearer {token}": token,
        f"GET /api/v1/events?token={token}&x=1": token,
        "GET /x?ticket=abc123def456": "abc123def456",
        'body {"password": "hunter2hunter2"}': "hunter2hunter2",
        "password=hunter2hunter2 next": "hunter2hunter2",
        "https://user:pa55word@example.com/v1": "pa55word",
        "Incorrect API key provided: sk-proj-abcdefghijklmnop1234.": "sk-proj-abcdefghijklmnop1234",
        "the secret is a-literal-secret-value!": "a-literal-secret-value",
        "GET /api/v1/tasks/irt_4q2JtW0m3sXkq9yLr8Hn1VZc6pBfGdEoTaUiKjYxRws": "4q2JtW0m3sXkq9yLr8Hn1VZc6pBfGdEoTaUiKjYxRws",
    }
    for text, secret in cases.items():
        assert secret not in logs.redact(text), text
    plain = 'task 9b2f6c1e completed: prompt_tokens=120 completion_tokens=30 "GET /healthz 1.1" 200'
    assert logs.redact(plain) == plain
