"""One contract, both presence adapters (Redis must be running: unreachable fails, never skips). Time is
a fake clock for both: the Redis adapter's clock is injectable, so expiry needs no sleeping."""
from __future__ import annotations

import uuid

import pytest

from mesh.presence import SEEN_SECONDS, MemoryPresence, RedisPresence
from tests.support.clock import FakeClock
from tests.support.platform import REDIS_URL


@pytest.fixture(params=["memory", "redis"])
async def presence(request):
    clock = FakeClock()
    if request.param == "memory":
        p = MemoryPresence(clock=clock)
    else:
        clock.now = 1_000_000.0  # a wall-clock-like value; Redis scores are compared to it
        p = RedisPresence(REDIS_URL, prefix=f"test.{uuid.uuid4().hex[:8]}.", clock=clock)
    yield p, clock
    await p.close()


async def test_a_user_is_present_while_any_holder_holds_a_lease(presence):
    p, _ = presence
    await p.hold("chat", ["alice", "bob"], "replica-1", 30)
    await p.hold("chat", ["alice"], "replica-2", 30)
    assert await p.present("chat", ["alice", "bob", "carol"]) == {"alice", "bob"}
    assert await p.present("other", ["alice"]) == set(), "topics are apart"
    await p.release("chat", "alice", "replica-1")
    assert await p.present("chat", ["alice"]) == {"alice"}, "replica-2 still streams to her"
    await p.release("chat", "alice", "replica-2")
    await p.release("chat", "bob", "replica-9")  # never held: no effect
    assert await p.present("chat", ["alice", "bob"]) == {"bob"}
    assert await p.present("chat", []) == set()


async def test_a_lease_not_renewed_expires_and_renewal_keeps_it(presence):
    p, clock = presence
    await p.hold("chat", ["alice", "bob"], "replica-1", 30)
    clock.now += 20
    await p.hold("chat", ["alice"], "replica-1", 30)  # renewed: alice's stream is still open
    clock.now += 20
    assert await p.present("chat", ["alice", "bob"]) == {"alice"}, "a dead replica's lease ran out"


async def test_last_seen_is_the_last_hold_or_release_and_forgets_strangers(presence):
    p, clock = presence
    start = clock.now
    assert await p.last_seen("chat", ["alice"]) == {}, "never seen"
    await p.hold("chat", ["alice", "bob"], "replica-1", 30)
    clock.now += 10
    await p.hold("chat", ["alice"], "replica-1", 30)  # a renewal: still seen
    clock.now += 5
    await p.release("chat", "alice", "replica-1")
    assert await p.last_seen("chat", ["alice", "bob", "carol"]) == {"alice": start + 15, "bob": start}
    assert await p.last_seen("other", ["alice"]) == {}, "topics are apart"
    assert await p.last_seen("chat", []) == {}


async def test_last_seen_is_forgotten_after_a_month():
    clock = FakeClock()
    p = MemoryPresence(clock=clock)  # Redis forgets by the key's own expiry (SEEN_SECONDS), not by this clock
    await p.hold("chat", ["alice"], "replica-1", 30)
    await p.release("chat", "alice", "replica-1")
    clock.now += SEEN_SECONDS + 1
    assert await p.last_seen("chat", ["alice"]) == {}
