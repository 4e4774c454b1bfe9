"""Payment tables: the payments (each a charge, refund or payout of a booking, unique by its
idempotency key), the webhook events received (unique by provider and event id), and the
double-entry ledger: every posting is a set of entries summing to zero in one currency."""
from __future__ import annotations

from collections.abc import Sequence
import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.sql import Row, UtcDateTime, rows_changed

metadata = sa.MetaData()

payments = sa.Table(
    "payments", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("booking_id", sa.String(32), nullable=False),
    sa.Column("kind", sa.SmallInteger, nullable=False),
    sa.Column("state", sa.SmallInteger, nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("fee_minor", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("owner_id", sa.String(32), nullable=False),
    sa.Column("business_id", sa.String(32), nullable=False),
    sa.Column("business_owner_id", sa.String(32), nullable=False),
    sa.Column("payout_account", sa.String(128), nullable=False, server_default=""),
    sa.Column("payment_method", sa.String(128), nullable=False, server_default=""),
    sa.Column("provider", sa.String(16), nullable=False),
    sa.Column("provider_reference", sa.String(128), nullable=False, server_default=""),
    sa.Column("idempotency_key", sa.String(96), nullable=False, unique=True),
    sa.Column("failure_reason", sa.String(200), nullable=False, server_default=""),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_time", UtcDateTime, nullable=False),
    sa.Column("due_time", UtcDateTime, nullable=True),
    sa.Column("earned", sa.Boolean, nullable=False, server_default=sa.false()),  # a payout's escrow released
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("update_time", UtcDateTime, nullable=False),
    # A charge awaiting the payer's authentication (3-D Secure): what their app completes it with.
    sa.Column("client_secret", sa.String(255), nullable=False, server_default=""),
    sa.Column("action_url", sa.String(2048), nullable=False, server_default=""),
    # A payout's bank transfer (Payment.BankPayout) and the provider's id of it.
    sa.Column("bank_payout", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("bank_payout_reference", sa.String(128), nullable=False, server_default=""),
    # A payout whose money came back: 1 to reclaim from the provider (due at next_attempt_time), 2
    # paid again by a new payout whose retry_of names it (a returned one reversed in the ledger at
    # return_time first; a failed one is retried when the business changes its payout account).
    sa.Column("return_state", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("return_time", UtcDateTime, nullable=True),
    sa.Column("retry_of", sa.String(32), nullable=False, server_default=""),
    # A charge waiting on its payer (REQUIRES_ACTION): cancelled if still waiting at this time.
    sa.Column("action_deadline", UtcDateTime, nullable=True),
    # A charge's booking's start (a charge never waits on its payer past it).
    sa.Column("start_time", UtcDateTime, nullable=True),
    sa.Index("ix_payments_booking", "booking_id", "create_time"),
    sa.Index("ix_payments_work", "state", "next_attempt_time"),
    sa.Index("ix_payments_reference", "provider_reference"),
    sa.Index("ix_payments_bank_payout", "bank_payout_reference"),
    sa.Index("ix_payments_business", "business_id", "kind"),
    sa.Index("ix_payments_returns", "return_state", "next_attempt_time"),  # the sweep finds few among many
)

webhook_events = sa.Table(
    "webhook_events", metadata,
    sa.Column("provider", sa.String(16), primary_key=True),
    sa.Column("event_id", sa.String(128), primary_key=True),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("receive_time", UtcDateTime, nullable=False),
)

# Each business's payout account as the marketplace last announced it (business.payout_account_changed).
payout_accounts = sa.Table(
    "payout_accounts", metadata,
    sa.Column("business_id", sa.String(32), primary_key=True),
    sa.Column("account", sa.String(128), nullable=False),
    sa.Column("update_time", UtcDateTime, nullable=False),
)

ledger_entries = sa.Table(
    "ledger_entries", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("posting", sa.String(32), nullable=False),  # the entries of one posting sum to zero
    sa.Column("payment_id", sa.String(32), nullable=False),
    sa.Column("account", sa.String(64), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),  # debit positive, credit negative
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Index("ix_ledger_account", "currency", "account"),
    sa.Index("ix_ledger_payment", "payment_id"),
)


def _insert(s: AsyncSession, table: sa.Table) -> Any:
    return (postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert)(table)


async def add_payment(s: AsyncSession, **values: Any) -> bool:
    """False when a payment with its idempotency key exists (the event was seen in another form)."""
    return await rows_changed(s, _insert(s, payments).values(**values).on_conflict_do_nothing(
        index_elements=["idempotency_key"])) == 1


async def find(s: AsyncSession, payment_id: str, *, lock: bool = False) -> Row | None:
    q = sa.select(payments).where(payments.c.id == payment_id)
    return (await s.execute(q.with_for_update() if lock else q)).first()


async def get(s: AsyncSession, payment_id: str) -> Row:
    row = await find(s, payment_id)
    assert row is not None, payment_id
    return row


async def find_by_key(s: AsyncSession, key: str, *, lock: bool = False) -> Row | None:
    q = sa.select(payments).where(payments.c.idempotency_key == key)
    return (await s.execute(q.with_for_update() if lock else q)).first()


async def find_by_reference(s: AsyncSession, reference: str, *, lock: bool = False) -> Row | None:
    q = sa.select(payments).where(payments.c.provider_reference == reference)
    return (await s.execute(q.with_for_update() if lock else q)).first()


async def find_by_bank_payout(s: AsyncSession, reference: str, *, lock: bool = False) -> Row | None:
    q = sa.select(payments).where(payments.c.bank_payout_reference == reference)
    return (await s.execute(q.with_for_update() if lock else q)).first()


async def of_booking(s: AsyncSession, booking_id: str) -> Sequence[Row]:
    return (await s.execute(sa.select(payments).where(payments.c.booking_id == booking_id).order_by(
        payments.c.create_time, payments.c.id))).all()


async def update(s: AsyncSession, payment_id: str, **values: Any) -> None:
    await s.execute(payments.update().where(payments.c.id == payment_id).values(**values))


async def due(s: AsyncSession, *, pending: int, now: dt.datetime, limit: int = 50) -> list[str]:
    return list((await s.execute(sa.select(payments.c.id).where(
        payments.c.state == pending, payments.c.next_attempt_time <= now).order_by(
        payments.c.next_attempt_time).limit(limit))).scalars())


async def any_due(s: AsyncSession, column: sa.Column, *, now: dt.datetime, where: Sequence[Any]) -> bool:
    return await s.scalar(sa.select(payments.c.id).where(*where, column <= now).limit(1)) is not None


async def claim_due(s: AsyncSession, column: sa.Column, *, now: dt.datetime, lease: dt.timedelta,
                    where: Sequence[Any], limit: int = 50) -> list[str]:
    """Takes the payments matching `where` whose `column` time has come for this worker: their rows
    are locked (on PostgreSQL skipping those another replica holds) and `column` moved `lease` on,
    so nobody else takes them before this transaction's commit or until the lease runs out."""
    q = sa.select(payments.c.id).where(*where, column <= now).order_by(column).limit(limit)
    if s.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    ids = list((await s.execute(q)).scalars())
    if ids:
        await s.execute(payments.update().where(payments.c.id.in_(ids)).values({column.name: now + lease}))
    return ids


async def payouts_of_business(s: AsyncSession, business_id: str, *, kind: int) -> Sequence[Row]:
    return (await s.execute(sa.select(payments).where(
        payments.c.business_id == business_id, payments.c.kind == kind).order_by(
        payments.c.create_time).with_for_update())).all()


async def returns_from(s: AsyncSession, booking_id: str, account: str, *, kind: int,
                       return_states: Sequence[int]) -> int:
    """How many of a booking's payments of `kind` to `account` are in one of `return_states`."""
    return int(await s.scalar(sa.select(sa.func.count()).select_from(payments).where(
        payments.c.booking_id == booking_id, payments.c.kind == kind, payments.c.payout_account == account,
        payments.c.return_state.in_(return_states))) or 0)


async def set_payout_account(s: AsyncSession, business_id: str, account: str, now: dt.datetime) -> None:
    await s.execute(_insert(s, payout_accounts).values(business_id=business_id, account=account, update_time=now)
                    .on_conflict_do_update(index_elements=["business_id"],
                                           set_={"account": account, "update_time": now}))


async def payout_account_of(s: AsyncSession, business_id: str) -> str | None:
    return await s.scalar(sa.select(payout_accounts.c.account).where(payout_accounts.c.business_id == business_id))


async def claim(s: AsyncSession, payment_id: str, *, pending: int, now: dt.datetime, lease: dt.timedelta) -> bool:
    """Takes a due payment for one worker: it is not due again for `lease` (another replica skips it)."""
    return await rows_changed(s, payments.update().where(
        payments.c.id == payment_id, payments.c.state == pending, payments.c.next_attempt_time <= now).values(
        next_attempt_time=now + lease)) == 1


async def record_webhook(s: AsyncSession, *, provider: str, event_id: str, event_type: str, now: dt.datetime) -> bool:
    """False when this event was received before."""
    return await rows_changed(s, _insert(s, webhook_events).values(
        provider=provider, event_id=event_id, event_type=event_type, receive_time=now).on_conflict_do_nothing()) == 1


async def post(s: AsyncSession, *, posting: str, payment_id: str, currency: str, entries: dict[str, int],
               now: dt.datetime) -> None:
    """One balanced posting; ValueError if its entries do not sum to zero (never written)."""
    if sum(entries.values()) != 0:
        raise ValueError(f"unbalanced posting {entries}")
    await s.execute(ledger_entries.insert(), [
        dict(posting=posting, payment_id=payment_id, account=account, currency=currency, amount_minor=amount,
             create_time=now) for account, amount in entries.items() if amount])


async def balances(s: AsyncSession) -> Sequence[Row]:
    return (await s.execute(sa.select(
        ledger_entries.c.currency, ledger_entries.c.account,
        sa.func.sum(ledger_entries.c.amount_minor).label("balance"),
        sa.func.count().label("entries")).group_by(ledger_entries.c.currency, ledger_entries.c.account).order_by(
        ledger_entries.c.currency, ledger_entries.c.account))).all()
