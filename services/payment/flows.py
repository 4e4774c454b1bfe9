"""How booking events become payments, and how each payment moves: the worker calls the provider
outside any transaction (with the payment's idempotency key, so a retry never moves money twice),
then applies the outcome under the payment's row lock, as a webhook reporting it would: whichever
comes first applies it, the other finds it applied. Ledger postings (debit +, credit -):
  charge   cash +P, escrow -P
  refund   escrow +R, cash -R
  earning  escrow +K, business/<id> -(K - fee), platform/fees -fee   (a payout's share released)
  payout   business/<id> +(K - fee), cash -(K - fee)                (after the hold)
  returned cash +(K - fee), business/<id> -(K - fee)                (its money came back: owed again)
A returned payout (the bank or PayPal sent it back) is reclaimed from the provider where the money
stopped (Stripe: a reversal of the transfer), reversed in the ledger, and paid again by a new
payout: at once when the business changes its payout account, else after the retry delay; after
MAX_RETURNS returns from one account, only once the business gives another. A charge
waiting on its payer (3-D Secure) past its deadline is cancelled at the provider, which frees the
booking's place (payment.failed)."""
from __future__ import annotations

from collections.abc import Callable
import dataclasses
import datetime as dt
import logging

from sqlalchemy.ext.asyncio import AsyncSession

from mesh.events import emit
from mesh.money import from_minor, to_minor
from mesh.resources import new_id, timestamp
from mesh.sql import Database, Row
from petplatform.marketplace.v1 import events_pb2 as market
from petplatform.payment.v1 import events_pb2 as ev
from petplatform.payment.v1 import payment_pb2 as p
from services.payment import store
from services.payment.providers import Outcome, Provider, ProviderDown, ProviderRefused

log = logging.getLogger(__name__)
P = p.Payment
LEASE = dt.timedelta(seconds=60)
MAX_RETRY = dt.timedelta(minutes=10)


# payments.return_state: to reclaim; reclaimed and paid again; reclaimed, waiting for another payout account.
RECLAIM, RETRIED, WAITING = 1, 2, 3
MAX_RETURNS = 3  # returns from one account before its money waits for another (a closed account stays closed)
OPEN_STATES = (P.STATE_PENDING, P.STATE_PROCESSING, P.STATE_REQUIRES_ACTION)
# A payout's bank transfer only moves forward: in transit, (PayPal) unclaimed, then paid, then (a bank
# returning it, or PayPal returning an item unclaimed for 30 days) failed.
BANK_RANK: dict[int, int] = {P.BANK_PAYOUT_UNSPECIFIED: 0, P.BANK_PAYOUT_IN_TRANSIT: 1, P.BANK_PAYOUT_UNCLAIMED: 2,
                             P.BANK_PAYOUT_PAID: 3, P.BANK_PAYOUT_FAILED: 4, P.BANK_PAYOUT_CANCELLED: 4}


def payment_message(r: Row, *, payer: bool = False, payee: bool = True) -> P:
    """`payer`: with what the payer's app needs to authenticate a charge (nobody else sees it, nor
    do events carry it); `payee`: with the payout account (the business's side and admins)."""
    return P(name=f"payments/{r.id}", kind=r.kind, booking=f"bookings/{r.booking_id}",
             amount=from_minor(r.amount_minor, r.currency), fee=from_minor(r.fee_minor, r.currency), state=r.state,
             provider=r.provider, provider_reference=r.provider_reference, idempotency_key=r.idempotency_key,
             failure_reason=r.failure_reason, attempts=r.attempts, due_time=timestamp(r.due_time),
             create_time=timestamp(r.create_time), update_time=timestamp(r.update_time),
             client_secret=r.client_secret if payer else "", action_url=r.action_url if payer else "",
             bank_payout=r.bank_payout, bank_payout_reference=r.bank_payout_reference,
             return_time=timestamp(r.return_time) if r.return_time else None,
             retry_of=f"payments/{r.retry_of}" if r.retry_of else "",
             payout_account=r.payout_account if payee else "")


def fee_of(amount: int, percent: float) -> int:
    """The platform's fee in minor units, rounded half up."""
    basis_points = round(percent * 100)
    return (amount * basis_points + 5000) // 10000


