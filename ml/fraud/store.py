"""The fraud service's own store of signals, kept from events (one table per event source: accounts,
listings, photos, messages), the scored subjects (their last feature vector, the action last asked for and
the moderators' label), and the relational adapter of the score log (logs.py)."""
from __future__ import annotations

import datetime as dt
import json
from typing import Any
from collections.abc import Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.sql import Row, UtcDateTime, rows_changed
from ml.fraud import features, signals

metadata = sa.MetaData()



def flag_columns() -> list[sa.Column]:
    """One column per scam phrase flag of a text (signals.FLAGS)."""
    return [sa.Column(flag, sa.Boolean, nullable=False) for flag in signals.FLAGS]


accounts = sa.Table(
    "accounts", metadata,
    sa.Column("user_id", sa.String(32), primary_key=True),
    sa.Column("create_time", UtcDateTime, nullable=True),  # from user.created; None: heard of otherwise first
    sa.Column("upheld_reports", sa.Integer, nullable=False),
    # booking.cancelled: bookings the account cancelled, and charges of its bookings that failed
    sa.Column("cancelled_bookings", sa.Integer, nullable=False, server_default="0"),
    sa.Column("failed_charges", sa.Integer, nullable=False, server_default="0"),
)

listings = sa.Table(
    "listings", metadata,
    sa.Column("pet_id", sa.String(32), primary_key=True),
    sa.Column("owner_id", sa.String(32), nullable=False, index=True),
    sa.Column("species", sa.SmallInteger, nullable=False),
    sa.Column("breed", sa.String(64), nullable=False),
    sa.Column("price", sa.Float, nullable=True),  # parsed from the text: pets have no price field
    sa.Column("copied_text", sa.Boolean, nullable=False),
    sa.Column("fingerprint", sa.BigInteger, nullable=True),  # SimHash of the text (signed)
    *[sa.Column(f"band{i}", sa.Integer, nullable=True) for i in range(signals.TEXT_BANDS)],
    *flag_columns(),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("update_time", UtcDateTime, nullable=True),  # the pet's own: older events lose
    sa.Index("ix_listings_species_breed", "species", "breed"),
    *[sa.Index(f"ix_listings_band{i}", f"band{i}") for i in range(signals.TEXT_BANDS)],
)

photos = sa.Table(
    "photos", metadata,
    sa.Column("name", sa.String(128), primary_key=True),  # pets/{pet}/photos/{photo}
    sa.Column("pet_id", sa.String(32), nullable=False, index=True),
    sa.Column("owner_id", sa.String(32), nullable=False),
    sa.Column("phash", sa.BigInteger, nullable=False),  # signed
    *[sa.Column(f"band{i}", sa.SmallInteger, nullable=False) for i in range(signals.PHOTO_BANDS)],
    sa.Column("reused", sa.Boolean, nullable=False),  # near a photo another account listed earlier
    sa.Column("create_time", UtcDateTime, nullable=False),
    *[sa.Index(f"ix_photos_band{i}", f"band{i}") for i in range(signals.PHOTO_BANDS)],
)

messages = sa.Table(
    "messages", metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("sender_id", sa.String(32), nullable=False, index=True),
    *flag_columns(),
    sa.Column("create_time", UtcDateTime, nullable=False),
)

subjects = sa.Table(
    "subjects", metadata,
    sa.Column("subject", sa.String(200), primary_key=True),  # users/{u}, pets/{p}, rooms/{r}/messages/{m}
    sa.Column("user_id", sa.String(32), nullable=False),
    sa.Column("features", sa.Text, nullable=False),  # JSON list, features.NAMES order, as last scored
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("action", sa.SmallInteger, nullable=False),  # the highest FraudDetected.Action emitted (0: none)
    sa.Column("label", sa.SmallInteger, nullable=True),  # 1 upheld, 0 dismissed or reversed, None: no decision
    sa.Column("update_time", UtcDateTime, nullable=False),
)

