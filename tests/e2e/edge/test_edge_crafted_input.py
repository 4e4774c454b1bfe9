"""Crafted input is a client error on every protocol, never INTERNAL: page tokens are signed by the
service, and search filters are bounded before they reach date arithmetic or SQL."""
from __future__ import annotations

import asyncio
import base64
import json

from google.type import date_pb2
import grpc
import pytest
import sonora.protocol

from petplatform.pet.v1 import pet_pb2, pet_pb2_grpc
from services.pet import search
from tests.support.platform import EdgeClient, Session
from tests.support.web import WebChannel, call


def field_violations(err: dict) -> set[str]:
    return {v["field"] for d in err.get("details", []) for v in d.get("fieldViolations", [])}


@pytest.fixture(scope="module")
async def owner(edge: EdgeClient) -> Session:
    session = await edge.api.signup("Crafted")
    for name in ("One", "Two", "Three"):
        await edge.api.pet.CreatePet(pet_pb2.CreatePetRequest(pet=pet_pb2.Pet(
            display_name=name, species=1, location={"latitude": 1, "longitude": 1})), metadata=session.md)
    return session


async def each_protocol(edge: EdgeClient, method: str, request, metadata=()):
    """The call over gRPC-Web and over gRPC pass-through: the status code of each (OK or the error's)."""
    codes = []
    async with WebChannel(edge.url) as web, grpc.aio.insecure_channel(edge.grpc_address) as ch:
        for channel, error in ((web, sonora.protocol.WebRpcError), (ch, grpc.aio.AioRpcError)):
            try:
                await getattr(pet_pb2_grpc.PetServiceStub(channel), method)(request, metadata=metadata)
                codes.append(grpc.StatusCode.OK)
            except error as e:
                codes.append(e.code())
    return codes


def unsigned(position: list) -> str:
    """A token as they were before they were signed: base64 JSON anyone could write."""
    raw = json.dumps({"p": position, "q": ""}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def test_page_tokens_are_the_services_own(edge: EdgeClient, owner: Session):
    query = {"owner": owner.name, "pageSize": "1"}
    status, page, _ = await call(edge, "GET", "/v1/pets", **query)
    assert status == 200 and page["nextPageToken"]
    status, page2, _ = await call(edge, "GET", "/v1/pets", pageToken=page["nextPageToken"], **query)
    assert status == 200 and page2["pets"][0]["name"] != page["pets"][0]["name"], "a real token pages on"
    real = page["nextPageToken"]
    payload, signature = real.split(".")
    forged = [unsigned(p) for p in ([1, 2], ["x", "y"], [None], [[1], {"a": 1}], ["2020-01-01T00:00:00", 5])]
    forged += [f"{unsigned([1.5, 'x'])}.{signature}", f"{payload}.{signature[::-1]}", real + "A", "x" * 5000,
               real.replace(".", "..")]
    for token in forged:
        for params in (query, {**query, "orderBy": "distance", "near.latitude": "1", "near.longitude": "1",
                               "radiusKm": "10"}):
            status, err, _ = await call(edge, "GET", "/v1/pets", pageToken=token, **params)
            assert status == 400 and field_violations(err) == {"page_token"}, (token, err)
    # A token of one search is no token for another, nor for another list.
    status, err, _ = await call(edge, "GET", "/v1/pets", pageToken=real, **{**query, "species": "SPECIES_CAT"})
    assert status == 400 and "filters changed" in err["message"]
    pet = page["pets"][0]["name"]
    status, err, _ = await call(edge, "GET", f"/v1/{pet}/healthRecords", token=owner.access_token, pageToken=real)
    assert status == 400 and field_violations(err) == {"page_token"}
    for token in (unsigned([1, 2]), f"{payload}.{signature[::-1]}"):
        request = pet_pb2.ListPetsRequest(owner=owner.name, page_size=1, page_token=token)
        assert await each_protocol(edge, "ListPets", request) == [grpc.StatusCode.INVALID_ARGUMENT] * 2
        records = pet_pb2.ListHealthRecordsRequest(parent=pet, page_token=token)
        assert await each_protocol(edge, "ListHealthRecords", records, owner.md) == \
            [grpc.StatusCode.INVALID_ARGUMENT] * 2


@pytest.mark.parametrize("params, fields", [
    ({"minAgeMonths": "100000"}, {"min_age_months"}),
    ({"maxAgeMonths": "2147483647"}, {"max_age_months"}),
    ({"minAgeMonths": "1", "maxAgeMonths": "100000"}, {"max_age_months"}),
    ({"minAgeMonths": "-1"}, {"min_age_months"}),
    ({"minAgeMonths": "-2147483648", "maxAgeMonths": "-5"}, {"min_age_months", "max_age_months"}),
    ({"minAgeMonths": "30", "maxAgeMonths": "20"}, {"min_age_months"}),
    ({"species": ["SPECIES_DOG"] * (search.MAX_FILTER_VALUES + 1)}, {"species"}),
])
async def test_search_filters_out_of_range_are_field_violations(edge: EdgeClient, params, fields):
    async with edge.http.get(edge.url + "/v1/pets", params=[(k, v) for k, vs in params.items()
                                                            for v in (vs if isinstance(vs, list) else [vs])]) as r:
        assert r.status == 400 and field_violations(await r.json()) == fields
    async with edge.http.get(edge.url + "/v1/pets:watch", params=params) as r:  # refused, not accepted to die later
        assert r.status == 400 and field_violations(await r.json()) == fields
    request = pet_pb2.ListPetsRequest(
        min_age_months=int(params.get("minAgeMonths", 0)), max_age_months=int(params.get("maxAgeMonths", 0)),
        species=[1] * len(params.get("species", [])))
    assert await each_protocol(edge, "ListPets", request) == [grpc.StatusCode.INVALID_ARGUMENT] * 2
    async with grpc.aio.insecure_channel(edge.grpc_address) as ch:
        watch = pet_pb2_grpc.PetServiceStub(ch).WatchPets(pet_pb2.WatchPetsRequest.FromString(
            request.SerializeToString()))
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await watch.read()
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_watch_at_the_oldest_age_lives_through_changes(edge: EdgeClient, owner: Session):
    async with grpc.aio.insecure_channel(edge.grpc_address) as ch:
        pets = pet_pb2_grpc.PetServiceStub(ch)
        watch = pets.WatchPets(pet_pb2.WatchPetsRequest(min_age_months=search.MAX_AGE_MONTHS))
        await watch.initial_metadata()
        for born in (date_pb2.Date(year=2020, month=1), date_pb2.Date(year=1800, month=1, day=1)):
            await pets.CreatePet(pet_pb2.CreatePetRequest(pet=pet_pb2.Pet(
                display_name="Tortoise", species=1, birth_date=born)), metadata=owner.md)
        change = await asyncio.wait_for(watch.read(), 10)
        assert change.change == pet_pb2.WatchPetsResponse.CHANGE_ADDED and change.pet.birth_date.year == 1800
        watch.cancel()
