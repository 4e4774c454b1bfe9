"""The cache port: Redis (shared by every replica) or an in-process dict."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis


class Cache(Protocol):
    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes, ttl_seconds: float | None = None) -> None: ...
    async def delete(self, key: str) -> None: ...

    async def incr(self, key: str, window_seconds: float) -> tuple[int, float]:
        """Fixed-window counter: (count after this increment, seconds until the window resets)."""

    async def ping(self) -> None: ...
    async def close(self) -> None: ...


class MemoryCache:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._data: dict[str, tuple[bytes, float | None]] = {}

    def _live(self, key: str) -> tuple[bytes, float | None] | None:
        item = self._data.get(key)
        if item and item[1] is not None and item[1] <= self._clock():
            del self._data[key]
            return None
        return item

    async def get(self, key: str) -> bytes | None:
        item = self._live(key)
        return item[0] if item else None

    async def set(self, key: str, value: bytes, ttl_seconds: float | None = None) -> None:
        self._data[key] = (value, None if ttl_seconds is None else self._clock() + ttl_seconds)

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    async def incr(self, key: str, window_seconds: float) -> tuple[int, float]:
        item = self._live(key)
        expires = item[1] if item and item[1] is not None else self._clock() + window_seconds
        count = int(item[0]) + 1 if item else 1
        self._data[key] = (str(count).encode(), expires)
        return count, max(0.0, expires - self._clock())

    async def ping(self) -> None:
        pass

    async def close(self) -> None:
        pass


# One round trip, atomic across replicas: the first hit of a window sets its expiry.
_INCR = """
local n = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('PTTL', KEYS[1])}
"""


class RedisCache:
    def __init__(self, url: str, prefix: str = "", max_connections: int = 64):
        # A blocking pool makes bursts wait for a connection; the default pool raises instead.
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=5)
        self._r = aioredis.Redis(connection_pool=pool)
        self._prefix = prefix
        self._incr = self._r.register_script(_INCR)

    async def get(self, key: str) -> bytes | None:
        return await self._r.get(self._prefix + key)

    async def set(self, key: str, value: bytes, ttl_seconds: float | None = None) -> None:
        await self._r.set(self._prefix + key, value, px=int(ttl_seconds * 1000) if ttl_seconds else None)

    async def delete(self, key: str) -> None:
        await self._r.delete(self._prefix + key)

    async def incr(self, key: str, window_seconds: float) -> tuple[int, float]:
        count, pttl = await self._incr(keys=[self._prefix + key], args=[max(1, int(window_seconds * 1000))])
        return int(count), max(0, int(pttl)) / 1000

    async def ping(self) -> None:
        await self._r.ping()

    async def close(self) -> None:
        await self._r.aclose()


def make_cache(redis_url: str | None, prefix: str = "") -> Cache:
    return RedisCache(redis_url, prefix) if redis_url else MemoryCache()
