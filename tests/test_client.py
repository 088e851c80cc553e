"""``insightreader.client`` and the client verbs of the command line, against a real
server subprocess (the offline model; the test task type ``gate`` where a task must
not finish before the test says so)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from insightreader.client import Client, ClientError, ClientTimeout, Delta, Submitted, TaskFailed, _InsightText
from insightreader.client_cli import CONFIG_ENV
from tests.conftest import base_config
from tests.support.cli import clean_env
from tests.support.process import ServerProcess, free_port, write_config

PASSWORD = "correct horse battery"
SECRET = base_config(Path("."))["auth"]["secret"]
ARTICLE = (
    "Cities are planting trees to cool their streets. A mature tree can lower the air "
    "temperature beneath it by several degrees. Critics argue that trees need water that dry "
    "cities cannot spare. Planners answer that shade also cuts the energy spent on air "
    "conditioning, which saves water at power plants."
)
SELECTION = "Critics argue that trees need water that dry cities cannot spare."
CLI_TIMEOUT = 30


async def until(check: Callable[[], Awaitable[bool] | bool], timeout: float = 15.0, what: str = "condition") -> None:
    """Poll ``check`` (sync or async) until it holds; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = check()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the tests that don't stop it (a server start costs a second)."""
    root = tmp_path_factory.mktemp("client")
    server = ServerProcess(write_config(root / "config.toml", base_config(root))).start()
    yield server
    server.stop()
    print(f"--- server log ({server.url}) ---\n" + "\n".join(server.logs[-80:]))


_users = iter(range(1, 10_000))


async def new_user(url: str) -> tuple[str, str]:
    username = f"client{next(_users)}"
    async with Client(url) as c:
        await c.register(username, PASSWORD)
    return username, PASSWORD


def mint(like: str, *, iat: float, exp: float) -> str:
    """An access token of the same user and session as ``like``, with other times."""
    claims = jwt.decode(like, options={"verify_signature": False})
    return jwt.encode({**claims, "iat": int(iat), "exp": int(exp)}, SECRET, algorithm="HS256")


# -- the client ----------------------------------------------------------------------


async def test_register_login_analyze_and_wait(live: ServerProcess) -> None:
    username, password = await new_user(live.url)
    saved: list[dict[str, Any]] = []
    async with Client(live.url + "/", username=username, password=password, on_tokens=saved.append) as c:
        assert len(saved) == 1 and c.access_token == saved[0]["access_token"]
        assert (await c.me())["username"] == username

        task = await c.analyze_article("Trees", ARTICLE, url="https://example.com/trees")
        assert isinstance(task, Submitted) and task.status == "pending" and task.article_id
        result = await c.wait(task, timeout=20)
        assert result["article_id"] == task.article_id
        assert result["analysis"]["summary"] and result["analysis"]["key_points"]
        assert (await c.get_task(task.task_id))["result"] == result
        assert (await c.get_article(task.article_id))["analysis"] == result["analysis"]

        # The same content again: a dedup hit answered at once, which wait() returns as is.
        again = await c.analyze_article("Trees", ARTICLE)
        assert again.finished and again.deduplicated and again.task_id == task.task_id
        assert await c.wait(again, timeout=1) == result

        # The other routes, briefly.
        lenses = await c.thinking_lenses()
        meta = await c.meta_analysis(task.article_id)
        lens = await c.thinking_lens(task.article_id, lenses[0]["type"])
        buttons = await c.generate_buttons(SELECTION)
        outcomes = await asyncio.gather(*(c.wait(t, timeout=20) for t in (meta, lens, buttons)))
        assert outcomes[0]["meta_analysis"] and outcomes[1]["lens_type"] == lenses[0]["type"]
        assert outcomes[2]["buttons"]
        assert [a["article_id"] for a in (await c.list_articles())["items"]] == [task.article_id]
        assert {t["task_id"] async for t in c.iter_tasks(page_size=2)} >= {task.task_id, meta.task_id, buttons.task_id}
        assert (await c.usage())["days"]
        await c.delete_article(task.article_id)
        assert (await c.list_articles())["items"] == []


