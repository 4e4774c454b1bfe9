"""returned payouts (reversed and paid again, to the business's latest payout account) and charges
whose payer never acted

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
    op.create_table(
        'payout_accounts',
        sa.Column('business_id', sa.String(length=32), nullable=False),
        sa.Column('account', sa.String(length=128), nullable=False),
        sa.Column('update_time', mesh.sql.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('business_id'),
    )
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('return_state', sa.SmallInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('return_time', mesh.sql.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('retry_of', sa.String(length=32), server_default='', nullable=False))
        batch_op.add_column(sa.Column('action_deadline', mesh.sql.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('start_time', mesh.sql.UtcDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_payments_business', ['business_id', 'kind'], unique=False)
        batch_op.create_index('ix_payments_returns', ['return_state', 'next_attempt_time'], unique=False)


def downgrade() -> None:
    op.drop_table('payout_accounts')
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_index('ix_payments_returns')
        batch_op.drop_index('ix_payments_business')
        batch_op.drop_column('start_time')
        batch_op.drop_column('action_deadline')
        batch_op.drop_column('retry_of')
        batch_op.drop_column('return_time')
        batch_op.drop_column('return_state')
