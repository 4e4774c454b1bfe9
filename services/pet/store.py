"""Pet's tables: listings, their photos (bytes live in the blob port) and health records."""
import sqlalchemy as sa

from mesh.sql import UtcDateTime

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
    # Case-folded in Python (search.keys), so every database and the in-memory matcher agree.
    sa.Column("breed_key", sa.String(256), nullable=False, server_default=""),  # folding may triple a length
    sa.Column("search_text", sa.Text, nullable=False, server_default=""),
    # Rows in photos, kept in step by the photo RPCs: the per-pet limit is one conditional UPDATE of it.
    sa.Column("photo_count", sa.Integer, nullable=False, server_default="0"),
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
