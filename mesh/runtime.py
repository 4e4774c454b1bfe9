"""What every module gets: settings, the infrastructure ports, stubs to peers, token verification."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Callable, ClassVar

from google.protobuf import json_format
import grpc

from mesh import resources, tracing
from mesh.blobs import BlobStore, make_blob_store
from mesh.cache import Cache, make_cache
from mesh.config import Settings
from mesh.events import Bus, InProcessBus, Relay
from mesh.principal import TokenVerifier
from mesh.sql import Database, database_url
from petplatform.auth.v1 import auth_pb2, auth_pb2_grpc

# Sent messages (photos) may be several MiB; the service checks its own, smaller limits.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]


def make_bus(settings: Settings) -> Bus:
    if settings.amqp_url:
        from mesh.events.rabbit import RabbitBus
        return RabbitBus(settings.amqp_url, settings.amqp_exchange, queue_prefix=settings.schema_prefix)
    return InProcessBus()


class Runtime:
    def __init__(self, settings: Settings, local_services: set[str]):
        self.settings = settings
        self.local_services = local_services
        resources.use_page_token_key(settings)
        self.own_port: int | None = None  # set once the server is bound
        self.bus = make_bus(settings)
        self.cache: Cache = make_cache(settings.redis_url, prefix=settings.schema_prefix)
        self.blobs: BlobStore = make_blob_store(
            s3_endpoint=settings.s3_endpoint, s3_access_key=settings.s3_access_key,
            s3_secret_key=settings.s3_secret_key.get_secret_value(), s3_bucket=settings.s3_bucket,
            s3_secure=settings.s3_secure, data_dir=settings.data_dir)
        self.verifier = TokenVerifier(self._jwks, self.cache, issuer=settings.jwt_issuer,
                                      ttl=settings.jwks_cache_seconds, min_refetch=settings.jwks_min_refetch_seconds)
        self._channels: dict[str, grpc.aio.Channel] = {}

    def database(self, service: str) -> Database:
        url, schema = database_url(self.settings.data_dir, self.settings.database_url, service,
                                   self.settings.schema_prefix)
        return Database(url, schema)

    def channel(self, service: str) -> grpc.aio.Channel:
        """Modules talk only through stubs, even inside one process: this is the peer's address."""
        if service not in self._channels:
            local = service in self.local_services and self.own_port is not None
            address = f"{self.settings.host}:{self.own_port}" if local else self.settings.peer(service, None)
            self._channels[service] = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS,
                                                                interceptors=tracing.CLIENT_INTERCEPTORS)
        return self._channels[service]

    async def _jwks(self) -> list[dict]:
        stub = auth_pb2_grpc.AuthServiceStub(self.channel("auth"))
        response = await stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=5)
        return [json_format.MessageToDict(k, preserving_proto_field_name=True) for k in response.keys]

    async def start(self) -> None:
        await self.bus.start()

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        await self.bus.close()
        await self.cache.close()


class ServiceModule:
    """A service of the mesh: its servicers, its database, its outbox relay and its consumers."""

    name: ClassVar[str]
    migrations: ClassVar[Path]

    def __init__(self, rt: Runtime):
        self.rt = rt
        self.db = rt.database(self.name)
        self.relay = Relay(self.db, rt.bus, poll_seconds=rt.settings.outbox_poll_seconds,
                           retention=dt.timedelta(hours=rt.settings.event_retention_hours))

    def servicers(self) -> list[tuple[Callable[[Any, grpc.aio.Server], None], Any, str]]:
        """(add_XServicer_to_server, servicer, full service name) for each gRPC service."""
        raise NotImplementedError

    async def subscribe(self) -> None:
        """Binds the module's event consumers; called before any relay starts."""

    async def drain(self) -> None:
        """Shutdown begins: end long-lived streams now, so their clients reconnect to another replica
        instead of waiting out the grace period."""

    async def stop(self) -> None:
        await self.relay.stop()
        await self.db.dispose()
