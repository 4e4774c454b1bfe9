"""suspensions that end by themselves

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa
import mesh.sql


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status_end_time', mesh.sql.UtcDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_accounts_status_end_time'), ['status_end_time'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_accounts_status_end_time'))
        batch_op.drop_column('status_end_time')
