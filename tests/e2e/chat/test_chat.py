"""ChatService through its public gRPC API: rooms from match events, messages, receipts, typing, the
two stream paths with resume, closed rooms, and strangers refused everywhere."""
from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import grpc
import pytest
from google.rpc import error_details_pb2

from petplatform.chat.v1 import chat_pb2
from petplatform.chat.v1 import events_pb2 as chat_events
from petplatform.common.v1 import event_pb2
from petplatform.matching.v1 import events_pb2 as matching_events
from services.chat.hub import Subscriber
from tests.support.chat import caught_up, match, next_event, open_room, publish, send, until
from tests.support.errors import expect, violations
from tests.support.platform import Api, embedded_settings, module_of, start_platform


@pytest.fixture(scope="module", params=["relational", "mongodb"])
async def api(request, tmp_path_factory, smtp_sink):
    """The embedded platform, its chat keeping documents in its database, then in MongoDB (mongomock-motor
    stands in for a server: none can be installed here)."""
    overrides = {"chat_store": "mongodb", "mongodb_url": "mongomock://"} if request.param == "mongodb" else {}
    platform = await start_platform(embedded_settings(tmp_path_factory.mktemp("data"), smtp_sink, **overrides))
    client = Api(platform, smtp_sink)
    yield client
    await client.channel.close()
    await platform.stop(grace=1)


@pytest.fixture(scope="module")
async def people(api: Api):
    return [await api.signup(n) for n in ("Alice", "Bob", "Mallory")]


@pytest.fixture
async def room(api: Api, people):
    alice, bob, _ = people
    return await open_room(api, alice, bob)


def stream(api: Api, s, positions: dict[str, int] | None = None):
    return api.chat.StreamEvents(chat_pb2.StreamEventsRequest(last_sequences=positions or {}), metadata=s.md)


async def test_a_redelivered_or_repeated_match_created_makes_one_room(api: Api, people):
    alice, bob, _ = people
    m = match(alice, bob)
    event_id = await publish(api, matching_events.MatchCreated(match=m))
    await publish(api, matching_events.MatchCreated(match=m), event_id)  # the same event redelivered
    await publish(api, matching_events.MatchCreated(match=m))  # published twice by the producer
    name = "rooms/" + m.name.split("/")[1]

    async def room_made():
        try:
            return (await api.chat.GetRoom(chat_pb2.GetRoomRequest(name=name), metadata=bob.md)).room
        except grpc.aio.AioRpcError:
            return None
    room = await until(room_made, "room made")
    assert room.state == chat_pb2.Room.STATE_OPEN and sorted(room.members) == sorted([alice.name, bob.name])
    assert room.match == m.name
    # Let every publication be consumed: a marker room made after them shows up last.
    await open_room(api, alice, bob)
    rooms = (await api.chat.ListRooms(chat_pb2.ListRoomsRequest(page_size=100), metadata=alice.md)).rooms
    assert [r.name for r in rooms].count(name) == 1
    assert not await api.platform.rt.bus.dead_letters("chat.rooms")


async def test_a_malformed_match_event_is_parked_not_retried(api: Api, people):
    alice, _, _ = people
    bad = match(alice, alice)  # one person twice
    await publish(api, matching_events.MatchCreated(match=bad))
    await until(lambda: api.platform.rt.bus.dead_letters("chat.rooms"), "parked")


