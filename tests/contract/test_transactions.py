"""The relational port's transactions, on SQLite and PostgreSQL alike: a writing transaction owns
what it read (no lost update, however parallel), and a reading one never writes."""
from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from mesh.sql import Database
from tests.support.databases import drop_database, scratch_database

counters = sa.MetaData()
counter = sa.Table("counter", counters, sa.Column("id", sa.Integer, primary_key=True),
                   sa.Column("value", sa.Integer, nullable=False))


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request, tmp_path):
    d = scratch_database(request.param, tmp_path)
    async with d.engine.begin() as conn:
        if d.schema:
            await conn.execute(sa.text(f'CREATE SCHEMA "{d.schema}"'))
        await conn.run_sync(counters.create_all)
        await conn.execute(counter.insert().values(id=1, value=0))
    yield d
    await drop_database(d)


async def test_read_then_write_loses_no_update(db: Database):
    async def increment() -> None:
        async with db.transaction() as s:
            value = await s.scalar(sa.select(counter.c.value).where(counter.c.id == 1).with_for_update())
            await asyncio.sleep(0)  # let the others read meanwhile, were they allowed to
            await s.execute(counter.update().where(counter.c.id == 1).values(value=value + 1))

    await asyncio.gather(*(increment() for _ in range(20)))
    async with db.read() as s:
        assert await s.scalar(sa.select(counter.c.value)) == 20


async def test_a_read_sees_one_snapshot_and_writes_nothing_on_postgresql(db: Database):
    async with db.read() as s:
        assert await s.scalar(sa.select(counter.c.value)) == 0
        if not db.is_sqlite:
            with pytest.raises(sa.exc.DBAPIError, match="read-only"):
                await s.execute(counter.update().values(value=5))
    async with db.read() as s:
        assert await s.scalar(sa.select(counter.c.value)) == 0
