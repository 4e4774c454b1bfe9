"""Scratch databases for the relational contract suites: a SQLite file, or a schema of its own in the
test PostgreSQL, dropped afterwards."""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path

import sqlalchemy as sa

from mesh.sql import Database
from tests.support.platform import POSTGRES_URL


def scratch_database(kind: str, tmp_path: Path, *, info: Mapping[str, object] | None = None) -> Database:
    """kind: "sqlite" or "postgres"; the PostgreSQL schema is named but not created."""
    if kind == "sqlite":
        return Database(f"sqlite+aiosqlite:///{tmp_path}/scratch.sqlite3", None, info=info)
    return Database(POSTGRES_URL, f"test_{uuid.uuid4().hex[:12]}", info=info)


async def drop_database(db: Database) -> None:
    if db.schema:
        async with db.engine.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{db.schema}" CASCADE'))
    await db.dispose()
