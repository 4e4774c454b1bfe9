"""The edge's gRPC-Web (with an independent client library, sonora) and gRPC pass-through."""
from __future__ import annotations

import asyncio
import base64
import struct
import uuid

from google.rpc import error_details_pb2
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
import pytest
import sonora.protocol

from petplatform.auth.v1 import auth_pb2, auth_pb2_grpc
from petplatform.common.v1 import animal_pb2
from petplatform.pet.v1 import pet_pb2, pet_pb2_grpc
from tests.support.errors import status_of
from tests.support.platform import PASSWORD, EdgeClient, embedded_settings, start_edge, start_platform
from tests.support.web import WebChannel, decode_text, frames


async def web_signup(channel) -> list[tuple[str, str]]:
    auth = auth_pb2_grpc.AuthServiceStub(channel)
    email = f"w{uuid.uuid4().hex[:10]}@example.com"
    await auth.Register(auth_pb2.RegisterRequest(email=email, password=PASSWORD, display_name="Web"))
    tokens = await auth.Login(auth_pb2.LoginRequest(email=email, password=PASSWORD))
    return [("authorization", f"Bearer {tokens.access_token}")]


async def test_off_the_shelf_grpc_web_client(edge: EdgeClient):
    async with WebChannel(edge.url) as channel:
        md = await web_signup(channel)
        pets = pet_pb2_grpc.PetServiceStub(channel)
        created = await pets.CreatePet(pet_pb2.CreatePetRequest(pet=pet_pb2.Pet(
            display_name="Web Mochi", species=animal_pb2.SPECIES_CAT)), metadata=md)
        assert created.pet.display_name == "Web Mochi"
        listed = await pets.ListPets(pet_pb2.ListPetsRequest(owner=created.pet.owner))
        assert [p.name for p in listed.pets] == [created.pet.name]
        updated = await pets.UpdatePet(pet_pb2.UpdatePetRequest(
            pet=pet_pb2.Pet(name=created.pet.name, status=pet_pb2.Pet.STATUS_ADOPTED),
            update_mask={"paths": ["status"]}), metadata=md)
        assert updated.pet.status == pet_pb2.Pet.STATUS_ADOPTED
        with pytest.raises(sonora.protocol.WebRpcError) as e:
            await pets.DeletePet(pet_pb2.DeletePetRequest(name=created.pet.name))
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(sonora.protocol.WebRpcError) as e:
            await pets.GetPet(pet_pb2.GetPetRequest(name="pets/nope"))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        await pets.DeletePet(pet_pb2.DeletePetRequest(name=created.pet.name), metadata=md)
        with pytest.raises(sonora.protocol.WebRpcError) as e:
            await pets.GetPet(pet_pb2.GetPetRequest(name=created.pet.name))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND


async def test_grpc_web_text_mode_and_trailers(edge: EdgeClient):
    req = pet_pb2.ListPetsRequest(page_size=1).SerializeToString()
    body = base64.b64encode(struct.pack(">BI", 0, len(req)) + req)
    headers = {"Content-Type": "application/grpc-web-text", "X-Grpc-Web": "1", "Origin": "http://localhost:3100"}
    async with edge.http.post(edge.url + "/petplatform.pet.v1.PetService/ListPets", data=body, headers=headers) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "application/grpc-web-text+proto"
        assert "grpc-status" in r.headers["Access-Control-Expose-Headers"]
        raw = await r.read()
    decoded = decode_text(raw)
    (data_flag, message), (trailer_flag, trailers) = frames(decoded)
    assert data_flag == 0 and trailer_flag == 0x80
    pet_pb2.ListPetsResponse.FromString(message)
    assert b"grpc-status: 0" in trailers


async def test_grpc_web_errors_carry_status_details(edge: EdgeClient):
    req = pet_pb2.GetPetRequest(name=f"pets/{'2' * 32}").SerializeToString()
    async with edge.http.post(edge.url + "/petplatform.pet.v1.PetService/GetPet",
                              data=struct.pack(">BI", 0, len(req)) + req,
                              headers={"Content-Type": "application/grpc-web+proto"}) as r:
        assert r.status == 200 and r.headers["grpc-status"] == "5"  # trailers-only response
        from google.rpc import status_pb2
        details = r.headers["grpc-status-details-bin"]
        status = status_pb2.Status.FromString(base64.b64decode(details + "=" * (-len(details) % 4)))
        assert status.code == 5
    for bad in (b"", b"\x00\x00\x00\x00\x09abc", b"\x01\x00\x00\x00\x00"):
        async with edge.http.post(edge.url + "/petplatform.pet.v1.PetService/GetPet", data=bad,
                                  headers={"Content-Type": "application/grpc-web+proto"}) as r:
            assert r.headers["grpc-status"] == "3"
    async with edge.http.post(edge.url + "/petplatform.pet.v1.PetService/Nope", data=b"",
                              headers={"Content-Type": "application/grpc-web+proto"}) as r:
        assert r.headers["grpc-status"] == "12"


