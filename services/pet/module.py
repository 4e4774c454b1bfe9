from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from mesh.events import Effects, PoisonEvent
from mesh.registry import ServiceSpec
from mesh.resources import parse_name
from mesh.runtime import Listener, Runtime, ServiceModule
from petplatform.matching.v1 import events_pb2 as matching_events
from services.pet.api import PetServicer
from services.pet.cache import PetCache
from services.pet.watch import WATCHED, WatchHub


class PetModule(ServiceModule):
    migrations = Path(__file__).parent / "migrations"

    def __init__(self, rt: Runtime, spec: ServiceSpec):
        super().__init__(rt, spec)
        self.hub = WatchHub(rt.settings.watch_max_streams)
        self.cache = PetCache(size=rt.settings.pet_cache_size, ttl_seconds=rt.settings.pet_cache_ttl_seconds)
        self.servicer = PetServicer(self.db, self.rt.blobs, self.hub, self.cache)

    def servicers(self) -> Mapping[str, object]:
        return {"petplatform.pet.v1.PetService": self.servicer}

    def consumers(self) -> Mapping[str, Effects]:
        return {"pet.adoptions": {matching_events.AdoptionCompleted: self._on_adoption_completed}}

    async def _on_adoption_completed(self, s, event: matching_events.AdoptionCompleted) -> None:
        if not event.match.pets:
            raise PoisonEvent(f"adoption.completed of {event.match.name} names no pet")
        (pet_id,) = parse_name(event.match.pets[0], "pets/{}", "match.pets")
        await self.servicer.mark_adopted(s, pet_id)

    def listeners(self) -> Sequence[Listener]:
        return [Listener(kinds=WATCHED, handler=self.hub.on_event, on_gap=self.hub.on_gap),
                Listener(kinds=WATCHED, handler=self.cache.on_event, on_gap=self.cache.clear)]

    async def drain(self) -> None:
        self.hub.close()
