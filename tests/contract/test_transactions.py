"""The relational port's transactions, on SQLite and PostgreSQL alike: a writing transaction owns
what it read (no lost update, however parallel), and a reading one never writes."""
from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import enum
import sqlite3

import pytest
import sqlalchemy as sa

from mesh.sql import Database, UtcDateTime, is_unavailable
from tests.support.databases import drop_database, scratch_database

counters = sa.MetaData()
counter = sa.Table("counter", counters, sa.Column("id", sa.Integer, primary_key=True),
                   sa.Column("value", sa.Integer, nullable=False))


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request, tmp_path):
    d = scratch_database(request.param, tmp_path)
    async with d.engine.begin() as conn:
        if d.schema:
            await conn.execute(sa.text(f'CREATE SCHEMA "{d.schema}"'))
        await conn.run_sync(counters.create_all)
        await conn.execute(counter.insert().values(id=1, value=0))
    yield d
    await drop_database(d)


async def test_read_then_write_loses_no_update(db: Database):
    async def increment() -> None:
        async with db.transaction() as s:
            value = await s.scalar(sa.select(counter.c.value).where(counter.c.id == 1).with_for_update())
            await asyncio.sleep(0)  # let the others read meanwhile, were they allowed to
            await s.execute(counter.update().where(counter.c.id == 1).values(value=value + 1))

    await asyncio.gather(*(increment() for _ in range(20)))
    async with db.read() as s:
        assert await s.scalar(sa.select(counter.c.value)) == 20


async def test_a_read_sees_one_snapshot_and_writes_nothing_on_postgresql(db: Database):
    async with db.read() as s:
        assert await s.scalar(sa.select(counter.c.value)) == 0
        if not db.is_sqlite:
            with pytest.raises(sa.exc.DBAPIError, match="read-only"):
                await s.execute(counter.update().values(value=5))
    async with db.read() as s:
        assert await s.scalar(sa.select(counter.c.value)) == 0


async def test_a_read_does_not_see_what_commits_while_it_runs(db: Database):
    # A page and its next-page token, a row and its children: read() answers from one snapshot.
    async with db.read() as s:
        assert await s.scalar(sa.select(counter.c.value)) == 0
        async with db.transaction() as w:
            await w.execute(counter.update().values(value=9))
        assert await s.scalar(sa.select(counter.c.value)) == 0, "the same snapshot throughout"
    async with db.read() as s:
        assert await s.scalar(sa.select(counter.c.value)) == 9


async def test_reading_sees_a_committed_write_and_leaves_nothing_behind(db: Database):
    async with db.transaction() as s:
        await s.execute(counter.update().values(value=7))
    assert await db.reading(lambda s: s.scalar(sa.select(counter.c.value))) == 7

    async def write(s):
        await s.execute(counter.update().values(value=8))
        raise RuntimeError("roll it back")
    with pytest.raises((RuntimeError, sa.exc.DBAPIError)):  # PostgreSQL refuses the write itself
        await db.reading(write)
    assert await db.reading(lambda s: s.scalar(sa.select(counter.c.value))) == 7


async def test_a_sqlite_read_runs_without_giving_the_loop_away(db: Database):
    """Issue 8: aiosqlite hands every step of a read to its thread and back; reading() on SQLite runs it at
    once on the loop's thread, so nothing else runs in between (on PostgreSQL each query is a round trip)."""
    others_ran = []

    async def other() -> None:
        others_ran.append(1)

    async def read(s):
        task = asyncio.create_task(other())
        values = [await s.scalar(sa.select(counter.c.value)) for _ in range(3)]
        values += list((await s.scalars(sa.select(counter.c.id))).all())
        ran = bool(others_ran)
        await task
        return values, ran

    values, ran = await db.reading(read)
    assert values == [0, 0, 0, 1]
    assert ran is not db.is_sqlite


