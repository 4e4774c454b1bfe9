"""Transactional outbox: events are rows written in the same transaction as the state change,
and a relay publishes them with broker confirms before marking them sent."""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import asyncpg
from google.protobuf import any_pb2, timestamp_pb2
from google.protobuf.message import Message
from prometheus_client import Gauge
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from mesh import tracing
from mesh.events.bus import Bus
from mesh.events.types import event_type
from mesh.purge import delete_in_batches, purge_periodically
from mesh.sql import Database, UtcDateTime, utcnow
from mesh.wakeup import Wakeup
from petplatform.common.v1 import event_pb2

log = logging.getLogger(__name__)

# Every service's schema has these two tables, made by the runtime's own migrations (mesh/migrations).
event_tables = sa.MetaData()
outbox = sa.Table(
    "outbox", event_tables,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(36), nullable=False, unique=True),
    sa.Column("event_type", sa.String(100), nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("publish_time", UtcDateTime, nullable=True),
    sa.Index("ix_outbox_pending", "publish_time", "id"),
)
inbox = sa.Table(
    "inbox", event_tables,
    sa.Column("consumer", sa.String(100), primary_key=True),
    sa.Column("event_id", sa.String(36), primary_key=True),
    sa.Column("process_time", UtcDateTime, nullable=False),
)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "events_alembic_version"


async def migrate_event_tables(db: Database) -> None:
    """Brings a service's outbox and inbox to the newest schema: one migrations tree for every service."""
    await db.migrate(MIGRATIONS, version_table=VERSION_TABLE)


def event_table_names() -> set[str]:
    """The events layer's tables in a service's schema, version table included."""
    return {*event_tables.tables, VERSION_TABLE}


# The relay's view of how far behind publishing is: what alerts watch (a broker outage makes it grow).
OUTBOX_LAG = Gauge("petplatform_outbox_lag_seconds",
                   "Age of the oldest unpublished event at the relay's last pass (0: none pending)", ["service"])

_relays: set[Relay] = set()
PURGE_EVERY_SECONDS = 3600
# A relay that hears its outbox's notices (OutboxNotices) polls only for one that went astray.
NOTIFIED_POLL_SECONDS = 10.0


@event.listens_for(Session, "after_commit")
def _wake_relays(session: Session) -> None:
    # Only the relays of the database the rows went to: each woken relay runs a transaction to look, and
    # waking all of them (one per service in a process) on every commit cost more than publishing.
    if session.info.pop("outbox_dirty", False):
        source = session.info.get("event_source")
        for relay in _relays:
            if relay.source == source:
                relay.wake()


def producer(source: str, emits: frozenset[str] | None) -> dict[str, object]:
    """Session info of a service's database: who emits, and which event types it declared (None:
    any, for tests of the events port). `emit` refuses an undeclared event, so the registry's list
    stays true."""
    return {"event_source": source, "event_types": emits}


class UndeclaredEvent(Exception):
    """A service emitted an event its registry entry does not list."""


_ADD = outbox.insert()  # built once: emit is on every write path
_PENDING = sa.select(outbox.c.id).where(outbox.c.publish_time.is_(None)).limit(1)


async def _any_pending(s: AsyncSession) -> bool:
    return await s.scalar(_PENDING) is not None


def seal(event: Message, *, source: str | None, declared: frozenset[str] | None,
         traceparent: str = "") -> event_pb2.EventEnvelope:
    """The envelope of an event from `source`, refused unless its registry entry declares it (None: any).
    Every outbox makes its envelopes here, so an event's type and checks are the same whatever stores it."""
    kind = event_type(event)
    if not source:
        raise UndeclaredEvent(f"{kind}: this database has no event source (Database(..., info=producer(...)))")
    if declared is not None and kind not in declared:
        raise UndeclaredEvent(f"{source} emits {kind}, which its registry entry does not list under emits")
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(utcnow())
    packed = any_pb2.Any()
    packed.Pack(event)
    return event_pb2.EventEnvelope(id=str(uuid.uuid4()), type=kind, time=ts, source=source,
                                   traceparent=traceparent or tracing.traceparent(), payload=packed)


