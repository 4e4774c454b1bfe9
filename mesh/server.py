"""The one server bootstrap: modules + health + reflection + interceptor, graceful shutdown."""
from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mesh.events import event_type, subscribe
from mesh.interceptor import ServerInterceptor, method_access
from mesh.registry import ServiceSpec
from mesh.runtime import CHANNEL_OPTIONS, Runtime, ServiceModule, migrate_service

log = logging.getLogger(__name__)


class RegistryMismatch(Exception):
    """A module does not do what its registry entry says (contracts or events)."""


class Platform:
    """One gRPC server carrying the modules of a target, started in the registry's dependency order
    (peers first) and stopped in reverse."""

    def __init__(self, rt: Runtime, specs: Sequence[ServiceSpec], port: int | None = None):
        self.rt = rt
        self.settings = rt.settings
        self.specs = list(specs)
        self.requested_port = self.settings.grpc_port if port is None else port
        self.modules: list[ServiceModule] = []
        self.server: grpc.aio.Server | None = None
        self.health = health.aio.HealthServicer()
        self.port = 0

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.port}"

    async def migrate(self) -> None:
        for spec in self.specs:
            migrations = spec.load().migrations
            if migrations is None:
                continue
            db = self.rt.database(spec.name)
            try:
                await migrate_service(db, migrations)
            finally:
                await db.dispose()

    async def start(self) -> None:
        await self.rt.start()
        self.modules = [spec.load()(self.rt, spec) for spec in self.specs]
        self.interceptor = ServerInterceptor(self.rt.verifier, self.rt.edge_key,
                                             max_streams_per_caller=self.settings.max_streams_per_caller)
        # A cheap global bound: past it gRPC answers RESOURCE_EXHAUSTED before any handler runs.
        server = grpc.aio.server(interceptors=[self.interceptor], options=CHANNEL_OPTIONS,
                                 maximum_concurrent_rpcs=self.settings.max_concurrent_rpcs)
        names = []
        for m in self.modules:
            servicers = m.servicers()
            if sorted(servicers) != sorted(m.spec.contracts):
                raise RegistryMismatch(f"{m.name} serves {sorted(servicers)}, "
                                       f"its entry lists {sorted(m.spec.contracts)}")
            for name, servicer in servicers.items():
                add_servicer(name, servicer, server)
                names.append(name)
                for method in servicer_methods(name):
                    method_access(method)  # a method without a declared access level fails here, not at call time
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server)
        self.port = server.add_insecure_port(f"{self.settings.host}:{self.requested_port}")
        self.rt.own_port = self.port
        await server.start()
        self.server = server
        for m in self.modules:
            await self._subscribe(m)
        for m in self.modules:
            if m.relay:
                m.relay.start()
        for n in ["", *names]:
            await self.health.set(n, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving %s on %s", ", ".join(m.name for m in self.modules), self.address)

    async def _subscribe(self, m: ServiceModule) -> None:
        consumed: set[str] = set()
        for consumer, effects in m.consumers().items():
            if not consumer.startswith(f"{m.name}."):
                raise RegistryMismatch(f"{m.name}: consumer {consumer!r} must be named {m.name}.<purpose>")
            await subscribe(self.rt.bus, m.db, consumer, effects)
            consumed.update(event_type(kind) for kind in effects)
        await m.subscribe()
        consumed |= m.listened
        if consumed != m.spec.consumed_types:
            raise RegistryMismatch(f"{m.name} consumes {sorted(consumed)}, its entry lists "
                                   f"{sorted(m.spec.consumed_types)}")

    async def stop(self, grace: float = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        for m in reversed(self.modules):
            await m.drain()
        if self.server:
            await self.server.stop(grace)  # in-flight RPCs and streams get `grace` seconds to finish
        for m in reversed(self.modules):
            await m.stop()
        if self.server:
            self.interceptor.close()
        await self.rt.close()

    async def __aenter__(self) -> Platform:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop(grace=1.0)


def add_servicer(service_name: str, servicer: object, server: grpc.aio.Server) -> None:
    """Registers a servicer with the `add_<Service>Servicer_to_server` generated beside its contract."""
    service = descriptor_pool.Default().FindServiceByName(service_name)
    stubs = importlib.import_module(service.file.name.removesuffix(".proto").replace("/", ".") + "_pb2_grpc")
    getattr(stubs, f"add_{service.name}Servicer_to_server")(servicer, server)


def servicer_methods(service_name: str) -> list[str]:
    service = descriptor_pool.Default().FindServiceByName(service_name)
    return [f"/{service_name}/{m.name}" for m in service.methods]
