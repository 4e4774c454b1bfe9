"""What a listing looks like, to others and to its owner, as the admin service decides its case: the
admin service and the pet service agree at every step (the hold is the admin's `Case.held`; the pet's
`moderation`). Decided: a hide reversed by an admin on a held case puts the listing back on hold, as
the case is open again with its fraud hold standing, pending a new decision; a later dismissal shows it."""
from __future__ import annotations

import grpc

from mesh.moderation import AUTOMATIC_HOLD_REASON
from petplatform.admin.v1 import admin_pb2 as a
from petplatform.admin.v1 import events_pb2 as ev
from petplatform.pet.v1 import pet_pb2
from tests.e2e.admin.test_moderation import a_listing, case_of, get_case
from tests.support.admin import fraud_detected
from tests.support.matching import until
from tests.support.platform import Api

Action = ev.ModerationActionTaken
Pet = pet_pb2.Pet


async def seen(api: Api, owner, pet: str, moderation: int) -> None:
    """Polls until the owner sees the listing in state `moderation`, and others see it exactly when it is
    visible."""
    stranger = api.stranger

    async def agreed() -> bool:
        mine = (await api.pet.GetPet(pet_pb2.GetPetRequest(name=pet), metadata=owner.md)).pet
        if mine.moderation != moderation:
            return False
        try:
            await api.pet.GetPet(pet_pb2.GetPetRequest(name=pet), metadata=stranger.md)
            return moderation == Pet.MODERATION_VISIBLE
        except grpc.aio.AioRpcError as e:
            return e.code() == grpc.StatusCode.NOT_FOUND and moderation != Pet.MODERATION_VISIBLE
    await until(agreed, what=f"{pet} {Pet.Moderation.Name(moderation)} to its owner and others")


async def held_case(api: Api):
    if not hasattr(api, "stranger"):
        api.stranger = await api.signup("Someone Browsing")
    owner, pet = await a_listing(api)
    await api.fraud.emit(fraud_detected(pet.name, owner.name, 0.92, hold=True))
    case = await case_of(api, pet.name)
    assert case.held
    await seen(api, owner, pet.name, Pet.MODERATION_HELD)
    return owner, pet, case


async def resolve(api: Api, case: a.Case, action: int) -> a.Case:
    return (await api.admin.ResolveCase(a.ResolveCaseRequest(name=case.name, action=action, reason="decided"),
                                        metadata=api.moderator.md)).case


async def reverse(api: Api, case: a.Case) -> a.Case:
    return (await api.admin.ReverseAction(a.ReverseActionRequest(name=case.name, reason="on appeal"),
                                          metadata=api.admin_session.md)).case


async def test_a_fraud_hold_then_a_dismissal_shows_the_listing(admin_api: Api):
    api = admin_api
    owner, pet, case = await held_case(api)
    done = await resolve(api, case, Action.ACTION_DISMISS)
    assert not done.held
    await seen(api, owner, pet.name, Pet.MODERATION_VISIBLE)


async def test_a_hide_reversed_on_a_held_case_holds_the_listing_again_until_decided(admin_api: Api):
    api = admin_api
    owner, pet, case = await held_case(api)
    hidden = await resolve(api, case, Action.ACTION_HIDE_LISTING)
    assert hidden.held  # the hide covers the hold, which stands
    await seen(api, owner, pet.name, Pet.MODERATION_HIDDEN)
    reopened = await reverse(api, case)
    assert reopened.state == a.Case.STATE_OPEN and reopened.held and not reopened.resolution
    await seen(api, owner, pet.name, Pet.MODERATION_HELD)  # not shown: the fraud hold waits for a decision
    mine = (await api.pet.GetPet(pet_pb2.GetPetRequest(name=pet.name), metadata=owner.md)).pet
    assert mine.moderation_reason == AUTOMATIC_HOLD_REASON  # no score, no factors
    # A second reversal lifts the hold itself (the case stays open, unheld); so would a dismissal.
    lifted = await reverse(api, case)
    assert not lifted.held and lifted.state == a.Case.STATE_OPEN
    await seen(api, owner, pet.name, Pet.MODERATION_VISIBLE)
    assert [(x.action, x.reversal) for x in (await get_case(api, case.name)).actions] == [
        (Action.ACTION_HOLD_LISTING, False), (Action.ACTION_HIDE_LISTING, False),
        (Action.ACTION_HIDE_LISTING, True), (Action.ACTION_HOLD_LISTING, True)]


async def test_a_hide_reversed_then_dismissed_shows_the_listing(admin_api: Api):
    api = admin_api
    owner, pet, case = await held_case(api)
    await resolve(api, case, Action.ACTION_HIDE_LISTING)
    await seen(api, owner, pet.name, Pet.MODERATION_HIDDEN)
    await reverse(api, case)
    await seen(api, owner, pet.name, Pet.MODERATION_HELD)
    done = await resolve(api, case, Action.ACTION_DISMISS)
    assert not done.held and done.resolution == Action.ACTION_DISMISS
    await seen(api, owner, pet.name, Pet.MODERATION_VISIBLE)
