"""The bootstrap's gRPC server (mesh.interceptor.InterceptedServer): every method through the interceptor, served
by one generic handler and none registered with grpc.aio, which keeps a request pending per registered method and
waits on all of them for each call it takes (the platform has ~120 methods)."""
from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from prometheus_client import REGISTRY

from mesh.cache import MemoryCache
from mesh.interceptor import InterceptedServer, ServerInterceptor
from mesh.principal import TokenVerifier

CHECK = "/grpc.health.v1.Health/Check"


class Recording:
    """A grpc.aio server that notes which services are registered with it."""

    def __init__(self, server: grpc.aio.Server):
        self.server = server
        self.registered: list[str] = []

    def add_registered_method_handlers(self, service_name, method_handlers) -> None:
        self.registered.append(service_name)
        self.server.add_registered_method_handlers(service_name, method_handlers)

    def __getattr__(self, name: str):
        return getattr(self.server, name)


def served_ok(method: str) -> float:
    return REGISTRY.get_sample_value("petplatform_rpc_total", {"method": method, "code": "OK"}) or 0.0


async def no_keys() -> list[dict]:
    return []


async def test_methods_are_served_through_the_interceptor_and_none_registered_with_grpc():
    inner = Recording(grpc.aio.server())
    interceptor = ServerInterceptor(TokenVerifier(no_keys, MemoryCache(), issuer="test"), "k" * 64,
                                    max_streams_per_caller=10, max_concurrent_rpcs=100)
    server = InterceptedServer(inner, interceptor)  # type: ignore[arg-type]
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    reflection.enable_server_reflection(["grpc.health.v1.Health", reflection.SERVICE_NAME], server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            before = served_ok(CHECK)
            for _ in range(2):
                r = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
                assert r.status == health_pb2.HealthCheckResponse.SERVING
            assert served_ok(CHECK) == before + 2  # counted by the interceptor
            # Reflection adds a generic handler only: found there on first use, then kept.
            for _ in range(2):
                answers = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
                    iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
                services = {s.name async for a in answers for s in a.list_services_response.service}
                assert "grpc.health.v1.Health" in services
            assert inner.registered == []
            methods = len(server._methods._wrapped)
            for i in range(20):  # unknown methods: refused, and not remembered
                call = ch.unary_unary(f"/made.Up/M{i}", request_serializer=bytes, response_deserializer=bytes)
                try:
                    await call(b"")
                except grpc.aio.AioRpcError as e:
                    assert e.code() == grpc.StatusCode.UNIMPLEMENTED
                else:
                    raise AssertionError("an unknown method was served")
            assert len(server._methods._wrapped) == methods
    finally:
        await server.stop(None)
        interceptor.close()
