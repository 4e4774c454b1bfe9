"""Buses and databases for the events contract suites: every adapter, isolated per test."""
from __future__ import annotations

import uuid

import aio_pika
import sqlalchemy as sa

from mesh.events import InProcessBus, Relay, emit, producer
from mesh.events.outbox import event_tables, outbox
from mesh.events.rabbit import RabbitBus
from mesh.sql import Database
from tests.support.databases import scratch_database
from tests.support.platform import AMQP_URL

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
    db = scratch_database(kind, tmp_path, info=info or producer("test", None))
    async with db.engine.begin() as conn:
        if db.schema:
            await conn.execute(sa.text(f'CREATE SCHEMA "{db.schema}"'))
        await conn.run_sync(event_tables.create_all)
        await conn.run_sync(effects_meta.create_all)
    return db


async def applied_counts(db: Database) -> dict[str, int]:
    async with db.transaction() as s:
        rows = (await s.execute(sa.select(applied.c.event_id, sa.func.count()).group_by(applied.c.event_id))).all()
    return dict(rows)


class Producer:
    """Publishes events as a service of the platform does: written to an outbox (a SQLite file of its
    own) in one transaction under the service's name, then relayed to the bus. For the events of a
    producer that is not part of the platform under test (the recommender's tests publish matching's)."""

    def __init__(self, db: Database, bus):
        self.db = db
        self.bus = bus
        self.relay = Relay(db, bus)

    @classmethod
    async def open(cls, source: str, bus, tmp_path) -> Producer:
        from app.registry import REGISTRY
        declared = next((s.emitted_types for s in REGISTRY if s.name == source), None)  # None: not in this tree
        db = Database(f"sqlite+aiosqlite:///{tmp_path}/{source}-{uuid.uuid4().hex[:8]}.sqlite3", None,
                      info=producer(source, declared or None))
        async with db.engine.begin() as conn:
            await conn.run_sync(event_tables.create_all)
        return cls(db, bus)

    async def emit(self, *events) -> list[str]:
        """The events in one transaction, then published; their ids."""
        async with self.db.transaction() as s:
            ids = [await emit(s, e) for e in events]
        while await self.relay.drain_once():
            pass
        return ids

    async def replay(self, event_id: str) -> None:
        """Publishes an event already sent once more, as a relay does after a lost confirm."""
        async with self.db.read() as s:
            row = (await s.execute(sa.select(outbox.c.event_type, outbox.c.body)
                                   .where(outbox.c.event_id == event_id))).one()
        await self.bus.publish(row.event_type, row.body, event_id)

    async def close(self) -> None:
        await self.db.dispose()