async def test_a_sqlite_writer_that_never_gets_its_turn_fails_instead_of_hanging(tmp_path, monkeypatch):
    """Writers of one process queue for SQLite's single write lock; a transaction opened inside another on
    the same database can never get its turn, and must fail as SQLite's busy handler would, not hang."""
    monkeypatch.setattr("mesh.sql.SQLITE_BUSY_SECONDS", 0.05)
    db = scratch_database("sqlite", tmp_path)
    async with db.engine.begin() as conn:
        await conn.run_sync(counters.create_all)
        await conn.execute(counter.insert().values(id=1, value=0))
    try:
        async with db.transaction() as outer:
            await outer.execute(counter.update().values(value=1))
            with pytest.raises(sqlite3.OperationalError, match="database is locked"):
                async with db.transaction():
                    pass
        async with db.read() as s:
            assert await s.scalar(sa.select(counter.c.value)) == 1, "the outer transaction still commits"
    finally:
        await drop_database(db)


async def test_a_sqlite_writer_waits_out_a_queue_that_moves_however_long(tmp_path, monkeypatch):
    """The CI stall: nine sign-ups at once on a loaded machine queued twenty-odd writers for auth's turn, each
    slow there, and those at the back failed DATABASE_UNAVAILABLE after 30 s in the queue though no writer was
    stuck. A writer fails only when one holder keeps the turn the whole wait (the limit, here 2 s): these two
    holders keep it 1.2 s each, so the writer behind them waits 2.4 s and succeeds."""
    monkeypatch.setattr("mesh.sql.SQLITE_BUSY_SECONDS", 2)
    db = scratch_database("sqlite", tmp_path)
    async with db.engine.begin() as conn:
        await conn.run_sync(counters.create_all)
        await conn.execute(counter.insert().values(id=1, value=0))
    turns = [asyncio.Event(), asyncio.Event()]
    entered = asyncio.Event()

    async def hold_the_turn(until: asyncio.Event) -> None:
        async with db.transaction() as s:
            await s.execute(counter.update().values(value=counter.c.value + 1))
            entered.set()
            await until.wait()

    async def write() -> None:
        async with db.transaction() as s:
            await s.execute(counter.update().values(value=counter.c.value + 1))

    try:
        first = asyncio.create_task(hold_the_turn(turns[0]))
        await entered.wait()
        entered.clear()
        second = asyncio.create_task(hold_the_turn(turns[1]))
        last = asyncio.create_task(write())
        await asyncio.sleep(1.2)  # the time each holder keeps the turn is what is tested
        turns[0].set()
        await entered.wait()
        await asyncio.sleep(1.2)
        assert not last.done(), "it waits its turn"
        turns[1].set()
        await asyncio.gather(first, second, last)
        async with db.read() as s:
            assert await s.scalar(sa.select(counter.c.value)) == 3
    finally:
        await drop_database(db)


async def test_a_long_wait_for_the_sqlite_writer_turn_names_its_holder(tmp_path, monkeypatch, caplog):
    """A writer kept waiting for its turn logs who holds it, where that holder took it and what it awaits; one
    report at a time, however many wait. A holder that keeps it too long makes the writer fail, naming it."""
    monkeypatch.setattr("mesh.sql.TURN_REPORT_SECONDS", 0.05)
    monkeypatch.setattr("mesh.sql.SQLITE_BUSY_SECONDS", 5)
    db = scratch_database("sqlite", tmp_path)
    async with db.engine.begin() as conn:
        await conn.run_sync(counters.create_all)
        await conn.execute(counter.insert().values(id=1, value=0))
    release, entered = asyncio.Event(), asyncio.Event()

    async def hold_the_turn() -> None:
        async with db.transaction() as s:
            await s.execute(counter.update().values(value=1))
            entered.set()
            await release.wait()

    async def write() -> None:
        async with db.transaction() as s:
            await s.execute(counter.update().values(value=counter.c.value + 1))

    try:
        holder = asyncio.create_task(hold_the_turn(), name="the-holder")
        await entered.wait()
        with caplog.at_level("WARNING", logger="mesh.sql"):
            writers = [asyncio.create_task(write()) for _ in range(3)]
            for _ in range(200):
                if caplog.records:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)  # time for a second report, were there one (one per 0.05 s at most)
            [report] = [r.getMessage() for r in caplog.records]
            assert "waited" in report and "(0 turns went by meanwhile, 3 waiting)" in report
            assert "by task the-holder, taken by hold_the_turn (test_transactions.py:" in report
            assert "awaiting hold_the_turn" in report and "-> wait (locks.py:" in report, report
            release.set()
            await asyncio.gather(holder, *writers)
        async with db.read() as s:
            assert await s.scalar(sa.select(counter.c.value)) == 4

        monkeypatch.setattr("mesh.sql.SQLITE_BUSY_SECONDS", 0.1)
        release.clear()
        entered.clear()
        holder = asyncio.create_task(hold_the_turn(), name="the-holder")
        await entered.wait()
        with pytest.raises(sqlite3.OperationalError, match="no turn to write in .* by task the-holder, taken by "
                                                           "hold_the_turn"):
            await write()
        release.set()
        await holder
    finally:
        await drop_database(db)


