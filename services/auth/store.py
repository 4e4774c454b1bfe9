"""Auth's tables (accounts, sessions and their refresh tokens hashed, email verification tokens, TOTP
factors and recovery codes, provider links) and the queries on them."""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from sqlalchemy.dialects import postgresql, sqlite

from mesh.pagination import select_page
from mesh.sql import Row, UtcDateTime, rows_changed

metadata = sa.MetaData()

accounts = sa.Table(
    "accounts", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    # None: an account made by a provider sign-in that gave no email (LINE without the email permission).
    sa.Column("email", sa.String(254), nullable=True, unique=True),
    sa.Column("password_hash", sa.String(100), nullable=True),  # None: made by a provider sign-in
    sa.Column("display_name", sa.String(64), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("email_verified", sa.Boolean, nullable=False, default=False),
    sa.Column("create_time", UtcDateTime, nullable=False, index=True),
    # active, suspended or banned (domain.STATUSES); why, and the moderation case that set it, if one did.
    sa.Column("status", sa.String(16), nullable=False, server_default="active"),
    sa.Column("status_reason", sa.String(500), nullable=False, server_default=""),
    sa.Column("status_case", sa.String(64), nullable=True),
    sa.Column("status_update_time", UtcDateTime, nullable=True),
)

# Each token-signing key the service has signed with (its RFC 7638 kid): a kid not seen before, when
# others were, is a key rotation (security.event_recorded).
signing_keys = sa.Table(
    "signing_keys", metadata,
    sa.Column("kid", sa.String(64), primary_key=True),
    sa.Column("first_use_time", UtcDateTime, nullable=False),
)

# One session per sign-in: its id is the refresh token family's and the access tokens' `sid`.
sessions = sa.Table(
    "sessions", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("account_id", sa.String(32), sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("user_agent", sa.String(256), nullable=False),
    sa.Column("platform", sa.String(16), nullable=False),
    sa.Column("client_address", sa.String(64), nullable=False),
    sa.Column("amr", sa.String(64), nullable=False),  # how it signed in: space-separated RFC 8176 values
    sa.Column("method", sa.String(64), nullable=False),  # `password` or `provider:<name>`
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("last_use_time", UtcDateTime, nullable=False),
    sa.Column("expire_time", UtcDateTime, nullable=False),  # that of its newest refresh token
    sa.Column("revoke_time", UtcDateTime, nullable=True),
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

# A TOTP secret; active once confirmed. last_step: the time step of the last code accepted, so no code
# (nor an older one) is accepted twice.
mfa_factors = sa.Table(
    "mfa_factors", metadata,
    sa.Column("account_id", sa.String(32), sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("secret", sa.String(64), nullable=False),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("confirm_time", UtcDateTime, nullable=True),
    sa.Column("last_step", sa.BigInteger, nullable=True),
)

recovery_codes = sa.Table(
    "recovery_codes", metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("account_id", sa.String(32), sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("use_time", UtcDateTime, nullable=True),
)

# A provider identity (the provider's `sub`) linked to an account: one per provider and account.
provider_links = sa.Table(
    "provider_links", metadata,
    sa.Column("provider", sa.String(16), primary_key=True),
    sa.Column("subject", sa.String(255), primary_key=True),
    sa.Column("account_id", sa.String(32), sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("email", sa.String(254), nullable=True),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.UniqueConstraint("account_id", "provider"),
)


# --- accounts ---

async def add_account(s: AsyncSession, *, account_id: str, email: str | None, password_hash: str | None,
                      display_name: str, role: str, create_time: dt.datetime, email_verified: bool = False) -> None:
    """A new account. IntegrityError when the email has an account."""
    await s.execute(accounts.insert().values(id=account_id, email=email, password_hash=password_hash,
                                             display_name=display_name, role=role, email_verified=email_verified,
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


async def lock_account(s: AsyncSession, account_id: str) -> Row | None:
    """An account, its row locked until the transaction ends (PostgreSQL; SQLite serialises writers)."""
    return (await s.execute(sa.select(accounts).where(accounts.c.id == account_id).with_for_update())).first()


async def lock_admins(s: AsyncSession) -> list[str]:
    """The active admins' ids, every admin row locked: two admins demoting each other at once cannot leave
    none."""
    rows = (await s.execute(sa.select(accounts.c.id, accounts.c.status).where(accounts.c.role == "admin")
                            .order_by(accounts.c.id).with_for_update())).all()
    return [r.id for r in rows if r.status == "active"]


async def set_role(s: AsyncSession, account_id: str, role: str) -> None:
    await s.execute(accounts.update().where(accounts.c.id == account_id).values(role=role))


async def set_status(s: AsyncSession, account_id: str, *, status: str, reason: str, case: str | None,
                     now: dt.datetime) -> None:
    await s.execute(accounts.update().where(accounts.c.id == account_id).values(
        status=status, status_reason=reason, status_case=case, status_update_time=now))


async def list_accounts(s: AsyncSession, *, email: str | None, role: str | None, status: str | None,
                        after: tuple[dt.datetime, str] | None, size: int) -> list[Row]:
    """Accounts matching the filters, newest first, one row more than a page."""
    query = sa.select(accounts)
    if email is not None:
        query = query.where(accounts.c.email == email)
    if role is not None:
        query = query.where(accounts.c.role == role)
    if status is not None:
        query = query.where(accounts.c.status == status)
    return list((await s.execute(select_page(query, after, accounts.c.create_time, accounts.c.id,
                                             descending=True, size=size))).all())


async def mfa_enabled(s: AsyncSession, account_id: str) -> bool:
    return await s.scalar(sa.select(sa.func.count()).select_from(mfa_factors).where(
        mfa_factors.c.account_id == account_id, mfa_factors.c.confirm_time.is_not(None))) == 1


async def record_signing_key(s: AsyncSession, kid: str, now: dt.datetime) -> bool:
    """Records a signing key's first use: True when it is new and another key was used before it (a rotation).
    Of replicas starting together with the new key, only one inserts it."""
    others = await s.scalar(sa.select(sa.func.count()).select_from(signing_keys).where(signing_keys.c.kid != kid))
    insert = (postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert)(signing_keys)
    added = await rows_changed(s, insert.values(kid=kid, first_use_time=now).on_conflict_do_nothing()) == 1
    return added and bool(others)


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
    """Revokes a session and every token of it that is not revoked yet."""
    await s.execute(refresh_tokens.update().where(
        refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoke_time.is_(None)).values(revoke_time=now))
    await s.execute(sessions.update().where(sessions.c.id == family_id, sessions.c.revoke_time.is_(None)).values(
        revoke_time=now))


# --- sessions ---

async def add_session(s: AsyncSession, *, session_id: str, account_id: str, user_agent: str, platform: str,
                      client_address: str, amr: str, method: str, now: dt.datetime, expire_time: dt.datetime) -> None:
    await s.execute(sessions.insert().values(
        id=session_id, account_id=account_id, user_agent=user_agent, platform=platform, client_address=client_address,
        amr=amr, method=method, create_time=now, last_use_time=now, expire_time=expire_time))


async def find_session(s: AsyncSession, session_id: str) -> Row | None:
    return (await s.execute(sa.select(sessions).where(sessions.c.id == session_id))).first()


async def touch_session(s: AsyncSession, session_id: str, *, now: dt.datetime, expire_time: dt.datetime) -> None:
    await s.execute(sessions.update().where(sessions.c.id == session_id).values(
        last_use_time=now, expire_time=expire_time))


async def set_session_amr(s: AsyncSession, session_id: str, amr: str) -> None:
    await s.execute(sessions.update().where(sessions.c.id == session_id).values(amr=amr))


async def live_sessions(s: AsyncSession, account_id: str, now: dt.datetime) -> list[Row]:
    """An account's sessions neither revoked nor expired, newest first."""
    return list((await s.execute(sa.select(sessions).where(
        sessions.c.account_id == account_id, sessions.c.revoke_time.is_(None), sessions.c.expire_time > now,
    ).order_by(sessions.c.create_time.desc(), sessions.c.id))).all())


async def known_device(s: AsyncSession, account_id: str, *, user_agent: str, platform: str) -> bool | None:
    """Whether the account signed in before from this device (user agent and platform); None when it never
    signed in at all."""
    rows = (await s.execute(sa.select(sessions.c.user_agent, sessions.c.platform).where(
        sessions.c.account_id == account_id))).all()
    if not rows:
        return None
    return any(r.user_agent == user_agent and r.platform == platform for r in rows)


# --- two-factor authentication ---

async def find_mfa(s: AsyncSession, account_id: str) -> Row | None:
    return (await s.execute(sa.select(mfa_factors).where(mfa_factors.c.account_id == account_id))).first()


async def put_pending_mfa(s: AsyncSession, account_id: str, secret: str, now: dt.datetime) -> None:
    """A new, unconfirmed secret (replacing an unconfirmed one)."""
    await s.execute(mfa_factors.delete().where(mfa_factors.c.account_id == account_id,
                                               mfa_factors.c.confirm_time.is_(None)))
    await s.execute(mfa_factors.insert().values(account_id=account_id, secret=secret, create_time=now))


async def use_mfa_step(s: AsyncSession, account_id: str, step: int) -> bool:
    """Records that the code of time step `step` was accepted, unless it or a later one already was: False
    then (a compare-and-set, so of two concurrent uses of one code only one succeeds)."""
    return await rows_changed(s, mfa_factors.update().where(
        mfa_factors.c.account_id == account_id,
        sa.or_(mfa_factors.c.last_step.is_(None), mfa_factors.c.last_step < step)).values(last_step=step)) == 1


async def confirm_mfa(s: AsyncSession, account_id: str, now: dt.datetime) -> None:
    await s.execute(mfa_factors.update().where(mfa_factors.c.account_id == account_id).values(confirm_time=now))


async def delete_mfa(s: AsyncSession, account_id: str) -> None:
    await s.execute(mfa_factors.delete().where(mfa_factors.c.account_id == account_id))
    await s.execute(recovery_codes.delete().where(recovery_codes.c.account_id == account_id))


async def replace_recovery_codes(s: AsyncSession, account_id: str, code_hashes: list[str]) -> None:
    await s.execute(recovery_codes.delete().where(recovery_codes.c.account_id == account_id))
    await s.execute(recovery_codes.insert(), [{"code_hash": h, "account_id": account_id} for h in code_hashes])


async def use_recovery_code(s: AsyncSession, account_id: str, code_hash: str, now: dt.datetime) -> bool:
    """Spends a recovery code of the account: False when it is not one, or was used (a compare-and-set)."""
    return await rows_changed(s, recovery_codes.update().where(
        recovery_codes.c.account_id == account_id, recovery_codes.c.code_hash == code_hash,
        recovery_codes.c.use_time.is_(None)).values(use_time=now)) == 1


async def recovery_codes_left(s: AsyncSession, account_id: str) -> int:
    return int(await s.scalar(sa.select(sa.func.count()).select_from(recovery_codes).where(
        recovery_codes.c.account_id == account_id, recovery_codes.c.use_time.is_(None))) or 0)


# --- provider links ---

async def find_link(s: AsyncSession, provider: str, subject: str) -> Row | None:
    return (await s.execute(sa.select(provider_links).where(
        provider_links.c.provider == provider, provider_links.c.subject == subject))).first()


async def links_of(s: AsyncSession, account_id: str) -> list[Row]:
    return list((await s.execute(sa.select(provider_links).where(provider_links.c.account_id == account_id))).all())


async def add_link(s: AsyncSession, *, provider: str, subject: str, account_id: str, email: str | None,
                   now: dt.datetime) -> None:
    """IntegrityError when the identity is linked, or the account has a link to this provider."""
    await s.execute(provider_links.insert().values(provider=provider, subject=subject, account_id=account_id,
                                                   email=email, create_time=now))


async def delete_link(s: AsyncSession, account_id: str, provider: str) -> bool:
    return await rows_changed(s, provider_links.delete().where(
        provider_links.c.account_id == account_id, provider_links.c.provider == provider)) == 1


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
