"""MatchingService through its public gRPC API: the feed, swipes, interests, matches, blocks and
adoptions, with the events they publish (through the outbox) and what the pet service does on them."""
from __future__ import annotations

from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from google.type import latlng_pb2
import grpc
import pytest

from mesh.events import inbox_handler
from petplatform.common.v1 import animal_pb2
from petplatform.matching.v1 import events_pb2 as matching_events
from petplatform.matching.v1 import matching_pb2
from petplatform.pet.v1 import events_pb2 as pet_events
from petplatform.pet.v1 import pet_pb2
from petplatform.user.v1 import user_pb2
from tests.support.errors import expect, status_of, violations
from tests.support.matching import events, feed, feed_names, listed, synced, until
from tests.support.pets import TOKYO, dog, cat, years_ago
from tests.support.platform import Api, embedded_settings, module_of, start_platform

OSAKA = latlng_pb2.LatLng(latitude=34.6937, longitude=135.5023)  # ~400 km from Tokyo
YOKOHAMA = latlng_pb2.LatLng(latitude=35.4437, longitude=139.6380)  # ~29 km from TOKYO
LIKE, PASS, SUPER = matching_pb2.SWIPE_ACTION_LIKE, matching_pb2.SWIPE_ACTION_PASS, matching_pb2.SWIPE_ACTION_SUPER_LIKE
ADOPTION, PLAYDATES = pet_pb2.Pet.LISTING_ADOPTION, pet_pb2.Pet.LISTING_PLAYDATES
ACCEPT = matching_pb2.RespondToInterestRequest.DECISION_ACCEPT
DECLINE = matching_pb2.RespondToInterestRequest.DECISION_DECLINE
Interest, Match = matching_pb2.Interest, matching_pb2.Match
SWIPE_LIMIT = 6


@pytest.fixture(scope="module")
async def api(tmp_path_factory, smtp_sink):
    """The platform with a small daily swipe limit (every test signs up its own users)."""
    platform = await start_platform(embedded_settings(tmp_path_factory.mktemp("data"), smtp_sink,
                                                      matching_daily_swipe_limit=SWIPE_LIMIT))
    client = Api(platform, smtp_sink)
    yield client
    await client.channel.close()
    await platform.stop(grace=1)


async def swipe(api: Api, who, pet, action=LIKE, acting=None) -> matching_pb2.SwipeResponse:
    return await api.matching.Swipe(matching_pb2.SwipeRequest(
        pet=pet.name, action=action, acting_pet=acting.name if acting else ""), metadata=who.md)


async def respond(api: Api, who, interest: str, decision=ACCEPT) -> matching_pb2.RespondToInterestResponse:
    return await api.matching.RespondToInterest(matching_pb2.RespondToInterestRequest(
        name=interest, decision=decision), metadata=who.md)


async def received(api: Api, who, **kw) -> list[Interest]:
    return list((await api.matching.ListInterests(matching_pb2.ListInterestsRequest(**kw), metadata=who.md)).interests)


async def matches_of(api: Api, who, *states) -> list[str]:
    return [m.name for m in (await api.matching.ListMatches(
        matching_pb2.ListMatchesRequest(states=states), metadata=who.md)).matches]


async def created_once(api: Api, match: str) -> None:
    found = [e for e in await events(api, "matching", "match.created")
             if (m := matching_events.MatchCreated()) and e.payload.Unpack(m) and m.match.name == match]
    assert len(found) == 1, found


