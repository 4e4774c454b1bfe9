"""User's tables (public profiles, no PII beyond the display name, and reviews between users) and
the queries on them."""
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.sql import UtcDateTime, utcnow

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
    done = await s.execute(profiles.update().where(profiles.c.user_id == user_id).values(email_verified=True))
    return done.rowcount == 1


async def count_upheld_report(s: AsyncSession, user_id: str) -> bool:
    """False when the profile does not exist (yet)."""
    done = await s.execute(profiles.update().where(profiles.c.user_id == user_id).values(
        upheld_reports=profiles.c.upheld_reports + 1))
    return done.rowcount == 1
