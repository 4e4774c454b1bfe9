"""The real push adapters behind the public API: a device registered as iOS is pushed through APNs (an
HTTP/2 stand-in checking the provider JWT and Apple's headers), Android and web devices through FCM HTTP v1
(a local fake); APNs' answers drive the deliveries: 410 forgets the device, 429/5xx are retried with
back-off and then dead-lettered."""
from __future__ import annotations

import json
import uuid

import grpc
import pytest
import sqlalchemy as sa
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from petplatform.matching.v1 import events_pb2 as matching_events
from petplatform.notification.v1 import notification_pb2 as pb
from services.notification.store import DEAD, SENT, deliveries
from tests.support.apns_standin import KEY_ID, TEAM, TOPIC, ApnsStandIn
from tests.support.chat import match, publish, until
from tests.support.errors import expect
from tests.support.platform import Api, embedded_settings, module_of, start_platform

MAX_ATTEMPTS = 3


@pytest.fixture(scope="module")
async def fcm(tmp_path_factory):
    """Google's token endpoint and FCM's send endpoint; `sent` holds the device tokens FCM was asked for."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sent: list[str] = []

    async def token(request: web.Request):
        return web.json_response({"access_token": "at-1", "expires_in": 3600})

    async def send(request: web.Request):
        sent.append((await request.json())["message"]["token"])
        return web.json_response({"name": "projects/pets-app/messages/1"})

    app = web.Application()
    app.router.add_post("/token", token)
    app.router.add_post("/v1/projects/pets-app/messages:send", send)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    account = tmp_path_factory.mktemp("fcm") / "service-account.json"
    account.write_text(json.dumps({"client_email": "push@pets-app.iam.gserviceaccount.com", "token_uri": f"{url}/token",
                                   "private_key": key.private_bytes(serialization.Encoding.PEM,
                                                                    serialization.PrivateFormat.PKCS8,
                                                                    serialization.NoEncryption()).decode()}))
    yield url, account, sent
    await runner.cleanup()


@pytest.fixture(scope="module")
async def apns(tmp_path_factory):
    standin = ApnsStandIn(tmp_path_factory.mktemp("apns"))
    await standin.start()
    yield standin
    await standin.stop()


@pytest.fixture(scope="module")
async def api(tmp_path_factory, smtp_sink, fcm, apns):
    fcm_url, account, _ = fcm
    platform = await start_platform(embedded_settings(
        tmp_path_factory.mktemp("data"), smtp_sink, notification_retry_base_seconds=0.01,
        notification_retry_max_seconds=0.05, notification_max_attempts=MAX_ATTEMPTS, notification_poll_seconds=0.05,
        notification_push_provider="fcm", fcm_project_id="pets-app", fcm_service_account_file=account,
        fcm_api_url=fcm_url, notification_ios_push_provider="apns", apns_team_id=TEAM, apns_key_id=KEY_ID,
        apns_private_key_file=apns.key_file, apns_topic=TOPIC, apns_api_url=apns.url, apns_ca_file=apns.ca_file))
    client = Api(platform, smtp_sink)
    yield client
    await client.channel.close()
    await platform.stop(grace=1)


async def register(api: Api, s, platform: int) -> tuple[pb.Device, str]:
    token = f"tok-{uuid.uuid4().hex}"
    device = (await api.notification.RegisterDevice(pb.RegisterDeviceRequest(
        device=pb.Device(platform=platform, token=token)), metadata=s.md)).device
    return device, token


async def rows_of(api: Api, token: str, state: int):
    async with module_of(api, "notification").db.read() as s:
        return (await s.execute(sa.select(deliveries).where(deliveries.c.address == token,
                                                            deliveries.c.state == state))).all()


async def test_ios_devices_are_pushed_through_apns_and_the_others_through_fcm(api: Api, fcm, apns):
    _, _, fcm_sent = fcm
    alice, bob = await api.signup("Alice"), await api.signup("Bob")
    _, iphone = await register(api, bob, pb.Device.PLATFORM_IOS)
    _, android = await register(api, bob, pb.Device.PLATFORM_ANDROID)
    _, browser = await register(api, bob, pb.Device.PLATFORM_WEB)
    m = match(alice, bob)
    await publish(api, matching_events.MatchCreated(match=m))
    for token in (iphone, android, browser):
        await until(lambda token=token: rows_of(api, token, SENT), f"{token} delivered")
    [seen] = apns.for_token(iphone)
    assert seen.headers["apns-topic"] == TOPIC and seen.headers["apns-push-type"] == "alert"
    assert seen.body["aps"]["alert"]["title"] == "It's a match!"
    assert seen.body["target"] == "rooms/" + m.name.split("/")[1]
    assert sorted(t for t in fcm_sent if t in (iphone, android, browser)) == sorted([android, browser])


async def test_a_device_apns_calls_unregistered_is_forgotten(api: Api, apns):
    alice, bob = await api.signup("Alice"), await api.signup("Bob")
    device, iphone = await register(api, bob, pb.Device.PLATFORM_IOS)
    apns.answers[iphone] = [(410, "Unregistered")]
    await publish(api, matching_events.MatchCreated(match=match(alice, bob)))
    [dead] = await until(lambda: rows_of(api, iphone, DEAD), "dead-lettered")
    assert dead.attempts == 1 and "Unregistered" in dead.last_error, "refused for good: not retried"
    await expect(grpc.StatusCode.NOT_FOUND, api.notification.UnregisterDevice(
        pb.UnregisterDeviceRequest(name=device.name), metadata=bob.md))


async def test_apns_throttling_and_outages_are_retried_with_back_off_then_dead_lettered(api: Api, apns):
    alice, bob = await api.signup("Alice"), await api.signup("Bob")
    device, iphone = await register(api, bob, pb.Device.PLATFORM_IOS)
    apns.answers[iphone] = [(429, "TooManyRequests"), (503, "ServiceUnavailable")]
    await publish(api, matching_events.MatchCreated(match=match(alice, bob)))
    [sent] = await until(lambda: rows_of(api, iphone, SENT), "delivered at the last attempt")
    assert sent.attempts == MAX_ATTEMPTS and len(apns.for_token(iphone)) == MAX_ATTEMPTS

    apns.answers[iphone] = [(429, "TooManyRequests"), (500, "InternalServerError"), (429, "TooManyRequests")]
    await publish(api, matching_events.MatchCreated(match=match(alice, bob)))
    [dead] = await until(lambda: rows_of(api, iphone, DEAD), "dead-lettered")
    assert dead.attempts == MAX_ATTEMPTS and "429" in dead.last_error
    # Still registered: throttling says nothing about the device.
    await api.notification.UnregisterDevice(pb.UnregisterDeviceRequest(name=device.name), metadata=bob.md)