async def test_two_users_match_for_a_playdate_and_an_adoption(api: Api):
    """The issue's "done when", over gRPC: a playdate match and an adoption match, seen by both
    participants only, one match.created each; completing the adoption adopts the pet everywhere."""
    alice, bob, carol = await api.signup("Alice"), await api.signup("Bob"), await api.signup("Carol")
    for_adoption = await listed(api, alice, dog("Hana", location=TOKYO, good_with_children=True))
    alices_player = await listed(api, alice, dog("Kuro", listing=PLAYDATES, location=TOKYO))
    bobs_player = await listed(api, bob, dog("Pochi", listing=PLAYDATES, location=YOKOHAMA))

    # Adoption: Bob likes Hana, an interest Alice accepts.
    page = await feed(api, bob, location=TOKYO, radius_km=50)
    card = next(c for c in page.cards if c.pet.name == for_adoption.name)
    assert page.ranking == matching_pb2.GetFeedResponse.RANKING_FALLBACK  # no recommender in this platform
    assert "good with children" in card.reasons and "less than 1 km away" in card.reasons
    assert alices_player.name not in [c.pet.name for c in page.cards]  # playdate pets are not for adoption
    liked = await swipe(api, bob, for_adoption)
    assert liked.interest.state == Interest.STATE_PENDING and liked.interest.owner == alice.name
    assert [i.name for i in await received(api, alice)] == [liked.interest.name]
    assert [i.name for i in await received(api, bob, direction=2)] == [liked.interest.name]
    accepted = await respond(api, alice, liked.interest.name)
    adoption = accepted.match
    assert accepted.interest.state == Interest.STATE_ACCEPTED and accepted.interest.match == adoption.name
    assert adoption.kind == Match.KIND_ADOPTION and list(adoption.users) == [alice.name, bob.name]
    assert list(adoption.pets) == [for_adoption.name] and adoption.interest == liked.interest.name

    # Playdate: Bob likes Kuro for Pochi, Alice likes Pochi back for Kuro.
    assert alices_player.name in await feed_names(api, bob, acting_pet=bobs_player.name)
    first = await swipe(api, bob, alices_player, acting=bobs_player)
    assert not first.HasField("match") and not first.HasField("interest")
    assert bobs_player.name in await feed_names(api, alice, acting_pet=alices_player.name)
    back = await swipe(api, alice, bobs_player, acting=alices_player)
    playdate = back.match
    assert playdate.kind == Match.KIND_PLAYDATE and playdate.state == Match.STATE_ACTIVE
    assert set(playdate.users) == {alice.name, bob.name} and set(playdate.pets) == {alices_player.name,
                                                                                    bobs_player.name}

    for who in (alice, bob):
        assert set(await matches_of(api, who)) == {adoption.name, playdate.name}
        for m in (adoption, playdate):
            assert (await api.matching.GetMatch(matching_pb2.GetMatchRequest(name=m.name), metadata=who.md)).match == m
    assert await matches_of(api, carol) == []
    for m in (adoption, playdate):
        await expect(grpc.StatusCode.NOT_FOUND, api.matching.GetMatch(
            matching_pb2.GetMatchRequest(name=m.name), metadata=carol.md))
        await created_once(api, m.name)

    # Completing the adoption: the pet becomes adopted in the pet service and leaves every feed.
    assert for_adoption.name in await feed_names(api, carol)
    done = (await api.matching.CompleteAdoption(matching_pb2.CompleteAdoptionRequest(name=adoption.name),
                                                metadata=alice.md)).match
    assert done.state == Match.STATE_ADOPTED and done.HasField("end_time")
    again = (await api.matching.CompleteAdoption(matching_pb2.CompleteAdoptionRequest(name=adoption.name),
                                                 metadata=alice.md)).match
    assert again == done
    assert for_adoption.name not in await feed_names(api, carol)

    async def adopted():
        return (await api.pet.GetPet(pet_pb2.GetPetRequest(name=for_adoption.name))).pet.status == \
            pet_pb2.Pet.STATUS_ADOPTED
    await until(adopted, what="the pet service marks the pet adopted")
    completed = [e for e in await events(api, "matching", "adoption.completed")
                 if (a := matching_events.AdoptionCompleted()) and e.payload.Unpack(a) and a.match.name == done.name]
    assert len(completed) == 1
    assert await matches_of(api, bob, Match.STATE_ADOPTED) == [adoption.name]


