"""The MongoDB adapter of chat's documents port (motor): collections `chat_rooms` and `messages`.

A room is one document: its members (`member_ids`, sorted) and each one's read and delivery positions
(`positions.<user>.read|delivered`), its state and `last_sequence`. A message is one document keyed
uniquely by (room, sequence) and by (room, the client's id).

Numbering without a transaction: a send takes the room's `last_sequence` + 1 and inserts the message;
the unique (room, sequence) index refuses it if a concurrent send took that number first, and the send
retries after the newest message. A number is taken only once the one before it is stored, so messages
become visible in sequence order with no gap: a reader that saw sequence n never later finds an n - 1
it missed (what resume relies on). `last_sequence` follows with $max once the message is stored.

Events ride in the document they describe (mesh/mongo.py DocumentOutbox): a message's message.sent or
message.deleted, a room's messages.read, written in the same single-document write as the change.

Room changes from consumers ignore the consumer's transaction (it is another database's); each is
idempotent (a room's id is its match's), so a redelivered event changes nothing twice.

Differences from the relational adapter, both narrow: a send that read the room open a moment before a
close may still be stored just after it (there is no row lock to order them); and a room's
`last_sequence` may trail its newest message for the moment between the two writes of a send (records
take the newest message itself).

Nothing here expires, so no TTL index: messages and tombstones are the room's history (resume and
ListMessages need the tombstones), and a room lives as long as its match.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from google.protobuf import json_format
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError

from mesh.mongo import DocumentOutbox
from mesh.resources import timestamp
from petplatform.chat.v1 import chat_pb2
from services.chat.documents import (CLOSED, OPEN, EventOf, IdTaken, KeptMembers, Member, NotMember, NotSender,
                                     PastTheEnd, RoomClosed, RoomRecord, Sent, message_name, receipt)

ROOMS = "chat_rooms"
MESSAGES = "messages"


def to_ms(t: dt.datetime) -> dt.datetime:
    """BSON keeps milliseconds: what a write returns must equal what a later read finds."""
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def utc(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.timezone.utc)


def maybe_utc(t: dt.datetime | None) -> dt.datetime | None:
    return None if t is None else utc(t)


def to_message(doc: dict[str, Any]) -> chat_pb2.Message:
    return chat_pb2.Message(name=message_name(doc["room_id"], doc["id"]), sender=f"users/{doc['sender_id']}",
                            sequence=doc["sequence"], text=doc["text"], create_time=timestamp(utc(doc["create_time"])),
                            delete_time=timestamp(maybe_utc(doc.get("delete_time"))),
                            delete_sequence=doc.get("delete_sequence") or 0,
                            attachments=[json_format.ParseDict(a, chat_pb2.Attachment())
                                         for a in doc.get("attachments") or ()])


class MongoChatStore:
    def __init__(self, *, database: Any, outbox: DocumentOutbox):
        """`database`: a motor database; `outbox` carries the events of this database's collections
        (`collections(database)`)."""
        self._rooms = database[ROOMS]
        self._messages = database[MESSAGES]
        self.outbox = outbox
        self._kept = KeptMembers()

    @staticmethod
    def collections(database: Any) -> list[Any]:
        return [database[ROOMS], database[MESSAGES]]

    async def create_indexes(self) -> None:
        """Idempotent: run at every start."""
        await self._rooms.create_index([("member_ids", ASCENDING), ("activity_time", DESCENDING), ("_id", DESCENDING)],
                                      name="rooms_of_member")
        await self._messages.create_index([("room_id", ASCENDING), ("sequence", ASCENDING)], unique=True,
                                         name="room_sequence")
        await self._messages.create_index([("room_id", ASCENDING), ("id", ASCENDING)], unique=True,
                                         name="room_message_id")
        # Only deleted messages, by deletion number: what a resuming stream is sent is those after its own.
        await self._messages.create_index([("room_id", ASCENDING), ("delete_sequence", ASCENDING)],
                                          name="room_deletions",
                                          partialFilterExpression={"delete_sequence": {"$type": "number"}})
        # Deletion numbers are taken like sequences, through a unique key ("room/n", on tombstones only).
        await self._messages.create_index([("delete_key", ASCENDING)], unique=True, sparse=True,
                                          name="room_deletion_number")
        await self.outbox.create_indexes()

    async def _record(self, doc: dict[str, Any], user_id: str | None = None) -> RoomRecord:
        room_id = doc["_id"]
        last = await self._messages.find_one({"room_id": room_id}, sort=[("sequence", DESCENDING)])
        positions = doc.get("positions", {})
        members = tuple(Member(user_id=u, read_sequence=positions.get(u, {}).get("read", 0),
                               delivered_sequence=positions.get(u, {}).get("delivered", 0))
                        for u in doc["member_ids"])
        unread = 0
        me = next((m for m in members if m.user_id == user_id), None)
        if me is not None and last is not None and last["sequence"] > me.read_sequence:
            unread = await self._messages.count_documents({
                "room_id": room_id, "sequence": {"$gt": me.read_sequence}, "sender_id": {"$ne": user_id},
                "delete_time": None})
        deleted = await self._messages.find_one({"room_id": room_id, "delete_sequence": {"$type": "number"}},
                                                {"delete_sequence": 1}, sort=[("delete_sequence", DESCENDING)])
        return RoomRecord(id=room_id, match_id=doc["match_id"], members=members, state=doc["state"],
                          last_delete_sequence=deleted["delete_sequence"] if deleted else 0,
                          last_sequence=max(doc["last_sequence"], last["sequence"] if last else 0),
                          create_time=utc(doc["create_time"]), activity_time=utc(doc["activity_time"]),
                          close_time=maybe_utc(doc.get("close_time")),
                          last_message=to_message(last) if last else None, unread_count=unread)

    async def _room_doc(self, room_id: str, user_id: str) -> dict[str, Any]:
        doc = await self._rooms.find_one({"_id": room_id, "member_ids": user_id})
        if doc is None:
            raise NotMember(room_id)
        return doc

    async def open_room(self, tx: Any, *, room_id: str, match_id: str, members: Sequence[str],
                        now: dt.datetime) -> RoomRecord | None:
        now = to_ms(now)
        doc = {"_id": room_id, "match_id": match_id, "state": OPEN, "last_sequence": 0, "create_time": now,
               "activity_time": now, "close_time": None, "member_ids": sorted(members),
               "positions": {u: {"read": 0, "delivered": 0} for u in members}}
        try:
            await self._rooms.insert_one(doc)
        except DuplicateKeyError:
            return None
        return await self._record(doc)

    async def close_rooms(self, tx: Any, *, room_id: str | None = None, between: tuple[str, str] | None = None,
                          now: dt.datetime) -> list[RoomRecord]:
        query: dict[str, Any] = {"state": OPEN}
        if room_id is not None:
            query["_id"] = room_id
        if between is not None:
            query["member_ids"] = {"$all": list(between)}
        ids = [d["_id"] async for d in self._rooms.find(query, {"_id": 1})]
        if not ids:
            return []
        await self._rooms.update_many({"_id": {"$in": ids}, "state": OPEN},
                                     {"$set": {"state": CLOSED, "close_time": to_ms(now)}})
        return [await self._record(d) async for d in self._rooms.find({"_id": {"$in": ids}}).sort("_id", ASCENDING)]

    async def room(self, *, room_id: str, user_id: str) -> RoomRecord:
        return await self._record(await self._room_doc(room_id, user_id), user_id)

    async def rooms(self, *, user_id: str, after: tuple[dt.datetime, str] | None, size: int) -> list[RoomRecord]:
        query: dict[str, Any] = {"member_ids": user_id}
        if after is not None:
            at = to_ms(after[0])
            query["$or"] = [{"activity_time": {"$lt": at}}, {"activity_time": at, "_id": {"$lt": after[1]}}]
        found = self._rooms.find(query).sort([("activity_time", DESCENDING), ("_id", DESCENDING)]).limit(size + 1)
        return [await self._record(d, user_id) async for d in found]

    async def peers(self, *, user_id: str) -> set[str]:
        return set(await self._rooms.distinct("member_ids", {"member_ids": user_id, "state": OPEN})) - {user_id}

    async def members(self, *, room_id: str, user_id: str) -> list[str]:
        found = self._kept.get(room_id)
        if found is None:
            doc = await self._rooms.find_one({"_id": room_id}, {"member_ids": 1})
            found = tuple(sorted(doc["member_ids"])) if doc else ()
            if found:
                self._kept.keep(room_id, found)
        if user_id not in found:
            raise NotMember(room_id)
        return list(found)

    async def send(self, *, room_id: str, user_id: str, message_id: str, text: str, now: dt.datetime,
                   event: EventOf, attachments: Sequence[chat_pb2.Attachment] = ()) -> Sent:
        recipients = await self.members(room_id=room_id, user_id=user_id)
        now = to_ms(now)
        room = await self._rooms.find_one({"_id": room_id}, {"state": 1, "last_sequence": 1})
        if room is None:
            raise NotMember(room_id)
        if room["state"] != OPEN:  # a resend of a message sent before still gets its first copy
            existing = await self._existing(room_id, message_id, user_id)
            if existing is not None:
                return Sent(message=existing, created=False, recipients=recipients)
            raise RoomClosed(room_id)
        sequence = room["last_sequence"] + 1
        while True:
            sent = Sent(message=chat_pb2.Message(
                name=message_name(room_id, message_id), sender=f"users/{user_id}", sequence=sequence, text=text,
                create_time=timestamp(now), attachments=attachments), created=True, recipients=recipients)
            doc = {"room_id": room_id, "sequence": sequence, "id": message_id, "sender_id": user_id, "text": text,
                   "create_time": now, "delete_time": None,
                   "attachments": [json_format.MessageToDict(a) for a in attachments] or None}
            try:
                await self._messages.insert_one(self.outbox.inserted(doc, event(sent)))
                break
            except DuplicateKeyError:
                existing = await self._existing(room_id, message_id, user_id)
                if existing is not None:  # a resend: the first copy
                    return Sent(message=existing, created=False, recipients=recipients)
                # The number went to a concurrent send: the next one after the newest message.
                newest = await self._messages.find_one({"room_id": room_id}, {"sequence": 1},
                                                      sort=[("sequence", DESCENDING)])
                sequence = (newest["sequence"] if newest else 0) + 1
        await self._rooms.update_one({"_id": room_id}, {"$max": {"last_sequence": sequence, "activity_time": now}})
        self.outbox.wake()
        return sent

    async def _existing(self, room_id: str, message_id: str, user_id: str) -> chat_pb2.Message | None:
        doc = await self._messages.find_one({"room_id": room_id, "id": message_id})
        if doc is None:
            return None
        if doc["sender_id"] != user_id:
            raise IdTaken(message_id)
        return to_message(doc)

    async def messages(self, *, room_id: str, after: int = 0, before: int | None = None, size: int,
                       descending: bool = False) -> list[chat_pb2.Message]:
        sequence: dict[str, int] = {"$gt": after}
        if before is not None:
            sequence["$lt"] = before
        found = (self._messages.find({"room_id": room_id, "sequence": sequence})
                 .sort("sequence", DESCENDING if descending else ASCENDING).limit(size))
        return [to_message(d) async for d in found]

    async def tombstones(self, *, room_id: str, through: int, after: int = 0, size: int) -> list[chat_pb2.Message]:
        found = (self._messages.find({"room_id": room_id, "delete_sequence": {"$gt": after},
                                      "sequence": {"$lte": through}})
                 .sort("delete_sequence", ASCENDING).limit(size))
        return [to_message(d) async for d in found]

    async def message(self, *, room_id: str, message_id: str, user_id: str) -> chat_pb2.Message:
        await self._room_doc(room_id, user_id)
        doc = await self._messages.find_one({"room_id": room_id, "id": message_id})
        if doc is None:
            raise LookupError(message_id)
        return to_message(doc)

    async def delete(self, *, room_id: str, message_id: str, user_id: str, now: dt.datetime,
                     event: EventOf) -> tuple[chat_pb2.Message, list[str]]:
        recipients = list((await self._room_doc(room_id, user_id))["member_ids"])
        where = {"room_id": room_id, "id": message_id}
        doc = await self._messages.find_one(where)
        if doc is None:
            raise LookupError(message_id)
        if doc["sender_id"] != user_id:
            raise NotSender(message_id)
        if doc.get("delete_time") is not None:
            return to_message(doc), recipients
        now = to_ms(now)
        while True:
            # The next deletion number after the newest: a number taken meanwhile fails the unique key, and
            # the one after it is tried, so a reader never sees n + 1 before n.
            newest = await self._messages.find_one({"room_id": room_id, "delete_sequence": {"$type": "number"}},
                                                   {"delete_sequence": 1}, sort=[("delete_sequence", DESCENDING)])
            number = (newest["delete_sequence"] if newest else 0) + 1
            deleted = {"text": "", "delete_time": now, "attachments": None, "delete_sequence": number}
            tombstone = to_message({**doc, **deleted})
            update = self.outbox.update({"$set": {**deleted, "delete_key": f"{room_id}/{number}"}},
                                        event(Sent(message=tombstone, created=True, recipients=recipients)))
            try:
                # Conditional on it being whole: of two concurrent deletions, one makes the tombstone and its event.
                done = await self._messages.update_one({**where, "delete_time": None}, update)
                break
            except DuplicateKeyError:
                continue
        if not done.modified_count:
            return to_message(await self._messages.find_one(where)), recipients
        self.outbox.wake()
        return tombstone, recipients

    async def mark(self, *, room_id: str, user_id: str, read: int = 0, delivered: int = 0,
                   event: EventOf) -> tuple[chat_pb2.Receipt, list[str], bool]:
        doc = await self._room_doc(room_id, user_id)
        newest = await self._messages.find_one({"room_id": room_id}, {"sequence": 1}, sort=[("sequence", DESCENDING)])
        last = max(doc["last_sequence"], newest["sequence"] if newest else 0)
        mine = doc.get("positions", {}).get(user_id, {})
        me = Member(user_id=user_id, read_sequence=mine.get("read", 0), delivered_sequence=mine.get("delivered", 0))
        if max(read, delivered) > last:
            raise PastTheEnd(last)
        read = max(read, me.read_sequence)
        delivered = max(delivered, read, me.delivered_sequence)
        moved = (read, delivered) != (me.read_sequence, me.delivered_sequence)
        now_member = Member(user_id=user_id, read_sequence=read, delivered_sequence=delivered)
        r = receipt(room_id, now_member)
        if moved:
            # $max: a concurrent mark never moves a position back.
            update = self.outbox.update({"$max": {f"positions.{user_id}.read": read,
                                                  f"positions.{user_id}.delivered": delivered}}, event(r))
            await self._rooms.update_one({"_id": room_id}, update)
            self.outbox.wake()
        return r, sorted(doc["member_ids"]), moved

    async def close(self) -> None:
        pass
