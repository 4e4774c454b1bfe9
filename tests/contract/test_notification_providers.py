"""The real push and SMS clients against local fakes of their providers (no network here): the requests
they make (FCM HTTP v1 with a service-account OAuth2 token, Twilio's form POST) and how they read the
answers: sent, refused for good (TokenGone, DeliveryRejected) or worth retrying."""
from __future__ import annotations

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.notification.channels import DeliveryRejected, FcmPush, Push, TokenGone, TwilioSms


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
