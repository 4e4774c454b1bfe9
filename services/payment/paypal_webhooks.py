"""PayPal's webhook events read into reports (pure functions). The events acted on:
  - CHECKOUT.ORDER.APPROVED: the payer approved an order that waited on them; the charge goes back
    to the worker, whose retry captures it (found by the unit's `custom_id`, else the order id);
  - PAYMENT.CAPTURE.COMPLETED / PENDING / DENIED / DECLINED: a charge's capture (one that waited on
    the payer, or was pending) settled; found by the `custom_id` our order gave it (the charge's
    idempotency key), else by its order or capture id;
  - PAYMENT.CAPTURE.REFUNDED: a refund of a capture (its `custom_id` is the refund's key);
  - PAYMENT.PAYOUTS-ITEM.*: where a payout item stands; found by its `sender_item_id` (our
    payments/{id}) or its batch, and only for the receiver the payout was sent to."""
from __future__ import annotations

import json

from mesh import errors
from petplatform.payment.v1 import payment_pb2 as p
from services.payment.paypal_provider import REFUND_STATES
from services.payment.providers import Outcome, State
from services.payment.reports import ApprovalReport, BankReport, Event, PaymentReport, text

P = p.Payment
CAPTURE_EVENTS: dict[str, State] = {
    "PAYMENT.CAPTURE.COMPLETED": "succeeded", "PAYMENT.CAPTURE.PENDING": "processing",
    "PAYMENT.CAPTURE.DENIED": "failed", "PAYMENT.CAPTURE.DECLINED": "failed"}
PAYOUT_ITEM_EVENTS = {
    "PAYMENT.PAYOUTS-ITEM.SUCCEEDED": P.BANK_PAYOUT_PAID, "PAYMENT.PAYOUTS-ITEM.UNCLAIMED": P.BANK_PAYOUT_UNCLAIMED,
    "PAYMENT.PAYOUTS-ITEM.HELD": P.BANK_PAYOUT_IN_TRANSIT, "PAYMENT.PAYOUTS-ITEM.FAILED": P.BANK_PAYOUT_FAILED,
    "PAYMENT.PAYOUTS-ITEM.RETURNED": P.BANK_PAYOUT_FAILED, "PAYMENT.PAYOUTS-ITEM.BLOCKED": P.BANK_PAYOUT_FAILED,
    "PAYMENT.PAYOUTS-ITEM.DENIED": P.BANK_PAYOUT_FAILED, "PAYMENT.PAYOUTS-ITEM.CANCELED": P.BANK_PAYOUT_CANCELLED}


def read(body: bytes) -> Event:
    """The event of a PayPal webhook body (`id`, `event_type`, `resource`); INVALID_ARGUMENT otherwise."""
    try:
        event = json.loads(body)
        event_id, kind, resource = event["id"], event["event_type"], event["resource"]
        if not (isinstance(event_id, str) and isinstance(kind, str) and isinstance(resource, dict)) \
                or not 0 < len(event_id) <= 128 or len(kind) > 64:
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise errors.invalid_argument(("body", "not a PayPal event (JSON with id, event_type and resource)")) from None
    return Event(event_id, kind, report_of(kind, resource))


def report_of(kind: str, resource: dict) -> PaymentReport | ApprovalReport | BankReport | None:
    resource_id = text(resource.get("id"))
    if kind == "CHECKOUT.ORDER.APPROVED":
        units = resource.get("purchase_units")
        unit = units[0] if isinstance(units, list) and units and isinstance(units[0], dict) else {}
        return ApprovalReport(text(unit.get("custom_id")), (resource_id,) if resource_id else ())
    if kind in CAPTURE_EVENTS:
        state = CAPTURE_EVENTS[kind]
        details = resource.get("status_details")
        reason = text(details.get("reason")) if isinstance(details, dict) else ""
        related = (resource.get("supplementary_data") or {}).get("related_ids") or {}
        order = text(related.get("order_id")) if isinstance(related, dict) else ""
        # The capture id becomes the charge's reference: refunds refer to it.
        outcome = Outcome(state, resource_id, (reason or text(resource.get("status")) or "DENIED")[:200]
                          if state == "failed" else "")
        return PaymentReport(P.KIND_CHARGE, outcome, text(resource.get("custom_id")),
                             tuple(r for r in (order, resource_id) if r))
    if kind == "PAYMENT.CAPTURE.REFUNDED":
        refunded = REFUND_STATES.get(text(resource.get("status")))
        if refunded is None:
            return None
        return PaymentReport(P.KIND_REFUND, Outcome(refunded, resource_id, text(resource.get("status"))
                                                    if refunded == "failed" else ""),
                             text(resource.get("custom_id")), (resource_id,) if resource_id else ())
    if kind in PAYOUT_ITEM_EVENTS:
        item = resource.get("payout_item")
        item = item if isinstance(item, dict) else {}
        reference = text(resource.get("payout_item_id"))
        if not reference:
            return None
        failure = resource.get("errors")
        reason = text(failure.get("name")) if isinstance(failure, dict) else ""
        return BankReport(reference, PAYOUT_ITEM_EVENTS[kind],
                          reason or text(resource.get("transaction_status")),
                          text(item.get("sender_item_id")), text(item.get("receiver")))
    return None
