"""Pet's tables (listings, their photos, whose bytes live in the blob port, and health records) and the
queries on them."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from mesh import pagination
from mesh.sql import Row, UtcDateTime, rows_changed

metadata = sa.MetaData()

pets = sa.Table(
    "pets", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("owner_id", sa.String(32), nullable=False),
    sa.Column("request_id", sa.String(64), nullable=True),
    sa.Column("display_name", sa.String(64), nullable=False),
    sa.Column("species", sa.SmallInteger, nullable=False),
    sa.Column("breed", sa.String(64), nullable=False, default=""),
    sa.Column("sex", sa.SmallInteger, nullable=False, default=0),
    sa.Column("size", sa.SmallInteger, nullable=False, default=0),
    sa.Column("birth_date", sa.Date, nullable=True),  # a month-only date is stored as its first day
    sa.Column("birth_day_known", sa.Boolean, nullable=False, default=True),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("latitude", sa.Float, nullable=True),
    sa.Column("longitude", sa.Float, nullable=True),
    sa.Column("good_with_children", sa.Boolean, nullable=False, default=False),
    sa.Column("good_with_dogs", sa.Boolean, nullable=False, default=False),
    sa.Column("good_with_cats", sa.Boolean, nullable=False, default=False),
    sa.Column("listing", sa.SmallInteger, nullable=False, server_default="1"),  # never 0: ADOPTION when unsaid
    sa.Column("energy", sa.SmallInteger, nullable=False, server_default="0"),
    # Case-folded in Python (search.keys), so every database and the in-memory matcher agree.
    sa.Column("breed_key", sa.String(256), nullable=False, server_default=""),  # folding may triple a length
    sa.Column("search_text", sa.Text, nullable=False, server_default=""),
    # Rows in photos, kept in step by the photo RPCs: the per-pet limit is one conditional UPDATE of it.
    sa.Column("photo_count", sa.Integer, nullable=False, server_default="0"),
    # Pet.Moderation (1: visible); why it is held or hidden, and what did it: a case (`cases/{id}`) or the
    # owner's suspension (`users/{id}`), so that only its own reversal shows the pet again.
    sa.Column("moderation", sa.SmallInteger, nullable=False, server_default="1"),
    sa.Column("moderation_reason", sa.String(500), nullable=False, server_default=""),
    sa.Column("moderation_case", sa.String(64), nullable=True),
    # The hold standing under a hide (its case or `users/{id}`, and its reason): a reversed hide falls back
    # to it, as the admin service sees it (a held case whose hide is reversed is held pending a new decision).
    sa.Column("moderation_hold_case", sa.String(64), nullable=True),
    sa.Column("moderation_hold_reason", sa.String(500), nullable=False, server_default=""),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("update_time", UtcDateTime, nullable=False),
    sa.UniqueConstraint("owner_id", "request_id", name="uq_pets_owner_request"),
    sa.Index("ix_pets_listing", "create_time", "id"),
    sa.Index("ix_pets_species_status", "species", "status"),
    sa.Index("ix_pets_owner", "owner_id"),
    sa.Index("ix_pets_location", "latitude", "longitude"),
    sa.Index("ix_pets_breed_key", "breed_key"),
)

photos = sa.Table(
    "photos", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("pet_id", sa.String(32), sa.ForeignKey("pets.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("content_type", sa.String(32), nullable=False),
    sa.Column("size_bytes", sa.Integer, nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("create_time", UtcDateTime, nullable=False),
)

health_records = sa.Table(
    "health_records", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("pet_id", sa.String(32), sa.ForeignKey("pets.id", ondelete="CASCADE"), nullable=False),
    sa.Column("kind", sa.SmallInteger, nullable=False),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("notes", sa.Text, nullable=False, default=""),
    sa.Column("date", sa.Date, nullable=False),
    sa.Column("veterinarian", sa.String(200), nullable=False, default=""),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Index("ix_health_records_pet_date", "pet_id", "date", "id"),
)


# --- pets ---

async def find_pet_id_by_request(s: AsyncSession, *, owner_id: str, request_id: str) -> str | None:
    """The pet an owner already created with this request_id (CreatePet retried), if any."""
    return await s.scalar(sa.select(pets.c.id).where(pets.c.owner_id == owner_id, pets.c.request_id == request_id))


async def add_pet(s: AsyncSession, *, pet_id: str, owner_id: str, request_id: str | None, status: int,
                  create_time: dt.datetime, columns: Mapping[str, Any]) -> None:
    """`columns`: the pet's other columns. IntegrityError when the owner already used request_id."""
    await s.execute(pets.insert().values(id=pet_id, owner_id=owner_id, request_id=request_id, status=status,
                                         create_time=create_time, update_time=create_time, **columns))


# The hot reads' statements, built once (bound parameters): SQLAlchemy then only looks their compiled form up.
_PET = sa.select(pets).where(pets.c.id == sa.bindparam("pet_id"))
_PETS = sa.select(pets).where(pets.c.id.in_(sa.bindparam("pet_ids", expanding=True)))
_PHOTOS_OF_PET = sa.select(photos).where(photos.c.pet_id == sa.bindparam("pet_id")).order_by(
    photos.c.create_time, photos.c.id)
_PHOTOS_OF_PETS = sa.select(photos).where(photos.c.pet_id.in_(sa.bindparam("pet_ids", expanding=True))).order_by(
    photos.c.create_time, photos.c.id)


async def find_pet(s: AsyncSession, pet_id: str) -> Row | None:
    """A pet's row."""
    return (await s.execute(_PET, {"pet_id": pet_id})).first()


