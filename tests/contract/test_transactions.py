"""The relational port's transactions, on SQLite and PostgreSQL alike: a writing transaction owns
what it read (no lost update, however parallel), and a reading one never writes."""
from __future__ import annotations

import asyncio
import uuid

import pytest
import sqlalchemy as sa

from mesh.sql import Database
from tests.support.platform import POSTGRES_URL

counters = sa.MetaData()
counter = sa.Table("counter", counters, sa.Column("id", sa.Integer, primary_key=True),
                   sa.Column("value", sa.Integer, nullable=False))


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request, tmp_path):
    if request.param == "sqlite":
        d = Database(f"sqlite+aiosqlite:///{tmp_path}/t.sqlite3", None)
    else:
        d = Database(POSTGRES_URL, f"test_tx_{uuid.uuid4().hex[:10]}")
    async with d.engine.begin() as conn:
        if d.schema:
            await conn.execute(sa.text(f'CREATE SCHEMA "{d.schema}"'))
        await conn.run_sync(counters.create_all)
        await conn.execute(counter.insert().values(id=1, value=0))
    yield d
    if d.schema:
        async with d.engine.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA "{d.schema}" CASCADE'))
    await d.dispose()


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