@dataclasses.dataclass
class Flows:
    db: Database
    provider: Provider
    now: Callable[[], dt.datetime]
    hold: dt.timedelta
    fee_percent: float
    retry: dt.timedelta
    action_timeout: dt.timedelta = dt.timedelta(hours=6)
    payout_retry: dt.timedelta = dt.timedelta(days=3)

    # --- booking events -> payments (consumers: in the inbox transaction) ---

    async def _add(self, s: AsyncSession, booking, *, kind: int, step: str, amount: int, currency: str,
                   due: dt.datetime | None = None, payment_method: str = "", payout_account: str = "") -> None:
        now = self.now()
        start = booking.start_time.ToDatetime(dt.timezone.utc) if booking.HasField("start_time") else None
        await store.add_payment(
            s, id=new_id(), booking_id=booking.name.removeprefix("bookings/"), kind=kind, state=P.STATE_PENDING,
            amount_minor=amount, currency=currency, owner_id=booking.owner.removeprefix("users/"),
            business_id=booking.business.removeprefix("businesses/"),
            business_owner_id=booking.business_owner.removeprefix("users/"), payout_account=payout_account,
            payment_method=payment_method, provider=self.provider.name,
            idempotency_key=f"{booking.name}:{step}", next_attempt_time=now, due_time=due, create_time=now,
            update_time=now, start_time=start)

    async def on_accepted(self, s: AsyncSession, event: market.BookingAccepted) -> None:
        amount, currency = to_minor(event.booking.price)
        await self._add(s, event.booking, kind=P.KIND_CHARGE, step="charge", amount=amount, currency=currency,
                        payment_method=event.payment_method)

    async def on_cancelled(self, s: AsyncSession, event: market.BookingCancelled) -> None:
        """A refund of what the policy gives back, and the rest (a late cancellation's fee) paid out to
        the business after the hold; nothing when nothing was charged."""
        charge = await store.find_by_key(s, f"{event.booking.name}:charge", lock=True)
        if charge is None or charge.state in (P.STATE_FAILED, P.STATE_CANCELLED):
            return
        price, currency = to_minor(event.booking.price)
        if charge.state == P.STATE_REQUIRES_ACTION:
            # The payer never authenticated: nothing is owed, the charge is cancelled now. Should
            # they finish first after all, the refund gives it all back (it waits on the charge).
            await store.update(s, charge.id, action_deadline=self.now())
            await self._add(s, event.booking, kind=P.KIND_REFUND, step="refund", amount=price, currency=currency)
            return
        refund, _ = to_minor(event.refund)
        if refund > 0:
            await self._add(s, event.booking, kind=P.KIND_REFUND, step="refund", amount=refund, currency=currency)
        if price - refund > 0:
            await self._add(s, event.booking, kind=P.KIND_PAYOUT, step="payout", amount=price - refund,
                            currency=currency, due=self.now() + self.hold, payout_account=event.payout_account)

    async def on_completed(self, s: AsyncSession, event: market.BookingCompleted) -> None:
        price, currency = to_minor(event.booking.price)
        await self._add(s, event.booking, kind=P.KIND_PAYOUT, step="payout", amount=price, currency=currency,
                        due=self.now() + self.hold, payout_account=event.payout_account)

    async def on_payout_account_changed(self, s: AsyncSession, event: market.BusinessPayoutAccountChanged) -> None:
        """Payouts not yet tried go to the new account; a returned or failed payout's money is paid
        again to it now (once: the retry's key is derived from the payout it retries)."""
        business_id, account, now = event.business.removeprefix("businesses/"), event.payout_account, self.now()
        await store.set_payout_account(s, business_id, account, now)
        for row in await store.payouts_of_business(s, business_id, kind=P.KIND_PAYOUT):
            if row.state == P.STATE_PENDING and row.attempts == 0:
                await store.update(s, row.id, payout_account=account, update_time=now,
                                   **({"next_attempt_time": now, "due_time": now} if row.retry_of else {}))
            elif row.earned and (row.return_state == WAITING or row.state == P.STATE_FAILED and row.return_state == 0):
                await self._retry_payout(s, row, account=account, at=now)
                await store.update(s, row.id, return_state=RETRIED, update_time=now)

    async def _retry_payout(self, s: AsyncSession, row: Row, *, account: str, at: dt.datetime) -> Row:
        retry_id, now = new_id(), self.now()
        await store.add_payment(
            s, id=retry_id, booking_id=row.booking_id, kind=P.KIND_PAYOUT, state=P.STATE_PENDING,
            amount_minor=row.amount_minor, currency=row.currency, owner_id=row.owner_id,
            business_id=row.business_id, business_owner_id=row.business_owner_id, payout_account=account,
            provider=self.provider.name, idempotency_key=f"bookings/{row.booking_id}:payout:{row.id}",
            next_attempt_time=at, due_time=at, earned=True, retry_of=row.id, create_time=now, update_time=now)
        return await store.get(s, retry_id)

    # --- the worker ---

    async def run_once(self) -> int:
        """Moves every due payment one step; returns how many were tried."""
        now = self.now()
        async with self.db.read() as s:
            due = await store.due(s, pending=P.STATE_PENDING, now=now)
        for payment_id in due:
            try:
                await self.step(payment_id)
            except Exception:
                log.exception("payment %s: step failed; it is tried again after its lease", payment_id)
        # Charges whose payer never acted, and payouts whose money came back: each claimed by one
        # replica (rows locked SKIP LOCKED, then leased), so two replicas never work the same one.
        c = store.payments.c
        sweeps = ((c.action_deadline, (c.state == P.STATE_REQUIRES_ACTION,)),
                  (c.next_attempt_time, (c.return_state == RECLAIM, c.state == P.STATE_SUCCEEDED)))
        async with self.db.read() as s:  # most polls find nothing: no writer taken for them (SQLite has one)
            found = [await store.any_due(s, column, now=now, where=where) for column, where in sweeps]
        expired: list[str] = []
        returned: list[str] = []
        if any(found):
            async with self.db.transaction() as s:
                expired, returned = [await store.claim_due(s, column, now=now, lease=LEASE, where=where)
                                     for column, where in sweeps]
        for payment_id, work in [(i, self.expire_action) for i in expired] + [(i, self.reclaim) for i in returned]:
            try:
                await work(payment_id)
            except Exception:
                log.exception("payment %s: %s failed; it is tried again after its lease", payment_id, work.__name__)
        return len(due) + len(expired) + len(returned)

    async def _backoff(self, row: Row, column: str, error: Exception) -> None:
        wait = min(self.retry * 2 ** min(row.attempts, 20), MAX_RETRY)
        log.warning("payment %s: provider unavailable or refused (%s); again in %s", row.id, error, wait)
        async with self.db.transaction() as s:
            await store.update(s, row.id, **{column: self.now() + wait}, attempts=row.attempts + 1)

    async def expire_action(self, payment_id: str) -> None:
        """Cancels a charge its payer never authenticated; the booking's place is freed on the
        payment.failed it emits. If the payer finished first, that outcome is applied instead."""
        async with self.db.read() as s:
            row = await store.get(s, payment_id)
        metadata = {"booking": f"bookings/{row.booking_id}", "payment": f"payments/{row.id}"}
        try:
            outcome = await self.provider.cancel_charge(key=f"{row.idempotency_key}:cancel",
                                                        charge=row.provider_reference, metadata=metadata)
        except (ProviderDown, ProviderRefused) as e:
            await self._backoff(row, "action_deadline", e)
            return
        async with self.db.transaction() as s:
            locked = await store.find(s, payment_id, lock=True)
            assert locked is not None
            if locked.state != P.STATE_REQUIRES_ACTION:
                return  # a webhook finished it meanwhile
            if outcome.state == "failed":
                now = self.now()
                await store.update(s, row.id, state=P.STATE_CANCELLED, failure_reason=outcome.failure[:200],
                                   client_secret="", action_url="", action_deadline=None, update_time=now)
                await emit(s, ev.PaymentFailed(payment=payment_message(await store.get(s, row.id))))
            elif outcome.state == "requires_action":
                await store.update(s, row.id, action_deadline=self.now() + self.retry)
            else:
                await self.apply(s, locked, outcome)

    async def reclaim(self, payment_id: str) -> None:
        """A payout whose money came back: reclaimed where it stopped, reversed in the ledger (the
        business is owed it again), paid again by a new payout, and payout.failed published."""
        async with self.db.read() as s:
            row = await store.get(s, payment_id)
        metadata = {"booking": f"bookings/{row.booking_id}", "payment": f"payments/{row.id}"}
        try:
            outcome = await self.provider.reclaim_payout(
                key=f"{row.idempotency_key}:reclaim", payout=row.provider_reference, account=row.payout_account,
                amount=row.amount_minor, currency=row.currency, metadata=metadata)
        except (ProviderDown, ProviderRefused) as e:
            await self._backoff(row, "next_attempt_time", e)
            return
        if outcome.state != "succeeded":
            await self._backoff(row, "next_attempt_time", RuntimeError(f"reclaim {outcome.state}"))
            return
        async with self.db.transaction() as s:
            locked = await store.find(s, payment_id, lock=True)
            assert locked is not None
            if locked.return_state != RECLAIM:
                return
            now = self.now()
            await store.post(s, posting=new_id(), payment_id=row.id, currency=row.currency, now=now, entries={
                "cash": row.amount_minor, f"business/{row.business_id}": -row.amount_minor})
            # To the account the business gave since, at once; else the same one after the retry delay,
            # unless it sent the money back MAX_RETURNS times: then it waits for another account.
            account = await store.payout_account_of(s, row.business_id) or locked.payout_account
            same = account == locked.payout_account
            earlier = await store.returns_from(s, row.booking_id, account, kind=P.KIND_PAYOUT,
                                               return_states=(RETRIED, WAITING))
            gave_up = same and earlier + 1 >= MAX_RETURNS
            await store.update(s, row.id, return_state=WAITING if gave_up else RETRIED, return_time=now,
                               update_time=now)
            retry = None if gave_up else await self._retry_payout(
                s, locked, account=account, at=now + self.payout_retry if same else now)
            await emit(s, ev.PayoutFailed(payment=payment_message(await store.get(s, row.id)),
                                          retry=payment_message(retry) if retry else None,
                                          business=f"businesses/{row.business_id}",
                                          business_owner=f"users/{row.business_owner_id}"))

    async def step(self, payment_id: str) -> None:
        now = self.now()
        async with self.db.transaction() as s:
            if not await store.claim(s, payment_id, pending=P.STATE_PENDING, now=now, lease=LEASE):
                return  # another worker has it, or it moved on
            row = await store.find(s, payment_id)
            assert row is not None
            if row.kind != P.KIND_CHARGE:
                charge = await store.find_by_key(s, f"bookings/{row.booking_id}:charge")
                if charge is None or charge.state in (P.STATE_FAILED, P.STATE_CANCELLED):
                    await store.update(s, row.id, state=P.STATE_CANCELLED, update_time=now)
                    return
                if charge.state != P.STATE_SUCCEEDED:  # wait for the charge
                    await store.update(s, row.id, next_attempt_time=now + self.retry)
                    return
                if row.kind == P.KIND_PAYOUT:
                    if not row.earned:
                        await self._earn(s, row, now)
                    if row.due_time and now < row.due_time:  # the hold
                        await store.update(s, row.id, next_attempt_time=row.due_time)
                        return
                reference = charge.provider_reference
            else:
                reference = ""
            await store.update(s, row.id, attempts=row.attempts + 1, update_time=now)
            row = await store.get(s, payment_id)
        try:
            outcome = await self._call(row, reference)
        except ProviderDown as e:
            wait = min(self.retry * 2 ** min(row.attempts, 20), MAX_RETRY)
            log.warning("payment %s: provider down (%s); retrying in %s", row.id, e, wait)
            async with self.db.transaction() as s:
                await store.update(s, row.id, next_attempt_time=self.now() + wait, update_time=self.now())
            return
        except ProviderRefused as e:
            outcome = Outcome("failed", "", str(e)[:200])
        async with self.db.transaction() as s:
            locked = await store.find(s, payment_id, lock=True)
            assert locked is not None
            await self.apply(s, locked, outcome)

    async def _earn(self, s: AsyncSession, row: Row, now: dt.datetime) -> None:
        fee = fee_of(row.amount_minor, self.fee_percent)
        await store.post(s, posting=new_id(), payment_id=row.id, currency=row.currency, now=now, entries={
            "escrow": row.amount_minor, f"business/{row.business_id}": -(row.amount_minor - fee),
            "platform/fees": -fee})
        await store.update(s, row.id, earned=True, fee_minor=fee, amount_minor=row.amount_minor - fee,
                           update_time=now)

    async def _call(self, row: Row, charge_reference: str) -> Outcome:
        metadata = {"booking": f"bookings/{row.booking_id}", "payment": f"payments/{row.id}"}
        if row.kind == P.KIND_CHARGE:
            return await self.provider.charge(key=row.idempotency_key, amount=row.amount_minor, currency=row.currency,
                                              payment_method=row.payment_method, metadata=metadata)
        if row.kind == P.KIND_REFUND:
            return await self.provider.refund(key=row.idempotency_key, charge=charge_reference, amount=row.amount_minor,
                                              currency=row.currency, metadata=metadata)
        return await self.provider.payout(key=row.idempotency_key, account=row.payout_account,
                                          amount=row.amount_minor, currency=row.currency, metadata=metadata)

    async def bank_payout(self, s: AsyncSession, row: Row, *, reference: str, state: int, failure: str = "") -> None:
        """Records where a locked payout's bank transfer stands, moving only forward, whatever
        order the answer and the webhooks arrive in."""
        if row.kind != P.KIND_PAYOUT or (row.bank_payout_reference and row.bank_payout_reference != reference):
            return
        if BANK_RANK[state] <= BANK_RANK[row.bank_payout]:
            return
        values: dict = {"bank_payout": state, "bank_payout_reference": reference, "update_time": self.now()}
        if state == P.BANK_PAYOUT_FAILED:
            values["failure_reason"] = failure[:200] or "bank_payout_failed"
        if state in (P.BANK_PAYOUT_FAILED, P.BANK_PAYOUT_CANCELLED) and row.return_state == 0:
            # The money did not reach the business: the worker reclaims it (once the payout's own
            # answer is stored, if this came first).
            values.update(return_state=RECLAIM, next_attempt_time=self.now())
        await store.update(s, row.id, **values)

    async def resume(self, s: AsyncSession, row: Row) -> None:
        """The payer did what a locked charge waited on: it is due again, and the worker's retry
        (same idempotency key) finishes it. Only from REQUIRES_ACTION: a late approval changes nothing."""
        if row.kind == P.KIND_CHARGE and row.state == P.STATE_REQUIRES_ACTION:
            await store.update(s, row.id, state=P.STATE_PENDING, next_attempt_time=self.now(), update_time=self.now())

    async def apply(self, s: AsyncSession, row: Row, outcome: Outcome) -> None:
        """Applies a provider's answer (from our call or a webhook) to a locked payment: once. An
        answer for a payment already final, or older than what is known, changes nothing."""
        if row.state not in OPEN_STATES:
            return
        now = self.now()
        reference = outcome.reference or row.provider_reference
        if outcome.state == "requires_action":
            if row.kind != P.KIND_CHARGE or row.state == P.STATE_REQUIRES_ACTION:
                return  # said before (a second webhook, or our call's answer after the webhook)
            deadline = now + self.action_timeout
            if row.start_time is not None:
                deadline = min(deadline, row.start_time)
            await store.update(s, row.id, state=P.STATE_REQUIRES_ACTION, provider_reference=reference,
                               client_secret=outcome.client_secret, action_url=outcome.action_url,
                               action_deadline=deadline, update_time=now)
            await emit(s, ev.PaymentActionRequired(payment=payment_message(await store.get(s, row.id))))
            return
        if outcome.state == "processing":
            await store.update(s, row.id, state=P.STATE_PROCESSING, provider_reference=reference, update_time=now)
            return
        if outcome.state == "failed":
            await store.update(s, row.id, state=P.STATE_FAILED, provider_reference=reference,
                               failure_reason=outcome.failure, client_secret="", action_url="", update_time=now)
            if row.kind == P.KIND_CHARGE:
                await emit(s, ev.PaymentFailed(payment=payment_message(await store.get(s, row.id))))
            return
        posting = new_id()
        if row.kind == P.KIND_CHARGE:
            entries = {"cash": row.amount_minor, "escrow": -row.amount_minor}
        elif row.kind == P.KIND_REFUND:
            entries = {"escrow": row.amount_minor, "cash": -row.amount_minor}
        else:
            entries = {f"business/{row.business_id}": row.amount_minor, "cash": -row.amount_minor}
        await store.post(s, posting=posting, payment_id=row.id, currency=row.currency, entries=entries, now=now)
        await store.update(s, row.id, state=P.STATE_SUCCEEDED, provider_reference=reference, client_secret="",
                           action_url="", update_time=now)
        if outcome.bank_payout:
            await self.bank_payout(s, await store.get(s, row.id), reference=outcome.bank_payout,
                                   state=P.BANK_PAYOUT_IN_TRANSIT)
        done = payment_message(await store.get(s, row.id))
        await emit(s, {P.KIND_CHARGE: ev.PaymentProcessed, P.KIND_REFUND: ev.RefundProcessed,
                       P.KIND_PAYOUT: ev.PayoutSent}[row.kind](payment=done))
