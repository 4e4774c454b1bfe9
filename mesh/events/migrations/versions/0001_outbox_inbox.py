"""outbox and inbox, owned by the runtime

Revision ID: 0001
Revises:
"""
from alembic import op
import sqlalchemy as sa
import mesh.sql


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Services' schemas made before the runtime owned these tables already have them (their own
    # first migration made them): adopt those as they are.
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if 'inbox' not in existing:
        op.create_table('inbox',
        sa.Column('consumer', sa.String(length=100), nullable=False),
        sa.Column('event_id', sa.String(length=36), nullable=False),
        sa.Column('process_time', mesh.sql.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('consumer', 'event_id')
        )
    if 'outbox' not in existing:
        op.create_table('outbox',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('event_id', sa.String(length=36), nullable=False),
        sa.Column('event_type', sa.String(length=100), nullable=False),
        sa.Column('body', sa.LargeBinary(), nullable=False),
        sa.Column('create_time', mesh.sql.UtcDateTime(timezone=True), nullable=False),
        sa.Column('publish_time', mesh.sql.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('event_id')
        )
        with op.batch_alter_table('outbox', schema=None) as batch_op:
            batch_op.create_index('ix_outbox_pending', ['publish_time', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_pending')
    op.drop_table('outbox')
    op.drop_table('inbox')
