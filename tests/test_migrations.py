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
