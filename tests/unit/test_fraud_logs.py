"""The documents port's contract for the fraud score log: the relational adapter (SQLite here; the
service's database, migrated as the service migrates it) and the MongoDB adapter, through mongomock-motor
(a stand-in: a real MongoDB server is not verified by this suite)."""
from __future__ import annotations

import datetime as dt
import uuid

from mongomock_motor import AsyncMongoMockClient
import pytest

from app.registry import REGISTRY
from mesh.runtime import migrate_service
from mesh.sql import Database
from ml.fraud.logs import LogEntry, MongoLogs, RelationalLogs

T0 = dt.datetime(2026, 11, 26, 12, tzinfo=dt.timezone.utc)


@pytest.fixture(params=["relational", "mongodb"])
async def logs(request, tmp_path):
    if request.param == "mongodb":
        yield MongoLogs(AsyncMongoMockClient(), f"test{uuid.uuid4().hex[:8]}")
        return
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/fraud.sqlite3", None)
    await migrate_service(db, REGISTRY["fraud"].load().migrations)
    yield RelationalLogs(db)
    await db.dispose()


def entry(user: str, subject: str, minutes: int, **kw) -> LogEntry:
    values = dict(id=uuid.uuid4().hex, user=user, subject=subject, event=str(uuid.uuid4()), score=0.9,
                  factors=[{"code": "off_platform_payment", "description": "asks for a gift card",
                            "contribution": 0.6}],
                  action="hold", model="rules", reviewed=False, create_time=T0 + dt.timedelta(minutes=minutes))
    return LogEntry(**{**values, **kw})


async def test_entries_come_back_newest_first_as_written(logs):
    first, second = entry("users/a", "pets/1", 1), entry("users/a", "pets/2", 2, score=0.1, action="none", factors=[])
    await logs.append(first)
    await logs.append(second)
    await logs.append(entry("users/b", "pets/3", 3))
    assert await logs.of_user("users/a") == [second, first]
    assert await logs.of_user("users/a", limit=1) == [second]
    assert await logs.of_user("users/nobody") == []


async def test_a_decision_marks_the_subjects_entries_reviewed_once(logs):
    await logs.append(entry("users/a", "pets/1", 1))
    await logs.append(entry("users/a", "pets/1", 2))
    await logs.append(entry("users/a", "pets/2", 3))
    assert await logs.mark_reviewed("pets/1") == 2
    assert await logs.mark_reviewed("pets/1") == 0
    reviewed = {(e.subject, e.reviewed) for e in await logs.of_user("users/a")}
    assert reviewed == {("pets/1", True), ("pets/2", False)}


async def test_pages_follow_each_other_without_gaps_or_repeats(logs):
    written = [entry("users/a", f"pets/{i}", i % 3) for i in range(7)]  # equal times: the id breaks the tie
    for e in written:
        await logs.append(e)
    seen, after = [], None
    while page := await logs.of_user("users/a", limit=3, after=after):
        seen += page
        after = (page[-1].create_time, page[-1].id)
    assert [e.id for e in seen] == [e.id for e in sorted(written, key=lambda e: (e.create_time, e.id), reverse=True)]


async def test_entries_written_together_come_back_as_written(logs):
    together = [entry("users/a", f"pets/{i}", i) for i in range(3)]
    await logs.append(*together)  # the engine's batch of scores committed together
    assert await logs.of_user("users/a") == together[::-1]


async def test_scores_committed_together_are_logged_in_one_write(tmp_path):
    """A group of events scored in one inbox transaction: one log write for their scores, not one each."""
    from ml.fraud import model
    from ml.fraud.engine import Engine

    class Counted(RelationalLogs):
        writes: list[int] = []

        async def append(self, *entries: LogEntry) -> None:
            self.writes.append(len(entries))
            await super().append(*entries)

    db = Database(f"sqlite+aiosqlite:///{tmp_path}/fraud.sqlite3", None)
    await migrate_service(db, REGISTRY["fraud"].load().migrations)
    try:
        engine = Engine(db, Counted(db))
        scored = model.Assessment(score=0.1, action="none", factors=(), features=(0.0,), model="rules")
        async with db.transaction() as s:
            for i in range(3):
                await engine.record(s, subject=f"rooms/r/messages/{i}", user_id="a", assessment=scored,
                                    source_event=f"e{i}")
        await engine.settle()
        assert Counted.writes == [3]
        assert len(await engine.logs.of_user("users/a")) == 3
    finally:
        await db.dispose()
