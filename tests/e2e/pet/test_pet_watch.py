"""WatchPets: a live view of a search, over gRPC server streaming, on one replica and across two."""
from __future__ import annotations

import asyncio

from google.protobuf import field_mask_pb2
import grpc
import pytest

from petplatform.common.v1 import animal_pb2, event_pb2
from petplatform.pet.v1 import events_pb2 as pet_events
from petplatform.pet.v1 import pet_pb2, pet_pb2_grpc
from mesh import errors
from services.pet.watch import MAX_BACKLOG, WatchHub
from tests.support.errors import expect, violations
from tests.support.pets import TOKYO, cat, create, dog, image, years_ago
from tests.support.platform import Api, embedded_settings, start_platform

CHANGE = pet_pb2.WatchPetsResponse
CATS_AVAILABLE = pet_pb2.WatchPetsRequest(species=[animal_pb2.SPECIES_CAT], statuses=[pet_pb2.Pet.STATUS_AVAILABLE])


async def opened(call) -> tuple:
    """Waits until the server has accepted the watch: its headers arrived (a refusal has none, only trailers)."""
    headers = tuple(await asyncio.wait_for(call.initial_metadata(), 5))
    assert headers, f"the watch was refused: {await call.code()} {await call.details()}"
    return headers


async def next_change(call) -> pet_pb2.WatchPetsResponse:
    return await asyncio.wait_for(call.read(), 30)


async def update(api: Api, session, pet: pet_pb2.Pet, *paths: str) -> pet_pb2.Pet:
    return (await api.pet.UpdatePet(pet_pb2.UpdatePetRequest(
        pet=pet, update_mask=field_mask_pb2.FieldMask(paths=list(paths))), metadata=session.md)).pet


async def test_watch_follows_a_search(api: Api):
    owner = await api.signup("Watched owner")
    call = api.pet.WatchPets(CATS_AVAILABLE)  # public: no token
    headers = await opened(call)
    assert any(k == "x-request-id" for k, _ in headers)

    rex = await create(api, owner, dog("Not a cat"))  # changes outside the search are not sent
    rex.description = "still a dog"
    await update(api, owner, rex, "description")
    await api.pet.DeletePet(pet_pb2.DeletePetRequest(name=rex.name), metadata=owner.md)
    tama = await create(api, owner, cat(location=TOKYO))
    added = await next_change(call)
    assert added.change == CHANGE.CHANGE_ADDED and added.pet == tama, "the dog's changes were skipped"

    tama.description = "Sleeps all day"
    changed = await update(api, owner, tama, "description")
    got = await next_change(call)
    assert got.change == CHANGE.CHANGE_UPDATED and got.pet.description == "Sleeps all day"
    assert got.pet == changed

    tama.status = pet_pb2.Pet.STATUS_ADOPTED  # leaves the search
    await update(api, owner, tama, "status")
    got = await next_change(call)
    assert got.change == CHANGE.CHANGE_REMOVED and got.pet == pet_pb2.Pet(name=tama.name)

    other = await create(api, owner, cat("Kuro"))
    assert (await next_change(call)).pet.name == other.name
    await api.pet.DeletePet(pet_pb2.DeletePetRequest(name=other.name), metadata=owner.md)
    got = await next_change(call)
    assert got.change == CHANGE.CHANGE_REMOVED and got.pet.name == other.name
    call.cancel()


async def test_a_pet_listed_before_the_watch_is_removed_when_it_leaves_the_search(api: Api):
    """The usual client lists, then watches: what it listed must be taken back when it stops matching."""
    owner = await api.signup("Lister")
    probe = api.pet.WatchPets(pet_pb2.WatchPetsRequest(owner=owner.name))
    await opened(probe)
    listed = await create(api, owner, cat("Listed first", location=TOKYO))
    other = await create(api, owner, cat("Another"))
    # The creations have reached the hub once a watch opened before them has seen both: only then
    # does the watch under test open, after the listing.
    assert {(await next_change(probe)).pet.name for _ in range(2)} == {listed.name, other.name}
    probe.cancel()
    call = api.pet.WatchPets(pet_pb2.WatchPetsRequest(owner=owner.name, statuses=[pet_pb2.Pet.STATUS_AVAILABLE],
                                                      near=TOKYO, radius_km=10))
    await opened(call)
    listed.status = pet_pb2.Pet.STATUS_ADOPTED
    await update(api, owner, listed, "status")
    got = await next_change(call)
    assert got.change == CHANGE.CHANGE_REMOVED and got.pet.name == listed.name
    other.location.CopyFrom(TOKYO)  # moves into the circle: new to this search
    await update(api, owner, other, "location")
    got = await next_change(call)
    assert got.change == CHANGE.CHANGE_ADDED and got.pet.name == other.name and got.pet.distance_km == 0
    call.cancel()


