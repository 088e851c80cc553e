"""Reading a server's SQLite file directly, as an operator would (WAL: safe while it runs)."""

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


def tasks(path: Path) -> dict[str, dict[str, Any]]:
    """Every task row by id."""
    with closing(connect(path)) as conn:
        return {row["id"]: dict(row) for row in conn.execute("SELECT * FROM tasks")}


def task_events(path: Path) -> dict[str, list[str]]:
    """The stored lifecycle events of each task, in id order."""
    events: dict[str, list[str]] = {}
    with closing(connect(path)) as conn:
        rows = conn.execute(
            "SELECT event, json_extract(data, '$.task_id') AS task_id FROM events ORDER BY id"
        )
        for row in rows:
            if row["task_id"] is not None:
                events.setdefault(row["task_id"], []).append(row["event"])
    return events


def terminal_counts(path: Path) -> Counter[str]:
    """How many terminal events (completed, failed, cancelled) each task has."""
    return Counter(
        {task_id: sum(e in TERMINAL for e in names) for task_id, names in task_events(path).items()}
    )


def unfinished_count_drift(path: Path) -> dict[str, tuple[int, int]]:
    """Users whose pending-task counter (``unfinished_counts``) differs from their
    pending and running rows, as ``{user_id: (counter, rows)}``; read in one snapshot."""
    with closing(connect(path)) as conn:
        rows = conn.execute(
            "SELECT u.id, coalesce(c.tasks, 0),"
            " (SELECT count(*) FROM tasks t WHERE t.user_id = u.id AND t.status IN ('pending', 'running'))"
            " FROM users u LEFT JOIN unfinished_counts c ON c.user_id = u.id"
        ).fetchall()
    return {row[0]: (row[1], row[2]) for row in rows if row[1] != row[2]}
