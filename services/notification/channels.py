"""Channel adapters: push (FCM HTTP v1 for Android and the web, APNs for iOS) and SMS (a Twilio-style
REST API), each with a local sink for development and tests. Email is not here: it goes as email.send
to the existing mailer (mesh.mail, SMTP).

A provider raises DeliveryRejected when retrying cannot help (TokenGone: the device uninstalled the
app, so it is forgotten) and anything else for a failure worth retrying."""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import aiohttp
import jwt

log = logging.getLogger(__name__)
TIMEOUT = aiohttp.ClientTimeout(total=10)


class DeliveryRejected(Exception):
    """The provider refused this delivery for good."""


class TokenGone(DeliveryRejected):
    """The push token is no longer valid: the device must be forgotten."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Push:
    token: str
    title: str
    body: str
    data: Mapping[str, str]  # e.g. {"target": "rooms/..."}: what the app opens
    key: str  # idempotency key: the delivery's id


class PushProvider(Protocol):
    async def push(self, message: Push) -> None: ...


class SmsProvider(Protocol):
    async def sms(self, *, to: str, text: str, key: str) -> None: ...


class LocalSink:
    """Development and tests: every delivery is kept, logged and appended to `path` as a JSON line
    (tail data/notifications/sink.jsonl to watch what would have reached phones)."""

    def __init__(self, path: Path):
        self.path = path
        self.sent: list[dict] = []

    def _keep(self, record: dict) -> None:
        self.sent.append(record)
        log.info("notification sink: %s", record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    async def push(self, message: Push) -> None:
        self._keep({"channel": "push", "token": message.token, "title": message.title, "body": message.body,
                    "data": dict(message.data), "key": message.key})

    async def sms(self, *, to: str, text: str, key: str) -> None:
        self._keep({"channel": "sms", "to": to, "text": text, "key": key})


class FcmPush:
    """FCM HTTP v1 (`projects/{project}/messages:send`) with a service account's OAuth2 token (a
    JWT-bearer grant, refreshed before it expires). Verified only against a local fake of both
    endpoints (tests/e2e/notification): no network here."""

    SCOPE = "https://www.googleapis.com/auth/firebase.messaging"

    def __init__(self, *, project_id: str, service_account: Mapping[str, str],
                 api_url: str = "https://fcm.googleapis.com"):
        self._project = project_id
        self._account = service_account
        self._api = api_url.rstrip("/")
        self._token: tuple[str, float] | None = None
        self._http: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=TIMEOUT)
        return self._http

    async def _access_token(self) -> str:
        if self._token and self._token[1] > time.time() + 60:
            return self._token[0]
        token_uri = self._account["token_uri"]
        now = int(time.time())
        assertion = jwt.encode({"iss": self._account["client_email"], "scope": self.SCOPE, "aud": token_uri,
                                "iat": now, "exp": now + 3600}, self._account["private_key"], algorithm="RS256")
        async with self._session().post(token_uri, data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}) as r:
            if r.status != 200:
                raise RuntimeError(f"FCM token endpoint answered {r.status}")
            body = await r.json()
        self._token = (body["access_token"], now + int(body.get("expires_in", 3600)))
        return self._token[0]

    async def push(self, message: Push) -> None:
        url = f"{self._api}/v1/projects/{self._project}/messages:send"
        payload = {"message": {"token": message.token, "notification": {"title": message.title,
                                                                         "body": message.body},
                               "data": {**message.data, "delivery": message.key}}}
        headers = {"Authorization": f"Bearer {await self._access_token()}"}
        async with self._session().post(url, json=payload, headers=headers) as r:
            if r.status == 200:
                return
            detail = await r.text()
        if r.status == 404 or "UNREGISTERED" in detail:
            raise TokenGone(f"FCM: token unregistered ({r.status})")
        if r.status in (400, 403):
            raise DeliveryRejected(f"FCM refused the message ({r.status}): {detail[:200]}")
        raise RuntimeError(f"FCM answered {r.status}")  # 429, 5xx: retried with back-off

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


class TwilioSms:
    """Twilio's Messages API (form POST with basic auth). Verified only against a local fake."""

    def __init__(self, *, account_sid: str, auth_token: str, from_number: str,
                 api_url: str = "https://api.twilio.com"):
        self._url = f"{api_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._auth = aiohttp.BasicAuth(account_sid, auth_token)
        self._from = from_number
        self._http: aiohttp.ClientSession | None = None

    async def sms(self, *, to: str, text: str, key: str) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=TIMEOUT)
        headers = {"Authorization": self._auth.encode(), "I-Twilio-Idempotency-Token": key}
        async with self._http.post(self._url, data={"To": to, "From": self._from, "Body": text},
                                   headers=headers) as r:
            if r.status in (200, 201):
                return
            detail = await r.text()
        if 400 <= r.status < 500 and r.status != 429:
            raise DeliveryRejected(f"SMS provider refused the message ({r.status}): {detail[:200]}")
        raise RuntimeError(f"SMS provider answered {r.status}")

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
