"""Matching's tables: its own copy of the pets (kept from pet events), swipes, interests, matches and
blocks, and the queries on them. Exactly-once rules rest on constraints, not on luck:
- one active swipe per (user, pet, acting pet): `undone` is "" while active, the undo's id after;
- one interest per like (`swipe_id` unique); one match per pair (`pair_key` unique): an accepted
  interest, or two playmates;
- swipes that could make a match lock both pets' rows (lock_pets), so two mutual likes in flight
  are applied one after the other and the second sees the first."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from mesh import pagination
from mesh.sql import Row, UtcDateTime, rows_changed
from petplatform.matching.v1 import matching_pb2
from petplatform.pet.v1 import pet_pb2

metadata = sa.MetaData()

pets = sa.Table(
    "pets", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("owner_id", sa.String(32), nullable=False),
    sa.Column("species", sa.SmallInteger, nullable=False),
    sa.Column("size", sa.SmallInteger, nullable=False),
    sa.Column("birth_date", sa.Date, nullable=True),
    sa.Column("listing", sa.SmallInteger, nullable=False),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("latitude", sa.Float, nullable=True),
    sa.Column("longitude", sa.Float, nullable=True),
    sa.Column("create_time", UtcDateTime, nullable=False),
    # The pet's update_time in the last event applied: older events are stale and dropped.
    sa.Column("version", UtcDateTime, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),  # a tombstone, so late updates stay dropped
    # Set by CompleteAdoption here, apart from `status` (the pet service's, which its event brings later).
    sa.Column("adopted", sa.Boolean, nullable=False, default=False),
    sa.Column("likes", sa.Integer, nullable=False, server_default="0"),  # active likes: the fallback's popularity
    # Held or hidden by moderation (the pet's `moderation`): out of feeds, not to be swiped.
    sa.Column("hidden", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("message", sa.LargeBinary, nullable=False),  # the Pet as its last event had it, for the cards
    sa.Index("ix_pets_feed", "listing", "species"),
    sa.Index("ix_pets_owner", "owner_id"),
)

swipes = sa.Table(
    "swipes", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("user_id", sa.String(32), nullable=False),
    sa.Column("pet_id", sa.String(32), nullable=False),
    sa.Column("acting_pet_id", sa.String(32), nullable=False, server_default=""),  # "" for adoption
    sa.Column("owner_id", sa.String(32), nullable=False),  # the pet's owner when swiped
    sa.Column("action", sa.SmallInteger, nullable=False),
    sa.Column("undone", sa.String(32), nullable=False, server_default=""),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.UniqueConstraint("user_id", "pet_id", "acting_pet_id", "undone", name="uq_swipes_pair"),
    sa.Index("ix_swipes_user_time", "user_id", "create_time"),
)

swipe_days = sa.Table(
    "swipe_days", metadata,
    sa.Column("user_id", sa.String(32), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
)

interests = sa.Table(
    "interests", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("pet_id", sa.String(32), nullable=False),
    sa.Column("user_id", sa.String(32), nullable=False),
    sa.Column("owner_id", sa.String(32), nullable=False),
    sa.Column("swipe_id", sa.String(32), nullable=False, unique=True),
    sa.Column("super_like", sa.Boolean, nullable=False),
    sa.Column("state", sa.SmallInteger, nullable=False),
    sa.Column("match_id", sa.String(32), nullable=False, server_default=""),
    # "1" or "0" (super-like or not), then the create time: listings sort by it, newest first.
    sa.Column("rank", sa.String(32), nullable=False),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("update_time", UtcDateTime, nullable=False),
    sa.Index("ix_interests_owner", "owner_id", "state", "rank"),
    sa.Index("ix_interests_user", "user_id", "state", "rank"),
    sa.Index("ix_interests_pet", "pet_id", "state"),
)

matches = sa.Table(
    "matches", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("kind", sa.SmallInteger, nullable=False),
    sa.Column("user_a", sa.String(32), nullable=False),  # adoption: the owner
    sa.Column("user_b", sa.String(32), nullable=False),
    sa.Column("pet_a", sa.String(32), nullable=False),
    sa.Column("pet_b", sa.String(32), nullable=False, server_default=""),  # "" for adoption
    sa.Column("interest_id", sa.String(32), nullable=False, server_default=""),
    sa.Column("state", sa.SmallInteger, nullable=False),
    sa.Column("pair_key", sa.String(80), nullable=False, unique=True),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("end_time", UtcDateTime, nullable=True),
    sa.Index("ix_matches_user_a", "user_a", "create_time"),
    sa.Index("ix_matches_user_b", "user_b", "create_time"),
    sa.Index("ix_matches_pet_a", "pet_a"),
)

blocks = sa.Table(
    "blocks", metadata,
    sa.Column("blocker_id", sa.String(32), primary_key=True),
    sa.Column("blocked_id", sa.String(32), primary_key=True),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Index("ix_blocks_blocked", "blocked_id"),
)

LIKES = (matching_pb2.SWIPE_ACTION_LIKE, matching_pb2.SWIPE_ACTION_SUPER_LIKE)
ACTIVE = matching_pb2.Match.STATE_ACTIVE


def _insert(s: AsyncSession, table: sa.Table) -> Any:
    """INSERT of the session's dialect, which knows ON CONFLICT."""
    return (postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert)(table)


