"""PostgreSQL (``database.url``): the same store on a shared database.

The queries are SQLite's (:mod:`.reader`, :mod:`.tx`); :func:`postgres_sql` turns
one into PostgreSQL's the first time it runs (``?`` placeholders, ``json_extract``).
The writer is a synchronous psycopg connection on the writer's thread (a write job
cannot await, see :mod:`.writer`); reads go through an async connection pool. Rows
answer by position and by column name as ``sqlite3.Row`` does, and Python booleans
are sent as the 0/1 integers the schema keeps flags in.

What does not carry over from SQLite is decided here: the process lock is an
advisory lock held by a connection of its own; a connection lost mid-batch fails that
batch as "busy" and the writer reconnects for the next one.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg import errors
from psycopg.adapt import Dumper
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from .. import migrate
from ..config import DatabaseSettings
from ..errors import AlreadyRunning, StorageBusy, StorageFull

if TYPE_CHECKING:
    from psycopg.cursor import BaseCursor

R = TypeVar("R")

_JSON_FIELD = re.compile(r"json_extract\((\w+), '\$\.(\w+)'\)")
#: The key of the advisory lock one serving process holds (any constant names it).
_SERVER_LOCK = 0x1A5168
#: Connections the read side keeps: enough for concurrent requests on 1-2 cores.
POOL_SIZE = 8


@functools.lru_cache(maxsize=2048)
def postgres_sql(sql: str) -> str:
    """A query of the store in PostgreSQL's dialect."""
    sql = sql.replace("%", "%%")
    sql = _JSON_FIELD.sub(r"(\1::jsonb ->> '\2')", sql)
    return sql.replace("?", "%s")


class Row:
    """A row by position, by column name, and ``keys()``: what ``sqlite3.Row`` offers
    (a name used twice answers its first column, as there)."""

    __slots__ = ("_values", "_index")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: int | str) -> Any:
        return self._values[self._index[key]] if isinstance(key, str) else self._values[key]

    def keys(self) -> list[str]:
        return list(self._index)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def _rows(cursor: BaseCursor[Any, Any]) -> Callable[[Sequence[Any]], Row]:
    index: dict[str, int] = {}
    for position, column in enumerate(cursor.description or ()):
        index.setdefault(column.name, position)
    return lambda values: Row(values, index)


class _FlagDumper(Dumper):
    """Flags are integers 0/1 in the schema, as in SQLite."""

    oid = psycopg.postgres.types["int4"].oid

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


def _configure(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    conn.adapters.register_dumper(bool, _FlagDumper)


def translate(exc: BaseException) -> BaseException | None:
    """What a psycopg error means to a caller; None when ``exc`` is not one."""
    if not isinstance(exc, psycopg.Error):
        return None
    if isinstance(exc, errors.DiskFull):
        return StorageFull("the database cannot grow: its disk is full")
    if isinstance(exc, (errors.SerializationFailure, errors.DeadlockDetected, errors.LockNotAvailable)):
        return StorageBusy("the database is busy; try again")
    if isinstance(exc, psycopg.OperationalError):
        return StorageBusy("the database cannot be reached; try again")
    return exc


class PostgresWrites:
    """The writer's connection (:class:`insightreader.store.tx.Writes`)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.connection = self._connect()

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self._url, autocommit=True, row_factory=_rows)
        _configure(conn)
        return conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        return self.connection.execute(postgres_sql(sql), tuple(params))

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> psycopg.Cursor[Any]:
        cursor = self.connection.cursor()
        cursor.executemany(postgres_sql(sql), [tuple(p) for p in params])
        return cursor

    def begin(self) -> None:
        if self.connection.broken or self.connection.closed:
            self.connection = self._connect()
        self.connection.execute("BEGIN")

    def commit(self) -> None:
        self.connection.execute("COMMIT")

    def rollback(self) -> None:
        self.connection.execute("ROLLBACK")

    @property
    def in_transaction(self) -> bool:
        if self.connection.broken or self.connection.closed:
            return False
        return self.connection.info.transaction_status != TransactionStatus.IDLE

    def translate(self, exc: BaseException) -> BaseException | None:
        return translate(exc)

    def index_search_backlog(self, limit: int) -> int:
        return 0  # the index is kept in the articles' own transactions

    def close(self) -> None:
        self.connection.close()


class PostgresReads:
    """The read side (:class:`insightreader.store.reader.Reads`) over a pool."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    async def fetchall(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(postgres_sql(sql), params)
            return await cursor.fetchall()

    async def fetch_records(self, sql: str, params: tuple[Any, ...], make: Callable[..., R]) -> list[R]:
        return [make(*row) for row in await self.fetchall(sql, params)]

    async def last_event_id(self) -> int:
        rows = await self.fetchall("SELECT coalesce(max(id), 0) FROM events", ())
        return int(rows[0][0])

    async def close(self) -> None:
        await self._pool.close()


class PostgreSQL:
    """The store's database on a PostgreSQL server (:class:`insightreader.store.writer.Database`)."""

    def __init__(self, settings: DatabaseSettings) -> None:
        self.url = settings.url

    async def prepare(self) -> list[migrate.Migration]:
        return await migrate.postgresql(self.url)

    def connect_writer(self) -> PostgresWrites:
        return PostgresWrites(self.url)

    async def connect_reader(self) -> PostgresReads:
        pool = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=POOL_SIZE,
            kwargs={"autocommit": True, "row_factory": _rows},
            configure=_configure_async,
            open=False,
        )
        await pool.open(wait=True)
        return PostgresReads(pool)


async def _configure_async(conn: psycopg.AsyncConnection[Any]) -> None:
    _configure(conn)


class ServerLock:
    """The advisory lock of the one process serving a database, held by a connection
    of its own for the process's life (PostgreSQL releases it when the connection
    ends, a killed process's included)."""

    def __init__(self, url: str) -> None:
        self._conn = psycopg.connect(url, autocommit=True)
        row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (_SERVER_LOCK,)).fetchone()
        if not (row and row[0]):
            self._conn.close()
            raise AlreadyRunning("another insightreader server is using this PostgreSQL database")

    def close(self) -> None:
        self._conn.close()
