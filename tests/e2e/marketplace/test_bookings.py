"""Bookings and their money through the gRPC API, embedded profile: book -> accept (charged) ->
start -> complete -> payout after the hold; declines, cancellations under each policy, expiry,
a provider outage during the charge, idempotent retries, other users refused, bad input. Every
flow ends with the ledger summing to zero."""
from __future__ import annotations

import contextlib
import datetime as dt

import grpc

from petplatform.marketplace.v1 import marketplace_pb2 as m
from tests.support.errors import expect, violations
from tests.support.market import (
    B, P, a_slot, balanced, book, booking_reaches, business, eur, owner_with_dog, payment_reaches, payments,
    slots,
)
from tests.support.platform import Api, module_of

CODE = grpc.StatusCode


@contextlib.contextmanager
def clocks_moved(api: Api, by: dt.timedelta):
    modules = [module_of(api, n) for n in ("marketplace", "payment")]
    saved = [mod.clock for mod in modules]
    for mod, base in zip(modules, saved, strict=False):
        mod.clock = lambda base=base: base() + by
    try:
        yield
    finally:
        for mod, base in zip(modules, saved, strict=False):
            mod.clock = base


async def accepted_and_paid(api: Api, *, pm="pm_card_visa", **service):
    seller = await api.signup("Seller")
    biz, svc = await business(api, seller, **service)
    owner, pet = await owner_with_dog(api)
    slot = await a_slot(api, svc.name)
    b = await book(api, owner, svc.name, slot.start_time, [pet], pm=pm)
    await api.marketplace.AcceptBooking(m.AcceptBookingRequest(name=b.name), metadata=seller.md)
    return seller, owner, biz, svc, b


async def test_book_accept_complete_and_payout_after_the_hold(market: Api):
    api = market
    seller = await api.signup("Seller")
    biz, svc = await business(api, seller, price=2500)
    owner, pet = await owner_with_dog(api)
    slot = await a_slot(api, svc.name)
    assert slot.remaining_capacity == 1
    b = await book(api, owner, svc.name, slot.start_time, [pet])
    assert (b.state, b.payment_status, b.price) == (B.STATE_REQUESTED, B.PAYMENT_STATUS_NONE, eur(2500))
    assert b.cancellation_policy == m.CANCELLATION_POLICY_FLEXIBLE and b.time_zone == "Europe/Berlin"
    assert not b.payment_method  # input only
    # The slot is full now.
    day = slot.start_time.ToDatetime().date()
    assert slot.start_time not in [s.start_time for s in await slots(api, svc.name, day, day)]

    accepted = (await api.marketplace.AcceptBooking(m.AcceptBookingRequest(name=b.name), metadata=seller.md)).booking
    assert (accepted.state, accepted.payment_status) == (B.STATE_ACCEPTED, B.PAYMENT_STATUS_PENDING)
    charge = await payment_reaches(api, owner, b.name, P.KIND_CHARGE, P.STATE_SUCCEEDED)
    assert charge.idempotency_key == f"{b.name}:charge" and charge.amount == eur(2500)
    await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_PAID)
    assert (await balanced(api, api.admin))["EUR"]["escrow"] <= -2500

    await api.marketplace.StartBooking(m.StartBookingRequest(name=b.name), metadata=seller.md)
    done = (await api.marketplace.CompleteBooking(m.CompleteBookingRequest(name=b.name), metadata=seller.md)).booking
    assert done.state == B.STATE_COMPLETED
    payout = await payment_reaches(api, seller, b.name, P.KIND_PAYOUT, P.STATE_PENDING)
    assert payout.due_time.ToDatetime() > dt.datetime.utcnow() + dt.timedelta(hours=47)
    # Earned at once (escrow released to the business, the fee to the platform), paid after the hold.
    account = f"business/{biz.name.removeprefix('businesses/')}"

    async def earned():
        return (await balanced(api, api.admin))["EUR"].get(account) == -2250
    from tests.support.matching import until
    await until(earned, what="the business's earning")
    with clocks_moved(api, dt.timedelta(hours=48, minutes=1)):
        paid = await payment_reaches(api, seller, b.name, P.KIND_PAYOUT, P.STATE_SUCCEEDED)
    assert (paid.amount, paid.fee) == (eur(2250), eur(250))
    ledger = (await balanced(api, api.admin))["EUR"]
    assert ledger[account] == 0
    provider = module_of(api, "payment").local
    assert [k for k, _, _ in provider.moved if k == "payout"]


