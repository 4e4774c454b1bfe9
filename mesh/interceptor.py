"""The one server interceptor: request id, logging, metrics, authentication, per-method
authorization from the contract, REQUIRED fields, and errors as google.rpc.Status."""
from __future__ import annotations

import contextlib
import contextvars
import os
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf import descriptor, descriptor_pool
from google.protobuf.message import DecodeError, Message
import grpc
from grpc_status import rpc_status
from prometheus_client import Counter, Histogram
from opentelemetry import trace
from opentelemetry.trace import SpanKind
import structlog

from mesh import client_address, errors, limits, principal, sql, tracing
from mesh.principal import STAFF_ACCESS, TokenVerifier
from petplatform.common.v1 import access_pb2

log = structlog.get_logger("rpc")

RPCS = Counter("petplatform_rpc_total", "RPCs handled", ["method", "code"])
LATENCY = Histogram("petplatform_rpc_seconds", "RPC latency", ["method"])

# Infrastructure services every server carries; they are public by nature.
PUBLIC_SERVICES = ("grpc.health.v1.", "grpc.reflection.")


# What a caller without the role (or without the second factor staff need) is told.
STAFF_REFUSALS: dict[int, tuple[str, str]] = {
    access_pb2.ACCESS_ADMIN: ("admins only", "ADMIN_ONLY"),
    access_pb2.ACCESS_MODERATOR: ("moderators and admins only", "MODERATORS_ONLY"),
    access_pb2.ACCESS_SUPPORT: ("staff only (support, moderators, admins)", "STAFF_ONLY"),
}


def method_access(full_method: str) -> int:
    """Access level declared in the contract for '/pkg.Service/Method'."""
    service_name, method_name = full_method.lstrip("/").rsplit("/", 1)
    if service_name.startswith(PUBLIC_SERVICES):
        return access_pb2.ACCESS_PUBLIC
    service = descriptor_pool.Default().FindServiceByName(service_name)
    options = service.methods_by_name[method_name].GetOptions()
    level: int = options.Extensions[access_pb2.access]  # type: ignore[index]  # (see mesh.events.types)
    if level == access_pb2.ACCESS_UNSPECIFIED:
        raise ValueError(f"{full_method} declares no (petplatform.common.v1.access)")
    return level


async def _stream(result) -> AsyncIterator:
    """Streaming handlers either yield (async generators) or write with context.write() and return."""
    if hasattr(result, "__aiter__"):
        async for item in result:
            yield item
    else:
        await result


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def request_id_from(value: str | None) -> str:
    """The caller's request id if it is a sane one (it ends up in logs and headers), else a new one."""
    return value if value and _REQUEST_ID.fullmatch(value) else os.urandom(16).hex()  # uuid4's randomness, no object


_NO_SPAN = contextlib.nullcontext(trace.INVALID_SPAN)  # reusable: it holds no state

_pending_headers: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("pending_headers", default=None)


async def send_headers(context: grpc.aio.ServicerContext) -> None:
    """Sends the response headers (with the request id) if not sent yet. A long-lived stream calls
    it once it has accepted the request, so the client knows the stream is open before any message."""
    headers = _pending_headers.get()
    if headers is not None:
        _pending_headers.set(None)
        await context.send_initial_metadata(headers)


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}


def caller() -> str:
    """Who a stream counts against: the signed-in user, else the client's address."""
    p = principal.current()
    return f"user:{p.user_id}" if p else f"address:{client_address.current()}"


def input_type(full_method: str) -> descriptor.Descriptor | None:
    service_name, method_name = full_method.lstrip("/").rsplit("/", 1)
    try:
        return descriptor_pool.Default().FindServiceByName(service_name).methods_by_name[method_name].input_type
    except KeyError:
        return None


class InFlight:
    """RPCs in progress on this server, streams included, bounded: a cheap guard for callers that
    reach the services port without the edge. Health and reflection are never refused, so a busy
    server is not mistaken for a dead one."""

    def __init__(self, limit: int):
        self.limit = limit
        self.count = 0

    def enter(self) -> None:
        if self.count >= self.limit:
            raise errors.resource_exhausted("the server is busy: try again shortly", "SERVER_BUSY", 1,
                                            limit=self.limit)
        self.count += 1

    def leave(self) -> None:
        self.count -= 1

    @contextlib.contextmanager
    def hold(self, exempt: bool = False) -> Iterator[None]:
        if exempt:
            yield
            return
        self.enter()
        try:
            yield
        finally:
            self.leave()


def required_fields(request_type: descriptor.Descriptor | None) -> list[descriptor.FieldDescriptor]:
    """Top-level request fields marked REQUIRED in the contract (read once per method)."""
    if request_type is None:
        return []
    return [f for f in request_type.fields
            if field_behavior_pb2.REQUIRED in f.GetOptions().Extensions[field_behavior_pb2.field_behavior]]


