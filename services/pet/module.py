from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from mesh.registry import ServiceSpec
from mesh.runtime import Listener, Runtime, ServiceModule
from services.pet.api import PetServicer
from services.pet.watch import WATCHED, WatchHub


class PetModule(ServiceModule):
    migrations = Path(__file__).parent / "migrations"

    def __init__(self, rt: Runtime, spec: ServiceSpec):
        super().__init__(rt, spec)
        self.hub = WatchHub(rt.settings.watch_max_streams)

    def servicers(self) -> Mapping[str, object]:
        return {"petplatform.pet.v1.PetService": PetServicer(self.db, self.rt.blobs, self.hub)}

    def listeners(self) -> Sequence[Listener]:
        return [Listener(kinds=WATCHED, handler=self.hub.on_event, on_gap=self.hub.on_gap)]

    async def drain(self) -> None:
        self.hub.close()