async def test_tags_and_states(live: ServerProcess) -> None:
    username, password = await new_user(live.url)
    async with Client(live.url, username=username, password=password) as c:
        first = await c.analyze_article("Trees", ARTICLE)
        second = await c.analyze_article("Other", "Another text to file away.")
        assert await c.set_tags(first.article_id, ["Cities", "trees"]) == ["Cities", "trees"]
        assert await c.set_tags(second.article_id, ["cities"]) == ["Cities"]
        assert await c.tags() == [{"name": "Cities", "count": 2}, {"name": "trees", "count": 1}]
        changed = await c.update_article(second.article_id, archived=True, favorite=True)
        assert (changed["archived"], changed["favorite"], changed["title"]) == (True, True, "Other")
        assert [a["article_id"] async for a in c.iter_articles(tag="CITIES", page_size=1)] == [
            second.article_id, first.article_id
        ]
        assert [a["article_id"] for a in (await c.list_articles(archived=False))["items"]] == [first.article_id]
        assert [a["article_id"] for a in (await c.list_articles(favorite=True, tag="trees"))["items"]] == []
        with pytest.raises(ClientError) as refused:
            await c.set_tags(first.article_id, ["x" * 65])
        assert (refused.value.status, refused.value.code) == (422, "validation_error")


async def test_settings_and_reanalysis(live: ServerProcess) -> None:
    username, password = await new_user(live.url)
    async with Client(live.url, username=username, password=password) as c:
        article = await c.analyze_article("Trees", ARTICLE)
        await c.wait(article, timeout=20)
        assert (await c.settings())["output_language"] == "auto"
        changed = await c.update_settings(output_language="de", instructions={"article_analysis": "Be brief."})
        assert (changed["output_language"], changed["instructions"]["article_analysis"]) == ("de", "Be brief.")
        assert changed["auto_analyze"] is True  # not given: unchanged
        started = await c.reanalyze("stale")
        assert started["total"] == 1
        deadline = asyncio.get_running_loop().time() + 20
        while (state := await c.batch(started["batch_id"]))["tasks"] != {"completed": 1}:
            assert asyncio.get_running_loop().time() < deadline, state
            await asyncio.sleep(0.05)
        assert (await c.cancel_batch(started["batch_id"]))["status"] == "finished"  # it had ended
        with pytest.raises(ClientError) as refused:
            await c.reanalyze("everything")
        assert refused.value.status in (400, 422)


async def test_stream_insight_yields_the_text_as_it_is_written(live: ServerProcess) -> None:
    username, password = await new_user(live.url)
    async with Client(live.url, username=username, password=password) as c:
        article = await c.analyze_article("Trees", ARTICLE)
        pieces = [d async for d in c.stream_insight(SELECTION, article_id=article.article_id, timeout=20)]
        assert len(pieces) >= 3, pieces
        assert all(isinstance(d, Delta) and not d.restart for d in pieces)
        assert [d.index for d in pieces if d.index is not None] == list(range(len([d for d in pieces if d.index is not None])))
        [stored] = (await c.list_tasks(task_type="insight_generation"))["items"]
        assert "".join(pieces) == stored["result"]["insight"]

        # The same selection again is a dedup hit: the whole text in one piece.
        again = [d async for d in c.stream_insight(SELECTION, article_id=article.article_id, timeout=10)]
        assert "".join(again) == stored["result"]["insight"]


