"""Two chat replicas on one PostgreSQL, RabbitMQ and Redis: a message sent through one reaches a member
streaming from the other (Redis pub/sub fan-out), and a stream resumes on either."""
from __future__ import annotations

import grpc
import pytest

from petplatform.chat.v1 import chat_pb2, chat_pb2_grpc
from tests.support.chat import caught_up, next_event, open_room, send
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
