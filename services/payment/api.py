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
from mesh import webhook_signature as webhooks
from services.payment import paypal_webhooks, store
from services.payment.flows import Flows, payment_message
from services.payment.paypal_provider import PayPalProvider
from services.payment.providers import Outcome, ProviderDown, ProviderRefused
from services.payment.reports import ApprovalReport, BankReport, Event, PaymentReport, text
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


def stripe_event(body: bytes) -> Event:
    """The event of a Stripe-shaped webhook body (Stripe's, the local provider's); INVALID_ARGUMENT otherwise."""
    try:
        event = json.loads(body)
        event_id, kind, obj = event["id"], event["type"], event["data"]["object"]
        account = event.get("account") or ""
        if not (isinstance(event_id, str) and isinstance(kind, str) and isinstance(obj, dict)
                and isinstance(account, str)) or not 0 < len(event_id) <= 128 or len(kind) > 64:
            raise TypeError
    except (ValueError, KeyError, TypeError, AttributeError):
        raise errors.invalid_argument(("body", "not a provider event (JSON with id, type and data.object)")) from None
    return Event(event_id, kind, stripe_report(kind, obj, account))


def stripe_report(kind: str, obj: dict, account: str) -> PaymentReport | ApprovalReport | BankReport | None:
    reference = text(obj.get("id"))
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    key = text(metadata.get("idempotency_key"))
    if kind in CHARGE_EVENTS:
        error = obj.get("last_payment_error") or {}
        return PaymentReport(P.KIND_CHARGE, Outcome(
            CHARGE_EVENTS[kind], reference,  # type: ignore[arg-type]
            str(error.get("code", "")) if isinstance(error, dict) else "",
            client_secret=text(obj.get("client_secret")), action_url=action_url(obj.get("next_action"))),
            key, (reference,) if reference else ())
    if kind in REFUND_EVENTS and obj.get("status") in REFUND_STATES:
        return PaymentReport(P.KIND_REFUND, Outcome(REFUND_STATES[obj["status"]], reference),  # type: ignore[arg-type]
                             key, (reference,) if reference else ())
    if kind in PAYOUT_EVENTS:
        state = PAYOUT_STATES.get(obj.get("status"))  # type: ignore[arg-type]
        if not reference or state is None:
            return None
        return BankReport(reference, state, text(obj.get("failure_code")), text(metadata.get("payment")), account)
    return None