fraud_logs = sa.Table(
    "fraud_logs", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("user", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(200), nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("factors", sa.Text, nullable=False),  # JSON
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("model", sa.String(80), nullable=False),
    sa.Column("reviewed", sa.Boolean, nullable=False),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Index("ix_fraud_logs_user", "user", "create_time"),
    sa.Index("ix_fraud_logs_subject", "subject"),
)


def _insert(s: AsyncSession, table: sa.Table) -> Any:
    """INSERT of the session's dialect, which knows ON CONFLICT: events about one row may be processed
    concurrently (RabbitMQ delivers a queue's messages to several handlers at once), and the second insert
    must become the update, not a failure."""
    return (postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert)(table)


async def _locked(s: AsyncSession, table: sa.Table, key: sa.ColumnElement[bool]) -> Row | None:
    """The row, locked until commit on PostgreSQL (SQLite's one writer serialises anyway)."""
    return (await s.execute(sa.select(table).where(key).with_for_update())).first()


def _flags(row: Row) -> dict[str, bool]:
    return {flag: bool(getattr(row, flag)) for flag in signals.FLAGS}


# --- accounts ---

async def account(s: AsyncSession, user_id: str) -> Row | None:
    return (await s.execute(sa.select(accounts).where(accounts.c.user_id == user_id))).first()


async def put_account(s: AsyncSession, user_id: str, *, create_time: dt.datetime | None = None,
                      reports: int = 0, cancelled_bookings: int = 0, failed_charges: int = 0) -> None:
    """Creates the account row if needed, sets its creation time if given, adds `reports` (never below 0) and
    the booking counts."""
    if await rows_changed(s, _insert(s, accounts).values(
            user_id=user_id, create_time=create_time, upheld_reports=max(0, reports),
            cancelled_bookings=cancelled_bookings, failed_charges=failed_charges).on_conflict_do_nothing()) == 1:
        return
    row = await _locked(s, accounts, accounts.c.user_id == user_id)
    assert row is not None  # it conflicted: it exists, and rows are never deleted
    values: dict[str, object] = {"upheld_reports": max(0, row.upheld_reports + reports),
                                 "cancelled_bookings": row.cancelled_bookings + cancelled_bookings,
                                 "failed_charges": row.failed_charges + failed_charges}
    if create_time is not None and row.create_time is None:
        values["create_time"] = create_time
    await s.execute(accounts.update().where(accounts.c.user_id == user_id).values(**values))


# --- listings ---

async def listing(s: AsyncSession, pet_id: str) -> Row | None:
    return (await s.execute(sa.select(listings).where(listings.c.pet_id == pet_id))).first()


async def listings_of(s: AsyncSession, owner_id: str) -> Sequence[Row]:
    return (await s.execute(sa.select(listings).where(listings.c.owner_id == owner_id)
                            .order_by(listings.c.create_time))).all()


async def copied_elsewhere(s: AsyncSession, *, owner_id: str, fingerprint: int | None,
                           before: dt.datetime | None) -> bool:
    """Whether another account listed a near-identical text (earlier than `before`, when given)."""
    if fingerprint is None:
        return False
    bs = signals.bands(fingerprint, signals.TEXT_BANDS)
    query = sa.select(listings.c.fingerprint).where(
        listings.c.owner_id != owner_id, sa.or_(*(listings.c[f"band{i}"] == b for i, b in enumerate(bs))))
    if before is not None:
        query = query.where(listings.c.create_time < before)
    found = (await s.scalars(query)).all()
    return signals.near(fingerprint, (signals.from_signed(f) for f in found if f is not None),
                        signals.TEXT_WITHIN) > 0


async def put_listing(s: AsyncSession, pet_id: str, *, owner_id: str, species: int, breed: str, text: str,
                      create_time: dt.datetime, update_time: dt.datetime | None) -> bool:
    """Creates or updates a listing from pet.created/updated; False (nothing changed) for an event older
    than what is stored."""
    row = await _locked(s, listings, listings.c.pet_id == pet_id)
    if row is not None and row.update_time and update_time and update_time < row.update_time:
        return False
    fp = signals.simhash(text)
    values: dict[str, object] = dict(
        owner_id=owner_id, species=species, breed=breed.strip().lower()[:64], price=signals.parse_price(text),
        fingerprint=None if fp is None else signals.to_signed(fp), update_time=update_time,
        copied_text=await copied_elsewhere(s, owner_id=owner_id, fingerprint=fp,
                                           before=row.create_time if row else create_time),
        **{f"band{i}": b for i, b in enumerate(signals.bands(fp, signals.TEXT_BANDS) if fp is not None
                                               else [None] * signals.TEXT_BANDS)},
        **signals.flags(text))
    if row is None and await rows_changed(s, _insert(s, listings).values(
            pet_id=pet_id, create_time=create_time, **values).on_conflict_do_nothing()) == 1:
        return True
    if row is None:  # inserted meanwhile by a concurrent event of the same pet: the later one stands
        row = await _locked(s, listings, listings.c.pet_id == pet_id)
        if row is not None and row.update_time and update_time and update_time < row.update_time:
            return False
    await s.execute(listings.update().where(listings.c.pet_id == pet_id).values(**values))
    return True


async def delete_listing(s: AsyncSession, pet_id: str) -> None:
    await s.execute(photos.delete().where(photos.c.pet_id == pet_id))
    await s.execute(listings.delete().where(listings.c.pet_id == pet_id))


async def prices(s: AsyncSession, *, species: int, breed: str | None, limit: int = 500) -> list[float]:
    """The latest asking prices written in listings of the species (and breed)."""
    query = sa.select(listings.c.price).where(listings.c.species == species, listings.c.price.is_not(None))
    if breed is not None:
        query = query.where(listings.c.breed == breed.strip().lower()[:64])
    return [float(p) for p in (await s.scalars(query.order_by(listings.c.create_time.desc()).limit(limit))).all()]


# --- photos ---

async def photo_names(s: AsyncSession, pet_id: str) -> set[str]:
    return set((await s.scalars(sa.select(photos.c.name).where(photos.c.pet_id == pet_id))).all())


async def reused_elsewhere(s: AsyncSession, *, owner_id: str, phash: int, before: dt.datetime | None) -> bool:
    bs = signals.bands(phash, signals.PHOTO_BANDS)
    query = sa.select(photos.c.phash).where(
        photos.c.owner_id != owner_id, sa.or_(*(photos.c[f"band{i}"] == b for i, b in enumerate(bs))))
    if before is not None:
        query = query.where(photos.c.create_time < before)
    found = (await s.scalars(query)).all()
    return signals.near(phash, (signals.from_signed(f) for f in found), signals.PHOTO_WITHIN) > 0


async def add_photo(s: AsyncSession, name: str, *, pet_id: str, owner_id: str, phash: int,
                    create_time: dt.datetime) -> None:
    reused = await reused_elsewhere(s, owner_id=owner_id, phash=phash, before=create_time)
    await s.execute(_insert(s, photos).on_conflict_do_nothing().values(
        name=name, pet_id=pet_id, owner_id=owner_id, phash=signals.to_signed(phash), reused=reused,
        create_time=create_time, **{f"band{i}": b for i, b in enumerate(signals.bands(phash, signals.PHOTO_BANDS))}))


async def remove_photos(s: AsyncSession, names: set[str]) -> None:
    if names:
        await s.execute(photos.delete().where(photos.c.name.in_(names)))


async def reused_counts(s: AsyncSession, pet_ids: Sequence[str]) -> dict[str, int]:
    rows = (await s.execute(sa.select(photos.c.pet_id, sa.func.count()).where(
        photos.c.pet_id.in_(pet_ids), photos.c.reused.is_(True)).group_by(photos.c.pet_id))).all()
    return {r[0]: int(r[1]) for r in rows}


# --- messages ---

async def put_message(s: AsyncSession, name: str, *, sender_id: str, text: str, create_time: dt.datetime) -> None:
    await s.execute(_insert(s, messages).values(name=name, sender_id=sender_id, create_time=create_time,
                                                **signals.flags(text)).on_conflict_do_nothing())


async def messages_of(s: AsyncSession, sender_id: str, *,
                      without: str | None = None) -> list[tuple[dt.datetime, dict[str, bool]]]:
    query = sa.select(messages).where(messages.c.sender_id == sender_id)
    if without:
        query = query.where(messages.c.name != without)
    rows = (await s.execute(query.order_by(messages.c.create_time))).all()
    return [(r.create_time, _flags(r)) for r in rows]


async def message_flags(s: AsyncSession, name: str) -> dict[str, bool] | None:
    row = (await s.execute(sa.select(messages).where(messages.c.name == name))).first()
    return _flags(row) if row else None


def listing_flags(row: Row) -> dict[str, bool]:
    return _flags(row)


# --- scored subjects ---

async def subject(s: AsyncSession, name: str) -> Row | None:
    return (await s.execute(sa.select(subjects).where(subjects.c.subject == name))).first()


async def lock_subject(s: AsyncSession, name: str, *, user_id: str, now: dt.datetime) -> Row:
    """The subject's row, made if new (no features yet, action 0) and locked until commit: two events scoring
    one subject at once take turns, so one escalation emits one fraud.detected."""
    await s.execute(_insert(s, subjects).values(subject=name, user_id=user_id, features="[]", score=0.0, action=0,
                                               label=None, update_time=now).on_conflict_do_nothing())
    row = await _locked(s, subjects, subjects.c.subject == name)
    assert row is not None
    return row


async def put_subject(s: AsyncSession, name: str, *, user_id: str, vector: Sequence[float], score: float,
                      action: int | None, now: dt.datetime) -> None:
    """Keeps the subject's latest features and score; `action` (when given) the highest action emitted."""
    await lock_subject(s, name, user_id=user_id, now=now)
    values: dict[str, object] = dict(user_id=user_id, features=json.dumps(list(vector)), score=score, update_time=now)
    if action is not None:
        values["action"] = action
    await s.execute(subjects.update().where(subjects.c.subject == name).values(**values))


async def set_label(s: AsyncSession, name: str, label: int) -> None:
    await s.execute(subjects.update().where(subjects.c.subject == name).values(label=label))


async def training_set(s: AsyncSession) -> list[tuple[list[float], int]]:
    """(features as last scored, label or -1) of every subject."""
    rows = (await s.execute(sa.select(subjects.c.features, subjects.c.label)
                            .where(subjects.c.features != "[]"))).all()  # locked before their first score
    return [(padded(json.loads(r.features)), -1 if r.label is None else int(r.label)) for r in rows]


def padded(vector: list[float]) -> list[float]:
    """A vector stored before features were added, completed with their honest values (features are only
    ever appended to features.FEATURES)."""
    return vector + [float(v) for v in features.BASELINE[len(vector):]]


def log_values(entry: Mapping[str, object]) -> dict[str, object]:
    return {**entry, "factors": json.dumps(entry["factors"])}