# --- the pets copy ---

async def find_pet(s: AsyncSession, pet_id: str) -> Row | None:
    return (await s.execute(sa.select(pets).where(pets.c.id == pet_id))).first()


async def lock_pets(s: AsyncSession, pet_ids: Sequence[str]) -> dict[str, Row]:
    """The rows of these pets, locked (FOR UPDATE) in id order until the transaction ends; SQLite's
    writing transactions are serial already."""
    query = sa.select(pets).where(pets.c.id.in_(sorted(set(pet_ids)))).order_by(pets.c.id).with_for_update()
    return {r.id: r for r in (await s.execute(query)).all()}


async def apply_pet(s: AsyncSession, *, pet_id: str, version: dt.datetime, columns: Mapping[str, Any],
                    deleted: bool = False) -> bool:
    """Applies a pet's state from an event of this `version`, unless a newer one was applied already
    or the pet is deleted (a deletion stays, as a tombstone); whether it was applied."""
    row = (await s.execute(sa.select(pets.c.version, pets.c.deleted).where(pets.c.id == pet_id)
                           .with_for_update())).first()
    if row is not None and (row.deleted or row.version >= version):
        return False
    values = {**columns, "version": version, "deleted": deleted}
    if row is None:
        await s.execute(pets.insert().values(id=pet_id, **values))
    else:
        await s.execute(pets.update().where(pets.c.id == pet_id).values(**values))
    return True


async def add_likes(s: AsyncSession, pet_id: str, delta: int) -> None:
    await s.execute(pets.update().where(pets.c.id == pet_id).values(likes=pets.c.likes + delta))


async def mark_adopted(s: AsyncSession, pet_id: str) -> None:
    await s.execute(pets.update().where(pets.c.id == pet_id).values(adopted=True))


def blocked_with(user_id: str) -> sa.CompoundSelect:
    """Users `user_id` blocked or was blocked by, as a condition on an owner id column's values."""
    return sa.union(sa.select(blocks.c.blocked_id).where(blocks.c.blocker_id == user_id),
                    sa.select(blocks.c.blocker_id).where(blocks.c.blocked_id == user_id))


async def feed_candidates(s: AsyncSession, *, user_id: str, listing: int, acting_pet_id: str,
                          species: Sequence[int], sizes: Sequence[int], born_after: dt.date | None,
                          born_on_or_before: dt.date | None, box: tuple[float, float] | None,
                          as_of: dt.datetime, limit: int) -> Sequence[Row]:
    """The pets a feed may show (distance, ranking and paging aside): listed so, not adopted, deleted or hidden,
    not the user's, not of a user blocked either way, not swiped for this acting pet before `as_of`
    (undone swipes aside), not listed after `as_of`. `box`: the latitudes the radius allows."""
    swiped = sa.select(swipes.c.pet_id).where(swipes.c.user_id == user_id, swipes.c.acting_pet_id == acting_pet_id,
                                              swipes.c.undone == "", swipes.c.create_time <= as_of)
    q = sa.select(pets.c.id, pets.c.owner_id, pets.c.latitude, pets.c.longitude, pets.c.likes, pets.c.message).where(
        pets.c.listing == listing, pets.c.deleted.is_(False), pets.c.adopted.is_(False), pets.c.hidden.is_(False),
        pets.c.status != pet_pb2.Pet.STATUS_ADOPTED, pets.c.owner_id != user_id,
        pets.c.owner_id.not_in(blocked_with(user_id)), pets.c.id.not_in(swiped),
        pets.c.create_time <= as_of)
    if species:
        q = q.where(pets.c.species.in_(list(species)))
    if sizes:
        q = q.where(pets.c.size.in_(list(sizes)))
    if born_on_or_before is not None:
        q = q.where(pets.c.birth_date <= born_on_or_before)
    if born_after is not None:
        q = q.where(pets.c.birth_date > born_after)
    if box is not None:
        q = q.where(pets.c.latitude.between(*box))
    return (await s.execute(q.order_by(pets.c.id).limit(limit))).all()


