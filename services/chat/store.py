"""The relational adapter of chat's documents port (SQLite embedded, PostgreSQL real): rooms, their
members with their read and delivery positions, and messages keyed by (room, sequence)."""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from google.protobuf import json_format
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.events import emit
from mesh.resources import timestamp
from mesh.sql import Database, Row, UtcDateTime, rows_changed
from petplatform.chat.v1 import chat_pb2
from services.chat.documents import (CLOSED, OPEN, EventOf, IdTaken, KeptMembers, Member, NotMember, NotSender,
                                     PastTheEnd, RoomClosed, RoomRecord, Sent, message_name, receipt)

metadata = sa.MetaData()

rooms = sa.Table(
    "rooms", metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # the match's id: one room per match
    sa.Column("match_id", sa.String(32), nullable=False),
    sa.Column("state", sa.SmallInteger, nullable=False),
    # The last sequence given out: a send increments it, which also serialises the room's sends.
    sa.Column("last_sequence", sa.BigInteger, nullable=False, server_default="0"),
    # The last deletion number given out (the room's deletion counter): a resume is sent the later ones.
    sa.Column("last_delete_sequence", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("activity_time", UtcDateTime, nullable=False),
    sa.Column("close_time", UtcDateTime, nullable=True),
)

memberships = sa.Table(
    "room_members", metadata,
    sa.Column("room_id", sa.String(32), sa.ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", sa.String(32), primary_key=True),
    sa.Column("delivered_sequence", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("read_sequence", sa.BigInteger, nullable=False, server_default="0"),
    sa.Index("ix_room_members_user", "user_id"),
)

messages = sa.Table(
    "messages", metadata,
    sa.Column("room_id", sa.String(32), sa.ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("sequence", sa.BigInteger, primary_key=True),
    sa.Column("id", sa.String(32), nullable=False),  # chosen by the client
    sa.Column("sender_id", sa.String(32), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("delete_time", UtcDateTime, nullable=True),
    sa.Column("attachments", sa.JSON, nullable=True),  # [chat.v1.Attachment as JSON]; the bytes are blobs
    sa.Column("delete_sequence", sa.BigInteger, nullable=True),  # tombstones: the room's deletion number
    sa.UniqueConstraint("room_id", "id", name="uq_messages_room_id"),
    sa.Index("ix_messages_deletions", "room_id", "delete_sequence",
             sqlite_where=sa.text("delete_sequence IS NOT NULL"),
             postgresql_where=sa.text("delete_sequence IS NOT NULL")),
)


def to_message(row: Row) -> chat_pb2.Message:
    return chat_pb2.Message(name=message_name(row.room_id, row.id), sender=f"users/{row.sender_id}",
                            sequence=row.sequence, text=row.text, create_time=timestamp(row.create_time),
                            delete_time=timestamp(row.delete_time), delete_sequence=row.delete_sequence or 0,
                            attachments=[json_format.ParseDict(a, chat_pb2.Attachment())
                                         for a in row.attachments or ()])


SEND_BATCH = 200  # sends written in one transaction at most
# The send path's statements, built once (building one, literals and all, costs more than SQLite running it).
NEXT_SEQUENCE = (rooms.update().where(rooms.c.id == sa.bindparam("room"), rooms.c.state == OPEN)
                 .values(last_sequence=rooms.c.last_sequence + 1, activity_time=sa.bindparam("now"))
                 .returning(rooms.c.last_sequence))
INSERT_NEW = {is_sqlite: insert(messages).on_conflict_do_nothing(index_elements=["room_id", "id"])
              .returning(messages.c.sequence)
              for is_sqlite, insert in ((True, sqlite_insert), (False, postgresql_insert))}


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Send:
    room_id: str
    user_id: str
    message_id: str
    text: str
    now: dt.datetime
    event: EventOf
    attachments: Sequence[chat_pb2.Attachment]
    recipients: list[str]
    done: asyncio.Future[Sent]


class SqlChatStore:
    def __init__(self, db: Database):
        self.db = db
        self._kept = KeptMembers()
        self._queued: list[_Send] = []
        self._writer: asyncio.Task | None = None

    async def _members(self, s: AsyncSession, room_ids: Sequence[str]) -> dict[str, list[Member]]:
        out: dict[str, list[Member]] = {r: [] for r in room_ids}
        rows = await s.execute(sa.select(memberships).where(memberships.c.room_id.in_(room_ids))
                               .order_by(memberships.c.room_id, memberships.c.user_id))
        for m in rows:
            out[m.room_id].append(Member(user_id=m.user_id, delivered_sequence=m.delivered_sequence,
                                         read_sequence=m.read_sequence))
        return out

    async def _records(self, s: AsyncSession, rows: Sequence[Row], user_id: str | None = None) -> list[RoomRecord]:
        by_room = await self._members(s, [r.id for r in rows])
        out = []
        for r in rows:
            room_members = tuple(by_room[r.id])
            last = None
            if r.last_sequence:
                m = (await s.execute(sa.select(messages).where(messages.c.room_id == r.id,
                                                               messages.c.sequence == r.last_sequence))).one()
                last = to_message(m)
            unread = 0
            me = next((m for m in room_members if m.user_id == user_id), None)
            if me is not None and r.last_sequence > me.read_sequence:
                unread = await s.scalar(sa.select(sa.func.count()).select_from(messages).where(
                    messages.c.room_id == r.id, messages.c.sequence > me.read_sequence,
                    messages.c.sender_id != user_id, messages.c.delete_time.is_(None))) or 0
            out.append(RoomRecord(id=r.id, match_id=r.match_id, members=room_members, state=r.state,
                                  last_sequence=r.last_sequence, last_delete_sequence=r.last_delete_sequence,
                                  create_time=r.create_time,
                                  activity_time=r.activity_time, close_time=r.close_time, last_message=last,
                                  unread_count=unread))
        return out

    async def _room_row(self, s: AsyncSession, room_id: str, user_id: str) -> Row:
        row = (await s.execute(sa.select(rooms).join(memberships, memberships.c.room_id == rooms.c.id).where(
            rooms.c.id == room_id, memberships.c.user_id == user_id))).one_or_none()
        if row is None:
            raise NotMember(room_id)
        return row

    async def open_room(self, tx: Any, *, room_id: str, match_id: str, members: Sequence[str],
                        now: dt.datetime) -> RoomRecord | None:
        s: AsyncSession = tx
        if await s.scalar(sa.select(rooms.c.id).where(rooms.c.id == room_id)):
            return None
        await s.execute(rooms.insert().values(id=room_id, match_id=match_id, state=OPEN, last_sequence=0,
                                              create_time=now, activity_time=now))
        await s.execute(memberships.insert(), [{"room_id": room_id, "user_id": u} for u in members])
        row = (await s.execute(sa.select(rooms).where(rooms.c.id == room_id))).one()
        return (await self._records(s, [row]))[0]

    async def close_rooms(self, tx: Any, *, room_id: str | None = None, between: tuple[str, str] | None = None,
                          now: dt.datetime) -> list[RoomRecord]:
        s: AsyncSession = tx
        query = sa.select(rooms).where(rooms.c.state == OPEN)
        if room_id is not None:
            query = query.where(rooms.c.id == room_id)
        if between is not None:
            for user in between:
                rooms_of_user = sa.select(memberships.c.room_id).where(memberships.c.user_id == user)
                query = query.where(rooms.c.id.in_(rooms_of_user))
        ids = [r.id for r in await s.execute(query)]
        if not ids:
            return []
        await s.execute(rooms.update().where(rooms.c.id.in_(ids)).values(state=CLOSED, close_time=now))
        rows = (await s.execute(sa.select(rooms).where(rooms.c.id.in_(ids)).order_by(rooms.c.id))).all()
        return await self._records(s, rows)

    async def room(self, *, room_id: str, user_id: str) -> RoomRecord:
        async with self.db.read() as s:
            return (await self._records(s, [await self._room_row(s, room_id, user_id)], user_id))[0]

    async def rooms(self, *, user_id: str, after: tuple[dt.datetime, str] | None, size: int) -> list[RoomRecord]:
        query = (sa.select(rooms).join(memberships, memberships.c.room_id == rooms.c.id)
                 .where(memberships.c.user_id == user_id))
        if after is not None:
            query = query.where(sa.or_(rooms.c.activity_time < after[0],
                                       sa.and_(rooms.c.activity_time == after[0], rooms.c.id < after[1])))
        query = query.order_by(rooms.c.activity_time.desc(), rooms.c.id.desc()).limit(size + 1)
        async with self.db.read() as s:
            return await self._records(s, (await s.execute(query)).all(), user_id)

    async def peers(self, *, user_id: str) -> set[str]:
        mine = sa.select(memberships.c.room_id).join(rooms, rooms.c.id == memberships.c.room_id).where(
            memberships.c.user_id == user_id, rooms.c.state == OPEN)
        async with self.db.read() as s:
            rows = await s.scalars(sa.select(memberships.c.user_id).where(memberships.c.room_id.in_(mine),
                                                                      memberships.c.user_id != user_id).distinct())
            return set(rows)

    async def members(self, *, room_id: str, user_id: str) -> list[str]:
        found = self._kept.get(room_id)
        if found is None:
            async with self.db.read() as s:
                found = tuple(sorted(await s.scalars(sa.select(memberships.c.user_id)
                                                     .where(memberships.c.room_id == room_id))))
            if found:
                self._kept.keep(room_id, found)
        if user_id not in found:
            raise NotMember(room_id)
        return list(found)

    async def send(self, *, room_id: str, user_id: str, message_id: str, text: str, now: dt.datetime,
                   event: EventOf, attachments: Sequence[chat_pb2.Attachment] = ()) -> Sent:
        recipients = await self.members(room_id=room_id, user_id=user_id)
        pending = _Send(room_id=room_id, user_id=user_id, message_id=message_id, text=text, now=now, event=event,
                        attachments=attachments, recipients=recipients,
                        done=asyncio.get_running_loop().create_future())
        if not self.db.is_sqlite:
            # PostgreSQL writes sends side by side, each in its own transaction on the pool; batching them
            # into one writer would put them in a queue behind each other's round trips.
            [(_, outcome)] = await self.db.writing(functools.partial(self._write_batch, [pending]))
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        self._queued.append(pending)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued(), name="chat-send-writer")
        # Shielded: a caller that goes away leaves its message to be written with the rest.
        return await asyncio.shield(pending.done)

    async def _write_queued(self) -> None:
        # Group commit (SQLite, one writer anyway): the sends that queued while a transaction ran are written by
        # the next one together, so BEGIN, COMMIT (a disk flush) and the write lock are paid once per batch, not
        # once per message. Alone, a send is written at once, as before.
        while self._queued:
            batch, self._queued = self._queued[:SEND_BATCH], self._queued[SEND_BATCH:]
            try:
                outcomes = await self.db.writing(functools.partial(self._write_batch, batch))
            except Exception as e:
                for p in batch:
                    if not p.done.done():
                        p.done.set_exception(e)
                continue
            for p, outcome in outcomes:
                if p.done.done():
                    continue
                if isinstance(outcome, Exception):
                    p.done.set_exception(outcome)
                else:
                    p.done.set_result(outcome)

    async def _write_batch(self, batch: list[_Send], s: AsyncSession) -> list[tuple[_Send, Sent | Exception]]:
        # Rooms locked in one order (the sort is stable: a room's sends keep theirs), so two replicas'
        # batches never wait on each other in a cycle.
        return [await self._write_one(s, p) for p in sorted(batch, key=lambda p: p.room_id)]

    async def _write_one(self, s: AsyncSession, p: _Send) -> tuple[_Send, Sent | Exception]:
        # This statement numbers the message and takes the room's row lock, which orders concurrent sends to
        # the room (SQLite: the write lock); then the message, unless its id is there already, and the event.
        sequence = await s.scalar(NEXT_SEQUENCE, {"room": p.room_id, "now": p.now})
        if sequence is None:  # closed; a resend of a message sent before still gets its first copy
            try:
                existing = await self._existing(s, p.room_id, p.message_id, p.user_id)
            except IdTaken as e:
                return p, e
            if existing is not None:
                return p, Sent(message=existing, created=False, recipients=p.recipients)
            return p, RoomClosed(p.room_id)
        stored = await s.scalar(INSERT_NEW[self.db.is_sqlite], {
            "room_id": p.room_id, "sequence": sequence, "id": p.message_id, "sender_id": p.user_id, "text": p.text,
            "create_time": p.now, "attachments": [json_format.MessageToDict(a) for a in p.attachments] or None})
        if stored is None:  # the id is in the room already (a resend): its number and activity given back
            newest = sa.select(sa.func.max(messages.c.create_time)).where(messages.c.room_id == p.room_id)
            await s.execute(rooms.update().where(rooms.c.id == p.room_id).values(
                last_sequence=rooms.c.last_sequence - 1,
                activity_time=sa.func.coalesce(newest.scalar_subquery(), rooms.c.create_time)))
            try:
                existing = await self._existing(s, p.room_id, p.message_id, p.user_id)
            except IdTaken as e:
                return p, e
            assert existing is not None  # the conflict was on it
            return p, Sent(message=existing, created=False, recipients=p.recipients)
        sent = Sent(message=chat_pb2.Message(
            name=message_name(p.room_id, p.message_id), sender=f"users/{p.user_id}", sequence=sequence, text=p.text,
            create_time=timestamp(p.now), attachments=p.attachments), created=True, recipients=p.recipients)
        if (event := p.event(sent)) is not None:
            await emit(s, event)
        return p, sent

    async def _existing(self, s: AsyncSession, room_id: str, message_id: str, user_id: str) -> chat_pb2.Message | None:
        row = (await s.execute(sa.select(messages).where(messages.c.room_id == room_id,
                                                         messages.c.id == message_id))).one_or_none()
        if row is None:
            return None
        if row.sender_id != user_id:
            raise IdTaken(message_id)
        return to_message(row)

    async def messages(self, *, room_id: str, after: int = 0, before: int | None = None, size: int,
                       descending: bool = False) -> list[chat_pb2.Message]:
        query = sa.select(messages).where(messages.c.room_id == room_id, messages.c.sequence > after)
        if before is not None:
            query = query.where(messages.c.sequence < before)
        order = messages.c.sequence.desc() if descending else messages.c.sequence.asc()
        async with self.db.read() as s:
            return [to_message(r) for r in await s.execute(query.order_by(order).limit(size))]

    async def tombstones(self, *, room_id: str, through: int, after: int = 0, size: int) -> list[chat_pb2.Message]:
        query = (sa.select(messages).where(messages.c.room_id == room_id, messages.c.delete_sequence > after,
                                           messages.c.sequence <= through)
                 .order_by(messages.c.delete_sequence).limit(size))
        async with self.db.read() as s:
            return [to_message(r) for r in await s.execute(query)]

    async def message(self, *, room_id: str, message_id: str, user_id: str) -> chat_pb2.Message:
        async with self.db.read() as s:
            await self._room_row(s, room_id, user_id)
            row = (await s.execute(sa.select(messages).where(messages.c.room_id == room_id,
                                                             messages.c.id == message_id))).one_or_none()
            if row is None:
                raise LookupError(message_id)
            return to_message(row)

    async def delete(self, *, room_id: str, message_id: str, user_id: str, now: dt.datetime,
                     event: EventOf) -> tuple[chat_pb2.Message, list[str]]:
        async with self.db.transaction() as s:
            await self._room_row(s, room_id, user_id)
            recipients = sorted(m.user_id for m in (await self._members(s, [room_id]))[room_id])
            where = (messages.c.room_id == room_id, messages.c.id == message_id)
            row = (await s.execute(sa.select(messages).where(*where))).one_or_none()
            if row is None:
                raise LookupError(message_id)
            if row.sender_id != user_id:
                raise NotSender(message_id)
            if row.delete_time is not None:
                return to_message(row), recipients
            # Conditional, so of two concurrent deletions one numbers it; the counter's row lock then orders
            # deletions as their numbers (the room's lock is held to commit: n is visible before n + 1).
            if not await rows_changed(s, messages.update().where(*where, messages.c.delete_time.is_(None))
                                      .values(text="", delete_time=now, attachments=None)):
                return to_message((await s.execute(sa.select(messages).where(*where))).one()), recipients
            number = await s.scalar(rooms.update().where(rooms.c.id == room_id)
                                    .values(last_delete_sequence=rooms.c.last_delete_sequence + 1)
                                    .returning(rooms.c.last_delete_sequence))
            await s.execute(messages.update().where(*where).values(delete_sequence=number))
            tombstone = to_message((await s.execute(sa.select(messages).where(*where))).one())
            if (e := event(Sent(message=tombstone, created=True, recipients=recipients))) is not None:
                await emit(s, e)
            return tombstone, recipients

    async def mark(self, *, room_id: str, user_id: str, read: int = 0, delivered: int = 0,
                   event: EventOf) -> tuple[chat_pb2.Receipt, list[str], bool]:
        async with self.db.transaction() as s:
            room = await self._room_row(s, room_id, user_id)
            room_members = (await self._members(s, [room_id]))[room_id]
            me = next(m for m in room_members if m.user_id == user_id)
            if max(read, delivered) > room.last_sequence:
                raise PastTheEnd(room.last_sequence)
            read = max(read, me.read_sequence)
            delivered = max(delivered, read, me.delivered_sequence)
            moved = (read, delivered) != (me.read_sequence, me.delivered_sequence)
            now_member = Member(user_id=user_id, read_sequence=max(read, me.read_sequence),
                                delivered_sequence=max(delivered, me.delivered_sequence))
            if moved:
                mine = (memberships.c.room_id == room_id, memberships.c.user_id == user_id)
                await s.execute(memberships.update().where(*mine).values(read_sequence=now_member.read_sequence,
                                                                        delivered_sequence=now_member.delivered_sequence))
            r = receipt(room_id, now_member)
            if moved and (e := event(r)) is not None:
                await emit(s, e)
            return r, sorted(m.user_id for m in room_members), moved

    async def close(self) -> None:
        if self._writer is not None:  # what is queued is written first
            await asyncio.gather(self._writer, return_exceptions=True)
