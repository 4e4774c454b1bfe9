"""RecommenderService through its public gRPC API: pets from the pet service's events, interactions from
matching's events (published as matching publishes them), RankPets and its refusals, training and the
model swap."""
from __future__ import annotations

import asyncio
import itertools
import uuid

from google.protobuf import timestamp_pb2
from google.type import latlng_pb2
import grpc
import pytest

from ml.recommender.scoring import Weights
from petplatform.common.v1 import animal_pb2
from petplatform.matching.v1 import events_pb2 as matching_events
from petplatform.matching.v1 import matching_pb2
from petplatform.pet.v1 import events_pb2 as pet_events
from petplatform.pet.v1 import pet_pb2
from petplatform.recommender.v1 import recommender_pb2
from petplatform.user.v1 import user_pb2
from tests.support.errors import expect, violations
from tests.support.events import Producer
from tests.support.pets import TOKYO, cat, create, dog
from tests.support.platform import Api, Session, embedded_settings, module_of, start_platform

OSAKA = latlng_pb2.LatLng(latitude=34.6937, longitude=135.5023)  # ~400 km from Tokyo
ADMIN_EMAIL = f"admin-{uuid.uuid4().hex[:8]}@example.com"


@pytest.fixture(scope="module")
async def api(tmp_path_factory, smtp_sink):
    """The platform with an admin account and no periodic training (tests train when they mean to)."""
    platform = await start_platform(embedded_settings(tmp_path_factory.mktemp("data"), smtp_sink,
                                                      admin_emails=[ADMIN_EMAIL], recommender_train_seconds=0))
    client = Api(platform, smtp_sink)
    yield client
    await client.channel.close()
    await platform.stop(grace=1)


@pytest.fixture(scope="module")
async def matching(api: Api, tmp_path_factory):
    producer = await Producer.open("matching", api.platform.rt.bus, tmp_path_factory.mktemp("matching"))
    yield producer
    await producer.close()


@pytest.fixture(scope="module")
async def people(api: Api):
    return await api.signup("Owner"), await api.signup("Adopter"), await api.signup_admin(ADMIN_EMAIL, "Ops")


def rank_request(pets, **kw) -> recommender_pb2.RankPetsRequest:
    return recommender_pb2.RankPetsRequest(pets=[p if isinstance(p, str) else p.name for p in pets], **kw)


async def rank(api: Api, s: Session, pets, **kw) -> recommender_pb2.RankPetsResponse:
    return await api.recommender.RankPets(rank_request(pets, **kw), metadata=s.md)


async def until(api: Api, s: Session, pets, condition, **kw) -> recommender_pb2.RankPetsResponse:
    """Ranks until `condition(response)` holds: the recommender learns from events, asynchronously."""
    for _ in range(200):
        response = await rank(api, s, pets, **kw)
        if condition(response):
            return response
        await asyncio.sleep(0.05)
    raise AssertionError(f"never held; last response: {response}")


def by_name(response) -> dict[str, recommender_pb2.RankedPet]:
    return {p.pet: p for p in response.pets}


def known(*pets):
    return lambda r: all(by_name(r)[p.name].score > 0 for p in pets)


_clock = itertools.count(1_790_000_000)


def swipe(user: Session, pet, action=matching_pb2.SWIPE_ACTION_LIKE, seconds: int | None = None):
    """A swipe as matching records it: a new name, and a time after every earlier swipe's."""
    return matching_events.SwipeRecorded(swipe=matching_pb2.Swipe(
        name=f"swipes/{uuid.uuid4().hex}", user=user.name, pet=pet.name, action=action,
        create_time=timestamp_pb2.Timestamp(seconds=seconds or next(_clock))))


