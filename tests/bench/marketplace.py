"""Marketplace cases of `make bench` (issue 11): bookings/s of concurrent CreateBooking calls on one
service's slots (each call also asks the pet service about the pet, as every booking does), then
the p99 of ListAvailableSlots for a month of that business, busy by then with those bookings, with
64 calls in flight and with one (its latency when not queued)."""
from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable

import grpc
from google.type import latlng_pb2, money_pb2

from petplatform.auth.v1 import auth_pb2, auth_pb2_grpc
from petplatform.common.v1 import animal_pb2
from petplatform.marketplace.v1 import marketplace_pb2 as m
from petplatform.marketplace.v1 import marketplace_pb2_grpc
from petplatform.pet.v1 import pet_pb2, pet_pb2_grpc
from tests.support.platform import PASSWORD

BOOK, SLOTS = "CreateBooking, one service's slots", "ListAvailableSlots, a busy month"
SLOTS_ALONE = "ListAvailableSlots, a busy month, 1 in flight"
IN_FLIGHT = {SLOTS_ALONE: 1}  # its latency alone, not queued behind 63 others
PER_SLOT = 8  # consecutive calls aimed at one slot: some of the concurrent calls contend for its row
DAYS = 30


def day_of(d: dt.date) -> dict:
    return {"year": d.year, "month": d.month, "day": d.day}


async def cases(ch: grpc.aio.Channel, owner_md: tuple) -> list[tuple[str, Callable[[], Awaitable[object]]]]:
    """The cases, once a business (of a user of their own) with one 15-minute service open 08:00-20:00
    every day, capacity 50, and a pet of the caller exist."""
    auth = auth_pb2_grpc.AuthServiceStub(ch)
    market = marketplace_pb2_grpc.MarketplaceServiceStub(ch)
    email = f"bench-seller-{uuid.uuid4().hex[:12]}@example.com"
    await auth.Register(auth_pb2.RegisterRequest(email=email, password=PASSWORD, display_name="Bench walker"))
    token = (await auth.Login(auth_pb2.LoginRequest(email=email, password=PASSWORD))).access_token
    seller = (("authorization", f"Bearer {token}"),)
    biz = (await market.CreateBusiness(m.CreateBusinessRequest(business=m.Business(
        display_name="Bench walks", location=latlng_pb2.LatLng(latitude=35.0, longitude=139.7),
        time_zone="Asia/Tokyo", payout_account="acct_bench")), metadata=seller)).business
    svc = (await market.CreateService(m.CreateServiceRequest(parent=biz.name, service=m.Service(
        display_name="Walk", kind=m.SERVICE_KIND_WALKING, price=money_pb2.Money(currency_code="JPY", units=2000),
        duration_minutes=15, capacity=50)), metadata=seller)).service
    await market.UpdateAvailability(m.UpdateAvailabilityRequest(availability=m.Availability(
        name=f"{svc.name}/availability", weekly_hours=[
            m.OpeningHours(day=d, open_time={"hours": 8}, close_time={"hours": 20}) for d in range(1, 8)])),
        metadata=seller)
    pet = (await pet_pb2_grpc.PetServiceStub(ch).CreatePet(pet_pb2.CreatePetRequest(pet=pet_pb2.Pet(
        display_name="Booked", species=animal_pb2.SPECIES_DOG)), metadata=owner_md)).pet.name
    first = dt.date.today() + dt.timedelta(days=1)
    month = m.ListAvailableSlotsRequest(service=svc.name, start_date=day_of(first),
                                        end_date=day_of(first + dt.timedelta(days=DAYS)))
    starts = [s.start_time for s in (await market.ListAvailableSlots(month)).slots]
    n = 0

    def book() -> Awaitable[object]:
        nonlocal n
        n += 1
        start = starts[(n // PER_SLOT) % len(starts)]
        return market.CreateBooking(m.CreateBookingRequest(booking=m.Booking(
            service=svc.name, pets=[pet], start_time=start, payment_method="pm_card_visa")), metadata=owner_md)

    return [(BOOK, book), (SLOTS, lambda: market.ListAvailableSlots(month)),
            (SLOTS_ALONE, lambda: market.ListAvailableSlots(month))]
