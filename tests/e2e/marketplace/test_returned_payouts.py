"""A payout whose money comes back (the bank returns it): reversed in the ledger, the business owed
it again and told, and paid again (at once to a new payout account); a payout that failed outright
is paid again to the new account too. Local provider, embedded profile, through the public API."""
from __future__ import annotations

import datetime as dt

from google.protobuf import field_mask_pb2

from petplatform.marketplace.v1 import marketplace_pb2 as m
from petplatform.notification.v1 import notification_pb2 as nb
from tests.e2e.marketplace.test_bookings import clocks_moved
from tests.support.market import (
    B, P, a_slot, balanced, book, booking_reaches, business, eur, owner_with_dog, payment_reaches, payments,
)
from tests.support.matching import until
from tests.support.platform import Api, module_of


async def completed(api: Api, *, payout_account: str, days_ahead: int):
    seller = await api.signup("Seller")
    biz, svc = await business(api, seller, price=2500, payout_account=payout_account)
    owner, pet = await owner_with_dog(api)
    slot = await a_slot(api, svc.name, days_ahead=days_ahead)
    b = await book(api, owner, svc.name, slot.start_time, [pet])
    await api.marketplace.AcceptBooking(m.AcceptBookingRequest(name=b.name), metadata=seller.md)
    await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_PAID)
    await api.marketplace.StartBooking(m.StartBookingRequest(name=b.name), metadata=seller.md)
    await api.marketplace.CompleteBooking(m.CompleteBookingRequest(name=b.name), metadata=seller.md)
    await payment_reaches(api, seller, b.name, P.KIND_PAYOUT, P.STATE_PENDING)  # its hold set from now
    return seller, owner, biz, b


async def business_balance(api: Api, biz: m.Business) -> int:
    return (await balanced(api, api.admin))["EUR"].get(f"business/{biz.name.removeprefix('businesses/')}", 0)


async def change_payout_account(api: Api, seller, biz: m.Business, account: str) -> None:
    await api.marketplace.UpdateBusiness(m.UpdateBusinessRequest(
        business=m.Business(name=biz.name, payout_account=account),
        update_mask=field_mask_pb2.FieldMask(paths=["payout_account"])), metadata=seller.md)


async def test_a_returned_payout_is_reversed_owed_again_told_and_paid_again_to_the_new_account(market: Api):
    api = market
    provider = module_of(api, "payment").local
    seller, _, biz, b = await completed(api, payout_account="acct_closed_soon", days_ahead=13)
    with clocks_moved(api, dt.timedelta(hours=48, minutes=1)):
        paid = await payment_reaches(api, seller, b.name, P.KIND_PAYOUT, P.STATE_SUCCEEDED)
    assert await business_balance(api, biz) == 0

    # The bank sends it back: the business is owed the 22.50 again, the ledger still sums to zero.
    provider.return_payout(paid.provider_reference, failure="account_closed")

    async def retry_pending():
        return next((x for x in await payments(api, seller, b.name)
                     if x.kind == P.KIND_PAYOUT and x.retry_of == paid.name), None)
    retry = await until(retry_pending, what="the returned payout's retry")
    assert retry.state == P.STATE_PENDING and retry.amount == eur(2250) and retry.fee == eur(0)
    assert retry.idempotency_key == f"{b.name}:payout:{paid.name.removeprefix('payments/')}"
    returned = next(x for x in await payments(api, seller, b.name) if x.name == paid.name)
    assert (returned.state, returned.bank_payout, returned.failure_reason) == (
        P.STATE_SUCCEEDED, P.BANK_PAYOUT_FAILED, "account_closed")
    assert returned.HasField("return_time")
    assert await business_balance(api, biz) == -2250
    assert [k for k, _, amount in provider.moved if k == "reclaim" and amount == 2250]
    # Not before the retry delay while the account stays the same.
    assert retry.due_time.ToDatetime() > dt.datetime.utcnow() + dt.timedelta(days=2)

    # The business's owner is told (inbox), with what to do.
    async def told():
        found = (await api.notification.ListNotifications(nb.ListNotificationsRequest(page_size=50),
                                                          metadata=seller.md)).notifications
        return next((n for n in found if n.kind == nb.KIND_PAYMENT), None)
    note = await until(told, what="the payout.failed notification")
    assert "22.50 EUR" in note.body and "account_closed" in note.body and note.target == biz.name

    # A new payout account: the money goes there at once, once.
    await change_payout_account(api, seller, biz, "acct_new_bank")
    async def repaid():
        return next((x for x in await payments(api, seller, b.name)
                     if x.name == retry.name and x.state == P.STATE_SUCCEEDED), None)
    again = await until(repaid, what="the retry paid")
    assert again.payout_account == "acct_new_bank"
    sent = provider.done[retry.idempotency_key]
    assert sent[0][:2] == (2250, "acct_new_bank")
    assert await business_balance(api, biz) == 0
    # The same return told again (another event about the same payout) changes nothing.
    provider.return_payout(paid.provider_reference, failure="account_closed")
    await provider.drain()
    assert len([x for x in await payments(api, seller, b.name) if x.kind == P.KIND_PAYOUT]) == 2
    assert await business_balance(api, biz) == 0


