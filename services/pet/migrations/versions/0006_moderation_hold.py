"""moderation: the hold a hide covers, restored when the hide is reversed

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('pets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('moderation_hold_case', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('moderation_hold_reason', sa.String(length=500), server_default='',
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('pets', schema=None) as batch_op:
        batch_op.drop_column('moderation_hold_reason')
        batch_op.drop_column('moderation_hold_case')