async def test_messages_are_numbered_stored_once_and_listed_backwards(api: Api, people, room):
    alice, bob, _ = people
    message_id = uuid.uuid4().hex
    first = await send(api, alice, room, "hello", message_id)
    again = await send(api, alice, room, "hello (resent)", message_id)
    assert again == first, "a resend returns the first copy"
    assert first.name == f"{room}/messages/{message_id}" and first.sequence == 1 and first.sender == alice.name
    for i in range(4):
        await send(api, bob if i % 2 else alice, room, f"m{i}")
    page1 = await api.chat.ListMessages(chat_pb2.ListMessagesRequest(parent=room, page_size=3), metadata=bob.md)
    assert [m.sequence for m in page1.messages] == [5, 4, 3] and page1.next_page_token
    page2 = await api.chat.ListMessages(chat_pb2.ListMessagesRequest(
        parent=room, page_size=3, page_token=page1.next_page_token), metadata=bob.md)
    assert [m.sequence for m in page2.messages] == [2, 1] and not page2.next_page_token
    assert page2.messages[1].text == "hello"

    listed = {r.name: r for r in (await api.chat.ListRooms(chat_pb2.ListRoomsRequest(), metadata=bob.md)).rooms}
    assert listed[room].last_message.sequence == 5 and listed[room].last_sequence == 5
    assert listed[room].unread_count == 3, "alice's messages 1, 2 and 4"
    assert (await api.chat.ListRooms(chat_pb2.ListRoomsRequest(), metadata=bob.md)).rooms[0].name == room, \
        "the most recently active room first"
    receipt = (await api.chat.MarkRead(chat_pb2.MarkReadRequest(room=room, sequence=4), metadata=bob.md)).receipt
    assert (receipt.read_sequence, receipt.delivered_sequence, receipt.user) == (4, 4, bob.name)
    back = (await api.chat.MarkRead(chat_pb2.MarkReadRequest(room=room, sequence=2), metadata=bob.md)).receipt
    assert back.read_sequence == 4, "a read mark never goes back"
    far = await expect(grpc.StatusCode.INVALID_ARGUMENT, api.chat.MarkRead(
        chat_pb2.MarkReadRequest(room=room, sequence=6), metadata=bob.md), "PAST_THE_END")
    assert "sequence" in violations(far), "a mark past the last message is the client's mistake"
    none = await expect(grpc.StatusCode.INVALID_ARGUMENT, api.chat.MarkRead(
        chat_pb2.MarkReadRequest(room=room), metadata=bob.md))
    assert violations(none) == {"sequence": "required"}
    assert (await api.chat.MarkRead(chat_pb2.MarkReadRequest(room=room, sequence=5), metadata=bob.md)
            ).receipt.read_sequence == 5
    got = (await api.chat.GetRoom(chat_pb2.GetRoomRequest(name=room), metadata=bob.md)).room
    assert got.unread_count == 0


async def test_message_sent_is_published_once_with_its_recipients(api: Api, people, room):
    alice, bob, _ = people
    heard: list[chat_events.MessageSent] = []

    async def handler(body: bytes) -> None:
        envelope = event_pb2.EventEnvelope.FromString(body)
        event = chat_events.MessageSent()
        envelope.payload.Unpack(event)
        heard.append(event)
    await api.platform.rt.bus.subscribe(f"test.sent.{uuid.uuid4().hex}", ["message.sent"], handler)
    message_id = uuid.uuid4().hex
    await send(api, alice, room, "for bob", message_id)
    await send(api, alice, room, "for bob", message_id)
    await send(api, alice, room, "marker")
    await until(lambda: asyncio.sleep(0, any(e.message.text == "marker" for e in heard)), "marker published")
    mine = [e for e in heard if e.message.name.endswith(message_id)]
    assert len(mine) == 1 and list(mine[0].recipients) == [bob.name]