async def test_a_new_photo_is_an_update(api: Api):
    owner = await api.signup("Photographer")
    call = api.pet.WatchPets(pet_pb2.WatchPetsRequest(owner=owner.name))
    await opened(call)
    pet = await create(api, owner, cat("Photo cat"))
    assert (await next_change(call)).change == CHANGE.CHANGE_ADDED
    photo = (await api.pet.UploadPetPhoto(pet_pb2.UploadPetPhotoRequest(
        parent=pet.name, content=image("PNG")), metadata=owner.md)).photo
    got = await next_change(call)
    assert got.change == CHANGE.CHANGE_UPDATED and [p.name for p in got.pet.photos] == [photo.name]
    call.cancel()


async def test_bad_filter_is_refused_before_the_stream_opens(api: Api):
    call = api.pet.WatchPets(pet_pb2.WatchPetsRequest(radius_km=5, owner="people/1"))
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, call.read())
    assert set(violations(err)) == {"near", "owner"}
    assert ("x-request-id" in dict(err.trailing_metadata() or ())), "refused calls still carry the request id"


async def test_deadline_ends_the_stream_after_what_was_sent(api: Api):
    owner = await api.signup("Deadline")
    # Long enough for the pet to be made first on a busy machine: the test waits out the rest.
    call = api.pet.WatchPets(pet_pb2.WatchPetsRequest(owner=owner.name), timeout=8)
    await opened(call)
    await create(api, owner, cat("In time"))
    assert (await next_change(call)).change == CHANGE.CHANGE_ADDED
    await expect(grpc.StatusCode.DEADLINE_EXCEEDED, call.read())


async def test_a_watcher_that_falls_behind_is_dropped_not_buffered():
    hub = WatchHub(max_streams=10)
    envelope = event_pb2.EventEnvelope(type="pet.deleted")
    envelope.payload.Pack(pet_events.PetDeleted(pet=pet_pb2.Pet(name="pets/x")))
    async with hub.watch() as changes:
        for _ in range(MAX_BACKLOG + 1):
            await hub.on_event(envelope.SerializeToString())
        await asyncio.sleep(0.1)
        with pytest.raises(errors.ApiError) as e:
            async for _ in changes:
                pass
        assert e.value.code == grpc.StatusCode.UNAVAILABLE and e.value.reason == "WATCH_INTERRUPTED"


async def test_open_watches_are_capped_per_replica(tmp_path, smtp_sink):
    platform = await start_platform(embedded_settings(tmp_path, smtp_sink, watch_max_streams=1))
    try:
        async with grpc.aio.insecure_channel(platform.address) as ch:
            pets = pet_pb2_grpc.PetServiceStub(ch)
            first = pets.WatchPets(pet_pb2.WatchPetsRequest())
            await opened(first)
            await expect(grpc.StatusCode.RESOURCE_EXHAUSTED, pets.WatchPets(pet_pb2.WatchPetsRequest()).read(),
                         "TOO_MANY_WATCHES")
            first.cancel()
            for _ in range(250):  # a closed watch frees its place, once the server has seen it closed
                again = pets.WatchPets(pet_pb2.WatchPetsRequest())
                if await asyncio.wait_for(again.initial_metadata(), 5):  # headers: accepted
                    break
                assert await again.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, await again.details()
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("the closed watch's place never came back")
            again.cancel()
    finally:
        await platform.stop(grace=1)


