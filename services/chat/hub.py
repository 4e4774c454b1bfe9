"""This replica's chat streams, and the fan-out that feeds them from every replica.

A change is published once on the fan-out channel with the users it is for; each replica hands it
to the streams those users hold there. Each stream has a bounded buffer: when it is full, typing and
presence are dropped, and a message is dropped too but its room is marked stale, so the stream reads
what it missed from storage by sequence (messages are never lost, only late). Receipts, room changes
and tombstones that find the buffer far over its bound end the stream with STREAM_BEHIND: the client
resumes from its positions."""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

import grpc
from prometheus_client import Gauge

from mesh import errors
from mesh.fanout import Fanout
from mesh.presence import Presence
from petplatform.chat.v1 import chat_pb2

log = logging.getLogger(__name__)

CHANNEL = "chat.events"
BUFFER = 256  # events a stream may hold before it drops ephemeral ones and reads messages from storage
OPEN_STREAMS = Gauge("petplatform_chat_streams", "Open chat streams (Connect and StreamEvents)")

EPHEMERAL = frozenset({"typing", "presence"})
# Whoever holds a chat stream is watching all their rooms (a stream carries every room of its user):
# the notification worker pushes them no message. Leases outlive a dead replica by at most this long.
WATCHING = "chat"  # the presence port's topic
LEASE_SECONDS = 30.0


def room_of(message_name: str) -> str:
    """`rooms/{room}/messages/{message}` -> the room id."""
    return message_name.split("/")[1]


def is_new_message(event: chat_pb2.ChatEvent) -> bool:
    return event.WhichOneof("kind") == "message" and not event.message.HasField("delete_time")


class Subscriber:
    """One open stream: its user, buffered events, rooms to read again from storage, why it ended."""

    def __init__(self, user_id: str, capacity: int = BUFFER):
        self.user_id = user_id
        self.capacity = capacity
        self.events: collections.deque[chat_pb2.ChatEvent] = collections.deque()
        self.stale: set[str] = set()  # rooms whose messages were dropped: read them from storage
        self.rooms: set[str] = set()  # rooms this stream has delivered or caught up (for a gap)
        self.wake = asyncio.Event()
        self.ended: errors.ApiError | None = None
        self.dropped = 0

    def offer(self, event: chat_pb2.ChatEvent) -> None:
        if len(self.events) >= self.capacity:
            kind = event.WhichOneof("kind")
            if is_new_message(event):
                self.stale.add(room_of(event.message.name))
            elif kind in EPHEMERAL:
                self.dropped += 1
                return
            elif len(self.events) >= 2 * self.capacity:
                self.end(errors.ApiError(grpc.StatusCode.UNAVAILABLE, "the client fell too far behind: "
                                         "reconnect with its last positions", "STREAM_BEHIND"))
                return
            else:
                self.events.append(event)
        else:
            self.events.append(event)
        self.wake.set()

    def resync(self) -> None:
        """Messages may have been missed: read every room it follows from storage again."""
        self.stale.update(self.rooms)
        self.wake.set()

    def end(self, error: errors.ApiError) -> None:
        self.ended = error
        self.events.clear()
        self.wake.set()


