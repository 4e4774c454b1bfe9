"""GetPet's read cache through the API: served to readers, never to the pet's writers, dropped by every
change, on this replica at once and on the others through the change's event."""
from __future__ import annotations

import asyncio
import datetime as dt

import grpc
import pytest

from petplatform.pet.v1 import pet_pb2, pet_pb2_grpc
from services.pet import store
from tests.support.pets import cat, create
from tests.support.platform import Api, module_of, start_platform


async def change_behind_the_services_back(api: Api, pet: pet_pb2.Pet, description: str) -> None:
    """A row changed with no event: what a cached answer would hide."""
    async with module_of(api, "pet").db.transaction() as s:
        await store.update_pet(s, pet.name.removeprefix("pets/"), {"description": description})


async def created(api_or_platform, pet: pet_pb2.Pet) -> None:
    """Until the pet's creation event has reached the replica's cache (it drops the pet, cached or not)."""
    platform = getattr(api_or_platform, "platform", api_or_platform)
    cache = next(m for m in platform.modules if m.name == "pet").cache
    for _ in range(200):
        if cache.heard_of(pet.name.removeprefix("pets/")):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("pet.created never arrived")


async def describe(api: Api, pet: pet_pb2.Pet, description: str, md) -> None:
    pet.description = description
    await api.pet.UpdatePet(pet_pb2.UpdatePetRequest(pet=pet, update_mask={"paths": ["description"]}), metadata=md)


async def test_readers_get_the_cached_answer_writers_always_read(api: Api):
    owner, reader = await api.signup("Owner"), await api.signup("Reader")
    pet = await create(api, owner, cat("Cached", description="v1"))
    await created(api, pet)
    get = pet_pb2.GetPetRequest(name=pet.name)
    assert (await api.pet.GetPet(get)).pet.description == "v1"  # cached now
    await change_behind_the_services_back(api, pet, "v2")
    assert (await api.pet.GetPet(get)).pet.description == "v1", "anonymous readers get the cached answer"
    assert (await api.pet.GetPet(get, metadata=reader.md)).pet.description == "v1", "so do other users"
    assert (await api.pet.GetPet(get, metadata=owner.md)).pet.description == "v2", "the owner reads through"


async def test_a_write_is_seen_at_once_by_readers_of_its_replica(api: Api):
    owner = await api.signup("Owner")
    pet = await create(api, owner, cat("Changed", description="v1"))
    get = pet_pb2.GetPetRequest(name=pet.name)
    assert (await api.pet.GetPet(get)).pet.description == "v1"
    await describe(api, pet, "v2", owner.md)
    assert (await api.pet.GetPet(get)).pet.description == "v2"
    await api.pet.DeletePet(pet_pb2.DeletePetRequest(name=pet.name), metadata=owner.md)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await api.pet.GetPet(get)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


async def eventually(read, expected, what: str):
    for _ in range(200):
        got = await read()
        if got == expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: still {got!r}")


@pytest.mark.real
async def test_a_write_on_one_replica_reaches_the_readers_of_another(real_api: Api):
    """Two replicas on one PostgreSQL and RabbitMQ: the second drops its cached answer on the write's
    event; the writer sees their write there even before the event."""
    second = await start_platform(real_api.platform.settings)
    try:
        async with grpc.aio.insecure_channel(second.address) as ch:
            elsewhere = pet_pb2_grpc.PetServiceStub(ch)
            owner = await real_api.signup("Replicated")
            pet = await create(real_api, owner, cat("Replicated", description="v1"))
            await created(second, pet)
            get = pet_pb2.GetPetRequest(name=pet.name)

            async def read_elsewhere(md=()):
                return (await elsewhere.GetPet(get, metadata=md)).pet.description

            second_cache = next(m for m in second.modules if m.name == "pet").cache
            assert await read_elsewhere() == "v1"
            assert second_cache.get(pet.name.removeprefix("pets/")) is not None, "cached there, no event pending"
            for k in range(2, 5):  # the ttl (a minute) is far beyond what eventually() waits
                await describe(real_api, pet, f"v{k}", owner.md)
                assert await read_elsewhere(owner.md) == f"v{k}", "the writer sees their write on every replica"
                await eventually(read_elsewhere, f"v{k}", "readers of the other replica, once the event is in")
            await real_api.pet.DeletePet(pet_pb2.DeletePetRequest(name=pet.name), metadata=owner.md)

            async def gone():
                try:
                    await elsewhere.GetPet(get)
                except grpc.aio.AioRpcError as e:
                    return e.code()
                return "still there"
            await eventually(gone, grpc.StatusCode.NOT_FOUND, "a deleted pet on the other replica")
    finally:
        await second.stop(grace=1)


async def test_listed_pets_are_built_once_per_version(api: Api):
    """ListPets reads each page's rows, and builds a pet again only when its row's update_time moved on: a
    change made through the service is listed at once, on any replica and before any event (its version
    is new), while a row changed with no new update_time shows the version built before."""
    owner = await api.signup("Lister")
    pet = await create(api, owner, cat("Listed", description="v1"))
    await created(api, pet)  # its event would drop what is built below
    listed = pet_pb2.ListPetsRequest(owner=owner.name, page_size=5)

    async def description() -> str:
        (got,) = (await api.pet.ListPets(listed)).pets
        return got.description
    assert await description() == "v1"
    await change_behind_the_services_back(api, pet, "v2")
    assert await description() == "v1", "the version built before"
    async with module_of(api, "pet").db.transaction() as s:
        row = await store.find_pet(s, pet.name.removeprefix("pets/"))
        await store.update_pet(s, row.id, {"update_time": row.update_time + dt.timedelta(seconds=1)})
    assert await description() == "v2", "a new version is built from its row"
    await describe(api, pet, "v3", owner.md)
    assert await description() == "v3"


async def test_a_page_of_built_pets_is_read_in_one_statement(api: Api, monkeypatch):
    """Issue 8: when every pet of a page is built at its row's version, the page's one statement is the whole
    read (Database.select: one round trip on PostgreSQL); a page with a pet to build reads in one snapshot."""
    owner = await api.signup("Lister")
    pets = [await create(api, owner, cat(f"Listed {i}")) for i in range(3)]
    for pet in pets:
        await created(api, pet)
    listed = pet_pb2.ListPetsRequest(owner=owner.name, page_size=2)
    db = module_of(api, "pet").db
    snapshots = []
    reading = db.reading

    async def counted(fn):
        if fn.__module__ == "services.pet.api":  # not the outbox relay's poll, which reads this database too
            snapshots.append(fn)
        return await reading(fn)
    monkeypatch.setattr(db, "reading", counted)
    first = await api.pet.ListPets(listed)
    assert len(snapshots) == 1, "pets to build: read in one snapshot"
    assert await api.pet.ListPets(listed) == first
    assert len(snapshots) == 1, "every pet built: one statement"
    await describe(api, pets[2], "changed", owner.md)  # the newest: on the first page
    again = await api.pet.ListPets(listed)
    assert len(snapshots) == 2 and again.pets[0].description == "changed"
    assert [p.name for p in again.pets] == [p.name for p in first.pets]