async def test_a_declined_card_cancels_the_booking_and_frees_the_slot(market: Api):
    api = market
    seller, owner, _, svc, b = await accepted_and_paid(api, pm="pm_card_chargeDeclined")
    failed = await payment_reaches(api, owner, b.name, P.KIND_CHARGE, P.STATE_FAILED)
    assert failed.failure_reason == "card_declined"
    got = await booking_reaches(api, owner, b.name, state=B.STATE_CANCELLED)
    assert (got.payment_status, got.cancelled_by) == (B.PAYMENT_STATUS_FAILED, B.CANCELLER_PLATFORM)
    day = b.start_time.ToDatetime().date()
    assert b.start_time in [s.start_time for s in await slots(api, svc.name, day, day)]
    await expect(CODE.FAILED_PRECONDITION, api.marketplace.StartBooking(m.StartBookingRequest(name=b.name),
                                                                        metadata=seller.md), "BOOKING_STATE")
    await balanced(api, api.admin)


async def test_cancellations_refund_by_policy(market: Api):
    api = market
    # Owner cancels a strict booking 10 days ahead: before the cut-off (noon 7 days before), all back.
    _, owner, _, _, b = await accepted_and_paid(api, kind=m.SERVICE_KIND_GROOMING, policy=m.CANCELLATION_POLICY_STRICT)
    await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_PAID)
    await api.marketplace.CancelBooking(m.CancelBookingRequest(name=b.name), metadata=owner.md)
    got = await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_REFUNDED)
    assert (got.refunded, got.cancelled_by) == (eur(2500), B.CANCELLER_OWNER)

    # Eight days later the same policy refunds half; the other half goes to the business after the hold.
    seller, owner, biz, _, b = await accepted_and_paid(api, kind=m.SERVICE_KIND_GROOMING,
                                                       policy=m.CANCELLATION_POLICY_STRICT, price=2501)
    await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_PAID)
    with clocks_moved(api, dt.timedelta(days=8)):
        await api.marketplace.CancelBooking(m.CancelBookingRequest(name=b.name), metadata=owner.md)
        got = await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_PARTIALLY_REFUNDED)
        assert got.refunded == eur(1251)  # half, the odd cent to the owner
    with clocks_moved(api, dt.timedelta(days=10, hours=1)):
        payout = await payment_reaches(api, seller, b.name, P.KIND_PAYOUT, P.STATE_SUCCEEDED)
    assert (payout.amount.units * 100 + payout.amount.nanos // 10_000_000, payout.fee) == (1250 - 125, eur(125))

    # The business cancelling refunds in full whatever the policy.
    seller, owner, _, _, b = await accepted_and_paid(api, kind=m.SERVICE_KIND_TRAINING,
                                                     policy=m.CANCELLATION_POLICY_STRICT)
    await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_PAID)
    with clocks_moved(api, dt.timedelta(days=9)):
        await api.marketplace.CancelBooking(m.CancelBookingRequest(name=b.name), metadata=seller.md)
        got = await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_REFUNDED)
    assert got.cancelled_by == B.CANCELLER_BUSINESS
    # Walks are flexible whatever the service asked for.
    _, svc = await business(api, seller, kind=m.SERVICE_KIND_WALKING, policy=m.CANCELLATION_POLICY_STRICT)
    assert svc.cancellation_policy == m.CANCELLATION_POLICY_FLEXIBLE
    await balanced(api, api.admin)


async def test_a_provider_outage_during_the_charge_is_retried_and_never_doubles_it(market: Api):
    api = market
    provider = module_of(api, "payment").local
    provider.down_before, provider.down_after = 2, 1  # refused twice, then charged but the answer lost
    _, owner, _, _, b = await accepted_and_paid(api)
    got = await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_PAID)
    assert got.state == B.STATE_ACCEPTED
    (charge,) = [x for x in await payments(api, owner, b.name) if x.kind == P.KIND_CHARGE]
    # Two refusals, then the charge whose answer was lost: its webhook or the retry with the same key settles it.
    assert charge.attempts >= 3
    moved = [ref for kind, ref, _ in provider.moved if kind == "charge" and ref == charge.provider_reference]
    assert len(moved) == 1
    await balanced(api, api.admin)


