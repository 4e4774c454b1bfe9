"""The HTTP side of the edge: REST/JSON transcoding and gRPC-Web on one port, plus the edge's own
endpoints (health, OpenAPI, docs, JWKS, blobs). Every error is a google.rpc.Status JSON body."""
from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from typing import Any
from concurrent.futures import Executor

from aiohttp import web
from aiohttp.typedefs import Handler
from google.protobuf import descriptor, json_format
from google.rpc import error_details_pb2
import grpc
from opentelemetry.trace import SpanKind, Status, StatusCode
import structlog

from gateway import grpcweb
from gateway.http_rules import Binding, Routes
from gateway.request_keys import BODY_ABANDONED, CLIENT_IP, EDGE_HEADERS, REQUEST_ID
from gateway.policy import Admission, EdgePolicy
from gateway.transcode import CODE_BY_NUMBER, HTTP_STATUS, build_request, output_class, render_response
from gateway.upstream import OpenStreams, deadline, edge_shutting_down, status_of, stream_opened
from mesh import errors, tracing
from mesh.blobs import BlobNotFound, BlobStore, is_public
from mesh.config import Settings
from mesh.interceptor import request_id_from
from mesh.limits import body_too_large, decode
from mesh.logs import mask_email

log = structlog.get_logger("edge.access")
# The access log's level, asked before the line is built: structlog runs every processor (timestamp, masking)
# before the standard library drops a line below its level, some 20 µs a request for nothing.
_access = logging.getLogger("edge.access")

SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-site",
}
API_CSP = "default-src 'none'; frame-ancestors 'none'"
DOCS_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
CORS_ALLOW_HEADERS = "authorization, content-type, x-grpc-web, x-user-agent, grpc-timeout, x-request-id"
CORS_EXPOSE_HEADERS = ("grpc-status, grpc-message, grpc-status-details-bin, x-request-id, retry-after, "
                       "ratelimit-limit, ratelimit-remaining, ratelimit-reset")
# The edge's own refusals with an HTTP status of their own (the gRPC code travels in the body).
HTTP_STATUS_BY_REASON = {"BODY_TOO_LARGE": 413, "BODY_TIMEOUT": 408}
# SSE comments that keep idle proxies from closing a quiet stream, and reveal a client that left.
SSE_HEARTBEAT_SECONDS = 15.0


def error_response(status, headers: dict | None = None) -> web.Response:
    """A google.rpc.Status as JSON with the grpc-gateway HTTP code; a RetryInfo detail (the edge's
    rate limit, or a service's own, such as the sign-in throttle) becomes Retry-After."""
    code = CODE_BY_NUMBER.get(status.code, grpc.StatusCode.UNKNOWN)
    headers = dict(headers or {})
    if (delay := retry_delay(status)) is not None:
        headers["Retry-After"] = str(delay)
    return web.json_response(json_format.MessageToDict(status), status=HTTP_STATUS[code], headers=headers)


def retry_delay(status) -> int | None:
    """Whole seconds of the status's RetryInfo, rounded up, if it has one."""
    info = error_details_pb2.RetryInfo()
    for detail in status.details:
        if detail.Unpack(info):
            return max(1, math.ceil(info.retry_delay.seconds + info.retry_delay.nanos / 1e9))
    return None


