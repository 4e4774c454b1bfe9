"""Marketplace tables and queries. No double booking rests on the database, not on a check before an
insert: each slot of a service has one row in `slot_load` holding its capacity and the pets booked
into it, with CHECK (booked <= capacity). A booking locks that row (SELECT ... FOR UPDATE on
PostgreSQL; SQLite's BEGIN IMMEDIATE write lock serialises every writing transaction), reads it,
and adds its pets in the same transaction, so concurrent requests for the last place are applied
one after the other and only the first fits; the CHECK refuses any write that would overfill it."""
from __future__ import annotations

from collections.abc import Sequence
import datetime as dt
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from mesh import pagination
from mesh.sql import Row, UtcDateTime, rows_changed

metadata = sa.MetaData()

businesses = sa.Table(
    "businesses", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("owner_id", sa.String(32), nullable=False),
    sa.Column("display_name", sa.String(100), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("latitude", sa.Float, nullable=False),
    sa.Column("longitude", sa.Float, nullable=False),
    sa.Column("service_radius_km", sa.Float, nullable=False, server_default="0"),
    sa.Column("time_zone", sa.String(64), nullable=False),
    sa.Column("verified", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("payout_account", sa.String(128), nullable=False, server_default=""),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("update_time", UtcDateTime, nullable=False),
    # Its score: the published ratings of customers' reviews, summed and counted.
    sa.Column("rating_sum", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rating_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("delete_time", UtcDateTime, nullable=True),  # deleted (DeleteBusiness): kept for its history
    sa.Index("ix_businesses_owner", "owner_id"),
    sa.Index("ix_businesses_latitude", "latitude"),
)

services = sa.Table(
    "services", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("business_id", sa.String(32), sa.ForeignKey("businesses.id"), nullable=False),
    sa.Column("display_name", sa.String(100), nullable=False),
    sa.Column("kind", sa.SmallInteger, nullable=False),
    sa.Column("price_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("duration_minutes", sa.Integer, nullable=False),
    sa.Column("capacity", sa.Integer, nullable=False),
    sa.Column("species", sa.String(64), nullable=False, server_default=""),  # comma-separated enum values
    sa.Column("sizes", sa.String(64), nullable=False, server_default=""),
    sa.Column("cancellation_policy", sa.SmallInteger, nullable=False),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("update_time", UtcDateTime, nullable=True),  # NULL: never changed since create_time
    sa.Column("delete_time", UtcDateTime, nullable=True),  # withdrawn (DeleteService): kept for its bookings
    sa.Index("ix_services_business", "business_id", "create_time"),
    sa.Index("ix_services_kind", "kind", "business_id"),
)

# Photos of businesses; their bytes live in the blob port under businesses/{id}/photos/{id}.
business_photos = sa.Table(
    "business_photos", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("business_id", sa.String(32), sa.ForeignKey("businesses.id"), nullable=False),
    sa.Column("content_type", sa.String(32), nullable=False),
    sa.Column("size_bytes", sa.Integer, nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Index("ix_business_photos_business", "business_id", "create_time"),
)

opening_hours = sa.Table(
    "opening_hours", metadata,
    sa.Column("service_id", sa.String(32), sa.ForeignKey("services.id"), primary_key=True),
    sa.Column("weekday", sa.SmallInteger, primary_key=True),  # 0 Monday
    sa.Column("open_minute", sa.SmallInteger, primary_key=True),  # minutes after local midnight
    sa.Column("close_minute", sa.SmallInteger, nullable=False),  # up to 1440
)

closed_dates = sa.Table(
    "closed_dates", metadata,
    sa.Column("service_id", sa.String(32), sa.ForeignKey("services.id"), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
)

slot_load = sa.Table(
    "slot_load", metadata,
    sa.Column("service_id", sa.String(32), sa.ForeignKey("services.id"), primary_key=True),
    sa.Column("start_time", UtcDateTime, primary_key=True),
    sa.Column("capacity", sa.Integer, nullable=False),
    sa.Column("booked", sa.Integer, nullable=False),
    sa.CheckConstraint("booked >= 0 AND booked <= capacity", name="ck_slot_load_within_capacity"),
)

bookings = sa.Table(
    "bookings", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("owner_id", sa.String(32), nullable=False),
    sa.Column("business_id", sa.String(32), nullable=False),
    sa.Column("business_owner_id", sa.String(32), nullable=False),
    sa.Column("service_id", sa.String(32), nullable=False),
    sa.Column("pets", sa.String(400), nullable=False),  # comma-separated pet ids
    sa.Column("pet_count", sa.Integer, nullable=False),
    sa.Column("start_time", UtcDateTime, nullable=False),
    sa.Column("end_time", UtcDateTime, nullable=False),
    sa.Column("state", sa.SmallInteger, nullable=False),
    sa.Column("price_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("cancellation_policy", sa.SmallInteger, nullable=False),
    sa.Column("time_zone", sa.String(64), nullable=False),
    sa.Column("payment_method", sa.String(128), nullable=False),
    sa.Column("payment_status", sa.SmallInteger, nullable=False),
    sa.Column("refunded_minor", sa.BigInteger, nullable=True),
    sa.Column("cancelled_by", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("note", sa.Text, nullable=False, server_default=""),
    sa.Column("expire_time", UtcDateTime, nullable=False),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("update_time", UtcDateTime, nullable=False),
    sa.Column("review_deadline", UtcDateTime, nullable=True),  # set on completion
    sa.Index("ix_bookings_owner", "owner_id", "create_time"),
    sa.Index("ix_bookings_business", "business_id", "create_time"),
    sa.Index("ix_bookings_state_expiry", "state", "expire_time"),
)

# Reviews of completed bookings, one per side ("owner" reviews the business, "business" the owner);
# publish_time stays NULL while the review is hidden from the other side.
booking_reviews = sa.Table(
    "booking_reviews", metadata,
    sa.Column("booking_id", sa.String(32), primary_key=True),
    sa.Column("side", sa.String(8), primary_key=True),
    sa.Column("author_id", sa.String(32), nullable=False),
    sa.Column("subject", sa.String(64), nullable=False),
    sa.Column("rating", sa.SmallInteger, nullable=False),
    sa.Column("text", sa.Text, nullable=False, server_default=""),
    sa.Column("review_deadline", UtcDateTime, nullable=False),  # the booking's, copied: the sweep's index
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("publish_time", UtcDateTime, nullable=True),
    sa.CheckConstraint("rating BETWEEN 1 AND 5", name="ck_booking_reviews_rating"),
    sa.CheckConstraint("side IN ('owner', 'business')", name="ck_booking_reviews_side"),
    sa.Index("ix_booking_reviews_hidden", "publish_time", "review_deadline"),
)

# Idempotent mutating RPCs: the first answer to (caller, method, request id), stored in the
# transaction of its change; a retry gets it back.
answered_requests = sa.Table(
    "answered_requests", metadata,
    sa.Column("caller_id", sa.String(32), primary_key=True),
    sa.Column("method", sa.String(40), primary_key=True),
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("response", sa.LargeBinary, nullable=False),
    sa.Column("create_time", UtcDateTime, nullable=False),
)


def _insert(s: AsyncSession, table: sa.Table) -> Any:
    return (postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert)(table)


async def answered(s: AsyncSession, *, caller_id: str, method: str, request_id: str) -> bytes | None:
    return await s.scalar(sa.select(answered_requests.c.response).where(
        answered_requests.c.caller_id == caller_id, answered_requests.c.method == method,
        answered_requests.c.request_id == request_id))


async def record_answer(s: AsyncSession, *, caller_id: str, method: str, request_id: str, response: bytes,
                        now: dt.datetime) -> None:
    """IntegrityError when a concurrent call with the same request id committed first."""
    await s.execute(answered_requests.insert().values(caller_id=caller_id, method=method, request_id=request_id,
                                                      response=response, create_time=now))


# --- businesses and services ---

async def add_business(s: AsyncSession, **values: Any) -> None:
    await s.execute(businesses.insert().values(**values))


async def find_business(s: AsyncSession, business_id: str, *, lock: bool = False) -> Row | None:
    q = sa.select(businesses).where(businesses.c.id == business_id)
    return (await s.execute(q.with_for_update() if lock else q)).first()


async def get_business(s: AsyncSession, business_id: str) -> Row:
    row = await find_business(s, business_id)
    assert row is not None, business_id
    return row


async def update_business(s: AsyncSession, business_id: str, **values: Any) -> None:
    await s.execute(businesses.update().where(businesses.c.id == business_id).values(**values))


async def business_kinds(s: AsyncSession, business_ids: Sequence[str]) -> dict[str, list[int]]:
    rows = (await s.execute(sa.select(services.c.business_id, services.c.kind).distinct().where(
        services.c.business_id.in_(business_ids), services.c.delete_time.is_(None)))).all()
    out: dict[str, list[int]] = {}
    for r in rows:
        out.setdefault(r.business_id, []).append(r.kind)
    return {k: sorted(v) for k, v in out.items()}


async def businesses_of_owner(s: AsyncSession, owner_id: str, *, deleted: bool,
                              after: tuple[dt.datetime, str] | None, size: int) -> Sequence[Row]:
    q = sa.select(businesses).where(businesses.c.owner_id == owner_id)
    if not deleted:
        q = q.where(businesses.c.delete_time.is_(None))
    q = pagination.select_page(q, after, businesses.c.create_time, businesses.c.id, descending=False, size=size)
    return (await s.execute(q)).all()


async def businesses_offering(s: AsyncSession, *, kind: int, min_lat: float, max_lat: float,
                              verified_only: bool) -> Sequence[Row]:
    """Businesses with a service of `kind` within a band of latitudes (the caller filters by distance)."""
    q = sa.select(businesses).where(
        businesses.c.latitude.between(min_lat, max_lat), businesses.c.delete_time.is_(None),
        businesses.c.id.in_(sa.select(services.c.business_id).where(services.c.kind == kind,
                                                                    services.c.delete_time.is_(None))))
    if verified_only:
        q = q.where(businesses.c.verified.is_(True))
    return (await s.execute(q)).all()


async def add_service(s: AsyncSession, **values: Any) -> None:
    await s.execute(services.insert().values(**values))


Lock = Literal["share", "update"] | None


async def find_service(s: AsyncSession, service_id: str, *, lock: Lock = None) -> Row | None:
    """`lock`: "share" (FOR SHARE) keeps it from changing until the transaction ends, "update" (FOR
    UPDATE) while this transaction changes it. SQLite ignores both (its writers take turns)."""
    q = sa.select(services).where(services.c.id == service_id)
    if lock is not None:
        q = q.with_for_update(read=lock == "share")
    return (await s.execute(q)).first()


async def get_service(s: AsyncSession, service_id: str) -> Row:
    row = await find_service(s, service_id)
    assert row is not None, service_id
    return row


async def list_services(s: AsyncSession, business_id: str, *, after: tuple[dt.datetime, str] | None,
                        size: int) -> Sequence[Row]:
    q = pagination.select_page(sa.select(services).where(services.c.business_id == business_id,
                                                         services.c.delete_time.is_(None)), after,
                               services.c.create_time, services.c.id, descending=False, size=size)
    return (await s.execute(q)).all()


async def update_service(s: AsyncSession, service_id: str, **values: Any) -> None:
    await s.execute(services.update().where(services.c.id == service_id).values(**values))


async def open_bookings_of(s: AsyncSession, service_id: str, *, states: Sequence[int]) -> int:
    return int(await s.scalar(sa.select(sa.func.count()).select_from(bookings).where(
        bookings.c.service_id == service_id, bookings.c.state.in_(states))) or 0)


async def services_of_business(s: AsyncSession, business_id: str) -> Sequence[Row]:
    """Its services not withdrawn, locked FOR UPDATE (a booking reads its service FOR SHARE)."""
    return (await s.execute(sa.select(services).where(
        services.c.business_id == business_id, services.c.delete_time.is_(None)).order_by(
        services.c.id).with_for_update())).all()


async def bookings_of_business(s: AsyncSession, business_id: str, *, states: Sequence[int]) -> list[str]:
    return list((await s.execute(sa.select(bookings.c.id).where(
        bookings.c.business_id == business_id, bookings.c.state.in_(states)).order_by(bookings.c.id))).scalars())


async def open_bookings_of_business(s: AsyncSession, business_id: str, *, states: Sequence[int]) -> int:
    return int(await s.scalar(sa.select(sa.func.count()).select_from(bookings).where(
        bookings.c.business_id == business_id, bookings.c.state.in_(states))) or 0)


async def set_future_capacity(s: AsyncSession, service_id: str, *, capacity: int, after: dt.datetime) -> bool:
    """Gives the ledger rows of slots starting after `after` the new capacity, under their locks;
    False (nothing changed) when one of them already holds more pets than that."""
    future = sa.and_(slot_load.c.service_id == service_id, slot_load.c.start_time > after)
    over = (await s.execute(sa.select(slot_load.c.start_time).where(future, slot_load.c.booked > capacity)
                            .limit(1).with_for_update())).first()
    if over is not None:
        return False
    await s.execute(slot_load.update().where(future).values(capacity=capacity))
    return True


async def forget_empty_slots(s: AsyncSession, service_id: str, *, after: dt.datetime) -> None:
    """Drops the empty ledger rows of future slots (their start times may no longer be slots)."""
    await s.execute(slot_load.delete().where(slot_load.c.service_id == service_id, slot_load.c.start_time > after,
                                             slot_load.c.booked == 0))


# --- business photos ---

async def add_business_photo(s: AsyncSession, **values: Any) -> None:
    await s.execute(business_photos.insert().values(**values))


async def business_photos_of(s: AsyncSession, business_ids: Sequence[str]) -> dict[str, list[Row]]:
    rows = (await s.execute(sa.select(business_photos).where(business_photos.c.business_id.in_(business_ids))
                            .order_by(business_photos.c.create_time, business_photos.c.id))).all()
    out: dict[str, list[Row]] = {}
    for r in rows:
        out.setdefault(r.business_id, []).append(r)
    return out


async def delete_business_photo(s: AsyncSession, *, business_id: str, photo_id: str) -> bool:
    return await rows_changed(s, business_photos.delete().where(business_photos.c.business_id == business_id,
                                                                business_photos.c.id == photo_id)) == 1


async def hours_of(s: AsyncSession, service_id: str) -> tuple[Sequence[Row], list[dt.date]]:
    hours = (await s.execute(sa.select(opening_hours).where(opening_hours.c.service_id == service_id).order_by(
        opening_hours.c.weekday, opening_hours.c.open_minute))).all()
    days = (await s.execute(sa.select(closed_dates.c.day).where(closed_dates.c.service_id == service_id).order_by(
        closed_dates.c.day))).scalars().all()
    return hours, list(days)


async def replace_hours(s: AsyncSession, service_id: str, *, hours: Sequence[tuple[int, int, int]],
                        closed: Sequence[dt.date]) -> None:
    await s.execute(opening_hours.delete().where(opening_hours.c.service_id == service_id))
    await s.execute(closed_dates.delete().where(closed_dates.c.service_id == service_id))
    if hours:
        await s.execute(opening_hours.insert(), [dict(service_id=service_id, weekday=w, open_minute=o, close_minute=c)
                                                 for w, o, c in hours])
    if closed:
        await s.execute(closed_dates.insert(), [dict(service_id=service_id, day=d) for d in closed])


async def booked_pets(s: AsyncSession, service_id: str, *, start: dt.datetime,
                      end: dt.datetime) -> dict[dt.datetime, int]:
    rows = (await s.execute(sa.select(slot_load.c.start_time, slot_load.c.booked).where(
        slot_load.c.service_id == service_id, slot_load.c.start_time >= start, slot_load.c.start_time < end))).all()
    return {r.start_time: r.booked for r in rows}


# --- the capacity ledger ---

async def take_places(s: AsyncSession, *, service_id: str, start: dt.datetime, capacity: int, pets: int) -> bool:
    """Adds `pets` to the slot if they fit, under the slot row's lock; False when they do not."""
    await s.execute(_insert(s, slot_load).values(service_id=service_id, start_time=start, capacity=capacity,
                                                 booked=0).on_conflict_do_nothing())
    row = (await s.execute(sa.select(slot_load.c.booked, slot_load.c.capacity).where(
        slot_load.c.service_id == service_id, slot_load.c.start_time == start).with_for_update())).one()
    if row.booked + pets > row.capacity:
        return False
    await s.execute(slot_load.update().where(slot_load.c.service_id == service_id,
                                             slot_load.c.start_time == start).values(booked=slot_load.c.booked + pets))
    return True


async def free_places(s: AsyncSession, *, service_id: str, start: dt.datetime, pets: int) -> None:
    await s.execute(slot_load.update().where(slot_load.c.service_id == service_id,
                                             slot_load.c.start_time == start).values(booked=slot_load.c.booked - pets))


# --- bookings ---

async def add_booking(s: AsyncSession, **values: Any) -> None:
    await s.execute(bookings.insert().values(**values))


async def find_booking(s: AsyncSession, booking_id: str, *, lock: bool = False) -> Row | None:
    q = sa.select(bookings).where(bookings.c.id == booking_id)
    return (await s.execute(q.with_for_update() if lock else q)).first()


async def get_booking(s: AsyncSession, booking_id: str) -> Row:
    """A booking this transaction wrote or locked."""
    row = await find_booking(s, booking_id)
    assert row is not None, booking_id
    return row


async def update_booking(s: AsyncSession, booking_id: str, **values: Any) -> None:
    await s.execute(bookings.update().where(bookings.c.id == booking_id).values(**values))


async def list_bookings(s: AsyncSession, *, owner_id: str | None, business_id: str | None, states: Sequence[int],
                        after: tuple[dt.datetime, str] | None, size: int,
                        business_owner_id: str | None = None) -> Sequence[Row]:
    q = sa.select(bookings)
    if owner_id is not None:
        q = q.where(bookings.c.owner_id == owner_id)
    if business_owner_id is not None:
        q = q.where(bookings.c.business_owner_id == business_owner_id)
    if business_id is not None:
        q = q.where(bookings.c.business_id == business_id)
    if states:
        q = q.where(bookings.c.state.in_(states))
    q = pagination.select_page(q, after, bookings.c.create_time, bookings.c.id, descending=True, size=size)
    return (await s.execute(q)).all()


async def due_to_expire(s: AsyncSession, *, state: int, now: dt.datetime, limit: int = 100) -> list[str]:
    return list((await s.execute(sa.select(bookings.c.id).where(
        bookings.c.state == state, bookings.c.expire_time <= now).limit(limit))).scalars())


async def count_rows(s: AsyncSession, table: sa.Table) -> int:
    return int(await s.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


# --- reviews ---

async def add_review(s: AsyncSession, **values: Any) -> None:
    """IntegrityError when that side has reviewed the booking already."""
    await s.execute(booking_reviews.insert().values(**values))


async def reviews_of(s: AsyncSession, booking_id: str) -> list[Row]:
    return list((await s.execute(sa.select(booking_reviews).where(booking_reviews.c.booking_id == booking_id)
                                 .order_by(booking_reviews.c.side.desc()))).all())


async def get_review(s: AsyncSession, booking_id: str, side: str) -> Row:
    row = (await s.execute(sa.select(booking_reviews).where(booking_reviews.c.booking_id == booking_id,
                                                            booking_reviews.c.side == side))).first()
    assert row is not None, (booking_id, side)
    return row


async def publish_review(s: AsyncSession, *, booking_id: str, side: str, now: dt.datetime) -> bool:
    """False when it was published already."""
    return await rows_changed(s, booking_reviews.update().where(
        booking_reviews.c.booking_id == booking_id, booking_reviews.c.side == side,
        booking_reviews.c.publish_time.is_(None)).values(publish_time=now)) == 1


async def hidden_past_deadline(s: AsyncSession, *, now: dt.datetime, limit: int = 100) -> list[str]:
    """Bookings whose window has closed with a review still hidden."""
    return list((await s.execute(sa.select(booking_reviews.c.booking_id).where(
        booking_reviews.c.publish_time.is_(None), booking_reviews.c.review_deadline <= now)
        .distinct().limit(limit))).scalars())


async def add_business_rating(s: AsyncSession, business_id: str, rating: int) -> None:
    await s.execute(businesses.update().where(businesses.c.id == business_id).values(
        rating_sum=businesses.c.rating_sum + rating, rating_count=businesses.c.rating_count + 1))


__all__ = ["rows_changed"]
