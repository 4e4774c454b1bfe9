"""initial

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
    op.create_table('contacts',
                    sa.Column('user_id', sa.String(length=32), nullable=False),
                    sa.Column('email', sa.String(length=320), nullable=False),
                    sa.Column('display_name', sa.String(length=100), nullable=False),
                    sa.PrimaryKeyConstraint('user_id'))
    op.create_table('preferences',
                    sa.Column('user_id', sa.String(length=32), nullable=False),
                    sa.Column('channels', sa.Text(), nullable=False),
                    sa.Column('phone_number', sa.String(length=16), server_default='', nullable=False),
                    sa.PrimaryKeyConstraint('user_id'))
    op.create_table('devices',
                    sa.Column('id', sa.String(length=32), nullable=False),
                    sa.Column('user_id', sa.String(length=32), nullable=False),
                    sa.Column('platform', sa.SmallInteger(), nullable=False),
                    sa.Column('token', sa.Text(), nullable=False),
                    sa.Column('register_time', mesh.sql.UtcDateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_devices_user', 'devices', ['user_id'])
    op.create_table('notifications',
                    sa.Column('id', sa.String(length=32), nullable=False),
                    sa.Column('user_id', sa.String(length=32), nullable=False),
                    sa.Column('kind', sa.SmallInteger(), nullable=False),
                    sa.Column('title', sa.String(length=200), nullable=False),
                    sa.Column('body', sa.Text(), nullable=False),
                    sa.Column('target', sa.String(length=200), nullable=False),
                    sa.Column('create_time', mesh.sql.UtcDateTime(timezone=True), nullable=False),
                    sa.Column('read_time', mesh.sql.UtcDateTime(timezone=True), nullable=True),
                    sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_notifications_user_time', 'notifications', ['user_id', 'create_time', 'id'])
    op.create_table('deliveries',
                    sa.Column('id', sa.String(length=32), nullable=False),
                    sa.Column('user_id', sa.String(length=32), nullable=False),
                    sa.Column('channel', sa.SmallInteger(), nullable=False),
                    sa.Column('platform', sa.SmallInteger(), nullable=False),
                    sa.Column('address', sa.Text(), nullable=False),
                    sa.Column('title', sa.String(length=200), nullable=False),
                    sa.Column('body', sa.Text(), nullable=False),
                    sa.Column('target', sa.String(length=200), nullable=False),
                    sa.Column('notification', sa.String(length=200), nullable=False),
                    sa.Column('state', sa.SmallInteger(), nullable=False),
                    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
                    sa.Column('next_attempt_time', mesh.sql.UtcDateTime(timezone=True), nullable=False),
                    sa.Column('last_error', sa.Text(), server_default='', nullable=False),
                    sa.Column('create_time', mesh.sql.UtcDateTime(timezone=True), nullable=False),
                    sa.Column('send_time', mesh.sql.UtcDateTime(timezone=True), nullable=True),
                    sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_deliveries_due', 'deliveries', ['state', 'next_attempt_time'])


def downgrade() -> None:
    for table in ('deliveries', 'notifications', 'devices', 'preferences', 'contacts'):
        op.drop_table(table)
