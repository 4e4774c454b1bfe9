"""Chat's documents port, one suite for every adapter: the relational one on SQLite and on PostgreSQL,
the MongoDB one on mongomock-motor (no MongoDB server can be installed here: the real MongoDB is
unverified). Ordering, resends, membership, closed rooms, tombstones, unread counts, paging, and the
events each change stores with itself."""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mesh.events import event_tables, migrate_event_tables, producer
from mesh.events.outbox import outbox
from mesh.mongo import DocumentOutbox, connect
from mesh.sql import utcnow
from petplatform.chat.v1 import chat_pb2
from petplatform.chat.v1 import events_pb2 as chat_events
from petplatform.common.v1 import event_pb2
from services.chat.documents import IdTaken, NotMember, NotSender, PastTheEnd, RoomClosed, Sent, no_event
from services.chat.mongo import MongoChatStore
from services.chat.store import SqlChatStore
from tests.support.databases import drop_database, scratch_database

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "chat" / "migrations"
A, B, C = "a" * 32, "b" * 32, "c" * 32
EMITS = frozenset({"message.sent", "message.deleted", "messages.read"})


class RecordingBus:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, str]] = []

    async def publish(self, event_type: str, body: bytes, message_id: str) -> None:
        self.published.append((event_type, body, message_id))


@dataclasses.dataclass
class Harness:
    store: Any
    in_tx: Callable[[Callable[[Any], Awaitable[Any]]], Awaitable[Any]]  # runs a consumer's change
    stored_events: Callable[[], Awaitable[list[event_pb2.EventEnvelope]]]

    async def open(self, members: tuple[str, ...] = (A, B), room_id: str | None = None,
                   now: dt.datetime | None = None) -> str:
        room_id = room_id or uuid.uuid4().hex
        await self.in_tx(lambda tx: self.store.open_room(tx, room_id=room_id, match_id=room_id, members=members,
                                                         now=now or utcnow()))
        return room_id

    async def send(self, room_id: str, user_id: str = A, text: str = "hi", message_id: str | None = None,
                   event=no_event, now: dt.datetime | None = None) -> Sent:
        return await self.store.send(room_id=room_id, user_id=user_id, message_id=message_id or uuid.uuid4().hex,
                                     text=text, now=now or utcnow(), event=event)


def sent_event(sent: Sent) -> chat_events.MessageSent:
    return chat_events.MessageSent(message=sent.message, recipients=[f"users/{u}" for u in sent.recipients])


async def relational(kind: str, tmp_path: Path):
    db = scratch_database(kind, tmp_path, info=producer("chat", EMITS))
    await db.migrate(MIGRATIONS, other_tables={*event_tables.tables, "events_alembic_version"})
    await migrate_event_tables(db)

    async def in_tx(change):
        async with db.transaction() as s:
            return await change(s)

    async def stored_events() -> list[event_pb2.EventEnvelope]:
        async with db.read() as s:
            rows = await s.scalars(sa.select(outbox.c.body).order_by(outbox.c.id))
            return [event_pb2.EventEnvelope.FromString(b) for b in rows]

    return Harness(SqlChatStore(db), in_tx, stored_events), lambda: drop_database(db)


async def mongodb(_tmp_path: Path):
    client = connect(url="mongomock://")
    database = client[f"test_{uuid.uuid4().hex[:12]}"]
    bus = RecordingBus()
    docs = DocumentOutbox(bus=bus, source="chat", declared=EMITS,  # type: ignore[arg-type]
                          collections=MongoChatStore.collections(database))
    store = MongoChatStore(database=database, outbox=docs)
    await store.create_indexes()

    async def in_tx(change):
        return await change(None)

    async def stored_events() -> list[event_pb2.EventEnvelope]:
        # What the relay publishes is what the writes stored: drained twice, nothing comes out again.
        await docs.drain_once()
        assert await docs.drain_once() == 0
        return [event_pb2.EventEnvelope.FromString(body) for _, body, _ in bus.published]

    async def close() -> None:
        client.close()

    return Harness(store, in_tx, stored_events), close


@pytest.fixture(params=["sqlite", "postgres", "mongomock"])
async def h(request, tmp_path):
    harness, close = await (mongodb(tmp_path) if request.param == "mongomock" else relational(request.param, tmp_path))
    yield harness
    await harness.store.close()
    await close()


def texts(messages) -> list[str]:
    return [m.text for m in messages]


