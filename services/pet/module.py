from __future__ import annotations

from pathlib import Path

from mesh.runtime import ServiceModule
from petplatform.pet.v1 import pet_pb2_grpc
from services.pet.api import PetServicer
from services.pet.watch import WatchHub


class PetModule(ServiceModule):
    name = "pet"
    migrations = Path(__file__).parent / "migrations"

    def __init__(self, rt):
        super().__init__(rt)
        self.hub = WatchHub(rt.bus, rt.settings.watch_max_streams)

    def servicers(self):
        return [(pet_pb2_grpc.add_PetServiceServicer_to_server, PetServicer(self.db, self.rt.blobs, self.hub),
                 "petplatform.pet.v1.PetService")]

    async def subscribe(self) -> None:
        await self.hub.start()

    async def drain(self) -> None:
        self.hub.close()