async def test_the_feed_leaves_out_own_swiped_adopted_deleted_and_blocked_pets(api: Api):
    me, other, blocker, blocked = [await api.signup(n) for n in ("Me", "Other", "Blocker", "Blocked")]
    mine = await listed(api, me, dog("Mine"))
    swiped = await listed(api, other, dog("Swiped"))
    passed = await listed(api, other, dog("Passed"))
    adopted = await listed(api, other, dog("Adopted"))
    deleted = await listed(api, other, dog("Deleted"))
    of_blocker = await listed(api, blocker, dog("OfBlocker"))
    of_blocked = await listed(api, blocked, dog("OfBlocked"))
    kept = await listed(api, other, dog("Kept"))
    ours = {p.name for p in (mine, swiped, passed, adopted, deleted, of_blocker, of_blocked, kept)}

    async def shown() -> set[str]:
        return set(await feed_names(api, me)) & ours
    assert await shown() == ours - {mine.name}
    await swipe(api, me, swiped)
    await swipe(api, me, passed, PASS)
    changed = (await api.pet.UpdatePet(pet_pb2.UpdatePetRequest(
        pet=pet_pb2.Pet(name=adopted.name, status=pet_pb2.Pet.STATUS_ADOPTED),
        update_mask=field_mask_pb2.FieldMask(paths=["status"])), metadata=other.md)).pet
    await api.pet.DeletePet(pet_pb2.DeletePetRequest(name=deleted.name), metadata=other.md)
    await api.matching.BlockUser(matching_pb2.BlockUserRequest(name=me.name), metadata=blocker.md)
    await api.matching.BlockUser(matching_pb2.BlockUserRequest(name=blocked.name), metadata=me.md)
    await synced(api, changed)
    await until(lambda: _not_shown(api, me, deleted.name), what="the deleted pet leaves the feed")
    assert await shown() == {kept.name}
    # Undone, a swipe no longer hides its pet (the last swipe was the pass).
    undone = (await api.matching.UndoSwipe(matching_pb2.UndoSwipeRequest(), metadata=me.md)).swipe
    assert undone.pet == passed.name and undone.action == PASS
    assert await shown() == {kept.name, passed.name}
    # Blocked either way: the pets of the one who blocked me, too, stay out of my feed and theirs.
    assert mine.name not in await feed_names(api, blocker) and mine.name not in await feed_names(api, blocked)


async def _not_shown(api: Api, who, name: str) -> bool:
    return name not in await feed_names(api, who)


async def test_preferences_filter_the_feed_unless_the_request_overrides_them(api: Api):
    owner, seeker = await api.signup("Lister"), await api.signup("Seeker")
    near_dog = await listed(api, owner, dog("NearDog", location=TOKYO, size=animal_pb2.PET_SIZE_SMALL,
                                            birth_date=years_ago(1)))
    far_dog = await listed(api, owner, dog("FarDog", location=OSAKA, size=animal_pb2.PET_SIZE_SMALL,
                                           birth_date=years_ago(1)))
    near_cat = await listed(api, owner, cat("NearCat", location=YOKOHAMA, birth_date=years_ago(5)))
    ours = {near_dog.name, far_dog.name, near_cat.name}

    async def profile_made():
        try:
            return await api.user.GetUser(user_pb2.GetUserRequest(name="users/me"), metadata=seeker.md)
        except grpc.aio.AioRpcError:
            return None
    await until(profile_made, what="the seeker's profile")
    await api.user.UpdateUser(user_pb2.UpdateUserRequest(
        user=user_pb2.User(name=seeker.name, preferences=user_pb2.Preferences(
            species=[animal_pb2.SPECIES_DOG], location=TOKYO, radius_km=50, max_age_months=36)),
        update_mask=field_mask_pb2.FieldMask(paths=["preferences"])), metadata=seeker.md)

    async def shown(**kw) -> list[str]:
        return [n for n in await feed_names(api, seeker, **kw) if n in ours]
    assert await shown() == [near_dog.name]
    assert set(await shown(radius_km=500)) == {near_dog.name, far_dog.name}
    assert await shown(species=[animal_pb2.SPECIES_CAT]) == []  # 5 years old: over the preferred 36 months
    assert await shown(species=[animal_pb2.SPECIES_CAT], max_age_months=120) == [near_cat.name]
    assert await shown(location=OSAKA) == [far_dog.name]
    card = (await feed(api, seeker, location=YOKOHAMA, page_size=50)).cards
    near = next(c for c in card if c.pet.name == near_dog.name)
    assert "29 km away" in near.reasons and 28 < near.pet.distance_km < 30 and near.pet.age_months == 12


