"""listing (adoption or playdates) and energy

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
    # Every pet listed before this revision was listed for adoption (LISTING_ADOPTION = 1).
    with op.batch_alter_table('pets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('listing', sa.SmallInteger(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('energy', sa.SmallInteger(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('pets', schema=None) as batch_op:
        batch_op.drop_column('energy')
        batch_op.drop_column('listing')
