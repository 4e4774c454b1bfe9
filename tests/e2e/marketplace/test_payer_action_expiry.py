"""A charge whose payer never completes 3-D Secure: cancelled at the provider after the bounded
wait (or at once when the booking is cancelled), the booking cancelled by the platform with
booking.cancelled and its place freed; once, whatever the replicas. Local provider, through the
public API; the two-replica race on PostgreSQL."""
from __future__ import annotations

import asyncio
import datetime as dt

from petplatform.marketplace.v1 import events_pb2 as market_events
from petplatform.marketplace.v1 import marketplace_pb2 as m
from tests.e2e.marketplace.test_bookings import clocks_moved
from tests.support.market import (
    B, P, a_slot, balanced, book, booking, booking_reaches, business, owner_with_dog, payment_reaches, payments,
    slots,
)
from tests.support.matching import events
from tests.support.platform import Api, module_of

TIMEOUT = dt.timedelta(hours=6)  # payment_action_timeout_seconds' default


async def waiting_on_the_payer(api: Api, *, days_ahead: int):
    seller = await api.signup("Seller")
    _, svc = await business(api, seller, price=2500)
    owner, pet = await owner_with_dog(api)
    slot = await a_slot(api, svc.name, days_ahead=days_ahead)
    b = await book(api, owner, svc.name, slot.start_time, [pet], pm="pm_card_authenticationRequired")
    await api.marketplace.AcceptBooking(m.AcceptBookingRequest(name=b.name), metadata=seller.md)
    charge = await payment_reaches(api, owner, b.name, P.KIND_CHARGE, P.STATE_REQUIRES_ACTION)
    await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_REQUIRES_ACTION)
    return seller, owner, svc, b, charge


async def cancellations(api: Api, booking_name: str) -> list[market_events.BookingCancelled]:
    out = []
    for envelope in await events(api, "marketplace", "booking.cancelled"):
        event = market_events.BookingCancelled()
        envelope.payload.Unpack(event)
        if event.booking.name == booking_name:
            out.append(event)
    return out


async def free(api: Api, service: str, b: m.Booking) -> bool:
    day = b.start_time.ToDatetime().date()
    return b.start_time in [s.start_time for s in await slots(api, service, day, day)]


async def test_a_charge_never_authenticated_is_cancelled_and_the_place_freed(market: Api):
    api = market
    provider = module_of(api, "payment").local
    seller, owner, svc, b, charge = await waiting_on_the_payer(api, days_ahead=16)
    # Within the wait nothing happens.
    with clocks_moved(api, TIMEOUT - dt.timedelta(minutes=1)):
        await module_of(api, "payment").flows.run_once()
    assert (await booking(api, owner, b.name)).state == B.STATE_ACCEPTED
    assert not await free(api, svc.name, b)

    with clocks_moved(api, TIMEOUT + dt.timedelta(minutes=1)):
        cancelled = await payment_reaches(api, owner, b.name, P.KIND_CHARGE, P.STATE_CANCELLED)
        got = await booking_reaches(api, owner, b.name, state=B.STATE_CANCELLED)
    assert cancelled.failure_reason == "payer_action_expired" and not cancelled.client_secret
    assert (got.cancelled_by, got.payment_status) == (B.CANCELLER_PLATFORM, B.PAYMENT_STATUS_FAILED)
    assert await free(api, svc.name, b)
    (event,) = await cancellations(api, b.name)
    assert event.booking.state == B.STATE_CANCELLED and event.refund.units == 0 and event.refund.nanos == 0
    assert provider.calls.count(("cancel", f"{b.name}:charge:cancel")) == 1
    # The payer authenticating now changes nothing: no money moves, no refund or payout is made.
    await provider.authenticate(charge.provider_reference)
    await provider.drain()
    assert [x.kind for x in await payments(api, owner, b.name)] == [P.KIND_CHARGE]
    assert (await booking(api, owner, b.name)).state == B.STATE_CANCELLED
    assert charge.provider_reference not in provider.authenticated  # too late: refused at the provider
    assert (await payment_reaches(api, owner, b.name, P.KIND_CHARGE, P.STATE_CANCELLED)).name == charge.name
    await balanced(api, api.admin)


async def test_the_wait_ends_at_the_bookings_start_if_sooner(market: Api):
    api = market
    flows = module_of(api, "payment").flows
    flows.action_timeout = dt.timedelta(days=30)  # a wait longer than the time left before the start
    try:
        _, owner, _, b, _ = await waiting_on_the_payer(api, days_ahead=2)
    finally:
        flows.action_timeout = TIMEOUT
    until_start = b.start_time.ToDatetime(dt.timezone.utc) - dt.datetime.now(dt.timezone.utc)
    with clocks_moved(api, until_start - dt.timedelta(minutes=1)):
        await flows.run_once()
    assert (await booking(api, owner, b.name)).state == B.STATE_ACCEPTED
    with clocks_moved(api, until_start + dt.timedelta(minutes=1)):
        await booking_reaches(api, owner, b.name, state=B.STATE_CANCELLED, payment_status=B.PAYMENT_STATUS_FAILED)


async def test_cancelling_a_booking_whose_charge_waits_on_the_payer_cancels_the_charge(market: Api):
    api = market
    provider = module_of(api, "payment").local
    _, owner, svc, b, charge = await waiting_on_the_payer(api, days_ahead=17)
    await api.marketplace.CancelBooking(m.CancelBookingRequest(name=b.name), metadata=owner.md)
    await payment_reaches(api, owner, b.name, P.KIND_CHARGE, P.STATE_CANCELLED)
    refund = await payment_reaches(api, owner, b.name, P.KIND_REFUND, P.STATE_CANCELLED)
    assert refund.amount.units == 25  # all of it, had the payer finished first
    assert (await booking(api, owner, b.name)).cancelled_by == B.CANCELLER_OWNER
    assert await free(api, svc.name, b)
    assert provider.calls.count(("cancel", f"{b.name}:charge:cancel")) == 1
    await balanced(api, api.admin)


async def test_the_payer_finishing_just_before_the_cancel_keeps_the_booking(market: Api):
    api = market
    provider = module_of(api, "payment").local
    _, owner, _, b, charge = await waiting_on_the_payer(api, days_ahead=18)
    provider.authenticated.add(charge.provider_reference)  # done at the bank; its webhook not here yet
    with clocks_moved(api, TIMEOUT + dt.timedelta(minutes=1)):
        await payment_reaches(api, owner, b.name, P.KIND_CHARGE, P.STATE_SUCCEEDED)
        got = await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_PAID)
    assert got.state == B.STATE_ACCEPTED
    await balanced(api, api.admin)


async def test_two_replicas_cancel_an_expired_charge_once_on_postgres(real_market: Api):
    api = real_market
    provider = module_of(api, "payment").local
    flows = module_of(api, "payment").flows
    _, owner, _, b, _ = await waiting_on_the_payer(api, days_ahead=19)
    with clocks_moved(api, TIMEOUT + dt.timedelta(minutes=1)):
        # The module's own worker and four more sweeps at once, as replicas would.
        await asyncio.gather(*(flows.run_once() for _ in range(4)))
        await booking_reaches(api, owner, b.name, state=B.STATE_CANCELLED)
    assert provider.calls.count(("cancel", f"{b.name}:charge:cancel")) == 1
    assert len(await cancellations(api, b.name)) == 1
    await balanced(api, api.admin)
