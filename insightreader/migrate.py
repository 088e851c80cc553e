"""Applies ``migrations/NNNN_name.sql`` in order, each recorded with a checksum.

Forward only. A recorded migration whose file changed or disappeared stops the
server: the schema in the database would no longer be the one the code expects.
PostgreSQL has its own numbered series, ``migrations/postgresql/`` (its 0001 is
SQLite's 0001-0015 at once), applied the same way under an advisory lock, so that
several processes starting together take turns.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosqlite

from .config import ConfigError
from .records import utcnow

if TYPE_CHECKING:
    import psycopg

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    """The migrations on disk and those recorded in the database disagree."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations_dir() -> Path:
    """``insightreader/migrations`` in an installed wheel, ``migrations/`` in a checkout."""
    packaged = resources.files("insightreader") / "migrations"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "migrations"


def require_applied(database: str, todo: list[Migration]) -> None:
    """Refuse a database with ``todo`` pending (a command that must not change it)."""
    if todo:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in todo)
        raise MigrationError(f"{database} has pending migrations ({names}): run insightreader migrate first")


def postgresql_dir() -> Path:
    return migrations_dir() / "postgresql"


def discover(directory: Path | None = None) -> list[Migration]:
    found = []
    for path in sorted((directory or migrations_dir()).glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file name {path.name!r} is not NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration versions must be 1..N without gaps, found {versions}")
    return found


def _statements(sql: str) -> list[str]:
    """Split a script into statements (``executescript`` would commit on its own)."""
    statements, buffer = [], ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in buffer.splitlines()
    ):
        raise MigrationError(f"incomplete SQL statement at the end: {buffer.strip()[:60]!r}")
    return statements


_CREATE_RECORD = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
    " checksum TEXT NOT NULL, applied_at TEXT NOT NULL)"
)
_RECORD = "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)"
#: Held while a PostgreSQL database is migrated (any constant: it only names the lock).
_ADVISORY_LOCK = 0x1A5167


async def pending(conn: aiosqlite.Connection, available: list[Migration]) -> list[Migration]:
    """The migrations not yet applied, after checking the applied ones are unchanged."""
    await conn.execute(_CREATE_RECORD)
    return await _unapplied(conn, available)


async def _unapplied(conn: aiosqlite.Connection, available: list[Migration]) -> list[Migration]:
    async with conn.execute("SELECT version, name, checksum FROM schema_migrations") as cur:
        applied = {row[0]: (row[1], row[2]) async for row in cur}
    return _todo(applied, available)


def _todo(applied: dict[int, tuple[str, str]], available: list[Migration]) -> list[Migration]:
    by_version = {m.version: m for m in available}
    for version, (name, checksum) in sorted(applied.items()):
        migration = by_version.get(version)
        if migration is None:
            raise MigrationError(
                f"migration {version:04d}_{name} is recorded in the database but missing on disk"
            )
        if migration.checksum != checksum:
            raise MigrationError(
                f"migration {version:04d}_{name}.sql was edited after it was applied"
            )
    return [m for m in available if m.version not in applied]


async def apply(conn: aiosqlite.Connection, directory: Path | None = None) -> list[Migration]:
    """Apply every pending migration, each in its own transaction. ``conn`` is in
    autocommit mode (``isolation_level=None``)."""
    todo = await pending(conn, discover(directory))
    for migration in todo:
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(migration.sql):
                await conn.execute(statement)
            await conn.execute(_RECORD, _record_values(migration))
            await conn.execute("COMMIT")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
    return todo


async def preview(database: Path, directory: Path | None = None) -> list[Migration]:
    """The migrations ``apply`` would run on ``database``, changing nothing (not even
    creating the file); edited or missing applied migrations are refused as ``apply``
    refuses them. Safe while a server uses the database (a WAL reader)."""
    available = discover(directory)
    if not database.exists() or database.stat().st_size == 0:
        return available
    async with aiosqlite.connect(f"file:{database}?mode=ro", uri=True) as conn:
        async with conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ) as cur:
            if await cur.fetchone() is None:
                return available
        return await _unapplied(conn, available)


def _record_values(migration: Migration) -> tuple[Any, ...]:
    return (migration.version, migration.name, migration.checksum, utcnow())


async def apply_postgresql(
    conn: psycopg.AsyncConnection[Any], directory: Path | None = None
) -> list[Migration]:
    """Apply every pending PostgreSQL migration, each in its own transaction (its file
    runs as one script: functions hold semicolons). ``conn`` is in autocommit mode."""
    available = discover(directory or postgresql_dir())
    await conn.execute("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK,))
    try:
        await conn.execute(_CREATE_RECORD)
        todo = await _unapplied_postgresql(conn, available)
        for migration in todo:
            async with conn.transaction():
                await conn.execute(migration.sql.encode())
                await conn.execute(_RECORD.replace("?", "%s"), _record_values(migration))
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (_ADVISORY_LOCK,))
    return todo


async def postgresql(url: str, *, dry_run: bool = False) -> list[Migration]:
    """Apply the pending PostgreSQL migrations at ``url`` (only list them with
    ``dry_run``, changing nothing); the migrations applied or pending."""
    import psycopg

    try:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    except psycopg.OperationalError as exc:
        detail = " ".join(str(exc).split())  # libpq's message spans lines
        raise ConfigError(f"cannot connect to the database in database.url: {detail}") from None
    async with conn:
        if not dry_run:
            return await apply_postgresql(conn)
        available = discover(postgresql_dir())
        cursor = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
        recorded = await cursor.fetchone()
        if not (recorded and recorded[0]):
            return available
        return await _unapplied_postgresql(conn, available)


async def _unapplied_postgresql(conn: psycopg.AsyncConnection[Any], available: list[Migration]) -> list[Migration]:
    cursor = await conn.execute("SELECT version, name, checksum FROM schema_migrations")
    return _todo({row[0]: (row[1], row[2]) for row in await cursor.fetchall()}, available)
