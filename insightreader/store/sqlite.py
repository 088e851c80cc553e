"""SQLite: the embedded default. One WAL-mode file; the writer is a plain ``sqlite3``
connection on the writer's thread, the reader an aiosqlite connection in
``query_only`` mode (in WAL mode it never waits for the writer and only ever sees
committed data). One server per file, held by a lock file."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import IO, Any, TypeVar, cast

import aiosqlite

from .. import migrate, search
from ..config import DatabaseSettings
from ..errors import AlreadyRunning, StorageBusy, StorageFull
from ..supervisor import Supervisor
from .channels import Alone
from .reader import FullText, Reader
from .rows import Row

R = TypeVar("R")


def translate(exc: sqlite3.Error) -> Exception:
    """Map SQLite's busy and full conditions to the API errors that describe them."""
    name = getattr(exc, "sqlite_errorname", "")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc):
        return StorageBusy("the database is busy; try again")
    if name.startswith("SQLITE_FULL") or "full" in str(exc):
        return StorageFull("the database cannot grow: the disk is full")
    return exc


#: Files and folders the server creates are its owner's only, whatever the umask:
#: they hold every user's articles, password hashes and the token signing secret.
PRIVATE_FILE, PRIVATE_DIR = 0o600, 0o700


def private_dir(path: Path) -> None:
    """Create ``path`` and any missing parent with mode 0700 (existing ones are left
    as they are: their owner chose)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        os.chmod(folder, PRIVATE_DIR)


def private_file(path: Path) -> int:
    """Create ``path`` empty with mode 0600 and open it for writing (FileExistsError if
    it exists). SQLite gives a database's WAL and SHM files its database's mode."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    os.fchmod(fd, PRIVATE_FILE)
    return fd


def _pragmas(settings: DatabaseSettings) -> list[str]:
    return [
        f"PRAGMA busy_timeout = {int(settings.busy_timeout * 1000)}",
        f"PRAGMA synchronous = {settings.synchronous}",
        "PRAGMA foreign_keys = ON",
    ]


async def _connect(path: Path, settings: DatabaseSettings, *, query_only: bool) -> aiosqlite.Connection:
    if not path.exists():
        os.close(private_file(path))  # an empty file is an empty database
    conn = await aiosqlite.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    for pragma in _pragmas(settings):
        await conn.execute(pragma)
    if query_only:
        await conn.execute("PRAGMA query_only = ON")
    return conn


def _connect_writer(path: Path, settings: DatabaseSettings) -> sqlite3.Connection:
    """The writer's connection, opened on (and only ever used from) the writer thread."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    for pragma in _pragmas(settings):
        conn.execute(pragma)
    return conn


class SqliteWrites:
    """The writer's connection (:class:`insightreader.store.tx.Writes`)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        #: The connection itself (tests trace its statements).
        self.connection = conn
        self.execute = conn.execute
        self.executemany = conn.executemany

    skip_locked = ""

    def begin(self) -> None:
        self.connection.execute("BEGIN IMMEDIATE")

    def notify(self, channel: str, payload: str) -> None:
        pass  # one process serves the file: nobody else to tell

    def event_ids(self, count: int) -> list[int]:
        raise NotImplementedError("on SQLite the event bus numbers events itself")

    def commit(self) -> None:
        search.reindex_dirty(self.connection)  # what the batch changed, in its transaction
        self.connection.execute("COMMIT")

    def rollback(self) -> None:
        self.connection.execute("ROLLBACK")

    @property
    def in_transaction(self) -> bool:
        return self.connection.in_transaction

    def translate(self, exc: BaseException) -> BaseException | None:
        return translate(exc) if isinstance(exc, sqlite3.Error) else None

    def index_search_backlog(self, limit: int) -> int:
        return search.index_backlog(self.connection, limit)

    def close(self) -> None:
        self.connection.close()


