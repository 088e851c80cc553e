"""Migrations that carry existing rows: what a database made by an older version
holds after the upgrade."""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import aiosqlite

from insightreader import migrate


def _task(conn: sqlite3.Connection, n: int, user_id: str, status: str) -> None:
    conn.execute(
        "INSERT INTO tasks (id, user_id, task_type, status, priority, input, input_hash,"
        " metadata, created_at) VALUES (?, ?, 'echo', ?, 0, '{}', ?, '{}', '2026-12-01T00:00:00.000Z')",
        (f"t{n}", user_id, status, f"sha256:{n}"),
    )


async def test_pending_counters_start_from_the_unfinished_tasks_already_there(tmp_path: Path) -> None:
    older = tmp_path / "older"
    older.mkdir()
    for path in sorted(migrate.migrations_dir().glob("000[1-5]_*.sql")):
        shutil.copy(path, older)
    database = tmp_path / "upgrade.db"
    async with aiosqlite.connect(database, isolation_level=None) as conn:
        await migrate.apply(conn, older)
    with closing(sqlite3.connect(database)) as conn:
        for user_id in ("a", "b", "c"):
            conn.execute(
                "INSERT INTO users (id, username, password_hash, created_at) VALUES (?, ?, 'x', '2026')",
                (user_id, user_id),
            )
        statuses = {"a": ["pending", "running", "completed", "failed"], "b": ["cancelled", "completed"],
                    "c": ["pending"] * 3}
        n = 0
        for user_id, states in statuses.items():
            for status in states:
                _task(conn, n, user_id, status)
                n += 1
        conn.commit()
    async with aiosqlite.connect(database, isolation_level=None) as conn:
        applied = await migrate.apply(conn)
    assert "unfinished_counts" in [m.name for m in applied]
    with closing(sqlite3.connect(database)) as conn:
        counts = dict(conn.execute("SELECT user_id, tasks FROM unfinished_counts").fetchall())
        assert counts == {"a": 2, "c": 3}
        # From then on the triggers keep it: start, finish, retry, delete.
        conn.execute("UPDATE tasks SET status = 'running' WHERE id = 't0'")  # still unfinished
        conn.execute("UPDATE tasks SET status = 'completed' WHERE id = 't1'")
        conn.execute("UPDATE tasks SET status = 'pending' WHERE id = 't4'")  # b's retry
        conn.execute("DELETE FROM tasks WHERE id = 't6'")
        _task(conn, 99, "b", "pending")
        _task(conn, 100, "b", "completed")  # inserted finished: not counted
        counts = dict(conn.execute("SELECT user_id, tasks FROM unfinished_counts").fetchall())
        assert counts == {"a": 1, "b": 2, "c": 2}


async def test_batches_rebuilt_for_reanalysis_keep_the_imports_and_their_items(tmp_path: Path) -> None:
    older = tmp_path / "older"
    older.mkdir()
    for path in sorted(migrate.migrations_dir().glob("00*.sql")):
        if int(path.name[:4]) <= 14:
            shutil.copy(path, older)
    database = tmp_path / "upgrade.db"
    async with aiosqlite.connect(database, isolation_level=None) as conn:
        await conn.execute("PRAGMA foreign_keys = ON")  # as the store opens it
        await migrate.apply(conn, older)
    with closing(sqlite3.connect(database)) as conn:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("INSERT INTO users (id, username, password_hash, created_at) VALUES ('u', 'u', 'x', '2026')")
        conn.execute(
            "INSERT INTO batches (id, user_id, kind, format, status, total, done, created_at)"
            " VALUES ('b1', 'u', 'import', 'netscape', 'running', 3, 1, '2026-12-01')"
        )
        conn.executemany("INSERT INTO batch_items (batch_id, position, item) VALUES ('b1', ?, ?)",
                         [(1, '{"url": "https://a.example"}'), (2, '{"url": "https://b.example"}')])
        _task(conn, 1, "u", "completed")
        conn.commit()
    async with aiosqlite.connect(database, isolation_level=None) as conn:
        await conn.execute("PRAGMA foreign_keys = ON")
        applied = await migrate.apply(conn)
    assert [m.name for m in applied][0] == "reanalysis"
    with closing(sqlite3.connect(database)) as conn:
        conn.execute("PRAGMA foreign_keys = ON")
        assert conn.execute("SELECT id, kind, format, status, total, done, options FROM batches").fetchall() == [
            ("b1", "import", "netscape", "running", 3, 1, None)
        ]
        assert conn.execute("SELECT position FROM batch_items WHERE batch_id = 'b1'").fetchall() == [(1,), (2,)]
        assert conn.execute("SELECT batch_id FROM tasks").fetchall() == [(None,)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        # The new kind and status are allowed, and the items still go with their batch.
        conn.execute(
            "INSERT INTO batches (id, user_id, kind, options, status, total, created_at)"
            " VALUES ('b2', 'u', 'reanalysis', '{}', 'cancelled', 0, '2026-12-02')"
        )
        conn.execute("DELETE FROM batches WHERE id = 'b1'")
        assert conn.execute("SELECT count(*) FROM batch_items").fetchone() == (0,)
