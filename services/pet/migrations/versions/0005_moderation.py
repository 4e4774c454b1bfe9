"""moderation: pets held or hidden

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every pet listed before this revision is visible (MODERATION_VISIBLE = 1).
    with op.batch_alter_table('pets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('moderation', sa.SmallInteger(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('moderation_reason', sa.String(length=500), server_default='', nullable=False))
        batch_op.add_column(sa.Column('moderation_case', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('pets', schema=None) as batch_op:
        batch_op.drop_column('moderation_case')
        batch_op.drop_column('moderation_reason')
        batch_op.drop_column('moderation')
