"""The registry drives what runs: the AsyncAPI document lists every event with who sends and who
receives it, and a module that does not do what its entry says does not start."""
from __future__ import annotations

import dataclasses

import pytest

from app import wiring
from app.registry import REGISTRY
from mesh.registry import Registry
from mesh.server import RegistryMismatch
from petplatform.auth.v1 import events_pb2 as auth_events
from tests.support.platform import EdgeClient, embedded_settings


async def test_asyncapi_lists_every_event_with_its_producers_and_consumers(edge: EdgeClient):
    async with edge.http.get(edge.url + "/asyncapi.json") as r:
        assert r.status == 200
        doc = await r.json()
    assert doc["asyncapi"].startswith("3.")
    assert set(doc["channels"]) == {"user.created", "user.email_verified", "user.reported", "email.send",
                                    "pet.created", "pet.updated", "pet.deleted"}
    created = doc["channels"]["user.created"]
    assert created["x-producers"] == ["auth"] and sorted(created["x-consumers"]) == ["auth", "user"]
    assert created["bindings"]["amqp"]["exchange"] == {"name": "petplatform.events", "type": "topic",
                                                       "durable": True, "autoDelete": False}
    assert doc["channels"]["user.reported"]["x-producers"] == [], "consumed, produced by nobody yet"
    sends = {k for k, op in doc["operations"].items() if op["action"] == "send"}
    assert "pet.send.pet.created" in sends and "auth.send.email.send" in sends
    message = doc["components"]["messages"]["petplatform.pet.v1.PetCreated"]
    schema = doc["components"]["schemas"][message["payload"]["$ref"].rsplit("/", 1)[1]]
    assert "pet" in schema["properties"]
    for ref in (op["channel"]["$ref"] for op in doc["operations"].values()):
        assert ref.removeprefix("#/channels/") in doc["channels"]
    async with edge.http.get(edge.url + "/openapi.json") as r:
        assert "/asyncapi.json" in (await r.json())["paths"]


async def test_a_module_consuming_what_its_entry_does_not_list_does_not_start(tmp_path, smtp_sink):
    wrong = dataclasses.replace(REGISTRY["user"], consumes=(auth_events.UserCreated,))
    platform = wiring.platform(embedded_settings(tmp_path, smtp_sink), "user", port=0)
    platform.specs = [wrong]
    await platform.migrate()
    with pytest.raises(RegistryMismatch, match="user.email_verified"):
        await platform.start()
    await platform.stop(grace=0)


async def test_a_module_serving_other_contracts_than_its_entry_does_not_start(tmp_path, smtp_sink):
    wrong = dataclasses.replace(REGISTRY["pet"], contracts=("petplatform.user.v1.UserService",))
    platform = wiring.platform(embedded_settings(tmp_path, smtp_sink), "pet", port=0)
    platform.specs = [wrong]
    with pytest.raises(RegistryMismatch, match="PetService"):
        await platform.start()
    await platform.stop(grace=0)


def test_every_entry_loads_and_every_contract_is_routed():
    assert isinstance(REGISTRY, Registry)
    for spec in REGISTRY:
        assert spec.load().__name__.endswith("Module")
        for contract in spec.contracts:
            assert REGISTRY.routes[contract] == spec.name
