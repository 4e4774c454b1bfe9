"""PostgreSQL: an insert into the outbox notifies on commit, so every replica's relay hears of it at once

Revision ID: 0002
Revises: 0001
"""
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

# The channel is named after the schema (md5: a schema's name may be as long as a channel's may be), as
# mesh.events.outbox.notice_channel names it. Once per statement, and PostgreSQL folds equal notices of one
# transaction into one.


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute("""
        CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('outbox_' || md5(TG_TABLE_SCHEMA), '');
            RETURN NULL;
        END $$""")
    op.execute('CREATE TRIGGER outbox_notify AFTER INSERT ON outbox '
               'FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()')


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute('DROP TRIGGER outbox_notify ON outbox')
    op.execute('DROP FUNCTION outbox_notify()')
