"""The cache port: Redis (shared by every replica) or an in-process dict."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

T = TypeVar("T")
R = TypeVar("R")


class Cache(Protocol):
    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes, ttl_seconds: float | None = None) -> None: ...
    async def delete(self, key: str) -> None: ...

    async def incr(self, key: str, window_seconds: float) -> tuple[int, float]:
        """Fixed-window counter: the first increment starts a window of `window_seconds`, after which
        the key expires. Returns (count after this increment, seconds until the window resets)."""

    async def decr(self, key: str) -> None:
        """Gives back one increment of the current window: a live counter goes down by one, never below
        zero, and keeps its expiry; a missing or expired counter stays missing."""

    async def add_member(self, key: str, member: str, ttl_seconds: float) -> None:
        """Adds `member` to the set at `key` for `ttl_seconds` (each member expires on its own; adding a
        member again never shortens its life). The set goes with its last member."""

    async def members(self, key: str) -> dict[str, float]:
        """The live members of the set at `key`, each with the seconds it has left."""

    async def ping(self) -> None:
        """Raises if the backend is unreachable."""

    async def close(self) -> None: ...


class MemoryCache:
    """One process only: fine for a single replica and for tests."""

    # Expired keys nobody reads again (one per client IP, say) would otherwise pile up forever.
    SWEEP_EVERY_SECONDS = 60.0

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._data: dict[str, tuple[bytes, float | None]] = {}
        self._sets: dict[str, dict[str, float]] = {}  # key -> member -> when it expires
        self._next_sweep = clock() + self.SWEEP_EVERY_SECONDS

    def _live(self, key: str) -> tuple[bytes, float | None] | None:
        item = self._data.get(key)
        if item and item[1] is not None and item[1] <= self._clock():
            del self._data[key]
            return None
        return item

    def _store(self, key: str, value: bytes, expires: float | None) -> None:
        now = self._clock()
        if now >= self._next_sweep:
            self._data = {k: v for k, v in self._data.items() if v[1] is None or v[1] > now}
            self._next_sweep = now + self.SWEEP_EVERY_SECONDS
        self._data[key] = (value, expires)

    async def get(self, key: str) -> bytes | None:
        item = self._live(key)
        return item[0] if item else None

    async def set(self, key: str, value: bytes, ttl_seconds: float | None = None) -> None:
        self._store(key, bytes(value), None if ttl_seconds is None else self._clock() + ttl_seconds)

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    async def incr(self, key: str, window_seconds: float) -> tuple[int, float]:
        # No await in here, so the read-modify-write is atomic on the event loop.
        item = self._live(key)
        count = int(item[0]) + 1 if item else 1
        expires = item[1] if item and item[1] is not None else self._clock() + window_seconds
        self._store(key, str(count).encode(), expires)
        return count, max(0.0, expires - self._clock())

    async def decr(self, key: str) -> None:
        item = self._live(key)
        if item and int(item[0]) > 0:
            self._store(key, str(int(item[0]) - 1).encode(), item[1])

    async def add_member(self, key: str, member: str, ttl_seconds: float) -> None:
        now = self._clock()
        live = {m: e for m, e in self._sets.get(key, {}).items() if e > now}
        live[member] = max(live.get(member, now), now + ttl_seconds)
        self._sets[key] = live

    async def members(self, key: str) -> dict[str, float]:
        now = self._clock()
        return {m: e - now for m, e in self._sets.get(key, {}).items() if e > now}

    async def ping(self) -> None:
        pass

    async def close(self) -> None:
        pass


# One round trip, atomic across replicas; only the first hit of a window (a key without a TTL) sets
# the expiry, so later hits never extend the window.
_INCR = """
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = redis.call('PTTL', KEYS[1])
end
return {n, ttl}
"""

# DECR keeps the key's expiry; a missing key is left alone rather than started at -1.
_DECR = """
local n = tonumber(redis.call('GET', KEYS[1]))
if n and n > 0 then
  redis.call('DECR', KEYS[1])
end
"""


# A sorted set scored by each member's expiry on the server's clock (replicas' clocks may differ): the
# expired are dropped on each add, and the key lives as long as its longest-lived member.
_ADD_MEMBER = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], 'GT', now + ttl, ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
"""

