"""The registry drives what runs: the AsyncAPI document lists every event with who sends and who
receives it, and a module that does not do what its entry says does not start."""
from __future__ import annotations

import dataclasses

import pytest

from app import wiring
from app.registry import REGISTRY
from mesh.registry import Registry, ServiceSpec
from mesh.runtime import ServiceModule
from mesh.server import Platform, RegistryMismatch
from petplatform.auth.v1 import events_pb2 as auth_events
from tests.support.platform import EdgeClient, embedded_settings


async def test_asyncapi_lists_every_event_with_its_producers_and_consumers(edge: EdgeClient):
    async with edge.http.get(edge.url + "/asyncapi.json") as r:
        assert r.status == 200
        doc = await r.json()
    assert doc["asyncapi"].startswith("3.")
    assert set(doc["channels"]) == {"user.created", "user.email_verified", "user.reported", "email.send",
                                    "pet.created", "pet.updated", "pet.deleted", "swipe.recorded", "swipe.undone",
                                    "interest.changed", "match.created", "match.ended", "user.blocked",
                                    "adoption.completed", "message.sent", "message.deleted", "messages.read",
                                    "booking.requested", "booking.accepted", "booking.declined", "booking.expired",
                                    "booking.cancelled", "booking.completed", "payment.processed", "payment.failed",
                                    "payment.action_required",
                                    "refund.processed", "payout.sent", "payout.failed", "booking.review_published",
                                    "business.payout_account_changed", "business.deleted",
                                    "notification.send", "user.role_changed", "user.status_changed",
                                    "security.event_recorded", "fraud.detected", "moderation.action_taken"}
    created = doc["channels"]["user.created"]
    assert created["x-producers"] == ["auth"] and sorted(created["x-consumers"]) == ["admin", "auth", "fraud",
                                                                                      "notification", "user"]
    assert doc["channels"]["fraud.detected"]["x-producers"] == ["fraud"]
    assert created["bindings"]["amqp"]["exchange"] == {"name": "petplatform.events", "type": "topic",
                                                       "durable": True, "autoDelete": False}
    assert doc["channels"]["user.reported"]["x-producers"] == ["admin"]
    assert doc["channels"]["swipe.recorded"]["x-consumers"] == ["recommender"]
    returned = doc["channels"]["payout.failed"]
    assert (returned["x-producers"], sorted(returned["x-consumers"])) == (["payment"], ["notification"])
    reviewed = doc["channels"]["booking.review_published"]
    assert (reviewed["x-producers"], reviewed["x-consumers"]) == (["marketplace"], ["user"])
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


class StatelessPets(ServiceModule):
    """A module with no migrations: no database, no outbox relay (as the ML services will be)."""

    def servicers(self):
        from petplatform.pet.v1 import pet_pb2_grpc
        return {"petplatform.pet.v1.PetService": pet_pb2_grpc.PetServiceServicer()}


async def test_a_stateless_module_runs_without_a_database(tmp_path, smtp_sink):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    import grpc
    spec = ServiceSpec(name="stateless", module=f"{__name__}:StatelessPets", port=3999,
                       contracts=("petplatform.pet.v1.PetService",))
    settings = embedded_settings(tmp_path, smtp_sink)
    platform = Platform(wiring.runtime(settings, local=["stateless"], addresses={"stateless": "127.0.0.1:1"}),
                        [spec], port=0)
    await platform.migrate()
    await platform.start()
    try:
        (module,) = platform.modules
        assert module.relay is None and not list(tmp_path.glob("*.sqlite3"))
        with pytest.raises(TypeError, match="stateless"):
            _ = module.db
        async with grpc.aio.insecure_channel(platform.address) as ch:
            reply = await health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service="petplatform.pet.v1.PetService"))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await platform.stop(grace=0)
