"""The services port protects itself, for callers that reach it without the edge: a stream cap per
caller, a bound on RPCs in progress, and requests counted before they are decoded."""
from __future__ import annotations

import asyncio

from google.rpc import error_details_pb2
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from petplatform.pet.v1 import pet_pb2
from tests.support.errors import error_reason, status_of
from tests.support.platform import Api, embedded_settings, start_platform


@pytest.fixture(scope="module")
async def small(tmp_path_factory, smtp_sink):
    p = await start_platform(embedded_settings(tmp_path_factory.mktemp("data"), smtp_sink,
                                               max_streams_per_caller=2, max_concurrent_rpcs=6))
    api = Api(p, smtp_sink)
    yield api
    await api.channel.close()
    await p.stop(grace=1)


async def watch(api: Api, md=()) -> grpc.aio.UnaryStreamCall:
    call = api.pet.WatchPets(pet_pb2.WatchPetsRequest(), metadata=md)
    await asyncio.wait_for(call.initial_metadata(), 10)  # accepted (or refused: then the code says so)
    return call


async def test_a_caller_holds_at_most_its_share_of_streams(small: Api):
    alice, bob = await small.signup("Alice"), await small.signup("Bob")
    first = [await watch(small, alice.md) for _ in range(2)]
    refused = await watch(small, alice.md)
    assert await refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    err = grpc.aio.AioRpcError(await refused.code(), await refused.initial_metadata(),
                               await refused.trailing_metadata(), await refused.details())
    assert error_reason(err) == "TOO_MANY_STREAMS"
    info = error_details_pb2.ErrorInfo()
    assert any(d.Unpack(info) for d in status_of(err).details)
    assert (info.domain, dict(info.metadata)) == ("pet.petplatform.dev", {"limit": "2", "retry_after_seconds": "1"})
    other = await watch(small, bob.md)  # someone else is not held back
    first[0].cancel()
    for _ in range(250):  # the slot comes back once the server has seen the cancellation
        again = await watch(small, alice.md)
        if again.done() is False:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the closed stream's slot never came back")
    for call in (*first, other, again):
        call.cancel()


async def test_rpcs_in_progress_are_bounded(small: Api):
    people = [await small.signup(f"P{i}") for i in range(3)]
    calls = [await watch(small, p.md) for p in people for _ in range(2)]  # six open: the bound
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await small.pet.ListPets(pet_pb2.ListPetsRequest(), timeout=10)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and error_reason(e.value) == "SERVER_BUSY"
    health = await health_pb2_grpc.HealthStub(small.channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING, "busy is not dead: probes still answer"
    for call in calls:
        call.cancel()
    for _ in range(250):
        try:
            await small.pet.ListPets(pet_pb2.ListPetsRequest(), timeout=10)
            break
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            await asyncio.sleep(0.02)
    else:
        raise AssertionError("calls were not let in again once the streams closed")


async def test_a_request_built_to_stall_a_service_is_refused_before_decoding(api: Api):
    # ListPetsRequest.species (field 3), packed: three million enum values in 3 MB.
    flood = b"\x1a" + _varint(3_000_000) + b"\x01" * 3_000_000
    call = api.channel.unary_unary("/petplatform.pet.v1.PetService/ListPets")(flood, timeout=30)
    health = health_pb2_grpc.HealthStub(api.channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and error_reason(e.value) == "BODY_TOO_LARGE"
    assert (await health).status == health_pb2.HealthCheckResponse.SERVING
    deep = b""
    for _ in range(100):  # Pet.location nested in itself is not possible: an unknown group nests instead
        deep = b"\xfb\x07" + deep + b"\xfc\x07"  # field 127, start/end group
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await api.channel.unary_unary("/petplatform.pet.v1.PetService/ListPets")(deep, timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and error_reason(e.value) == "BODY_TOO_DEEP"


def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out