# Each live member and the milliseconds it has left.
_MEMBERS = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local found = redis.call('ZRANGE', KEYS[1], '(' .. now, '+inf', 'BYSCORE', 'WITHSCORES')
local left = {}
for i = 1, #found, 2 do
  left[#left + 1] = found[i]
  left[#left + 1] = tonumber(found[i + 1]) - now
end
return left
"""


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))  # Redis rejects a zero or negative expiry


class GroupCommit(Generic[T, R]):
    """One round trip at a time: the calls that arrive while one is in flight go together in the next,
    in the order they came, each caller getting its own result. run(items) returns a result or an
    exception per item; if it raises, that batch's callers get the error, and the next batch goes on."""

    def __init__(self, run: Callable[[list[T]], Awaitable[list[R | Exception]]]):
        self._run = run
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def __call__(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._sender is None:
            # A task of its own: a caller cancelled mid-flight must not cancel the others' round trip.
            self._sender = asyncio.create_task(self._send())
        return await future

    async def _send(self) -> None:
        try:
            while self._pending:
                # A caller that left before its batch was sent is not counted.
                batch = [(item, f) for item, f in self._pending if not f.done()]
                self._pending = []
                if not batch:
                    continue
                try:
                    results = await self._run([item for item, _ in batch])
                except Exception as e:
                    results = [e] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # its caller was cancelled meanwhile
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._sender = None


class RedisCache:
    def __init__(self, url: str, prefix: str = ""):
        # redis-py's default pool raises once 100 connections are busy; a burst of requests should
        # queue for a connection instead. The connect timeout lets ping() fail in time for a probe.
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=64, timeout=5,
                                                        socket_connect_timeout=5)
        self._r = aioredis.Redis.from_pool(pool)
        self._prefix = prefix
        self._incr = self._r.register_script(_INCR)
        self._decr = self._r.register_script(_DECR)
        self._add_member = self._r.register_script(_ADD_MEMBER)
        self._members = self._r.register_script(_MEMBERS)
        # Every client of the edge counts against a window on each request: the increments go to Redis
        # batched, one pipeline per round trip rather than a round trip each.
        self._incrs = GroupCommit(self._incr_batch)

    async def get(self, key: str) -> bytes | None:
        value = await self._r.get(self._prefix + key)
        assert not isinstance(value, str), "the client is made without decode_responses"
        return value

    async def set(self, key: str, value: bytes, ttl_seconds: float | None = None) -> None:
        await self._r.set(self._prefix + key, value, px=None if ttl_seconds is None else _ms(ttl_seconds))

    async def delete(self, key: str) -> None:
        await self._r.delete(self._prefix + key)

    async def incr(self, key: str, window_seconds: float) -> tuple[int, float]:
        return await self._incrs((self._prefix + key, _ms(window_seconds)))

    async def _incr_batch(self, items: list[tuple[str, int]]) -> list[tuple[int, float] | Exception]:
        """A pipeline of one script call per key (no multi-key script: a Redis Cluster would refuse keys of
        different slots), in order; each item's own error (a key that holds no number) stays its own."""
        results = await self._evalsha_each(items)
        if missing := [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]:
            # Not loaded yet (or Redis restarted): a NOSCRIPT call did not run, so running it again counts once.
            await self._r.script_load(_INCR)
            for i, r in zip(missing, await self._evalsha_each([items[i] for i in missing]), strict=True):
                results[i] = r
        return [r if isinstance(r, Exception) else (int(r[0]), max(0, int(r[1])) / 1000) for r in results]

    async def _evalsha_each(self, items: list[tuple[str, int]]) -> list:
        pipe = self._r.pipeline(transaction=False)
        for key, window_ms in items:
            pipe.evalsha(self._incr.sha, 1, key, window_ms)
        return await pipe.execute(raise_on_error=False)

    async def decr(self, key: str) -> None:
        await self._decr(keys=[self._prefix + key])

    async def add_member(self, key: str, member: str, ttl_seconds: float) -> None:
        await self._add_member(keys=[self._prefix + key], args=[member, _ms(ttl_seconds)])

    async def members(self, key: str) -> dict[str, float]:
        found = await self._members(keys=[self._prefix + key])
        return {found[i].decode(): int(found[i + 1]) / 1000 for i in range(0, len(found), 2)}

    async def ping(self) -> None:
        await self._r.ping()

    async def close(self) -> None:
        await self._r.aclose(close_connection_pool=True)


def make_cache(redis_url: str | None, prefix: str = "") -> Cache:
    return RedisCache(redis_url, prefix) if redis_url else MemoryCache()
