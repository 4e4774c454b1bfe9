"""The one server interceptor: request id, logging, metrics, authentication, per-method
authorization from the contract, REQUIRED fields, and errors as google.rpc.Status."""
from __future__ import annotations

import contextlib
import contextvars
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator

from google.api import field_behavior_pb2
from google.protobuf import descriptor, descriptor_pool
from google.protobuf.message import DecodeError, Message
import grpc
from grpc_status import rpc_status
from prometheus_client import Counter, Histogram
from opentelemetry import trace
from opentelemetry.trace import SpanKind
import structlog

from mesh import client_address, errors, limits, principal, tracing
from mesh.principal import Principal, TokenVerifier
from petplatform.common.v1 import access_pb2

log = structlog.get_logger("rpc")

RPCS = Counter("petplatform_rpc_total", "RPCs handled", ["method", "code"])
LATENCY = Histogram("petplatform_rpc_seconds", "RPC latency", ["method"])

# Infrastructure services every server carries; they are public by nature.
PUBLIC_SERVICES = ("grpc.health.v1.", "grpc.reflection.")


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


def missing_required(msg: Message) -> list[tuple[str, str]]:
    """Top-level request fields marked REQUIRED in the contract that the request leaves empty."""
    out = []
    for f in msg.DESCRIPTOR.fields:
        if field_behavior_pb2.REQUIRED not in f.GetOptions().Extensions[field_behavior_pb2.field_behavior]:
            continue
        if f.is_repeated:
            present = len(getattr(msg, f.name)) > 0
        elif f.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
            present = msg.HasField(f.name)
        else:
            present = bool(getattr(msg, f.name))
        if not present:
            out.append((f.name, "required"))
    return out


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
    return value if value and _REQUEST_ID.fullmatch(value) else uuid.uuid4().hex


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

    @contextlib.contextmanager
    def hold(self, exempt: bool = False) -> Iterator[None]:
        if exempt:
            yield
            return
        if self.count >= self.limit:
            raise errors.resource_exhausted("the server is busy: try again shortly", "SERVER_BUSY", 1,
                                            limit=self.limit)
        self.count += 1
        try:
            yield
        finally:
            self.count -= 1


class ServerInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, verifier: TokenVerifier, edge_key: str, *, max_streams_per_caller: int,
                 max_concurrent_rpcs: int):
        self._verifier = verifier
        self._edge_key = edge_key
        self._access: dict[str, int] = {}
        self._streams = limits.StreamSlots(max_streams_per_caller, per="caller")
        self._in_flight = InFlight(max_concurrent_rpcs)
        # Large requests are checked and decoded here, off the event loop (mesh.limits).
        self._decoder = limits.decoder_pool()

    def close(self) -> None:
        self._decoder.shutdown(wait=False)

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        if method not in self._access:
            self._access[method] = method_access(method)
        access = self._access[method]
        infrastructure = method.lstrip("/").startswith(PUBLIC_SERVICES)
        deserialize = handler.request_deserializer or (lambda b: b)
        request_type = input_type(method)
        domain = errors.service_domain(method)

        async def prologue(md: dict[str, str], context: grpc.aio.ServicerContext) -> None:
            """Request id and logging context, then authentication and authorization."""
            request_id = request_id_from(md.get("x-request-id"))
            client_address.bind(client_address.resolve(md, context.peer(), self._edge_key))
            structlog.contextvars.bind_contextvars(request_id=request_id, method=method)
            # Headers wait for the first response (or send_headers): a call refused up front is then
            # trailers-only, which tells the edge to answer with an HTTP error, not a 200 stream.
            _pending_headers.set((("x-request-id", request_id),))
            p = await self._authenticate(md, access)
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

        async def parse(raw: bytes):
            msg = await limits.decode(self._decoder, len(raw), decode, raw)
            if isinstance(msg, Message):
                missing = missing_required(msg)
                if missing:
                    raise errors.invalid_argument(*missing, reason="MISSING_FIELD")
            return msg

        async def fail(context, exc: BaseException, span, start: float) -> None:
            LATENCY.labels(method).observe(time.perf_counter() - start)
            if isinstance(exc, errors.ApiError):
                err = exc
                log.info("rpc rejected", code=err.code.name, reason=err.reason, message=err.message)
            else:
                err = errors.internal()
                log.error("rpc failed", exc_info=exc)
            status = rpc_status.to_status(err.to_status(domain))
            RPCS.labels(method, status.code.name).inc()
            tracing.record_grpc_status(span, status.code)
            await context.abort(status.code, status.details, status.trailing_metadata + (_pending_headers.get() or ()))

        def done(start: float, span) -> None:
            LATENCY.labels(method).observe(time.perf_counter() - start)
            RPCS.labels(method, "OK").inc()
            tracing.record_grpc_status(span, grpc.StatusCode.OK)

        def server_span(md: dict[str, str]):
            if infrastructure:  # health probes and reflection would drown the traces that matter
                return contextlib.nullcontext(trace.INVALID_SPAN)
            return tracing.span(method, SpanKind.SERVER, md, {"rpc.system": "grpc"})

        async def requests(raw_iter) -> AsyncIterator:
            async for raw in raw_iter:
                yield await parse(raw)

        async def unary(context, invoke):
            """A call with one response, which invoke() makes once the caller is let in."""
            md = _metadata(context)
            with server_span(md) as span:
                start = time.perf_counter()
                try:
                    with self._in_flight.hold(infrastructure):
                        await prologue(md, context)
                        response = await invoke()
                        await send_headers(context)
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
                    with self._in_flight.hold(infrastructure), self._streams.hold(caller()):
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
            async def unary_unary(raw, context):
                async def invoke():
                    return await handler.unary_unary(await parse(raw), context)
                return await unary(context, invoke)
            return grpc.unary_unary_rpc_method_handler(unary_unary, None, handler.response_serializer)

        if handler.unary_stream:
            async def unary_stream(raw, context):
                async def items():
                    async for item in _stream(handler.unary_stream(await parse(raw), context)):
                        yield item
                async for item in streamed(context, items, False):
                    yield item
            return grpc.unary_stream_rpc_method_handler(unary_stream, None, handler.response_serializer)

        if handler.stream_unary:
            async def stream_unary(raw_iter, context):
                return await unary(context, lambda: handler.stream_unary(requests(raw_iter), context))
            return grpc.stream_unary_rpc_method_handler(stream_unary, None, handler.response_serializer)

        async def stream_stream(raw_iter, context):
            async for item in streamed(context, lambda: handler.stream_stream(requests(raw_iter), context), True):
                yield item
        return grpc.stream_stream_rpc_method_handler(stream_stream, None, handler.response_serializer)

    async def _authenticate(self, md: dict[str, str], access: int) -> Principal | None:
        p = await self._verifier.authenticate(md.get("authorization"), access)
        if access == access_pb2.ACCESS_ADMIN and (p is None or not p.is_admin):
            raise errors.permission_denied("admins only", "ADMIN_ONLY")
        return p
