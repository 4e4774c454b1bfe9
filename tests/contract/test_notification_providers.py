"""The real push and SMS clients against local fakes of their providers (no network here): the requests
they make (FCM HTTP v1 with a service-account OAuth2 token, APNs over HTTP/2 with a provider JWT, Twilio's
form POST) and how they read the answers: sent, refused for good (TokenGone, DeliveryRejected) or worth retrying."""
from __future__ import annotations

import ssl
import uuid

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from petplatform.notification.v1 import notification_pb2 as pb
from services.notification.channels import ApnsPush, DeliveryRejected, FcmPush, Push, TokenGone, TwilioSms
from tests.support.apns_standin import KEY_ID, TEAM, TOPIC, ApnsStandIn


@pytest.fixture
async def fake():
    """One local server playing Google's token endpoint, FCM and Twilio; `answers` sets FCM's replies."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    seen: list[tuple[str, dict, dict]] = []
    answers: list[tuple[int, str]] = []

    async def token(request: web.Request):
        form = dict(await request.post())
        claims = jwt.decode(form["assertion"], key.public_key(), algorithms=["RS256"], audience=str(request.url))
        seen.append(("token", form, claims))
        return web.json_response({"access_token": "at-1", "expires_in": 3600})

    async def fcm(request: web.Request):
        seen.append(("fcm", dict(request.headers), await request.json()))
        status, body = answers.pop(0) if answers else (200, '{"name": "projects/p/messages/1"}')
        return web.Response(status=status, text=body)

    async def twilio(request: web.Request):
        seen.append(("sms", dict(request.headers), dict(await request.post())))
        status = 201 if request.match_info["sid"] == "AC1" else 401
        return web.Response(status=status, text="{}")

    app = web.Application()
    app.router.add_post("/token", token)
    app.router.add_post("/v1/projects/pets-app/messages:send", fcm)
    app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", twilio)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    account = {"client_email": "push@pets-app.iam.gserviceaccount.com", "private_key": pem,
               "token_uri": f"{url}/token"}
    yield url, account, seen, answers
    await runner.cleanup()


def message(token: str = "device-token") -> Push:
    return Push(token=token, title="It's a match!", body="Say hello", data={"target": "rooms/1"}, key="d1")


async def test_fcm_sends_with_one_oauth_token_and_reads_refusals(fake):
    url, account, seen, answers = fake
    fcm = FcmPush(project_id="pets-app", service_account=account, api_url=url)
    try:
        await fcm.push(message())
        await fcm.push(message())
        kinds = [k for k, _, _ in seen]
        assert kinds == ["token", "fcm", "fcm"], "the access token is reused until it nears expiry"
        _, form, claims = seen[0]
        assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
        assert claims["iss"] == account["client_email"] and claims["scope"] == FcmPush.SCOPE
        _, headers, body = seen[1]
        assert headers["Authorization"] == "Bearer at-1"
        assert body == {"message": {"token": "device-token", "notification": {"title": "It's a match!",
                                                                              "body": "Say hello"},
                                    "data": {"target": "rooms/1", "delivery": "d1"}}}
        answers.append((404, '{"error": {"status": "NOT_FOUND", "details": [{"errorCode": "UNREGISTERED"}]}}'))
        with pytest.raises(TokenGone):
            await fcm.push(message())
        answers.append((400, '{"error": {"status": "INVALID_ARGUMENT"}}'))
        with pytest.raises(DeliveryRejected):
            await fcm.push(message())
        answers.append((503, "unavailable"))
        with pytest.raises(Exception) as retry:
            await fcm.push(message())
        assert not isinstance(retry.value, DeliveryRejected), "a 503 is retried"
    finally:
        await fcm.close()


async def test_twilio_posts_the_form_and_reads_refusals(fake):
    url, _, seen, _ = fake
    sms = TwilioSms(account_sid="AC1", auth_token="secret", from_number="+15005550006", api_url=url)
    wrong = TwilioSms(account_sid="AC2", auth_token="secret", from_number="+15005550006", api_url=url)
    try:
        await sms.sms(to="+14155550100", text="Adoption completed", key="d2")
        _, headers, form = seen[-1]
        assert form == {"To": "+14155550100", "From": "+15005550006", "Body": "Adoption completed"}
        assert headers["Authorization"].startswith("Basic ")
        with pytest.raises(DeliveryRejected):
            await wrong.sms(to="+14155550100", text="x", key="d3")
    finally:
        await sms.close()
        await wrong.close()


@pytest.fixture
async def apns(tmp_path):
    standin = ApnsStandIn(tmp_path)
    await standin.start()
    yield standin
    await standin.stop()


def apns_client(standin: ApnsStandIn, *, key_id: str = KEY_ID, key: str | None = None) -> ApnsPush:
    return ApnsPush(team_id=TEAM, key_id=key_id, topic=TOPIC, api_url=standin.url,
                    private_key=key or standin.key_file.read_text(),
                    verify=ssl.create_default_context(cafile=standin.ca_file))


def ios_message(token: str) -> Push:
    return Push(token=token, title="It's a match!", body="Say hello", data={"target": "rooms/1"},
                key=uuid.uuid4().hex, platform=pb.Device.PLATFORM_IOS)


async def test_apns_sends_over_http2_with_one_provider_token_and_apple_s_headers(apns):
    client = apns_client(apns)
    try:
        first, second = ios_message("a1"), ios_message("a1")
        await client.push(first)
        await client.push(second)
        seen = apns.for_token("a1")
        assert len(seen) == 2 and apns.connections == 1, "one HTTP/2 connection carries both"
        assert seen[0].headers["authorization"] == seen[1].headers["authorization"], "the JWT is reused"
        assert seen[0].claims["iss"] == TEAM
        assert {k: seen[0].headers[k] for k in ("apns-topic", "apns-push-type", "apns-priority")} == {
            "apns-topic": TOPIC, "apns-push-type": "alert", "apns-priority": "10"}
        assert seen[0].headers["apns-id"] == str(uuid.UUID(first.key))
        assert seen[0].body == {"aps": {"alert": {"title": "It's a match!", "body": "Say hello"}, "sound": "default"},
                                "target": "rooms/1", "delivery": first.key}
    finally:
        await client.close()


async def test_apns_answers_are_read_as_gone_refused_or_worth_retrying(apns):
    client = apns_client(apns)
    try:
        for status, reason, expected in ((410, "Unregistered", TokenGone), (400, "BadDeviceToken", TokenGone),
                                         (413, "PayloadTooLarge", DeliveryRejected)):
            apns.answers["a2"] = [(status, reason)]
            with pytest.raises(expected):
                await client.push(ios_message("a2"))
        for status, reason in ((429, "TooManyRequests"), (500, "InternalServerError"),
                               (503, "ServiceUnavailable")):
            apns.answers["a2"] = [(status, reason)]
            with pytest.raises(Exception) as retry:
                await client.push(ios_message("a2"))
            assert not isinstance(retry.value, DeliveryRejected), f"a {status} is retried"
        # An expired provider token is retried with a new one.
        apns.answers["a2"] = [(403, "ExpiredProviderToken")]
        with pytest.raises(RuntimeError):
            await client.push(ios_message("a2"))
        await client.push(ios_message("a2"))
        before, after = apns.for_token("a2")[-2:]
        assert before.headers["authorization"] != after.headers["authorization"]
    finally:
        await client.close()


async def test_the_apns_standin_refuses_a_token_signed_with_another_key(apns):
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    for client in (apns_client(apns, key=other), apns_client(apns, key_id="OTHERKEY00")):
        try:
            with pytest.raises(RuntimeError, match="InvalidProviderToken"):
                await client.push(ios_message("a3"))
        finally:
            await client.close()
    assert not apns.for_token("a3")
