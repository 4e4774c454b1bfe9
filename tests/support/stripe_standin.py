"""A local HTTP stand-in of the parts of the Stripe API the adapter calls (PaymentIntents created,
cancelled and read, refunds, transfers and their reversals, payouts), answering as Stripe does:
form-encoded requests with bracketed keys, the Idempotency-Key header replaying the first answer
(and refusing a key reused with other parameters), card declines as 402 card_error with the
failed PaymentIntent, unknown connected accounts as 400. It checks what it receives (the secret
key, an Idempotency-Key on every POST, a positive integer amount, a lower-case ISO currency) and
records every request for the tests.

It also plays the rest of Stripe's side: cards that need 3-D Secure answer `requires_action` with a
client secret and a `use_stripe_sdk` next action; `authenticate` is the payer completing (or
failing) it in Stripe.js; `settle_payout` is the bank paying (or returning) a connected account's
payout. Each returns the Stripe event that would follow, for the test to sign and deliver."""
from __future__ import annotations

import dataclasses
import itertools
import json
import secrets
import time
from typing import Any

from aiohttp import web

API_KEY = "sk_test_standin"
DECLINES = {"pm_card_chargeDeclined": ("card_declined", "generic_decline"),
            "pm_card_visa_chargeDeclinedInsufficientFunds": ("card_declined", "insufficient_funds")}
UNKNOWN_ACCOUNTS = {"acct_invalid"}
AUTHENTICATE = {"pm_card_authenticationRequired", "pm_card_threeDSecure2Required"}


@dataclasses.dataclass
class Received:
    path: str
    headers: dict[str, str]
    form: dict[str, str]
    status: int = 0
    replayed: bool = False


