"""Server streaming through the edge: REST as NDJSON and Server-Sent Events, gRPC-Web (raw frames and
an off-the-shelf client) and gRPC pass-through; errors before and in the middle of a stream."""
from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import struct

import aiohttp
import grpc
from prometheus_client import REGISTRY
import pytest

from petplatform.pet.v1 import pet_pb2, pet_pb2_grpc
from tests.support.errors import expect, violations
from tests.support.platform import EdgeClient, embedded_settings, start_edge, start_platform
from tests.support.web import WebChannel, call, decode_text, frames, signup

WATCH = "/v1/pets:watch"


@pytest.fixture(scope="module")
async def person(edge: EdgeClient):
    return await signup(edge, "Streamer")


async def new_cat(edge: EdgeClient, token: str, name: str) -> dict:
    status, pet, _ = await call(edge, "POST", "/v1/pets", {"displayName": name, "species": "SPECIES_CAT"}, token)
    assert status == 200, pet
    return pet


def fields(status_json: dict) -> set[str]:
    return {v["field"] for d in status_json["details"] for v in d.get("fieldViolations", ())}


async def line(stream) -> bytes:
    return await asyncio.wait_for(stream.readline(), 30)  # a bound against a hang, not a timing


# The streams that show a message carry no deadline (creating the pet may take seconds on a busy machine);
# those that show the end carry one that only has to outlast the stream's opening.
OPEN_THEN_EXPIRE = "3S"


async def test_rest_stream_as_ndjson(edge: EdgeClient, person):
    owner, token = person
    async with edge.http.get(edge.url + WATCH, params={"owner": owner, "species": "SPECIES_CAT"}) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "application/x-ndjson"
        assert r.headers["X-Content-Type-Options"] == "nosniff" and "RateLimit-Remaining" in r.headers
        pet = await new_cat(edge, token, "Ndjson")
        first = json.loads(await line(r.content))
        assert first["change"] == "CHANGE_ADDED" and first["pet"]["name"] == pet["name"]
        assert first["pet"]["displayName"] == "Ndjson"  # proto3 JSON, as in unary responses


async def test_rest_stream_as_ndjson_ends_with_a_status_line(edge: EdgeClient, person):
    owner, _ = person
    async with edge.http.get(edge.url + WATCH, params={"owner": owner},
                             headers={"grpc-timeout": OPEN_THEN_EXPIRE}) as r:
        assert r.status == 200
        last = json.loads(await line(r.content))
        assert last["error"]["code"] == grpc.StatusCode.DEADLINE_EXCEEDED.value[0], "structured, never a bare 200"
        assert await r.content.read() == b""


async def test_rest_stream_as_server_sent_events(edge: EdgeClient, person):
    owner, token = person
    async with edge.http.get(edge.url + WATCH, params={"owner": owner},
                             headers={"Accept": "text/event-stream"}) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "text/event-stream"
        pet = await new_cat(edge, token, "Sse")
        data = await line(r.content)
        assert data.startswith(b"data: ") and await line(r.content) == b"\n"
        assert json.loads(data[6:])["pet"]["name"] == pet["name"]


async def test_server_sent_events_end_with_an_error_event(edge: EdgeClient, person):
    owner, _ = person
    async with edge.http.get(edge.url + WATCH, params={"owner": owner},
                             headers={"Accept": "text/event-stream", "grpc-timeout": OPEN_THEN_EXPIRE}) as r:
        assert r.status == 200
        assert await line(r.content) == b"event: error\n"
        error = await line(r.content)
        assert json.loads(error[6:])["code"] == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]


async def test_stream_refused_up_front_is_an_ordinary_http_error(edge: EdgeClient):
    status, err, headers = await call(edge, "GET", WATCH, owner="people/1", radiusKm="3")
    assert status == 400 and headers["Content-Type"].startswith("application/json")
    assert fields(err) == {"owner", "near"}
    status, err, _ = await call(edge, "GET", WATCH, pageSize="3")  # a ListPets field WatchPets does not have
    assert status == 400 and fields(err) == {"pageSize"}


def open_streams() -> float:
    return REGISTRY.get_sample_value("petplatform_pet_watch_streams") or 0