def missing_required(msg: Message, required: list[descriptor.FieldDescriptor]) -> list[tuple[str, str]]:
    """Those of the `required` fields the request leaves empty."""
    out = []
    for f in required:
        if f.is_repeated:
            present = len(getattr(msg, f.name)) > 0
        elif f.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
            present = msg.HasField(f.name)
        else:
            present = bool(getattr(msg, f.name))
        if not present:
            out.append((f.name, "required"))
    return out


class ServerInterceptor:
    """Wraps each method's handler once, when it is registered (InterceptedServer), not per call as a
    grpc.aio.ServerInterceptor would: what a method needs from its contract (access level, REQUIRED
    fields, metric children) is looked up then, so a call pays only for its own work."""

    def __init__(self, verifier: TokenVerifier, edge_key: str, *, max_streams_per_caller: int,
                 max_concurrent_rpcs: int):
        self._verifier = verifier
        self._edge_key = edge_key
        self._streams = limits.StreamSlots(max_streams_per_caller, per="caller")
        self._in_flight = InFlight(max_concurrent_rpcs)
        # Large requests are checked and decoded here, off the event loop (mesh.limits).
        self._decoder = limits.decoder_pool()

    def close(self) -> None:
        self._decoder.shutdown(wait=False)

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """The handler of `method` ('/pkg.Service/Method') with everything this module does around it."""
        access = method_access(method)
        infrastructure = method.lstrip("/").startswith(PUBLIC_SERVICES)
        deserialize = handler.request_deserializer or (lambda b: b)
        request_type = input_type(method)
        required = required_fields(request_type)
        domain = errors.service_domain(method)
        latency, ok = LATENCY.labels(method), RPCS.labels(method, "OK")
        in_flight, verifier, edge_key = self._in_flight, self._verifier, self._edge_key

        async def prologue(md: dict[str, str], context: grpc.aio.ServicerContext) -> None:
            """Request id and logging context, then authentication and authorization."""
            request_id = request_id_from(md.get("x-request-id"))
            client_address.bind(client_address.resolve(md, context.peer(), edge_key))
            structlog.contextvars.bind_contextvars(request_id=request_id, method=method)
            # A stream's headers wait for its first response (or send_headers): a call refused up front is
            # then trailers-only, which tells the edge to answer with an HTTP error, not a 200 stream. A
            # one-response call carries the id in its trailers: gRPC cannot put headers of ours in the
            # response's own batch, and a batch of their own cost a tenth of a GetPet. Health probes and
            # reflection get none: a probe has nothing to correlate.
            _pending_headers.set(None if infrastructure else (("x-request-id", request_id),))
            p = await verifier.authenticate(md.get("authorization"), access)
            if access in STAFF_ACCESS and (p is None or not p.admitted(access)):
                raise errors.permission_denied(*STAFF_REFUSALS[access])
            principal.bind(p)
            if p:
                structlog.contextvars.bind_contextvars(user_id=p.user_id)

        def decode(raw: bytes):
            # What a message may cost is counted before it is decoded (a flood of tiny fields took a
            # third of a second of upb, holding the GIL).
            if request_type is not None:
                limits.check_message_shape(request_type, raw)
            try:
                return deserialize(raw)
            except DecodeError:
                raise errors.invalid_argument(("request", "not a valid protobuf message"),
                                              reason="MALFORMED_REQUEST") from None

        def checked(msg):
            if required and isinstance(msg, Message):
                missing = missing_required(msg, required)
                if missing:
                    raise errors.invalid_argument(*missing, reason="MISSING_FIELD")
            return msg

        async def parse(raw: bytes):
            return checked(decode(raw) if len(raw) <= limits.INLINE_DECODE_BYTES else (
                await limits.decode(self._decoder, len(raw), decode, raw)))

        async def fail(context, exc: BaseException, span, start: float) -> None:
            latency.observe(time.perf_counter() - start)
            if isinstance(exc, errors.ApiError):
                err = exc
                log.info("rpc rejected", code=err.code.name, reason=err.reason, message=err.message)
            elif sql.is_unavailable(exc):
                err = errors.unavailable("the service's database cannot serve right now; try again shortly",
                                         "DATABASE_UNAVAILABLE")
                log.warning("rpc failed: database unavailable", exc_info=exc)
            else:
                err = errors.internal()
                log.error("rpc failed", exc_info=exc)
            status = rpc_status.to_status(err.to_status(domain))
            RPCS.labels(method, status.code.name).inc()
            tracing.record_grpc_status(span, status.code)
            await context.abort(status.code, status.details, status.trailing_metadata + (_pending_headers.get() or ()))

        def done(start: float, span) -> None:
            latency.observe(time.perf_counter() - start)
            ok.inc()
            tracing.record_grpc_status(span, grpc.StatusCode.OK)

        def server_span(md: dict[str, str]):
            if infrastructure:  # health probes and reflection would drown the traces that matter
                return _NO_SPAN
            return tracing.span(method, SpanKind.SERVER, md, {"rpc.system": "grpc"})

        async def requests(raw_iter) -> AsyncIterator:
            async for raw in raw_iter:
                yield await parse(raw)

        async def unary(context, invoke, request):
            """A call with one response, which invoke(request, context) makes once the caller is let in."""
            md = _metadata(context)
            with server_span(md) as span:
                start = time.perf_counter()
                try:
                    if not infrastructure:
                        in_flight.enter()
                    try:
                        await prologue(md, context)
                        response = await invoke(request, context)
                        if (headers := _pending_headers.get()) is not None:
                            context.set_trailing_metadata(headers)
                    finally:
                        if not infrastructure:
                            in_flight.leave()
                except grpc.aio.AbortError:
                    raise
                except Exception as e:  # every failure becomes a status
                    await fail(context, e, span, start)
                done(start, span)
                return response

        async def streamed(context, items, headers_first: bool):
            """A call with a stream of responses, which items() yields once the caller is let in."""
            md = _metadata(context)
            with server_span(md) as span:
                start = time.perf_counter()
                try:
                    await prologue(md, context)
                    with in_flight.hold(infrastructure), self._streams.hold(caller()):
                        if headers_first:  # a bidi peer may wait for headers before it sends
                            await send_headers(context)
                        async for item in _stream(items()):
                            await send_headers(context)
                            yield item
                except grpc.aio.AbortError:
                    raise
                except Exception as e:
                    await fail(context, e, span, start)
                done(start, span)

        if handler.unary_unary:
            call = handler.unary_unary

            async def invoke(raw, context):
                # Small requests (most) are decoded inline, without awaiting parse's coroutine.
                msg = checked(decode(raw)) if len(raw) <= limits.INLINE_DECODE_BYTES else await parse(raw)
                return await call(msg, context)

            async def unary_unary(raw, context):
                return await unary(context, invoke, raw)
            return grpc.unary_unary_rpc_method_handler(unary_unary, None, handler.response_serializer)

        if handler.unary_stream:
            call_stream = handler.unary_stream

            async def unary_stream(raw, context):
                async def items():
                    async for item in _stream(call_stream(await parse(raw), context)):
                        yield item
                async for item in streamed(context, items, False):
                    yield item
            return grpc.unary_stream_rpc_method_handler(unary_stream, None, handler.response_serializer)

        if handler.stream_unary:
            call_su: Any = handler.stream_unary  # grpc.aio handlers take async iterators

            def invoke_su(raw_iter, context):
                return call_su(requests(raw_iter), context)

            async def stream_unary(raw_iter, context):
                return await unary(context, invoke_su, raw_iter)
            return grpc.stream_unary_rpc_method_handler(stream_unary, None, handler.response_serializer)

        call_ss: Any = handler.stream_stream

        async def stream_stream(raw_iter, context):
            async for item in streamed(context, lambda: call_ss(requests(raw_iter), context), True):
                yield item
        return grpc.stream_stream_rpc_method_handler(stream_stream, None, handler.response_serializer)