class StripeStandIn:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.fail_next = 0  # answer this many next requests with a 500 api_error
        self.created: dict[str, dict[str, Any]] = {}  # id -> object
        self.accounts: dict[str, str] = {}  # id -> the connected account it was made on
        self._answers: dict[str, tuple[dict[str, str], int, dict]] = {}  # key -> (form, status, body)
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        for path in ("/v1/payment_intents", "/v1/refunds", "/v1/transfers", "/v1/payouts",
                     "/v1/payment_intents/{id}/cancel", "/v1/transfers/{id}/reversals"):
            app.router.add_post(path, self._handle)
        app.router.add_get("/v1/payment_intents/{id}", self._retrieve)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    def event(self, kind: str, obj: dict, *, account: str | None = None) -> bytes:
        """A Stripe event about `obj` (from a connected `account`, for Connect events), as its
        webhook body."""
        event = {"id": self._id("evt"), "object": "event", "type": kind, "created": int(time.time()),
                 "livemode": False, "data": {"object": json.loads(json.dumps(obj))}}
        if account:
            event["account"] = account
        return json.dumps(event).encode()

    def authenticate(self, intent_id: str, *, succeed: bool = True) -> bytes:
        """The payer's 3-D Secure step, done in their app: the intent succeeds, or goes back to
        requires_payment_method with an authentication failure. The event Stripe sends next."""
        intent = self.created[intent_id]
        assert intent["status"] == "requires_action", intent
        intent["next_action"] = None
        if succeed:
            intent["status"] = "succeeded"
            return self.event("payment_intent.succeeded", intent)
        intent.update(status="requires_payment_method", last_payment_error={
            "type": "card_error", "code": "payment_intent_authentication_failure",
            "message": "We are unable to authenticate your payment method."})
        return self.event("payment_intent.payment_failed", intent)

    def settle_payout(self, payout_id: str, *, paid: bool = True, failure_code: str = "account_closed") -> bytes:
        """The bank takes (payout.paid) or returns (payout.failed) a connected account's payout."""
        payout = self.created[payout_id]
        if paid:
            payout["status"] = "paid"
        else:
            payout.update(status="failed", failure_code=failure_code)
        return self.event(f"payout.{payout['status']}", payout, account=self.accounts[payout_id])

    def posts(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def _id(self, prefix: str) -> str:
        return f"{prefix}_standin{next(self._ids)}"

    @staticmethod
    def _error(status: int, kind: str, message: str, **more: Any) -> tuple[int, dict]:
        return status, {"error": {"type": kind, "message": message, **more}}

    async def _handle(self, request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        got = Received(request.path, dict(request.headers), form)
        self.received.append(got)
        status, body = self._answer(request, got)
        got.status = status
        headers = {"Request-Id": f"req_{next(self._ids)}"}
        if got.replayed:
            headers["Idempotent-Replayed"] = "true"
        return web.json_response(body, status=status, headers=headers)

    def _answer(self, request: web.Request, got: Received) -> tuple[int, dict]:
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return self._error(401, "invalid_request_error", "Invalid API Key provided")
        key = request.headers.get("Idempotency-Key")
        if not key:
            return self._error(400, "invalid_request_error", "the stand-in expects an Idempotency-Key on every POST")
        if self.fail_next:
            self.fail_next -= 1
            return self._error(500, "api_error", "An unknown error occurred")  # nothing saved: retryable
        scoped = f"{request.headers.get('Stripe-Account', '')}|{key}"
        if scoped in self._answers:
            first, status, body = self._answers[scoped]
            if first != got.form:
                return self._error(400, "idempotency_error", "Keys for idempotent requests can only be used "
                                   "with the same parameters they were first used with.")
            got.replayed = True
            return status, body
        status, body = self._act(request.path, got)
        self._answers[scoped] = (got.form, status, body)
        return status, body

    async def _retrieve(self, request: web.Request) -> web.Response:
        self.received.append(Received(request.path, dict(request.headers), {}))
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            status, body = self._error(401, "invalid_request_error", "Invalid API Key provided")
            return web.json_response(body, status=status)
        intent = self.created.get(request.match_info["id"])
        if intent is None:
            return web.json_response(self._error(404, "invalid_request_error", "No such payment_intent")[1], status=404)
        return web.json_response(intent)

    def _cancel(self, path: str) -> tuple[int, dict]:
        intent = self.created.get(path.split("/")[3])
        if intent is None:
            return self._error(404, "invalid_request_error", "No such payment_intent")
        if intent["status"] not in ("requires_payment_method", "requires_confirmation", "requires_action",
                                    "requires_capture", "processing"):
            return self._error(400, "invalid_request_error", "You cannot cancel this PaymentIntent because it has "
                               f"a status of {intent['status']}.", code="payment_intent_unexpected_state")
        intent.update(status="canceled", next_action=None, cancellation_reason="abandoned")
        return 200, json.loads(json.dumps(intent))

    def _reverse(self, path: str, got: Received) -> tuple[int, dict]:
        transfer = self.created.get(path.split("/")[3])
        amount = got.form.get("amount", "")
        if transfer is None or transfer.get("object") != "transfer":
            return self._error(404, "invalid_request_error", "No such transfer")
        if not amount.isdigit() or int(amount) <= 0:
            return self._error(400, "invalid_request_error", "Invalid positive integer", param="amount")
        if int(amount) > transfer["amount"] - transfer.get("amount_reversed", 0):
            return self._error(400, "invalid_request_error", "amount exceeds what is left of the transfer")
        transfer["amount_reversed"] = transfer.get("amount_reversed", 0) + int(amount)
        metadata = {k[len("metadata["):-1]: v for k, v in got.form.items() if k.startswith("metadata[")}
        return 200, self._save({"id": self._id("trr"), "object": "transfer_reversal", "amount": int(amount),
                                "currency": transfer["currency"], "transfer": transfer["id"], "metadata": metadata})

    def _act(self, path: str, got: Received) -> tuple[int, dict]:
        if path.endswith("/cancel"):
            return self._cancel(path)
        if path.endswith("/reversals"):
            return self._reverse(path, got)
        f = got.form
        amount = f.get("amount", "")
        if not amount.isdigit() or int(amount) <= 0:
            return self._error(400, "invalid_request_error", "Invalid positive integer", param="amount")
        metadata = {k[len("metadata["):-1]: v for k, v in f.items() if k.startswith("metadata[")}
        if path == "/v1/refunds":
            intent = self.created.get(f.get("payment_intent", ""))
            if intent is None or intent["status"] != "succeeded":
                return self._error(400, "invalid_request_error", "No such payment_intent", param="payment_intent")
            if int(amount) > intent["amount"] - intent["amount_refunded"]:
                return self._error(400, "invalid_request_error", "Refund amount is greater than unrefunded amount",
                                   code="amount_too_large")
            intent["amount_refunded"] += int(amount)
            return 200, self._save({"id": self._id("re"), "object": "refund", "amount": int(amount),
                                    "currency": intent["currency"], "payment_intent": intent["id"],
                                    "status": "succeeded", "metadata": metadata})
        currency = f.get("currency", "")
        if len(currency) != 3 or currency != currency.lower():
            return self._error(400, "invalid_request_error", "Invalid currency", param="currency")
        if path == "/v1/payment_intents":
            if f.get("confirm") != "true" or not f.get("payment_method"):
                return self._error(400, "invalid_request_error", "the stand-in expects a confirmed intent")
            intent_id = self._id("pi")
            intent = {"id": intent_id, "object": "payment_intent", "amount": int(amount), "amount_refunded": 0,
                      "currency": currency, "status": "succeeded", "payment_method": f["payment_method"],
                      "client_secret": f"{intent_id}_secret_{secrets.token_hex(8)}", "next_action": None,
                      "metadata": metadata, "last_payment_error": None}
            if f["payment_method"] in AUTHENTICATE:
                intent.update(status="requires_action", next_action={
                    "type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect",
                                                                 "stripe_js": "https://hooks.stripe.test/3ds"}})
            if f["payment_method"] in DECLINES:
                code, decline = DECLINES[f["payment_method"]]
                intent.update(status="requires_payment_method", last_payment_error={
                    "type": "card_error", "code": code, "decline_code": decline, "message": "Your card was declined."})
                return self._error(402, "card_error", "Your card was declined.", code=code, decline_code=decline,
                                   payment_intent=self._save(intent))
            return 200, self._save(intent)
        if path == "/v1/transfers":
            if f.get("destination") in UNKNOWN_ACCOUNTS or not f.get("destination", "").startswith("acct_"):
                return self._error(400, "invalid_request_error", "No such destination", param="destination")
            return 200, self._save({"id": self._id("tr"), "object": "transfer", "amount": int(amount),
                                    "currency": currency, "destination": f["destination"], "metadata": metadata})
        # /v1/payouts, on a connected account's balance
        if not got.headers.get("Stripe-Account", "").startswith("acct_"):
            return self._error(400, "invalid_request_error", "the stand-in pays out connected accounts only")
        return 200, self._save({"id": self._id("po"), "object": "payout", "amount": int(amount),
                                "currency": currency, "status": "pending", "metadata": metadata,
                                "failure_code": None}, account=got.headers["Stripe-Account"])

    def _save(self, obj: dict, *, account: str = "") -> dict:
        self.created[obj["id"]] = obj
        if account:
            self.accounts[obj["id"]] = account
        return json.loads(json.dumps(obj))  # the answer is a copy: later refunds do not change it
