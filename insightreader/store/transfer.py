"""``insightreader migrate-to postgresql://…``: a SQLite database copied to PostgreSQL.

Every table the server keeps is copied row for row (the two schemas have the same
tables and columns: tests/test_postgres_schema.py), in an order that satisfies the
foreign keys, in **one transaction**: the target holds all of it or, on any failure,
nothing. Ids stay what they were (articles' and tasks' sequence numbers, event ids,
so a browser's ``Last-Event-ID`` resumes on the new database), and the identity
sequences continue after the largest copied. What triggers keep is rebuilt by them
as the rows arrive (library usage, unfinished-task counts, tag counts), and the
search index is built for every article before the commit.

The source is read in one snapshot while holding its lock: no server may run on it
meanwhile. The target must have no InsightReader data yet (its schema is created or
upgraded first).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

from .. import migrate
from ..config import DatabaseSettings
from .postgresql import PostgresWrites
from .sqlite import lock_database

#: Parents before children. Left out: counters the target's triggers rebuild
#: (library_usage, unfinished_counts), SQLite's search index and its queues.
TABLES = (
    "meta", "users", "articles", "article_lenses", "tasks", "events", "usage", "idempotency_keys",
    "sessions", "highlights", "api_tokens", "tags", "article_tags", "webhooks", "webhook_deliveries",
    "user_settings", "batches", "batch_items",
)
#: Identity columns whose sequences continue after the copied ids.
IDENTITIES = (("articles", "seq"), ("tasks", "seq"), ("events", "id"), ("highlights", "seq"), ("tags", "id"))
#: Rows sent per statement.
CHUNK = 500


class TargetNotEmpty(Exception):
    """The PostgreSQL database already holds InsightReader data."""


def _chunks(cursor: sqlite3.Cursor) -> Iterator[list[tuple[Any, ...]]]:
    while rows := cursor.fetchmany(CHUNK):
        yield [tuple(row) for row in rows]


def _copy(source: sqlite3.Connection, target: PostgresWrites) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in TABLES:
        cursor = source.execute(f"SELECT * FROM {table}")
        columns = [c[0] for c in cursor.description]
        if table == "tags":  # counted again by the trigger as article_tags arrive
            cursor = source.execute(f"SELECT {', '.join('0' if c == 'articles' else c for c in columns)} FROM tags")
        insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        counts[table] = 0
        for rows in _chunks(cursor):
            target.executemany(insert, rows)
            counts[table] += len(rows)
    for table, column in IDENTITIES:
        target.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
            f" (SELECT coalesce(max({column}), 0) + 1 FROM {table}), false)"
        )
    return counts


def _copy_all(path: Path, url: str) -> dict[str, int]:
    """On a worker thread: the copy in one transaction of the target."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as source:
        source.execute("BEGIN")  # one snapshot of every table
        target = PostgresWrites(url)
        try:
            target.begin()
            if target.execute("SELECT 1 FROM users LIMIT 1").fetchone() is not None:
                label = DatabaseSettings(url=url).label
                raise TargetNotEmpty(f"{label} already holds InsightReader data: give an empty database")
            counts = _copy(source, target)
            target.commit()  # builds the search index of every copied article first
        except BaseException:
            if target.in_transaction:
                target.rollback()
            raise
        finally:
            target.close()
    return counts


async def copy_to_postgresql(settings: DatabaseSettings, url: str) -> dict[str, int]:
    """Copy the SQLite database of ``settings`` to the PostgreSQL database at ``url``;
    the rows copied per table. AlreadyRunning while a server uses the source."""
    path = settings.path
    if not path.exists():
        raise FileNotFoundError(f"no database at {path}")
    lock = lock_database(path)
    try:
        migrate.require_applied(str(path), await migrate.preview(path))
        await migrate.postgresql(url)
        return await asyncio.to_thread(_copy_all, path, url)
    finally:
        lock.close()
