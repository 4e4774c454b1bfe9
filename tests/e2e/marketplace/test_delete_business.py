"""DeleteBusiness (AIP-135, soft): refused while a booking is in progress, and (without force) while
any is requested or accepted; with force those are cancelled by the business with everything
refunded. A deleted business leaves search and cannot be booked or changed; its owner still reads
it (with delete_time), others get NOT_FOUND; its history and the ledger stay whole."""
from __future__ import annotations

from google.type import latlng_pb2
import grpc

from petplatform.marketplace.v1 import marketplace_pb2 as m
from tests.support.errors import expect
from tests.support.market import (
    B, P, a_slot, balanced, book, booking, booking_reaches, business, owner_with_dog, payment_reaches,
)
from tests.support.platform import Api

CODE = grpc.StatusCode
MUNICH = latlng_pb2.LatLng(latitude=48.137, longitude=11.575)  # no other test's businesses here


async def search(api: Api) -> list[str]:
    found = await api.marketplace.SearchBusinesses(m.SearchBusinessesRequest(
        kind=m.SERVICE_KIND_WALKING, near=MUNICH, radius_km=2, page_size=100))
    return [b.name for b in found.businesses]


async def delete(api: Api, who, name: str, *, force: bool = False, request_id: str = "") -> m.Business:
    return (await api.marketplace.DeleteBusiness(m.DeleteBusinessRequest(
        name=name, force=force, request_id=request_id), metadata=who.md)).business


async def test_a_business_with_bookings_is_deleted_only_with_force_which_refunds_them_all(market: Api):
    api = market
    seller = await api.signup("Seller")
    biz, svc = await business(api, seller, price=2500, where=MUNICH)
    owner, pet = await owner_with_dog(api)
    paid = await book(api, owner, svc.name, (await a_slot(api, svc.name, days_ahead=20)).start_time, [pet])
    await api.marketplace.AcceptBooking(m.AcceptBookingRequest(name=paid.name), metadata=seller.md)
    await booking_reaches(api, owner, paid.name, payment_status=B.PAYMENT_STATUS_PAID)
    asked = await book(api, owner, svc.name, (await a_slot(api, svc.name, days_ahead=21)).start_time, [pet])
    assert biz.name in await search(api)

    stranger = await api.signup("Stranger")
    await expect(CODE.PERMISSION_DENIED, delete(api, stranger, biz.name))
    refused = await expect(CODE.FAILED_PRECONDITION, delete(api, seller, biz.name), "BUSINESS_HAS_OPEN_BOOKINGS")
    assert "2 open booking(s)" in refused.details()
    assert (await booking(api, owner, paid.name)).state == B.STATE_ACCEPTED  # nothing changed

    gone = await delete(api, seller, biz.name, force=True, request_id="delete-1")
    assert gone.HasField("delete_time") and gone.name == biz.name
    assert (await delete(api, seller, biz.name, force=True, request_id="delete-1")) == gone  # a retry
    # Its customers get everything back, whatever the policy: the business cancelled.
    got = await booking_reaches(api, owner, paid.name, state=B.STATE_CANCELLED,
                                payment_status=B.PAYMENT_STATUS_REFUNDED)
    assert got.cancelled_by == B.CANCELLER_BUSINESS and got.refunded == got.price
    refund = await payment_reaches(api, owner, paid.name, P.KIND_REFUND, P.STATE_SUCCEEDED)
    assert refund.amount == got.price
    assert (await booking(api, owner, asked.name)).state == B.STATE_CANCELLED

    # Out of search; not found by others, nor bookable, nor changeable; its owner still reads it.
    assert biz.name not in await search(api)
    await expect(CODE.NOT_FOUND, api.marketplace.GetBusiness(m.GetBusinessRequest(name=biz.name),
                                                             metadata=owner.md))
    mine = (await api.marketplace.GetBusiness(m.GetBusinessRequest(name=biz.name), metadata=seller.md)).business
    assert mine.delete_time == gone.delete_time
    await expect(CODE.NOT_FOUND, book(api, owner, svc.name, paid.start_time, [pet]))
    await expect(CODE.NOT_FOUND, api.marketplace.UpdateBusiness(m.UpdateBusinessRequest(
        business=m.Business(name=biz.name, display_name="Back"), update_mask={"paths": ["display_name"]}),
        metadata=seller.md))
    await expect(CODE.NOT_FOUND, delete(api, seller, biz.name))  # deleted already
    await balanced(api, api.admin)


async def test_a_booking_in_progress_keeps_the_business_even_with_force(market: Api):
    api = market
    seller = await api.signup("Seller")
    biz, svc = await business(api, seller, where=MUNICH)
    owner, pet = await owner_with_dog(api)
    b = await book(api, owner, svc.name, (await a_slot(api, svc.name, days_ahead=22)).start_time, [pet])
    await api.marketplace.AcceptBooking(m.AcceptBookingRequest(name=b.name), metadata=seller.md)
    await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_PAID)
    await api.marketplace.StartBooking(m.StartBookingRequest(name=b.name), metadata=seller.md)
    await expect(CODE.FAILED_PRECONDITION, delete(api, seller, biz.name, force=True), "BUSINESS_HAS_OPEN_BOOKINGS")
    assert biz.name in await search(api)
    # Finished, it goes; the completed booking's history and payout stay.
    await api.marketplace.CompleteBooking(m.CompleteBookingRequest(name=b.name), metadata=seller.md)
    await delete(api, seller, biz.name)
    assert (await booking(api, owner, b.name)).state == B.STATE_COMPLETED
    await payment_reaches(api, seller, b.name, P.KIND_PAYOUT, P.STATE_PENDING)
    assert biz.name not in await search(api)


async def test_delete_business_bad_names(market: Api):
    api = market
    seller = await api.signup("Seller")
    await expect(CODE.INVALID_ARGUMENT, delete(api, seller, "shops/1"))
    await expect(CODE.INVALID_ARGUMENT, delete(api, seller, ""))
    await expect(CODE.NOT_FOUND, delete(api, seller, "businesses/" + "0" * 32))
