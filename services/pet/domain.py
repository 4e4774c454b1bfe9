"""Pet rules that need no database: who may change a pet, field validation, dates and ages, photo content
checks."""
from __future__ import annotations

import contextlib
import datetime as dt
import io
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from google.type import date_pb2
from PIL import Image, UnidentifiedImageError

from mesh import errors
from mesh.principal import Principal
from mesh.resources import check_text
from petplatform.common.v1 import animal_pb2
from petplatform.pet.v1 import pet_pb2

MAX_PHOTO_BYTES = 5 * 1024 * 1024
# A few bytes can claim many pixels (6300×6300 fits in 154 KB of PNG): 16 MP, room for a 12 MP phone
# photo, is checked from the header before anything is decoded.
MAX_PHOTO_PIXELS = 4096 * 4096
# Decoding takes far more memory than the upload, and its share depends on the format (decode_bytes).
# At most PHOTO_DECODERS decodes run at once, and together they hold at most DECODE_BUDGET_BYTES,
# exactly what the costliest accepted photo needs (so it runs alone); the others wait their turn.
PHOTO_DECODERS = 2
WORST_BYTES_PER_PIXEL = 16
DECODE_BUDGET_BYTES = MAX_PHOTO_PIXELS * WORST_BYTES_PER_PIXEL  # 256 MiB
photo_decoders = ThreadPoolExecutor(PHOTO_DECODERS, thread_name_prefix="photo-decode")
MAX_PHOTOS_PER_PET = 20
PHOTO_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
WRITABLE = {"display_name", "species", "breed", "sex", "size", "birth_date", "description", "status", "location",
            "good_with_children", "good_with_dogs", "good_with_cats", "listing", "energy"}
MAX_REQUEST_ID_LENGTH = 64


def may_change(caller: Principal, owner_id: str) -> bool:
    """Who may change a pet, its photos and health records, and read those records: its owner, and admins."""
    return caller.user_id == owner_id or caller.is_admin


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


def decode_bytes(img: Image.Image) -> int:
    """The most memory decoding `img` takes, measured with Pillow 13 (tests/bench/photo_memory.py): 4 bytes a
    pixel; 2 more a band for the coefficients a progressive JPEG keeps; 16 for WebP, whose decoder keeps
    two canvases and hands Pillow a copy."""
    per_pixel = 4
    if img.format == "WEBP":
        per_pixel = WORST_BYTES_PER_PIXEL
    elif img.format == "JPEG" and img.info.get("progressive"):
        per_pixel += 2 * len(img.getbands())
    return img.width * img.height * per_pixel


class DecodeBudget:
    """Bytes the decoding threads may hold together: a decode waits until its share is free."""

    def __init__(self, total: int):
        self.free = total
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def take(self, size: int) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: self.free >= size)
            self.free -= size
        try:
            yield
        finally:
            with self._changed:
                self.free += size
                self._changed.notify_all()


decode_budget = DecodeBudget(DECODE_BUDGET_BYTES)


def too_many_pixels(detail: str) -> errors.ApiError:
    return errors.invalid_argument(
        ("content", f"{detail}; at most {MAX_PHOTO_PIXELS:,} pixels (4096×4096) are accepted: scale it down"),
        reason="PHOTO_TOO_LARGE")


def check_photo(content: bytes) -> tuple[str, int, int]:
    """(content type, width, height) of an acceptable image, judged by its bytes, never by a name.
    Blocks while it waits for its share of the decode budget: run it in photo_decoders."""
    if len(content) > MAX_PHOTO_BYTES:
        raise errors.invalid_argument(("content", f"photo is larger than {MAX_PHOTO_BYTES // (1024 * 1024)} MiB"),
                                      reason="PHOTO_TOO_LARGE")
    try:
        with Image.open(io.BytesIO(content)) as img:  # reads the header, decodes nothing
            kind, (width, height) = img.format, img.size
            if kind not in PHOTO_TYPES:
                raise errors.invalid_argument(("content", f"{kind} images are not accepted; use JPEG, PNG or WebP"),
                                              reason="PHOTO_TYPE")
            if width * height > MAX_PHOTO_PIXELS:
                raise too_many_pixels(f"image is {width}×{height} pixels")
            cost = decode_bytes(img)
            img.verify()
        with decode_budget.take(cost), Image.open(io.BytesIO(content)) as img:
            img.load()  # verify() misses truncated pixel data; decoding it does not
    except errors.ApiError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own guard, far above ours, trips inside open() before we see the size (the warning
        # only where warnings are errors).
        raise too_many_pixels("image has far too many pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise errors.invalid_argument(("content", "not a valid JPEG, PNG or WebP image"),
                                      reason="PHOTO_INVALID") from None
    return PHOTO_TYPES[kind], width, height
