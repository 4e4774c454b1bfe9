"""Marketplace rules that need no database: validation of businesses, services, hours and bookings."""
from __future__ import annotations

import datetime as dt
import math

from google.type import date_pb2, latlng_pb2, timeofday_pb2

from mesh import errors
from mesh.money import MoneyError, to_minor
from mesh.resources import check_display_name, check_text
from petplatform.common.v1 import animal_pb2
from petplatform.marketplace.v1 import marketplace_pb2 as m
from services.marketplace import calendar

MAX_REQUEST_ID_LENGTH = 64
MAX_PETS_PER_BOOKING = 10
MAX_SLOT_DAYS = 62
DEFAULT_RADIUS_KM = 25.0
MAX_RADIUS_KM = 200.0
EARTH_RADIUS_KM = 6371.0
BUSINESS_WRITABLE = {"display_name", "description", "location", "service_radius_km", "time_zone", "payout_account"}


def check_request_id(request_id: str) -> None:
    if len(request_id) > MAX_REQUEST_ID_LENGTH:
        raise errors.invalid_argument(("request_id", f"must have at most {MAX_REQUEST_ID_LENGTH} characters"))


def check_location(violations: list, field: str, where: latlng_pb2.LatLng) -> None:
    if not (-90 <= where.latitude <= 90) or not (-180 <= where.longitude <= 180) or \
            not all(math.isfinite(v) for v in (where.latitude, where.longitude)):
        violations.append((field, "latitude must be within ±90 and longitude within ±180"))


def check_business(b: m.Business, fields: set[str], prefix: str = "business") -> None:
    v: list[tuple[str, str]] = []
    if "display_name" in fields:
        check_display_name(v, f"{prefix}.display_name", b.display_name)
    if "description" in fields:
        check_text(v, f"{prefix}.description", b.description, max_len=2000)
    if "location" in fields:
        if not b.HasField("location"):
            v.append((f"{prefix}.location", "required"))
        else:
            check_location(v, f"{prefix}.location", b.location)
    if "service_radius_km" in fields and not (0 <= b.service_radius_km <= 100):
        v.append((f"{prefix}.service_radius_km", "must be between 0 and 100"))
    if "time_zone" in fields:
        try:
            calendar.zone(b.time_zone)
        except ValueError as e:
            v.append((f"{prefix}.time_zone", str(e)))
    if "payout_account" in fields:
        check_text(v, f"{prefix}.payout_account", b.payout_account, max_len=128)
    if v:
        raise errors.invalid_argument(*v)


SERVICE_WRITABLE = {"display_name", "kind", "price", "duration_minutes", "capacity", "species", "sizes",
                    "cancellation_policy"}


def check_service(svc: m.Service, fields: set[str] = SERVICE_WRITABLE) -> tuple[int, str]:
    """The price as (minor units, currency) once the `fields` of the service are valid ((0, "")
    when the price is not one of them)."""
    v: list[tuple[str, str]] = []
    if "display_name" in fields:
        check_display_name(v, "service.display_name", svc.display_name)
    if "kind" in fields and (svc.kind == 0 or svc.kind not in m.ServiceKind.values()):
        v.append(("service.kind", "must be a defined, specified kind"))
    price: tuple[int, str] = (0, "")
    if "price" in fields:
        try:
            price = to_minor(svc.price)
            if price[0] <= 0:
                v.append(("service.price", "must be more than zero"))
        except MoneyError as e:
            v.append(("service.price", str(e)))
    if "duration_minutes" in fields and not 15 <= svc.duration_minutes <= 1440:
        v.append(("service.duration_minutes", "must be between 15 and 1440"))
    if "capacity" in fields and not 1 <= svc.capacity <= 50:
        v.append(("service.capacity", "must be between 1 and 50"))
    if "species" in fields and any(s == 0 or s not in animal_pb2.Species.values() for s in svc.species):
        v.append(("service.species", "must hold only defined, specified species"))
    if "sizes" in fields and any(s == 0 or s not in animal_pb2.PetSize.values() for s in svc.sizes):
        v.append(("service.sizes", "must hold only defined, specified sizes"))
    if "cancellation_policy" in fields and svc.cancellation_policy not in m.CancellationPolicy.values():
        v.append(("service.cancellation_policy", "unknown policy"))
    if v:
        raise errors.invalid_argument(*v)
    return price


