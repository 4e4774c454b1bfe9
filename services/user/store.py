"""User's tables (public profiles, no PII beyond the display name, and reviews between users) and
the queries on them."""
from __future__ import annotations

from collections.abc import Sequence
import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from mesh import pagination
from mesh.sql import Row, UtcDateTime, rows_changed, utcnow

metadata = sa.MetaData()

profiles = sa.Table(
    "profiles", metadata,
    sa.Column("user_id", sa.String(32), primary_key=True),
    sa.Column("display_name", sa.String(64), nullable=False),
    sa.Column("bio", sa.Text, nullable=False, default=""),
    sa.Column("latitude", sa.Float, nullable=True),
    sa.Column("longitude", sa.Float, nullable=True),
    sa.Column("preferences", sa.JSON, nullable=False, default=dict),  # proto3 JSON of Preferences
    sa.Column("email_verified", sa.Boolean, nullable=False, default=False),
    sa.Column("upheld_reports", sa.Integer, nullable=False, default=0),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("update_time", UtcDateTime, nullable=False),
)

reviews = sa.Table(
    "reviews", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("subject_id", sa.String(32), sa.ForeignKey("profiles.user_id", ondelete="CASCADE"), nullable=False),
    sa.Column("author_id", sa.String(32), nullable=False),
    sa.Column("rating", sa.SmallInteger, nullable=False),
    sa.Column("text", sa.Text, nullable=False, default=""),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.UniqueConstraint("subject_id", "author_id", name="uq_reviews_subject_author"),
    sa.Index("ix_reviews_subject_time", "subject_id", "create_time", "id"),
)


# Ratings of users by the businesses they booked (the marketplace's published reviews, from
# booking.review_published): one per booking, counted in the trust score as reviews are.
booking_ratings = sa.Table(
    "booking_ratings", metadata,
    sa.Column("booking_id", sa.String(32), primary_key=True),
    sa.Column("subject_id", sa.String(32), sa.ForeignKey("profiles.user_id", ondelete="CASCADE"), nullable=False),
    sa.Column("author_id", sa.String(32), nullable=False),
    sa.Column("rating", sa.SmallInteger, nullable=False),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Index("ix_booking_ratings_subject", "subject_id"),
)

async def create_profile(s: AsyncSession, user_id: str, display_name: str) -> None:
    """A new user's empty profile; nothing if it exists."""
    if await s.scalar(sa.select(sa.func.count()).select_from(profiles).where(profiles.c.user_id == user_id)):
        return
    now = utcnow()
    await s.execute(profiles.insert().values(user_id=user_id, display_name=display_name, bio="", preferences={},
                                             email_verified=False, upheld_reports=0, create_time=now,
                                             update_time=now))


async def mark_email_verified(s: AsyncSession, user_id: str) -> bool:
    """False when the profile does not exist (yet)."""
    return await rows_changed(s, profiles.update().where(profiles.c.user_id == user_id).values(
        email_verified=True)) == 1


async def count_upheld_report(s: AsyncSession, user_id: str) -> bool:
    """False when the profile does not exist (yet)."""
    return await rows_changed(s, profiles.update().where(profiles.c.user_id == user_id).values(
        upheld_reports=profiles.c.upheld_reports + 1)) == 1


async def find_profile(s: AsyncSession, user_id: str) -> Row | None:
    return (await s.execute(sa.select(profiles).where(profiles.c.user_id == user_id))).first()


async def update_profile(s: AsyncSession, user_id: str, *, display_name: str, bio: str,
                         location: tuple[float, float] | None, preferences: dict[str, Any]) -> None:
    """`location`: (latitude, longitude); `preferences`: their proto3 JSON."""
    latitude, longitude = location or (None, None)
    await s.execute(profiles.update().where(profiles.c.user_id == user_id).values(
        display_name=display_name, bio=bio, latitude=latitude, longitude=longitude, preferences=preferences,
        update_time=utcnow()))


async def add_review(s: AsyncSession, *, review_id: str, subject_id: str, author_id: str, rating: int, text: str,
                     create_time: dt.datetime) -> None:
    """IntegrityError when the author has already reviewed the subject."""
    await s.execute(reviews.insert().values(id=review_id, subject_id=subject_id, author_id=author_id, rating=rating,
                                            text=text, create_time=create_time))


async def list_reviews(s: AsyncSession, subject_id: str, *, after: pagination.Position | None,
                       size: int) -> Sequence[Row]:
    """A page of the reviews about a user, newest first; `after`: (create_time, id) of the last one seen."""
    query = pagination.select_page(sa.select(reviews).where(reviews.c.subject_id == subject_id), after,
                                   reviews.c.create_time, reviews.c.id, descending=True, size=size)
    return (await s.execute(query)).all()


async def ratings_with_reviewers(s: AsyncSession, subject_id: str) -> Sequence[Row]:
    """Every rating about a user, each with its reviewer's standing (email_verified, create_time,
    upheld_reports)."""
    author = profiles.alias("author")
    ratings = sa.union_all(
        sa.select(reviews.c.rating, reviews.c.author_id).where(reviews.c.subject_id == subject_id),
        sa.select(booking_ratings.c.rating, booking_ratings.c.author_id)
        .where(booking_ratings.c.subject_id == subject_id)).subquery()
    return (await s.execute(
        sa.select(ratings.c.rating, author.c.email_verified, author.c.create_time, author.c.upheld_reports)
        .join(author, author.c.user_id == ratings.c.author_id))).all()


async def add_booking_rating(s: AsyncSession, *, booking_id: str, subject_id: str, author_id: str, rating: int,
                             now: dt.datetime) -> bool:
    """False when the subject has no profile yet (the bus retries); a replay changes nothing."""
    if await s.scalar(sa.select(profiles.c.user_id).where(profiles.c.user_id == subject_id)) is None:
        return False
    if await s.scalar(sa.select(booking_ratings.c.booking_id).where(booking_ratings.c.booking_id == booking_id)):
        return True
    await s.execute(booking_ratings.insert().values(booking_id=booking_id, subject_id=subject_id,
                                                    author_id=author_id, rating=rating, create_time=now))
    return True
