"""The pet service asks fraud before publishing (services/pet/screening.py): a scam draft is created held,
with a neutral reason and no factors for its owner; the case fraud's asynchronous path opens owns that hold,
so the moderator's dismissal shows the listing (one hold, never two); an honest listing is published as
before; and with fraud down, listings are published unscored."""
from __future__ import annotations

import socket
import uuid

import grpc
import pytest
import sqlalchemy as sa

from app import wiring
from app.registry import REGISTRY
from mesh.registry import peer_addresses
from mesh.server import Platform
from petplatform.admin.v1 import admin_pb2 as a
from petplatform.admin.v1 import events_pb2 as admin_events
from petplatform.fraud.v1 import events_pb2 as fraud_events
from petplatform.pet.v1 import pet_pb2
from services.pet import store as pet_store
from mesh.moderation import AUTOMATIC_HOLD_REASON
from services.pet.screening import SCREENING, SCREENINGS
from tests.support.admin import open_case_of
from tests.support.errors import expect
from tests.support.matching import events, until
from tests.support.pets import create, dog
from tests.support.platform import Api, embedded_settings, module_of, start_platform

ADMIN_EMAIL = f"admin-{uuid.uuid4().hex[:8]}@example.com"
SCAM_TEXT = ("Adorable puppy ready for a new home, price $90. Payment by gift card only. "
             "No visits, I am abroad, he will be delivered to you.")
HONEST_TEXT = "Bella is a calm labrador who loves walks, rehoming fee $600 because we are moving abroad."
Action = admin_events.ModerationActionTaken


@pytest.fixture(scope="module")
async def api(tmp_path_factory, smtp_sink):
    # A generous deadline: this machine is loaded, and these tests are about fraud's answer, not its speed.
    platform = await start_platform(embedded_settings(tmp_path_factory.mktemp("data"), smtp_sink,
                                                      admin_emails=[ADMIN_EMAIL], fraud_train_seconds=0,
                                                      pet_screening_deadline_seconds=10))
    client = Api(platform, smtp_sink)
    yield client
    await client.channel.close()
    await platform.stop(grace=1)


@pytest.fixture(scope="module")
async def people(api: Api):
    return await api.signup("Honest"), await api.signup("Scammer"), await api.signup_admin(ADMIN_EMAIL, "Ops")


async def moderation_case(api: Api, pet: pet_pb2.Pet) -> str | None:
    async with module_of(api, "pet").db.read() as s:
        return await pet_store.moderation_case(s, pet.name.removeprefix("pets/"))


async def actions_on(api: Api, subject: str) -> list[admin_events.ModerationActionTaken]:
    out = []
    for envelope in await events(api, "admin", "moderation.action_taken"):
        event = admin_events.ModerationActionTaken()
        envelope.payload.Unpack(event)
        if event.subject == subject:
            out.append(event)
    return out


async def holds_detected(api: Api, subject: str) -> list[fraud_events.FraudDetected]:
    out = []
    for envelope in await events(api, "fraud", "fraud.detected"):
        event = fraud_events.FraudDetected()
        envelope.payload.Unpack(event)
        if event.subject == subject and event.action == fraud_events.FraudDetected.ACTION_HOLD:
            out.append(event)
    return out