def minute_of(t: timeofday_pb2.TimeOfDay, field: str, *, closing: bool) -> int:
    """Minutes after midnight; 24:00 only as a closing time."""
    if t.seconds or t.nanos or not (0 <= t.minutes < 60) or not (0 <= t.hours <= 24) or \
            (t.hours == 24 and (t.minutes or not closing)):
        raise errors.invalid_argument(
            (field, "must be a whole minute from 00:00 to 23:59 (24:00 to close at midnight)"))
    return t.hours * 60 + t.minutes


def check_hours(a: m.Availability) -> tuple[list[tuple[int, int, int]], list[dt.date]]:
    """((weekday 0 Monday, open minute, close minute), closed dates) of a valid availability."""
    hours: list[tuple[int, int, int]] = []
    for i, h in enumerate(a.weekly_hours):
        field = f"availability.weekly_hours[{i}]"
        if not 1 <= h.day <= 7:
            raise errors.invalid_argument((f"{field}.day", "must be MONDAY to SUNDAY"))
        opens = minute_of(h.open_time, f"{field}.open_time", closing=False)
        closes = minute_of(h.close_time, f"{field}.close_time", closing=True)
        if closes <= opens:
            raise errors.invalid_argument((f"{field}.close_time", "must be after the opening time"))
        hours.append((h.day - 1, opens, closes))  # google.type.DayOfWeek: MONDAY = 1
    by_day = sorted(hours)
    for (d1, _o1, c1), (d2, o2, _c2) in zip(by_day, by_day[1:], strict=False):
        if d1 == d2 and o2 < c1:
            raise errors.invalid_argument(("availability.weekly_hours", "ranges of one day must not overlap"))
    if len(a.closed_dates) > 366:
        raise errors.invalid_argument(("availability.closed_dates", "at most 366 dates"))
    closed = sorted({to_date(d, f"availability.closed_dates[{i}]") for i, d in enumerate(a.closed_dates)})
    return hours, closed


def to_date(d: date_pb2.Date, field: str) -> dt.date:
    try:
        return dt.date(d.year, d.month, d.day)
    except ValueError:
        raise errors.invalid_argument((field, "must be a full, valid date")) from None


def slot_range(request: m.ListAvailableSlotsRequest) -> tuple[dt.date, dt.date]:
    first, last = to_date(request.start_date, "start_date"), to_date(request.end_date, "end_date")
    if last < first:
        raise errors.invalid_argument(("end_date", "must not be before start_date"))
    if (last - first).days > MAX_SLOT_DAYS:
        raise errors.invalid_argument(("end_date", f"at most {MAX_SLOT_DAYS} days after start_date"))
    if not 0 <= request.pets <= MAX_PETS_PER_BOOKING:
        raise errors.invalid_argument(("pets", f"must be between 0 and {MAX_PETS_PER_BOOKING}"))
    return first, last


def check_booking(b: m.Booking) -> list[str]:
    """The pet ids of a valid booking request."""
    v: list[tuple[str, str]] = []
    if not b.service:
        v.append(("booking.service", "required"))
    if not 1 <= len(b.pets) <= MAX_PETS_PER_BOOKING:
        v.append(("booking.pets", f"between 1 and {MAX_PETS_PER_BOOKING} pets"))
    elif len(set(b.pets)) != len(b.pets):
        v.append(("booking.pets", "must not repeat a pet"))
    if not b.HasField("start_time"):
        v.append(("booking.start_time", "required"))
    if not b.payment_method:
        v.append(("booking.payment_method", "required"))
    else:
        check_text(v, "booking.payment_method", b.payment_method, max_len=128)
    check_text(v, "booking.note", b.note, max_len=1000)
    if v:
        raise errors.invalid_argument(*v)
    from mesh.resources import parse_name
    return [parse_name(p, "pets/{}", f"booking.pets[{i}]")[0] for i, p in enumerate(b.pets)]


def distance_km(a: latlng_pb2.LatLng, lat: float, lng: float) -> float:
    r = math.radians
    dlat, dlng = (r(lat) - r(a.latitude)) / 2, (r(lng) - r(a.longitude)) / 2
    h = math.sin(dlat) ** 2 + math.cos(r(a.latitude)) * math.cos(r(lat)) * math.sin(dlng) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, h)))


def csv(values) -> str:
    return ",".join(str(int(v)) for v in values)


def uncsv(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]