async def test_messages_are_numbered_in_order_without_gaps_even_when_sent_together(h: Harness):
    room = await h.open()
    first = await h.send(room, text="first")
    assert (first.message.sequence, first.created, first.recipients) == (1, True, [A, B])
    together = await asyncio.gather(*(h.send(room, user_id=(A, B)[i % 2], text=f"m{i}") for i in range(12)))
    assert sorted(s.message.sequence for s in together) == list(range(2, 14))
    stored = await h.store.messages(room_id=room, size=100)
    assert [m.sequence for m in stored] == list(range(1, 14))
    by_sequence = {s.message.sequence: s.message for s in together}
    for m in stored[1:]:
        assert m == by_sequence[m.sequence]
    assert (await h.store.room(room_id=room, user_id=A)).last_sequence == 13


async def test_a_resend_returns_the_first_copy_and_stores_nothing_twice(h: Harness):
    room = await h.open()
    message_id = uuid.uuid4().hex
    first = await h.send(room, message_id=message_id, text="once", event=sent_event)
    again = await h.send(room, message_id=message_id, text="twice?", event=sent_event)
    assert first.created and not again.created
    assert again.message == first.message
    both = await asyncio.gather(*(h.send(room, message_id=uuid.UUID(int=7).hex, event=sent_event) for _ in range(5)))
    assert sum(s.created for s in both) == 1 and len({s.message.sequence for s in both}) == 1
    with pytest.raises(IdTaken):  # the other member cannot take it over
        await h.send(room, user_id=B, message_id=message_id)
    assert texts(await h.store.messages(room_id=room, size=10)) == ["once", "hi"]
    envelopes = await h.stored_events()
    assert [e.type for e in envelopes] == ["message.sent", "message.sent"]
    assert len({e.id for e in envelopes}) == 2
    payload = chat_events.MessageSent()
    envelopes[0].payload.Unpack(payload)
    assert payload.message == first.message and envelopes[0].source == "chat"


async def test_the_same_message_id_in_another_room_is_another_message(h: Harness):
    one, two = await h.open(), await h.open()
    message_id = uuid.uuid4().hex
    assert (await h.send(one, message_id=message_id)).created
    assert (await h.send(two, message_id=message_id)).created


async def test_only_members_reach_a_room(h: Harness):
    room = await h.open((A, B))
    mine = await h.send(room)
    with pytest.raises(NotMember):
        await h.store.room(room_id=room, user_id=C)
    with pytest.raises(NotMember):
        await h.store.members(room_id=room, user_id=C)
    with pytest.raises(NotMember):
        await h.send(room, user_id=C)
    with pytest.raises(NotMember):
        await h.store.message(room_id=room, message_id=mine.message.name.rsplit("/", 1)[1], user_id=C)
    with pytest.raises(NotMember):
        await h.store.delete(room_id=room, message_id=mine.message.name.rsplit("/", 1)[1], user_id=C, now=utcnow(),
                             event=no_event)
    with pytest.raises(NotMember):
        await h.store.mark(room_id=room, user_id=C, read=1, event=no_event)
    with pytest.raises(NotMember):  # a room that does not exist looks the same
        await h.send(uuid.uuid4().hex, user_id=A)
    assert await h.store.members(room_id=room, user_id=B) == sorted([A, B])
    other = await h.open((B, C))
    assert await h.store.peers(user_id=B) == {A, C}
    assert await h.store.peers(user_id=A) == {B}
    assert [r.id for r in await h.store.rooms(user_id=C, after=None, size=10)] == [other]
    # A closed room (unmatched, blocked) shares no presence any more.
    await h.in_tx(lambda tx: h.store.close_rooms(tx, room_id=room, now=utcnow()))
    assert await h.store.peers(user_id=B) == {C}
    assert await h.store.peers(user_id=A) == set()


async def test_a_room_opens_once_and_closed_rooms_are_read_only(h: Harness):
    room = await h.open((A, B))
    assert await h.in_tx(lambda tx: h.store.open_room(tx, room_id=room, match_id=room, members=(A, B),
                                                      now=utcnow())) is None  # a redelivered match.created
    earlier = await h.send(room, text="before")
    closed = await h.in_tx(lambda tx: h.store.close_rooms(tx, room_id=room, now=utcnow()))
    assert [r.id for r in closed] == [room] and closed[0].close_time is not None
    assert closed[0].state == chat_pb2.Room.STATE_CLOSED
    assert await h.in_tx(lambda tx: h.store.close_rooms(tx, room_id=room, now=utcnow())) == []
    with pytest.raises(RoomClosed):
        await h.send(room)
    resent = await h.send(room, message_id=earlier.message.name.rsplit("/", 1)[1], text="before")
    assert not resent.created and resent.message == earlier.message  # a late resend still gets its copy
    assert texts(await h.store.messages(room_id=room, size=10)) == ["before"]  # the history stays
    assert (await h.store.room(room_id=room, user_id=B)).state == chat_pb2.Room.STATE_CLOSED


