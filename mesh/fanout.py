"""The fan-out port: live, best-effort messages to every replica listening on a channel (chat's
events to the streams each replica holds). Redis pub/sub where replicas share a Redis (the real
profile), in-process otherwise. Nothing is stored: a listener that was away misses what was said
meanwhile and is told so (on_gap), so it can catch up from storage."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError, RedisError

log = logging.getLogger(__name__)

# Called with each message's bytes, on the event loop, in the order published by one publisher.
Receiver = Callable[[bytes], None]


class Fanout(Protocol):
    async def publish(self, channel: str, data: bytes) -> None:
        """Sends to every current listener of `channel`, on any replica; raises if it cannot be sent."""

    async def listen(self, channel: str, receiver: Receiver, on_gap: Callable[[], None],
                     on_lost: Callable[[], None] | None = None) -> None:
        """From now on, `receiver` gets every message published on `channel`; returns once listening (a
        message published after it returns is heard). `on_lost` is called as soon as the connection is
        known lost, `on_gap` once it is back (messages may have been missed meanwhile)."""

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

    async def listen(self, channel: str, receiver: Receiver, on_gap: Callable[[], None],
                     on_lost: Callable[[], None] | None = None) -> None:
        self._receivers.setdefault(channel, []).append(receiver)

    async def close(self) -> None:
        self._receivers.clear()


@dataclasses.dataclass(frozen=True)
class _Listener:
    receiver: Receiver
    on_gap: Callable[[], None]
    on_lost: Callable[[], None] | None


class RedisFanout:
    """Redis pub/sub: one subscriber connection per process, reconnected when lost (listeners are told at
    once, and again once it is back), and the shared pool for publishing."""

    RECONNECT_SECONDS = 0.5
    # Idle this long, the connection is pinged; silent for twice this, it is taken as lost.
    HEARTBEAT_SECONDS = 5.0

    def __init__(self, url: str, prefix: str = ""):
        self._url = url
        self._prefix = prefix
        self._publisher = aioredis.Redis.from_url(url, socket_connect_timeout=5)
        self._listeners: dict[str, list[_Listener]] = {}
        # Per channel: set once Redis has confirmed the subscription on the current connection.
        self._subscribed: dict[str, asyncio.Event] = {}
        self._task: asyncio.Task | None = None
        self._pubsub: aioredis.client.PubSub | None = None

    async def publish(self, channel: str, data: bytes) -> None:
        await self._publisher.publish(self._prefix + channel, data)

    async def listen(self, channel: str, receiver: Receiver, on_gap: Callable[[], None],
                     on_lost: Callable[[], None] | None = None) -> None:
        self._listeners.setdefault(channel, []).append(_Listener(receiver, on_gap, on_lost))
        subscribed = self._subscribed.setdefault(channel, asyncio.Event())
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="fanout:redis")
        elif self._pubsub is not None:
            await self._pubsub.subscribe(self._prefix + channel)
        await subscribed.wait()

    async def _run(self) -> None:
        missed = False  # the connection was lost since the listeners last heard everything
        while True:
            client = aioredis.Redis.from_url(self._url, socket_connect_timeout=5)
            try:
                self._pubsub = client.pubsub()
                await self._pubsub.subscribe(*(self._prefix + c for c in self._listeners))
                pinged = False
                while True:
                    message = await self._pubsub.get_message(timeout=self.HEARTBEAT_SECONDS)
                    if message is None:
                        if pinged:  # a partition, or a Redis that hangs: nothing would ever say so
                            raise RedisConnectionError("Redis did not answer the fan-out's ping")
                        await self._pubsub.ping()
                        pinged = True
                        continue
                    pinged = False
                    if message["type"] == "subscribe":
                        channel = message["channel"].decode()[len(self._prefix):]
                        self._subscribed[channel].set()
                        if missed and all(e.is_set() for e in self._subscribed.values()):
                            missed = False  # what was published while the connection was down is gone
                            self._tell(lambda entry: entry.on_gap())
                    elif message["type"] == "message":
                        channel = message["channel"].decode()[len(self._prefix):]
                        for entry in self._listeners.get(channel, ()):
                            try:
                                entry.receiver(message["data"])
                            except Exception:
                                log.exception("fan-out receiver failed on %s", channel)
            except (RedisError, OSError):
                log.warning("fan-out connection to Redis lost; reconnecting", exc_info=True)
                if not missed:  # once per outage, however many reconnections fail
                    missed = True
                    for event in self._subscribed.values():
                        event.clear()
                    self._tell(lambda entry: entry.on_lost and entry.on_lost())
                await asyncio.sleep(self.RECONNECT_SECONDS)
            finally:
                self._pubsub = None
                with contextlib.suppress(Exception):
                    await client.aclose()

    def _tell(self, call: Callable[[_Listener], object]) -> None:
        for entries in list(self._listeners.values()):
            for entry in entries:
                try:
                    call(entry)
                except Exception:
                    log.exception("fan-out listener failed to take a gap or a loss")

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._publisher.aclose()


def make_fanout(redis_url: str | None, prefix: str = "") -> Fanout:
    return RedisFanout(redis_url, prefix) if redis_url else InProcessFanout()
