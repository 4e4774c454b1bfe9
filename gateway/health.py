"""grpc.health.v1 on the edge's gRPC port, answered for the services behind it: a named service is
asked of the module that serves it, and "" means "every service is serving"."""
from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
WATCH_POLL_SECONDS = 2.0


class EdgeHealth(health_pb2_grpc.HealthServicer):
    def __init__(self, channel_for, services: list[str]):
        self.channel_for = channel_for  # full gRPC service name -> channel to whoever serves it
        self.services = services

    async def _status(self, service: str) -> int:
        """SERVING or NOT_SERVING; raises KeyError for a service the edge does not front."""
        if service and service not in self.services:
            raise KeyError(service)

        async def ask(name: str) -> bool:
            try:
                reply = await health_pb2_grpc.HealthStub(self.channel_for(name)).Check(
                    health_pb2.HealthCheckRequest(service=name), timeout=2)
                return reply.status == SERVING
            except grpc.aio.AioRpcError:
                return False
        names = [service] if service else self.services
        return SERVING if all(await asyncio.gather(*(ask(n) for n in names))) else NOT_SERVING

    async def Check(self, request, context):
        try:
            return health_pb2.HealthCheckResponse(status=await self._status(request.service))
        except KeyError:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")

    async def Watch(self, request, context):
        # Polled, not relayed: "" spans several servers, and the edge must not hold one stream per module.
        last = None
        while True:
            try:
                status = await self._status(request.service)
            except KeyError:
                status = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(WATCH_POLL_SECONDS)
