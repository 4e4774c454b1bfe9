"""PaymentService: payments of bookings (read by their parties), the ledger report (admins), and
providers' webhooks, verified against the raw body and applied once per event id."""
from __future__ import annotations

from collections.abc import Mapping
import json
import logging


from mesh import errors, principal
from mesh.money import from_minor
from mesh.resources import parse_name
from mesh.sql import Database, Row
from petplatform.payment.v1 import payment_pb2 as p
from petplatform.payment.v1 import payment_pb2_grpc
from services.payment import store, webhooks
from services.payment.flows import Flows, payment_message
from services.payment.providers import Outcome
from services.payment.stripe_provider import action_url

log = logging.getLogger(__name__)
PAYMENT_TYPE = "payment.petplatform.dev/Payment"
MAX_WEBHOOK_BYTES = 256 * 1024
P = p.Payment

# Stripe event types -> (the kind of payment they are about, the outcome they report).
CHARGE_EVENTS = {"payment_intent.succeeded": "succeeded", "payment_intent.payment_failed": "failed",
                 "payment_intent.processing": "processing", "payment_intent.requires_action": "requires_action"}
# Payouts of a connected account to its bank (Stripe Connect, manual payouts): status -> BankPayout.
PAYOUT_EVENTS = {"payout.created", "payout.updated", "payout.paid", "payout.failed", "payout.canceled"}
PAYOUT_STATES = {"pending": P.BANK_PAYOUT_IN_TRANSIT, "in_transit": P.BANK_PAYOUT_IN_TRANSIT,
                 "paid": P.BANK_PAYOUT_PAID, "failed": P.BANK_PAYOUT_FAILED, "canceled": P.BANK_PAYOUT_CANCELLED}
REFUND_EVENTS = {"refund.created", "refund.updated"}
REFUND_STATES = {"succeeded": "succeeded", "failed": "failed", "canceled": "failed", "pending": "processing"}


def parse_event(body: bytes) -> tuple[str, str, dict, str]:
    """(event id, type, data.object, connected account or "") of a Stripe-shaped event;
    INVALID_ARGUMENT otherwise."""
    try:
        event = json.loads(body)
        event_id, kind, obj = event["id"], event["type"], event["data"]["object"]
        account = event.get("account") or ""
        if not (isinstance(event_id, str) and isinstance(kind, str) and isinstance(obj, dict)
                and isinstance(account, str)) or not 0 < len(event_id) <= 128 or len(kind) > 64:
            raise TypeError
    except (ValueError, KeyError, TypeError, AttributeError):
        raise errors.invalid_argument(("body", "not a provider event (JSON with id, type and data.object)")) from None
    return event_id, kind, obj, account


def outcome_of(kind: str, obj: dict) -> tuple[int, Outcome] | None:
    """(payment kind, outcome) an event reports, or None for events we do not act on."""
    reference = obj.get("id") if isinstance(obj.get("id"), str) else ""
    if kind in CHARGE_EVENTS:
        error = obj.get("last_payment_error") or {}
        secret = obj.get("client_secret")
        return P.KIND_CHARGE, Outcome(CHARGE_EVENTS[kind], reference,  # type: ignore[arg-type]
                                      str(error.get("code", "")) if isinstance(error, dict) else "",
                                      client_secret=secret if isinstance(secret, str) else "",
                                      action_url=action_url(obj.get("next_action")))
    if kind in REFUND_EVENTS and obj.get("status") in REFUND_STATES:
        return P.KIND_REFUND, Outcome(REFUND_STATES[obj["status"]], reference)  # type: ignore[arg-type]
    return None