async def closes_upstream(before: float) -> None:
    for _ in range(50):  # the edge notices the closed socket, cancels its handler and the upstream call
        if open_streams() == before:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{open_streams() - before} upstream watch(es) left open")


@pytest.mark.parametrize("protocol", ["rest", "grpc-web", "grpc"])
async def test_client_disconnect_cancels_the_upstream_stream(edge: EdgeClient, person, protocol):
    owner, _ = person
    before = open_streams()
    if protocol == "grpc":
        async with grpc.aio.insecure_channel(edge.grpc_address) as ch:
            call = pet_pb2_grpc.PetServiceStub(ch).WatchPets(pet_pb2.WatchPetsRequest(owner=owner))
            await call.initial_metadata()
            assert open_streams() == before + 1
            call.cancel()
    else:
        request = pet_pb2.WatchPetsRequest(owner=owner).SerializeToString()
        async with (edge.http.get(edge.url + WATCH, params={"owner": owner}) if protocol == "rest" else
                    edge.http.post(edge.url + "/petplatform.pet.v1.PetService/WatchPets",
                                   data=struct.pack(">BI", 0, len(request)) + request,
                                   headers={"Content-Type": "application/grpc-web+proto"})) as r:
            assert r.status == 200
            assert open_streams() == before + 1
    await closes_upstream(before)


def watch_text_request(owner: str) -> bytes:
    request = pet_pb2.WatchPetsRequest(owner=owner).SerializeToString()
    return base64.b64encode(struct.pack(">BI", 0, len(request)) + request)


async def test_grpc_web_text_stream_sends_messages_as_they_come(edge: EdgeClient, person):
    owner, token = person
    async with edge.http.post(edge.url + "/petplatform.pet.v1.PetService/WatchPets", data=watch_text_request(owner),
                              headers={"Content-Type": "application/grpc-web-text"}) as r:
        assert r.status == 200 and "grpc-status" not in r.headers  # open: the status comes at the end
        pet = await new_cat(edge, token, "Web text")
        raw = body = b""
        while len(body) < 5 or len(body) < 5 + struct.unpack(">I", body[1:5])[0]:
            raw += await asyncio.wait_for(r.content.readany(), 30)
            with contextlib.suppress(binascii.Error):  # a read may end inside a base64 chunk
                body = decode_text(raw)
    [(data_flag, data)] = frames(body)
    assert data_flag == 0 and pet_pb2.WatchPetsResponse.FromString(data).pet.name == pet["name"]


async def test_grpc_web_text_stream_carries_the_status_in_its_trailer_frame(edge: EdgeClient, person):
    owner, _ = person
    async with edge.http.post(edge.url + "/petplatform.pet.v1.PetService/WatchPets", data=watch_text_request(owner),
                              headers={"Content-Type": "application/grpc-web-text",
                                       "grpc-timeout": OPEN_THEN_EXPIRE}) as r:
        assert r.status == 200 and "grpc-status" not in r.headers
        body = decode_text(await asyncio.wait_for(r.read(), 30))
    [(trailer_flag, trailer)] = frames(body)
    assert trailer_flag == 0x80 and b"grpc-status: 4\r\n" in trailer


async def test_off_the_shelf_grpc_web_client_streams(edge: EdgeClient, person):
    owner, token = person
    async with WebChannel(edge.url) as channel:
        watch = pet_pb2_grpc.PetServiceStub(channel).WatchPets(pet_pb2.WatchPetsRequest(owner=owner))
        await watch.initial_metadata()  # sonora sends the request here; the edge answers once the stream is open
        pet = await new_cat(edge, token, "Sonora")
        got = await asyncio.wait_for(watch.read(), 30)
        assert got.change == pet_pb2.WatchPetsResponse.CHANGE_ADDED and got.pet.name == pet["name"]


async def test_pass_through_relays_a_refused_stream_with_its_details(edge: EdgeClient):
    async with grpc.aio.insecure_channel(edge.grpc_address) as ch:
        call = pet_pb2_grpc.PetServiceStub(ch).WatchPets(pet_pb2.WatchPetsRequest(owner="people/1"))
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call.read()
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "owner" in violations(e.value)


