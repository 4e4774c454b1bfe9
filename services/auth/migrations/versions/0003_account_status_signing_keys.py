"""account status (suspension, ban) and the signing keys seen

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa
import mesh.sql


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status', sa.String(length=16), nullable=False, server_default='active'))
        batch_op.add_column(sa.Column('status_reason', sa.String(length=500), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('status_case', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('status_update_time', mesh.sql.UtcDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_accounts_create_time'), ['create_time'], unique=False)
    op.create_table('signing_keys',
    sa.Column('kid', sa.String(length=64), nullable=False),
    sa.Column('first_use_time', mesh.sql.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('kid')
    )


def downgrade() -> None:
    op.drop_table('signing_keys')
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_accounts_create_time'))
        batch_op.drop_column('status_update_time')
        batch_op.drop_column('status_case')
        batch_op.drop_column('status_reason')
        batch_op.drop_column('status')
