"""Channel adapters: push (FCM HTTP v1 for Android and the web, APNs for iOS, routed by the device's
platform) and SMS (a Twilio-style REST API), each with a local sink for development and tests. Email is
not here: it goes as email.send to the existing mailer (mesh.mail, SMTP).

A provider raises DeliveryRejected when retrying cannot help (TokenGone: the device uninstalled the
app, so it is forgotten) and anything else for a failure worth retrying."""
from __future__ import annotations

import dataclasses
import json
import logging
import ssl
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import aiohttp
import httpx
import jwt

from petplatform.notification.v1 import notification_pb2 as pb

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
    platform: int = pb.Device.PLATFORM_UNSPECIFIED  # the device's (pb.Device.Platform): picks the service


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


class ApnsPush:
    """Apple's push service over HTTP/2 (`POST /3/device/{token}`) with token-based auth: a provider JWT
    (ES256, the .p8 key's id as `kid`, the team as `iss`) kept for 50 minutes, since Apple refuses one older
    than an hour and one renewed more often than every 20 minutes. Verified only against a local HTTP/2
    stand-in (tests/support/apns_standin.py): no network here."""

    REASONS_TOKEN_GONE = frozenset({"Unregistered", "ExpiredToken", "BadDeviceToken"})
    REASONS_BAD_AUTH = frozenset({"ExpiredProviderToken", "InvalidProviderToken"})
    TOKEN_LIFETIME = 50 * 60

    def __init__(self, *, team_id: str, key_id: str, private_key: str, topic: str,
                 api_url: str = "https://api.push.apple.com", verify: ssl.SSLContext | bool = True):
        self._team = team_id
        self._key_id = key_id
        self._key = private_key
        self._topic = topic
        self._http = httpx.AsyncClient(base_url=api_url.rstrip("/"), http2=True, verify=verify,
                                       timeout=httpx.Timeout(10))
        self._token: tuple[str, float] | None = None

    def _provider_token(self) -> str:
        now = time.time()
        if self._token is None or self._token[1] + self.TOKEN_LIFETIME < now:
            token = jwt.encode({"iss": self._team, "iat": int(now)}, self._key, algorithm="ES256",
                               headers={"kid": self._key_id})
            self._token = (token, now)
        return self._token[0]

    async def push(self, message: Push) -> None:
        payload = {"aps": {"alert": {"title": message.title, "body": message.body}, "sound": "default"},
                   **message.data, "delivery": message.key}
        # apns-id must be a UUID: the delivery's id (32 hex digits) is one, so Apple's logs name the row.
        headers = {"authorization": f"bearer {self._provider_token()}", "apns-topic": self._topic,
                   "apns-push-type": "alert", "apns-priority": "10", "apns-id": str(uuid.UUID(hex=message.key))}
        r = await self._http.post(f"/3/device/{message.token}", json=payload, headers=headers)
        if r.status_code == 200:
            return
        try:
            reason = str(r.json().get("reason", ""))
        except ValueError:
            reason = ""
        if r.status_code == 410 or reason in self.REASONS_TOKEN_GONE:
            raise TokenGone(f"APNs: token gone ({r.status_code} {reason})")
        if r.status_code == 403 and reason in self.REASONS_BAD_AUTH:
            self._token = None  # the next attempt signs a new one
            raise RuntimeError(f"APNs refused the provider token ({reason})")
        if r.status_code in (400, 403, 405, 413):
            raise DeliveryRejected(f"APNs refused the notification ({r.status_code} {reason})")
        raise RuntimeError(f"APNs answered {r.status_code} {reason}")  # 429, 5xx: retried with back-off

    async def close(self) -> None:
        await self._http.aclose()


class PushRouter:
    """iOS devices' pushes to one provider (APNs), Android's and browsers' to another (FCM)."""

    def __init__(self, *, ios: PushProvider, others: PushProvider):
        self.ios = ios
        self.others = others

    async def push(self, message: Push) -> None:
        provider = self.ios if message.platform == pb.Device.PLATFORM_IOS else self.others
        await provider.push(message)

    async def close(self) -> None:
        for provider in {id(p): p for p in (self.ios, self.others)}.values():
            if close := getattr(provider, "close", None):
                await close()


class TwilioSms:
    """Twilio's Messages API (form POST with basic auth). Verified only against a local fake."""

    def __init__(self, *, account_sid: str, auth_token: str, from_number: str,
                 api_url: str = "https://api.twilio.com"):
        self._url = f"{api_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._authorization = aiohttp.encode_basic_auth(account_sid, auth_token)
        self._from = from_number
        self._http: aiohttp.ClientSession | None = None

    async def sms(self, *, to: str, text: str, key: str) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=TIMEOUT)
        headers = {"Authorization": self._authorization, "I-Twilio-Idempotency-Token": key}
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
