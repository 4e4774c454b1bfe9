"""Matching under test: waiting for its copy of the pets to catch up with the pet service, its outbox."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import sqlalchemy as sa

from mesh.events.outbox import outbox
from petplatform.common.v1 import event_pb2
from petplatform.matching.v1 import matching_pb2
from petplatform.pet.v1 import pet_pb2
from services.matching import store
from tests.support.platform import Api, Session, module_of

T = TypeVar("T")


async def until(check: Callable[[], Awaitable[T]], timeout: float = 15.0, what: str = "the condition") -> T:
    """Polls `check` until it returns something truthy (which it returns)."""
    for _ in range(int(timeout / 0.02)):
        if result := await check():
            return result
        await asyncio.sleep(0.02)
    raise AssertionError(f"{what} did not hold within {timeout}s")


async def synced(api: Api, *pets: pet_pb2.Pet) -> None:
    """Waits until matching's copy holds each pet as it is (its pet events applied)."""
    db = module_of(api, "matching").db

    async def caught_up() -> bool:
        async with db.read() as s:
            for pet in pets:
                row = await store.find_pet(s, pet.name.removeprefix("pets/"))
                if row is None or row.version < pet.update_time.ToDatetime().replace(tzinfo=row.version.tzinfo):
                    return False
        return True
    await until(caught_up, what=f"matching's copy of {[p.name for p in pets]}")


async def listed(api: Api, owner: Session, pet: pet_pb2.Pet) -> pet_pb2.Pet:
    """A pet created through the pet service, once matching knows it."""
    created = (await api.pet.CreatePet(pet_pb2.CreatePetRequest(pet=pet), metadata=owner.md)).pet
    await synced(api, created)
    return created


async def events(api: Api, service: str, kind: str) -> list[event_pb2.EventEnvelope]:
    """The events of this type a service wrote to its outbox, oldest first."""
    async with module_of(api, service).db.read() as s:
        bodies = (await s.execute(sa.select(outbox.c.body).where(outbox.c.event_type == kind)
                                  .order_by(outbox.c.id))).scalars().all()
    return [event_pb2.EventEnvelope.FromString(b) for b in bodies]


async def feed(api: Api, session: Session, **kw) -> matching_pb2.GetFeedResponse:
    return await api.matching.GetFeed(matching_pb2.GetFeedRequest(**kw), metadata=session.md)


async def feed_names(api: Api, session: Session, **kw) -> list[str]:
    """Every pet of the caller's feed, all pages."""
    names, token = [], ""
    while True:
        page = await feed(api, session, page_size=50, page_token=token, **kw)
        names += [c.pet.name for c in page.cards]
        if not (token := page.next_page_token):
            return names