class RestEdge:
    def __init__(self, settings: Settings, bindings: list[Binding], policy: EdgePolicy, channel_for, blobs: BlobStore,
                 streams: OpenStreams, decoder: Executor, extras: list[tuple[str, str, Handler]]):
        self.s = settings
        self.bindings = bindings
        self.routes = Routes(bindings)
        self.policy = policy
        self.channel_for = channel_for  # full gRPC service name -> grpc.aio.Channel
        self._callables: dict[str, Any] = {}  # full method name -> its multi-callable (RestEdge.callable)
        self._raw_callables: dict[str, Any] = {}  # the same, for serialized messages (RestEdge.raw_callable)
        self.blobs = blobs
        self.extras = extras
        self.streams = streams
        self.origins = set(settings.cors_allowed_origins)
        self.decoder = decoder  # the threads that decode large bodies (limits.decode)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.s.max_request_bytes,
                              middlewares=[self.envelope])
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/v1/blobs/{key:.+}", self.blob)
        for method, path, handler in self.extras:
            if method == "GET":
                app.router.add_get(path, handler)  # and HEAD
            else:
                app.router.add_route(method, path, handler)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        app.on_response_prepare.append(_no_server_banner)
        return app

    # --- the middleware ---

    @web.middleware
    async def envelope(self, request: web.Request, handler):
        """One trace span per request (continuing the caller's traceparent), around the rest."""
        with tracing.span(request.method, SpanKind.SERVER, request.headers,
                          {"http.request.method": request.method, "url.path": request.path}) as span:
            response = await self.guarded(request, handler)
            span.set_attribute("http.response.status_code", response.status)
            if response.status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            return response

    async def guarded(self, request: web.Request, handler) -> web.StreamResponse:
        """Request id, security headers, CORS preflights, access log, and errors as Status JSON whatever raised
        them."""
        start = time.perf_counter()
        rid = request_id_from(request.headers.get("x-request-id"))
        request[REQUEST_ID] = rid
        # Headers every response carries; handlers that stream apply them before the first byte.
        request[EDGE_HEADERS] = {**SECURITY_HEADERS, "X-Request-Id": rid, **self.cors_headers(request)}
        try:
            if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
                response = self.preflight(request)
            else:
                response = await handler(request)
        except errors.ApiError as e:
            adm = getattr(e, "admission", None)
            response = error_response(e.to_status(), adm.headers() if adm else {})
            if e.reason in HTTP_STATUS_BY_REASON:
                response.set_status(HTTP_STATUS_BY_REASON[e.reason])
        except web.HTTPException as e:
            code = grpc.StatusCode.NOT_FOUND if e.status == 404 else grpc.StatusCode.INVALID_ARGUMENT
            allow = {"Allow": e.headers["Allow"]} if "Allow" in e.headers else {}  # a 405 says what is allowed
            response = error_response(errors.ApiError(code, e.reason, "HTTP_" + str(e.status)).to_status(), allow)
            response.set_status(e.status)
        except Exception:
            log.exception("edge failure")
            response = error_response(errors.internal().to_status())
        if not response.prepared:
            response.headers.update(request[EDGE_HEADERS])
            response.headers.setdefault("Content-Security-Policy", API_CSP)
        # Never the query string or headers: they may hold tokens or emails.
        if _access.isEnabledFor(logging.INFO):
            log.info(f"{request.method} {mask_email(request.path)} {response.status}", request_id=rid,
                     client=request.get(CLIENT_IP, request.remote),
                     duration_ms=round((time.perf_counter() - start) * 1000, 1))
        if request.get(BODY_ABANDONED):
            # Answer, then close: aiohttp would otherwise read on for the rest of the body (lingering).
            response.force_close()
            await response.prepare(request)
            await response.write_eof()
            request.protocol.force_close()
        return response

    def cors_headers(self, request: web.Request) -> dict[str, str]:
        origin = request.headers.get("Origin")
        if origin and ("*" in self.origins or origin in self.origins):
            return {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
                    "Access-Control-Expose-Headers": CORS_EXPOSE_HEADERS}
        return {}

    def preflight(self, request: web.Request) -> web.Response:
        """A CORS preflight, answered for every path (in guarded: no middleware of its own per request)."""
        if not self.cors_headers(request):
            raise errors.permission_denied("origin not allowed", "CORS_ORIGIN")
        return web.Response(status=204, headers={
            "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
            "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS, "Access-Control-Max-Age": "600"})

    # --- handlers ---

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def blob(self, request: web.Request) -> web.Response:
        if not is_public(request.match_info["key"]):  # as if it did not exist, to anyone
            raise errors.not_found("blob", request.match_info["key"])
        try:
            data, content_type = await self.blobs.get(request.match_info["key"])
        except (BlobNotFound, ValueError):
            raise errors.not_found("blob", request.match_info["key"]) from None
        # Public photos are shown by the web app, whose origin (port 3100, or its own host) is not the edge's:
        # Chromium refused them under the edge's `same-site` policy even from 127.0.0.1 to 127.0.0.1.
        request[EDGE_HEADERS]["Cross-Origin-Resource-Policy"] = "cross-origin"  # this request's own dict
        return web.Response(body=data, content_type=content_type,
                            headers={"Cache-Control": "public, max-age=3600"})

    def client_ip(self, request: web.Request) -> str:
        ip = self.policy.client_ip(request.remote, request.headers.getall("X-Forwarded-For", []))
        request[CLIENT_IP] = ip
        return ip

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.content_type.startswith("application/grpc-web"):
            return await grpcweb.handle(self, request)
        method = "GET" if request.method == "HEAD" else request.method  # aiohttp leaves out HEAD's body
        candidates = self.routes.candidates(request.path)
        for b in candidates:  # the method's own bindings first: the others' templates only for a 405
            if b.http_method == method and (path_vars := b.template.match(request.path)) is not None:
                return await self.call(request, b, path_vars)
        allowed = set()
        for b in candidates:
            if b.template.match(request.path) is not None:
                allowed |= {b.http_method, "HEAD"} if b.http_method == "GET" else {b.http_method}
        if allowed:
            raise web.HTTPMethodNotAllowed(request.method, sorted(allowed))
        raise errors.not_found("path", request.path)

    async def call(self, request: web.Request, b: Binding, path_vars: dict[str, str]) -> web.StreamResponse:
        admission = await self.policy.admit(self.client_ip(request), request.headers.get("Authorization"), b.access,
                                            streaming=b.method.server_streaming)
        try:
            return await self.call_admitted(request, b, path_vars, admission)
        finally:
            admission.release()

    async def read_body(self, request: web.Request) -> bytes:
        """The whole body, within max_request_bytes and http_body_timeout_seconds."""
        try:
            async with asyncio.timeout(self.s.http_body_timeout_seconds):
                return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise body_too_large(f"request body larger than {self.s.max_request_bytes} bytes") from None
        except TimeoutError:
            request[BODY_ABANDONED] = True
            raise errors.ApiError(grpc.StatusCode.DEADLINE_EXCEEDED, "request body not received within "
                                  f"{self.s.http_body_timeout_seconds:g} s", "BODY_TIMEOUT") from None
        except web.RequestPayloadError:  # chunks or compression that do not decode
            request[BODY_ABANDONED] = True
            raise errors.invalid_argument(("body", "malformed body framing"), reason="MALFORMED_HTTP") from None

    async def call_admitted(self, request: web.Request, b: Binding, path_vars: dict[str, str],
                            admission: Admission) -> web.StreamResponse:
        body = await self.read_body(request) if b.body else b""
        message = await decode(self.decoder, len(body), build_request, b, path_vars, list(request.query.items()), body)
        streaming = b.method.server_streaming
        kwargs = dict(metadata=self.forward_metadata(request),
                      timeout=deadline(request.headers.get("grpc-timeout"), streaming))
        call = self.callable(b)
        if streaming:
            return await self.stream(request, b, call(message, **kwargs), admission)
        try:
            response = await call(message, **kwargs)
        except grpc.aio.AioRpcError as e:
            return error_response(status_of(e), admission.headers())
        return web.json_response(render_response(b, response), headers=admission.headers(), dumps=_dumps)

    def callable(self, b: Binding):
        """The binding's method on its channel, made once (channels live as long as the edge)."""
        call = self._callables.get(b.full_name)
        if call is None:
            channel = self.channel_for(b.service)
            serialize, deserialize = _serialize, output_class(b).FromString
            make = channel.unary_stream if b.method.server_streaming else channel.unary_unary
            # A registered method: gRPC interns its path once, not on every call.
            call = self._callables[b.full_name] = make(b.full_name, request_serializer=serialize,
                                                       response_deserializer=deserialize, _registered_method=True)
        return call

    def raw_callable(self, method: descriptor.MethodDescriptor):
        """A method's multi-callable sending and receiving serialized messages (gRPC-Web), made once."""
        path = f"/{method.containing_service.full_name}/{method.name}"
        call = self._raw_callables.get(path)
        if call is None:
            channel = self.channel_for(method.containing_service.full_name)
            make = channel.unary_stream if method.server_streaming else channel.unary_unary
            call = self._raw_callables[path] = make(path, _registered_method=True)
        return call

    async def stream(self, request: web.Request, b: Binding, call, admission: Admission) -> web.StreamResponse:
        """A server stream as newline-delimited JSON, or as Server-Sent Events when the client accepts
        them. An error after the stream opened (the service's, or the edge stopping) ends it with a
        google.rpc.Status event."""
        sse = "text/event-stream" in request.headers.get("Accept", "")
        reading = None
        try:
            with self.streams.relaying(call):
                if not await stream_opened(call):
                    # Ended before it opened: a refusal is an ordinary HTTP error; an OK end is replayed below.
                    reading = asyncio.ensure_future(call.read())
                    try:
                        await reading
                    except (grpc.aio.AioRpcError, asyncio.CancelledError) as e:
                        if isinstance(e, asyncio.CancelledError) and not self.streams.ended_by_shutdown():
                            raise
                        reading = None
                        status = (status_of(e) if isinstance(e, grpc.aio.AioRpcError)
                                  else edge_shutting_down().to_status())
                        return error_response(status, admission.headers())
                edge_headers = request[EDGE_HEADERS]
                response = web.StreamResponse(headers={
                    **edge_headers, **admission.headers(), "Content-Security-Policy": API_CSP,
                    "Content-Type": "text/event-stream" if sse else "application/x-ndjson",
                    "Cache-Control": "no-store"})
                await response.prepare(request)
                if request.method == "HEAD":  # the stream opened: that is all HEAD asks
                    await response.write_eof()
                    return response
                try:
                    while True:
                        reading = reading or asyncio.ensure_future(call.read())
                        done, _ = await asyncio.wait({reading}, timeout=SSE_HEARTBEAT_SECONDS if sse else None)
                        if not done:
                            await response.write(b": keep-alive\n\n")
                            continue
                        if reading.cancelled() and self.streams.closing:
                            raise edge_shutting_down()
                        item, reading = reading.result(), None
                        if item is grpc.aio.EOF:
                            break
                        data = _dumps(render_response(b, item))
                        await response.write(f"data: {data}\n\n".encode() if sse else f"{data}\n".encode())
                except (grpc.aio.AioRpcError, errors.ApiError) as e:
                    status = e.to_status() if isinstance(e, errors.ApiError) else status_of(e)
                    error = _dumps(json_format.MessageToDict(status))
                    await response.write(f"event: error\ndata: {error}\n\n".encode() if sse
                                         else f'{{"error": {error}}}\n'.encode())
                await response.write_eof()
                return response
        finally:
            if reading is not None:
                reading.cancel()

    def forward_metadata(self, request: web.Request) -> tuple:
        md = [("x-request-id", request[REQUEST_ID])]
        if auth := request.headers.get("Authorization"):
            md.append(("authorization", auth))
        # The device, as sessions show it: gRPC-Web clients name themselves in X-User-Agent, browsers in User-Agent.
        if agent := request.headers.get("X-User-Agent") or request.headers.get("User-Agent"):
            md.append(("x-user-agent", agent[:256]))
        return self.policy.forward(md, request[CLIENT_IP])


async def _no_server_banner(request: web.Request, response: web.StreamResponse) -> None:
    # aiohttp adds `Server: Python/x aiohttp/y` just before this signal, and writes the headers after it.
    response.headers.popall("Server", None)


def _serialize(m) -> bytes:
    return m.SerializeToString()


def _dumps(o) -> str:
    return json.dumps(o, ensure_ascii=False)
