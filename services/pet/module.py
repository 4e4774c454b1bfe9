from __future__ import annotations

from pathlib import Path

from mesh.runtime import ServiceModule
from petplatform.pet.v1 import pet_pb2_grpc
from services.pet.api import PetServicer


class PetModule(ServiceModule):
    name = "pet"
    migrations = Path(__file__).parent / "migrations"

    def servicers(self):
        return [(pet_pb2_grpc.add_PetServiceServicer_to_server, PetServicer(self.db, self.rt.blobs),
                 "petplatform.pet.v1.PetService")]
