"""Businesses, services, hours and bookings to create through MarketplaceService, and the checks on
payments and the ledger every flow ends with."""
from __future__ import annotations

import datetime as dt

from google.type import latlng_pb2, money_pb2

from petplatform.marketplace.v1 import marketplace_pb2 as m
from petplatform.payment.v1 import payment_pb2 as p
from tests.support.matching import until
from tests.support.pets import create, dog
from tests.support.platform import Api, Session, module_of

ZONE = "Europe/Berlin"
BERLIN = latlng_pb2.LatLng(latitude=52.52, longitude=13.405)
ADMIN_EMAIL = "admin@market.test"
B = m.Booking
P = p.Payment


def eur(cents: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="EUR", units=cents // 100, nanos=(cents % 100) * 10_000_000)


def every_day(open_hour: int = 9, close_hour: int = 17) -> list[m.OpeningHours]:
    return [m.OpeningHours(day=d, open_time={"hours": open_hour}, close_time={"hours": close_hour})
            for d in range(1, 8)]


async def business(api: Api, owner: Session, *, kind=m.SERVICE_KIND_WALKING, capacity: int = 1, price: int = 2500,
                   policy=m.CANCELLATION_POLICY_UNSPECIFIED, tz: str = ZONE, where=BERLIN, minutes: int = 60,
                   hours: list[m.OpeningHours] | None = None, payout_account: str = "acct_local_1"):
    """A business of `owner` with one service open every day 09:00-17:00: (business, service)."""
    b = (await api.marketplace.CreateBusiness(m.CreateBusinessRequest(business=m.Business(
        display_name="Happy Paws", location=where, time_zone=tz, service_radius_km=5,
        payout_account=payout_account)), metadata=owner.md)).business
    svc = (await api.marketplace.CreateService(m.CreateServiceRequest(parent=b.name, service=m.Service(
        display_name="Walk", kind=kind, price=eur(price), duration_minutes=minutes, capacity=capacity,
        cancellation_policy=policy)), metadata=owner.md)).service
    await api.marketplace.UpdateAvailability(m.UpdateAvailabilityRequest(availability=m.Availability(
        name=f"{svc.name}/availability", weekly_hours=hours if hours is not None else every_day())),
        metadata=owner.md)
    return b, svc


async def slots(api: Api, service: str, first: dt.date, last: dt.date, pets: int = 0) -> list[m.Slot]:
    return list((await api.marketplace.ListAvailableSlots(m.ListAvailableSlotsRequest(
        service=service, start_date={"year": first.year, "month": first.month, "day": first.day},
        end_date={"year": last.year, "month": last.month, "day": last.day}, pets=pets))).slots)


async def a_slot(api: Api, service: str, days_ahead: int = 10) -> m.Slot:
    day = dt.date.today() + dt.timedelta(days=days_ahead)
    return (await slots(api, service, day, day))[0]


async def owner_with_dog(api: Api, name: str = "Owner") -> tuple[Session, str]:
    who = await api.signup(name)
    return who, (await create(api, who, dog())).name


async def book(api: Api, owner: Session, service: str, start, pets: list[str], *, pm: str = "pm_card_visa",
               request_id: str = "") -> m.Booking:
    return (await api.marketplace.CreateBooking(m.CreateBookingRequest(booking=m.Booking(
        service=service, pets=pets, start_time=start, payment_method=pm), request_id=request_id),
        metadata=owner.md)).booking


async def booking(api: Api, who: Session, name: str) -> m.Booking:
    return (await api.marketplace.GetBooking(m.GetBookingRequest(name=name), metadata=who.md)).booking


async def booking_reaches(api: Api, who: Session, name: str, **want) -> m.Booking:
    async def check():
        b = await booking(api, who, name)
        return b if all(getattr(b, k) == v for k, v in want.items()) else None
    return await until(check, what=f"{name} with {want}")


async def payments(api: Api, who: Session, name: str) -> list[p.Payment]:
    return list((await api.payment.ListPayments(p.ListPaymentsRequest(booking=name), metadata=who.md)).payments)


async def payment_reaches(api: Api, who: Session, booking_name: str, kind: int, state: int) -> p.Payment:
    async def check():
        return next((x for x in await payments(api, who, booking_name) if x.kind == kind and x.state == state), None)
    return await until(check, what=f"a {P.Kind.Name(kind)} in {P.State.Name(state)} for {booking_name}")


async def balanced(api: Api, admin: Session) -> dict[str, dict[str, int]]:
    """The ledger report, checked: every currency sums to zero. {currency: {account: minor units}}."""
    report = await api.payment.GetLedgerReport(p.GetLedgerReportRequest(), metadata=admin.md)
    out = {}
    for c in report.currencies:
        assert c.total.units == 0 and c.total.nanos == 0, c
        out[c.currency_code] = {a.account: a.balance.units * 100 + a.balance.nanos // 10_000_000 for a in c.accounts}
    return out


def move_clocks(api: Api, by: dt.timedelta) -> None:
    """Moves the marketplace's and the payment service's clocks forward."""
    for name in ("marketplace", "payment"):
        module = module_of(api, name)
        base = module.clock
        module.clock = lambda base=base: base() + by