async def test_requests_expire_after_a_day_unanswered(market: Api):
    api = market
    seller = await api.signup("Seller")
    _, svc = await business(api, seller)
    owner, pet = await owner_with_dog(api)
    slot = await a_slot(api, svc.name)
    b = await book(api, owner, svc.name, slot.start_time, [pet])
    assert b.expire_time.ToDatetime() - b.create_time.ToDatetime() == dt.timedelta(hours=24)
    with clocks_moved(api, dt.timedelta(hours=24, minutes=1)):
        await booking_reaches(api, owner, b.name, state=B.STATE_EXPIRED)
    await expect(CODE.FAILED_PRECONDITION, api.marketplace.AcceptBooking(
        m.AcceptBookingRequest(name=b.name), metadata=seller.md), "BOOKING_STATE")
    day = slot.start_time.ToDatetime().date()
    assert slot.start_time in [s.start_time for s in await slots(api, svc.name, day, day)]


async def test_retries_with_a_request_id_book_once(market: Api):
    api = market
    seller = await api.signup("Seller")
    _, svc = await business(api, seller, capacity=2)
    owner, pet = await owner_with_dog(api)
    slot = await a_slot(api, svc.name)
    first = await book(api, owner, svc.name, slot.start_time, [pet], request_id="r-1")
    again = await book(api, owner, svc.name, slot.start_time, [pet], request_id="r-1")
    assert first == again
    day = slot.start_time.ToDatetime().date()
    left = {s.start_time.seconds: s.remaining_capacity for s in await slots(api, svc.name, day, day)}
    assert left[slot.start_time.seconds] == 1
    accept = m.AcceptBookingRequest(name=first.name, request_id="a")
    a1 = await api.marketplace.AcceptBooking(accept, metadata=seller.md)
    a2 = await api.marketplace.AcceptBooking(accept, metadata=seller.md)
    assert a1 == a2
    await payment_reaches(api, owner, first.name, P.KIND_CHARGE, P.STATE_SUCCEEDED)
    assert len([x for x in await payments(api, owner, first.name) if x.kind == P.KIND_CHARGE]) == 1


async def test_the_last_place_goes_to_one_of_many_concurrent_requests(market: Api):
    import asyncio
    api = market
    seller = await api.signup("Seller")
    _, svc = await business(api, seller, capacity=1)
    owner = await api.signup("Many dogs")
    from tests.support.pets import create, dog
    pets = [(await create(api, owner, dog(f"D{i}"))).name for i in range(20)]
    slot = await a_slot(api, svc.name)
    results = await asyncio.gather(*(book(api, owner, svc.name, slot.start_time, [p]) for p in pets),
                                   return_exceptions=True)
    won = [r for r in results if isinstance(r, m.Booking)]
    lost = [r for r in results if not isinstance(r, m.Booking)]
    assert len(won) == 1 and len(lost) == 19
    assert all(isinstance(e, grpc.aio.AioRpcError) and e.code() == CODE.FAILED_PRECONDITION for e in lost)


