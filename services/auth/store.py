"""Auth's tables (accounts, refresh tokens hashed and grouped in families, email verification tokens) and
the queries on them."""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.sql import Row, UtcDateTime, rows_changed

metadata = sa.MetaData()

accounts = sa.Table(
    "accounts", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("email", sa.String(254), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(100), nullable=False),
    sa.Column("display_name", sa.String(64), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("email_verified", sa.Boolean, nullable=False, default=False),
    sa.Column("create_time", UtcDateTime, nullable=False),
)

# One family per login; every rotation adds a token to it. Only hashes are stored.
refresh_tokens = sa.Table(
    "refresh_tokens", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("family_id", sa.String(32), nullable=False, index=True),
    sa.Column("account_id", sa.String(32), sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("expire_time", UtcDateTime, nullable=False),
    sa.Column("use_time", UtcDateTime, nullable=True),  # set when rotated: presenting it again is reuse
    sa.Column("revoke_time", UtcDateTime, nullable=True),
)

verification_tokens = sa.Table(
    "verification_tokens", metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("account_id", sa.String(32), sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("expire_time", UtcDateTime, nullable=False),
    sa.Column("use_time", UtcDateTime, nullable=True),
)


# --- accounts ---

async def add_account(s: AsyncSession, *, account_id: str, email: str, password_hash: str, display_name: str,
                      role: str, create_time: dt.datetime) -> None:
    """A new account, its email not yet verified. IntegrityError when the email has an account."""
    await s.execute(accounts.insert().values(id=account_id, email=email, password_hash=password_hash,
                                             display_name=display_name, role=role, email_verified=False,
                                             create_time=create_time))


async def find_account(s: AsyncSession, account_id: str) -> Row | None:
    return (await s.execute(sa.select(accounts).where(accounts.c.id == account_id))).first()


async def get_account(s: AsyncSession, account_id: str) -> Row:
    """An account that must exist, such as a token's (tokens are deleted with their account)."""
    return (await s.execute(sa.select(accounts).where(accounts.c.id == account_id))).one()


async def find_account_by_email(s: AsyncSession, email: str) -> Row | None:
    """`email`: normalised (domain.normalise_email), as it is stored."""
    return (await s.execute(sa.select(accounts).where(accounts.c.email == email))).first()


async def mark_email_verified(s: AsyncSession, account_id: str) -> None:
    await s.execute(accounts.update().where(accounts.c.id == account_id).values(email_verified=True))


# --- refresh tokens ---

async def add_refresh_token(s: AsyncSession, *, token_id: str, family_id: str, account_id: str, token_hash: str,
                            create_time: dt.datetime, expire_time: dt.datetime) -> None:
    await s.execute(refresh_tokens.insert().values(id=token_id, family_id=family_id, account_id=account_id,
                                                   token_hash=token_hash, create_time=create_time,
                                                   expire_time=expire_time))


async def find_refresh_token(s: AsyncSession, token_hash: str) -> Row | None:
    return (await s.execute(sa.select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash))).first()


async def find_refresh_token_family(s: AsyncSession, token_hash: str) -> str | None:
    return await s.scalar(sa.select(refresh_tokens.c.family_id).where(refresh_tokens.c.token_hash == token_hash))


async def use_refresh_token(s: AsyncSession, token_id: str, now: dt.datetime) -> bool:
    """Marks a refresh token used, unless it already was: False then. A compare-and-set, so of two concurrent
    uses of one token only one succeeds."""
    return await rows_changed(s, refresh_tokens.update().where(
        refresh_tokens.c.id == token_id, refresh_tokens.c.use_time.is_(None)).values(use_time=now)) == 1


async def revoke_refresh_token_family(s: AsyncSession, family_id: str, now: dt.datetime) -> None:
    """Revokes every token of a login that is not revoked yet."""
    await s.execute(refresh_tokens.update().where(
        refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoke_time.is_(None)).values(revoke_time=now))


# --- verification tokens ---

async def add_verification_token(s: AsyncSession, *, token_hash: str, account_id: str, create_time: dt.datetime,
                                 expire_time: dt.datetime) -> None:
    await s.execute(verification_tokens.insert().values(token_hash=token_hash, account_id=account_id,
                                                        create_time=create_time, expire_time=expire_time))


async def find_verification_token(s: AsyncSession, token_hash: str) -> Row | None:
    return (await s.execute(sa.select(verification_tokens).where(
        verification_tokens.c.token_hash == token_hash))).first()


async def use_verification_token(s: AsyncSession, token_hash: str, now: dt.datetime) -> bool:
    """Marks a verification token used, unless it already was: False then (a compare-and-set)."""
    return await rows_changed(s, verification_tokens.update().where(
        verification_tokens.c.token_hash == token_hash, verification_tokens.c.use_time.is_(None)).values(
        use_time=now)) == 1
