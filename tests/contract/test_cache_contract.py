"""One contract, every cache adapter. Redis must be running: an unreachable Redis fails, never skips."""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from mesh.cache import Cache, MemoryCache, RedisCache, make_cache
from tests.support.clock import FakeClock
from tests.support.proxy import proxy_to
from tests.support.platform import REDIS_URL

REDIS_HOST, REDIS_PORT = REDIS_URL.removeprefix("redis://").split("/")[0].split(":")


@dataclass
class Harness:
    cache: Cache
    new_cache: Callable[[], Cache]  # another client of the same backend, with its own prefix
    wait: Callable[[float], Awaitable[None]]  # lets time pass: a fake clock for memory, real sleep for Redis


async def _redis_or_fail(prefix: str) -> RedisCache:
    cache = RedisCache(REDIS_URL, prefix)
    try:
        await cache.ping()
    except Exception as e:
        await cache.close()
        pytest.fail(f"Redis at {REDIS_URL} is unreachable ({e!r}); the cache contract needs it running")
    return cache


@pytest.fixture(params=["memory", "redis"])
async def h(request):
    if request.param == "memory":
        clock = FakeClock()

        async def advance(seconds: float) -> None:
            clock.now += seconds

        yield Harness(MemoryCache(clock), lambda: MemoryCache(clock), advance)
        return

    prefixes = [f"test:{uuid.uuid4().hex}:"]
    cache = await _redis_or_fail(prefixes[0])
    others: list[RedisCache] = []

    def new_cache() -> Cache:
        prefixes.append(f"test:{uuid.uuid4().hex}:")
        others.append(RedisCache(REDIS_URL, prefixes[-1]))
        return others[-1]

    yield Harness(cache, new_cache, asyncio.sleep)
    for c in [cache, *others]:
        await c.close()
    raw = aioredis.from_url(REDIS_URL)
    for prefix in prefixes:
        keys = [k async for k in raw.scan_iter(match=prefix + "*")]
        if keys:
            await raw.delete(*keys)
    await raw.aclose()


async def test_ping(h):
    await h.cache.ping()


async def test_missing_key_reads_none_and_deletes_quietly(h):
    assert await h.cache.get("nope") is None
    await h.cache.delete("nope")


async def test_set_get_delete(h):
    await h.cache.set("k", b"v1")
    assert await h.cache.get("k") == b"v1"
    await h.cache.set("k", b"v2")
    assert await h.cache.get("k") == b"v2"
    await h.cache.delete("k")
    assert await h.cache.get("k") is None


async def test_binary_values_roundtrip(h):
    value = bytes(range(256)) * 4 + b"\x00\r\n"
    await h.cache.set("bin", value)
    assert await h.cache.get("bin") == value
    await h.cache.set("empty", b"")
    assert await h.cache.get("empty") == b""


async def test_ttl_expiry(h):
    await h.cache.set("short", b"x", ttl_seconds=0.3)
    await h.cache.set("forever", b"y")
    assert await h.cache.get("short") == b"x"
    await h.wait(0.45)
    assert await h.cache.get("short") is None
    assert await h.cache.get("forever") == b"y"


async def test_set_without_ttl_clears_an_earlier_ttl(h):
    await h.cache.set("k", b"x", ttl_seconds=0.3)
    await h.cache.set("k", b"y")
    await h.wait(0.45)
    assert await h.cache.get("k") == b"y"


async def test_incr_counts_within_one_window(h):
    count, remaining = await h.cache.incr("hits", 10)
    assert count == 1 and 9 < remaining <= 10
    assert (await h.cache.incr("hits", 10))[0] == 2
    assert (await h.cache.incr("hits", 10))[0] == 3
    assert await h.cache.get("hits") == b"3"  # the counter is readable with get()


async def test_incr_does_not_extend_the_window(h):
    await h.cache.incr("hits", 2)
    await h.wait(0.3)  # well inside the window, however slow the machine
    count, remaining = await h.cache.incr("hits", 2)
    assert count == 2 and 0 < remaining <= 1.71


async def test_incr_window_resets(h):
    await h.cache.incr("hits", 0.3)
    await h.cache.incr("hits", 0.3)
    await h.wait(0.45)
    assert await h.cache.get("hits") is None
    count, remaining = await h.cache.incr("hits", 0.3)
    assert count == 1 and 0.2 < remaining <= 0.3


async def test_incr_is_atomic_under_concurrency(h):
    results = await asyncio.gather(*(h.cache.incr("burst", 30) for _ in range(200)))
    assert sorted(c for c, _ in results) == list(range(1, 201))
    assert all(0 < r <= 30 for _, r in results)


async def test_concurrent_increments_count_each_key_in_call_order(h):
    keys = ["a", "b", "c"] * 50
    results = await asyncio.gather(*(h.cache.incr(k, 30) for k in keys))
    for key in "abc":
        assert [c for k, (c, _) in zip(keys, results, strict=True) if k == key] == list(range(1, 51))
    assert all(0 < r <= 30 for _, r in results)


async def test_an_increment_that_fails_fails_only_its_caller(h):
    await h.cache.set("word", b"not a number")
    results = await asyncio.gather(h.cache.incr("hits", 10), h.cache.incr("word", 10), h.cache.incr("hits", 10),
                                   return_exceptions=True)
    assert results[0][0] == 1 and isinstance(results[1], Exception) and results[2][0] == 2
    assert await h.cache.get("word") == b"not a number"


