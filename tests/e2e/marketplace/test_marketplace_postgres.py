"""On PostgreSQL and RabbitMQ: twenty concurrent requests for the last place give exactly one
booking (the slot row's lock and CHECK), a booking is charged, refunded and balanced, and reviews
written by both sides at once are published once each."""
from __future__ import annotations

import asyncio

import grpc

from petplatform.marketplace.v1 import marketplace_pb2 as m
from tests.support.market import B, P, a_slot, balanced, book, booking_reaches, business, payment_reaches, slots
from tests.support.pets import create, dog
from tests.support.platform import Api


async def test_twenty_concurrent_requests_for_the_last_place_make_one_booking(real_market: Api):
    api = real_market
    seller = await api.signup("Seller")
    _, svc = await business(api, seller, capacity=3)
    owner = await api.signup("Many dogs")
    pets = [(await create(api, owner, dog(f"D{i}"))).name for i in range(22)]
    slot = await a_slot(api, svc.name)
    await book(api, owner, svc.name, slot.start_time, pets[:2])  # two of three places taken
    results = await asyncio.gather(*(book(api, owner, svc.name, slot.start_time, [p]) for p in pets[2:]),
                                   return_exceptions=True)
    won = [r for r in results if isinstance(r, m.Booking)]
    lost = [r for r in results if not isinstance(r, m.Booking)]
    assert len(won) == 1, results
    assert all(isinstance(e, grpc.aio.AioRpcError) and e.code() == grpc.StatusCode.FAILED_PRECONDITION
               for e in lost), lost
    day = slot.start_time.ToDatetime().date()
    assert slot.start_time not in [s.start_time for s in await slots(api, svc.name, day, day)]


async def test_a_booking_is_charged_refunded_and_balanced(real_market: Api):
    api = real_market
    seller = await api.signup("Seller")
    _, svc = await business(api, seller, kind=m.SERVICE_KIND_GROOMING, policy=m.CANCELLATION_POLICY_MODERATE)
    owner = await api.signup("Owner")
    pet = (await create(api, owner, dog())).name
    b = await book(api, owner, svc.name, (await a_slot(api, svc.name)).start_time, [pet])
    await api.marketplace.AcceptBooking(m.AcceptBookingRequest(name=b.name), metadata=seller.md)
    await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_PAID)
    await api.marketplace.CancelBooking(m.CancelBookingRequest(name=b.name), metadata=owner.md)
    await payment_reaches(api, owner, b.name, P.KIND_REFUND, P.STATE_SUCCEEDED)
    await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_REFUNDED)
    ledger = (await balanced(api, api.admin))["EUR"]
    assert ledger["escrow"] == 0 and ledger["cash"] == 0


async def test_both_sides_reviewing_at_once_publish_both_once(real_market: Api):
    from tests.e2e.marketplace.test_reviews import completed, profile, review, seen_by
    from tests.support.matching import until
    api = real_market
    seller, owner, biz, b = await completed(api)
    await asyncio.gather(review(api, owner, b.name, 4), review(api, seller, b.name, 5))
    both = await seen_by(api, owner, b.name)
    assert set(both) == {"owner", "business"} and all(r.published for r in both.values())
    business = (await api.marketplace.GetBusiness(m.GetBusinessRequest(name=biz.name))).business
    assert (business.rating, business.review_count) == (4.0, 1)

    async def counted():
        u = await profile(api, owner, owner.user_id)
        return u if u.review_count == 1 else None
    assert (await until(counted, what="the owner's booking rating over RabbitMQ")).average_rating == 5.0


async def test_a_capacity_cut_racing_bookings_never_overfills_a_slot(real_market: Api):
    """UpdateService holds the service FOR UPDATE and each booking holds it FOR SHARE: a booking sees
    the old capacity or the new one, never a mix, so the slot never holds more than the capacity
    that was in force when its last pet came in."""
    from google.protobuf import field_mask_pb2
    api = real_market
    seller = await api.signup("Seller")
    _, svc = await business(api, seller, kind=m.SERVICE_KIND_DAY_CARE, capacity=10)
    owner = await api.signup("Pack")
    pets = [(await create(api, owner, dog(f"P{i}"))).name for i in range(10)]
    slot = await a_slot(api, svc.name)
    cut = api.marketplace.UpdateService(m.UpdateServiceRequest(
        service=m.Service(name=svc.name, capacity=2), update_mask=field_mask_pb2.FieldMask(paths=["capacity"])),
        metadata=seller.md)
    results = await asyncio.gather(cut, *(book(api, owner, svc.name, slot.start_time, [p]) for p in pets),
                                   return_exceptions=True)
    won = [r for r in results[1:] if isinstance(r, m.Booking)]
    if isinstance(results[0], m.UpdateServiceResponse):  # the cut went in while at most two were booked
        assert len(won) <= 2, results
    else:  # refused: more than two were already in
        assert isinstance(results[0], grpc.aio.AioRpcError), results[0]
        assert results[0].code() == grpc.StatusCode.FAILED_PRECONDITION
        assert len(won) == 10  # and nothing stopped the rest
    day = slot.start_time.ToDatetime().date()
    left = {s.start_time.ToDatetime(): s.remaining_capacity for s in await slots(api, svc.name, day, day)}
    capacity = (await api.marketplace.GetService(m.GetServiceRequest(name=svc.name))).service.capacity
    assert left.get(slot.start_time.ToDatetime(), 0) == max(capacity - len(won), 0)