async def test_strangers_are_refused_on_every_rpc_and_stream(api: Api, people, room):
    alice, _, mallory = people
    message = await send(api, alice, room, "private")
    md = mallory.md
    for call in (
        api.chat.GetRoom(chat_pb2.GetRoomRequest(name=room), metadata=md),
        api.chat.ListMessages(chat_pb2.ListMessagesRequest(parent=room), metadata=md),
        api.chat.SendMessage(chat_pb2.SendMessageRequest(parent=room, message_id=uuid.uuid4().hex,
                                                         message=chat_pb2.Message(text="hi")), metadata=md),
        api.chat.MarkRead(chat_pb2.MarkReadRequest(room=room, sequence=1), metadata=md),
        api.chat.SetTyping(chat_pb2.SetTypingRequest(room=room, typing=True), metadata=md),
        api.chat.DeleteMessage(chat_pb2.DeleteMessageRequest(name=message.name), metadata=md),
    ):
        await expect(grpc.StatusCode.NOT_FOUND, call, "NOT_FOUND")
    assert room not in [r.name for r in (await api.chat.ListRooms(chat_pb2.ListRoomsRequest(), metadata=md)).rooms]
    await expect(grpc.StatusCode.NOT_FOUND, stream(api, mallory, {room: 0}).read(), "NOT_FOUND")
    connect = api.chat.Connect(metadata=md)
    await connect.write(chat_pb2.ConnectRequest(resume=chat_pb2.Positions(last_sequences={room: 0})))
    await expect(grpc.StatusCode.NOT_FOUND, connect.read(), "NOT_FOUND")
    # On a stream of their own, each action on the room is refused, and nothing of it is pushed.
    connect = api.chat.Connect(metadata=md)
    await connect.write(chat_pb2.ConnectRequest(resume=chat_pb2.Positions()))
    assert (await next_event(connect, ("caught_up",))).HasField("caught_up")
    await connect.write(chat_pb2.ConnectRequest(action_id="a1", send_message=chat_pb2.SendMessageRequest(
        parent=room, message_id=uuid.uuid4().hex, message=chat_pb2.Message(text="let me in"))))
    answer = (await connect.read()).action_result
    assert answer.action_id == "a1" and answer.error.code == grpc.StatusCode.NOT_FOUND.value[0]
    await send(api, alice, room, "still private")
    await connect.write(chat_pb2.ConnectRequest(action_id="a2", set_typing=chat_pb2.SetTypingRequest(room=room)))
    reply = await connect.read()
    assert reply.WhichOneof("kind") == "action_result", "alice's message was not pushed to a stranger"
    connect.cancel()
    # Without a token, nothing at all.
    await expect(grpc.StatusCode.UNAUTHENTICATED, api.chat.ListRooms(chat_pb2.ListRoomsRequest()))


async def test_bad_input_is_invalid_argument(api: Api, people, room):
    alice, _, _ = people
    md = alice.md
    cases = [
        (api.chat.GetRoom(chat_pb2.GetRoomRequest(name="rooms/nope"), metadata=md), "name"),
        (api.chat.SendMessage(chat_pb2.SendMessageRequest(parent=room, message_id="not-hex",
                                                          message=chat_pb2.Message(text="x")), metadata=md),
         "message_id"),
        (api.chat.SendMessage(chat_pb2.SendMessageRequest(parent=room, message_id=uuid.uuid4().hex,
                                                          message=chat_pb2.Message(text="   ")), metadata=md),
         "message.text"),
        (api.chat.SendMessage(chat_pb2.SendMessageRequest(parent=room, message_id=uuid.uuid4().hex,
                                                          message=chat_pb2.Message(text="x" * 4001)), metadata=md),
         "message.text"),
        (api.chat.SendMessage(chat_pb2.SendMessageRequest(parent=room, message_id=uuid.uuid4().hex), metadata=md),
         "message"),
        (api.chat.MarkRead(chat_pb2.MarkReadRequest(room=room, sequence=-1), metadata=md), "sequence"),
        (api.chat.ListMessages(chat_pb2.ListMessagesRequest(parent=room, page_token="forged.token"), metadata=md),
         "page_token"),
        (api.chat.DeleteMessage(chat_pb2.DeleteMessageRequest(name=f"{room}/photos/x"), metadata=md), "name"),
    ]
    for call, field in cases:
        err = await expect(grpc.StatusCode.INVALID_ARGUMENT, call)
        assert field in violations(err), (field, violations(err))
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, stream(api, alice, {room: -1}).read())
    assert f"last_sequences[{room}]" in violations(err)
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, stream(api, alice, {"users/me": 1}).read())
    connect = api.chat.Connect(metadata=md)
    await connect.write(chat_pb2.ConnectRequest(action_id="x", send_message=chat_pb2.SendMessageRequest(parent=room)))
    answer = await next_event_or_answer(connect)
    assert answer.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    await connect.write(chat_pb2.ConnectRequest(action_id="y", resume=chat_pb2.Positions()))
    assert (await next_event_or_answer(connect)).error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    await connect.write(chat_pb2.ConnectRequest(action_id="z"))
    assert (await next_event_or_answer(connect)).error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    for action in (chat_pb2.ConnectRequest(mark_read=chat_pb2.MarkReadRequest(room=room, sequence=99)),
                   chat_pb2.ConnectRequest(ack=chat_pb2.Ack(room=room, sequence=99))):
        await connect.write(action)
        error = (await next_event_or_answer(connect)).error
        bad = error_details_pb2.BadRequest()
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and error.details[-1].Unpack(bad)
        assert [v.field for v in bad.field_violations] == [f"{action.WhichOneof('action')}.sequence"]
    connect.cancel()


