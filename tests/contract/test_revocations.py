"""The revocation list of each process: answered from memory in the steady state, from the cache whenever
memory may be incomplete (before it is loaded, while the fan-out is down), reloaded after an outage, and
bounded (a revocation is dropped once its tokens have expired). Replicas share one Redis, as in the real
profile; one of them reaches Redis's pub/sub through a proxy that can be cut."""
from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from mesh.cache import Cache, MemoryCache, RedisCache
from mesh.fanout import InProcessFanout, RedisFanout
from mesh.revocation import Revocations
from tests.support.clock import FakeClock
from tests.support.matching import until
from tests.support.platform import REDIS_URL
from tests.support.proxy import proxy_to


def count_reads(cache: Cache, monkeypatch) -> Counter:
    """Counts the cache's reads (per-call revocation checks), key by key."""
    reads: Counter = Counter()
    real_get = cache.get

    async def get(key: str) -> bytes | None:
        reads[key] += 1
        return await real_get(key)
    monkeypatch.setattr(cache, "get", get)
    return reads


async def from_memory(r: Revocations, reads: Counter) -> bool:
    """Whether a check is answered without reading the cache."""
    before = sum(reads.values())
    await r.is_revoked("probe")
    return sum(reads.values()) == before


@dataclass
class Replica:
    """A process's revocations: its own Redis connections, the replicas' shared keys and channels."""
    cache: RedisCache
    fanout: RedisFanout
    revocations: Revocations


def replica(prefix: str, fanout_url: str = REDIS_URL, refresh_seconds: float = 60) -> Replica:
    cache, fanout = RedisCache(REDIS_URL, prefix), RedisFanout(fanout_url, prefix)
    return Replica(cache, fanout, Revocations(cache, fanout, refresh_seconds=refresh_seconds))


async def close(*replicas: Replica) -> None:
    for r in replicas:
        await r.revocations.close()
        await r.fanout.close()
        await r.cache.close()


@pytest.fixture
async def redis_prefix():
    prefix = f"test:{uuid.uuid4().hex}:"
    yield prefix
    raw = aioredis.from_url(REDIS_URL)
    keys = [k async for k in raw.scan_iter(match=prefix + "*")]
    if keys:
        await raw.delete(*keys)
    await raw.aclose()


@pytest.fixture
async def proxy():
    async with proxy_to(("127.0.0.1", 6379)) as p:
        yield p


async def test_a_revocation_reaches_another_replica_which_then_reads_nothing_per_check(redis_prefix, monkeypatch):
    a, b = replica(redis_prefix), replica(redis_prefix)
    reads = count_reads(b.cache, monkeypatch)
    a.revocations.start()
    b.revocations.start()
    try:
        await until(lambda: from_memory(b.revocations, reads), what="b answering from memory")
        reads.clear()
        await a.revocations.revoke("s1", ttl_seconds=60)
        await until(lambda: b.revocations.is_revoked("s1"), what="the revocation heard on b")
        for _ in range(50):
            assert not await b.revocations.is_revoked("s2")
            assert await b.revocations.is_revoked("s1")
        assert not reads, "no per-check read in the steady state"
    finally:
        await close(a, b)


async def test_a_replica_that_starts_later_loads_the_current_revocations(redis_prefix, monkeypatch):
    a = replica(redis_prefix)
    await a.revocations.revoke("early", ttl_seconds=60)
    b = replica(redis_prefix)
    reads = count_reads(b.cache, monkeypatch)
    assert await b.revocations.is_revoked("early"), "before it is loaded, each check reads the cache"
    b.revocations.start()
    try:
        await until(lambda: from_memory(b.revocations, reads), what="b answering from memory")
        reads.clear()
        assert await b.revocations.is_revoked("early") and not reads
    finally:
        await close(a, b)


async def test_during_a_fanout_outage_checks_read_redis_and_after_it_the_list_is_reloaded(
        redis_prefix, proxy, monkeypatch):
    a = replica(redis_prefix)
    b = replica(redis_prefix, fanout_url=f"redis://127.0.0.1:{proxy.port}/0")  # only b's pub/sub can be cut
    reads = count_reads(b.cache, monkeypatch)
    a.revocations.start()
    b.revocations.start()
    try:
        await until(lambda: from_memory(b.revocations, reads), what="b answering from memory")
        proxy.down()

        async def reading() -> bool:
            return not await from_memory(b.revocations, reads)
        await until(reading, what="b checking in Redis as soon as its fan-out is lost")
        await a.revocations.revoke("during", ttl_seconds=60)  # b misses the message
        assert await b.revocations.is_revoked("during"), "the revocation applies during the outage"
        proxy.up()
        await until(lambda: from_memory(b.revocations, reads), what="b answering from memory again")
        reads.clear()
        assert await b.revocations.is_revoked("during") and not reads, "reloaded after the outage"
    finally:
        await close(a, b)


async def test_a_revocation_whose_message_never_went_out_arrives_with_the_next_refresh(redis_prefix, monkeypatch):
    a, b = replica(redis_prefix), replica(redis_prefix, refresh_seconds=0.05)
    reads = count_reads(b.cache, monkeypatch)
    a.revocations.start()
    b.revocations.start()
    try:
        await until(lambda: from_memory(b.revocations, reads), what="b answering from memory")

        async def cut(channel: str, data: bytes) -> None:
            raise ConnectionError("the publish is lost")
        monkeypatch.setattr(a.fanout, "publish", cut)
        with pytest.raises(ConnectionError):
            await a.revocations.revoke("unsaid", ttl_seconds=60)  # listed, never told
        reads.clear()
        await until(lambda: b.revocations.is_revoked("unsaid"), what="b learning it from the list")
        assert not reads, "from memory: b stayed connected throughout"
    finally:
        await close(a, b)


async def test_a_revocation_is_dropped_once_its_tokens_have_expired():
    clock = FakeClock()
    r = Revocations(MemoryCache(clock), InProcessFanout(), clock)
    r.start()
    try:
        await r.revoke("old", ttl_seconds=10)
        assert await r.is_revoked("old")
        clock.now += 11
        assert not await r.is_revoked("old")
        clock.now += Revocations.SWEEP_EVERY_SECONDS
        await r.revoke("new", ttl_seconds=10)
        assert r.held() == 1, "the expired revocation is gone from memory"
    finally:
        await r.close()
