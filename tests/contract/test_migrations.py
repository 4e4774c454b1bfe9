"""Migrations on SQLite and PostgreSQL: every service's revisions build exactly its models, and data
migrations fill what they promise for rows written before them."""
from __future__ import annotations

import asyncio
import datetime as dt

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
import pytest
import sqlalchemy as sa

from mesh.events.outbox import event_tables
from app.registry import REGISTRY
from mesh.runtime import migrate_service
from mesh.sql import Database
from tests.support.databases import drop_database, scratch_database


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request, tmp_path):
    db = scratch_database(request.param, tmp_path)
    yield db
    await drop_database(db)


@pytest.mark.parametrize("service", [s.name for s in REGISTRY if s.load().migrations])
async def test_revisions_build_exactly_the_models(database: Database, service: str):
    cls = REGISTRY[service].load()
    await migrate_service(database, cls.migrations)
    package = REGISTRY[service].module.partition(":")[0].rsplit(".", 1)[0]  # services.pet, ml.recommender
    store = __import__(f"{package}.store", fromlist=["metadata"])

    models = sa.MetaData()  # the service's tables and its outbox/inbox: the whole schema
    for table in [*store.metadata.tables.values(), *event_tables.tables.values()]:
        table.to_metadata(models)

    def drift(conn) -> list:
        if database.schema:
            conn.exec_driver_sql(f'SET search_path TO "{database.schema}"')
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), models)
        return [d for d in diff if not (d[0] == "remove_table" and d[1].name.endswith("alembic_version"))]

    async with database.engine.connect() as conn:
        assert await conn.run_sync(drift) == []


async def test_search_keys_are_filled_for_pets_listed_before_them(database: Database):
    cls = REGISTRY["pet"].load()
    await migrate_service(database, cls.migrations, "0001")
    now = dt.datetime.now(dt.timezone.utc)
    async with database.engine.begin() as conn:
        await conn.execute(sa.text(
            "INSERT INTO pets (id, owner_id, display_name, species, breed, sex, size, birth_day_known, description, "
            "status, good_with_children, good_with_dogs, good_with_cats, create_time, update_time) VALUES "
            "('p1', 'u1', ' Straße Cat ', 2, ' ÜBER ', 0, 0, true, 'Calm ΟΔΟΣ', 1, false, false, false, :t, :t)"
            .replace("INSERT INTO pets", f'INSERT INTO "{database.schema}".pets' if database.schema else
                     "INSERT INTO pets")), {"t": now})
    await migrate_service(database, cls.migrations)
    async with database.engine.connect() as conn:
        row = (await conn.execute(sa.text(
            f'SELECT breed_key, search_text FROM {database.schema + "." if database.schema else ""}pets'))).one()
    assert row.breed_key == "über" and row.search_text == "strasse cat\nüber\ncalm οδοσ"


async def test_the_runtime_adopts_outbox_and_inbox_made_by_a_service_before_it_owned_them(database: Database):
    from mesh.events import event_tables, migrate_event_tables

    def old_schema(conn) -> None:  # what every service's first migration made until the runtime owned them
        if database.schema:
            conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{database.schema}"')
        event_tables.create_all(conn)

    async with database.engine.begin() as conn:
        await conn.run_sync(old_schema)
        await conn.execute(sa.text(f"INSERT INTO {database.schema + '.' if database.schema else ''}outbox "
                                   "(event_id, event_type, body, create_time) VALUES ('e1', 'x.y', 'b', :t)"),
                           {"t": dt.datetime.now(dt.timezone.utc)})
    await migrate_event_tables(database)
    async with database.engine.connect() as conn:
        prefix = database.schema + "." if database.schema else ""
        assert (await conn.execute(sa.text(f"SELECT event_id FROM {prefix}outbox"))).scalars().all() == ["e1"]
        version = sa.text(f"SELECT version_num FROM {prefix}events_alembic_version")
        assert (await conn.execute(version)).scalar() == "0002"  # the newest


async def test_photo_counts_are_filled_for_pets_listed_before_them(database: Database):
    cls = REGISTRY["pet"].load()
    await migrate_service(database, cls.migrations, "0002")
    now = dt.datetime.now(dt.timezone.utc)
    prefix = f'"{database.schema}".' if database.schema else ""
    async with database.engine.begin() as conn:
        for pet_id in ("p1", "p2"):
            await conn.execute(sa.text(
                f"INSERT INTO {prefix}pets (id, owner_id, display_name, species, breed, sex, size, birth_day_known, "
                "description, status, good_with_children, good_with_dogs, good_with_cats, create_time, update_time) "
                "VALUES (:id, 'u1', 'Rex', 1, '', 0, 0, true, '', 1, false, false, false, :t, :t)"),
                {"id": pet_id, "t": now})
        for i in range(3):
            await conn.execute(sa.text(
                f"INSERT INTO {prefix}photos (id, pet_id, content_type, size_bytes, width, height, create_time) "
                "VALUES (:id, 'p1', 'image/png', 1, 1, 1, :t)"), {"id": f"f{i}", "t": now})
    await migrate_service(database, cls.migrations)
    async with database.engine.connect() as conn:
        counts = dict((await conn.execute(sa.text(f"SELECT id, photo_count FROM {prefix}pets"))).all())
    assert counts == {"p1": 3, "p2": 0}


async def test_replicas_starting_together_migrate_one_at_a_time(tmp_path):
    """A Deployment's pods migrate their service's schema at start (the chart's self-contained install): four
    at once on a fresh PostgreSQL schema all succeed, each finding it current after the first."""
    first = scratch_database("postgres", tmp_path)
    replicas = [first, *(Database(first.url, first.schema) for _ in range(3))]
    cls = REGISTRY["pet"].load()
    try:
        await asyncio.gather(*(migrate_service(db, cls.migrations) for db in replicas))
        async with first.engine.connect() as conn:
            assert (await conn.execute(sa.text(f'SELECT count(*) FROM "{first.schema}".pets'))).scalar() == 0
    finally:
        for db in replicas[1:]:
            await db.dispose()
        await drop_database(first)
