"""Matching through the edge: the issue's "done when" over REST/JSON, gRPC-Web and gRPC pass-through,
and client mistakes as HTTP statuses."""
from __future__ import annotations

import grpc

from petplatform.matching.v1 import matching_pb2, matching_pb2_grpc
from tests.support.matching import until
from tests.support.platform import EdgeClient
from tests.support.web import WebChannel, call, signup

TOKYO = {"latitude": 35.6812, "longitude": 139.7671}
NEAR = {"location.latitude": 35.6812, "location.longitude": 139.7671, "radiusKm": 30}


async def new_pet(e: EdgeClient, token: str, name: str, listing: str) -> str:
    status, pet, _ = await call(e, "POST", "/v1/pets", {"displayName": name, "species": "SPECIES_DOG",
                                                        "location": TOKYO, "listing": listing}, token)
    assert status == 200 and pet["listing"] == listing, pet
    return pet["name"]


async def in_feed(e: EdgeClient, token: str, pet: str, **params) -> dict:
    """The card of `pet` once matching's copy has it (pet events are applied asynchronously)."""
    async def card():
        status, page, _ = await call(e, "GET", "/v1/feed", token=token, pageSize=50, **NEAR, **params)
        assert status == 200, page
        return next((c for c in page.get("cards", []) if c["pet"]["name"] == pet), None)
    return await until(card, what=f"{pet} in the feed")


async def test_adoption_and_playdate_matches_over_rest_grpc_web_and_grpc(edge: EdgeClient):
    e = edge
    alice, alice_token = await signup(e, "Alice")
    bob, bob_token = await signup(e, "Bob")
    _, carol_token = await signup(e, "Carol")
    adoptable = await new_pet(e, alice_token, "Hana", "LISTING_ADOPTION")
    alices_player = await new_pet(e, alice_token, "Kuro", "LISTING_PLAYDATES")
    bobs_player = await new_pet(e, bob_token, "Pochi", "LISTING_PLAYDATES")

    # Adoption over REST.
    card = await in_feed(e, bob_token, adoptable)
    assert "less than 1 km away" in card["reasons"]
    status, liked, _ = await call(e, "POST", "/v1/swipes", {"pet": adoptable, "action": "SWIPE_ACTION_LIKE"},
                                  bob_token)
    assert status == 200 and liked["interest"]["state"] == "STATE_PENDING"
    status, interests, _ = await call(e, "GET", "/v1/interests", token=alice_token)
    assert [i["name"] for i in interests["interests"]] == [liked["interest"]["name"]]
    status, accepted, _ = await call(e, "POST", f"/v1/{liked['interest']['name']}:respond",
                                     {"decision": "DECISION_ACCEPT"}, alice_token)
    assert status == 200 and accepted["match"]["kind"] == "KIND_ADOPTION"
    adoption = accepted["match"]["name"]

    # Playdate over gRPC-Web.
    await in_feed(e, bob_token, alices_player, actingPet=bobs_player)
    await in_feed(e, alice_token, bobs_player, actingPet=alices_player)
    async with WebChannel(e.url) as channel:
        web = matching_pb2_grpc.MatchingServiceStub(channel)
        first = await web.Swipe(matching_pb2.SwipeRequest(
            pet=alices_player, action=matching_pb2.SWIPE_ACTION_LIKE, acting_pet=bobs_player),
            metadata=(("authorization", f"Bearer {bob_token}"),))
        assert not first.HasField("match")
        back = await web.Swipe(matching_pb2.SwipeRequest(
            pet=bobs_player, action=matching_pb2.SWIPE_ACTION_LIKE, acting_pet=alices_player),
            metadata=(("authorization", f"Bearer {alice_token}"),))
        assert back.match.kind == matching_pb2.Match.KIND_PLAYDATE
        playdate = back.match.name
        mine = await web.ListMatches(matching_pb2.ListMatchesRequest(),
                                     metadata=(("authorization", f"Bearer {bob_token}"),))
        assert {m.name for m in mine.matches} == {adoption, playdate}

    # Both participants see both; a third user gets 404 over REST and NOT_FOUND over gRPC.
    for token in (alice_token, bob_token):
        status, listed, _ = await call(e, "GET", "/v1/matches", token=token)
        assert {m["name"] for m in listed["matches"]} == {adoption, playdate}
    for match in (adoption, playdate):
        status, body, _ = await call(e, "GET", f"/v1/{match}", token=carol_token)
        assert status == 404 and body["code"] == 5
    async with grpc.aio.insecure_channel(e.grpc_address) as ch:
        with_grpc = matching_pb2_grpc.MatchingServiceStub(ch)
        got = await with_grpc.GetMatch(matching_pb2.GetMatchRequest(name=playdate),
                                       metadata=(("authorization", f"Bearer {alice_token}"),))
        assert set(got.match.users) == {alice, bob}
        try:
            await with_grpc.GetMatch(matching_pb2.GetMatchRequest(name=adoption),
                                     metadata=(("authorization", f"Bearer {carol_token}"),))
            raise AssertionError("a third user saw the match")
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.NOT_FOUND

    # Completing the adoption: the pet is adopted and leaves every feed.
    status, done, _ = await call(e, "POST", f"/v1/{adoption}:completeAdoption", {}, alice_token)
    assert status == 200 and done["state"] == "STATE_ADOPTED"

    async def adopted():
        return (await call(e, "GET", f"/v1/{adoptable}"))[1]["status"] == "STATUS_ADOPTED"
    await until(adopted, what="the pet adopted")
    status, page, _ = await call(e, "GET", "/v1/feed", token=carol_token, pageSize=50, **NEAR)
    assert adoptable not in [c["pet"]["name"] for c in page.get("cards", [])]


async def test_client_mistakes_are_http_errors(edge: EdgeClient):
    e = edge
    user, token = await signup(e, "Mistaken")
    status, body, _ = await call(e, "POST", "/v1/swipes", {"action": "SWIPE_ACTION_LIKE"}, token)
    assert status == 400 and body["details"][0]["reason"] == "MISSING_FIELD"
    status, body, _ = await call(e, "POST", "/v1/swipes", {"pet": "pets/nope", "action": "SWIPE_ACTION_LIKE"}, token)
    assert status == 400
    status, body, _ = await call(e, "POST", "/v1/swipes", {"pet": "pets/" + "0" * 32, "action": "SWIPE_ACTION_LIKE"},
                                 token)
    assert status == 404
    status, body, _ = await call(e, "GET", "/v1/feed", token=token, pageSize=500)
    assert status == 400
    status, body, _ = await call(e, "POST", f"/v1/{user}:block", {}, token)
    assert status == 400
    status, body, _ = await call(e, "POST", "/v1/swipes:undo", {}, token)
    assert status == 400 and body["details"][0]["reason"] == "NOTHING_TO_UNDO"
    status, body, _ = await call(e, "GET", "/v1/feed")
    assert status == 401
    status, body, _ = await call(e, "POST", "/v1/users/" + "1" * 32 + ":block", {}, token)
    assert status == 200 and body == {}
