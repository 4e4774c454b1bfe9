"""PostgreSQL without pre-ping: a read that meets a connection the server dropped is run again on a fresh one."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

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
