"""Forged, expired and malformed tokens are refused by the edge itself, the same way on REST,
gRPC-Web and gRPC pass-through: 401 / UNAUTHENTICATED with the reason."""
from __future__ import annotations

import base64
import struct

from google.rpc import error_details_pb2, status_pb2
import grpc
import pytest

from petplatform.pet.v1 import pet_pb2, pet_pb2_grpc
from tests.support.errors import error_reason, status_of
from tests.support.platform import EdgeClient, module_of
from tests.support.tokens import BAD_TOKENS, bad_authorization

CREATE = pet_pb2.CreatePetRequest(pet=pet_pb2.Pet(display_name="Nope", species=1))


@pytest.mark.parametrize("case", BAD_TOKENS)
async def test_bad_tokens_are_refused_alike_on_every_protocol(edge: EdgeClient, case: str):
    header, reason = bad_authorization(module_of(edge.api, "auth").keys, case)
    headers = {"Authorization": header} if header else {}
    async with edge.http.post(edge.url + "/v1/pets", json={"displayName": "Nope", "species": "SPECIES_DOG"},
                              headers=headers) as r:
        body = await r.json()
        assert r.status == 401 and body["code"] == 16 and body["details"][0]["reason"] == reason
    frame = CREATE.SerializeToString()
    async with edge.http.post(edge.url + "/petplatform.pet.v1.PetService/CreatePet",
                              data=struct.pack(">BI", 0, len(frame)) + frame,
                              headers={"Content-Type": "application/grpc-web+proto", **headers}) as r:
        assert r.headers["grpc-status"] == "16"
        details = r.headers["grpc-status-details-bin"]
        status = status_pb2.Status.FromString(base64.b64decode(details + "=" * (-len(details) % 4)))
        info = error_details_pb2.ErrorInfo()
        assert status.details[0].Unpack(info) and info.reason == reason
    async with grpc.aio.insecure_channel(edge.grpc_address) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await pet_pb2_grpc.PetServiceStub(ch).CreatePet(
                CREATE, metadata=(("authorization", header),) if header else None)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED and error_reason(e.value) == reason
        assert status_of(e.value).code == 16
