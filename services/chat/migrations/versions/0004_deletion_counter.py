"""deletion counter: a resume is sent only the deletions after the client's

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
    op.add_column('rooms', sa.Column('last_delete_sequence', sa.BigInteger(), server_default='0', nullable=False))
    op.add_column('messages', sa.Column('delete_sequence', sa.BigInteger(), nullable=True))
    # Tombstones made before the counter are numbered in the order of their messages.
    op.execute("UPDATE messages SET delete_sequence = (SELECT count(*) FROM messages AS m WHERE m.room_id = "
               "messages.room_id AND m.delete_time IS NOT NULL AND m.sequence <= messages.sequence) "
               "WHERE delete_time IS NOT NULL")
    op.execute("UPDATE rooms SET last_delete_sequence = (SELECT count(*) FROM messages AS m "
               "WHERE m.room_id = rooms.id AND m.delete_time IS NOT NULL)")
    op.drop_index('ix_messages_tombstones', table_name='messages')
    op.create_index('ix_messages_deletions', 'messages', ['room_id', 'delete_sequence'], unique=False,
                    sqlite_where=sa.text('delete_sequence IS NOT NULL'),
                    postgresql_where=sa.text('delete_sequence IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_messages_deletions', table_name='messages')
    op.create_index('ix_messages_tombstones', 'messages', ['room_id', 'sequence'], unique=False,
                    sqlite_where=sa.text('delete_time IS NOT NULL'),
                    postgresql_where=sa.text('delete_time IS NOT NULL'))
    with op.batch_alter_table('messages') as batch:
        batch.drop_column('delete_sequence')
    with op.batch_alter_table('rooms') as batch:
        batch.drop_column('last_delete_sequence')
