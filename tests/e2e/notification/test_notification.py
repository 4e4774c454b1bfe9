"""NotificationService through its public gRPC API and the events it consumes: devices, settings, the
inbox, deliveries to the local sink (push, SMS) and the SMTP sink (email), nobody pushed what they are
watching, provider failures retried and dead-lettered, replayed events delivered once."""
from __future__ import annotations

import uuid

import grpc
import pytest
import sqlalchemy as sa

from petplatform.chat.v1 import chat_pb2
from petplatform.matching.v1 import events_pb2 as matching_events
from petplatform.matching.v1 import matching_pb2
from petplatform.notification.v1 import notification_pb2 as pb
from services.chat.hub import WATCHING
from services.notification.channels import TokenGone
from services.notification.store import DEAD, SENT, deliveries
from tests.support.chat import match, open_room, publish, send, until
from tests.support.errors import expect, violations
from tests.support.platform import Api, embedded_settings, module_of, start_platform

MAX_ATTEMPTS = 3


@pytest.fixture(scope="module")
async def api(tmp_path_factory, smtp_sink):
    """The platform with fast retries, so back-off and dead-lettering show within a test."""
    platform = await start_platform(embedded_settings(
        tmp_path_factory.mktemp("data"), smtp_sink, notification_retry_base_seconds=0.01,
        notification_retry_max_seconds=0.05, notification_max_attempts=MAX_ATTEMPTS, notification_poll_seconds=0.05))
    client = Api(platform, smtp_sink)
    yield client
    await client.channel.close()
    await platform.stop(grace=1)


@pytest.fixture
async def people(api: Api):
    return [await api.signup(n) for n in ("Alice", "Bob", "Mallory")]


def sink(api: Api):
    return module_of(api, "notification").sink


def device(token: str | None = None, platform=pb.Device.PLATFORM_ANDROID) -> pb.Device:
    return pb.Device(platform=platform, token=token or f"tok-{uuid.uuid4().hex}")


async def register(api: Api, s, token: str | None = None, platform=pb.Device.PLATFORM_ANDROID) -> pb.Device:
    return (await api.notification.RegisterDevice(pb.RegisterDeviceRequest(device=device(token, platform)),
                                                  metadata=s.md)).device


async def inbox(api: Api, s, kind=None) -> list[pb.Notification]:
    found = (await api.notification.ListNotifications(pb.ListNotificationsRequest(page_size=100),
                                                      metadata=s.md)).notifications
    return [n for n in found if kind is None or n.kind == kind]


def pushed(api: Api, token: str) -> list[dict]:
    return [r for r in sink(api).sent if r.get("token") == token]


async def test_devices_are_registered_once_per_token_and_only_their_owner_removes_them(api: Api, people):
    alice, bob, _ = people
    token = f"tok-{uuid.uuid4().hex}"
    first = await register(api, alice, token)
    again = await register(api, alice, token)
    assert first.name == again.name and first.name.startswith("devices/") and not again.token, "tokens never echo"
    await expect(grpc.StatusCode.NOT_FOUND, api.notification.UnregisterDevice(
        pb.UnregisterDeviceRequest(name=first.name), metadata=bob.md))
    moved = await register(api, bob, token)  # bob signed in on alice's phone: it is his now
    assert moved.name == first.name
    await expect(grpc.StatusCode.NOT_FOUND, api.notification.UnregisterDevice(
        pb.UnregisterDeviceRequest(name=first.name), metadata=alice.md))
    await api.notification.UnregisterDevice(pb.UnregisterDeviceRequest(name=first.name), metadata=bob.md)
    await expect(grpc.StatusCode.NOT_FOUND, api.notification.UnregisterDevice(
        pb.UnregisterDeviceRequest(name=first.name), metadata=bob.md))


