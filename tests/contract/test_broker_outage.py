"""Cut the RabbitMQ connections (publisher and consumer) while events flow: none lost, none applied twice."""
from __future__ import annotations

import asyncio
import random

import pytest

from mesh.events import Relay, emit, subscribe
from petplatform.auth.v1 import events_pb2 as auth_events
from tests.support.databases import drop_database
from tests.support.events import applied, applied_counts, drop_bus, make_bus, make_db
from tests.support.proxy import proxy_to

EVENTS = 300


@pytest.fixture
async def proxy():
    async with proxy_to(("127.0.0.1", 5672)) as p:
        yield p


async def test_no_event_lost_or_applied_twice_across_broker_outages(proxy, tmp_path):
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/?reconnect_interval=0.3"
    db = await make_db("postgres", tmp_path)
    bus = await make_bus("rabbit", url)

    async def effect(s, event: auth_events.UserCreated):
        await s.execute(applied.insert().values(event_id=event.user))

    await subscribe(bus, db, "c.outage", {auth_events.UserCreated: effect})
    relay = Relay(db, bus, poll_seconds=0.2)
    relay.start()
    ids: list[str] = []

    async def produce():
        rnd = random.Random(1)
        for i in range(EVENTS):
            async with db.transaction() as s:
                await emit(s, auth_events.UserCreated(user=f"users/{i}"))
            ids.append(f"users/{i}")
            await asyncio.sleep(rnd.uniform(0, 0.01))

    async def break_things():
        for _ in range(3):
            await asyncio.sleep(0.4)
            await proxy.cut(down_for=0.5)

    try:
        await asyncio.gather(produce(), break_things())
        counts = {}
        for _ in range(600):  # bounded: 60 s at most
            counts = await applied_counts(db)
            if len(counts) == EVENTS:
                break
            await asyncio.sleep(0.1)
        assert proxy.cuts == 3
        assert set(counts) == set(ids), f"{EVENTS - len(counts)} events lost"
        assert set(counts.values()) == {1}, "some event was applied twice"
        assert await bus.dead_letters("c.outage") == []
    finally:
        await relay.stop()
        await drop_bus(bus)
        await drop_database(db)


async def test_a_broadcast_subscriber_is_told_it_may_have_missed_events(proxy):
    bus = await make_bus("rabbit", f"amqp://guest:guest@127.0.0.1:{proxy.port}/?reconnect_interval=0.3")
    got, gaps = [], []

    async def handler(body):
        got.append(body)
    await bus.subscribe_broadcast(["pet.updated"], handler, on_gap=lambda: gaps.append(1))
    try:
        await bus.publish("pet.updated", b"before", "1")
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.05)
        await proxy.cut(down_for=0.5)
        for _ in range(200):
            if gaps:
                break
            await asyncio.sleep(0.05)
        assert gaps == [1], "the reconnection is reported"
        await bus.publish("pet.updated", b"after", "2")
        for _ in range(100):
            if len(got) == 2:
                break
            await asyncio.sleep(0.05)
        assert got == [b"before", b"after"], "the broadcast queue is declared again after the reconnection"
    finally:
        await drop_bus(bus)
