"""The recommender's own copy of what it ranks with, kept from events: pets (features, and a live
popularity weight) and interactions (who liked, matched or adopted what).

Every change to a pet row takes the next number of one counter row, whose lock is held until commit:
numbers are therefore committed in order, and a replica catches up on changes with `seq > last seen`."""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.sql import Row, UtcDateTime, utcnow

metadata = sa.MetaData()

pets = sa.Table(
    "pets", metadata,
    sa.Column("pet_id", sa.String(32), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False, unique=True),
    sa.Column("known", sa.Boolean, nullable=False),  # False: only heard of through interactions so far
    sa.Column("deleted", sa.Boolean, nullable=False),
    sa.Column("species", sa.SmallInteger, nullable=False),
    sa.Column("size", sa.SmallInteger, nullable=False),
    sa.Column("energy", sa.SmallInteger, nullable=False),
    sa.Column("birth_month", sa.Integer, nullable=True),  # year * 12 + month - 1
    sa.Column("latitude", sa.Float, nullable=True),
    sa.Column("longitude", sa.Float, nullable=True),
    sa.Column("good_with_children", sa.Boolean, nullable=False),
    sa.Column("good_with_pets", sa.Boolean, nullable=False),
    sa.Column("listing", sa.SmallInteger, nullable=False),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("owner_id", sa.String(32), nullable=False),
    sa.Column("popularity", sa.Float, nullable=False),
    sa.Column("update_time", UtcDateTime, nullable=True),  # the pet's own, from the event: older events lose
)

interactions = sa.Table(
    "interactions", metadata,
    sa.Column("user_id", sa.String(32), primary_key=True),
    sa.Column("pet_id", sa.String(32), primary_key=True),
    sa.Column("source", sa.String(16), primary_key=True),  # "swipe", "match" or "adoption"
    sa.Column("action", sa.SmallInteger, nullable=False),  # the SwipeAction of a swipe, else 0
    sa.Column("weight", sa.Float, nullable=False),
    sa.Column("swipe", sa.String(64), nullable=False),  # the swipe's name, for swipe.undone
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Index("ix_interactions_pet", "pet_id"),
)

counters = sa.Table(
    "counters", metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

PET_COLUMNS = ("species", "size", "energy", "birth_month", "latitude", "longitude", "good_with_children",
               "good_with_pets", "listing", "status", "owner_id")
EMPTY_PET = {"species": 0, "size": 0, "energy": 0, "birth_month": None, "latitude": None, "longitude": None,
             "good_with_children": False, "good_with_pets": False, "listing": 0, "status": 0, "owner_id": ""}


async def next_seq(s: AsyncSession) -> int:
    """The next change number; the counter row (made by the first migration) stays locked until this
    transaction ends."""
    await s.execute(counters.update().where(counters.c.name == "pets").values(value=counters.c.value + 1))
    return int(await s.scalar(sa.select(counters.c.value).where(counters.c.name == "pets")) or 0)


async def find_pet(s: AsyncSession, pet_id: str) -> Row | None:
    return (await s.execute(sa.select(pets).where(pets.c.pet_id == pet_id))).first()


async def put_pet(s: AsyncSession, pet_id: str, *, features: dict, update_time: dt.datetime | None) -> None:
    """Creates or updates a pet from pet.created/updated; an event older than what is stored, or about a
    deleted pet, changes nothing."""
    row = await find_pet(s, pet_id)
    if row is not None and (row.deleted or (row.known and row.update_time and update_time
                                            and update_time < row.update_time)):
        return
    values = dict(features, known=True, deleted=False, update_time=update_time, seq=await next_seq(s))
    if row is None:
        await s.execute(pets.insert().values(pet_id=pet_id, popularity=0.0, **values))
    else:
        await s.execute(pets.update().where(pets.c.pet_id == pet_id).values(**values))


async def delete_pet(s: AsyncSession, pet_id: str) -> None:
    """Kept as a tombstone, so a late pet.updated cannot bring it back."""
    row = await find_pet(s, pet_id)
    values = dict(deleted=True, seq=await next_seq(s))
    if row is None:
        await s.execute(pets.insert().values(pet_id=pet_id, known=False, popularity=0.0, update_time=None,
                                             **EMPTY_PET, **values))
    else:
        await s.execute(pets.update().where(pets.c.pet_id == pet_id).values(**values))


UNDONE = -1  # the action of a swipe undone: kept (weight 0) so a late or repeated swipe.recorded of it is ignored


async def record(s: AsyncSession, *, user_id: str, pet_id: str, source: str, action: int, weight: float,
                 swipe: str = "", create_time: dt.datetime | None = None) -> None:
    """Sets the (user, pet, source) interaction and the pet's popularity. Of two swipes on one pet the
    later one stands; a swipe already undone stays undone."""
    key = (interactions.c.user_id == user_id, interactions.c.pet_id == pet_id, interactions.c.source == source)
    when = create_time or utcnow()
    row = (await s.execute(sa.select(interactions.c.swipe, interactions.c.action, interactions.c.create_time)
                           .where(*key))).first()
    if row is not None and source == "swipe" and (row.swipe == swipe and row.action == UNDONE
                                                  or row.swipe != swipe and when < row.create_time):
        return
    values = dict(action=action, weight=weight, swipe=swipe, create_time=when)
    if row is not None:
        await s.execute(interactions.update().where(*key).values(**values))
    else:
        await s.execute(interactions.insert().values(user_id=user_id, pet_id=pet_id, source=source, **values))
    await _refresh_popularity(s, pet_id)


async def undo_swipe(s: AsyncSession, *, user_id: str, pet_id: str, swipe: str, create_time: dt.datetime) -> None:
    """Marks the swipe of that name undone, even when its swipe.recorded has not arrived yet (a later swipe
    on the same pet stays)."""
    await record(s, user_id=user_id, pet_id=pet_id, source="swipe", action=UNDONE, weight=0.0, swipe=swipe,
                 create_time=create_time)


async def _refresh_popularity(s: AsyncSession, pet_id: str) -> None:
    total = await s.scalar(sa.select(sa.func.coalesce(sa.func.sum(interactions.c.weight), 0.0))
                           .where(interactions.c.pet_id == pet_id))
    seq = await next_seq(s)
    if await find_pet(s, pet_id) is None:  # heard of before its pet.created: a placeholder until then
        await s.execute(pets.insert().values(pet_id=pet_id, known=False, deleted=False, update_time=None,
                                             popularity=float(total or 0.0), seq=seq, **EMPTY_PET))
    else:
        await s.execute(pets.update().where(pets.c.pet_id == pet_id).values(popularity=float(total or 0.0), seq=seq))


async def pets_changed_since(s: AsyncSession, seq: int, limit: int = 5000) -> Sequence[Row]:
    return (await s.execute(sa.select(pets).where(pets.c.seq > seq).order_by(pets.c.seq).limit(limit))).all()


async def interactions_of(s: AsyncSession, user_id: str) -> Sequence[Row]:
    return (await s.execute(sa.select(interactions.c.pet_id, interactions.c.weight)
                            .where(interactions.c.user_id == user_id, interactions.c.weight > 0))).all()


async def all_interactions(s: AsyncSession) -> Sequence[Row]:
    """Every positive interaction, for training."""
    return (await s.execute(sa.select(interactions.c.user_id, interactions.c.pet_id, interactions.c.weight,
                                      interactions.c.create_time).where(interactions.c.weight > 0))).all()
