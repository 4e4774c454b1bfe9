"""tombstones index

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A resuming stream is sent the tombstones at or below its position: only deleted messages indexed.
    op.create_index('ix_messages_tombstones', 'messages', ['room_id', 'sequence'], unique=False,
                    sqlite_where=sa.text('delete_time IS NOT NULL'),
                    postgresql_where=sa.text('delete_time IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_messages_tombstones', table_name='messages')
