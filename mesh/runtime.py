"""What every module gets: settings, the infrastructure ports, channels to peers, token verification."""
from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from google.protobuf.message import Message
import grpc

from mesh import resources, tracing
from mesh.blobs import BlobStore, make_blob_store
from mesh.cache import Cache, make_cache
from mesh.config import Settings, local_secret
from mesh.fanout import Fanout, make_fanout
from mesh.presence import Presence, make_presence
from mesh.events import (Bus, Effects, Handler, InProcessBus, Relay, event_table_names, event_type,
                         migrate_event_tables, producer)
from mesh.principal import TokenVerifier
from mesh.revocation import Revocations
from mesh.sql import Database, database_url

if TYPE_CHECKING:
    from mesh.registry import ServiceSpec

# Sent messages (photos) may be several MiB; the service checks its own, smaller limits.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]


def server_options(settings: Settings) -> list[tuple[str, int]]:
    """A gRPC server's options: the message limits, and whether it shares its port with the other workers
    of `petplatform run --workers N` (gRPC would share it by default: a second server on a port in use
    must fail instead)."""
    return [*CHANNEL_OPTIONS, ("grpc.so_reuseport", int(settings.reuse_port))]


def make_bus(settings: Settings) -> Bus:
    if settings.amqp_url:
        from mesh.events.rabbit import RabbitBus
        return RabbitBus(settings.amqp_url, settings.amqp_exchange, queue_prefix=settings.schema_prefix)
    return InProcessBus()


async def migrate_service(db: Database, migrations: Path, revision: str = "head") -> None:
    """The runtime's tables (outbox, inbox: one migrations tree for every service), then the service's own."""
    await migrate_event_tables(db)
    await db.migrate(migrations, revision, other_tables=event_table_names())


class Runtime:
    """What the modules of one process share. `addresses` maps every service to its address
    (peer_addresses); services in `local` are served by this process and reached on its own port."""

    def __init__(self, settings: Settings, *, addresses: Mapping[str, str], local: Collection[str] = (),
                 jwks: Callable[[Runtime], Awaitable[list[dict]]]):
        self.settings = settings
        self.edge_key = (settings.edge_key.get_secret_value() if settings.edge_key
                         else local_secret(settings.data_dir / "edge-key").decode())
        self.addresses = dict(addresses)
        self.local_services = set(local)
        resources.use_page_token_key(settings)
        self.own_port: int | None = None  # set once the server is bound
        self.bus = make_bus(settings)
        self.cache: Cache = make_cache(settings.redis_url, prefix=settings.schema_prefix)
        self.fanout: Fanout = make_fanout(settings.redis_url, prefix=settings.schema_prefix)
        self.presence: Presence = make_presence(settings.redis_url, prefix=settings.schema_prefix)
        self.blobs: BlobStore = make_blob_store(
            s3_endpoint=settings.s3_endpoint, s3_access_key=settings.s3_access_key,
            s3_secret_key=settings.s3_secret_key.get_secret_value(), s3_bucket=settings.s3_bucket,
            s3_secure=settings.s3_secure, data_dir=settings.data_dir)
        self.revocations = Revocations(self.cache, self.fanout)
        self.verifier = TokenVerifier(lambda: jwks(self), self.revocations, issuer=settings.jwt_issuer,
                                      ttl=settings.jwks_cache_seconds, min_refetch=settings.jwks_min_refetch_seconds)
        self._channels: dict[tuple[str, bool], grpc.aio.Channel] = {}

    def database(self, service: str, *, info: Mapping[str, object] | None = None) -> Database:
        url, schema = database_url(self.settings.data_dir, self.settings.database_url, service,
                                   self.settings.schema_prefix)
        return Database(url, schema, info=info, pool_size=self.settings.database_pool_size,
                        max_overflow=self.settings.database_max_overflow)

    def channel(self, service: str, *, traced: bool = True) -> grpc.aio.Channel:
        """Modules talk only through stubs, even inside one process: this is the peer's address.
        traced=False: a channel without the client interceptor that puts the current trace into each call
        (grpc.aio runs a client interceptor as a task of its own per call), for a caller that sends
        tracing.outgoing_metadata itself: the edge's relays."""
        key = (service, traced)
        if key not in self._channels:
            local = service in self.local_services and self.own_port is not None
            address = f"{self.settings.host}:{self.own_port}" if local else self.addresses[service]
            self._channels[key] = grpc.aio.insecure_channel(
                address, options=CHANNEL_OPTIONS, interceptors=tracing.CLIENT_INTERCEPTORS if traced else None)
        return self._channels[key]

    async def start(self) -> None:
        await self.bus.start()
        self.revocations.start()

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        await self.bus.close()
        await self.revocations.close()
        await self.fanout.close()
        await self.presence.close()
        await self.cache.close()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Listener:
    kinds: Sequence[type[Message]]
    handler: Handler  # takes the serialized envelope
    on_gap: Callable[[], None] | None = None  # events may have been missed (a broker reconnection)


class ServiceModule:
    """A service of the mesh: its servicers, and, when it has migrations, its database, its outbox
    relay and its consumers. Stateless modules (the ML services) leave `migrations` unset."""

    migrations: ClassVar[Path | None] = None

    def __init__(self, rt: Runtime, spec: ServiceSpec):
        self.rt = rt
        self.spec = spec
        self.name = spec.name
        if self.migrations is None:
            self._db: Database | None = None
            self.relay: Relay | None = None
        else:
            self._db = rt.database(spec.name, info=producer(spec.name, spec.emitted_types))
            self.relay = Relay(self._db, rt.bus, poll_seconds=rt.settings.outbox_poll_seconds,
                               retention=dt.timedelta(hours=rt.settings.event_retention_hours))

    @property
    def db(self) -> Database:
        if self._db is None:
            raise TypeError(f"{self.name} is stateless: it has no migrations, so no database")
        return self._db

    def servicers(self) -> Mapping[str, object]:
        """Full gRPC service name -> its servicer, for each contract the registry entry lists."""
        raise NotImplementedError

    def consumers(self) -> Mapping[str, Effects]:
        """Durable consumers: queue name (`<service>.<purpose>`) -> {EventMessage: effect}; each effect
        runs once per event, in the transaction that records it in the inbox."""
        return {}

    def listeners(self) -> Sequence[Listener]:
        """Live views: this replica hears every such event, best effort (see Bus.subscribe_broadcast)."""
        return ()

    def consumed(self) -> frozenset[str]:
        """Every event type this module subscribes to, durable or live: what its registry entry lists."""
        kinds = [k for effects in self.consumers().values() for k in effects]
        kinds += [k for listener in self.listeners() for k in listener.kinds]
        return frozenset(event_type(k) for k in kinds)

    async def start(self) -> None:
        """Before the server accepts calls, after the runtime's ports have started (the bus, the fan-out):
        start listening or background work (a model to load, a periodic job). Stop it in drain()."""

    async def drain(self) -> None:
        """Shutdown begins: end long-lived streams now, so their clients reconnect to another replica
        instead of waiting out the grace period."""

    async def stop(self) -> None:
        """After its relay and the bus have stopped (Platform.stop)."""
        if self._db:
            await self._db.dispose()
