"""subjects.sent_time: a message's row is kept while the message can be reported

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
import mesh.sql


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('subjects') as batch_op:
        batch_op.add_column(sa.Column('sent_time', mesh.sql.UtcDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_subjects_sent', ['sent_time'], unique=False)
    # Messages remembered before: when each was sent is not known, so each gets a full window from now.
    op.execute(sa.text("UPDATE subjects SET sent_time = :now WHERE name LIKE 'rooms/%'")
               .bindparams(sa.bindparam('now', mesh.sql.utcnow(), type_=mesh.sql.UtcDateTime(timezone=True))))


def downgrade() -> None:
    with op.batch_alter_table('subjects') as batch_op:
        batch_op.drop_index('ix_subjects_sent')
        batch_op.drop_column('sent_time')
