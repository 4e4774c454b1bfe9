"""One request must not freeze the edge: what a body may cost is bounded before it is decoded, and
large bodies are decoded off the event loop."""
from __future__ import annotations

import asyncio
import base64
import struct
import threading

import grpc
import pytest

from gateway import rest
from mesh import limits
from petplatform.pet.v1 import pet_pb2, pet_pb2_grpc
from tests.support.errors import error_reason
from tests.support.platform import EdgeClient
from tests.support.web import call, signup

# The body of the report: 7.8 MB whose output-only `photos` hold 2.6 million empty objects.
PHOTO_FLOOD = (b'{"displayName": "Flood", "species": "SPECIES_DOG", "photos": ['
               + b",".join([b"{}"] * 2_600_000) + b"]}")


async def wait_until(condition, what: str) -> None:
    for _ in range(400):
        if condition():
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture(scope="module")
async def token(edge: EdgeClient) -> str:
    return (await signup(edge, "Big bodies"))[1]


async def test_a_body_built_to_stall_the_loop_is_refused_while_healthz_answers(edge: EdgeClient, token,
                                                                               monkeypatch):
    # The decoder thread holds the body until /healthz has answered: were decoding on the event loop,
    # /healthz could not answer first.
    decoding, release = threading.Event(), threading.Event()
    real, order = rest.build_request, []

    def held(b, path_vars, query, body):
        decoding.set()
        release.wait(10)
        try:
            return real(b, path_vars, query, body)
        finally:
            order.append("decoded")
    monkeypatch.setattr(rest, "build_request", held)
    big = asyncio.ensure_future(call(edge, "POST", "/v1/pets", token=token, raw=PHOTO_FLOOD))
    await wait_until(decoding.is_set, "the body reached the decoder")
    status, health, _ = await call(edge, "GET", "/healthz")
    order.append("healthz answered")
    assert status == 200 and health == {"status": "ok"}
    release.set()
    status, err, headers = await big
    assert order == ["healthz answered", "decoded"]
    assert status == 413 and headers["Content-Type"].startswith("application/json")
    assert err["code"] == 3 and err["details"][0]["reason"] == "BODY_TOO_LARGE"
    assert str(limits.MAX_JSON_TOKENS) in err["message"]


@pytest.mark.parametrize("body, status, reason", [
    (b"[" * 1000 + b"]" * 1000, 400, "BODY_TOO_DEEP"),  # RecursionError in the decoder, once
    (b'{"displayName":' * 1000 + b'"x"' + b"}" * 1000, 400, "BODY_TOO_DEEP"),
    (b"[" * 200_000, 400, "BODY_TOO_DEEP"),
    (b'{"displayName": "Deep", "species": "SPECIES_DOG", "location": ' + b"[" * 33 + b"]" * 33 + b"}", 400,
     "BODY_TOO_DEEP"),
    (b'{"displayName": "X", "species": "SPECIES_DOG", "photos": [' + b"{}," * 30_000 + b"{}]}", 413,
     "BODY_TOO_LARGE"),
    (b'["' + b'\\"' * 30_000 + b'"]', 413, "BODY_TOO_LARGE"),  # escapes are work too
    (b'{"sizes": [' + b'"", ' * 30_000 + b'""]}', 413, "BODY_TOO_LARGE"),
    (b'{"displayName": "X", "species": "SPECIES_DOG", "size": ' + b"1" * 5000 + b"}", 400, "MALFORMED_JSON"),
    (b'{"displayName": "X", "species": "SPECIES_DOG", "breed": "' + b"\\" * 4099 + b'"}', 400, "MALFORMED_JSON"),
    (b'{"displayName": "unterminated', 400, "MALFORMED_JSON"),
])
async def test_bodies_beyond_the_bounds_are_client_errors(edge: EdgeClient, token, body, status, reason):
    got, err, headers = await call(edge, "POST", "/v1/pets", token=token, raw=body)
    assert (got, err["details"][0]["reason"]) == (status, reason), err
    assert headers["Content-Type"].startswith("application/json") and "Server" not in headers


