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
