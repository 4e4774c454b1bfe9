"""The fan-out port, every adapter: a listener hears what is published once listen() returns, and the
Redis adapter tells its listeners at once when its connection is lost (closed, or silent past its heartbeat),
and again once it is back."""
from __future__ import annotations

import uuid

import pytest

from mesh.fanout import Fanout, InProcessFanout, RedisFanout
from tests.support.matching import until
from tests.support.platform import REDIS_URL
from tests.support.proxy import proxy_to


@pytest.fixture
async def proxy():
    async with proxy_to(("127.0.0.1", 6379)) as p:
        yield p


@pytest.fixture(params=["inprocess", "redis"])
async def fanout(request):
    f: Fanout = (InProcessFanout() if request.param == "inprocess"
                 else RedisFanout(REDIS_URL, f"test:{uuid.uuid4().hex}:"))
    yield f
    await f.close()


async def test_what_is_published_once_listening_is_heard(fanout):
    got: list[bytes] = []
    await fanout.listen("a", got.append, lambda: None, lambda: None)
    await fanout.publish("a", b"1")
    await fanout.publish("b", b"elsewhere")
    late: list[bytes] = []
    await fanout.listen("b", late.append, lambda: None)  # a second channel on the same connection
    await fanout.publish("b", b"2")

    async def heard():
        return got == [b"1"] and late == [b"2"]
    await until(heard, what="both messages heard")


async def test_a_lost_connection_is_told_at_once_and_its_return_as_a_gap(proxy):
    # Everything through the proxy: the publisher shares the subscriber's fate, as when Redis itself goes.
    fanout = RedisFanout(f"redis://127.0.0.1:{proxy.port}/0", f"test:{uuid.uuid4().hex}:")
    got: list[bytes] = []
    told: list[str] = []
    await fanout.listen("a", got.append, lambda: told.append("gap"), lambda: told.append("lost"))
    try:
        proxy.down()

        async def lost():
            return told == ["lost"]
        await until(lost, what="the loss told while Redis is still unreachable")
        proxy.up()

        async def back():
            return told == ["lost", "gap"]
        await until(back, what="the gap told once listening again")
        await fanout.publish("a", b"after")

        async def heard():
            return got == [b"after"]
        await until(heard, what="a message after the reconnection heard")
    finally:
        await fanout.close()


async def test_a_silent_connection_is_found_lost_by_its_heartbeat(proxy, monkeypatch):
    monkeypatch.setattr(RedisFanout, "HEARTBEAT_SECONDS", 0.2)
    fanout = RedisFanout(f"redis://127.0.0.1:{proxy.port}/0", f"test:{uuid.uuid4().hex}:")
    told: list[str] = []
    await fanout.listen("a", lambda data: None, lambda: told.append("gap"), lambda: told.append("lost"))
    try:
        proxy.stall()  # a partition: no reset, no close, just silence

        async def lost():
            return told == ["lost"]
        await until(lost, what="the silent connection taken as lost")
        proxy.up()

        async def back():
            return told == ["lost", "gap"]
        await until(back, what="the gap told once listening again")
    finally:
        await fanout.close()