async def next_event_or_answer(connect, events: list[chat_pb2.ChatEvent] | None = None) -> chat_pb2.ActionResult:
    """The next action result; the events read before it go to `events` (an action's own event may come
    before or after its answer)."""
    while True:
        reply = await asyncio.wait_for(connect.read(), 10)
        if reply.WhichOneof("kind") == "action_result":
            return reply.action_result
        if events is not None:
            events.append(reply.event)


async def test_connect_and_stream_events_see_the_same_conversation(api: Api, people, room):
    alice, bob, _ = people
    mobile = api.chat.Connect(metadata=alice.md)
    await mobile.write(chat_pb2.ConnectRequest(resume=chat_pb2.Positions(last_sequences={room: 0})))
    assert await caught_up_connect(mobile) == []
    browser = stream(api, bob, {room: 0})
    assert await caught_up(browser) == []

    await mobile.write(chat_pb2.ConnectRequest(action_id="s1", send_message=chat_pb2.SendMessageRequest(
        parent=room, message_id=uuid.uuid4().hex, message=chat_pb2.Message(text="from the phone"))))
    before_answer: list[chat_pb2.ChatEvent] = []
    answer = await next_event_or_answer(mobile, before_answer)
    assert answer.action_id == "s1" and answer.message.sequence == 1 and not answer.HasField("error")
    assert (await next_event(browser)).message.text == "from the phone"

    own = next((e for e in before_answer if e.HasField("message")), None) or await next_event(mobile)
    assert own.message.text == "from the phone", "the sender's devices get it too"
    await send(api, bob, room, "from the browser")
    assert (await next_event(browser)).message.text == "from the browser"
    assert (await next_event(mobile)).message.text == "from the browser"

    await api.chat.SetTyping(chat_pb2.SetTypingRequest(room=room, typing=True), metadata=bob.md)
    typing = (await next_event(mobile, ("typing",))).typing
    assert (typing.room, typing.user, typing.typing) == (room, bob.name, True)
    await mobile.write(chat_pb2.ConnectRequest(set_typing=chat_pb2.SetTypingRequest(room=room, typing=True)))
    assert (await next_event(browser, ("typing",))).typing.user == alice.name

    await mobile.write(chat_pb2.ConnectRequest(ack=chat_pb2.Ack(room=room, sequence=2)))
    delivered = (await next_event(browser, ("receipt",))).receipt
    assert (delivered.user, delivered.delivered_sequence, delivered.read_sequence) == (alice.name, 2, 0)
    await mobile.write(chat_pb2.ConnectRequest(mark_read=chat_pb2.MarkReadRequest(room=room, sequence=2)))
    read = (await next_event(browser, ("receipt",))).receipt
    assert (read.user, read.read_sequence) == (alice.name, 2)
    mobile.cancel()
    browser.cancel()


async def caught_up_connect(call) -> list[chat_pb2.Message]:
    return await caught_up(call)


async def test_a_killed_stream_resumes_with_nothing_lost_or_doubled(api: Api, people, room):
    alice, bob, _ = people
    for i in range(3):
        await send(api, alice, room, f"before {i}")
    first = stream(api, bob, {room: 0})
    got = await caught_up(first)
    assert [m.sequence for m in got] == [1, 2, 3]
    await send(api, alice, room, "live 4")
    assert (await next_event(first)).message.sequence == 4
    first.cancel()  # the connection drops mid-conversation
    for i in range(5, 9):
        await send(api, alice, room, f"missed {i}")
    second = stream(api, bob, {room: 4})
    assert [m.sequence for m in await caught_up(second)] == [5, 6, 7, 8]
    await send(api, alice, room, "live 9")
    assert (await next_event(second)).message.sequence == 9
    second.cancel()


