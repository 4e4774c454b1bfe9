"""The documents port's outbox (mesh/mongo.py) on mongomock-motor: an event stored with its document is
published once, stays pending while the broker refuses it, and only declared events are stored."""
from __future__ import annotations

import uuid

import pytest

from mesh.config import ConfigError, load_settings
from mesh.events import UndeclaredEvent
from mesh.mongo import PENDING, PENDING_SINCE, DocumentOutbox, connect
from petplatform.chat.v1 import chat_pb2
from petplatform.chat.v1 import events_pb2 as chat_events
from petplatform.common.v1 import event_pb2


class FlakyBus:
    def __init__(self) -> None:
        self.down = False
        self.published: list[str] = []

    async def publish(self, event_type: str, body: bytes, message_id: str) -> None:
        if self.down:
            raise ConnectionError("broker unreachable")
        assert event_pb2.EventEnvelope.FromString(body).id == message_id
        self.published.append(message_id)


@pytest.fixture
async def docs():
    client = connect(url="mongomock://")
    collection = client[f"test_{uuid.uuid4().hex[:12]}"]["things"]
    bus = FlakyBus()
    outbox = DocumentOutbox(bus=bus, source="chat", declared=frozenset({"message.sent"}),  # type: ignore[arg-type]
                            collections=[collection])
    await outbox.create_indexes()
    yield outbox, collection, bus
    client.close()


def sent(text: str) -> chat_events.MessageSent:
    return chat_events.MessageSent(message=chat_pb2.Message(text=text))


async def test_an_event_is_published_once_and_kept_while_the_broker_is_down(docs):
    outbox, things, bus = docs
    await things.insert_one(outbox.inserted({"_id": 1}, sent("one")))
    await things.update_one({"_id": 1}, outbox.update({"$set": {"x": 1}}, sent("two")))
    await things.insert_one(outbox.inserted({"_id": 2}, None))  # no event: nothing pending
    bus.down = True
    with pytest.raises(ConnectionError):
        await outbox.drain_once()
    assert len((await things.find_one({"_id": 1}))[PENDING]) == 2
    bus.down = False
    assert await outbox.drain_once() == 2
    assert await outbox.drain_once() == 0
    assert len(set(bus.published)) == 2
    assert await things.find_one({"_id": 1}) == {"_id": 1, "x": 1}  # the change stays, the outbox goes
    assert await things.count_documents({PENDING_SINCE: {"$exists": True}}) == 0


async def test_an_undeclared_event_is_refused_before_anything_is_written(docs):
    outbox, _, _ = docs
    with pytest.raises(UndeclaredEvent):
        outbox.inserted({"_id": 3}, chat_events.MessagesRead())


def test_the_mongodb_chat_store_needs_a_url():
    with pytest.raises(ConfigError, match="PETPLATFORM_MONGODB_URL"):
        load_settings(chat_store="mongodb")
