"""RankPets through the edge over real HTTP: REST/JSON with the caller's token, errors as HTTP codes."""
from __future__ import annotations

import asyncio
import uuid

from tests.support.platform import EdgeClient
from tests.support.web import call, signup


async def test_rank_pets_over_rest(edge: EdgeClient):
    (_, owner), (_, token) = await signup(edge, "Owner"), await signup(edge, "Adopter")
    _, near, _ = await call(edge, "POST", "/v1/pets", {"displayName": "Near", "species": "SPECIES_DOG",
                                                      "location": {"latitude": 35.68, "longitude": 139.76}}, owner)
    _, far, _ = await call(edge, "POST", "/v1/pets", {"displayName": "Far", "species": "SPECIES_DOG",
                                                     "location": {"latitude": 34.69, "longitude": 135.50}}, owner)
    body = {"pets": [far["name"], near["name"]],
            "preferences": {"species": ["SPECIES_DOG"], "location": {"latitude": 35.68, "longitude": 139.76},
                            "radiusKm": 30}}
    for _ in range(200):  # the recommender hears of new pets through events
        status, ranked, _ = await call(edge, "POST", "/v1/recommendations:rankPets", body, token)
        assert status == 200, ranked
        if all(p.get("score", 0) > 0 for p in ranked["pets"]):
            break
        await asyncio.sleep(0.05)
    assert [p["pet"] for p in ranked["pets"]] == [near["name"], far["name"]]
    assert ranked["modelVersion"] == "cold-start" and ranked["pets"][1]["distanceKm"] > 300

    status, err, _ = await call(edge, "POST", "/v1/recommendations:rankPets",
                                {**body, "user": f"users/{uuid.uuid4().hex}"}, token)
    assert status == 403 and err["code"] == 7
    status, err, _ = await call(edge, "POST", "/v1/recommendations:rankPets",
                                {"pets": [near["name"], near["name"]]}, token)
    assert status == 400 and err["details"][0]["reason"] == "INVALID_ARGUMENT"
    status, _, _ = await call(edge, "POST", "/v1/recommendations:rankPets", body)
    assert status == 401