async def test_a_resumed_stream_learns_of_messages_deleted_while_it_was_away(api: Api, people, room):
    """Issue 10: a message becomes a tombstone for both members. A client that saw it whole and reconnects
    at a later position is sent its tombstone (by name, so it replaces its copy) before what it missed."""
    alice, bob, _ = people
    kept, gone, also_gone = [await send(api, alice, room, t) for t in ("kept", "deleted later", "also deleted")]
    first = stream(api, bob, {room: 0})
    assert [m.text for m in await caught_up(first)] == ["kept", "deleted later", "also deleted"]
    first.cancel()  # Bob goes away, holding all three whole
    for m in (gone, also_gone):
        await api.chat.DeleteMessage(chat_pb2.DeleteMessageRequest(name=m.name), metadata=alice.md)
    after = await send(api, alice, room, "after")
    for m in (gone, also_gone):
        await api.chat.DeleteMessage(chat_pb2.DeleteMessageRequest(name=m.name), metadata=alice.md)  # once is enough
    second = stream(api, bob, {room: 3})
    got = await caught_up(second)
    assert [(m.name, m.text, m.HasField("delete_time")) for m in got] == [
        (gone.name, "", True), (also_gone.name, "", True), (after.name, "after", False)]
    second.cancel()
    # A client that never had them whole (it resumes before them) gets them once, in their place.
    third = stream(api, bob, {room: 1})
    assert [(m.sequence, m.HasField("delete_time")) for m in await caught_up(third)] == [
        (2, True), (3, True), (4, False)]
    third.cancel()
    assert kept.sequence == 1


async def until_caught_up(call) -> tuple[list[chat_pb2.Message], chat_pb2.CaughtUp]:
    out = []
    while (event := await next_event(call, ("message", "caught_up"))).WhichOneof("kind") == "message":
        out.append(event.message)
    return out, event.caught_up


async def test_a_resume_is_sent_only_the_deletions_after_its_last_caught_up(api: Api, people, room):
    """Issue 10: the tombstones a resume is sent are bounded by the room's deletion counter: a client gives
    back the number its last CaughtUp named and gets only the deletions made since, not all of them."""
    alice, bob, _ = people
    sent = [await send(api, alice, room, f"m{i}") for i in range(1, 7)]
    for m in sent[:3]:
        await api.chat.DeleteMessage(chat_pb2.DeleteMessageRequest(name=m.name), metadata=alice.md)
    first = stream(api, bob, {room: 6})
    got, done = await until_caught_up(first)
    assert [(m.sequence, m.delete_sequence) for m in got] == [(1, 1), (2, 2), (3, 3)], "no position given: all"
    assert dict(done.last_delete_sequences) == {room: 3}
    first.cancel()
    await api.chat.DeleteMessage(chat_pb2.DeleteMessageRequest(name=sent[4].name), metadata=alice.md)
    again = api.chat.StreamEvents(chat_pb2.StreamEventsRequest(last_sequences={room: 6},
                                                               last_delete_sequences={room: 3}), metadata=bob.md)
    got, done = await until_caught_up(again)
    assert [(m.sequence, m.delete_sequence) for m in got] == [(5, 4)], "only the deletion made since"
    assert dict(done.last_delete_sequences) == {room: 4}
    again.cancel()
    # The same over Connect.
    call = api.chat.Connect(metadata=bob.md)
    await call.write(chat_pb2.ConnectRequest(resume=chat_pb2.Positions(last_sequences={room: 6},
                                                                       last_delete_sequences={room: 4})))
    event = (await call.read()).event
    assert event.WhichOneof("kind") == "caught_up" and dict(event.caught_up.last_delete_sequences) == {room: 4}
    call.cancel()
    # A deletion position of a room the request does not resume is a field violation.
    bad = api.chat.StreamEvents(chat_pb2.StreamEventsRequest(last_delete_sequences={room: 1}), metadata=bob.md)
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, bad.read())
    assert f"last_delete_sequences[{room}]" in violations(err)


