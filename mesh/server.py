"""The one server bootstrap: modules + health + reflection + interceptor, graceful shutdown."""
from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping, Sequence

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mesh.events import OutboxNotices, event_type, subscribe
from mesh.interceptor import InterceptedServer, ServerInterceptor, method_access
from mesh.registry import ServiceSpec
from mesh.runtime import Runtime, ServiceModule, migrate_service, server_options

log = logging.getLogger(__name__)


class RegistryMismatch(Exception):
    """A module does not do what its registry entry says (contracts or events)."""


def check_against_entry(m: ServiceModule, servicers: Mapping[str, object]) -> None:
    """The module serves exactly its entry's contracts, every method declares who may call it, and
    it consumes exactly the events its entry lists, through consumers named after it."""
    served = sorted(servicers)
    if served != sorted(m.spec.contracts):
        raise RegistryMismatch(f"{m.name} serves {served}, its entry lists {sorted(m.spec.contracts)}")
    for name in served:
        for method in servicer_methods(name):
            method_access(method)  # a method without a declared access level fails here, not at call time
    for consumer in m.consumers():
        if not consumer.startswith(f"{m.name}."):
            raise RegistryMismatch(f"{m.name}: consumer {consumer!r} must be named {m.name}.<purpose>")
    if m.consumed() != m.spec.consumed_types:
        raise RegistryMismatch(f"{m.name} consumes {sorted(m.consumed())}, its entry lists "
                               f"{sorted(m.spec.consumed_types)}")


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
        self.notices: OutboxNotices | None = None

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
        self.modules = [spec.load()(self.rt, spec) for spec in self.specs]
        servicers = [m.servicers() for m in self.modules]
        for m, served in zip(self.modules, servicers, strict=True):
            check_against_entry(m, served)  # before anything is served, bound or consumed
        await self.rt.start()
        for m in self.modules:
            await m.start()
        self.interceptor = ServerInterceptor(self.rt.verifier, self.rt.edge_key,
                                             max_streams_per_caller=self.settings.max_streams_per_caller,
                                             max_concurrent_rpcs=self.settings.max_concurrent_rpcs)
        server = InterceptedServer(grpc.aio.server(options=server_options(self.settings)), self.interceptor)
        names = []
        for served in servicers:
            for name, servicer in served.items():
                add_servicer(name, servicer, server)
                names.append(name)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server)
        self.port = server.add_insecure_port(f"{self.settings.host}:{self.requested_port}")
        self.rt.own_port = self.port
        await server.start()
        self.server = server
        # In dependency order: a module's consumers and relay start after those of the peers it calls.
        for m in self.modules:
            for consumer, effects in m.consumers().items():
                await subscribe(self.rt.bus, m.db, consumer, effects)
            for listener in m.listeners():
                await self.rt.bus.subscribe_broadcast([event_type(k) for k in listener.kinds], listener.handler,
                                                      on_gap=listener.on_gap)
        relays = [m.relay for m in self.modules if m.relay]
        for relay in relays:
            relay.start()
        if on_postgres := [r for r in relays if not r.database.is_sqlite]:
            self.notices = OutboxNotices(on_postgres)  # other replicas' commits wake these relays
            self.notices.start()
        for n in ["", *names]:
            await self.health.set(n, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving %s on %s", ", ".join(m.name for m in self.modules), self.address)

    async def stop(self, grace: float = 5.0) -> None:
        """Streams end, in-flight calls finish, then events stop flowing in and out before the
        databases close: no handler is left running on a disposed engine."""
        await self.health.enter_graceful_shutdown()
        for m in reversed(self.modules):
            await m.drain()
        if self.server:
            await self.server.stop(grace)  # in-flight RPCs and streams get `grace` seconds to finish
            self.interceptor.close()
        if self.notices:
            await self.notices.stop()
        for m in reversed(self.modules):
            if m.relay:
                await m.relay.stop()
        await self.rt.bus.close()  # consumers stop here, before their databases go
        for m in reversed(self.modules):
            await m.stop()
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
