"""TOTP secrets sealed at rest: room for the ciphertext, and the id of the key that sealed it

The rows already there keep their plaintext with secret_key_id NULL: a migration has no key to seal them
with (the key is a setting of the running service), so auth seals them when it starts (module.py).

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('mfa_factors', schema=None) as batch_op:
        batch_op.alter_column('secret', existing_type=sa.String(length=64), type_=sa.String(length=255),
                              existing_nullable=False)
        batch_op.add_column(sa.Column('secret_key_id', sa.String(length=32), nullable=True))


def downgrade() -> None:
    # Sealed secrets cannot go back to plaintext without the key, and silently dropping the factors would
    # turn two-factor sign-in off: refuse instead.
    sealed = op.get_bind().scalar(sa.text("SELECT count(*) FROM mfa_factors WHERE secret_key_id IS NOT NULL"))
    if sealed:
        raise RuntimeError(f"{sealed} TOTP secrets are sealed; downgrading would lose them")
    with op.batch_alter_table('mfa_factors', schema=None) as batch_op:
        batch_op.drop_column('secret_key_id')
        batch_op.alter_column('secret', existing_type=sa.String(length=255), type_=sa.String(length=64),
                              existing_nullable=False)
