"""The local payment provider's bank, for 3-D Secure: where a payer confirms (or refuses) a charge the local
provider answered `requires_action`, as they would on their bank's page after Stripe's redirect. The local
provider gives each such charge an `action_url` here; confirming sends the provider's webhook, Stripe-shaped
and signed with the local provider's secret, to PaymentService.ReceiveWebhook, as the provider itself would.
Served only while the local provider moves the money (it moves none: development, the demo and tests)."""
from __future__ import annotations

import asyncio
import html
import json
import re
import secrets
import time
import urllib.parse

from aiohttp import web
from google.api import httpbody_pb2
import grpc

from gateway.pages import page
from gateway.policy import EdgePolicy
from gateway.request_keys import BODY_ABANDONED, CLIENT_IP
from mesh import webhook_signature
from mesh.config import LOCAL_BANK_PATH
from petplatform.common.v1 import access_pb2
from petplatform.payment.v1 import payment_pb2, payment_pb2_grpc

PAYMENT_SERVICE = payment_pb2.DESCRIPTOR.services_by_name["PaymentService"].full_name
_REFERENCE = re.compile(r"pi_[0-9a-f]{16}[0-9]{1,12}")  # LocalProvider._id("pi")
_FORM_MAX = 1024


class LocalBank:
    def __init__(self, channel_for, policy: EdgePolicy, secret: bytes):
        self.channel_for = channel_for
        self.policy = policy
        self.secret = secret

    def routes(self) -> list[tuple[str, str, object]]:
        return [("GET", LOCAL_BANK_PATH + "/{reference}", self.show),
                ("POST", LOCAL_BANK_PATH + "/{reference}", self.decide)]

    async def _admit(self, request: web.Request) -> str:
        ip = self.policy.client_ip(request.remote, request.headers.getall("X-Forwarded-For", []))
        request[CLIENT_IP] = ip
        await self.policy.admit(ip, None, access_pb2.ACCESS_PUBLIC)
        reference = request.match_info["reference"]
        if not _REFERENCE.fullmatch(reference):
            raise web.HTTPNotFound()
        return reference

    async def show(self, request: web.Request) -> web.Response:
        reference = await self._admit(request)
        action = html.escape(f"{LOCAL_BANK_PATH}/{reference}", quote=True)
        return page("Confirm your payment",
                    "<p>Your bank (the platform's local test provider) asks you to confirm this card payment "
                    f"(<code>{html.escape(reference)}</code>).</p>"
                    f"<form method='post' action='{action}'><input type='hidden' name='decision' value='approve'>"
                    "<button type='submit'>Confirm payment</button></form>"
                    f"<form method='post' action='{action}'><input type='hidden' name='decision' value='refuse'>"
                    "<button type='submit'>Refuse</button></form>")

    async def decide(self, request: web.Request) -> web.Response:
        reference = await self._admit(request)
        try:
            async with asyncio.timeout(self.policy.s.http_body_timeout_seconds):
                body = await request.content.read(_FORM_MAX + 1)
        except TimeoutError:
            request[BODY_ABANDONED] = True
            return page("Not confirmed", "<p>This request did not arrive in time. Try again.</p>", 408)
        decision = urllib.parse.parse_qs(body[:_FORM_MAX].decode("utf-8", "replace")).get("decision", [""])[0]
        if decision not in ("approve", "refuse"):
            return page("Not confirmed", "<p>Choose to confirm or to refuse the payment.</p>", 400)
        approved = decision == "approve"
        obj: dict[str, object] = {"id": reference, "object": "payment_intent"}
        if approved:
            event_type, obj["status"] = "payment_intent.succeeded", "succeeded"
        else:
            event_type, obj["status"] = "payment_intent.payment_failed", "requires_payment_method"
            obj["last_payment_error"] = {"code": "payment_intent_authentication_failure"}
        now = int(time.time())
        event = json.dumps({"id": f"evt_bank_{secrets.token_hex(12)}", "object": "event", "type": event_type,
                            "created": now, "data": {"object": obj}}).encode()
        stub = payment_pb2_grpc.PaymentServiceStub(self.channel_for(PAYMENT_SERVICE))
        try:
            await stub.ReceiveWebhook(payment_pb2.ReceiveWebhookRequest(
                provider="local", body=httpbody_pb2.HttpBody(content_type="application/json", data=event),
                signature=webhook_signature.sign(event, self.secret, now)), timeout=10)
        except grpc.aio.AioRpcError:
            return page("Not available right now", "<p>Your bank could not be reached. Try again in a moment.</p>",
                        503)
        if approved:
            return page("Payment confirmed", "<p>Thank you: the payment is confirmed. You can close this page and "
                                             "go back to the app.</p>")
        return page("Payment refused", "<p>You refused the payment: it will not be taken. You can close this "
                                       "page.</p>")
