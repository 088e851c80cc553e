"""Reading a server's database directly, as an operator would: the SQLite file (WAL:
safe while it runs) at a path, or the PostgreSQL database at a ``postgresql://`` URL
(the helpers below take either)."""

from __future__ import annotations

import sqlite3
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

TERMINAL = ("task_completed", "task_failed", "task_cancelled")


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    return conn


def rows(where: Path | str, sql: str) -> list[dict[str, Any]]:
    """The rows of one query (in SQLite's dialect) in one snapshot, as dicts."""
    if isinstance(where, str):
        import psycopg
        from psycopg.rows import dict_row

        from insightreader.store.postgresql import postgres_sql

        with psycopg.connect(where, row_factory=dict_row) as pg:
            return pg.execute(postgres_sql(sql), ()).fetchall()
    with closing(connect(where)) as conn:
        return [dict(row) for row in conn.execute(sql)]


def tasks(where: Path | str) -> dict[str, dict[str, Any]]:
    """Every task row by id."""
    return {row["id"]: row for row in rows(where, "SELECT * FROM tasks")}


def task_events(where: Path | str) -> dict[str, list[str]]:
    """The stored lifecycle events of each task, in id order."""
    events: dict[str, list[str]] = {}
    for row in rows(where, "SELECT event, json_extract(data, '$.task_id') AS task_id FROM events ORDER BY id"):
        if row["task_id"] is not None:
            events.setdefault(row["task_id"], []).append(row["event"])
    return events


def terminal_counts(where: Path | str) -> Counter[str]:
    """How many terminal events (completed, failed, cancelled) each task has."""
    return Counter(
        {task_id: sum(e in TERMINAL for e in names) for task_id, names in task_events(where).items()}
    )


def unfinished_count_drift(where: Path | str) -> dict[str, tuple[int, int]]:
    """Users whose pending-task counter (``unfinished_counts``) differs from their
    pending and running rows, as ``{user_id: (counter, rows)}``; read in one snapshot."""
    found = rows(
        where,
        "SELECT u.id, coalesce(c.tasks, 0) AS counter,"
        " (SELECT count(*) FROM tasks t WHERE t.user_id = u.id AND t.status IN ('pending', 'running')) AS unfinished"
        " FROM users u LEFT JOIN unfinished_counts c ON c.user_id = u.id",
    )
    return {row["id"]: (row["counter"], row["unfinished"]) for row in found if row["counter"] != row["unfinished"]}
