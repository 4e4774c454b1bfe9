"""Several edge replicas in the real profile share one rate-limit budget per client, kept in Redis."""
from __future__ import annotations

import aiohttp
import pytest

from gateway.edge import Edge
from tests.support.platform import Api, lone_edge

pytestmark = pytest.mark.real


async def test_two_edge_replicas_share_one_budget(real_api: Api):
    platform = real_api.platform
    settings = platform.settings.model_copy(update={"rate_limit_per_minute": 4})
    replicas = []
    for _ in range(2):
        edge = lone_edge(settings, platform.address)  # its own Redis connection, as a separate pod has
        await edge.start(http_port=0, grpc_port=0)
        replicas.append((edge.rt, edge))
    try:
        async with aiohttp.ClientSession() as http:
            async def get(edge: Edge) -> aiohttp.ClientResponse:
                async with http.get(f"http://127.0.0.1:{edge.http_port}/v1/pets") as r:
                    await r.read()
                    return r

            a, b = (edge for _, edge in replicas)
            remaining = [int((await get(e)).headers["RateLimit-Remaining"]) for e in (a, b, a, b)]
            assert remaining == [3, 2, 1, 0], "one budget, counted atomically across replicas"
            refused = await get(b)
            assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
            assert (await get(a)).status == 429
    finally:
        for rt, edge in replicas:
            await edge.stop(grace=1)
            await rt.close()
