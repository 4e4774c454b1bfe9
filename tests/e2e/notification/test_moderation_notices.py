"""The person a moderation decision affects is told (inbox, push, email), once; a dismissal tells nobody; the
notice never names who reported. Decisions are published here as the admin service will (moderation.action_taken);
staff's own status changes come from auth (user.status_changed)."""
from __future__ import annotations

import uuid

import pytest

from petplatform.admin.v1 import events_pb2 as admin_events
from petplatform.auth.v1 import auth_pb2
from petplatform.notification.v1 import notification_pb2 as pb
from tests.support.events import Producer
from tests.support.matching import until
from tests.support.platform import PASSWORD, Api, embedded_settings, module_of, start_platform

ADMIN = "notices-admin@staff.example.com"
Action = admin_events.ModerationActionTaken


@pytest.fixture(scope="module")
async def api(tmp_path_factory, smtp_sink):
    platform = await start_platform(embedded_settings(tmp_path_factory.mktemp("data"), smtp_sink,
                                                      admin_emails=[ADMIN], notification_poll_seconds=0.05))
    client = Api(platform, smtp_sink)
    yield client
    await client.channel.close()
    await platform.stop(grace=1)


@pytest.fixture(scope="module")
async def admin_bus(api: Api, tmp_path_factory):
    producer = await Producer.open("admin", api.platform.rt.bus, tmp_path_factory.mktemp("admin"))
    yield producer
    await producer.close()


async def notices(api: Api, s) -> list[pb.Notification]:
    found = (await api.notification.ListNotifications(pb.ListNotificationsRequest(page_size=100),
                                                      metadata=s.md)).notifications
    return [n for n in found if n.kind == pb.KIND_MODERATION][::-1]  # oldest first


async def test_the_affected_user_is_told_once_and_a_dismissal_tells_nobody(api: Api, admin_bus: Producer):
    reporter, seller = await api.signup("Reporter Rita"), await api.signup("Seller")
    token = f"tok-{uuid.uuid4().hex}"
    await api.notification.RegisterDevice(pb.RegisterDeviceRequest(
        device=pb.Device(platform=pb.Device.PLATFORM_ANDROID, token=token)), metadata=seller.md)
    await admin_bus.emit(Action(case="cases/n1", subject=f"{seller.name}", user=seller.name,
                                action=Action.ACTION_DISMISS, reason="no problem found"))
    [hidden] = await admin_bus.emit(Action(case="cases/n2", subject="pets/p1", user=seller.name,
                                           action=Action.ACTION_HIDE_LISTING, reason="photos copied from a "
                                           "breeder's site", actor="users/mod", upheld=True))
    await admin_bus.replay(hidden)
    await admin_bus.emit(Action(case="cases/n2", subject="pets/p1", user=seller.name,
                                action=Action.ACTION_HIDE_LISTING, reversal=True, reason="appeal accepted"))
    await until(lambda: _count(api, seller, 2), what="two moderation notices")
    told = await notices(api, seller)
    assert [(n.title, n.body, n.target) for n in told] == [
        ("Your listing was hidden", "After a review, one of your listings was hidden: photos copied from a "
         "breeder's site", "pets/p1"),
        ("Your listing is visible again", "Your listing is shown again: appeal accepted", "pets/p1")]
    assert all("Rita" not in n.body and reporter.user_id not in n.body for n in told)
    await until(lambda: _pushed(api, token, 2), what="two pushes")
    await api.smtp.wait_for_subject(seller.email, "Your listing was hidden")
    assert not await notices(api, reporter)


async def test_suspensions_are_told_once_whoever_decided(api: Api, admin_bus: Producer):
    admin = await api.signup_admin(ADMIN)
    by_case, by_staff = await api.signup(), await api.signup()
    # In a case: auth's user.status_changed (with the case) adds no second notice.
    await admin_bus.emit(Action(case="cases/n3", subject=by_case.name, user=by_case.name,
                                action=Action.ACTION_SUSPEND_USER, reason="payment off the platform"))
    await api.smtp.wait_for_subject(by_case.email, "Your account is suspended")
    await admin_bus.emit(Action(case="cases/n3", subject=by_case.name, user=by_case.name,
                                action=Action.ACTION_SUSPEND_USER, reversal=True, reason="appeal"))
    await api.smtp.wait_for_subject(by_case.email, "Your account is reinstated")
    again = await api.auth.Login(auth_pb2.LoginRequest(email=by_case.email, password=PASSWORD))
    by_case.access_token = again.access_token
    assert [n.title for n in await notices(api, by_case)] == ["Your account is suspended",
                                                              "Your account is reinstated"]
    # By staff directly: told from user.status_changed, by email, as the account cannot open its inbox.
    await api.auth.SetAccountStatus(auth_pb2.SetAccountStatusRequest(
        name=by_staff.name, status=auth_pb2.ACCOUNT_STATUS_BANNED, reason="repeated scams"), metadata=admin.md)
    mail = await api.smtp.wait_for_subject(by_staff.email, "Your account is banned")
    assert "Your account is banned: repeated scams" in mail.get_body(("plain",)).get_content()


async def _count(api: Api, s, n: int) -> bool:
    return len(await notices(api, s)) >= n


async def _pushed(api: Api, token: str, n: int) -> bool:
    return len([r for r in module_of(api, "notification").sink.sent if r.get("token") == token]) >= n