async def test_incr_on_a_plain_key_starts_a_window(h):
    await h.cache.set("k", b"5")
    count, remaining = await h.cache.incr("k", 0.3)
    assert count == 6 and 0 < remaining <= 0.3
    await h.wait(0.45)
    assert await h.cache.get("k") is None


async def test_decr_gives_back_one_hit_and_keeps_the_window(h):
    await h.cache.incr("hits", 1)
    await h.cache.incr("hits", 1)
    await h.cache.decr("hits")
    assert await h.cache.get("hits") == b"1"
    await h.wait(0.3)  # well inside the window, however slow the machine
    count, remaining = await h.cache.incr("hits", 1)
    assert count == 2 and 0 < remaining <= 0.71  # the window did not restart
    await h.wait(0.8)
    assert await h.cache.get("hits") is None


async def test_decr_never_goes_below_zero_nor_starts_a_counter(h):
    await h.cache.decr("nothing")
    assert await h.cache.get("nothing") is None
    await h.cache.incr("once", 10)
    for _ in range(3):
        await h.cache.decr("once")
    assert await h.cache.get("once") == b"0"
    assert (await h.cache.incr("once", 10))[0] == 1


async def test_decr_after_the_window_ended_leaves_nothing(h):
    await h.cache.incr("hits", 0.3)
    await h.wait(0.45)
    await h.cache.decr("hits")
    assert await h.cache.get("hits") is None
    assert (await h.cache.incr("hits", 0.3))[0] == 1


async def test_decr_is_atomic_under_concurrency(h):
    await asyncio.gather(*(h.cache.incr("burst", 30) for _ in range(100)))
    await asyncio.gather(*(h.cache.decr("burst") for _ in range(40)))
    assert await h.cache.get("burst") == b"60"


async def test_set_members_expire_each_on_its_own(h):
    assert await h.cache.members("set") == {}
    await h.cache.add_member("set", "short", 0.3)
    await h.cache.add_member("set", "long", 30)
    left = await h.cache.members("set")
    assert set(left) == {"short", "long"} and 0 < left["short"] <= 0.3 and 29 < left["long"] <= 30
    await h.wait(0.45)
    assert set(await h.cache.members("set")) == {"long"}
    await h.cache.add_member("set", "long", 1)  # adding again never shortens a member's life
    assert (await h.cache.members("set"))["long"] > 29


async def test_a_set_goes_with_its_last_member(h):
    await h.cache.add_member("set", "a", 0.3)
    await h.wait(0.45)
    assert await h.cache.members("set") == {}
    if isinstance(h.cache, RedisCache):  # nothing left behind in Redis either
        raw = aioredis.from_url(REDIS_URL)
        try:
            assert not await raw.exists(h.cache._prefix + "set")
        finally:
            await raw.aclose()


async def test_prefixes_isolate_clients(h):
    other = h.new_cache()
    await h.cache.set("shared-name", b"mine")
    assert await other.get("shared-name") is None
    await other.delete("shared-name")
    assert await h.cache.get("shared-name") == b"mine"


async def test_make_cache_picks_the_adapter():
    assert isinstance(make_cache(None), MemoryCache)
    cache = make_cache(REDIS_URL, prefix="p:")
    assert isinstance(cache, RedisCache)
    await cache.close()


async def test_redis_ping_raises_when_unreachable():
    cache = RedisCache("redis://127.0.0.1:1/0")
    try:
        with pytest.raises(aioredis.ConnectionError):
            await cache.ping()
    finally:
        await cache.close()


async def test_memory_cache_forgets_expired_keys_nobody_reads():
    clock = FakeClock()
    cache = MemoryCache(clock)
    for i in range(100):
        await cache.incr(f"ip:{i}", 1)
    await cache.set("kept", b"x")
    clock.now += MemoryCache.SWEEP_EVERY_SECONDS
    await cache.set("trigger", b"y")
    assert set(cache._data) == {"kept", "trigger"}


@pytest.fixture
async def proxied():
    async with proxy_to((REDIS_HOST, int(REDIS_PORT))) as proxy:
        cache = RedisCache(f"redis://127.0.0.1:{proxy.port}/0", f"test:{uuid.uuid4().hex}:")
        await cache.ping()
        proxy.connections = 0
        yield proxy, cache
        await cache.close()


async def test_redis_increments_in_flight_together_share_one_connection(proxied):
    proxy, cache = proxied
    results = await asyncio.gather(*(cache.incr("burst", 30) for _ in range(100)))
    assert [c for c, _ in results] == list(range(1, 101))
    # One request at a time, on the connection the ping left in the pool (a request each would take 100).
    assert proxy.connections == 0
    await cache.delete("burst")


async def test_redis_a_failed_batch_fails_only_its_callers(proxied):
    proxy, cache = proxied
    proxy.stall()
    first = asyncio.create_task(cache.incr("hits", 30))
    await proxy.dropped.wait()  # the first batch is in flight, and lost
    later = [asyncio.create_task(cache.incr("hits", 30)) for _ in range(3)]
    await asyncio.sleep(0)  # they queue behind it (no timing: one turn of the loop runs each task's first step)
    proxy.down()  # the first batch's connection is cut...
    proxy.up()  # ...and the next one may connect
    with pytest.raises(aioredis.ConnectionError):
        await first
    # The next batch went out on a new connection; the failed one never reached Redis.
    assert [c for c, _ in await asyncio.gather(*later)] == [1, 2, 3]
    await cache.delete("hits")
