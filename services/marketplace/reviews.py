"""Double-blind reviews of completed bookings (pure rules and the publishing step).

Each side of a completed booking reviews the other once, within REVIEW_WINDOW of its completion.
A review stays hidden from the other side until both have written or the window has closed; then
it is published: the business's score counts the owner's review, and BookingReviewPublished tells
the user service about the business's review of the owner (the owner's trust score)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession

from mesh import errors
from mesh.events import emit
from mesh.principal import Principal
from mesh.resources import timestamp
from mesh.sql import Row
from petplatform.marketplace.v1 import events_pb2 as ev
from petplatform.marketplace.v1 import marketplace_pb2 as m
from services.marketplace import store

REVIEW_WINDOW = dt.timedelta(days=21)
SIDES = ("owner", "business")
MAX_TEXT = 2000


def check(review: m.BookingReview) -> None:
    bad = []
    if not 1 <= review.rating <= 5:
        bad.append(("review.rating", "must be 1 to 5 stars"))
    if len(review.text) > MAX_TEXT:
        bad.append(("review.text", f"must be at most {MAX_TEXT} characters"))
    if bad:
        raise errors.invalid_argument(*bad)


def side_of(booking: Row, caller: Principal) -> str:
    """The caller's side of the booking (the API has already hidden others' bookings)."""
    if caller.user_id == booking.owner_id:
        return "owner"
    if caller.user_id == booking.business_owner_id:
        return "business"
    raise errors.permission_denied("only the booking's two sides review it", "NOT_A_PARTY")


def subject_of(booking: Row, side: str) -> str:
    return f"businesses/{booking.business_id}" if side == "owner" else f"users/{booking.owner_id}"


def message(r: Row) -> m.BookingReview:
    return m.BookingReview(
        name=f"bookings/{r.booking_id}/reviews/{r.side}", author=f"users/{r.author_id}", subject=r.subject,
        rating=r.rating, text=r.text, published=r.publish_time is not None, create_time=timestamp(r.create_time),
        publish_time=timestamp(r.publish_time) if r.publish_time else None)


def visible(r: Row, side: str | None) -> bool:
    """A review is seen by its author and, once published, by the other side (`side` None: an admin)."""
    return side is None or r.side == side or r.publish_time is not None


async def publish(s: AsyncSession, booking: Row, rows: list[Row], now: dt.datetime, booking_msg: m.Booking) -> None:
    """Publishes the booking's unpublished reviews, in the transaction that decided it."""
    for r in rows:
        if r.publish_time is not None:
            continue
        if not await store.publish_review(s, booking_id=r.booking_id, side=r.side, now=now):
            continue  # published by a concurrent writer
        if r.side == "owner":
            await store.add_business_rating(s, booking.business_id, r.rating)
        published = message(await store.get_review(s, r.booking_id, r.side))
        await emit(s, ev.BookingReviewPublished(review=published, booking=booking_msg))
