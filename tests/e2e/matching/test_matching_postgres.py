"""Exactly once under real concurrency, on PostgreSQL and RabbitMQ: mutual likes in flight together,
retried accepts and completions make one match, one match.created and one adoption.completed."""
from __future__ import annotations

import asyncio

import grpc

from petplatform.matching.v1 import events_pb2 as matching_events
from petplatform.matching.v1 import matching_pb2
from petplatform.pet.v1 import pet_pb2
from tests.support.matching import events, feed_names, listed, until
from tests.support.pets import dog
from tests.support.platform import Api

LIKE = matching_pb2.SWIPE_ACTION_LIKE
PLAYDATES = pet_pb2.Pet.LISTING_PLAYDATES
ACCEPT = matching_pb2.RespondToInterestRequest.DECISION_ACCEPT


def swipe(api: Api, who, pet: str, acting: str = ""):
    return api.matching.Swipe(matching_pb2.SwipeRequest(pet=pet, action=LIKE, acting_pet=acting), metadata=who.md)


async def published(api: Api, kind: str, message, match: str) -> int:
    return len([e for e in await events(api, "matching", kind)
                if (m := message()) and e.payload.Unpack(m) and m.match.name == match])


async def test_concurrent_mutual_likes_make_one_match(real_api: Api):
    api = real_api
    pairs = []
    for i in range(4):
        a, b = await api.signup(f"A{i}"), await api.signup(f"B{i}")
        pairs.append((a, b, await listed(api, a, dog(f"PA{i}", listing=PLAYDATES)),
                      await listed(api, b, dog(f"PB{i}", listing=PLAYDATES))))
    # Each side likes back at the same moment, each twice (a client retrying): no like waits for the other.
    answers = await asyncio.gather(*(
        swipe(api, who, pet.name, acting.name)
        for a, b, pa, pb in pairs for who, pet, acting in ((a, pb, pa), (b, pa, pb), (a, pb, pa), (b, pa, pb))))
    for n, (a, b, _, _) in enumerate(pairs):
        mine = answers[4 * n:4 * n + 4]
        made = {r.match.name for r in mine if r.HasField("match")}
        assert len(made) == 1, (n, made)
        (match,) = made
        assert await published(api, "match.created", matching_events.MatchCreated, match) == 1
        for who in (a, b):
            listed_matches = (await api.matching.ListMatches(matching_pb2.ListMatchesRequest(),
                                                             metadata=who.md)).matches
            assert [m.name for m in listed_matches] == [match]
        assert len({r.swipe.name for r in mine[0::2]}) == 1 and len({r.swipe.name for r in mine[1::2]}) == 1


async def test_retried_accepts_and_completions_happen_once(real_api: Api):
    api = real_api
    owner, adopter, watcher = await api.signup("Owner"), await api.signup("Adopter"), await api.signup("Watcher")
    pet = await listed(api, owner, dog("Once"))
    interest = (await swipe(api, adopter, pet.name)).interest
    accepts = await asyncio.gather(*(api.matching.RespondToInterest(matching_pb2.RespondToInterestRequest(
        name=interest.name, decision=ACCEPT), metadata=owner.md) for _ in range(5)))
    assert len({r.match.name for r in accepts}) == 1
    match = accepts[0].match.name
    assert await published(api, "match.created", matching_events.MatchCreated, match) == 1
    done = await asyncio.gather(*(api.matching.CompleteAdoption(matching_pb2.CompleteAdoptionRequest(name=match),
                                                                metadata=owner.md) for _ in range(4)),
                                return_exceptions=True)
    assert all(not isinstance(d, grpc.aio.AioRpcError) for d in done), done
    assert await published(api, "adoption.completed", matching_events.AdoptionCompleted, match) == 1

    async def adopted():
        return (await api.pet.GetPet(pet_pb2.GetPetRequest(name=pet.name))).pet.status == pet_pb2.Pet.STATUS_ADOPTED
    await until(adopted, what="the pet service marks the pet adopted (through RabbitMQ)")
    assert pet.name not in await feed_names(api, watcher)
