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
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import grpc
from prometheus_client import Gauge

from mesh import errors
from mesh.fanout import Fanout
from petplatform.chat.v1 import chat_pb2

log = logging.getLogger(__name__)

CHANNEL = "chat.events"
BUFFER = 256  # events a stream may hold before it drops ephemeral ones and reads messages from storage
OPEN_STREAMS = Gauge("petplatform_chat_streams", "Open chat streams (Connect and StreamEvents)")

EPHEMERAL = frozenset({"typing", "presence"})


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
    def __init__(self, fanout: Fanout):
        self._fanout = fanout
        self._by_user: dict[str, set[Subscriber]] = collections.defaultdict(set)
        self._closed = False
        self._tasks: set[asyncio.Task] = set()
        # Called when a user's first stream on this replica opens (True) or the last closes (False).
        self.on_presence: Callable[[str, bool], Coroutine[Any, Any, None]] | None = None

    async def start(self) -> None:
        await self._fanout.listen(CHANNEL, self._receive, self._on_gap)

    async def publish(self, recipients: Iterable[str], event: chat_pb2.ChatEvent) -> None:
        """Best effort: a stream that misses a message finds the gap by its sequence, or on resume."""
        data = ",".join(recipients).encode() + b"\n" + event.SerializeToString()
        try:
            await self._fanout.publish(CHANNEL, data)
        except Exception:
            log.warning("chat fan-out publish failed; streams will catch up from storage", exc_info=True)

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