async def test_cold_start_ranks_by_content_distance_and_compatibility(api: Api, people):
    owner, adopter, _ = people
    near_dog = await create(api, owner, dog("Near", location=TOKYO, size=animal_pb2.PET_SIZE_SMALL,
                                            good_with_children=True))
    far_dog = await create(api, owner, dog("Far", location=OSAKA, size=animal_pb2.PET_SIZE_SMALL,
                                           good_with_children=True))
    near_cat = await create(api, owner, cat("Cat", location=TOKYO, size=animal_pb2.PET_SIZE_SMALL,
                                            good_with_children=True))
    big_dog = await create(api, owner, dog("Big", location=TOKYO, size=animal_pb2.PET_SIZE_EXTRA_LARGE))
    prefs = user_pb2.Preferences(species=[animal_pb2.SPECIES_DOG], location=TOKYO, radius_km=50,
                                 home_type=animal_pb2.HOME_TYPE_APARTMENT, has_children=True)
    pets = [far_dog, near_cat, big_dog, near_dog]
    response = await until(api, adopter, pets, known(*pets), preferences=prefs)
    assert response.model_version == "cold-start"
    # Best first, by the weighted parts: the near small dog fits on every count.
    assert response.pets[0].pet == near_dog.name
    assert [p.score for p in response.pets] == sorted((p.score for p in response.pets), reverse=True)
    first, far = response.pets[0], by_name(response)[far_dog.name]
    assert first.content == 1.0 and first.distance == pytest.approx(1.0, abs=1e-3)
    assert first.compatibility == 0.8 and first.collaborative == 0.0  # a dog in a flat
    assert far.distance_km == pytest.approx(400, rel=0.05) and far.distance < 0.01
    big = by_name(response)[big_dog.name]
    assert big.compatibility < 0.25  # extra large, not good with children, in a flat with children
    assert by_name(response)[near_cat.name].content == 0.0
    w = Weights().for_person(has_collaborative=False)  # cold start: no collaborative part
    for p in response.pets:
        assert p.score == pytest.approx(w.content * p.content + w.distance * p.distance
                                        + w.compatibility * p.compatibility + w.popularity * p.popularity)
    limited = await rank(api, adopter, pets, preferences=prefs, max_results=2)
    assert [p.pet for p in limited.pets] == [p.pet for p in response.pets[:2]]


async def test_unknown_pets_rank_last_with_zero_score(api: Api, people):
    owner, adopter, _ = people
    pet = await create(api, owner, dog("Known"))
    ghosts = [f"pets/{uuid.uuid4().hex}" for _ in range(2)]
    response = await until(api, adopter, [ghosts[0], pet, ghosts[1]], known(pet))
    assert [p.pet for p in response.pets] == [pet.name, *ghosts]
    for ghost in response.pets[1:]:
        assert (ghost.score, ghost.content, ghost.distance, ghost.compatibility, ghost.popularity) == (0, 0, 0, 0, 0)


async def test_deleted_pets_rank_as_unknown(api: Api, people):
    owner, adopter, _ = people
    gone, kept = await create(api, owner, dog("Gone")), await create(api, owner, dog("Kept"))
    await until(api, adopter, [gone, kept], known(gone, kept))
    await api.pet.DeletePet(pet_pb2.DeletePetRequest(name=gone.name), metadata=owner.md)
    response = await until(api, adopter, [gone, kept], lambda r: by_name(r)[gone.name].score == 0)
    assert [p.pet for p in response.pets] == [kept.name, gone.name]


async def test_ranks_for_others_only_as_admin(api: Api, people):
    owner, adopter, admin = people
    pet = await create(api, owner, dog("Anyone's"))
    await until(api, adopter, [pet], known(pet))
    await expect(grpc.StatusCode.PERMISSION_DENIED, rank(api, owner, [pet], user=adopter.name))
    response = await rank(api, admin, [pet], user=adopter.name)
    assert response.pets[0].pet == pet.name
    assert (await rank(api, adopter, [pet], user=adopter.name)).pets[0].pet == pet.name
    assert (await rank(api, adopter, [pet], user="users/me")).pets[0].pet == pet.name
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, rank(api, admin, [pet], user="people/x"))
    assert "user" in violations(err)
    await expect(grpc.StatusCode.UNAUTHENTICATED, api.recommender.RankPets(rank_request([pet])))


