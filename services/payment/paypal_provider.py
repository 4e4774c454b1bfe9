"""The PayPal adapter of the provider port, on PayPal's REST API with aiohttp.

Not on PayPal's Python SDK (paypal-server-sdk, maintained): it is synchronous (requests, so every
call would hold a thread), has no Payouts API, and fixes its base URL per environment, so it could
not be pointed at a local stand-in. The REST calls are few and documented:
  - an OAuth2 client-credentials token, kept until shortly before it expires;
  - charges: an Orders v2 order (intent CAPTURE) paid with the owner's vaulted payment source
    (`payment_method` is its vault id), then captured; an order that needs the payer (3-D Secure,
    a consent) is PAYER_ACTION_REQUIRED with a `payer-action` link: requires_action with that URL,
    and once the payer approved it (CHECKOUT.ORDER.APPROVED), the retry finds it APPROVED and captures;
  - refunds: a refund of the capture (the charge's reference is the capture id);
  - payouts: a Payouts batch of one item to the business's PayPal account (`payout_account` is its
    PayPal payer id).
Webhooks are checked by PayPal's verify-webhook-signature API (PayPal signs them with its own
certificate, not a secret shared with us), with the event sent back verbatim.
Every POST carries the flow's idempotency key as PayPal-Request-Id (PayPal's idempotency header:
a retry returns the first answer), the capture `<key>:capture`. An outage (no answer, 5xx, 429, a
token refused mid-way) is ProviderDown; the worker retries with the same keys."""
from __future__ import annotations

import base64
from collections.abc import Mapping
import json
import logging
import time
from typing import Any

import aiohttp

from mesh.money import EXPONENTS
from services.payment.providers import Outcome, ProviderDown, ProviderRefused, State

log = logging.getLogger(__name__)

CAPTURE_STATES: dict[str, State] = {"COMPLETED": "succeeded", "PENDING": "processing", "DECLINED": "failed",
                                    "FAILED": "failed"}
REFUND_STATES: dict[str, State] = {"COMPLETED": "succeeded", "PENDING": "processing", "FAILED": "failed",
                                   "CANCELLED": "failed"}
DECLINES = {"INSTRUMENT_DECLINED", "TRANSACTION_REFUSED", "PAYER_CANNOT_PAY", "PAYEE_BLOCKED_TRANSACTION"}
TOKEN_MARGIN_SECONDS = 60
# What verify-webhook-signature needs of a webhook's headers: (header, field of the request).
WEBHOOK_HEADERS = (("paypal-auth-algo", "auth_algo"), ("paypal-cert-url", "cert_url"),
                   ("paypal-transmission-id", "transmission_id"), ("paypal-transmission-sig", "transmission_sig"),
                   ("paypal-transmission-time", "transmission_time"))


def money(minor: int, currency: str) -> dict[str, str]:
    """PayPal's money: a decimal string with the currency's own decimals ("25.00", "2000" yen)."""
    exp = EXPONENTS[currency.upper()]
    value = f"{minor // 10 ** exp}.{minor % 10 ** exp:0{exp}d}" if exp else str(minor)
    return {"currency_code": currency.upper(), "value": value}


def issue_of(body: dict) -> str:
    """The first `details[].issue` of a PayPal error, else its `name`."""
    details = body.get("details")
    if isinstance(details, list) and details and isinstance(details[0], dict) and details[0].get("issue"):
        return str(details[0]["issue"])
    return str(body.get("name") or body.get("error") or "")