async def swiped_since(s: AsyncSession, *, user_id: str, acting_pet_id: str, pet_ids: Sequence[str],
                       since: dt.datetime) -> set[str]:
    """Which of these pets the user swiped (for this acting pet) after `since`, still active."""
    if not pet_ids:
        return set()
    rows = await s.execute(sa.select(swipes.c.pet_id).where(
        swipes.c.user_id == user_id, swipes.c.acting_pet_id == acting_pet_id, swipes.c.undone == "",
        swipes.c.create_time > since, swipes.c.pet_id.in_(list(pet_ids))))
    return set(rows.scalars())


# --- blocks ---

async def is_blocked(s: AsyncSession, a: str, b: str) -> bool:
    """Whether either user blocked the other."""
    return bool(await s.scalar(sa.select(sa.func.count()).select_from(blocks).where(sa.or_(
        sa.and_(blocks.c.blocker_id == a, blocks.c.blocked_id == b),
        sa.and_(blocks.c.blocker_id == b, blocks.c.blocked_id == a)))))


async def add_block(s: AsyncSession, *, blocker_id: str, blocked_id: str, create_time: dt.datetime) -> bool:
    """Whether the block is new (a repeated one changes nothing)."""
    statement = _insert(s, blocks).values(blocker_id=blocker_id, blocked_id=blocked_id, create_time=create_time)
    return await rows_changed(s, statement.on_conflict_do_nothing()) == 1


# --- swipes ---

async def find_active_swipe(s: AsyncSession, *, user_id: str, pet_id: str, acting_pet_id: str) -> Row | None:
    return (await s.execute(sa.select(swipes).where(
        swipes.c.user_id == user_id, swipes.c.pet_id == pet_id, swipes.c.acting_pet_id == acting_pet_id,
        swipes.c.undone == ""))).first()


async def find_like_back(s: AsyncSession, *, user_id: str, pet_id: str, acting_pet_id: str) -> Row | None:
    """An active like by `user_id` on `pet_id` for their `acting_pet_id`."""
    return (await s.execute(sa.select(swipes).where(
        swipes.c.user_id == user_id, swipes.c.pet_id == pet_id, swipes.c.acting_pet_id == acting_pet_id,
        swipes.c.undone == "", swipes.c.action.in_(LIKES)))).first()


async def last_active_swipe(s: AsyncSession, user_id: str) -> Row | None:
    return (await s.execute(sa.select(swipes).where(swipes.c.user_id == user_id, swipes.c.undone == "")
                            .order_by(swipes.c.create_time.desc(), swipes.c.id.desc()).limit(1)
                            .with_for_update())).first()


async def take_swipe_slot(s: AsyncSession, *, user_id: str, day: dt.date, limit: int) -> bool:
    """Counts one more swipe of the user on `day` unless they made `limit` already: False then. The row
    is made if missing, then one conditional UPDATE, atomic on both databases."""
    await s.execute(_insert(s, swipe_days).values(user_id=user_id, day=day, count=0).on_conflict_do_nothing())
    return await rows_changed(s, swipe_days.update().where(
        swipe_days.c.user_id == user_id, swipe_days.c.day == day, swipe_days.c.count < limit).values(
        count=swipe_days.c.count + 1)) == 1


async def add_swipe(s: AsyncSession, **values: Any) -> None:
    """IntegrityError when the pair has an active swipe already (a concurrent retry)."""
    await s.execute(swipes.insert().values(**values))


async def undo_swipe(s: AsyncSession, swipe_id: str, marker: str) -> None:
    await s.execute(swipes.update().where(swipes.c.id == swipe_id).values(undone=marker))


# --- interests ---

async def add_interest(s: AsyncSession, **values: Any) -> None:
    await s.execute(interests.insert().values(**values))


