"""The documents port of chat: rooms and messages. The relational adapter (store.py: SQLite embedded,
PostgreSQL real) is the default; every adapter runs one contract suite (tests/contract/test_chat_store.py).

Writes that publish an event take the event and store it with the change (the relational adapter
writes it to the outbox in the same transaction). Room changes made by consumers take the consumer's
transaction `tx` (its inbox row), which an adapter on the same database joins; each of them is
idempotent anyway (a room's id is its match's), so an adapter that cannot join it stays correct."""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from google.protobuf.message import Message as Event

from petplatform.chat.v1 import chat_pb2

OPEN = chat_pb2.Room.STATE_OPEN
CLOSED = chat_pb2.Room.STATE_CLOSED


@dataclasses.dataclass(frozen=True, kw_only=True)
class Member:
    user_id: str
    delivered_sequence: int = 0
    read_sequence: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class RoomRecord:
    id: str
    match_id: str
    members: tuple[Member, ...]
    state: int
    last_sequence: int
    create_time: dt.datetime
    last_delete_sequence: int = 0  # its deletion counter: every deletion up to it is visible
    activity_time: dt.datetime  # of its newest message, else its creation: the order of ListRooms
    close_time: dt.datetime | None = None
    last_message: chat_pb2.Message | None = None
    unread_count: int = 0  # for the member it was read for

    @property
    def member_ids(self) -> list[str]:
        return [m.user_id for m in self.members]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Sent:
    message: chat_pb2.Message
    created: bool  # False: a resend, the first copy returned
    recipients: list[str]  # every member, sender included (their other devices)


class NotMember(Exception):
    """The room does not exist, or the user is not one of its members (the caller sees NOT_FOUND)."""


class RoomClosed(Exception):
    """The room is closed: its history is read-only."""


class NotSender(Exception):
    """Only the sender may delete a message."""


class PastTheEnd(Exception):
    """A read or delivery mark past the room's last sequence (which is its argument)."""


class IdTaken(Exception):
    """Another member already sent a message with this id in this room."""


# Makes the event of a change from its result, to be stored with it.
EventOf = Callable[[Any], Event | None]


class ChatStore(Protocol):
    async def open_room(self, tx: Any, *, room_id: str, match_id: str, members: Sequence[str],
                        now: dt.datetime) -> RoomRecord | None:
        """Makes the room, or returns None if it exists already (a redelivered match.created)."""

    async def close_rooms(self, tx: Any, *, room_id: str | None = None, between: tuple[str, str] | None = None,
                          now: dt.datetime) -> list[RoomRecord]:
        """Closes the room `room_id`, or every open room of the two users `between`; returns those it closed."""

    async def room(self, *, room_id: str, user_id: str) -> RoomRecord:
        """The room, with the last message and `user_id`'s unread count; NotMember if not theirs."""

    async def rooms(self, *, user_id: str, after: tuple[dt.datetime, str] | None, size: int) -> list[RoomRecord]:
        """`user_id`'s rooms by (activity_time, id) descending, after the position; size + 1 at most."""

    async def peers(self, *, user_id: str) -> set[str]:
        """Everyone sharing an open room with `user_id`: whom their presence is told to, and whose they are
        told (an unmatch or a block closes the room, and with it that)."""

    async def members(self, *, room_id: str, user_id: str) -> list[str]:
        """The room's members, sorted; NotMember if `user_id` is not one. Members never change, so an
        adapter may keep them: the send path asks for them on every message."""

    async def send(self, *, room_id: str, user_id: str, message_id: str, text: str, now: dt.datetime,
                   event: EventOf, attachments: Sequence[chat_pb2.Attachment] = ()) -> Sent:
        """Stores a message with the room's next sequence, or returns the stored one for a resend.
        NotMember, RoomClosed, IdTaken. `event(Sent)` is stored with a new message, in its transaction:
        it must not wait on anything (who is watching is asked before)."""

    async def message(self, *, room_id: str, message_id: str, user_id: str) -> chat_pb2.Message:
        """One message of a room `user_id` is a member of: NotMember, LookupError if there is none."""

    async def messages(self, *, room_id: str, after: int = 0, before: int | None = None, size: int,
                       descending: bool = False) -> list[chat_pb2.Message]:
        """Messages with after < sequence < before, ascending (or descending), at most `size`."""

    async def tombstones(self, *, room_id: str, through: int, after: int = 0, size: int) -> list[chat_pb2.Message]:
        """The room's deleted messages with delete_sequence > after and sequence <= through, in deletion
        order, at most `size`: what a stream resuming at `through`, having seen the deletions up
        to `after`, may hold whole and must learn was deleted. Deletion numbers become visible in order."""

    async def delete(self, *, room_id: str, message_id: str, user_id: str, now: dt.datetime,
                     event: EventOf) -> tuple[chat_pb2.Message, list[str]]:
        """Makes a tombstone of `user_id`'s message, without text or attachments, numbered by the room's
        deletion counter (NotSender, NotMember; LookupError if there is no such message); a tombstone stays
        as it is. Returns it and the room's
        members. `event(Sent)` is stored with the deletion."""

    async def mark(self, *, room_id: str, user_id: str, read: int = 0, delivered: int = 0,
                   event: EventOf) -> tuple[chat_pb2.Receipt, list[str], bool]:
        """Moves `user_id`'s positions forward (never back; a read is a delivery too). PastTheEnd, changing
        nothing, for a mark past the room's last sequence. Returns the receipt, the room's members and whether
        it moved."""

    async def close(self) -> None: ...


MEMBERS_KEPT = 100_000  # rooms whose members a store keeps in memory


class KeptMembers:
    """Rooms' members, kept: they never change, and the send path asks for them on every message."""

    def __init__(self) -> None:
        self._members_of: dict[str, tuple[str, ...]] = {}

    def get(self, room_id: str) -> tuple[str, ...] | None:
        return self._members_of.get(room_id)

    def keep(self, room_id: str, members: Sequence[str]) -> None:
        if len(self._members_of) >= MEMBERS_KEPT:
            self._members_of.clear()
        self._members_of[room_id] = tuple(sorted(members))


def message_name(room_id: str, message_id: str) -> str:
    return f"rooms/{room_id}/messages/{message_id}"


def receipt(room_id: str, member: Member) -> chat_pb2.Receipt:
    return chat_pb2.Receipt(room=f"rooms/{room_id}", user=f"users/{member.user_id}",
                            delivered_sequence=member.delivered_sequence, read_sequence=member.read_sequence)


def no_event(_: object) -> None:
    return None


Messages = Sequence[chat_pb2.Message]