class PayPalProvider:
    name = "paypal"

    def __init__(self, *, client_id: str, client_secret: str, api_base: str = "https://api-m.paypal.com",
                 timeout: float = 30):
        self.base = api_base.rstrip("/")
        self.credentials = "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._token = ""
        self._token_expires = 0.0

    def _http(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _send(self, method: str, path: str, **kwargs: Any) -> tuple[int, dict]:
        try:
            async with self._http().request(method, self.base + path, **kwargs) as r:
                body = await r.json(content_type=None) if r.content_length != 0 else {}
                status = r.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise ProviderDown(f"paypal: {type(e).__name__}: {e}") from e
        if status >= 500 or status in (409, 429):
            raise ProviderDown(f"paypal: {status} {issue_of(body) if isinstance(body, dict) else ''}")
        return status, body if isinstance(body, dict) else {}

    async def _access_token(self) -> str:
        if self._token and time.monotonic() < self._token_expires:
            return self._token
        status, body = await self._send("POST", "/v1/oauth2/token", headers={"Authorization": self.credentials},
                                        data={"grant_type": "client_credentials"})
        if status != 200 or not isinstance(body.get("access_token"), str):
            raise ProviderRefused(f"paypal: {status} {issue_of(body)}: client credentials refused")
        self._token = body["access_token"]
        self._token_expires = time.monotonic() + max(0, int(body.get("expires_in", 0)) - TOKEN_MARGIN_SECONDS)
        return self._token

    async def _post(self, path: str, *, key: str, body: dict) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {await self._access_token()}", "PayPal-Request-Id": key,
                   "Prefer": "return=representation"}
        status, answer = await self._send("POST", path, json=body, headers=headers)
        if status == 401:  # the token expired or was revoked early: a fresh one on the retry
            self._token = ""
            raise ProviderDown("paypal: 401, access token refused")
        return status, answer

    async def _get(self, path: str) -> tuple[int, dict]:
        token = await self._access_token()
        status, answer = await self._send("GET", path, headers={"Authorization": f"Bearer {token}"})
        if status == 401:
            self._token = ""
            raise ProviderDown("paypal: 401, access token refused")
        return status, answer

    async def verify_webhook(self, *, webhook_id: str, headers: Mapping[str, str], body: bytes) -> bool:
        """Whether PayPal says it sent `body` with these (lowercased) headers to the webhook
        `webhook_id`. The event goes into the request as received, not parsed and serialized
        again: PayPal's signature covers a CRC32 of its own bytes. ProviderDown when PayPal cannot
        answer (the webhook is refused as unavailable, and PayPal sends it again)."""
        if any(not headers.get(h) for h, _ in WEBHOOK_HEADERS):
            return False
        fields = {name: headers[h] for h, name in WEBHOOK_HEADERS} | {"webhook_id": webhook_id}
        request = json.dumps(fields)[:-1].encode() + b', "webhook_event": ' + body + b"}"
        status, answer = await self._send("POST", "/v1/notifications/verify-webhook-signature", data=request,
                                          headers={"Authorization": f"Bearer {await self._access_token()}",
                                                   "Content-Type": "application/json"})
        if status == 401:
            self._token = ""
            raise ProviderDown("paypal: 401, access token refused")
        if status != 200:
            log.warning("paypal: verify-webhook-signature answered %s %s", status, issue_of(answer))
        return status == 200 and answer.get("verification_status") == "SUCCESS"

    async def charge(self, *, key: str, amount: int, currency: str, payment_method: str,
                     metadata: dict[str, str]) -> Outcome:
        status, order = await self._post("/v2/checkout/orders", key=key, body={
            "intent": "CAPTURE",
            "purchase_units": [{"reference_id": metadata.get("booking", "")[:256], "custom_id": key[:127],
                                "amount": money(amount, currency)}],
            "payment_source": {"paypal": {"vault_id": payment_method}}})
        if status == 422 and issue_of(order) in DECLINES:
            return Outcome("failed", str(order.get("id") or ""), issue_of(order))
        if status not in (200, 201):
            raise ProviderRefused(f"paypal: {status} {issue_of(order)}: order refused")
        order_id = str(order.get("id") or "")
        if order.get("status") in ("PAYER_ACTION_REQUIRED", "CREATED") and order_id:
            # The request id replays the order as first made: the payer may have approved it since
            # (CHECKOUT.ORDER.APPROVED puts the charge back in the worker's hands), so ask.
            status, now = await self._get(f"/v2/checkout/orders/{order_id}")
            if status == 200 and now.get("status") in ("APPROVED", "COMPLETED"):
                order = now
        if order.get("status") in ("PAYER_ACTION_REQUIRED", "CREATED"):
            link = next((x.get("href") for x in order.get("links") or ()
                         if isinstance(x, dict) and x.get("rel") in ("payer-action", "approve")), "")
            return Outcome("requires_action", order_id, action_url=link if isinstance(link, str) else "")
        if order.get("status") != "COMPLETED":  # APPROVED: ours to capture
            status, order = await self._post(f"/v2/checkout/orders/{order_id}/capture", key=f"{key}:capture", body={})
            if status == 422 and issue_of(order) in DECLINES:
                return Outcome("failed", order_id, issue_of(order))
            if status not in (200, 201):
                raise ProviderRefused(f"paypal: {status} {issue_of(order)}: capture refused")
        captures = [c for u in order.get("purchase_units") or () if isinstance(u, dict)
                    for c in (u.get("payments") or {}).get("captures") or () if isinstance(c, dict)]
        if not captures:
            raise ProviderRefused(f"paypal: order {order_id} {order.get('status')} without a capture")
        capture = captures[0]
        state = CAPTURE_STATES.get(str(capture.get("status")), "processing")
        reason = (capture.get("status_details") or {}).get("reason") if state == "failed" else ""
        # The capture is what a refund refers to: its id is the charge's reference.
        return Outcome(state, str(capture.get("id") or order_id), str(reason or capture.get("status") or "")
                       if state == "failed" else "")

    async def refund(self, *, key: str, charge: str, amount: int, currency: str,
                     metadata: dict[str, str]) -> Outcome:
        status, refund = await self._post(f"/v2/payments/captures/{charge}/refund", key=key, body={
            "amount": money(amount, currency), "custom_id": key[:127]})
        if status not in (200, 201):
            raise ProviderRefused(f"paypal: {status} {issue_of(refund)}: refund refused")
        state = REFUND_STATES.get(str(refund.get("status")), "processing")
        return Outcome(state, str(refund.get("id") or ""), str(refund.get("status")) if state == "failed" else "")

    async def payout(self, *, key: str, account: str, amount: int, currency: str,
                     metadata: dict[str, str]) -> Outcome:
        status, batch = await self._post("/v1/payments/payouts", key=key, body={
            "sender_batch_header": {"sender_batch_id": key, "email_subject": "Your Pet Platform payout"},
            "items": [{"recipient_type": "PAYPAL_ID", "receiver": account, "amount": {
                "value": money(amount, currency)["value"], "currency": currency.upper()},
                "sender_item_id": metadata.get("payment", key)[:63], "note": metadata.get("booking", "")}]})
        if status == 422 or (status == 400 and issue_of(batch)):
            # No such or no usable receiver: the business must fix its payout account.
            return Outcome("failed", "", f"paypal: {issue_of(batch)}"[:200])
        if status not in (200, 201):
            raise ProviderRefused(f"paypal: {status} {issue_of(batch)}: payout refused")
        header = batch.get("batch_header") or {}
        if header.get("batch_status") in ("DENIED", "CANCELED"):
            return Outcome("failed", str(header.get("payout_batch_id") or ""), str(header.get("batch_status")))
        # Accepted: PayPal has taken the amount from the platform's balance for the business (its
        # item's later fate, e.g. unclaimed, comes by PAYMENT.PAYOUTS-ITEM webhooks: bank_payout).
        return Outcome("succeeded", str(header.get("payout_batch_id") or ""))

    async def cancel_charge(self, *, key: str, charge: str, metadata: dict[str, str]) -> Outcome:
        # An order waiting on the payer's approval has no cancel call: it is never captured (a late
        # approval finds the charge cancelled and nothing resumes it), and PayPal voids it itself.
        return Outcome("failed", charge, "payer_action_expired")

    async def reclaim_payout(self, *, key: str, payout: str, account: str, amount: int, currency: str,
                             metadata: dict[str, str]) -> Outcome:
        # A returned, refused or cancelled payout item is credited back to the platform's PayPal
        # balance by PayPal itself: nothing to call.
        return Outcome("succeeded", payout)
