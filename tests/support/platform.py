"""The platform under test, in process (embedded or real profile), and its clients."""
from __future__ import annotations

import asyncio
import collections
import email
import email.policy
import importlib
import re
import socket
import time
import uuid
from dataclasses import dataclass, field

import grpc
import pyotp
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from app import wiring
from app.registry import REGISTRY
from mesh import logs
from mesh.config import load_settings
from mesh.server import Platform
from petplatform.auth.v1 import auth_pb2, auth_pb2_grpc
from petplatform.pet.v1 import pet_pb2_grpc
from petplatform.user.v1 import user_pb2_grpc

logs.configure("info", json=False)  # as the CLI does, so tests see the same structured records

POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
REDIS_URL = "redis://127.0.0.1:6379/0"
PASSWORD = "correct horse battery staple"


class SmtpSink:
    """A local SMTP server (aiosmtpd) that keeps what it receives."""

    def __init__(self):
        from aiosmtpd.controller import Controller
        # By recipient, their To header parsed once on arrival: the sink lives for the whole run, and waiters that
        # parsed every message's header on every poll made each wait cost more as the run went on (nine waiting
        # at once, late in a full run, kept the event loop busy past the 120 s limit).
        self._by_recipient: dict[str, list[email.message.EmailMessage]] = collections.defaultdict(list)
        with socket.socket() as probe:  # aiosmtpd needs a concrete port to check it started
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        for address in message["To"].addresses:
            self._by_recipient[address.addr_spec].append(message)
        return "250 OK"

    def to(self, address: str) -> list[email.message.EmailMessage]:
        """The messages received for `address`."""
        return list(self._by_recipient.get(address, ()))

    def start(self) -> None:
        self.controller.start()

    async def wait_for(self, to: str, timeout: float = 60.0) -> email.message.EmailMessage:
        for _ in range(int(timeout / 0.05)):
            if found := self.to(to):
                return found[0]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no email to {to} within {timeout}s")

    async def wait_for_subject(self, to: str, subject: str, timeout: float = 60.0) -> email.message.EmailMessage:
        for _ in range(int(timeout / 0.05)):
            for m in self.to(to):
                if m["Subject"] == subject:
                    return m
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {subject!r} email to {to} within {timeout}s")

    async def verification_token(self, to: str) -> str:
        body = (await self.wait_for(to)).get_body(("plain",)).get_content()
        return re.search(r"token=([A-Za-z0-9_\-]+)", body).group(1)


def embedded_settings(tmp_path, smtp_sink, **overrides):
    # A sign-in back-off gate that outlives any test on a loaded machine: with the default 1 s, a gate
    # could reopen while 20 parallel wrong logins are still arriving, and their counted outcomes drift.
    # bcrypt at cost 4: hashing at 12 was half the suite's CPU (the real profile keeps 12, as it must).
    defaults = dict(login_backoff_base_seconds=120, bcrypt_rounds=4)
    return load_settings(data_dir=tmp_path, grpc_port=0, smtp_host="127.0.0.1", smtp_port=smtp_sink.port,
                         log_json=False, outbox_poll_seconds=0.2, **{**defaults, **overrides})


def real_settings(tmp_path, smtp_sink, s3_endpoint, **overrides):
    # Schemas, queues and the exchange are the run's own: a run's consumers never see another run's events.
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    return embedded_settings(
        tmp_path, smtp_sink, profile="real", database_url=POSTGRES_URL, amqp_url=AMQP_URL, redis_url=REDIS_URL,
        s3_endpoint=s3_endpoint, s3_secure=False, s3_access_key="test", s3_secret_key="test",
        edge_key="test-edge-key-of-at-least-32-characters", bcrypt_rounds=12,
        page_token_key="test-page-token-key-of-32-characters",
        mfa_encryption_key="dGVzdC1tZmEta2V5LW9mLTMyLWJ5dGVzLWV4YWN0bHk=",
        # Small pools: a run starts many platforms (replicas, one per test module) on one PostgreSQL.
        **{"schema_prefix": prefix, "amqp_exchange": f"{prefix}events", "database_pool_size": 2,
           "database_max_overflow": 8, **overrides})