async def test_bad_input_is_invalid_argument(api: Api, people):
    alice, bob, _ = people
    md = alice.md
    n = api.notification
    cases = [
        (n.RegisterDevice(pb.RegisterDeviceRequest(device=pb.Device(token="t")), metadata=md), "device.platform"),
        (n.RegisterDevice(pb.RegisterDeviceRequest(device=pb.Device(platform=1, token="a b")), metadata=md),
         "device.token"),
        (n.RegisterDevice(pb.RegisterDeviceRequest(device=pb.Device(platform=1, token="x" * 4097)), metadata=md),
         "device.token"),
        (n.RegisterDevice(pb.RegisterDeviceRequest(device=pb.Device(platform=9, token="x")), metadata=md),
         "device.platform"),
        (n.UnregisterDevice(pb.UnregisterDeviceRequest(name="devices/../x"), metadata=md), "name"),
        (n.MarkNotificationsRead(pb.MarkNotificationsReadRequest(), metadata=md), "names"),
        (n.MarkNotificationsRead(pb.MarkNotificationsReadRequest(names=[f"notifications/{uuid.uuid4().hex}"],
                                                                 all=True), metadata=md), "names"),
        (n.MarkNotificationsRead(pb.MarkNotificationsReadRequest(names=["notifications/x"]), metadata=md),
         "names[0]"),
        (n.ListNotifications(pb.ListNotificationsRequest(page_token="forged"), metadata=md), "page_token"),
        (n.ListNotifications(pb.ListNotificationsRequest(page_size=-1), metadata=md), "page_size"),
        (n.UpdateNotificationSettings(pb.UpdateNotificationSettingsRequest(settings=pb.NotificationSettings(
            name="users/me/notificationSettings", phone_number="555-1234")), metadata=md), "settings.phone_number"),
        (n.UpdateNotificationSettings(pb.UpdateNotificationSettingsRequest(settings=pb.NotificationSettings(
            name="users/me/notificationSettings", kinds=[pb.KindSetting(kind=pb.KIND_MATCH),
                                                         pb.KindSetting(kind=pb.KIND_MATCH)])), metadata=md),
         "settings.kinds[1].kind"),
        (n.UpdateNotificationSettings(pb.UpdateNotificationSettingsRequest(settings=pb.NotificationSettings(
            name="users/me/notificationSettings", kinds=[pb.KindSetting(kind=pb.KIND_MATCH, channels=[0])])),
            metadata=md), "settings.kinds[0].channels"),
        (n.UpdateNotificationSettings(pb.UpdateNotificationSettingsRequest(settings=pb.NotificationSettings(
            name="users/me/notificationSettings"), update_mask={"paths": ["email"]}), metadata=md),
         "update_mask.paths"),
        (n.GetNotificationSettings(pb.GetNotificationSettingsRequest(name="users/me"), metadata=md), "name"),
    ]
    for call, field in cases:
        err = await expect(grpc.StatusCode.INVALID_ARGUMENT, call)
        assert field in violations(err), (field, violations(err))
    await expect(grpc.StatusCode.PERMISSION_DENIED, n.GetNotificationSettings(
        pb.GetNotificationSettingsRequest(name=f"{bob.name}/notificationSettings"), metadata=md), "NOT_OWNER")
    await expect(grpc.StatusCode.UNAUTHENTICATED, n.ListNotifications(pb.ListNotificationsRequest()))


async def test_settings_start_at_the_defaults_and_keep_kinds_left_out(api: Api, people):
    alice, _, _ = people
    got = (await api.notification.GetNotificationSettings(pb.GetNotificationSettingsRequest(
        name="users/me/notificationSettings"), metadata=alice.md)).settings
    assert got.name == f"{alice.name}/notificationSettings" and not got.phone_number
    assert {k.kind: list(k.channels) for k in got.kinds}[pb.KIND_MESSAGE] == [pb.CHANNEL_PUSH]
    updated = (await api.notification.UpdateNotificationSettings(pb.UpdateNotificationSettingsRequest(
        settings=pb.NotificationSettings(name=f"{alice.name}/notificationSettings", phone_number="+14155550100",
                                         kinds=[pb.KindSetting(kind=pb.KIND_MESSAGE, channels=[pb.CHANNEL_SMS])])),
        metadata=alice.md)).settings
    channels = {k.kind: list(k.channels) for k in updated.kinds}
    assert channels[pb.KIND_MESSAGE] == [pb.CHANNEL_SMS] and channels[pb.KIND_MATCH] == [pb.CHANNEL_PUSH,
                                                                                             pb.CHANNEL_EMAIL]
    assert updated.phone_number == "+14155550100"
    only_phone = (await api.notification.UpdateNotificationSettings(pb.UpdateNotificationSettingsRequest(
        settings=pb.NotificationSettings(name="users/me/notificationSettings"),
        update_mask={"paths": ["phone_number"]}), metadata=alice.md)).settings
    assert not only_phone.phone_number and {k.kind: list(k.channels) for k in only_phone.kinds} == channels


