"""ChatService: rooms only their members see, messages numbered per room, and the two stream paths
(Connect for mobile, StreamEvents for browsers) over one event loop per stream (events())."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import grpc

from mesh import errors, media, principal
from mesh.blobs import BlobNotFound, BlobStore
from mesh.interceptor import send_headers
from mesh.resources import decode_page_token, encode_page_token, new_id, page_size, parse_name, timestamp
from mesh.sql import utcnow
from petplatform.chat.v1 import chat_pb2, chat_pb2_grpc
from petplatform.chat.v1 import events_pb2 as chat_events
from services.chat import domain
from services.chat.documents import (ChatStore, IdTaken, NotMember, NotSender, PastTheEnd, RoomClosed, RoomRecord,
                                     Sent, receipt)
from services.chat.hub import ChatHub, Subscriber, is_new_message, room_of

log = logging.getLogger(__name__)

ROOM_TYPE = "chat.petplatform.dev/Room"
MESSAGE_TYPE = "chat.petplatform.dev/Message"
ATTACHMENT_TYPE = "chat.petplatform.dev/Attachment"
DOMAIN = "chat.petplatform.dev"
CATCH_UP_PAGE = 100
ACTION_BACKLOG = 16  # answers to Connect actions not yet sent; past it the stream stops reading actions

T = TypeVar("T")


def blob_key(attachment_name: str) -> str:
    """Where an attachment's bytes are: under the blob port's chat area (mesh.blobs.PRIVATE_AREAS)."""
    return "chat/" + attachment_name.removeprefix("rooms/")


def to_room(r: RoomRecord) -> chat_pb2.Room:
    return chat_pb2.Room(
        name=f"rooms/{r.id}", match=f"matches/{r.match_id}", members=[f"users/{u}" for u in r.member_ids],
        state=chat_pb2.Room.State.Name(r.state), last_sequence=r.last_sequence, last_message=r.last_message,
        unread_count=r.unread_count,
        receipts=[receipt(r.id, m) for m in r.members], create_time=timestamp(r.create_time),
        close_time=timestamp(r.close_time))


async def mapped(name: str, call: Awaitable[T]) -> T:
    """The store's refusals as the API's errors. A room the caller is not in does not exist for them."""
    try:
        return await call
    except NotMember:
        raise errors.not_found(ROOM_TYPE, name) from None
    except RoomClosed:
        raise errors.failed_precondition(f"{name} is closed: its history is read-only", "ROOM_CLOSED") from None
    except NotSender:
        raise errors.permission_denied("only its sender may delete a message", "NOT_SENDER") from None
    except IdTaken:
        raise errors.already_exists(MESSAGE_TYPE, name, "another member used this message_id in the room") from None
    except LookupError:
        raise errors.not_found(MESSAGE_TYPE, name) from None


class ChatServicer(chat_pb2_grpc.ChatServiceServicer):
    def __init__(self, store: ChatStore, hub: ChatHub, blobs: BlobStore):
        self.store = store
        self.hub = hub
        self.blobs = blobs
        hub.on_presence = self._presence

    # --- actions, shared by the unary RPCs and Connect ---

    async def _send(self, request: chat_pb2.SendMessageRequest, prefix: str = "") -> chat_pb2.Message:
        caller = principal.require()
        room = domain.room_id(request.parent, f"{prefix}parent")
        domain.check_message(message_id=request.message_id, text=request.message.text, prefix=prefix,
                             attachments=request.attachments)
        attachments: list[chat_pb2.Attachment] = []
        if request.attachments:
            first = await self._stored_already(request, room, caller.user_id)
            if first is not None:  # a resend: nothing is checked or stored again
                return first
            attachments = await self._store_attachments(request, room, prefix)
        try:
            message = await self._store_message(request, room, caller, attachments)
        except BaseException:
            await self._drop_blobs([blob_key(a.name) for a in attachments])  # no message, no blobs
            raise
        if attachments and [a.name for a in message.attachments] != [a.name for a in attachments]:
            await self._drop_blobs([blob_key(a.name) for a in attachments])  # a concurrent resend stored first
        return message

    async def _stored_already(self, request: chat_pb2.SendMessageRequest, room: str,
                              user_id: str) -> chat_pb2.Message | None:
        """The message as stored by an earlier send of it; refuses early what the send would (non-members,
        closed rooms), before the attachments' bytes are judged or stored."""
        r = await mapped(request.parent, self.store.room(room_id=room, user_id=user_id))
        try:
            first = await self.store.message(room_id=room, message_id=request.message_id, user_id=user_id)
        except LookupError:
            first = None
        if first is not None:
            if first.sender != f"users/{user_id}":
                raise errors.already_exists(MESSAGE_TYPE, first.name, "another member used this message_id in the room")
            return first
        if r.state != chat_pb2.Room.STATE_OPEN:
            raise errors.failed_precondition(f"{request.parent} is closed: its history is read-only", "ROOM_CLOSED")
        return None

    async def _store_attachments(self, request: chat_pb2.SendMessageRequest, room: str,
                                 prefix: str) -> list[chat_pb2.Attachment]:
        """Judges each attachment by its bytes (in the shared decoder threads), then stores them in the
        blob port's chat area, which nothing serves but GetAttachment."""
        loop = asyncio.get_running_loop()
        checked = []
        for i, upload in enumerate(request.attachments):
            checked.append(await loop.run_in_executor(media.decoders, functools.partial(
                media.check_file, upload.content, declared=upload.content_type, max_image_bytes=domain.MAX_IMAGE_BYTES,
                max_file_bytes=domain.MAX_FILE_BYTES, field=f"{prefix}attachments[{i}].content")))
        out: list[chat_pb2.Attachment] = []
        try:
            for upload, c in zip(request.attachments, checked, strict=True):
                a = chat_pb2.Attachment(
                    name=f"rooms/{room}/messages/{request.message_id}/attachments/{new_id()}",
                    content_type=c.content_type, size_bytes=len(upload.content), filename=upload.filename,
                    width=c.width, height=c.height)
                await self.blobs.put(blob_key(a.name), upload.content, c.content_type)
                out.append(a)
        except BaseException:
            await self._drop_blobs([blob_key(a.name) for a in out])
            raise
        return out

    async def _drop_blobs(self, keys: list[str]) -> None:
        for key in keys:
            try:
                await self.blobs.delete(key)
            except Exception:  # an orphaned blob is unreachable (GetAttachment finds none); a failed delete
                log.warning("could not delete blob %s", key, exc_info=True)  # must not fail the RPC

    async def _store_message(self, request: chat_pb2.SendMessageRequest, room: str, caller: principal.Principal,
                             attachments: list[chat_pb2.Attachment]) -> chat_pb2.Message:
        members = await mapped(request.parent, self.store.members(room_id=room, user_id=caller.user_id))
        others = [u for u in members if u != caller.user_id]
        # Asked before the transaction, not inside it: the room's row lock is held only for the writes.
        watching = await self.hub.watching(others)

        def event(sent: Sent) -> chat_events.MessageSent:
            return chat_events.MessageSent(message=sent.message, recipients=[f"users/{u}" for u in others],
                                           watching=[f"users/{u}" for u in others if u in watching])
        async def store_and_publish() -> chat_pb2.Message:
            sent = await mapped(request.parent, self.store.send(
                room_id=room, user_id=caller.user_id, message_id=request.message_id, text=request.message.text,
                now=utcnow(), event=event, attachments=attachments))
            if sent.created:
                await self.hub.publish(sent.recipients, chat_pb2.ChatEvent(message=sent.message))
            return sent.message
        # Shielded: a caller gone while its message is written (a deadline, a dropped connection) must not
        # leave it stored but unannounced; its resend would find it stored and announce nothing.
        return await asyncio.shield(store_and_publish())

    async def _mark(self, room_name: str, prefix: str, *, read: int = 0, delivered: int = 0) -> chat_pb2.Receipt:
        caller = principal.require()
        room = domain.room_id(room_name, f"{prefix}room")
        if read < 0 or delivered < 0:
            raise errors.invalid_argument((f"{prefix}sequence", "must not be negative"))
        try:
            r, members, moved = await mapped(room_name, self.store.mark(
                room_id=room, user_id=caller.user_id, read=read, delivered=delivered,
                event=lambda rec: chat_events.MessagesRead(receipt=rec) if read else None))
        except PastTheEnd as e:
            raise errors.invalid_argument((f"{prefix}sequence", f"past the room's last message ({e.args[0]})"),
                                          reason="PAST_THE_END") from None
        if moved:
            await self.hub.publish(members, chat_pb2.ChatEvent(receipt=r))
        return r

    async def _typing(self, request: chat_pb2.SetTypingRequest, prefix: str = "") -> None:
        caller = principal.require()
        room = await mapped(request.room, self.store.room(room_id=domain.room_id(request.room, f"{prefix}room"),
                                                          user_id=caller.user_id))
        if room.state != chat_pb2.Room.STATE_OPEN:
            raise errors.failed_precondition(f"{request.room} is closed: its history is read-only", "ROOM_CLOSED")
        others = [u for u in room.member_ids if u != caller.user_id]
        await self.hub.publish(others, chat_pb2.ChatEvent(typing=chat_pb2.Typing(
            room=request.room, user=caller.resource_name, typing=request.typing)))

    async def _presence(self, user_id: str, online: bool) -> None:
        try:
            peers = await self.store.peers(user_id=user_id)
        except Exception:
            log.warning("presence of %s not sent", user_id, exc_info=True)
            return
        if peers:
            presence = chat_pb2.Presence(user=f"users/{user_id}", online=online)
            if not online:
                presence.last_seen_time.GetCurrentTime()
            await self.hub.publish(sorted(peers), chat_pb2.ChatEvent(presence=presence))

    async def _peers_presence(self, user_id: str) -> list[chat_pb2.ChatEvent]:
        """Where each member of the caller's rooms stands as a stream opens: online, or when last seen. Best
        effort, like the live events: none when the store or the presence port fails."""
        try:
            peers = sorted(await self.store.peers(user_id=user_id))
            online = await self.hub.watching(peers)
            seen = await self.hub.last_seen([p for p in peers if p not in online])
        except Exception:
            log.warning("presence of %s's peers not sent", user_id, exc_info=True)
            return []
        events = []
        for peer in peers:
            presence = chat_pb2.Presence(user=f"users/{peer}", online=peer in online)
            if peer in seen:
                presence.last_seen_time.FromNanoseconds(round(seen[peer] * 1e9))
            events.append(chat_pb2.ChatEvent(presence=presence))
        return events

    # --- unary RPCs ---

    async def SendMessage(self, request: chat_pb2.SendMessageRequest,
                          context: grpc.aio.ServicerContext) -> chat_pb2.SendMessageResponse:
        return chat_pb2.SendMessageResponse(message=await self._send(request))

    async def MarkRead(self, request: chat_pb2.MarkReadRequest,
                       context: grpc.aio.ServicerContext) -> chat_pb2.MarkReadResponse:
        return chat_pb2.MarkReadResponse(receipt=await self._mark(request.room, "", read=request.sequence))

    async def SetTyping(self, request: chat_pb2.SetTypingRequest,
                        context: grpc.aio.ServicerContext) -> chat_pb2.SetTypingResponse:
        await self._typing(request)
        return chat_pb2.SetTypingResponse()

    async def GetRoom(self, request: chat_pb2.GetRoomRequest,
                      context: grpc.aio.ServicerContext) -> chat_pb2.GetRoomResponse:
        caller = principal.require()
        room = await mapped(request.name, self.store.room(room_id=domain.room_id(request.name, "name"),
                                                          user_id=caller.user_id))
        return chat_pb2.GetRoomResponse(room=to_room(room))

    async def ListRooms(self, request: chat_pb2.ListRoomsRequest,
                        context: grpc.aio.ServicerContext) -> chat_pb2.ListRoomsResponse:
        caller = principal.require()
        size = page_size(request.page_size)
        position = decode_page_token(request.page_token, request)
        after = None if position is None else (dt.datetime.fromisoformat(position[0]), position[1])
        found = await self.store.rooms(user_id=caller.user_id, after=after, size=size)
        token = ""
        if len(found) > size:
            found = found[:size]
            token = encode_page_token([found[-1].activity_time.isoformat(), found[-1].id], request)
        return chat_pb2.ListRoomsResponse(rooms=[to_room(r) for r in found], next_page_token=token)

    async def ListMessages(self, request: chat_pb2.ListMessagesRequest,
                           context: grpc.aio.ServicerContext) -> chat_pb2.ListMessagesResponse:
        caller = principal.require()
        room = domain.room_id(request.parent, "parent")
        size = page_size(request.page_size)
        position = decode_page_token(request.page_token, request)
        await mapped(request.parent, self.store.room(room_id=room, user_id=caller.user_id))
        found = await self.store.messages(room_id=room, before=None if position is None else position[0],
                                          size=size + 1, descending=True)
        token = ""
        if len(found) > size:
            found = found[:size]
            token = encode_page_token([found[-1].sequence], request)
        return chat_pb2.ListMessagesResponse(messages=found, next_page_token=token)

    async def GetAttachment(self, request: chat_pb2.GetAttachmentRequest,
                            context: grpc.aio.ServicerContext) -> chat_pb2.GetAttachmentResponse:
        caller = principal.require()
        room, message_id, _ = parse_name(request.name, "rooms/{}/messages/{}/attachments/{}")
        message = await mapped(f"rooms/{room}", self.store.message(room_id=room, message_id=message_id,
                                                                   user_id=caller.user_id))
        found = next((a for a in message.attachments if a.name == request.name), None)
        if found is None:  # none such, or its message was deleted
            raise errors.not_found(ATTACHMENT_TYPE, request.name)
        try:
            content, _ = await self.blobs.get(blob_key(found.name))
        except BlobNotFound:
            raise errors.not_found(ATTACHMENT_TYPE, request.name) from None
        return chat_pb2.GetAttachmentResponse(attachment=found, content=content)

    async def DeleteMessage(self, request: chat_pb2.DeleteMessageRequest,
                            context: grpc.aio.ServicerContext) -> chat_pb2.DeleteMessageResponse:
        caller = principal.require()
        room, message = parse_name(request.name, "rooms/{}/messages/{}")
        before = await mapped(request.name, self.store.message(room_id=room, message_id=message,
                                                               user_id=caller.user_id))
        tombstone, members = await mapped(request.name, self.store.delete(
            room_id=room, message_id=message, user_id=caller.user_id, now=utcnow(),
            event=lambda d: chat_events.MessageDeleted(message=d.message, recipients=[
                f"users/{u}" for u in d.recipients if u != caller.user_id])))
        await self.hub.publish(members, chat_pb2.ChatEvent(message=tombstone))
        await self._drop_blobs([blob_key(a.name) for a in before.attachments])
        return chat_pb2.DeleteMessageResponse(message=tombstone)

    # --- streams ---

    async def StreamEvents(self, request: chat_pb2.StreamEventsRequest,
                           context: grpc.aio.ServicerContext) -> AsyncIterator[chat_pb2.StreamEventsResponse]:
        caller = principal.require()
        positions = domain.positions(request.last_sequences, "last_sequences")
        deletions = domain.delete_positions(request.last_delete_sequences, "last_delete_sequences", positions)
        checked = await self._check_rooms(caller.user_id, positions)
        sub = self.hub.register(caller.user_id)
        try:
            await send_headers(context)
            async for item in self._events(sub, positions, deletions, checked, None):
                assert isinstance(item, chat_pb2.ChatEvent)
                yield chat_pb2.StreamEventsResponse(event=item)
        finally:
            self.hub.unregister(sub)

    async def Connect(self, request_iterator: AsyncIterator[chat_pb2.ConnectRequest],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[chat_pb2.ConnectResponse]:
        caller = principal.require()
        requests = request_iterator.__aiter__()
        try:
            first = await anext(requests)
        except StopAsyncIteration:
            return
        positions: dict[str, int] = {}
        deletions: dict[str, int] = {}
        checked: dict[str, int] = {}
        pending = [first]
        if first.WhichOneof("action") == "resume":
            positions = domain.positions(first.resume.last_sequences, "resume.last_sequences")
            deletions = domain.delete_positions(first.resume.last_delete_sequences, "resume.last_delete_sequences",
                                                positions)
            checked = await self._check_rooms(caller.user_id, positions)
            pending = []
        sub = self.hub.register(caller.user_id)
        answers: asyncio.Queue[chat_pb2.ActionResult] = asyncio.Queue(ACTION_BACKLOG)

        async def read_actions() -> None:
            try:
                for request in pending:
                    await answers.put(await self._act(request))
                    sub.wake.set()
                async for request in requests:
                    await answers.put(await self._act(request))
                    sub.wake.set()
            except errors.ApiError as e:  # a request the interceptor could not take (malformed, too big)
                sub.end(e)
            except Exception:
                log.exception("Connect: reading actions failed")
                sub.end(errors.internal())
        reader = asyncio.create_task(read_actions())
        try:
            async for item in self._events(sub, positions, deletions, checked, answers):
                if isinstance(item, chat_pb2.ActionResult):
                    yield chat_pb2.ConnectResponse(action_result=item)
                else:
                    yield chat_pb2.ConnectResponse(event=item)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            self.hub.unregister(sub)

    async def _act(self, request: chat_pb2.ConnectRequest) -> chat_pb2.ActionResult:
        """One Connect action, answered like the unary RPC would be; a failure is reported, not fatal."""
        result = chat_pb2.ActionResult(action_id=request.action_id)
        action = request.WhichOneof("action")
        try:
            if action == "send_message":
                required(request.send_message, "send_message.", ("parent", "message_id", "message"))
                result.message.CopyFrom(await self._send(request.send_message, "send_message."))
            elif action == "mark_read":
                required(request.mark_read, "mark_read.", ("room", "sequence"))
                await self._mark(request.mark_read.room, "mark_read.", read=request.mark_read.sequence)
            elif action == "set_typing":
                required(request.set_typing, "set_typing.", ("room",))
                await self._typing(request.set_typing, "set_typing.")
            elif action == "ack":
                required(request.ack, "ack.", ("room", "sequence"))
                await self._mark(request.ack.room, "ack.", delivered=request.ack.sequence)
            elif action == "resume":
                raise errors.invalid_argument(("resume", "only the first request of a stream may resume"))
            else:
                raise errors.invalid_argument(("action", "required"), reason="MISSING_FIELD")
        except errors.ApiError as e:
            result.error.CopyFrom(e.to_status(DOMAIN))
        except Exception:
            log.exception("Connect action %s failed", action)
            result.error.CopyFrom(errors.internal().to_status(DOMAIN))
        return result

    async def _check_rooms(self, user_id: str, positions: dict[str, int]) -> dict[str, int]:
        """A stream may only resume rooms the caller is a member of. Returns their deletion counts."""
        return {room: (await mapped(f"rooms/{room}", self.store.room(room_id=room, user_id=user_id)))
                .last_delete_sequence for room in positions}

    async def _deleted(self, room: str, through: int, after: int) -> AsyncIterator[chat_pb2.ChatEvent]:
        """Tombstones of the deletions after `after` of messages at or below a resumed position: the client
        may hold those messages whole. In deletion order."""
        while through > 0:
            found = await self.store.tombstones(room_id=room, through=through, after=after, size=CATCH_UP_PAGE)
            for m in found:
                after = m.delete_sequence
                yield chat_pb2.ChatEvent(message=m)
            if len(found) < CATCH_UP_PAGE:
                return

    async def _missed(self, sub: Subscriber, room: str, last: dict[str, int]) -> AsyncIterator[chat_pb2.ChatEvent]:
        """The room's messages after the stream's position, from storage, in order."""
        while True:
            found = await self.store.messages(room_id=room, after=last.get(room, 0), size=CATCH_UP_PAGE)
            for m in found:
                last[room] = m.sequence
                yield chat_pb2.ChatEvent(message=m)
            if len(found) < CATCH_UP_PAGE:
                return

    async def _events(self, sub: Subscriber, positions: dict[str, int], deletions: dict[str, int],
                      checked: dict[str, int],
                      answers: asyncio.Queue[chat_pb2.ActionResult] | None
                      ) -> AsyncIterator[chat_pb2.ChatEvent | chat_pb2.ActionResult]:
        """Tombstones and missed messages of the rooms in `positions`, then CaughtUp, then the presence of the
        caller's peers, then live events, with the seam
        and any gap closed by sequence: a message at or below the room's position is a duplicate
        (skipped); one past position + 1 means some were missed (read from storage first). The
        subscriber was registered before the catch-up read, so nothing falls between the two.

        `checked`: each resumed room's deletion count, read before the subscriber was registered. Every
        deletion up to it is sent before CaughtUp (at or below the position by `_deleted`, read after; above
        it with the missed messages, read after that), so CaughtUp gives it to the client as the position to
        resume deletions from. Later ones come live, and again on the next resume: a bound, not a gap."""
        last = dict(positions)
        sub.rooms.update(positions)
        for room in positions:
            async for event in self._deleted(room, positions[room], deletions.get(room, 0)):
                yield event
            async for event in self._missed(sub, room, last):
                yield event
        yield chat_pb2.ChatEvent(caught_up=chat_pb2.CaughtUp(last_delete_sequences={
            f"rooms/{room}": max(number, deletions.get(room, 0)) for room, number in checked.items()}))
        for event in await self._peers_presence(sub.user_id):
            yield event
        while True:
            if sub.ended is not None:
                raise sub.ended
            if answers is not None and not answers.empty():
                yield answers.get_nowait()
            elif sub.stale:
                room = sub.stale.pop()
                async for event in self._missed(sub, room, last):
                    yield event
            elif sub.events:
                event = sub.events.popleft()
                if is_new_message(event):
                    room = room_of(event.message.name)
                    sub.rooms.add(room)
                    seen = last.get(room)
                    if seen is not None and event.message.sequence <= seen:
                        continue  # delivered already (caught up from storage, or a repeat)
                    if seen is not None and event.message.sequence > seen + 1:
                        sub.stale.add(room)  # some were missed: storage has them, this one included
                        continue
                    last[room] = event.message.sequence
                yield event
            else:
                sub.wake.clear()
                await sub.wake.wait()


def required(message: Any, prefix: str, fields: tuple[str, ...]) -> None:
    """What the interceptor checks on a unary request's REQUIRED fields, for an action inside Connect."""
    missing = []
    for f in fields:
        value = getattr(message, f)
        present = message.HasField(f) if hasattr(value, "ListFields") else bool(value)
        if not present:
            missing.append((prefix + f, "required"))
    if missing:
        raise errors.invalid_argument(*missing, reason="MISSING_FIELD")

