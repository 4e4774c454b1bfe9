"""Autogenerates the next Alembic revision of a service: python tools/makemigration.py pet "add x"."""
import asyncio
import pathlib
import sys
import tempfile

from alembic import command
from alembic.config import Config

from app.registry import REGISTRY
from mesh.sql import Database

ROOT = pathlib.Path(__file__).resolve().parent.parent


async def main(service: str, message: str) -> None:
    cls = REGISTRY[service].load()
    if cls.migrations is None:
        raise SystemExit(f"{service} is stateless: it has no migrations")
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite+aiosqlite:///{tmp}/db.sqlite3", None)
        await db.migrate(cls.migrations)
        versions = cls.migrations / "versions"
        rev = f"{len(list(versions.glob('[0-9]*.py'))) + 1:04d}"

        def revise(conn):
            cfg = Config()
            cfg.set_main_option("script_location", str(cls.migrations))
            cfg.attributes["connection"] = conn
            command.revision(cfg, message, autogenerate=True, rev_id=rev)

        async with db.engine.begin() as conn:
            await conn.run_sync(revise)
        await db.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