async def test_client_errors_carry_status_code_and_message(live: ServerProcess) -> None:
    username, password = await new_user(live.url)
    async with Client(live.url, username=username, password=password) as c:
        with pytest.raises(ClientError) as caught:
            await c.get_task("no-such-task")
        assert (caught.value.status, caught.value.code, caught.value.message) == (404, "not_found", "no such task")
        with pytest.raises(ClientError) as caught:
            await c.analyze_article("", "text")
        assert caught.value.status == 422 and caught.value.code == "validation_error"
        with pytest.raises(ClientError) as caught:
            await c.register(username, PASSWORD)
        assert caught.value.status == 409 and caught.value.code == "conflict"
        done = await c.generate_buttons("a passage")
        await c.wait(done, timeout=20)
        with pytest.raises(ClientError) as caught:
            await c.cancel_task(done.task_id)
        assert caught.value.status == 409

        # A task that fails: TaskFailed with the task's error code.
        failing = await c.submit("/api/v1/test/tasks/fail", {"input": {"code": "broken_on_purpose"}})
        with pytest.raises(TaskFailed) as failed:
            await c.wait(failing, timeout=20)
        assert failed.value.code == "broken_on_purpose" and failed.value.task_id == failing.task_id
        # A wait that runs out.
        gated = await c.submit("/api/v1/test/tasks/gate", {"input": {"gate": f"never-{username}"}})
        with pytest.raises(ClientTimeout):
            await c.wait(gated, timeout=0.3)
        cancelled = await c.cancel_task(gated.task_id)
        assert cancelled["status"] == "cancelled"
        with pytest.raises(TaskFailed) as failed:
            await c.wait(gated.task_id, timeout=5)
        assert failed.value.code == "cancelled"

    with pytest.raises(ClientError) as caught:
        async with Client(live.url, username=username, password="wrong password!"):
            pass
    assert (caught.value.status, caught.value.code) == (401, "unauthorized")
    async with Client("http://127.0.0.1:9", "token", timeout=2, retries=0) as c:
        with pytest.raises(ClientError) as caught:
            await c.me()
    assert caught.value.status is None and caught.value.code == "connection_error"


async def test_an_expired_access_token_is_refreshed(live: ServerProcess) -> None:
    username, password = await new_user(live.url)
    async with Client(live.url, username=username, password=password) as c:
        user_id = (await c.me())["user_id"]
        access, refresh = c.access_token, c.refresh_token
    now = time.time()
    saved: list[dict[str, Any]] = []

    # Known to be expired: renewed before it is sent.
    expired = mint(access, iat=now - 100, exp=now - 10)
    async with Client(live.url, expired, refresh_token=refresh, on_tokens=saved.append) as c:
        assert (await c.me())["user_id"] == user_id
        assert c.access_token != expired and saved[-1]["access_token"] == c.access_token
        # Refresh tokens rotate: the one used is spent, its successor is the client's.
        assert c.refresh_token != refresh and saved[-1]["refresh_token"] == c.refresh_token
        refresh = c.refresh_token

    # Refused by the server (it cannot be read): renewed on the 401, and the request repeated.
    async with Client(live.url, "not-a-jwt", refresh_token=refresh) as c:
        assert (await c.me())["user_id"] == user_id
        refresh = c.refresh_token
    # Refresh token refused too: a login, when the client has the password.
    async with Client(live.url, expired, refresh_token="bad", username=username, password=password) as c:
        assert (await c.me())["user_id"] == user_id
    # Nothing to renew with: the server's 401.
    async with Client(live.url, expired) as c:
        with pytest.raises(ClientError) as caught:
            await c.me()
        assert caught.value.status == 401

    # A token that expires while wait() follows the stream: the server closes the stream
    # (session_expired); the client reconnects with a refreshed token.
    short = mint(access, iat=now, exp=now + 2)
    async with Client(live.url, short, refresh_token=refresh, poll_interval=30) as c:
        gate = f"refresh-{username}"
        task = await c.submit("/api/v1/test/tasks/gate", {"input": {"gate": gate}})
        waiter = asyncio.create_task(c.wait(task, timeout=30))
        await until(lambda: c.stream_connected, what="the stream")
        await until(lambda: c.access_token != short, timeout=20, what="a refreshed token")
        await until(lambda: c.stream_connected, what="the stream again")
        await c.request("POST", f"/api/v1/test/gates/{gate}")
        assert (await asyncio.wait_for(waiter, 20))["gate"] == gate