class PaymentServicer(payment_pb2_grpc.PaymentServiceServicer):
    def __init__(self, db: Database, *, flows: Flows, secrets: Mapping[str, bytes]):
        """secrets: webhook signing secret per provider name that takes webhooks."""
        self.db = db
        self.flows = flows
        self.secrets = dict(secrets)

    @staticmethod
    def _visible(r: Row) -> bool:
        caller = principal.require()
        return caller.is_admin or caller.user_id in (r.owner_id, r.business_owner_id)

    @staticmethod
    def _payer(r: Row) -> bool:
        return principal.require().user_id == r.owner_id

    async def GetPayment(self, request: p.GetPaymentRequest, context) -> p.GetPaymentResponse:
        (payment_id,) = parse_name(request.name, "payments/{}")
        async with self.db.read() as s:
            row = await store.find(s, payment_id)
        if row is None or not self._visible(row):
            raise errors.not_found(PAYMENT_TYPE, request.name)
        return p.GetPaymentResponse(payment=payment_message(row, payer=self._payer(row)))

    async def ListPayments(self, request: p.ListPaymentsRequest, context) -> p.ListPaymentsResponse:
        (booking_id,) = parse_name(request.booking, "bookings/{}", "booking")
        async with self.db.read() as s:
            rows = await store.of_booking(s, booking_id)
        return p.ListPaymentsResponse(payments=[payment_message(r, payer=self._payer(r))
                                                for r in rows if self._visible(r)])

    async def GetLedgerReport(self, request: p.GetLedgerReportRequest, context) -> p.GetLedgerReportResponse:
        async with self.db.read() as s:
            rows = await store.balances(s)
        by_currency: dict[str, list[Row]] = {}
        for r in rows:
            by_currency.setdefault(r.currency, []).append(r)
        return p.GetLedgerReportResponse(currencies=[p.CurrencyLedger(
            currency_code=c, accounts=[p.AccountBalance(account=r.account, balance=from_minor(int(r.balance), c))
                                       for r in rs],
            total=from_minor(sum(int(r.balance) for r in rs), c), entries=sum(r.entries for r in rs))
            for c, rs in by_currency.items()])

    async def ReceiveWebhook(self, request: p.ReceiveWebhookRequest, context) -> p.ReceiveWebhookResponse:
        provider = request.provider
        if provider not in ("stripe", "paypal", "local"):
            raise errors.not_found("webhook", f"webhooks/{provider}")
        secret = self.secrets.get(provider)
        if secret is None:
            raise errors.failed_precondition(f"{provider} webhooks are not configured here", "PROVIDER_NOT_CONFIGURED",
                                             provider=provider)
        body = request.body.data
        if len(body) > MAX_WEBHOOK_BYTES:
            raise errors.invalid_argument(("body", f"at most {MAX_WEBHOOK_BYTES} bytes"))
        header = request.signature or next(
            (v for k, v in context.invocation_metadata() or () if k == "stripe-signature" and isinstance(v, str)), "")
        try:
            webhooks.verify(body, header, secret, now=self.flows.now().timestamp())
        except webhooks.BadSignature as e:
            log.warning("%s webhook refused: %s", provider, e)
            raise errors.permission_denied(f"webhook signature refused: {e}", "INVALID_SIGNATURE") from None
        return p.ReceiveWebhookResponse(duplicate=not await self.receive(provider, body))

    async def receive(self, provider: str, body: bytes) -> bool:
        """Applies a verified event once; False when it was received before."""
        event_id, kind, obj, account = parse_event(body)
        async with self.db.transaction() as s:
            if not await store.record_webhook(s, provider=provider, event_id=event_id, event_type=kind,
                                              now=self.flows.now()):
                return False
            if kind in PAYOUT_EVENTS:
                await self._bank_payout(s, provider, event_id, kind, obj, account)
                return True
            acted = outcome_of(kind, obj)
            if acted is None:
                return True
            payment_kind, outcome = acted
            metadata = obj.get("metadata")
            key = metadata.get("idempotency_key") if isinstance(metadata, dict) else None
            row = await store.find_by_key(s, key, lock=True) if isinstance(key, str) else None
            if row is None and outcome.reference:
                row = await store.find_by_reference(s, outcome.reference, lock=True)
            if row is None or row.kind != payment_kind:
                log.info("%s webhook %s (%s) names no payment of ours; recorded, ignored", provider, event_id, kind)
                return True
            await self.flows.apply(s, row, outcome)
        return True

    async def _bank_payout(self, s, provider: str, event_id: str, kind: str, obj: dict, account: str) -> None:
        """A connected account's payout to its bank moved: found by its id, or by the payment our
        payout call named in its metadata (the webhook may come before our call's answer is
        stored), and only when the event comes from that payment's own connected account."""
        reference = obj.get("id") if isinstance(obj.get("id"), str) else ""
        state = PAYOUT_STATES.get(obj.get("status"))  # type: ignore[arg-type]
        if not reference or state is None:
            return
        row = await store.find_by_bank_payout(s, reference, lock=True)
        metadata = obj.get("metadata")
        named = metadata.get("payment") if isinstance(metadata, dict) else None
        if row is None and isinstance(named, str) and named.startswith("payments/"):
            row = await store.find(s, named.removeprefix("payments/"), lock=True)
        if row is None or row.payout_account != account:
            log.info("%s webhook %s (%s) names no payout of ours from %r; recorded, ignored", provider, event_id,
                     kind, account)
            return
        failure = obj.get("failure_code")
        await self.flows.bank_payout(s, row, reference=reference, state=state,
                                     failure=failure if isinstance(failure, str) else "")
