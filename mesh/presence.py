"""The presence port: who holds a live stream of some kind right now, across replicas (chat's
streams, so the notification worker pushes nobody what they are watching). Each replica holds a
lease per person it streams to, renews it while the stream lasts and gives it back when the last
one closes; a replica that dies without giving back loses its leases when they expire. Redis sorted
sets (member: the replica, score: when its lease expires) where replicas share a Redis, in-process
otherwise. Each hold and release also notes when the person was last seen, kept SEEN_SECONDS: a renewal
every third of a lease keeps it close even when a replica dies without giving back."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import redis.asyncio as aioredis

SEEN_SECONDS = 30 * 86400  # how long "last seen" is remembered

class Presence(Protocol):
    async def hold(self, topic: str, users: Iterable[str], holder: str, ttl_seconds: float) -> None:
        """`holder` (a replica) streams `topic` to `users` for at least `ttl_seconds` more."""

    async def release(self, topic: str, user: str, holder: str) -> None:
        """`holder` no longer streams `topic` to `user`."""

    async def present(self, topic: str, users: Sequence[str]) -> set[str]:
        """Those of `users` some live holder streams `topic` to."""

    async def last_seen(self, topic: str, users: Sequence[str]) -> dict[str, float]:
        """When each of `users` was last held or released for `topic` (the clock's seconds), for those seen
        in the last SEEN_SECONDS."""

    async def close(self) -> None: ...


class MemoryPresence:
    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._leases: dict[tuple[str, str], dict[str, float]] = {}
        self._seen: dict[tuple[str, str], float] = {}

    async def hold(self, topic: str, users: Iterable[str], holder: str, ttl_seconds: float) -> None:
        now = self._clock()
        for u in users:
            self._leases.setdefault((topic, u), {})[holder] = now + ttl_seconds
            self._seen[(topic, u)] = now

    async def release(self, topic: str, user: str, holder: str) -> None:
        self._seen[(topic, user)] = self._clock()
        leases = self._leases.get((topic, user), {})
        leases.pop(holder, None)
        if not leases:
            self._leases.pop((topic, user), None)

    async def present(self, topic: str, users: Sequence[str]) -> set[str]:
        now = self._clock()
        return {u for u in users if any(t > now for t in self._leases.get((topic, u), {}).values())}

    async def last_seen(self, topic: str, users: Sequence[str]) -> dict[str, float]:
        since = self._clock() - SEEN_SECONDS
        return {u: t for u in users if (t := self._seen.get((topic, u))) is not None and t > since}

    async def close(self) -> None:
        self._leases.clear()
        self._seen.clear()


class RedisPresence:
    def __init__(self, url: str, prefix: str = "", clock: Callable[[], float] = time.time):
        self._r = aioredis.Redis.from_url(url, socket_connect_timeout=5)
        self._prefix = prefix
        self._clock = clock  # wall clock: replicas compare each other's expiries (NTP keeps them close)

    def _key(self, topic: str, user: str) -> str:
        return f"{self._prefix}presence:{topic}:{user}"

    def _seen_key(self, topic: str, user: str) -> str:
        return f"{self._prefix}seen:{topic}:{user}"

    async def hold(self, topic: str, users: Iterable[str], holder: str, ttl_seconds: float) -> None:
        now = self._clock()
        async with self._r.pipeline(transaction=False) as p:
            for u in users:
                key = self._key(topic, u)
                p.zadd(key, {holder: now + ttl_seconds})
                p.zremrangebyscore(key, "-inf", now)  # leases of replicas that died
                p.pexpire(key, max(1, round(ttl_seconds * 1000)))
                p.set(self._seen_key(topic, u), repr(now), ex=SEEN_SECONDS)
            await p.execute()

    async def release(self, topic: str, user: str, holder: str) -> None:
        async with self._r.pipeline(transaction=False) as p:
            p.zrem(self._key(topic, user), holder)
            p.set(self._seen_key(topic, user), repr(self._clock()), ex=SEEN_SECONDS)
            await p.execute()

    async def present(self, topic: str, users: Sequence[str]) -> set[str]:
        if not users:
            return set()
        now = self._clock()
        async with self._r.pipeline(transaction=False) as p:
            for u in users:
                p.zcount(self._key(topic, u), f"({now}", "+inf")
            counts = await p.execute()
        return {u for u, n in zip(users, counts, strict=True) if n}

    async def last_seen(self, topic: str, users: Sequence[str]) -> dict[str, float]:
        if not users:
            return {}
        found = await self._r.mget([self._seen_key(topic, u) for u in users])
        return {u: float(v) for u, v in zip(users, found, strict=True) if v is not None}

    async def close(self) -> None:
        await self._r.aclose()


def make_presence(redis_url: str | None, prefix: str = "") -> Presence:
    return RedisPresence(redis_url, prefix) if redis_url else MemoryPresence()