class ChatHub:
    def __init__(self, fanout: Fanout, presence: Presence, lease_seconds: float = LEASE_SECONDS):
        self._fanout = fanout
        self._watching = presence
        self._holder = uuid.uuid4().hex  # this replica, in the presence port's leases
        self._lease_seconds = lease_seconds
        # Holds and releases in the order streams opened and closed (one worker), renewed by a heartbeat.
        self._leases: asyncio.Queue[tuple[bool, str]] = asyncio.Queue()
        self._lease_tasks: list[asyncio.Task] = []
        self._by_user: dict[str, set[Subscriber]] = collections.defaultdict(set)
        self._closed = False
        self._tasks: set[asyncio.Task] = set()
        # Called when a user's first stream on this replica opens (True) or the last closes (False).
        self.on_presence: Callable[[str, bool], Coroutine[Any, Any, None]] | None = None

    async def start(self) -> None:
        await self._fanout.listen(CHANNEL, self._receive, self._on_gap)
        self._lease_tasks = [asyncio.create_task(self._apply_leases(), name="chat:leases"),
                             asyncio.create_task(self._renew_leases(), name="chat:lease-renewal")]

    async def stop(self) -> None:
        for t in self._lease_tasks:
            t.cancel()
        for t in self._lease_tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        # The replica is going: nobody watches through it any more.
        users = set(self._by_user)
        while not self._leases.empty():
            users.add(self._leases.get_nowait()[1])
        for user in users:
            with contextlib.suppress(Exception):
                await self._watching.release(WATCHING, user, self._holder)

    async def _apply_leases(self) -> None:
        while True:
            hold, user = await self._leases.get()
            try:
                if hold:
                    await self._watching.hold(WATCHING, [user], self._holder, self._lease_seconds)
                else:
                    await self._watching.release(WATCHING, user, self._holder)
            except Exception:
                log.warning("chat presence lease of %s not updated", user, exc_info=True)

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(self._lease_seconds / 3)
            if not self._by_user:
                continue
            try:
                await self._watching.hold(WATCHING, list(self._by_user), self._holder, self._lease_seconds)
            except Exception:
                log.warning("chat presence leases not renewed", exc_info=True)

    async def publish(self, recipients: Iterable[str], event: chat_pb2.ChatEvent) -> None:
        """Best effort: a stream that misses a message finds the gap by its sequence, or on resume."""
        data = ",".join(recipients).encode() + b"\n" + event.SerializeToString()
        try:
            await self._fanout.publish(CHANNEL, data)
        except Exception:
            log.warning("chat fan-out publish failed; streams will catch up from storage", exc_info=True)

    async def watching(self, users: Sequence[str]) -> set[str]:
        """Those of `users` with a chat stream open on any replica (asked of the presence port only for
        those without one here). On a presence failure, nobody: a push too many, never one missed."""
        here = {u for u in users if self._by_user.get(u)}
        elsewhere = [u for u in users if u not in here]
        if not elsewhere:
            return here
        try:
            return here | await self._watching.present(WATCHING, elsewhere)
        except Exception:
            log.warning("chat presence not read; the recipients count as away", exc_info=True)
            return here

    async def last_seen(self, users: Sequence[str]) -> dict[str, float]:
        """When each of `users` last had a chat stream open (seconds since the epoch), where known."""
        return await self._watching.last_seen(WATCHING, users)

    def _receive(self, data: bytes) -> None:
        head, _, body = data.partition(b"\n")
        event = None
        for user in head.decode().split(","):
            for sub in self._by_user.get(user, ()):
                if event is None:
                    event = chat_pb2.ChatEvent.FromString(body)
                sub.offer(event)

    def _on_gap(self) -> None:
        for subs in self._by_user.values():
            for sub in subs:
                sub.resync()

    def register(self, user_id: str) -> Subscriber:
        if self._closed:
            raise errors.ApiError(grpc.StatusCode.UNAVAILABLE, "shutting down; try another replica", "SHUTTING_DOWN")
        sub = Subscriber(user_id)
        first = not self._by_user.get(user_id)
        self._by_user[user_id].add(sub)
        OPEN_STREAMS.inc()
        if first:
            self._leases.put_nowait((True, user_id))
            self._presence(user_id, True)
        return sub

    def unregister(self, sub: Subscriber) -> None:
        subs = self._by_user.get(sub.user_id)
        if subs is None or sub not in subs:
            return
        subs.discard(sub)
        OPEN_STREAMS.dec()
        if not subs:
            del self._by_user[sub.user_id]
            self._leases.put_nowait((False, sub.user_id))
            if not self._closed:
                self._presence(sub.user_id, False)

    def _presence(self, user_id: str, online: bool) -> None:
        if self.on_presence is None:
            return
        task = asyncio.get_running_loop().create_task(self.on_presence(user_id, online))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """The replica is shutting down: streams end now (clients resume elsewhere), new ones are refused."""
        self._closed = True
        for subs in self._by_user.values():
            for sub in subs:
                sub.end(errors.ApiError(grpc.StatusCode.UNAVAILABLE, "shutting down; reconnect with your "
                                        "last positions", "SHUTTING_DOWN"))