async def test_the_feed_pages_through_every_card_once(api: Api):
    owner, seeker = await api.signup("Many"), await api.signup("Pager")
    far = latlng_pb2.LatLng(latitude=-33.86, longitude=151.2)  # Sydney: no other test lists pets here
    made = {(await listed(api, owner, dog(f"Pup {i}", location=far))).name for i in range(7)}
    seen, token = [], ""
    while True:
        page = await feed(api, seeker, location=far, radius_km=20, page_size=3, page_token=token)
        assert len(page.cards) <= 3
        seen += [c.pet.name for c in page.cards]
        if not (token := page.next_page_token):
            break
    assert sorted(seen) == sorted(made)
    first = await feed(api, seeker, location=far, radius_km=20, page_size=3)
    await expect(grpc.StatusCode.INVALID_ARGUMENT, feed(api, seeker, location=far, radius_km=30, page_size=3,
                                                        page_token=first.next_page_token))
    # A card swiped between pages does not shift the next page.
    await swipe(api, seeker, pet_pb2.Pet(name=first.cards[0].pet.name), PASS)
    second = await feed(api, seeker, location=far, radius_km=20, page_size=3, page_token=first.next_page_token)
    rest = await feed_names(api, seeker, location=far, radius_km=20)
    assert {c.pet.name for c in second.cards} <= set(rest) and len(rest) == 6


async def test_the_fallback_ranks_by_popularity_then_nearness(api: Api):
    owner = await api.signup("Popular owner")
    likers = [await api.signup(f"Liker {i}") for i in range(2)]
    seeker = await api.signup("Ranked")
    spot = latlng_pb2.LatLng(latitude=-41.28, longitude=174.77)  # Wellington
    near = latlng_pb2.LatLng(latitude=-41.281, longitude=174.771)
    quiet_near = await listed(api, owner, dog("QuietNear", location=near))
    liked_far = await listed(api, owner, dog("LikedFar", location=latlng_pb2.LatLng(latitude=-41.1, longitude=174.9)))
    quiet_far = await listed(api, owner, dog("QuietFar", location=latlng_pb2.LatLng(latitude=-41.1,
                                                                                     longitude=174.95)))
    for liker in likers:
        await swipe(api, liker, liked_far)
    page = await feed(api, seeker, location=spot, radius_km=100)
    names = [c.pet.name for c in page.cards]
    assert names == [liked_far.name, quiet_near.name, quiet_far.name]
    assert page.cards[0].score > page.cards[1].score > page.cards[2].score
    assert "popular" in page.cards[0].reasons


