"""The relational port: one async SQLAlchemy engine per service, SQLite (embedded) or PostgreSQL (real).

Each service owns a schema: in PostgreSQL the models' schema-less tables are mapped onto
`<prefix><service>` with schema_translate_map; in SQLite each service gets its own file.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import sqlite3
import contextlib
import sys
import time
import weakref
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from types import AsyncGeneratorType, CoroutineType, FrameType
from typing import Any, NoReturn, TypeVar, cast

from alembic import command
from alembic.config import Config
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine.result import SimpleResultMetaData
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.util import greenlet_spawn


class UtcDateTime(sa.types.TypeDecorator):
    """Timezone-aware UTC datetimes on both backends (SQLite drops the zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime")
            value = value.astimezone(dt.timezone.utc)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value


T = TypeVar("T")
Row = sa.Row[*tuple[Any, ...]]
"""A result row, of whatever columns its query selected."""


# PostgreSQL SQLSTATE classes of a database that cannot serve now: connection exceptions, insufficient
# resources (too many connections, out of memory or disk) and operator intervention (shutdown, restart).
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P01", "57P02", "57P03")


def is_unavailable(exc: BaseException) -> bool:
    """Whether an exception says the database cannot serve right now (down, restarting, out of connections,
    its pool exhausted, SQLite locked past its wait), rather than that a statement is wrong."""
    if isinstance(exc, sa.exc.TimeoutError):  # no pooled connection came free in time
        return True
    if isinstance(exc, sqlite3.OperationalError):
        return "locked" in str(exc) or "busy" in str(exc)
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    if isinstance(orig, sqlite3.OperationalError):
        return is_unavailable(orig)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(getattr(orig, "__cause__", None), "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATES)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


async def rows_changed(session: AsyncSession, statement: sa.Executable) -> int:
    """Executes an INSERT, UPDATE or DELETE and returns how many rows it changed (its cursor's rowcount,
    which the typing of AsyncSession.execute hides)."""
    return cast(sa.CursorResult[Any], await session.execute(statement)).rowcount


# How long one SQLite writer may keep the turn before the writers queued behind it give up (a queue that
# moves is waited out: see Database._wait_for_turn), and how long SQLite's busy handler waits for another
# process's write lock.
SQLITE_BUSY_SECONDS = 30
# A writer waiting this long for its turn logs who holds it (and where it is), and a turn held this long is
# logged when it ends: a stall then names its cause rather than only timing out 30 s later.
TURN_REPORT_SECONDS = 5.0

log = logging.getLogger(__name__)


class _PoolCollector(Collector):
    """The connection pools of this process's databases, read at each scrape: how many connections each
    service holds busy and idle, against what it may open (pool + overflow)."""

    def __init__(self) -> None:
        self.databases: weakref.WeakSet[Database] = weakref.WeakSet()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        used: dict[str, float] = {}
        idle: dict[str, float] = {}
        most: dict[str, float] = {}
        for db in list(self.databases):
            pool = db.engine.sync_engine.pool
            if not isinstance(pool, sa.pool.QueuePool):
                continue
            name = db.service
            used[name] = used.get(name, 0) + pool.checkedout()
            idle[name] = idle.get(name, 0) + pool.checkedin()
            most[name] = most.get(name, 0) + pool.size() + max(0, getattr(pool, "_max_overflow", 0))
        connections = GaugeMetricFamily("petplatform_db_pool_connections",
                                        "Database connections of the pool, by state", labels=["service", "state"])
        limit = GaugeMetricFamily("petplatform_db_pool_max_connections",
                                  "Connections the pool may open (pool size + overflow)", labels=["service"])
        for name in sorted(most):
            connections.add_metric([name, "in_use"], used[name])
            connections.add_metric([name, "idle"], idle[name])
            limit.add_metric([name], most[name])
        yield connections
        yield limit


_POOLS = _PoolCollector()
REGISTRY.register(_POOLS)


class Database:
    def __init__(self, url: str, schema: str | None, *, info: Mapping[str, object] | None = None,
                 pool_size: int = 10, max_overflow: int = 10):
        """info: copied into every session's `info` (the events layer keeps the producer there). On
        PostgreSQL, `pool_size` connections stay open and up to `max_overflow` more are opened under load."""
        self.url = url
        self.schema = schema  # None on SQLite
        kwargs: dict = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_SECONDS}
        else:
            # No pre-ping (a round trip before every checkout): connections are recycled before a server or
            # proxy would drop them idle, and a read that meets a dropped one is retried (Database.reading);
            # a disconnect found by any statement invalidates the whole pool. Connections are named after
            # the service's schema in pg_stat_activity.
            kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_recycle=1800,
                          connect_args={"server_settings": {"application_name": schema or "petplatform"}})
        engine = create_async_engine(url, **kwargs)
        if schema:
            engine = engine.execution_options(schema_translate_map={None: schema})
        if url.startswith("sqlite"):
            event.listen(engine.sync_engine, "connect", _sqlite_connect)
            event.listen(engine.sync_engine, "begin", _sqlite_begin)
            # A writing transaction takes SQLite's write lock at BEGIN, so what it reads first is what
            # it changes (the driver would otherwise begin only at the first write); reads take none.
            writes, reads = (engine.execution_options(sqlite_begin="IMMEDIATE"),
                             engine.execution_options(sqlite_begin="DEFERRED"))
        else:
            # REPEATABLE READ: a read transaction sees one snapshot (under READ COMMITTED each statement
            # takes its own); read-only, it can never fail to serialize. Set in its BEGIN: no extra round trip.
            writes, reads = engine, engine.execution_options(postgresql_readonly=True,
                                                             isolation_level="REPEATABLE READ")
        self.engine: AsyncEngine = engine
        # select(): one statement in no transaction, no BEGIN nor COMMIT, on the driver's connection.
        self._compiled: dict[sa.Select[*tuple[Any, ...]], _Compiled] = {}  # by statement (built once)
        self._writer = asyncio.Lock() if url.startswith("sqlite") else None
        # Who has the writer turn (for the report of a long wait), how many turns were taken (a queue that
        # moves), and when a long wait was last reported.
        self._holder: _Holder | None = None
        self._turns = 0
        self._reported = float("-inf")
        # SQLite reads through reading() run on the event loop's own thread (see reading()).
        self._sync_reads: sa.Engine | None = None
        if url.startswith("sqlite"):
            self._sync_reads = sa.create_engine(sa.make_url(url).set(drivername="sqlite"),
                                                connect_args={"timeout": SQLITE_BUSY_SECONDS}, pool_size=4,
                                                max_overflow=-1)
            event.listen(self._sync_reads, "connect", _sqlite_connect)
            event.listen(self._sync_reads, "begin", _sqlite_begin)  # DEFERRED: a reader takes no lock
            # (No bound on connections: a read that awaits something else lets another one begin.)
        self._sync_writes: sa.Engine | None = None
        if url.startswith("sqlite"):
            # One connection: this process's writers take turns on self._writer anyway.
            sync_writes = sa.create_engine(sa.make_url(url).set(drivername="sqlite"), pool_size=1, max_overflow=0,
                                           connect_args={"check_same_thread": False})  # COMMIT runs in a thread
            event.listen(sync_writes, "connect", _sqlite_connect)
            event.listen(sync_writes, "connect", _sqlite_no_busy_wait)
            event.listen(sync_writes, "begin", _sqlite_begin)
            self._sync_writes = sync_writes.execution_options(sqlite_begin="IMMEDIATE")
        self._info = dict(info or {})
        self._sessions = async_sessionmaker(writes, expire_on_commit=False, info=dict(info or {}))
        self._reads = async_sessionmaker(reads, expire_on_commit=False)
        _POOLS.databases.add(self)

    @property
    def info(self) -> Mapping[str, object]:
        """What every session's `info` starts with (the producer: see mesh.events.producer)."""
        return self._info

    @property
    def service(self) -> str:
        """Whose database this is, for metrics: the event source, else the schema."""
        return str(self._info.get("event_source") or self.schema or "unnamed")

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in one writing transaction: committed on success, rolled back on any exception."""
        if self._writer is None:
            async with self._sessions() as session, session.begin():
                yield session
            return
        async with self._turn():
            async with self._sessions() as session, session.begin():
                yield session

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        # SQLite has one writer. Writers of this process take turns here, in order, and each is woken the
        # moment the last one commits; left to SQLite's busy handler they would poll the lock with sleeps
        # growing to 100 ms, and a hundred sends a second queue for seconds. (Other processes sharing the
        # file still meet the busy handler.)
        lock = self._writer
        assert lock is not None
        if lock.locked() or getattr(lock, "_waiters", None):
            await self._wait_for_turn(lock)
        else:
            await lock.acquire()  # free: taken at once, nothing to watch
        self._turns += 1
        holder = self._holder = (asyncio.current_task(), time.monotonic(), _caller(sys._getframe(1)))
        try:
            yield
        finally:
            self._holder = None
            lock.release()
            held = time.monotonic() - holder[1]
            if held > TURN_REPORT_SECONDS:
                log.warning("%s: SQLite writer turn held %.1f s by task %s, taken by %s", self.service, held,
                            holder[0].get_name() if holder[0] else "?", _where(holder[2]) if holder[2] else "?")

    async def _wait_for_turn(self, lock: asyncio.Lock) -> None:
        """Queues for the writer turn. A writer fails, as SQLite's busy handler would answer, only when one holder
        has kept the turn SQLITE_BUSY_SECONDS (a writer that never commits, or a transaction opened inside another
        on the same database): a queue that moves is waited out however long it is, for under load every turn
        is slow and a burst of writers queued past 30 s in all (nine sign-ups at once failed so in CI)."""
        loop = asyncio.get_running_loop()
        since = time.monotonic()
        try:
            async with asyncio.timeout(None) as deadline:
                def check(turns: int) -> None:
                    if self._turns == turns:  # no turn was handed over since the last check
                        deadline.reschedule(loop.time())
                    else:
                        timers.append(loop.call_later(SQLITE_BUSY_SECONDS, check, self._turns))

                timers = [loop.call_later(SQLITE_BUSY_SECONDS, check, self._turns),
                          loop.call_later(TURN_REPORT_SECONDS, self._report_wait, since, self._turns)]
                try:
                    await lock.acquire()
                finally:
                    for timer in timers:
                        timer.cancel()
        except TimeoutError:
            raise sqlite3.OperationalError(f"database is locked: no turn to write in {time.monotonic() - since:.0f} s,"
                                           f" {self._describe_holder()}") from None

    def _report_wait(self, since: float, turns: int) -> None:
        """A writer has waited TURN_REPORT_SECONDS for its turn: who holds it, since when, and where it is. At
        most one report per TURN_REPORT_SECONDS and database: every waiter of a long queue would say the same."""
        now = time.monotonic()
        if self._holder is None or now - self._reported < TURN_REPORT_SECONDS:
            return
        self._reported = now
        # Late: the loop itself was blocked (a synchronous call on its thread), so no awaiting holder is to blame.
        late = now - since - TURN_REPORT_SECONDS
        log.warning("%s: a writer has waited %.1f s for the SQLite writer turn (%d turns went by meanwhile, %d "
                    "waiting%s); %s", self.service, now - since, self._turns - turns,
                    len(getattr(self._writer, "_waiters", None) or ()),
                    f", the event loop was blocked {late:.1f} s" if late > 1 else "", self._describe_holder())

    def _describe_holder(self) -> str:
        holder = self._holder
        if holder is None:
            return "no holder: the turn is being handed over"
        task, since, caller = holder
        where = f"taken by {_where(caller)}" if caller else "taken"
        if task is None:
            return f"held {time.monotonic() - since:.1f} s outside any task, {where}"
        state = "finished without releasing it" if task.done() else "awaiting " + " -> ".join(_await_chain(task))
        return f"held {time.monotonic() - since:.1f} s by task {task.get_name()}, {where}, {state}"

    async def writing(self, fn: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """fn(session) in one writing transaction, as under transaction(). For a batch of short writes.

        On SQLite, when no other process holds the write lock, fn runs on the event loop's thread against a
        synchronous connection (a _SyncWrite posing as the session: execute, scalar, scalars, info,
        sync_session, so outbox.emit works): each statement takes microseconds there, where aiosqlite hands
        every one to its thread and back (a pass of the GIL each way, milliseconds on a busy machine). The
        loop is held for the statements (not the commit's flush to disk), so fn must only write: it must
        await nothing but the session. If another process holds the lock, fn runs under transaction()
        instead (its wait does not hold the loop)."""
        if self._sync_writes is None:
            async with self.transaction() as s:
                return await fn(s)
        async with self._turn():
            session = Session(self._sync_writes, info=dict(self._info))
            try:
                try:
                    session.connection()  # BEGIN IMMEDIATE, failing at once if the lock is taken
                except sa.exc.OperationalError as e:
                    if "locked" not in str(e):
                        raise
                else:
                    result = await fn(cast(AsyncSession, _SyncWrite(session)))
                    # COMMIT's flush to disk (milliseconds; tens at worst on a busy disk) in a thread, off the
                    # loop; SQLAlchemy's own commit then finds nothing left to commit and runs its after-commit
                    # hooks (the outbox relay's wake-up) here on the loop's thread. The write turn is still ours.
                    raw = session.connection().connection.dbapi_connection
                    assert raw is not None
                    await asyncio.to_thread(raw.execute, "COMMIT")
                    session.commit()
                    return result
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()
        async with self.transaction() as s:
            return await fn(s)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction for reading (one snapshot): it takes no write lock on SQLite, and
        is READ ONLY on PostgreSQL, where a write through it fails."""
        async with self._reads() as session, session.begin():
            yield session

    async def reading(self, fn: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """fn(session) in a read() session, run once more on a fresh connection if the first was found dropped
        (a database restart, failover or an idle cut): reads change nothing, so they may be run again.

        On SQLite, fn runs on the event loop's thread against a synchronous connection (a _SyncRead posing
        as the session): a read of a local WAL file takes tens of microseconds, where aiosqlite's hand-offs
        to its thread (cursor, execute, fetch, close per statement, begin, rollback) cost far more than
        the read and pass the GIL back and forth. WAL readers wait on no writer. fn must use only what
        _SyncRead offers (execute, scalar, scalars)."""
        if self._sync_reads is not None:
            with self._sync_reads.connect() as conn, conn.begin():
                return await fn(cast(AsyncSession, _SyncRead(conn)))
        async def attempt() -> T:
            async with self.read() as s:
                return await fn(s)
        return await _again_if_dropped(attempt)

    async def select(self, statement: sa.Select[*tuple[Any, ...]], params: Mapping[str, Any]) -> list[Row]:
        """The rows of one SELECT, which is its own snapshot: run in no transaction, it costs one round trip on
        PostgreSQL (no BEGIN, no COMMIT) and on SQLite runs on the loop's thread as reading() does. Retried once
        on a dropped connection, as reading() is. Only a plain SELECT: in no transaction, nothing would stop a
        write, nor a FOR UPDATE's lock.

        For a statement built once (the hot reads): it is compiled once, and then run on the pooled driver
        connection itself (asyncpg's prepared statement, or sqlite3), past SQLAlchemy's execution, which cost
        twice the driver's own time; the rows are the Rows SQLAlchemy would make, through the same type
        processing, and its errors the same DBAPIErrors."""
        if not isinstance(statement, sa.Select) or statement._for_update_arg is not None:
            raise TypeError("Database.select runs a plain SELECT only")
        compiled = self._compiled.get(statement)
        if compiled is None:
            compiled = self._compiled[statement] = _Compiled(statement, self._sync_reads or self.engine)
            if len(self._compiled) > COMPILED_SELECTS:
                del self._compiled[next(iter(self._compiled))]  # the oldest
        sql, args = compiled.arguments(params)
        if self._sync_reads is not None:
            return self._select_sqlite(compiled, sql, args)
        pool = self.engine.sync_engine.pool
        dialect = cast(Any, self.engine.dialect)

        async def attempt() -> list[Row]:
            # Taken and given back in a greenlet: the pool may wait for a connection, open one or close one.
            try:
                fairy = await greenlet_spawn(pool.connect)
            except dialect.loaded_dbapi.Error as e:  # too many connections, a server starting or stopping...
                raise sa.exc.DBAPIError.instance(None, None, e, dialect.loaded_dbapi.Error, dialect=dialect,
                                                 connection_invalidated=dialect.is_disconnect(e, None, None)) from e
            try:
                adapted = cast(Any, fairy.dbapi_connection)
                try:
                    # The adapter's own cache of prepared statements, which SQLAlchemy's executions share.
                    prepared, attributes = await adapted._prepare(sql, dialect._invalidate_schema_cache_asof)
                    records = await prepared.fetch(*args)
                except Exception as e:
                    try:
                        adapted._handle_exception(e)  # raises it as the DBAPI error SQLAlchemy would see
                    except Exception as dbapi_error:
                        if isinstance(dbapi_error, (dialect.dbapi.InvalidCachedStatementError,
                                                    dialect.dbapi.InternalServerError)):
                            # Another process changed the schema: prepared statements are made again from now
                            # on, as SQLAlchemy's own execution would have them.
                            dialect._invalidate_schema_cache()
                        await greenlet_spawn(_raise_as_sqlalchemy, dbapi_error, fairy, sql, args)
                    raise
                except BaseException as e:
                    # Cancelled halfway (a deadline): the connection's state is unknown, and SQLAlchemy too would
                    # close it rather than give it back. In a greenlet, the adapter closes it gracefully, which
                    # first cancels the query on the server (outside one, it drops the socket and the query runs on).
                    await greenlet_spawn(fairy.invalidate, e)
                    raise
                return compiled.rows(records, [a.type.oid for a in attributes])
            finally:
                await greenlet_spawn(fairy.close)
        return await _again_if_dropped(attempt)

    def _select_sqlite(self, compiled: _Compiled, sql: str, args: list[Any]) -> list[Row]:
        assert self._sync_reads is not None
        fairy = self._sync_reads.pool.connect()
        try:
            try:
                # No BEGIN: the statement is its own read.
                records = cast(sqlite3.Connection, fairy.dbapi_connection).execute(sql, args).fetchall()
            except Exception as e:
                _raise_as_sqlalchemy(e, fairy, sql, args)
            return compiled.rows(records, None)
        finally:
            fairy.close()

    async def migrate(self, migrations: Path, revision: str = "head", *, version_table: str = "alembic_version",
                      other_tables: Collection[str] = ()) -> None:
        """Brings the tables of one migrations tree to its newest (or the given) Alembic revision. Several
        trees share a schema, each with its own version table; `other_tables` are the other trees'
        tables (and version tables), which this tree's autogenerate leaves alone."""
        async with self.engine.begin() as conn:
            if self.schema:
                # Replicas starting together (a Deployment's pods) migrate one at a time: the others then find
                # the schema current. Held until this transaction ends.
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                                   {"key": f"petplatform.migrate.{self.schema}"})
                await conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
                # Alembic's ALTERs name tables bare, past schema_translate_map: resolve them in the service's schema.
                await conn.execute(sa.text(f'SET LOCAL search_path TO "{self.schema}"'))
            await conn.run_sync(_upgrade, migrations, self.schema, revision, version_table, set(other_tables))

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
        for sync in (self._sync_reads, self._sync_writes):
            if sync is not None:
                sync.dispose()


# How many statements Database.select keeps compiled (those built once: a page's shapes, the hot reads).
COMPILED_SELECTS = 256


class _Compiled:
    """A SELECT compiled once for one database (its schema rendered in), run on the driver by Database.select."""

    def __init__(self, statement: sa.Select[*tuple[Any, ...]], engine: AsyncEngine | sa.Engine):
        self.dialect = engine.dialect
        translate = engine.get_execution_options().get("schema_translate_map")
        self.compiled = statement.compile(dialect=self.dialect, schema_translate_map=translate,
                                          render_schema_translate=bool(translate))
        columns = self.compiled._result_columns  # (key, name, objects, type) of each column selected
        # The keys and the columns themselves look a value up, as in a Row of SQLAlchemy's own execution.
        self.metadata = SimpleResultMetaData([c.keyname for c in columns], extra=[c.objects for c in columns])
        self._types = [c.type for c in columns]
        self._processors: list[Any] | None = None  # each column's, once the driver has told its types
        # By parameter name: a UtcDateTime's (on SQLite, to its stored text), an Enum's.
        self._bind_processors: Mapping[str, Any] = self.compiled._bind_processors

    def arguments(self, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        """The SQL (expanding parameters rendered) and its positional arguments, through the bind processors."""
        state = self.compiled.construct_expanded_state(params)
        assert state.positiontup is not None  # both drivers take positional parameters
        # The state's processors are only those of the expanded IN parameters it made; the rest are the
        # compiled statement's own.
        values = state.parameters
        processors: Mapping[str, Any] = (
            {**self._bind_processors, **state.processors} if state.processors else self._bind_processors)
        return state.statement, [processors[k](values[k]) if k in processors else values[k]
                                 for k in state.positiontup]

    def rows(self, records: Sequence[Any], coltypes: Sequence[Any] | None) -> list[Row]:
        """The driver's records as Rows, through the result processors (asyncpg gives each column's type)."""
        if self._processors is None:
            self._processors = [t._cached_result_processor(self.dialect, coltypes[i] if coltypes else None)
                                for i, t in enumerate(self._types)]
        processors = self._processors if any(self._processors) else None
        meta, index = self.metadata, self.metadata._key_to_index
        return [sa.Row(meta, processors, index, r) for r in records]


def _raise_as_sqlalchemy(error: Exception, fairy: Any, sql: str, args: Sequence[Any]) -> NoReturn:
    """A driver's error as SQLAlchemy's execution raises it: a DBAPIError, and on a dropped connection marked
    connection_invalidated, with this connection and every one opened before it invalidated (as a
    disconnect met through a Connection does), so the retry gets a fresh one."""
    dialect = fairy._pool._dialect
    dbapi_error = dialect.loaded_dbapi.Error
    if not isinstance(error, dbapi_error):
        raise error
    dropped = dialect.is_disconnect(error, fairy.dbapi_connection, None)
    if dropped:
        fairy._pool._invalidate(fairy, error)
    raise sa.exc.DBAPIError.instance(sql, list(args), error, dbapi_error, dialect=dialect,
                                     connection_invalidated=dropped) from error


async def _again_if_dropped(attempt: Callable[[], Awaitable[T]]) -> T:
    """attempt(), once more if its connection was dropped (a database restart, a recycled connection): the
    pool hands out a fresh one then, so a read needs no pre-ping round trip."""
    try:
        return await attempt()
    except sa.exc.DBAPIError as e:
        if not e.connection_invalidated:
            raise
    return await attempt()


_Holder = tuple[asyncio.Task | None, float, FrameType | None]
"""Who has a writer turn: its task, since when (monotonic), and the frame that took it."""


def _caller(frame: FrameType | None) -> FrameType | None:
    """The first frame outside this module and contextlib: the code that took the writer turn."""
    while frame is not None and frame.f_code.co_filename in (__file__, contextlib.__file__):
        frame = frame.f_back
    return frame


def _where(frame: FrameType) -> str:
    """A frame's function and the line it is at now."""
    return f"{frame.f_code.co_name} ({Path(frame.f_code.co_filename).name}:{frame.f_lineno})"


_WRAPPERS = {"coroutine_wrapper", "async_generator_asend", "async_generator_athrow", "FutureIter"}
_WRAPPED = (CoroutineType, AsyncGeneratorType, asyncio.Future)


def _await_chain(task: asyncio.Task) -> list[str]:
    """Where a suspended task is: each coroutine (or async generator) it awaits through, innermost last, and
    what that one awaits (a future: a thread's answer, a lock, a queue). Task.get_stack shows only the outermost."""
    chain: list[str] = []
    obj: Any = task.get_coro()
    while obj is not None and len(chain) < 40:
        frame = getattr(obj, "cr_frame", None) or getattr(obj, "ag_frame", None) or getattr(obj, "gi_frame", None)
        if frame is None:
            # A coroutine awaited from compiled code (grpc's Cython handlers) hides behind its __await__
            # wrapper, an async generator behind the asend/athrow its context manager awaits, a future behind
            # the iterator its awaiter holds.
            inner = [r for r in gc.get_referents(obj) if isinstance(r, _WRAPPED)]
            if type(obj).__name__ in _WRAPPERS and len(inner) == 1:
                obj = inner[0]
                continue
            # Its state, not its repr: a finished future's repr shows its result (rows, an email's body).
            state = ("cancelled" if obj.cancelled() else "finished" if obj.done() else "pending"
                     ) if isinstance(obj, asyncio.Future) else ""
            chain.append(f"<{type(obj).__name__} {state}>".replace(" >", ">"))
            break
        chain.append(_where(frame))
        obj = getattr(obj, "cr_await", None) or getattr(obj, "ag_await", None) or getattr(obj, "gi_yieldfrom", None)
    return chain


class _SyncRead:
    """The part of AsyncSession that reads use, over a synchronous connection: each call completes at once
    (no await inside), so a read never gives the loop away halfway."""

    def __init__(self, conn: sa.Connection):
        self._conn = conn

    async def execute(self, statement: sa.Executable, params: Mapping[str, Any] | None = None) -> sa.Result[Any]:
        return self._conn.execute(statement, params)

    async def scalar(self, statement: sa.Executable, params: Mapping[str, Any] | None = None) -> Any:
        return self._conn.scalar(statement, params)

    async def scalars(self, statement: sa.Executable, params: Mapping[str, Any] | None = None) -> sa.ScalarResult[Any]:
        return self._conn.scalars(statement, params)


class _SyncWrite(_SyncRead):
    """The part of AsyncSession that Database.writing's fn uses, over a synchronous Session (its after_commit
    fires on the loop's thread, where the outbox relay is woken)."""

    def __init__(self, session: Session):
        super().__init__(session)  # type: ignore[arg-type]  # execute, scalar, scalars: the same calls
        self.sync_session = session
        self.info = session.info


def _sqlite_no_busy_wait(dbapi_conn, _record) -> None:
    # Database.writing's connection is used on the event loop's thread: it must never sleep on the lock.
    dbapi_conn.execute("PRAGMA busy_timeout=0")


def _sqlite_connect(dbapi_conn, _record) -> None:
    # The driver's own transaction handling off: _sqlite_begin says how each transaction begins.
    dbapi_conn.isolation_level = None
    # WAL lets readers run beside the writer; busy_timeout waits out the write lock.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def migrations_config(sync_conn, migrations: Path, schema: str | None = None, version_table: str = "alembic_version",
                      other_tables: Collection[str] = ()) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations))
    cfg.attributes.update(connection=sync_conn, version_table_schema=schema, version_table=version_table,
                          other_tables=set(other_tables))
    return cfg


def _sqlite_begin(conn: sa.Connection) -> None:
    conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', 'DEFERRED')}")


def _upgrade(sync_conn, migrations: Path, schema: str | None, revision: str, version_table: str,
             other_tables: set[str]) -> None:
    command.upgrade(migrations_config(sync_conn, migrations, schema, version_table, other_tables), revision)


def run_migrations_online(target_metadata: sa.MetaData) -> None:
    """Body of every service's migrations/env.py: runs on the connection Database.migrate passes."""
    from alembic import context

    attributes = context.config.attributes
    connection = attributes["connection"]
    other = attributes.get("other_tables", set())
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=attributes.get("version_table", "alembic_version"),
        version_table_schema=attributes.get("version_table_schema"),
        include_name=lambda name, kind, _parent: not (kind == "table" and name in other),
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def database_url(data_dir: Path, url: str | None, service: str, schema_prefix: str = "") -> tuple[str, str | None]:
    """(url, schema) of a service's database."""
    if url:
        return url, None if url.startswith("sqlite") else f"{schema_prefix}{service}"
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite+aiosqlite:///{(data_dir / f'{service}.sqlite3').resolve()}", None
