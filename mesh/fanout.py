"""The fan-out port: live, best-effort messages to every replica listening on a channel (chat's
events to the streams each replica holds). Redis pub/sub where replicas share a Redis (the real
profile), in-process otherwise. Nothing is stored: a listener that was away misses what was said
meanwhile and is told so (on_gap), so it can catch up from storage."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# Called with each message's bytes, on the event loop, in the order published by one publisher.
Receiver = Callable[[bytes], None]


class Fanout(Protocol):
    async def publish(self, channel: str, data: bytes) -> None:
        """Sends to every current listener of `channel`, on any replica; raises if it cannot be sent."""

    async def listen(self, channel: str, receiver: Receiver, on_gap: Callable[[], None]) -> None:
        """From now on, `receiver` gets every message published on `channel`; returns once listening.
        `on_gap` is called when messages may have been missed (the connection was lost and is back)."""

    async def close(self) -> None: ...


class InProcessFanout:
    """One process: every listener hears every message at once; nothing is ever missed."""

    def __init__(self) -> None:
        self._receivers: dict[str, list[Receiver]] = {}

    async def publish(self, channel: str, data: bytes) -> None:
        for receiver in self._receivers.get(channel, ()):
            try:
                receiver(data)
            except Exception:
                log.exception("fan-out receiver failed on %s", channel)

    async def listen(self, channel: str, receiver: Receiver, on_gap: Callable[[], None]) -> None:
        self._receivers.setdefault(channel, []).append(receiver)

    async def close(self) -> None:
        self._receivers.clear()


class RedisFanout:
    """Redis pub/sub: one subscriber connection per process, reconnected when lost (listeners are then
    told of the gap), and the shared pool for publishing."""

    RECONNECT_SECONDS = 0.5

    def __init__(self, url: str, prefix: str = ""):
        self._url = url
        self._prefix = prefix
        self._publisher = aioredis.Redis.from_url(url, socket_connect_timeout=5)
        self._receivers: dict[str, list[tuple[Receiver, Callable[[], None]]]] = {}
        self._task: asyncio.Task | None = None
        self._subscribed = asyncio.Event()
        self._pubsub: aioredis.client.PubSub | None = None

    async def publish(self, channel: str, data: bytes) -> None:
        await self._publisher.publish(self._prefix + channel, data)

    async def listen(self, channel: str, receiver: Receiver, on_gap: Callable[[], None]) -> None:
        self._receivers.setdefault(channel, []).append((receiver, on_gap))
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="fanout:redis")
        elif self._pubsub is not None:
            await self._pubsub.subscribe(self._prefix + channel)
        await self._subscribed.wait()

    async def _run(self) -> None:
        first = True
        while True:
            client = aioredis.Redis.from_url(self._url, socket_connect_timeout=5)
            try:
                self._pubsub = client.pubsub(ignore_subscribe_messages=True)
                await self._pubsub.subscribe(*(self._prefix + c for c in self._receivers))
                if not first:  # what was published while the connection was down is gone
                    for entries in list(self._receivers.values()):
                        for _, on_gap in entries:
                            on_gap()
                first = False
                self._subscribed.set()
                async for message in self._pubsub.listen():
                    if message["type"] != "message":
                        continue
                    channel = message["channel"].decode()[len(self._prefix):]
                    for receiver, _ in self._receivers.get(channel, ()):
                        try:
                            receiver(message["data"])
                        except Exception:
                            log.exception("fan-out receiver failed on %s", channel)
            except (RedisError, OSError):
                log.warning("fan-out connection to Redis lost; reconnecting", exc_info=True)
                await asyncio.sleep(self.RECONNECT_SECONDS)
            finally:
                self._pubsub = None
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._publisher.aclose()


def make_fanout(redis_url: str | None, prefix: str = "") -> Fanout:
    return RedisFanout(redis_url, prefix) if redis_url else InProcessFanout()
