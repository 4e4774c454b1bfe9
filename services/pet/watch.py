"""Fan-out of pet changes to this replica's WatchPets streams. Every replica hears every pet event
through a broadcast subscription, so a watcher sees changes made through any replica."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator

from prometheus_client import Gauge

from mesh.events import Bus
from petplatform.common.v1 import event_pb2
from petplatform.pet.v1 import pet_pb2

log = logging.getLogger(__name__)

EVENT_TYPES = ["pet.created", "pet.updated", "pet.deleted"]
# A watcher this far behind is dropped (its stream ends with UNAVAILABLE) rather than buffered forever.
MAX_BACKLOG = 256
OPEN_STREAMS = Gauge("petplatform_pet_watch_streams", "Open WatchPets streams")


@dataclasses.dataclass(frozen=True)
class Change:
    event_type: str
    pet_id: str


class FellBehind(Exception):
    pass


class WatchHub:
    def __init__(self, bus: Bus):
        self._bus = bus
        self._watchers: set[asyncio.Queue] = set()

    async def start(self) -> None:
        await self._bus.subscribe_broadcast(EVENT_TYPES, self._on_event)

    async def _on_event(self, body: bytes) -> None:
        envelope = event_pb2.EventEnvelope.FromString(body)
        payload = {"pet.created": pet_pb2.PetCreatedEvent, "pet.updated": pet_pb2.PetUpdatedEvent,
                   "pet.deleted": pet_pb2.PetDeletedEvent}[envelope.type]()
        envelope.payload.Unpack(payload)
        name = payload.name if envelope.type == "pet.deleted" else payload.pet.name
        change = Change(envelope.type, name.removeprefix("pets/"))
        for queue in list(self._watchers):
            if queue.full():
                self._watchers.discard(queue)
                queue.get_nowait()
                queue.put_nowait(None)  # tells the watcher it fell behind
            else:
                queue.put_nowait(change)

    @contextlib.asynccontextmanager
    async def watch(self) -> AsyncIterator[AsyncIterator[Change]]:
        queue: asyncio.Queue = asyncio.Queue(MAX_BACKLOG)
        self._watchers.add(queue)
        OPEN_STREAMS.inc()

        async def changes() -> AsyncIterator[Change]:
            while True:
                change = await queue.get()
                if change is None:
                    raise FellBehind()
                yield change
        try:
            yield changes()
        finally:
            self._watchers.discard(queue)
            OPEN_STREAMS.dec()
