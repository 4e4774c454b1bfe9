"""The score log (`fraud_logs`: user, event, score, factors, action, reviewed) through the documents port:
a relational adapter (the default: the service's own SQLite or PostgreSQL database) and a MongoDB adapter
(motor), both held to one contract suite (tests/unit/test_fraud_logs.py; MongoDB through mongomock-motor,
a stand-in: a real MongoDB server is not verified here).

A log entry is written after the transaction that scored (and emitted fraud.detected) commits: it is a
record of scores, not the source of any decision, and a MongoDB outage must not stop scoring (a failed
write is logged and dropped)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any, Protocol

import sqlalchemy as sa

from mesh import pagination
from mesh.pagination import Position
from mesh.sql import Database
from ml.fraud import store


@dataclasses.dataclass(frozen=True, kw_only=True)
class LogEntry:
    id: str
    user: str  # users/{u}
    subject: str  # what was scored (empty for a draft)
    event: str  # the scored event's id, or "rpc:<Method>" for a synchronous check
    score: float
    factors: list[dict[str, Any]]  # {"code", "description", "contribution"}
    action: str  # "none", "review", "hold"
    model: str
    reviewed: bool
    create_time: dt.datetime


class FraudLogs(Protocol):
    async def append(self, *entries: LogEntry) -> None:
        """Writes the entries together (one transaction, one insert_many)."""

    async def of_user(self, user: str, *, limit: int = 50, after: Position | None = None) -> list[LogEntry]:
        """The user's entries, newest first (by time, then id), from after `after` (a page's last entry)."""

    async def mark_reviewed(self, subject: str) -> int:
        """Marks the subject's entries reviewed (a moderator decided on it); how many were."""


class RelationalLogs:
    def __init__(self, db: Database):
        self.db = db

    async def append(self, *entries: LogEntry) -> None:
        async with self.db.transaction() as s:
            await s.execute(store.fraud_logs.insert(), [store.log_values(dataclasses.asdict(e)) for e in entries])

    async def of_user(self, user: str, *, limit: int = 50, after: Position | None = None) -> list[LogEntry]:
        t = store.fraud_logs
        query = pagination.select_page(sa.select(t).where(t.c.user == user), after, t.c.create_time, t.c.id,
                                       descending=True, size=limit - 1)  # select_page fetches size + 1
        async with self.db.read() as s:
            rows = (await s.execute(query)).all()
        return [LogEntry(**{**r._asdict(), "factors": json.loads(r.factors)}) for r in rows]

    async def mark_reviewed(self, subject: str) -> int:
        t = store.fraud_logs
        async with self.db.transaction() as s:
            result = await s.execute(t.update().where(t.c.subject == subject, t.c.reviewed.is_(False))
                                     .values(reviewed=True))
        return int(getattr(result, "rowcount", 0) or 0)


class MongoLogs:
    """`client` is a motor AsyncIOMotorClient (or mongomock-motor's stand-in)."""

    def __init__(self, client: Any, database: str):
        self._logs = client[database]["fraud_logs"]
        self._indexed = False

    async def _ensure_indexes(self) -> None:
        if not self._indexed:
            await self._logs.create_index([("user", 1), ("create_time", -1)])
            await self._logs.create_index([("subject", 1)])
            self._indexed = True

    async def append(self, *entries: LogEntry) -> None:
        await self._ensure_indexes()
        docs = [dataclasses.asdict(e) for e in entries]
        for doc in docs:
            doc["_id"] = doc.pop("id")
        await self._logs.insert_many(docs)

    async def of_user(self, user: str, *, limit: int = 50, after: Position | None = None) -> list[LogEntry]:
        query: dict[str, Any] = {"user": user}
        if after is not None:
            when, last = after
            query["$or"] = [{"create_time": {"$lt": when}}, {"create_time": when, "_id": {"$lt": last}}]
        cursor = self._logs.find(query).sort([("create_time", -1), ("_id", -1)]).limit(limit)
        out = []
        async for doc in cursor:
            doc["id"] = doc.pop("_id")
            when = doc["create_time"]
            doc["create_time"] = when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)  # BSON drops the zone
            out.append(LogEntry(**doc))
        return out

    async def mark_reviewed(self, subject: str) -> int:
        result = await self._logs.update_many({"subject": subject, "reviewed": False}, {"$set": {"reviewed": True}})
        return int(result.modified_count)


def make_logs(*, url: str | None, db: Database) -> FraudLogs:
    """MongoDB when `url` is a mongodb:// URL (PETPLATFORM_FRAUD_LOGS_URL), else the service's database."""
    if url:
        from motor.motor_asyncio import AsyncIOMotorClient
        client: Any = AsyncIOMotorClient(url, tz_aware=True, serverSelectionTimeoutMS=5000)
        return MongoLogs(client, client.get_default_database(default="petplatform").name)
    return RelationalLogs(db)
