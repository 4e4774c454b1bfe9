"""Chat attachments: images and short files judged by their bytes, stored in the blob port's chat area,
fetched by the room's members only (GetAttachment), never through the edge's public blob route."""
from __future__ import annotations

import base64
import io
import uuid

import grpc
import pytest
from PIL import Image

from mesh.blobs import BlobNotFound
from petplatform.chat.v1 import chat_pb2
from services.chat.api import blob_key
from tests.support.chat import caught_up, open_room
from tests.support.errors import expect, violations
from tests.support.platform import Api, EdgeClient, Session
from tests.support.web import call

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def png(width: int = 40, height: int = 30) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), "orange").save(buf, "PNG")
    return buf.getvalue()


def upload(content: bytes, content_type: str, filename: str = "") -> chat_pb2.AttachmentUpload:
    return chat_pb2.AttachmentUpload(content=content, content_type=content_type, filename=filename)


def send_request(room: str, *attachments: chat_pb2.AttachmentUpload, text: str = "",
                 message_id: str | None = None) -> chat_pb2.SendMessageRequest:
    return chat_pb2.SendMessageRequest(parent=room, message_id=message_id or uuid.uuid4().hex,
                                       message=chat_pb2.Message(text=text), attachments=attachments)


@pytest.fixture(scope="module")
async def people(api: Api):
    return [await api.signup(n) for n in ("Alice", "Bob", "Mallory")]


@pytest.fixture
async def room(api: Api, people):
    alice, bob, _ = people
    return await open_room(api, alice, bob)


async def fetch(api: Api, s: Session, name: str) -> chat_pb2.GetAttachmentResponse:
    return await api.chat.GetAttachment(chat_pb2.GetAttachmentRequest(name=name), metadata=s.md)


async def test_members_send_and_fetch_images_and_files_described_by_their_content(api: Api, people, room):
    alice, bob, _ = people
    photo, note = png(), "Vaccination card attached. Ça va ✓\n".encode()
    sent = (await api.chat.SendMessage(send_request(
        room, upload(photo, "image/png", "mochi.png"), upload(note, "text/plain; charset=utf-8", "note.txt"),
        upload(PDF, "application/pdf", "card.pdf")), metadata=alice.md)).message
    assert sent.text == "" and len(sent.attachments) == 3, "text is optional with attachments"
    image, text, pdf = sent.attachments
    assert (image.content_type, image.width, image.height, image.size_bytes, image.filename) == \
        ("image/png", 40, 30, len(photo), "mochi.png")
    assert (text.content_type, pdf.content_type) == ("text/plain", "application/pdf")
    assert all(a.name.startswith(sent.name + "/attachments/") for a in sent.attachments)
    for a, content in zip(sent.attachments, (photo, note, PDF), strict=True):
        for member in (alice, bob):
            got = await fetch(api, member, a.name)
            assert got.content == content and got.attachment == a
    # History and streams carry the descriptions, never the bytes.
    listed = (await api.chat.ListMessages(chat_pb2.ListMessagesRequest(parent=room), metadata=bob.md)).messages
    assert list(listed[0].attachments) == list(sent.attachments)
    call_ = api.chat.StreamEvents(chat_pb2.StreamEventsRequest(last_sequences={room: 0}), metadata=bob.md)
    try:
        assert list((await caught_up(call_))[0].attachments) == list(sent.attachments)
    finally:
        call_.cancel()


