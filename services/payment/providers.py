"""The payment provider port and the local provider.

Every call carries an idempotency key: the same key with the same request returns the first
outcome without moving money again (Stripe's rule, which the local provider follows). An outage
(no answer, a 5xx, a timeout) raises ProviderDown and the caller retries with the same key later."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import dataclasses
import itertools
import json
import logging
import secrets
import time
from typing import Literal, Protocol

from mesh import webhook_signature as webhooks

log = logging.getLogger(__name__)

State = Literal["succeeded", "processing", "failed", "requires_action"]


@dataclasses.dataclass(frozen=True)
class Outcome:
    state: State
    reference: str  # the provider's id of the movement
    failure: str = ""
    # "requires_action" (a charge the payer must authenticate, 3-D Secure): what their app needs.
    client_secret: str = ""
    action_url: str = ""
    # A payout the provider also sent on to the business's bank: its id there (e.g. po_...).
    bank_payout: str = ""


class ProviderDown(Exception):
    """No usable answer: the movement may or may not have happened; retry with the same key."""


class ProviderRefused(Exception):
    """The provider refused the request itself (not a decline): a bug or a misconfiguration."""


class Provider(Protocol):
    name: str

    async def charge(self, *, key: str, amount: int, currency: str, payment_method: str,
                     metadata: dict[str, str]) -> Outcome: ...

    async def refund(self, *, key: str, charge: str, amount: int, currency: str,
                     metadata: dict[str, str]) -> Outcome: ...

    async def payout(self, *, key: str, account: str, amount: int, currency: str,
                     metadata: dict[str, str]) -> Outcome: ...

    async def cancel_charge(self, *, key: str, charge: str, metadata: dict[str, str]) -> Outcome:
        """Cancels a charge still waiting on its payer: "failed" once cancelled, or how it ended if
        the payer finished first ("succeeded", ...)."""
        ...

    async def reclaim_payout(self, *, key: str, payout: str, account: str, amount: int, currency: str,
                             metadata: dict[str, str]) -> Outcome:
        """Brings a payout's money back to the platform after its bank transfer came back to the
        provider: "succeeded" when the platform holds it again."""
        ...


# Magic payment method tokens of the local provider, after Stripe's test cards.
DECLINED = {"pm_card_chargeDeclined": "card_declined", "pm_card_visa_chargeDeclinedInsufficientFunds":
            "insufficient_funds", "tok_chargeDeclined": "card_declined"}
ASYNC = {"pm_card_async"}  # answered "processing"; a webhook says succeeded later
# Stripe's test cards that need 3-D Secure: answered "requires_action" until authenticate().
AUTHENTICATE = {"pm_card_authenticationRequired", "pm_card_threeDSecure2Required"}
FAILING_ACCOUNTS = {"acct_invalid"}

Deliver = Callable[[bytes, str], Awaitable[None]]


class LocalProvider:
    """Behaves as Stripe does for our calls, with no network: declines by magic tokens, idempotency
    by key, and asynchronous webhooks (Stripe-shaped events, signed like Stripe's) handed to
    `deliver` after each answer. `down` makes the next calls fail as an outage would: before the
    provider acted, or after it (the answer lost on the way back)."""

    name = "local"

    def __init__(self, secret: bytes, deliver: Deliver | None = None, *, clock: Callable[[], float] = time.time,
                 bank_url: str = ""):
        """bank_url: where payers confirm a charge that needs 3-D Secure (the edge's page, gateway/dev_bank.py),
        given as each such charge's action_url; none: only authenticate() completes them."""
        self.secret = secret
        self.bank_url = bank_url.rstrip("/")
        self.clock = clock
        self.deliver = deliver
        self.done: dict[str, tuple[tuple, Outcome]] = {}  # idempotency key -> (request, outcome)
        self.moved: list[tuple[str, str, int]] = []  # (kind, reference, amount) each time money moved
        self.calls: list[tuple[str, str]] = []  # (kind, idempotency key) of every call answered
        self.down_before = 0
        self.down_after = 0
        self.authenticated: set[str] = set()  # charges whose payer acted (3-D Secure done)
        self.cancelled: set[str] = set()  # charges cancelled while waiting on the payer
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task] = set()

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{secrets.token_hex(8)}{next(self._ids)}"

    async def _once(self, kind: str, key: str, request: tuple, act: Callable[[], Outcome],
                    event: Callable[[Outcome], tuple[str, dict]] | None) -> Outcome:
        if self.down_before:
            self.down_before -= 1
            raise ProviderDown("local provider unavailable")
        self.calls.append((kind, key))
        if key in self.done:
            first, outcome = self.done[key]
            if first != request:
                raise ProviderRefused("idempotency key reused with different parameters")
        else:
            outcome = act()
            self.done[key] = (request, outcome)
            if outcome.state != "failed":
                self.moved.append((kind, outcome.reference, request[0]))
            if event:
                self._send(*event(outcome))
        if self.down_after:
            self.down_after -= 1
            raise ProviderDown("local provider answer lost")
        return outcome

    async def drain(self) -> None:
        """Waits until the webhooks sent so far are delivered (and applied)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _send(self, event_type: str, obj: dict, *, account: str = "") -> None:
        if self.deliver is None:
            return
        event = {"id": self._id("evt"), "object": "event", "type": event_type, "created": int(self.clock()),
                 "data": {"object": obj}}
        if account:
            event["account"] = account  # a connected account's event, as Stripe Connect sends it
        body = json.dumps(event).encode()
        header = webhooks.sign(body, self.secret, int(self.clock()))
        task = asyncio.create_task(self._deliver(body, header))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, body: bytes, header: str) -> None:
        try:
            assert self.deliver is not None
            await self.deliver(body, header)
        except Exception:
            log.exception("local provider: webhook delivery failed")

    async def settle(self, reference: str) -> None:
        """A `processing` charge succeeds now: its webhook goes out (as the bank's answer would)."""
        for request, outcome in self.done.values():
            if outcome.reference == reference:
                self._send("payment_intent.succeeded", {"id": reference, "object": "payment_intent",
                                                        "amount": request[0], "status": "succeeded",
                                                        "metadata": dict(request[-1])})

    async def authenticate(self, reference: str, *, succeed: bool = True) -> None:
        """The payer completes (or fails) a charge's 3-D Secure step: its webhook goes out, as
        Stripe's would after Stripe.js handled the action."""
        for request, outcome in self.done.values():
            if outcome.reference == reference and outcome.state == "requires_action" \
                    and reference not in self.cancelled | self.authenticated:
                self.authenticated.add(reference)
                obj = {"id": reference, "object": "payment_intent", "amount": request[0], "metadata": dict(request[-1])}
                if succeed:
                    self._send("payment_intent.succeeded", {**obj, "status": "succeeded"})
                else:
                    self._send("payment_intent.payment_failed", {
                        **obj, "status": "requires_payment_method",
                        "last_payment_error": {"code": "payment_intent_authentication_failure"}})

    async def charge(self, *, key: str, amount: int, currency: str, payment_method: str,
                     metadata: dict[str, str]) -> Outcome:
        def act() -> Outcome:
            ref = self._id("pi")
            if payment_method in DECLINED:
                return Outcome("failed", ref, DECLINED[payment_method])
            if payment_method in AUTHENTICATE:
                return Outcome("requires_action", ref, client_secret=f"{ref}_secret_{secrets.token_hex(12)}",
                               action_url=f"{self.bank_url}/{ref}" if self.bank_url else "")
            return Outcome("processing" if payment_method in ASYNC else "succeeded", ref)

        def event(o: Outcome) -> tuple[str, dict]:
            kind = {"succeeded": "payment_intent.succeeded", "failed": "payment_intent.payment_failed",
                    "processing": "payment_intent.processing",
                    "requires_action": "payment_intent.requires_action"}[o.state]
            return kind, {"id": o.reference, "object": "payment_intent", "amount": amount, "currency": currency.lower(),
                          "status": o.state, "metadata": {**metadata, "idempotency_key": key},
                          "client_secret": o.client_secret or None,
                          "next_action": {"type": "redirect_to_url", "redirect_to_url": {"url": o.action_url}}
                          if o.action_url else None,
                          "last_payment_error": {"code": o.failure} if o.failure else None}
        return await self._once("charge", key, (amount, currency, payment_method,
                                                tuple(sorted({**metadata, "idempotency_key": key}.items()))),
                                act, event)

    async def refund(self, *, key: str, charge: str, amount: int, currency: str,
                     metadata: dict[str, str]) -> Outcome:
        def event(o: Outcome) -> tuple[str, dict]:
            return "refund.updated", {"id": o.reference, "object": "refund", "amount": amount, "status": o.state,
                                      "payment_intent": charge, "metadata": {**metadata, "idempotency_key": key}}
        return await self._once("refund", key, (amount, charge, tuple(sorted(metadata.items()))),
                                lambda: Outcome("succeeded", self._id("re")), event)

    async def payout(self, *, key: str, account: str, amount: int, currency: str,
                     metadata: dict[str, str]) -> Outcome:
        def act() -> Outcome:
            ref = self._id("tr")
            return Outcome("failed", ref, "invalid_account") if account in FAILING_ACCOUNTS \
                else Outcome("succeeded", ref)
        return await self._once("payout", key, (amount, account, currency, tuple(sorted(metadata.items()))), act, None)

    async def cancel_charge(self, *, key: str, charge: str, metadata: dict[str, str]) -> Outcome:
        def act() -> Outcome:
            if charge in self.authenticated:
                return Outcome("succeeded", charge)  # the payer finished first
            self.cancelled.add(charge)
            return Outcome("failed", charge, "payer_action_expired")
        return await self._once("cancel", key, (0, charge), act, None)

    async def reclaim_payout(self, *, key: str, payout: str, account: str, amount: int, currency: str,
                             metadata: dict[str, str]) -> Outcome:
        # As a Stripe transfer reversal: the connected account's balance gives the money back.
        return await self._once("reclaim", key, (amount, payout, account, currency),
                                lambda: Outcome("succeeded", self._id("trr")), None)

    def return_payout(self, transfer: str, *, failure: str = "account_closed") -> None:
        """The bank returns a payout's transfer: `payout.failed` from the connected account, as
        Stripe Connect sends it (the account's bank payout named by the payment it paid)."""
        for request, outcome in self.done.values():
            if outcome.reference == transfer and outcome.state == "succeeded":
                amount, account, currency, metadata = request
                self._send("payout.failed", {"id": self._id("po"), "object": "payout", "amount": amount,
                                             "currency": currency.lower(), "status": "failed",
                                             "failure_code": failure, "metadata": dict(metadata)},
                           account=account)
                return
        raise KeyError(transfer)