async def test_messages_sent_while_a_stream_opens_arrive_once_in_order(api: Api, people, room):
    """The seam: sends race the catch-up read; whatever falls on either side arrives exactly once."""
    alice, bob, _ = people
    for i in range(5):
        await send(api, alice, room, f"old {i}")

    async def sender():
        for i in range(20):
            await send(api, alice, room, f"racing {i}")
    task = asyncio.create_task(sender())
    call = stream(api, bob, {room: 2})
    seen = [m.sequence for m in await caught_up(call)]
    while not seen or seen[-1] < 25:
        seen.append((await next_event(call)).message.sequence)
    await task
    assert seen == list(range(3, 26))
    call.cancel()


async def test_a_slow_client_loses_typing_but_never_messages(api: Api, people, room):
    """A stream that is not read while events pour in: its buffer (3 here) overflows, typing is
    dropped, and the messages come from storage, all of them, in order, once."""
    alice, bob, _ = people
    chat = module_of(api, "chat")
    servicer = chat.servicers()["petplatform.chat.v1.ChatService"]
    subscriber = chat.hub.register(bob.user_id)
    subscriber.capacity = 3
    events = servicer._events(subscriber, {room: 0}, {}, {room: 0}, None)
    try:
        assert (await anext(events)).HasField("caught_up")
        for i in range(12):  # nobody reads the stream meanwhile
            await api.chat.SetTyping(chat_pb2.SetTypingRequest(room=room, typing=bool(i % 2)), metadata=alice.md)
            await send(api, alice, room, f"burst {i}")
        assert subscriber.dropped > 0 and subscriber.stale == {room.split("/")[1]}
        seen = []
        while len(seen) < 12:
            event = await asyncio.wait_for(anext(events), 10)
            if event.WhichOneof("kind") == "message":
                seen.append(event.message.sequence)
        assert seen == list(range(1, 13))
    finally:
        await events.aclose()
        chat.hub.unregister(subscriber)


def test_a_full_buffer_drops_typing_and_marks_the_room_stale():
    sub = Subscriber("u", capacity=1)
    message = chat_pb2.ChatEvent(message=chat_pb2.Message(name=f"rooms/{'a' * 32}/messages/{'b' * 32}", sequence=1))
    sub.offer(message)
    sub.offer(chat_pb2.ChatEvent(typing=chat_pb2.Typing(room="rooms/x", typing=True)))
    second = chat_pb2.ChatEvent(message=chat_pb2.Message(name=f"rooms/{'a' * 32}/messages/{'c' * 32}", sequence=2))
    sub.offer(second)
    assert list(sub.events) == [message] and sub.dropped == 1 and sub.stale == {"a" * 32}


async def test_deleting_leaves_a_tombstone_for_both(api: Api, people, room):
    alice, bob, _ = people
    message = await send(api, alice, room, "oops")
    call = stream(api, bob, {room: message.sequence})
    await caught_up(call)
    await expect(grpc.StatusCode.PERMISSION_DENIED,
                 api.chat.DeleteMessage(chat_pb2.DeleteMessageRequest(name=message.name), metadata=bob.md),
                 "NOT_SENDER")
    tombstone = (await api.chat.DeleteMessage(chat_pb2.DeleteMessageRequest(name=message.name),
                                              metadata=alice.md)).message
    assert tombstone.HasField("delete_time") and tombstone.text == "" and tombstone.sequence == message.sequence
    pushed = (await next_event(call)).message
    assert pushed.name == message.name and pushed.HasField("delete_time")
    listed = (await api.chat.ListMessages(chat_pb2.ListMessagesRequest(parent=room), metadata=bob.md)).messages
    assert listed[0].name == message.name and listed[0].text == ""
    await expect(grpc.StatusCode.NOT_FOUND, api.chat.DeleteMessage(
        chat_pb2.DeleteMessageRequest(name=f"{room}/messages/{uuid.uuid4().hex}"), metadata=alice.md))
    call.cancel()