async def drop_real_state(settings, consumers: list[str]) -> None:
    """Removes a test run's PostgreSQL schemas and RabbitMQ queues."""
    engine = create_async_engine(POSTGRES_URL)
    async with engine.begin() as conn:
        schemas = (await conn.execute(sa.text(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE :p"), {"p": settings.schema_prefix + "%"})).scalars()
        for s in list(schemas):
            await conn.execute(sa.text(f'DROP SCHEMA "{s}" CASCADE'))
    await engine.dispose()
    import aio_pika
    conn = await aio_pika.connect(AMQP_URL)
    async with conn:
        ch = await conn.channel()
        for c in consumers:
            for q in (f"{settings.schema_prefix}{c}", f"{settings.schema_prefix}{c}.dlq"):
                await ch.queue_delete(q)
        for exchange in (settings.amqp_exchange, f"{settings.amqp_exchange}.dlx"):
            await ch.exchange_delete(exchange)


@dataclass
class Session:
    user_id: str
    email: str
    access_token: str
    refresh_token: str

    @property
    def name(self) -> str:
        return f"users/{self.user_id}"

    @property
    def md(self) -> tuple:
        return (("authorization", f"Bearer {self.access_token}"),)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def stub(contract: str):
    """The generated stub class of a gRPC service, by its full name."""
    from google.protobuf import descriptor_pool
    service = descriptor_pool.Default().FindServiceByName(contract)
    module = importlib.import_module(service.file.name.removesuffix(".proto").replace("/", ".") + "_pb2_grpc")
    return getattr(module, f"{service.name}Stub")


@dataclass
class Api:
    """Stubs of every public service over one channel to the platform under test."""

    platform: Platform
    smtp: SmtpSink
    channel: grpc.aio.Channel = field(init=False)

    def __post_init__(self):
        self.channel = grpc.aio.insecure_channel(self.platform.address)
        # One stub per contract in the registry, named after its service: AuthService -> api.auth.
        for contract in REGISTRY.routes:
            name = contract.rsplit(".", 1)[1]
            setattr(self, _snake(name.removesuffix("Service")), stub(contract)(self.channel))

    auth: auth_pb2_grpc.AuthServiceStub = field(init=False)
    user: user_pb2_grpc.UserServiceStub = field(init=False)
    pet: pet_pb2_grpc.PetServiceStub = field(init=False)

    def from_address(self, ip: str) -> tuple[tuple[str, str], ...]:
        """Call metadata of a client at `ip`, as the edge vouches for it (services believe no other)."""
        from mesh import client_address
        return client_address.forwarded((), ip, self.platform.rt.edge_key)

    async def signup(self, name: str = "Test User", email_addr: str | None = None) -> Session:
        email_addr = email_addr or f"u{uuid.uuid4().hex[:12]}@example.com"
        account = (await self.auth.Register(auth_pb2.RegisterRequest(
            email=email_addr, password=PASSWORD, display_name=name))).account
        tokens = await self.auth.Login(auth_pb2.LoginRequest(email=email_addr, password=PASSWORD))
        return Session(account.name.split("/")[1], email_addr, tokens.access_token, tokens.refresh_token)


    async def enroll_mfa(self, session: Session) -> tuple[str, list[str]]:
        """Turns two-factor authentication on for a signed-in person: (the TOTP secret, the recovery codes).
        The code confirming it is the current one: the next sign-in needs a later one (totp_code(ahead=1))."""
        start = await self.auth.StartMfaEnrollment(auth_pb2.StartMfaEnrollmentRequest(), metadata=session.md)
        done = await self.auth.ConfirmMfaEnrollment(auth_pb2.ConfirmMfaEnrollmentRequest(
            code=pyotp.TOTP(start.secret).now()), metadata=session.md)
        return start.secret, list(done.recovery_codes)

    async def login_with_code(self, email_addr: str, code: str, password: str = PASSWORD) -> Session:
        """Password, then the second factor."""
        first = await self.auth.Login(auth_pb2.LoginRequest(email=email_addr, password=password))
        assert first.mfa_challenge and not first.access_token
        tokens = await self.auth.VerifyMfa(auth_pb2.VerifyMfaRequest(mfa_challenge=first.mfa_challenge, code=code))
        user_id = json_claims(tokens.access_token)["sub"]
        return Session(user_id, email_addr, tokens.access_token, tokens.refresh_token)

    async def signup_admin(self, email_addr: str, name: str = "Site Operator") -> Session:
        """An account of an admin email (admin_emails), signed in with its second factor, as admins must be."""
        session = await self.signup(name, email_addr)
        secret, _ = await self.enroll_mfa(session)
        return await self.login_with_code(email_addr, totp_code(secret, ahead=1))


def totp_code(secret: str, ahead: int = 0) -> str:
    """The TOTP code of the time step `ahead` steps from now: the server accepts one step of drift, and each
    step's code only once, so a test that needs a second code in the same step takes the next one."""
    return pyotp.TOTP(secret).at(time.time() + 30 * ahead)


def json_claims(token: str) -> dict:
    import jwt
    return jwt.decode(token, options={"verify_signature": False})


def module_of(api: Api, name: str):
    """The running module of service `name` (its database, signing keys...) in the platform under test."""
    return next(m for m in api.platform.modules if m.name == name)


async def start_platform(settings) -> Platform:
    platform = wiring.platform(settings, "all", port=0)
    await platform.migrate()
    await platform.start()
    return platform


@dataclass
class EdgeClient:
    """The platform behind the edge, reached over real HTTP and gRPC sockets."""

    api: Api
    edge: object
    http: object  # aiohttp.ClientSession

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.edge.http_port}"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.edge.grpc_port}"


def lone_edge(settings, address: str):
    """An edge in a process of its own, every service at `address`."""
    return wiring.edge(wiring.runtime(settings, addresses={name: address for name in REGISTRY.names}))


async def start_edge(platform: Platform):
    edge = wiring.edge(platform.rt)
    await edge.start(http_port=0, grpc_port=0)
    return edge
