"""What a provider's webhook reports, whichever provider sent it: a payment's outcome, or where a
payout's money stands past the provider (its bank payout). Each provider's reader makes these;
the servicer applies them the same way."""
from __future__ import annotations

import dataclasses

from services.payment.providers import Outcome


@dataclasses.dataclass(frozen=True)
class PaymentReport:
    kind: int  # the Payment.Kind it is about
    outcome: Outcome
    key: str = ""  # our idempotency key, when the provider echoes it
    references: tuple[str, ...] = ()  # provider ids the payment may be stored under


@dataclasses.dataclass(frozen=True)
class ApprovalReport:
    """The payer did what a charge waited on; ours to finish it (PayPal: capture the approved order)."""
    key: str = ""
    references: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class BankReport:
    reference: str  # the provider's id of the bank payout (Stripe: po_...; PayPal: the payout item)
    state: int  # Payment.BankPayout
    failure: str = ""
    payment: str = ""  # payments/{id}, when our payout call named it
    account: str = ""  # whose payout it is (Stripe: the connected account; PayPal: the receiver)


@dataclasses.dataclass(frozen=True)
class Event:
    id: str
    type: str
    report: PaymentReport | ApprovalReport | BankReport | None  # None: an event we do not act on


def text(value: object) -> str:
    return value if isinstance(value, str) else ""
