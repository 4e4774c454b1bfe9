"""The Python edge: REST/JSON + gRPC-Web on PETPLATFORM_HTTP_PORT, gRPC pass-through on
PETPLATFORM_EDGE_GRPC_PORT; routes come from the contracts, never from hand-written tables."""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping

from aiohttp import web
from google.protobuf import json_format
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gateway import openapi, webhooks
from mesh import limits, oauth
from gateway.connections import EdgeRunner
from gateway.health import EdgeHealth
from gateway.http_rules import bindings
from gateway.dev_bank import LocalBank
from gateway.dev_oidc import LocalOpenIdProvider
from gateway.oauth_flow import OAuthFlow
from gateway.pages import VerifyEmailPage
from gateway.passthrough import PassThrough
from gateway.policy import EdgePolicy
from gateway.rest import DOCS_CSP, RestEdge
from gateway.upstream import OpenStreams
from mesh.config import LOCAL_BANK_PATH, local_secret
from mesh.runtime import Runtime, server_options
from petplatform.auth.v1 import auth_pb2, auth_pb2_grpc

log = logging.getLogger(__name__)
AUTH_SERVICE = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name


def bound_port(site: web.TCPSite) -> int:
    """The port a site listens on (asked for as 0 in tests)."""
    sockets = getattr(site._server, "sockets", None)  # asyncio's server and uvloop's (no subclass of it) alike
    assert sockets, "a TCP site serves on a socket"
    return int(sockets[0].getsockname()[1])


# What this edge serves besides the contracts' routes, as path prefixes. Behind Envoy (production) it
# serves exactly these: tools/envoy_config.py routes them here. /readyz is this process's own probe; the
# demo provider (DEV_OIDC_PATH) is refused in the real profile, and the local payment provider's bank page
# (LOCAL_BANK_PATH) is served only while that provider moves the (pretend) money.
PAGE_PREFIXES = ("/openapi.json", "/docs", "/asyncapi.json", "/.well-known/jwks.json", "/verify-email",
                 "/v1/auth/oauth/", webhooks.PATH.split("{")[0], "/v1/blobs/")
LOCAL_ONLY_PATHS = ("/readyz", "/healthz", oauth.DEV_OIDC_PATH, LOCAL_BANK_PATH)


