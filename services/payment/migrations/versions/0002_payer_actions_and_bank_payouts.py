"""payer actions (3-D Secure) and bank payouts

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('client_secret', sa.String(length=255), server_default='', nullable=False))
        batch_op.add_column(sa.Column('action_url', sa.String(length=2048), server_default='', nullable=False))
        batch_op.add_column(sa.Column('bank_payout', sa.SmallInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('bank_payout_reference', sa.String(length=128), server_default='',
                                      nullable=False))
        batch_op.create_index('ix_payments_bank_payout', ['bank_payout_reference'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_index('ix_payments_bank_payout')
        batch_op.drop_column('bank_payout_reference')
        batch_op.drop_column('bank_payout')
        batch_op.drop_column('action_url')
        batch_op.drop_column('client_secret')
