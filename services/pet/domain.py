"""Pet rules that need no database: field validation, dates and ages, photo content checks."""
from __future__ import annotations

import datetime as dt
import io

from google.type import date_pb2
from PIL import Image, UnidentifiedImageError

from mesh import errors
from mesh.resources import check_text
from petplatform.common.v1 import animal_pb2
from petplatform.pet.v1 import pet_pb2

MAX_PHOTO_BYTES = 5 * 1024 * 1024
MAX_PHOTO_PIXELS = 40_000_000  # refuse decompression bombs before decoding
MAX_PHOTOS_PER_PET = 20
PHOTO_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
WRITABLE = {"display_name", "species", "breed", "sex", "size", "birth_date", "description", "status", "location",
            "good_with_children", "good_with_dogs", "good_with_cats"}


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
    for field, enum in (("sex", pet_pb2.Pet.Sex), ("size", animal_pb2.PetSize), ("status", pet_pb2.Pet.Status)):
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


def check_photo(content: bytes) -> tuple[str, int, int]:
    """(content type, width, height) of an acceptable image, judged by its bytes, never by a name."""
    if len(content) > MAX_PHOTO_BYTES:
        raise errors.invalid_argument(("content", f"photo is larger than {MAX_PHOTO_BYTES // (1024 * 1024)} MiB"),
                                      reason="PHOTO_TOO_LARGE")
    try:
        with Image.open(io.BytesIO(content)) as img:
            kind, (width, height) = img.format, img.size
            if kind not in PHOTO_TYPES:
                raise errors.invalid_argument(("content", f"{kind} images are not accepted; use JPEG, PNG or WebP"),
                                              reason="PHOTO_TYPE")
            if width * height > MAX_PHOTO_PIXELS:
                raise errors.invalid_argument(("content", "image has too many pixels"), reason="PHOTO_TOO_LARGE")
            img.verify()
        with Image.open(io.BytesIO(content)) as img:
            img.load()  # verify() misses truncated pixel data; decoding it does not
    except errors.ApiError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise errors.invalid_argument(("content", "not a valid JPEG, PNG or WebP image"),
                                      reason="PHOTO_INVALID") from None
    return PHOTO_TYPES[kind], width, height
