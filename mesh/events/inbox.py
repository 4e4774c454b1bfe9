"""Idempotent consumers: the event id goes into the inbox in the same transaction as the effect."""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from google.protobuf.message import Message
from opentelemetry.trace import SpanKind
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from mesh import tracing
from mesh.events.bus import Handler
from mesh.events.outbox import inbox
from mesh.sql import Database, utcnow
from petplatform.common.v1 import event_pb2

log = logging.getLogger(__name__)

Effect = Callable[[AsyncSession, event_pb2.EventEnvelope, Message], Awaitable[None]]


class PoisonEvent(Exception):
    """The body is not an event this consumer can ever process."""


def inbox_handler(db: Database, consumer: str, effects: dict[str, tuple[type[Message], Effect]]) -> Handler:
    """A bus handler applying `effects[event type]` at most once per event id."""

    async def handle(body: bytes) -> None:
        envelope = event_pb2.EventEnvelope.FromString(body)
        # The consumer's span continues the trace of the request that emitted the event.
        with tracing.span(f"{envelope.type} process", SpanKind.CONSUMER, envelope.traceparent, {
                "messaging.operation.type": "process", "messaging.destination.name": envelope.type,
                "messaging.message.id": envelope.id, "messaging.consumer.group.name": consumer}):
            await apply(envelope)

    async def apply(envelope: event_pb2.EventEnvelope) -> None:
        payload_type, effect = effects[envelope.type]
        payload = payload_type()
        if not envelope.payload.Unpack(payload):
            raise PoisonEvent(f"{envelope.type} {envelope.id}: payload is {envelope.payload.type_url}")
        async with db.transaction() as s:
            seen = await s.scalar(sa.select(sa.func.count()).select_from(inbox).where(
                inbox.c.consumer == consumer, inbox.c.event_id == envelope.id))
            if seen:
                log.info("%s: duplicate event %s ignored", consumer, envelope.id)
                return
            # A concurrent duplicate fails on the primary key here and is redelivered, then skipped.
            await s.execute(inbox.insert().values(consumer=consumer, event_id=envelope.id, process_time=utcnow()))
            await effect(s, envelope, payload)

    return handle