async def test_refuses_bad_candidates_and_preferences(api: Api, people):
    _, adopter, _ = people
    too_many = [f"pets/{uuid.uuid4().hex}" for _ in range(10_001)]
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, rank(api, adopter, too_many))
    assert "pets" in violations(err)
    assert len((await rank(api, adopter, too_many[:10_000])).pets) == 10_000
    twice = f"pets/{uuid.uuid4().hex}"
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, rank(api, adopter, [twice, twice]))
    assert "repeat" in violations(err)["pets"]
    await expect(grpc.StatusCode.INVALID_ARGUMENT, rank(api, adopter, []))
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, rank(api, adopter, ["pets/not-an-id"]))
    assert "pets" in violations(err)
    for bad, field in ((dict(max_results=-1), "max_results"), (dict(max_results=10_001), "max_results"),
                       (dict(preferences=user_pb2.Preferences(species=[42])), "preferences.species"),
                       (dict(preferences=user_pb2.Preferences(home_type=9)), "preferences.home_type"),
                       (dict(preferences=user_pb2.Preferences(radius_km=-1)), "preferences.radius_km"),
                       (dict(preferences=user_pb2.Preferences(min_age_months=24, max_age_months=12)),
                        "preferences.max_age_months"),
                       (dict(preferences=user_pb2.Preferences(location=latlng_pb2.LatLng(latitude=91))),
                        "preferences.location")):
        err = await expect(grpc.StatusCode.INVALID_ARGUMENT, rank(api, adopter, [twice], **bad))
        assert field in violations(err), (bad, violations(err))


async def test_an_older_pet_update_arriving_late_changes_nothing(api: Api, people, tmp_path):
    owner, adopter, _ = people
    pet = await create(api, owner, dog("Steady"))
    only_dogs = user_pb2.Preferences(species=[animal_pb2.SPECIES_DOG])
    await until(api, adopter, [pet], known(pet), preferences=only_dogs)
    stale = pet_pb2.Pet()
    stale.CopyFrom(pet)
    stale.species = animal_pb2.SPECIES_CAT
    stale.update_time.FromSeconds(pet.update_time.seconds - 60)  # redelivered late, from before the creation
    producer = await Producer.open("pet", api.platform.rt.bus, tmp_path)
    try:
        await producer.emit(pet_events.PetUpdated(pet=stale, previous=pet))
        marker = await create(api, owner, dog("Marker"))  # events of one queue apply in order
        await until(api, adopter, [marker], known(marker))
    finally:
        await producer.close()
    assert (await rank(api, adopter, [pet], preferences=only_dogs)).pets[0].content == 1.0


async def test_learns_popularity_from_swipes_once_and_forgets_undone_ones(api: Api, people, matching):
    owner, adopter, admin = people
    liked, other = await create(api, owner, dog("Liked")), await create(api, owner, dog("Other"))
    await until(api, adopter, [liked, other], known(liked, other))
    ids = await matching.emit(swipe(admin, liked, matching_pb2.SWIPE_ACTION_SUPER_LIKE))
    await matching.emit(swipe(owner, other, matching_pb2.SWIPE_ACTION_PASS))
    response = await until(api, adopter, [other, liked], lambda r: by_name(r)[liked.name].popularity > 0)
    assert [p.pet for p in response.pets] == [liked.name, other.name]
    assert by_name(response)[other.name].popularity == 0.0  # a pass is no like
    before = by_name(response)[liked.name].popularity
    await matching.replay(ids[0])  # delivered twice: applied once
    older = swipe(admin, liked, matching_pb2.SWIPE_ACTION_SUPER_LIKE, seconds=1_700_000_000)
    await matching.emit(matching_events.SwipeUndone(swipe=older.swipe))  # an older swipe than the one kept: no effect
    late = await create(api, owner, dog("Marker"))
    await matching.emit(swipe(owner, late))
    await until(api, adopter, [late], lambda r: r.pets[0].popularity > 0)  # everything before it was applied
    assert by_name(await rank(api, adopter, [liked, other]))[liked.name].popularity == before
    recorded = swipe(admin, liked, matching_pb2.SWIPE_ACTION_SUPER_LIKE)
    recorded.swipe.name = (await module_swipe_name(api, admin, liked))
    await matching.emit(matching_events.SwipeUndone(swipe=recorded.swipe))
    await until(api, adopter, [liked, other], lambda r: by_name(r)[liked.name].popularity == 0)



