"""The feed's ranking against a RecommenderService started in the test (a test double: healthy,
failing or stalled on demand): personalised while it answers in time, by popularity and distance
(RANKING_FALLBACK) while it does not, not even tried while the breaker is open, and personalised
again once a probe after the cool-down succeeds."""
from __future__ import annotations

import asyncio
import socket

import grpc
import pytest

from petplatform.matching.v1 import matching_pb2
from petplatform.recommender.v1 import recommender_pb2, recommender_pb2_grpc
from tests.support.matching import feed, listed, platform_without_recommender, until
from tests.support.pets import dog
from tests.support.platform import Api, embedded_settings
from google.type import latlng_pb2

PERSONALISED = matching_pb2.GetFeedResponse.RANKING_PERSONALISED
FALLBACK = matching_pb2.GetFeedResponse.RANKING_FALLBACK
SPOT = latlng_pb2.LatLng(latitude=64.14, longitude=-21.94)  # Reykjavik: only this test lists pets here


class Recommender(recommender_pb2_grpc.RecommenderServiceServicer):
    """Ranks by name, descending, when healthy; fails or stalls when told to."""

    def __init__(self):
        self.mode = "healthy"
        self.calls: list[tuple[recommender_pb2.RankPetsRequest, str]] = []
        self.release = asyncio.Event()

    async def RankPets(self, request, context):
        self.calls.append((request, dict(context.invocation_metadata()).get("authorization", "")))
        if self.mode == "failing":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "down for the test")
        if self.mode == "stalled":
            await self.release.wait()  # past any deadline: the caller gives up first
        ranked = sorted(request.pets, reverse=True)[:request.max_results or None]
        return recommender_pb2.RankPetsResponse(model_version="test", pets=[
            recommender_pb2.RankedPet(pet=p, score=1.0 - i / 100, collaborative=0.9 if i == 0 else 0.1)
            for i, p in enumerate(ranked)])


@pytest.fixture(scope="module")
async def ranked(tmp_path_factory, smtp_sink):
    double = Recommender()
    server = grpc.aio.server()
    recommender_pb2_grpc.add_RecommenderServiceServicer_to_server(double, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    # A deadline and a cool-down that outlast a feed call on a loaded machine (CI on 2 busy cores): with 0.3 s
    # and 0.2 s, a slow healthy call counted as a failure, and the breaker half-opened between two calls.
    settings = embedded_settings(tmp_path_factory.mktemp("data"), smtp_sink, matching_ranking_deadline_seconds=2,
                                 matching_breaker_failures=2, matching_breaker_cool_down_seconds=5)
    platform = platform_without_recommender(settings, f"127.0.0.1:{port}")
    await platform.migrate()
    await platform.start()
    api = Api(platform, smtp_sink)
    yield api, double
    double.release.set()
    await api.channel.close()
    await platform.stop(grace=1)
    await server.stop(0)


async def test_the_feed_falls_back_while_the_recommender_fails_and_recovers(ranked):
    api, double = ranked
    owner, seeker = await api.signup("Ranked owner"), await api.signup("Ranked seeker")
    pets = [await listed(api, owner, dog(f"R{i}", location=SPOT)) for i in range(4)]

    async def ranking():
        return await feed(api, seeker, location=SPOT, radius_km=10)
    page = await ranking()
    assert page.ranking == PERSONALISED, "ranked by the recommender"
    assert [c.pet.name for c in page.cards] == sorted((p.name for p in pets), reverse=True)
    assert "likes similar to yours" in page.cards[0].reasons
    request, authorization = double.calls[-1]
    assert authorization == f"Bearer {seeker.access_token}", "the caller's own token is forwarded"
    assert set(request.pets) == {p.name for p in pets} and request.preferences.radius_km == 10

    double.mode = "failing"
    for _ in range(2):  # consecutive failures: each feed still served, by popularity and distance
        assert (await ranking()).ranking == FALLBACK
    tried = len(double.calls)
    page = await ranking()
    assert page.ranking == FALLBACK and len(page.cards) == 4
    assert len(double.calls) == tried, "the breaker is open: the recommender is not called"

    double.mode = "healthy"
    await until(lambda: _personalised(ranking), what="a probe after the cool-down closes the breaker")

    double.mode = "stalled"  # slow: the deadline ends each call
    for _ in range(2):
        assert (await ranking()).ranking == FALLBACK
    double.mode = "healthy"
    double.release.set()
    await until(lambda: _personalised(ranking), what="recovery after timeouts")


async def _personalised(ranking) -> bool:
    return (await ranking()).ranking == PERSONALISED


@pytest.fixture(scope="module")
async def down(tmp_path_factory, smtp_sink):
    """The platform with its recommender down: nothing listens where matching looks for it."""
    with socket.socket() as closed:  # a port just free, so a call to it is refused at once
        closed.bind(("127.0.0.1", 0))
        nowhere = f"127.0.0.1:{closed.getsockname()[1]}"
    platform = platform_without_recommender(embedded_settings(tmp_path_factory.mktemp("down"), smtp_sink), nowhere)
    await platform.migrate()
    await platform.start()
    api = Api(platform, smtp_sink)
    yield api
    await api.channel.close()
    await platform.stop(grace=1)


async def test_the_fallback_ranks_by_popularity_then_nearness(down: Api):
    api = down
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
        await api.matching.Swipe(matching_pb2.SwipeRequest(pet=liked_far.name, action=matching_pb2.SWIPE_ACTION_LIKE),
                                 metadata=liker.md)
    page = await feed(api, seeker, location=spot, radius_km=100)
    assert page.ranking == FALLBACK
    names = [c.pet.name for c in page.cards]
    assert names == [liked_far.name, quiet_near.name, quiet_far.name]
    assert page.cards[0].score > page.cards[1].score > page.cards[2].score
    assert "popular" in page.cards[0].reasons
