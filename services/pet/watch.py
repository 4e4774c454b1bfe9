"""Fan-out of pet changes to this replica's WatchPets streams. Every replica hears every pet event
through a broadcast subscription, so a watcher sees changes made through any replica. Each change
carries the pet before and after, so a stream matches it against its search without the database."""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator

import grpc
from prometheus_client import Gauge

from mesh import errors
from mesh.events import unpack
from petplatform.common.v1 import event_pb2
from petplatform.pet.v1 import events_pb2 as pet_events
from petplatform.pet.v1 import pet_pb2

log = logging.getLogger(__name__)

WATCHED = (pet_events.PetCreated, pet_events.PetUpdated, pet_events.PetDeleted)
# A watcher this far behind is dropped (its stream ends with UNAVAILABLE) rather than buffered forever.
MAX_BACKLOG = 256
OPEN_STREAMS = Gauge("petplatform_pet_watch_streams", "Open WatchPets streams")

# (before, after): None where the pet did not or does not exist.
Change = tuple[pet_pb2.Pet | None, pet_pb2.Pet | None]
# How many pets' latest versions a replica remembers, to drop events that arrive out of order.
REMEMBERED_PETS = 10_000


def change_of(envelope: event_pb2.EventEnvelope) -> tuple[Change, float]:
    """The change an event describes, and its version: the pet's update_time, which only grows (see
    api.next_update_time); a deletion comes just after the state it deleted."""
    event = unpack(envelope, WATCHED)
    if isinstance(event, pet_events.PetCreated):
        return (None, event.pet), event.pet.update_time.ToNanoseconds() / 1e9
    if isinstance(event, pet_events.PetUpdated):
        return (event.previous, event.pet), event.pet.update_time.ToNanoseconds() / 1e9
    assert isinstance(event, pet_events.PetDeleted)  # unpack returns only the WATCHED types
    return (event.pet, None), event.pet.update_time.ToNanoseconds() / 1e9 + 1e-6


class WatchHub:
    def __init__(self, max_streams: int):
        self._max_streams = max_streams
        self._watchers: set[asyncio.Queue] = set()
        self._closed = False
        self._versions: collections.OrderedDict[str, float] = collections.OrderedDict()

    async def on_event(self, body: bytes) -> None:
        change, version = change_of(event_pb2.EventEnvelope.FromString(body))
        pet = change[1] or change[0]
        assert pet is not None  # every change has the pet before or after it
        name = pet.name
        # Events of one pet can arrive out of order (a publish retried after later ones went out,
        # two replicas relaying side by side): an older version than one already passed on is stale.
        if version < self._versions.get(name, float("-inf")):
            log.info("stale %s event dropped", name)
            return
        self._versions[name] = version
        self._versions.move_to_end(name)
        if len(self._versions) > REMEMBERED_PETS:
            self._versions.popitem(last=False)
        for queue in list(self._watchers):
            if queue.full():
                self._drop(queue)
            else:
                queue.put_nowait(change)

    def on_gap(self) -> None:
        """Events may have been missed (the broker connection was lost): every stream must start over."""
        for queue in list(self._watchers):
            self._drop(queue)

    def close(self) -> None:
        """The replica is shutting down: streams end now and new ones are refused."""
        self._closed = True
        self.on_gap()

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