@pytest.mark.real
async def test_watch_sees_changes_made_through_another_replica(real_api: Api):
    """Two replicas on one PostgreSQL and RabbitMQ: each hears every pet event."""
    second = await start_platform(real_api.platform.settings)
    try:
        async with grpc.aio.insecure_channel(second.address) as ch:
            owner = await real_api.signup("Replicated")
            call = pet_pb2_grpc.PetServiceStub(ch).WatchPets(pet_pb2.WatchPetsRequest(owner=owner.name))
            await opened(call)
            pet = await create(real_api, owner, cat("Seen elsewhere"))
            got = await next_change(call)
            assert got.change == CHANGE.CHANGE_ADDED and got.pet.name == pet.name
            call.cancel()
    finally:
        await second.stop(grace=1)


async def test_shutdown_ends_open_watches_so_clients_reconnect(tmp_path, smtp_sink):
    platform = await start_platform(embedded_settings(tmp_path, smtp_sink))
    stopped = False
    try:
        async with grpc.aio.insecure_channel(platform.address) as ch:
            call = pet_pb2_grpc.PetServiceStub(ch).WatchPets(pet_pb2.WatchPetsRequest())
            await opened(call)
            stopping = asyncio.create_task(platform.stop(grace=30))
            err = await expect(grpc.StatusCode.UNAVAILABLE, call.read(), "WATCH_INTERRUPTED")
            assert "shutting down" in err.details()
            await stopping
            stopped = True
    finally:
        if not stopped:
            await platform.stop(grace=1)


def envelope_of(event_type: str, payload, at: float) -> bytes:
    env = event_pb2.EventEnvelope(type=event_type)
    env.payload.Pack(payload)
    env.time.FromNanoseconds(int(at * 1e9))
    return env.SerializeToString()


async def test_events_arriving_out_of_order_do_not_roll_a_pet_back():
    hub = WatchHub(max_streams=10)

    def version(description: str, seconds: int) -> pet_events.PetUpdated:
        pet = pet_pb2.Pet(name="pets/p", description=description, create_time={"seconds": 1})
        pet.update_time.FromSeconds(seconds)
        return pet_events.PetUpdated(pet=pet, previous=pet)

    async with hub.watch() as changes:
        deleted = pet_events.PetDeleted(pet=version("newer", 20).pet)
        for event_type, payload, at in (("pet.updated", version("newer", 20), 20),
                                        ("pet.updated", version("older", 10), 10),  # relayed late
                                        ("pet.deleted", deleted, 5),  # by a replica whose clock is behind
                                        ("pet.updated", version("ghost", 20), 20)):  # a duplicate, after it
            await hub.on_event(envelope_of(event_type, payload, at))
        await asyncio.sleep(0.1)
        got = [await asyncio.wait_for(anext(changes), 1) for _ in range(2)]
        assert [(b.description if b else None, a.description if a else None) for b, a in got] == [
            ("newer", "newer"), ("newer", None)], "the deletion comes after the state it deleted"
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(anext(changes), 0.2)


async def test_a_pet_that_aged_out_of_the_search_is_still_taken_back(api: Api, monkeypatch):
    import datetime as dt
    from services.pet import api as pet_api
    owner = await api.signup("Ageing")
    call = api.pet.WatchPets(pet_pb2.WatchPetsRequest(owner=owner.name, max_age_months=12))
    await opened(call)
    kitten = await create(api, owner, cat("Kitten", birth_date=years_ago(0, 11)))
    assert (await next_change(call)).change == CHANGE.CHANGE_ADDED
    real_today = pet_api.today()
    monkeypatch.setattr(pet_api, "today", lambda: real_today + dt.timedelta(days=92))  # now 14 months old
    kitten.description = "grown up"
    await update(api, owner, kitten, "description")
    got = await next_change(call)
    assert got.change == CHANGE.CHANGE_REMOVED and got.pet.name == kitten.name
    call.cancel()


def test_update_times_only_grow_whatever_the_clock_says():
    import datetime as dt
    from services.pet.api import next_update_time
    ahead = pet_pb2.Pet()
    ahead.update_time.FromDatetime(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5))  # another replica
    assert next_update_time(ahead) == (ahead.update_time.ToDatetime(tzinfo=dt.timezone.utc)
                                       + dt.timedelta(microseconds=1))
    behind = pet_pb2.Pet()
    behind.update_time.FromSeconds(1)
    assert next_update_time(behind) > dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)
