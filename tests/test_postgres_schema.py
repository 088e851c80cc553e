"""The PostgreSQL schema (migrations/postgresql/) against SQLite's: the same tables,
columns and indexes, and triggers that keep the same counters."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import aiosqlite
import httpx
import psycopg
import pytest

from insightreader import migrate
from tests.support.cli import one_line_error, run_cli
from tests.support.client import register
from tests.support.postgres import needs_postgres
from tests.support.process import ServerProcess

pytestmark = needs_postgres

#: SQLite's own tables, and the search index (FTS5 there, tsvector columns here; tests/test_search.py
#: runs on both).
SQLITE_ONLY = ("sqlite_", "search")


async def _sqlite(path: Path) -> sqlite3.Connection:
    async with aiosqlite.connect(path, isolation_level=None) as conn:
        await migrate.apply(conn)
    return sqlite3.connect(path, isolation_level=None)


async def _postgres(url: str) -> psycopg.AsyncConnection[Any]:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    await migrate.apply_postgresql(conn)
    return conn


def _sqlite_shape(conn: sqlite3.Connection) -> tuple[dict[str, set[str]], set[str]]:
    tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
              if not name.startswith(SQLITE_ONLY)]
    columns = {t: {row[1] for row in conn.execute(f"PRAGMA table_info({t})")} for t in tables}
    indexes = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    return columns, indexes


async def _postgres_shape(conn: psycopg.AsyncConnection[Any]) -> tuple[dict[str, set[str]], set[str]]:
    columns: dict[str, set[str]] = {}
    rows = await (await conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
        " AND table_name NOT LIKE 'search%'"
    )).fetchall()
    for table, column in rows:
        columns.setdefault(table, set()).add(column)
    indexes = {name for (name,) in await (await conn.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND tablename NOT LIKE 'search%'"
        " AND indexname NOT IN (SELECT conname FROM pg_constraint)"
    )).fetchall()}
    return columns, indexes


async def test_every_sqlite_table_column_and_index_exists_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    with closing(await _sqlite(tmp_path / "s.db")) as lite:
        lite_columns, lite_indexes = _sqlite_shape(lite)
    async with await _postgres(postgres_url) as pg:
        pg_columns, pg_indexes = await _postgres_shape(pg)
    assert len(lite_columns) >= 20
    assert pg_columns == lite_columns
    assert pg_indexes == lite_indexes


#: The same changes on both databases (SQLite's placeholders; ``%s`` on PostgreSQL).
CHANGES = [
    ("INSERT INTO users (id, username, password_hash, created_at) VALUES (?, ?, 'x', 't')", ("a", "Ann")),
    ("INSERT INTO users (id, username, password_hash, created_at) VALUES (?, ?, 'x', 't')", ("b", "Bo")),
    *[
        ("INSERT INTO articles (id, user_id, title, content, content_hash, created_at, updated_at)"
         " VALUES (?, ?, ?, ?, ?, 't', 't')", (f"art{n}", user, f"Title {n}", "正文 text " * n, f"h{n}"))
        for n, user in enumerate(["a", "a", "b", "a"], start=1)
    ],
    ("UPDATE articles SET content = ? WHERE id = ?", ("shorter", "art2")),
    ("DELETE FROM articles WHERE id = ?", ("art1",)),
    *[
        ("INSERT INTO tasks (id, user_id, task_type, status, priority, input, input_hash, metadata, created_at)"
         " VALUES (?, ?, 'echo', ?, 0, '{}', ?, '{}', 't')", (f"t{n}", user, status, f"sha{n}"))
        for n, (user, status) in enumerate(
            [("a", "pending"), ("a", "running"), ("a", "completed"), ("b", "pending"), ("b", "pending")]
        )
    ],
    ("UPDATE tasks SET status = 'completed' WHERE id = ?", ("t0",)),
    ("UPDATE tasks SET status = 'running' WHERE id = ?", ("t3",)),
    ("UPDATE tasks SET status = 'pending' WHERE id = ?", ("t2",)),
    ("DELETE FROM tasks WHERE id = ?", ("t4",)),
    ("INSERT INTO tags (user_id, name, key, created_at) VALUES ('a', 'Trees', 'trees', 't')", ()),
    ("INSERT INTO tags (user_id, name, key, created_at) VALUES ('a', 'Cities', 'cities', 't')", ()),
    ("INSERT INTO article_tags (tag_id, article_seq) SELECT id, 2 FROM tags", ()),
    ("INSERT INTO article_tags (tag_id, article_seq) SELECT id, 4 FROM tags WHERE key = 'trees'", ()),
    ("DELETE FROM article_tags WHERE article_seq = 2", ()),
]
COUNTERS = [
    "SELECT user_id, articles, bytes FROM library_usage ORDER BY user_id",
    "SELECT user_id, tasks FROM unfinished_counts ORDER BY user_id",
    "SELECT key, articles FROM tags ORDER BY key",
]


async def test_the_triggers_keep_the_same_counters(tmp_path: Path, postgres_url: str) -> None:
    with closing(await _sqlite(tmp_path / "s.db")) as lite:
        for sql, params in CHANGES:
            lite.execute(sql, params)
        expected = [lite.execute(query).fetchall() for query in COUNTERS]
    async with await _postgres(postgres_url) as pg:
        for sql, params in CHANGES:
            await pg.execute(sql.replace("?", "%s").encode(), params)
        found = [await (await pg.execute(query.encode())).fetchall() for query in COUNTERS]
    assert [list(map(tuple, rows)) for rows in expected] == found
    assert found[1] == [("a", 2), ("b", 1)]  # the counters really moved
    assert found[2] == [("trees", 1)]  # a tag no article carries is gone


async def test_user_names_are_unique_and_found_whatever_their_case(postgres_url: str) -> None:
    async with await _postgres(postgres_url) as pg:
        await pg.execute("INSERT INTO users (id, username, password_hash, created_at) VALUES ('a', 'Zoë', 'x', 't')")
        with pytest.raises(psycopg.errors.UniqueViolation):
            await pg.execute("INSERT INTO users (id, username, password_hash, created_at) VALUES ('b', 'ZOË', 'x', 't')")
        rows = await (await pg.execute("SELECT id FROM users WHERE username = %s", ("zoë",))).fetchall()
    assert rows == [("a",)]


async def test_migrations_apply_once_and_an_edited_one_is_refused(tmp_path: Path, postgres_url: str) -> None:
    series = tmp_path / "series"
    series.mkdir()
    (series / "0001_first.sql").write_text("CREATE TABLE one (x INTEGER);")
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as pg:
        assert [m.name for m in await migrate.apply_postgresql(pg, series)] == ["first"]
        (series / "0002_second.sql").write_text("CREATE TABLE two (x INTEGER); INSERT INTO two VALUES (2);")
        assert [m.name for m in await migrate.apply_postgresql(pg, series)] == ["second"]
        assert await migrate.apply_postgresql(pg, series) == []
        (series / "0001_first.sql").write_text("CREATE TABLE one (x BIGINT);")
        with pytest.raises(migrate.MigrationError, match="edited"):
            await migrate.apply_postgresql(pg, series)
        (series / "0001_first.sql").write_text("CREATE TABLE one (x INTEGER);")
        (series / "0003_broken.sql").write_text("CREATE TABLE three (x INTEGER); SELECT nonsense;")
        with pytest.raises(psycopg.errors.UndefinedColumn):
            await migrate.apply_postgresql(pg, series)
        # The failed migration left nothing behind and is not recorded.
        tables = await (await pg.execute("SELECT to_regclass('three')")).fetchone()
        versions = await (await pg.execute("SELECT version FROM schema_migrations ORDER BY version")).fetchall()
    assert tables == (None,)
    assert versions == [(1,), (2,)]


def test_the_migrate_command_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    # A password in the URL is never echoed (the test cluster trusts loopback, so any works).
    url = postgres_url.replace("postgres@", "postgres:hunter2-secret@")
    env = {"INSIGHTREADER_DATABASE__URL": url}
    label = postgres_url.replace("postgresql://", "")

    preview = run_cli("migrate", "--dry-run", cwd=tmp_path, env=env)
    assert preview.returncode == 0, preview.stderr
    assert preview.stdout.splitlines() == [f"database postgresql://{label}: 3 pending migration(s), none applied:",
                                           "  0001_initial.sql", "  0002_search.sql", "  0003_task_leases.sql"]
    applied = run_cli("migrate", cwd=tmp_path, env=env)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.strip() == f"database postgresql://{label} is up to date (3 applied)"
    again = run_cli("migrate", "--dry-run", cwd=tmp_path, env=env)
    assert "up to date: no pending migrations" in again.stdout
    for result in (preview, applied, again):
        assert "hunter2" not in result.stdout + result.stderr

    unreachable = run_cli("migrate", cwd=tmp_path,
                          env={"INSIGHTREADER_DATABASE__URL": "postgresql://nobody:pw-secret@127.0.0.1:1/none"})
    assert "cannot connect" in one_line_error(unreachable)
    assert "pw-secret" not in unreachable.stderr


async def test_the_server_carries_on_when_its_database_connections_are_cut(
    start_server: Callable[..., ServerProcess], postgres_url: str
) -> None:
    """A restarted PostgreSQL or a proxy closing idle connections: every connection the
    server holds is terminated; the next reads and writes open new ones, no request fails."""
    server = start_server(database={"url": postgres_url})
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = await register(http)
        first = await api.submit_id("echo", {"n": 1})
        await api.wait_status(first, "completed")
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
            cut = await (await admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )).fetchone()
        assert cut is not None and cut[0] >= 3  # the writer, a reader, the server's lock
        for n in range(2, 6):
            response = await api.submit("echo", {"n": n})
            assert response.status_code == 202, response.text
            await api.wait_status(response.json()["task_id"], "completed")
        assert len(await api.all_tasks()) == 5
    assert server.alive
