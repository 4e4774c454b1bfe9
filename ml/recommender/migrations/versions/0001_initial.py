"""initial: pets and interactions kept from events, and the change counter

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
    op.create_table('pets',
    sa.Column('pet_id', sa.String(length=32), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('known', sa.Boolean(), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('species', sa.SmallInteger(), nullable=False),
    sa.Column('size', sa.SmallInteger(), nullable=False),
    sa.Column('energy', sa.SmallInteger(), nullable=False),
    sa.Column('birth_month', sa.Integer(), nullable=True),
    sa.Column('latitude', sa.Float(), nullable=True),
    sa.Column('longitude', sa.Float(), nullable=True),
    sa.Column('good_with_children', sa.Boolean(), nullable=False),
    sa.Column('good_with_pets', sa.Boolean(), nullable=False),
    sa.Column('listing', sa.SmallInteger(), nullable=False),
    sa.Column('status', sa.SmallInteger(), nullable=False),
    sa.Column('owner_id', sa.String(length=32), nullable=False),
    sa.Column('popularity', sa.Float(), nullable=False),
    sa.Column('update_time', mesh.sql.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('pet_id'),
    sa.UniqueConstraint('seq')
    )
    op.create_table('interactions',
    sa.Column('user_id', sa.String(length=32), nullable=False),
    sa.Column('pet_id', sa.String(length=32), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('action', sa.SmallInteger(), nullable=False),
    sa.Column('weight', sa.Float(), nullable=False),
    sa.Column('swipe', sa.String(length=64), nullable=False),
    sa.Column('create_time', mesh.sql.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('user_id', 'pet_id', 'source')
    )
    op.create_index('ix_interactions_pet', 'interactions', ['pet_id'], unique=False)
    counters = op.create_table('counters',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    # The one row every pet change numbers itself from (store.next_seq).
    op.bulk_insert(counters, [{'name': 'pets', 'value': 0}])


def downgrade() -> None:
    op.drop_table('counters')
    op.drop_index('ix_interactions_pet', table_name='interactions')
    op.drop_table('interactions')
    op.drop_table('pets')