async def test_a_swipe_undone_before_its_record_arrives_never_counts(api: Api, people, matching):
    owner, adopter, admin = people
    pet = await create(api, owner, dog("Undone Early"))
    late = swipe(admin, pet)
    await matching.emit(matching_events.SwipeUndone(swipe=late.swipe))
    first = await matching.emit(late)  # redelivered late, after its undo
    await matching.replay(first[0])
    marker = await create(api, owner, dog("After"))
    await matching.emit(swipe(owner, marker))
    await until(api, adopter, [marker], lambda r: r.pets[0].popularity > 0)  # everything before it was applied
    response = await until(api, adopter, [pet], known(pet))
    assert response.pets[0].popularity == 0.0
    again = swipe(admin, pet)  # swiped again later: that one counts
    await matching.emit(again)
    await until(api, adopter, [pet], lambda r: r.pets[0].popularity > 0)


async def module_swipe_name(api: Api, user: Session, pet) -> str:
    """The name of the swipe the recommender recorded for (user, pet)."""
    import sqlalchemy as sa

    from ml.recommender.store import interactions
    async with module_of(api, "recommender").db.read() as s:
        return await s.scalar(sa.select(interactions.c.swipe).where(
            interactions.c.user_id == user.user_id, interactions.c.pet_id == pet.name.split("/")[1],
            interactions.c.source == "swipe"))


async def test_content_follows_the_pets_a_person_liked(api: Api, people, matching):
    owner, _, _ = people
    fan = await api.signup("Cat Fan")
    cats = [await create(api, owner, cat(f"Cat {i}", size=animal_pb2.PET_SIZE_SMALL)) for i in range(3)]
    new_cat = await create(api, owner, cat("New Cat", size=animal_pb2.PET_SIZE_SMALL))
    new_dog = await create(api, owner, dog("New Dog", size=animal_pb2.PET_SIZE_LARGE))
    await until(api, fan, [*cats, new_cat, new_dog], known(*cats, new_cat, new_dog))
    before = by_name(await rank(api, fan, [new_dog, new_cat]))
    assert before[new_dog.name].content == before[new_cat.name].content == 0.5  # nothing known of the fan yet
    await matching.emit(*[swipe(fan, c) for c in cats])
    response = await until(api, fan, [new_dog, new_cat], lambda r: r.pets[0].pet == new_cat.name)
    assert by_name(response)[new_cat.name].content > by_name(response)[new_dog.name].content


async def playdate(a: Session, pa, b: Session, pb) -> matching_events.MatchCreated:
    return matching_events.MatchCreated(match=matching_pb2.Match(
        name=f"matches/{uuid.uuid4().hex}", kind=matching_pb2.Match.KIND_PLAYDATE, users=[a.name, b.name],
        pets=[pa.name, pb.name], state=matching_pb2.Match.STATE_ACTIVE))