async def test_a_writing_batch_commits_or_rolls_back_whole_and_waits_for_another_process(db: Database, tmp_path):
    """Database.writing runs a batch on the loop's thread on SQLite (a synchronous connection), in a
    transaction like transaction()'s; when another process holds SQLite's write lock, it waits for it
    under transaction() instead of sleeping on the loop."""
    async def add(s, n: int = 1):
        for _ in range(n):
            await s.execute(counter.update().values(value=counter.c.value + 1))
        return await s.scalar(sa.select(counter.c.value))

    assert await db.writing(add) == 1

    async def fail(s):
        await add(s, 5)
        raise RuntimeError("roll it back")
    with pytest.raises(RuntimeError):
        await db.writing(fail)
    assert await db.reading(lambda s: s.scalar(sa.select(counter.c.value))) == 1
    assert sorted(await asyncio.gather(*(db.writing(add) for _ in range(10)))) == list(range(2, 12))
    if not db.is_sqlite:
        return
    other = sqlite3.connect(str(tmp_path / "scratch.sqlite3"), isolation_level=None)  # "another process"
    other.execute("BEGIN IMMEDIATE")
    waiting = asyncio.create_task(db.writing(add))
    await asyncio.sleep(0.2)
    assert not waiting.done(), "it waits for the lock"
    other.execute("ROLLBACK")
    other.close()
    assert await waiting == 12


async def test_select_is_one_statement_in_no_transaction_and_only_reads(db: Database, monkeypatch):
    """Issue 8: a read of one statement is its own snapshot, so Database.select sends it alone: on PostgreSQL
    one round trip (no BEGIN before it, no COMMIT after), on SQLite no BEGIN; a write, or FOR UPDATE, is
    refused, there being no read-only transaction to refuse it."""
    sent: list[str] = []
    if db.is_sqlite:
        # Every statement the driver runs (a BEGIN too), whoever sends it.
        sa.event.listen(db._sync_reads, "checkout", lambda dbapi_conn, *_: dbapi_conn.set_trace_callback(
            lambda statement: sent.append(statement.split()[0])))
    else:
        import asyncpg

        async def started(tx):
            sent.append("BEGIN")
        real_fetch = asyncpg.prepared_stmt.PreparedStatement.fetch

        async def fetch(statement, *args, **kwargs):
            sent.append(statement.get_query().split()[0])
            return await real_fetch(statement, *args, **kwargs)
        monkeypatch.setattr(asyncpg.transaction.Transaction, "start", started)
        monkeypatch.setattr(asyncpg.prepared_stmt.PreparedStatement, "fetch", fetch)
    query = sa.select(counter.c.value).where(counter.c.id == sa.bindparam("id"))
    assert [tuple(r) for r in await db.select(query, {"id": 1})] == [(0,)]
    sent.clear()  # the first use of a pooled connection may set it up
    assert [tuple(r) for r in await db.select(query, {"id": 1})] == [(0,)]
    assert sent == ["SELECT"]
    for write in (counter.update().values(value=5), query.with_for_update()):
        with pytest.raises(TypeError):
            await db.select(write, {"id": 1})
    assert [tuple(r) for r in await db.select(query, {"id": 1})] == [(0,)]


