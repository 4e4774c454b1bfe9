"""Pets and photos to create through PetService."""
from __future__ import annotations

import datetime as dt
import io

from google.type import date_pb2, latlng_pb2
from PIL import Image

from petplatform.common.v1 import animal_pb2
from petplatform.pet.v1 import pet_pb2
from tests.support.platform import Api, Session

TOKYO = latlng_pb2.LatLng(latitude=35.6812, longitude=139.7671)


def image(fmt: str, size=(64, 48)) -> bytes:
    """A small, valid image in Pillow format `fmt` (PNG, JPEG, WEBP...)."""
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 120, 40)).save(buf, fmt)
    return buf.getvalue()


def years_ago(years: int, months: int = 0) -> date_pb2.Date:
    d = dt.date.today()
    total = d.year * 12 + d.month - 1 - years * 12 - months
    return date_pb2.Date(year=total // 12, month=total % 12 + 1, day=1)


def dog(name="Mochi", **kw) -> pet_pb2.Pet:
    return pet_pb2.Pet(display_name=name, species=animal_pb2.SPECIES_DOG, **kw)


def cat(name="Tama", **kw) -> pet_pb2.Pet:
    return pet_pb2.Pet(display_name=name, species=animal_pb2.SPECIES_CAT, **kw)


async def create(api: Api, session: Session, pet: pet_pb2.Pet, **kw) -> pet_pb2.Pet:
    return (await api.pet.CreatePet(pet_pb2.CreatePetRequest(pet=pet, **kw), metadata=session.md)).pet