async def test_a_block_closes_every_open_room_of_the_pair_and_no_other(h: Harness):
    one, two, third = await h.open((A, B)), await h.open((B, A)), await h.open((A, C))
    closed = await h.in_tx(lambda tx: h.store.close_rooms(tx, between=(A, B), now=utcnow()))
    assert sorted(r.id for r in closed) == sorted([one, two])
    assert (await h.store.room(room_id=third, user_id=A)).state == chat_pb2.Room.STATE_OPEN


async def test_a_deleted_message_becomes_a_tombstone_once(h: Harness):
    room = await h.open()
    attachment = chat_pb2.Attachment(name=f"rooms/{room}/attachments/x", content_type="image/png", size_bytes=3)
    message_id = uuid.uuid4().hex
    sent = await h.store.send(room_id=room, user_id=A, message_id=message_id, text="oops", now=utcnow(),
                              event=no_event, attachments=[attachment])
    after = await h.send(room, text="after")
    with pytest.raises(NotSender):
        await h.store.delete(room_id=room, message_id=message_id, user_id=B, now=utcnow(), event=no_event)
    with pytest.raises(LookupError):
        await h.store.delete(room_id=room, message_id=uuid.uuid4().hex, user_id=A, now=utcnow(), event=no_event)

    def deleted(d: Sent) -> chat_events.MessageDeleted:
        return chat_events.MessageDeleted(message=d.message, recipients=[f"users/{u}" for u in d.recipients])
    tombstone, members = await h.store.delete(room_id=room, message_id=message_id, user_id=A, now=utcnow(),
                                              event=deleted)
    assert members == [A, B]
    assert (tombstone.sequence, tombstone.text, list(tombstone.attachments)) == (sent.message.sequence, "", [])
    assert tombstone.HasField("delete_time") and tombstone.create_time == sent.message.create_time
    again, _ = await h.store.delete(room_id=room, message_id=message_id, user_id=A, now=utcnow(), event=deleted)
    assert again == tombstone
    assert await h.store.message(room_id=room, message_id=message_id, user_id=B) == tombstone
    assert await h.store.messages(room_id=room, size=10) == [tombstone, after.message]
    assert [e.type for e in await h.stored_events()] == ["message.deleted"]  # one, not two
    assert tombstone.delete_sequence == 1, "the room's first deletion"
    assert await h.store.tombstones(room_id=room, through=after.message.sequence, size=10) == [tombstone]
    assert await h.store.tombstones(room_id=room, through=sent.message.sequence - 1, size=10) == []
    assert await h.store.tombstones(room_id=room, through=99, after=1, size=10) == [], "seen already"
    # Deleted, it is no longer unread: B has one message to read, not two.
    assert (await h.store.room(room_id=room, user_id=B)).unread_count == 1


async def test_unread_counts_follow_read_marks_which_never_move_back(h: Harness):
    room = await h.open()
    for i in range(3):
        await h.send(room, user_id=A, text=f"a{i}")
    await h.send(room, user_id=B, text="b")
    assert (await h.store.room(room_id=room, user_id=B)).unread_count == 3  # one's own messages are read
    assert (await h.store.room(room_id=room, user_id=A)).unread_count == 1

    def read(r: chat_pb2.Receipt) -> chat_events.MessagesRead:
        return chat_events.MessagesRead(receipt=r)
    r, members, moved = await h.store.mark(room_id=room, user_id=B, read=2, event=read)
    assert (r.read_sequence, r.delivered_sequence, members, moved) == (2, 2, [A, B], True)
    assert (await h.store.room(room_id=room, user_id=B)).unread_count == 1
    r, _, moved = await h.store.mark(room_id=room, user_id=B, read=1, event=read)  # never back
    assert (r.read_sequence, moved) == (2, False)
    for past in (dict(read=5), dict(delivered=5), dict(read=99, delivered=99)):
        with pytest.raises(PastTheEnd):
            await h.store.mark(room_id=room, user_id=B, event=read, **past)
    r, _, moved = await h.store.mark(room_id=room, user_id=B, read=4, delivered=4, event=read)
    assert (r.read_sequence, r.delivered_sequence, moved) == (4, 4, True)
    r, _, moved = await h.store.mark(room_id=room, user_id=A, delivered=3, event=read)
    assert (r.read_sequence, r.delivered_sequence) == (0, 3)
    record = await h.store.room(room_id=room, user_id=B)
    assert record.unread_count == 0
    assert {(x.user_id, x.read_sequence, x.delivered_sequence) for x in record.members} == {(A, 0, 3), (B, 4, 4)}
    assert [e.type for e in await h.stored_events()] == ["messages.read"] * 3  # one per move


