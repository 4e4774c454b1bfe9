"""Autogenerates the next Alembic revision of a service: python tools/makemigration.py pet "add x"
(`events` for the runtime's own outbox and inbox tables)."""
import asyncio
import sys
import tempfile
from pathlib import Path

from alembic import command

from app.registry import REGISTRY
from mesh.events import event_table_names, migrate_event_tables
from mesh.events.outbox import MIGRATIONS as EVENT_MIGRATIONS, VERSION_TABLE as EVENT_VERSION_TABLE
from mesh.runtime import migrate_service
from mesh.sql import Database, migrations_config


async def main(service: str, message: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite+aiosqlite:///{tmp}/db.sqlite3", None)
        if service == "events":
            migrations: Path = EVENT_MIGRATIONS
            await migrate_event_tables(db)
            options: dict = {"version_table": EVENT_VERSION_TABLE}
        else:
            tree = REGISTRY[service].load().migrations
            if tree is None:
                raise SystemExit(f"{service} is stateless: it has no migrations")
            migrations = tree
            await migrate_service(db, migrations)
            options = {"other_tables": event_table_names()}
        rev = f"{len(list((migrations / 'versions').glob('[0-9]*.py'))) + 1:04d}"

        def revise(conn) -> None:
            command.revision(migrations_config(conn, migrations, **options), message, autogenerate=True, rev_id=rev)

        async with db.engine.begin() as conn:
            await conn.run_sync(revise)
        await db.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
