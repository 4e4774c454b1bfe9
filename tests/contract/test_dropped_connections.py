"""PostgreSQL without pre-ping: a read that meets a connection the server dropped is run again on a fresh one."""
from __future__ import annotations

import asyncio
import contextlib

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from mesh.sql import Database, is_unavailable
from tests.support.databases import drop_database, scratch_database
from tests.support.platform import POSTGRES_URL

pytestmark = pytest.mark.real


async def terminate_connections_of(db) -> int:
    """pg_terminate_backend on every connection of `db`'s pool, found by its name (its schema), no other."""
    engine = create_async_engine(POSTGRES_URL)
    async with engine.begin() as conn:
        killed = (await conn.execute(sa.text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = :name"),
            {"name": db.schema})).scalar_one()
    await engine.dispose()
    return killed


async def test_a_read_on_a_dropped_connection_is_retried_once(tmp_path):
    db = scratch_database("postgres", tmp_path)
    try:
        assert not db.engine.pool._pre_ping, "no round trip before each checkout"
        assert await db.reading(lambda s: s.scalar(sa.text("SELECT 1"))) == 1  # a pooled connection now
        assert await terminate_connections_of(db) >= 1
        assert await db.reading(lambda s: s.scalar(sa.text("SELECT 2"))) == 2
        assert await terminate_connections_of(db) >= 1
        with pytest.raises(sa.exc.DBAPIError) as e:  # what every read would meet without the retry
            async with db.read() as s:
                await s.scalar(sa.text("SELECT 3"))
        assert e.value.connection_invalidated
        assert await db.reading(lambda s: s.scalar(sa.text("SELECT 4"))) == 4
    finally:
        await drop_database(db)


async def test_a_failing_read_is_not_run_again(tmp_path):
    db = scratch_database("postgres", tmp_path)
    runs = []

    async def bad(s):
        runs.append(1)
        return await s.scalar(sa.text("SELECT * FROM no_such_table"))
    try:
        with pytest.raises(sa.exc.DBAPIError):
            await db.reading(bad)
        assert runs == [1]
    finally:
        await drop_database(db)


async def test_a_select_on_dropped_connections_is_retried_once_on_a_fresh_one(tmp_path):
    """Database.select runs on the pooled driver connection itself: a dropped one is met as SQLAlchemy meets it
    (connection_invalidated, and every connection opened before it is replaced), so its one retry, and the
    selects after it, get fresh connections, though the server dropped all the pool held."""
    db = scratch_database("postgres", tmp_path)
    backend = sa.select(sa.func.pg_backend_pid().label("pid"), sa.func.pg_sleep(sa.bindparam("nap")))
    try:
        pooled = {r.pid for rows in await asyncio.gather(*(db.select(backend, {"nap": 0.2}) for _ in range(3)))
                  for r in rows}
        assert len(pooled) == 3
        assert await terminate_connections_of(db) == 3
        for _ in range(3):
            (row,) = await db.select(backend, {"nap": 0})
            assert row.pid not in pooled
    finally:
        await drop_database(db)


async def test_a_select_cancelled_halfway_gives_its_connection_up(tmp_path):
    """A select cancelled while the server runs it (a caller's deadline) leaves its connection in a state
    unknown: it is closed, as SQLAlchemy's execution closes it, not given back to the pool."""
    db = scratch_database("postgres", tmp_path)
    nap = sa.select(sa.func.pg_backend_pid().label("pid"), sa.func.pg_sleep(sa.bindparam("nap")))
    watch = create_async_engine(POSTGRES_URL)
    try:
        ((first, _),) = await db.select(nap, {"nap": 0})
        task = asyncio.create_task(db.select(nap, {"nap": 30}))
        async with watch.connect() as conn:
            while True:  # until the server runs it
                running = await conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"
                                                     " AND state = 'active' AND query LIKE '%pg_sleep%'"),
                                             {"pid": first})
                if running.scalar_one():
                    break
                await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with watch.connect() as conn:  # and the server stopped running it (not 30 s later)
            for _ in range(500):
                running = await conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"
                                                     " AND state = 'active' AND query LIKE '%pg_sleep%'"),
                                             {"pid": first})
                if not running.scalar_one():
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("the cancelled query still runs on the server")
        for _ in range(3):
            ((pid, _),) = await db.select(nap, {"nap": 0})
            assert pid != first
    finally:
        await watch.dispose()
        await drop_database(db)


async def test_a_select_recovers_from_another_process_changing_the_schema(tmp_path):
    """Prepared statements cached on a pooled connection go stale when another process (a replica's migration)
    changes a table: one read may fail, as SQLAlchemy's own would, and the next is prepared again."""
    db = scratch_database("postgres", tmp_path)
    other = create_async_engine(POSTGRES_URL)
    try:
        async with other.begin() as conn:
            await conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{db.schema}"'))
            await conn.execute(sa.text(f'CREATE TABLE "{db.schema}".note (id int PRIMARY KEY, body varchar(10))'))
            await conn.execute(sa.text(f"INSERT INTO \"{db.schema}\".note VALUES (1, 'a')"))
        note = sa.Table("note", sa.MetaData(), sa.Column("id", sa.Integer), sa.Column("body", sa.String))
        read = sa.select(note.c.id, note.c.body).where(note.c.id == sa.bindparam("id"))
        assert [tuple(r) for r in await db.select(read, {"id": 1})] == [(1, "a")]
        async with other.begin() as conn:
            await conn.execute(sa.text(f'ALTER TABLE "{db.schema}".note ALTER COLUMN body TYPE text'))
        with contextlib.suppress(sa.exc.DBAPIError):
            await db.select(read, {"id": 1})
        assert [tuple(r) for r in await db.select(read, {"id": 1})] == [(1, "a")]
    finally:
        await other.dispose()
        await drop_database(db)


async def test_a_select_that_cannot_connect_says_the_database_is_unavailable():
    """A refusal while connecting (too many connections, a server starting or stopping) is a DBAPIError that
    is_unavailable() recognises, so the caller gets UNAVAILABLE, not INTERNAL."""
    admin = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    role = "petplatform_test_no_connections"
    async with admin.connect() as conn:
        await conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
        await conn.execute(sa.text(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0"))
    db = Database(POSTGRES_URL.replace("postgres@", f"{role}@"), "no_connections")
    try:
        with pytest.raises(sa.exc.DBAPIError) as e:
            await db.select(sa.select(sa.literal(1)), {})
        assert is_unavailable(e.value)
    finally:
        await db.dispose()
        async with admin.connect() as conn:
            await conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
        await admin.dispose()