async def test_a_payout_refused_by_the_provider_is_paid_again_when_the_account_changes(market: Api):
    api = market
    seller, _, biz, b = await completed(api, payout_account="acct_invalid", days_ahead=14)
    with clocks_moved(api, dt.timedelta(hours=48, minutes=1)):
        failed = await payment_reaches(api, seller, b.name, P.KIND_PAYOUT, P.STATE_FAILED)
    assert failed.failure_reason == "invalid_account"
    assert await business_balance(api, biz) == -2250  # earned, not paid: still owed
    await change_payout_account(api, seller, biz, "acct_fixed")
    paid = await payment_reaches(api, seller, b.name, P.KIND_PAYOUT, P.STATE_SUCCEEDED)
    assert paid.retry_of == failed.name and paid.amount == eur(2250)
    assert await business_balance(api, biz) == 0


async def test_a_payout_still_in_its_hold_goes_to_the_new_account(market: Api):
    api = market
    seller, owner, biz, b = await completed(api, payout_account="acct_old", days_ahead=15)
    (held,) = [x for x in await payments(api, seller, b.name) if x.kind == P.KIND_PAYOUT]
    assert held.payout_account == "acct_old"
    (seen_by_payer,) = [x for x in await payments(api, owner, b.name) if x.kind == P.KIND_PAYOUT]
    assert not seen_by_payer.payout_account
    await change_payout_account(api, seller, biz, "acct_new")

    async def moved():
        (x,) = [x for x in await payments(api, seller, b.name) if x.kind == P.KIND_PAYOUT]
        return x.payout_account == "acct_new"
    await until(moved, what="the held payout moved to the new account")
    with clocks_moved(api, dt.timedelta(hours=48, minutes=1)):
        paid = await payment_reaches(api, seller, b.name, P.KIND_PAYOUT, P.STATE_SUCCEEDED)
    assert module_of(api, "payment").local.done[paid.idempotency_key][0][1] == "acct_new"
    await balanced(api, api.admin)


async def test_a_payout_returned_after_the_account_changed_goes_to_the_new_one_at_once(market: Api):
    api = market
    provider = module_of(api, "payment").local
    seller, _, biz, b = await completed(api, payout_account="acct_closing", days_ahead=16)
    with clocks_moved(api, dt.timedelta(hours=48, minutes=1)):
        paid = await payment_reaches(api, seller, b.name, P.KIND_PAYOUT, P.STATE_SUCCEEDED)
    # The business knew its bank account was closing: it gave a new one before the return came.
    await change_payout_account(api, seller, biz, "acct_opened")
    await until(lambda: _knows(api, biz, "acct_opened"), what="payment knowing the new account")
    provider.return_payout(paid.provider_reference)

    async def repaid():
        return next((x for x in await payments(api, seller, b.name)
                     if x.retry_of == paid.name and x.state == P.STATE_SUCCEEDED), None)
    assert (await until(repaid, what="the retry paid at once")).payout_account == "acct_opened"
    assert await business_balance(api, biz) == 0


async def _knows(api: Api, biz: m.Business, account: str) -> bool:
    from services.payment import store
    async with module_of(api, "payment").db.read() as s:
        return await store.payout_account_of(s, biz.name.removeprefix("businesses/")) == account


async def test_an_account_that_keeps_returning_the_money_is_not_paid_a_fourth_time(market: Api):
    """The same account sends the money back three times: no fourth try there, the business is told to give
    another account, and the money goes to the new one once it does."""
    api = market
    provider = module_of(api, "payment").local
    seller, _, biz, b = await completed(api, payout_account="acct_closed", days_ahead=17)
    with clocks_moved(api, dt.timedelta(hours=48, minutes=1)):
        payout = await payment_reaches(api, seller, b.name, P.KIND_PAYOUT, P.STATE_SUCCEEDED)
    for n in range(1, 4):
        provider.return_payout(payout.provider_reference, failure="account_closed")

        async def returned(name=payout.name):
            found = next(x for x in await payments(api, seller, b.name) if x.name == name)
            return found if found.HasField("return_time") else None
        await until(returned, what=f"return {n} reclaimed")
        retries = [x for x in await payments(api, seller, b.name) if x.retry_of == payout.name]
        if n == 3:
            break
        (retry,) = retries
        assert retry.payout_account == "acct_closed"
        # After the retry delay, the same account again.
        with clocks_moved(api, dt.timedelta(days=3, minutes=1 + 48 * 60)):
            payout = await until(lambda name=retry.name: _succeeded(api, seller, b, name), what=f"retry {n} paid")
    assert retries == []  # a third return from acct_closed: no fourth payout there
    assert await business_balance(api, biz) == -2250  # owed, and the ledger says so

    async def told_without_a_date():
        found = (await api.notification.ListNotifications(nb.ListNotificationsRequest(page_size=50),
                                                          metadata=seller.md)).notifications
        notes = [x for x in found if x.kind == nb.KIND_PAYMENT]
        return notes if len(notes) == 3 else None
    newest = (await until(told_without_a_date, what="three payout.failed notifications"))[0]
    assert "Update your payout account" in newest.body and "try the same account again" not in newest.body

    await change_payout_account(api, seller, biz, "acct_open")

    async def repaid():
        return next((x for x in await payments(api, seller, b.name)
                     if x.retry_of == payout.name and x.state == P.STATE_SUCCEEDED), None)
    assert (await until(repaid, what="the money paid to the new account")).payout_account == "acct_open"
    assert await business_balance(api, biz) == 0
    assert len([x for x in await payments(api, seller, b.name) if x.kind == P.KIND_PAYOUT]) == 4


async def _succeeded(api: Api, seller, b: m.Booking, name: str):
    return next((x for x in await payments(api, seller, b.name) if x.name == name and x.state == P.STATE_SUCCEEDED),
                None)
