"""booking signals: an account's cancelled bookings and failed charges (from booking.cancelled)

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
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cancelled_bookings', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('failed_charges', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('failed_charges')
        batch_op.drop_column('cancelled_bookings')
