"""The operator's commands, run as real subprocesses against real servers: ``admin stats``,
``admin retry-failed``, ``migrate --dry-run``, ``backup`` and restore, and the first
administrator from the environment."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite
import httpx
import pytest

from insightreader import migrate
from insightreader.admin import parse_since
from insightreader.records import format_time
from tests.conftest import base_config
from tests.support import db
from tests.support.cli import one_line_error, run_cli
from tests.support.client import Api, register
from tests.support.process import ServerProcess, write_config

ADMIN_PASSWORD = "admin password one"
CHANGED_PASSWORD = "admin password two"


@pytest.fixture
def cli_config(tmp_path: Path) -> Path:
    """The configuration the servers of a test use (same database), for the CLI."""
    return write_config(tmp_path / "cli.toml", base_config(tmp_path))


def database(tmp_path: Path) -> Path:
    return Path(base_config(tmp_path)["database"]["path"])


def admin(cli_config: Path, *args: str) -> Any:
    """``insightreader admin ARGS --json``, which must succeed; its JSON answer."""
    result = run_cli("admin", *args, "--json", "--config", str(cli_config), cwd=cli_config.parent)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# --- admin stats -------------------------------------------------------------------------------


async def _usage_totals(api: Api) -> dict[str, int]:
    days = (await api.get("/api/v1/usage")).json()["days"]
    return {
        "prompt_tokens": sum(d["prompt_tokens"] for d in days),
        "completion_tokens": sum(d["completion_tokens"] for d in days),
        "tasks": sum(d["tasks"] for d in days),
    }


async def test_stats_match_what_was_done_while_the_server_runs(
    cli_config: Path, start_server: Callable[..., ServerProcess]
) -> None:
    server = start_server(tasks={"max_concurrency": 1})
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        alice = await register(http, "stats_alice")
        bob = await register(http, "stats_bob")
        done = [await alice.submit_id("echo", {"n": n}) for n in range(2)]
        done.append(await bob.submit_id("echo", {"n": 0}))
        failed = [await alice.submit_id("fail", {"code": "alpha", "n": n}) for n in range(2)]
        failed.append(await bob.submit_id("fail", {"code": "beta"}))
        for user, gate in ((alice, "a1"), (bob, "b1")):
            task_id = await user.submit_id("gate", {"gate": gate})
            await user.open_gate(gate)
            done.append(task_id)
        for api, task_id in [(alice, t) for t in done[:2]] + [(bob, done[2]), (alice, done[3]), (bob, done[4])]:
            await api.wait_status(task_id, "completed")
        for api, task_id in ((alice, failed[0]), (alice, failed[1]), (bob, failed[2])):
            assert (await api.wait_status(task_id, "failed"))["error"]["code"] in ("alpha", "beta")

        # one task running (the only slot), two waiting behind it, one cancelled
        hold = await bob.submit_id("gate", {"gate": "hold"})
        await bob.wait_running(1)
        waiting = [await alice.submit_id("echo", {"waits": n}) for n in range(2)]
        cancelled = await alice.submit_id("echo", {"cancel": True})
        assert (await alice.post(f"/api/v1/tasks/{cancelled}/cancel")).status_code == 200

        report = admin(cli_config, "stats", "--since", "1h")
        assert report["queue"]["pending"] == 2 and report["queue"]["running"] == 1
        assert report["queue"]["oldest_pending_at"] == (await alice.task(waiting[0]))["created_at"]
        assert report["tasks"]["by_status"] == {
            "pending": 2, "running": 1, "completed": 5, "failed": 3, "cancelled": 1,
        }
        assert report["tasks"]["total"] == 12
        by_type = {t: {s: n for s, n in c.items() if n} for t, c in report["tasks"]["by_type"].items()}
        assert by_type == {
            "echo": {"completed": 3, "pending": 2, "cancelled": 1},
            "fail": {"failed": 3},
            "gate": {"completed": 2, "running": 1},
        }
        assert [(f["code"], f["count"], f["task_types"]) for f in report["failures"]] == [
            ("alpha", 2, {"fail": 2}),
            ("beta", 1, {"fail": 1}),
        ]
        tokens = {u["username"]: u for u in report["tokens"]["users"]}
        assert set(tokens) == {"stats_alice", "stats_bob"}  # echo and fail tasks spend nothing
        for api in (alice, bob):
            mine = tokens[api.username]
            assert {k: mine[k] for k in ("prompt_tokens", "completion_tokens", "tasks")} == await _usage_totals(api)
            assert (mine["prompt_tokens"], mine["completion_tokens"], mine["total_tokens"]) == (10, 5, 15)
        assert report["tokens"]["total"]["total_tokens"] == 30

        # the same report as text
        text = run_cli("admin", "stats", "--config", str(cli_config), cwd=cli_config.parent)
        assert text.returncode == 0, text.stderr
        assert "queue: 2 pending" in text.stdout and "1 running" in text.stdout
        assert "alpha" in text.stdout and "stats_bob" in text.stdout

        # the numbers follow the running server
        await bob.open_gate("hold")
        await bob.wait_status(hold, "completed")
        for task_id in waiting:
            await alice.wait_status(task_id, "completed")
        later = admin(cli_config, "stats", "--since", "1h")
        assert later["queue"] == {"pending": 0, "running": 0, "oldest_pending_at": None}
        assert later["tasks"]["by_status"]["completed"] == 8
        assert {u["username"]: u["total_tokens"] for u in later["tokens"]["users"]} == {
            "stats_alice": 15, "stats_bob": 30,
        }
        assert await _usage_totals(bob) == {"prompt_tokens": 20, "completion_tokens": 10, "tasks": 2}

        # a window that starts later holds no task, but the queue is the queue
        future = format_time(datetime.now(UTC) + timedelta(hours=1))
        empty = admin(cli_config, "stats", "--since", future)
        assert empty["tasks"]["total"] == 0 and empty["failures"] == []
        assert (await http.get("/readyz")).status_code == 200  # the server never noticed


def test_since_takes_durations_and_times() -> None:
    now = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
    assert parse_since("90s", now) == now - timedelta(seconds=90)
    assert parse_since("1h30m", now) == now - timedelta(minutes=90)
    assert parse_since("2d", now) == now - timedelta(days=2)
    assert parse_since("1w", now) == now - timedelta(days=7)
    assert parse_since("2026-11-27T17:00:00Z", now) == now - timedelta(hours=1)
    assert parse_since("2026-11-27T17:00:00", now) == now - timedelta(hours=1)  # UTC
    with pytest.raises(ValueError, match="duration"):
        parse_since("yesterday", now)


def test_admin_commands_need_a_database(tmp_path: Path, cli_config: Path) -> None:
    for args in (["stats"], ["retry-failed", "--since", "1h"], ["retry-failed", "--since", "1h", "--dry-run"]):
        message = one_line_error(run_cli("admin", *args, "--config", str(cli_config), cwd=tmp_path))
        assert str(database(tmp_path)) in message, message
    assert not database(tmp_path).exists()
    message = one_line_error(run_cli("admin", "retry-failed", "--since", "soon", "--config", str(cli_config), cwd=tmp_path))
    assert "--since" in message, message


# --- admin retry-failed ------------------------------------------------------------------------


async def test_retry_failed_resets_the_failed_tasks_of_the_window_and_they_run(
    tmp_path: Path, cli_config: Path, start_server: Callable[..., ServerProcess]
) -> None:
    path = database(tmp_path)
    # at SIGTERM the gate task below is still running: it goes back to pending after the grace
    server = start_server(tasks={"max_concurrency": 1}, server={"graceful_timeout": 0.5})
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = await register(http, "retry_user")
        old = await api.submit_id("flaky", {"n": "old"})
        recent = [await api.submit_id("flaky", {"n": n}) for n in range(2)]
        twin = await api.submit_id("fail", {"code": "twin"})
        for task_id in (old, *recent, twin):
            await api.wait_status(task_id, "failed")
        # an identical task to `twin` waits behind a running one; another is cancelled
        await api.submit_id("gate", {"gate": "hold"})
        await api.wait_running(1)
        twin_again = await api.submit_id("fail", {"code": "twin"})
        cancelled = await api.submit_id("echo", {"cancel": True})
        assert (await api.post(f"/api/v1/tasks/{cancelled}/cancel")).status_code == 200

        # while the server runs: refused, nothing changed; --dry-run lists
        before = db.tasks(path)
        message = one_line_error(
            run_cli("admin", "retry-failed", "--since", "1h", "--config", str(cli_config), cwd=tmp_path)
        )
        assert "POST /api/v1/tasks/{id}/retry" in message and "stop it" in message, message
        assert db.tasks(path) == before
        listed = admin(cli_config, "retry-failed", "--since", "1h", "--dry-run")
        assert {t["task_id"] for t in listed["would_retry"]} == {old, *recent, twin}
        assert db.tasks(path) == before

    assert server.terminate() == 0
    with closing(sqlite3.connect(path)) as conn, conn:  # `old` failed three hours ago
        conn.execute(
            "UPDATE tasks SET finished_at = ? WHERE id = ?",
            (format_time(datetime.now(UTC) - timedelta(hours=3)), old),
        )
    answer = admin(cli_config, "retry-failed", "--since", "1h")
    assert {t["task_id"] for t in answer["retried"]} == set(recent)
    assert [t["task_id"] for t in answer["skipped"]] == [twin]  # its twin is pending

    rows = db.tasks(path)
    for task_id in recent:
        row = rows[task_id]
        assert (row["status"], row["attempts"], row["attempts_excused"]) == ("pending", 1, 1)
        assert row["error"] is None and row["finished_at"] is None
    assert rows[old]["status"] == "failed" and rows[twin]["status"] == "failed"
    assert rows[cancelled]["status"] == "cancelled" and rows[twin_again]["status"] == "pending"
    events = db.task_events(path)
    assert events[recent[0]] == ["task_queued", "task_started", "task_failed", "task_queued"]

    # the next start runs them: attempt 2 of a flaky task succeeds
    server.start()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = api.on(http)
        for task_id in recent:
            task = await api.wait_status(task_id, "completed", "failed")
            assert task["status"] == "completed", task
            assert task["result"] == {"attempt": 2} and task["attempts"] == 2
        assert (await api.task(old))["status"] == "failed"
    for task_id in recent:  # the first run's end, the operator's requeue, the second run
        assert db.task_events(path)[task_id] == [
            "task_queued", "task_started", "task_failed",
            "task_queued", "task_started", "task_completed",
        ]


# --- migrate --dry-run ------------------------------------------------------------------------


def _fingerprint(path: Path) -> tuple[str, list[tuple[Any, ...]]]:
    with closing(db.connect(path)) as conn:
        rows = [tuple(r) for r in conn.execute("SELECT * FROM schema_migrations ORDER BY version")]
    return hashlib.sha256(path.read_bytes()).hexdigest(), rows


def test_migrate_dry_run_lists_pending_migrations_and_applies_nothing(tmp_path: Path, cli_config: Path) -> None:
    path = database(tmp_path)
    shipped = [f"{m.version:04d}_{m.name}.sql" for m in migrate.discover()]

    fresh = run_cli("migrate", "--dry-run", "--config", str(cli_config), cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert [line.strip() for line in fresh.stdout.splitlines()[1:]] == shipped
    assert "none applied" in fresh.stdout
    assert not path.exists() and not path.parent.exists()  # not even created

    # a database that has the first migration only
    first_only = tmp_path / "first_only"
    first_only.mkdir()
    shutil.copy(migrate.migrations_dir() / shipped[0], first_only / shipped[0])
    path.parent.mkdir(parents=True)

    async def apply_first() -> None:
        async with aiosqlite.connect(path, isolation_level=None) as conn:
            await migrate.apply(conn, first_only)

    asyncio.run(apply_first())
    before = _fingerprint(path)
    partial = run_cli("migrate", "--dry-run", "--config", str(cli_config), cwd=tmp_path)
    assert partial.returncode == 0, partial.stderr
    assert [line.strip() for line in partial.stdout.splitlines()[1:]] == shipped[1:]
    assert _fingerprint(path) == before

    # migrate applies exactly those; then there is nothing left
    assert run_cli("migrate", "--config", str(cli_config), cwd=tmp_path).returncode == 0
    done = run_cli("migrate", "--dry-run", "--config", str(cli_config), cwd=tmp_path)
    assert done.returncode == 0 and "up to date" in done.stdout, done.stdout + done.stderr

    # an edited applied migration is refused, as migrate refuses it
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'not-the-file' WHERE version = 1")
    message = one_line_error(run_cli("migrate", "--dry-run", "--config", str(cli_config), cwd=tmp_path))
    assert "0001" in message and "edited" in message, message


async def test_migrate_preview_refuses_what_apply_refuses(tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(migrate.migrations_dir(), directory)
    path = tmp_path / "m.db"
    async with aiosqlite.connect(path, isolation_level=None) as conn:
        await migrate.apply(conn, directory)
    extra = directory / f"{len(migrate.discover(directory)) + 1:04d}_extra.sql"
    extra.write_text("CREATE TABLE extra (id INTEGER PRIMARY KEY);\n")
    before = _fingerprint(path)
    assert [m.name for m in await migrate.preview(path, directory)] == ["extra"]
    assert _fingerprint(path) == before
    extra.unlink()
    (directory / "0001_initial.sql").write_text("-- edited\n")
    with pytest.raises(migrate.MigrationError, match="edited after it was applied"):
        await migrate.preview(path, directory)
    shutil.rmtree(directory)
    directory.mkdir()
    with pytest.raises(migrate.MigrationError, match="missing on disk"):
        await migrate.preview(path, directory)


# --- backup and restore -----------------------------------------------------------------------


async def _answers(api: Api) -> dict[str, Any]:
    """What the user sees: tasks, articles (each in full), usage."""
    articles = (await api.get("/api/v1/articles", params={"limit": 100})).json()
    full = {
        a["article_id"]: (await api.get(f"/api/v1/articles/{a['article_id']}")).json()
        for a in articles["items"]
    }
    return {
        "tasks": await api.all_tasks(),
        "articles": articles,
        "article": full,
        "usage": (await api.get("/api/v1/usage")).json(),
        "me": (await api.get("/api/v1/auth/me")).json(),
    }


async def test_backup_and_restore_give_the_same_answers(
    tmp_path: Path, cli_config: Path, start_server: Callable[..., ServerProcess]
) -> None:
    server = start_server()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        users = [await register(http, "restore_a"), await register(http, "restore_b")]
        for n, api in enumerate(users):
            r = await api.post(
                "/api/v1/articles/save-with-analysis",
                {"title": f"Article {n}", "content": f"Paragraph {n} about gardens and rain. " * 30},
            )
            assert r.status_code == 202, r.text
            await api.wait_status(r.json()["task_id"], "completed")
            lens = await api.post(f"/api/v1/articles/{r.json()['article_id']}/thinking-lens/argument_map")
            assert lens.status_code == 202, lens.text
            await api.wait_status(lens.json()["task_id"], "completed")
            await api.wait_status(await api.submit_id("fail", {"code": "kept"}), "failed")
            gate = await api.submit_id("gate", {"gate": f"g{n}"})
            await api.open_gate(f"g{n}")
            await api.wait_status(gate, "completed")
        before = [await _answers(api) for api in users]
        assert all(a["articles"]["items"] and a["usage"]["days"] for a in before)

        target = tmp_path / "backups" / "restore.db"
        result = run_cli("backup", str(target), "--config", str(cli_config), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    assert server.terminate() == 0

    restored = start_server(config_name="restored.toml", database={"path": str(target)})
    async with httpx.AsyncClient(base_url=restored.url, timeout=30) as http:
        after = [await _answers(api.on(http)) for api in users]
    assert after == before


# --- the first administrator from the environment ---------------------------------------------


def _admin_env(password: str = ADMIN_PASSWORD, username: str = "root_admin") -> dict[str, str]:
    return {"INSIGHTREADER_ADMIN_USERNAME": username, "INSIGHTREADER_ADMIN_PASSWORD": password}


async def _login(server: ServerProcess, username: str, password: str) -> int:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        r = await http.post("/api/v1/auth/login", json={"username": username, "password": password})
        return r.status_code


def _users(path: Path) -> list[tuple[str, int]]:
    with closing(db.connect(path)) as conn:
        return [tuple(r) for r in conn.execute("SELECT username, is_admin FROM users ORDER BY username")]


async def test_admin_from_the_environment_is_created_once_even_with_registration_closed(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    closed = {"auth": {"open_registration": False}, "log": {"level": "DEBUG"}}
    first = start_server(env=_admin_env(), **closed)
    assert await _login(first, "root_admin", ADMIN_PASSWORD) == 200
    async with httpx.AsyncClient(base_url=first.url, timeout=30) as http:
        r = await http.post("/api/v1/auth/register", json={"username": "someone", "password": "a long password"})
        assert r.status_code == 403, r.text
    assert first.terminate() == 0
    assert _users(database(tmp_path)) == [("root_admin", 1)]
    assert "created administrator root_admin" in first.log_text

    # started again with another password in the environment: the user stays as it is
    second = start_server(env=_admin_env(CHANGED_PASSWORD), **closed)
    assert await _login(second, "root_admin", ADMIN_PASSWORD) == 200
    assert await _login(second, "root_admin", CHANGED_PASSWORD) == 401
    assert second.terminate() == 0
    assert _users(database(tmp_path)) == [("root_admin", 1)]
    assert "administrator root_admin exists" in second.log_text

    for server in (first, second):
        assert ADMIN_PASSWORD not in server.log_text and CHANGED_PASSWORD not in server.log_text


async def test_admin_from_the_environment_leaves_an_existing_user_alone(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    server = start_server()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        await register(http, "first_owner")  # the first account is the administrator
        await register(http, "taken_name", password="the user's own password")
    assert server.terminate() == 0
    again = start_server(env=_admin_env(username="taken_name"))
    assert await _login(again, "taken_name", "the user's own password") == 200
    assert await _login(again, "taken_name", ADMIN_PASSWORD) == 401
    assert ("taken_name", 0) in _users(database(tmp_path))  # not promoted either
    assert "not an administrator" in again.log_text


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"INSIGHTREADER_ADMIN_USERNAME": "lonely"}, "INSIGHTREADER_ADMIN_PASSWORD"),
        ({"INSIGHTREADER_ADMIN_PASSWORD": "no name for me"}, "INSIGHTREADER_ADMIN_USERNAME"),
        (_admin_env(password="short"), "INSIGHTREADER_ADMIN_PASSWORD"),
        (_admin_env(username="bad name!"), "INSIGHTREADER_ADMIN_USERNAME"),
    ],
    ids=["no-password", "no-username", "short-password", "bad-username"],
)
def test_bad_admin_environment_stops_the_start(tmp_path: Path, cli_config: Path, env: dict[str, str], names: str) -> None:
    result = run_cli("serve", "--config", str(cli_config), env=env, cwd=tmp_path, timeout=20)
    message = one_line_error(result)
    assert names in message, message
    password = env.get("INSIGHTREADER_ADMIN_PASSWORD")
    if password:
        assert password not in result.stdout + result.stderr
    assert _users(database(tmp_path)) == []
