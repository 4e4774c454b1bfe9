"""`make bench`: requests/s and latency of GetPet and ListPets on the embedded and real profiles,
next to grpc.health.v1 Check on the same server (the floor: gRPC + interceptor, no service work)."""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import struct
import tempfile
import time
from pathlib import Path

from google.type import latlng_pb2
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from petplatform.common.v1 import animal_pb2
from petplatform.pet.v1 import pet_pb2, pet_pb2_grpc
from tests.support.platform import (
    Api, SmtpSink, drop_real_state, embedded_settings, real_settings, start_edge, start_platform,
)

DURATION = float(os.environ.get("BENCH_SECONDS", "5"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "16"))


async def measure(call, duration: float = DURATION, concurrency: int = CONCURRENCY) -> dict:
    latencies: list[float] = []
    deadline = time.perf_counter() + duration

    async def worker():
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100)
    return {"rps": len(latencies) / elapsed, "p50": q[49] * 1000, "p99": q[98] * 1000, "n": len(latencies)}


WATCHERS = int(os.environ.get("BENCH_WATCHERS", "50"))
CHANGES = 20


async def watch_fanout(api: Api, session, open_watch, watchers: int = WATCHERS, changes: int = CHANGES) -> dict:
    """Delivery latency of WatchPets: from an UpdatePet call to each of `watchers` streams seeing it.
    open_watch(owner) returns (an async iterator of changed descriptions, once the stream is open)."""
    pet = (await api.pet.CreatePet(pet_pb2.CreatePetRequest(pet=pet_pb2.Pet(
        display_name="Watched", species=animal_pb2.SPECIES_CAT)), metadata=session.md)).pet
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    streams = [await open_watch(session.name) for _ in range(watchers)]

    async def consume(stream):
        async for description in stream:
            if description in sent_at:
                latencies.append(time.perf_counter() - sent_at[description])

    tasks = [asyncio.create_task(consume(st)) for st in streams]
    start = time.perf_counter()
    for k in range(changes):
        pet.description = f"change {k}"
        sent_at[pet.description] = time.perf_counter()
        await api.pet.UpdatePet(pet_pb2.UpdatePetRequest(pet=pet, update_mask={"paths": ["description"]}),
                                metadata=session.md)
        await asyncio.sleep(0.05)
    for _ in range(200):
        if len(latencies) >= watchers * changes:
            break
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - start
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    q = statistics.quantiles(latencies, n=100)
    assert len(latencies) == watchers * changes, f"{len(latencies)} of {watchers * changes} changes delivered"
    return {"rps": len(latencies) / elapsed, "p50": q[49] * 1000, "p99": q[98] * 1000, "n": len(latencies)}


def grpc_web_frame(msg) -> bytes:
    data = msg.SerializeToString()
    return struct.pack(">BI", 0, len(data)) + data


async def edge_cases(platform, names: list[str]) -> list[tuple]:
    """The same calls through the edge: REST/JSON, gRPC-Web and gRPC pass-through."""
    import aiohttp
    edge = await start_edge(platform)
    base = f"http://127.0.0.1:{edge.http_port}"
    i = 0
    try:
        async with aiohttp.ClientSession() as http, grpc.aio.insecure_channel(f"127.0.0.1:{edge.grpc_port}") as ch:
            pets = pet_pb2_grpc.PetServiceStub(ch)

            async def rest(path, **params):
                async with http.get(base + path, params=params) as r:
                    assert r.status == 200
                    await r.read()

            async def web(method, msg):
                async with http.post(f"{base}/petplatform.pet.v1.PetService/{method}", data=grpc_web_frame(msg),
                                     headers={"Content-Type": "application/grpc-web+proto"}) as r:
                    body = await r.read()
                    assert b"grpc-status: 0" in body

            def next_name():
                nonlocal i
                i += 1
                return names[i % len(names)]

            cases = [
                ("GetPet via edge REST", lambda: rest(f"/v1/{next_name()}")),
                ("GetPet via edge gRPC-Web", lambda: web("GetPet", pet_pb2.GetPetRequest(name=next_name()))),
                ("GetPet via edge gRPC pass-through", lambda: pets.GetPet(pet_pb2.GetPetRequest(name=next_name()))),
                ("ListPets via edge REST", lambda: rest("/v1/pets", pageSize="20")),
                ("ListPets via edge gRPC-Web", lambda: web("ListPets", pet_pb2.ListPetsRequest(page_size=20))),
                ("ListPets via edge gRPC pass-through", lambda: pets.ListPets(pet_pb2.ListPetsRequest(page_size=20))),
            ]
            rows = [(name, await measure(call)) for name, call in cases]

            async def sse_watch(owner: str):
                response = await http.get(f"{base}/v1/pets:watch", params={"owner": owner},
                                          headers={"Accept": "text/event-stream"})
                assert response.status == 200

                async def descriptions():
                    async with response:
                        async for line in response.content:
                            if line.startswith(b"data: "):
                                yield json.loads(line[6:])["pet"].get("description")
                return descriptions()

            api = Api(platform, None)
            session = await api.signup("SSE watcher")
            rows.append((f"WatchPets x{WATCHERS} via edge SSE (delivery)", await watch_fanout(api, session, sse_watch)))
            await api.channel.close()
            return rows
    finally:
        await edge.stop(grace=1)