async def test_a_match_reaches_both_by_inbox_push_and_email_once_however_often_it_is_delivered(api: Api, people):
    alice, bob, _ = people
    phone = await register(api, alice)
    token = f"tok-{uuid.uuid4().hex}"
    await register(api, bob, token, pb.Device.PLATFORM_IOS)
    m = match(alice, bob)
    event_id = await publish(api, matching_events.MatchCreated(match=m))
    await publish(api, matching_events.MatchCreated(match=m), event_id)  # redelivered
    await until(lambda: until_list(pushed(api, token)), "bob pushed")
    [mail] = await until(lambda: until_list([m for m in api.smtp.to(alice.email) if m["Subject"] == "It's a match!"]),
                         "alice emailed")
    assert "/rooms/" in mail.get_body(("plain",)).get_content()
    room = "rooms/" + m.name.split("/")[1]
    for s in (alice, bob):
        found = await inbox(api, s, pb.KIND_MATCH)
        assert [n.target for n in found] == [room], "one notification per person for one event"
    # A marker event, handled after the redelivery: by then a second push would have shown.
    await publish(api, matching_events.MatchCreated(match=match(alice, bob)))
    await until(lambda: until_list(len(pushed(api, token)) == 2), "marker pushed")
    [first, _] = pushed(api, token)
    assert first["title"] == "It's a match!" and first["data"]["target"] == room
    assert "Alice" in first["body"]
    assert not pushed(api, ""), "nobody without a device is pushed"
    del phone


async def until_list(value):
    return value


async def test_the_inbox_pages_counts_and_marks_only_the_callers(api: Api, people):
    alice, bob, mallory = people
    for _ in range(3):
        await publish(api, matching_events.MatchCreated(match=match(alice, bob)))

    async def three():
        return len(await inbox(api, alice, pb.KIND_MATCH)) == 3
    await until(three, "three match notifications")
    listing = await api.notification.ListNotifications(pb.ListNotificationsRequest(page_size=2), metadata=alice.md)
    assert len(listing.notifications) == 2 and listing.next_page_token
    assert listing.unread_count == 4, "three matches and the welcome"
    rest = await api.notification.ListNotifications(pb.ListNotificationsRequest(
        page_size=2, page_token=listing.next_page_token), metadata=alice.md)
    names = [n.name for n in [*listing.notifications, *rest.notifications]]
    assert len(set(names)) == 4 and not rest.next_page_token
    assert rest.notifications[-1].kind == pb.KIND_WELCOME, "oldest last"
    stolen = await api.notification.MarkNotificationsRead(pb.MarkNotificationsReadRequest(names=names[:2]),
                                                          metadata=mallory.md)
    assert stolen.marked_count == 0, "someone else's notifications are not theirs to mark"
    marked = await api.notification.MarkNotificationsRead(pb.MarkNotificationsReadRequest(names=names[:2]),
                                                          metadata=alice.md)
    assert marked.marked_count == 2
    unread = await api.notification.ListNotifications(pb.ListNotificationsRequest(unread_only=True),
                                                      metadata=alice.md)
    assert [n.name for n in unread.notifications] == names[2:] and unread.unread_count == 2
    assert all(n.HasField("read_time") for n in await inbox(api, alice) if n.name in names[:2])
    everything = await api.notification.MarkNotificationsRead(pb.MarkNotificationsReadRequest(all=True),
                                                              metadata=alice.md)
    assert everything.marked_count == 2


async def test_nobody_is_pushed_a_message_while_watching_and_the_offline_member_is(api: Api, people):
    alice, bob, _ = people
    token = f"tok-{uuid.uuid4().hex}"
    await register(api, bob, token)
    room = await open_room(api, alice, bob)
    presence = api.platform.rt.presence
    watching = api.chat.StreamEvents(chat_pb2.StreamEventsRequest(), metadata=bob.md)
    await watching.read()  # caught up: the stream is open

    async def bob_watching():
        return bob.user_id in await presence.present(WATCHING, [bob.user_id])
    await until(bob_watching, "bob's presence held")
    await send(api, alice, room, "seen live")
    watching.cancel()

    async def bob_gone():
        return not await bob_watching()
    await until(bob_gone, "bob's presence released")
    await send(api, alice, room, "while away")

    async def notified():
        return [n for n in await inbox(api, bob, pb.KIND_MESSAGE) if n.target == room]
    [note] = await until(notified, "bob notified of the message sent while he was away")
    assert note.body == "while away" and note.title == "New message from Alice"
    await until(lambda: until_list([r for r in pushed(api, token) if r["body"] == "while away"]), "pushed")
    assert not [r for r in pushed(api, token) if r["body"] == "seen live"]
    assert not [n for n in await inbox(api, alice, pb.KIND_MESSAGE) if n.target == room], "nor is the sender"


