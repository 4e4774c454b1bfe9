"""Chat through the edge: REST for scripts (SendMessage, ListMessages), gRPC-Web server streaming for
browsers (StreamEvents), and the bidi Connect passed through on the edge's gRPC port for mobile apps."""
from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
import sonora.protocol

from petplatform.chat.v1 import chat_pb2, chat_pb2_grpc
from tests.support.chat import caught_up, next_event, open_room
from tests.support.platform import EdgeClient
from tests.support.web import WebChannel, call


async def test_rest_web_and_mobile_clients_share_one_conversation(edge: EdgeClient):
    alice, bob, mallory = [await edge.api.signup(n) for n in ("Alice", "Bob", "Mallory")]
    room = await open_room(edge.api, alice, bob)
    async with WebChannel(edge.url) as web, grpc.aio.insecure_channel(edge.grpc_address) as mobile_channel:
        browser = chat_pb2_grpc.ChatServiceStub(web).StreamEvents(
            chat_pb2.StreamEventsRequest(last_sequences={room: 0}), metadata=bob.md)
        assert await caught_up(browser) == []
        phone = chat_pb2_grpc.ChatServiceStub(mobile_channel).Connect(metadata=alice.md)
        await phone.write(chat_pb2.ConnectRequest(resume=chat_pb2.Positions(last_sequences={room: 0})))
        assert await caught_up(phone) == []

        message_id = uuid.uuid4().hex
        status, sent, _ = await call(edge, "POST", f"/v1/{room}/messages",
                                     {"messageId": message_id, "message": {"text": "from a script"}},
                                     alice.access_token)
        assert status == 200 and sent["name"] == f"{room}/messages/{message_id}" and sent["sequence"] == "1"
        status, again, _ = await call(edge, "POST", f"/v1/{room}/messages",
                                      {"messageId": message_id, "message": {"text": "resent"}}, alice.access_token)
        assert status == 200 and again == sent, "a resend over REST stores nothing new"
        assert (await next_event(browser)).message.text == "from a script"
        assert (await next_event(phone)).message.text == "from a script"

        await phone.write(chat_pb2.ConnectRequest(action_id="p1", send_message=chat_pb2.SendMessageRequest(
            parent=room, message_id=uuid.uuid4().hex, message=chat_pb2.Message(text="from the phone"))))
        assert (await next_event(browser)).message.sequence == 2
        status, page, _ = await call(edge, "GET", f"/v1/{room}/messages", token=bob.access_token, pageSize="1")
        assert status == 200 and [m["text"] for m in page["messages"]] == ["from the phone"]
        status, older, _ = await call(edge, "GET", f"/v1/{room}/messages", token=bob.access_token, pageSize="1",
                                      pageToken=page["nextPageToken"])
        assert [m["text"] for m in older["messages"]] == ["from a script"]

        status, err, _ = await call(edge, "GET", f"/v1/{room}/messages", token=mallory.access_token)
        assert status == 404 and err["details"][0]["reason"] == "NOT_FOUND"
        status, err, _ = await call(edge, "POST", f"/v1/{room}/messages", {"messageId": "x", "message": {"text": "y"}},
                                    alice.access_token)
        assert status == 400
        stranger = chat_pb2_grpc.ChatServiceStub(web).StreamEvents(
            chat_pb2.StreamEventsRequest(last_sequences={room: 0}), metadata=mallory.md)
        with pytest.raises(sonora.protocol.WebRpcError) as refused:
            await asyncio.wait_for(stranger.read(), 10)
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        phone.cancel()