async def test_open_streams_are_capped_per_client_on_every_protocol(tmp_path, smtp_sink):
    platform = await start_platform(embedded_settings(tmp_path, smtp_sink, max_streams_per_client=1))
    edge = await start_edge(platform)
    url = f"http://127.0.0.1:{edge.http_port}"
    request = pet_pb2.WatchPetsRequest().SerializeToString()
    web_body = struct.pack(">BI", 0, len(request)) + request
    try:
        async with aiohttp.ClientSession() as http, grpc.aio.insecure_channel(f"127.0.0.1:{edge.grpc_port}") as ch:
            async with http.get(url + WATCH) as first:
                assert first.status == 200
                async with http.get(url + WATCH) as second:
                    assert second.status == 429 and (await second.json())["details"][0]["reason"] == "TOO_MANY_STREAMS"
                async with http.post(url + "/petplatform.pet.v1.PetService/WatchPets", data=web_body,
                                     headers={"Content-Type": "application/grpc-web+proto"}) as web:
                    assert web.headers["grpc-status"] == str(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])
                with pytest.raises(grpc.aio.AioRpcError) as e:
                    await pet_pb2_grpc.PetServiceStub(ch).WatchPets(pet_pb2.WatchPetsRequest()).read()
                assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                async with http.get(url + "/v1/pets") as unary:
                    assert unary.status == 200, "only streams are capped"
            for _ in range(50):  # the first stream's slot comes back once the edge sees it closed
                async with http.get(url + WATCH, headers={"grpc-timeout": "1m"}) as again:
                    if again.status == 200:
                        break
                await asyncio.sleep(0.05)
            assert again.status == 200
    finally:
        await edge.stop(grace=1)
        await platform.stop(grace=1)


async def test_stopping_the_edge_ends_its_streams_with_a_status(tmp_path, smtp_sink):
    platform = await start_platform(embedded_settings(tmp_path, smtp_sink))
    edge = await start_edge(platform)
    url = f"http://127.0.0.1:{edge.http_port}"
    request = pet_pb2.WatchPetsRequest().SerializeToString()
    try:
        async with aiohttp.ClientSession() as http:
            sse = await http.get(url + WATCH, headers={"Accept": "text/event-stream"})
            web = await http.post(url + "/petplatform.pet.v1.PetService/WatchPets",
                                  data=struct.pack(">BI", 0, len(request)) + request,
                                  headers={"Content-Type": "application/grpc-web+proto"})
            assert sse.status == 200 and web.status == 200
            async with grpc.aio.insecure_channel(f"127.0.0.1:{edge.grpc_port}") as ch:
                mobile = pet_pb2_grpc.PetServiceStub(ch).WatchPets(pet_pb2.WatchPetsRequest())
                await mobile.initial_metadata()
                stopping = asyncio.create_task(edge.stop(grace=30))  # returns although streams are open
                mobile_error = await expect(grpc.StatusCode.UNAVAILABLE, mobile.read(), "EDGE_SHUTTING_DOWN")
                await stopping
            assert "shutting down" in mobile_error.details()
            body = (await asyncio.wait_for(sse.content.read(), 5)).decode()
            assert body.startswith("event: error\n")
            assert json.loads(body.split("data: ", 1)[1])["details"][0]["reason"] == "EDGE_SHUTTING_DOWN"
            (flag, trailer), = frames(await asyncio.wait_for(web.content.read(), 5))
            assert flag == 0x80 and b"grpc-status: 14\r\n" in trailer
    finally:
        await platform.stop(grace=1)


def test_a_stopping_edge_takes_no_new_streams():
    from gateway.upstream import OpenStreams
    from mesh import errors

    class Call:
        cancelled = False

        def cancel(self):
            self.cancelled = True

    streams, open_call, late_call = OpenStreams(), Call(), Call()
    with streams.relaying(open_call):
        streams.end_all()
        assert open_call.cancelled and len(streams) == 1
    assert len(streams) == 0
    with pytest.raises(errors.ApiError) as e:
        with streams.relaying(late_call):
            pass
    assert e.value.reason == "EDGE_SHUTTING_DOWN" and late_call.cancelled
