"""Two chat replicas on one PostgreSQL, RabbitMQ and Redis: a message sent through one reaches a member
streaming from the other (Redis pub/sub fan-out), and a stream resumes on either."""
from __future__ import annotations

import uuid

import grpc
import pytest

from petplatform.chat.v1 import chat_pb2, chat_pb2_grpc
from petplatform.chat.v1 import events_pb2 as chat_events
from petplatform.common.v1 import event_pb2
from petplatform.notification.v1 import notification_pb2
from services.chat.hub import WATCHING
from tests.support.chat import caught_up, next_event, open_room, send, until
from tests.support.platform import Api, start_platform

pytestmark = pytest.mark.real


async def test_messages_cross_replicas_and_resume_on_either(real_api: Api):
    alice, bob = await real_api.signup("Alice"), await real_api.signup("Bob")
    room = await open_room(real_api, alice, bob)
    second = await start_platform(real_api.platform.settings)
    try:
        async with grpc.aio.insecure_channel(second.address) as ch:
            elsewhere = chat_pb2_grpc.ChatServiceStub(ch)
            call = elsewhere.StreamEvents(chat_pb2.StreamEventsRequest(last_sequences={room: 0}), metadata=bob.md)
            assert await caught_up(call) == []
            sent = await send(real_api, alice, room, "across")  # through the first replica
            got = (await next_event(call)).message
            assert (got.name, got.sequence, got.text) == (sent.name, 1, "across")
            call.cancel()
            for i in range(3):
                await send(real_api, alice, room, f"missed {i}")
            # Resumed on the first replica, then live from a send through the second.
            again = real_api.chat.StreamEvents(chat_pb2.StreamEventsRequest(last_sequences={room: 1}),
                                               metadata=bob.md)
            assert [m.sequence for m in await caught_up(again)] == [2, 3, 4]
            await elsewhere.SendMessage(chat_pb2.SendMessageRequest(
                parent=room, message_id="f" * 32, message=chat_pb2.Message(text="back")), metadata=alice.md)
            assert (await next_event(again)).message.sequence == 5
            again.cancel()
    finally:
        await second.stop(grace=1)


async def test_a_member_streaming_from_another_replica_counts_as_watching(real_api: Api):
    """Presence crosses replicas (Redis): message.sent names who watched, and only the others are notified."""
    alice, bob = await real_api.signup("Alice"), await real_api.signup("Bob")
    room = await open_room(real_api, alice, bob)
    heard: list[chat_events.MessageSent] = []

    async def handler(body: bytes) -> None:
        event = chat_events.MessageSent()
        event_pb2.EventEnvelope.FromString(body).payload.Unpack(event)
        heard.append(event)
    await real_api.platform.rt.bus.subscribe(f"test.sent.{uuid.uuid4().hex[:8]}", ["message.sent"], handler)
    second = await start_platform(real_api.platform.settings)
    try:
        async with grpc.aio.insecure_channel(second.address) as ch:
            call = chat_pb2_grpc.ChatServiceStub(ch).StreamEvents(chat_pb2.StreamEventsRequest(), metadata=bob.md)
            await caught_up(call)

            async def held():
                return await real_api.platform.rt.presence.present(WATCHING, [bob.user_id])
            await until(held, "bob's lease held by the second replica")
            watched = await send(real_api, alice, room, "watched")  # through the first replica
            call.cancel()

            async def released():
                return not await held()
            await until(released, "bob's lease given back")
            away = await send(real_api, alice, room, "away")
    finally:
        await second.stop(grace=1)

    async def both():
        by_name = {e.message.name: e for e in heard}
        return by_name if {watched.name, away.name} <= set(by_name) else None
    events = await until(both, "both published")
    assert list(events[watched.name].watching) == [bob.name] and not events[away.name].watching

    async def notified():
        found = (await real_api.notification.ListNotifications(notification_pb2.ListNotificationsRequest(),
                                                               metadata=bob.md)).notifications
        return [n.body for n in found if n.kind == notification_pb2.KIND_MESSAGE and n.target == room]
    assert await until(notified, "bob notified") == ["away"]