async def test_other_users_bookings_are_refused(market: Api):
    api = market
    seller = await api.signup("Seller")
    biz, svc = await business(api, seller)
    owner, pet = await owner_with_dog(api)
    stranger = await api.signup("Stranger")
    slot = await a_slot(api, svc.name)
    b = await book(api, owner, svc.name, slot.start_time, [pet])
    for call in (api.marketplace.GetBooking(m.GetBookingRequest(name=b.name), metadata=stranger.md),
                 api.marketplace.AcceptBooking(m.AcceptBookingRequest(name=b.name), metadata=stranger.md),
                 api.marketplace.CancelBooking(m.CancelBookingRequest(name=b.name), metadata=stranger.md)):
        await expect(CODE.NOT_FOUND, call)
    # The owner cannot accept their own request; a stranger cannot list the business's bookings.
    await expect(CODE.PERMISSION_DENIED, api.marketplace.AcceptBooking(m.AcceptBookingRequest(name=b.name),
                                                                       metadata=owner.md), "BUSINESS_ONLY")
    await expect(CODE.PERMISSION_DENIED, api.marketplace.ListBookings(m.ListBookingsRequest(business=biz.name),
                                                                      metadata=stranger.md))
    assert [x.name for x in (await api.marketplace.ListBookings(m.ListBookingsRequest(business=biz.name),
                                                                metadata=seller.md)).bookings] == [b.name]
    assert await payments(api, stranger, b.name) == []
    # Another owner's pet cannot be booked; nor can a business book itself.
    _, their_pet = await owner_with_dog(api, "Other owner")
    other = await a_slot(api, svc.name, days_ahead=11)
    err = await expect(CODE.INVALID_ARGUMENT, book(api, stranger, svc.name, other.start_time, [their_pet]))
    assert "booking.pets[0]" in violations(err)
    await expect(CODE.PERMISSION_DENIED, api.marketplace.UpdateBusiness(m.UpdateBusinessRequest(
        business=m.Business(name=biz.name, display_name="Mine"), update_mask={"paths": ["display_name"]}),
        metadata=stranger.md))
    await expect(CODE.PERMISSION_DENIED, api.marketplace.VerifyBusiness(m.VerifyBusinessRequest(name=biz.name),
                                                                        metadata=seller.md))
    assert (await api.marketplace.VerifyBusiness(m.VerifyBusinessRequest(name=biz.name),
                                                 metadata=api.admin.md)).business.verified
    assert (await api.marketplace.GetBusiness(m.GetBusinessRequest(name=biz.name))).business.payout_account == ""


async def test_bad_input_is_refused_with_the_field(market: Api):
    api = market
    seller = await api.signup("Seller")
    cases = [
        (m.Business(display_name="X", location={"latitude": 1, "longitude": 2}, time_zone="CEST"),
         "business.time_zone"),
        (m.Business(display_name="X", location={"latitude": 91, "longitude": 2}, time_zone="UTC"),
         "business.location"),
        (m.Business(display_name="", location={"latitude": 1, "longitude": 2}, time_zone="UTC"),
         "business.display_name"),
    ]
    for b, field in cases:
        err = await expect(CODE.INVALID_ARGUMENT, api.marketplace.CreateBusiness(
            m.CreateBusinessRequest(business=b), metadata=seller.md))
        assert field in violations(err), violations(err)
    biz, svc = await business(api, seller)
    bad_services = [
        (m.Service(display_name="S", kind=m.SERVICE_KIND_WALKING, price={"currency_code": "XXX", "units": 1},
                   duration_minutes=60, capacity=1), "service.price"),
        (m.Service(display_name="S", kind=m.SERVICE_KIND_WALKING, price={"currency_code": "EUR", "nanos": 1},
                   duration_minutes=60, capacity=1), "service.price"),
        (m.Service(display_name="S", kind=m.SERVICE_KIND_WALKING, price=eur(100), duration_minutes=5, capacity=1),
         "service.duration_minutes"),
        (m.Service(display_name="S", kind=99, price=eur(100), duration_minutes=60, capacity=1), "service.kind"),
        (m.Service(display_name="S", kind=m.SERVICE_KIND_WALKING, price=eur(100), duration_minutes=60, capacity=0),
         "service.capacity"),
    ]
    for s, field in bad_services:
        err = await expect(CODE.INVALID_ARGUMENT, api.marketplace.CreateService(
            m.CreateServiceRequest(parent=biz.name, service=s), metadata=seller.md))
        assert field in violations(err), violations(err)
    overlapping = [m.OpeningHours(day=1, open_time={"hours": 9}, close_time={"hours": 12}),
                   m.OpeningHours(day=1, open_time={"hours": 11}, close_time={"hours": 13})]
    await expect(CODE.INVALID_ARGUMENT, api.marketplace.UpdateAvailability(m.UpdateAvailabilityRequest(
        availability=m.Availability(name=f"{svc.name}/availability", weekly_hours=overlapping)), metadata=seller.md))
    await expect(CODE.INVALID_ARGUMENT, api.marketplace.UpdateAvailability(m.UpdateAvailabilityRequest(
        availability=m.Availability(name=f"{svc.name}/availability", weekly_hours=[m.OpeningHours(
            day=1, open_time={"hours": 25}, close_time={"hours": 26})])), metadata=seller.md))
    owner, pet = await owner_with_dog(api)
    slot = await a_slot(api, svc.name)
    off_grid = slot.start_time.__class__(seconds=slot.start_time.seconds + 60)
    err = await expect(CODE.INVALID_ARGUMENT, book(api, owner, svc.name, off_grid, [pet]))
    assert "booking.start_time" in violations(err)
    err = await expect(CODE.INVALID_ARGUMENT, book(api, owner, svc.name, slot.start_time, []))
    assert "booking.pets" in violations(err)
    err = await expect(CODE.INVALID_ARGUMENT, book(api, owner, svc.name, slot.start_time, [pet], pm=""))
    assert "booking.payment_method" in violations(err)
    err = await expect(CODE.INVALID_ARGUMENT, book(api, owner, svc.name, slot.start_time, ["pets/nope"]))
    await expect(CODE.NOT_FOUND, book(api, owner, f"{biz.name}/services/{'0' * 32}", slot.start_time, [pet]))
    await expect(CODE.INVALID_ARGUMENT, api.marketplace.ListAvailableSlots(m.ListAvailableSlotsRequest(
        service=svc.name, start_date={"year": 2030, "month": 1, "day": 1},
        end_date={"year": 2030, "month": 6, "day": 1})))
    await expect(CODE.INVALID_ARGUMENT, api.marketplace.ListAvailableSlots(m.ListAvailableSlotsRequest(
        service=svc.name, start_date={"year": 2030, "month": 2, "day": 30},
        end_date={"year": 2030, "month": 3, "day": 1})))
    await expect(CODE.INVALID_ARGUMENT, api.marketplace.SearchBusinesses(m.SearchBusinessesRequest(
        kind=m.SERVICE_KIND_WALKING)))