async def bench_profile(label: str, settings, with_edge: bool = False) -> list[tuple]:
    platform = await start_platform(settings)
    api = Api(platform, None)
    try:
        s = await api.signup("Bench")
        names = []
        for i in range(200):
            pet = pet_pb2.Pet(display_name=f"Pet {i}", species=[animal_pb2.SPECIES_DOG, animal_pb2.SPECIES_CAT][i % 2],
                              breed="Mixed", location=latlng_pb2.LatLng(latitude=35 + i / 1000, longitude=139.7))
            names.append((await api.pet.CreatePet(pet_pb2.CreatePetRequest(pet=pet), metadata=s.md)).pet.name)
        health = health_pb2_grpc.HealthStub(api.channel)
        i = 0

        async def get_pet():
            nonlocal i
            i += 1
            await api.pet.GetPet(pet_pb2.GetPetRequest(name=names[i % len(names)]))

        cases = [
            ("health Check (floor)", lambda: health.Check(health_pb2.HealthCheckRequest())),
            ("GetPet direct gRPC", get_pet),
            ("ListPets direct gRPC", lambda: api.pet.ListPets(pet_pb2.ListPetsRequest(page_size=20))),
            ("ListPets dogs near, by distance", lambda: api.pet.ListPets(pet_pb2.ListPetsRequest(
                page_size=20, species=[animal_pb2.SPECIES_DOG], near=latlng_pb2.LatLng(latitude=35.05, longitude=139.7),
                radius_km=50, order_by="distance"))),
        ]
        rows = [(label, name, await measure(call)) for name, call in cases]

        async def grpc_watch(owner: str):
            call = api.pet.WatchPets(pet_pb2.WatchPetsRequest(owner=owner))
            await call.initial_metadata()

            async def descriptions():
                async for change in call:
                    yield change.pet.description
            return descriptions()

        rows.append((label, f"WatchPets x{WATCHERS} direct gRPC (delivery)", await watch_fanout(api, s, grpc_watch)))
        if with_edge:
            rows += [(label, name, m) for name, m in await edge_cases(platform, names)]
        return rows
    finally:
        await api.channel.close()
        await platform.stop(grace=1)


async def main() -> None:
    sink = SmtpSink()
    sink.start()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows += await bench_profile("embedded", embedded_settings(
            Path(tmp) / "e", sink, rate_limit_per_minute=10**9, max_streams_per_client=10**6), with_edge=True)
        from moto.server import ThreadedMotoServer
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        host, port = moto.get_host_and_port()
        settings = real_settings(Path(tmp) / "r", sink, f"{host}:{port}")
        try:
            rows += await bench_profile("real", settings)
        finally:
            await drop_real_state(settings, ["auth.verification", "auth.mailer", "user.profiles"])
            moto.stop()
    sink.controller.stop()
    print(f"\n{DURATION:.0f}s per case, {CONCURRENCY} concurrent callers, one client process, 2 cores; "
          f"WatchPets rows: {CHANGES} updates fanned out to {WATCHERS} streams, req/s = deliveries/s, "
          f"p50/p99 = update call to delivery\n")
    print(f"{'profile':<9} {'call':<40} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for label, name, m in rows:
        print(f"{label:<9} {name:<40} {m['rps']:>8.0f} {m['p50']:>8.2f} {m['p99']:>8.2f}")


if __name__ == "__main__":
    asyncio.run(main())