async def test_oversized_attachments_are_refused(api: Api, people, room):
    alice, _, _ = people
    big_png = png() + b"\0" * (5 * 1024 * 1024)  # trailing bytes past the 5 MiB cap
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, api.chat.SendMessage(
        send_request(room, upload(big_png, "image/png")), metadata=alice.md), reason="ATTACHMENT_TOO_LARGE")
    assert "attachments[0].content" in violations(err)
    long_text = b"a" * (1024 * 1024 + 1)  # files other than images: 1 MiB
    await expect(grpc.StatusCode.INVALID_ARGUMENT, api.chat.SendMessage(
        send_request(room, upload(long_text, "text/plain")), metadata=alice.md), reason="ATTACHMENT_TOO_LARGE")
    half = png() + b"\0" * (7 * 1024 * 1024 // 2)  # each fits; together past 6 MiB, under the 8 MiB request cap
    await expect(grpc.StatusCode.INVALID_ARGUMENT, api.chat.SendMessage(
        send_request(room, upload(half, "image/png"), upload(half, "image/png")), metadata=alice.md),
        reason="ATTACHMENT_TOO_LARGE")
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, api.chat.SendMessage(
        send_request(room, *[upload(b"hi", "text/plain")] * 5), metadata=alice.md))
    assert "attachments" in violations(err)
    huge = io.BytesIO()
    Image.new("L", (4097, 4096)).save(huge, "PNG")  # small file, too many pixels
    await expect(grpc.StatusCode.INVALID_ARGUMENT, api.chat.SendMessage(
        send_request(room, upload(huge.getvalue(), "image/png")), metadata=alice.md), reason="ATTACHMENT_TOO_LARGE")
    assert not (await api.chat.ListMessages(chat_pb2.ListMessagesRequest(parent=room), metadata=alice.md)).messages


@pytest.mark.parametrize("content, declared, reason", [
    (b"just some text, not a picture", "image/png", "ATTACHMENT_TYPE_MISMATCH"),  # declared an image, is not
    (PDF, "image/jpeg", "ATTACHMENT_TYPE_MISMATCH"),
    (png(), "application/pdf", "ATTACHMENT_TYPE_MISMATCH"),  # an image declared as something else
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png", "ATTACHMENT_INVALID"),  # a PNG's magic, no PNG
    (png()[:-30], "image/png", "ATTACHMENT_INVALID"),  # truncated
    (b"PK\x03\x04" + b"\0" * 40, "application/zip", "ATTACHMENT_TYPE"),  # not a kind accepted
    (b"MZ\x90\x00\x03", "text/plain", "ATTACHMENT_TYPE"),  # a program, called text
    (b"%PDF-1.4\n no end", "application/pdf", "ATTACHMENT_INVALID"),
], ids=["text-as-png", "pdf-as-jpeg", "png-as-pdf", "fake-png", "truncated-png", "zip", "exe-as-text", "cut-pdf"])
async def test_attachments_are_judged_by_content_not_by_the_declared_type(api: Api, people, room, content, declared,
                                                                          reason):
    alice, _, _ = people
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, api.chat.SendMessage(
        send_request(room, upload(content, declared), text="look"), metadata=alice.md), reason=reason)
    assert "attachments[0].content" in violations(err)


async def test_missing_parts_of_an_attachment_are_refused(api: Api, people, room):
    alice, _, _ = people
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, api.chat.SendMessage(
        send_request(room, upload(b"", ""), text="x"), metadata=alice.md))
    assert {"attachments[0].content", "attachments[0].content_type"} <= set(violations(err))
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, api.chat.SendMessage(
        send_request(room, upload(PDF, "application/pdf", "x" * 256)), metadata=alice.md))
    assert "attachments[0].filename" in violations(err)


async def test_only_members_fetch_attachments(api: Api, people, room):
    alice, bob, mallory = people
    sent = (await api.chat.SendMessage(send_request(room, upload(png(), "image/png")), metadata=alice.md)).message
    name = sent.attachments[0].name
    await expect(grpc.StatusCode.NOT_FOUND, fetch(api, mallory, name))
    other = await open_room(api, alice, mallory)  # a member of another room of Alice's: still a stranger here
    await expect(grpc.StatusCode.NOT_FOUND, fetch(api, mallory, name))
    spoofed = name.replace(room, other)  # the attachment's id under a room Mallory is in
    await expect(grpc.StatusCode.NOT_FOUND, fetch(api, mallory, spoofed))
    await expect(grpc.StatusCode.NOT_FOUND, fetch(api, bob, name.rsplit("/", 1)[0] + "/" + uuid.uuid4().hex))
    await expect(grpc.StatusCode.INVALID_ARGUMENT, fetch(api, bob, "rooms/x/attachments/y"))
    assert (await fetch(api, bob, name)).content == png()