async def test_a_scam_draft_is_created_held_until_a_moderator_dismisses_its_case(api: Api, people):
    honest, scammer, admin = people
    before = SCREENINGS.labels("held")._value.get()
    listing = await create(api, scammer, dog("Max", breed="labrador", description=SCAM_TEXT))
    assert listing.moderation == pet_pb2.Pet.MODERATION_HELD
    assert listing.moderation_reason == AUTOMATIC_HOLD_REASON  # neutral: no score, no factor for the scammer to read
    assert SCREENINGS.labels("held")._value.get() == before + 1
    await expect(grpc.StatusCode.NOT_FOUND, api.pet.GetPet(pet_pb2.GetPetRequest(name=listing.name),
                                                           metadata=honest.md))
    owners_view = (await api.pet.ListPets(pet_pb2.ListPetsRequest(owner=f"users/{scammer.user_id}"),
                                          metadata=scammer.md)).pets
    assert [p.name for p in owners_view] == [listing.name]
    assert not (await api.pet.ListPets(pet_pb2.ListPetsRequest(owner=f"users/{scammer.user_id}"),
                                       metadata=honest.md)).pets

    # Fraud's asynchronous path opens the case that owns the hold; the pet service hands the hold to it.
    case = await until(lambda: open_case_of(api, listing.name), what="the case of the held listing")
    await until(lambda: _equals(moderation_case(api, listing), case.name), what="the case owning the hold")
    assert len(await holds_detected(api, listing.name)) == 1
    holds = [e for e in await actions_on(api, listing.name) if e.action == Action.ACTION_HOLD_LISTING]
    assert [(e.case, e.reversal) for e in holds] == [(case.name, False)]  # held once, in the case
    assert "gift" not in holds[0].reason and "score" not in holds[0].reason  # the owner is told this reason too
    seen = (await api.pet.GetPet(pet_pb2.GetPetRequest(name=listing.name), metadata=scammer.md)).pet
    assert seen.moderation == pet_pb2.Pet.MODERATION_HELD and seen.moderation_reason == AUTOMATIC_HOLD_REASON

    staff_view = (await api.admin.GetCase(a.GetCaseRequest(name=case.name), metadata=admin.md)).case
    assert staff_view.evidence and staff_view.evidence[0].factors  # moderators see why

    await api.admin.ResolveCase(a.ResolveCaseRequest(name=case.name, action=Action.ACTION_DISMISS,
                                                     reason="checked with the owner"), metadata=admin.md)

    async def shown():
        try:
            return (await api.pet.GetPet(pet_pb2.GetPetRequest(name=listing.name), metadata=honest.md)).pet
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise
            return None
    pet = await until(shown, what="the listing shown after the dismissal")
    assert pet.moderation == pet_pb2.Pet.MODERATION_VISIBLE and not pet.moderation_reason
    assert await moderation_case(api, listing) is None


async def test_an_honest_listing_is_published_at_once(api: Api, people):
    honest, _, _ = people
    listing = await create(api, honest, dog("Bella", breed="labrador", description=HONEST_TEXT))
    assert listing.moderation == pet_pb2.Pet.MODERATION_VISIBLE and not listing.moderation_reason
    other = await api.signup("Neighbour")
    assert (await api.pet.GetPet(pet_pb2.GetPetRequest(name=listing.name), metadata=other.md)).pet.name == listing.name
    assert await moderation_case(api, listing) is None


async def test_listings_are_published_unscored_when_fraud_is_down(tmp_path_factory, smtp_sink):
    settings = embedded_settings(tmp_path_factory.mktemp("no-fraud"), smtp_sink, pet_screening_deadline_seconds=1)
    with socket.socket() as probe:  # a port nobody listens on: fraud is down
        probe.bind(("127.0.0.1", 0))
        nowhere = f"127.0.0.1:{probe.getsockname()[1]}"
    specs = [s for s in REGISTRY.target("all") if s.name != "fraud"]
    addresses = {**peer_addresses(REGISTRY.ports, settings.host, {}), "fraud": nowhere}
    platform = Platform(wiring.runtime(settings, local=[s.name for s in specs], addresses=addresses), specs, 0)
    await platform.migrate()
    await platform.start()
    api = Api(platform, smtp_sink)
    try:
        scammer, other = await api.signup("Scammer"), await api.signup("Other")
        before = SCREENINGS.labels("unscored")._value.get()
        listing = await create(api, scammer, dog("Max", breed="labrador", description=SCAM_TEXT))
        assert listing.moderation == pet_pb2.Pet.MODERATION_VISIBLE
        assert SCREENINGS.labels("unscored")._value.get() == before + 1
        assert (await api.pet.GetPet(pet_pb2.GetPetRequest(name=listing.name), metadata=other.md)).pet.name \
            == listing.name
        async with module_of(api, "pet").db.read() as s:
            row = (await s.execute(sa.select(pet_store.pets.c.moderation_case)
                                   .where(pet_store.pets.c.id == listing.name.removeprefix("pets/")))).first()
        assert row.moderation_case != SCREENING
    finally:
        await api.channel.close()
        await platform.stop(grace=1)


async def _equals(value, expected) -> bool:
    return await value == expected