class Kind(enum.Enum):
    DOG = "dog"
    CAT = "cat"


things = sa.MetaData()
thing = sa.Table("thing", things, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("name", sa.String(20), nullable=False), sa.Column("seen", UtcDateTime, nullable=True),
                 sa.Column("born", sa.Date, nullable=True), sa.Column("good", sa.Boolean, nullable=False),
                 sa.Column("weight", sa.Float, nullable=True), sa.Column("price", sa.Numeric(8, 2), nullable=True),
                 sa.Column("tags", sa.JSON, nullable=True), sa.Column("kind", sa.Enum(Kind), nullable=False))


async def test_select_gives_the_rows_sqlalchemy_gives(db: Database):
    """Database.select runs a statement on the driver's connection (compiled once), past SQLAlchemy's execution:
    its rows must be what SQLAlchemy's own would be, value for value and type for type (aware UTC datetimes on
    SQLite too, dates, booleans, decimals, JSON, enums), looked up by key or by column, with an expanding IN
    (several values or none), a labelled expression and the service's schema."""
    async with db.engine.begin() as conn:
        await conn.run_sync(things.create_all)
        await conn.execute(thing.insert(), [
            dict(id=1, name="Rex", seen=dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone.utc),
                 born=dt.date(2020, 5, 1), good=True, weight=12.5, price=decimal.Decimal("10.25"),
                 tags={"a": [1, "b"]}, kind=Kind.DOG),
            dict(id=2, name="Tama", seen=None, born=None, good=False, weight=None, price=None, tags=None,
                 kind=Kind.CAT)])
    query = sa.select(thing, (thing.c.id * 2).label("twice")).where(
        thing.c.id.in_(sa.bindparam("ids", expanding=True)),
        thing.c.seen.is_(None) | (thing.c.seen < sa.bindparam("by"))).order_by(thing.c.id)
    for ids in ([1, 2], [2], []):
        params = {"ids": ids, "by": dt.datetime(2027, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=9)))}
        theirs = (await db.reading(lambda s, params=params: s.execute(query, params))).all()
        ours = await db.select(query, params)
        assert [tuple(r) for r in ours] == [tuple(r) for r in theirs]
        assert [list(map(type, r)) for r in ours] == [list(map(type, r)) for r in theirs]
        assert [r._mapping for r in ours] == [r._mapping for r in theirs]
        assert [(r.twice, r._mapping[thing.c.kind], r[0]) for r in ours] == [
            (r.twice, r._mapping[thing.c.kind], r[0]) for r in theirs]
    assert (await db.select(query, params={"ids": [1], "by": dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc)})
            )[0].seen.tzinfo == dt.timezone.utc
    # Values go in through the columns' bind processing too: Rex's instant, written in another zone, is Rex's
    # (on SQLite only as UtcDateTime stores it, in UTC and without a zone: a page token's position, say).
    at = dt.datetime(2026, 1, 2, 12, 4, 5, 6, tzinfo=dt.timezone(dt.timedelta(hours=9)))
    exact = sa.select(thing.c.id).where(thing.c.seen == sa.bindparam("at"), thing.c.kind == sa.bindparam("kind"))
    assert [tuple(r) for r in await db.select(exact, {"at": at, "kind": Kind.DOG})] == [(1,)]


async def test_a_failing_select_raises_what_sqlalchemy_raises(db: Database):
    missing = sa.Table("no_such_table", sa.MetaData(), sa.Column("id", sa.Integer))
    with pytest.raises(sa.exc.DBAPIError) as e:
        await db.select(sa.select(missing.c.id), {})
    assert not e.value.connection_invalidated and not is_unavailable(e.value)
    assert [tuple(r) for r in await db.select(sa.select(counter.c.value), {})] == [(0,)], "the connection is fine"