async def test_grpc_pass_through(edge: EdgeClient):
    async with grpc.aio.insecure_channel(edge.grpc_address) as ch:
        auth, pets = auth_pb2_grpc.AuthServiceStub(ch), pet_pb2_grpc.PetServiceStub(ch)
        email = f"m{uuid.uuid4().hex[:10]}@example.com"
        await auth.Register(auth_pb2.RegisterRequest(email=email, password=PASSWORD, display_name="Mobile"))
        token = (await auth.Login(auth_pb2.LoginRequest(email=email, password=PASSWORD))).access_token
        md = (("authorization", f"Bearer {token}"), ("x-request-id", "mobile-req-1"))
        call = pets.CreatePet(pet_pb2.CreatePetRequest(pet=pet_pb2.Pet(display_name="M", species=1)), metadata=md)
        assert (await call).pet.display_name == "M"
        # A one-response call carries it in its trailers, sent with the response (streams: in their headers).
        assert ("x-request-id", "mobile-req-1") in tuple(await call.trailing_metadata()), "request id went through"
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await pets.CreatePet(pet_pb2.CreatePetRequest(pet=pet_pb2.Pet(display_name="M", species=1)))
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await pets.GetPet(pet_pb2.GetPetRequest(name=f"pets/{'3' * 32}"))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND and status_of(e.value).code == 5, "details relayed"
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await pets.ListPets(pet_pb2.ListPetsRequest(), timeout=0.000001)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_reflection_and_health_streams_at_the_edge(edge: EdgeClient):
    async with grpc.aio.insecure_channel(edge.grpc_address) as ch:
        # server reflection, as grpcurl uses it, answered by the edge from every contract it serves
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)

        async def asks():
            yield reflection_pb2.ServerReflectionRequest(list_services="")
            yield reflection_pb2.ServerReflectionRequest(file_containing_symbol="petplatform.pet.v1.PetService")
        replies = [r async for r in stub.ServerReflectionInfo(asks())]
        names = {s.name for s in replies[0].list_services_response.service}
        assert "petplatform.pet.v1.PetService" in names and replies[1].file_descriptor_response.file_descriptor_proto
        # health, answered for the services behind the edge (server streaming, cancelled by the client)
        health = health_pb2_grpc.HealthStub(ch)
        for service in ("", "petplatform.pet.v1.PetService"):
            assert (await health.Check(health_pb2.HealthCheckRequest(service=service))).status == \
                health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watch.read()


async def test_rate_limit_on_grpc_and_grpc_web(tmp_path, smtp_sink):
    platform = await start_platform(embedded_settings(tmp_path, smtp_sink, rate_limit_per_minute=3))
    edge = await start_edge(platform)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{edge.grpc_port}") as ch:
            pets = pet_pb2_grpc.PetServiceStub(ch)
            for _ in range(3):
                await pets.ListPets(pet_pb2.ListPetsRequest())
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await pets.ListPets(pet_pb2.ListPetsRequest())
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status_of(e.value).details)
        # the same client (IP) shares one budget across protocols
        async with WebChannel(f"http://127.0.0.1:{edge.http_port}") as web:
            with pytest.raises(sonora.protocol.WebRpcError) as e:
                await pet_pb2_grpc.PetServiceStub(web).ListPets(pet_pb2.ListPetsRequest())
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await edge.stop(grace=1)
        await platform.stop(grace=1)


async def test_oversized_messages_are_refused_as_grpc_statuses(edge: EdgeClient):
    session = await edge.api.signup("Big sender")  # the body is read only once the caller is let in
    big = pet_pb2.UploadPetPhotoRequest(parent="pets/x", content=b"\0" * (9 * 1024 * 1024)).SerializeToString()
    async with edge.http.post(edge.url + "/petplatform.pet.v1.PetService/UploadPetPhoto",
                              data=struct.pack(">BI", 0, len(big)) + big,
                              headers={"Content-Type": "application/grpc-web+proto",
                                       "Authorization": f"Bearer {session.access_token}"}) as r:
        assert r.status == 200 and r.headers["grpc-status"] == str(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])
    async with grpc.aio.insecure_channel(edge.grpc_address) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await pet_pb2_grpc.PetServiceStub(ch).UploadPetPhoto(pet_pb2.UploadPetPhotoRequest.FromString(big),
                                                                 metadata=session.md)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