async def test_wait_resumes_after_the_server_is_killed_and_restarted(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server(server={"bind": f"127.0.0.1:{free_port()}"})
    url = server.url
    username, password = await new_user(url)
    # poll_interval=30: the result can only come through the (resumed) stream.
    async with Client(url, username=username, password=password, poll_interval=30) as c:
        task = await c.submit("/api/v1/test/tasks/gate", {"input": {"gate": "restart"}})
        waiter = asyncio.create_task(c.wait(task, timeout=60))
        await until(lambda: c.stream_connected, what="the stream")
        await until(
            lambda: _status(c, task.task_id, "running"), what="the task to run"
        )

        server.kill()
        await until(lambda: not c.stream_connected, what="the client to notice")
        assert not waiter.done()
        await asyncio.to_thread(server.start)
        assert server.url == url

        # Recovered at start, the task runs again (attempt 2) and waits on its gate.
        await until(lambda: _status(c, task.task_id, "running", attempts=2), timeout=20, what="the rerun")
        await until(lambda: c.stream_connected, timeout=20, what="the stream to reconnect")
        await c.request("POST", "/api/v1/test/gates/restart")
        assert await asyncio.wait_for(waiter, 20) == {"gate": "restart", "attempt": 2}

        # Resuming from an id handed out before the crash replays the task's story once.
        seen: list[tuple[int, str, int | None]] = []
        async with asyncio.timeout(10):
            async for event in c.events(last_event_id=0):
                if event.data.get("task_id") == task.task_id:
                    assert event.id is not None
                    seen.append((event.id, event.event, event.data.get("attempt")))
                if event.event == "task_completed":
                    break
        assert [(name, attempt) for _, name, attempt in seen] == [
            ("task_queued", None), ("task_started", 1), ("task_queued", None), ("task_started", 2),
            ("task_completed", None),
        ]
        assert [i for i, _, _ in seen] == sorted({i for i, _, _ in seen})


async def _status(c: Client, task_id: str, status: str, attempts: int | None = None) -> bool:
    try:
        task = await c.get_task(task_id)
    except ClientError as exc:
        if exc.transient:
            return False
        raise
    return task["status"] == status and (attempts is None or task["attempts"] == attempts)


async def test_wait_polls_when_the_stream_is_refused(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(sse={"max_connections_per_user": 1})
    username, password = await new_user(server.url)
    async with Client(server.url, username=username, password=password, poll_interval=0.1) as c:
        headers = {"Authorization": f"Bearer {c.access_token}"}
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            async with http.stream("GET", "/api/v1/events", headers=headers) as held:
                assert held.status_code == 200  # the user's one stream
                task = await c.analyze_article("Trees", ARTICLE)
                result = await c.wait(task, timeout=20)
                assert result["analysis"]["summary"]
                assert not c.stream_connected
                text = "".join([d async for d in c.stream_insight(SELECTION, timeout=20)])
                assert text == (await c.list_tasks(task_type="insight_generation"))["items"][0]["result"]["insight"]


def test_insight_text_merges_by_attempt_and_index() -> None:
    text = _InsightText()
    assert text.add(1, 1, "b") == []  # waits for index 0
    assert text.add(1, 0, "a") == ["a", "b"]
    assert text.add(1, 0, "a") == [] and text.add(1, 1, "b") == []  # seen twice: harmless
    text.start(2)  # the task ran again: the text starts over
    first = text.add(2, 0, "x")
    assert first == ["x"] and first[0].restart and first[0].attempt == 2
    assert text.add(1, 2, "c") == []  # late delta of the abandoned attempt
    rest = text.finish("xyz")
    assert rest == ["yz"] and not rest[0].restart
    other = _InsightText()
    other.add(1, 0, "abc")
    [whole] = other.finish("different")
    assert whole == "different" and whole.restart


# -- the command line ------------------------------------------------------------------


def cli(*args: str, config: Path, stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "insightreader", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd or config.parent.parent,
        env=clean_env({CONFIG_ENV: str(config)}),
        timeout=CLI_TIMEOUT,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


async def test_cli_verbs(live: ServerProcess, tmp_path: Path) -> None:
    config = tmp_path / "cfg" / "client.json"
    username, password = await new_user(live.url)

    # Not logged in yet.
    assert one_line_error(cli("tasks", config=config)).startswith("error: not_logged_in: ")

    result = cli("login", "--server", live.url, "--username", username, config=config, stdin=password + "\n")
    assert result.returncode == 0, result.stderr
    saved = json.loads(config.read_text())
    assert saved["server"] == live.url and saved["access_token"] and saved["refresh_token"]
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o600
    assert one_line_error(
        cli("login", "--server", live.url, "--username", username, config=config, stdin="wrong password\n")
    ) == "error: unauthorized: wrong username or password"

    # analyze FILE: readable text; analyze -: JSON.
    article = tmp_path / "trees.md"
    article.write_text("# Urban trees\n\n" + ARTICLE + "\n")
    result = cli("analyze", str(article), config=config)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    async with Client(live.url, saved["access_token"], refresh_token=saved["refresh_token"]) as c:
        [stored] = (await c.list_articles())["items"]
        assert stored["title"] == "Urban trees"
        analysis = stored["analysis"]
    assert result.stdout.startswith("Urban trees\n")
    assert " ".join(analysis["summary"].split()[:5]) in " ".join(result.stdout.split())
    assert all(point.split()[0] in result.stdout for point in analysis["key_points"])

    other = "Rivers shape the valleys they run through. Over millions of years water wears down rock."
    result = cli("analyze", "-", "--json", "--title", "Rivers", config=config, stdin=other)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    async with Client(live.url, saved["access_token"], refresh_token=saved["refresh_token"]) as c:
        river = await c.get_article(printed["article_id"])
    assert river["title"] == "Rivers" and printed["analysis"] == river["analysis"]

    # insight: the streamed text is the stored insight.
    result = cli("insight", SELECTION, "--article", printed["article_id"], config=config)
    assert result.returncode == 0, result.stderr
    async with Client(live.url, saved["access_token"], refresh_token=saved["refresh_token"]) as c:
        [insight] = (await c.list_tasks(task_type="insight_generation"))["items"]
    assert result.stdout == insight["result"]["insight"] + "\n"

    # tasks: a table of the user's tasks, newest first.
    result = cli("tasks", config=config)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.strip().splitlines()
    assert header.split()[:3] == ["TASK", "TYPE", "STATUS"]
    assert [row.split()[1] for row in rows] == ["insight_generation", "article_analysis", "article_analysis"]
    assert rows[0].split()[0] == insight["task_id"] and all(row.split()[2] == "completed" for row in rows)
    result = cli("tasks", "--status", "completed", "--limit", "1", config=config)
    assert len(result.stdout.strip().splitlines()) == 2
    result = cli("tasks", "--status", "failed", config=config)
    assert "(no tasks)" in result.stdout

    # search: each article found, its snippet under it.
    result = cli("search", "valleys", config=config)
    assert result.returncode == 0, result.stderr
    first, snippet, *_ = result.stdout.splitlines()
    assert first.split()[0] == printed["article_id"] and first.split()[1] == "Rivers" and "valleys" in snippet
    found = json.loads(cli("search", "urban tree", "--json", config=config).stdout)
    assert [hit["title"] for hit in found] == ["Urban trees"]
    assert "(nothing found)" in cli("search", "zyzzyva", config=config).stdout

    # Errors: one line on stderr, exit status 1.
    assert one_line_error(cli("insight", SELECTION, "--article", "nope", config=config)) == "error: not_found: no such article"
    assert one_line_error(cli("analyze", str(tmp_path / "missing.txt"), config=config)).startswith("error: cannot_read: ")
    config.write_text(json.dumps({"server": live.url, "access_token": "bad"}))
    assert one_line_error(cli("tasks", config=config)).startswith("error: unauthorized: ")
