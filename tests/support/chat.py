"""Chat under test: rooms made as the matching service would make them (by publishing its events on
the platform's bus, in the envelope a producer's relay writes), and stream readers that wait for a
condition rather than a time."""
from __future__ import annotations

import asyncio
import uuid

from google.protobuf import any_pb2
import grpc
from google.protobuf.message import Message

from mesh.events import event_type
from petplatform.chat.v1 import chat_pb2
from petplatform.common.v1 import event_pb2
from petplatform.matching.v1 import events_pb2 as matching_events
from petplatform.matching.v1 import matching_pb2
from tests.support.platform import Api, Session

READ_GUARD = 10.0  # seconds: only a guard against a hang, never what a test waits for


async def publish(api: Api, event: Message, event_id: str | None = None) -> str:
    """Publishes `event` on the platform's bus as its producer's relay would; returns the event id."""
    packed = any_pb2.Any()
    packed.Pack(event)
    event_id = event_id or str(uuid.uuid4())
    envelope = event_pb2.EventEnvelope(id=event_id, type=event_type(event), source="matching", payload=packed)
    envelope.time.GetCurrentTime()
    await api.platform.rt.bus.publish(event_type(event), envelope.SerializeToString(), event_id)
    return event_id


def match(a: Session, b: Session, match_id: str | None = None) -> matching_pb2.Match:
    return matching_pb2.Match(name=f"matches/{match_id or uuid.uuid4().hex}", users=[a.name, b.name],
                              kind=matching_pb2.Match.KIND_PLAYDATE, state=matching_pb2.Match.STATE_ACTIVE)


async def until(condition, what: str, guard: float = READ_GUARD):
    """Polls an async condition until it returns something truthy."""
    for _ in range(int(guard / 0.02)):
        result = await condition()
        if result:
            return result
        await asyncio.sleep(0.02)
    raise AssertionError(f"never happened: {what}")


async def open_room(api: Api, a: Session, b: Session) -> str:
    """A match between a and b, published; returns its room's name once the room exists."""
    m = match(a, b)
    await publish(api, matching_events.MatchCreated(match=m))
    name = "rooms/" + m.name.split("/")[1]

    async def listed():
        rooms = (await api.chat.ListRooms(chat_pb2.ListRoomsRequest(), metadata=a.md)).rooms
        return any(r.name == name for r in rooms)
    await until(listed, f"{name} made")
    return name


async def send(api: Api, s: Session, room: str, text: str, message_id: str | None = None) -> chat_pb2.Message:
    return (await api.chat.SendMessage(chat_pb2.SendMessageRequest(
        parent=room, message_id=message_id or uuid.uuid4().hex, message=chat_pb2.Message(text=text)),
        metadata=s.md)).message


async def next_event(call, kinds: tuple[str, ...] = ("message",), guard: float = READ_GUARD) -> chat_pb2.ChatEvent:
    """The next event of one of `kinds` on a StreamEvents or Connect call (others are skipped)."""
    while True:
        response = await asyncio.wait_for(call.read(), guard)
        assert response is not grpc.aio.EOF, "the stream ended"
        event = response.event
        if event.WhichOneof("kind") in kinds:
            return event


async def caught_up(call) -> list[chat_pb2.Message]:
    """The messages a stream sends before its CaughtUp event, in order."""
    out = []
    while True:
        event = await next_event(call, ("message", "caught_up"))
        if event.WhichOneof("kind") == "caught_up":
            return out
        out.append(event.message)
