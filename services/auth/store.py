"""Auth's tables: accounts, refresh tokens (hashed, grouped in families), email verification tokens."""
import sqlalchemy as sa

from mesh.sql import UtcDateTime

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
