"""Pet rules that need no database: who may change a pet, field validation, dates and ages, photo content
checks."""
from __future__ import annotations

import datetime as dt

from google.type import date_pb2

from mesh import errors, media
from mesh.principal import Principal
from mesh.resources import check_text
from petplatform.common.v1 import access_pb2, animal_pb2
from petplatform.pet.v1 import pet_pb2

MAX_PHOTO_BYTES = 5 * 1024 * 1024
MAX_PHOTOS_PER_PET = 20
WRITABLE = {"display_name", "species", "breed", "sex", "size", "birth_date", "description", "status", "location",
            "good_with_children", "good_with_dogs", "good_with_cats", "listing", "energy"}
MAX_REQUEST_ID_LENGTH = 64


def may_change(caller: Principal, owner_id: str) -> bool:
    """Who may change a pet, its photos and health records, and read those records: its owner, and admins."""
    return caller.user_id == owner_id or caller.is_admin


def sees_hidden(caller: Principal | None, owner_id: str) -> bool:
    """Who sees a pet moderation held or hid: its owner (who is told why) and staff (support and up)."""
    return caller is not None and (caller.user_id == owner_id or caller.admitted(access_pb2.ACCESS_SUPPORT))


def visible_to(pet: pet_pb2.Pet, caller: Principal | None) -> bool:
    """Whether the caller may see this pet at all (GetPet, ListPets, WatchPets)."""
    return (pet.moderation in (pet_pb2.Pet.MODERATION_UNSPECIFIED, pet_pb2.Pet.MODERATION_VISIBLE)
            or sees_hidden(caller, pet.owner.removeprefix("users/")))


def listing(value: int) -> int:
    """A pet's stored listing: unspecified reads as ADOPTION (every pet listed before playdates was)."""
    return value or pet_pb2.Pet.LISTING_ADOPTION


def to_date(d: date_pb2.Date) -> tuple[dt.date, bool]:
    """(date, day known); a Date with day 0 means 'that month'. Raises ValueError when invalid."""
    if not d.year or not d.month:
        raise ValueError("year and month are required")
    return dt.date(d.year, d.month, d.day or 1), bool(d.day)


def from_date(value: dt.date, day_known: bool = True) -> date_pb2.Date:
    return date_pb2.Date(year=value.year, month=value.month, day=value.day if day_known else 0)


def months_between(earlier: dt.date, later: dt.date) -> int:
    months = (later.year - earlier.year) * 12 + later.month - earlier.month
    return max(0, months - (1 if later.day < earlier.day else 0))


def months_ago(today: dt.date, months: int) -> dt.date:
    """The date `months` whole months before today (clamped to the month's last day)."""
    y, m = divmod(today.year * 12 + today.month - 1 - months, 12)
    m += 1
    for day in (today.day, 30, 29, 28):
        try:
            return dt.date(y, m, day)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def check_date(violations: list, field: str, d: date_pb2.Date, today: dt.date) -> None:
    try:
        value, _ = to_date(d)
    except ValueError as e:
        violations.append((field, f"not a valid date: {e}"))
        return
    if value > today:
        violations.append((field, "must not be in the future"))


def check_pet(pet: pet_pb2.Pet, fields: set[str], today: dt.date, prefix: str = "pet") -> None:
    """Raises INVALID_ARGUMENT naming every bad field among `fields`."""
    v: list = []
    if "display_name" in fields:
        check_text(v, f"{prefix}.display_name", pet.display_name.strip(), min_len=1, max_len=64)
    if "species" in fields and (pet.species == 0 or pet.species not in animal_pb2.Species.values()):
        v.append((f"{prefix}.species", "required: one of the Species values"))
    if "breed" in fields:
        check_text(v, f"{prefix}.breed", pet.breed, max_len=64)
    if "description" in fields:
        check_text(v, f"{prefix}.description", pet.description, max_len=5000)
    for field, enum in (("sex", pet_pb2.Pet.Sex), ("size", animal_pb2.PetSize), ("status", pet_pb2.Pet.Status),
                        ("listing", pet_pb2.Pet.Listing), ("energy", animal_pb2.EnergyLevel)):
        if field in fields and getattr(pet, field) not in enum.values():
            v.append((f"{prefix}.{field}", "unknown value"))
    if "birth_date" in fields and pet.HasField("birth_date"):
        check_date(v, f"{prefix}.birth_date", pet.birth_date, today)
    if "location" in fields and pet.HasField("location"):
        if not -90 <= pet.location.latitude <= 90:
            v.append((f"{prefix}.location.latitude", "must be between -90 and 90"))
        if not -180 <= pet.location.longitude <= 180:
            v.append((f"{prefix}.location.longitude", "must be between -180 and 180"))
    if v:
        raise errors.invalid_argument(*v)


def check_request_id(request_id: str) -> None:
    if len(request_id) > MAX_REQUEST_ID_LENGTH:
        raise errors.invalid_argument(("request_id", f"must have at most {MAX_REQUEST_ID_LENGTH} characters"))


def check_health_record(rec: pet_pb2.HealthRecord, today: dt.date) -> None:
    """Raises INVALID_ARGUMENT naming every bad field of a new health record."""
    v: list = []
    if rec.kind == 0 or rec.kind not in pet_pb2.HealthRecord.Kind.values():
        v.append(("health_record.kind", "required: one of the Kind values"))
    check_text(v, "health_record.title", rec.title.strip(), min_len=1, max_len=200)
    check_text(v, "health_record.notes", rec.notes, max_len=5000)
    check_text(v, "health_record.veterinarian", rec.veterinarian, max_len=200)
    if not rec.HasField("date"):
        v.append(("health_record.date", "required"))
    else:
        check_date(v, "health_record.date", rec.date, today)
    if v:
        raise errors.invalid_argument(*v)


def check_photo(content: bytes) -> tuple[str, int, int]:
    """(content type, width, height) of an acceptable photo (mesh.media's image rules), judged by its
    bytes. Blocks while it waits for its share of the decode budget: run it in media.decoders."""
    checked = media.check_image(content, max_bytes=MAX_PHOTO_BYTES, reason="PHOTO")
    return checked.content_type, checked.width, checked.height
