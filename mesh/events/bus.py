"""Message bus port. Delivery is at least once; the inbox makes it exactly-once in effect."""
from __future__ import annotations

import asyncio
import collections
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

from prometheus_client import Counter

from mesh.events.types import PoisonEvent

log = logging.getLogger(__name__)

# Takes the serialized EventEnvelope; raising means "not processed": the bus redelivers,
# and after MAX_DELIVERIES attempts parks the message in the consumer's dead-letter queue
# (at once for a PoisonEvent: a body no consumer of that queue can ever take).
Handler = Callable[[bytes], Awaitable[None]]
MAX_DELIVERIES = 5
PREFETCH = 32  # events a consumer holds unacknowledged at once (RabbitMQ's prefetch, the in-process bus's batch)
# Events parked in a consumer's dead-letter queue (`<consumer>.dlq`): each one needs an operator.
DEAD_LETTERED = Counter("petplatform_events_dead_lettered", "Events parked in a consumer's dead-letter queue",
                        ["consumer"])


class Bus(Protocol):
    async def start(self) -> None: ...

    async def publish(self, event_type: str, body: bytes, message_id: str) -> None:
        """Returns once the broker has confirmed the message as stored; raises otherwise."""

    async def subscribe(self, consumer: str, event_types: list[str], handler: Handler) -> None:
        """Binds the durable queue `consumer` to event_types and starts consuming."""

    async def subscribe_broadcast(self, event_types: list[str], handler: Handler,
                                  on_gap: Callable[[], None] | None = None) -> None:
        """This replica gets every such event, in a queue of its own that dies with it. Best effort,
        no retries: for live views such as watch streams, never for changing state. on_gap is called
        when events may have been missed (after a broker reconnection)."""

    async def dead_letters(self, consumer: str) -> list[bytes]:
        """Bodies parked in the consumer's dead-letter queue (for operators and tests)."""

    async def close(self) -> None: ...


class InProcessBus:
    """The embedded bus: per-consumer asyncio queues with the same retry and dead-letter rules."""

    def __init__(self, retry_delay: float = 0.05):
        self._bindings: dict[str, list[str]] = collections.defaultdict(list)  # event type -> consumers
        self._queues: dict[str, asyncio.Queue] = {}
        self._dlq: dict[str, list[bytes]] = collections.defaultdict(list)
        self._tasks: list[asyncio.Task] = []
        self._retry_delay = retry_delay

    async def start(self) -> None:
        pass

    async def publish(self, event_type: str, body: bytes, message_id: str) -> None:
        for consumer in self._bindings.get(event_type, ()):
            self._queues[consumer].put_nowait((body, 1))

    async def subscribe(self, consumer: str, event_types: list[str], handler: Handler,
                        prefetch: int = PREFETCH) -> None:
        if consumer in self._queues:
            raise ValueError(f"consumer {consumer} already subscribed")
        self._queues[consumer] = asyncio.Queue()
        for t in event_types:
            self._bindings[t].append(consumer)
        self._tasks.append(asyncio.create_task(self._consume(consumer, handler, prefetch), name=f"consume:{consumer}"))

    async def subscribe_broadcast(self, event_types: list[str], handler: Handler,
                                  on_gap: Callable[[], None] | None = None) -> None:
        # In one process nothing is ever missed: on_gap is never called.
        async def best_effort(body: bytes) -> None:
            try:
                await handler(body)
            except Exception:
                log.exception("broadcast handler failed; event dropped")
        # One at a time: a live view (a watch stream) shows changes in the order they were made.
        await self.subscribe(f"broadcast.{uuid.uuid4().hex}", event_types, best_effort, prefetch=1)

    async def _consume(self, consumer: str, handler: Handler, prefetch: int) -> None:
        # Up to `prefetch` events in the handler at once, as the broker hands a consumer its prefetch: the
        # inbox applies those that arrive together in one transaction (mesh.events.inbox).
        queue = self._queues[consumer]
        while True:
            taken = [await queue.get()]
            while len(taken) < prefetch and not queue.empty():
                taken.append(queue.get_nowait())
            # return_exceptions: cancelled (close), this returns once every delivery has ended, not at the first.
            await asyncio.gather(*(self._deliver(consumer, handler, body, attempt) for body, attempt in taken),
                                 return_exceptions=True)

    async def _deliver(self, consumer: str, handler: Handler, body: bytes, attempt: int) -> None:
        try:
            await handler(body)
        except Exception as e:
            log.exception("consumer %s failed (attempt %d)", consumer, attempt)
            if attempt >= MAX_DELIVERIES or isinstance(e, PoisonEvent):  # retrying cannot help a poison
                self._dlq[consumer].append(body)
                DEAD_LETTERED.labels(consumer).inc()
            else:
                await asyncio.sleep(self._retry_delay * attempt)
                self._queues[consumer].put_nowait((body, attempt + 1))

    async def dead_letters(self, consumer: str) -> list[bytes]:
        return list(self._dlq[consumer])

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