async def find_interest(s: AsyncSession, interest_id: str, *, lock: bool = False) -> Row | None:
    q = sa.select(interests).where(interests.c.id == interest_id)
    return (await s.execute(q.with_for_update() if lock else q)).first()


async def find_interest_of_swipe(s: AsyncSession, swipe_id: str) -> Row | None:
    return (await s.execute(sa.select(interests).where(interests.c.swipe_id == swipe_id))).first()


async def set_interest(s: AsyncSession, interest_id: str, **values: Any) -> None:
    await s.execute(interests.update().where(interests.c.id == interest_id).values(**values))


async def open_interests(s: AsyncSession, *, pet_id: str | None = None, between: tuple[str, str] | None = None,
                         states: Sequence[int]) -> Sequence[Row]:
    """Interests in these states, in a pet or between two users (either way), locked."""
    q = sa.select(interests).where(interests.c.state.in_(list(states)))
    if pet_id is not None:
        q = q.where(interests.c.pet_id == pet_id)
    if between is not None:
        a, b = between
        q = q.where(sa.or_(sa.and_(interests.c.user_id == a, interests.c.owner_id == b),
                           sa.and_(interests.c.user_id == b, interests.c.owner_id == a)))
    return (await s.execute(q.order_by(interests.c.id).with_for_update())).all()


async def list_interests(s: AsyncSession, *, user_id: str, received: bool, pet_id: str, states: Sequence[int],
                         after: pagination.Position | None, size: int) -> Sequence[Row]:
    """A page of the interests in the user's pets (received) or their own, super-likes first then newest,
    without those of users blocked either way."""
    mine, theirs = (interests.c.owner_id, interests.c.user_id) if received else (interests.c.user_id,
                                                                                  interests.c.owner_id)
    q = sa.select(interests).where(mine == user_id, interests.c.state.in_(list(states)),
                                   theirs.not_in(blocked_with(user_id)))
    if pet_id:
        q = q.where(interests.c.pet_id == pet_id)
    return (await s.execute(pagination.select_page(q, after, interests.c.rank, interests.c.id, descending=True,
                                                   size=size))).all()


# --- matches ---

async def add_match(s: AsyncSession, **values: Any) -> None:
    """IntegrityError when the pair has its match already (a concurrent like or accept made it)."""
    await s.execute(matches.insert().values(**values))


async def find_match(s: AsyncSession, match_id: str, *, lock: bool = False) -> Row | None:
    q = sa.select(matches).where(matches.c.id == match_id)
    return (await s.execute(q.with_for_update() if lock else q)).first()


async def find_match_by_key(s: AsyncSession, pair_key: str) -> Row | None:
    return (await s.execute(sa.select(matches).where(matches.c.pair_key == pair_key))).first()


async def set_match(s: AsyncSession, match_id: str, **values: Any) -> None:
    await s.execute(matches.update().where(matches.c.id == match_id).values(**values))


async def active_matches(s: AsyncSession, *, between: tuple[str, str] | None = None, pet_id: str | None = None,
                         kind: int | None = None) -> Sequence[Row]:
    """Active matches between two users, or on a pet (as pet_a), locked."""
    q = sa.select(matches).where(matches.c.state == ACTIVE)
    if between is not None:
        a, b = between
        q = q.where(sa.or_(sa.and_(matches.c.user_a == a, matches.c.user_b == b),
                           sa.and_(matches.c.user_a == b, matches.c.user_b == a)))
    if pet_id is not None:
        q = q.where(matches.c.pet_a == pet_id)
    if kind is not None:
        q = q.where(matches.c.kind == kind)
    return (await s.execute(q.order_by(matches.c.id).with_for_update())).all()


async def list_matches(s: AsyncSession, *, user_id: str, states: Sequence[int], after: pagination.Position | None,
                       size: int) -> Sequence[Row]:
    """A page of the user's matches, newest first, without those with a user blocked either way."""
    hidden = blocked_with(user_id)
    q = sa.select(matches).where(
        sa.or_(sa.and_(matches.c.user_a == user_id, matches.c.user_b.not_in(hidden)),
               sa.and_(matches.c.user_b == user_id, matches.c.user_a.not_in(hidden))),
        matches.c.state.in_(list(states)))
    return (await s.execute(pagination.select_page(q, after, matches.c.create_time, matches.c.id, descending=True,
                                                   size=size))).all()