async def test_sms_goes_to_the_chosen_number(api: Api, people):
    alice, bob, _ = people
    number = "+4412345678" + str(uuid.uuid4().int % 10)
    await api.notification.UpdateNotificationSettings(pb.UpdateNotificationSettingsRequest(
        settings=pb.NotificationSettings(name="users/me/notificationSettings", phone_number=number,
                                         kinds=[pb.KindSetting(kind=pb.KIND_ADOPTION, channels=[pb.CHANNEL_SMS])])),
        metadata=bob.md)
    adoption = matching_pb2.Match(name=f"matches/{uuid.uuid4().hex}", users=[alice.name, bob.name],
                                  kind=matching_pb2.Match.KIND_ADOPTION, state=matching_pb2.Match.STATE_ADOPTED)
    await publish(api, matching_events.AdoptionCompleted(match=adoption))
    [sms] = await until(lambda: until_list([r for r in sink(api).sent if r.get("to") == number]), "sms sent")
    assert sms["text"].startswith("Adoption completed")
    assert [n.target for n in await inbox(api, alice, pb.KIND_ADOPTION)] == [adoption.name]


class Flaky:
    """A push provider failing `failures` times, then handing on to the sink; or failing with `error`."""

    def __init__(self, inner, failures: int = 0, error: Exception | None = None):
        self.inner, self.failures, self.error, self.calls = inner, failures, error, 0

    async def push(self, message) -> None:
        self.calls += 1
        if self.error is not None:
            raise self.error
        if self.calls <= self.failures:
            raise ConnectionError("provider unreachable")
        await self.inner.push(message)


async def delivery_rows(api: Api, token: str):
    async with module_of(api, "notification").db.read() as s:
        return (await s.execute(sa.select(deliveries).where(deliveries.c.address == token))).all()


@pytest.fixture
def provider(api: Api):
    dispatcher = module_of(api, "notification").dispatcher
    real = dispatcher.push
    yield dispatcher
    dispatcher.push = real


async def test_a_provider_failure_is_retried_with_back_off_then_dead_lettered(api: Api, people, provider):
    alice, bob, _ = people
    token = f"tok-{uuid.uuid4().hex}"
    await register(api, bob, token)
    provider.push = Flaky(sink(api), failures=MAX_ATTEMPTS - 1)
    await publish(api, matching_events.MatchCreated(match=match(alice, bob)))
    [row] = await until(lambda: _rows_in(api, token, SENT), "delivered at the last attempt")
    assert row.attempts == MAX_ATTEMPTS and len(pushed(api, token)) == 1

    provider.push = Flaky(sink(api), failures=MAX_ATTEMPTS + 5)
    await publish(api, matching_events.MatchCreated(match=match(alice, bob)))
    [dead] = await until(lambda: _rows_in(api, token, DEAD), "dead-lettered")
    assert dead.attempts == MAX_ATTEMPTS and "provider unreachable" in dead.last_error
    assert len(pushed(api, token)) == 1, "the dead one never reached the phone"


async def _rows_in(api: Api, token: str, state: int):
    return [r for r in await delivery_rows(api, token) if r.state == state]


async def test_a_token_the_provider_no_longer_knows_is_dead_at_once_and_forgotten(api: Api, people, provider):
    alice, bob, _ = people
    token = f"tok-{uuid.uuid4().hex}"
    gone = await register(api, bob, token)
    provider.push = Flaky(sink(api), error=TokenGone("unregistered"))
    await publish(api, matching_events.MatchCreated(match=match(alice, bob)))
    [dead] = await until(lambda: _rows_in(api, token, DEAD), "dead-lettered")
    assert dead.attempts == 1, "refused for good: not retried"
    await expect(grpc.StatusCode.NOT_FOUND, api.notification.UnregisterDevice(
        pb.UnregisterDeviceRequest(name=gone.name), metadata=bob.md))


async def test_a_malformed_event_is_parked(api: Api, people):
    alice, _, _ = people
    await publish(api, matching_events.MatchCreated(match=match(alice, alice)))
    await until(lambda: api.platform.rt.bus.dead_letters("notification.worker"), "parked")
