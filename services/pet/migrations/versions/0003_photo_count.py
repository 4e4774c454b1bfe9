"""photo count

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
    with op.batch_alter_table('pets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('photo_count', sa.Integer(), server_default='0', nullable=False))

    # Pets listed before this revision start from the photos they have (even past the limit, which
    # parallel uploads could overshoot before: they then take no more until some are deleted).
    pets = sa.table('pets', sa.column('id'), sa.column('photo_count'))
    photos = sa.table('photos', sa.column('pet_id'))
    op.execute(pets.update().values(photo_count=sa.select(sa.func.count()).select_from(photos)
                                    .where(photos.c.pet_id == pets.c.id).scalar_subquery()))


def downgrade() -> None:
    with op.batch_alter_table('pets', schema=None) as batch_op:
        batch_op.drop_column('photo_count')
