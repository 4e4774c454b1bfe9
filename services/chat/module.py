from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from typing import Any
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.events import Effects, PoisonEvent
from mesh.mongo import DocumentOutbox, connect
from mesh.registry import ServiceSpec
from mesh.resources import parse_name
from mesh.runtime import Runtime, ServiceModule
from mesh.sql import utcnow
from mesh import errors
from petplatform.chat.v1 import chat_pb2
from petplatform.matching.v1 import events_pb2 as matching_events
from petplatform.matching.v1 import matching_pb2
from services.chat.api import ChatServicer, to_room
from services.chat.documents import ChatStore, RoomRecord
from services.chat.hub import ChatHub
from services.chat.mongo import MongoChatStore
from services.chat.store import SqlChatStore


def user_id(name: str) -> str:
    try:
        return parse_name(name, "users/{}")[0]
    except errors.ApiError:
        raise PoisonEvent(f"not a user name: {name!r}") from None


def match_id(name: str) -> str:
    try:
        return parse_name(name, "matches/{}")[0]
    except errors.ApiError:
        raise PoisonEvent(f"not a match name: {name!r}") from None


def participants(match: matching_pb2.Match) -> list[str]:
    users = [user_id(u) for u in match.users]
    if len(users) != 2 or users[0] == users[1]:
        raise PoisonEvent(f"a match has two different users, not {users}")
    return users


class ChatModule(ServiceModule):
    migrations = Path(__file__).parent / "migrations"

    def __init__(self, rt: Runtime, spec: ServiceSpec):
        super().__init__(rt, spec)
        self._mongo: Any = None
        self._outbox: DocumentOutbox | None = None
        self.store: ChatStore
        settings = rt.settings
        if settings.chat_store == "mongodb":
            assert settings.mongodb_url is not None  # the settings check it
            self._mongo = connect(url=settings.mongodb_url.get_secret_value())
            database = self._mongo[settings.schema_prefix + settings.mongodb_database]
            self._outbox = DocumentOutbox(bus=rt.bus, source=spec.name, declared=spec.emitted_types,
                                          collections=MongoChatStore.collections(database),
                                          poll_seconds=settings.outbox_poll_seconds)
            self.store = MongoChatStore(database=database, outbox=self._outbox)
        else:
            self.store = SqlChatStore(self.db)
        self.hub = ChatHub(rt.fanout, rt.presence)
        self._tasks: set[asyncio.Task] = set()

    def servicers(self) -> Mapping[str, object]:
        return {"petplatform.chat.v1.ChatService": ChatServicer(self.store, self.hub, self.rt.blobs)}

    def consumers(self) -> Mapping[str, Effects]:
        return {"chat.rooms": {matching_events.MatchCreated: self._match_created,
                               matching_events.MatchEnded: self._match_ended,
                               matching_events.UserBlocked: self._user_blocked}}

    async def start(self) -> None:
        if isinstance(self.store, MongoChatStore) and self._outbox is not None:
            await self.store.create_indexes()
            self._outbox.start()
        await self.hub.start()

    async def drain(self) -> None:
        self.hub.close()
        if self._outbox is not None:  # before the bus stops; what is pending stays so for the next start
            await self._outbox.stop()

    async def stop(self) -> None:
        await self.hub.stop()
        await self.store.close()  # sends still queued are written before the database goes
        if self._mongo is not None:
            self._mongo.close()
        await super().stop()

    # Room changes reach the members' open streams once they are committed.
    def _announce(self, s: AsyncSession, rooms: list[RoomRecord]) -> None:
        async def publish() -> None:
            for r in rooms:
                await self.hub.publish(r.member_ids, chat_pb2.ChatEvent(room=to_room(r)))
        after_commit(s, publish, self._tasks)

    async def _match_created(self, s: AsyncSession, event: matching_events.MatchCreated) -> None:
        room_id = match_id(event.match.name)
        room = await self.store.open_room(s, room_id=room_id, match_id=room_id, members=participants(event.match),
                                          now=utcnow())
        if room is not None:  # None: made already (a redelivery, or the match ended first)
            self._announce(s, [room])

    async def _match_ended(self, s: AsyncSession, event: matching_events.MatchEnded) -> None:
        room_id = match_id(event.match.name)
        # Ended before its creation was heard of (events on different paths): the room is made closed,
        # so a late match.created finds it and opens nothing.
        await self.store.open_room(s, room_id=room_id, match_id=room_id, members=participants(event.match),
                                   now=utcnow())
        self._announce(s, await self.store.close_rooms(s, room_id=room_id, now=utcnow()))

    async def _user_blocked(self, s: AsyncSession, event: matching_events.UserBlocked) -> None:
        pair = (user_id(event.user), user_id(event.blocked_user))
        self._announce(s, await self.store.close_rooms(s, between=pair, now=utcnow()))


def after_commit(s: AsyncSession, action: Callable[[], Coroutine[Any, Any, None]], tasks: set[asyncio.Task]) -> None:
    """Runs `action` once the session's transaction has committed (never if it rolls back)."""
    def fire(_session: object) -> None:
        task = asyncio.get_running_loop().create_task(action())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    sa.event.listen(s.sync_session, "after_commit", fire, once=True)
