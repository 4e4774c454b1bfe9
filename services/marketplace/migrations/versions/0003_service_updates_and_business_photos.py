"""service update and delete times, business photos

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa
import mesh.sql


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('business_photos',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('business_id', sa.String(length=32), nullable=False),
    sa.Column('content_type', sa.String(length=32), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('create_time', mesh.sql.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['business_id'], ['businesses.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('business_photos', schema=None) as batch_op:
        batch_op.create_index('ix_business_photos_business', ['business_id', 'create_time'], unique=False)

    with op.batch_alter_table('services', schema=None) as batch_op:
        batch_op.add_column(sa.Column('update_time', mesh.sql.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('delete_time', mesh.sql.UtcDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('services', schema=None) as batch_op:
        batch_op.drop_column('delete_time')
        batch_op.drop_column('update_time')

    with op.batch_alter_table('business_photos', schema=None) as batch_op:
        batch_op.drop_index('ix_business_photos_business')

    op.drop_table('business_photos')
