"""Listings held or hidden by moderation (moderation.action_taken, published here as the admin service will)
and with their owner's suspension: out of GetPet, ListPets, WatchPets and matching's feed for everyone but
the owner (told why) and staff, back on the case's reversal."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from petplatform.admin.v1 import events_pb2 as admin_events
from petplatform.auth.v1 import auth_pb2
from petplatform.matching.v1 import matching_pb2
from petplatform.pet.v1 import events_pb2 as pet_events
from petplatform.pet.v1 import pet_pb2
from tests.support.errors import expect
from tests.support.events import Producer
from tests.support.matching import events, feed_names, listed, synced, until
from tests.support.pets import TOKYO, create, dog
from tests.support.platform import Api, Session, embedded_settings, start_platform, totp_code

ADMIN = "moderation-admin@staff.example.com"
Action = admin_events.ModerationActionTaken
Pet = pet_pb2.Pet


@pytest.fixture(scope="module")
async def api(tmp_path_factory, smtp_sink):
    platform = await start_platform(embedded_settings(tmp_path_factory.mktemp("data"), smtp_sink,
                                                      admin_emails=[ADMIN]))
    client = Api(platform, smtp_sink)
    yield client
    await client.channel.close()
    await platform.stop(grace=1)


@pytest.fixture(scope="module")
async def admin_bus(api: Api, tmp_path_factory):
    producer = await Producer.open("admin", api.platform.rt.bus, tmp_path_factory.mktemp("admin"))
    yield producer
    await producer.close()


@pytest.fixture(scope="module")
async def admin(api: Api) -> Session:
    return await api.signup_admin(ADMIN)


@pytest.fixture(scope="module")
async def support(api: Api, admin: Session) -> Session:
    s = await api.signup("Helper")
    secret, _ = await api.enroll_mfa(s)
    await api.auth.SetAccountRole(auth_pb2.SetAccountRoleRequest(name=s.name, role=auth_pb2.ROLE_SUPPORT),
                                  metadata=admin.md)
    return await api.login_with_code(s.email, totp_code(secret, ahead=1))


def get(api: Api, who: Session | None, pet: Pet):
    return api.pet.GetPet(pet_pb2.GetPetRequest(name=pet.name), metadata=who.md if who else None)


async def names(api: Api, who: Session | None, owner: Session) -> list[str]:
    page = await api.pet.ListPets(pet_pb2.ListPetsRequest(owner=owner.name), metadata=who.md if who else None)
    return [p.name for p in page.pets]


async def _found(api: Api, pet: Pet) -> bool:
    try:
        await get(api, None, pet)
        return True
    except grpc.aio.AioRpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND
        return False


async def gone(api: Api, pet: Pet) -> bool:
    return not await _found(api, pet)


async def test_a_hidden_listing_is_seen_only_by_its_owner_and_staff_until_reversed(
        api: Api, admin_bus: Producer, support: Session):
    owner, other = await api.signup("Seller"), await api.signup("Buyer")
    puppy = await listed(api, owner, dog("Cheap puppy", location=TOKYO))
    kept = await listed(api, owner, dog("Honest dog", location=TOKYO))
    assert puppy.moderation == Pet.MODERATION_VISIBLE
    await get(api, other, puppy)  # read once, so the cache holds it
    assert puppy.name in await feed_names(api, other, location=TOKYO, radius_km=50)
    watch = api.pet.WatchPets(pet_pb2.WatchPetsRequest(owner=owner.name), metadata=other.md)
    assert await asyncio.wait_for(watch.initial_metadata(), 5) is not None

    [hide] = await admin_bus.emit(Action(case="cases/h1", subject=puppy.name, user=owner.name,
                                         action=Action.ACTION_HIDE_LISTING, reason="fake listing", upheld=True))
    await until(lambda: gone(api, puppy), what="the hidden pet gone from GetPet")
    removed = await asyncio.wait_for(watch.read(), 30)
    assert (removed.change, removed.pet.name) == (pet_pb2.WatchPetsResponse.CHANGE_REMOVED, puppy.name)
    for who in (other, None):
        await expect(grpc.StatusCode.NOT_FOUND, get(api, who, puppy))
        assert await names(api, who, owner) == [kept.name]
    # Its owner sees it, and why; staff see it.
    mine = (await get(api, owner, puppy)).pet
    assert (mine.moderation, mine.moderation_reason) == (Pet.MODERATION_HIDDEN, "fake listing")
    assert sorted(await names(api, owner, owner)) == sorted([puppy.name, kept.name])
    assert (await get(api, support, puppy)).pet.moderation == Pet.MODERATION_HIDDEN
    assert puppy.name in await names(api, support, owner)
    # pet.updated took it out of matching's copy: out of feeds, not to be swiped.
    hidden = (await get(api, owner, puppy)).pet
    await synced(api, hidden)
    assert puppy.name not in await feed_names(api, other, location=TOKYO, radius_km=50)
    await expect(grpc.StatusCode.NOT_FOUND, api.matching.Swipe(matching_pb2.SwipeRequest(
        pet=puppy.name, action=matching_pb2.SWIPE_ACTION_LIKE), metadata=other.md))
    # A replay changes nothing: one pet.updated for the hiding.
    await admin_bus.replay(hide)
    await admin_bus.emit(Action(case="cases/h1", subject=puppy.name, user=owner.name,
                                action=Action.ACTION_HIDE_LISTING, reason="fake listing", upheld=True))
    # A hold in another case does not lower a hide; its reversal does not show the pet.
    await admin_bus.emit(Action(case="cases/h2", subject=puppy.name, user=owner.name,
                                action=Action.ACTION_HOLD_LISTING, reason="fraud score 0.97"))
    await admin_bus.emit(Action(case="cases/h2", subject=puppy.name, user=owner.name,
                                action=Action.ACTION_HOLD_LISTING, reversal=True))
    # A malformed decision is set aside; the reversal of the hide shows it again, everywhere.
    await admin_bus.emit(Action(case="cases/bad", subject="users/x", action=Action.ACTION_HIDE_LISTING))
    await admin_bus.emit(Action(case="cases/h1", subject=puppy.name, user=owner.name,
                                action=Action.ACTION_HIDE_LISTING, reason="appeal", reversal=True))
    await until(lambda: _found(api, puppy), what="the pet shown again")
    back = (await get(api, other, puppy)).pet
    assert (back.moderation, back.moderation_reason) == (Pet.MODERATION_VISIBLE, "")
    added = await asyncio.wait_for(watch.read(), 30)
    assert (added.change, added.pet.name) == (pet_pb2.WatchPetsResponse.CHANGE_ADDED, puppy.name)
    watch.cancel()
    moderated = []
    for e in await events(api, "pet", "pet.updated"):
        u = pet_events.PetUpdated()
        e.payload.Unpack(u)
        if u.pet.name == puppy.name and "moderation" in u.update_mask.paths:
            moderated.append(u.pet.moderation)
    assert moderated == [Pet.MODERATION_HIDDEN, Pet.MODERATION_VISIBLE]
    await synced(api, back)
    assert puppy.name in await feed_names(api, other, location=TOKYO, radius_km=50)


async def test_a_held_listing_and_a_suspended_owners_listings(api: Api, admin_bus: Producer, admin: Session):
    owner, other = await api.signup("Suspect"), await api.signup()
    held = await create(api, owner, dog("Held"))
    free = await create(api, owner, dog("Free"))
    await admin_bus.emit(Action(case="cases/s1", subject=held.name, user=owner.name,
                                action=Action.ACTION_HOLD_LISTING, reason="fraud score 0.97"))
    await until(lambda: gone(api, held))
    assert (await get(api, owner, held)).pet.moderation == Pet.MODERATION_HELD
    # The owner suspended: every listing of theirs is held with the account...
    await api.auth.SetAccountStatus(auth_pb2.SetAccountStatusRequest(
        name=owner.name, status=auth_pb2.ACCOUNT_STATUS_SUSPENDED, reason="scam"), metadata=admin.md)
    await until(lambda: gone(api, free), what="a suspended owner's pet held")
    assert await names(api, other, owner) == []
    seen = (await get(api, admin, free)).pet
    assert (seen.moderation, seen.moderation_reason) == (Pet.MODERATION_HELD, "the owner's account is suspended")
    # ...and shown again with it; the pet held in a case stays held.
    await api.auth.SetAccountStatus(auth_pb2.SetAccountStatusRequest(
        name=owner.name, status=auth_pb2.ACCOUNT_STATUS_ACTIVE, reason="appeal"), metadata=admin.md)
    await until(lambda: _found(api, free), what="the reinstated owner's pet shown")
    assert await gone(api, held)
    # Decisions about users are not the pet service's.
    await admin_bus.emit(Action(case="cases/s2", subject=owner.name, user=owner.name,
                                action=Action.ACTION_WARN))
    assert await names(api, other, owner) == [free.name]
