"""User's tables: public profiles (no PII beyond the display name) and reviews between users."""
import sqlalchemy as sa

from mesh.sql import UtcDateTime

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
