"""Buses and databases for the events contract suites: every adapter, isolated per test."""
from __future__ import annotations

import uuid

import aio_pika
import sqlalchemy as sa

from mesh.events import InProcessBus, producer
from mesh.events.outbox import event_tables
from mesh.events.rabbit import RabbitBus
from mesh.sql import Database
from tests.support.platform import AMQP_URL, POSTGRES_URL

# What the consumers under test do: one row per application, so a double application shows.
effects_meta = sa.MetaData()
applied = sa.Table("applied", effects_meta,
                   sa.Column("n", sa.Integer, primary_key=True, autoincrement=True),
                   sa.Column("event_id", sa.String(36), nullable=False))


async def make_bus(kind: str, url: str = AMQP_URL):
    if kind == "inprocess":
        bus = InProcessBus(retry_delay=0.01)
    else:
        tag = uuid.uuid4().hex[:8]
        bus = RabbitBus(url, f"test.{tag}", queue_prefix=f"test.{tag}.")
    await bus.start()
    return bus


async def drop_bus(bus) -> None:
    await bus.close()
    if isinstance(bus, RabbitBus):
        conn = await aio_pika.connect(AMQP_URL)
        async with conn:
            ch = await conn.channel()
            for c in bus.consumers:
                await ch.queue_delete(f"{bus._prefix}{c}")
                await ch.queue_delete(f"{bus._prefix}{c}.dlq")
            await ch.exchange_delete(bus._exchange_name)
            await ch.exchange_delete(f"{bus._exchange_name}.dlx")


async def make_db(kind: str, tmp_path, info=None) -> Database:
    info = info or producer("test", None)
    if kind == "sqlite":
        db = Database(f"sqlite+aiosqlite:///{tmp_path}/events.sqlite3", None, info=info)
    else:
        db = Database(POSTGRES_URL, f"test_events_{uuid.uuid4().hex[:10]}", info=info)
        async with db.engine.begin() as conn:
            await conn.execute(sa.text(f'CREATE SCHEMA "{db.schema}"'))
    async with db.engine.begin() as conn:
        await conn.run_sync(event_tables.create_all)
        await conn.run_sync(effects_meta.create_all)
    return db


async def drop_db(db: Database) -> None:
    if db.schema:
        async with db.engine.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA "{db.schema}" CASCADE'))
    await db.dispose()


async def applied_counts(db: Database) -> dict[str, int]:
    async with db.transaction() as s:
        rows = (await s.execute(sa.select(applied.c.event_id, sa.func.count()).group_by(applied.c.event_id))).all()
    return dict(rows)