async def test_tombstones_are_numbered_per_room_and_sent_after_a_deletion_position(h: Harness):
    room, other = await h.open(), await h.open()
    sent = [await h.send(room, text=f"m{i}") for i in range(1, 9)]
    elsewhere = await h.send(other, text="x")
    for i in (5, 2, 8, 3):  # deletion order, not message order
        await h.store.delete(room_id=room, message_id=sent[i - 1].message.name.rsplit("/", 1)[1], user_id=A,
                             now=utcnow(), event=no_event)
    first_there, _ = await h.store.delete(room_id=other, message_id=elsewhere.message.name.rsplit("/", 1)[1],
                                          user_id=A, now=utcnow(), event=no_event)
    assert first_there.delete_sequence == 1, "each room counts its own deletions"

    def pairs(ms) -> list[tuple[int, int]]:
        return [(m.delete_sequence, m.sequence) for m in ms]
    assert pairs(await h.store.tombstones(room_id=room, through=8, size=10)) == [(1, 5), (2, 2), (3, 8), (4, 3)]
    # A stream at message 7 that has seen deletions up to 2 learns of 4 only (3 is past its position: it
    # gets message 8 as a tombstone with the messages after 7).
    assert pairs(await h.store.tombstones(room_id=room, through=7, after=2, size=10)) == [(4, 3)]
    assert pairs(await h.store.tombstones(room_id=room, through=7, size=2)) == [(1, 5), (2, 2)]
    assert (await h.store.room(room_id=room, user_id=A)).last_delete_sequence == 4
    assert await h.store.tombstones(room_id=room, through=8, after=4, size=10) == []
    assert await h.store.tombstones(room_id=room, through=0, size=10) == []


async def test_concurrent_deletions_take_distinct_numbers_in_order(h: Harness):
    room = await h.open()
    sent = [await h.send(room, text=f"m{i}") for i in range(1, 7)]
    ids = [m.message.name.rsplit("/", 1)[1] for m in sent]
    # Each message deleted twice at once: one tombstone each, six numbers, none twice.
    done = await asyncio.gather(*[h.store.delete(room_id=room, message_id=i, user_id=A, now=utcnow(), event=no_event)
                                  for i in ids + ids])
    numbers = sorted({t.delete_sequence for t, _ in done})
    assert numbers == [1, 2, 3, 4, 5, 6]
    assert [m.delete_sequence for m in await h.store.tombstones(room_id=room, through=6, size=10)] == numbers


async def test_history_pages_backwards_and_forwards(h: Harness):
    room = await h.open()
    for i in range(1, 8):
        await h.send(room, text=f"m{i}")
    assert texts(await h.store.messages(room_id=room, size=3, descending=True)) == ["m7", "m6", "m5"]
    assert texts(await h.store.messages(room_id=room, before=5, size=3, descending=True)) == ["m4", "m3", "m2"]
    assert texts(await h.store.messages(room_id=room, before=2, size=3, descending=True)) == ["m1"]
    assert texts(await h.store.messages(room_id=room, after=5, size=10)) == ["m6", "m7"]
    assert texts(await h.store.messages(room_id=room, after=2, before=5, size=10)) == ["m3", "m4"]
    assert await h.store.messages(room_id=room, after=7, size=10) == []


async def test_rooms_list_newest_activity_first_in_pages(h: Harness):
    start = utcnow()  # explicit times: a store may keep only milliseconds, and these run faster
    ids = [await h.open((A, f"{i:032x}"), now=start + dt.timedelta(seconds=i)) for i in range(5)]
    ids += [await h.open((A, f"{9:032x}"), now=start + dt.timedelta(seconds=4))]  # a tie, broken by id
    await h.send(ids[1], text="bumps it", now=start + dt.timedelta(seconds=9))  # activity moves it first
    got: list[str] = []
    after: tuple[dt.datetime, str] | None = None
    while True:
        page = await h.store.rooms(user_id=A, after=after, size=2)
        got += [r.id for r in page[:2]]
        if len(page) <= 2:
            break
        after = (page[1].activity_time, page[1].id)
    tied = sorted(ids[4:], reverse=True)
    assert got == [ids[1], *tied, ids[3], ids[2], ids[0]]
    first = (await h.store.rooms(user_id=A, after=None, size=1))[0]
    assert first.last_message is not None and first.last_message.text == "bumps it" and first.last_sequence == 1