@pytest.mark.parametrize("how", ["ended", "blocked"])
async def test_a_closed_room_keeps_its_history_read_only(api: Api, people, how):
    alice, bob, _ = people
    m = match(alice, bob)
    await publish(api, matching_events.MatchCreated(match=m))
    room = "rooms/" + m.name.split("/")[1]
    await until(lambda: rooms_of(api, alice, room), "room made")
    await send(api, alice, room, "before")
    call = stream(api, bob, {room: 1})
    await caught_up(call)
    if how == "ended":
        await publish(api, matching_events.MatchEnded(match=m, reason=matching_events.MatchEnded.REASON_UNMATCHED))
    else:
        await publish(api, matching_events.UserBlocked(user=bob.name, blocked_user=alice.name))
    closed = (await next_event(call, ("room",))).room
    # A block closes every room of the two. The room's opening may be announced late, after the stream
    # opened (mongodb: the room is stored before the inbox transaction whose commit announces it): skipped.
    while closed.name != room or closed.state == chat_pb2.Room.STATE_OPEN:
        closed = (await next_event(call, ("room",))).room
    assert closed.state == chat_pb2.Room.STATE_CLOSED
    await expect(grpc.StatusCode.FAILED_PRECONDITION, send(api, alice, room, "after"), "ROOM_CLOSED")
    await expect(grpc.StatusCode.FAILED_PRECONDITION, api.chat.SetTyping(
        chat_pb2.SetTypingRequest(room=room, typing=True), metadata=alice.md), "ROOM_CLOSED")
    history = (await api.chat.ListMessages(chat_pb2.ListMessagesRequest(parent=room), metadata=bob.md)).messages
    assert [m.text for m in history] == ["before"]
    call.cancel()


async def test_a_match_ended_before_its_creation_was_heard_leaves_the_room_closed(api: Api, people):
    alice, bob, _ = people
    m = match(alice, bob)
    await publish(api, matching_events.MatchEnded(match=m, reason=matching_events.MatchEnded.REASON_UNMATCHED))
    room = "rooms/" + m.name.split("/")[1]
    await until(lambda: rooms_of(api, alice, room), "room made")
    await publish(api, matching_events.MatchCreated(match=m))
    await open_room(api, alice, bob)  # a marker: the late match.created was consumed before it
    got = (await api.chat.GetRoom(chat_pb2.GetRoomRequest(name=room), metadata=alice.md)).room
    assert got.state == chat_pb2.Room.STATE_CLOSED


async def rooms_of(api: Api, s, name: str) -> bool:
    rooms = (await api.chat.ListRooms(chat_pb2.ListRoomsRequest(page_size=100), metadata=s.md)).rooms
    return any(r.name == name for r in rooms)


async def presence_of(call, user: str) -> chat_pb2.Presence:
    """The next presence event about `user` (the people of other tests' rooms are peers too)."""
    while (p := (await next_event(call, ("presence",))).presence).user != user:
        pass
    return p


async def test_presence_tells_room_members_who_came_online_and_when_they_were_last_seen(api: Api, people, room):
    alice, bob, _ = people
    watcher = stream(api, alice, {})
    await caught_up(watcher)
    # Once caught up, where each peer stands: bob is not streaming.
    assert not (await presence_of(watcher, bob.name)).online
    other = stream(api, bob, {})
    await caught_up(other)
    assert (await presence_of(other, alice.name)).online  # alice, as bob's stream opens
    online = await presence_of(watcher, bob.name)
    assert online.online and not online.HasField("last_seen_time")
    other.cancel()
    offline = await presence_of(watcher, bob.name)
    assert not offline.online
    left = offline.last_seen_time.ToDatetime(tzinfo=dt.timezone.utc)
    assert abs(left - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(minutes=5)
    watcher.cancel()

    # A page opened later still learns when bob was last seen (from the presence port, not from the page).
    async def bob_gone_with_a_time():
        later = stream(api, alice, {})
        try:
            await caught_up(later)
            p = await presence_of(later, bob.name)
            return p if not p.online and p.HasField("last_seen_time") else None
        finally:
            later.cancel()
    seen = await until(bob_gone_with_a_time, "bob offline with his last-seen time")
    assert abs(seen.last_seen_time.ToDatetime(tzinfo=dt.timezone.utc) - left) < dt.timedelta(minutes=1)

