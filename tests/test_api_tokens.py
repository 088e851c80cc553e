"""Personal API tokens (docs/api.md, "API tokens"): scopes, revocation, expiry, secrecy,
last-use bookkeeping, streams, and the client and server command lines."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from insightreader.client import Client, ClientError

from tests.support.cli import run_cli
from tests.support.client import Api, register
from tests.support.pages import ARTICLE_TITLE, serve_site
from tests.support.process import ServerProcess
from tests.support.sse import open_stream

ARTICLE = (
    "# Street trees\n\nStreet trees cool the air around them. Their shade lowers the temperature of the"
    " pavement by several degrees on a summer afternoon, and the water they give off cools it further.\n"
)


async def mint(api: Api, scope: str = "write", **extra: Any) -> dict[str, Any]:
    response = await api.post("/api/v1/tokens", {"name": f"{scope} script", "scope": scope, **extra})
    assert response.status_code == 201, response.text
    return response.json()


def bearer(token: dict[str, Any] | str) -> dict[str, str]:
    secret = token if isinstance(token, str) else token["token"]
    return {"Authorization": f"Bearer {secret}"}


def code(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def database(server: ServerProcess) -> Path:
    return server.config_path.parent / "data" / "test.db"


async def test_a_read_token_only_reads(http: httpx.AsyncClient, api: Api) -> None:
    token = await mint(api, "read")
    assert token["token"].startswith("irt_") and token["scope"] == "read" and token["expires_at"] is None
    listed = await http.get("/api/v1/tasks", headers=bearer(token))
    assert listed.status_code == 200, listed.text
    me = await http.get("/api/v1/auth/me", headers=bearer(token))
    assert me.json()["username"] == api.username
    submitted = await http.post(
        "/api/v1/insights/generate", json={"selected_text": "Street trees cool the air."}, headers=bearer(token)
    )
    assert code(submitted) == (403, "insufficient_scope")
    assert code(await http.delete("/api/v1/articles/x", headers=bearer(token))) == (403, "insufficient_scope")
    # Nothing was created by the refused submit.
    assert (await api.get("/api/v1/tasks")).json()["items"] == []
    assert code(await http.get("/api/v1/tokens", headers=bearer(token))) == (403, "session_required")


async def test_a_write_token_submits_but_manages_no_credentials(http: httpx.AsyncClient, api: Api) -> None:
    token = await mint(api, "write")
    submitted = await http.post(
        "/api/v1/test/tasks/echo", json={"input": {"n": 1}}, headers=bearer(token)
    )
    assert submitted.status_code == 202, submitted.text
    assert (await api.wait_status(submitted.json()["task_id"], "completed"))["result"]["echo"] == {"n": 1}

    refused = [
        await http.post("/api/v1/tokens", json={"name": "more", "scope": "write"}, headers=bearer(token)),
        await http.get("/api/v1/tokens", headers=bearer(token)),
        await http.delete(f"/api/v1/tokens/{token['token_id']}", headers=bearer(token)),
        await http.post(
            "/api/v1/auth/password",
            json={"current_password": "correct horse battery", "new_password": "another long passphrase"},
            headers=bearer(token),
        ),
        await http.get("/api/v1/auth/sessions", headers=bearer(token)),
        await http.post("/api/v1/auth/logout", headers=bearer(token)),
        await http.post("/api/v1/sse/ticket", headers=bearer(token)),
    ]
    assert [code(r) for r in refused] == [(403, "session_required")] * len(refused)
    # The password did not change: the old one still signs in.
    login = await http.post("/api/v1/auth/login", json={"username": api.username, "password": "correct horse battery"})
    assert login.status_code == 200


async def test_a_revoked_token_is_refused_on_the_next_request(http: httpx.AsyncClient, api: Api) -> None:
    token = await mint(api)
    assert (await http.get("/api/v1/tasks", headers=bearer(token))).status_code == 200
    assert (await api.delete(f"/api/v1/tokens/{token['token_id']}")).status_code == 204
    assert code(await http.get("/api/v1/tasks", headers=bearer(token))) == (401, "unauthorized")
    assert code(await api.delete(f"/api/v1/tokens/{token['token_id']}")) == (404, "not_found")
    # Another user cannot revoke (or see) someone's token.
    other = await register(http)
    kept = await mint(api)
    assert code(await other.delete(f"/api/v1/tokens/{kept['token_id']}")) == (404, "not_found")
    assert (await other.get("/api/v1/tokens")).json() == {"tokens": []}
    assert (await http.get("/api/v1/tasks", headers=bearer(kept))).status_code == 200


async def test_an_expired_or_unknown_token_is_refused(server: ServerProcess, http: httpx.AsyncClient, api: Api) -> None:
    token = await mint(api, "read", expires_in_days=30)
    assert token["expires_at"] > token["created_at"]
    assert (await http.get("/api/v1/tasks", headers=bearer(token))).status_code == 200
    with closing(sqlite3.connect(database(server), timeout=10)) as db, db:
        db.execute("UPDATE api_tokens SET expires_at = '2020-01-01T00:00:00.000Z' WHERE id = ?", (token["token_id"],))
    assert code(await http.get("/api/v1/tasks", headers=bearer(token))) == (401, "unauthorized")
    assert code(await http.get("/api/v1/tasks", headers=bearer("irt_" + "x" * 43))) == (401, "unauthorized")
    # The expired one is still listed (to be revoked), with its expiry.
    [listed] = (await api.get("/api/v1/tokens")).json()["tokens"]
    assert listed["expires_at"] == "2020-01-01T00:00:00.000Z"


async def test_the_secret_is_shown_once_and_never_listed(server: ServerProcess, api: Api) -> None:
    token = await mint(api, "read", expires_in_days=7)
    assert set(token) == {"token_id", "token", "name", "scope", "created_at", "last_used_at", "expires_at"}
    response = await api.get("/api/v1/tokens")
    [listed] = response.json()["tokens"]
    assert set(listed) == {"token_id", "name", "scope", "created_at", "last_used_at", "expires_at"}
    assert listed["name"] == "read script" and listed["scope"] == "read"
    stored_hash = hashlib.sha256(token["token"].encode()).hexdigest()
    assert token["token"] not in response.text and stored_hash not in response.text
    with closing(sqlite3.connect(database(server))) as db:
        [(digest,)] = db.execute("SELECT digest FROM api_tokens").fetchall()
    assert digest == stored_hash  # the store keeps the hash, not the token


async def test_bad_token_requests_are_4xx(http: httpx.AsyncClient, api: Api) -> None:
    for body in (
        {"name": "x", "scope": "admin"},
        {"name": "", "scope": "read"},
        {"name": " ", "scope": "read"},
        {"name": "x" * 101, "scope": "read"},
        {"name": "x", "scope": "read", "expires_in_days": 0},
        {"name": "x", "scope": "read", "expires_in_days": "7"},
        {"name": "x", "scope": "read", "extra": 1},
        {"scope": "read"},
    ):
        assert code(await api.post("/api/v1/tokens", body)) == (422, "validation_error"), body
    assert code(await http.post("/api/v1/tokens", json={"name": "x", "scope": "read"})) == (401, "unauthorized")


async def test_at_most_50_tokens_per_user(http: httpx.AsyncClient, api: Api) -> None:
    for n in range(50):
        assert (await api.post("/api/v1/tokens", {"name": f"t{n}", "scope": "read"})).status_code == 201
    assert code(await api.post("/api/v1/tokens", {"name": "one more", "scope": "read"})) == (409, "too_many_tokens")
    tokens = (await api.get("/api/v1/tokens")).json()["tokens"]
    assert len(tokens) == 50
    assert (await api.delete(f"/api/v1/tokens/{tokens[0]['token_id']}")).status_code == 204
    assert (await api.post("/api/v1/tokens", {"name": "one more", "scope": "read"})).status_code == 201
    # Someone else's limit is their own.
    other = await register(http)
    assert (await other.post("/api/v1/tokens", {"name": "mine", "scope": "read"})).status_code == 201


async def test_last_used_at_is_written_at_shutdown_not_per_request(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server(auth={"token_use_flush_interval": 3600.0})
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = await register(http)
        token = await mint(api, "read")
        unused = await mint(api, "read")
        assert (await http.get("/api/v1/tasks", headers=bearer(token))).status_code == 200
        listed = {t["token_id"]: t for t in (await api.get("/api/v1/tokens")).json()["tokens"]}
        # Shown at once (from memory) ...
        assert listed[token["token_id"]]["last_used_at"] >= token["created_at"]
        assert listed[unused["token_id"]]["last_used_at"] is None
    # ... but not written per request ...
    with closing(sqlite3.connect(database(server))) as db:
        assert db.execute("SELECT count(*) FROM api_tokens WHERE last_used_at IS NOT NULL").fetchone() == (0,)
    # ... only by the flush (here: the one at shutdown).
    assert server.terminate() == 0
    with closing(sqlite3.connect(database(server))) as db:
        used = dict(db.execute("SELECT id, last_used_at FROM api_tokens").fetchall())
    assert used[token["token_id"]] == listed[token["token_id"]]["last_used_at"]
    assert used[unused["token_id"]] is None


async def test_last_used_at_is_written_every_interval(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(auth={"token_use_flush_interval": 0.2})
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = await register(http)
        token = await mint(api, "read")
        assert (await http.get("/api/v1/tasks", headers=bearer(token))).status_code == 200
        # Each GET /tokens shows what is stored merged with what is not yet: wait for the
        # store itself (a bounded wait on the periodic flush).
        with closing(sqlite3.connect(database(server))) as db:
            deadline = time.monotonic() + 10
            while db.execute("SELECT last_used_at FROM api_tokens").fetchone() == (None,):
                assert time.monotonic() < deadline, "the periodic flush did not write last_used_at"
                (await http.get("/healthz")).raise_for_status()


async def test_a_stream_with_an_api_token(http: httpx.AsyncClient, api: Api) -> None:
    reader, writer = await mint(api, "read"), await mint(api, "write")
    async with open_stream(http, reader["token"]) as header_stream, open_stream(
        http, params={"token": reader["token"]}
    ) as query_stream:
        assert header_stream.response.status_code == 200 and query_stream.response.status_code == 200
        assert (await header_stream.events.next()).event == "connected"
        assert (await query_stream.events.next()).event == "connected"
        submitted = await http.post("/api/v1/test/tasks/echo", json={"input": {"n": 2}}, headers=bearer(writer))
        task_id = submitted.json()["task_id"]
        for stream in (header_stream, query_stream):
            seen = await stream.events.until(lambda m: m.event == "task_completed" and m.data["task_id"] == task_id)
            assert [m.event for m in seen if m.data.get("task_id") == task_id][-1] == "task_completed"
    assert (await api.delete(f"/api/v1/tokens/{reader['token_id']}")).status_code == 204
    async with open_stream(http, reader["token"]) as refused:
        assert refused.response.status_code == 401


async def test_the_client_cli_takes_the_token_from_the_environment(
    server: ServerProcess, api: Api, tmp_path: Path
) -> None:
    token = await mint(api, "write")
    article = tmp_path / "trees.md"
    article.write_text(ARTICLE)
    env = {
        "INSIGHTREADER_TOKEN": token["token"],
        "INSIGHTREADER_SERVER": server.url,
        "INSIGHTREADER_CLIENT_CONFIG": str(tmp_path / "no-login.json"),  # no saved login
    }
    result = run_cli("analyze", str(article), "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)
    [stored] = (await api.get("/api/v1/articles")).json()["items"]
    assert stored["title"] == "Street trees"
    assert not (tmp_path / "no-login.json").exists()

    listed = run_cli("tasks", "--json", cwd=tmp_path, env=env)
    assert listed.returncode == 0 and json.loads(listed.stdout)[0]["status"] == "completed", listed.stderr

    # --token wins over the environment; a read token cannot submit.
    reader = await mint(api, "read")
    refused = run_cli("analyze", str(article), "--token", reader["token"], cwd=tmp_path, env=env)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: insufficient_scope: "), refused.stderr


async def test_the_client_cli_analyzes_a_url_with_a_token(start_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    """`insightreader analyze URL` in a fresh shell with only INSIGHTREADER_TOKEN: the
    server fetches the page (a local site), and the analysis is printed."""
    server = start_server(library={"fetch_allow_private": True})
    async with serve_site() as site, httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = await register(http)
        token = await mint(api, "write")
        env = {
            "INSIGHTREADER_TOKEN": token["token"],
            "INSIGHTREADER_SERVER": server.url,
            "INSIGHTREADER_CLIENT_CONFIG": str(tmp_path / "no-login.json"),
        }
        result = await asyncio.to_thread(run_cli, "analyze", site.url("/article"), "--json", cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["analysis"]["summary"]
        [stored] = (await api.get("/api/v1/articles")).json()["items"]
        assert (stored["title"], stored["fetch_status"], stored["url"]) == (ARTICLE_TITLE, "fetched", site.url("/article"))


async def test_the_python_client_takes_the_token_from_the_environment(
    server: ServerProcess, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = await mint(api, "write")
    monkeypatch.setenv("INSIGHTREADER_TOKEN", token["token"])
    async with Client(server.url) as client:
        assert (await client.me())["username"] == api.username
        submitted = await client.analyze_article("Street trees", ARTICLE)
        assert (await client.wait(submitted, timeout=30))
    # Credentials given to the client win over the environment.
    monkeypatch.setenv("INSIGHTREADER_TOKEN", "irt_" + "x" * 43)
    async with Client(server.url, token["token"]) as client:
        assert (await client.me())["username"] == api.username
    async with Client(server.url) as client:
        with pytest.raises(ClientError) as refused:
            await client.me()
    assert refused.value.status == 401


async def test_the_server_cli_manages_a_users_tokens(server: ServerProcess, http: httpx.AsyncClient, api: Api) -> None:
    config = ["--config", str(server.config_path)]
    cwd = server.config_path.parent
    created = run_cli("token", "create", *config, "--user", api.username, "--name", "cron", "--scope", "read", cwd=cwd)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("irt_")
    assert (await http.get("/api/v1/tasks", headers=bearer(secret))).status_code == 200

    listed = run_cli("token", "list", *config, "--user", api.username, "--json", cwd=cwd)
    [row] = json.loads(listed.stdout)
    assert row["name"] == "cron" and row["scope"] == "read" and secret not in listed.stdout

    revoked = run_cli("token", "revoke", *config, "--user", api.username, row["token_id"], cwd=cwd)
    assert revoked.returncode == 0, revoked.stderr
    # The running server refuses it on the very next request.
    assert (await http.get("/api/v1/tasks", headers=bearer(secret))).status_code == 401

    unknown = run_cli("token", "list", *config, "--user", "nobody-here", cwd=cwd)
    assert unknown.returncode != 0 and "no user named nobody-here" in unknown.stderr