class _Methods(grpc.GenericRpcHandler):
    """Every method of a server, wrapped: the registered ones when they are added, the others (reflection's)
    on first use. Unknown methods are not remembered: a caller making up names must not grow the table."""

    def __init__(self, interceptor: ServerInterceptor):
        self._interceptor = interceptor
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}
        self._generic: list[grpc.GenericRpcHandler] = []

    def add(self, method: str, handler: grpc.RpcMethodHandler) -> None:
        self._wrapped[method] = self._interceptor.wrap(method, handler)

    def add_generic(self, handler: grpc.GenericRpcHandler) -> None:
        self._generic.append(handler)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = next((h for g in self._generic if (h := g.service(handler_call_details)) is not None), None)
            if handler is None:
                return None
            wrapped = self._wrapped[method] = self._interceptor.wrap(method, handler)
        return wrapped


class InterceptedServer(grpc.aio.Server):
    """A grpc.aio server whose every registered method goes through the interceptor (the generated
    add_*_to_server functions, health and reflection register through it as through any server).

    Every method is served through one generic handler (a dict), none registered with grpc.aio: it keeps a
    request pending per registered method and waits on all of them (asyncio.wait) for each call it takes,
    which with the platform's ~120 methods cost a health Check a quarter more CPU."""

    def __init__(self, server: grpc.aio.Server, interceptor: ServerInterceptor):
        self._server = server
        self._methods = _Methods(interceptor)
        server.add_generic_rpc_handlers([self._methods])

    def add_generic_rpc_handlers(self, generic_rpc_handlers) -> None:
        # The generated add_*_to_server functions add a generic handler and then the same methods as
        # registered ones: the latter are found first, the generic one only ever serves what they miss.
        for h in generic_rpc_handlers:
            self._methods.add_generic(h)

    def add_registered_method_handlers(self, service_name, method_handlers) -> None:
        for name, h in method_handlers.items():
            self._methods.add(f"/{service_name}/{name}", h)

    def add_insecure_port(self, address: str) -> int:
        return self._server.add_insecure_port(address)

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        return self._server.add_secure_port(address, server_credentials)

    async def start(self) -> None:
        await self._server.start()

    async def stop(self, grace: float | None) -> None:
        await self._server.stop(grace)

    async def wait_for_termination(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 (its signature)
        return await self._server.wait_for_termination(timeout)