async def test_training_adds_collaborative_filtering_and_swaps_without_dropping_calls(api: Api, people, matching):
    owner, _, _ = people
    # Two tastes nobody stated: group A likes pets 0-3, group B pets 4-7. A newcomer who likes pet 0
    # should then get pets 1-3 before 4-7, which look the same to the content part.
    pets = [await create(api, owner, dog(f"Twin {i}", size=animal_pb2.PET_SIZE_MEDIUM)) for i in range(8)]
    # The groups only swipe: users as matching names them in its events, without accounts of their own.
    group_a, group_b = [[Session(uuid.uuid4().hex, "", "", "") for _ in range(4)] for _ in range(2)]
    newcomer = await api.signup("Newcomer")
    events = [swipe(u, p) for u in group_a for p in pets[:4]] + [swipe(u, p) for u in group_b for p in pets[4:]]
    events.append(await playdate(group_a[0], pets[0], group_b[0], pets[5]))
    await matching.emit(*events, swipe(newcomer, pets[0]))
    module = module_of(api, "recommender")
    # The newcomer's like, published last, is applied last: their taste shows in the content part.
    await until(api, newcomer, pets, lambda r: all(p.content > 0.5 for p in r.pets))
    assert (await rank(api, newcomer, pets)).model_version == "cold-start"

    calls = [asyncio.create_task(rank(api, newcomer, pets[1:])) for _ in range(40)]
    model = await module.engine.train()
    calls += [asyncio.create_task(rank(api, newcomer, pets[1:])) for _ in range(40)]
    versions = {r.model_version for r in await asyncio.gather(*calls)}  # none failed
    assert versions <= {"cold-start", model.version} and model.version in versions

    response = await rank(api, newcomer, pets[1:])
    assert response.model_version == model.version and model.version.startswith("hybrid-")
    ranked = [p.pet for p in response.pets]
    assert set(ranked[:3]) == {p.name for p in pets[1:4]}
    assert all(p.collaborative > 0 for p in response.pets[:3])
    assert response.pets[0].collaborative > response.pets[-1].collaborative

    # A replica started later loads the published model rather than starting cold.
    other = type(module)(module.rt, module.spec)
    await other.engine.load_current()
    assert other.engine.version == model.version
    await other.db.dispose()



async def test_the_train_command_publishes_a_model_the_service_takes_up(api: Api, people, matching, monkeypatch,
                                                                         capsys):
    from app import cli
    owner, adopter, _ = people
    pet = await create(api, owner, dog("Trained On"))
    await matching.emit(swipe(adopter, pet))
    await until(api, adopter, [pet], lambda r: r.pets[0].popularity > 0)
    monkeypatch.setenv("PETPLATFORM_DATA_DIR", str(api.platform.settings.data_dir))
    assert await asyncio.to_thread(cli.main, ["train", "recommender"]) == 0
    version = capsys.readouterr().out.split("published ")[1].split(" ")[0]
    engine = module_of(api, "recommender").engine
    assert engine.version != version
    # What the periodic job does first at each tick; the job's loop itself is the next test's.
    assert await engine.load_current() and engine.version == version
    assert (await rank(api, adopter, [pet])).model_version == version


async def test_the_periodic_job_trains_when_the_model_is_a_period_old(api: Api, people, matching):
    owner, adopter, _ = people
    engine = module_of(api, "recommender").engine
    before = engine.version
    job = asyncio.create_task(engine.run_periodically(0.05))
    try:
        for _ in range(200):
            if engine.version != before:
                break
            await asyncio.sleep(0.05)
    finally:
        job.cancel()
    assert engine.version != before and engine.version.startswith("hybrid-")
    assert await engine.models.current_version() == engine.version


@pytest.mark.real
async def test_on_postgresql_and_rabbitmq(real_api: Api, tmp_path):
    owner, adopter = await real_api.signup("Owner"), await real_api.signup("Adopter")
    liked, other = await create(real_api, owner, dog("Liked")), await create(real_api, owner, cat("Other"))
    producer = await Producer.open("matching", real_api.platform.rt.bus, tmp_path)
    try:
        await producer.emit(swipe(owner, liked))
        response = await until(real_api, adopter, [other, liked],
                               lambda r: known(liked, other)(r) and by_name(r)[liked.name].popularity > 0)
    finally:
        await producer.close()
    assert [p.pet for p in response.pets] == [liked.name, other.name]
    model = await module_of(real_api, "recommender").engine.train()  # the artefact goes to S3
    assert (await rank(real_api, adopter, [liked, other])).model_version == model.version
