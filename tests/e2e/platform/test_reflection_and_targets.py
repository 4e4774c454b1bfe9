"""The platform as a newcomer meets it: driven through server reflection alone (as grpcurl does),
and split into one process per service that find each other through configuration."""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import urllib.request

from google.protobuf import descriptor_pool, json_format, message_factory
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
import pytest

from tests.support.platform import PASSWORD, Api


def reflected_call(channel: grpc.Channel, pool: descriptor_pool.DescriptorPool, method: str, body: dict,
                   token: str | None = None) -> dict:
    service_name, method_name = method.rsplit("/", 1)
    m = pool.FindServiceByName(service_name).methods_by_name[method_name]
    request_cls = message_factory.GetMessageClass(m.input_type)
    response_cls = message_factory.GetMessageClass(m.output_type)
    call = channel.unary_unary(f"/{method}", request_serializer=request_cls.SerializeToString,
                               response_deserializer=response_cls.FromString)
    md = (("authorization", f"Bearer {token}"),) if token else None
    return json_format.MessageToDict(call(json_format.ParseDict(body, request_cls()), metadata=md, timeout=10))


def drive_with_reflection(address: str) -> None:
    with grpc.insecure_channel(address) as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        services = set(db.get_services())
        assert {"petplatform.auth.v1.AuthService", "petplatform.user.v1.UserService",
                "petplatform.pet.v1.PetService", "grpc.health.v1.Health"} <= services
        pool = descriptor_pool.DescriptorPool(db)
        email = f"reflect{os.getpid()}@example.com"
        reflected_call(channel, pool, "petplatform.auth.v1.AuthService/Register",
                       {"email": email, "password": PASSWORD, "displayName": "Reflected"})
        token = reflected_call(channel, pool, "petplatform.auth.v1.AuthService/Login",
                               {"email": email, "password": PASSWORD})["accessToken"]
        pet = reflected_call(channel, pool, "petplatform.pet.v1.PetService/CreatePet",
                             {"pet": {"displayName": "Mochi", "species": "SPECIES_CAT",
                                      "location": {"latitude": 35.6, "longitude": 139.7}}}, token)["pet"]
        listed = reflected_call(channel, pool, "petplatform.pet.v1.PetService/ListPets",
                                {"species": ["SPECIES_CAT"], "near": {"latitude": 35.6, "longitude": 139.7},
                                 "radiusKm": 5, "owner": pet["owner"]})
        assert [p["name"] for p in listed["pets"]] == [pet["name"]]


async def test_reflection_alone_is_enough_to_use_the_platform(api: Api):
    await asyncio.to_thread(drive_with_reflection, api.platform.address)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_serving(address: str, timeout: float = 30) -> None:
    async with grpc.aio.insecure_channel(address) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        for _ in range(int(timeout / 0.2)):
            try:
                if (await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)).status == 1:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"{address} never became SERVING")


async def test_one_process_per_service(tmp_path):
    auth_port, pet_port, metrics_port = free_port(), free_port(), free_port()
    env = {**os.environ, "PETPLATFORM_DATA_DIR": str(tmp_path), "PETPLATFORM_AUTH_ADDR": f"127.0.0.1:{auth_port}",
           "PETPLATFORM_LOG_JSON": "false"}
    procs = [subprocess.Popen([sys.executable, "-m", "app.cli", "run", f"--target={t}", f"--port={p}"],
                              env={**env, **extra}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for t, p, extra in (("auth", auth_port, {}),
                                 ("pet", pet_port, {"PETPLATFORM_METRICS_PORT": str(metrics_port)}))]
    try:
        for port in (auth_port, pet_port):
            await wait_serving(f"127.0.0.1:{port}")
        from petplatform.auth.v1 import auth_pb2, auth_pb2_grpc
        from petplatform.pet.v1 import pet_pb2, pet_pb2_grpc
        async with grpc.aio.insecure_channel(f"127.0.0.1:{auth_port}") as a, \
                grpc.aio.insecure_channel(f"127.0.0.1:{pet_port}") as p:
            auth, pets = auth_pb2_grpc.AuthServiceStub(a), pet_pb2_grpc.PetServiceStub(p)
            await auth.Register(auth_pb2.RegisterRequest(email="solo@example.com", password=PASSWORD, display_name="S"))
            token = (await auth.Login(auth_pb2.LoginRequest(email="solo@example.com", password=PASSWORD))).access_token
            # The pet process verifies the token with keys fetched from the auth process.
            created = await pets.CreatePet(pet_pb2.CreatePetRequest(pet=pet_pb2.Pet(display_name="Solo", species=1)),
                                           metadata=(("authorization", f"Bearer {token}"),))
            assert created.pet.owner.startswith("users/")
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await auth.GetJwks(auth_pb2.GetJwksRequest()) and await pets.GetPet(pet_pb2.GetPetRequest(name="x"))
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        assert 'petplatform_rpc_total{code="OK",method="/petplatform.pet.v1.PetService/CreatePet"} 1.0' in metrics
        assert 'code="INVALID_ARGUMENT",method="/petplatform.pet.v1.PetService/GetPet"' in metrics
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            assert proc.wait(timeout=15) == 0, "SIGTERM is a graceful, clean shutdown"
