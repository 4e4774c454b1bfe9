"""Builds the running pieces from the registry: the runtime of a process, the server of a target,
the edge, and the AsyncAPI document."""
from __future__ import annotations

import os
from collections.abc import Collection, Mapping

from google.protobuf import json_format

from app.registry import REGISTRY
from gateway import asyncapi
from gateway.edge import Edge
from mesh.config import Settings
from mesh.registry import peer_addresses
from mesh.runtime import Runtime
from mesh.server import Platform
from petplatform.auth.v1 import auth_pb2, auth_pb2_grpc


async def fetch_jwks(rt: Runtime) -> list[dict]:
    """The auth service's public keys, which every verifier (services and edge) checks tokens with."""
    response = await auth_pb2_grpc.AuthServiceStub(rt.channel("auth")).GetJwks(auth_pb2.GetJwksRequest(), timeout=5)
    return [json_format.MessageToDict(k, preserving_proto_field_name=True) for k in response.keys]


def runtime(settings: Settings, *, local: Collection[str] = (), addresses: Mapping[str, str] | None = None) -> Runtime:
    """addresses: each service's host:port; by default PETPLATFORM_<NAME>_ADDR or the seed port."""
    if addresses is None:
        addresses = peer_addresses(REGISTRY.ports, settings.host, os.environ)
    return Runtime(settings, addresses=addresses, local=local, jwks=fetch_jwks)


def platform(settings: Settings, target: str = "all", *, port: int | None = None,
             addresses: Mapping[str, str] | None = None) -> Platform:
    specs = REGISTRY.target(target)
    return Platform(runtime(settings, local=[s.name for s in specs], addresses=addresses), specs, port)


def events_document(settings: Settings) -> dict:
    return asyncapi.document([
        asyncapi.EventChannel(routing_key=key, payload=payload, producers=REGISTRY.producers(key),
                              consumers=REGISTRY.consumers(key))
        for key, payload in REGISTRY.events().items()], exchange=settings.amqp_exchange)


def edge(rt: Runtime) -> Edge:
    return Edge(rt, REGISTRY.routes, events_document(rt.settings))