async def test_search_finds_nearby_businesses_by_kind_nearest_first(market: Api):
    api = market
    seller = await api.signup("Seller")
    here = {"latitude": 10.0, "longitude": 10.0}
    near, _ = await business(api, seller, where={"latitude": 10.01, "longitude": 10.0})
    far, _ = await business(api, seller, where={"latitude": 10.1, "longitude": 10.0})
    await business(api, seller, where={"latitude": 10.0, "longitude": 10.0}, kind=m.SERVICE_KIND_GROOMING)
    await business(api, seller, where={"latitude": 12.0, "longitude": 10.0})  # 222 km away
    found = (await api.marketplace.SearchBusinesses(m.SearchBusinessesRequest(
        kind=m.SERVICE_KIND_WALKING, near=here, radius_km=50))).businesses
    assert [b.name for b in found] == [near.name, far.name]
    assert 1.0 < found[0].distance_km < 1.2 and found[0].kinds == [m.SERVICE_KIND_WALKING]
    page1 = await api.marketplace.SearchBusinesses(m.SearchBusinessesRequest(
        kind=m.SERVICE_KIND_WALKING, near=here, radius_km=50, page_size=1))
    page2 = await api.marketplace.SearchBusinesses(m.SearchBusinessesRequest(
        kind=m.SERVICE_KIND_WALKING, near=here, radius_km=50, page_size=1, page_token=page1.next_page_token))
    assert [b.name for b in (*page1.businesses, *page2.businesses)] == [near.name, far.name]


async def test_a_seller_lists_the_bookings_of_all_their_businesses_with_the_wildcard(market: Api):
    """`businesses/-`: the incoming bookings of every business the caller owns, not their own as an owner, and
    nobody else's."""
    api = market
    seller = await api.signup("Two shops")
    _, walks = await business(api, seller)
    _, sits = await business(api, seller)
    owner, pet = await owner_with_dog(api)
    first = await book(api, owner, walks.name, (await a_slot(api, walks.name)).start_time, [pet])
    second = await book(api, owner, sits.name, (await a_slot(api, sits.name, days_ahead=3)).start_time, [pet])
    other_seller = await api.signup("Other shop")
    _, elsewhere = await business(api, other_seller)
    await book(api, owner, elsewhere.name, (await a_slot(api, elsewhere.name, days_ahead=5)).start_time, [pet])
    every = m.ListBookingsRequest(business="businesses/-")
    assert [b.name for b in (await api.marketplace.ListBookings(every, metadata=seller.md)).bookings] == \
        [second.name, first.name]
    assert (await api.marketplace.ListBookings(every, metadata=owner.md)).bookings == []
    accepted = m.ListBookingsRequest(business="businesses/-", states=[B.STATE_ACCEPTED])
    assert (await api.marketplace.ListBookings(accepted, metadata=seller.md)).bookings == []
