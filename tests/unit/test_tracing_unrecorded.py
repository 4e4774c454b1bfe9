"""Without a span processor, spans are only ids: they continue the caller's trace and are passed on."""
from __future__ import annotations

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanKind
import pytest
import structlog

from mesh import tracing

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
def fresh_provider(monkeypatch):
    provider = tracing._Provider()
    monkeypatch.setattr(tracing, "_provider", provider)
    return provider


def test_an_unrecorded_span_continues_the_callers_trace(fresh_provider):
    with tracing.span("call", SpanKind.SERVER, {"traceparent": CALLER}) as s:
        assert isinstance(s, NonRecordingSpan)
        version, trace_id, span_id, flags = tracing.traceparent().split("-")
        assert (trace_id, flags) == (TRACE_ID, "01") and span_id not in ("00f067aa0ba902b7", "0" * 16)
        assert structlog.contextvars.get_contextvars()["trace_id"] == TRACE_ID
    assert tracing.traceparent() == "", "the span is current only inside the block"


def test_an_unrecorded_span_without_a_caller_starts_a_sampled_trace(fresh_provider):
    with tracing.span("call", SpanKind.SERVER, {}):
        first = tracing.traceparent()
    with tracing.span("call", SpanKind.SERVER, None):
        second = tracing.traceparent()
    assert first.endswith("-01") and second.endswith("-01")
    assert first.split("-")[1] != second.split("-")[1], "each call its own trace"


def test_spans_are_recorded_once_a_processor_is_added(fresh_provider, monkeypatch):
    monkeypatch.setattr(tracing.trace, "_TRACER_PROVIDER", fresh_provider)
    exporter = InMemorySpanExporter()
    fresh_provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = fresh_provider.get_tracer("test")
    monkeypatch.setattr(tracing, "tracer", tracer)
    with tracing.span("recorded", SpanKind.SERVER, CALLER):
        pass
    (span,) = exporter.get_finished_spans()
    assert format(span.context.trace_id, "032x") == TRACE_ID and span.parent.span_id == int("00f067aa0ba902b7", 16)


def test_a_configured_sampler_is_left_to_the_sdk(monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    assert not tracing._Provider().default_sampler
