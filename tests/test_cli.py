"""The ``insightreader`` command line, run as real subprocesses: migrate, user create,
backup, and one server per database."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import aiosqlite
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from insightreader import migrate
from tests.conftest import base_config
from tests.support import db
from tests.support.cli import clean_env, insightreader_argv, one_line_error, run_cli
from tests.support.client import register, wait_for
from tests.support.process import ServerProcess, write_config

PASSWORD = "correct horse battery"


@pytest.fixture
def cli_config(tmp_path: Path) -> Path:
    """The same configuration ``start_server`` writes (same database), for the CLI."""
    return write_config(tmp_path / "cli.toml", base_config(tmp_path))


def database(tmp_path: Path) -> Path:
    return Path(base_config(tmp_path)["database"]["path"])


def tables(path: Path) -> set[str]:
    with closing(db.connect(path)) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def applied(path: Path) -> list[tuple[int, str, str, str]]:
    with closing(db.connect(path)) as conn:
        return [tuple(r) for r in conn.execute("SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version")]


# --- migrate -------------------------------------------------------------------------------


def test_migrate_creates_the_schema_and_is_idempotent(tmp_path: Path, cli_config: Path) -> None:
    path = database(tmp_path)
    assert not path.exists()
    result = run_cli("migrate", "--config", str(cli_config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert str(path) in result.stdout
    assert {"users", "tasks", "events", "schema_migrations"} <= tables(path)
    first = applied(path)
    assert [row[0] for row in first] == [m.version for m in migrate.discover()]
    assert [row[2] for row in first] == [m.checksum for m in migrate.discover()]
    with closing(db.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    again = run_cli("migrate", "--config", str(cli_config), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert applied(path) == first  # nothing re-applied, applied_at unchanged
    assert "applied migration" not in again.stderr


def test_migrate_refuses_a_database_whose_migration_was_edited(tmp_path: Path, cli_config: Path) -> None:
    assert run_cli("migrate", "--config", str(cli_config), cwd=tmp_path).returncode == 0
    path = database(tmp_path)
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'not-the-file' WHERE version = 1")
    message = one_line_error(run_cli("migrate", "--config", str(cli_config), cwd=tmp_path))
    assert "0001" in message and "edited" in message, message
    # the server refuses the same database, with the same one line
    message = one_line_error(run_cli("serve", "--config", str(cli_config), cwd=tmp_path, timeout=15))
    assert "edited" in message, message


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    """A copy of the shipped migrations plus one more, to edit and delete."""
    directory = tmp_path / "migrations"
    shutil.copytree(migrate.migrations_dir(), directory)
    next_version = len(migrate.discover(directory)) + 1
    (directory / f"{next_version:04d}_extra.sql").write_text(
        "-- a test-only migration\nCREATE TABLE extra (id INTEGER PRIMARY KEY);\n"
    )
    return directory


async def _apply(path: Path, directory: Path) -> list[migrate.Migration]:
    async with aiosqlite.connect(path, isolation_level=None) as conn:
        return await migrate.apply(conn, directory)


async def test_an_edited_applied_migration_is_refused(tmp_path: Path, migrations: Path) -> None:
    path = tmp_path / "m.db"
    done = await _apply(path, migrations)
    assert [m.name for m in done][-1] == "extra"
    assert await _apply(path, migrations) == []  # idempotent
    extra = sorted(migrations.glob("*_extra.sql"))[0]
    extra.write_text(extra.read_text() + "-- edited afterwards\n")
    with pytest.raises(migrate.MigrationError, match=r"_extra\.sql was edited after it was applied"):
        await _apply(path, migrations)


async def test_a_missing_applied_migration_is_refused(tmp_path: Path, migrations: Path) -> None:
    path = tmp_path / "m.db"
    await _apply(path, migrations)
    sorted(migrations.glob("*_extra.sql"))[0].unlink()
    with pytest.raises(migrate.MigrationError, match=r"_extra is recorded in the database but missing on disk"):
        await _apply(path, migrations)


async def test_a_failing_migration_leaves_nothing_half_applied(tmp_path: Path, migrations: Path) -> None:
    path = tmp_path / "m.db"
    bad = sorted(migrations.glob("*_extra.sql"))[0]
    bad.write_text("CREATE TABLE extra (id INTEGER PRIMARY KEY);\nCREATE TABLE broken (;\n")
    with pytest.raises(sqlite3.OperationalError):
        await _apply(path, migrations)
    assert "extra" not in tables(path)  # its own transaction rolled back
    assert [row[1] for row in applied(path)] == [m.name for m in migrate.discover()]


# --- user create -----------------------------------------------------------------------------


async def test_user_create_makes_a_user_who_can_log_in(
    tmp_path: Path, cli_config: Path, start_server: Callable[..., ServerProcess]
) -> None:
    server = start_server(auth={"open_registration": False})  # the CLI is how users appear then
    result = run_cli("user", "create", "cli_user", "--config", str(cli_config), cwd=tmp_path, stdin=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    assert "cli_user" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        r = await http.post("/api/v1/auth/login", json={"username": "cli_user", "password": PASSWORD})
        assert r.status_code == 200, r.text
        me = await http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"})
        assert me.json()["username"] == "cli_user"
        r = await http.post("/api/v1/auth/login", json={"username": "cli_user", "password": "wrong password"})
        assert r.status_code == 401


@pytest.mark.parametrize("name", ["dup_user", "DUP_USER"])
def test_user_create_refuses_a_taken_name(tmp_path: Path, cli_config: Path, name: str) -> None:
    first = run_cli("user", "create", "dup_user", "--config", str(cli_config), cwd=tmp_path, stdin=PASSWORD)
    assert first.returncode == 0, first.stderr
    message = one_line_error(
        run_cli("user", "create", name, "--config", str(cli_config), cwd=tmp_path, stdin="another password\n")
    )
    assert "taken" in message, message
    with closing(db.connect(database(tmp_path))) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 1


@pytest.mark.parametrize(
    ("username", "stdin", "expected"),
    [
        ("short_pw", "short\n", "password"),
        ("empty_pw", "", "password"),
        ("x", PASSWORD + "\n", "username"),
        ("bad name!", PASSWORD + "\n", "username"),
    ],
    ids=["short-password", "no-password", "short-username", "bad-username"],
)
def test_user_create_refuses_bad_credentials(
    tmp_path: Path, cli_config: Path, username: str, stdin: str, expected: str
) -> None:
    message = one_line_error(run_cli("user", "create", username, "--config", str(cli_config), cwd=tmp_path, stdin=stdin))
    assert expected in message.lower(), message
    path = database(tmp_path)
    if path.exists():
        with closing(db.connect(path)) as conn:
            assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 0


# --- backup -----------------------------------------------------------------------------------


async def test_backup_while_serving_is_a_complete_database(
    tmp_path: Path, cli_config: Path, start_server: Callable[..., ServerProcess]
) -> None:
    server = start_server()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = await register(http, "backup_user")
        ids = []
        for n in range(3):
            r = await api.submit("echo", {"n": n})
            assert r.status_code == 202, r.text
            ids.append(r.json()["task_id"])
        for task_id in ids:
            await api.wait_status(task_id, "completed")

        target = tmp_path / "backups" / "copy.db"
        result = run_cli("backup", str(target), "--config", str(cli_config), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert (await http.get("/healthz")).status_code == 200  # the server kept running

    with closing(sqlite3.connect(f"file:{target}?mode=ro", uri=True)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert [r[0] for r in conn.execute("SELECT username FROM users")] == ["backup_user"]
        rows = dict(conn.execute("SELECT id, status FROM tasks").fetchall())
        assert rows == {task_id: "completed" for task_id in ids}
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(migrate.discover())
    # a single self-contained file: no -wal beside it holding part of the data
    assert not target.with_name(target.name + "-wal").exists()

    # and a server runs on the copy, with the same users and tasks
    restored = write_config(tmp_path / "restored.toml", base_config(tmp_path, database={"path": str(target)}))
    copy = ServerProcess(restored).start()
    try:
        async with httpx.AsyncClient(base_url=copy.url, timeout=30) as http:
            assert (await api.on(http).task(ids[0]))["status"] == "completed"
    finally:
        copy.stop()


def test_backup_does_not_overwrite(tmp_path: Path, cli_config: Path) -> None:
    assert run_cli("migrate", "--config", str(cli_config), cwd=tmp_path).returncode == 0
    target = tmp_path / "existing.db"
    target.write_bytes(b"precious")
    message = one_line_error(run_cli("backup", str(target), "--config", str(cli_config), cwd=tmp_path))
    assert str(target) in message and "exists" in message, message
    assert target.read_bytes() == b"precious"


def test_backup_without_a_database_fails(tmp_path: Path, cli_config: Path) -> None:
    message = one_line_error(run_cli("backup", str(tmp_path / "copy.db"), "--config", str(cli_config), cwd=tmp_path))
    assert str(database(tmp_path)) in message, message
    assert not (tmp_path / "copy.db").exists()


# --- one server per database ------------------------------------------------------------------


async def test_a_second_server_on_the_same_database_refuses_to_start(
    tmp_path: Path, cli_config: Path, start_server: Callable[..., ServerProcess]
) -> None:
    first = start_server()
    result = run_cli("serve", "--config", str(cli_config), "--bind", "127.0.0.1:0", cwd=tmp_path, timeout=20)
    message = one_line_error(result)
    assert str(database(tmp_path)) in message, message
    assert first.alive
    async with httpx.AsyncClient(base_url=first.url, timeout=30) as http:
        assert (await http.get("/readyz")).status_code == 200
        api = await register(http, "still_serving")
        r = await api.submit("echo", {"after": "refusal"})
        await api.wait_status(r.json()["task_id"], "completed")

    # once the first has stopped, the database is free again
    assert first.terminate() == 0
    second = ServerProcess(cli_config, argv=[*insightreader_argv(), "serve", "--config", str(cli_config), "--bind", "127.0.0.1:0"])
    second.env = clean_env()
    try:
        second.start()
        async with httpx.AsyncClient(base_url=second.url, timeout=10) as http:
            assert (await http.get("/healthz")).status_code == 200
            # `serve` loads its modules, the LLM SDK's too, with garbage collection off:
            # it is back on once the SDK has loaded (a scrape makes objects enough for one).

            async def sdk_loaded() -> bool:
                return (await http.get("/readyz")).json()["llm"]["sdk"] == "loaded"

            await wait_for(sdk_loaded, "the LLM SDK to load")
            first_count = await gc_collections(http)

            async def collected() -> bool:
                return await gc_collections(http) > first_count

            await wait_for(collected, "a garbage collection")
    finally:
        second.stop()


async def gc_collections(http: httpx.AsyncClient) -> float:
    """The server's count of young-generation garbage collections, from ``/metrics``."""
    text = (await http.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "python_gc_collections_total" and sample.labels.get("generation") == "0":
                return sample.value
    raise AssertionError("no python_gc_collections_total in /metrics")