async def test_strangers_store_nothing_and_resends_keep_the_first_attachments(api: Api, people, room):
    alice, _, mallory = people
    await expect(grpc.StatusCode.NOT_FOUND, api.chat.SendMessage(
        send_request(room, upload(png(), "image/png")), metadata=mallory.md))
    message_id = uuid.uuid4().hex
    first = (await api.chat.SendMessage(send_request(room, upload(PDF, "application/pdf"), message_id=message_id),
                                        metadata=alice.md)).message
    again = (await api.chat.SendMessage(send_request(room, upload(png(), "image/png"), message_id=message_id),
                                        metadata=alice.md)).message
    assert again == first
    assert (await fetch(api, alice, first.attachments[0].name)).content == PDF


async def test_a_deleted_message_takes_its_attachments_with_it(api: Api, people, room):
    alice, bob, _ = people
    sent = (await api.chat.SendMessage(send_request(room, upload(png(), "image/png"), text="oops"),
                                       metadata=alice.md)).message
    tombstone = (await api.chat.DeleteMessage(chat_pb2.DeleteMessageRequest(name=sent.name),
                                              metadata=alice.md)).message
    assert not tombstone.attachments and tombstone.HasField("delete_time")
    await expect(grpc.StatusCode.NOT_FOUND, fetch(api, bob, sent.attachments[0].name))
    with pytest.raises(BlobNotFound):
        await api.platform.rt.blobs.get(blob_key(sent.attachments[0].name))


async def test_attachments_over_connect(api: Api, people, room):
    alice, bob, _ = people
    call_ = api.chat.Connect(metadata=alice.md)
    try:
        await call_.write(chat_pb2.ConnectRequest(action_id="a", send_message=send_request(
            room, upload(b"\x00\x01", "text/plain"))))
        await call_.write(chat_pb2.ConnectRequest(action_id="b", send_message=send_request(
            room, upload(PDF, "application/pdf"))))
        results = {}
        while len(results) < 2:
            r = await call_.read()
            if r.WhichOneof("kind") == "action_result":
                results[r.action_result.action_id] = r.action_result
    finally:
        call_.cancel()
    assert results["a"].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0], "refused, the stream goes on"
    assert (await fetch(api, bob, results["b"].message.attachments[0].name)).content == PDF


async def test_the_edge_serves_attachments_to_members_only_and_never_as_public_blobs(edge: EdgeClient):
    api = edge.api
    alice, bob, mallory = [await api.signup(n) for n in ("Alice", "Bob", "Mallory")]
    room = await open_room(api, alice, bob)
    sent = (await api.chat.SendMessage(send_request(room, upload(png(), "image/png")), metadata=alice.md)).message
    name = sent.attachments[0].name
    status, body, _ = await call(edge, "GET", f"/v1/{name}", token=bob.access_token)
    assert status == 200 and base64.b64decode(body["content"]) == png()
    assert body["attachment"]["contentType"] == "image/png"
    status, _, _ = await call(edge, "GET", f"/v1/{name}", token=mallory.access_token)
    assert status == 404
    key = blob_key(name)
    assert (await api.platform.rt.blobs.get(key))[0] == png(), "the bytes are there..."
    for token in (None, bob.access_token, alice.access_token):
        status, _, _ = await call(edge, "GET", f"/v1/blobs/{key}", token=token)
        assert status == 404, "...but not for the public route, whoever asks"


@pytest.mark.real
async def test_attachments_in_s3_on_the_real_profile(real_api: Api):
    alice, bob, mallory = [await real_api.signup(n) for n in ("Alice", "Bob", "Mallory")]
    room = await open_room(real_api, alice, bob)
    sent = (await real_api.chat.SendMessage(send_request(room, upload(PDF, "application/pdf")),
                                            metadata=alice.md)).message
    assert (await fetch(real_api, bob, sent.attachments[0].name)).content == PDF
    await expect(grpc.StatusCode.NOT_FOUND, fetch(real_api, mallory, sent.attachments[0].name))
