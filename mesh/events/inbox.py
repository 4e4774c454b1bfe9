"""Idempotent consumers: the event id goes into the inbox in the same transaction as the effect."""
from __future__ import annotations

import contextvars
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from google.protobuf.message import Message
from opentelemetry.trace import SpanKind
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from mesh import tracing
from mesh.events.bus import Bus, Handler
from mesh.events.outbox import inbox
from mesh.events.types import event_type, unpack
from mesh.sql import Database, utcnow
from petplatform.common.v1 import event_pb2

log = logging.getLogger(__name__)

# (session of the inbox transaction, the event payload): the effect commits with the inbox row.
Effect = Callable[[AsyncSession, Any], Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class Outside:
    """An effect on the world outside the database (an email sent, a provider called): it runs before its
    inbox row is written, not inside that transaction, so no connection, and on SQLite no writer's turn,
    is held while the network answers. At least once: a crash or a failed commit after it runs it again."""
    effect: Callable[[Any], Awaitable[None]]


Effects = Mapping[type[Message], Effect | Outside]

# The inbox row, or nothing for an event recorded already: one round trip tells a new event from a repeat
# and records it (a concurrent duplicate's insert waits for the first one's commit, then inserts nothing).
RECORD_NEW = {is_sqlite: insert(inbox).on_conflict_do_nothing(index_elements=["consumer", "event_id"])
              .returning(inbox.c.event_id)
              for is_sqlite, insert in ((True, sqlite_insert), (False, postgresql_insert))}

_current: contextvars.ContextVar[event_pb2.EventEnvelope | None] = contextvars.ContextVar("event", default=None)


def current_event() -> event_pb2.EventEnvelope | None:
    """The envelope of the event whose effect is running (None outside one), for an effect that needs more than
    the payload: its id (evidence naming its source), its time (when it happened, not when it was processed)."""
    return _current.get()


def inbox_handler(db: Database, consumer: str, effects: Effects) -> Handler:
    """A bus handler applying `effects[type of the event]` at most once per event id."""
    by_type = {event_type(kind): effect for kind, effect in effects.items()}

    async def handle(body: bytes) -> None:
        envelope = event_pb2.EventEnvelope.FromString(body)
        # The consumer's span continues the trace of the request that emitted the event.
        with tracing.span(f"{envelope.type} process", SpanKind.CONSUMER, envelope.traceparent, {
                "messaging.operation.type": "process", "messaging.destination.name": envelope.type,
                "messaging.message.id": envelope.id, "messaging.consumer.group.name": consumer}):
            await apply(envelope)

    async def seen(s: AsyncSession, envelope: event_pb2.EventEnvelope) -> bool:
        if await s.scalar(sa.select(sa.func.count()).select_from(inbox).where(
                inbox.c.consumer == consumer, inbox.c.event_id == envelope.id)):
            log.info("%s: duplicate event %s ignored", consumer, envelope.id)
            return True
        return False

    async def record(s: AsyncSession, envelope: event_pb2.EventEnvelope) -> bool:
        """Records the event; False if it was recorded already."""
        return await s.scalar(RECORD_NEW[db.is_sqlite], {"consumer": consumer, "event_id": envelope.id,
                                                         "process_time": utcnow()}) is not None

    async def apply(envelope: event_pb2.EventEnvelope) -> None:
        payload = unpack(envelope, effects)
        effect = by_type[envelope.type]
        token = _current.set(envelope)
        try:
            if isinstance(effect, Outside):
                if await db.reading(lambda s: seen(s, envelope)):
                    return
                await effect.effect(payload)
                async with db.transaction() as s:
                    await record(s, envelope)  # a concurrent duplicate may have run and recorded it
                return
            async with db.transaction() as s:
                if not await record(s, envelope):
                    log.info("%s: duplicate event %s ignored", consumer, envelope.id)
                    return
                await effect(s, payload)
        finally:
            _current.reset(token)

    return handle


async def subscribe(bus: Bus, db: Database, consumer: str, effects: Effects) -> None:
    """Binds the durable queue `consumer` to the effects' event types, each applied once per event."""
    await bus.subscribe(consumer, [event_type(kind) for kind in effects], inbox_handler(db, consumer, effects))
