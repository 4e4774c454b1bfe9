"""Idempotent consumers: the event id goes into the inbox in the same transaction as the effect."""
from __future__ import annotations

import asyncio
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


GROUP = 64  # events one transaction applies at most
# A delivered event waiting its turn: its envelope, payload, effect, and what its delivery awaits.
Queued = tuple[event_pb2.EventEnvelope, Any, Effect | Outside, asyncio.Future[None]]


def inbox_handler(db: Database, consumer: str, effects: Effects) -> Handler:
    """A bus handler applying `effects[type of the event]` at most once per event id.

    Group commit: events that arrive while a transaction runs (the broker delivers up to its prefetch at
    once) are applied together by the next one, each effect as alone, in arrival order, with one inbox
    insert for them all, so BEGIN, COMMIT and the session are paid once per group, not once per event.
    If the group's transaction fails, each of its events is applied again alone in a transaction of its
    own: one event's failure (retried by the bus, parked after its limit) never fails the others."""
    by_type = {event_type(kind): effect for kind, effect in effects.items()}
    queued: list[Queued] = []
    # SQLite has one writer for the whole service: a group holds it for all its events, and under load
    # (seconds per statement) a group of nine sign-ups held auth's for 36 s while logins waited. One event
    # per transaction there; PostgreSQL's writers do not wait on each other's groups.
    limit = 1 if db.is_sqlite else GROUP
    writer: asyncio.Task | None = None

    def span(envelope: event_pb2.EventEnvelope):
        # The consumer's span continues the trace of the request that emitted the event.
        return tracing.span(f"{envelope.type} process", SpanKind.CONSUMER, envelope.traceparent, {
            "messaging.operation.type": "process", "messaging.destination.name": envelope.type,
            "messaging.message.id": envelope.id, "messaging.consumer.group.name": consumer})

    async def handle(body: bytes) -> None:
        nonlocal writer
        envelope = event_pb2.EventEnvelope.FromString(body)
        payload = unpack(envelope, effects)  # a poison event fails its own delivery only
        effect = by_type[envelope.type]
        # Outside effects queue too: events are applied in the order they arrived, whatever their kind.
        done = asyncio.get_running_loop().create_future()
        queued.append((envelope, payload, effect, done))
        if writer is None or writer.done():
            writer = asyncio.create_task(write_queued(), name=f"inbox:{consumer}")
        # Shielded: a handler that goes away leaves its event to the group (the broker redelivers it unacked).
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            # The bus is closing, and the database next: an event not taken yet is withdrawn (the broker
            # redelivers it unacked), one being applied is waited for, or the writer would outlive the platform.
            done.add_done_callback(_read_outcome)  # no one reads it now: asyncio would log it as never retrieved
            mine = [q for q in queued if q[3] is done]
            if mine:
                queued.remove(mine[0])
            else:
                await asyncio.wait([done])
            raise

    async def seen(s: AsyncSession, envelope: event_pb2.EventEnvelope) -> bool:
        if await s.scalar(sa.select(sa.func.count()).select_from(inbox).where(
                inbox.c.consumer == consumer, inbox.c.event_id == envelope.id)):
            log.info("%s: duplicate event %s ignored", consumer, envelope.id)
            return True
        return False

    async def record(s: AsyncSession, envelopes: list[event_pb2.EventEnvelope]) -> set[str]:
        """Records the events; returns the ids of those not recorded already."""
        now = utcnow()
        rows = [{"consumer": consumer, "event_id": e.id, "process_time": now} for e in envelopes]
        return set(await s.scalars(RECORD_NEW[db.is_sqlite].values(rows)))

    async def outside(envelope: event_pb2.EventEnvelope, payload: Any, effect: Outside) -> None:
        token = _current.set(envelope)
        try:
            if await db.reading(lambda s: seen(s, envelope)):
                return
            await effect.effect(payload)
            async with db.transaction() as s:
                await record(s, [envelope])  # a concurrent duplicate may have run and recorded it
        finally:
            _current.reset(token)

    def take() -> list[Queued]:
        """The next group: an Outside event alone, else up to `limit` queued events in a row that are not."""
        size = 1
        if not isinstance(queued[0][2], Outside):
            while size < min(limit, len(queued)) and not isinstance(queued[size][2], Outside):
                size += 1
        group = queued[:size]
        del queued[:size]
        return group

    async def apply(group: list[Queued]) -> None:
        envelope, payload, effect, _ = group[0]
        if isinstance(effect, Outside):  # alone in its group (take)
            with span(envelope):
                await outside(envelope, payload, effect)
            return
        async with db.transaction() as s:
            new = await record(s, [envelope for envelope, _, _, _ in group])
            for envelope, payload, effect, _ in group:
                if envelope.id not in new:  # recorded before, or earlier in this group (a redelivery)
                    log.info("%s: duplicate event %s ignored", consumer, envelope.id)
                    continue
                new.discard(envelope.id)
                assert not isinstance(effect, Outside)  # take() keeps them apart
                token = _current.set(envelope)
                try:
                    with span(envelope):
                        await effect(s, payload)
                finally:
                    _current.reset(token)

    async def write_queued() -> None:
        while queued:
            group = take()
            try:
                try:
                    await apply(group)
                except Exception as e:
                    if len(group) == 1:
                        group[0][3].set_exception(e)
                        continue
                    for one in group:  # each alone: only a failing one fails
                        try:
                            await apply([one])
                        except Exception as e:
                            one[3].set_exception(e)
                        else:
                            one[3].set_result(None)
                    continue
                for *_, done in group:
                    done.set_result(None)
            finally:
                for *_, done in group:  # cancelled (shutting down): their handlers must not wait forever
                    if not done.done():
                        done.set_exception(RuntimeError(f"{consumer}: stopped before the event was applied"))

    return handle


def _read_outcome(done: asyncio.Future) -> None:
    if not done.cancelled():
        done.exception()


async def subscribe(bus: Bus, db: Database, consumer: str, effects: Effects) -> None:
    """Binds the durable queue `consumer` to the effects' event types, each applied once per event."""
    await bus.subscribe(consumer, [event_type(kind) for kind in effects], inbox_handler(db, consumer, effects))
