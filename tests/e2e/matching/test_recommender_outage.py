"""The real recommender in a process of its own (as in production), stopped and started again under a
live feed: the feed is served by popularity and distance while it is down, and personalised again once
it is back. PostgreSQL and RabbitMQ carry the events to both processes."""
from __future__ import annotations

import socket

from google.type import latlng_pb2
from app import wiring
from app.registry import REGISTRY
from mesh.registry import peer_addresses
from mesh.server import Platform
from petplatform.matching.v1 import matching_pb2
from tests.support.matching import feed, listed, platform_without_recommender, until
from tests.support.pets import dog
from tests.support.platform import Api, drop_real_state, real_settings

PERSONALISED = matching_pb2.GetFeedResponse.RANKING_PERSONALISED
FALLBACK = matching_pb2.GetFeedResponse.RANKING_FALLBACK
SPOT = latlng_pb2.LatLng(latitude=-33.87, longitude=151.21)  # Sydney


async def recommender_at(settings, port: int, auth: str) -> Platform:
    """The recommender alone on `port`, verifying tokens with the keys of the auth service at `auth`."""
    addresses = {**peer_addresses(REGISTRY.ports, settings.host, {}), "auth": auth}
    platform = Platform(wiring.runtime(settings, local=["recommender"], addresses=addresses),
                        [REGISTRY["recommender"]], port)
    await platform.migrate()
    await platform.start()
    return platform


async def test_the_feed_outlives_the_recommender_and_is_personalised_again_when_it_returns(
        tmp_path_factory, smtp_sink, s3_endpoint):
    settings = real_settings(tmp_path_factory.mktemp("outage"), smtp_sink, s3_endpoint,
                             matching_breaker_failures=1, matching_breaker_cool_down_seconds=0.2)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    main = platform_without_recommender(settings, f"127.0.0.1:{port}")
    await main.migrate()
    await main.start()
    api = Api(main, smtp_sink)
    recommender = await recommender_at(settings, port, main.address)
    consumers = [*main.rt.bus.consumers, *recommender.rt.bus.consumers]
    try:
        owner, seeker = await api.signup("Outage owner"), await api.signup("Outage seeker")
        pets = [await listed(api, owner, dog(f"Outage {i}", location=SPOT)) for i in range(3)]

        async def ranking() -> int:
            page = await feed(api, seeker, location=SPOT, radius_km=10)
            assert {c.pet.name for c in page.cards} == {p.name for p in pets}, "every card, however ranked"
            return page.ranking

        await until(lambda: _is(ranking, PERSONALISED), what="a personalised feed")
        await recommender.stop(grace=1)
        await until(lambda: _is(ranking, FALLBACK), what="the fallback while the recommender is down")
        assert await ranking() == FALLBACK  # the breaker is open: served without trying
        recommender = await recommender_at(settings, port, main.address)
        await until(lambda: _is(ranking, PERSONALISED), what="a personalised feed once it is back")
    finally:
        await api.channel.close()
        await recommender.stop(grace=1)
        await main.stop(grace=1)
        await drop_real_state(settings, consumers)


async def _is(ranking, expected: int) -> bool:
    return await ranking() == expected  # a feed that fails, even once, fails the test
