"""Fan-out of pet changes to this replica's WatchPets streams. Every replica hears every pet event
through a broadcast subscription, so a watcher sees changes made through any replica. Each change
carries the pet before and after, so a stream matches it against its search without the database."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import grpc
from prometheus_client import Gauge

from mesh import errors
from mesh.events import Bus
from petplatform.common.v1 import event_pb2
from petplatform.pet.v1 import pet_pb2

log = logging.getLogger(__name__)

EVENT_TYPES = ["pet.created", "pet.updated", "pet.deleted"]
# A watcher this far behind is dropped (its stream ends with UNAVAILABLE) rather than buffered forever.
MAX_BACKLOG = 256
OPEN_STREAMS = Gauge("petplatform_pet_watch_streams", "Open WatchPets streams")

Change = tuple[pet_pb2.Pet | None, pet_pb2.Pet | None]  # (before, after); None: did not / does not exist


def change_of(body: bytes) -> Change:
    envelope = event_pb2.EventEnvelope.FromString(body)
    if envelope.type == "pet.created":
        created = pet_pb2.PetCreatedEvent()
        envelope.payload.Unpack(created)
        return None, created.pet
    if envelope.type == "pet.updated":
        updated = pet_pb2.PetUpdatedEvent()
        envelope.payload.Unpack(updated)
        return (updated.previous if updated.HasField("previous") else None), updated.pet
    deleted = pet_pb2.PetDeletedEvent()
    envelope.payload.Unpack(deleted)
    # Events from before `pet` was added name the pet only: every watcher is told, to be safe.
    return (deleted.pet if deleted.HasField("pet") else pet_pb2.Pet(name=deleted.name)), None


class WatchHub:
    def __init__(self, bus: Bus, max_streams: int):
        self._bus = bus
        self._max_streams = max_streams
        self._watchers: set[asyncio.Queue] = set()
        self._closed = False

    async def start(self) -> None:
        await self._bus.subscribe_broadcast(EVENT_TYPES, self._on_event, on_gap=self._on_gap)

    async def _on_event(self, body: bytes) -> None:
        change = change_of(body)
        for queue in list(self._watchers):
            if queue.full():
                self._drop(queue)
            else:
                queue.put_nowait(change)

    def _on_gap(self) -> None:
        """Events may have been missed (the broker connection was lost): every stream must start over."""
        for queue in list(self._watchers):
            self._drop(queue)

    def close(self) -> None:
        """The replica is shutting down: streams end now and new ones are refused."""
        self._closed = True
        self._on_gap()

    def _drop(self, queue: asyncio.Queue) -> None:
        self._watchers.discard(queue)
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)

    @contextlib.asynccontextmanager
    async def watch(self) -> AsyncIterator[AsyncIterator[Change]]:
        if self._closed:
            raise errors.ApiError(grpc.StatusCode.UNAVAILABLE, "shutting down; try another replica", "SHUTTING_DOWN")
        if len(self._watchers) >= self._max_streams:
            raise errors.ApiError(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many open watches; try again later",
                                  "TOO_MANY_WATCHES")
        queue: asyncio.Queue = asyncio.Queue(MAX_BACKLOG)
        self._watchers.add(queue)
        OPEN_STREAMS.inc()

        async def changes() -> AsyncIterator[Change]:
            while (change := await queue.get()) is not None:
                yield change
            raise errors.ApiError(grpc.StatusCode.UNAVAILABLE, "the watch was interrupted (the server fell behind, "
                                  "lost its broker connection or is shutting down): list again and open a new "
                                  "watch", "WATCH_INTERRUPTED")
        try:
            yield changes()
        finally:
            self._watchers.discard(queue)
            OPEN_STREAMS.dec()
