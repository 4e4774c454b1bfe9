from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from mesh.registry import ServiceSpec
from mesh.runtime import Listener, Runtime, ServiceModule
from services.pet.api import PetServicer
from services.pet.cache import PetCache
from services.pet.watch import WATCHED, WatchHub


class PetModule(ServiceModule):
    migrations = Path(__file__).parent / "migrations"

    def __init__(self, rt: Runtime, spec: ServiceSpec):
        super().__init__(rt, spec)
        self.hub = WatchHub(rt.settings.watch_max_streams)
        self.cache = PetCache(size=rt.settings.pet_cache_size, ttl_seconds=rt.settings.pet_cache_ttl_seconds)

    def servicers(self) -> Mapping[str, object]:
        return {"petplatform.pet.v1.PetService": PetServicer(self.db, self.rt.blobs, self.hub, self.cache)}

    def listeners(self) -> Sequence[Listener]:
        return [Listener(kinds=WATCHED, handler=self.hub.on_event, on_gap=self.hub.on_gap),
                Listener(kinds=WATCHED, handler=self.cache.on_event, on_gap=self.cache.clear)]

    async def drain(self) -> None:
        self.hub.close()
