"""OpenTelemetry traces across the mesh: the W3C `traceparent` travels in gRPC metadata, HTTP headers
and event envelopes, so one trace follows a request from the edge through services and events.
Spans are exported over OTLP/gRPC when OTEL_EXPORTER_OTLP_ENDPOINT is set (the SDK reads the
standard OTEL_* variables). Without an exporter (no span processor) and with the default sampler, a span
is only its ids: it continues the caller's trace, gives logs their trace id and is passed on, but nothing
of it is recorded, which the SDK would do for nothing at some microseconds a call."""
from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import random
from collections.abc import Iterator, Mapping

import grpc
from opentelemetry import context as otel_context, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
import structlog

_propagator = TraceContextTextMapPropagator()
# A malformed tracestate from a caller is dropped; the library would log a warning per request.
logging.getLogger("opentelemetry.trace.span").setLevel(logging.ERROR)
_provider: _Provider | None = None
tracer = trace.get_tracer("petplatform")
_ids = random.Random()  # span and trace ids, as the SDK's RandomIdGenerator makes them


class _Provider(TracerProvider):
    """Knows whether any span it makes goes anywhere: not until a span processor is added (an exporter
    at start, or a test's in-memory one), and only the default sampler may be bypassed."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.recording = False
        self.default_sampler = not os.environ.get("OTEL_TRACES_SAMPLER")

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        super().add_span_processor(span_processor)
        self.recording = True

# Codes that mean the server failed, not the client (OpenTelemetry's rule for gRPC server spans).
_SERVER_FAULTS = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNIMPLEMENTED,
                  grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS}


def provider() -> _Provider:
    """The process's tracer provider, made on first use; `petplatform run` makes it at start so a bad
    OTEL_* setting stops the program there, not at the first request."""
    global _provider
    if _provider is None:
        made = _Provider(resource=Resource.create({"service.name": os.environ.get(
            "OTEL_SERVICE_NAME", "petplatform")}))
        if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            made.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(made)
        _provider = made
    return _provider


def traceparent() -> str:
    """The current span as a W3C traceparent, or '' outside any span."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent", "")


@contextlib.contextmanager
def span(name: str, kind: SpanKind, parent: Mapping[str, str] | str | None = None,
         attributes: dict | None = None) -> Iterator[trace.Span]:
    """A span continuing the trace in `parent` (headers/metadata holding traceparent, or the value
    itself), current for the block, with the trace id bound into the structured logs."""
    p = provider()
    if isinstance(parent, str):
        carrier = {"traceparent": parent}
    else:  # .get, not dict(): HTTP headers are case-insensitive mappings
        carrier = {k: v for k in ("traceparent", "tracestate") if (v := (parent or {}).get(k))}
    ctx = _propagator.extract(carrier) if carrier.get("traceparent") else otel_context.Context()
    if not p.recording and p.default_sampler:
        s, token = _unrecorded(ctx)  # a function, not a nested context manager: every traced call pays it
        try:
            yield s
        finally:
            otel_context.detach(token)
        return
    with tracer.start_as_current_span(name, context=ctx, kind=kind, attributes=attributes,
                                      record_exception=False, set_status_on_exception=False) as s:
        structlog.contextvars.bind_contextvars(trace_id=format(s.get_span_context().trace_id, "032x"))
        yield s


def _unrecorded(ctx: otel_context.Context) -> tuple[trace.Span, contextvars.Token[otel_context.Context]]:
    """What start_as_current_span makes when nothing records: the caller's trace (or a new, sampled one, as
    the default sampler decides), a new span id, made current; with the token that detaches it."""
    caller = trace.get_current_span(ctx).get_span_context()
    if caller.is_valid:
        trace_id, flags, state = caller.trace_id, caller.trace_flags, caller.trace_state
    else:
        trace_id, flags, state = _ids.getrandbits(128), TraceFlags(TraceFlags.SAMPLED), None
    s = NonRecordingSpan(SpanContext(trace_id, _ids.getrandbits(64), is_remote=False, trace_flags=flags,
                                     trace_state=state))
    token = otel_context.attach(trace.set_span_in_context(s, ctx))
    structlog.contextvars.bind_contextvars(trace_id=format(trace_id, "032x"))
    return s, token


def record_grpc_status(s: trace.Span, code: grpc.StatusCode) -> None:
    if code is grpc.StatusCode.OK:  # every successful call: no Enum value lookup or hashing (Python-level)
        s.set_attribute("rpc.grpc.status_code", 0)
        return
    s.set_attribute("rpc.grpc.status_code", code.value[0])
    if code in _SERVER_FAULTS:
        s.set_status(Status(StatusCode.ERROR, code.name))


def outgoing_metadata(metadata) -> tuple:
    """Call metadata plus the current traceparent (unless the caller already carries one)."""
    md = tuple(metadata or ())
    tp = traceparent()
    if tp and not any(k == "traceparent" for k, _ in md):
        md += (("traceparent", tp),)
    return md


def _traced(d: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    return grpc.aio.ClientCallDetails(d.method, d.timeout, grpc.aio.Metadata(*outgoing_metadata(d.metadata)),
                                      d.credentials, d.wait_for_ready)


# grpc.aio files each interceptor under the first call kind it implements, so one class per kind.
class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, details, request):
        return await continuation(_traced(details), request)


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, details, request):
        return await continuation(_traced(details), request)


class _StreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, details, request_iterator):
        return await continuation(_traced(details), request_iterator)


class _StreamStream(grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, details, request_iterator):
        return await continuation(_traced(details), request_iterator)


# Put the current trace into every call made on a mesh channel.
CLIENT_INTERCEPTORS = [_UnaryUnary(), _UnaryStream(), _StreamUnary(), _StreamStream()]