async def test_swipes_are_idempotent_per_pair_and_limited_per_day(api: Api):
    owner, swiper = await api.signup("Limits owner"), await api.signup("Swiper")
    pets = [await listed(api, owner, dog(f"Limit {i}")) for i in range(SWIPE_LIMIT + 1)]
    first = await swipe(api, swiper, pets[0], SUPER)
    again = await swipe(api, swiper, pets[0], PASS)  # the same pair: the first swipe, unchanged
    assert again.swipe == first.swipe and again.interest == first.interest and first.interest.super_like
    for pet in pets[1:SWIPE_LIMIT]:
        await swipe(api, swiper, pet, PASS)
    err = await expect(grpc.StatusCode.RESOURCE_EXHAUSTED, swipe(api, swiper, pets[-1]), "SWIPE_LIMIT")
    retry = [d for d in status_of(err).details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    info = error_details_pb2.RetryInfo()
    retry[0].Unpack(info)
    assert 0 < info.retry_delay.seconds <= 24 * 3600
    assert (await swipe(api, swiper, pets[0])).swipe == first.swipe  # a repeat costs nothing, even past the limit
    events_of_swiper = [e for e in await events(api, "matching", "swipe.recorded")
                        if (r := matching_events.SwipeRecorded()) and e.payload.Unpack(r)
                        and r.swipe.user == swiper.name]
    assert len(events_of_swiper) == SWIPE_LIMIT


async def test_undo_withdraws_the_interest_and_refuses_a_match(api: Api):
    owner, liker = await api.signup("Undo owner"), await api.signup("Undoer")
    await expect(grpc.StatusCode.FAILED_PRECONDITION, api.matching.UndoSwipe(
        matching_pb2.UndoSwipeRequest(), metadata=liker.md), "NOTHING_TO_UNDO")
    pet = await listed(api, owner, dog("Undone"))
    liked = await swipe(api, liker, pet)
    undone = (await api.matching.UndoSwipe(matching_pb2.UndoSwipeRequest(), metadata=liker.md)).swipe
    assert undone == liked.swipe
    assert await received(api, owner) == []
    withdrawn = await received(api, owner, states=[Interest.STATE_WITHDRAWN])
    assert [i.name for i in withdrawn] == [liked.interest.name]
    await expect(grpc.StatusCode.FAILED_PRECONDITION, respond(api, owner, liked.interest.name), "INTEREST_CLOSED")
    relike = await swipe(api, liker, pet)  # liked again after the undo: a new swipe and interest
    assert relike.swipe.name != liked.swipe.name and relike.interest.name != liked.interest.name
    await respond(api, owner, relike.interest.name)
    await expect(grpc.StatusCode.FAILED_PRECONDITION, api.matching.UndoSwipe(
        matching_pb2.UndoSwipeRequest(), metadata=liker.md), "ALREADY_MATCHED")
    assert len([e for e in await events(api, "matching", "swipe.undone")
                if (u := matching_events.SwipeUndone()) and e.payload.Unpack(u) and u.swipe.user == liker.name]) == 1


async def test_interests_list_super_likes_first_and_answers_are_idempotent(api: Api):
    owner = await api.signup("Popular")
    fans = [await api.signup(f"Fan {i}") for i in range(3)]
    pet = await listed(api, owner, cat("Star"))
    made = [(await swipe(api, fan, pet, SUPER if i == 1 else LIKE)).interest for i, fan in enumerate(fans)]
    listed_now = await received(api, owner, pet=pet.name)
    assert [i.name for i in listed_now] == [made[1].name, made[2].name, made[0].name]
    page = await api.matching.ListInterests(matching_pb2.ListInterestsRequest(page_size=2), metadata=owner.md)
    rest = await api.matching.ListInterests(matching_pb2.ListInterestsRequest(
        page_size=2, page_token=page.next_page_token), metadata=owner.md)
    assert [i.name for i in [*page.interests, *rest.interests]] == [i.name for i in listed_now]
    declined = await respond(api, owner, made[0].name, DECLINE)
    assert declined.interest.state == Interest.STATE_DECLINED and not declined.HasField("match")
    assert (await respond(api, owner, made[0].name, DECLINE)).interest == declined.interest
    await expect(grpc.StatusCode.FAILED_PRECONDITION, respond(api, owner, made[0].name), "INTEREST_CLOSED")
    accepted = await respond(api, owner, made[1].name)
    assert (await respond(api, owner, made[1].name)) == accepted  # a retried accept: the same match
    await created_once(api, accepted.match.name)
    # Completing one adoption declines the other open interests and ends the other adoption matches.
    other = await respond(api, owner, made[2].name)
    await api.matching.CompleteAdoption(matching_pb2.CompleteAdoptionRequest(name=accepted.match.name),
                                        metadata=owner.md)
    ended = (await api.matching.GetMatch(matching_pb2.GetMatchRequest(name=other.match.name),
                                         metadata=owner.md)).match
    assert ended.state == Match.STATE_ENDED
    assert [i.state for i in await received(api, fans[2], direction=2, states=[Interest.STATE_DECLINED])] == [
        Interest.STATE_DECLINED]
    await expect(grpc.StatusCode.FAILED_PRECONDITION, api.matching.CompleteAdoption(
        matching_pb2.CompleteAdoptionRequest(name=other.match.name), metadata=owner.md), "MATCH_ENDED")
    late = await api.signup("Too late")
    await expect(grpc.StatusCode.FAILED_PRECONDITION, swipe(api, late, pet), "PET_ADOPTED")


async def test_unmatch_and_block_end_matches_and_withdraw_interests(api: Api):
    a, b = await api.signup("Ann"), await api.signup("Ben")
    a_pet = await listed(api, a, dog("AnnDog", listing=PLAYDATES))
    b_pet = await listed(api, b, dog("BenDog", listing=PLAYDATES))
    b_adoptable = await listed(api, b, cat("BenCat"))
    b_unseen = await listed(api, b, cat("BenUnseen"))
    await swipe(api, a, b_pet, acting=a_pet)
    playdate = (await swipe(api, b, a_pet, acting=b_pet)).match
    unmatched = (await api.matching.Unmatch(matching_pb2.UnmatchRequest(name=playdate.name), metadata=a.md)).match
    assert unmatched.state == Match.STATE_ENDED
    assert (await api.matching.Unmatch(matching_pb2.UnmatchRequest(name=playdate.name), metadata=b.md)).match == \
        unmatched
    interest = (await swipe(api, a, b_adoptable)).interest
    other = await api.signup("Other fan")
    accepted = (await respond(api, b, (await swipe(api, other, b_adoptable)).interest.name)).match
    await api.matching.BlockUser(matching_pb2.BlockUserRequest(name=a.name), metadata=b.md)
    await api.matching.BlockUser(matching_pb2.BlockUserRequest(name=a.name), metadata=b.md)  # again: nothing new
    assert await received(api, b, states=[Interest.STATE_WITHDRAWN]) == []  # hidden from the one who blocked
    sent = await received(api, a, direction=2, states=[Interest.STATE_WITHDRAWN])
    assert sent == []  # hidden both ways
    assert b_adoptable.name not in await feed_names(api, a)
    await expect(grpc.StatusCode.NOT_FOUND, swipe(api, a, b_unseen))
    assert await matches_of(api, b) == [accepted.name]  # the match with someone else stays
    blocks = [e for e in await events(api, "matching", "user.blocked")
              if (u := matching_events.UserBlocked()) and e.payload.Unpack(u) and u.user == b.name]
    assert len(blocks) == 1
    changed = [i for e in await events(api, "matching", "interest.changed")
               if (i := matching_events.InterestChanged()) and e.payload.Unpack(i)
               and i.interest.name == interest.name]
    assert changed[-1].interest.state == Interest.STATE_WITHDRAWN


async def test_a_block_ends_shared_matches(api: Api):
    a, b = await api.signup("Cleo"), await api.signup("Dan")
    a_pet = await listed(api, a, dog("CleoDog", listing=PLAYDATES))
    b_pet = await listed(api, b, dog("DanDog", listing=PLAYDATES))
    await swipe(api, a, b_pet, acting=a_pet)
    match = (await swipe(api, b, a_pet, acting=b_pet)).match
    await api.matching.BlockUser(matching_pb2.BlockUserRequest(name=b.name), metadata=a.md)
    ended = [m for e in await events(api, "matching", "match.ended")
             if (m := matching_events.MatchEnded()) and e.payload.Unpack(m) and m.match.name == match.name]
    assert [m.reason for m in ended] == [matching_events.MatchEnded.REASON_BLOCKED]
    assert ended[0].match.state == Match.STATE_ENDED
    assert await matches_of(api, a, Match.STATE_ENDED) == [] and await matches_of(api, b) == []


async def test_bad_input_is_refused_with_the_field_named(api: Api):
    owner, other, stranger = await api.signup("Bad owner"), await api.signup("Bad other"), await api.signup("Nosy")
    mine = await listed(api, owner, dog("Mine", listing=PLAYDATES))
    theirs = await listed(api, other, dog("Theirs", listing=PLAYDATES))
    adoptable = await listed(api, other, dog("Adoptable"))
    m = api.matching
    cases = [
        (m.Swipe(matching_pb2.SwipeRequest(action=LIKE), metadata=owner.md), "pet"),
        (m.Swipe(matching_pb2.SwipeRequest(pet=adoptable.name), metadata=owner.md), "action"),
        (m.Swipe(matching_pb2.SwipeRequest(pet="pets/xyz", action=LIKE), metadata=owner.md), "pet"),
        (m.Swipe(matching_pb2.SwipeRequest(pet=adoptable.name, action=9), metadata=owner.md), "action"),
        (m.Swipe(matching_pb2.SwipeRequest(pet=mine.name, action=LIKE, acting_pet=mine.name), metadata=owner.md),
         "pet"),
        (m.Swipe(matching_pb2.SwipeRequest(pet=theirs.name, action=LIKE), metadata=owner.md), "acting_pet"),
        (m.Swipe(matching_pb2.SwipeRequest(pet=adoptable.name, action=LIKE, acting_pet=mine.name),
                 metadata=owner.md), "acting_pet"),
        (m.GetFeed(matching_pb2.GetFeedRequest(acting_pet="users/1"), metadata=owner.md), "acting_pet"),
        (m.GetFeed(matching_pb2.GetFeedRequest(page_size=51), metadata=owner.md), "page_size"),
        (m.GetFeed(matching_pb2.GetFeedRequest(radius_km=501), metadata=owner.md), "radius_km"),
        (m.GetFeed(matching_pb2.GetFeedRequest(species=[99]), metadata=owner.md), "species"),
        (m.GetFeed(matching_pb2.GetFeedRequest(min_age_months=10, max_age_months=5), metadata=owner.md),
         "min_age_months"),
        (m.GetFeed(matching_pb2.GetFeedRequest(page_token="forged"), metadata=owner.md), "page_token"),
        (m.GetFeed(matching_pb2.GetFeedRequest(location=latlng_pb2.LatLng(latitude=91)), metadata=owner.md),
         "location"),
        (m.ListInterests(matching_pb2.ListInterestsRequest(states=[7]), metadata=owner.md), "states"),
        (m.ListInterests(matching_pb2.ListInterestsRequest(pet="dogs/1"), metadata=owner.md), "pet"),
        (m.ListMatches(matching_pb2.ListMatchesRequest(states=[0]), metadata=owner.md), "states"),
        (m.RespondToInterest(matching_pb2.RespondToInterestRequest(decision=ACCEPT), metadata=owner.md), "name"),
        (m.RespondToInterest(matching_pb2.RespondToInterestRequest(name="interests/" + "0" * 32, decision=5),
                             metadata=owner.md), "decision"),
        (m.GetMatch(matching_pb2.GetMatchRequest(name="matches/abc"), metadata=owner.md), "name"),
        (m.BlockUser(matching_pb2.BlockUserRequest(name=owner.name), metadata=owner.md), "name"),
        (m.BlockUser(matching_pb2.BlockUserRequest(name="pets/" + "0" * 32), metadata=owner.md), "name"),
        (m.CompleteAdoption(matching_pb2.CompleteAdoptionRequest(), metadata=owner.md), "name"),
    ]
    for call, field in cases:
        err = await expect(grpc.StatusCode.INVALID_ARGUMENT, call)
        assert field in violations(err), (field, err.details())
    await expect(grpc.StatusCode.PERMISSION_DENIED, swipe(api, owner, theirs, acting=pet_pb2.Pet(
        name=theirs.name)), "NOT_OWNER")
    await expect(grpc.StatusCode.PERMISSION_DENIED, feed(api, owner, acting_pet=theirs.name), "NOT_OWNER")
    await expect(grpc.StatusCode.NOT_FOUND, swipe(api, owner, pet_pb2.Pet(name="pets/" + "0" * 32)))
    await expect(grpc.StatusCode.UNAUTHENTICATED, m.GetFeed(matching_pb2.GetFeedRequest()))

    # Other users' interests and matches.
    interest = (await swipe(api, owner, adoptable)).interest
    await expect(grpc.StatusCode.PERMISSION_DENIED, respond(api, owner, interest.name), "NOT_OWNER")
    await expect(grpc.StatusCode.NOT_FOUND, respond(api, stranger, interest.name))
    assert await received(api, stranger) == []
    match = (await respond(api, other, interest.name)).match
    for call in (m.GetMatch(matching_pb2.GetMatchRequest(name=match.name), metadata=stranger.md),
                 m.Unmatch(matching_pb2.UnmatchRequest(name=match.name), metadata=stranger.md),
                 m.CompleteAdoption(matching_pb2.CompleteAdoptionRequest(name=match.name), metadata=stranger.md),
                 m.GetMatch(matching_pb2.GetMatchRequest(name="matches/" + "0" * 32), metadata=owner.md)):
        await expect(grpc.StatusCode.NOT_FOUND, call)
    await expect(grpc.StatusCode.PERMISSION_DENIED, m.CompleteAdoption(
        matching_pb2.CompleteAdoptionRequest(name=match.name), metadata=owner.md), "NOT_OWNER")  # the adopter


async def test_replayed_and_stale_events_change_nothing(api: Api):
    owner, adopter = await api.signup("Replay owner"), await api.signup("Replay adopter")
    pet = await listed(api, owner, dog("Replayed"))
    match = (await respond(api, owner, (await swipe(api, adopter, pet)).interest.name)).match
    await api.matching.CompleteAdoption(matching_pb2.CompleteAdoptionRequest(name=match.name), metadata=owner.md)

    async def pet_updates() -> int:
        return len([e for e in await events(api, "pet", "pet.updated")
                    if (u := pet_events.PetUpdated())
                    and e.payload.Unpack(u) and u.pet.name == pet.name])
    await until(pet_updates, what="pet.updated after the adoption")
    assert await pet_updates() == 1
    completed = next(e for e in await events(api, "matching", "adoption.completed")
                     if (a := matching_events.AdoptionCompleted()) and e.payload.Unpack(a)
                     and a.match.name == match.name)
    pet_module = module_of(api, "pet")
    handler = inbox_handler(pet_module.db, "pet.adoptions", pet_module.consumers()["pet.adoptions"])
    await handler(completed.SerializeToString())  # the same event again: the inbox drops it
    copy = type(completed)()
    copy.CopyFrom(completed)
    copy.id = "another-id-for-the-same-adoption"
    await handler(copy.SerializeToString())  # a second event: the pet is adopted already
    assert await pet_updates() == 1

    # Matching's copy: an older pet.updated than one applied is stale, a replayed pet.created is dropped.
    created = next(e for e in await events(api, "pet", "pet.created")
                   if (c := pet_events.PetCreated())
                   and e.payload.Unpack(c) and c.pet.name == pet.name)
    matching = module_of(api, "matching")
    pets_handler = inbox_handler(matching.db, "matching.pets", matching.consumers()["matching.pets"])
    stale = type(created)()
    stale.CopyFrom(created)
    stale.id = "a-stale-copy-of-pet-created"
    await pets_handler(created.SerializeToString())
    await pets_handler(stale.SerializeToString())
    late = await api.signup("Late")
    await expect(grpc.StatusCode.FAILED_PRECONDITION, swipe(api, late, pet), "PET_ADOPTED")


async def test_a_pet_listed_for_playdates_and_its_owner_pet_checks(api: Api):
    a, b = await api.signup("Pa"), await api.signup("Pb")
    a_pet = await listed(api, a, dog("PaDog", listing=PLAYDATES))
    b_pet = await listed(api, b, dog("PbDog", listing=PLAYDATES))
    b_other = await listed(api, b, dog("PbOther", listing=PLAYDATES))
    await swipe(api, a, b_pet, acting=a_pet)
    # A like back for another of b's pets is no match: the pair is of pets.
    assert not (await swipe(api, b, a_pet, acting=b_other)).HasField("match")
    # A pass back is no match either.
    c = await api.signup("Pc")
    c_pet = await listed(api, c, dog("PcDog", listing=PLAYDATES))
    await swipe(api, a, c_pet, acting=a_pet)
    assert not (await swipe(api, c, a_pet, PASS, acting=c_pet)).HasField("match")
    match = (await swipe(api, b, a_pet, acting=b_pet)).match
    assert match.kind == Match.KIND_PLAYDATE
    # The swipe again answers with the match it made.
    assert (await swipe(api, b, a_pet, acting=b_pet)).match == match
    await expect(grpc.StatusCode.FAILED_PRECONDITION, api.matching.CompleteAdoption(
        matching_pb2.CompleteAdoptionRequest(name=match.name), metadata=a.md), "NOT_ADOPTION")