class Edge:
    """routes: full gRPC service name -> the peer serving it (the edge knows contracts, not services).
    asyncapi: the events document served at /asyncapi.json."""

    def __init__(self, rt: Runtime, routes: Mapping[str, str], asyncapi: dict):
        self.rt = rt
        self.s = rt.settings
        self.routes = dict(routes)
        self.services = list(routes)
        self.asyncapi = asyncapi
        self.bindings = bindings(self.services)
        self.policy = EdgePolicy(self.s, rt.cache, rt.verifier, rt.edge_key)
        self.spec = openapi.document(self.bindings)
        self.streams = OpenStreams()
        self.decoder = limits.decoder_pool()
        self.http_port = 0
        self.grpc_port = 0
        # The demo provider (PETPLATFORM_DEV_OIDC): development and the demo only, refused in the real profile.
        self.dev_oidc = LocalOpenIdProvider(oauth.dev_oidc_issuer(self.s)) if self.s.dev_oidc else None

    def local_bank(self) -> LocalBank:
        s = self.s
        secret = (s.local_payment_webhook_secret.get_secret_value().encode() if s.local_payment_webhook_secret
                  else local_secret(s.data_dir / "local-payment-webhook-secret"))
        return LocalBank(self.channel_for, self.policy, secret)

    async def start(self, http_port: int | None = None, grpc_port: int | None = None) -> None:
        self.rt.revocations.start()  # an edge in a process of its own has no server to start it
        verify = VerifyEmailPage(self.channel_for, self.policy)
        rest = RestEdge(self.s, self.bindings, self.policy, self.relay_channel_for, self.rt.blobs, self.streams,
                        self.decoder,
                        [("GET", "/readyz", self.readyz), ("GET", "/openapi.json", self.openapi_json),
                         ("GET", "/docs", self.docs), ("GET", "/asyncapi.json", self.asyncapi_json),
                         ("GET", "/.well-known/jwks.json", self.jwks),
                         ("GET", "/verify-email", verify.show), ("POST", "/verify-email", verify.confirm),
                         *OAuthFlow(self.s, self.rt.cache, self.policy, self.channel_for).routes(),
                         *(self.dev_oidc.routes(oauth.DEV_OIDC_PATH) if self.dev_oidc else ()),
                         *(self.local_bank().routes() if self.s.payment_provider == "local" else ())])
        rest.extras.append(("POST", webhooks.PATH, webhooks.Webhooks(rest).receive))
        # handler_cancellation: a client that disconnects cancels its handler, and so its upstream call.
        # shutdown_timeout: what a handler still running at stop gets (streams were ended before).
        # keepalive_timeout: how long a connection may sit without a request.
        self.runner = EdgeRunner(rest.app(), access_log=None, handler_cancellation=True, shutdown_timeout=5,
                                 header_timeout=self.s.http_header_timeout_seconds,
                                 keepalive_timeout=self.s.http_idle_timeout_seconds)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.s.host, self.s.http_port if http_port is None else http_port,
                           reuse_port=self.s.reuse_port)
        await site.start()
        self.http_port = bound_port(site)
        self.grpc_server = grpc.aio.server(options=server_options(self.s))
        self.grpc_server.add_generic_rpc_handlers((PassThrough(self.policy, self.relay_channel_for, self.streams,
                                                               self.decoder),))
        # Answered by the edge for every service, however they are deployed: reflection from its own
        # descriptors, health by asking the module that serves each service.
        health_pb2_grpc.add_HealthServicer_to_server(EdgeHealth(self.channel_for, self.services),
                                                     self.grpc_server)
        reflection.enable_server_reflection(
            [*self.services, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            self.grpc_server)
        self.grpc_port = self.grpc_server.add_insecure_port(
            f"{self.s.host}:{self.s.edge_grpc_port if grpc_port is None else grpc_port}")
        await self.grpc_server.start()
        log.info("edge on http://%s:%d (REST, gRPC-Web) and %s:%d (gRPC)", self.s.host, self.http_port,
                 self.s.host, self.grpc_port)

    async def stop(self, grace: float = 5.0) -> None:
        self.streams.end_all()  # open watches would otherwise hold the servers open; new ones are refused
        for _ in range(int(grace / 0.05)):  # let them send their last event
            if not self.streams:
                break
            await asyncio.sleep(0.05)
        await self.grpc_server.stop(grace)
        await self.runner.cleanup()
        self.decoder.shutdown(wait=False)

    def channel_for(self, service: str) -> grpc.aio.Channel:
        """The channel to whoever serves a contract (KeyError for one the edge does not front)."""
        return self.rt.channel(self.routes[service])

    def relay_channel_for(self, service: str) -> grpc.aio.Channel:
        """channel_for without the tracing interceptor, for the relays (REST, gRPC-Web, pass-through): their
        metadata carries the trace already (EdgePolicy.forward)."""
        return self.rt.channel(self.routes[service], traced=False)

    async def readyz(self, request: web.Request) -> web.Response:
        peers = sorted(set(self.routes.values()))

        async def check(peer: str) -> bool:
            try:
                r = await health_pb2_grpc.HealthStub(self.rt.channel(peer)).Check(
                    health_pb2.HealthCheckRequest(), timeout=2)
                return r.status == health_pb2.HealthCheckResponse.SERVING
            except grpc.aio.AioRpcError:
                return False
        results = dict(zip(peers, await asyncio.gather(*(check(p) for p in peers)), strict=True))
        return web.json_response({"ready": all(results.values()), "services": results},
                                 status=200 if all(results.values()) else 503)

    async def openapi_json(self, request: web.Request) -> web.Response:
        return web.json_response(self.spec)

    async def asyncapi_json(self, request: web.Request) -> web.Response:
        return web.json_response(self.asyncapi)

    async def docs(self, request: web.Request) -> web.Response:
        return web.Response(text=openapi.docs_page(self.spec), content_type="text/html",
                            headers={"Content-Security-Policy": DOCS_CSP})

    async def jwks(self, request: web.Request) -> web.Response:
        keys = await auth_pb2_grpc.AuthServiceStub(self.channel_for(AUTH_SERVICE)).GetJwks(
            auth_pb2.GetJwksRequest(), timeout=5)
        body = {"keys": [json_format.MessageToDict(k, preserving_proto_field_name=True) for k in keys.keys]}
        return web.Response(text=json.dumps(body), content_type="application/jwk-set+json",
                            headers={"Cache-Control": "public, max-age=300"})
