"""Bounded tables: old rows deleted in short batches by a periodic, jittered task.

Safe on several replicas: each batch is one short DELETE of keys selected by age, so two replicas purging
at once delete disjoint or overlapping rows (an overlap deletes nothing twice, and fails nothing: writes
run under READ COMMITTED on PostgreSQL, SQLite has one writer)."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
import logging
import random

import sqlalchemy as sa

from mesh.sql import Database

log = logging.getLogger("mesh.purge")


async def delete_in_batches(db: Database, table: sa.Table, *, key: Sequence[sa.Column], old: sa.ColumnElement[bool],
                            batch: int = 1000) -> int:
    """Deletes the rows of `table` matching `old`, `batch` at a time, each in its own transaction (no long
    lock, no huge transaction); returns how many."""
    total = 0
    while True:
        async with db.transaction() as s:
            chosen = sa.select(*key).where(old).limit(batch)
            gone = await s.execute(table.delete().where(sa.tuple_(*key).in_(chosen) if len(key) > 1
                                                        else key[0].in_(chosen)))
        count: int = gone.rowcount  # type: ignore[attr-defined]  # a CursorResult: DELETE
        total += count
        if count < batch:
            return total


async def purge_periodically(purge_once: Callable[[], Awaitable[object]], *, every_seconds: float, what: str) -> None:
    """Runs `purge_once` about every `every_seconds` until cancelled; the first run comes within a tenth of
    that, and each interval is jittered by 10 %, so replicas started together do not purge together. A
    failure is logged and tried again next time."""
    await asyncio.sleep(random.uniform(0, every_seconds / 10))
    while True:
        try:
            await purge_once()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("%s failed; next try in %ds", what, every_seconds, exc_info=True)
        await asyncio.sleep(every_seconds * random.uniform(0.9, 1.1))