async def emit(session: AsyncSession, event: Message, *, traceparent: str = "") -> str:
    """Adds an event to the outbox of the session's transaction; returns the event id. The routing
    key comes from the message's contract, the source from the database the session belongs to."""
    envelope = seal(event, source=session.info.get("event_source"), declared=session.info.get("event_types"),
                    traceparent=traceparent)
    await session.execute(_ADD, {"event_id": envelope.id, "event_type": envelope.type,
                                 "body": envelope.SerializeToString(),
                                 "create_time": envelope.time.ToDatetime(tzinfo=dt.timezone.utc)})
    session.sync_session.info["outbox_dirty"] = True
    return envelope.id


async def relay_forever(drain_once: Callable[[], Awaitable[int]], wakeup: Wakeup, poll: Callable[[], float],
                        what: str) -> None:
    """A relay's loop (the outbox table's, the documents'): batches while there are any, then sleep until
    rung or poll() seconds pass; a failed publish backs off, doubling up to 5 s."""
    failures = 0
    while True:
        try:
            # A ring from before this pass is answered by it (it sees every commit made before it began): a
            # commit's in-process ring and its notice make one pass, not two.
            wakeup.clear()
            sent = await drain_once()
            failures = 0
            if sent:
                continue
        except asyncio.CancelledError:
            raise
        except Exception:
            failures += 1
            log.warning("%s: publish failed, retrying", what, exc_info=True)
            await asyncio.sleep(min(5.0, 0.1 * 2 ** failures))
            continue
        await wakeup.wait(poll())


class Relay:
    """Publishes a service's pending outbox rows, oldest first, and marks them once confirmed."""

    def __init__(self, db: Database, bus: Bus, *, poll_seconds: float = 0.5, batch: int = 100,
                 retention: dt.timedelta = dt.timedelta(days=7)):
        self._db = db
        self._bus = bus
        self._poll = poll_seconds
        self._batch = batch
        self._retention = retention
        self._wakeup = Wakeup()
        self._tasks: list[asyncio.Task] = []
        self.source = db.info.get("event_source")  # whose commits wake it
        self.notified = False  # while OutboxNotices hears this outbox's notices
        self._lag = OUTBOX_LAG.labels(service=str(self.source or "unnamed"))

    @property
    def database(self) -> Database:
        return self._db

    def wake(self) -> None:
        self._wakeup.ring()

    def start(self) -> None:
        _relays.add(self)
        self._tasks = [asyncio.create_task(self._run(), name="outbox-relay"),
                       asyncio.create_task(self._purge_periodically(), name="outbox-purge")]

    async def stop(self) -> None:
        _relays.discard(self)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self) -> None:
        await relay_forever(self.drain_once, self._wakeup,
                            lambda: max(self._poll, NOTIFIED_POLL_SECONDS) if self.notified else self._poll,
                            "outbox relay")

    async def _purge_periodically(self) -> None:
        # Apart from publishing, so a slow or failing purge never holds events back.
        await purge_periodically(self.purge_once, every_seconds=PURGE_EVERY_SECONDS, what="event purge")

    async def purge_once(self, batch: int = 1000) -> tuple[int, int]:
        """Deletes outbox rows published, and inbox rows processed, longer ago than the retention, in
        short transactions. The inbox remembers event ids that long: a duplicate arriving later would
        be applied again."""
        cutoff = utcnow() - self._retention
        totals = [await delete_in_batches(self._db, outbox, key=[outbox.c.id], old=outbox.c.publish_time < cutoff,
                                          batch=batch),
                  await delete_in_batches(self._db, inbox, key=[inbox.c.consumer, inbox.c.event_id],
                                          old=inbox.c.process_time < cutoff, batch=batch)]
        if any(totals):
            log.info("events purged: %d outbox rows, %d inbox rows", *totals)
        return totals[0], totals[1]

    async def drain_once(self) -> int:
        """Publishes one batch; returns how many were sent. Rows stay pending if any publish fails."""
        if self._db.is_sqlite and not await self._db.reading(_any_pending):
            # Nothing to publish, found without the writer turn: each service's poll (every half second, five
            # times a second in tests) queued with the writers and cost the loop a dozen hand-offs to aiosqlite.
            self._lag.set(0)
            return 0
        async with self._db.transaction() as s:
            # SKIP LOCKED lets several replicas relay one outbox without publishing a row twice.
            rows = (await s.execute(
                sa.select(outbox.c.id, outbox.c.event_id, outbox.c.event_type, outbox.c.body, outbox.c.create_time)
                .where(outbox.c.publish_time.is_(None)).order_by(outbox.c.id).limit(self._batch)
                .with_for_update(skip_locked=True))).all()
            if not rows:
                self._lag.set(0)
                return 0
            self._lag.set(max(0.0, (utcnow() - rows[0].create_time).total_seconds()))
            results = await asyncio.gather(
                *(self._bus.publish(r.event_type, r.body, r.event_id) for r in rows), return_exceptions=True)
            done = [r.id for r, res in zip(rows, results, strict=True) if not isinstance(res, BaseException)]
            if done:
                await s.execute(outbox.update().where(outbox.c.id.in_(done)).values(publish_time=utcnow()))
            failed = next((res for res in results if isinstance(res, BaseException)), None)
        if failed is not None:
            raise failed
        return len(done)