class PaymentServicer(payment_pb2_grpc.PaymentServiceServicer):
    def __init__(self, db: Database, *, flows: Flows, secrets: Mapping[str, tuple[bytes, ...]],
                 paypal: tuple[PayPalProvider, str] | None = None):
        """secrets: webhook signing secrets per provider name that takes webhooks signed Stripe's way;
        paypal: the adapter and webhook id that verify PayPal's webhooks, when PayPal moves the money."""
        self.db = db
        self.flows = flows
        self.secrets = dict(secrets)
        self.paypal = paypal

    @staticmethod
    def _visible(r: Row) -> bool:
        caller = principal.require()
        return caller.is_admin or caller.user_id in (r.owner_id, r.business_owner_id)

    @staticmethod
    def _payee(r: Row) -> bool:
        caller = principal.require()
        return caller.is_admin or caller.user_id == r.business_owner_id

    @staticmethod
    def _payer(r: Row) -> bool:
        return principal.require().user_id == r.owner_id

    async def GetPayment(self, request: p.GetPaymentRequest, context) -> p.GetPaymentResponse:
        (payment_id,) = parse_name(request.name, "payments/{}")
        async with self.db.read() as s:
            row = await store.find(s, payment_id)
        if row is None or not self._visible(row):
            raise errors.not_found(PAYMENT_TYPE, request.name)
        return p.GetPaymentResponse(payment=payment_message(row, payer=self._payer(row), payee=self._payee(row)))

    async def ListPayments(self, request: p.ListPaymentsRequest, context) -> p.ListPaymentsResponse:
        (booking_id,) = parse_name(request.booking, "bookings/{}", "booking")
        async with self.db.read() as s:
            rows = await store.of_booking(s, booking_id)
        return p.ListPaymentsResponse(payments=[payment_message(r, payer=self._payer(r), payee=self._payee(r))
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
        if (provider == "paypal" and self.paypal is None) or (provider != "paypal" and provider not in self.secrets):
            raise errors.failed_precondition(f"{provider} webhooks are not configured here", "PROVIDER_NOT_CONFIGURED",
                                             provider=provider)
        body = request.body.data
        if len(body) > MAX_WEBHOOK_BYTES:
            raise errors.invalid_argument(("body", f"at most {MAX_WEBHOOK_BYTES} bytes"))
        if provider == "paypal":
            event = paypal_webhooks.read(body)  # malformed: refused before asking PayPal
            await self._verify_paypal(body, request.headers)
        else:
            header = request.signature or next((v for k, v in context.invocation_metadata() or ()
                                                if k == "stripe-signature" and isinstance(v, str)), "")
            try:
                webhooks.verify(body, header, *self.secrets[provider], now=self.flows.now().timestamp())
            except webhooks.BadSignature as e:
                log.warning("%s webhook refused: %s", provider, e)
                raise errors.permission_denied(f"webhook signature refused: {e}", "INVALID_SIGNATURE") from None
            event = stripe_event(body)
        return p.ReceiveWebhookResponse(duplicate=not await self.apply(provider, event))

    async def _verify_paypal(self, body: bytes, headers: Mapping[str, str]) -> None:
        assert self.paypal is not None
        adapter, webhook_id = self.paypal
        try:
            verified = await adapter.verify_webhook(webhook_id=webhook_id, headers=headers, body=body)
        except ProviderDown as e:
            log.warning("paypal webhook not verified, PayPal unavailable: %s", e)
            raise errors.unavailable("PayPal cannot verify the webhook now", "PROVIDER_UNAVAILABLE") from None
        except ProviderRefused as e:
            # Our credentials refused: ours to fix; PayPal keeps sending the webhook meanwhile.
            log.error("paypal webhook not verified, our request refused: %s", e)
            raise errors.unavailable("PayPal cannot verify the webhook now", "PROVIDER_UNAVAILABLE") from None
        if not verified:
            log.warning("paypal webhook refused: PayPal did not verify it")
            raise errors.permission_denied("webhook signature refused", "INVALID_SIGNATURE")

    async def receive(self, provider: str, body: bytes) -> bool:
        """Applies a verified Stripe-shaped event once; False when it was received before."""
        return await self.apply(provider, stripe_event(body))

    async def apply(self, provider: str, event: Event) -> bool:
        """Applies a verified event once; False when it was received before. A report about a payment
        another provider moved, or none of ours, is recorded and ignored."""
        async with self.db.transaction() as s:
            if not await store.record_webhook(s, provider=provider, event_id=event.id, event_type=event.type,
                                              now=self.flows.now()):
                return False
            report = event.report
            if isinstance(report, BankReport):
                await self._bank_payout(s, provider, event, report)
            elif report is not None:
                row = await store.find_by_key(s, report.key, lock=True) if report.key else None
                for reference in report.references:
                    row = row or await store.find_by_reference(s, reference, lock=True)
                kind = report.kind if isinstance(report, PaymentReport) else P.KIND_CHARGE
                if row is None or row.kind != kind or row.provider != provider:
                    log.info("%s webhook %s (%s) names no payment of ours; recorded, ignored", provider, event.id,
                             event.type)
                    return True
                if isinstance(report, PaymentReport):
                    await self.flows.apply(s, row, report.outcome)
                else:
                    await self.flows.resume(s, row)
        return True

    async def _bank_payout(self, s, provider: str, event: Event, report: BankReport) -> None:
        """A payout's bank transfer moved: found by its id, or by the payment our payout call named
        (the webhook may come before our call's answer is stored), and only when the event is about
        that payment's own payout account."""
        row = await store.find_by_bank_payout(s, report.reference, lock=True)
        if row is None and report.payment.startswith("payments/"):
            row = await store.find(s, report.payment.removeprefix("payments/"), lock=True)
        if row is None or row.payout_account != report.account or row.provider != provider:
            log.info("%s webhook %s (%s) names no payout of ours to %r; recorded, ignored", provider, event.id,
                     event.type, report.account)
            return
        await self.flows.bank_payout(s, row, reference=report.reference, state=report.state, failure=report.failure)