async def test_within_the_bounds_large_bodies_still_work(edge: EdgeClient, token):
    status, pet, _ = await call(edge, "POST", "/v1/pets", {
        "displayName": "Nested but fine", "species": "SPECIES_CAT", "description": "[{,}]\"" * 800,  # > 4 KiB
        "location": {"latitude": 1.5, "longitude": 2.5}}, token)
    assert status == 200 and pet["description"].startswith("[{,}]")
    # A GET-shaped resource sent back, output-only photos and all, is within the bounds too.
    status, pet, _ = await call(edge, "POST", "/v1/pets", {
        "displayName": "With photos", "species": "SPECIES_CAT", "photos": [{"name": "x"}] * 500}, token)
    assert status == 200 and "photos" not in pet, "output only: ignored"
    # A 7 MB photo (one long string) is still just one token.
    status, err, _ = await call(edge, "POST", f"/v1/{pet['name']}/photos",
                                {"content": base64.b64encode(b"\xff" * (5 * 1024 * 1024 + 4096)).decode()}, token)
    assert status == 400 and err["details"][0]["reason"] == "PHOTO_TOO_LARGE"


def framed(message: bytes) -> bytes:
    return struct.pack(">BI", 0, len(message)) + message


async def test_grpc_web_and_grpc_bound_protobuf_bodies_too(edge: EdgeClient):
    """As protobuf, the same flood takes upb a third of a second, holding the GIL: the edge counts
    the fields first, with the contract at hand, so no service decodes it."""
    session = await edge.api.signup("Proto bodies")
    flood = pet_pb2.CreatePetRequest(pet=pet_pb2.Pet(display_name="Flood", species=1,
                                                     photos=[pet_pb2.Photo()] * 2_600_000)).SerializeToString()
    url = edge.url + "/petplatform.pet.v1.PetService/"
    exhausted, invalid = (str(c.value[0]) for c in (grpc.StatusCode.RESOURCE_EXHAUSTED,
                                                     grpc.StatusCode.INVALID_ARGUMENT))

    async def grpc_web(method: str, data: bytes, content_type: str = "application/grpc-web+proto") -> str:
        async with edge.http.post(url + method, data=data, headers={
                "Content-Type": content_type, "Authorization": f"Bearer {session.access_token}"}) as r:
            body = await r.read()
            assert r.status == 200
            return r.headers.get("grpc-status") or body.split(b"grpc-status: ")[1][:2].strip().decode()
    assert await grpc_web("CreatePet", framed(flood)) == exhausted
    assert await grpc_web("CreatePet", base64.b64encode(framed(flood)), "application/grpc-web-text") == exhausted
    packed = pet_pb2.ListPetsRequest(species=[1] * 30_000).SerializeToString()  # each element of a packed list
    assert await grpc_web("ListPets", framed(packed)) == exhausted
    deep_groups = b"\x0b" * 40 + b"\x0c" * 40  # field 1: start group ... end group
    assert await grpc_web("GetPet", framed(deep_groups)) == invalid
    within = pet_pb2.CreatePetRequest(pet=pet_pb2.Pet(display_name="Fine", species=1, description="d" * 4000,
                                                      photos=[pet_pb2.Photo(name="x")] * 500)).SerializeToString()
    assert await grpc_web("CreatePet", framed(within)) == "0", "output-only photos within the bounds: ignored"
    async with grpc.aio.insecure_channel(edge.grpc_address) as ch:
        pets = pet_pb2_grpc.PetServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await pets.CreatePet(pet_pb2.CreatePetRequest.FromString(flood), metadata=session.md)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and error_reason(e.value) == "BODY_TOO_LARGE"
        with pytest.raises(grpc.aio.AioRpcError) as e:
            async for _ in pets.WatchPets(pet_pb2.WatchPetsRequest(species=[1] * 30_000)):
                pass
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert (await pets.CreatePet(pet_pb2.CreatePetRequest.FromString(within), metadata=session.md)).pet.name
