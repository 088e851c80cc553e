"""PostgreSQL (``database.url``): the same store on a shared database.

The queries are SQLite's (:mod:`.reader`, :mod:`.tx`); :func:`postgres_sql` turns
one into PostgreSQL's the first time it runs (``?`` placeholders, ``json_extract``).
The writer is a synchronous psycopg connection on the writer's thread (a write job
cannot await, see :mod:`.writer`); reads go through an async connection pool. Rows
answer by position and by column name as ``sqlite3.Row`` does, and Python booleans
are sent as the 0/1 integers the schema keeps flags in.

What does not carry over from SQLite is decided here: the process lock is an
advisory lock held by a connection of its own; search is PostgreSQL's full text
(:class:`FullText`, kept in step at each commit as SQLite's FTS5 index is); a connection
lost before a batch is replaced at its BEGIN, one lost mid-batch fails that batch as
"busy", and a read on a lost connection is tried once more on another.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg import errors
from psycopg.adapt import Dumper
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from .. import migrate, search
from ..config import DatabaseSettings
from ..errors import AlreadyRunning, StorageBusy, StorageFull
from ..supervisor import Supervisor
from . import channels
from .reader import Reader

if TYPE_CHECKING:
    from psycopg.cursor import BaseCursor

R = TypeVar("R")

log = logging.getLogger("insightreader.store")

_JSON_FIELD = re.compile(r"json_extract\((\w+), '\$\.(\w+)'\)")
#: The key of the advisory lock serving processes hold shared and operator commands
#: that write behind their backs hold exclusively (any constant names it).
_SERVER_LOCK = 0x1A5168
#: The key of the advisory lock every write transaction takes at its BEGIN: one
#: transaction writes at a time, whichever process it comes from, so event ids (taken
#: in it) are in commit order, and no two transactions can deadlock on rows.
_WRITE_LOCK = 0x1A5169
#: Seconds between two checks that the listening connection is alive, when quiet.
LISTEN_CHECK = 10.0
#: Seconds between attempts to listen again after its connection was lost.
RELISTEN_WAIT = (0.2, 0.5, 1.0, 2.0, 5.0)
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
    if isinstance(exc, errors.IdleInTransactionSessionTimeout):  # see PostgreSQL.connect_writer
        return StorageBusy("the database ended a write this process had left waiting; try again")
    if isinstance(exc, psycopg.OperationalError):
        return StorageBusy("the database cannot be reached; try again")
    return exc


#: ts_rank's weights of D (text, notes), C (analysis), B (tags), A (title).
_WEIGHTS = "{0.1, 0.3, 0.5, 1.0}"
_HEADLINE = (
    f"StartSel=\"\", StopSel=\"\", MaxWords={search.SNIPPET_TOKENS}, MinWords=12, ShortWord=0"
)


def _any_term(query: search.Query) -> str:
    return " | ".join(f"({term.tsquery})" for term in query.terms)


class FullText:
    """Search on PostgreSQL's full text (:class:`insightreader.store.reader.FullText`):
    the same terms as on SQLite, each matching its words side by side in
    ``document`` (a word as a prefix) or, a single word, its English stem in ``stems``."""

    @staticmethod
    def page_sql(query: search.Query, user_id: str, limit: int, offset: int) -> tuple[str, list[Any]]:
        conditions, params = [], []
        for term in query.terms:
            condition = "document @@ to_tsquery('simple', ?)"
            params.append(term.tsquery)
            if term.stem is not None:
                condition = f"({condition} OR stems @@ plainto_tsquery('english', ?))"
                params.append(term.stem)
            conditions.append(condition)
        sql = (
            f"SELECT seq, -ts_rank('{_WEIGHTS}', document, to_tsquery('simple', ?)) AS rank"
            f" FROM search_documents WHERE user_id = ? AND {' AND '.join(conditions)}"
            " ORDER BY rank, seq DESC LIMIT ? OFFSET ?"
        )
        return sql, [_any_term(query), user_id, *params, limit, offset]

    @staticmethod
    def shown_sql(query: search.Query, seqs: list[int]) -> tuple[str, list[Any]]:
        # The snippet comes from the first field that matches (SQLite's FTS5 picks the
        # best one): the text, notes, analysis, title, tags.
        cases = " ".join(
            f"WHEN to_tsvector('simple', d.{field}) @@ q.q THEN ts_headline('simple', d.{field}, q.q, '{_HEADLINE}')"
            for field in ("body", "notes", "analysis", "title", "tags")
        )
        sql = (
            f"SELECT a.seq, a.id, a.title, CASE {cases} ELSE substr(a.content, 1, ?) END"
            " FROM articles a JOIN search_documents d ON d.seq = a.seq,"
            " (SELECT to_tsquery('simple', ?) AS q) q WHERE a.seq = ANY(?)"
        )
        return sql, [search.FALLBACK_SNIPPET_CHARS, _any_term(query), seqs]


def _reindex(writes: PostgresWrites, seqs: list[int]) -> None:
    """Replace the index rows of these articles with what they hold now (none for an
    article that was deleted)."""
    writes.execute("DELETE FROM search_documents WHERE seq = ANY(?)", (seqs,))
    rows = writes.execute(
        "SELECT seq, user_id, title, content, analysis,"
        " (SELECT string_agg(quote || chr(10) || note, chr(10)) FROM highlights h WHERE h.article_id = articles.id),"
        " (SELECT string_agg(t.name, chr(10)) FROM article_tags at JOIN tags t ON t.id = at.tag_id"
        " WHERE at.article_seq = articles.seq)"
        " FROM articles WHERE seq = ANY(?)",
        (seqs,),
    ).fetchall()
    documents = []
    for row in rows:
        seq, user_id, title, text, analysis, tags, notes = search.document(tuple(row))
        documents.append((
            seq, user_id, title, text, analysis, tags, notes, title, tags, analysis, text, notes,
            search.shown_text(" ".join((title, text, analysis, tags, notes))),
        ))
    writes.executemany(
        "INSERT INTO search_documents (seq, user_id, title, body, analysis, tags, notes, document, stems)"
        " VALUES (?, ?, ?, ?, ?, ?, ?,"
        " setweight(to_tsvector('simple', ?), 'A') || setweight(to_tsvector('simple', ?), 'B')"
        " || setweight(to_tsvector('simple', ?), 'C') || setweight(to_tsvector('simple', ?), 'D')"
        " || setweight(to_tsvector('simple', ?), 'D'), to_tsvector('english', ?))",
        documents,
    )


class PostgresWrites:
    """The writer's connection (:class:`insightreader.store.tx.Writes`)."""

    def __init__(self, url: str, *, idle_timeout: float | None = None) -> None:
        """``idle_timeout``: seconds after which the server ends this connection's
        transaction if it sits idle (no statement running) in the middle of one."""
        self._url = url
        self._idle_timeout = idle_timeout
        self.connection = self._connect()
        #: The transaction's notifications, sent together just before its COMMIT.
        self._notes: list[tuple[str, str]] = []

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self._url, autocommit=True, row_factory=_rows)
        _configure(conn)
        if self._idle_timeout is not None:
            conn.execute(
                "SELECT set_config('idle_in_transaction_session_timeout', %s, false)",
                (str(max(1, round(self._idle_timeout * 1000))),),
            )
        return conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        return self.connection.execute(postgres_sql(sql), tuple(params))

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> psycopg.Cursor[Any]:
        cursor = self.connection.cursor()
        cursor.executemany(postgres_sql(sql), [tuple(p) for p in params])
        return cursor

    skip_locked = " FOR UPDATE SKIP LOCKED"

    def begin(self) -> None:
        """BEGIN and take the write lock, on a new connection when the last one was lost
        (a restarted database, a closed idle connection): nothing was done yet, so
        trying again is safe."""
        if not (self.connection.broken or self.connection.closed):
            try:
                self._begin()
                return
            except psycopg.OperationalError:
                self.connection.close()
        self.connection = self._connect()
        self._begin()

    def _begin(self) -> None:
        self._notes.clear()
        self.connection.execute("BEGIN")
        self.connection.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))

    def notify(self, channel: str, payload: str) -> None:
        # Sent at the commit, all in one statement: one round trip per batch, not per
        # notification. One from a job that rolled back to its savepoint goes out too;
        # every listener reads the tables it concerns and finds nothing new then.
        self._notes.append((channel, payload))

    def event_ids(self, count: int) -> list[int]:
        # In commit order: every write transaction holds the write lock (see begin).
        rows = self.connection.execute(
            "SELECT nextval(pg_get_serial_sequence('events', 'id')) FROM generate_series(1, %s)", (count,)
        ).fetchall()
        return [int(row[0]) for row in rows]

    def commit(self) -> None:
        dirty = [row[0] for row in self.execute("DELETE FROM search_dirty RETURNING seq")]
        if dirty:
            _reindex(self, dirty)  # what the batch changed, in its transaction
        if self._notes:
            notes = list(dict.fromkeys(self._notes))
            self.connection.execute(
                "SELECT pg_notify(c, p) FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS n(c, p, i) ORDER BY i",
                ([c for c, _ in notes], [p for _, p in notes]),
            )
            self._notes.clear()
        self.connection.execute("COMMIT")

    def rollback(self) -> None:
        self._notes.clear()
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

    full_text = FullText()

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    async def fetchall(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        """The rows. A read on a connection that turns out lost is tried once more on
        another (the lost ones dropped), then fails as busy."""
        try:
            return await self._fetchall(sql, params)
        except psycopg.OperationalError:
            await self._pool.check()  # the other idle connections may be lost too
        try:
            return await self._fetchall(sql, params)
        except psycopg.OperationalError as exc:
            raise StorageBusy("the database cannot be reached; try again") from exc

    async def _fetchall(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(postgres_sql(sql), params)
            return await cursor.fetchall()

    async def fetch_records(self, sql: str, params: tuple[Any, ...], make: Callable[..., R]) -> list[R]:
        return [make(*row) for row in await self.fetchall(sql, params)]

    async def last_event_id(self) -> int:
        rows = await self.fetchall(
            "SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('events', 'id')::regclass), 0)", ()
        )
        return int(rows[0][0])

    async def close(self) -> None:
        await self._pool.close()


class PostgreSQL:
    """The store's database on a PostgreSQL server (:class:`insightreader.store.writer.Database`)."""

    def __init__(self, settings: DatabaseSettings) -> None:
        self.settings = settings
        self.url = settings.url

    def hold(self, *, shared: bool) -> ServerLock:
        return ServerLock(self.url, shared=shared)

    def channels(self, supervisor: Supervisor) -> PostgresChannels:
        return PostgresChannels(self.url, supervisor)

    def open_reader(self) -> AbstractAsyncContextManager[Reader]:
        return open_reader(self.settings)

    async def prepare(self) -> list[migrate.Migration]:
        return await migrate.postgresql(self.url)

    def connect_writer(self) -> PostgresWrites:
        # Every write transaction holds the write lock (PostgresWrites.begin), and the
        # writer never pauses inside one: its statements run back to back. One idle in
        # a transaction is a stalled process (stopped, frozen, swapping), and until it
        # wakes every other process's writes would wait for its lock. The server ends
        # such a transaction after database.busy_timeout; the stalled process's writer
        # reconnects when it wakes (begin).
        return PostgresWrites(self.url, idle_timeout=self.settings.busy_timeout)

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


@asynccontextmanager
async def open_reader(settings: DatabaseSettings) -> AsyncIterator[Reader]:
    """A :class:`Reader` for operator commands beside running servers; the database
    must be migrated (this changes nothing)."""
    migrate.require_applied(settings.label, await migrate.postgresql(settings.url, dry_run=True))
    reads = await PostgreSQL(settings).connect_reader()
    try:
        yield Reader(reads)
    finally:
        await reads.close()


class ServerLock:
    """The advisory lock on a database, held by a connection of its own for the
    holder's life (PostgreSQL releases it when the connection ends, a killed process's
    included): shared by serving processes, exclusive for an operator command that
    writes behind their backs."""

    def __init__(self, url: str, *, shared: bool) -> None:
        self._conn = psycopg.connect(url, autocommit=True)
        take = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
        row = self._conn.execute(f"SELECT {take}(%s)", (_SERVER_LOCK,)).fetchone()
        if not (row and row[0]):
            self._conn.close()
            raise AlreadyRunning(
                "an operator command is using this PostgreSQL database" if shared
                else "an insightreader server is using this PostgreSQL database"
            )

    def close(self) -> None:
        self._conn.close()


class PostgresChannels:
    """``LISTEN`` on every channel (:mod:`.channels`) through a connection of its own;
    a lost connection is replaced (the callbacks of ``on_reconnect`` then read what was
    missed meanwhile)."""

    shared = True

    def __init__(self, url: str, supervisor: Supervisor) -> None:
        self._url = url
        self._supervisor = supervisor
        self._callbacks: dict[str, list[Callable[[str], None]]] = {}
        self._reconnected: list[Callable[[], None]] = []
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None

    def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        self._callbacks.setdefault(channel, []).append(callback)

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        self._reconnected.append(callback)

    async def start(self) -> None:
        self._conn = await self._connect()
        self._task = self._supervisor.start(self._run(), name="notifications")

    async def stop(self) -> None:
        await self._supervisor.stop(self._task)
        self._task = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        for channel in channels.ALL:
            await conn.execute(f"LISTEN {channel}")
        return conn

    async def _run(self) -> None:
        while True:
            assert self._conn is not None
            try:
                await self._receive(self._conn)
            except (psycopg.OperationalError, TimeoutError) as exc:
                log.warning("lost the connection that listens to other processes (%s); listening again", exc)
            with contextlib.suppress(psycopg.Error):
                await self._conn.close()
            self._conn = await self._reconnect()
            for callback in self._reconnected:
                self._call(callback)

    async def _receive(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while True:
            async for note in conn.notifies(timeout=LISTEN_CHECK):
                for callback in self._callbacks.get(note.channel, ()):
                    self._call(callback, note.payload)
            async with asyncio.timeout(LISTEN_CHECK):
                await conn.execute("SELECT 1")

    async def _reconnect(self) -> psycopg.AsyncConnection[Any]:
        attempt = 0
        while True:
            await asyncio.sleep(RELISTEN_WAIT[min(attempt, len(RELISTEN_WAIT) - 1)])
            attempt += 1
            try:
                return await self._connect()
            except psycopg.OperationalError as exc:
                log.warning("cannot listen to other processes yet (%s)", exc)

    @staticmethod
    def _call(callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("a notification's callback failed; listening goes on")
