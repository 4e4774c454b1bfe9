"""The documents port's MongoDB side, for the services that keep documents there: the client, and an
outbox that needs no multi-document transaction.

Events. The relational outbox stores an event in the transaction of its change. MongoDB has such
transactions only on a replica set, and the contract suite's stand-in (mongomock) has none at all, so
this outbox relies on what MongoDB guarantees everywhere: one document's update is atomic. A write that
publishes an event puts the event's envelope into the document it writes (`outbox`, a list, with
`outbox_time` the time of the oldest pending one), in that same insert or update; a relay publishes the
pending envelopes with the bus's confirms and pulls them out. An event is therefore stored exactly when
its change is. A change whose event would belong to no single document needs a transaction: no user of
this port has one.

Several replicas' relays may publish one envelope twice (MongoDB has no SKIP LOCKED to share the
pending work): consumers' inboxes drop the copy by its event id, as they drop a broker's redelivery.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from google.protobuf.message import Message
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorCollection

from mesh.events.bus import Bus
from mesh.events.outbox import relay_forever, seal
from mesh.sql import utcnow
from mesh.wakeup import Wakeup

log = logging.getLogger(__name__)

PENDING = "outbox"
PENDING_SINCE = "outbox_time"
IN_MEMORY = "mongomock://"


def connect(*, url: str) -> Any:
    """A motor client with timezone-aware datetimes; "mongomock://" is an in-memory stand-in (tests only:
    mongomock-motor is a development dependency)."""
    if url.startswith(IN_MEMORY):
        from mongomock_motor import AsyncMongoMockClient  # here: absent from production installs
        return AsyncMongoMockClient(tz_aware=True)
    return AsyncIOMotorClient(url, tz_aware=True)


def bson_now() -> dt.datetime:
    """Now, to the millisecond: BSON keeps no finer, and what a write returns must equal what a read finds."""
    now = utcnow()
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class DocumentOutbox:
    """Pending events carried by the documents of some collections, and the relay that publishes them."""

    def __init__(self, *, bus: Bus, source: str, declared: frozenset[str] | None,
                 collections: Sequence[AsyncIOMotorCollection], poll_seconds: float = 0.5, batch: int = 100):
        self._bus = bus
        self._source = source
        self._declared = declared
        self._collections = list(collections)
        self._poll = poll_seconds
        self._batch = batch
        self._wakeup = Wakeup()
        self._task: asyncio.Task | None = None

    def _entry(self, event: Message) -> dict[str, Any]:
        envelope = seal(event, source=self._source, declared=self._declared)
        return {"id": envelope.id, "type": envelope.type, "body": envelope.SerializeToString()}

    def inserted(self, document: dict[str, Any], event: Message | None) -> dict[str, Any]:
        """The document to insert, carrying `event` (None: no event)."""
        if event is None:
            return document
        return {**document, PENDING: [self._entry(event)], PENDING_SINCE: bson_now()}

    def update(self, update: dict[str, Any], event: Message | None) -> dict[str, Any]:
        """The update operators to apply, also adding `event` to the document's pending ones (None: none)."""
        if event is None:
            return update
        out = dict(update)
        out["$push"] = {**update.get("$push", {}), PENDING: self._entry(event)}
        out["$min"] = {**update.get("$min", {}), PENDING_SINCE: bson_now()}
        return out

    async def create_indexes(self) -> None:
        for c in self._collections:
            await c.create_index([(PENDING_SINCE, 1)], name="outbox_pending", sparse=True)

    def wake(self) -> None:
        self._wakeup.ring()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="document-outbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        await relay_forever(self.drain_once, self._wakeup, lambda: self._poll, "document outbox relay")

    async def drain_once(self) -> int:
        """Publishes one batch per collection, oldest first; returns how many were sent. An envelope stays
        pending if its publish fails."""
        total = 0
        failed: BaseException | None = None
        for c in self._collections:
            docs = await (c.find({PENDING_SINCE: {"$exists": True}}, {PENDING: 1})
                          .sort(PENDING_SINCE, 1).limit(self._batch).to_list(self._batch))
            entries = [(d["_id"], e) for d in docs for e in d.get(PENDING, ())]
            results = await asyncio.gather(*(self._bus.publish(e["type"], bytes(e["body"]), e["id"])
                                             for _, e in entries), return_exceptions=True)
            done: dict[Any, list[str]] = {}
            for (doc_id, e), res in zip(entries, results, strict=True):
                if isinstance(res, BaseException):
                    failed = failed or res
                else:
                    done.setdefault(doc_id, []).append(e["id"])
            for doc_id, ids in done.items():
                await c.update_one({"_id": doc_id}, {"$pull": {PENDING: {"id": {"$in": ids}}}})
                # Only once nothing is pending: an envelope pushed meanwhile keeps the document on the list.
                await c.update_one({"_id": doc_id, PENDING: {"$size": 0}}, {"$unset": {PENDING: "", PENDING_SINCE: ""}})
                total += len(ids)
            # Documents whose outbox was emptied by a concurrent relay are taken off the list too.
            for d in docs:
                if not d.get(PENDING):
                    await c.update_one({"_id": d["_id"], PENDING: {"$size": 0}},
                                       {"$unset": {PENDING: "", PENDING_SINCE: ""}})
        if failed is not None:
            raise failed
        return total
