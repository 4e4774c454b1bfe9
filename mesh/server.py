"""The one server bootstrap: modules + health + reflection + interceptor, graceful shutdown."""
from __future__ import annotations

import importlib
import logging

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mesh.config import Settings
from mesh.interceptor import ServerInterceptor, method_access
from mesh.runtime import CHANNEL_OPTIONS, Runtime, ServiceModule

log = logging.getLogger(__name__)

# Target name -> module class; `all` is every one of them in one process.
MODULES = {
    "auth": "services.auth.module:AuthModule",
    "user": "services.user.module:UserModule",
    "pet": "services.pet.module:PetModule",
}


def module_classes(target: str) -> list[type[ServiceModule]]:
    names = list(MODULES) if target == "all" else [target]
    out = []
    for n in names:
        if n not in MODULES:
            raise ValueError(f"unknown target {n!r}; choose one of: all, {', '.join(MODULES)}")
        path, cls = MODULES[n].split(":")
        out.append(getattr(importlib.import_module(path), cls))
    return out


class Platform:
    """One gRPC server carrying the modules of a target."""

    def __init__(self, settings: Settings, target: str = "all", port: int | None = None):
        self.settings = settings
        self.classes = module_classes(target)
        self.requested_port = settings.grpc_port if port is None else port
        self.rt = Runtime(settings, {c.name for c in self.classes})
        self.modules: list[ServiceModule] = []
        self.server: grpc.aio.Server | None = None
        self.health = health.aio.HealthServicer()
        self.port = 0

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.port}"

    async def migrate(self) -> None:
        for cls in self.classes:
            db = self.rt.database(cls.name)
            try:
                await db.migrate(cls.migrations)
            finally:
                await db.dispose()

    async def start(self) -> None:
        await self.rt.start()
        self.modules = [cls(self.rt) for cls in self.classes]
        server = grpc.aio.server(interceptors=[ServerInterceptor(self.rt.verifier)], options=CHANNEL_OPTIONS)
        names = []
        for m in self.modules:
            for add, servicer, name in m.servicers():
                add(servicer, server)
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
            await m.subscribe()
        for m in self.modules:
            m.relay.start()
        for n in ["", *names]:
            await self.health.set(n, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving %s on %s", ", ".join(m.name for m in self.modules), self.address)

    async def stop(self, grace: float = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        for m in self.modules:
            await m.drain()
        if self.server:
            await self.server.stop(grace)  # in-flight RPCs and streams get `grace` seconds to finish
        for m in self.modules:
            await m.stop()
        await self.rt.close()

    async def __aenter__(self) -> Platform:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop(grace=1.0)


def servicer_methods(service_name: str) -> list[str]:
    from google.protobuf import descriptor_pool
    service = descriptor_pool.Default().FindServiceByName(service_name)
    return [f"/{service_name}/{m.name}" for m in service.methods]
