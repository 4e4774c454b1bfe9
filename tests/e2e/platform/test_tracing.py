"""One trace follows a request from the edge through the services and across events, and the
logs carry its trace id. Spans are caught in memory from the process's tracer provider."""
from __future__ import annotations

import asyncio
import uuid

import grpc
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
import pytest

from mesh import tracing
from petplatform.pet.v1 import pet_pb2, pet_pb2_grpc
from tests.support.platform import PASSWORD, EdgeClient

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def spans():
    exporter = InMemorySpanExporter()
    tracing.provider().add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def of_trace(spans: InMemorySpanExporter, trace_id: str) -> list:
    return [s for s in spans.get_finished_spans() if format(s.context.trace_id, "032x") == trace_id]


async def test_one_trace_from_the_edge_through_services_and_events(edge: EdgeClient, spans):
    email = f"t{uuid.uuid4().hex[:8]}@example.com"
    async with edge.http.post(edge.url + "/v1/auth/register", headers={"traceparent": CALLER},
                              json={"email": email, "password": PASSWORD, "displayName": "Traced"}) as r:
        assert r.status == 200
    for _ in range(100):  # user.created reaches the user service after the response
        names = {(s.name, s.kind) for s in of_trace(spans, TRACE_ID)}
        if ("user.created process", SpanKind.CONSUMER) in names:
            break
        await asyncio.sleep(0.05)
    assert {("POST", SpanKind.SERVER), ("/petplatform.auth.v1.AuthService/Register", SpanKind.SERVER),
            ("user.created process", SpanKind.CONSUMER)} <= names
    by_name = {s.name: s for s in of_trace(spans, TRACE_ID)}
    edge_span = by_name["POST"]
    assert edge_span.parent.span_id == int("00f067aa0ba902b7", 16), "the edge continues the caller's trace"
    assert by_name["/petplatform.auth.v1.AuthService/Register"].parent.span_id == edge_span.context.span_id
    assert edge_span.attributes["http.response.status_code"] == 200


async def test_pass_through_carries_the_apps_trace_and_errors_are_recorded(edge: EdgeClient, spans, caplog):
    caplog.set_level("INFO")
    trace_id = uuid.uuid4().hex
    async with grpc.aio.insecure_channel(edge.grpc_address) as ch:
        with pytest.raises(grpc.aio.AioRpcError):
            await pet_pb2_grpc.PetServiceStub(ch).GetPet(
                pet_pb2.GetPetRequest(name=f"pets/{'7' * 32}"),
                metadata=(("traceparent", f"00-{trace_id}-1111111111111111-01"),))
    (span,) = [s for s in of_trace(spans, trace_id) if s.kind == SpanKind.SERVER]
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert span.status.is_ok, "a client's mistake is not a server error"
    assert any(trace_id in str(rec.msg) and "rpc rejected" in str(rec.msg) for rec in caplog.records), \
        "the service's log line carries the trace id"


async def test_streams_relayed_by_the_edge_carry_the_trace(edge: EdgeClient, spans):
    trace_id = uuid.uuid4().hex
    async with edge.http.get(edge.url + "/v1/pets:watch", headers={
            "traceparent": f"00-{trace_id}-2222222222222222-01"}) as r:
        assert r.status == 200  # open; leaving the block hangs up, which ends the stream on both sides
    for _ in range(600):  # the service's span ends once its side of the stream has wound down
        names = {s.name for s in of_trace(spans, trace_id)}
        if "/petplatform.pet.v1.PetService/WatchPets" in names:
            break
        await asyncio.sleep(0.05)
    assert {"GET", "/petplatform.pet.v1.PetService/WatchPets"} <= names, names