async def find_pets_by_id(s: AsyncSession, pet_ids: Sequence[str]) -> Sequence[Row]:
    """The rows of these pets (those that exist), in no particular order."""
    return (await s.execute(_PETS, {"pet_ids": list(pet_ids)})).all()


async def find_pet_owner(s: AsyncSession, pet_id: str, *, lock: bool = False) -> Row | None:
    """(id, owner_id, photo_count) of a pet; `lock`: the row stays locked (FOR UPDATE) until the transaction
    ends."""
    query = sa.select(pets.c.id, pets.c.owner_id, pets.c.photo_count).where(pets.c.id == pet_id)
    return (await s.execute(query.with_for_update() if lock else query)).first()


async def find_pets(s: AsyncSession, statement: sa.Select[*tuple[Any, ...]],
                    params: Mapping[str, Any]) -> Sequence[Row]:
    """A page of a search (search.sql gives the statement and its parameters)."""
    return (await s.execute(statement, params)).all()


async def find_pets_of_owner(s: AsyncSession, owner_id: str) -> Sequence[str]:
    """The ids of an owner's pets, their rows locked until the transaction ends."""
    return (await s.execute(sa.select(pets.c.id).where(pets.c.owner_id == owner_id).order_by(pets.c.id)
                            .with_for_update())).scalars().all()


async def moderation_case(s: AsyncSession, pet_id: str) -> str | None:
    """What holds or hides a pet (a case, or `users/{id}` for its owner's suspension); None when visible."""
    return await s.scalar(sa.select(pets.c.moderation_case).where(pets.c.id == pet_id))


async def moderation_of(s: AsyncSession, pet_id: str) -> Row | None:
    """(moderation_case, moderation_hold_case, moderation_hold_reason) of a pet; None when it is gone."""
    return (await s.execute(sa.select(pets.c.moderation_case, pets.c.moderation_hold_case,
                                      pets.c.moderation_hold_reason).where(pets.c.id == pet_id))).first()


async def update_pet(s: AsyncSession, pet_id: str, values: Mapping[str, Any]) -> None:
    await s.execute(pets.update().where(pets.c.id == pet_id).values(**values))


async def delete_pet(s: AsyncSession, pet_id: str) -> Sequence[str]:
    """Deletes a pet with its photos and health records; returns the photos' ids (their blobs are left to
    the caller)."""
    photo_ids = (await s.execute(sa.select(photos.c.id).where(photos.c.pet_id == pet_id))).scalars().all()
    await s.execute(health_records.delete().where(health_records.c.pet_id == pet_id))
    await s.execute(photos.delete().where(photos.c.pet_id == pet_id))
    await s.execute(pets.delete().where(pets.c.id == pet_id))
    return photo_ids


# --- photos ---

async def find_photos(s: AsyncSession, pet_ids: Sequence[str]) -> Sequence[Row]:
    """The photos of these pets, oldest first."""
    if len(pet_ids) == 1:  # no expanding IN for one
        return (await s.execute(_PHOTOS_OF_PET, {"pet_id": pet_ids[0]})).all()
    return (await s.execute(_PHOTOS_OF_PETS, {"pet_ids": list(pet_ids)})).all()


async def take_photo_slot(s: AsyncSession, pet_id: str, *, limit: int) -> bool:
    """Counts one more photo for the pet unless it has `limit` already: False then. One conditional UPDATE,
    atomic on PostgreSQL and SQLite alike (SQLite ignores FOR UPDATE), which also holds the pet's row (write)
    lock until the transaction ends."""
    return await rows_changed(s, pets.update().where(pets.c.id == pet_id, pets.c.photo_count < limit).values(
        photo_count=pets.c.photo_count + 1)) == 1


async def add_photo(s: AsyncSession, *, photo_id: str, pet_id: str, content_type: str, size_bytes: int, width: int,
                    height: int, create_time: dt.datetime) -> None:
    """Its slot is taken first (take_photo_slot)."""
    await s.execute(photos.insert().values(id=photo_id, pet_id=pet_id, content_type=content_type,
                                           size_bytes=size_bytes, width=width, height=height,
                                           create_time=create_time))


async def delete_photo(s: AsyncSession, *, pet_id: str, photo_id: str) -> bool:
    """Deletes a pet's photo and gives its slot back; False when the pet has no such photo."""
    if await rows_changed(s, photos.delete().where(photos.c.id == photo_id, photos.c.pet_id == pet_id)) != 1:
        return False
    await s.execute(pets.update().where(pets.c.id == pet_id).values(photo_count=pets.c.photo_count - 1))
    return True


# --- health records ---

async def add_health_record(s: AsyncSession, *, record_id: str, pet_id: str, kind: int, title: str, notes: str,
                            date: dt.date, veterinarian: str, create_time: dt.datetime) -> None:
    await s.execute(health_records.insert().values(id=record_id, pet_id=pet_id, kind=kind, title=title, notes=notes,
                                                   date=date, veterinarian=veterinarian, create_time=create_time))


async def list_health_records(s: AsyncSession, pet_id: str, *, after: pagination.Position | None,
                              size: int) -> Sequence[Row]:
    """A page of a pet's health records, latest date first; `after`: (date, id) of the last one seen."""
    query = pagination.select_page(sa.select(health_records).where(health_records.c.pet_id == pet_id), after,
                                   health_records.c.date, health_records.c.id, descending=True, size=size)
    return (await s.execute(query)).all()
