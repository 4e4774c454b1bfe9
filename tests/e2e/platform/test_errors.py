"""Errors name who decided (ErrorInfo.domain: the service, or the edge) and carry their dynamic
values as metadata, on gRPC and through the edge alike."""
from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2

from petplatform.auth.v1 import auth_pb2
from petplatform.pet.v1 import pet_pb2
from tests.support.errors import status_of
from tests.support.platform import EdgeClient


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    info = error_details_pb2.ErrorInfo()
    assert any(d.Unpack(info) for d in status_of(err).details)
    return info


async def test_each_service_names_itself_and_the_values_go_in_metadata(edge: EdgeClient):
    api = edge.api
    missing = "pets/" + "0" * 32
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await api.pet.GetPet(pet_pb2.GetPetRequest(name=missing))
    info = error_info(e.value)
    assert (info.domain, info.reason, dict(info.metadata)) == (
        "pet.petplatform.dev", "NOT_FOUND", {"resource": missing})
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await api.auth.Login(auth_pb2.LoginRequest(email="nobody@example.com", password="x" * 12))
    assert error_info(e.value).domain == "auth.petplatform.dev"

    async with edge.http.get(f"{edge.url}/v1/{missing}") as r:  # the service's status, passed through
        body = await r.json()
    (detail,) = [d for d in body["details"] if d["@type"].endswith("ErrorInfo")]
    assert r.status == 404 and detail["domain"] == "pet.petplatform.dev" and detail["metadata"] == {"resource": missing}
    async with edge.http.get(f"{edge.url}/v1/nothing/here") as r:  # the edge's own
        body = await r.json()
    (detail,) = [d for d in body["details"] if d["@type"].endswith("ErrorInfo")]
    assert r.status == 404 and detail["domain"] == "edge.petplatform.dev"