def notice_channel(schema: str) -> str:
    """The channel the outbox's trigger (events migration 0002) notifies when rows are added in `schema`."""
    return "outbox_" + hashlib.md5(schema.encode(), usedforsecurity=False).hexdigest()


class OutboxNotices:
    """One connection LISTENing for the notices the outbox trigger sends on commit (events migration 0002),
    whoever committed (this replica or another), and waking the relay of that outbox: relays on PostgreSQL then
    poll only as a fallback (NOTIFIED_POLL_SECONDS), instead of a transaction each, twice a second, idle.
    While the connection is down they poll as often as before; once it is back, each is woken to catch up."""

    def __init__(self, relays: Sequence[Relay]):
        urls = {r.database.url for r in relays}
        if len(urls) != 1 or any(r.database.schema is None for r in relays):
            raise ValueError("OutboxNotices: relays of schemas on one PostgreSQL database")
        self._dsn = sa.make_url(urls.pop()).set(drivername="postgresql").render_as_string(hide_password=False)
        self._relays: dict[str, list[Relay]] = {}
        for r in relays:
            self._relays.setdefault(notice_channel(str(r.database.schema)), []).append(r)
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-notices")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                conn = await asyncpg.connect(self._dsn,
                                             server_settings={"application_name": "petplatform outbox notices"})
                try:
                    await self._listen(conn)
                    failures = 0  # it listened until the connection was lost
                    log.warning("outbox notices: connection lost, relays poll until it is back")
                finally:
                    self._listening(False)
                    conn.terminate()
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.warning("outbox notices: cannot listen, relays poll meanwhile", exc_info=True)
            await asyncio.sleep(min(5.0, 0.1 * 2 ** failures))

    async def _listen(self, conn: asyncpg.Connection) -> None:
        """Until the connection is lost."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        for channel in self._relays:
            await conn.add_listener(channel, self._heard)
        self._listening(True)
        await lost.wait()

    def _listening(self, on: bool) -> None:
        for relays in self._relays.values():
            for r in relays:
                r.notified = on
                r.wake()  # listening: what was committed meanwhile; not: back to polling often, from now

    def _heard(self, _conn: object, _pid: int, channel: str, _payload: str) -> None:
        for r in self._relays.get(channel, ()):
            r.wake()
