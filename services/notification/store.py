"""The notification service's tables and the queries on them."""
from __future__ import annotations

import datetime as dt
import json

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.sql import UtcDateTime
from services.notification.domain import DEFAULT_CHANNELS

metadata = sa.MetaData()

# Who people are, as user.created told it: where email goes and how a sender is named.
contacts = sa.Table(
    "contacts", metadata,
    sa.Column("user_id", sa.String(32), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("display_name", sa.String(100), nullable=False),
)

preferences = sa.Table(
    "preferences", metadata,
    sa.Column("user_id", sa.String(32), primary_key=True),
    sa.Column("channels", sa.Text, nullable=False),  # JSON {kind: [channel, ...]} of the kinds changed
    sa.Column("phone_number", sa.String(16), nullable=False, server_default=""),
)

devices = sa.Table(
    "devices", metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # hash of the token
    sa.Column("user_id", sa.String(32), nullable=False),
    sa.Column("platform", sa.SmallInteger, nullable=False),
    sa.Column("token", sa.Text, nullable=False),
    sa.Column("register_time", UtcDateTime, nullable=False),
    sa.Index("ix_devices_user", "user_id"),
)

notifications = sa.Table(
    "notifications", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("user_id", sa.String(32), nullable=False),
    sa.Column("kind", sa.SmallInteger, nullable=False),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("target", sa.String(200), nullable=False),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("read_time", UtcDateTime, nullable=True),
    sa.Index("ix_notifications_user_time", "user_id", "create_time", "id"),
)

# One row per provider call to make: retried with back-off, SENT once done, DEAD (the dead letters)
# when the provider refused it for good or kept failing.
PENDING, SENT, DEAD = 0, 1, 2
deliveries = sa.Table(
    "deliveries", metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # also the provider's idempotency key
    sa.Column("user_id", sa.String(32), nullable=False),
    sa.Column("channel", sa.SmallInteger, nullable=False),
    sa.Column("platform", sa.SmallInteger, nullable=False),  # push: the device's; else 0
    sa.Column("address", sa.Text, nullable=False),  # push token or phone number
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("target", sa.String(200), nullable=False),
    sa.Column("notification", sa.String(200), nullable=False),
    sa.Column("state", sa.SmallInteger, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_time", UtcDateTime, nullable=False),
    sa.Column("last_error", sa.Text, nullable=False, server_default=""),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("send_time", UtcDateTime, nullable=True),
    sa.Index("ix_deliveries_due", "state", "next_attempt_time"),
)


async def channels_for(s: AsyncSession, user_id: str) -> tuple[dict[int, tuple[int, ...]], str]:
    """A person's channels per kind (their choices over the defaults) and their SMS number."""
    row = (await s.execute(sa.select(preferences).where(preferences.c.user_id == user_id))).one_or_none()
    chosen = dict(DEFAULT_CHANNELS)
    if row is None:
        return chosen, ""
    chosen.update({int(k): tuple(v) for k, v in json.loads(row.channels).items()})
    return chosen, row.phone_number


async def save_preferences(s: AsyncSession, user_id: str, *, channels: dict[int, tuple[int, ...]] | None,
                           phone_number: str | None) -> None:
    row = (await s.execute(sa.select(preferences).where(preferences.c.user_id == user_id)
                           .with_for_update())).one_or_none()
    stored = {} if row is None else {int(k): tuple(v) for k, v in json.loads(row.channels).items()}
    stored.update(channels or {})
    values = {"channels": json.dumps({str(k): list(v) for k, v in sorted(stored.items())}),
              "phone_number": phone_number if phone_number is not None else (row.phone_number if row else "")}
    if row is None:
        await s.execute(preferences.insert().values(user_id=user_id, **values))
    else:
        await s.execute(preferences.update().where(preferences.c.user_id == user_id).values(**values))


async def contact(s: AsyncSession, user_id: str) -> sa.Row | None:
    return (await s.execute(sa.select(contacts).where(contacts.c.user_id == user_id))).one_or_none()


async def unread_count(s: AsyncSession, user_id: str) -> int:
    return int(await s.scalar(sa.select(sa.func.count()).select_from(notifications).where(
        notifications.c.user_id == user_id, notifications.c.read_time.is_(None))) or 0)


def due(now: dt.datetime, limit: int) -> sa.Select:
    """Deliveries whose time has come, oldest first; PostgreSQL skips those another replica holds."""
    return (sa.select(deliveries).where(deliveries.c.state == PENDING, deliveries.c.next_attempt_time <= now)
            .order_by(deliveries.c.next_attempt_time).limit(limit).with_for_update(skip_locked=True))
