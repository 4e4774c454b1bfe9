"""business delete time (DeleteBusiness, soft)

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa

import mesh.sql

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('businesses', schema=None) as batch_op:
        batch_op.add_column(sa.Column('delete_time', mesh.sql.UtcDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('businesses', schema=None) as batch_op:
        batch_op.drop_column('delete_time')
