"""The Stripe adapter of the provider port, on the official SDK's async client (aiohttp).

Charges are PaymentIntents created and confirmed with the owner's payment method in one call;
refunds refund the PaymentIntent; payouts are Connect transfers to the business's connected
account, followed (when `manual_payouts`) by a payout on that account. Every request carries the
flow's idempotency key, so a retry after a lost answer returns Stripe's first answer. The SDK's
own retries are off: the payment worker retries, with the same key, on its own schedule."""
from __future__ import annotations

import logging
from typing import Any

import stripe

from services.payment.providers import Outcome, ProviderDown, ProviderRefused, State

log = logging.getLogger(__name__)

# A PaymentIntent's status -> our outcome. requires_action (3-D Secure) cannot be completed by a
# server-side confirm: the payer's app completes it with the intent's client secret, and a webhook
# says how it ended.
INTENT_STATES: dict[str, State] = {
    "succeeded": "succeeded", "processing": "processing", "requires_action": "requires_action",
    "requires_capture": "processing", "requires_confirmation": "processing",
    "requires_payment_method": "failed", "canceled": "failed"}
REFUND_STATES: dict[str, State] = {"succeeded": "succeeded", "pending": "processing",
                                   "requires_action": "processing", "failed": "failed", "canceled": "failed"}


def action_url(next_action: object) -> str:
    """The URL of a redirect-type next action (a PaymentIntent's `next_action`, as a dict); none for
    `use_stripe_sdk`, which Stripe.js handles with the client secret."""
    if not isinstance(next_action, dict) or next_action.get("type") != "redirect_to_url":
        return ""
    redirect = next_action.get("redirect_to_url")
    url = redirect.get("url") if isinstance(redirect, dict) else None
    return url if isinstance(url, str) else ""


class StripeProvider:
    name = "stripe"

    def __init__(self, *, api_key: str, api_base: str | None = None, manual_payouts: bool = False,
                 timeout: float = 30):
        bases: Any = {"api": api_base} if api_base else None
        self.http = stripe.AIOHTTPClient(timeout=timeout)
        self.client = stripe.StripeClient(api_key, base_addresses=bases, http_client=self.http,
                                          max_network_retries=0)
        self.manual_payouts = manual_payouts

    async def close(self) -> None:
        await self.http.close_async()

    async def _call(self, request):
        """Stripe's errors mapped onto the port: a decline is an outcome (returned by the caller),
        an outage is ProviderDown (retry with the same key), a refused request is ProviderRefused."""
        try:
            return await request
        except stripe.CardError:
            raise
        except (stripe.APIConnectionError, stripe.RateLimitError) as e:
            raise ProviderDown(f"stripe: {type(e).__name__}: {e.user_message or e}") from e
        except stripe.StripeError as e:
            if e.http_status is None or e.http_status >= 500 or e.http_status == 409:
                # 5xx, or 409 (a concurrent request with the same key still running): try again.
                raise ProviderDown(f"stripe: {e.http_status}: {e.user_message or e}") from e
            raise ProviderRefused(f"stripe: {e.http_status} {e.code or ''}: {e.user_message or e}") from e

    async def charge(self, *, key: str, amount: int, currency: str, payment_method: str,
                     metadata: dict[str, str]) -> Outcome:
        params: Any = {
            "amount": amount, "currency": currency.lower(), "payment_method": payment_method, "confirm": True,
            # A server-side confirm: no redirect-based methods, which would need the owner's browser.
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            "metadata": {**metadata, "idempotency_key": key}}
        try:
            intent = await self._call(self.client.v1.payment_intents.create_async(params, {"idempotency_key": key}))
        except stripe.CardError as e:
            # A decline: Stripe answers 402 with the (failed) PaymentIntent in the error.
            err = e.error
            intent_id = getattr(getattr(err, "payment_intent", None), "id", "") if err else ""
            code = (err.decline_code or err.code) if err else None
            return Outcome("failed", intent_id or "", code or e.code or "card_declined")
        state = INTENT_STATES.get(intent.status, "processing")
        failure = ""
        if state == "failed":
            last = intent.last_payment_error
            failure = (last.decline_code or last.code or "") if last else intent.status
        if state == "requires_action":
            return Outcome(state, intent.id, client_secret=intent.client_secret or "",
                           action_url=action_url(intent.to_dict().get("next_action")))
        return Outcome(state, intent.id, failure or "")

    async def refund(self, *, key: str, charge: str, amount: int, currency: str,
                     metadata: dict[str, str]) -> Outcome:
        # Stripe refunds in the PaymentIntent's own currency: `currency` is not sent.
        params: Any = {"payment_intent": charge, "amount": amount, "metadata": {**metadata, "idempotency_key": key}}
        refund = await self._call(self.client.v1.refunds.create_async(params, {"idempotency_key": key}))
        state = REFUND_STATES.get(refund.status or "", "processing")
        return Outcome(state, refund.id, (refund.failure_reason or "") if state == "failed" else "")

    async def payout(self, *, key: str, account: str, amount: int, currency: str,
                     metadata: dict[str, str]) -> Outcome:
        params: Any = {"amount": amount, "currency": currency.lower(), "destination": account,
                       "transfer_group": metadata.get("booking", ""), "metadata": {**metadata, "idempotency_key": key}}
        try:
            transfer = await self._call(self.client.v1.transfers.create_async(params, {"idempotency_key": key}))
        except ProviderRefused as e:
            # No such or no usable connected account: the business must fix its payout account.
            return Outcome("failed", "", str(e)[:200])
        if not self.manual_payouts:
            return Outcome("succeeded", transfer.id)  # Stripe pays the account out on its own schedule
        # The transfer is the movement our ledger records (platform cash -> the business); the
        # payout moves the account's balance to its bank. A refused payout leaves the money in the
        # account's Stripe balance, where Stripe's schedule or the business can pay it out.
        payout_key = f"{key}:payout"
        params = {"amount": amount, "currency": currency.lower(),
                  "metadata": {**metadata, "idempotency_key": payout_key, "transfer": transfer.id}}
        try:
            payout = await self._call(self.client.v1.payouts.create_async(
                params, {"idempotency_key": payout_key, "stripe_account": account}))
        except ProviderRefused:
            log.exception("stripe: transfer %s to %s done, its payout refused", transfer.id, account)
            return Outcome("succeeded", transfer.id)
        return Outcome("succeeded", transfer.id, bank_payout=payout.id)

    async def cancel_charge(self, *, key: str, charge: str, metadata: dict[str, str]) -> Outcome:
        try:
            intent = await self._call(self.client.v1.payment_intents.cancel_async(
                charge, {"cancellation_reason": "abandoned"}, {"idempotency_key": key}))
        except ProviderRefused:
            # Not cancellable any more (the payer finished, or it failed): how it ended says what to do.
            intent = await self._call(self.client.v1.payment_intents.retrieve_async(charge))
        state = INTENT_STATES.get(intent.status, "processing")
        if intent.status == "canceled":
            return Outcome("failed", intent.id, "payer_action_expired")
        return Outcome(state, intent.id, intent.status if state == "failed" else "")

    async def reclaim_payout(self, *, key: str, payout: str, account: str, amount: int, currency: str,
                             metadata: dict[str, str]) -> Outcome:
        # The bank returned the account's payout to its Stripe balance: the transfer is reversed so
        # the platform holds the money again (and pays it once the account is fixed).
        params: Any = {"amount": amount, "metadata": {**metadata, "idempotency_key": key}}
        reversal = await self._call(self.client.v1.transfers.reversals.create_async(
            payout, params, {"idempotency_key": key}))
        return Outcome("succeeded", reversal.id)