class SqliteReads:
    """The read side (:class:`insightreader.store.reader.Reads`): one round trip to
    aiosqlite's thread per statement, execute and fetch together."""

    full_text: FullText = cast(FullText, search)

    def __init__(self, conn: aiosqlite.Connection) -> None:
        #: The connection itself (tests trace its statements).
        self.connection = conn

    async def fetchall(self, sql: str, params: tuple[Any, ...]) -> list[Row]:
        return list(await self.connection.execute_fetchall(sql, params))

    async def fetch_records(self, sql: str, params: tuple[Any, ...], make: Callable[..., R]) -> list[R]:
        async with self.connection.execute(sql, params) as cursor:
            cursor.row_factory = lambda _cursor, row: make(*row)  # type: ignore[assignment]
            return cast(list[R], await cursor.fetchall())

    async def last_event_id(self) -> int:
        rows = list(await self.connection.execute_fetchall("SELECT seq FROM sqlite_sequence WHERE name = 'events'"))
        return int(rows[0][0]) if rows else 0

    async def close(self) -> None:
        await self.connection.close()


class SQLite:
    """The store's database in one file (:class:`insightreader.store.writer.Database`)."""

    def __init__(self, settings: DatabaseSettings) -> None:
        self.settings = settings
        self.path = settings.path

    def hold(self, *, shared: bool) -> IO[str]:
        return lock_database(self.path)  # one process at a time, whoever it is

    def channels(self, supervisor: Supervisor) -> Alone:
        return Alone()

    def open_reader(self) -> AbstractAsyncContextManager[Reader]:
        return open_reader(self.settings)

    async def prepare(self) -> list[migrate.Migration]:
        """Switch to WAL and apply pending migrations."""
        setup = await _connect(self.path, self.settings, query_only=False)
        try:
            async with setup.execute("PRAGMA journal_mode = WAL") as cur:
                row = await cur.fetchone()
            if row is None or str(row[0]).lower() != "wal":
                raise RuntimeError(f"could not switch {self.path} to WAL mode")
            applied = await migrate.apply(setup)
            for statement in search.DEFER_DIRTY:
                await setup.execute(statement)
        finally:
            await setup.close()
        return applied

    def connect_writer(self) -> SqliteWrites:
        return SqliteWrites(_connect_writer(self.path, self.settings))

    async def connect_reader(self) -> SqliteReads:
        return SqliteReads(await _connect(self.path, self.settings, query_only=True))


async def backup(database: Path, target: Path) -> None:
    """Write a consistent copy of ``database`` to ``target`` while it may be in use.

    ``VACUUM INTO`` reads one snapshot (a plain file copy would race with the WAL)
    and writes a compact database that opens on its own.
    """
    try:
        os.close(private_file(target))  # VACUUM INTO fills an empty file, keeping its mode
    except FileExistsError:
        raise FileExistsError(f"{target} already exists") from None
    try:
        async with aiosqlite.connect(f"file:{database}?mode=ro", uri=True) as conn:
            await conn.execute("VACUUM INTO ?", (str(target),))
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def lock_database(path: Path) -> IO[str]:
    """Hold ``<database>.lock`` for the life of the process (a server, or an operator
    command that writes); the kernel releases it when the process dies, SIGKILL included."""
    lock = path.with_name(path.name + ".lock")
    private_dir(lock.parent)
    handle = os.fdopen(os.open(lock, os.O_RDWR | os.O_CREAT, PRIVATE_FILE), "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise AlreadyRunning(f"another insightreader server is using {path}") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


@asynccontextmanager
async def open_reader(settings: DatabaseSettings) -> AsyncIterator[Reader]:
    """A read-only :class:`Reader` on the database, for operator commands that may run
    beside a server (in WAL mode a reader neither waits for it nor blocks it). The
    database must exist and be migrated: this never creates or changes anything."""
    path = settings.path
    if not path.exists():
        raise FileNotFoundError(f"no database at {path}")
    migrate.require_applied(str(path), await migrate.preview(path))
    conn = await aiosqlite.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        await conn.execute(f"PRAGMA busy_timeout = {int(settings.busy_timeout * 1000)}")
        await conn.execute("PRAGMA query_only = ON")
        yield Reader(SqliteReads(conn))
    finally:
        await conn.close()
