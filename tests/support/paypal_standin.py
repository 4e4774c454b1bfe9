"""A local HTTP stand-in of the parts of PayPal's REST API the adapter calls (OAuth2 client
credentials, Orders v2 create and capture, capture refunds, Payouts), answering as PayPal does:
JSON bodies, PayPal-Request-Id replaying the first answer, declines as 422 UNPROCESSABLE_ENTITY
with the issue, orders that need the payer as PAYER_ACTION_REQUIRED with a payer-action link. It
checks what it receives (the client credentials, a bearer token it issued on every call, a
PayPal-Request-Id on every POST, amounts as decimal strings with the currency's own decimals) and
records every request for the tests."""
from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import re
import secrets
from typing import Any

from aiohttp import web

CLIENT_ID, CLIENT_SECRET = "standin-client", "standin-secret"
DECLINED_VAULTS = {"vault_declined": "INSTRUMENT_DECLINED"}
PAYER_ACTION_VAULTS = {"vault_payer_action"}
UNKNOWN_RECEIVERS = {"NOSUCHPAYER00"}
DECIMALS = {"JPY": 0, "KRW": 0}


@dataclasses.dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict
    status: int = 0
    replayed: bool = False


class PayPalStandIn:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.fail_next = 0  # answer this many next calls with a 503
        self.expire_tokens = False  # answer the next call with 401 (a token expired early), then forget them
        self.tokens: set[str] = set()
        self.created: dict[str, dict[str, Any]] = {}
        self._answers: dict[str, tuple[str, dict, int, dict]] = {}  # request id -> (path, body, status, answer)
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/oauth2/token", self._token)
        app.router.add_post("/v2/checkout/orders", self._handle)
        app.router.add_post("/v2/checkout/orders/{id}/capture", self._handle)
        app.router.add_post("/v2/payments/captures/{id}/refund", self._handle)
        app.router.add_post("/v1/payments/payouts", self._handle)
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

    def posts(self, pattern: str) -> list[Received]:
        return [r for r in self.received if re.fullmatch(pattern, r.path)]

    def _id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):013d}"

    @staticmethod
    def _error(status: int, name: str, issue: str = "") -> tuple[int, dict]:
        return status, {"name": name, "message": name.replace("_", " ").lower(),
                        "details": [{"issue": issue}] if issue else []}

    async def _token(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        form = await request.post()
        self.received.append(Received(request.path, dict(request.headers), dict(form)))
        if request.headers.get("Authorization") != expected or form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "invalid_client", "error_description": "Client Authentication failed"},
                                     status=401)
        token = secrets.token_hex(12)
        self.tokens.add(token)
        return web.json_response({"access_token": token, "token_type": "Bearer", "expires_in": 32400})

    async def _handle(self, request: web.Request) -> web.Response:
        try:
            body = await request.json() if request.can_read_body else {}
        except json.JSONDecodeError:
            body = None
        got = Received(request.path, dict(request.headers), body if isinstance(body, dict) else {})
        self.received.append(got)
        status, answer = self._answer(request, got, body)
        got.status = status
        return web.json_response(answer, status=status)

    def _answer(self, request: web.Request, got: Received, body: Any) -> tuple[int, dict]:
        if self.expire_tokens:
            self.expire_tokens = False
            self.tokens.clear()
        if request.headers.get("Authorization", "").removeprefix("Bearer ") not in self.tokens:
            return self._error(401, "AUTHENTICATION_FAILURE")
        key = request.headers.get("PayPal-Request-Id")
        if not key:
            return self._error(400, "INVALID_REQUEST", "the stand-in expects a PayPal-Request-Id on every POST")
        if not isinstance(body, dict):
            return self._error(400, "INVALID_REQUEST", "MALFORMED_REQUEST_JSON")
        if self.fail_next:
            self.fail_next -= 1
            return self._error(503, "SERVICE_UNAVAILABLE")  # nothing saved: retryable
        if key in self._answers:
            path, first, status, answer = self._answers[key]
            if (path, first) != (request.path, body):
                return self._error(422, "UNPROCESSABLE_ENTITY", "DUPLICATE_REQUEST_ID")
            got.replayed = True
            return status, answer
        status, answer = self._act(request, body)
        self._answers[key] = (request.path, body, status, json.loads(json.dumps(answer)))
        return status, answer

    @staticmethod
    def _money_ok(money: Any, currency_key: str = "currency_code") -> bool:
        if not isinstance(money, dict):
            return False
        currency, value = money.get(currency_key, ""), money.get("value", "")
        decimals = DECIMALS.get(currency, 2)
        pattern = r"\d+" if decimals == 0 else rf"\d+\.\d{{{decimals}}}"
        return bool(re.fullmatch(r"[A-Z]{3}", currency)) and bool(re.fullmatch(pattern, value)) and float(value) > 0

    def _act(self, request: web.Request, body: dict) -> tuple[int, dict]:
        path = request.path
        if path == "/v2/checkout/orders":
            units = body.get("purchase_units") or [{}]
            vault = ((body.get("payment_source") or {}).get("paypal") or {}).get("vault_id")
            if body.get("intent") != "CAPTURE" or not vault or not self._money_ok(units[0].get("amount")):
                return self._error(400, "INVALID_REQUEST", "INVALID_PARAMETER_VALUE")
            order_id = self._id("ORD")
            order = {"id": order_id, "intent": "CAPTURE", "status": "APPROVED", "vault_id": vault,
                     "purchase_units": [{**units[0], "payments": {"captures": []}}],
                     "links": [{"rel": "self", "href": f"{self.url}/v2/checkout/orders/{order_id}", "method": "GET"}]}
            if vault in PAYER_ACTION_VAULTS:
                order["status"] = "PAYER_ACTION_REQUIRED"
                order["links"].append({"rel": "payer-action", "method": "GET",
                                       "href": f"https://www.paypal.test/checkoutnow?token={order_id}"})
            self.created[order_id] = order
            return 200, order
        if path.endswith("/capture"):
            order = self.created.get(request.match_info["id"])
            if order is None:
                return self._error(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID")
            if order["status"] != "APPROVED":
                return self._error(422, "UNPROCESSABLE_ENTITY", "ORDER_NOT_APPROVED")
            if order["vault_id"] in DECLINED_VAULTS:
                return self._error(422, "UNPROCESSABLE_ENTITY", DECLINED_VAULTS[order["vault_id"]])
            capture = {"id": self._id("CAP"), "status": "COMPLETED", "amount": order["purchase_units"][0]["amount"],
                       "refunded": 0}
            self.created[capture["id"]] = capture
            order["status"] = "COMPLETED"
            order["purchase_units"][0]["payments"]["captures"] = [
                {k: v for k, v in capture.items() if k != "refunded"}]
            return 201, order
        if path.endswith("/refund"):
            capture = self.created.get(request.match_info["id"])
            if capture is None:
                return self._error(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID")
            money = body.get("amount")
            if not self._money_ok(money) or money["currency_code"] != capture["amount"]["currency_code"]:
                return self._error(422, "UNPROCESSABLE_ENTITY", "CURRENCY_MISMATCH")
            decimals = DECIMALS.get(money["currency_code"], 2)
            cents = round(float(money["value"]) * 10 ** decimals)
            if capture["refunded"] + cents > round(float(capture["amount"]["value"]) * 10 ** decimals):
                return self._error(422, "UNPROCESSABLE_ENTITY", "REFUND_AMOUNT_EXCEEDED")
            capture["refunded"] += cents
            refund = {"id": self._id("REF"), "status": "COMPLETED", "amount": money, "capture": capture["id"]}
            self.created[refund["id"]] = refund
            return 201, refund
        # /v1/payments/payouts
        header, items = body.get("sender_batch_header") or {}, body.get("items") or []
        if not header.get("sender_batch_id") or len(items) != 1 or \
                not self._money_ok(items[0].get("amount"), "currency") or items[0].get("recipient_type") != "PAYPAL_ID":
            return self._error(400, "VALIDATION_ERROR", "INVALID_PARAMETER_VALUE")
        if items[0].get("receiver") in UNKNOWN_RECEIVERS:
            return self._error(422, "UNPROCESSABLE_ENTITY", "RECEIVER_UNREGISTERED")
        batch = {"batch_header": {"payout_batch_id": self._id("BATCH"), "batch_status": "PENDING",
                                  "sender_batch_header": header}, "item": items[0]}
        self.created[batch["batch_header"]["payout_batch_id"]] = batch
        return 201, {"batch_header": batch["batch_header"]}
